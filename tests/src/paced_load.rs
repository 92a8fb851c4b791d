//! A load of Incoming-shaped events over keep-alive HTTP/1.1 connections (`accept-bench`):
//! closed loop (each connection sends again once answered) or open loop (evenly paced), every
//! body distinct, each answer's latency and delivery id recorded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use serde_json::Value;

use crate::Event;
use crate::round_robin_load::{connect, other_answers};

/// No single request may take longer; past it the request counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Latency percentiles, in microseconds, of a sorted sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub p50: Option<u64>,
    pub p99: Option<u64>,
    pub p999: Option<u64>,
}

impl Percentiles {
    /// The percentiles of `sample` (microseconds).
    pub fn of(mut sample: Vec<u64>) -> Percentiles {
        sample.sort_unstable();
        let at = |q: f64| -> Option<u64> {
            let rank = ((q * sample.len() as f64).ceil() as usize).max(1);
            sample.get(rank - 1).copied()
        };
        Percentiles {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
        }
    }

    /// Microseconds as milliseconds with two decimals, `-` for none.
    pub fn ms(value: Option<u64>) -> String {
        value.map_or("-".into(), |us| format!("{:.2}", us as f64 / 1000.0))
    }

    /// The p99 in milliseconds.
    pub fn p99_ms(&self) -> Option<f64> {
        self.p99.map(|us| us as f64 / 1000.0)
    }
}

/// Where the load goes.
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    /// `Authorization` value, when the server wants one.
    pub authorization: Option<String>,
    /// Read `deliveryId` and `duplicate` from each accepted answer (the bridge's).
    pub read_delivery_ids: bool,
}

/// How requests are paced.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Each connection sends again as soon as it has its answer.
    Closed,
    /// Sends evenly spaced at this many per second, request `i` on connection `i mod N`.
    Open { per_second: f64 },
}

/// Incoming event bodies: the contract's example with a ticket and a message of their own,
/// assembled from pieces serialised once so that building one costs the generator little.
pub struct Bodies {
    /// The template split at its two placeholders: `[before, between, after]`.
    pieces: [String; 3],
    /// Whether the ticket's placeholder comes first (serde_json orders the keys).
    ticket_first: bool,
    tickets: Vec<String>,
    label: String,
}

impl Bodies {
    /// Bodies over `tickets` fresh tickets; `label` goes into every message text, so that
    /// bodies of different phases differ too.
    pub fn new(tickets: &[String], label: &str) -> Bodies {
        const TICKET: &str = "@@TICKET@@";
        const MESSAGE: &str = "@@MESSAGE@@";
        let template = String::from_utf8(Event::example().ticket(TICKET).message(MESSAGE).bytes())
            .expect("serde_json writes UTF-8");
        let ticket_at = template.find(TICKET).expect("the ticket placeholder");
        let message_at = template.find(MESSAGE).expect("the message placeholder");
        let ((first_at, first), (second_at, second)) = if ticket_at < message_at {
            ((ticket_at, TICKET), (message_at, MESSAGE))
        } else {
            ((message_at, MESSAGE), (ticket_at, TICKET))
        };
        Bodies {
            pieces: [
                template[..first_at].to_string(),
                template[first_at + first.len()..second_at].to_string(),
                template[second_at + second.len()..].to_string(),
            ],
            ticket_first: ticket_at < message_at,
            tickets: tickets.to_vec(),
            label: label.to_string(),
        }
    }

    /// Body number `n`: ticket `n mod tickets`, message `accept-bench LABEL n`.
    pub fn body(&self, n: u64) -> Bytes {
        let ticket = &self.tickets[(n % self.tickets.len() as u64) as usize];
        let message = format!("accept-bench {} {n}", self.label);
        let (first, second) = if self.ticket_first {
            (ticket.as_str(), message.as_str())
        } else {
            (message.as_str(), ticket.as_str())
        };
        let [before, between, after] = &self.pieces;
        Bytes::from(format!("{before}{first}{between}{second}{after}"))
    }
}

/// What one phase of load produced.
#[derive(Default)]
pub struct Outcome {
    /// Answers 202 or 200.
    pub accepted: u64,
    /// Other answers, by status.
    pub other_statuses: BTreeMap<u16, u64>,
    /// Connection failures, broken answers and timeouts.
    pub transport_errors: u64,
    /// Accepted answers saying `"duplicate": true` (none expected: every body differs).
    pub duplicates: u64,
    /// Latency of each accepted answer, microseconds.
    pub latencies_us: Vec<u64>,
    /// From the first send to the last answer.
    pub elapsed: Duration,
    /// Requests sent.
    pub sent: u64,
    /// The first send (the phase's start).
    pub started: Option<Instant>,
    /// Delivery ids of accepted, non-duplicate answers, with when their request was sent.
    pub delivery_ids: Vec<(String, Instant)>,
    /// Answers without the expected `deliveryId`.
    pub missing_ids: u64,
}

