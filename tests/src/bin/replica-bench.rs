//! `replica-bench`: throughput of 1, 2 and 3 bridge replicas sharing one PostgreSQL database.
//!
//! First the same load on one bridge on the embedded store (steps 2 to 4; skipped with
//! `--no-embedded-baseline`), the baseline of the targets printed at the end: one replica
//! delivers at least 0.5 of what it does, two replicas no less than one. Then for each replica
//! count N (`--replicas`, default 1,2,3), in one run:
//!
//! 1. creates a fresh schema in the database (`--postgres-url`, else
//!    `$DOLPHIN_BRIDGE_TEST_POSTGRES_URL`; `cargo xtask bench` starts a throwaway server with
//!    fsync on and passes it) and points every replica's `[store] url` at it
//!    (`options=-c search_path=SCHEMA`);
//! 2. starts N real `dolphin-bridge serve` processes (`$DOLPHIN_BRIDGE_BIN`; `cargo xtask bench`
//!    gives it the release build), the same config but each on a port of its own, with one
//!    `echo` tenant delivering to an in-process mock vendor that answers 200 at once, and a mock
//!    3Dolphins; sends one event to each and waits until the vendor has it (migrations applied,
//!    adapter compiled);
//! 3. drives the Incoming endpoints for `--seconds` in a closed loop: `--senders` concurrent
//!    senders, each keeping one keep-alive HTTP/1.1 connection to every replica and sending its
//!    requests to the replicas in turn (round-robin, as a load balancer would), on `--tickets`
//!    tickets with a message text of its own per event (so no two are duplicates);
//! 4. waits until the vendor has received every accepted event (each delivery id once).
//!
//! **Accepted/s** is the 2xx answers divided by the load's length; **delivered/s** is those
//! events divided by the time from the load's start to the last of them reaching the vendor.
//! Accept p50/p99 are of the 2xx answers. Every figure is also printed as a ratio to N=1 of
//! the same run. What limits it is printed beside: the CPU time the bridges, PostgreSQL and this
//! program used (as a share of the machine's cores), and the wait events of the database's
//! active connections, sampled from `pg_stat_activity` through the load and the drain.
//!
//! The bridges, this program (load generator and mocks) and PostgreSQL share the machine's
//! cores (2 on the project's machine): more replicas add processes, not cores. Prints figures;
//! asserts nothing about time.
//!
//! ```sh
//! cargo build --release -p dolphin-bridge && cargo xtask build-plugins --plugin echo
//! cargo xtask bench --only replica-bench
//! ```

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use dolphin_bridge_tests::arrival_vendor::ArrivalVendor;
use dolphin_bridge_tests::bench_options::positive;
use dolphin_bridge_tests::bench_target::{Better, print_target};
use dolphin_bridge_tests::cpu_time::{cpu_seconds, machine_ticks, parent_pid, with_children};
use dolphin_bridge_tests::crash_support::{BridgeFiles, add_to_table};
use dolphin_bridge_tests::events::{EXAMPLE_OWNER, fresh_ticket};
use dolphin_bridge_tests::postgres_waits::{WaitSamples, sample_waits};
use dolphin_bridge_tests::round_robin_load::{Endpoint, Outcome, drive_sender};
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, MockThreeDolphins, Tenant, adapters};
use serde_json::Value;
use tokio_postgres::NoTls;

