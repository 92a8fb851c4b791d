//! `accept-bench`: the bridge's durable accept and its end-to-end delivery, each as a ratio of a
//! raw hyper server's request rate measured in the same run on the same machine.
//!
//! One run, each load phase lasting `--seconds`:
//!
//! 1. **raw hyper**: an in-process hyper HTTP/1 server on 127.0.0.1 that reads each POST's body
//!    and answers 200 with a tiny JSON body. It is driven at *full load* (closed loop: each of
//!    `--connections` keep-alive connections sends its next request as soon as the previous one
//!    is answered), then at *half load* (open loop: sends evenly spaced at half the full-load
//!    rate just measured, request `i` on connection `i mod N`).
//! 2. **durable accept**: the real `dolphin-bridge serve` (`$DOLPHIN_BRIDGE_BIN`, else
//!    `target/debug/dolphin-bridge`; `cargo xtask bench` gives it the release build) with one
//!    `echo` tenant delivering to a loopback mock vendor that answers 200 at once. Its Incoming
//!    endpoint (with the Incoming token) gets the same full load, then (once every event accepted
//!    so far reached the vendor) the same open loop at half the bridge's own full-load rate.
//!    Accepted means answered 202/200; any other status is counted and printed apart.
//! 3. **end to end**: for the events each phase got accepted, the mock vendor's arrivals: events
//!    per second from the phase's first send to the last of them reaching the vendor, and the
//!    latency from each send to its arrival (both read on this process's monotonic clock).
//! 4. **traces on** (unless `--skip-traces`): a second bridge like the first, exporting traces
//!    (`[telemetry] otlp_endpoint`) to the raw hyper server of phase 1, which takes the OTLP
//!    posts as it takes any POST; the same full load. Its accept rate over the first bridge's
//!    (traces off) is what traces cost.
//! 5. **chatwoot** (unless `--skip-chatwoot`): a second bridge with one `chatwoot` tenant to a
//!    loopback mock Chatwoot, the same full load; its end-to-end figures come from the bridge's
//!    store (`created_at` to `finished_at` of the delivered rows, milliseconds, the bridge's clock),
//!    as the mock Chatwoot keeps no arrival times.
//!
//! Every request is an Incoming event shaped like the contract's example, on one of `--tickets`
//! tickets (round-robin by request number) with a message text of its own, so that no two bodies
//! (hence no two idempotency keys) are the same. Latencies are of accepted answers; in the open
//! loop a request's latency counts from its scheduled time when its connection was still busy
//! then (queueing the server caused), else from when it was sent (timer lag of this program is
//! not the server's).
//!
//! The load generator, the mock servers and the bridge share the machine's cores (2 on the
//! project's machine), as wrk and the servers did in the issue's measurement: absolute figures
//! move with whatever else runs; the ratios to raw hyper, measured minutes apart in one run, are
//! what is compared. Build this bench with `--release`: in the dev profile the dependencies are
//! optimised (see the root `Cargo.toml`) but hyper's generic code instantiated here (the raw
//! server's and the generator's connections) is not, which lowers raw hyper's figures and so
//! raises every ratio; such a build says so in its output. Prints figures and `target:` lines;
//! asserts nothing about time.
//!
//! ```sh
//! cargo build --release -p dolphin-bridge && cargo xtask build-plugins
//! DOLPHIN_BRIDGE_BIN=target/release/dolphin-bridge cargo run --release -p dolphin-bridge-tests --bin accept-bench -- --seconds 5
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use dolphin_bridge_tests::arrival_vendor::ArrivalVendor;
use dolphin_bridge_tests::bench_target::{Better, print_target};
use dolphin_bridge_tests::events::{EXAMPLE_OWNER, fresh_ticket};
use dolphin_bridge_tests::mock_chatwoot::MockChatwoot;
use dolphin_bridge_tests::paced_load::{self as load, Percentiles};
use dolphin_bridge_tests::{Bridge, BridgeConfig, MockThreeDolphins, Tenant, adapters};
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Command-line options.
#[derive(Parser, Debug)]
#[command(
    name = "accept-bench",
    about = "Raw hyper vs the bridge's durable accept and end-to-end delivery, in one run"
)]
struct Options {
    /// Seconds each load phase lasts.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent keep-alive HTTP/1.1 connections of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Tickets the events are spread over, round-robin.
    #[arg(long, default_value_t = 64)]
    tickets: usize,
    /// Longest wait, after a phase, for its accepted events to be delivered.
    #[arg(long, default_value_t = 600)]
    drain_cap_seconds: u64,
    /// Leaves out the run through the `chatwoot` adapter.
    #[arg(long)]
    skip_chatwoot: bool,
    /// Leaves out the run with traces on.
    #[arg(long)]
    skip_traces: bool,
}

