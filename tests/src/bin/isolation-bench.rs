//! `isolation-bench`: how much a healthy tenant suffers while other tenants' adapters misbehave.
//!
//! Starts one bridge (the real `dolphin-bridge` binary, found like the end-to-end tests find it:
//! `$DOLPHIN_BRIDGE_BIN`, else `target/debug/dolphin-bridge`) with a healthy tenant (`echo`,
//! delivering to a timing mock vendor) and one `hostile` tenant per mode (`loop`, `alloc`,
//! `recurse`, `trap`, `log-flood`). Then, in the same run:
//!
//! 1. **alone**: N healthy events at a steady rate (open loop: each sent on schedule whatever
//!    the previous one is doing);
//! 2. **under attack**: the same, while every hostile tenant is sent events at its own steady
//!    rate, from a second before the healthy events start until they have all been sent.
//!
//! With `--background-load N`, N threads of this process spin (at normal priority) from before
//! the warm-up until the attack's events are all delivered, so both phases share the machine
//! with the same CPU-heavy neighbour; the CPU the spinners actually got is printed per phase.
//! With `--background-build`, a real build does the same: `cargo build --release` of the
//! bridge into a fresh target folder, in a session of its own, as a build started from another
//! terminal (its compilers on every core, its writes to the disk the store syncs on); the
//! target line is then 3x. The load generator needs little CPU (tens of requests a second) and
//! meets the same neighbour in both phases. See `background_work`.
//!
//! The latency of an event is the time from sending its `POST` to the Incoming endpoint until
//! the mock vendor has received it. Prints p50/p99 of both phases and their ratio (the p99 ratio
//! also as a `target:` line, target 2x), each phase's latency by second, the attack's `/metrics`
//! by second (hostile calls run and refused by the circuit breaker, the healthy calls' wait for
//! an adapter thread), what became of the hostile calls and the dead letters by error
//! (`GET /admin/dead-letters`).
//!
//! Build the bridge and adapters first (`cargo build -p dolphin-bridge`, `cargo xtask
//! build-plugins`), then:
//!
//! ```sh
//! cargo run --release -p dolphin-bridge-tests --bin isolation-bench [-- OPTIONS]
//! ```
//!
//! `--release` optimises only the bench (the load generator and mocks); the bridge measured is
//! the binary named above, by default the dev-profile `target/debug/dolphin-bridge` (its
//! dependencies, wasmtime included, are optimised even there). To measure a release bridge:
//! `cargo build --release -p dolphin-bridge` and set
//! `DOLPHIN_BRIDGE_BIN=target/release/dolphin-bridge`.

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dolphin_bridge_tests::background_work::{BackgroundBuild, CpuReading, SpinningThreads};
use dolphin_bridge_tests::bench_target::{Better, print_target};
use dolphin_bridge_tests::corpus_support::{TunedBridge, start_with_options};
use dolphin_bridge_tests::events::{EXAMPLE_OWNER, fresh_ticket};
use dolphin_bridge_tests::mock_http::{MockServer, Recorded, Reply};
use dolphin_bridge_tests::reload_support::metric_value;
use dolphin_bridge_tests::{BridgeConfig, Event, MockThreeDolphins, Tenant, adapters};
use serde_json::{Value, json};

