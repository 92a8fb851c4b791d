//! `tenants-bench`: the bridge's memory and start-up time with many tenants configured.
//!
//! For each tenant count N (`--tenants`), with a fresh config and store each time:
//!
//! 1. writes a config with N `echo` tenants, each with its own name (`t0001`...), owner (a
//!    32-hex-digit number), route (that owner, all channels), `config.url` (the mock vendor) and
//!    `allowed_hosts`; every tenant names the same built `echo.wasm` (`--adapter-files shared`,
//!    the default: tenants of one vendor share its adapter file), or its own symlink to it
//!    (`--adapter-files per-tenant`: N distinct paths with the same content);
//! 2. starts the real bridge (`$DOLPHIN_BRIDGE_BIN`, else `target/debug/dolphin-bridge`) on the
//!    shared, already warm, compiled-adapter cache and times spawn -> `listening on` and
//!    spawn -> first `200` from `GET /readyz` (polled every millisecond);
//! 3. lets it idle (`--idle-ms`, default 2000), then reads `VmRSS`, `VmHWM` (the kernel's peak
//!    RSS since spawn), `VmSize` and the RSS split (`RssAnon`, `RssFile`, `RssShmem`) from
//!    `/proc/PID/status`, and `Pss` from `/proc/PID/smaps_rollup` (RSS counts a file page once
//!    per mapping of it; PSS once, however often one process maps it);
//! 4. sends one Incoming event to the last tenant's owner (timing the `202`, and until the mock
//!    vendor has the echo adapter's POST) and one webhook to that tenant (timing its `200`, and
//!    until the mock 3Dolphins has the Outgoing event it produced), then reads memory again;
//! 5. stops the bridge with SIGTERM.
//!
//! Before the measured runs one unmeasured bridge with one tenant is started and stopped, so the
//! compiled-adapter cache holds this bridge build's `echo` and no run pays for a compile.
//!
//! Prints a table (its "per extra tenant" is the idle RSS growth over the first count, divided by
//! the tenants added) and, when 1000 is among the counts and the adapter files are shared, the
//! `target:` line for the idle RSS with 1000 tenants against 200 MB (decimal: 200,000,000 bytes = 190.7 MiB). The wasmtime pooling
//! allocator reserves address space for every instance slot up front, so `VmSize` is large and
//! says nothing about memory use; RSS is what the target is about. Figures only: nothing about
//! time or size is asserted. Linux only (it reads `/proc`).
//!
//! ```sh
//! cargo build --release -p dolphin-bridge && cargo xtask build-plugins
//! DOLPHIN_BRIDGE_BIN=target/release/dolphin-bridge cargo run -p dolphin-bridge-tests --bin tenants-bench \
//!     [-- --tenants 1,100,1000 --idle-ms 2000 --adapter-files shared|per-tenant --pool-instances N]
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use dolphin_bridge_tests::bench_options::{millis, positive};
use dolphin_bridge_tests::bench_target::{Better, print_target};
use dolphin_bridge_tests::corpus_support::toml_with_options;
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, MockThreeDolphins, MockVendor, Tenant, adapters};
use serde_json::json;

const API_TOKEN: &str = "bench-3dolphins-token";
/// The tenant count the target is about, and the target: 200 MB (decimal megabytes).
const TARGET_TENANTS: usize = 1000;
const TARGET_BYTES: f64 = 200e6;
const MIB: f64 = (1u64 << 20) as f64;
/// How long start-up, the calls and the stop may take before the run is abandoned.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// How often readiness and the mocks are polled (sets the resolution of the timings).
const POLL: Duration = Duration::from_millis(1);

/// Which adapter file paths the tenants name.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AdapterFiles {
    /// Every tenant names the same echo.wasm.
    Shared,
    /// Every tenant names its own symlink to echo.wasm (same content, distinct paths).
    PerTenant,
}

