//! The store's one writer thread: group commit.
//!
//! Whatever writes queued up while the previous commit ran go into one `BEGIN IMMEDIATE`
//! transaction, so many concurrent requests share one disk sync. A batch first runs without
//! savepoints: a savepoint makes SQLite copy every page a write touches into a sub-journal
//! (a seventh of the writer's time under load, by `perf`), and writes almost never fail. Only
//! when one does is the batch rolled back and run again with a savepoint per write, so that the
//! failed one is undone alone and the others commit. Each write is answered once its
//! transaction's fate is known.

use std::sync::atomic::{AtomicI64, Ordering};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::clock;

/// How the writer commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// Everything queued while the previous commit ran goes into one transaction.
    Group,
    /// One transaction (and disk sync) per write; for comparison in benchmarks.
    PerWrite,
}

/// Writes committed in one transaction at most.
const MAX_BATCH: usize = 1024;

/// One queued write. It may run twice (see the module's comment): it must only change the
/// database, which a rollback undoes.
pub(super) trait Write: Send {
    /// Runs the write at `now`, keeping its result; says whether it succeeded.
    fn run(&mut self, conn: &Connection, now: i64) -> bool;
    /// Answers the caller: with the result of its last run, or `commit_error` when the
    /// transaction failed (or the write never ran).
    fn answer(self: Box<Self>, commit_error: Option<&str>);
}

/// A write queued for the writer thread.
pub(super) type Job = Box<dyn Write>;

/// A [`Write`] made of a closure and the channel its caller waits on.
pub(super) struct PendingWrite<T, F> {
    write: F,
    result: Option<rusqlite::Result<T>>,
    reply: oneshot::Sender<anyhow::Result<T>>,
}

impl<T, F> PendingWrite<T, F>
where
    T: Send + 'static,
    F: FnMut(&Connection, i64) -> rusqlite::Result<T> + Send + 'static,
{
    /// The job for `write`, and where its answer will come.
    pub(super) fn queue(write: F) -> (Job, oneshot::Receiver<anyhow::Result<T>>) {
        let (reply, answer) = oneshot::channel();
        let job = PendingWrite {
            write,
            result: None,
            reply,
        };
        (Box::new(job), answer)
    }
}

impl<T, F> Write for PendingWrite<T, F>
where
    T: Send + 'static,
    F: FnMut(&Connection, i64) -> rusqlite::Result<T> + Send + 'static,
{
    fn run(&mut self, conn: &Connection, now: i64) -> bool {
        let result = (self.write)(conn, now);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, commit_error: Option<&str>) {
        let result = match (commit_error, self.result) {
            (Some(e), _) => Err(anyhow::anyhow!("{e}")),
            (None, Some(r)) => r.map_err(anyhow::Error::from),
            (None, None) => Err(anyhow::anyhow!("the store write did not run")),
        };
        let _ = self.reply.send(result);
    }
}

/// Applies queued writes until every sender is gone, many per transaction in
/// [`CommitMode::Group`]; `last_commit` gets the time of each successful commit.
pub(super) fn writer_loop(conn: &Connection, mut rx: mpsc::Receiver<Job>, mode: CommitMode, last_commit: &AtomicI64) {
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
        let failure = commit_batch(conn, &mut batch, clock::now_ms());
        if failure.is_none() {
            last_commit.store(clock::now_ms(), Ordering::Relaxed);
        }
        for job in batch {
            job.answer(failure.as_deref());
        }
    }
}

/// Runs `batch` in one transaction and commits it; the transaction's error, if it failed as a
/// whole. A write that failed alone has its own error kept for its answer.
fn commit_batch(conn: &Connection, batch: &mut [Job], now: i64) -> Option<String> {
    let outcome = match run_in_transaction(conn, batch, now, false) {
        Err(BatchError::AWriteFailed) if batch.len() > 1 => run_in_transaction(conn, batch, now, true),
        outcome => outcome,
    };
    // A failed COMMIT can leave the transaction open (a deferred constraint, say); the next
    // batch must not run inside it.
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    match outcome {
        Ok(()) | Err(BatchError::AWriteFailed) => None,
        Err(BatchError::Transaction(e)) => Some(format!("store commit failed: {e}")),
    }
}

/// Why a batch's transaction did not commit as it ran.
enum BatchError {
    /// A write failed and, without savepoints, the whole transaction was rolled back.
    AWriteFailed,
    /// The transaction itself failed (begin, savepoint or commit): no write of it is kept.
    Transaction(rusqlite::Error),
}

