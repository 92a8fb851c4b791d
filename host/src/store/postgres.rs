//! The shared [`Store`]: a PostgreSQL database (`[store] url`) with the same tables and the same
//! guarantees as the embedded SQLite store, written so that several bridge processes may share
//! one database.
//!
//! Each client write is one transaction (an enqueue batch, a webhook with its keys and answer)
//! committed before the call returns. The rules that keep processes apart live in the SQL, not
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
//! an advisory lock so processes starting together apply it once. Connections are plain (no
//! TLS yet): run the bridge next to the database or on a private network.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, Transaction,
};
use tokio::sync::Notify;
use tokio_postgres::{NoTls, Row};

use super::{
    Accepted, DeadLetterFilter, Delivery, Direction, KvWrite, Lease, NewDelivery, OutboxStats, Outcome, PurgeBefore,
    Store, StoreError, StoreHealth, StoredResponse, TenantBacklog, TicketInfo, WebhookAccepted,
};
use crate::clock;
use crate::store::{FORGET_AFTER, ReplicaStatus};

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// How long a call waits for a free connection before the store answers [`StoreError::Busy`].
const POOL_WAIT: Duration = Duration::from_secs(5);
/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The advisory lock held while migrations run ("dolphinm" as a number).
const MIGRATION_LOCK: i64 = 0x646f_6c70_6869_6e6d;
/// Rows one purge step deletes.
const PURGE_BATCH: i64 = 1000;
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
    Ok(format!(
        "{DUE_CHANNEL_PREFIX}{}",
        schema.unwrap_or_else(|| "public".into())
    ))
}

/// `LISTEN`s on the due channel of the connection's schema.
async fn listen_on_due_channel(client: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    let channel = due_channel(client).await?.replace('"', "\"\"");
    client.batch_execute(&format!("LISTEN \"{channel}\"")).await
}

