//! Persistence: the [`Store`] trait and its embedded implementation, [`SqliteStore`].
//!
//! One SQLite file (WAL) holds the outbox, dead letters, idempotency keys, adapters' key-value
//! data and what the bridge remembers of tickets: one fsync domain. Every write goes through one
//! writer thread that commits whatever has queued up in one transaction (group commit), so many
//! concurrent requests share one disk sync. Reads use their own connection.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use tokio::sync::oneshot;

/// What the bridge remembers of a ticket from its Incoming events, to complete the Outgoing and
/// Command events an adapter produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketInfo {
    pub channel: String,
    pub customer_name: String,
}

/// Which way a delivery goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// An Incoming event, delivered through the tenant's adapter to the vendor.
    ToVendor,
    /// An Outgoing or Command event, posted to 3Dolphins.
    #[serde(rename = "to_3dolphins")]
    ToThreeDolphins,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::ToVendor => "to_vendor",
            Direction::ToThreeDolphins => "to_3dolphins",
        }
    }

    fn parse(text: &str) -> Direction {
        if text == "to_vendor" {
            Direction::ToVendor
        } else {
            Direction::ToThreeDolphins
        }
    }
}

/// An event to persist before it is acknowledged.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub delivery_id: String,
    pub tenant: String,
    pub direction: Direction,
    /// Events of one (tenant, direction, ticket) are delivered in the order accepted.
    pub ticket: String,
    /// The event as JSON.
    pub payload: String,
    /// When set, a second delivery with the same key (per tenant) inside the idempotency window
    /// is not stored; the first one's id is returned instead.
    pub idempotency_key: Option<String>,
}

/// The answer to [`Store::enqueue`] for one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub delivery_id: String,
    /// True when an earlier delivery with the same idempotency key was found.
    pub duplicate: bool,
}

/// A stored delivery.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Acceptance order.
    pub seq: i64,
    pub delivery_id: String,
    pub tenant: String,
    pub direction: Direction,
    pub ticket: String,
    pub payload: String,
    /// Attempts made so far.
    pub attempts: u32,
    pub state: String,
    pub last_error: Option<String>,
    /// Epoch milliseconds.
    pub created_at: i64,
    pub next_attempt_at: i64,
}

impl Delivery {
    /// The key deliveries are ordered by.
    pub fn order_key(&self) -> (String, Direction, String) {
        (self.tenant.clone(), self.direction, self.ticket.clone())
    }
}

/// Which dead letters to replay or list.
#[derive(Debug, Clone)]
pub enum DeadLetterFilter {
    One(String),
    Tenant(String),
    All,
}

/// Counts of deliveries by state.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct OutboxStats {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
}

/// The bridge's persistence. One embedded implementation now; the trait lets a shared database
/// serve several bridge replicas later.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Persists deliveries durably (committed to disk) before returning.
    async fn enqueue(
        &self,
        deliveries: Vec<NewDelivery>,
        idempotency_window: Duration,
    ) -> anyhow::Result<Vec<Accepted>>;
    /// Up to `limit` deliveries that are due now and first pending of their ticket.
    async fn due(&self, now_ms: i64, limit: usize) -> anyhow::Result<Vec<Delivery>>;
    /// The earliest `next_attempt_at` of any pending delivery.
    async fn next_due_at(&self) -> anyhow::Result<Option<i64>>;
    /// Whether the delivery is still pending with `attempts` attempts made, as the last write
    /// left it (reads may lag behind writes that are committing).
    async fn still_due(&self, seq: i64, attempts: u32) -> anyhow::Result<bool>;
    async fn mark_delivered(&self, seq: i64) -> anyhow::Result<()>;
    /// Records a failed attempt and when to try again.
    async fn retry_at(&self, seq: i64, at_ms: i64, error: &str) -> anyhow::Result<()>;
    /// Records a final failure: the delivery becomes a dead letter.
    async fn dead_letter(&self, seq: i64, error: &str) -> anyhow::Result<()>;
    async fn dead_letters(&self, tenant: Option<&str>, limit: usize) -> anyhow::Result<Vec<Delivery>>;
    async fn delivery(&self, delivery_id: &str) -> anyhow::Result<Option<Delivery>>;
    /// Makes matching dead letters pending again (attempts reset); returns how many.
    async fn replay(&self, filter: DeadLetterFilter) -> anyhow::Result<usize>;
    /// Deletes delivered events and idempotency keys older than the given times.
    async fn purge(&self, delivered_before_ms: i64, keys_before_ms: i64) -> anyhow::Result<usize>;
    async fn stats(&self) -> anyhow::Result<OutboxStats>;

    async fn kv_get(&self, tenant: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>>;
    async fn kv_set(&self, tenant: &str, key: &str, value: Vec<u8>) -> anyhow::Result<()>;
    async fn kv_delete(&self, tenant: &str, key: &str) -> anyhow::Result<()>;
    async fn remember_ticket(&self, owner: &str, ticket: &str, info: TicketInfo) -> anyhow::Result<()>;
    async fn ticket(&self, owner: &str, ticket: &str) -> anyhow::Result<Option<TicketInfo>>;
}

