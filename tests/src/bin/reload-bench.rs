//! `reload-bench`: how quickly the bridge serves a new adapter file, and how long a bridge with
//! many distinct adapters takes to start on an empty compile cache and on a warm one. It prints
//! figures and asserts nothing about time.
//!
//! 1. **Swap latency**: a tenant's adapter file is replaced (written beside it, renamed over it)
//!    by the other of the two tagged echo builds while a prober sends an event every few
//!    milliseconds; the time from the rename to the first request the vendor receives from the
//!    new version (its `build` tag), repeated, as p50/p99. Measured with the database in its own
//!    folder, then a few times with it beside the config file, as the default layout has it.
//! 2. **Start-up**: spawn to `listening on` of a bridge with N tenants, each on its own copy of
//!    echo made distinct by a custom section, first with an empty `adapters.cache_dir`, then with
//!    the cache that run filled.
//!
//! `cargo xtask bench` runs it against a release bridge; directly:
//! `cargo run -p dolphin-bridge-tests --bin reload-bench -- [--swaps N] [--tenants N]`
//! (the bridge from `DOLPHIN_BRIDGE_BIN`, else the debug build; adapters from
//! `cargo xtask build-plugins`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use dolphin_bridge_tests::bridge::INCOMING_TOKEN;
use dolphin_bridge_tests::mock_http::{MockServer, Recorded, Reply};
use dolphin_bridge_tests::reload_support::{
    BUILDS, IncomingSender, adapter_info, config_toml_with, echo_build_bytes, percentile, sha256_hex,
    with_custom_section,
};
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, Tenant, adapters, events};
use serde_json::{Value, json};

const DEFAULT_SWAPS: usize = 20;
const DEFAULT_TENANTS: usize = 50;
/// Swaps not measured: the first load of each build compiles it into the (fresh) cache.
const WARM_UP_SWAPS: usize = 2;
/// Swaps measured with the database beside the config file, and how long each may take.
const BESIDE_CONFIG_SWAPS: usize = 3;
const BESIDE_CONFIG_TIMEOUT: Duration = Duration::from_secs(5);
/// The prober: a pause between events, spread over this many tickets.
const PROBE_PAUSE: Duration = Duration::from_millis(5);
const PROBE_TICKETS: usize = 8;
/// Warm start-ups measured (the median is compared with the cold one).
const WARM_STARTS: usize = 3;

