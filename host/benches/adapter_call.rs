//! One adapter call alone, through the bridge's own runtime: an instance of the tenant's
//! component (fresh, or kept from an earlier call for a tenant with `[tenants.instance_reuse]`),
//! the vendor webhook mapped to one 3Dolphins event (the `echo` adapters, in Rust, Python and
//! JavaScript), the answer back. Prints p50/p99 per language and each one's ratio to the Rust
//! adapter with fresh instances, measured in one run on the same machine. (Every adapter's size,
//! compile time and call against its vendor: the `adapter_table` bench.)
//!
//! Needs the adapters built (`cargo xtask build-plugins`). Run with
//! `cargo bench -p dolphin-bridge --bench adapter_call` (`-- --calls N` to change the count,
//! `-- --only rust` to measure one adapter, e.g. under a profiler).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use dolphin_bridge::config::Config;
use dolphin_bridge::registry::AdapterRegistry;
use dolphin_bridge::store::CommitMode;
use dolphin_bridge_tests::bench_target::{Better, print_target};

/// Adapters measured: tenant name and component file stem.
const ADAPTERS: [(&str, &str); 3] = [("rust", "echo"), ("python", "echo_python"), ("javascript", "echo_js")];

/// Webhook bodies measured: one mapped to an Outgoing event (the adapter reads the ticket's
/// channel from its key-value store), one refused by the mapping itself (no host call).
const CASES: [(&str, &[u8]); 2] = [
    (
        "mapped (1 kv read)",
        br#"{"ticketNumber":"T-1","message":"Halo from the agent"}"#,
    ),
    ("refused (no host call)", br#"{"ticketNumber":"T-1"}"#),
];

fn adapter_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/adapter")
}

/// How the tenants get their instances: a fresh one per call (the default), or kept between
/// calls (`[tenants.instance_reuse] idle`, as many as calls run at once here).
const INSTANCES: [(&str, usize); 2] = [("fresh", 0), ("reused", CONCURRENT)];

/// The tenant measuring `adapter` with `instances`.
fn tenant_name(adapter: &str, instances: &str) -> String {
    format!("{adapter}-{instances}")
}

