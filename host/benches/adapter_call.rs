//! One adapter call alone, through the bridge's own runtime: a fresh instance of the tenant's
//! component, the vendor webhook mapped to one 3Dolphins event (the `echo` adapters, in Rust,
//! Python and JavaScript), the answer back. Prints p50/p99 per language and each one's ratio to
//! the Rust adapter, measured in one run on the same machine.
//!
//! Needs the adapters built (`cargo xtask build-plugins`). Run with
//! `cargo bench -p dolphin-bridge --bench adapter_call` (`-- --calls N` to change the count).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dolphin_bridge::config::Config;
use dolphin_bridge::runtime::CallContext;
use dolphin_bridge::runtime::bindings::dolphin::bridge::types as wt;
use dolphin_bridge::store::CommitMode;

/// Adapters measured: tenant name and component file stem.
const ADAPTERS: [(&str, &str); 3] = [("rust", "echo"), ("python", "echo_python"), ("javascript", "echo_js")];

fn adapter_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/adapter")
}

fn config(dir: &Path, available: &[(&str, &str)]) -> Config {
    let mut text = format!(
        "[server]\nallow_unauthenticated = true\n[store]\npath = \"{}\"\n[three_dolphins]\nbase_url = \"http://127.0.0.1:9\"\n",
        dir.join("bench.db").display()
    );
    for (i, (name, file)) in available.iter().enumerate() {
        text.push_str(&format!(
            "[[tenants]]\nname = \"{name}\"\nowner = \"owner-{i}\"\nadapter = \"{}\"\nwebhook = {{ auth = \"none\" }}\n[tenants.config]\nurl = \"http://127.0.0.1:9/\"\n",
            adapter_dir().join(format!("{file}.wasm")).display()
        ));
    }
    Config::parse(&dir.join("bench.toml"), &text, &|_| None).expect("bench config")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let calls: usize = std::env::args()
        .skip_while(|a| a != "--calls")
        .nth(1)
        .map_or(2_000, |n| n.parse().expect("--calls N"));
    let available: Vec<(&str, &str)> = ADAPTERS
        .into_iter()
        .filter(|(_, file)| adapter_dir().join(format!("{file}.wasm")).is_file())
        .collect();
    assert!(
        !available.is_empty(),
        "no adapters built: run `cargo xtask build-plugins` first"
    );
    let dir = std::env::temp_dir().join(format!("dolphin-adapter-bench-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = config(&dir, &available);
    let store = Arc::new(dolphin_bridge::store::SqliteStore::open(&config.store.path, CommitMode::Group).unwrap());
    let registry = dolphin_bridge::build_registry(&config, store).expect("adapters load");
    let tenants = registry.snapshot();
    let body = br#"{"ticketNumber":"T-1","message":"Halo from the agent"}"#.to_vec();

    println!("adapter call alone: fresh instance + webhook mapping, {calls} calls each, one at a time");
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>12}",
        "adapter", "p50 us", "p99 us", "mean us", "p50 vs rust"
    );
    let mut rust_p50 = None;
    for (name, _) in &available {
        let tenant = tenants.by_name(name).expect("tenant loaded");
        let mut samples = Vec::with_capacity(calls);
        for i in 0..calls + calls / 10 {
            let request = wt::WebhookRequest {
                method: "POST".into(),
                path: "/".into(),
                query: String::new(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.clone(),
            };
            let ctx = CallContext {
                tenant: name.to_string(),
                delivery_id: format!("bench-{i}"),
                attempt: 1,
            };
            let started = Instant::now();
            let outcome = registry
                .runtime()
                .call_webhook(&tenant.adapter, tenant.host.clone(), ctx, request)
                .await;
            let took = started.elapsed();
            outcome.expect("the echo adapter maps the webhook");
            // The first tenth warms caches up and is not counted.
            if i >= calls / 10 {
                samples.push(took);
            }
        }
        samples.sort();
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        let p50 = percentile(&samples, 0.50);
        let ratio = match rust_p50 {
            None => {
                rust_p50 = Some(p50);
                1.0
            }
            Some(rust) => p50.as_secs_f64() / rust.as_secs_f64(),
        };
        println!(
            "{:<12} {:>10.1} {:>10.1} {:>10.1} {:>11.2}x",
            name,
            p50.as_secs_f64() * 1e6,
            percentile(&samples, 0.99).as_secs_f64() * 1e6,
            mean.as_secs_f64() * 1e6,
            ratio
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
