//! The shared [`Store`]: a PostgreSQL database (`[store] url`) with the same tables and the same
//! guarantees as the embedded SQLite store, written so that several bridge processes may share
//! one database.
//!
//! Each client write is one transaction (an enqueue batch, a webhook with its keys and answer)
//! committed before the call returns; the claims and outcomes of concurrent deliveries share
//! one (`grouped`, `claims`), a group commit. The rules that keep processes apart live in the SQL, not
//! in a process: a claim is a conditional `UPDATE ... WHERE state = 'pending' AND attempts = $n`,
//! so one attempt is claimed once whichever process asks; idempotency and webhook keys are taken
//! with `INSERT ... ON CONFLICT`, so two processes storing the same key at once store one event;
//! `ticket_heads` is kept by triggers in the transaction of every write. A claim leases the
//! delivery to its replica, which renews the lease while the attempt runs; a replica that dies
//! stops renewing, and its deliveries are due to the others when their leases end.
//!
//! Replicas wake each other with `NOTIFY` on a channel of the schema: after a commit that may
//! have made work due, sent apart from it and coalesced (a `NOTIFY` inside the accepting
//! transaction would serialise every commit on PostgreSQL's notification lock).
//!
//! The schema is versioned in `host/migrations/postgres` and applied when the store opens, under
//! an advisory lock so processes starting together apply it once. Connections use TLS as the
//! URL's `sslmode` and `sslrootcert` ask (see [`tls`]).
//!
//! This file holds the pool, the wake-ups, the migrations and the [`Store`] impl, which hands
//! each call to the file of its concern: `outbox`, `claims`, `webhooks`, `kv`, `tickets`,
//! `replica_rows` (and `deployments` for the shared deployments).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::sync::Notify;
use tokio_postgres::Row;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    Accepted, DeadLetterFilter, Delivery, KvWrite, Lease, NewDelivery, OutboxStats, Outcome, PurgeBefore, Store,
    StoreError, StoreHealth, StoredResponse, TenantBacklog, TenantDeadLetters, TicketInfo, WebhookAccepted,
};
use crate::clock;
use crate::store::ReplicaStatus;
use claims::{ClaimAsked, OutcomeAsked};
use grouped::GroupedWrites;
use pooled::Pooled;
use session::DatabaseClock;
use tls::ConnectionSecurity;

mod claims;
mod deployments;
mod grouped;
mod kv;
mod migrations;
mod outbox;
mod pooled;
mod replica_rows;
mod session;
mod tickets;
pub mod tls;
mod webhooks;

/// How long a call waits for a free connection before the store answers [`StoreError::Busy`].
const POOL_WAIT: Duration = Duration::from_secs(5);
/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of the readiness probe's write: about an event's.
const PROBE_BYTES: usize = 4096;

/// The channel on which replicas tell each other that work may be due, before the schema's
/// name (bridges on other schemas of the database are not woken).
const DUE_CHANNEL_PREFIX: &str = "dolphin_bridge_due:";
/// Announcements of due work a replica sends at most one per this long. A `NOTIFY` takes a
/// database-wide lock at commit: sent in every accepting transaction, it would serialise them.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(10);
/// How long the listener waits before connecting again after losing its connection.
const LISTEN_RETRY: Duration = Duration::from_secs(2);