/// How the writer commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// Everything queued while the previous commit ran goes into one transaction.
    Group,
    /// One transaction (and disk sync) per write; for comparison in benchmarks.
    PerWrite,
}

/// Current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

type Reply<T> = oneshot::Sender<anyhow::Result<T>>;

/// Answers a write once its transaction's fate is known (`Some(error)` when the commit failed).
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

enum Write {
    Enqueue(Vec<NewDelivery>, Duration, Reply<Vec<Accepted>>),
    StillDue(i64, u32, Reply<bool>),
    Delivered(i64, Reply<()>),
    Retry(i64, i64, String, Reply<()>),
    Dead(i64, String, Reply<()>),
    Replay(DeadLetterFilter, Reply<usize>),
    Purge(i64, i64, Reply<usize>),
    KvSet(String, String, Vec<u8>, Reply<()>),
    KvDelete(String, String, Reply<()>),
    Ticket(String, String, TicketInfo, Reply<()>),
}

/// The embedded [`Store`]: SQLite in WAL mode with `synchronous = FULL`.
pub struct SqliteStore {
    writer: std::sync::mpsc::Sender<Write>,
    reader: Arc<Mutex<Connection>>,
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
    finished_at INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (tenant, direction, ticket, seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_finished ON outbox (state, finished_at);
CREATE TABLE IF NOT EXISTS idempotency (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
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
    PRIMARY KEY (owner, ticket_number)
) WITHOUT ROWID;
";

fn open_connection(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("opening the store {}", path.display()))?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;")?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts its writer thread.
    pub fn open(path: &Path, mode: CommitMode) -> anyhow::Result<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating the store directory {}", dir.display()))?;
        }
        let mut writer_conn = open_connection(path)?;
        writer_conn
            .execute_batch(SCHEMA)
            .with_context(|| format!("initialising the store {}", path.display()))?;
        let reader = open_connection(path)?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(&mut writer_conn, rx, mode))
            .context("starting the store writer")?;
        Ok(SqliteStore {
            writer: tx,
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    async fn write<T>(&self, make: impl FnOnce(Reply<T>) -> Write) -> anyhow::Result<T> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(make(tx))
            .map_err(|_| anyhow::anyhow!("the store writer has stopped"))?;
        rx.await.context("the store writer dropped a write")?
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

/// Applies queued writes, many per transaction in [`CommitMode::Group`].
fn writer_loop(conn: &mut Connection, rx: std::sync::mpsc::Receiver<Write>, mode: CommitMode) {
    const MAX_BATCH: usize = 1024;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        if mode == CommitMode::Group {
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(write) => batch.push(write),
                    Err(_) => break,
                }
            }
        }
        let mut replies: Vec<Answer> = Vec::with_capacity(batch.len());
        let outcome = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for write in batch {
                replies.push(apply(&tx, write));
            }
            tx.commit()
        })();
        let failure = outcome.err().map(|e| format!("store commit failed: {e}"));
        for reply in replies {
            reply(failure.as_deref());
        }
    }
}

