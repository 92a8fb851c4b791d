//! The embedded [`Store`]: one SQLite file (WAL, `synchronous = FULL`) holds the outbox, dead
//! letters, idempotency and webhook keys, adapters' key-value data and what the bridge remembers
//! of tickets: one fsync domain.
//!
//! Every write goes through one writer thread that commits whatever has queued up in one
//! `BEGIN IMMEDIATE` transaction (group commit), so many concurrent requests share one disk
//! sync. Each write runs inside its own savepoint: one that fails is rolled back alone and the
//! others in the batch commit. The writer's queue is bounded: past it, writes made for a client
//! fail at once with [`StoreError::Busy`] instead of piling up in memory. Reads use their own
//! connection.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::{
    Accepted, DeadLetterFilter, Delivery, Direction, KvWrite, Lease, NewDelivery, OutboxStats, Outcome, PurgeBefore,
    Store, StoreError, StoreHealth, StoredResponse, TenantBacklog, TicketInfo, WebhookAccepted,
};
use crate::clock;
use crate::store::{FORGET_AFTER, ReplicaStatus};

/// How the writer commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// Everything queued while the previous commit ran goes into one transaction.
    Group,
    /// One transaction (and disk sync) per write; for comparison in benchmarks.
    PerWrite,
}

/// Rows one purge step deletes: a purge never holds the writer for long.
const PURGE_BATCH: usize = 1000;
/// Writes committed in one transaction at most.
const MAX_BATCH: usize = 1024;

/// Answers a write once its transaction's fate is known (`Some(error)` when the commit failed).
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;
/// One write: runs inside its savepoint at the given time (or is not run, `None`, when the
/// transaction could not start), says whether it succeeded, and how to answer once the commit
/// is known.
type Job = Box<dyn FnOnce(Option<(&Connection, i64)>) -> (bool, Answer) + Send>;

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
    lease_owner TEXT                -- the replica running an attempt, while leased
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
DROP INDEX IF EXISTS outbox_due;
CREATE INDEX IF NOT EXISTS ticket_heads_due ON ticket_heads (next_attempt_at, seq);
CREATE INDEX IF NOT EXISTS outbox_finished ON outbox (state, finished_at);
CREATE INDEX IF NOT EXISTS idempotency_age ON idempotency (created_at);
CREATE INDEX IF NOT EXISTS webhooks_age ON webhooks (created_at);
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
            .spawn(move || writer_loop(&writer_conn, rx, mode, &last_commit))
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
        f: impl FnOnce(&Connection, i64) -> rusqlite::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (reply, answer) = oneshot::channel::<anyhow::Result<T>>();
        let job: Job = Box::new(move |run| {
            let result = run.map(|(conn, now)| f(conn, now));
            let ok = matches!(result, Some(Ok(_)));
            let answer: Answer = Box::new(move |commit_error| {
                let result = match (commit_error, result) {
                    (Some(e), _) => Err(anyhow::anyhow!("{e}")),
                    (None, Some(r)) => r.map_err(anyhow::Error::from),
                    (None, None) => Err(anyhow::anyhow!("the store write did not run")),
                };
                let _ = reply.send(result);
            });
            (ok, answer)
        });
        match queueing {
            Queueing::RefuseWhenFull => self.writer.try_send(job).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Busy,
                mpsc::error::TrySendError::Closed(_) => StoreError::Stopped,
            })?,
            Queueing::WaitForRoom => self.writer.send(job).await.map_err(|_| StoreError::Stopped)?,
        }
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// Deletes the rows of `table` (whose key is `key`) matching `condition` with `values`,
    /// [`PURGE_BATCH`] rows per write, so a large purge never holds the writer for long.
    async fn delete_in_batches(
        &self,
        table: &'static str,
        key: &'static str,
        condition: String,
        values: Vec<SqlValue>,
    ) -> anyhow::Result<usize> {
        let sql = format!(
            "DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {condition} LIMIT {PURGE_BATCH})"
        );
        let mut total = 0;
        loop {
            let (sql, values) = (sql.clone(), values.clone());
            let deleted = self
                .write(Queueing::WaitForRoom, move |c, _| {
                    c.prepare_cached(&sql)?.execute(rusqlite::params_from_iter(values))
                })
                .await?;
            total += deleted;
            if deleted < PURGE_BATCH {
                return Ok(total);
            }
        }
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

/// Applies queued writes, many per transaction in [`CommitMode::Group`], each in a savepoint.
fn writer_loop(conn: &Connection, mut rx: mpsc::Receiver<Job>, mode: CommitMode, last_commit: &AtomicI64) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        if mode == CommitMode::Group {
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        let now = clock::now_ms();
        let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
        let mut failure = conn.execute_batch("BEGIN IMMEDIATE").err();
        for job in batch {
            if failure.is_some() {
                answers.push(job(None).1);
                continue;
            }
            if let Err(e) = conn.execute_batch("SAVEPOINT write") {
                failure = Some(e);
                answers.push(job(None).1);
                continue;
            }
            let (ok, answer) = job(Some((conn, now)));
            answers.push(answer);
            let end = if ok {
                "RELEASE write"
            } else {
                "ROLLBACK TO write; RELEASE write"
            };
            failure = conn.execute_batch(end).err();
        }
        if failure.is_none() {
            failure = conn.execute_batch("COMMIT").err();
        }
        // A failed COMMIT can leave the transaction open (a deferred constraint, say); the next
        // batch must not run inside it.
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let failure = failure.map(|e| format!("store commit failed: {e}"));
        if failure.is_none() {
            last_commit.store(clock::now_ms(), Ordering::Relaxed);
        }
        for answer in answers {
            answer(failure.as_deref());
        }
    }
}