/// The PostgreSQL [`Store`].
pub struct PostgresStore {
    pool: Pool,
    /// Monotonic-anchored ms of this process's last successful commit (0: none yet).
    last_commit_ms: AtomicI64,
    /// Notified when any process's commit gave a ticket a new head.
    due_signal: Arc<Notify>,
    /// The `LISTEN` connection's task, stopped with the store.
    listener: tokio::task::JoinHandle<()>,
    /// The due channel of the store's schema.
    channel: String,
    /// Notified after a commit that may have made work due; [`announce_due_work`] tells the
    /// other replicas.
    announce: Arc<Notify>,
    /// The task sending those announcements, stopped with the store.
    announcer: tokio::task::JoinHandle<()>,
    /// The database's clock, which leases and due times follow.
    clock: DatabaseClock,
    /// This process's row of the readiness probe (one row each: probes of several replicas
    /// never wait for each other).
    probe_id: i32,
    /// What the pooled sessions' `synchronous_commit` and the server's `wal_level` read at start.
    settings: (String, String),
    /// Server settings that can lose acknowledged events, and a connection others can read or
    /// change, found at start.
    warnings: Vec<String>,
    /// How the connections are protected, in words (see [`ConnectionSecurity::describe`]).
    transport: String,
    /// The deliveries' claims, asked for at once, each group in one transaction.
    claims: GroupedWrites<ClaimAsked, bool>,
    /// The deliveries' outcomes, likewise.
    outcomes: GroupedWrites<OutcomeAsked, bool>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
        self.announcer.abort();
    }
}

/// Sends a notification on `channel` after each `announce` (those made while one is sent
/// coalesce into the next), at most one per [`ANNOUNCE_EVERY`]. A lost one costs a poll's delay.
async fn announce_due_work(pool: Pool, channel: String, announce: Arc<Notify>) {
    loop {
        announce.notified().await;
        if let Ok(client) = pool.get().await
            && let Err(e) = client.execute("SELECT pg_notify($1, '')", &[&channel]).await
        {
            tracing::debug!(error = %e, "cannot announce due work; other replicas find it at their next poll");
        }
        tokio::time::sleep(ANNOUNCE_EVERY).await;
    }
}

/// The due channel of the schema `client`'s session works in.
async fn due_channel(client: &tokio_postgres::Client) -> Result<String, tokio_postgres::Error> {
    let schema: Option<String> = client.query_one("SELECT current_schema()", &[]).await?.get(0);
    Ok(channel_name(&schema.unwrap_or_else(|| "public".into())))
}

/// Longest identifier PostgreSQL keeps whole (`NAMEDATALEN - 1`); a longer channel name would
/// be cut by `LISTEN` but refused by `pg_notify`.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// The due channel of `schema`: the prefix and the schema's name, or, when that is too long for
/// PostgreSQL, the prefix and a digest of the name.
fn channel_name(schema: &str) -> String {
    let whole = format!("{DUE_CHANNEL_PREFIX}{schema}");
    if whole.len() <= MAX_IDENTIFIER_BYTES {
        return whole;
    }
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(schema.as_bytes()));
    format!(
        "{DUE_CHANNEL_PREFIX}#{}",
        &digest[..MAX_IDENTIFIER_BYTES - DUE_CHANNEL_PREFIX.len() - 1]
    )
}

/// `LISTEN`s on the due channel of the connection's schema.
async fn listen_on_due_channel(client: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    let channel = due_channel(client).await?.replace('"', "\"\"");
    client.batch_execute(&format!("LISTEN \"{channel}\"")).await
}

/// Keeps a connection listening on the due channel of its schema and notifies `signal` at each notification;
/// connects again when the connection is lost (dispatchers poll meanwhile, so nothing waits
/// for it longer than a poll).
async fn listen_for_due_work(config: tokio_postgres::Config, tls: MakeRustlsConnect, signal: Arc<Notify>) {
    loop {
        match config.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let forward = signal.clone();
                let driver = tokio::spawn(async move {
                    while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        match message {
                            Ok(tokio_postgres::AsyncMessage::Notification(_)) => forward.notify_one(),
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "the store's LISTEN connection failed; reconnecting");
                                return;
                            }
                        }
                    }
                });
                match listen_on_due_channel(&client).await {
                    // Work made due while this connection was away is found by the next poll.
                    Ok(()) => signal.notify_one(),
                    Err(e) => tracing::warn!(error = %e, "cannot LISTEN on the store; dispatchers poll"),
                }
                let _ = driver.await;
                drop(client);
            }
            Err(e) => tracing::warn!(error = %e, "the store's LISTEN connection cannot connect; dispatchers poll"),
        }
        tokio::time::sleep(LISTEN_RETRY).await;
    }
}

