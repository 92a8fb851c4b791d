//! Name resolution for adapters' requests on a few threads of its own. The system resolver
//! (`getaddrinfo`) blocks, sometimes for seconds; run on tokio's blocking pool it would hold the
//! threads the store's reads need, so a burst of adapters' look-ups could stall every tenant.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Threads that resolve names; a look-up beyond them waits in the queue.
const RESOLVER_THREADS: usize = 4;
/// Look-ups that may wait; one more fails at once ("resolver busy") instead of queueing.
const QUEUE_DEPTH: usize = 256;

type Answer = std::io::Result<Vec<SocketAddr>>;

struct Job {
    host: String,
    answer: oneshot::Sender<Answer>,
}

/// A bounded queue of look-ups served by [`RESOLVER_THREADS`] dedicated threads.
pub struct ResolverPool {
    jobs: SyncSender<Job>,
}

impl ResolverPool {
    /// Starts the resolver threads; they end when the pool is dropped.
    pub fn start() -> std::io::Result<Arc<ResolverPool>> {
        let (jobs, queue) = std::sync::mpsc::sync_channel(QUEUE_DEPTH);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..RESOLVER_THREADS {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("dns-resolver-{i}"))
                .spawn(move || serve(&queue))?;
        }
        Ok(Arc::new(ResolverPool { jobs }))
    }

    /// The addresses `host` resolves to (port 0).
    pub async fn lookup(&self, host: &str) -> Answer {
        let (answer, answered) = oneshot::channel();
        let job = Job {
            host: host.to_string(),
            answer,
        };
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(std::io::Error::other("the name resolver is busy; try again later"));
            }
            Err(TrySendError::Disconnected(_)) => return Err(std::io::Error::other("the name resolver has stopped")),
        }
        answered
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("the name resolver has stopped")))
    }
}

fn serve(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = match queue.lock() {
            Ok(queue) => match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let addrs = (job.host.as_str(), 0).to_socket_addrs().map(Iterator::collect);
        let _ = job.answer.send(addrs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_names_and_reports_failures() {
        let pool = ResolverPool::start().unwrap();
        let addrs = pool.lookup("localhost").await.unwrap();
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty(),
            "{addrs:?}"
        );
        assert!(pool.lookup("no-such-host.invalid").await.is_err());
    }
}
