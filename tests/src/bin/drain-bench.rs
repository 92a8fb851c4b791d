//! `drain-bench`: how fast the bridge drains a backlog of pending deliveries, by backlog size.
//!
//! For each backlog size N (`--backlog`), with a fresh store each time:
//!
//! 1. starts the real `dolphin-bridge` binary (`$DOLPHIN_BRIDGE_BIN`, else
//!    `target/debug/dolphin-bridge`) with one `echo` tenant delivering to a fast mock vendor,
//!    sends one real Incoming event and waits until the vendor has it (so the store's schema
//!    exists and holds a real delivery row), then stops the bridge with SIGTERM;
//! 2. fills the store directly (rusqlite, one transaction) with N pending copies of that row,
//!    spread round-robin over `--tickets` tickets: every column copied except the ones a fresh
//!    delivery has of its own (delivery id, ticket, the ticket inside the payload, state,
//!    attempts, times), so the same code works on the store of an older bridge;
//! 3. starts the bridge again on that store and times it from spawn until the vendor has
//!    received all N (each delivery id counted once), or until `--cap-minutes`.
//!
//! Prints, per backlog: seconds until the bridge listened, until 10% and all were delivered,
//! the overall rate, the rate over the last half (when the backlog is half its size), the rate
//! of each tenth, and each rate as a ratio of the smallest backlog's. It prints figures only;
//! nothing is asserted about time.
//!
//! Build the bridge and the adapters first (`cargo build -p dolphin-bridge`, `cargo xtask
//! build-plugins`), then:
//!
//! ```sh
//! cargo run --release -p dolphin-bridge-tests --bin drain-bench [-- --backlog 1000,20000 --tickets 64]
//! ```

use std::collections::HashSet;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use dolphin_bridge_tests::adapters;
use dolphin_bridge_tests::bench_options::{positive, positive_minutes};
use dolphin_bridge_tests::bench_target::{Better, print_target};
use dolphin_bridge_tests::crash_support::BridgeFiles;
use dolphin_bridge_tests::events::{EXAMPLE_OWNER, fresh_ticket};
use dolphin_bridge_tests::mock_http::{MockServer, Recorded, Reply};
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, MockThreeDolphins, Tenant};
use serde_json::{Value, json};

const API_TOKEN: &str = "bench-3dolphins-token";
const TENANT: &str = "drain";
const VENDOR_PATH: &str = "/drain";
/// How often the vendor's count is read to see whether the drain is over.
const POLL: Duration = Duration::from_millis(50);
/// How long the first event and the graceful stops may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// How fast the bridge drains a backlog of pending deliveries, by backlog size.
#[derive(clap::Parser)]
struct Options {
    /// Backlog sizes, one run each.
    #[arg(long = "backlog", value_delimiter = ',', default_values_t = [1000, 20_000, 100_000], value_parser = positive)]
    backlogs: Vec<usize>,
    /// Tickets the backlog is spread over, round-robin.
    #[arg(long, default_value_t = 64, value_parser = positive)]
    tickets: usize,
    /// Longest wait for one backlog to drain, in minutes.
    #[arg(long = "cap-minutes", default_value = "20", value_parser = positive_minutes)]
    cap: Duration,
    /// The bridge's `delivery.max_in_flight_per_tenant` (default: the bridge's own).
    #[arg(long = "in-flight")]
    in_flight: Option<usize>,
}

/// What the vendor has received: arrival times of deliveries whose id starts with the prefix
/// being counted (each id once), and every request.
#[derive(Default)]
struct Received {
    counted_prefix: Option<String>,
    ids: HashSet<String>,
    arrivals: Vec<Instant>,
    requests: usize,
    first_body: Option<Value>,
}

/// A vendor that answers 200 at once and counts new delivery ids (the echo adapter's
/// `deliveryId`), so deliveries made before the count started are left out.
struct CountingVendor {
    server: MockServer,
    received: Arc<Mutex<Received>>,
}