/// The host name or address of a TCP connection (`None` for a unix socket).
fn tcp_host(config: &tokio_postgres::Config) -> Option<&str> {
    match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(name)) => Some(name),
        _ => None,
    }
}

/// `user@host:port/database` of a connection configuration: what errors may name (never the
/// password).
pub fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

/// Parses a `postgres://` URL and its TLS parameters (see [`tls`]); the error never quotes it
/// (it may hold a password).
pub fn parse_url(url: &str) -> anyhow::Result<(tokio_postgres::Config, ConnectionSecurity)> {
    let (rest, security) = ConnectionSecurity::split_url(url)?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e: tokio_postgres::Error| {
        anyhow::anyhow!("[store] url is not a PostgreSQL URL (postgres://user:password@host:port/database): {e}")
    })?;
    config.ssl_mode(security.negotiation());
    Ok((config, security))
}

impl PostgresStore {
    /// Connects to the database at `url`, applies the migrations it lacks (under an advisory
    /// lock: processes opening it at once apply them once; see `migrations`), and keeps a pool
    /// of up to `pool_size` connections.
    pub async fn open(url: &str, pool_size: usize) -> anyhow::Result<PostgresStore> {
        let (config, security) = parse_url(url)?;
        let tls = security.connector()?;
        let target = describe(&config);
        migrations::migrate(&session::with_keepalives(&config), tls.clone())
            .await
            .with_context(|| format!("initialising the store {target}"))?;
        Self::connect(config, security, tls, pool_size).await
    }

    /// Connects to the database at `url` as [`open`](Self::open) does, but only checks its
    /// schema (current, and as shipped): for commands, which must not migrate production.
    pub async fn open_for_command(url: &str, pool_size: usize) -> anyhow::Result<PostgresStore> {
        let (config, security) = parse_url(url)?;
        let tls = security.connector()?;
        let target = describe(&config);
        let mut check = session::with_keepalives(&config);
        check.connect_timeout(CONNECT_TIMEOUT);
        let (mut client, connection) = check
            .connect(tls.clone())
            .await
            .with_context(|| format!("connecting to the store {target}"))?;
        let driver = tokio::spawn(connection);
        let checked = migrations::require_current(&mut client).await;
        drop(client);
        let _ = driver.await;
        checked.with_context(|| format!("checking the store {target}"))?;
        Self::connect(config, security, tls, pool_size).await
    }