/// Idle RSS, start-up time and one call's latency of the bridge with 1, 100, 1000 tenants.
#[derive(clap::Parser)]
struct Options {
    /// Tenant counts, one bridge each, in this order.
    #[arg(long = "tenants", value_delimiter = ',', default_values_t = [1, 100, 1000], value_parser = positive)]
    tenant_counts: Vec<usize>,
    /// Idle time between ready and the memory reading, in milliseconds.
    #[arg(long = "idle-ms", default_value = "2000", value_parser = millis)]
    idle: Duration,
    /// Which adapter file paths the tenants name.
    #[arg(long, value_enum, default_value_t = AdapterFiles::Shared)]
    adapter_files: AdapterFiles,
    /// `[adapters] pool_instances` (default: the bridge's own default).
    #[arg(long)]
    pool_instances: Option<u32>,
}

/// Memory figures of one process, in bytes, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss: u64,
    /// Peak RSS since the process started.
    hwm: u64,
    /// Address space mapped (reserved), resident or not.
    size: u64,
    anon: u64,
    file: u64,
    shmem: u64,
    /// Proportional set size: a page mapped N times counts 1/N at each mapping, so a file
    /// mapped once per tenant counts once here, not once per tenant as in RSS.
    pss: u64,
}

/// `/proc/PID/status` (and `Pss` from `/proc/PID/smaps_rollup`) of process `pid`.
fn memory_of(pid: u32) -> Result<Memory> {
    let status = proc_fields(pid, "status")?;
    let rollup = proc_fields(pid, "smaps_rollup")?;
    Ok(Memory {
        rss: status.get("VmRSS")?,
        hwm: status.get("VmHWM")?,
        size: status.get("VmSize")?,
        anon: status.get("RssAnon")?,
        file: status.get("RssFile")?,
        shmem: status.get("RssShmem")?,
        pss: rollup.get("Pss")?,
    })
}

/// The `Name:   123 kB` lines of `/proc/PID/{file}`.
struct ProcFields {
    path: String,
    text: String,
}

fn proc_fields(pid: u32, file: &str) -> Result<ProcFields> {
    let path = format!("/proc/{pid}/{file}");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path} (Linux only)"))?;
    Ok(ProcFields { path, text })
}

impl ProcFields {
    /// Field `name` in bytes.
    fn get(&self, name: &str) -> Result<u64> {
        self.text
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .with_context(|| format!("no {name} in {}", self.path))
    }
}

/// What one run measured.
struct Run {
    tenants: usize,
    to_listening: Duration,
    to_ready: Duration,
    idle: Memory,
    incoming_accepted: Duration,
    incoming_delivered: Duration,
    webhook_answered: Duration,
    webhook_delivered: Duration,
    after_calls: Memory,
}

/// The tenant's name, owner and adapter path for tenant `i` (from 1).
fn tenant_name(i: usize) -> String {
    format!("t{i:04}")
}

fn tenant_owner(i: usize) -> String {
    format!("{:032x}", 0x0d01_0000_0000_u64 + i as u64)
}

/// The config of a bridge with `count` echo tenants delivering to `vendor`.
fn config_text(
    options: &Options,
    count: usize,
    three_dolphins: &MockThreeDolphins,
    vendor: &MockVendor,
    dir: &Path,
) -> Result<String> {
    let echo = adapters::echo();
    let mut config = BridgeConfig::new(&three_dolphins.base_url()).api_token(API_TOKEN);
    for i in 1..=count {
        let adapter = match options.adapter_files {
            AdapterFiles::Shared => echo.clone(),
            AdapterFiles::PerTenant => own_adapter_path(&echo, dir, i)?,
        };
        config = config.tenant(
            Tenant::new(&tenant_name(i), &tenant_owner(i), adapter)
                .allow(&vendor.base_url())
                .config("url", &vendor.url()),
        );
    }
    let settings: Vec<(&str, &str, toml::Value)> = options
        .pool_instances
        .map(|n| ("adapters", "pool_instances", toml::Value::Integer(i64::from(n))))
        .into_iter()
        .collect();
    Ok(toml_with_options(&config, &settings))
}

/// A symlink to `echo` of tenant `i` in `dir`: a path of its own, the same content.
fn own_adapter_path(echo: &Path, dir: &Path, i: usize) -> Result<PathBuf> {
    let folder = dir.join("adapters");
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let link = folder.join(format!("echo-{i:04}.wasm"));
    std::os::unix::fs::symlink(echo, &link).with_context(|| format!("linking {}", link.display()))?;
    Ok(link)
}