/// The variable `cargo xtask` names the PostgreSQL database in.
const URL_ENV: &str = "DOLPHIN_BRIDGE_TEST_POSTGRES_URL";
const API_TOKEN: &str = "bench-3dolphins-token";
const TENANT: &str = "replicas";
const VENDOR_PATH: &str = "/replica-bench";
/// No single request may take longer; past it the request counts as a transport error.
/// How often drain progress, CPU and wait events are read.
const POLL: Duration = Duration::from_millis(100);
/// How long the warm-up event and the graceful stops may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Throughput of 1, 2 and 3 bridge replicas on one PostgreSQL database.
#[derive(Parser, Debug)]
#[command(name = "replica-bench")]
struct Options {
    /// The database (`postgres://user@host:port/db`); default `$DOLPHIN_BRIDGE_TEST_POSTGRES_URL`.
    #[arg(long)]
    postgres_url: Option<String>,
    /// Replica counts, one run each.
    #[arg(long = "replicas", value_delimiter = ',', default_values_t = [1, 2, 3], value_parser = positive)]
    replicas: Vec<usize>,
    /// Seconds of load per replica count.
    #[arg(long, default_value_t = 15, value_parser = positive)]
    seconds: usize,
    /// Concurrent senders (each with one connection to every replica).
    #[arg(long, default_value_t = 64, value_parser = positive)]
    senders: usize,
    /// Tickets the events are spread over, round-robin.
    #[arg(long, default_value_t = 256, value_parser = positive)]
    tickets: usize,
    /// Longest wait, after the load, for the accepted events to be delivered.
    #[arg(long, default_value_t = 600)]
    drain_cap_seconds: u64,
    /// Each replica's `[store] pool_size` (default: the bridge's own).
    #[arg(long)]
    pool_size: Option<usize>,
    /// Each replica's `[delivery] max_in_flight_per_tenant` (default: the bridge's own).
    #[arg(long = "in-flight")]
    in_flight: Option<usize>,
    /// Skip the run on the embedded store (one bridge, the same load) that comes first.
    #[arg(long)]
    no_embedded_baseline: bool,
    /// Tenants (each its own 3Dolphins owner, on `echo`) the tickets are spread over: a tenant's
    /// key-value writes take its quota lock one at a time, across replicas.
    #[arg(long, default_value_t = 1, value_parser = positive)]
    tenants: usize,
}

/// The 3Dolphins owner of tenant `i`.
fn owner_of(i: usize) -> String {
    if i == 0 {
        EXAMPLE_OWNER.to_string()
    } else {
        format!("{EXAMPLE_OWNER}-{i}")
    }
}

/// The name of tenant `i`.
fn tenant_of(i: usize) -> String {
    if i == 0 {
        TENANT.to_string()
    } else {
        format!("{TENANT}-{i}")
    }
}

/// The first arrival of each of `ids` that arrived.
fn arrived(vendor: &ArrivalVendor, ids: &[String]) -> Vec<Instant> {
    vendor
        .first_arrivals(ids.iter().map(String::as_str))
        .into_iter()
        .flatten()
        .collect()
}

/// Incoming event bodies: the contract's example with a ticket and a message of their own.
struct Bodies {
    template: String,
    tickets: Vec<String>,
    /// Ticket `t`'s owner is `owners[t % owners.len()]`.
    owners: Vec<String>,
    label: String,
}

const TICKET_MARK: &str = "@@TICKET@@";
const OWNER_MARK: &str = "@@OWNER@@";
const MESSAGE_MARK: &str = "@@MESSAGE@@";

impl Bodies {
    fn new(tickets: usize, tenants: usize, label: &str) -> Bodies {
        let template = String::from_utf8(
            Event::example()
                .owner(OWNER_MARK)
                .ticket(TICKET_MARK)
                .message(MESSAGE_MARK)
                .bytes(),
        )
        .expect("serde_json writes UTF-8");
        Bodies {
            template,
            tickets: (0..tickets).map(|_| fresh_ticket()).collect(),
            owners: (0..tenants).map(owner_of).collect(),
            label: label.to_string(),
        }
    }

    /// Body number `n`: ticket `n mod tickets`, message `replica-bench LABEL n`.
    fn body(&self, n: u64) -> Bytes {
        let index = (n % self.tickets.len() as u64) as usize;
        let (ticket, owner) = (&self.tickets[index], &self.owners[index % self.owners.len()]);
        let message = format!("replica-bench {} {n}", self.label);
        Bytes::from(
            self.template
                .replacen(OWNER_MARK, owner, 1)
                .replacen(TICKET_MARK, ticket, 1)
                .replacen(MESSAGE_MARK, &message, 1),
        )
    }
}

/// CPU seconds by process group at one moment.
#[derive(Clone, Copy, Default)]
struct CpuSnapshot {
    bridges: f64,
    postgres: f64,
    bench: f64,
    machine_busy: f64,
    machine_total: f64,
}

fn cpu_snapshot(bridge_pids: &[u32], postgres: &[u32]) -> CpuSnapshot {
    let (busy, total) = machine_ticks();
    CpuSnapshot {
        bridges: bridge_pids.iter().map(|&pid| cpu_seconds(pid)).sum(),
        postgres: postgres.iter().map(|&pid| cpu_seconds(pid)).sum(),
        bench: cpu_seconds(std::process::id()),
        machine_busy: busy,
        machine_total: total,
    }
}

/// CPU use over an interval, as shares of one core.
struct CpuUse {
    bridges: f64,
    postgres: f64,
    bench: f64,
    /// Share of all cores busy (anything on the machine).
    machine: f64,
}