fn enqueue(conn: &Connection, items: Vec<NewDelivery>, window: Duration, now: i64) -> rusqlite::Result<Vec<Accepted>> {
    let window_start = now - window.as_millis() as i64;
    let mut accepted = Vec::with_capacity(items.len());
    for item in items {
        if let Some(info) = &item.ticket_info {
            remember_ticket(conn, &item.owner, &item.ticket, info, now)?;
        }
        if let Some(key) = &item.idempotency_key {
            let earlier: Option<String> = conn
                .prepare_cached(
                    "SELECT delivery_id FROM idempotency WHERE tenant = ?1 AND key = ?2 AND created_at > ?3",
                )?
                .query_row(params![item.tenant, key, window_start], |row| row.get(0))
                .optional()?;
            if let Some(delivery_id) = earlier {
                accepted.push(Accepted {
                    delivery_id,
                    duplicate: true,
                });
                continue;
            }
            conn.prepare_cached(
                "INSERT INTO idempotency (tenant, key, delivery_id, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, key) DO UPDATE SET delivery_id = excluded.delivery_id,
                     created_at = excluded.created_at",
            )?
            .execute(params![item.tenant, key, item.delivery_id, now])?;
        }
        conn.prepare_cached(
            "INSERT INTO outbox (delivery_id, tenant, owner, direction, ticket, payload, state, created_at, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)",
        )?
        .execute(params![
            item.delivery_id,
            item.tenant,
            item.owner,
            item.direction.as_str(),
            item.ticket,
            item.payload,
            now
        ])?;
        accepted.push(Accepted {
            delivery_id: item.delivery_id,
            duplicate: false,
        });
    }
    Ok(accepted)
}

/// Remembers (or updates) what is known of `owner`'s `ticket`.
fn remember_ticket(conn: &Connection, owner: &str, ticket: &str, info: &TicketInfo, now: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO tickets (owner, ticket_number, channel, customer_name, contact_id, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (owner, ticket_number) DO UPDATE SET channel = excluded.channel,
             customer_name = excluded.customer_name, contact_id = excluded.contact_id,
             updated_at = excluded.updated_at",
    )?
    .execute(params![
        owner,
        ticket,
        info.channel,
        info.customer_name,
        info.contact_id,
        now
    ])
    .map(drop)
}

