//! Hot-reload helpers: the two tagged echo builds and files an adapter must never be replaced
//! with, adapter and config files replaced the way deploy tools and editors do, a steady stream
//! of Incoming events with every answer recorded, and readers of `/admin/adapters`, `/metrics`
//! and the bridge's log.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::bridge::{ADMIN_TOKEN, Bridge};
use crate::client::{HttpClient, HttpResponse};
use crate::events::Event;
use crate::wait::WAIT;
use crate::{adapters, events};

/// The build tags of the test-only `echo-v1` and `echo-v2` adapters (echo copies its tag into
/// every delivered body as `build`).
pub const BUILDS: [&str; 2] = ["v1", "v2"];

/// The echo adapter built with build tag `tag` (`v1` or `v2`; `cargo xtask build-plugins`).
pub fn echo_build(tag: &str) -> PathBuf {
    adapters::adapter(&format!("echo-{tag}"))
}

/// The bytes of [`echo_build`].
pub fn echo_build_bytes(tag: &str) -> Vec<u8> {
    let path = echo_build(tag);
    std::fs::read(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// The test-only `wasi-command` component: valid, but of the `wasi:cli/command` world.
pub fn wasi_command_bytes() -> Vec<u8> {
    let path = adapters::adapter("wasi-command");
    std::fs::read(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// A valid core WebAssembly module (not a component):
/// `(module (func (export "f") (result i32) i32.const 42))`.
pub fn core_module_bytes() -> Vec<u8> {
    vec![
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1 (a core module)
        0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, // type section: () -> i32
        0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
        0x07, 0x05, 0x01, 0x01, b'f', 0x00, 0x00, // export section: "f" = function 0
        0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x2a, 0x0b, // code section: i32.const 42
    ]
}

/// `len` pseudo-random bytes from `seed` (never the WebAssembly magic).
pub fn garbage_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    if let Some(first) = bytes.first_mut() {
        *first = b'G';
    }
    bytes
}

/// `component` with a custom section `name` holding `payload` appended: still a valid component
/// with the same behaviour, but a different file (and content hash).
pub fn with_custom_section(component: &[u8], name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut content = Vec::new();
    leb128(name.len(), &mut content);
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    let mut out = component.to_vec();
    out.push(0); // custom section id
    leb128(content.len(), &mut out);
    out.extend_from_slice(&content);
    out
}

/// Hex SHA-256, as `/admin/adapters` shows `contentHash`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Replaces `path` the way deploy tools do: writes a temp file in the same folder, then renames
/// it over `path` (readers see the old file or the new one, never a partial one).
pub fn replace_by_rename(path: &Path, bytes: &[u8]) {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&temp, bytes).unwrap_or_else(|err| panic!("cannot write {}: {err}", temp.display()));
    std::fs::rename(&temp, path)
        .unwrap_or_else(|err| panic!("cannot rename {} over {}: {err}", temp.display(), path.display()));
}

/// Overwrites `path` in place (truncate, then write), as `cp` onto an existing file does.
pub fn overwrite_in_place(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
}

// ---------------------------------------------------------------------------------------------
// A stream of Incoming events

/// Sends Incoming events to one bridge with its credential; cheap to clone into tasks.
#[derive(Clone)]
pub struct IncomingSender {
    client: HttpClient,
    url: String,
    auth: Option<String>,
}

impl IncomingSender {
    pub fn new(bridge: &Bridge) -> IncomingSender {
        IncomingSender {
            client: HttpClient::new(),
            url: bridge.incoming_url(),
            auth: bridge.incoming_auth().map(|(_, value)| value),
        }
    }

    /// POSTs `event`; a transport error is returned, not a panic.
    pub async fn send(&self, event: &Value) -> Result<HttpResponse, String> {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(auth) = &self.auth {
            headers.push(("authorization", auth.as_str()));
        }
        let body = serde_json::to_vec(event).expect("JSON serialises");
        self.client.try_send("POST", &self.url, &headers, body).await
    }
}

/// One event a stream sent, and the bridge's answer.
#[derive(Debug, Clone)]
pub struct Sent {
    pub owner: String,
    pub ticket: String,
    /// Counts up per ticket from 0, in sending order (the event's `message` is `#{seq}`).
    pub seq: u64,
    /// The HTTP status; 0 when the request failed in transport.
    pub status: u16,
    /// `deliveryId` of a 202.
    pub delivery_id: Option<String>,
    /// `error.code` of a refusal, or the transport error.
    pub error: Option<String>,
    pub sent_at: Instant,
    pub answered_at: Instant,
}

impl Sent {
    /// Whether the event was accepted as new (202, not a duplicate).
    pub fn accepted(&self) -> bool {
        self.status == 202 && self.delivery_id.is_some()
    }

    /// `owner/ticket #seq: status (error)`, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "{}/{} #{}: {} {}",
            self.owner,
            self.ticket,
            self.seq,
            self.status,
            self.error.as_deref().unwrap_or("")
        )
    }
}

