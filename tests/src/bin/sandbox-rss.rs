//! `sandbox-rss`: the bridge's resident memory while adapters attack it with memory.
//!
//! Starts one bridge (the real `dolphin-bridge` binary, found like the end-to-end tests find it:
//! `$DOLPHIN_BRIDGE_BIN`, else `target/debug/dolphin-bridge`) with two tenants, each limited to
//! `memory_mib` (default 64): `memories` runs the WAT component `hostile-wat/memories.wat`
//! (a core module declaring 12 memories of 48 MiB), `alloc` the Rust `hostile` adapter in its
//! `alloc` mode (allocates and touches 1 MiB blocks until refused). The circuit breaker is set
//! out of reach so that every call really runs.
//!
//! Then, for each phase (`memories`, `alloc`, and both at once), it sends rounds of 4 concurrent
//! webhook calls per tenant (a webhook call runs the adapter while the request waits, so exactly
//! that many run at once), while a thread samples the bridge's `/proc/PID/status` every 2 ms.
//! Before each phase the kernel's peak (`VmHWM`) is reset through `/proc/PID/clear_refs`, so the
//! peak printed is the phase's own, including spikes between two samples. Each phase's peak is
//! printed beside its configured total: calls at once x `memory_mib` + the idle bridge's RSS.
//!
//! Build the bridge and adapters first (`cargo build -p dolphin-bridge`, `cargo xtask
//! build-plugins`), then:
//!
//! ```sh
//! cargo run -p dolphin-bridge-tests --bin sandbox-rss [-- --rounds N --memory-mib M]
//! ```
//!
//! Linux only (it reads `/proc`). Exits non-zero when a phase's peak exceeds its total.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dolphin_bridge_tests::corpus_support::{TunedBridge, start_with_options};
use dolphin_bridge_tests::{BridgeConfig, MockThreeDolphins, Tenant, adapters};
use serde_json::json;

const USAGE: &str = "\
usage: sandbox-rss [--rounds N] [--memory-mib M]

  --rounds N       rounds of 4 concurrent calls per tenant in each phase (default 10)
  --memory-mib M   [tenants.limits] memory_mib of both hostile tenants (default 64)";

const API_TOKEN: &str = "bench-3dolphins-token";
/// Calls of one tenant running at once.
const CONCURRENT_CALLS: usize = 4;
const MIB: u64 = 1 << 20;

struct Options {
    rounds: usize,
    memory_mib: u64,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        rounds: 10,
        memory_mib: 64,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| {
            args.next()
                .ok_or(format!("{name} needs a value"))?
                .parse::<u64>()
                .map_err(|_| format!("{name}: not a whole number"))
        };
        match arg.as_str() {
            "--rounds" => options.rounds = number("--rounds")? as usize,
            "--memory-mib" => options.memory_mib = number("--memory-mib")?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if options.rounds == 0 || options.memory_mib == 0 {
        return Err("--rounds and --memory-mib must be above 0".into());
    }
    Ok(options)
}

/// `VmRSS` and `VmHWM` (bytes) of process `pid`, from `/proc/PID/status`.
fn memory_of(pid: u32) -> std::io::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// Resets the kernel's peak RSS of `pid` (`VmHWM`) to its current RSS; false when refused.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Samples the RSS of `pid` every 2 ms until dropped; remembers the largest sample.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, usize)>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut peak, mut samples) = (0, 0);
            while !flag.load(Ordering::Relaxed) {
                if let Ok((rss, _)) = memory_of(pid) {
                    peak = peak.max(rss);
                    samples += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (peak, samples)
        });
        RssSampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling: the largest RSS seen and how many samples were taken.
    fn finish(mut self) -> (u64, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("the sampler thread panicked"))
            .unwrap_or_default()
    }
}

/// One phase: which tenants get calls, at which webhook path and query.
struct Phase {
    name: &'static str,
    targets: &'static [(&'static str, &'static str)],
}

const PHASES: [Phase; 3] = [
    Phase {
        name: "memories",
        targets: &[("memories", "/hook")],
    },
    Phase {
        name: "alloc",
        targets: &[("alloc", "/hook?mode=alloc")],
    },
    Phase {
        name: "both",
        targets: &[("memories", "/hook"), ("alloc", "/hook?mode=alloc")],
    },
];

