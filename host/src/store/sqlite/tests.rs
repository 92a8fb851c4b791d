//! The SQLite store's tests: the shared suite (`store::suite`), and the SQLite store's own, with
//! faults injected for real: triggers that raise, a second connection holding the write lock, a
//! deferred constraint that fails the COMMIT.

use std::path::PathBuf;

use super::*;
use crate::clock::now_ms;
use crate::store::suite::{
    Fixture, OWNER, WINDOW, delivery, due_ids, get, lease, lease_at, remember, store_suite, ticket_with,
};

store_suite!(async { TempStore::new() });

struct TempStore {
    store: SqliteStore,
    dir: PathBuf,
}

impl TempStore {
    fn new() -> TempStore {
        Self::with_writer_setup(|_| Ok(()))
    }

    fn with_writer_setup(setup: impl FnOnce(&Connection) -> rusqlite::Result<()>) -> TempStore {
        let dir = std::env::temp_dir().join(format!("dolphin-store-{}", uuid::Uuid::now_v7()));
        let store = SqliteStore::open_with(
            &dir.join("t.db"),
            CommitMode::Group,
            crate::config::DEFAULT_WRITE_QUEUE,
            setup,
        )
        .unwrap();
        TempStore { store, dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("t.db")
    }

    /// A second connection to the same file, as another process would have.
    fn side_connection(&self) -> Connection {
        let conn = Connection::open(self.path()).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn
    }
}

impl Fixture for TempStore {
    fn store(&self) -> &dyn Store {
        &self.store
    }