fn config(dir: &Path, available: &[(&str, &str)]) -> Config {
    let mut text = format!(
        "[server]\nallow_unauthenticated = true\n[store]\npath = \"{}\"\n[three_dolphins]\nbase_url = \"http://127.0.0.1:9\"\n",
        dir.join("bench.db").display()
    );
    for (i, (name, file)) in available.iter().enumerate() {
        for (instances, idle) in INSTANCES {
            text.push_str(&format!(
                "[[tenants]]\nname = \"{}\"\nowner = \"owner-{i}-{instances}\"\nadapter = \"{}\"\nwebhook = {{ auth = \"none\" }}\n[tenants.config]\nurl = \"http://127.0.0.1:9/\"\n[tenants.instance_reuse]\nidle = {idle}\n",
                tenant_name(name, instances),
                adapter_dir().join(format!("{file}.wasm")).display()
            ));
        }
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
    let only = std::env::args().skip_while(|a| a != "--only").nth(1);
    let available: Vec<(&str, &str)> = ADAPTERS
        .into_iter()
        .filter(|(name, _)| only.as_deref().is_none_or(|only| only == *name))
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
    let registry = Arc::new(dolphin_bridge::build_registry(&config, store).expect("adapters load"));

    println!("adapter call alone: an instance (fresh, or reused) + webhook mapping, {calls} calls each");
    println!("  one at a time: the latency of one call, the hand-off to an idle adapter thread and back included");
    println!("  {CONCURRENT} at once: the adapter threads kept busy; per call = elapsed / calls");
    println!("  vs rust: against the Rust adapter with fresh instances, same webhook");
    println!(
        "{:<12} {:<10} {:<24} {:>9} {:>9} {:>9} {:>12} {:>13} {:>12}",
        "adapter", "instances", "webhook", "p50 us", "p99 us", "mean us", "p50 vs rust", "per call us", "vs rust"
    );
    let mut rust = std::collections::HashMap::new();
    // (adapter, instances, case) -> (p50 us, p99 us, per call us), for the target lines.
    let mut figures = std::collections::BTreeMap::new();
    for (adapter, _) in &available {
        for ((instances, _), (case, body)) in INSTANCES.into_iter().flat_map(|i| CASES.map(|c| (i, c))) {
            let name = &tenant_name(adapter, instances);
            // The first tenth warms caches up and is not counted.
            for i in 0..calls / 10 {
                call(&registry, name, body, i).await;
            }
            let mut samples = Vec::with_capacity(calls);
            for i in 0..calls {
                samples.push(call(&registry, name, body, i).await);
            }
            samples.sort();
            let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
            let p50 = percentile(&samples, 0.50);
            let per_call = concurrent(&registry, name, body, calls).await;
            let (rust_p50, rust_per_call) = *rust.entry(case).or_insert((p50, per_call));
            let us = |d: Duration| d.as_secs_f64() * 1e6;
            figures.insert(
                (*adapter, instances, case),
                (us(p50), us(percentile(&samples, 0.99)), us(per_call)),
            );
            println!(
                "{:<12} {:<10} {:<24} {:>9.1} {:>9.1} {:>9.1} {:>11.2}x {:>13.1} {:>11.2}x",
                adapter,
                instances,
                case,
                p50.as_secs_f64() * 1e6,
                percentile(&samples, 0.99).as_secs_f64() * 1e6,
                mean.as_secs_f64() * 1e6,
                p50.as_secs_f64() / rust_p50.as_secs_f64(),
                per_call.as_secs_f64() * 1e6,
                per_call.as_secs_f64() / rust_per_call.as_secs_f64(),
            );
        }
    }
    // The targets: a Rust call alone (one at a time, the thread hand-off included) within
    // 25 us p50 and 60 us p99, and 16 at once within 15 us a call, in every case (fresh and
    // reused instances, each webhook); Python and JavaScript within 10x the Rust call's cost,
    // with fresh instances and with theirs reused (against the Rust call's default, fresh).
    for ((adapter, instances, case), (p50, p99, per_call)) in &figures {
        if *adapter == "rust" {
            let what = format!("{instances} instances, {case}");
            print_target(
                &format!("Rust adapter call p50, {what}"),
                *p50,
                "us",
                25.0,
                Better::Lower,
            );
            print_target(
                &format!("Rust adapter call p99, {what}"),
                *p99,
                "us",
                60.0,
                Better::Lower,
            );
            print_target(
                &format!("Rust adapter call, {CONCURRENT} at once, per call, {what}"),
                *per_call,
                "us",
                15.0,
                Better::Lower,
            );
        } else if *adapter != "rust"
            && let Some((_, _, rust_per_call)) = figures.get(&("rust", "fresh", *case))
        {
            print_target(
                &format!("{adapter} adapter call, {instances} instances / Rust fresh ({CONCURRENT} at once), {case}"),
                per_call / rust_per_call,
                "x",
                10.0,
                Better::Lower,
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Calls running at once in the throughput measurement.
const CONCURRENT: usize = 16;

/// One webhook call of tenant `name` with `body`; how long it took.
async fn call(registry: &AdapterRegistry, name: &str, body: &[u8], i: usize) -> Duration {
    let (took, outcome) = common::timed_webhook(registry, name, body.to_vec(), format!("bench-{i}")).await;
    outcome.expect("the echo adapter answers the webhook");
    took
}

/// `calls` calls, [`CONCURRENT`] at a time; the elapsed time per call.
async fn concurrent(registry: &Arc<AdapterRegistry>, name: &str, body: &'static [u8], calls: usize) -> Duration {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..CONCURRENT {
        let (registry, name) = (registry.clone(), name.to_string());
        tasks.spawn(async move {
            for i in (worker..calls).step_by(CONCURRENT) {
                call(&registry, &name, body, i).await;
            }
        });
    }
    tasks.join_all().await;
    started.elapsed() / calls as u32
}
