//! The nemesis's clients: per ticket, one client sending the ticket's events one after another,
//! each to a replica picked at random, resent (same key) until a replica acknowledges it.
//! Incoming events (3Dolphins → vendor) are posted to `/3dolphins/incoming` with an
//! `Idempotency-Key`; vendor webhooks (mapped by the echo adapter to Outgoing events for
//! 3Dolphins) to `/vendors/{tenant}/hook`, with the event's `id` as its dedupe key. Each text is
//! an [`EventId::text`], which carries the ticket's sequence number of that direction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::bridge::INCOMING_PATH;
use crate::client::HttpClient;
use crate::crash_support::Rng;
use crate::events::Event;
use crate::nemesis::checker::{EventId, Stream};
use crate::nemesis::cluster::ReplicaUrls;

/// What the clients need to know.
#[derive(Clone)]
pub struct WorkloadConfig {
    /// The tenant's owner (Incoming events) and name (webhooks).
    pub owner: String,
    pub tenant: String,
    /// The replicas' Incoming credential.
    pub incoming_token: String,
    /// How many tickets (one client each).
    pub tickets: usize,
    /// The pause between two events of a ticket, at most (ms).
    pub pace_ms: u64,
    /// One send's answer is awaited this long, then the event is resent.
    pub send_timeout: Duration,
    /// An event not acknowledged within this long is given up (and its ticket's client stops).
    pub event_deadline: Duration,
}

/// What the clients counted besides the acknowledgements.
#[derive(Default, Debug)]
pub struct Counters {
    pub sends: AtomicUsize,
    pub resends: AtomicUsize,
    pub timeouts: AtomicUsize,
    pub transport_errors: AtomicUsize,
    pub server_errors: AtomicUsize,
    /// 4xx answers: the event is not acknowledged and the client goes on with the next one.
    pub refused: AtomicUsize,
    /// Events given up after the deadline.
    pub abandoned: AtomicUsize,
}

impl Counters {
    pub fn summary(&self) -> String {
        let get = |n: &AtomicUsize| n.load(Ordering::Relaxed);
        format!(
            "{} send(s), {} resend(s), {} timeout(s), {} transport error(s), {} 5xx, {} refused (4xx), {} abandoned",
            get(&self.sends),
            get(&self.resends),
            get(&self.timeouts),
            get(&self.transport_errors),
            get(&self.server_errors),
            get(&self.refused),
            get(&self.abandoned)
        )
    }
}

/// The running clients.
pub struct Workload {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<EventId>>>,
    pub counters: Arc<Counters>,
    pub tickets: Vec<String>,
}