/// Sends `rounds` rounds of [`CONCURRENT_CALLS`] webhook calls to every target at once; returns
/// the answers' `status error.code` with their counts.
async fn run_phase(bridge: &Arc<TunedBridge>, phase: &Phase, rounds: usize) -> Vec<(String, usize)> {
    let mut outcomes: std::collections::BTreeMap<String, usize> = Default::default();
    for _ in 0..rounds {
        let mut calls = Vec::new();
        for (tenant, rest) in phase.targets {
            for _ in 0..CONCURRENT_CALLS {
                let bridge = bridge.clone();
                calls.push(tokio::spawn(async move {
                    let answer = bridge.send_webhook(tenant, rest, &json!({})).await;
                    format!(
                        "{tenant}: {} {}",
                        answer.status,
                        answer.error_code().unwrap_or_default()
                    )
                }));
            }
        }
        for call in calls {
            *outcomes.entry(call.await.expect("a call task panicked")).or_default() += 1;
        }
    }
    outcomes.into_iter().collect()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(problem) => {
            if !problem.is_empty() {
                eprintln!("sandbox-rss: {problem}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let limited = |tenant: Tenant| tenant.limit("memory_mib", options.memory_mib).call_timeout_ms(60_000);
    let config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .tenant(limited(Tenant::new(
            "memories",
            "0bad0bad0bad0bad0bad0bad0bad0001",
            adapters::adapter("hostile-wat-memories"),
        )))
        .tenant(limited(Tenant::new(
            "alloc",
            "0bad0bad0bad0bad0bad0bad0bad0002",
            adapters::hostile(),
        )));
    // Faulting calls must keep running, not rest behind an open breaker.
    let settings = [("adapters", "breaker_failures", toml::Value::Integer(1_000_000_000))];
    let bridge = Arc::new(start_with_options(&config, &settings).await);
    let pid = bridge.pid();

    // Idle: after start-up, with both adapters compiled and nothing running.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle, _) = memory_of(pid).expect("reading /proc/PID/status (Linux only)");
    println!("sandbox-rss bench");
    println!("  bridge: {} (pid {pid})", adapters::bridge_binary().display());
    println!(
        "  tenants: memories (hostile-wat/memories.wat: 12 memories of 48 MiB), alloc (hostile, mode alloc); \
         memory_mib = {} each",
        options.memory_mib
    );
    println!(
        "  {} round(s) of {CONCURRENT_CALLS} concurrent webhook calls per tenant and phase",
        options.rounds
    );
    println!("  idle RSS: {}", mib(idle));

    let mut over = false;
    for phase in &PHASES {
        let peak_resettable = reset_peak(pid);
        let sampler = RssSampler::start(pid);
        let started = Instant::now();
        let outcomes = run_phase(&bridge, phase, options.rounds).await;
        let elapsed = started.elapsed();
        let (sampled_peak, samples) = sampler.finish();
        let (_, hwm) = memory_of(pid).unwrap_or_default();
        let peak = if peak_resettable {
            sampled_peak.max(hwm)
        } else {
            sampled_peak
        };
        let at_once = (CONCURRENT_CALLS * phase.targets.len()) as u64;
        let total = at_once * options.memory_mib * MIB + idle;
        println!(
            "\n  phase {}: {} calls in {:.1?}",
            phase.name,
            at_once * options.rounds as u64,
            elapsed
        );
        for (outcome, count) in &outcomes {
            println!("    {count:>4} x {outcome}");
        }
        println!(
            "    peak RSS {} (sampled {} over {samples} samples; VmHWM {}{})",
            mib(peak),
            mib(sampled_peak),
            mib(hwm),
            if peak_resettable {
                ", reset before the phase"
            } else {
                ", since the bridge started: not resettable here"
            }
        );
        println!(
            "    configured total {} = {at_once} calls x {} MiB + idle {}  ->  peak is {:.0}% of it",
            mib(total),
            options.memory_mib,
            mib(idle),
            peak as f64 * 100.0 / total as f64
        );
        if peak > total {
            println!("    OVER the configured total");
            over = true;
        }
    }
    if over { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