struct Args {
    swaps: usize,
    tenants: usize,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        swaps: DEFAULT_SWAPS,
        tenants: DEFAULT_TENANTS,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<usize> {
            it.next()
                .with_context(|| format!("{name} needs a number"))?
                .parse()
                .with_context(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--swaps" => args.swaps = number("--swaps")?,
            "--tenants" => args.tenants = number("--tenants")?,
            "-h" | "--help" => {
                println!(
                    "reload-bench [--swaps N (default {DEFAULT_SWAPS})] [--tenants N (default {DEFAULT_TENANTS})]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    println!("bridge binary: {}", adapters::bridge_binary().display());
    swap_latency(args.swaps).await?;
    startup(args.tenants).await?;
    Ok(())
}

/// With `RELOAD_BENCH_VERBOSE` set, the bridges' logs are copied to stderr.
fn verbose() -> bool {
    std::env::var_os("RELOAD_BENCH_VERBOSE").is_some()
}

// ---------------------------------------------------------------------------------------------
// 1. Swap latency

/// A vendor that records when each request arrived and which build sent it.
struct TimedVendor {
    server: MockServer,
    arrivals: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl TimedVendor {
    async fn start() -> TimedVendor {
        let arrivals: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let record = arrivals.clone();
        let server = MockServer::start(Arc::new(move |request: &Recorded| {
            let at = Instant::now();
            let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            let build = body["build"].as_str().unwrap_or_default().to_string();
            record.lock().unwrap().push((at, build));
            Reply::json(200, &json!({"ok": true}))
        }))
        .await;
        TimedVendor { server, arrivals }
    }

    /// When the first request from `build` arrived after `since`, if one has.
    fn first_from(&self, build: &str, since: Instant) -> Option<Instant> {
        self.arrivals
            .lock()
            .unwrap()
            .iter()
            .find(|(at, b)| *at >= since && b == build)
            .map(|(at, _)| *at)
    }
}

/// Sends an event for `owner` every `PROBE_PAUSE`, round-robin over fresh tickets, until `stop`
/// is set, sending nothing while `paused` is; returns how many were not accepted.
fn start_prober(
    sender: IncomingSender,
    owner: String,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let tickets: Vec<String> = (0..PROBE_TICKETS).map(|_| events::fresh_ticket()).collect();
        let mut refused = 0;
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if paused.load(Ordering::Relaxed) {
                tokio::time::sleep(PROBE_PAUSE).await;
                continue;
            }
            let ticket = &tickets[n as usize % tickets.len()];
            let event = Event::example()
                .owner(&owner)
                .ticket(ticket)
                .message(&format!("probe #{n}"))
                .json();
            match sender.send(&event).await {
                Ok(response) if response.status == 202 => {}
                _ => refused += 1,
            }
            n += 1;
            tokio::time::sleep(PROBE_PAUSE).await;
        }
        refused
    })
}

/// Swaps the adapter `warm_up + swaps` times and returns the latency of the last `swaps`; `None`
/// for a swap whose new version did not serve within `timeout` (the prober then pauses until
/// it does, so the next swap starts from the new version).
async fn measure_swaps(
    store_beside_config: bool,
    cache_dir: &Path,
    warm_up: usize,
    swaps: usize,
    timeout: Duration,
) -> Result<Vec<Option<Duration>>> {
    let dir = tempfile::Builder::new().prefix("reload-bench-").tempdir()?;
    let (config_dir, adapters_dir, store_dir) = (
        dir.path().join("config"),
        dir.path().join("adapters"),
        dir.path().join("store"),
    );
    for folder in [&config_dir, &adapters_dir, &store_dir] {
        std::fs::create_dir_all(folder)?;
    }
    let builds = [echo_build_bytes(BUILDS[0]), echo_build_bytes(BUILDS[1])];
    let adapter = adapters_dir.join("acme.wasm");
    std::fs::write(&adapter, &builds[0])?;
    let vendor = TimedVendor::start().await;
    let owner = events::EXAMPLE_OWNER.to_string();
    let config = BridgeConfig::new("http://127.0.0.1:9").tenant(
        Tenant::new("acme", &owner, &adapter)
            .allow(&vendor.server.base_url())
            .config("url", &format!("{}/vendor", vendor.server.base_url())),
    );
    let store = (!store_beside_config).then(|| store_dir.join("bridge.db"));
    let config_path = config_dir.join("bridge.toml");
    std::fs::write(
        &config_path,
        config_toml_with(&config, Some(cache_dir), store.as_deref()),
    )?;
    let mut bridge = Bridge::start_from_file(&adapters::bridge_binary(), &config_path, &[], verbose())
        .await
        .map_err(anyhow::Error::msg)?;
    bridge.set_incoming_token(Some(INCOMING_TOKEN));

    let (stop, paused) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let prober = start_prober(IncomingSender::new(&bridge), owner, stop.clone(), paused.clone());
    // The bridge starts watching files just after its `listening on` line (a change before that
    // would go unseen): start once it serves, and a moment later.
    let started = Instant::now();
    while vendor.first_from(BUILDS[0], started).is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the bridge does not serve; its log:\n{}", bridge.stderr());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut latencies = Vec::new();
    let mut current = 0;
    for swap in 0..warm_up + swaps {
        let next = 1 - current;
        // As a deploy tool does: the new file beside the old one, then renamed over it.
        let temp = adapters_dir.join(".acme.wasm.new");
        std::fs::write(&temp, &builds[next])?;
        let written = Instant::now();
        std::fs::rename(&temp, &adapter)?;
        let served = loop {
            if let Some(at) = vendor.first_from(BUILDS[next], written) {
                break Some(at);
            }
            if written.elapsed() > timeout {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        if served.is_none() {
            // Not served under load: pause the prober until the bridge shows the new version,
            // then wait for it to serve, so the next swap starts from it.
            paused.store(true, Ordering::Relaxed);
            let hash = sha256_hex(&builds[next]);
            let paused_at = Instant::now();
            while adapter_info(&bridge, "acme").await["contentHash"] != hash.as_str() {
                if paused_at.elapsed() > Duration::from_secs(30) {
                    bail!(
                        "build {} never loaded after a swap; the bridge's log:\n{}",
                        BUILDS[next],
                        bridge.stderr()
                    );
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            paused.store(false, Ordering::Relaxed);
            let resumed = Instant::now();
            while vendor.first_from(BUILDS[next], resumed).is_none() {
                if resumed.elapsed() > Duration::from_secs(30) {
                    bail!("build {} never served after a swap", BUILDS[next]);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        if swap >= warm_up {
            latencies.push(served.map(|at| at - written));
        }
        current = next;
        // Let the new version serve a while before the next deploy.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let refused = prober.await?;
    if refused > 0 {
        println!("  note: {refused} probe event(s) were not accepted");
    }
    drop(bridge);
    Ok(latencies)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// p50, p99, min, max and mean of `samples`.
fn summary(samples: &[Duration]) -> String {
    if samples.is_empty() {
        return "no samples".into();
    }
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    format!(
        "p50 {}, p99 {}, min {}, max {}, mean {} (n = {})",
        ms(percentile(samples, 50.0)),
        ms(percentile(samples, 99.0)),
        ms(*samples.iter().min().unwrap()),
        ms(*samples.iter().max().unwrap()),
        ms(mean),
        samples.len()
    )
}

async fn swap_latency(swaps: usize) -> Result<()> {
    println!(
        "\nadapter swap -> first request served by the new version (rename over the file; an event every {} ms)",
        PROBE_PAUSE.as_millis()
    );
    // One compile cache for both runs: each build is compiled once, in the first warm-up.
    let cache = tempfile::Builder::new().prefix("reload-bench-cache-").tempdir()?;
    let separate = measure_swaps(false, cache.path(), WARM_UP_SWAPS, swaps, Duration::from_secs(30)).await?;
    let served: Vec<Duration> = separate.iter().flatten().copied().collect();
    println!("  database in its own folder:      {}", summary(&served));
    if served.len() < separate.len() {
        println!("  ({} swap(s) not served within 30 s)", separate.len() - served.len());
    }
    let beside = measure_swaps(true, cache.path(), 0, BESIDE_CONFIG_SWAPS, BESIDE_CONFIG_TIMEOUT).await?;
    let served: Vec<Duration> = beside.iter().flatten().copied().collect();
    println!(
        "  database beside the config file: {} of {} swaps served within {} s{}",
        served.len(),
        beside.len(),
        BESIDE_CONFIG_TIMEOUT.as_secs(),
        if served.is_empty() {
            String::new()
        } else {
            format!(": {}", summary(&served))
        }
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. Start-up with many distinct adapters

/// Spawns the bridge on `config_path` and returns the time to its `listening on` line.
async fn time_start(config_path: &Path) -> Result<Duration> {
    let started = Instant::now();
    let bridge = Bridge::start_from_file(&adapters::bridge_binary(), config_path, &[], false)
        .await
        .map_err(anyhow::Error::msg)?;
    let took = started.elapsed();
    drop(bridge);
    Ok(took)
}

async fn startup(tenants: usize) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("reload-bench-").tempdir()?;
    let (adapters_dir, cache_dir) = (dir.path().join("adapters"), dir.path().join("cache"));
    std::fs::create_dir_all(&adapters_dir)?;
    std::fs::create_dir_all(&cache_dir)?;
    let echo = std::fs::read(adapters::echo())?;
    let mut config = BridgeConfig::new("http://127.0.0.1:9");
    let mut files: Vec<PathBuf> = Vec::new();
    for i in 0..tenants {
        let file = adapters_dir.join(format!("tenant-{i}.wasm"));
        std::fs::write(
            &file,
            with_custom_section(&echo, "reload-bench", format!("copy {i}").as_bytes()),
        )?;
        config = config.tenant(Tenant::new(&format!("tenant-{i}"), &format!("owner-{i:04}"), &file));
        files.push(file);
    }
    let config_path = dir.path().join("bridge.toml");
    std::fs::write(&config_path, config_toml_with(&config, Some(&cache_dir), None))?;

    println!("\nstart-up (spawn -> `listening on`) with {tenants} tenants, each on a distinct copy of echo");
    let cold = time_start(&config_path).await?;
    let cached = std::fs::read_dir(&cache_dir)?.count();
    println!("  empty cache:  {} ({cached} compiled adapters cached)", ms(cold));
    let mut warm = Vec::new();
    for _ in 0..WARM_STARTS {
        warm.push(time_start(&config_path).await?);
    }
    let warm_median = percentile(&warm, 50.0);
    println!(
        "  warm cache:   {} median of {WARM_STARTS} ({})",
        ms(warm_median),
        warm.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
    );
    println!(
        "  ratio:        {:.1}x faster with the warm cache",
        cold.as_secs_f64() / warm_median.as_secs_f64()
    );
    Ok(())
}
