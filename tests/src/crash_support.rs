//! Pieces shared by the crash, soak and disk-full tests: a bridge's files that outlive its
//! process, a seeded generator, a sender that resends an unanswered Incoming event (same
//! `Idempotency-Key`) to wherever the bridge now is, and the store's readiness (`GET /readyz`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bridge::{INCOMING_PATH, start_on_config_file};
use crate::client::{HttpClient, HttpResponse};
use crate::events::fresh_ticket;
use crate::{Bridge, BridgeConfig, adapters};

/// A bridge's config and database in a folder the test keeps, so that the bridge can be killed
/// or stopped and started again on the same files.
pub struct BridgeFiles {
    config_path: PathBuf,
    incoming_token: Option<String>,
    dir: tempfile::TempDir,
}

impl BridgeFiles {
    /// Writes `config`, with `delivery` lines (`key = value`) added to its `[delivery]` table.
    pub fn write(config: &BridgeConfig, delivery: &[&str]) -> BridgeFiles {
        Self::write_edited(config, |text| add_to_table(&text, "delivery", delivery))
    }

    /// Writes `config`'s TOML as `edit` changes it (see [`add_to_table`], [`set_store_path`]).
    pub fn write_edited(config: &BridgeConfig, edit: impl FnOnce(String) -> String) -> BridgeFiles {
        let dir = tempfile::Builder::new()
            .prefix("dolphin-bridge-e2e-")
            .tempdir()
            .expect("a temp dir");
        let text = edit(config.to_toml());
        let config_path = dir.path().join("bridge.toml");
        std::fs::write(&config_path, text).expect("write the config");
        BridgeFiles {
            config_path,
            incoming_token: config.incoming_token.clone(),
            dir,
        }
    }

    /// The folder holding the config (and the store, unless the config puts it elsewhere).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Starts `dolphin-bridge serve` on these files.
    pub async fn start(&self) -> Bridge {
        start_on_config_file(&self.config_path, self.incoming_token.as_deref()).await
    }

    /// Starts `dolphin-bridge serve` on these files with extra environment (for `${NAME}` in
    /// the config).
    pub async fn start_with_env(&self, env: &[(String, String)]) -> Bridge {
        match Bridge::start_from_file(&adapters::bridge_binary(), &self.config_path, env, false).await {
            Ok(mut bridge) => {
                bridge.set_incoming_token(self.incoming_token.as_deref());
                bridge
            }
            Err(err) => panic!("the bridge did not start on {}: {err}", self.config_path.display()),
        }
    }
}

/// Adds `lines` (`key = value`) at the top of the config's `[table]`.
pub fn add_to_table(text: &str, table: &str, lines: &[&str]) -> String {
    if lines.is_empty() {
        return text.to_string();
    }
    let header = format!("\n[{table}]\n");
    assert!(text.contains(&header), "no [{table}] table in:\n{text}");
    text.replacen(&header, &format!("{header}{}\n", lines.join("\n")), 1)
}

/// Puts the store at `path` instead of `bridge.db` beside the config.
pub fn set_store_path(text: &str, path: &Path) -> String {
    let default = "\n[store]\npath = \"bridge.db\"\n";
    assert!(text.contains(default), "no default [store] path in:\n{text}");
    // A JSON string is a valid TOML basic string.
    let path = serde_json::to_string(&path.display().to_string()).expect("a string serialises");
    text.replacen(default, &format!("\n[store]\npath = {path}\n"), 1)
}

/// An owner no other test routes (so a stray request from another test's bridge is refused).
pub fn unique_owner(prefix: &str) -> String {
    format!("{prefix}-{}", fresh_ticket())
}

/// SplitMix64: a small seeded generator, so that a run can be repeated.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A generator for the `n`-th of several tasks sharing one seed.
    pub fn fork(seed: u64, n: u64) -> Rng {
        Rng(seed ^ (n + 1).wrapping_mul(0x2545_f491_4f6c_dd1d))
    }
}

/// The seed in the environment variable `var` (decimal or `0x` hex), else `default`.
pub fn seed_from_env(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => s.parse().ok(),
            }
        })
        .unwrap_or(default)
}

/// A string field of a JSON object (empty when absent).
pub fn str_field<'a>(body: &'a Value, field: &str) -> &'a str {
    body[field].as_str().unwrap_or_default()
}