fn cpu_use(from: CpuSnapshot, to: CpuSnapshot, elapsed: Duration) -> CpuUse {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let total = to.machine_total - from.machine_total;
    CpuUse {
        bridges: (to.bridges - from.bridges) / seconds,
        postgres: (to.postgres - from.postgres) / seconds,
        bench: (to.bench - from.bench) / seconds,
        machine: if total > 0.0 {
            (to.machine_busy - from.machine_busy) / total
        } else {
            0.0
        },
    }
}

/// Connects to `url`, driving the connection on a task of its own.
async fn pg_connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(connection);
    Ok(client)
}

/// `url` with every connection's `search_path` set to `schema`.
fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

/// Latency percentile `q` of a sorted sample, in milliseconds.
fn percentile_ms(sorted: &[u64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted.get(rank - 1).map_or(f64::NAN, |us| *us as f64 / 1000.0)
}

/// The figures of one replica count.
struct Run {
    replicas: usize,
    /// On the embedded store (one bridge), not PostgreSQL.
    embedded: bool,
    accepted_per_s: f64,
    delivered_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Seconds from the load's end to the last delivery.
    tail_s: f64,
    outcome: Outcome,
    delivered: usize,
    /// Vendor requests beyond one per distinct delivery (warm-up included).
    duplicate_deliveries: u64,
    complete: bool,
    load_cpu: CpuUse,
    drain_cpu: CpuUse,
    load_waits: WaitSamples,
    drain_waits: WaitSamples,
    complaints: Vec<String>,
}

/// The schema of one replica count on the PostgreSQL server, and the server's postmaster.
struct Database {
    admin: tokio_postgres::Client,
    server_url: String,
    schema: String,
    /// The server's URL with every connection's `search_path` set to `schema`.
    url: String,
    postmaster: u32,
}

impl Database {
    /// Creates a fresh schema for `replicas` replicas.
    async fn prepare(server_url: &str, replicas: usize) -> anyhow::Result<Database> {
        let admin = pg_connect(server_url).await?;
        let schema = format!("replica_bench_{}_{replicas}", std::process::id());
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            ))
            .await
            .with_context(|| format!("creating schema {schema}"))?;
        let checkpointer: i32 = admin
            .query_one(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'",
                &[],
            )
            .await
            .context("finding the server's checkpointer")?
            .get(0);
        let postmaster =
            parent_pid(checkpointer as u32).context("the checkpointer's parent (is the server on this machine?)")?;
        Ok(Database {
            url: with_search_path(server_url, &schema),
            server_url: server_url.to_string(),
            admin,
            schema,
            postmaster,
        })
    }

    async fn drop_schema(self) {
        let schema = &self.schema;
        let drop_sql = format!("SET lock_timeout = '5s'; DROP SCHEMA {schema} CASCADE");
        if let Err(err) = self.admin.batch_execute(&drop_sql).await {
            eprintln!("replica-bench: dropping schema {schema}: {err}");
        }
    }
}