/// Keeps a connection listening on the due channel of its schema and notifies `signal` at each notification;
/// connects again when the connection is lost (dispatchers poll meanwhile, so nothing waits
/// for it longer than a poll).
async fn listen_for_due_work(config: tokio_postgres::Config, signal: Arc<Notify>) {
    loop {
        match config.connect(NoTls).await {
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

/// Parses a `postgres://` URL; the error never quotes it (it may hold a password).
pub fn parse_url(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    url.parse().map_err(|_| {
        anyhow::anyhow!("[store] url is not a PostgreSQL URL (postgres://user:password@host:port/database)")
    })
}

impl PostgresStore {
    /// Connects to the database at `url`, applies the migrations it lacks (under an advisory
    /// lock: processes opening it at once apply them once), and keeps a pool of up to
    /// `pool_size` connections.
    pub async fn open(url: &str, pool_size: usize) -> anyhow::Result<PostgresStore> {
        let config = parse_url(url)?;
        let target = describe(&config);
        migrate(&config)
            .await
            .with_context(|| format!("initialising the store {target}"))?;
        let due_signal = Arc::new(Notify::new());
        let listener = tokio::spawn(listen_for_due_work(config.clone(), due_signal.clone()));
        let manager = Manager::from_config(
            config,
            NoTls,
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
        let channel = {
            let client = pool
                .get()
                .await
                .with_context(|| format!("connecting to the store {target}"))?;
            due_channel(&client).await.context("reading the store's schema")?
        };
        let announce = Arc::new(Notify::new());
        let announcer = tokio::spawn(announce_due_work(pool.clone(), channel.clone(), announce.clone()));
        Ok(PostgresStore {
            pool,
            last_commit_ms: AtomicI64::new(0),
            due_signal,
            listener,
            channel,
            announce,
            announcer,
        })
    }

    async fn client(&self) -> anyhow::Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Timeout(_) => StoreError::Busy.into(),
            PoolError::Closed => StoreError::Stopped.into(),
            other => anyhow::Error::from(other).context("connecting to the store"),
        })
    }

    fn committed(&self) {
        self.last_commit_ms.store(clock::now_ms(), Ordering::Relaxed);
    }

    /// Runs one statement in its own transaction (autocommit); returns the rows it changed.
    async fn write(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> anyhow::Result<u64> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await?;
        let changed = client.execute(&statement, params).await.context("store write failed")?;
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
        client.query(&statement, params).await.context("store query failed")
    }

    /// Deletes the rows of `table` (whose key is `key`) matching `condition`, [`PURGE_BATCH`]
    /// rows per transaction, so a large purge never holds locks for long.
    async fn delete_in_batches(
        &self,
        table: &str,
        key: &str,
        condition: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> anyhow::Result<usize> {
        let sql = format!(
            "DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {condition} LIMIT {PURGE_BATCH})"
        );
        let mut total = 0;
        loop {
            let deleted = self.write(&sql, params).await?;
            total += deleted as usize;
            if deleted < PURGE_BATCH as u64 {
                return Ok(total);
            }
        }
    }
}

/// Applies the migrations the database lacks, holding [`MIGRATION_LOCK`] on a connection of its
/// own (released when it closes, should this process die half-way).
async fn migrate(config: &tokio_postgres::Config) -> anyhow::Result<()> {
    let mut config = config.clone();
    config.connect_timeout(CONNECT_TIMEOUT);
    let (mut client, connection) = config.connect(NoTls).await.context("connecting")?;
    let driver = tokio::spawn(connection);
    client
        .batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .await
        .context("taking the migration lock")?;
    let applied = embedded::migrations::runner().run_async(&mut client).await;
    drop(client);
    let _ = driver.await;
    let report = applied.context("applying migrations")?;
    for migration in report.applied_migrations() {
        tracing::info!(
            version = migration.version(),
            name = migration.name(),
            "store migration applied"
        );
    }
    Ok(())
}

async fn enqueue_in(
    tx: &Transaction<'_>,
    items: Vec<NewDelivery>,
    window: Duration,
    now: i64,
) -> anyhow::Result<Vec<Accepted>> {
    let window_start = now - window.as_millis() as i64;
    let mut accepted = Vec::with_capacity(items.len());
    for item in items {
        if let Some(info) = &item.ticket_info {
            remember_ticket(tx, &item.owner, &item.ticket, info, now).await?;
        }
        if let Some(key) = &item.idempotency_key {
            // Taken unless held within the window; a concurrent holder (another process) is
            // waited for, then seen.
            let take = tx
                .prepare_cached(
                    "INSERT INTO idempotency (tenant, key, delivery_id, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (tenant, key) DO UPDATE SET delivery_id = excluded.delivery_id,
                         created_at = excluded.created_at
                     WHERE idempotency.created_at <= $5
                     RETURNING delivery_id",
                )
                .await?;
            let taken = tx
                .query_opt(&take, &[&item.tenant, key, &item.delivery_id, &now, &window_start])
                .await?;
            if taken.is_none() {
                let earlier = tx
                    .query_one(
                        "SELECT delivery_id FROM idempotency WHERE tenant = $1 AND key = $2",
                        &[&item.tenant, key],
                    )
                    .await?;
                accepted.push(Accepted {
                    delivery_id: earlier.get(0),
                    duplicate: true,
                });
                continue;
            }
        }
        let insert = tx
            .prepare_cached(
                "INSERT INTO outbox (delivery_id, tenant, owner, direction, ticket, payload, state, created_at,
                     next_attempt_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7)",
            )
            .await?;
        tx.execute(
            &insert,
            &[
                &item.delivery_id,
                &item.tenant,
                &item.owner,
                &item.direction.as_str(),
                &item.ticket,
                &item.payload,
                &now,
            ],
        )
        .await?;
        accepted.push(Accepted {
            delivery_id: item.delivery_id,
            duplicate: false,
        });
    }
    Ok(accepted)
}

/// Remembers (or updates) what is known of `owner`'s `ticket`.
async fn remember_ticket(
    tx: &Transaction<'_>,
    owner: &str,
    ticket: &str,
    info: &TicketInfo,
    now: i64,
) -> anyhow::Result<()> {
    let upsert = tx
        .prepare_cached(
            "INSERT INTO tickets (owner, ticket_number, channel, customer_name, contact_id, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (owner, ticket_number) DO UPDATE SET channel = excluded.channel,
                 customer_name = excluded.customer_name, contact_id = excluded.contact_id,
                 updated_at = excluded.updated_at",
        )
        .await?;
    tx.execute(
        &upsert,
        &[
            &owner,
            &ticket,
            &info.channel,
            &info.customer_name,
            &info.contact_id,
            &now,
        ],
    )
    .await?;
    Ok(())
}

/// The answer stored since `since` for the first of `keys` that has one.
async fn webhook_response_in(
    client: &impl GenericClient,
    tenant: &str,
    keys: &[String],
    since: i64,
) -> anyhow::Result<Option<StoredResponse>> {
    let select = client
        .prepare_cached("SELECT status, headers, body FROM webhooks WHERE tenant = $1 AND key = $2 AND created_at > $3")
        .await?;
    for key in keys {
        if let Some(row) = client.query_opt(&select, &[&tenant, key, &since]).await? {
            let headers: String = row.get(1);
            return Ok(Some(StoredResponse {
                status: row.get::<_, i32>(0) as u16,
                headers: serde_json::from_str(&headers).unwrap_or_default(),
                body: row.get(2),
            }));
        }
    }
    Ok(None)
}

const DELIVERY_COLUMNS: &str = "seq, delivery_id, tenant, owner, direction, ticket, payload, attempts, retry_base, state, \
     last_error, created_at, next_attempt_at, lease_owner";

fn delivery_row(row: &Row) -> Delivery {
    Delivery {
        seq: row.get(0),
        delivery_id: row.get(1),
        tenant: row.get(2),
        owner: row.get(3),
        direction: Direction::parse(row.get(4)),
        ticket: row.get(5),
        payload: row.get(6),
        attempts: row.get::<_, i32>(7) as u32,
        retry_base: row.get::<_, i32>(8) as u32,
        state: row.get(9),
        last_error: row.get(10),
        created_at: row.get(11),
        next_attempt_at: row.get(12),
        lease_owner: row.get(13),
    }
}

/// `WHERE` fragment selecting dead letters by `filter`, and its parameter (`$2`).
fn dead_letter_condition(filter: &DeadLetterFilter) -> (&'static str, Option<String>) {
    match filter {
        DeadLetterFilter::One(id) => ("state = 'dead' AND delivery_id = $2", Some(id.clone())),
        DeadLetterFilter::Tenant(tenant) => ("state = 'dead' AND tenant = $2", Some(tenant.clone())),
        DeadLetterFilter::All => ("state = 'dead' AND $2::text IS NULL", None),
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn enqueue(&self, deliveries: Vec<NewDelivery>, window: Duration) -> anyhow::Result<Vec<Accepted>> {
        let now = clock::now_ms();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let accepted = enqueue_in(&tx, deliveries, window, now).await?;
        tx.commit().await.context("store commit failed")?;
        self.committed();
        self.announce.notify_one();
        Ok(accepted)
    }

    async fn accept_webhook(
        &self,
        tenant: &str,
        keys: &[String],
        response: StoredResponse,
        deliveries: Vec<NewDelivery>,
        window: Duration,
    ) -> anyhow::Result<WebhookAccepted> {
        let now = clock::now_ms();
        let since = now - window.as_millis() as i64;
        let headers = serde_json::to_string(&response.headers).expect("headers serialize");
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Each key is taken unless held within the window: a retry arriving at another process
        // at the same time waits for this transaction, then finds the key held.
        let take = tx
            .prepare_cached(
                "INSERT INTO webhooks (tenant, key, status, headers, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (tenant, key) DO UPDATE SET status = excluded.status, headers = excluded.headers,
                     body = excluded.body, created_at = excluded.created_at
                 WHERE webhooks.created_at <= $7
                 RETURNING 1",
            )
            .await?;
        let status = i32::from(response.status);
        for key in keys {
            let taken = tx
                .query_opt(&take, &[&tenant, key, &status, &headers, &response.body, &now, &since])
                .await?;
            if taken.is_none() {
                let first = webhook_response_in(&tx, tenant, std::slice::from_ref(key), since)
                    .await?
                    .context("a webhook key held but its answer not found")?;
                tx.rollback().await?;
                return Ok(WebhookAccepted::Duplicate(first));
            }
        }
        let accepted = enqueue_in(&tx, deliveries, Duration::ZERO, now).await?;
        tx.commit().await.context("store commit failed")?;
        self.committed();
        self.announce.notify_one();
        Ok(WebhookAccepted::New(accepted))
    }

    async fn webhook_response(
        &self,
        tenant: &str,
        keys: &[String],
        window: Duration,
    ) -> anyhow::Result<Option<StoredResponse>> {
        let since = clock::now_ms() - window.as_millis() as i64;
        let client = self.client().await?;
        webhook_response_in(&client, tenant, keys, since).await
    }

    async fn due(&self, now: i64, limit: usize, skip_tenants: &[String]) -> anyhow::Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE seq IN (
                 SELECT seq FROM ticket_heads
                 WHERE next_attempt_at <= $1 AND NOT (tenant = ANY ($3))
                 ORDER BY next_attempt_at, seq LIMIT $2)
             ORDER BY next_attempt_at, seq"
        );
        let rows = self.query(&sql, &[&now, &(limit as i64), &skip_tenants]).await?;
        Ok(rows.iter().map(delivery_row).collect())
    }

    async fn next_due_after(&self, now: i64) -> anyhow::Result<Option<i64>> {
        let rows = self
            .query(
                "SELECT MIN(next_attempt_at) FROM ticket_heads WHERE next_attempt_at > $1",
                &[&now],
            )
            .await?;
        Ok(rows.first().and_then(|row| row.get(0)))
    }

    async fn claim(&self, seq: i64, attempts: u32, lease: &Lease) -> anyhow::Result<bool> {
        let changed = self
            .write(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $3, lease_owner = $4
                 WHERE seq = $1 AND state = 'pending' AND attempts = $2",
                &[&seq, &(attempts as i32), &lease.until_ms, &lease.owner],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn release_all_leases(&self) -> anyhow::Result<usize> {
        let released = self
            .write(
                "UPDATE outbox SET next_attempt_at = $1, lease_owner = NULL
                 WHERE state = 'pending' AND lease_owner IS NOT NULL",
                &[&clock::now_ms()],
            )
            .await?;
        Ok(released as usize)
    }

    async fn renew(&self, seq: i64, attempt: u32, lease: &Lease) -> anyhow::Result<bool> {
        let changed = self
            .write(
                "UPDATE outbox SET next_attempt_at = $3
                 WHERE seq = $1 AND state = 'pending' AND attempts = $2 AND lease_owner = $4",
                &[&seq, &(attempt as i32), &lease.until_ms, &lease.owner],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn record(&self, seq: i64, attempt: u32, outcome: Outcome) -> anyhow::Result<bool> {
        let now = clock::now_ms();
        let attempt = attempt as i32;
        // A finished delivery lets the next event of its ticket go.
        let finishes = matches!(outcome, Outcome::Delivered | Outcome::Dead(_));
        let changed = match outcome {
            Outcome::Delivered => {
                self.write(
                    "UPDATE outbox SET state = 'delivered', finished_at = $3, last_error = NULL, lease_owner = NULL
                     WHERE seq = $1 AND state = 'pending' AND attempts = $2",
                    &[&seq, &attempt, &now],
                )
                .await?
            }
            Outcome::RetryAt(at, error) => {
                self.write(
                    "UPDATE outbox SET next_attempt_at = $3, last_error = $4, lease_owner = NULL
                     WHERE seq = $1 AND state = 'pending' AND attempts = $2",
                    &[&seq, &attempt, &at, &error],
                )
                .await?
            }
            Outcome::Dead(error) => {
                self.write(
                    "UPDATE outbox SET state = 'dead', last_error = $3, finished_at = $4, lease_owner = NULL
                     WHERE seq = $1 AND state = 'pending' AND attempts = $2",
                    &[&seq, &attempt, &error, &now],
                )
                .await?
            }
            Outcome::NotAttempted(at, error) => {
                self.write(
                    "UPDATE outbox SET attempts = attempts - 1, next_attempt_at = $3, last_error = $4, lease_owner = NULL
                     WHERE seq = $1 AND state = 'pending' AND attempts = $2",
                    &[&seq, &attempt, &at, &error],
                )
                .await?
            }
        };
        if finishes && changed == 1 {
            self.announce.notify_one();
        }
        Ok(changed == 1)
    }

    async fn dead_letters(&self, tenant: Option<&str>, limit: usize) -> anyhow::Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE state = 'dead' AND ($1::text IS NULL OR tenant = $1)
             ORDER BY seq LIMIT $2"
        );
        let rows = self.query(&sql, &[&tenant, &(limit as i64)]).await?;
        Ok(rows.iter().map(delivery_row).collect())
    }

    async fn delivery(&self, delivery_id: &str) -> anyhow::Result<Option<Delivery>> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM outbox WHERE delivery_id = $1");
        let rows = self.query(&sql, &[&delivery_id]).await?;
        Ok(rows.first().map(delivery_row))
    }

    async fn replay(&self, filter: DeadLetterFilter, to_tenant: Option<&str>) -> anyhow::Result<usize> {
        let now = clock::now_ms();
        let (condition, value) = dead_letter_condition(&filter);
        let sql = format!(
            "UPDATE outbox SET state = 'pending', retry_base = attempts, next_attempt_at = $1,
                 finished_at = NULL, tenant = COALESCE($3, tenant)
             WHERE {condition}"
        );
        let replayed = self.write(&sql, &[&now, &value, &to_tenant]).await?;
        if replayed > 0 {
            // At once, not through the announcer: a `dead-letters replay` command exits next.
            let notified = match self.client().await {
                Ok(client) => client
                    .execute("SELECT pg_notify($1, '')", &[&self.channel])
                    .await
                    .map(drop)
                    .map_err(anyhow::Error::from),
                Err(e) => Err(e),
            };
            if let Err(e) = notified {
                tracing::debug!(
                    error = format!("{e:#}"),
                    "cannot announce the replay; replicas find it at their next poll"
                );
            }
        }
        Ok(replayed as usize)
    }

    async fn purge_dead_letters(&self, filter: DeadLetterFilter, before_ms: i64) -> anyhow::Result<usize> {
        let (condition, value) = dead_letter_condition(&filter);
        self.delete_in_batches(
            "outbox",
            "seq",
            &format!("{condition} AND finished_at < $1"),
            &[&before_ms, &value],
        )
        .await
    }

    async fn purge(&self, before: PurgeBefore) -> anyhow::Result<usize> {
        let steps = [
            (
                "outbox",
                "seq",
                "state = 'delivered' AND finished_at < $1",
                Some(before.delivered),
            ),
            (
                "outbox",
                "seq",
                "state = 'dead' AND finished_at < $1",
                before.dead_letters,
            ),
            (
                "idempotency",
                "tenant, key",
                "created_at < $1",
                Some(before.idempotency_keys),
            ),
            ("webhooks", "tenant, key", "created_at < $1", Some(before.webhook_keys)),
            (
                "tickets",
                "owner, ticket_number",
                "updated_at < $1",
                Some(before.tickets),
            ),
        ];
        let mut events = 0;
        for (table, key, condition, before) in steps {
            let Some(before) = before else { continue };
            let deleted = self.delete_in_batches(table, key, condition, &[&before]).await?;
            if table == "outbox" {
                events += deleted;
            }
        }
        Ok(events)
    }

    async fn stats(&self) -> anyhow::Result<OutboxStats> {
        let rows = self
            .query("SELECT state, COUNT(*) FROM outbox GROUP BY state", &[])
            .await?;
        let mut stats = OutboxStats::default();
        for row in rows {
            let count = row.get::<_, i64>(1) as u64;
            match row.get::<_, &str>(0) {
                "pending" => stats.pending = count,
                "delivered" => stats.delivered = count,
                "dead" => stats.dead = count,
                _ => {}
            }
        }
        Ok(stats)
    }

    async fn backlog_by_tenant(&self) -> anyhow::Result<Vec<TenantBacklog>> {
        let rows = self
            .query(
                "SELECT tenant, COUNT(*), MIN(created_at) FROM outbox WHERE state = 'pending'
                 GROUP BY tenant ORDER BY tenant",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| TenantBacklog {
                tenant: row.get(0),
                pending: row.get::<_, i64>(1) as u64,
                oldest_created_at: row.get(2),
            })
            .collect())
    }

    async fn health(&self) -> anyhow::Result<StoreHealth> {
        let now = clock::now_ms();
        let pad: Vec<u8> = (0..PROBE_BYTES).map(|_| rand::random::<u8>()).collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // A write the size of a small event, committed: a full disk or a read-only standby
        // fails it as it would fail the next event.
        tx.execute(
            "INSERT INTO readiness_probe (id, at, pad) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET at = excluded.at, pad = excluded.pad",
            &[&now, &pad],
        )
        .await
        .context("store write failed")?;
        let synchronous: String = tx.query_one("SHOW synchronous_commit", &[]).await?.get(0);
        let wal_level: String = tx.query_one("SHOW wal_level", &[]).await?.get(0);
        tx.commit().await.context("store commit failed")?;
        self.committed();
        Ok(StoreHealth {
            synchronous,
            journal_mode: format!("wal_level={wal_level}"),
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
        let rows = self
            .query("SELECT value FROM kv WHERE tenant = $1 AND key = $2", &[&tenant, &key])
            .await?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    async fn kv_set(&self, tenant: &str, key: &str, value: Vec<u8>, quota: u64) -> anyhow::Result<KvWrite> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let size = (key.len() + value.len()) as i64;
        // The key's size now, its row locked until this commits. A write that does not grow it
        // cannot take the tenant past its quota whatever else runs (the most common write: an
        // adapter storing the same mapping again), so it needs no turn.
        let current: Option<i64> = tx
            .query_opt(
                "SELECT (length(key) + length(value))::bigint FROM kv WHERE tenant = $1 AND key = $2 FOR UPDATE",
                &[&tenant, &key],
            )
            .await?
            .map(|row| row.get(0));
        if current.is_none_or(|current| size > current) {
            // Writes that grow a tenant's keys (from any process) take turns: the check and the
            // write cannot interleave with another's.
            tx.execute("SELECT pg_advisory_xact_lock(hashtext('kv'), hashtext($1))", &[&tenant])
                .await?;
            let others: i64 = tx
                .query_one(
                    "SELECT COALESCE(SUM(length(key) + length(value)), 0)::bigint FROM kv WHERE tenant = $1 AND key <> $2",
                    &[&tenant, &key],
                )
                .await?
                .get(0);
            if (others + size) as u64 > quota {
                tx.rollback().await?;
                return Ok(KvWrite::OverQuota);
            }
        }
        tx.execute(
            "INSERT INTO kv (tenant, key, value) VALUES ($1, $2, $3)
             ON CONFLICT (tenant, key) DO UPDATE SET value = excluded.value",
            &[&tenant, &key, &value],
        )
        .await?;
        tx.commit().await.context("store commit failed")?;
        self.committed();
        Ok(KvWrite::Stored)
    }

    async fn kv_delete(&self, tenant: &str, key: &str) -> anyhow::Result<()> {
        self.write("DELETE FROM kv WHERE tenant = $1 AND key = $2", &[&tenant, &key])
            .await
            .map(drop)
    }

    async fn ticket(&self, owner: &str, ticket: &str) -> anyhow::Result<Option<TicketInfo>> {
        let rows = self
            .query(
                "SELECT channel, customer_name, contact_id FROM tickets WHERE owner = $1 AND ticket_number = $2",
                &[&owner, &ticket],
            )
            .await?;
        Ok(rows.first().map(|row| TicketInfo {
            channel: row.get(0),
            customer_name: row.get(1),
            contact_id: row.get(2),
        }))
    }

    async fn is_contact_of_owner(&self, owner: &str, contact_id: &str) -> anyhow::Result<bool> {
        // Tickets remembered before contacts were have '' as their contact: never a match.
        if contact_id.is_empty() {
            return Ok(false);
        }
        let rows = self
            .query(
                "SELECT EXISTS (SELECT 1 FROM tickets WHERE owner = $1 AND contact_id = $2)",
                &[&owner, &contact_id],
            )
            .await?;
        Ok(rows.first().is_some_and(|row| row.get(0)))
    }

    async fn heartbeat(&self, replica: &ReplicaStatus) -> anyhow::Result<()> {
        let adapters = replica.adapters_json();
        self.write(
            "INSERT INTO replicas (replica_id, started_at, last_seen, listen, adapters)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (replica_id) DO UPDATE SET started_at = excluded.started_at,
               last_seen = excluded.last_seen, listen = excluded.listen, adapters = excluded.adapters",
            &[
                &replica.replica_id,
                &replica.started_at,
                &replica.last_seen,
                &replica.listen,
                &adapters,
            ],
        )
        .await?;
        let forget_before = clock::now_ms() - FORGET_AFTER.as_millis() as i64;
        self.write("DELETE FROM replicas WHERE last_seen < $1", &[&forget_before])
            .await?;
        Ok(())
    }

    async fn replicas(&self) -> anyhow::Result<Vec<ReplicaStatus>> {
        let now = clock::now_ms();
        let rows = self
            .query(
                "SELECT replica_id, started_at, last_seen, listen, adapters FROM replicas ORDER BY replica_id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let last_seen: i64 = row.get(2);
                let adapters: String = row.get(4);
                ReplicaStatus {
                    replica_id: row.get(0),
                    started_at: row.get(1),
                    last_seen,
                    listen: row.get(3),
                    adapters: ReplicaStatus::parse_adapters(&adapters),
                    stale: ReplicaStatus::is_stale(last_seen, now),
                }
            })
            .collect())
    }
}

mod deployments;
#[cfg(test)]
mod tests;