/// Waits until the outbox has nothing pending (longer than the harness's usual wait: a crash
/// test leaves a backlog); returns its counts.
pub async fn wait_settled(bridge: &Bridge, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let stats = bridge.outbox_stats().await;
        if stats["pending"] == 0 {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox did not settle within {timeout:?}: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /readyz`.
pub async fn readiness(bridge: &Bridge) -> HttpResponse {
    bridge
        .client()
        .send("GET", &format!("{}/readyz", bridge.url()), &[], bytes::Bytes::new())
        .await
}

/// Asserts `GET /readyz` answers 200 `{"status":"ready","store":{"synchronous":"full",
/// "journalMode":"wal",...}}`: the writer's own connection syncs every commit. (SIGKILL keeps
/// the page cache, so a crash test alone would also pass with `synchronous = OFF`.) Returns
/// the `store` object.
pub async fn assert_store_durable(bridge: &Bridge) -> Value {
    let response = readiness(bridge).await;
    assert_eq!(response.status, 200, "GET /readyz: {}", response.describe());
    let body = response.json();
    assert_eq!(body["status"], "ready", "GET /readyz: {body}");
    let store = &body["store"];
    assert_eq!(
        (str_field(store, "synchronous"), str_field(store, "journalMode")),
        ("full", "wal"),
        "the store's writer must run with synchronous=FULL in WAL mode: {body}"
    );
    store.clone()
}

/// Where the senders post: the current bridge, and which start of it that is.
#[derive(Debug, Clone)]
pub struct Target {
    pub generation: u64,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
}

impl Target {
    pub fn shared(generation: u64, bridge: &Bridge) -> Arc<RwLock<Target>> {
        Arc::new(RwLock::new(Target {
            generation,
            base_url: bridge.url().to_string(),
        }))
    }

    /// Points the senders at `bridge`, start number `generation`.
    pub fn point_at(target: &RwLock<Target>, generation: u64, bridge: &Bridge) {
        let mut target = target.write().unwrap();
        target.generation = generation;
        target.base_url = bridge.url().to_string();
    }
}

/// What the senders counted.
#[derive(Default, Debug)]
pub struct LoadCounters {
    pub acknowledged: AtomicUsize,
    /// Order of acknowledgements across all senders.
    pub ack_seq: AtomicUsize,
    /// Sends that failed without an answer (bridge down, connection cut by a kill).
    pub transport_errors: AtomicUsize,
    /// 5xx answers (retried).
    pub server_errors: AtomicUsize,
    /// Answers from whatever listened on a killed bridge's old port (retried).
    pub stale_answers: AtomicUsize,
    /// Events sent more than once before their acknowledgement.
    pub resent_events: AtomicUsize,
    /// Acknowledgements that said `duplicate: true` (a resend of an event already accepted).
    pub duplicate_acks: AtomicUsize,
}

impl LoadCounters {
    /// `N resent event(s), N transport error(s), N 5xx, ...` for a printed line.
    pub fn summary(&self) -> String {
        format!(
            "{} resent event(s), {} transport error(s), {} 5xx, {} answer(s) from a stale port, {} duplicate acknowledgement(s)",
            self.resent_events.load(Ordering::Relaxed),
            self.transport_errors.load(Ordering::Relaxed),
            self.server_errors.load(Ordering::Relaxed),
            self.stale_answers.load(Ordering::Relaxed),
            self.duplicate_acks.load(Ordering::Relaxed),
        )
    }
}

/// An acknowledged Incoming event: its delivery id and its place among all acknowledgements.
#[derive(Debug, Clone)]
pub struct Acknowledged {
    pub delivery_id: String,
    pub ack_seq: usize,
}

/// Sends Incoming events to wherever `target` points, counting into `counters`.
#[derive(Clone)]
pub struct IncomingSender {
    pub client: HttpClient,
    pub target: Arc<RwLock<Target>>,
    /// The bridge's `server.incoming_token`.
    pub token: String,
    pub counters: Arc<LoadCounters>,
    /// No event may take longer than this to be acknowledged, restarts included.
    pub deadline: Duration,
}

impl IncomingSender {
    /// POSTs one Incoming event (`body`, with `Idempotency-Key: key`) until the bridge
    /// acknowledges it, resending after a transport error, a 5xx or a stale port's answer to
    /// wherever the target points by then; panics on any other refusal or after the deadline
    /// (`what` names the event in the message).
    pub async fn send_until_acknowledged(&self, key: &str, body: &[u8], what: &str) -> Acknowledged {
        let auth = format!("Bearer {}", self.token);
        let headers = [
            ("content-type", "application/json"),
            ("authorization", auth.as_str()),
            ("idempotency-key", key),
        ];
        let counters = &self.counters;
        let deadline = Instant::now() + self.deadline;
        let mut sends = 0;
        let ack = loop {
            let (generation, url) = {
                let target = self.target.read().unwrap();
                (target.generation, format!("{}{INCOMING_PATH}", target.base_url))
            };
            sends += 1;
            match self.client.try_send("POST", &url, &headers, body.to_vec()).await {
                Ok(response) if response.status == 202 => {
                    let json = response.json();
                    if json["duplicate"] == true {
                        counters.duplicate_acks.fetch_add(1, Ordering::Relaxed);
                    }
                    break Acknowledged {
                        delivery_id: str_field(&json, "deliveryId").to_string(),
                        ack_seq: counters.ack_seq.fetch_add(1, Ordering::SeqCst),
                    };
                }
                Ok(response) if response.status >= 500 => {
                    counters.server_errors.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) if generation != self.target.read().unwrap().generation => {
                    counters.stale_answers.fetch_add(1, Ordering::Relaxed);
                }
                Ok(response) => panic!("the bridge refused {what}: {}", response.describe()),
                Err(_) => {
                    counters.transport_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            assert!(
                Instant::now() < deadline,
                "{what} was not acknowledged within {:?} ({sends} sends)",
                self.deadline
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        if sends > 1 {
            counters.resent_events.fetch_add(1, Ordering::Relaxed);
        }
        counters.acknowledged.fetch_add(1, Ordering::SeqCst);
        ack
    }
}