impl CountingVendor {
    async fn start() -> CountingVendor {
        let received: Arc<Mutex<Received>> = Arc::default();
        let recorder = received.clone();
        let server = MockServer::start(Arc::new(move |request: &Recorded| {
            if request.path != VENDOR_PATH {
                return Reply::json(404, &json!({"error": "not this vendor"}));
            }
            let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            let mut received = recorder.lock().unwrap();
            // Read under the lock, so that the arrivals are in order.
            let now = Instant::now();
            received.requests += 1;
            if let (Some(prefix), Some(id)) = (&received.counted_prefix, body["deliveryId"].as_str())
                && id.starts_with(prefix.as_str())
                && !received.ids.contains(id)
            {
                let id = id.to_string();
                received.ids.insert(id);
                received.arrivals.push(now);
            }
            received.first_body.get_or_insert(body);
            Reply::json(200, &json!({"ok": true}))
        }))
        .await;
        CountingVendor { server, received }
    }

    fn url(&self) -> String {
        format!("{}{VENDOR_PATH}", self.server.base_url())
    }

    fn requests(&self) -> usize {
        self.received.lock().unwrap().requests
    }

    fn first_body(&self) -> Option<Value> {
        self.received.lock().unwrap().first_body.clone()
    }

    /// From now on, counts only delivery ids starting with `prefix`; clears every count.
    fn count_only(&self, prefix: &str) {
        let mut received = self.received.lock().unwrap();
        *received = Received {
            counted_prefix: Some(prefix.to_string()),
            ..Received::default()
        };
    }

    fn counted(&self) -> usize {
        self.received.lock().unwrap().arrivals.len()
    }

    fn arrivals(&self) -> Vec<Instant> {
        self.received.lock().unwrap().arrivals.clone()
    }
}

/// The real delivery row the backlog copies.
struct Template {
    seq: i64,
    ticket: String,
}

/// Milliseconds since the Unix epoch (the store's clock).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A uuid-shaped delivery id; the first group is the run's prefix, the last the row's number.
fn delivery_id(prefix: &str, n: usize) -> String {
    format!("{prefix}-0000-4000-8000-{n:012x}")
}

/// Reads the one delivery row the first event left, checks it is what the backlog should copy.
fn template_row(db: &rusqlite::Connection, delivered_id: &str) -> anyhow::Result<Template> {
    let (seq, ticket, payload, state, tenant): (i64, String, String, String, String) = db
        .query_row(
            "SELECT seq, ticket, payload, state, tenant FROM outbox WHERE delivery_id = ?1",
            [delivered_id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)),
        )
        .with_context(|| format!("reading delivery {delivered_id} from the outbox"))?;
    if state != "delivered" || tenant != TENANT {
        bail!("delivery {delivered_id} is {state} of tenant {tenant}, not delivered of {TENANT}");
    }
    if !payload.contains(&ticket) {
        bail!("the payload of delivery {delivered_id} does not hold its ticket {ticket}: {payload}");
    }
    Ok(Template { seq, ticket })
}

/// `INSERT INTO outbox (...) SELECT ... FROM outbox WHERE seq = ?5`: every column of this store
/// copied from the template row, except what a fresh delivery has of its own. Parameters:
/// `?1` delivery id, `?2` ticket, `?3` the template's ticket, `?4` now (ms), `?5` the template.
fn copy_statement(db: &rusqlite::Connection) -> anyhow::Result<String> {
    let mut statement = db.prepare("SELECT name FROM pragma_table_info('outbox') ORDER BY cid")?;
    let columns: Vec<String> = statement
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()
        .context("listing the outbox's columns")?;
    let mut names = Vec::new();
    let mut values = Vec::new();
    for column in &columns {
        let value = match column.as_str() {
            "seq" => continue,
            "delivery_id" => "?1",
            "ticket" => "?2",
            "payload" => "replace(payload, ?3, ?2)",
            "state" => "'pending'",
            "attempts" | "retry_base" | "next_attempt_at" => "0",
            "created_at" => "?4",
            "last_error" | "finished_at" => "NULL",
            other => other,
        };
        names.push(column.as_str());
        values.push(value);
    }
    for needed in [
        "delivery_id",
        "ticket",
        "payload",
        "state",
        "created_at",
        "next_attempt_at",
    ] {
        if !names.contains(&needed) {
            bail!("the outbox has no column {needed} (columns: {columns:?})");
        }
    }
    Ok(format!(
        "INSERT INTO outbox ({}) SELECT {} FROM outbox WHERE seq = ?5",
        names.join(", "),
        values.join(", ")
    ))
}