/// The answer stored since `since` for the first of `keys` that has one.
fn webhook_response(
    conn: &Connection,
    tenant: &str,
    keys: &[String],
    since: i64,
) -> rusqlite::Result<Option<StoredResponse>> {
    let mut select = conn.prepare_cached(
        "SELECT status, headers, body FROM webhooks WHERE tenant = ?1 AND key = ?2 AND created_at > ?3",
    )?;
    for key in keys {
        let found = select
            .query_row(params![tenant, key, since], |row| {
                let headers: String = row.get(1)?;
                Ok(StoredResponse {
                    status: row.get(0)?,
                    headers: serde_json::from_str(&headers).unwrap_or_default(),
                    body: row.get(2)?,
                })
            })
            .optional()?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

const DELIVERY_COLUMNS: &str = "seq, delivery_id, tenant, owner, direction, ticket, payload, attempts, retry_base, state, \
     last_error, created_at, next_attempt_at, lease_owner";

fn delivery_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        seq: row.get(0)?,
        delivery_id: row.get(1)?,
        tenant: row.get(2)?,
        owner: row.get(3)?,
        direction: Direction::parse(&row.get::<_, String>(4)?),
        ticket: row.get(5)?,
        payload: row.get(6)?,
        attempts: row.get(7)?,
        retry_base: row.get(8)?,
        state: row.get(9)?,
        last_error: row.get(10)?,
        created_at: row.get(11)?,
        next_attempt_at: row.get(12)?,
        lease_owner: row.get(13)?,
    })
}

