//! The embedded [`Store`]: one SQLite file (WAL, `synchronous = FULL`) holds the outbox, dead
//! letters, idempotency and webhook keys, adapters' key-value data and what the bridge remembers
//! of tickets: one fsync domain.
//!
//! Every write goes through one writer thread (`writer`) that commits whatever has queued up
//! in one transaction (group commit), so many concurrent requests share one disk sync; a write
//! that fails is undone alone and the others in the batch commit. The writer's queue is
//! bounded: past it, writes made for a client fail at once with [`StoreError::Busy`] instead of
//! piling up in memory. Reads use their own connection.
//!
//! This file holds the connections, the schema and the [`Store`] impl, which hands each call to
//! the file of its concern: `outbox`, `webhooks`, `kv`, `tickets`, `replica_rows`.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, params};
use tokio::sync::mpsc;

use super::{
    Accepted, DeadLetterFilter, Delivery, KvWrite, Lease, NewDelivery, OutboxStats, Outcome, PurgeBefore, Store,
    StoreError, StoreHealth, StoredResponse, TenantBacklog, TenantDeadLetters, TicketInfo, WebhookAccepted,
};
use crate::clock;
use crate::store::ReplicaStatus;

mod kv;
mod outbox;
mod replica_rows;
mod tickets;
mod webhooks;
mod writer;

pub use writer::CommitMode;
use writer::{Job, PendingWrite};

/// Whether a write is made for a client waiting on an answer (refused when the queue is full)
/// or for the bridge's own bookkeeping (waits for room).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Queueing {
    RefuseWhenFull,
    WaitForRoom,
}