/// Adds `backlog` pending copies of the delivered row `delivered_id` to the store at `db_path`,
/// round-robin over `tickets` fresh tickets, in one transaction; returns the pending count.
fn fill_backlog(
    db_path: &Path,
    delivered_id: &str,
    prefix: &str,
    backlog: usize,
    tickets: usize,
) -> anyhow::Result<i64> {
    let mut db = rusqlite::Connection::open(db_path).with_context(|| format!("opening {}", db_path.display()))?;
    let template = template_row(&db, delivered_id)?;
    let sql = copy_statement(&db)?;
    let ticket_numbers: Vec<String> = (0..tickets).map(|_| fresh_ticket()).collect();
    let created_at = now_ms();
    let transaction = db.transaction()?;
    {
        let mut insert = transaction.prepare(&sql).with_context(|| format!("preparing {sql}"))?;
        for n in 0..backlog {
            insert
                .execute(rusqlite::params![
                    delivery_id(prefix, n),
                    ticket_numbers[n % tickets],
                    template.ticket,
                    created_at,
                    template.seq
                ])
                .with_context(|| format!("inserting backlog row {n}"))?;
        }
    }
    transaction.commit().context("committing the backlog")?;
    let pending: i64 = db.query_row("SELECT COUNT(*) FROM outbox WHERE state = 'pending'", [], |row| {
        row.get(0)
    })?;
    Ok(pending)
}

/// Stops `bridge` with SIGTERM and waits for it to exit.
async fn stop(mut bridge: Bridge) -> anyhow::Result<()> {
    bridge.terminate();
    match bridge.wait_for_exit(STEP_TIMEOUT).await {
        Some(status) if status.success() => Ok(()),
        Some(status) => bail!("the bridge exited with {status}; its output:\n{}", bridge.stderr()),
        None => bail!("the bridge did not exit within {STEP_TIMEOUT:?} of SIGTERM"),
    }
}

/// The figures of one backlog's drain. Times are from the bridge's spawn.
struct Drain {
    backlog: usize,
    listening: Duration,
    delivered: usize,
    /// Until the vendor had all of them, or the cap.
    elapsed: Duration,
    complete: bool,
    first_tenth: Option<Duration>,
    /// Arrival times of the deliveries, in order.
    arrivals: Vec<Duration>,
    requests: usize,
    /// Warning and error lines of the bridge's log during the drain.
    complaints: Vec<String>,
}

impl Drain {
    fn rate(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64()
    }

    /// Deliveries per second from the moment half the backlog was delivered to the last
    /// delivery (or the cap).
    fn last_half_rate(&self) -> Option<f64> {
        let half = self.backlog / 2;
        let start = *self.arrivals.get(half.checked_sub(1)?)?;
        let end = if self.complete {
            *self.arrivals.last()?
        } else {
            self.elapsed
        };
        let span = end.checked_sub(start)?.as_secs_f64();
        (span > 0.0).then(|| (self.delivered - half) as f64 / span)
    }

    /// Deliveries per second within each tenth of the backlog (in order of delivery).
    fn tenths(&self) -> Vec<Option<f64>> {
        (0..10)
            .map(|tenth| {
                let from = self.backlog * tenth / 10;
                let to = self.backlog * (tenth + 1) / 10;
                let start = if from == 0 {
                    self.listening
                } else {
                    *self.arrivals.get(from - 1)?
                };
                let end = *self.arrivals.get(to.checked_sub(1)?)?;
                let span = end.checked_sub(start)?.as_secs_f64();
                (span > 0.0).then(|| (to - from) as f64 / span)
            })
            .collect()
    }
}