/// `WHERE` fragment and parameters selecting dead letters by `filter` (parameters from `?2`).
fn dead_letter_condition(filter: &DeadLetterFilter) -> (&'static str, Option<String>) {
    match filter {
        DeadLetterFilter::One(id) => ("state = 'dead' AND delivery_id = ?2", Some(id.clone())),
        DeadLetterFilter::Tenant(tenant) => ("state = 'dead' AND tenant = ?2", Some(tenant.clone())),
        DeadLetterFilter::All => ("state = 'dead' AND ?2 IS NULL", None),
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn enqueue(&self, deliveries: Vec<NewDelivery>, window: Duration) -> anyhow::Result<Vec<Accepted>> {
        self.write(Queueing::RefuseWhenFull, move |c, now| {
            enqueue(c, deliveries, window, now)
        })
        .await
    }

    async fn accept_webhook(
        &self,
        tenant: &str,
        keys: &[String],
        response: StoredResponse,
        deliveries: Vec<NewDelivery>,
        window: Duration,
    ) -> anyhow::Result<WebhookAccepted> {
        let (tenant, keys) = (tenant.to_string(), keys.to_vec());
        self.write(Queueing::RefuseWhenFull, move |c, now| {
            if let Some(first) = webhook_response(c, &tenant, &keys, now - window.as_millis() as i64)? {
                return Ok(WebhookAccepted::Duplicate(first));
            }
            let headers = serde_json::to_string(&response.headers).expect("headers serialize");
            let mut insert = c.prepare_cached(
                "INSERT INTO webhooks (tenant, key, status, headers, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant, key) DO UPDATE SET status = excluded.status, headers = excluded.headers,
                     body = excluded.body, created_at = excluded.created_at",
            )?;
            for key in &keys {
                insert.execute(params![tenant, key, response.status, headers, response.body, now])?;
            }
            enqueue(c, deliveries, Duration::ZERO, now).map(WebhookAccepted::New)
        })
        .await
    }

    async fn webhook_response(
        &self,
        tenant: &str,
        keys: &[String],
        window: Duration,
    ) -> anyhow::Result<Option<StoredResponse>> {
        let (tenant, keys) = (tenant.to_string(), keys.to_vec());
        let since = clock::now_ms() - window.as_millis() as i64;
        self.read(move |c| webhook_response(c, &tenant, &keys, since)).await
    }

    async fn due(&self, now: i64, limit: usize, skip_tenants: &[String]) -> anyhow::Result<Vec<Delivery>> {
        let skip = serde_json::to_string(skip_tenants).expect("names serialize");
        self.read(move |c| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE seq IN (
                     SELECT seq FROM ticket_heads
                     WHERE next_attempt_at <= ?1 AND tenant NOT IN (SELECT value FROM json_each(?3))
                     ORDER BY next_attempt_at, seq LIMIT ?2)
                 ORDER BY next_attempt_at, seq"
            );
            let mut statement = c.prepare_cached(&sql)?;
            let rows = statement.query_map(params![now, limit as i64, skip], delivery_row)?;
            rows.collect()
        })
        .await
    }

    async fn next_due_after(&self, now: i64) -> anyhow::Result<Option<i64>> {
        self.read(move |c| {
            c.prepare_cached("SELECT MIN(next_attempt_at) FROM ticket_heads WHERE next_attempt_at > ?1")?
                .query_row(params![now], |r| r.get(0))
        })
        .await
    }

    async fn claim(&self, seq: i64, attempts: u32, lease: &Lease) -> anyhow::Result<bool> {
        let (owner, until) = (lease.owner.clone(), lease.until_ms);
        self.write(Queueing::WaitForRoom, move |c, _| {
            c.prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?3, lease_owner = ?4
                 WHERE seq = ?1 AND state = 'pending' AND attempts = ?2",
            )?
            .execute(params![seq, attempts, until, owner])
            .map(|n| n == 1)
        })
        .await
    }

    async fn release_all_leases(&self) -> anyhow::Result<usize> {
        self.write(Queueing::WaitForRoom, move |c, now| {
            c.execute(
                "UPDATE outbox SET next_attempt_at = ?1, lease_owner = NULL
                 WHERE state = 'pending' AND lease_owner IS NOT NULL",
                params![now],
            )
        })
        .await
    }

    async fn renew(&self, seq: i64, attempt: u32, lease: &Lease) -> anyhow::Result<bool> {
        let (owner, until) = (lease.owner.clone(), lease.until_ms);
        self.write(Queueing::WaitForRoom, move |c, _| {
            c.prepare_cached(
                "UPDATE outbox SET next_attempt_at = ?3
                 WHERE seq = ?1 AND state = 'pending' AND attempts = ?2 AND lease_owner = ?4",
            )?
            .execute(params![seq, attempt, until, owner])
            .map(|n| n == 1)
        })
        .await
    }

    async fn record(&self, seq: i64, attempt: u32, outcome: Outcome) -> anyhow::Result<bool> {
        self.write(Queueing::WaitForRoom, move |c, now| {
            let changed = match outcome {
                Outcome::Delivered => c
                    .prepare_cached(
                        "UPDATE outbox SET state = 'delivered', finished_at = ?3, last_error = NULL, lease_owner = NULL
                         WHERE seq = ?1 AND state = 'pending' AND attempts = ?2",
                    )?
                    .execute(params![seq, attempt, now])?,
                Outcome::RetryAt(at, error) => c
                    .prepare_cached(
                        "UPDATE outbox SET next_attempt_at = ?3, last_error = ?4, lease_owner = NULL
                         WHERE seq = ?1 AND state = 'pending' AND attempts = ?2",
                    )?
                    .execute(params![seq, attempt, at, error])?,
                Outcome::Dead(error) => c
                    .prepare_cached(
                        "UPDATE outbox SET state = 'dead', last_error = ?3, finished_at = ?4, lease_owner = NULL
                         WHERE seq = ?1 AND state = 'pending' AND attempts = ?2",
                    )?
                    .execute(params![seq, attempt, error, now])?,
                Outcome::NotAttempted(at, error) => c
                    .prepare_cached(
                        "UPDATE outbox SET attempts = attempts - 1, next_attempt_at = ?3, last_error = ?4, lease_owner = NULL
                         WHERE seq = ?1 AND state = 'pending' AND attempts = ?2",
                    )?
                    .execute(params![seq, attempt, at, error])?,
            };
            Ok(changed == 1)
        })
        .await
    }

    async fn dead_letters(&self, tenant: Option<&str>, limit: usize) -> anyhow::Result<Vec<Delivery>> {
        let tenant = tenant.map(str::to_string);
        self.read(move |c| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE state = 'dead' AND (?1 IS NULL OR tenant = ?1)
                 ORDER BY seq LIMIT ?2"
            );
            let mut statement = c.prepare_cached(&sql)?;
            let rows = statement.query_map(params![tenant, limit as i64], delivery_row)?;
            rows.collect()
        })
        .await
    }

    async fn delivery(&self, delivery_id: &str) -> anyhow::Result<Option<Delivery>> {
        let id = delivery_id.to_string();
        self.read(move |c| {
            c.query_row(
                &format!("SELECT {DELIVERY_COLUMNS} FROM outbox WHERE delivery_id = ?1"),
                params![id],
                delivery_row,
            )
            .optional()
        })
        .await
    }

    async fn replay(&self, filter: DeadLetterFilter, to_tenant: Option<&str>) -> anyhow::Result<usize> {
        let to_tenant = to_tenant.map(str::to_string);
        self.write(Queueing::WaitForRoom, move |c, now| {
            let (condition, value) = dead_letter_condition(&filter);
            c.execute(
                &format!(
                    "UPDATE outbox SET state = 'pending', retry_base = attempts, next_attempt_at = ?1,
                         finished_at = NULL, tenant = COALESCE(?3, tenant)
                     WHERE {condition}"
                ),
                params![now, value, to_tenant],
            )
        })
        .await
    }

    async fn purge_dead_letters(&self, filter: DeadLetterFilter, before_ms: i64) -> anyhow::Result<usize> {
        let (condition, value) = dead_letter_condition(&filter);
        let value = value.map_or(SqlValue::Null, SqlValue::Text);
        self.delete_in_batches(
            "outbox",
            "seq",
            format!("{condition} AND finished_at < ?1"),
            vec![SqlValue::Integer(before_ms), value],
        )
        .await
    }

    async fn purge(&self, before: PurgeBefore) -> anyhow::Result<usize> {
        let steps = [
            (
                "outbox",
                "seq",
                "state = 'delivered' AND finished_at < ?1",
                Some(before.delivered),
            ),
            (
                "outbox",
                "seq",
                "state = 'dead' AND finished_at < ?1",
                before.dead_letters,
            ),
            (
                "idempotency",
                "tenant, key",
                "created_at < ?1",
                Some(before.idempotency_keys),
            ),
            ("webhooks", "tenant, key", "created_at < ?1", Some(before.webhook_keys)),
            (
                "tickets",
                "owner, ticket_number",
                "updated_at < ?1",
                Some(before.tickets),
            ),
        ];
        let mut events = 0;
        for (table, key, condition, before) in steps {
            let Some(before) = before else { continue };
            let deleted = self
                .delete_in_batches(table, key, condition.to_string(), vec![SqlValue::Integer(before)])
                .await?;
            if table == "outbox" {
                events += deleted;
            }
        }
        Ok(events)
    }

    async fn stats(&self) -> anyhow::Result<OutboxStats> {
        self.read(|c| {
            let mut stats = OutboxStats::default();
            let mut statement = c.prepare_cached("SELECT state, COUNT(*) FROM outbox GROUP BY state")?;
            let rows = statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
            for row in rows {
                let (state, count) = row?;
                match state.as_str() {
                    "pending" => stats.pending = count,
                    "delivered" => stats.delivered = count,
                    "dead" => stats.dead = count,
                    _ => {}
                }
            }
            Ok(stats)
        })
        .await
    }

    async fn backlog_by_tenant(&self) -> anyhow::Result<Vec<TenantBacklog>> {
        self.read(|c| {
            let mut statement = c.prepare_cached(
                "SELECT tenant, COUNT(*), MIN(created_at) FROM outbox WHERE state = 'pending'
                 GROUP BY tenant ORDER BY tenant",
            )?;
            let rows = statement.query_map([], |r| {
                Ok(TenantBacklog {
                    tenant: r.get(0)?,
                    pending: r.get(1)?,
                    oldest_created_at: r.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
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
        let (tenant, key) = (tenant.to_string(), key.to_string());
        self.point_read(move |c| {
            c.prepare_cached("SELECT value FROM kv WHERE tenant = ?1 AND key = ?2")?
                .query_row(params![tenant, key], |row| row.get(0))
                .optional()
        })
        .await
    }

    async fn kv_set(&self, tenant: &str, key: &str, value: Vec<u8>, quota: u64) -> anyhow::Result<KvWrite> {
        let (tenant, key) = (tenant.to_string(), key.to_string());
        self.write(Queueing::RefuseWhenFull, move |c, _| {
            // What the tenant holds besides this key, counted where the rows are: the check and
            // the write are one step of the one writer, so concurrent calls cannot both pass it.
            let others: i64 = c
                .prepare_cached(
                    "SELECT COALESCE(SUM(length(key) + length(value)), 0) FROM kv WHERE tenant = ?1 AND key <> ?2",
                )?
                .query_row(params![tenant, key], |r| r.get(0))?;
            if others as u64 + (key.len() + value.len()) as u64 > quota {
                return Ok(KvWrite::OverQuota);
            }
            c.prepare_cached(
                "INSERT INTO kv (tenant, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![tenant, key, value])?;
            Ok(KvWrite::Stored)
        })
        .await
    }

    async fn kv_delete(&self, tenant: &str, key: &str) -> anyhow::Result<()> {
        let (tenant, key) = (tenant.to_string(), key.to_string());
        self.write(Queueing::RefuseWhenFull, move |c, _| {
            c.execute("DELETE FROM kv WHERE tenant = ?1 AND key = ?2", params![tenant, key])
                .map(drop)
        })
        .await
    }

    async fn ticket(&self, owner: &str, ticket: &str) -> anyhow::Result<Option<TicketInfo>> {
        let (owner, ticket) = (owner.to_string(), ticket.to_string());
        self.point_read(move |c| {
            c.prepare_cached(
                "SELECT channel, customer_name, contact_id FROM tickets WHERE owner = ?1 AND ticket_number = ?2",
            )?
            .query_row(params![owner, ticket], |row| {
                Ok(TicketInfo {
                    channel: row.get(0)?,
                    customer_name: row.get(1)?,
                    contact_id: row.get(2)?,
                })
            })
            .optional()
        })
        .await
    }

    async fn is_contact_of_owner(&self, owner: &str, contact_id: &str) -> anyhow::Result<bool> {
        // Tickets remembered before contacts were have '' as their contact: never a match.
        if contact_id.is_empty() {
            return Ok(false);
        }
        let (owner, contact_id) = (owner.to_string(), contact_id.to_string());
        self.point_read(move |c| {
            c.prepare_cached("SELECT EXISTS (SELECT 1 FROM tickets WHERE owner = ?1 AND contact_id = ?2)")?
                .query_row(params![owner, contact_id], |row| row.get(0))
        })
        .await
    }

    async fn heartbeat(&self, replica: &ReplicaStatus) -> anyhow::Result<()> {
        let adapters = replica.adapters_json();
        let replica = replica.clone();
        let forget_before = clock::now_ms() - FORGET_AFTER.as_millis() as i64;
        self.write(Queueing::WaitForRoom, move |c, _| {
            c.prepare_cached(
                "INSERT INTO replicas (replica_id, started_at, last_seen, listen, adapters)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (replica_id) DO UPDATE SET started_at = excluded.started_at,
                   last_seen = excluded.last_seen, listen = excluded.listen, adapters = excluded.adapters",
            )?
            .execute(params![
                replica.replica_id,
                replica.started_at,
                replica.last_seen,
                replica.listen,
                adapters
            ])?;
            c.prepare_cached("DELETE FROM replicas WHERE last_seen < ?1")?
                .execute(params![forget_before])
                .map(drop)
        })
        .await
    }

    async fn replicas(&self) -> anyhow::Result<Vec<ReplicaStatus>> {
        let now = clock::now_ms();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT replica_id, started_at, last_seen, listen, adapters FROM replicas ORDER BY replica_id",
            )?
            .query_map([], |row| {
                let last_seen: i64 = row.get(2)?;
                let adapters: String = row.get(4)?;
                Ok(ReplicaStatus {
                    replica_id: row.get(0)?,
                    started_at: row.get(1)?,
                    last_seen,
                    listen: row.get(3)?,
                    adapters: ReplicaStatus::parse_adapters(&adapters),
                    stale: ReplicaStatus::is_stale(last_seen, now),
                })
            })?
            .collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests;
