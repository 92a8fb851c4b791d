//! Every built adapter, real vendors' and echoes: its language, component size, compile time
//! (Cranelift, the compile cache empty) and the time of one call through the bridge's runtime
//! against the mock vendor the end-to-end tests use (real HTTP on loopback):
//! - **incoming**: the next customer message of a ticket the adapter already knows (its
//!   mappings read from the key-value store, the message posted to the vendor);
//! - **webhook**: an agent's text reply mapped to an Outgoing event (the mock builds each
//!   webhook as the vendor sends it; no vendor call).
//!
//! Fresh instances (the default), one call at a time; p50 and p99 of `--calls N` calls (default
//! 200) after a warm-up. Needs the adapters built (`cargo xtask build-plugins`). Run with
//! `cargo bench -p dolphin-bridge --bench adapter_table`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use dolphin_bridge::config::Config;
use dolphin_bridge::contract::IncomingEvent;
use dolphin_bridge::registry::AdapterRegistry;
use dolphin_bridge::runtime::CallContext;
use dolphin_bridge::store::CommitMode;
use dolphin_bridge_tests::mock_chatwoot::MockChatwoot;
use dolphin_bridge_tests::mock_rocketchat::MockRocketChat;
use dolphin_bridge_tests::mock_sunshine::{APP_ID, MockSunshine, WEBHOOK_ID};
use dolphin_bridge_tests::{MockVendor, example_event};
use serde_json::{Value, json};

/// The adapters of the table: component file stem and language.
const ADAPTERS: [(&str, &str); 6] = [
    ("echo", "Rust"),
    ("chatwoot", "Rust"),
    ("echo_python", "Python"),
    ("rocketchat", "Python"),
    ("echo_js", "JavaScript"),
    ("sunshine", "JavaScript"),
];

const SUNSHINE_KEY_ID: &str = "app_bench";
const SUNSHINE_KEY_SECRET: &str = "bench-key-secret";
const CHATWOOT_TOKEN: &str = "bench-chatwoot-token";

/// The mock vendor behind one adapter.
enum Vendor {
    Echo(Arc<MockVendor>),
    Chatwoot(MockChatwoot),
    RocketChat(MockRocketChat),
    Sunshine(MockSunshine),
}

impl Vendor {
    async fn for_adapter(file: &str, echo: &Arc<MockVendor>) -> Vendor {
        match file {
            "chatwoot" => Vendor::Chatwoot(MockChatwoot::start(CHATWOOT_TOKEN).await),
            "rocketchat" => {
                let vendor = MockRocketChat::start("bench-webhook-token").await;
                // The bench measures the adapter's call, not Rocket.Chat's default of 10 calls a
                // minute per route (which the end-to-end tests cover).
                vendor.disable_rate_limiter();
                Vendor::RocketChat(vendor)
            }
            "sunshine" => Vendor::Sunshine(MockSunshine::start(SUNSHINE_KEY_ID, SUNSHINE_KEY_SECRET).await),
            _ => Vendor::Echo(echo.clone()),
        }
    }

    fn base_url(&self) -> String {
        match self {
            Vendor::Echo(v) => v.base_url(),
            Vendor::Chatwoot(v) => v.base_url(),
            Vendor::RocketChat(v) => v.base_url(),
            Vendor::Sunshine(v) => v.base_url(),
        }
    }

    /// The tenant's `[tenants.config]`, as the end-to-end tests configure it.
    fn config(&self) -> Vec<(&'static str, String)> {
        match self {
            Vendor::Echo(v) => vec![("url", v.url())],
            Vendor::Chatwoot(v) => vec![
                ("base_url", v.base_url()),
                ("account_id", v.account_id().to_string()),
                ("inbox_id", v.inbox_id().to_string()),
                ("api_access_token", CHATWOOT_TOKEN.into()),
            ],
            Vendor::RocketChat(v) => vec![
                ("base_url", v.base_url()),
                ("department", "sales".into()),
                ("visitor_token_secret", "bench-visitor-token-secret".into()),
            ],
            Vendor::Sunshine(v) => vec![
                ("base_url", v.base_url()),
                ("app_id", APP_ID.into()),
                ("key_id", SUNSHINE_KEY_ID.into()),
                ("key_secret", SUNSHINE_KEY_SECRET.into()),
            ],
        }
    }

