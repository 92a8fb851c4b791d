//! `replica-bench`: throughput of 1, 2 and 3 bridge replicas sharing one PostgreSQL database.
//!
//! For each replica count N (`--replicas`, default 1,2,3), in one run:
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

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use dolphin_bridge_tests::arrival_vendor::ArrivalVendor;
use dolphin_bridge_tests::bench_options::positive;
use dolphin_bridge_tests::crash_support::{BridgeFiles, add_to_table};
use dolphin_bridge_tests::events::{EXAMPLE_OWNER, fresh_ticket};
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, MockThreeDolphins, Tenant, adapters};
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_postgres::NoTls;

/// The variable `cargo xtask` names the PostgreSQL database in.
const URL_ENV: &str = "DOLPHIN_BRIDGE_TEST_POSTGRES_URL";
const API_TOKEN: &str = "bench-3dolphins-token";
const TENANT: &str = "replicas";
const VENDOR_PATH: &str = "/replica-bench";
/// No single request may take longer; past it the request counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
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

/// What the load produced, merged over the senders.
#[derive(Default)]
struct Outcome {
    accepted: u64,
    other_statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    duplicates: u64,
    latencies_us: Vec<u64>,
    /// Delivery ids of accepted, non-duplicate answers.
    delivery_ids: Vec<String>,
    /// Accepted answers per replica.
    per_replica: Vec<u64>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.accepted += other.accepted;
        for (status, n) in other.other_statuses {
            *self.other_statuses.entry(status).or_default() += n;
        }
        self.transport_errors += other.transport_errors;
        self.duplicates += other.duplicates;
        self.latencies_us.extend(other.latencies_us);
        self.delivery_ids.extend(other.delivery_ids);
        if self.per_replica.len() < other.per_replica.len() {
            self.per_replica.resize(other.per_replica.len(), 0);
        }
        for (mine, theirs) in self.per_replica.iter_mut().zip(other.per_replica) {
            *mine += theirs;
        }
    }

    /// `503 x12, transport x3`, or `-`.
    fn others(&self) -> String {
        let mut parts: Vec<String> = self
            .other_statuses
            .iter()
            .map(|(status, n)| format!("{status} x{n}"))
            .collect();
        if self.transport_errors > 0 {
            parts.push(format!("transport x{}", self.transport_errors));
        }
        if self.duplicates > 0 {
            parts.push(format!("duplicate x{}", self.duplicates));
        }
        if parts.is_empty() { "-".into() } else { parts.join(", ") }
    }
}

/// One replica as the load generator sees it.
struct Endpoint {
    addr: SocketAddr,
    authorization: Option<String>,
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("the HTTP/1 handshake")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// One POST; `Ok(Some(id, duplicate))` for a 2xx with a delivery id, `Err(status)` otherwise.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    endpoint: &Endpoint,
    body: Bytes,
) -> anyhow::Result<Result<Option<(String, bool)>, u16>> {
    let mut request = http::Request::post(dolphin_bridge_tests::bridge::INCOMING_PATH)
        .header(HOST, endpoint.addr.to_string())
        .header(CONTENT_TYPE, "application/json");
    if let Some(authorization) = &endpoint.authorization {
        request = request.header(AUTHORIZATION, authorization.as_str());
    }
    sender.ready().await?;
    let response = sender.send_request(request.body(Full::new(body))?).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    if status != 200 && status != 202 {
        return Ok(Err(status));
    }
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok(Ok(json["deliveryId"]
        .as_str()
        .map(|id| (id.to_string(), json["duplicate"] == Value::Bool(true)))))
}