const USAGE: &str = "\
usage: isolation-bench [--events N] [--rate PER_S] [--hostile-rate PER_S] [--modes A,B,...]
                       [--breaker-failures N] [--workers N] [--adapter-threads N]
                       [--background-load N] [--background-build]

  --events N             healthy events per phase (default 300)
  --rate PER_S           healthy events per second (default 20)
  --hostile-rate PER_S   events per second sent to each hostile tenant (default 10)
  --modes A,B,...        hostile modes, one tenant each (default loop,alloc,recurse,trap,log-flood)
  --breaker-failures N   [adapters] breaker_failures (default: the bridge's default, 10);
                         a large value keeps misbehaving adapters running instead of resting
  --workers N            [delivery] workers (default: the bridge's default, 32)
  --adapter-threads N    [adapters] threads (default: the bridge's default)
  --background-load N    threads spinning outside the bridge through both phases (default 0)
  --background-build     a cargo build of the bridge (release, fresh target folder) through both phases";

const API_TOKEN: &str = "bench-3dolphins-token";
const HEALTHY_TENANT: &str = "healthy";

struct Options {
    events: usize,
    rate: f64,
    hostile_rate: f64,
    modes: Vec<String>,
    breaker_failures: Option<i64>,
    workers: Option<i64>,
    adapter_threads: Option<i64>,
    background_load: usize,
    background_build: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        events: 300,
        rate: 20.0,
        hostile_rate: 10.0,
        modes: ["loop", "alloc", "recurse", "trap", "log-flood"]
            .map(String::from)
            .to_vec(),
        breaker_failures: None,
        workers: None,
        adapter_threads: None,
        background_load: 0,
        background_build: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let number = |text: String, name: &str| text.parse::<f64>().map_err(|_| format!("{name}: not a number"));
        match arg.as_str() {
            "--events" => options.events = number(value("--events")?, "--events")? as usize,
            "--rate" => options.rate = number(value("--rate")?, "--rate")?,
            "--hostile-rate" => options.hostile_rate = number(value("--hostile-rate")?, "--hostile-rate")?,
            "--modes" => options.modes = value("--modes")?.split(',').map(str::to_string).collect(),
            "--breaker-failures" => {
                options.breaker_failures = Some(number(value("--breaker-failures")?, "--breaker-failures")? as i64)
            }
            "--workers" => options.workers = Some(number(value("--workers")?, "--workers")? as i64),
            "--adapter-threads" => {
                options.adapter_threads = Some(number(value("--adapter-threads")?, "--adapter-threads")? as i64)
            }
            "--background-load" => {
                options.background_load = value("--background-load")?
                    .parse()
                    .map_err(|_| "--background-load: not a whole number".to_string())?
            }
            "--background-build" => options.background_build = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if options.events == 0 || options.rate <= 0.0 || options.hostile_rate <= 0.0 {
        return Err("--events, --rate and --hostile-rate must be positive".into());
    }
    Ok(options)
}

/// How many CPUs the background load kept busy between two readings.
fn describe_load(threads: usize, from: CpuReading, to: CpuReading) -> String {
    if threads == 0 {
        return "none".into();
    }
    format!("{:.2} CPU (of {threads} spinning)", from.cpus_until(to))
}

/// A vendor that records when each ticket's event arrived.
struct TimingVendor {
    server: MockServer,
    arrivals: Arc<Mutex<HashMap<String, Instant>>>,
}

impl TimingVendor {
    async fn start() -> TimingVendor {
        let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let recorder = arrivals.clone();
        let server = MockServer::start(Arc::new(move |request: &Recorded| {
            let now = Instant::now();
            if let Ok(body) = serde_json::from_slice::<Value>(&request.body)
                && let Some(ticket) = body["ticketNumber"].as_str()
            {
                recorder.lock().unwrap().entry(ticket.to_string()).or_insert(now);
            }
            Reply::json(200, &json!({"ok": true}))
        }))
        .await;
        TimingVendor { server, arrivals }
    }

    fn arrived(&self, ticket: &str) -> Option<Instant> {
        self.arrivals.lock().unwrap().get(ticket).copied()
    }
}

/// One healthy event: when it was sent, when the bridge answered, and its ticket.
struct Sent {
    ticket: String,
    sent: Instant,
    answered: Option<(Instant, u16)>,
}

/// Sends `count` healthy events at `rate` per second, each on schedule (open loop).
async fn send_healthy(bridge: &Arc<TunedBridge>, phase: &str, count: usize, rate: f64) -> Vec<Sent> {
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        tokio::time::sleep_until((start + period * i as u32).into()).await;
        let bridge = bridge.clone();
        let ticket = fresh_ticket();
        let event = Event::example()
            .ticket(&ticket)
            .owner(EXAMPLE_OWNER)
            .message(&format!("{phase} {i}"));
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let response = bridge.send_event(event).await;
            Sent {
                ticket,
                sent,
                answered: Some((Instant::now(), response.status)),
            }
        }));
    }
    let mut sent = Vec::with_capacity(count);
    for task in tasks {
        sent.push(task.await.expect("a sender task"));
    }
    sent
}