    /// The pool, listener and announcer on a database whose schema is in place.
    async fn connect(
        config: tokio_postgres::Config,
        security: ConnectionSecurity,
        tls: MakeRustlsConnect,
        pool_size: usize,
    ) -> anyhow::Result<PostgresStore> {
        let target = describe(&config);
        let due_signal = Arc::new(Notify::new());
        let listener = tokio::spawn(listen_for_due_work(
            session::with_keepalives(&config),
            tls.clone(),
            due_signal.clone(),
        ));
        let manager = Manager::from_config(
            session::pooled_session(&config),
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .context("building the store's connection pool")?;
        let clock = DatabaseClock::default();
        let (channel, settings, warnings, transport) = {
            let client = pool
                .get()
                .await
                .with_context(|| format!("connecting to the store {target}"))?;
            let channel = due_channel(&client).await.context("reading the store's schema")?;
            clock.measure(&**client).await?;
            let synchronous: String = client.query_one("SHOW synchronous_commit", &[]).await?.get(0);
            let wal_level: String = client.query_one("SHOW wal_level", &[]).await?.get(0);
            let mut warnings = session::durability_warnings(&**client).await?;
            let encrypted: bool = client
                .query_one(
                    "SELECT COALESCE((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
                    &[],
                )
                .await
                .context("reading pg_stat_ssl")?
                .get(0);
            warnings.extend(security.warning(tcp_host(&config), encrypted));
            (
                channel,
                (synchronous, format!("wal_level={wal_level}")),
                warnings,
                security.describe(encrypted),
            )
        };
        for warning in &warnings {
            tracing::warn!(store = %target, "{warning}");
        }
        let announce = Arc::new(Notify::new());
        let announcer = tokio::spawn(announce_due_work(pool.clone(), channel.clone(), announce.clone()));
        Ok(PostgresStore {
            claims: GroupedWrites::start(pool.clone(), claims::claim_group),
            outcomes: GroupedWrites::start(pool.clone(), claims::record_group),
            pool,
            last_commit_ms: AtomicI64::new(0),
            due_signal,
            listener,
            channel,
            announce,
            announcer,
            clock,
            probe_id: rand::random::<i32>(),
            settings,
            warnings,
            transport,
        })
    }

    /// A connection of the pool; give it back with [`Pooled::done`] when its work is over.
    async fn client(&self) -> anyhow::Result<Pooled> {
        pooled_client(&self.pool).await
    }

    fn committed(&self) {
        self.last_commit_ms.store(clock::now_ms(), Ordering::Relaxed);
    }

    /// Runs one statement in its own transaction (autocommit); returns the rows it changed.
    async fn write(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> anyhow::Result<u64> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await?;
        let changed = client.execute(&statement, params).await.context("store write failed")?;
        client.done();
        self.committed();
        Ok(changed)
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> anyhow::Result<Vec<Row>> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await?;
        let rows = client.query(&statement, params).await.context("store query failed")?;
        client.done();
        Ok(rows)
    }
}

/// A connection of `pool`; give it back with [`Pooled::done`] when its work is over.
async fn pooled_client(pool: &Pool) -> anyhow::Result<Pooled> {
    pool.get().await.map(Pooled::new).map_err(|e| match e {
        PoolError::Timeout(_) => StoreError::Busy.into(),
        PoolError::Closed => StoreError::Stopped.into(),
        other => anyhow::Error::from(other).context("connecting to the store"),
    })
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn enqueue(&self, deliveries: Vec<NewDelivery>, window: Duration) -> anyhow::Result<Vec<Accepted>> {
        outbox::enqueue(self, deliveries, window).await
    }

    async fn accept_webhook(
        &self,
        tenant: &str,
        keys: &[String],
        response: StoredResponse,
        deliveries: Vec<NewDelivery>,
        window: Duration,
    ) -> anyhow::Result<WebhookAccepted> {
        webhooks::accept_webhook(self, tenant, keys, response, deliveries, window).await
    }

    async fn webhook_response(
        &self,
        tenant: &str,
        keys: &[String],
        window: Duration,
    ) -> anyhow::Result<Option<StoredResponse>> {
        webhooks::webhook_response(self, tenant, keys, window).await
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn due(&self, now: i64, limit: usize, skip_tenants: &[String]) -> anyhow::Result<Vec<Delivery>> {
        outbox::due(self, now, limit, skip_tenants).await
    }

    async fn next_due_after(&self, now: i64) -> anyhow::Result<Option<i64>> {
        outbox::next_due_after(self, now).await
    }

    async fn claim(&self, seq: i64, attempts: u32, lease: &Lease) -> anyhow::Result<bool> {
        let lease = lease.clone();
        let claimed = self.claims.write(ClaimAsked { seq, attempts, lease }).await?;
        self.committed();
        Ok(claimed)
    }

    async fn release_all_leases(&self) -> anyhow::Result<usize> {
        outbox::release_all_leases(self).await
    }

    async fn renew(&self, seq: i64, attempt: u32, lease: &Lease) -> anyhow::Result<bool> {
        outbox::renew(self, seq, attempt, lease).await
    }

    async fn record(&self, seq: i64, attempt: u32, outcome: Outcome) -> anyhow::Result<bool> {
        // A finished delivery lets the next event of its ticket go.
        let finishes = matches!(outcome, Outcome::Delivered | Outcome::Dead(_));
        let now = self.clock.now_ms();
        let recorded = self
            .outcomes
            .write(OutcomeAsked {
                seq,
                attempt,
                outcome,
                now,
            })
            .await?;
        self.committed();
        if finishes && recorded {
            self.announce.notify_one();
        }
        Ok(recorded)
    }

    async fn dead_letters(&self, tenant: Option<&str>, limit: usize) -> anyhow::Result<Vec<Delivery>> {
        outbox::dead_letters(self, tenant, limit).await
    }

    async fn delivery(&self, delivery_id: &str) -> anyhow::Result<Option<Delivery>> {
        outbox::delivery(self, delivery_id).await
    }

    async fn replay(&self, filter: DeadLetterFilter, to_tenant: Option<&str>) -> anyhow::Result<usize> {
        outbox::replay(self, filter, to_tenant).await
    }

    async fn purge_dead_letters(&self, filter: DeadLetterFilter, before_ms: i64) -> anyhow::Result<usize> {
        outbox::purge_dead_letters(self, filter, before_ms).await
    }

    async fn purge(&self, before: PurgeBefore) -> anyhow::Result<usize> {
        outbox::purge(self, before).await
    }

    async fn stats(&self) -> anyhow::Result<OutboxStats> {
        outbox::stats(self).await
    }

    async fn backlog_by_tenant(&self) -> anyhow::Result<Vec<TenantBacklog>> {
        outbox::backlog_by_tenant(self).await
    }

    async fn dead_letters_by_tenant(&self) -> anyhow::Result<Vec<TenantDeadLetters>> {
        outbox::dead_letters_by_tenant(self).await
    }

    async fn health(&self) -> anyhow::Result<StoreHealth> {
        let pad: Vec<u8> = (0..PROBE_BYTES).map(|_| rand::random::<u8>()).collect();
        // A write the size of a small event, committed: a full disk or a read-only standby
        // fails it as it would fail the next event. One statement on this process's own row:
        // the server finishes it even if this process stops waiting, and holds no lock after.
        self.write(
            "INSERT INTO readiness_probe (id, at, pad) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET at = excluded.at, pad = excluded.pad",
            &[&self.probe_id, &clock::now_ms(), &pad],
        )
        .await?;
        Ok(StoreHealth {
            synchronous: self.settings.0.clone(),
            journal_mode: self.settings.1.clone(),
            warnings: self.warnings.clone(),
            clock_offset_ms: Some(self.clock.offset_ms()),
            transport: Some(self.transport.clone()),
        })
    }

    fn shared_deployments(&self) -> Option<&dyn crate::store::SharedDeployments> {
        Some(self)
    }

    fn due_signal(&self) -> Option<Arc<Notify>> {
        Some(self.due_signal.clone())
    }

    fn last_commit_age(&self) -> Option<Duration> {
        match self.last_commit_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_millis((clock::now_ms() - at).max(0) as u64)),
        }
    }

    async fn kv_get(&self, tenant: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        kv::get(self, tenant, key).await
    }

    async fn kv_set(&self, tenant: &str, key: &str, value: Vec<u8>, quota: u64) -> anyhow::Result<KvWrite> {
        kv::set(self, tenant, key, value, quota).await
    }

    async fn kv_delete(&self, tenant: &str, key: &str) -> anyhow::Result<()> {
        kv::delete(self, tenant, key).await
    }

    async fn ticket(&self, owner: &str, ticket: &str) -> anyhow::Result<Option<TicketInfo>> {
        tickets::ticket(self, owner, ticket).await
    }

    async fn is_contact_of_owner(&self, owner: &str, contact_id: &str) -> anyhow::Result<bool> {
        tickets::is_contact_of_owner(self, owner, contact_id).await
    }

    async fn heartbeat(&self, replica: &ReplicaStatus) -> anyhow::Result<()> {
        let client = self.client().await?;
        self.clock.measure(&***client).await?;
        client.done();
        replica_rows::heartbeat(self, replica).await
    }

    async fn replicas(&self) -> anyhow::Result<Vec<ReplicaStatus>> {
        replica_rows::replicas(self).await
    }
}

#[cfg(test)]
mod tests;