impl Workload {
    /// Starts one client per ticket (`tickets[t]` is ticket `t`'s number), seeded from `seed`.
    pub fn start(config: WorkloadConfig, urls: ReplicaUrls, seed: u64) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let tickets: Vec<String> = (0..config.tickets).map(|_| crate::events::fresh_ticket()).collect();
        let tasks = tickets
            .iter()
            .enumerate()
            .map(|(t, number)| {
                let client = Client {
                    config: config.clone(),
                    urls: urls.clone(),
                    http: HttpClient::new(),
                    counters: counters.clone(),
                    rng: Rng::fork(seed, t as u64),
                };
                tokio::spawn(client.run(t, number.clone(), stop.clone()))
            })
            .collect();
        Workload {
            stop,
            tasks,
            counters,
            tickets,
        }
    }

    /// Stops starting new events, waits for each client's event in progress; every event
    /// acknowledged.
    pub async fn stop(self) -> Vec<EventId> {
        self.stop.store(true, Ordering::SeqCst);
        let mut acknowledged = Vec::new();
        for task in self.tasks {
            match task.await {
                Ok(events) => acknowledged.extend(events),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        acknowledged
    }
}

/// One ticket's client.
struct Client {
    config: WorkloadConfig,
    urls: ReplicaUrls,
    http: HttpClient,
    counters: Arc<Counters>,
    rng: Rng,
}

/// How one send ended.
enum Sent {
    Acknowledged,
    Retry,
    Refused,
}

impl Client {
    async fn run(mut self, t: usize, ticket: String, stop: Arc<AtomicBool>) -> Vec<EventId> {
        let mut acknowledged = Vec::new();
        let mut next = [0usize; 2];
        while !stop.load(Ordering::SeqCst) {
            // Webhooks need a ticket the bridge knows: one Incoming event acknowledged first.
            let stream = if next[0] == 0 || self.rng.below(2) == 0 {
                Stream::Incoming
            } else {
                Stream::Outgoing
            };
            let slot = &mut next[stream as usize];
            let event = EventId {
                stream,
                ticket: t,
                seq: *slot,
            };
            *slot += 1;
            match self.send_until_acknowledged(&ticket, event).await {
                Some(true) => acknowledged.push(event),
                Some(false) => {}
                None => break,
            }
            tokio::time::sleep(Duration::from_millis(self.rng.below(self.config.pace_ms + 1))).await;
        }
        acknowledged
    }

    /// `Some(true)` once acknowledged, `Some(false)` when refused, `None` when given up.
    async fn send_until_acknowledged(&mut self, ticket: &str, event: EventId) -> Option<bool> {
        let deadline = Instant::now() + self.config.event_deadline;
        let mut sends = 0;
        loop {
            sends += 1;
            if sends == 2 {
                self.counters.resends.fetch_add(1, Ordering::Relaxed);
            }
            match self.send_once(ticket, event).await {
                Sent::Acknowledged => return Some(true),
                Sent::Refused => return Some(false),
                Sent::Retry => {}
            }
            if Instant::now() >= deadline {
                self.counters.abandoned.fetch_add(1, Ordering::Relaxed);
                println!("nemesis: workload gave up on {event} after {sends} sends");
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn send_once(&mut self, ticket: &str, event: EventId) -> Sent {
        let up: Vec<String> = self.urls.read().unwrap().iter().flatten().cloned().collect();
        if up.is_empty() {
            return Sent::Retry;
        }
        let base = &up[self.rng.below(up.len() as u64) as usize];
        let key = format!("{ticket}-{}", event.text().replace(' ', "-"));
        let auth = format!("Bearer {}", self.config.incoming_token);
        let (url, headers, body) = match event.stream {
            Stream::Incoming => (
                format!("{base}{INCOMING_PATH}"),
                vec![
                    ("content-type", "application/json"),
                    ("authorization", auth.as_str()),
                    ("idempotency-key", key.as_str()),
                ],
                Event::example()
                    .owner(&self.config.owner)
                    .ticket(ticket)
                    .message(&event.text())
                    .bytes(),
            ),
            Stream::Outgoing => (
                format!("{base}/vendors/{}/hook", self.config.tenant),
                vec![("content-type", "application/json")],
                serde_json::to_vec(&json!({"ticketNumber": ticket, "message": event.text(), "id": key}))
                    .expect("JSON serialises"),
            ),
        };
        self.counters.sends.fetch_add(1, Ordering::Relaxed);
        let sent = tokio::time::timeout(
            self.config.send_timeout,
            self.http.try_send("POST", &url, &headers, body),
        );
        match sent.await {
            Err(_) => {
                self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                Sent::Retry
            }
            Ok(Err(_)) => {
                self.counters.transport_errors.fetch_add(1, Ordering::Relaxed);
                Sent::Retry
            }
            Ok(Ok(response)) if (200..300).contains(&response.status) => Sent::Acknowledged,
            Ok(Ok(response)) if response.status >= 500 || response.status == 429 || response.status == 408 => {
                self.counters.server_errors.fetch_add(1, Ordering::Relaxed);
                Sent::Retry
            }
            Ok(Ok(response)) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                println!("nemesis: {event} refused: {}", response.describe());
                Sent::Refused
            }
        }
    }
}
