//! Writes asked for at once by concurrent callers, made in one transaction: a group commit for
//! the deliveries' claims and outcomes, so that a delivery costs a share of a commit (one flush
//! of the server's WAL) instead of two commits of its own.
//!
//! Accepted events are not grouped: each makes a round trip per event (its key, its ticket,
//! its row) while its group holds the tickets' locks, and grouped they were accepted at a third
//! of the rate (one group at a time) or two thirds (four), with replicas waiting on each
//! other's locks (see BENCHMARKS.md).
//!
//! One task per kind of write takes what is queued (up to [`MAX_GROUP`]), writes it as one
//! group and answers each caller; what is asked meanwhile waits for the next group. A caller
//! alone waits for nothing but its own write. The task holds a clone of the pool, not the
//! store, and ends with the store.

use std::future::Future;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use crate::store::StoreError;

/// Writes one group holds at most: enough to share a commit among the deliveries of a busy
/// replica, few enough that the locks it takes are held briefly.
pub const MAX_GROUP: usize = 64;

/// One write asked for, and where its answer goes.
struct Asked<T, R> {
    item: T,
    answer: oneshot::Sender<anyhow::Result<R>>,
}

/// Writes of one kind, grouped: see the module's text.
pub struct GroupedWrites<T, R> {
    queue: mpsc::UnboundedSender<Asked<T, R>>,
    worker: tokio::task::JoinHandle<()>,
}

impl<T, R> Drop for GroupedWrites<T, R> {
    fn drop(&mut self) {
        self.worker.abort();
    }
}

impl<T: Send + 'static, R: Send + 'static> GroupedWrites<T, R> {
    /// Starts the task that writes each group with `write_group`, which answers one result per
    /// item, in the items' order.
    pub fn start<F, Fut>(pool: Pool, write_group: F) -> GroupedWrites<T, R>
    where
        F: Fn(Pool, Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<anyhow::Result<R>>> + Send + 'static,
    {
        let (queue, asked) = mpsc::unbounded_channel::<Asked<T, R>>();
        let worker = tokio::spawn(run_groups(pool, asked, write_group));
        GroupedWrites { queue, worker }
    }

    /// Makes `item`'s write with whatever else is asked for at the same time.
    ///
    /// The write is made even if this future is dropped: a caller that stops waiting does not
    /// know whether it was, as with any write whose commit it did not see.
    pub async fn write(&self, item: T) -> anyhow::Result<R> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Asked { item, answer })
            .map_err(|_| anyhow::Error::from(StoreError::Stopped))?;
        answered.await.map_err(|_| StoreError::Stopped)?
    }
}

/// Takes the next group off the queue (the first write waiting and what queued behind it) and
/// writes it, until the store ends.
async fn run_groups<T, R, F, Fut>(pool: Pool, mut asked: mpsc::UnboundedReceiver<Asked<T, R>>, write_group: F)
where
    F: Fn(Pool, Vec<T>) -> Fut,
    Fut: Future<Output = Vec<anyhow::Result<R>>>,
{
    loop {
        let Some(first) = asked.recv().await else { return };
        let mut group = vec![first];
        while group.len() < MAX_GROUP
            && let Ok(next) = asked.try_recv()
        {
            group.push(next);
        }
        let (items, answers): (Vec<T>, Vec<_>) = group.into_iter().map(|a| (a.item, a.answer)).unzip();
        let results = write_group(pool.clone(), items).await;
        debug_assert_eq!(results.len(), answers.len(), "one result per write of a group");
        for (answer, result) in answers.into_iter().zip(results) {
            // A caller that stopped waiting lets its write be made all the same.
            let _ = answer.send(result);
        }
    }
}

/// The error of a group that failed as a whole, for each of its writes: the store's own errors
/// keep their kind (callers act on them), others their message.
pub fn error_for_each<R>(error: &anyhow::Error, count: usize) -> Vec<anyhow::Result<R>> {
    (0..count)
        .map(|_| match error.downcast_ref::<StoreError>() {
            Some(StoreError::Busy) => Err(StoreError::Busy.into()),
            Some(StoreError::Stopped) => Err(StoreError::Stopped.into()),
            None => Err(anyhow::anyhow!("{error:#}")),
        })
        .collect()
}