/// Applies one write inside `tx`; returns how to answer once the commit is known.
fn apply(tx: &Transaction<'_>, write: Write) -> Answer {
    fn answer<T: Send + 'static>(reply: Reply<T>, result: rusqlite::Result<T>) -> Answer {
        Box::new(move |commit_error: Option<&str>| {
            let result = match (commit_error, result) {
                (Some(e), _) => Err(anyhow::anyhow!("{e}")),
                (None, r) => r.map_err(anyhow::Error::from),
            };
            let _ = reply.send(result);
        })
    }
    let now = now_ms();
    match write {
        Write::Enqueue(items, window, reply) => answer(reply, enqueue(tx, items, window, now)),
        Write::StillDue(seq, attempts, reply) => answer(
            reply,
            tx.query_row(
                "SELECT COUNT(*) FROM outbox WHERE seq = ?1 AND state = 'pending' AND attempts = ?2",
                params![seq, attempts],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n == 1),
        ),
        Write::Delivered(seq, reply) => answer(
            reply,
            tx.execute(
                "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, finished_at = ?2, last_error = NULL
                 WHERE seq = ?1",
                params![seq, now],
            )
            .map(drop),
        ),
        Write::Retry(seq, at, error, reply) => answer(
            reply,
            tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3 WHERE seq = ?1",
                params![seq, at, error],
            )
            .map(drop),
        ),
        Write::Dead(seq, error, reply) => answer(
            reply,
            tx.execute(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?2, finished_at = ?3
                 WHERE seq = ?1",
                params![seq, error, now],
            )
            .map(drop),
        ),
        Write::Replay(filter, reply) => {
            let sql = "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?1, finished_at = NULL
                       WHERE state = 'dead'";
            let result = match filter {
                DeadLetterFilter::One(id) => tx.execute(&format!("{sql} AND delivery_id = ?2"), params![now, id]),
                DeadLetterFilter::Tenant(t) => tx.execute(&format!("{sql} AND tenant = ?2"), params![now, t]),
                DeadLetterFilter::All => tx.execute(sql, params![now]),
            };
            answer(reply, result)
        }
        Write::Purge(delivered_before, keys_before, reply) => {
            let result = (|| {
                let events = tx.execute(
                    "DELETE FROM outbox WHERE state = 'delivered' AND finished_at < ?1",
                    params![delivered_before],
                )?;
                tx.execute("DELETE FROM idempotency WHERE created_at < ?1", params![keys_before])?;
                Ok(events)
            })();
            answer(reply, result)
        }
        Write::KvSet(tenant, key, value, reply) => answer(
            reply,
            tx.execute(
                "INSERT INTO kv (tenant, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant, key) DO UPDATE SET value = excluded.value",
                params![tenant, key, value],
            )
            .map(drop),
        ),
        Write::KvDelete(tenant, key, reply) => answer(
            reply,
            tx.execute("DELETE FROM kv WHERE tenant = ?1 AND key = ?2", params![tenant, key])
                .map(drop),
        ),
        Write::Ticket(owner, ticket, info, reply) => answer(
            reply,
            tx.execute(
                "INSERT INTO tickets (owner, ticket_number, channel, customer_name, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (owner, ticket_number) DO UPDATE SET channel = excluded.channel,
                     customer_name = excluded.customer_name, updated_at = excluded.updated_at",
                params![owner, ticket, info.channel, info.customer_name, now],
            )
            .map(drop),
        ),
    }
}

fn enqueue(
    tx: &Transaction<'_>,
    items: Vec<NewDelivery>,
    window: Duration,
    now: i64,
) -> rusqlite::Result<Vec<Accepted>> {
    let window_start = now - window.as_millis() as i64;
    let mut accepted = Vec::with_capacity(items.len());
    for item in items {
        if let Some(key) = &item.idempotency_key {
            let earlier: Option<String> = tx
                .query_row(
                    "SELECT delivery_id FROM idempotency WHERE tenant = ?1 AND key = ?2 AND created_at > ?3",
                    params![item.tenant, key, window_start],
                    |row| row.get(0),
                )
                .optional()?;
            if let Some(delivery_id) = earlier {
                accepted.push(Accepted {
                    delivery_id,
                    duplicate: true,
                });
                continue;
            }
            tx.execute(
                "INSERT INTO idempotency (tenant, key, delivery_id, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, key) DO UPDATE SET delivery_id = excluded.delivery_id,
                     created_at = excluded.created_at",
                params![item.tenant, key, item.delivery_id, now],
            )?;
        }
        tx.execute(
            "INSERT INTO outbox (delivery_id, tenant, direction, ticket, payload, state, created_at, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6)",
            params![
                item.delivery_id,
                item.tenant,
                item.direction.as_str(),
                item.ticket,
                item.payload,
                now
            ],
        )?;
        accepted.push(Accepted {
            delivery_id: item.delivery_id,
            duplicate: false,
        });
    }
    Ok(accepted)
}

const DELIVERY_COLUMNS: &str =
    "seq, delivery_id, tenant, direction, ticket, payload, attempts, state, last_error, created_at, next_attempt_at";