/// One attempt at the batch: each write in its own savepoint when `savepoints`, else all in one
/// transaction that a failed write rolls back whole.
fn run_in_transaction(conn: &Connection, batch: &mut [Job], now: i64, savepoints: bool) -> Result<(), BatchError> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(BatchError::Transaction)?;
    for job in batch.iter_mut() {
        if savepoints {
            conn.execute_batch("SAVEPOINT write").map_err(BatchError::Transaction)?;
        }
        let ok = job.run(conn, now);
        match (ok, savepoints) {
            (true, false) => {}
            (false, false) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(BatchError::AWriteFailed);
            }
            (true, true) => conn.execute_batch("RELEASE write").map_err(BatchError::Transaction)?,
            (false, true) => conn
                .execute_batch("ROLLBACK TO write; RELEASE write")
                .map_err(BatchError::Transaction)?,
        }
    }
    conn.execute_batch("COMMIT").map_err(BatchError::Transaction)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn counter_table() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (name TEXT PRIMARY KEY)").unwrap();
        conn
    }

    /// A write inserting `name` twice when `twice` (the second insert fails on the key, after
    /// the first changed the table), counting its runs.
    fn insert(name: &'static str, twice: bool, runs: Arc<AtomicUsize>) -> (Job, oneshot::Receiver<anyhow::Result<()>>) {
        PendingWrite::queue(move |c: &Connection, _| {
            runs.fetch_add(1, Ordering::Relaxed);
            c.execute("INSERT INTO t (name) VALUES (?1)", [name])?;
            if twice {
                c.execute("INSERT INTO t (name) VALUES (?1)", [name])?;
            }
            Ok(())
        })
    }

    /// Commits `batch` and answers each write, as the writer's loop does; the commit's error.
    fn commit_and_answer(conn: &Connection, mut batch: Vec<Job>) -> Option<String> {
        let failure = commit_batch(conn, &mut batch, 0);
        for job in batch {
            job.answer(failure.as_deref());
        }
        failure
    }

    fn names(conn: &Connection) -> Vec<String> {
        let mut statement = conn.prepare("SELECT name FROM t ORDER BY name").unwrap();
        statement
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn a_batch_without_failures_runs_each_write_once_in_one_transaction() {
        let conn = counter_table();
        let runs = Arc::new(AtomicUsize::new(0));
        let (a, mut a_answer) = insert("a", false, runs.clone());
        let (b, mut b_answer) = insert("b", false, runs.clone());
        assert_eq!(commit_and_answer(&conn, vec![a, b]), None);
        assert_eq!(runs.load(Ordering::Relaxed), 2, "no write ran twice");
        assert!(a_answer.try_recv().unwrap().is_ok());
        assert!(b_answer.try_recv().unwrap().is_ok());
        assert_eq!(names(&conn), ["a", "b"]);
        assert!(conn.is_autocommit());
    }

    #[test]
    fn a_failed_write_is_undone_alone_with_its_partial_changes_and_the_others_commit() {
        let conn = counter_table();
        let runs = Arc::new(AtomicUsize::new(0));
        let (a, mut a_answer) = insert("a", false, runs.clone());
        let (bad, mut bad_answer) = insert("bad", true, runs.clone());
        let (c, mut c_answer) = insert("c", false, runs.clone());
        assert_eq!(commit_and_answer(&conn, vec![a, bad, c]), None);
        assert!(a_answer.try_recv().unwrap().is_ok());
        let error = bad_answer.try_recv().unwrap().unwrap_err().to_string();
        assert!(error.contains("UNIQUE"), "{error}");
        assert!(c_answer.try_recv().unwrap().is_ok());
        assert_eq!(names(&conn), ["a", "c"], "the failed write's first insert is undone");
        // First run: a, bad (fails); then a, bad, c again, each in a savepoint.
        assert_eq!(runs.load(Ordering::Relaxed), 5);
        assert!(conn.is_autocommit());
    }

    #[test]
    fn a_failed_write_alone_is_rolled_back_without_a_second_run() {
        let conn = counter_table();
        let runs = Arc::new(AtomicUsize::new(0));
        let (bad, mut bad_answer) = insert("bad", true, runs.clone());
        assert_eq!(commit_and_answer(&conn, vec![bad]), None);
        assert!(bad_answer.try_recv().unwrap().is_err());
        assert_eq!(runs.load(Ordering::Relaxed), 1);
        assert!(names(&conn).is_empty());
        assert!(conn.is_autocommit());
    }
}