/// The embedded [`Store`].
pub struct SqliteStore {
    writer: mpsc::Sender<Job>,
    reader: Arc<Mutex<Connection>>,
    /// Monotonic-anchored ms of the writer's last successful commit (0: none yet).
    last_commit_ms: Arc<AtomicI64>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    direction TEXT NOT NULL,
    ticket TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,            -- pending | delivered | dead
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    finished_at INTEGER,
    owner TEXT NOT NULL DEFAULT '',
    retry_base INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT,               -- the replica running an attempt, while leased
    trace_context TEXT              -- the W3C traceparent of its acceptance, when traced
);
CREATE TABLE IF NOT EXISTS idempotency (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS webhooks (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    status INTEGER NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS webhook_events (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS readiness_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL,
    pad BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tickets (
    owner TEXT NOT NULL,
    ticket_number TEXT NOT NULL,
    channel TEXT NOT NULL,
    customer_name TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    contact_id TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (owner, ticket_number)
) WITHOUT ROWID;
-- The pending delivery at the head of each ticket's queue: what may be delivered next. Kept by
-- the triggers in `HEADS`, so finding due work costs per due head, not per pending row.
CREATE TABLE IF NOT EXISTS ticket_heads (
    owner TEXT NOT NULL,
    direction TEXT NOT NULL,
    ticket TEXT NOT NULL,
    seq INTEGER NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    PRIMARY KEY (owner, direction, ticket)
) WITHOUT ROWID;
-- The replica directory: each serving process's heartbeat (`crate::replica`).
CREATE TABLE IF NOT EXISTS replicas (
    replica_id TEXT PRIMARY KEY,
    started_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    listen TEXT NOT NULL,
    adapters TEXT NOT NULL
);
";

/// Indexes, created after the columns they name exist (older files gain them in `migrate`).
const INDEXES: &str = "
DROP INDEX IF EXISTS outbox_pending;
CREATE INDEX IF NOT EXISTS outbox_heads ON outbox (owner, direction, ticket, seq) WHERE state = 'pending';
-- A claim asks whether another delivery of the ticket is leased: without this index it reads
-- every pending delivery of the ticket, which a backlog makes thousands.
CREATE INDEX IF NOT EXISTS outbox_leased ON outbox (owner, direction, ticket) WHERE state = 'pending' AND lease_owner IS NOT NULL;
DROP INDEX IF EXISTS outbox_due;
CREATE INDEX IF NOT EXISTS ticket_heads_due ON ticket_heads (next_attempt_at, seq);
CREATE INDEX IF NOT EXISTS outbox_finished ON outbox (state, finished_at);
CREATE INDEX IF NOT EXISTS idempotency_age ON idempotency (created_at);
CREATE INDEX IF NOT EXISTS webhooks_age ON webhooks (created_at);
CREATE INDEX IF NOT EXISTS webhook_events_age ON webhook_events (created_at);
CREATE INDEX IF NOT EXISTS tickets_age ON tickets (updated_at);
CREATE INDEX IF NOT EXISTS tickets_contact ON tickets (owner, contact_id);
";

/// The body of the triggers on a pending delivery (`OLD`) that is pending no more: the next
/// pending delivery of its ticket, if any, becomes the head.
macro_rules! next_head_takes_over {
    () => {
        "
    DELETE FROM ticket_heads WHERE seq = OLD.seq;
    INSERT INTO ticket_heads (owner, direction, ticket, seq, tenant, next_attempt_at)
    SELECT owner, direction, ticket, seq, tenant, next_attempt_at FROM outbox
    WHERE state = 'pending' AND owner = OLD.owner AND direction = OLD.direction AND ticket = OLD.ticket
    ORDER BY seq LIMIT 1
    ON CONFLICT (owner, direction, ticket) DO NOTHING;
"
    };
}

/// Triggers keeping `ticket_heads` in step with `outbox` in the same transaction as each write
/// (whichever process writes: the server or a `dead-letters` command), then the heads rebuilt
/// from `outbox` (files written before the table existed, or by an older bridge).
const HEADS: &str = concat!(
    "
DROP TRIGGER IF EXISTS outbox_head_enqueued;
CREATE TRIGGER outbox_head_enqueued AFTER INSERT ON outbox WHEN NEW.state = 'pending'
BEGIN
    INSERT INTO ticket_heads (owner, direction, ticket, seq, tenant, next_attempt_at)
    VALUES (NEW.owner, NEW.direction, NEW.ticket, NEW.seq, NEW.tenant, NEW.next_attempt_at)
    ON CONFLICT (owner, direction, ticket) DO NOTHING;
END;
DROP TRIGGER IF EXISTS outbox_head_rescheduled;
CREATE TRIGGER outbox_head_rescheduled AFTER UPDATE OF next_attempt_at, tenant ON outbox
WHEN OLD.state = 'pending' AND NEW.state = 'pending'
BEGIN
    UPDATE ticket_heads SET next_attempt_at = NEW.next_attempt_at, tenant = NEW.tenant WHERE seq = NEW.seq;
END;
DROP TRIGGER IF EXISTS outbox_head_finished;
CREATE TRIGGER outbox_head_finished AFTER UPDATE OF state ON outbox
WHEN OLD.state = 'pending' AND NEW.state <> 'pending'
BEGIN
",
    next_head_takes_over!(),
    "END;
DROP TRIGGER IF EXISTS outbox_head_replayed;
CREATE TRIGGER outbox_head_replayed AFTER UPDATE OF state ON outbox
WHEN OLD.state <> 'pending' AND NEW.state = 'pending'
BEGIN
    INSERT INTO ticket_heads (owner, direction, ticket, seq, tenant, next_attempt_at)
    VALUES (NEW.owner, NEW.direction, NEW.ticket, NEW.seq, NEW.tenant, NEW.next_attempt_at)
    ON CONFLICT (owner, direction, ticket) DO UPDATE
        SET seq = excluded.seq, tenant = excluded.tenant, next_attempt_at = excluded.next_attempt_at
        WHERE excluded.seq < ticket_heads.seq;
END;
DROP TRIGGER IF EXISTS outbox_head_deleted;
CREATE TRIGGER outbox_head_deleted AFTER DELETE ON outbox WHEN OLD.state = 'pending'
BEGIN
",
    next_head_takes_over!(),
    "END;
DELETE FROM ticket_heads;
INSERT INTO ticket_heads (owner, direction, ticket, seq, tenant, next_attempt_at)
SELECT owner, direction, ticket, MIN(seq), tenant, next_attempt_at FROM outbox
WHERE state = 'pending' GROUP BY owner, direction, ticket;
"
);

fn open_connection(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening the store {}", path.display()))?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;")?;
    // Plans that do not depend on bound values: without this, SQLite compiles a statement again
    // whenever the value bound to its `LIMIT` changes (the due read's, at each pass).
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(conn)
}

/// Brings a file written by an older bridge up to the current schema.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_column = |table: &str, name: &str| -> rusqlite::Result<bool> {
        conn.query_row(
            "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
            [table, name],
            |row| row.get::<_, i64>(0),
        )
        .map(|n| n > 0)
    };
    if !has_column("outbox", "owner")? {
        // Older rows were ordered per tenant; keep them so (a tenant name cannot collide with
        // an owner, which never starts with `tenant:`).
        conn.execute_batch(
            "ALTER TABLE outbox ADD COLUMN owner TEXT NOT NULL DEFAULT '';
             UPDATE outbox SET owner = 'tenant:' || tenant;",
        )?;
    }
    if !has_column("outbox", "retry_base")? {
        conn.execute_batch("ALTER TABLE outbox ADD COLUMN retry_base INTEGER NOT NULL DEFAULT 0;")?;
    }
    if !has_column("outbox", "lease_owner")? {
        conn.execute_batch("ALTER TABLE outbox ADD COLUMN lease_owner TEXT;")?;
    }
    if !has_column("outbox", "trace_context")? {
        conn.execute_batch("ALTER TABLE outbox ADD COLUMN trace_context TEXT;")?;
    }
    if !has_column("tickets", "contact_id")? {
        // Tickets remembered before contacts were: their contact is learnt at their next
        // Incoming event; until then no look-up of it is in the owner's scope.
        conn.execute_batch("ALTER TABLE tickets ADD COLUMN contact_id TEXT NOT NULL DEFAULT '';")?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts its writer thread.
    pub fn open(path: &Path, mode: CommitMode) -> anyhow::Result<SqliteStore> {
        Self::open_with(path, mode, crate::config::DEFAULT_WRITE_QUEUE, |_| Ok(()))
    }

    /// [`SqliteStore::open`] with a writer queue of `write_queue` writes, after running `setup`
    /// on the writer's connection (tests inject faults there).
    pub fn open_with(
        path: &Path,
        mode: CommitMode,
        write_queue: usize,
        setup: impl FnOnce(&Connection) -> rusqlite::Result<()>,
    ) -> anyhow::Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating the store directory {}", dir.display()))?;
        }
        let writer_conn = open_connection(path)?;
        (|| {
            writer_conn.execute_batch("BEGIN IMMEDIATE")?;
            let created = writer_conn
                .execute_batch(SCHEMA)
                .and_then(|()| migrate(&writer_conn))
                .and_then(|()| writer_conn.execute_batch(INDEXES))
                .and_then(|()| writer_conn.execute_batch(HEADS));
            writer_conn.execute_batch(if created.is_ok() { "COMMIT" } else { "ROLLBACK" })?;
            created?;
            setup(&writer_conn)
        })()
        .with_context(|| format!("initialising the store {}", path.display()))?;
        let reader = open_connection(path)?;
        let (tx, rx) = mpsc::channel(write_queue.max(1));
        let last_commit_ms = Arc::new(AtomicI64::new(0));
        let last_commit = last_commit_ms.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer::writer_loop(&writer_conn, rx, mode, &last_commit))
            .context("starting the store writer")?;
        Ok(SqliteStore {
            writer: tx,
            reader: Arc::new(Mutex::new(reader)),
            last_commit_ms,
        })
    }

    async fn write<T: Send + 'static>(
        &self,
        queueing: Queueing,
        f: impl FnMut(&Connection, i64) -> rusqlite::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (job, answer) = PendingWrite::queue(f);
        match queueing {
            Queueing::RefuseWhenFull => self.writer.try_send(job).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Busy,
                mpsc::error::TrySendError::Closed(_) => StoreError::Stopped,
            })?,
            Queueing::WaitForRoom => self.writer.send(job).await.map_err(|_| StoreError::Stopped)?,
        }
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// A read of a few rows by key (microseconds): run on the caller's thread when the reader
    /// connection is free, as handing it to the blocking pool and back costs ten times the read
    /// itself; otherwise queued like [`Self::read`], so a caller never blocks behind a long read.
    async fn point_read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> anyhow::Result<R> {
        let f = match self.reader.try_lock() {
            Ok(conn) => return f(&conn).context("store query failed"),
            Err(_) => f,
        };
        self.read(f).await
    }

    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> anyhow::Result<R> {
        let conn = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&conn)
        })
        .await
        .context("store task failed")?
        .context("store query failed")
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
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

    async fn due(&self, now: i64, limit: usize, skip_tenants: &[String]) -> anyhow::Result<Vec<Delivery>> {
        outbox::due(self, now, limit, skip_tenants).await
    }

    async fn next_due_after(&self, now: i64) -> anyhow::Result<Option<i64>> {
        outbox::next_due_after(self, now).await
    }

    async fn claim(&self, seq: i64, attempts: u32, lease: &Lease) -> anyhow::Result<bool> {
        outbox::claim(self, seq, attempts, lease).await
    }

    async fn release_all_leases(&self) -> anyhow::Result<usize> {
        outbox::release_all_leases(self).await
    }

    async fn renew(&self, seq: i64, attempt: u32, lease: &Lease) -> anyhow::Result<bool> {
        outbox::renew(self, seq, attempt, lease).await
    }

    async fn record(&self, seq: i64, attempt: u32, outcome: Outcome) -> anyhow::Result<bool> {
        outbox::record(self, seq, attempt, outcome).await
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
        self.write(Queueing::WaitForRoom, |c, now| {
            // A write the size of a small event: on a full disk it fails as an Incoming event
            // would, so readiness says what the next event would meet.
            c.prepare_cached(
                "INSERT INTO readiness_probe (id, at, pad) VALUES (1, ?1, randomblob(4096))
                 ON CONFLICT (id) DO UPDATE SET at = excluded.at, pad = excluded.pad",
            )?
            .execute(params![now])?;
            let synchronous: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
            let journal_mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
            Ok(StoreHealth {
                synchronous: match synchronous {
                    0 => "off",
                    1 => "normal",
                    2 => "full",
                    _ => "extra",
                }
                .into(),
                journal_mode,
                warnings: Vec::new(),
                clock_offset_ms: None,
                transport: None,
            })
        })
        .await
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
        replica_rows::heartbeat(self, replica).await
    }

    async fn replicas(&self) -> anyhow::Result<Vec<ReplicaStatus>> {
        replica_rows::replicas(self).await
    }
}

#[cfg(test)]
mod tests;