/// Sends events to the hostile tenant of `owner` at `rate` per second until `stop` is set;
/// returns how many were accepted and how many refused.
async fn hammer(bridge: Arc<TunedBridge>, owner: String, rate: f64, stop: Arc<AtomicBool>) -> (u64, u64) {
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut i = 0u32;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until((start + period * i).into()).await;
        i += 1;
        let bridge = bridge.clone();
        let event = Event::example()
            .ticket(&fresh_ticket())
            .owner(&owner)
            .message("hostile");
        tasks.push(tokio::spawn(async move { bridge.send_event(event).await.status }));
    }
    let (mut accepted, mut refused) = (0, 0);
    for task in tasks {
        match task.await {
            Ok(202) => accepted += 1,
            _ => refused += 1,
        }
    }
    (accepted, refused)
}

/// Latency figures of one phase.
struct PhaseFigures {
    delivery_ms: Vec<f64>,
    accept_ms: Vec<f64>,
    missing: usize,
    refused: usize,
}

/// Waits (up to `limit`) for every accepted event of `sent` to reach the vendor.
async fn collect(vendor: &TimingVendor, sent: &[Sent], limit: Duration) -> PhaseFigures {
    let deadline = Instant::now() + limit;
    let accepted: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.answered.is_some_and(|(_, status)| status == 202))
        .collect();
    while Instant::now() < deadline && accepted.iter().any(|s| vendor.arrived(&s.ticket).is_none()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut figures = PhaseFigures {
        delivery_ms: Vec::new(),
        accept_ms: Vec::new(),
        missing: 0,
        refused: sent.len() - accepted.len(),
    };
    for s in accepted {
        if let Some((answered, _)) = s.answered {
            figures.accept_ms.push(ms(answered - s.sent));
        }
        match vendor.arrived(&s.ticket) {
            Some(arrived) => figures.delivery_ms.push(ms(arrived - s.sent)),
            None => figures.missing += 1,
        }
    }
    figures
}

/// Delivery latency p50 and max (ms) per second of sending, for the timeline of a phase.
fn by_second(vendor: &TimingVendor, sent: &[Sent]) -> Vec<(f64, f64)> {
    let Some(first) = sent.iter().map(|s| s.sent).min() else {
        return Vec::new();
    };
    let mut seconds: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for s in sent {
        if let Some(arrived) = vendor.arrived(&s.ticket) {
            seconds
                .entry((s.sent - first).as_secs())
                .or_default()
                .push(ms(arrived - s.sent));
        }
    }
    seconds
        .values()
        .map(|v| (percentile(v, 50.0), v.iter().copied().fold(f64::NAN, f64::max)))
        .collect()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The `p`-th percentile (nearest rank) of `values`.
fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn describe(values: &[f64]) -> String {
    format!(
        "p50 {:7.2} ms  p99 {:7.2} ms  max {:7.2} ms",
        percentile(values, 50.0),
        percentile(values, 99.0),
        values.iter().copied().fold(f64::NAN, f64::max)
    )
}

/// The healthy tenant's `dolphin_bridge_adapter_wait_seconds` (sum in seconds, count) now.
async fn healthy_waits(bridge: &TunedBridge) -> (f64, f64) {
    let text = bridge.client().get(&format!("{}/metrics", bridge.url())).await.text();
    let labels = [("tenant", HEALTHY_TENANT)];
    (
        metric_value(&text, "dolphin_bridge_adapter_wait_seconds_sum", &labels),
        metric_value(&text, "dolphin_bridge_adapter_wait_seconds_count", &labels),
    )
}

/// The mean wait per call between two [`healthy_waits`] readings.
fn describe_wait((sum_before, count_before): (f64, f64), (sum_after, count_after): (f64, f64)) -> String {
    let calls = count_after - count_before;
    if calls <= 0.0 {
        return "(no calls)".into();
    }
    format!("{:.0} us over {calls} calls", (sum_after - sum_before) / calls * 1e6)
}

/// What `/metrics` said at one moment of the attack, for its timeline.
struct MetricsSample {
    /// Hostile adapter calls that ran (whatever their outcome) so far.
    hostile_calls: u64,
    /// Hostile calls refused by an open circuit breaker so far.
    hostile_refused: u64,
    /// The healthy tenant's wait for an adapter thread so far (see [`healthy_waits`]).
    healthy_waits: (f64, f64),
}

/// Reads `/metrics` every second until `stop` is set.
async fn sample_metrics(bridge: Arc<TunedBridge>, stop: Arc<AtomicBool>) -> Vec<MetricsSample> {
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut next = 0u32;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep_until((started + Duration::from_secs(1) * next).into()).await;
        next += 1;
        let text = bridge.client().get(&format!("{}/metrics", bridge.url())).await.text();
        let hostile_sum = |name: &str| -> u64 {
            metric(&text, name)
                .iter()
                .filter(|((tenant, _), _)| tenant != HEALTHY_TENANT)
                .map(|(_, n)| n)
                .sum()
        };
        let labels = [("tenant", HEALTHY_TENANT)];
        samples.push(MetricsSample {
            hostile_calls: hostile_sum("dolphin_bridge_adapter_calls_total"),
            hostile_refused: hostile_sum("dolphin_bridge_circuit_open_total"),
            healthy_waits: (
                metric_value(&text, "dolphin_bridge_adapter_wait_seconds_sum", &labels),
                metric_value(&text, "dolphin_bridge_adapter_wait_seconds_count", &labels),
            ),
        });
    }
    samples
}