/// Events for one owner on a few tickets, each ticket sent one event at a time (the next once
/// the previous is answered) with `pause` between, until stopped. Every answer is recorded.
pub struct EventStream {
    pub owner: String,
    pub tickets: Vec<String>,
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<Sent>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl EventStream {
    /// Starts `tickets` senders for `owner`.
    pub fn start(sender: &IncomingSender, owner: &str, tickets: usize, pause: Duration) -> EventStream {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let ticket_numbers: Vec<String> = (0..tickets).map(|_| events::fresh_ticket()).collect();
        let tasks = ticket_numbers
            .iter()
            .map(|ticket| {
                let (sender, stop, sent) = (sender.clone(), stop.clone(), sent.clone());
                let (owner, ticket) = (owner.to_string(), ticket.clone());
                tokio::spawn(async move {
                    let mut seq = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let event = Event::example()
                            .owner(&owner)
                            .ticket(&ticket)
                            .message(&format!("#{seq}"))
                            .json();
                        let sent_at = Instant::now();
                        let result = sender.send(&event).await;
                        let answered_at = Instant::now();
                        let record = match result {
                            Ok(response) => {
                                let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
                                let delivery_id = (response.status == 202 && body["duplicate"] == false)
                                    .then(|| body["deliveryId"].as_str().map(str::to_string))
                                    .flatten();
                                Sent {
                                    owner: owner.clone(),
                                    ticket: ticket.clone(),
                                    seq,
                                    status: response.status,
                                    delivery_id,
                                    error: response.error_code(),
                                    sent_at,
                                    answered_at,
                                }
                            }
                            Err(error) => Sent {
                                owner: owner.clone(),
                                ticket: ticket.clone(),
                                seq,
                                status: 0,
                                delivery_id: None,
                                error: Some(error),
                                sent_at,
                                answered_at,
                            },
                        };
                        sent.lock().unwrap().push(record);
                        seq += 1;
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        EventStream {
            owner: owner.to_string(),
            tickets: ticket_numbers,
            stop,
            sent,
            tasks,
        }
    }

    /// Everything sent so far, in the order answered.
    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    /// How many events were answered so far.
    pub fn count(&self) -> usize {
        self.sent.lock().unwrap().len()
    }

    /// Waits (up to [`WAIT`]) until `check` holds for what was sent so far.
    pub async fn wait_until(&self, what: &str, check: impl Fn(&[Sent]) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            if check(&self.sent.lock().unwrap()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT:?} waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `n` more events were answered than now.
    pub async fn wait_for_more(&self, n: usize) {
        let target = self.count() + n;
        self.wait_until(&format!("{} has sent {target} events", self.owner), |sent| {
            sent.len() >= target
        })
        .await
    }

    /// Stops sending, waits for the answers of events in flight; returns everything sent.
    pub async fn stop(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a stream task panicked");
        }
        let mut sent = self.sent.lock().unwrap().clone();
        sent.sort_by(|a, b| (&a.ticket, a.seq).cmp(&(&b.ticket, b.seq)));
        sent
    }
}

// ---------------------------------------------------------------------------------------------
// The bridge's admin endpoints, metrics and log

/// `POST /admin/{path}` with the admin token and a JSON body.
pub async fn admin_post(bridge: &Bridge, path: &str, body: &Value) -> HttpResponse {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    bridge
        .client()
        .send(
            "POST",
            &format!("{}/admin/{path}", bridge.url()),
            &[("authorization", &auth), ("content-type", "application/json")],
            serde_json::to_vec(body).expect("JSON serialises"),
        )
        .await
}

/// `POST /admin/reload`.
pub async fn admin_reload(bridge: &Bridge) -> HttpResponse {
    admin_post(bridge, "reload", &json!({})).await
}

/// `GET /admin/adapters`: one entry per tenant.
pub async fn adapters_list(bridge: &Bridge) -> Vec<Value> {
    let response = bridge.admin_get("adapters").await;
    assert_eq!(response.status, 200, "GET /admin/adapters: {}", response.describe());
    response.json()["adapters"].as_array().cloned().unwrap_or_default()
}

/// The `/admin/adapters` entry of `tenant`; panics when there is none.
pub async fn adapter_info(bridge: &Bridge, tenant: &str) -> Value {
    let list = adapters_list(bridge).await;
    list.iter()
        .find(|a| a["tenant"] == tenant)
        .cloned()
        .unwrap_or_else(|| panic!("no tenant {tenant} in /admin/adapters: {list:#?}"))
}

/// Waits until `/admin/adapters` shows `tenant` on the adapter with content hash `hash`.
pub async fn wait_for_adapter_hash(bridge: &Bridge, tenant: &str, hash: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let info = adapter_info(bridge, tenant).await;
        if info["contentHash"] == hash {
            return info;
        }
        assert!(
            Instant::now() < deadline,
            "tenant {tenant} is still on {} after {WAIT:?}, not {hash}",
            info["contentHash"]
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `GET /metrics` as text.
pub async fn metrics_text(bridge: &Bridge) -> String {
    let response = bridge.client().get(&format!("{}/metrics", bridge.url())).await;
    assert_eq!(response.status, 200, "GET /metrics: {}", response.describe());
    response.text()
}

/// The value of sample `name` with exactly `labels` (in any order) in an OpenMetrics text; 0
/// when there is no such sample (a counter not yet incremented).
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    wanted.sort();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, mut found) = match series.split_once('{') {
            Some((n, rest)) => (
                n,
                rest.trim_end_matches('}')
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            ),
            None => (series, Vec::new()),
        };
        found.sort();
        if series_name == name && found == wanted {
            return value
                .parse()
                .unwrap_or_else(|_| panic!("metric line {line:?} has no number"));
        }
    }
    0.0
}

/// [`metric_value`] read from the bridge now.
pub async fn metric(bridge: &Bridge, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(&metrics_text(bridge).await, name, labels)
}

/// `dolphin_bridge_adapter_reloads_total{tenant,outcome}` (`loaded` or `rejected`).
pub async fn adapter_reloads(bridge: &Bridge, tenant: &str, outcome: &str) -> f64 {
    metric(
        bridge,
        "dolphin_bridge_adapter_reloads_total",
        &[("tenant", tenant), ("outcome", outcome)],
    )
    .await
}

/// `dolphin_bridge_config_reloads_rejected_total`.
pub async fn config_reloads_rejected(bridge: &Bridge) -> f64 {
    metric(bridge, "dolphin_bridge_config_reloads_rejected_total", &[]).await
}

/// How many lines the bridge has logged so far (a mark for [`wait_for_log_line`]).
pub fn log_mark(bridge: &Bridge) -> usize {
    bridge.stderr().lines().count()
}

/// The log lines after `mark` that contain every one of `needles`.
pub fn log_lines_since(bridge: &Bridge, mark: usize, needles: &[&str]) -> Vec<String> {
    bridge
        .stderr()
        .lines()
        .skip(mark)
        .filter(|line| needles.iter().all(|n| line.contains(n)))
        .map(str::to_string)
        .collect()
}

/// Waits until the bridge logs, after `mark`, a line containing every one of `needles`;
/// returns the first such line.
pub async fn wait_for_log_line(bridge: &Bridge, mark: usize, needles: &[&str]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(line) = log_lines_since(bridge, mark, needles).into_iter().next() {
            return line;
        }
        if Instant::now() >= deadline {
            let since: Vec<String> = bridge.stderr().lines().skip(mark).map(str::to_string).collect();
            let shown = &since[since.len().saturating_sub(40)..];
            panic!(
                "no log line with {needles:?} within {WAIT:?}; the last {} of {} line(s) logged since then:\n{}",
                shown.len(),
                since.len(),
                shown.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends the bridge SIGHUP (`kill -HUP PID`): reload the configuration and adapters.
pub fn send_sighup(bridge: &Bridge) {
    let pid = bridge.pid().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap_or_else(|err| panic!("cannot run `kill -HUP {pid}`: {err}"));
    assert!(status.success(), "`kill -HUP {pid}` failed: {status}");
}

/// Percentile `p` (0..=100) of `samples` by nearest rank; `samples` need not be sorted.
pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `config`'s TOML with `[adapters] cache_dir` and/or `[store] path` replaced (the harness puts
/// the store beside the config and shares one compile cache between all bridges).
pub fn config_toml_with(config: &crate::BridgeConfig, cache_dir: Option<&Path>, store_path: Option<&Path>) -> String {
    let mut table: toml::Table = config.to_toml().parse().expect("the harness writes valid TOML");
    let mut set = |section: &str, key: &str, value: &Path| {
        table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("a table")
            .insert(key.into(), toml::Value::String(value.display().to_string()));
    };
    if let Some(dir) = cache_dir {
        set("adapters", "cache_dir", dir);
    }
    if let Some(path) = store_path {
        set("store", "path", path);
    }
    toml::to_string(&table).expect("TOML serialises")
}
