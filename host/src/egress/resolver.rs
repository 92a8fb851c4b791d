//! Name resolution for adapters' requests on a few threads of its own. The system resolver
//! (`getaddrinfo`) blocks, sometimes for seconds; run on tokio's blocking pool it would hold the
//! threads the store's reads need, so a burst of adapters' look-ups could stall every tenant.
//!
//! The threads are shared fairly: one tenant has at most [`PER_TENANT`] look-ups queued or
//! running at once (one more waits, within its request's timeout, for one of them to end), so a
//! tenant whose names resolve slowly holds at most that many threads and every other tenant
//! finds one free. A
//! look-up whose caller has gone (its request timed out) is skipped, not resolved; one already
//! being resolved still counts against its tenant until `getaddrinfo` returns, as it holds a
//! thread until then.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Threads that resolve names; a look-up beyond them waits in the queue.
const RESOLVER_THREADS: usize = 8;
/// Look-ups of one tenant queued or running at once; one more waits for one of them to end.
const PER_TENANT: usize = 2;
/// Look-ups that may wait; one more fails at once ("resolver busy") instead of queueing.
const QUEUE_DEPTH: usize = 256;

type Answer = std::io::Result<Vec<SocketAddr>>;

/// How a name is resolved: the system resolver, or a stand-in in tests.
type ResolveFn = fn(&str) -> Answer;

/// One tenant's look-up queued or running, holding one of the tenant's places until it is
/// resolved or skipped.
struct Job {
    host: String,
    answer: oneshot::Sender<Answer>,
    _place: OwnedSemaphorePermit,
}

/// A bounded queue of look-ups served by [`RESOLVER_THREADS`] dedicated threads, at most
/// [`PER_TENANT`] of them per tenant.
pub struct ResolverPool {
    jobs: SyncSender<Job>,
    /// Each tenant's places: [`PER_TENANT`] look-ups queued or running.
    places: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// The system resolver (`getaddrinfo`), port 0.
fn system_resolve(host: &str) -> Answer {
    (host, 0).to_socket_addrs().map(Iterator::collect)
}

impl ResolverPool {
    /// Starts the resolver threads; they end when the pool is dropped.
    pub fn start() -> std::io::Result<Arc<ResolverPool>> {
        Self::start_with(system_resolve)
    }

    /// Starts the resolver threads resolving with `resolve`.
    fn start_with(resolve: ResolveFn) -> std::io::Result<Arc<ResolverPool>> {
        let (jobs, queue) = std::sync::mpsc::sync_channel(QUEUE_DEPTH);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..RESOLVER_THREADS {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("dns-resolver-{i}"))
                .spawn(move || serve(&queue, resolve))?;
        }
        Ok(Arc::new(ResolverPool {
            jobs,
            places: Mutex::default(),
        }))
    }

    /// The addresses `host` resolves to (port 0), for an adapter of `tenant`: waits while the
    /// tenant already has [`PER_TENANT`] look-ups queued or running (dropping the future stops
    /// the wait, and skips the look-up if it was queued).
    pub async fn lookup(&self, tenant: &str, host: &str) -> Answer {
        let places = self
            .places
            .lock()
            .expect("resolver places lock")
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(PER_TENANT)))
            .clone();
        let place = places
            .acquire_owned()
            .await
            .map_err(|_| std::io::Error::other("the name resolver has stopped"))?;
        let (answer, answered) = oneshot::channel();
        let job = Job {
            host: host.to_string(),
            answer,
            _place: place,
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

fn serve(queue: &Mutex<Receiver<Job>>, resolve: ResolveFn) {
    loop {
        let job = match queue.lock() {
            Ok(queue) => match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        // Its caller has gone (the request timed out or was dropped): nobody wants the answer.
        if job.answer.is_closed() {
            continue;
        }
        let addrs = resolve(&job.host);
        let _ = job.answer.send(addrs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_names_and_reports_failures() {
        let pool = ResolverPool::start().unwrap();
        let addrs = pool.lookup("acme", "localhost").await.unwrap();
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty(),
            "{addrs:?}"
        );
        assert!(pool.lookup("acme", "no-such-host.invalid").await.is_err());
    }

    /// Stands in for DNS: names under `slow.` take 2 s, the rest answer at once.
    fn slow_or_fast(host: &str) -> Answer {
        if host.starts_with("slow.") {
            std::thread::sleep(std::time::Duration::from_secs(2));
        }
        Ok(vec![SocketAddr::from(([192, 0, 2, 1], 0))])
    }

    /// One tenant whose adapter resolves a slow name in a loop (each look-up given up after
    /// 100 ms, as a request timing out would) leaves the other tenant's look-ups prompt: none
    /// fails as busy, none waits behind the slow ones.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_tenant_resolving_a_slow_name_does_not_hold_up_another_tenants_look_ups() {
        let pool = ResolverPool::start_with(slow_or_fast).unwrap();
        let flooding = pool.clone();
        let flood = tokio::spawn(async move {
            let mut tries = tokio::task::JoinSet::new();
            for _ in 0..2000 {
                let pool = flooding.clone();
                tries.spawn(async move {
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_millis(100),
                        pool.lookup("villain", "slow.villain.example"),
                    )
                    .await;
                });
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            tries.join_all().await;
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        for i in 0..20 {
            let started = std::time::Instant::now();
            let answer = pool.lookup("acme", "vendor.example").await;
            let took = started.elapsed();
            assert!(answer.is_ok(), "look-up {i} of acme failed: {answer:?}");
            assert!(
                took < std::time::Duration::from_millis(500),
                "look-up {i} of acme took {took:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        flood.abort();
    }
}