/// Polls `check` every [`POLL`] until it holds; the time since `since`.
async fn time_until(what: &str, since: Instant, mut check: impl AsyncFnMut() -> bool) -> Result<Duration> {
    loop {
        if check().await {
            return Ok(since.elapsed());
        }
        if since.elapsed() > STEP_TIMEOUT {
            bail!("no {what} within {STEP_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Starts a bridge on the config file at `path` and waits until `/readyz` answers 200; the
/// times from spawn to `listening on` and to ready.
async fn start_bridge(path: &Path) -> Result<(Bridge, Duration, Duration)> {
    let spawned = Instant::now();
    let mut bridge = Bridge::start_from_file(&adapters::bridge_binary(), path, &[], false)
        .await
        .map_err(anyhow::Error::msg)
        .context("the bridge did not start")?;
    let to_listening = spawned.elapsed();
    bridge.set_incoming_token(Some(dolphin_bridge_tests::bridge::INCOMING_TOKEN));
    let readyz = format!("{}/readyz", bridge.url());
    let to_ready = time_until("200 from /readyz", spawned, async || {
        bridge.client().get(&readyz).await.status == 200
    })
    .await?;
    Ok((bridge, to_listening, to_ready))
}

/// Stops `bridge` with SIGTERM and waits for it to exit.
async fn stop_bridge(mut bridge: Bridge) -> Result<()> {
    bridge.terminate();
    match bridge.wait_for_exit(STEP_TIMEOUT).await {
        Some(_) => Ok(()),
        None => bail!("the bridge did not exit within {STEP_TIMEOUT:?} of SIGTERM"),
    }
}

/// One measured bridge with `count` tenants.
async fn run_once(
    options: &Options,
    count: usize,
    three_dolphins: &MockThreeDolphins,
    vendor: &MockVendor,
) -> Result<Run> {
    let dir = tempfile::Builder::new()
        .prefix("dolphin-bridge-tenants-bench-")
        .tempdir()
        .context("a temp dir")?;
    let path = dir.path().join("bridge.toml");
    let text = config_text(options, count, three_dolphins, vendor, dir.path())?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;

    let (bridge, to_listening, to_ready) = start_bridge(&path).await?;
    let pid = bridge.pid();
    tokio::time::sleep(options.idle).await;
    let idle = memory_of(pid)?;

    // One Incoming event and one webhook, both to the last tenant.
    let tenant = tenant_name(count);
    let ticket = dolphin_bridge_tests::events::fresh_ticket();
    let (vendor_before, three_dolphins_before) = (vendor.requests().len(), three_dolphins.events().len());
    let sent = Instant::now();
    let answer = bridge
        .send_event(Event::example().ticket(&ticket).owner(&tenant_owner(count)).json())
        .await;
    let incoming_accepted = sent.elapsed();
    if answer.status != 202 {
        bail!("the Incoming event was answered {}", answer.describe());
    }
    let incoming_delivered = time_until("echo POST at the mock vendor", sent, async || {
        vendor.requests().len() > vendor_before
    })
    .await?;
    let sent = Instant::now();
    let answer = bridge
        .send_webhook(
            &tenant,
            "/hook",
            &json!({"ticketNumber": ticket, "message": "tenants-bench reply"}),
        )
        .await;
    let webhook_answered = sent.elapsed();
    if answer.status != 200 {
        bail!("the webhook was answered {}", answer.describe());
    }
    let webhook_delivered = time_until("Outgoing event at the mock 3Dolphins", sent, async || {
        three_dolphins.events().len() > three_dolphins_before
    })
    .await?;
    let after_calls = memory_of(pid)?;
    stop_bridge(bridge).await?;
    Ok(Run {
        tenants: count,
        to_listening,
        to_ready,
        idle,
        incoming_accepted,
        incoming_delivered,
        webhook_answered,
        webhook_delivered,
        after_calls,
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn print_report(options: &Options, runs: &[Run]) {
    println!(
        "\n{:>7} {:>11} {:>10} {:>13} {:>12} {:>13} {:>17}",
        "tenants", "listen ms", "ready ms", "idle RSS MiB", "peak MiB", "after 1 call", "per extra tenant"
    );
    let first = &runs[0];
    for run in runs {
        let per_tenant = if run.tenants > first.tenants {
            let grown = run.idle.rss as f64 - first.idle.rss as f64;
            format!("{:.1} KiB", grown / 1024.0 / (run.tenants - first.tenants) as f64)
        } else {
            "-".to_string()
        };
        println!(
            "{:>7} {:>11.0} {:>10.0} {:>13.1} {:>12.1} {:>13.1} {:>17}",
            run.tenants,
            ms(run.to_listening),
            ms(run.to_ready),
            mib(run.idle.rss),
            mib(run.idle.hwm),
            mib(run.after_calls.rss),
            per_tenant
        );
    }
    println!("\n  idle RSS split and PSS (MiB), address space reserved (VmSize, GiB):");
    for run in runs {
        println!(
            "    {:>7} tenants: anon {:>6.1}  file {:>6.1}  shmem {:>5.1}  PSS {:>6.1}  | VmSize {:>8.1} GiB",
            run.tenants,
            mib(run.idle.anon),
            mib(run.idle.file),
            mib(run.idle.shmem),
            mib(run.idle.pss),
            run.idle.size as f64 / MIB / 1024.0
        );
    }
    println!("\n  one call each to the last tenant (ms): Incoming 202 / at vendor, webhook 200 / at 3Dolphins;");
    println!("  memory after both (MiB): RSS, peak since spawn:");
    for run in runs {
        println!(
            "    {:>7} tenants: Incoming {:>6.1} / {:>6.1}   webhook {:>6.1} / {:>6.1}   RSS {:>6.1}, peak {:>6.1}",
            run.tenants,
            ms(run.incoming_accepted),
            ms(run.incoming_delivered),
            ms(run.webhook_answered),
            ms(run.webhook_delivered),
            mib(run.after_calls.rss),
            mib(run.after_calls.hwm)
        );
    }
    if options.adapter_files == AdapterFiles::Shared
        && let Some(run) = runs.iter().find(|r| r.tenants == TARGET_TENANTS)
    {
        println!();
        print_target(
            &format!("idle RSS with {TARGET_TENANTS} tenants (target 200 MB = 190.7 MiB)"),
            mib(run.idle.rss),
            "MiB",
            TARGET_BYTES / MIB,
            Better::Lower,
        );
    }
}

async fn run(options: &Options) -> Result<()> {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = MockVendor::start().await;
    println!("tenants-bench");
    println!("  bridge: {}", adapters::bridge_binary().display());
    println!(
        "  echo tenants, adapter files {}; pool_instances {}; idle {} ms before reading memory",
        match options.adapter_files {
            AdapterFiles::Shared => "shared (one echo.wasm path)",
            AdapterFiles::PerTenant => "per tenant (one symlink each to echo.wasm)",
        },
        options.pool_instances.map_or("default".to_string(), |n| n.to_string()),
        options.idle.as_millis()
    );
    // Unmeasured: fills the compiled-adapter cache for this bridge build.
    let warm_up = Options {
        tenant_counts: vec![1],
        idle: Duration::ZERO,
        adapter_files: AdapterFiles::Shared,
        pool_instances: options.pool_instances,
    };
    run_once(&warm_up, 1, &three_dolphins, &vendor)
        .await
        .context("the warm-up bridge")?;
    let mut runs = Vec::new();
    for &count in &options.tenant_counts {
        let run = run_once(options, count, &three_dolphins, &vendor)
            .await
            .with_context(|| format!("{count} tenants"))?;
        println!(
            "  {count} tenants: ready in {:.0} ms, idle RSS {:.1} MiB",
            ms(run.to_ready),
            mib(run.idle.rss)
        );
        runs.push(run);
    }
    print_report(options, &runs);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = <Options as clap::Parser>::parse();
    match run(&options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tenants-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}