    /// An agent's reply `text` on the ticket the warm-up created, as the vendor's webhook body.
    fn agent_reply(&self, ticket: &str, text: &str) -> Value {
        match self {
            Vendor::Echo(_) => json!({ "ticketNumber": ticket, "message": text }),
            Vendor::Chatwoot(v) => {
                let conversation = v.conversations().first().expect("the warm-up made a conversation").id;
                v.message_created_outgoing(conversation, text)
            }
            Vendor::RocketChat(v) => {
                let room = v.rooms().first().expect("the warm-up made a room").id.clone();
                v.agent_message_webhook(&room, text)
            }
            Vendor::Sunshine(v) => {
                let conversation = v
                    .conversations()
                    .first()
                    .expect("the warm-up made a conversation")
                    .id
                    .clone();
                let event = v.business_message(&conversation, json!({ "type": "text", "text": text }));
                json!({ "app": { "id": APP_ID }, "webhook": { "id": WEBHOOK_ID, "version": "v2" }, "events": [event] })
            }
        }
    }
}

fn adapter_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/adapter")
}

fn adapter_path(file: &str) -> PathBuf {
    adapter_dir().join(format!("{file}.wasm"))
}

/// One tenant per adapter, reaching its vendor.
fn config(dir: &Path, vendors: &[(&str, Vendor)]) -> Config {
    let mut text = format!(
        "[server]\nallow_unauthenticated = true\n[store]\npath = \"{}\"\n[three_dolphins]\nbase_url = \"http://127.0.0.1:9\"\n",
        dir.join("bench.db").display()
    );
    for (i, (file, vendor)) in vendors.iter().enumerate() {
        text.push_str(&format!(
            "[[tenants]]\nname = \"{file}\"\nowner = \"owner-{i}\"\nadapter = \"{}\"\nallowed_hosts = [\"{}\"]\nallow_private_networks = true\nwebhook = {{ auth = \"none\" }}\n[tenants.config]\n",
            adapter_path(file).display(),
            vendor.base_url()
        ));
        for (key, value) in vendor.config() {
            text.push_str(&format!("{key} = \"{value}\"\n"));
        }
    }
    Config::parse(&dir.join("bench.toml"), &text, &|_| None).expect("bench config")
}

/// The size and cold compile time of `file`'s component.
fn size_and_compile(dir: &Path, file: &str) -> (f64, Duration) {
    let runtime =
        dolphin_bridge::runtime::Runtime::new(dir.join(format!("cold-{file}")), 512 << 10, 1, 16).expect("runtime");
    let path = adapter_path(file);
    let bytes = std::fs::read(&path).expect("the adapter is built");
    let started = Instant::now();
    runtime
        .load_bytes(&path, &bytes, dolphin_bridge::runtime::content_hash(&bytes))
        .expect("the adapter loads");
    (bytes.len() as f64 / 1024.0, started.elapsed())
}

async fn incoming(registry: &AdapterRegistry, file: &str, ticket: &str, i: usize) -> Duration {
    let tenants = registry.snapshot();
    let tenant = tenants.by_name(file).expect("tenant loaded");
    let mut event = example_event();
    event["ticketNumber"] = ticket.into();
    event["owner"] = tenant.owner.clone().into();
    event["message"] = format!("customer message {i}").into();
    let event = IncomingEvent::parse(event.to_string().as_bytes()).expect("a valid Incoming event");
    let ctx = CallContext {
        tenant: file.to_string(),
        delivery_id: format!("{file}-in-{i}"),
        attempt: 1,
        lease: None,
    };
    let started = Instant::now();
    let outcome = registry
        .runtime()
        .call_incoming(&tenant.adapter, tenant.host.clone(), &tenant.instances, ctx, &event)
        .await;
    let took = started.elapsed();
    if let Err(e) = outcome {
        panic!("{file}: Incoming {i} failed: {e}");
    }
    took
}