const API_TOKEN: &str = "bench-3dolphins-token";
const CHATWOOT_TOKEN: &str = "bench-chatwoot-token";
const ECHO_TENANT: &str = "accept-echo";
const CHATWOOT_TENANT: &str = "accept-chatwoot";
const VENDOR_PATH: &str = "/accept-bench";
/// How often delivery progress is read while waiting for a drain.
const POLL: Duration = Duration::from_millis(20);

/// The raw hyper server: reads each request's body, answers 200 with a tiny JSON body.
async fn start_raw_hyper() -> anyhow::Result<SocketAddr> {
    use hyper::service::service_fn;
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|request: hyper::Request<hyper::body::Incoming>| async move {
                    let _body = request.into_body().collect().await?.to_bytes();
                    Ok::<_, hyper::Error>(
                        hyper::Response::builder()
                            .status(200)
                            .header(CONTENT_TYPE, "application/json")
                            .body(Full::new(Bytes::from_static(br#"{"status":"success"}"#)))
                            .expect("a valid response"),
                    )
                });
                // An error here is the load generator hanging up at the end of a phase.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// End-to-end figures of one phase's accepted events.
struct Delivery {
    accepted: usize,
    delivered: usize,
    /// From the phase's first send to the last delivery (or to the cap).
    span: Duration,
    complete: bool,
    latency: Percentiles,
}

impl Delivery {
    fn per_second(&self) -> f64 {
        self.delivered as f64 / self.span.as_secs_f64()
    }

    fn row(&self, name: &str, latency_note: &str) -> String {
        format!(
            "{name:<34} {:>9.0} {:>9} {:>9} {:>9}   delivered {} of {}{} in {:.2} s; latency {latency_note}",
            self.per_second(),
            Percentiles::ms(self.latency.p50),
            Percentiles::ms(self.latency.p99),
            Percentiles::ms(self.latency.p999),
            self.delivered,
            self.accepted,
            if self.complete { "" } else { " (CAPPED)" },
            self.span.as_secs_f64(),
        )
    }
}

/// Waits until the vendor has `expected` distinct deliveries (or the cap), then reads the
/// arrivals of `outcome`'s accepted events.
async fn echo_delivery(vendor: &ArrivalVendor, outcome: &load::Outcome, expected: usize, cap: Duration) -> Delivery {
    let started = outcome.started.expect("a phase that ran");
    let give_up = Instant::now() + cap;
    let complete = loop {
        if vendor.distinct() >= expected {
            break true;
        }
        if Instant::now() >= give_up {
            break false;
        }
        tokio::time::sleep(POLL).await;
    };
    let arrivals = vendor.first_arrivals(outcome.delivery_ids.iter().map(|(id, _)| id.as_str()));
    let mut latencies = Vec::with_capacity(arrivals.len());
    let mut last = None;
    for ((_, sent), arrival) in outcome.delivery_ids.iter().zip(&arrivals) {
        if let Some(arrival) = arrival {
            latencies.push(arrival.saturating_duration_since(*sent).as_micros() as u64);
            last = last.max(Some(*arrival));
        }
    }
    let span = match (complete, last) {
        (true, Some(last)) => last.duration_since(started),
        _ => started.elapsed(),
    };
    Delivery {
        accepted: outcome.delivery_ids.len(),
        delivered: latencies.len(),
        span,
        complete,
        latency: Percentiles::of(latencies),
    }
}

/// Waits until the bridge's outbox has nothing pending (or the cap), then reads the delivered
/// rows of `tenant` from its store: accept to delivered, milliseconds of the bridge's clock.
async fn store_delivery(bridge: &Bridge, tenant: &str, accepted: usize, cap: Duration) -> anyhow::Result<Delivery> {
    let give_up = Instant::now() + cap;
    let complete = loop {
        if bridge.outbox_stats().await["pending"] == 0 {
            break true;
        }
        if Instant::now() >= give_up {
            break false;
        }
        tokio::time::sleep(POLL).await;
    };
    let db_path = bridge
        .config_path()
        .parent()
        .context("the config's folder")?
        .join("bridge.db");
    let rows = delivered_rows(&db_path, tenant)?;
    let first_accept = rows.iter().map(|(created, _)| *created).min().unwrap_or(0);
    let last_delivery = rows.iter().map(|(_, finished)| *finished).max().unwrap_or(0);
    let latencies = rows
        .iter()
        .map(|(created, finished)| (finished - created).max(0) as u64 * 1000)
        .collect();
    Ok(Delivery {
        accepted,
        delivered: rows.len(),
        span: Duration::from_millis((last_delivery - first_accept).max(1) as u64),
        complete,
        latency: Percentiles::of(latencies),
    })
}

/// `(created_at, finished_at)` in epoch milliseconds of every delivered row of `tenant`.
fn delivered_rows(db_path: &Path, tenant: &str) -> anyhow::Result<Vec<(i64, i64)>> {
    let db = rusqlite::Connection::open_with_flags(db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", db_path.display()))?;
    let mut statement = db.prepare(
        "SELECT created_at, finished_at FROM outbox
         WHERE tenant = ?1 AND state = 'delivered' AND finished_at IS NOT NULL",
    )?;
    let rows = statement
        .query_map([tenant], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<Vec<(i64, i64)>, _>>()
        .context("reading the delivered rows")?;
    Ok(rows)
}

fn fresh_tickets(n: usize) -> Vec<String> {
    (0..n).map(|_| fresh_ticket()).collect()
}

/// The load generator's target for a bridge's Incoming endpoint.
fn incoming_target(bridge: &Bridge) -> anyhow::Result<load::Target> {
    let url = bridge.incoming_url();
    let rest = url.strip_prefix("http://").context("an http:// Incoming URL")?;
    let (authority, path) = rest.split_once('/').context("a path in the Incoming URL")?;
    Ok(load::Target {
        addr: authority
            .parse()
            .with_context(|| format!("the bridge's address {authority}"))?,
        path: format!("/{path}"),
        authorization: bridge.incoming_auth().map(|(_, value)| value),
        read_delivery_ids: true,
    })
}

/// One table row of a load phase.
fn load_row(name: &str, outcome: &load::Outcome) -> String {
    let percentiles = outcome.percentiles();
    format!(
        "{name:<34} {:>9.0} {:>9} {:>9} {:>9}   sent {}, accepted {}; other: {}",
        outcome.accepted_per_second(),
        Percentiles::ms(percentiles.p50),
        Percentiles::ms(percentiles.p99),
        Percentiles::ms(percentiles.p999),
        outcome.sent,
        outcome.accepted,
        outcome.others(),
    )
}

fn progress(row: &str) {
    println!("  {row}");
}

/// Figures of the run through `echo`.
struct EchoRun {
    full: load::Outcome,
    full_delivery: Delivery,
    half_rate: f64,
    half: load::Outcome,
    half_delivery: Delivery,
    vendor_requests: u64,
    complaints: Vec<String>,
}

/// Warning and error lines of the bridge's log.
fn complaints(bridge: &Bridge) -> Vec<String> {
    bridge
        .stderr()
        .lines()
        .filter(|line| line.contains("WARN") || line.contains("ERROR") || line.contains("panicked"))
        .map(str::to_string)
        .collect()
}

async fn echo_run(options: &Options) -> anyhow::Result<EchoRun> {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = ArrivalVendor::start(VENDOR_PATH).await;
    let config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .tenant(
            Tenant::new(ECHO_TENANT, EXAMPLE_OWNER, adapters::echo())
                .allow(&vendor.server.base_url())
                .config("url", &vendor.url()),
        );
    let bridge = Bridge::try_start(config)
        .await
        .map_err(|err| anyhow::anyhow!(err))
        .context("starting the bridge with the echo tenant")?;
    let duration = Duration::from_secs(options.seconds);
    let cap = Duration::from_secs(options.drain_cap_seconds);
    let tickets = fresh_tickets(options.tickets);

    let full = load::run(
        incoming_target(&bridge)?,
        options.connections,
        load::Bodies::new(&tickets, "echo-full"),
        load::Pace::Closed,
        duration,
    )
    .await?;
    progress(&load_row("bridge echo accept, full", &full));
    let full_delivery = echo_delivery(&vendor, &full, full.delivery_ids.len(), cap).await;
    progress(&full_delivery.row("echo end to end, full", "send -> vendor"));

    let half_rate = full.accepted_per_second() / 2.0;
    let half = load::run(
        incoming_target(&bridge)?,
        options.connections,
        load::Bodies::new(&tickets, "echo-half"),
        load::Pace::Open { per_second: half_rate },
        duration,
    )
    .await?;
    progress(&load_row(&format!("bridge echo accept, half {half_rate:.0}/s"), &half));
    let expected = full.delivery_ids.len() + half.delivery_ids.len();
    let half_delivery = echo_delivery(&vendor, &half, expected, cap).await;
    progress(&half_delivery.row("echo end to end, half", "send -> vendor"));

    Ok(EchoRun {
        full,
        full_delivery,
        half_rate,
        half,
        half_delivery,
        vendor_requests: vendor.requests(),
        complaints: complaints(&bridge),
    })
}

/// Full load on a bridge like [`echo_run`]'s exporting its traces to `collector` (an HTTP
/// server that answers every POST 200): the accept rate with traces on.
async fn traces_run(options: &Options, collector: SocketAddr) -> anyhow::Result<(load::Outcome, Vec<String>)> {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = ArrivalVendor::start(VENDOR_PATH).await;
    let mut config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .tenant(
            Tenant::new(ECHO_TENANT, EXAMPLE_OWNER, adapters::echo())
                .allow(&vendor.server.base_url())
                .config("url", &vendor.url()),
        );
    config.extra_toml = format!("[telemetry]\notlp_endpoint = \"http://{collector}\"\n");
    let bridge = Bridge::try_start(config)
        .await
        .map_err(|err| anyhow::anyhow!(err))
        .context("starting the bridge with traces on")?;
    let full = load::run(
        incoming_target(&bridge)?,
        options.connections,
        load::Bodies::new(&fresh_tickets(options.tickets), "traces-full"),
        load::Pace::Closed,
        Duration::from_secs(options.seconds),
    )
    .await?;
    progress(&load_row("bridge echo accept, traces on", &full));
    Ok((full, complaints(&bridge)))
}

/// Figures of the run through `chatwoot`.
struct ChatwootRun {
    full: load::Outcome,
    delivery: Delivery,
    messages: usize,
    complaints: Vec<String>,
}

async fn chatwoot_run(options: &Options) -> anyhow::Result<ChatwootRun> {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let chatwoot = MockChatwoot::start(CHATWOOT_TOKEN).await;
    let config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .tenant(
            Tenant::new(CHATWOOT_TENANT, EXAMPLE_OWNER, adapters::chatwoot())
                .allow(&chatwoot.base_url())
                .config("base_url", &chatwoot.base_url())
                .config("account_id", &chatwoot.account_id().to_string())
                .config("inbox_id", &chatwoot.inbox_id().to_string())
                .config("api_access_token", CHATWOOT_TOKEN),
        );
    let bridge = Bridge::try_start(config)
        .await
        .map_err(|err| anyhow::anyhow!(err))
        .context("starting the bridge with the chatwoot tenant")?;
    let tickets = fresh_tickets(options.tickets);
    let full = load::run(
        incoming_target(&bridge)?,
        options.connections,
        load::Bodies::new(&tickets, "chatwoot-full"),
        load::Pace::Closed,
        Duration::from_secs(options.seconds),
    )
    .await?;
    progress(&load_row("bridge chatwoot accept, full", &full));
    let delivery = store_delivery(
        &bridge,
        CHATWOOT_TENANT,
        full.delivery_ids.len(),
        Duration::from_secs(options.drain_cap_seconds),
    )
    .await?;
    progress(&delivery.row("chatwoot end to end, full", "accept -> delivered (store, ms)"));
    Ok(ChatwootRun {
        full,
        delivery,
        messages: chatwoot.all_messages().len(),
        complaints: complaints(&bridge),
    })
}

fn ratio(value: f64, base: f64) -> String {
    if base > 0.0 {
        format!("{:.3}", value / base)
    } else {
        "-".into()
    }
}

fn print_complaints(what: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    println!(
        "{what}: {} warning/error line(s) in the bridge's log, first ones:",
        lines.len()
    );
    for line in lines.iter().take(5) {
        println!("    {line}");
    }
}

async fn run(options: &Options) -> anyhow::Result<()> {
    if options.seconds == 0 || options.connections == 0 || options.tickets == 0 {
        bail!("--seconds, --connections and --tickets must be above 0");
    }
    let duration = Duration::from_secs(options.seconds);
    println!("accept-bench");
    println!("  bridge: {}", adapters::bridge_binary().display());
    println!(
        "  {} keep-alive connections, {} s per phase, events on {} tickets; the load generator, \
         the mocks and the bridge share this machine's {} CPU(s): compare the ratios",
        options.connections,
        options.seconds,
        options.tickets,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if cfg!(debug_assertions) {
        println!(
            "  note: this is a dev-profile build of the bench: hyper's generic code instantiated here \
             (raw server, load generator) is unoptimised, so raw hyper's figures are low and the \
             ratios high; build it with --release to compare"
        );
    }
    println!(
        "  {:<34} {:>9} {:>9} {:>9} {:>9}",
        "phase", "per s", "p50 ms", "p99 ms", "p999 ms"
    );

    let raw_addr = start_raw_hyper().await?;
    let raw_target = || load::Target {
        addr: raw_addr,
        path: "/3dolphins/incoming".into(),
        authorization: None,
        read_delivery_ids: false,
    };
    let tickets = fresh_tickets(options.tickets);
    let raw_full = load::run(
        raw_target(),
        options.connections,
        load::Bodies::new(&tickets, "raw-full"),
        load::Pace::Closed,
        duration,
    )
    .await?;
    progress(&load_row("raw hyper, full", &raw_full));
    let raw_half_rate = raw_full.accepted_per_second() / 2.0;
    let raw_half = load::run(
        raw_target(),
        options.connections,
        load::Bodies::new(&tickets, "raw-half"),
        load::Pace::Open {
            per_second: raw_half_rate,
        },
        duration,
    )
    .await?;
    progress(&load_row(&format!("raw hyper, half {raw_half_rate:.0}/s"), &raw_half));

    let echo = echo_run(options).await?;
    let traced = if options.skip_traces {
        None
    } else {
        Some(traces_run(options, raw_addr).await?)
    };
    let chatwoot = if options.skip_chatwoot {
        None
    } else {
        Some(chatwoot_run(options).await?)
    };

    let raw_rate = raw_full.accepted_per_second();
    println!();
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>9}   notes",
        "phase", "per s", "p50 ms", "p99 ms", "p999 ms"
    );
    println!("{}", load_row("raw hyper, full (closed loop)", &raw_full));
    println!(
        "{}",
        load_row(&format!("raw hyper, half {raw_half_rate:.0}/s (open)"), &raw_half)
    );
    println!("{}", load_row("echo accept, full (closed loop)", &echo.full));
    println!(
        "{}",
        load_row(&format!("echo accept, half {:.0}/s (open)", echo.half_rate), &echo.half)
    );
    if let Some((traced, _)) = &traced {
        println!("{}", load_row("echo accept, traces on (closed loop)", traced));
    }
    println!("{}", echo.full_delivery.row("echo end to end, full", "send -> vendor"));
    println!("{}", echo.half_delivery.row("echo end to end, half", "send -> vendor"));
    if let Some(chatwoot) = &chatwoot {
        println!("{}", load_row("chatwoot accept, full (closed loop)", &chatwoot.full));
        println!(
            "{}",
            chatwoot
                .delivery
                .row("chatwoot end to end, full", "accept -> delivered (store, ms)")
        );
    }
    println!();
    println!("ratios to raw hyper's full-load rate ({raw_rate:.0}/s):");
    println!(
        "  echo durable accept {}, echo end to end {}",
        ratio(echo.full.accepted_per_second(), raw_rate),
        ratio(echo.full_delivery.per_second(), raw_rate)
    );
    if let Some(chatwoot) = &chatwoot {
        println!(
            "  chatwoot durable accept {}, chatwoot end to end {}",
            ratio(chatwoot.full.accepted_per_second(), raw_rate),
            ratio(chatwoot.delivery.per_second(), raw_rate)
        );
    }
    if let Some((traced, _)) = &traced {
        println!(
            "  echo durable accept with traces on / off {}",
            ratio(traced.accepted_per_second(), echo.full.accepted_per_second())
        );
    }
    let echo_accepted = echo.full.delivery_ids.len() + echo.half.delivery_ids.len();
    if echo.vendor_requests != echo_accepted as u64 {
        println!(
            "echo: the vendor received {} requests for {echo_accepted} accepted events",
            echo.vendor_requests
        );
    }
    print_complaints("echo", &echo.complaints);
    if let Some((_, complaints)) = &traced {
        print_complaints("echo, traces on", complaints);
    }
    if let Some(chatwoot) = &chatwoot {
        if chatwoot.messages != chatwoot.delivery.accepted {
            println!(
                "chatwoot: the mock Chatwoot holds {} messages for {} accepted events",
                chatwoot.messages, chatwoot.delivery.accepted
            );
        }
        print_complaints("chatwoot", &chatwoot.complaints);
    }
    println!();
    if raw_rate > 0.0 {
        print_target(
            "durable accept / raw hyper",
            echo.full.accepted_per_second() / raw_rate,
            "x",
            0.25,
            Better::Higher,
        );
    }
    if let Some((traced, _)) = &traced
        && echo.full.accepted_per_second() > 0.0
    {
        print_target(
            "durable accept, traces on / off",
            traced.accepted_per_second() / echo.full.accepted_per_second(),
            "x",
            0.8,
            Better::Higher,
        );
    }
    if let Some(p99) = echo.half.percentiles().p99_ms() {
        print_target("durable accept p99 at half load", p99, "ms", 25.0, Better::Lower);
    }
    if raw_rate > 0.0 {
        print_target(
            "end-to-end delivery / raw hyper",
            echo.full_delivery.per_second() / raw_rate,
            "x",
            0.1,
            Better::Higher,
        );
        if let Some(chatwoot) = &chatwoot {
            print_target(
                "end-to-end delivery (chatwoot) / raw hyper",
                chatwoot.delivery.per_second() / raw_rate,
                "x",
                0.1,
                Better::Higher,
            );
        }
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let options = Options::parse();
    match run(&options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("accept-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}