    async fn replica(&self) -> Box<dyn Store> {
        Box::new(SqliteStore::open(&self.path(), CommitMode::Group).unwrap())
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// Item: a failed enqueue must not leave its idempotency key behind (else the client's re-send
/// is answered `duplicate` for an event that was never stored).
#[tokio::test]
async fn a_failed_enqueue_leaves_nothing_behind_and_the_rest_of_the_batch_commits() {
    let t = TempStore::with_writer_setup(|c| {
        c.execute_batch(
            "CREATE TEMP TRIGGER poison BEFORE INSERT ON outbox WHEN NEW.ticket = 'poison'
             BEGIN SELECT RAISE(ABORT, 'injected fault'); END;",
        )
    });
    let store = &t.store;
    let (poisoned, healthy) = tokio::join!(
        store.enqueue(vec![delivery("p1", "poison", Some("key-p"))], WINDOW),
        store.enqueue(vec![delivery("h1", "A", Some("key-h"))], WINDOW),
    );
    assert!(poisoned.unwrap_err().to_string().contains("injected fault"));
    assert!(!healthy.unwrap()[0].duplicate);
    assert!(
        store.delivery("h1").await.unwrap().is_some(),
        "the healthy write committed"
    );
    assert!(store.delivery("p1").await.unwrap().is_none());
    // The re-send of the refused event is a new event, not a duplicate of nothing.
    let mut resend = delivery("p2", "A", Some("key-p"));
    resend.ticket = "A2".into();
    let again = store.enqueue(vec![resend], WINDOW).await.unwrap();
    assert_eq!(
        again[0],
        Accepted {
            delivery_id: "p2".into(),
            duplicate: false
        }
    );
}

/// Item: another process writing (the `dead-letters` command while the bridge runs) must not
/// make the bridge's writes fail with SQLITE_BUSY.
#[tokio::test]
async fn a_write_waits_for_another_connection_holding_the_write_lock() {
    let t = TempStore::new();
    let store = &t.store;
    // The read part of the enqueue (the idempotency look-up) sees a snapshot that the side
    // connection's commit then makes stale.
    store
        .enqueue(vec![delivery("d0", "A", Some("k0"))], WINDOW)
        .await
        .unwrap();
    let side = t.side_connection();
    side.execute_batch("BEGIN IMMEDIATE; INSERT INTO kv (tenant, key, value) VALUES ('side', 'k', x'00');")
        .unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        side.execute_batch("COMMIT").unwrap();
    });
    let accepted = store.enqueue(vec![delivery("d1", "B", Some("k1"))], WINDOW).await;
    release.join().unwrap();
    assert!(!accepted.expect("the write waited for the lock")[0].duplicate);
    assert!(store.delivery("d1").await.unwrap().is_some());
}

/// Item: a COMMIT that fails must not leave the writer inside the transaction.
#[tokio::test]
async fn after_a_failed_commit_the_writer_goes_on_with_fresh_transactions() {
    let t = TempStore::with_writer_setup(|c| {
        c.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TEMP TABLE child (parent_id INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
             CREATE TEMP TRIGGER dangling AFTER INSERT ON outbox WHEN NEW.ticket = 'fail-commit'
             BEGIN INSERT INTO child VALUES (42); END;",
        )
    });
    let store = &t.store;
    let failed = store.enqueue(vec![delivery("f1", "fail-commit", None)], WINDOW).await;
    assert!(failed.unwrap_err().to_string().contains("commit failed"));
    store.enqueue(vec![delivery("d1", "A", None)], WINDOW).await.unwrap();
    // Committed for real: another connection sees it, and the failed one is gone.
    let side = t.side_connection();
    let ids: Vec<String> = side
        .prepare("SELECT delivery_id FROM outbox ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ids, ["d1"]);
}

/// Item: an outcome that cannot be written leaves the delivery leased: it is not due again
/// before the lease (the retry schedule's wait) ends.
#[tokio::test]
async fn an_outcome_that_cannot_be_recorded_keeps_the_delivery_back_until_its_lease_ends() {
    let t = TempStore::with_writer_setup(|c| {
        c.execute_batch(
            "CREATE TEMP TRIGGER disk_full BEFORE UPDATE ON outbox WHEN NEW.state = 'delivered'
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
        )
    });
    let store = &t.store;
    store.enqueue(vec![delivery("d1", "A", None)], WINDOW).await.unwrap();
    let d1 = get(store, "d1").await;
    let lease_until = now_ms() + 5_000;
    assert!(store.claim(d1.seq, 0, &lease(lease_until)).await.unwrap());
    assert!(store.record(d1.seq, 1, Outcome::Delivered).await.is_err());
    assert!(due_ids(store, now_ms()).await.is_empty());
    let again = store.due(lease_until, 10, &[]).await.unwrap();
    assert_eq!((again[0].delivery_id.as_str(), again[0].attempts), ("d1", 1));
}

#[tokio::test]
async fn a_full_write_queue_refuses_client_writes_at_once() {
    let dir = std::env::temp_dir().join(format!("dolphin-store-{}", uuid::Uuid::now_v7()));
    let path = dir.join("t.db");
    let store = Arc::new(SqliteStore::open_with(&path, CommitMode::Group, 1, |_| Ok(())).unwrap());
    // Another connection holds the write lock: the writer blocks on its first batch.
    let side = Connection::open(&path).unwrap();
    side.execute_batch("BEGIN IMMEDIATE").unwrap();
    // Once the writer holds one write (blocked on the lock), one more fits the queue; the
    // next is refused.
    let mut refused = None;
    for i in 0..50 {
        let store = store.clone();
        if let Some(Err(e)) = store
            .enqueue(vec![delivery(&format!("q{i}"), "B", None)], WINDOW)
            .now_or_later()
        {
            refused = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = refused.expect("a write was refused");
    assert_eq!(refused.downcast_ref::<StoreError>(), Some(&StoreError::Busy));
    side.execute_batch("COMMIT").unwrap();
    // The writer goes on once the lock is free (the bridge's own writes wait for room).
    assert_eq!(store.health().await.unwrap().synchronous, "full");
    store.enqueue(vec![delivery("after", "C", None)], WINDOW).await.unwrap();
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}

/// A file whose tickets table predates contacts gains the column; its tickets keep their
/// channel and name, and their (unknown) contact matches no look-up until the next event.
#[tokio::test]
async fn a_tickets_table_without_contacts_is_migrated() {
    let dir = std::env::temp_dir().join(format!("dolphin-store-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("old.db");
    {
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE tickets (owner TEXT NOT NULL, ticket_number TEXT NOT NULL, channel TEXT NOT NULL,
                 customer_name TEXT NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (owner, ticket_number))
                 WITHOUT ROWID;
             INSERT INTO tickets VALUES ('owner-a', 'T1', 'whatsapp', 'Budi', 0);",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path, CommitMode::Group).unwrap();
    assert_eq!(store.ticket("owner-a", "T1").await.unwrap(), Some(ticket_with("")));
    assert!(!store.is_contact_of_owner("owner-a", "").await.unwrap());
    remember(&store, "owner-a", "T1", ticket_with("c-1")).await;
    assert!(store.is_contact_of_owner("owner-a", "c-1").await.unwrap());
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn health_reports_the_writers_durability_settings() {
    let t = TempStore::new();
    let health = t.store.health().await.unwrap();
    assert_eq!(
        (health.synchronous.as_str(), health.journal_mode.as_str()),
        ("full", "wal")
    );
    assert!(t.store.last_commit_age().is_some());
}

#[tokio::test]
async fn a_file_of_the_previous_schema_is_migrated_and_keeps_its_order() {
    let dir = std::env::temp_dir().join(format!("dolphin-store-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("old.db");
    {
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, delivery_id TEXT NOT NULL UNIQUE,
                 tenant TEXT NOT NULL, direction TEXT NOT NULL, ticket TEXT NOT NULL, payload TEXT NOT NULL,
                 state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
                 created_at INTEGER NOT NULL, next_attempt_at INTEGER NOT NULL, finished_at INTEGER);
             CREATE INDEX outbox_pending ON outbox (tenant, direction, ticket, seq) WHERE state = 'pending';
             INSERT INTO outbox (delivery_id, tenant, direction, ticket, payload, state, created_at, next_attempt_at)
             VALUES ('o1', 'acme', 'to_vendor', 'A', '{}', 'pending', 0, 0),
                    ('o2', 'acme', 'to_vendor', 'A', '{}', 'pending', 0, 0);",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path, CommitMode::Group).unwrap();
    assert_eq!(due_ids(&store, now_ms()).await, ["o1"]);
    assert_eq!(get(&store, "o2").await.owner, "tenant:acme");
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}

/// Polls a future once: its output if it is ready at once.
trait NowOrLater: std::future::Future + Sized {
    fn now_or_later(self) -> Option<Self::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut future = std::pin::pin!(self);
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        }
    }
}

impl<F: std::future::Future> NowOrLater for F {}

/// A ticket's head: ticket, seq, tenant, due time.
type Head = (String, i64, String, i64);

/// What `ticket_heads` says, and what `outbox` itself says the head of each ticket is: the
/// first pending delivery, with its tenant and due time.
fn heads_both_ways(conn: &Connection) -> (Vec<Head>, Vec<Head>) {
    let read = |sql: &str| -> Vec<Head> {
        let mut statement = conn.prepare(sql).unwrap();
        let rows = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap();
        rows.map(Result::unwrap).collect()
    };
    let kept = read("SELECT ticket, seq, tenant, next_attempt_at FROM ticket_heads ORDER BY ticket");
    let derived = read(
        "SELECT ticket, seq, tenant, next_attempt_at FROM outbox o WHERE state = 'pending'
           AND seq = (SELECT MIN(seq) FROM outbox h WHERE h.state = 'pending'
                      AND h.owner = o.owner AND h.direction = o.direction AND h.ticket = o.ticket)
         ORDER BY ticket",
    );
    (kept, derived)
}

/// The heads the dispatcher reads are kept by triggers: after every kind of write (enqueue,
/// claim, retry, delivered, dead, replay to another tenant, purge, a write by another process)
/// they are exactly the first pending delivery of each ticket.
#[tokio::test]
async fn ticket_heads_follow_every_write() {
    let t = TempStore::new();
    let store = &t.store;
    let side = t.side_connection();
    let assert_heads = |step: &str| {
        let (kept, derived) = heads_both_ways(&side);
        assert_eq!(kept, derived, "after {step}");
    };
    let batch = ["a1", "a2", "a3", "b1", "b2", "c1"]
        .iter()
        .map(|id| delivery(id, &id[..1], None))
        .collect();
    store.enqueue(batch, WINDOW).await.unwrap();
    assert_heads("enqueue");
    assert_eq!(heads_both_ways(&side).0.len(), 3);

    let a1 = get(store, "a1").await;
    assert!(store.claim(a1.seq, 0, &lease(now_ms() + 60_000)).await.unwrap());
    assert_heads("claim");
    assert!(
        store
            .record(a1.seq, 1, Outcome::RetryAt(now_ms() + 5_000, "vendor down".into()))
            .await
            .unwrap()
    );
    assert_heads("retry");
    let retried = now_ms() + 5_000;
    assert!(
        store
            .claim(a1.seq, 1, &lease_at(OWNER, retried, retried))
            .await
            .unwrap()
    );
    assert!(store.record(a1.seq, 2, Outcome::Delivered).await.unwrap());
    assert_heads("delivered");
    let a2 = get(store, "a2").await;
    assert!(store.claim(a2.seq, 0, &lease(now_ms())).await.unwrap());
    assert!(store.record(a2.seq, 1, Outcome::Dead("bad".into())).await.unwrap());
    assert_heads("dead");
    let b1 = get(store, "b1").await;
    assert!(store.claim(b1.seq, 0, &lease(now_ms())).await.unwrap());
    assert!(store.record(b1.seq, 1, Outcome::Dead("bad".into())).await.unwrap());
    assert_heads("dead at the head of b");

    // a2 is older than a3, the head now: replayed, it is the head of `a` again.
    let replayed = store
        .replay(DeadLetterFilter::One("a2".into()), Some("acme-new"))
        .await
        .unwrap();
    assert_eq!(replayed, 1);
    assert_heads("replay to another tenant");
    assert_eq!(due_ids(store, now_ms()).await, vec!["b2", "c1", "a2"]);

    // Another process (a `dead-letters` command) replays b1 on its own connection.
    side.execute(
        "UPDATE outbox SET state = 'pending', next_attempt_at = 0 WHERE delivery_id = 'b1'",
        [],
    )
    .unwrap();
    assert_heads("replay by another process");
    side.execute("DELETE FROM outbox WHERE delivery_id = 'c1'", []).unwrap();
    assert_heads("a pending delivery deleted");
    store
        .purge_dead_letters(DeadLetterFilter::All, now_ms() + 1)
        .await
        .unwrap();
    assert_heads("purge");
}

/// A file whose `ticket_heads` is missing or stale (written before the table existed) gets its
/// heads rebuilt from `outbox` when it is opened.
#[tokio::test]
async fn ticket_heads_are_rebuilt_when_the_store_opens() {
    let t = TempStore::new();
    let batch = ["a1", "a2", "b1"]
        .iter()
        .map(|id| delivery(id, &id[..1], None))
        .collect();
    t.store.enqueue(batch, WINDOW).await.unwrap();
    let side = t.side_connection();
    side.execute_batch("DROP TRIGGER outbox_head_enqueued; DELETE FROM ticket_heads;")
        .unwrap();
    let reopened = SqliteStore::open(&t.path(), CommitMode::Group).unwrap();
    let (kept, derived) = heads_both_ways(&side);
    assert_eq!(kept, derived);
    assert_eq!(kept.len(), 2);
    assert_eq!(due_ids(&reopened, now_ms()).await, vec!["a1", "b1"]);
}

/// Item: a statement whose bound `LIMIT` changes between runs (the dispatcher's due read, one
/// limit per pass) must not be compiled again each time: SQLite treats a bound `LIMIT` as a
/// constant of the plan unless the query planner's stability guarantee is on, and recompiling
/// the due read was a sixth of the bridge's threads' time while it drained a backlog.
#[test]
fn a_statement_is_not_prepared_again_when_its_bound_limit_changes() {
    let dir = std::env::temp_dir().join(format!("dolphin-store-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let conn = open_connection(&dir.join("limit.db")).unwrap();
    conn.execute_batch("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1), (2), (3);")
        .unwrap();
    let mut statement = conn.prepare("SELECT n FROM t ORDER BY n LIMIT ?1").unwrap();
    for limit in [1, 2, 3, 1] {
        let rows: Vec<i64> = statement
            .query_map([limit], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows.len(), limit as usize);
    }
    assert_eq!(
        statement.get_status(rusqlite::StatementStatus::RePrepare),
        0,
        "prepared again when the limit changed"
    );
    drop(statement);
    drop(conn);
    std::fs::remove_dir_all(dir).ok();
}