/// Per second between consecutive samples: `hostile calls run/refused by the breaker/healthy
/// mean wait for a thread in ms` (`-` when no healthy call ended that second).
fn describe_samples(samples: &[MetricsSample]) -> String {
    samples
        .windows(2)
        .map(|pair| {
            let (before, after) = (&pair[0], &pair[1]);
            let calls = after.healthy_waits.1 - before.healthy_waits.1;
            let wait = if calls > 0.0 {
                format!("{:.0}", (after.healthy_waits.0 - before.healthy_waits.0) / calls * 1e3)
            } else {
                "-".into()
            };
            format!(
                "{}/{}/{wait}",
                after.hostile_calls - before.hostile_calls,
                after.hostile_refused - before.hostile_refused
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sums of counter `name` in OpenMetrics `text`, by (tenant, outcome).
fn metric(text: &str, name: &str) -> BTreeMap<(String, String), u64> {
    let label = |labels: &str, key: &str| {
        let needle = format!("{key}=\"");
        labels
            .find(&needle)
            .map(|at| {
                labels[at + needle.len()..]
                    .split('"')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap_or_default()
    };
    let mut sums = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name).and_then(|r| r.strip_prefix('{')) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let value: f64 = value.trim().parse().unwrap_or_default();
        *sums
            .entry((label(labels, "tenant"), label(labels, "outcome")))
            .or_default() += value as u64;
    }
    sums
}

/// An error message on one line, wasm backtrace frames left out (the cause wasmtime appends to
/// the last frame is kept), numbers replaced by `N`, so that errors of one kind group.
fn error_kind(error: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let mut frames = 0;
    for line in error.lines() {
        let trimmed = line.trim_start();
        let is_frame = trimmed
            .split_once(':')
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if is_frame {
            frames += 1;
            if let Some((_, cause)) = line.rsplit_once(">: ") {
                parts.push(cause);
            }
        } else {
            parts.push(line.trim());
        }
    }
    let mut text = parts.join(" ");
    if frames > 0 {
        text = text.replacen("wasm backtrace:", "wasm backtrace: […]", 1);
    }
    let mut out = String::new();
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    if out.chars().count() > 160 {
        out = out.chars().take(160).collect::<String>() + "...";
    }
    out
}

fn hostile_owner(index: usize) -> String {
    format!("{:0>32}", format!("bad{index}"))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("isolation-bench: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };

    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = TimingVendor::start().await;
    let vendor_url = vendor.server.base_url();
    let mut config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .tenant(
            Tenant::new(HEALTHY_TENANT, EXAMPLE_OWNER, adapters::echo())
                .allow(&vendor_url)
                .config("url", &format!("{vendor_url}/healthy")),
        );
    for (index, mode) in options.modes.iter().enumerate() {
        config = config.tenant(Tenant::new(mode, &hostile_owner(index), adapters::hostile()).config("mode", mode));
    }
    let mut settings: Vec<(&str, &str, toml::Value)> = Vec::new();
    if let Some(n) = options.breaker_failures {
        settings.push(("adapters", "breaker_failures", n.into()));
    }
    if let Some(n) = options.workers {
        settings.push(("delivery", "workers", n.into()));
    }
    if let Some(n) = options.adapter_threads {
        settings.push(("adapters", "threads", n.into()));
    }
    let binary = adapters::bridge_binary();
    let bridge = Arc::new(start_with_options(&config, &settings).await);

    println!("isolation bench");
    println!("  bridge: {}", binary.display());
    println!(
        "  machine: {} CPU(s); breaker_failures {}; delivery workers {}; adapter threads {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        options
            .breaker_failures
            .map(|n| n.to_string())
            .unwrap_or("10 (default)".into()),
        options.workers.map(|n| n.to_string()).unwrap_or("32 (default)".into()),
        options
            .adapter_threads
            .map(|n| n.to_string())
            .unwrap_or("(default)".into()),
    );
    println!(
        "  healthy tenant `{HEALTHY_TENANT}` (echo): {} events per phase at {}/s; hostile tenants {} at {}/s each",
        options.events,
        options.rate,
        options.modes.join(", "),
        options.hostile_rate
    );
    println!(
        "  background load: {} thread(s) of this process spinning at normal priority through both phases",
        options.background_load
    );

    let background = SpinningThreads::start(options.background_load);
    let mut build = if options.background_build {
        match BackgroundBuild::start() {
            Ok(build) => {
                // Past cargo's start-up: its compilers busy on every core.
                tokio::time::sleep(Duration::from_secs(10)).await;
                Some(build)
            }
            Err(err) => {
                eprintln!("isolation-bench: cannot start the background build: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };

    // Warm-up: the first calls of an adapter instantiate its code.
    let warm = send_healthy(&bridge, "warm-up", 10, options.rate).await;
    collect(&vendor, &warm, Duration::from_secs(30)).await;

    let phase_time = Duration::from_secs_f64(options.events as f64 / options.rate);
    let settle = Duration::from_secs(60).max(phase_time);

    // Phase 1: alone.
    let before_alone = healthy_waits(&bridge).await;
    let load_before_alone = background.read();
    let alone_sent = send_healthy(&bridge, "alone", options.events, options.rate).await;
    let alone = collect(&vendor, &alone_sent, settle).await;
    let load_after_alone = background.read();
    let after_alone = healthy_waits(&bridge).await;

    // Phase 2: under attack.
    let stop = Arc::new(AtomicBool::new(false));
    let sampling_stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(sample_metrics(bridge.clone(), sampling_stop.clone()));
    let hammers: Vec<_> = options
        .modes
        .iter()
        .enumerate()
        .map(|(index, mode)| {
            let task = tokio::spawn(hammer(
                bridge.clone(),
                hostile_owner(index),
                options.hostile_rate,
                stop.clone(),
            ));
            (mode.clone(), task)
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attacked_sent = send_healthy(&bridge, "attacked", options.events, options.rate).await;
    stop.store(true, Ordering::Relaxed);
    let mut hostile_sent = BTreeMap::new();
    for (mode, task) in hammers {
        hostile_sent.insert(mode, task.await.expect("a hostile sender"));
    }
    let attacked = collect(&vendor, &attacked_sent, settle).await;
    let load_after_attack = background.read();
    sampling_stop.store(true, Ordering::Relaxed);
    let samples = sampler.await.expect("the metrics sampler");
    drop(background);
    let build_described = build.as_mut().map(BackgroundBuild::describe);
    drop(build);
    let after_attack = healthy_waits(&bridge).await;

    // Let the hostile deliveries finish (retries included) before reading the outcome.
    let settle_deadline = Instant::now() + Duration::from_secs(120);
    let pending = loop {
        let stats = bridge.outbox_stats().await;
        let pending = stats["pending"].as_u64().unwrap_or(0);
        if pending == 0 || Instant::now() >= settle_deadline {
            break pending;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    println!();
    for (name, figures) in [("alone", &alone), ("under attack", &attacked)] {
        println!(
            "phase {name:>12}: delivery {}  | accept (202) {}  | delivered {}/{} (refused {}, not delivered {})",
            describe(&figures.delivery_ms),
            describe(&figures.accept_ms),
            figures.delivery_ms.len(),
            options.events,
            figures.refused,
            figures.missing
        );
    }
    let ratio = |p: f64| percentile(&attacked.delivery_ms, p) / percentile(&alone.delivery_ms, p);
    println!(
        "ratio under attack / alone: p50 {:.2}x, p99 {:.2}x",
        ratio(50.0),
        ratio(99.0)
    );
    for (name, sent) in [("alone", &alone_sent), ("under attack", &attacked_sent)] {
        let timeline: Vec<String> = by_second(&vendor, sent)
            .iter()
            .map(|(p50, max)| format!("{p50:.0}/{max:.0}"))
            .collect();
        println!("{name}, p50/max ms by second of sending: {}", timeline.join(" "));
    }
    println!(
        "under attack, by second from the first hostile event: hostile calls run/refused by the breaker/healthy mean wait for a thread (ms): {}",
        describe_samples(&samples)
    );
    println!(
        "background load kept busy: alone {}, under attack {}",
        describe_load(options.background_load, load_before_alone, load_after_alone),
        describe_load(options.background_load, load_after_alone, load_after_attack)
    );
    println!("background build: {}", build_described.as_deref().unwrap_or("none"));
    println!(
        "healthy adapter calls' mean wait for an adapter thread (/metrics): alone {}, under attack {}",
        describe_wait(before_alone, after_alone),
        describe_wait(after_alone, after_attack)
    );

    println!();
    println!("hostile events sent during the attack (accepted / refused):");
    for (mode, (accepted, refused)) in &hostile_sent {
        println!("  {mode:>10}: {accepted} / {refused}");
    }
    let metrics = bridge.client().get(&format!("{}/metrics", bridge.url())).await.text();
    let calls = metric(&metrics, "dolphin_bridge_adapter_calls_total");
    let open = metric(&metrics, "dolphin_bridge_circuit_open_total");
    println!("adapter calls by tenant and outcome (/metrics), plus calls refused by the circuit breaker:");
    for mode in options.modes.iter().chain(std::iter::once(&HEALTHY_TENANT.to_string())) {
        let outcomes: Vec<String> = calls
            .iter()
            .filter(|((tenant, _), _)| tenant == mode)
            .map(|((_, outcome), n)| format!("{outcome}={n}"))
            .collect();
        let refused: u64 = open.iter().filter(|((t, _), _)| t == mode).map(|(_, n)| n).sum();
        println!(
            "  {mode:>10}: {}; circuit_open={refused}",
            if outcomes.is_empty() {
                "no calls".to_string()
            } else {
                outcomes.join(", ")
            }
        );
    }
    println!("dead letters by tenant and error (GET /admin/dead-letters; numbers shown as N):");
    for mode in options.modes.iter().chain(std::iter::once(&HEALTHY_TENANT.to_string())) {
        let letters = bridge
            .admin_get(&format!("dead-letters?tenant={mode}&limit=1000"))
            .await
            .json();
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for letter in letters["deadLetters"].as_array().into_iter().flatten() {
            *kinds
                .entry(error_kind(letter["last_error"].as_str().unwrap_or("(none)")))
                .or_default() += 1;
        }
        let total: usize = kinds.values().sum();
        println!("  {mode:>10}: {total}");
        for (kind, n) in kinds {
            println!("  {:>10}  {n:>5} x {kind}", "");
        }
    }
    let stats = bridge.outbox_stats().await;
    println!(
        "outbox at the end: {stats}{}",
        if pending > 0 {
            " (still pending after 120 s)"
        } else {
            ""
        }
    );
    println!();
    let (neighbour, target) = if options.background_build {
        ("a cargo build".to_string(), 3.0)
    } else {
        (format!("background load {}", options.background_load), 2.0)
    };
    print_target(
        &format!("isolation: healthy p99 under attack / alone, {neighbour}"),
        ratio(99.0),
        "x",
        target,
        Better::Lower,
    );
    let mut bridge = Arc::try_unwrap(bridge).unwrap_or_else(|_| panic!("the bridge is still shared"));
    let panics = bridge.stderr().matches("panicked").count();
    println!(
        "bridge still running: {}; panics in its log: {panics}",
        bridge.is_running()
    );
    drop(bridge);
    drop(three_dolphins);
    ExitCode::SUCCESS
}