/// Samples the database's waits until `stop` is set (nothing on the embedded store).
fn sample_waits_while(
    sampler: &Option<Arc<tokio_postgres::Client>>,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<WaitSamples> {
    let (sampler, stop) = (sampler.clone(), stop.clone());
    tokio::spawn(async move {
        match sampler {
            Some(client) => sample_waits(client, stop, POLL).await,
            None => WaitSamples::default(),
        }
    })
}

/// Stops `bridge` with SIGTERM and waits for it to exit.
async fn stop(mut bridge: Bridge) -> anyhow::Result<()> {
    bridge.terminate();
    match bridge.wait_for_exit(STEP_TIMEOUT).await {
        Some(status) if status.success() => Ok(()),
        Some(status) => bail!("a replica exited with {status}; its output:\n{}", bridge.stderr()),
        None => bail!("a replica did not exit within {STEP_TIMEOUT:?} of SIGTERM"),
    }
}

/// One replica count: steps 1 to 4 of the module's description.
async fn run_replicas(options: &Options, server_url: Option<&str>, replicas: usize) -> anyhow::Result<Run> {
    let database = match server_url {
        Some(server_url) => Some(Database::prepare(server_url, replicas).await?),
        None => None,
    };
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = ArrivalVendor::start(VENDOR_PATH).await;
    let mut config = BridgeConfig::new(&three_dolphins.base_url()).api_token(API_TOKEN);
    for i in 0..options.tenants {
        config = config.tenant(
            Tenant::new(&tenant_of(i), &owner_of(i), adapters::echo())
                .allow(&vendor.server.base_url())
                .config("url", &vendor.url()),
        );
    }
    let mut store_lines = Vec::new();
    if let Some(database) = &database {
        store_lines.push(format!("url = {}", serde_json::to_string(&database.url)?));
        if let Some(pool) = options.pool_size {
            store_lines.push(format!("pool_size = {pool}"));
        }
    }
    let delivery_lines: Vec<String> = options
        .in_flight
        .map(|n| format!("max_in_flight_per_tenant = {n}"))
        .into_iter()
        .collect();
    let files = BridgeFiles::write_edited(&config, |text| {
        let store: Vec<&str> = store_lines.iter().map(String::as_str).collect();
        let delivery: Vec<&str> = delivery_lines.iter().map(String::as_str).collect();
        add_to_table(&add_to_table(&text, "store", &store), "delivery", &delivery)
    });
    let mut bridges = Vec::with_capacity(replicas);
    for _ in 0..replicas {
        bridges.push(files.start().await);
    }

    // Warm-up: one event through each replica, delivered.
    let mut warm_ids = Vec::new();
    for (i, bridge) in bridges.iter().enumerate() {
        let response = bridge
            .send_event(
                Event::example()
                    .owner(EXAMPLE_OWNER)
                    .ticket(&fresh_ticket())
                    .message(&format!("warm-up {i}")),
            )
            .await;
        if response.status != 202 && response.status != 200 {
            bail!(
                "replica {i}: the warm-up event was answered {}: {}",
                response.status,
                response.text()
            );
        }
        let body: Value = response.json();
        warm_ids.push(body["deliveryId"].as_str().unwrap_or_default().to_string());
    }
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !warm_ids.iter().all(|id| vendor.has(id)) {
        if Instant::now() >= deadline {
            bail!("the warm-up events did not reach the vendor within {STEP_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let endpoints: Vec<Endpoint> = bridges
        .iter()
        .map(|bridge| {
            let addr = bridge
                .url()
                .trim_start_matches("http://")
                .parse()
                .with_context(|| format!("the replica's address {}", bridge.url()))?;
            Ok(Endpoint {
                addr,
                authorization: bridge.incoming_auth().map(|(_, value)| value),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let endpoints = Arc::new(endpoints);
    let bodies = Bodies::new(options.tickets, options.tenants, &format!("n{replicas}"));
    let bodies: Arc<dyn Fn(u64) -> Bytes + Send + Sync> = Arc::new(move |n| bodies.body(n));
    let bridge_pids: Vec<u32> = bridges.iter().map(Bridge::pid).collect();
    let sampler = match &database {
        Some(database) => Some(Arc::new(pg_connect(&database.server_url).await?)),
        None => None,
    };
    let postgres_pids = || database.as_ref().map_or_else(Vec::new, |d| with_children(d.postmaster));

    // The load.
    let counter = Arc::new(AtomicU64::new(0));
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let waits = sample_waits_while(&sampler, &stop_sampling);
    let cpu_start = cpu_snapshot(&bridge_pids, &postgres_pids());
    let start = Instant::now();
    let end = start + Duration::from_secs(options.seconds as u64);
    let tasks: Vec<_> = (0..options.senders)
        .map(|index| {
            tokio::spawn(drive_sender(
                index,
                endpoints.clone(),
                bodies.clone(),
                counter.clone(),
                end,
            ))
        })
        .collect();
    let mut outcome = Outcome::default();
    for task in tasks {
        outcome.merge(task.await.context("a sender panicked")??);
    }
    let load_elapsed = start.elapsed();
    let cpu_load_end = cpu_snapshot(&bridge_pids, &postgres_pids());
    stop_sampling.store(true, Ordering::Relaxed);
    let load_waits = waits.await.context("the wait sampler panicked")?;

    // The drain.
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let waits = sample_waits_while(&sampler, &stop_sampling);
    let expected = warm_ids.len() + outcome.delivery_ids.len();
    let cap_at = Instant::now() + Duration::from_secs(options.drain_cap_seconds);
    let complete = loop {
        if vendor.distinct() >= expected {
            let ids: HashSet<&String> = outcome.delivery_ids.iter().collect();
            if arrived(&vendor, &outcome.delivery_ids).len() == ids.len() {
                break true;
            }
        }
        if Instant::now() >= cap_at {
            break false;
        }
        tokio::time::sleep(POLL).await;
    };
    let drain_elapsed = start.elapsed().saturating_sub(load_elapsed);
    let cpu_drain_end = cpu_snapshot(&bridge_pids, &postgres_pids());
    stop_sampling.store(true, Ordering::Relaxed);
    let drain_waits = waits.await.context("the wait sampler panicked")?;

    let arrivals = arrived(&vendor, &outcome.delivery_ids);
    let last = arrivals.iter().max().copied().unwrap_or(start);
    let delivered = arrivals.len();
    let to_last = last.saturating_duration_since(start).as_secs_f64().max(1e-9);
    let duplicate_deliveries = vendor.requests() - vendor.distinct() as u64;
    let complaints: Vec<String> = bridges
        .iter()
        .flat_map(|bridge| {
            bridge
                .stderr()
                .lines()
                .filter(|line| line.contains("WARN") || line.contains("ERROR") || line.contains("panicked"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    for bridge in bridges {
        stop(bridge).await?;
    }
    if let Some(database) = database {
        database.drop_schema().await;
    }

    let mut sorted = outcome.latencies_us.clone();
    sorted.sort_unstable();
    Ok(Run {
        replicas,
        embedded: server_url.is_none(),
        accepted_per_s: outcome.accepted as f64 / load_elapsed.as_secs_f64(),
        delivered_per_s: delivered as f64 / to_last,
        p50_ms: percentile_ms(&sorted, 0.50),
        p99_ms: percentile_ms(&sorted, 0.99),
        tail_s: last.saturating_duration_since(end).as_secs_f64(),
        delivered,
        duplicate_deliveries,
        complete,
        load_cpu: cpu_use(cpu_start, cpu_load_end, load_elapsed),
        drain_cpu: cpu_use(cpu_load_end, cpu_drain_end, drain_elapsed),
        load_waits,
        drain_waits,
        complaints,
        outcome,
    })
}

fn ratio(value: f64, base: Option<f64>) -> String {
    match base {
        Some(base) if base > 0.0 => format!("{:.2}x", value / base),
        _ => "-".into(),
    }
}

/// How a run is named in the table (`embedded`, or the replica count).
fn run_column(run: &Run) -> String {
    if run.embedded {
        "embedded".to_string()
    } else {
        run.replicas.to_string()
    }
}

/// How a run is named in the lines after the table.
fn run_name(run: &Run) -> String {
    if run.embedded {
        "embedded store".to_string()
    } else {
        format!("{} replica(s)", run.replicas)
    }
}

fn print_table(runs: &[Run]) {
    let base = runs.iter().find(|run| run.replicas == 1 && !run.embedded);
    println!();
    println!(
        "{:>8} {:>11} {:>7} {:>12} {:>7} {:>9} {:>9} {:>8} {:>9} {:>10}",
        "replicas",
        "accepted/s",
        "ratio",
        "delivered/s",
        "ratio",
        "p50 ms",
        "p99 ms",
        "tail s",
        "accepted",
        "delivered"
    );
    for run in runs {
        println!(
            "{:>8} {:>11.0} {:>7} {:>12.0} {:>7} {:>9.2} {:>9.2} {:>8.1} {:>9} {:>10}",
            run_column(run),
            run.accepted_per_s,
            ratio(run.accepted_per_s, base.map(|b| b.accepted_per_s)),
            run.delivered_per_s,
            ratio(run.delivered_per_s, base.map(|b| b.delivered_per_s)),
            run.p50_ms,
            run.p99_ms,
            run.tail_s,
            run.outcome.accepted,
            format!("{}{}", run.delivered, if run.complete { "" } else { "+" }),
        );
    }
    println!();
    println!("what limits it: CPU in cores (bridges / PostgreSQL / this program, machine busy share)");
    for run in runs {
        for (phase, cpu) in [("load", &run.load_cpu), ("drain", &run.drain_cpu)] {
            println!(
                "  {}, {phase:>5}: bridges {:.2}, postgres {:.2}, bench {:.2}; machine {:.0}% busy",
                run_name(run),
                cpu.bridges,
                cpu.postgres,
                cpu.bench,
                cpu.machine * 100.0
            );
        }
    }
    println!("what limits it: active PostgreSQL connections by wait event (mean connections per sample)");
    for run in runs {
        for (phase, waits) in [("load", &run.load_waits), ("drain", &run.drain_waits)] {
            println!(
                "  {}, {phase:>5}: {:.2} active: {}",
                run_name(run),
                waits.active(),
                waits.top(6)
            );
        }
    }
    for run in runs {
        let per_replica: Vec<String> = run.outcome.per_replica.iter().map(u64::to_string).collect();
        println!(
            "{}: accepted per replica [{}]; other answers: {}; vendor requests beyond one per delivery: {}",
            run_name(run),
            per_replica.join(", "),
            run.outcome.others(),
            run.duplicate_deliveries
        );
        if !run.complete {
            println!(
                "{}: CAPPED: {} of {} delivered when the cap was reached",
                run_name(run),
                run.delivered,
                run.outcome.delivery_ids.len()
            );
        }
        if !run.complaints.is_empty() {
            println!(
                "{}: {} warning/error line(s) in the replicas' logs, first ones:",
                run_name(run),
                run.complaints.len()
            );
            for line in run.complaints.iter().take(5) {
                println!("    {line}");
            }
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let options = Options::parse();
    let Some(url) = options.postgres_url.clone().or_else(|| std::env::var(URL_ENV).ok()) else {
        eprintln!(
            "replica-bench: no database: pass --postgres-url or set {URL_ENV} \
             (`cargo xtask bench --only replica-bench` starts a server and sets it)"
        );
        return ExitCode::FAILURE;
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("replica-bench");
    println!("  bridge: {}", adapters::bridge_binary().display());
    println!(
        "  replicas {:?}, {} s of load each, {} senders (one connection to every replica each, \
         requests round-robin), {} tickets over {} tenant(s) on `echo`; settings: the bridge's defaults{}{}",
        options.replicas,
        options.seconds,
        options.senders,
        options.tickets,
        options.tenants,
        options
            .pool_size
            .map_or(String::new(), |n| format!(", pool_size = {n}")),
        options
            .in_flight
            .map_or(String::new(), |n| format!(", max_in_flight_per_tenant = {n}"))
    );
    println!(
        "  this machine has {cores} core(s): the replicas, PostgreSQL, the load generator and the \
         mocks share them, so more replicas add processes, not cores"
    );
    match pg_connect(&url).await {
        Ok(client) => {
            for setting in ["fsync", "synchronous_commit", "max_connections"] {
                if let Ok(row) = client.query_one(&format!("SHOW {setting}"), &[]).await {
                    let value: String = row.get(0);
                    println!("  PostgreSQL {setting} = {value}");
                }
            }
        }
        Err(err) => {
            eprintln!("replica-bench: {err:#}");
            return ExitCode::FAILURE;
        }
    }
    let mut runs = Vec::new();
    // The same load on one bridge on the embedded store first: the baseline of the targets.
    let counts = std::iter::once(None).filter(|_| !options.no_embedded_baseline);
    for replicas in counts.chain(options.replicas.iter().map(Some)) {
        let server_url = replicas.map(|_| url.as_str());
        let label = replicas.map_or("embedded store".to_string(), |n| format!("{n} replica(s)"));
        match run_replicas(&options, server_url, replicas.copied().unwrap_or(1)).await {
            Ok(run) => {
                println!(
                    "  {label}: {} accepted ({:.0}/s), {} delivered ({:.0}/s)",
                    run.outcome.accepted, run.accepted_per_s, run.delivered, run.delivered_per_s
                );
                runs.push(run);
            }
            Err(err) => {
                eprintln!("replica-bench: {label}: {err:#}");
                print_table(&runs);
                return ExitCode::FAILURE;
            }
        }
    }
    print_table(&runs);
    print_targets(&runs);
    ExitCode::SUCCESS
}

/// The targets: one replica delivers at least half what the embedded store does under the same
/// load, and two replicas no less than one.
fn print_targets(runs: &[Run]) {
    let delivered = |embedded: bool, replicas: usize| {
        runs.iter()
            .find(|run| run.embedded == embedded && run.replicas == replicas)
            .map(|run| run.delivered_per_s)
    };
    if let (Some(one), Some(embedded)) = (delivered(false, 1), delivered(true, 1)) {
        print_target(
            "PostgreSQL, 1 replica, delivered / embedded store",
            one / embedded,
            "x",
            0.5,
            Better::Higher,
        );
    }
    if let (Some(two), Some(one)) = (delivered(false, 2), delivered(false, 1)) {
        print_target(
            "PostgreSQL, 2 replicas / 1 replica, delivered",
            two / one,
            "x",
            1.0,
            Better::Higher,
        );
    }
}