async fn webhook(registry: &AdapterRegistry, file: &str, body: &Value, i: usize) -> Duration {
    let body = body.to_string().into_bytes();
    match common::timed_webhook(registry, file, body, format!("{file}-wh-{i}")).await {
        (took, Ok(outcome)) if outcome.events.len() == 1 => took,
        (_, Ok(outcome)) => panic!("{file}: the agent's reply gave {} events, not 1", outcome.events.len()),
        (_, Err(e)) => panic!("{file}: webhook {i} failed: {e}"),
    }
}

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6;
    (at(0.50), at(0.99))
}

#[tokio::main]
async fn main() {
    let calls: usize = std::env::args()
        .skip_while(|a| a != "--calls")
        .nth(1)
        .map_or(200, |n| n.parse().expect("--calls N"));
    let built: Vec<(&str, &str)> = ADAPTERS
        .into_iter()
        .filter(|(file, _)| adapter_path(file).is_file())
        .collect();
    assert!(
        !built.is_empty(),
        "no adapters built: run `cargo xtask build-plugins` first"
    );
    let dir = std::env::temp_dir().join(format!("dolphin-adapter-table-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();

    let echo = Arc::new(MockVendor::start().await);
    let mut vendors = Vec::new();
    for (file, _) in &built {
        vendors.push((*file, Vendor::for_adapter(file, &echo).await));
    }
    let config = config(&dir, &vendors);
    let store = Arc::new(dolphin_bridge::store::SqliteStore::open(&config.store.path, CommitMode::Group).unwrap());
    let registry = dolphin_bridge::build_registry(&config, store).expect("adapters load");

    println!("adapters: language, component size, compile time (empty compile cache), and one call");
    println!("  against the mock vendor on loopback, fresh instance, one at a time, {calls} calls:");
    println!("  incoming = the next customer message of a known ticket; webhook = an agent's reply mapped");
    println!(
        "{:<12} {:<11} {:>9} {:>11} {:>13} {:>13} {:>12} {:>12}",
        "adapter", "language", "size KiB", "compile ms", "incoming p50", "incoming p99", "webhook p50", "webhook p99"
    );
    for ((file, language), (_, vendor)) in built.iter().zip(&vendors) {
        let (size, compile) = size_and_compile(&dir, file);
        let ticket = format!("table-{file}");
        // The warm-up: the ticket's first message creates the vendor's side (contact,
        // conversation, room...), then a tenth of the calls warm caches up.
        for i in 0..=calls / 10 {
            incoming(&registry, file, &ticket, i).await;
        }
        let mut samples = Vec::with_capacity(calls);
        for i in 0..calls {
            samples.push(incoming(&registry, file, &ticket, calls + i).await);
        }
        let (in_p50, in_p99) = percentiles(samples);
        let mut samples = Vec::with_capacity(calls);
        for i in 0..calls / 10 + calls {
            let body = vendor.agent_reply(&ticket, &format!("agent reply {i}"));
            let took = webhook(&registry, file, &body, i).await;
            if i >= calls / 10 {
                samples.push(took);
            }
        }
        let (wh_p50, wh_p99) = percentiles(samples);
        println!(
            "{:<12} {:<11} {:>9.1} {:>11.0} {:>10.0} us {:>10.0} us {:>9.0} us {:>9.0} us",
            file,
            language,
            size,
            compile.as_secs_f64() * 1e3,
            in_p50,
            in_p99,
            wh_p50,
            wh_p99
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