/// One backlog size: steps 1 to 3 of the module's description.
async fn run_backlog(options: &Options, backlog: usize, index: usize) -> anyhow::Result<Drain> {
    let (tickets, cap) = (options.tickets, options.cap);
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = CountingVendor::start().await;
    let config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .tenant(
            Tenant::new(TENANT, EXAMPLE_OWNER, adapters::echo())
                .allow(&vendor.server.base_url())
                .config("url", &vendor.url()),
        );
    let in_flight = options.in_flight.map(|n| format!("max_in_flight_per_tenant = {n}"));
    let files = BridgeFiles::write(&config, &in_flight.iter().map(String::as_str).collect::<Vec<_>>());
    let db_path = files.dir().join("bridge.db");

    // 1. One real event, so the store has its schema and a row to copy.
    let bridge = files.start().await;
    let ticket = fresh_ticket();
    let response = bridge
        .send_event(
            Event::example()
                .ticket(&ticket)
                .owner(EXAMPLE_OWNER)
                .message("template"),
        )
        .await;
    if response.status != 202 {
        bail!("the first event was answered {}: {}", response.status, response.text());
    }
    let deadline = Instant::now() + STEP_TIMEOUT;
    while vendor.requests() == 0 {
        if Instant::now() >= deadline {
            bail!(
                "the first event did not reach the vendor within {STEP_TIMEOUT:?}; the bridge's output:\n{}",
                bridge.stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let body = vendor.first_body().unwrap_or_default();
    let Some(delivered_id) = body["deliveryId"].as_str().map(str::to_string) else {
        bail!("the vendor's first body has no deliveryId: {body}");
    };
    // The delivery is marked delivered just after the vendor answers.
    let settle = Instant::now() + STEP_TIMEOUT;
    while bridge.outbox_stats().await["pending"] != 0 {
        if Instant::now() >= settle {
            bail!("the first delivery stayed pending");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop(bridge)
        .await
        .context("stopping the bridge after the first event")?;

    // 2. The backlog, written while no bridge runs.
    let prefix = format!("{:08x}", (now_ms() as u32).wrapping_add(index as u32));
    let fill_started = Instant::now();
    let pending = fill_backlog(&db_path, &delivered_id, &prefix, backlog, tickets)?;
    let fill_time = fill_started.elapsed();
    if pending != backlog as i64 {
        bail!("the store holds {pending} pending deliveries, not {backlog}");
    }
    println!(
        "  backlog {backlog}: {pending} pending rows written in {:.1} s ({tickets} tickets); draining...",
        fill_time.as_secs_f64()
    );
    vendor.count_only(&prefix);

    // 3. The drain.
    let spawned = Instant::now();
    let bridge = files.start().await;
    let listening = spawned.elapsed();
    let cap_at = spawned + cap;
    let mut first_tenth = None;
    let tenth = backlog.div_ceil(10);
    let complete = loop {
        let counted = vendor.counted();
        if first_tenth.is_none() && counted >= tenth {
            first_tenth = vendor.arrivals().get(tenth - 1).map(|at| *at - spawned);
        }
        if counted >= backlog {
            break true;
        }
        if Instant::now() >= cap_at {
            break false;
        }
        tokio::time::sleep(POLL).await;
    };
    let arrivals: Vec<Duration> = vendor.arrivals().iter().map(|at| *at - spawned).collect();
    let elapsed = match (complete, arrivals.last()) {
        (true, Some(last)) => *last,
        _ => spawned.elapsed(),
    };
    let complaints = bridge
        .stderr()
        .lines()
        .filter(|line| line.contains("WARN") || line.contains("ERROR") || line.contains("panicked"))
        .map(str::to_string)
        .collect();
    let requests = vendor.requests();
    stop(bridge).await.context("stopping the bridge after the drain")?;
    Ok(Drain {
        backlog,
        listening,
        delivered: arrivals.len(),
        elapsed,
        complete,
        first_tenth,
        arrivals,
        requests,
        complaints,
    })
}

fn seconds(duration: Option<Duration>) -> String {
    duration.map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64()))
}

fn rate(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.0}"))
}

fn ratio(value: Option<f64>, base: Option<f64>) -> String {
    match (value, base) {
        (Some(v), Some(b)) if b > 0.0 => format!("{:.2}x", v / b),
        _ => "-".into(),
    }
}

fn print_table(drains: &[Drain]) {
    let smallest = drains.iter().min_by_key(|d| d.backlog);
    let base_rate = smallest.map(Drain::rate);
    let base_half = smallest.and_then(Drain::last_half_rate);
    println!();
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>10} {:>10}",
        "backlog", "listen s", "10% s", "drain s", "delivered", "events/s", "last-half/s", "ratio", "ratio half"
    );
    for drain in drains {
        println!(
            "{:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>10} {:>10}",
            drain.backlog,
            seconds(Some(drain.listening)),
            seconds(drain.first_tenth),
            format!(
                "{}{}",
                seconds(Some(drain.elapsed)),
                if drain.complete { "" } else { "+" }
            ),
            drain.delivered,
            rate(Some(drain.rate())),
            rate(drain.last_half_rate()),
            ratio(Some(drain.rate()), base_rate),
            ratio(drain.last_half_rate(), base_half),
        );
    }
    println!();
    println!("events/s within each tenth of the backlog (first tenth counted from `listening`):");
    for drain in drains {
        let tenths: Vec<String> = drain.tenths().into_iter().map(rate).collect();
        println!("{:>8}: {}", drain.backlog, tenths.join(" "));
    }
    // The target: the largest backlog drains no slower than 1/1.5 of the smallest one's rate.
    let largest = drains.iter().max_by_key(|d| d.backlog);
    if let (Some(small), Some(large)) = (smallest, largest)
        && large.backlog > small.backlog
    {
        print_target(
            &format!("drain rate, backlog {} / backlog {}", large.backlog, small.backlog),
            large.rate() / small.rate(),
            "x",
            1.0 / 1.5,
            Better::Higher,
        );
    }
    for drain in drains {
        if !drain.complete {
            println!(
                "backlog {}: CAPPED: {} of {} delivered when the cap was reached ({:.0} s)",
                drain.backlog,
                drain.delivered,
                drain.backlog,
                drain.elapsed.as_secs_f64()
            );
        }
        if drain.requests != drain.delivered {
            println!(
                "backlog {}: the vendor received {} requests for {} distinct deliveries",
                drain.backlog, drain.requests, drain.delivered
            );
        }
        if !drain.complaints.is_empty() {
            println!(
                "backlog {}: {} warning/error line(s) in the bridge's log during the drain, first ones:",
                drain.backlog,
                drain.complaints.len()
            );
            for line in drain.complaints.iter().take(5) {
                println!("    {line}");
            }
        }
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let options = <Options as clap::Parser>::parse();
    println!("drain-bench");
    println!("  bridge: {}", adapters::bridge_binary().display());
    println!(
        "  backlogs {:?}, {} tickets, cap {} min; delivery settings: the bridge's defaults{}",
        options.backlogs,
        options.tickets,
        options.cap.as_secs() / 60,
        options
            .in_flight
            .map_or(String::new(), |n| format!(" but max_in_flight_per_tenant = {n}"))
    );
    let mut drains = Vec::new();
    for (index, backlog) in options.backlogs.iter().enumerate() {
        match run_backlog(&options, *backlog, index).await {
            Ok(drain) => {
                println!(
                    "  backlog {backlog}: {} delivered in {:.2} s ({:.0}/s)",
                    drain.delivered,
                    drain.elapsed.as_secs_f64(),
                    drain.rate()
                );
                drains.push(drain);
            }
            Err(err) => {
                eprintln!("drain-bench: backlog {backlog}: {err:#}");
                print_table(&drains);
                return ExitCode::FAILURE;
            }
        }
    }
    print_table(&drains);
    ExitCode::SUCCESS
}