/// Sender `index`: until `end`, each request to the next replica in turn (starting at its own
/// index, so the senders spread from the first request on).
async fn drive_sender(
    index: usize,
    endpoints: Arc<Vec<Endpoint>>,
    bodies: Arc<Bodies>,
    counter: Arc<AtomicU64>,
    end: Instant,
) -> anyhow::Result<Outcome> {
    let mut senders = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints.iter() {
        senders.push(connect(endpoint.addr).await?);
    }
    let mut outcome = Outcome {
        per_replica: vec![0; endpoints.len()],
        ..Outcome::default()
    };
    let mut turn = index;
    while Instant::now() < end {
        let replica = turn % endpoints.len();
        turn += 1;
        let body = bodies.body(counter.fetch_add(1, Ordering::Relaxed));
        let sent_at = Instant::now();
        let answer = tokio::time::timeout(
            REQUEST_TIMEOUT,
            exchange(&mut senders[replica], &endpoints[replica], body),
        )
        .await;
        let latency = sent_at.elapsed().as_micros() as u64;
        match answer {
            Ok(Ok(Ok(delivery))) => {
                outcome.accepted += 1;
                outcome.per_replica[replica] += 1;
                outcome.latencies_us.push(latency);
                match delivery {
                    Some((_, true)) => outcome.duplicates += 1,
                    Some((id, false)) => outcome.delivery_ids.push(id),
                    None => bail!("a 2xx answer without a deliveryId"),
                }
            }
            Ok(Ok(Err(status))) => *outcome.other_statuses.entry(status).or_default() += 1,
            Ok(Err(_)) | Err(_) => {
                outcome.transport_errors += 1;
                senders[replica] = connect(endpoints[replica].addr).await?;
            }
        }
    }
    Ok(outcome)
}

