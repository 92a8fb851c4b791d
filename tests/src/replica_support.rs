//! Pieces of the replica tests: several bridges on one PostgreSQL database, each test in a
//! schema of its own on the test server, and what a vendor received checked per delivery id
//! (how many times) and per ticket (in which order).
//!
//! The server comes from `DOLPHIN_BRIDGE_TEST_POSTGRES_URL` (`cargo xtask test` starts one and
//! sets it); without it these tests fail, naming the variable, rather than being skipped.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_postgres::NoTls;

use crate::Bridge;
use crate::crash_support::{readiness, str_field};
use crate::mock_http::Recorded;

/// The variable naming the PostgreSQL test database (a `postgres://` URL).
pub const POSTGRES_URL_ENV: &str = "DOLPHIN_BRIDGE_TEST_POSTGRES_URL";

/// The test server's URL; panics, naming the variable and the command that sets it, when unset.
pub fn postgres_server_url() -> String {
    std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_URL_ENV} is not set: the replica tests need a PostgreSQL server. \
             Run them with `cargo xtask test`, which starts one (or point {POSTGRES_URL_ENV} at a database)"
        )
    })
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to the PostgreSQL test server ({POSTGRES_URL_ENV}): {err}"));
    tokio::spawn(connection);
    client
}

/// A schema of its own on the test server (`t_<unique>`), dropped with this value: every
/// connection made with [`url`](Self::url) works in it, so the bridges' tables are created there.
pub struct TempSchema {
    name: String,
    url: String,
    /// The server's URL (without the schema).
    server: String,
}

impl TempSchema {
    /// Creates an empty schema on the test server.
    pub async fn create() -> TempSchema {
        Self::create_on(&postgres_server_url()).await
    }

    /// Creates an empty schema on the server at `server` (a `postgres://` URL).
    pub async fn create_on(server: &str) -> TempSchema {
        let name = format!("t_{}", crate::events::fresh_ticket());
        connect(server)
            .await
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap_or_else(|err| panic!("CREATE SCHEMA {name}: {err}"));
        let server = server.to_string();
        let separator = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{separator}options=-c%20search_path%3D{name}");
        TempSchema { name, url, server }
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database URL with `search_path` set to this schema: the bridges' `[store] url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A connection working in this schema, for a test that reads or changes rows directly.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    /// Outbox rows in this schema (every accepted event, delivered or not, until purged).
    pub async fn outbox_rows(&self) -> i64 {
        connect(&self.url)
            .await
            .query_one(&format!("SELECT COUNT(*) FROM {}.outbox", self.name), &[])
            .await
            .unwrap_or_else(|err| panic!("counting {}.outbox: {err}", self.name))
            .get(0)
    }
}

impl Drop for TempSchema {
    fn drop(&mut self) {
        // On a runtime of its own: the test's may be the one blocked here. A lock still held
        // by a connection of a bridge that is going away makes the drop give up, not wait.
        let name = self.name.clone();
        let server = self.server.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                let client = connect(&server).await;
                let drop = format!("SET lock_timeout = '2s'; DROP SCHEMA {name} CASCADE");
                let _ = client.batch_execute(&drop).await;
            });
        })
        .join();
    }
}

/// Asserts `GET /readyz` answers 200 with a PostgreSQL store (`journalMode` is the server's
/// `wal_level=...`, as SQLite's would be `wal`) committing synchronously; returns the `store`
/// object.
pub async fn assert_store_is_postgres(bridge: &Bridge) -> Value {
    let response = readiness(bridge).await;
    assert_eq!(response.status, 200, "GET /readyz: {}", response.describe());
    let body = response.json();
    assert_eq!(body["status"], "ready", "GET /readyz: {body}");
    let store = &body["store"];
    assert!(
        str_field(store, "journalMode").starts_with("wal_level="),
        "the bridge must run on PostgreSQL (readyz store journalMode `wal_level=...`): {body}"
    );
    assert!(
        matches!(str_field(store, "synchronous"), "on" | "remote_write" | "remote_apply"),
        "the store must commit synchronously (synchronous_commit on or stronger): {body}"
    );
    store.clone()
}

