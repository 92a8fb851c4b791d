//! A closed-loop load of Incoming events spread round-robin over several bridges, as a load
//! balancer in front of replicas would (`replica-bench`): each sender keeps one keep-alive
//! connection to every bridge and sends its requests to them in turn.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// The longest one request may take before it counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the load produced, merged over the senders.
#[derive(Default)]
pub struct Outcome {
    pub accepted: u64,
    pub other_statuses: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    pub duplicates: u64,
    pub latencies_us: Vec<u64>,
    /// Delivery ids of accepted, non-duplicate answers.
    pub delivery_ids: Vec<String>,
    /// Accepted answers per replica.
    pub per_replica: Vec<u64>,
}

impl Outcome {
    /// Adds `other`'s figures to these.
    pub fn merge(&mut self, other: Outcome) {
        self.accepted += other.accepted;
        for (status, n) in other.other_statuses {
            *self.other_statuses.entry(status).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        self.duplicates += other.duplicates;
        self.latencies_us.extend(other.latencies_us);
        self.delivery_ids.extend(other.delivery_ids);
        if self.per_replica.len() < other.per_replica.len() {
            self.per_replica.resize(other.per_replica.len(), 0);
        }
        for (mine, theirs) in self.per_replica.iter_mut().zip(other.per_replica) {
            *mine += theirs;
        }
    }

    /// `503 x12, transport x3`, or `-`.
    pub fn others(&self) -> String {
        let parts = other_answers(&self.other_statuses, self.transport_errors, self.duplicates);
        if parts.is_empty() { "-".into() } else { parts.join(", ") }
    }
}

/// What a load got besides accepted events: `503 x12`, `transport x3`, `duplicate x1`.
pub fn other_answers(statuses: &BTreeMap<u16, u64>, transport_errors: u64, duplicates: u64) -> Vec<String> {
    let mut parts: Vec<String> = statuses.iter().map(|(status, n)| format!("{status} x{n}")).collect();
    if transport_errors > 0 {
        parts.push(format!("transport x{transport_errors}"));
    }
    if duplicates > 0 {
        parts.push(format!("duplicate x{duplicates}"));
    }
    parts
}

/// One replica as the load generator sees it.
pub struct Endpoint {
    pub addr: SocketAddr,
    /// The `Authorization` header's value, if the bridge asks for one.
    pub authorization: Option<String>,
}

/// One keep-alive HTTP/1.1 connection to `addr`, without Nagle's delay (small requests and
/// answers); its driver runs on a task of its own until the sender is dropped or the server
/// closes it.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("the HTTP/1 handshake")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// One POST; `Ok(Some(id, duplicate))` for a 2xx with a delivery id, `Err(status)` otherwise.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    endpoint: &Endpoint,
    body: Bytes,
) -> anyhow::Result<Result<Option<(String, bool)>, u16>> {
    let mut request = http::Request::post(crate::bridge::INCOMING_PATH)
        .header(HOST, endpoint.addr.to_string())
        .header(CONTENT_TYPE, "application/json");
    if let Some(authorization) = &endpoint.authorization {
        request = request.header(AUTHORIZATION, authorization.as_str());
    }
    sender.ready().await?;
    let response = sender.send_request(request.body(Full::new(body))?).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    if status != 200 && status != 202 {
        return Ok(Err(status));
    }
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok(Ok(json["deliveryId"]
        .as_str()
        .map(|id| (id.to_string(), json["duplicate"] == Value::Bool(true)))))
}

/// Sender `index`: until `end`, each request (body number `n` from the shared `counter`) to the
/// next replica in turn (starting at its own
/// index, so the senders spread from the first request on).
pub async fn drive_sender(
    index: usize,
    endpoints: Arc<Vec<Endpoint>>,
    bodies: Arc<dyn Fn(u64) -> Bytes + Send + Sync>,
    counter: Arc<AtomicU64>,
    end: Instant,
) -> anyhow::Result<Outcome> {
    let mut senders = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints.iter() {
        senders.push(connect(endpoint.addr).await?);
    }
    let mut outcome = Outcome {
        per_replica: vec![0; endpoints.len()],
        ..Outcome::default()
    };
    let mut turn = index;
    while Instant::now() < end {
        let replica = turn % endpoints.len();
        turn += 1;
        let body = bodies(counter.fetch_add(1, Ordering::Relaxed));
        let sent_at = Instant::now();
        let answer = tokio::time::timeout(
            REQUEST_TIMEOUT,
            exchange(&mut senders[replica], &endpoints[replica], body),
        )
        .await;
        let latency = sent_at.elapsed().as_micros() as u64;
        match answer {
            Ok(Ok(Ok(delivery))) => {
                outcome.accepted += 1;
                outcome.per_replica[replica] += 1;
                outcome.latencies_us.push(latency);
                match delivery {
                    Some((_, true)) => outcome.duplicates += 1,
                    Some((id, false)) => outcome.delivery_ids.push(id),
                    None => bail!("a 2xx answer without a deliveryId"),
                }
            }
            Ok(Ok(Err(status))) => *outcome.other_statuses.entry(status).or_default() += 1,
            Ok(Err(_)) | Err(_) => {
                outcome.transport_errors += 1;
                senders[replica] = connect(endpoints[replica].addr).await?;
            }
        }
    }
    Ok(outcome)
}