/// Clock ticks a second (`/proc` CPU times are in these).
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// User + system CPU seconds a process has used (0 when it is gone).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces: count from the closing parenthesis.
    let Some(rest) = stat.rfind(')').map(|at| &stat[at + 2..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    ticks / clock_ticks()
}

/// The parent pid of a process.
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The server's processes: the postmaster whose pid the database names, and its children.
fn postgres_pids(postmaster: u32) -> Vec<u32> {
    let mut pids = vec![postmaster];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
                && parent_pid(pid) == Some(postmaster)
            {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Busy and total CPU time of the whole machine (all cores), in clock ticks.
fn machine_ticks() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
        return (0.0, 0.0);
    };
    let values: Vec<f64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: f64 = values.iter().sum();
    // idle and iowait.
    let idle = values.get(3).copied().unwrap_or(0.0) + values.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
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

/// Counts of the database's active connections by wait event, summed over samples.
#[derive(Default)]
struct WaitSamples {
    samples: u64,
    by_event: BTreeMap<String, u64>,
}

impl WaitSamples {
    /// The busiest wait events: `event avg-connections`, most first.
    fn top(&self, n: usize) -> String {
        let mut events: Vec<(&String, &u64)> = self.by_event.iter().collect();
        events.sort_by(|a, b| b.1.cmp(a.1));
        let samples = self.samples.max(1) as f64;
        let parts: Vec<String> = events
            .iter()
            .take(n)
            .map(|(event, count)| format!("{event} {:.2}", **count as f64 / samples))
            .collect();
        if parts.is_empty() { "-".into() } else { parts.join(", ") }
    }

    fn active(&self) -> f64 {
        self.by_event.values().sum::<u64>() as f64 / self.samples.max(1) as f64
    }
}

/// Samples `pg_stat_activity` every [`POLL`] until `stop` is set: the database's client
/// connections that are running a statement, by wait event (`CPU` when they wait for none).
async fn sample_waits(client: Arc<tokio_postgres::Client>, stop: Arc<AtomicBool>) -> WaitSamples {
    let mut samples = WaitSamples::default();
    let query = "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), count(*) \
                 FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                   AND backend_type = 'client backend' AND state = 'active' \
                 GROUP BY 1";
    while !stop.load(Ordering::Relaxed) {
        if let Ok(rows) = client.query(query, &[]).await {
            samples.samples += 1;
            for row in rows {
                let event: String = row.get(0);
                let count: i64 = row.get(1);
                *samples.by_event.entry(event).or_default() += count as u64;
            }
        }
        tokio::time::sleep(POLL).await;
    }
    samples
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
async fn run_replicas(options: &Options, server_url: &str, replicas: usize) -> anyhow::Result<Run> {
    let admin = pg_connect(server_url).await?;
    let schema = format!("replica_bench_{}_{replicas}", std::process::id());
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .await
        .with_context(|| format!("creating schema {schema}"))?;
    let url = with_search_path(server_url, &schema);
    let postmaster: i32 = admin
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'",
            &[],
        )
        .await
        .context("finding the server's checkpointer")?
        .get(0);
    let postmaster =
        parent_pid(postmaster as u32).context("the checkpointer's parent (is the server on this machine?)")?;

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
    let mut store_lines = vec![format!("url = {}", serde_json::to_string(&url)?)];
    if let Some(pool) = options.pool_size {
        store_lines.push(format!("pool_size = {pool}"));
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
    let bodies = Arc::new(Bodies::new(options.tickets, options.tenants, &format!("n{replicas}")));
    let bridge_pids: Vec<u32> = bridges.iter().map(Bridge::pid).collect();
    let sampler = Arc::new(pg_connect(server_url).await?);

    // The load.
    let counter = Arc::new(AtomicU64::new(0));
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let waits = tokio::spawn(sample_waits(sampler.clone(), stop_sampling.clone()));
    let cpu_start = cpu_snapshot(&bridge_pids, &postgres_pids(postmaster));
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
    let cpu_load_end = cpu_snapshot(&bridge_pids, &postgres_pids(postmaster));
    stop_sampling.store(true, Ordering::Relaxed);
    let load_waits = waits.await.context("the wait sampler panicked")?;

    // The drain.
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let waits = tokio::spawn(sample_waits(sampler.clone(), stop_sampling.clone()));
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
    let cpu_drain_end = cpu_snapshot(&bridge_pids, &postgres_pids(postmaster));
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
    let drop_sql = format!("SET lock_timeout = '5s'; DROP SCHEMA {schema} CASCADE");
    if let Err(err) = admin.batch_execute(&drop_sql).await {
        eprintln!("replica-bench: dropping schema {schema}: {err}");
    }

    let mut sorted = outcome.latencies_us.clone();
    sorted.sort_unstable();
    Ok(Run {
        replicas,
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

fn print_table(runs: &[Run]) {
    let base = runs.iter().find(|run| run.replicas == 1);
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
            run.replicas,
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
                "  {} replica(s), {phase:>5}: bridges {:.2}, postgres {:.2}, bench {:.2}; machine {:.0}% busy",
                run.replicas,
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
                "  {} replica(s), {phase:>5}: {:.2} active: {}",
                run.replicas,
                waits.active(),
                waits.top(6)
            );
        }
    }
    for run in runs {
        let per_replica: Vec<String> = run.outcome.per_replica.iter().map(u64::to_string).collect();
        println!(
            "{} replica(s): accepted per replica [{}]; other answers: {}; vendor requests beyond one per delivery: {}",
            run.replicas,
            per_replica.join(", "),
            run.outcome.others(),
            run.duplicate_deliveries
        );
        if !run.complete {
            println!(
                "{} replica(s): CAPPED: {} of {} delivered when the cap was reached",
                run.replicas,
                run.delivered,
                run.outcome.delivery_ids.len()
            );
        }
        if !run.complaints.is_empty() {
            println!(
                "{} replica(s): {} warning/error line(s) in the replicas' logs, first ones:",
                run.replicas,
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
    for &replicas in &options.replicas {
        match run_replicas(&options, &url, replicas).await {
            Ok(run) => {
                println!(
                    "  {replicas} replica(s): {} accepted ({:.0}/s), {} delivered ({:.0}/s)",
                    run.outcome.accepted, run.accepted_per_s, run.delivered, run.delivered_per_s
                );
                runs.push(run);
            }
            Err(err) => {
                eprintln!("replica-bench: {replicas} replica(s): {err:#}");
                print_table(&runs);
                return ExitCode::FAILURE;
            }
        }
    }
    print_table(&runs);
    ExitCode::SUCCESS
}