impl Outcome {
    pub fn accepted_per_second(&self) -> f64 {
        self.accepted as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentiles(&self) -> Percentiles {
        Percentiles::of(self.latencies_us.clone())
    }

    /// `503 x12, 401 x1, transport x3`, or `-`.
    pub fn others(&self) -> String {
        let mut parts = other_answers(&self.other_statuses, self.transport_errors, self.duplicates);
        if self.missing_ids > 0 {
            parts.push(format!("no deliveryId x{}", self.missing_ids));
        }
        if parts.is_empty() { "-".into() } else { parts.join(", ") }
    }

    fn merge(&mut self, other: Outcome) {
        self.accepted += other.accepted;
        for (status, n) in other.other_statuses {
            *self.other_statuses.entry(status).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        self.duplicates += other.duplicates;
        self.latencies_us.extend(other.latencies_us);
        self.sent += other.sent;
        self.delivery_ids.extend(other.delivery_ids);
        self.missing_ids += other.missing_ids;
    }
}

/// How one request went.
enum Answer {
    Accepted { delivery: Option<(String, bool)> },
    Other(u16),
}

async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    target: &Target,
    host: &str,
    body: Bytes,
) -> anyhow::Result<Answer> {
    let mut request = http::Request::post(target.path.as_str())
        .header(HOST, host)
        .header(CONTENT_TYPE, "application/json");
    if let Some(authorization) = &target.authorization {
        request = request.header(AUTHORIZATION, authorization.as_str());
    }
    let request = request.body(Full::new(body))?;
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    if status != 200 && status != 202 {
        return Ok(Answer::Other(status));
    }
    if !target.read_delivery_ids {
        return Ok(Answer::Accepted { delivery: None });
    }
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let delivery = json["deliveryId"]
        .as_str()
        .map(|id| (id.to_string(), json["duplicate"] == Value::Bool(true)));
    Ok(Answer::Accepted { delivery })
}

/// When and how a phase sends, shared by its connections.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    pace: Pace,
    connections: usize,
    start: Instant,
    end: Instant,
}

/// Connection `index`'s share of the phase; reconnects after a transport error.
async fn drive_connection(
    mut sender: SendRequest<Full<Bytes>>,
    index: usize,
    schedule: Schedule,
    target: Arc<Target>,
    bodies: Arc<Bodies>,
    counter: Arc<AtomicU64>,
) -> Outcome {
    let Schedule {
        pace,
        connections,
        start,
        end,
    } = schedule;
    let host = target.addr.to_string();
    let mut outcome = Outcome::default();
    let mut free_since = start;
    let mut slot = index as u64;
    loop {
        let (n, scheduled) = match pace {
            Pace::Closed => {
                if Instant::now() >= end {
                    break;
                }
                (counter.fetch_add(1, Ordering::Relaxed), None)
            }
            Pace::Open { per_second } => {
                let at = start + Duration::from_secs_f64(slot as f64 / per_second);
                if at >= end {
                    break;
                }
                slot += connections as u64;
                tokio::time::sleep_until(at.into()).await;
                (counter.fetch_add(1, Ordering::Relaxed), Some(at))
            }
        };
        let body = bodies.body(n);
        let sent_at = Instant::now();
        // Open loop: a request kept waiting by the previous answer counts from its schedule.
        let counted_from = match scheduled {
            Some(at) if free_since > at => at,
            _ => sent_at,
        };
        outcome.sent += 1;
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, exchange(&mut sender, &target, &host, body)).await;
        let answered_at = Instant::now();
        free_since = answered_at;
        match answer {
            Ok(Ok(Answer::Accepted { delivery })) => {
                outcome.accepted += 1;
                outcome
                    .latencies_us
                    .push(answered_at.duration_since(counted_from).as_micros() as u64);
                match delivery {
                    Some((_, true)) => outcome.duplicates += 1,
                    Some((id, false)) => outcome.delivery_ids.push((id, sent_at)),
                    None if target.read_delivery_ids => outcome.missing_ids += 1,
                    None => {}
                }
            }
            Ok(Ok(Answer::Other(status))) => *outcome.other_statuses.entry(status).or_default() += 1,
            Ok(Err(_)) | Err(_) => {
                outcome.transport_errors += 1;
                match connect(target.addr).await {
                    Ok(fresh) => sender = fresh,
                    Err(_) => break,
                }
            }
        }
    }
    outcome
}

/// Opens `connections` connections, then drives `target` for `duration` at `pace`.
pub async fn run(
    target: Target,
    connections: usize,
    bodies: Bodies,
    pace: Pace,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(target.addr).await?);
    }
    let target = Arc::new(target);
    let bodies = Arc::new(bodies);
    let counter = Arc::new(AtomicU64::new(0));
    // Every connection is open before the clock starts.
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + duration;
    let schedule = Schedule {
        pace,
        connections,
        start,
        end,
    };
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(index, sender)| {
            tokio::spawn(drive_connection(
                sender,
                index,
                schedule,
                target.clone(),
                bodies.clone(),
                counter.clone(),
            ))
        })
        .collect();
    tokio::time::sleep_until(start.into()).await;
    let mut outcome = Outcome {
        started: Some(start),
        ..Outcome::default()
    };
    for task in tasks {
        outcome.merge(task.await.context("a load connection panicked")?);
    }
    outcome.elapsed = start.elapsed();
    Ok(outcome)
}