/// Waits until the shared outbox has nothing pending, for at most `timeout`; its counts, or
/// `None` when it did not settle in time (so that a test can still report what the vendor got).
pub async fn settled_within(bridge: &Bridge, timeout: Duration) -> Option<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let stats = bridge.outbox_stats().await;
        if stats["pending"] == 0 {
            return Some(stats);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Incoming event text of ticket `t`'s `n`-th event: the per-ticket sequence number is
/// read back from it by [`Receipts::examine`].
pub fn event_text(t: usize, n: usize) -> String {
    format!("t{t} m{n}")
}

/// The per-ticket sequence number in an [`event_text`].
fn sequence_of(text: &str) -> Option<usize> {
    text.rsplit_once(" m")?.1.parse().ok()
}

/// An acknowledged event: its ticket, its place in the ticket, and its delivery id.
#[derive(Debug, Clone)]
pub struct SentEvent {
    /// The ticket number.
    pub ticket: String,
    /// Its place among the ticket's events (from 0), as in its [`event_text`].
    pub n: usize,
    /// The delivery id the bridge acknowledged it with.
    pub delivery_id: String,
}

/// One delivery id that reached the vendor more than once.
#[derive(Debug, Clone)]
pub struct Duplicate {
    /// The delivery id.
    pub delivery_id: String,
    /// Its event's ticket and place in the ticket.
    pub ticket: String,
    pub n: usize,
    /// The vendor's request numbers (from 0) of each arrival, in order.
    pub arrivals: Vec<usize>,
    /// The attempt number each arrival carried.
    pub attempts: Vec<u64>,
}

/// What a vendor (the echo adapter's target) received, against what was acknowledged.
#[derive(Debug, Default)]
pub struct Receipts {
    /// Distinct acknowledged delivery ids that arrived at least once.
    pub delivered: usize,
    /// Requests in all (every arrival of every delivery id).
    pub requests: usize,
    /// Delivery ids that arrived more than once.
    pub duplicates: Vec<Duplicate>,
    /// Acknowledged events that never arrived.
    pub lost: Vec<String>,
    /// Tickets whose first arrivals were not in increasing sequence order.
    pub out_of_order: Vec<String>,
    /// Arrivals whose delivery id or text does not match what was acknowledged.
    pub mismatched: Vec<String>,
    /// Requests whose body is not JSON (cut short by a kill while being written).
    pub cut_off: usize,
}

impl Receipts {
    /// Compares the vendor's `requests` (in arrival order) with the acknowledged `sent` events.
    pub fn examine(requests: &[Recorded], sent: &[SentEvent]) -> Receipts {
        let by_id: HashMap<&str, &SentEvent> = sent.iter().map(|s| (s.delivery_id.as_str(), s)).collect();
        let mut receipts = Receipts {
            requests: requests.len(),
            ..Receipts::default()
        };
        let mut arrivals: HashMap<&str, Vec<(usize, u64)>> = HashMap::new();
        let mut last_first: HashMap<&str, usize> = HashMap::new();
        for (index, request) in requests.iter().enumerate() {
            let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
                receipts.cut_off += 1;
                continue;
            };
            let id = str_field(&body, "deliveryId");
            let Some(event) = by_id.get(id) else {
                receipts
                    .mismatched
                    .push(format!("request #{index}: unknown delivery id in {body}"));
                continue;
            };
            let (ticket, text) = (str_field(&body, "ticketNumber"), str_field(&body, "message"));
            if ticket != event.ticket || sequence_of(text) != Some(event.n) {
                receipts.mismatched.push(format!(
                    "request #{index}: {id} was acknowledged as m{} of {}, arrived as {text:?} of {ticket}",
                    event.n, event.ticket
                ));
                continue;
            }
            let seen = arrivals.entry(event.delivery_id.as_str()).or_default();
            if seen.is_empty() {
                // A first arrival: later than the ticket's previous first arrival.
                if let Some(&previous) = last_first.get(event.ticket.as_str())
                    && previous >= event.n
                {
                    receipts.out_of_order.push(format!(
                        "ticket {}: m{} arrived (request #{index}) after m{previous}",
                        event.ticket, event.n
                    ));
                }
                last_first.insert(event.ticket.as_str(), event.n);
            }
            seen.push((index, body["attempt"].as_u64().unwrap_or(0)));
        }
        let mut reported: HashSet<&str> = HashSet::new();
        for event in sent {
            if !reported.insert(event.delivery_id.as_str()) {
                continue;
            }
            match arrivals.get(event.delivery_id.as_str()) {
                None => receipts
                    .lost
                    .push(format!("m{} of {} ({})", event.n, event.ticket, event.delivery_id)),
                Some(seen) => {
                    receipts.delivered += 1;
                    if seen.len() > 1 {
                        receipts.duplicates.push(Duplicate {
                            delivery_id: event.delivery_id.clone(),
                            ticket: event.ticket.clone(),
                            n: event.n,
                            arrivals: seen.iter().map(|(index, _)| *index).collect(),
                            attempts: seen.iter().map(|(_, attempt)| *attempt).collect(),
                        });
                    }
                }
            }
        }
        receipts
    }

    /// Arrivals beyond the first of each delivery id.
    pub fn repeats(&self) -> usize {
        self.duplicates.iter().map(|d| d.arrivals.len() - 1).sum()
    }

    /// One line per duplicated delivery id.
    pub fn describe_duplicates(&self) -> Vec<String> {
        self.duplicates
            .iter()
            .map(|d| {
                format!(
                    "{} (m{} of {}): {} arrivals, vendor requests {:?}, attempts {:?}",
                    d.delivery_id,
                    d.n,
                    d.ticket,
                    d.arrivals.len(),
                    d.arrivals,
                    d.attempts
                )
            })
            .collect()
    }
}