fn delivery_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        seq: row.get(0)?,
        delivery_id: row.get(1)?,
        tenant: row.get(2)?,
        direction: Direction::parse(&row.get::<_, String>(3)?),
        ticket: row.get(4)?,
        payload: row.get(5)?,
        attempts: row.get(6)?,
        state: row.get(7)?,
        last_error: row.get(8)?,
        created_at: row.get(9)?,
        next_attempt_at: row.get(10)?,
    })
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn enqueue(&self, deliveries: Vec<NewDelivery>, window: Duration) -> anyhow::Result<Vec<Accepted>> {
        self.write(|reply| Write::Enqueue(deliveries, window, reply)).await
    }

    async fn due(&self, now: i64, limit: usize) -> anyhow::Result<Vec<Delivery>> {
        self.read(move |c| {
            // The head (lowest seq still pending) of each ticket, if it is due.
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM outbox o
                 WHERE o.state = 'pending' AND o.next_attempt_at <= ?1
                   AND o.seq = (SELECT MIN(seq) FROM outbox h WHERE h.state = 'pending'
                                AND h.tenant = o.tenant AND h.direction = o.direction AND h.ticket = o.ticket)
                 ORDER BY o.next_attempt_at, o.seq LIMIT ?2"
            );
            let mut statement = c.prepare_cached(&sql)?;
            let rows = statement.query_map(params![now, limit as i64], delivery_row)?;
            rows.collect()
        })
        .await
    }

    async fn next_due_at(&self) -> anyhow::Result<Option<i64>> {
        self.read(|c| {
            c.query_row(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
        })
        .await
    }

    async fn still_due(&self, seq: i64, attempts: u32) -> anyhow::Result<bool> {
        self.write(|reply| Write::StillDue(seq, attempts, reply)).await
    }

    async fn mark_delivered(&self, seq: i64) -> anyhow::Result<()> {
        self.write(|reply| Write::Delivered(seq, reply)).await
    }

    async fn retry_at(&self, seq: i64, at_ms: i64, error: &str) -> anyhow::Result<()> {
        let error = error.to_string();
        self.write(|reply| Write::Retry(seq, at_ms, error, reply)).await
    }

    async fn dead_letter(&self, seq: i64, error: &str) -> anyhow::Result<()> {
        let error = error.to_string();
        self.write(|reply| Write::Dead(seq, error, reply)).await
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

    async fn replay(&self, filter: DeadLetterFilter) -> anyhow::Result<usize> {
        self.write(|reply| Write::Replay(filter, reply)).await
    }

    async fn purge(&self, delivered_before_ms: i64, keys_before_ms: i64) -> anyhow::Result<usize> {
        self.write(|reply| Write::Purge(delivered_before_ms, keys_before_ms, reply))
            .await
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

    async fn kv_get(&self, tenant: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let (tenant, key) = (tenant.to_string(), key.to_string());
        self.read(move |c| {
            c.query_row(
                "SELECT value FROM kv WHERE tenant = ?1 AND key = ?2",
                params![tenant, key],
                |row| row.get(0),
            )
            .optional()
        })
        .await
    }

    async fn kv_set(&self, tenant: &str, key: &str, value: Vec<u8>) -> anyhow::Result<()> {
        let (tenant, key) = (tenant.to_string(), key.to_string());
        self.write(|reply| Write::KvSet(tenant, key, value, reply)).await
    }

    async fn kv_delete(&self, tenant: &str, key: &str) -> anyhow::Result<()> {
        let (tenant, key) = (tenant.to_string(), key.to_string());
        self.write(|reply| Write::KvDelete(tenant, key, reply)).await
    }

    async fn remember_ticket(&self, owner: &str, ticket: &str, info: TicketInfo) -> anyhow::Result<()> {
        let (owner, ticket) = (owner.to_string(), ticket.to_string());
        self.write(|reply| Write::Ticket(owner, ticket, info, reply)).await
    }

    async fn ticket(&self, owner: &str, ticket: &str) -> anyhow::Result<Option<TicketInfo>> {
        let (owner, ticket) = (owner.to_string(), ticket.to_string());
        self.read(move |c| {
            c.query_row(
                "SELECT channel, customer_name FROM tickets WHERE owner = ?1 AND ticket_number = ?2",
                params![owner, ticket],
                |row| {
                    Ok(TicketInfo {
                        channel: row.get(0)?,
                        customer_name: row.get(1)?,
                    })
                },
            )
            .optional()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store() -> (SqliteStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("dolphin-store-{}", uuid::Uuid::now_v7()));
        (SqliteStore::open(&dir.join("t.db"), CommitMode::Group).unwrap(), dir)
    }

    fn delivery(id: &str, ticket: &str, key: Option<&str>) -> NewDelivery {
        NewDelivery {
            delivery_id: id.into(),
            tenant: "acme".into(),
            direction: Direction::ToVendor,
            ticket: ticket.into(),
            payload: "{}".into(),
            idempotency_key: key.map(str::to_string),
        }
    }

    #[tokio::test]
    async fn kv_is_namespaced_by_tenant() {
        let (store, dir) = temp_store();
        store.kv_set("a", "k", b"1".to_vec()).await.unwrap();
        store.kv_set("b", "k", b"2".to_vec()).await.unwrap();
        assert_eq!(store.kv_get("a", "k").await.unwrap(), Some(b"1".to_vec()));
        store.kv_delete("a", "k").await.unwrap();
        assert_eq!(store.kv_get("a", "k").await.unwrap(), None);
        assert_eq!(store.kv_get("b", "k").await.unwrap(), Some(b"2".to_vec()));
        std::fs::remove_dir_all(dir).ok();
    }

    async fn due_ids(store: &SqliteStore) -> Vec<String> {
        let due = store.due(now_ms(), 10).await.unwrap();
        due.into_iter().map(|d| d.delivery_id).collect()
    }

    #[tokio::test]
    async fn only_the_head_of_each_ticket_is_due() {
        let (store, dir) = temp_store();
        let window = Duration::from_secs(60);
        store
            .enqueue(
                vec![
                    delivery("a1", "A", None),
                    delivery("a2", "A", None),
                    delivery("b1", "B", None),
                ],
                window,
            )
            .await
            .unwrap();
        let due = due_ids(&store).await;
        assert_eq!(due, ["a1", "b1"]);
        // A waiting head holds back its own ticket only.
        let a1 = store.delivery("a1").await.unwrap().unwrap();
        store.retry_at(a1.seq, now_ms() + 60_000, "vendor 503").await.unwrap();
        let due = due_ids(&store).await;
        assert_eq!(due, ["b1"]);
        // A dead head lets the ticket move on, and replay brings it back.
        store.dead_letter(a1.seq, "permanent").await.unwrap();
        let due = due_ids(&store).await;
        assert_eq!(due, ["a2", "b1"]);
        assert_eq!(store.replay(DeadLetterFilter::One("a1".into())).await.unwrap(), 1);
        let a1 = store.delivery("a1").await.unwrap().unwrap();
        assert_eq!((a1.state.as_str(), a1.attempts), ("pending", 0));
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn idempotency_key_returns_the_first_id() {
        let (store, dir) = temp_store();
        let window = Duration::from_secs(60);
        let first = store
            .enqueue(vec![delivery("d1", "A", Some("k"))], window)
            .await
            .unwrap();
        let again = store
            .enqueue(vec![delivery("d2", "A", Some("k"))], window)
            .await
            .unwrap();
        assert_eq!(
            first[0],
            Accepted {
                delivery_id: "d1".into(),
                duplicate: false
            }
        );
        assert_eq!(
            again[0],
            Accepted {
                delivery_id: "d1".into(),
                duplicate: true
            }
        );
        assert_eq!(store.stats().await.unwrap().pending, 1);
        // Outside the window the same key is a new event.
        let later = store
            .enqueue(vec![delivery("d3", "A", Some("k"))], Duration::ZERO)
            .await
            .unwrap();
        assert!(!later[0].duplicate);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn purge_removes_old_delivered_only() {
        let (store, dir) = temp_store();
        store
            .enqueue(
                vec![delivery("d1", "A", None), delivery("d2", "B", None)],
                Duration::ZERO,
            )
            .await
            .unwrap();
        let d1 = store.delivery("d1").await.unwrap().unwrap();
        store.mark_delivered(d1.seq).await.unwrap();
        assert_eq!(store.purge(now_ms() + 1, now_ms() + 1).await.unwrap(), 1);
        assert!(store.delivery("d1").await.unwrap().is_none());
        assert!(store.delivery("d2").await.unwrap().is_some());
        std::fs::remove_dir_all(dir).ok();
    }
}
