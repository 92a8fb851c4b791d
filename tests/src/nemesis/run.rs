//! One nemesis run, end to end: the database and a link to it per replica, the recording vendor
//! and 3Dolphins (a listener per replica), the replicas, the clients; then the schedule of
//! faults, the heal, the drain, and the checker over what arrived.

use std::time::{Duration, Instant};

use crate::adapters;
use crate::crash_support::{BridgeFiles, unique_owner};
use crate::nemesis::checker::{Arrival, EventId, History, Report};
use crate::nemesis::cluster::Cluster;
use crate::nemesis::database::Database;
use crate::nemesis::faults::{Nemesis, injectable_kinds, not_injectable};
use crate::nemesis::proxy::Proxy;
use crate::nemesis::recorder::{Received, Recorder, Side};
use crate::nemesis::schedule::plan;
use crate::nemesis::workload::{Workload, WorkloadConfig};
use crate::replica_support::{TempSchema, settled_within};
use crate::{BridgeConfig, Tenant};

/// The tenant every replica serves (webhooks at `/vendors/nemesis/...`).
const TENANT: &str = "nemesis";
/// The 3Dolphins API token of the replicas' configs (the recorder does not check it).
const API_TOKEN: &str = "nemesis-3dolphins-token";

/// What a run does.
#[derive(Debug, Clone)]
pub struct Settings {
    pub seed: u64,
    /// How long the faults go on.
    pub period: Duration,
    pub replicas: usize,
    pub tickets: usize,
    /// The pause between two events of a ticket, at most (ms).
    pub pace_ms: u64,
    /// `[delivery] lease_ms`.
    pub lease_ms: u64,
    /// `[delivery] workers` and `max_in_flight_per_tenant` of each replica.
    pub workers: usize,
    /// The vendor's answer takes this long (deliveries are in flight when a fault hits).
    pub vendor_delay: Duration,
    /// After the heal, how long the outbox may take to drain.
    pub drain_within: Duration,
}

impl Settings {
    /// The CI run: three replicas, `period` of faults.
    pub fn new(seed: u64, period: Duration) -> Settings {
        Settings {
            seed,
            period,
            replicas: 3,
            tickets: 12,
            pace_ms: 400,
            lease_ms: 2_000,
            workers: 4,
            vendor_delay: Duration::from_millis(20),
            drain_within: Duration::from_secs(180),
        }
    }
}

/// A run's result: the checker's report and what is printed beside it.
pub struct Outcome {
    pub report: Report,
    /// Whether the outbox drained in time after the heal.
    pub drained: bool,
    /// Lines describing the run (seed, settings, clients, outbox, faults not injected).
    pub notes: Vec<String>,
}

impl Outcome {
    /// The notes and the checker's table.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        for note in &self.notes {
            text.push_str(&format!("nemesis: {note}\n"));
        }
        text.push_str(&self.report.table(40));
        text
    }
}

/// Runs the nemesis with `settings`.
pub async fn run(settings: &Settings) -> Outcome {
    let database = Database::from_env();
    let kinds = injectable_kinds(&database);
    let schedule = plan(settings.seed, settings.period, settings.replicas, &kinds);
    let mut notes = vec![format!(
        "seed {:#x} ({} s of faults, {} replicas, {} tickets, lease {} ms); rerun with DOLPHIN_BRIDGE_NEMESIS_SEED={:#x}",
        settings.seed,
        settings.period.as_secs(),
        settings.replicas,
        settings.tickets,
        settings.lease_ms,
        settings.seed
    )];
    for (what, why) in not_injectable(&database) {
        println!("nemesis: not injected: {what}: {why}");
        notes.push(format!("not injected: {what}: {why}"));
    }
    println!("nemesis: schedule of {} fault(s):", schedule.len());
    for fault in &schedule {
        println!("nemesis:   {fault}");
    }

    let origin = Instant::now();
    let schema = TempSchema::create_on(&database.url).await;
    let vendor = Recorder::start(
        Side::Vendor {
            delay: settings.vendor_delay,
        },
        settings.replicas,
        origin,
    )
    .await;
    let three_dolphins = Recorder::start(Side::ThreeDolphins, settings.replicas, origin).await;
    let owner = unique_owner("nemesis");
    let incoming_token = format!("nemesis-token-{}", crate::events::fresh_ticket());
    let mut parts = Vec::with_capacity(settings.replicas);
    for r in 0..settings.replicas {
        let link = Proxy::start(database.addr).await;
        let vendor_url = format!("{}/echo/r{r}", vendor.base_url(r));
        let config = BridgeConfig::new(&three_dolphins.base_url(r))
            .api_token(API_TOKEN)
            .incoming_token(Some(&incoming_token))
            .retry_schedule_ms(&[
                100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000, 5_000, 5_000, 5_000,
            ])
            .store_url(&database.through(schema.url(), link.addr()))
            .lease_ms(settings.lease_ms)
            .tenant(
                Tenant::new(TENANT, &owner, adapters::echo())
                    .allow(&vendor.base_url(r))
                    .config("url", &vendor_url),
            );
        let workers = format!("workers = {}", settings.workers);
        let in_flight = format!("max_in_flight_per_tenant = {}", settings.workers);
        parts.push((BridgeFiles::write(&config, &[&workers, &in_flight]), link));
    }
    let mut cluster = Cluster::start(parts).await;
    let workload = Workload::start(
        WorkloadConfig {
            owner,
            tenant: TENANT.into(),
            incoming_token,
            tickets: settings.tickets,
            pace_ms: settings.pace_ms,
            send_timeout: Duration::from_secs(3),
            event_deadline: Duration::from_secs(90),
        },
        cluster.urls(),
        settings.seed,
    );

    let mut nemesis = Nemesis::new(&mut cluster, &database, origin);
    nemesis.run(&schedule).await;
    // Every fault is healed by now (each before the next); the heal below is for safety.
    let faults = std::mem::take(&mut nemesis.log);
    for done in cluster.heal().await {
        println!("nemesis: heal: {done}");
    }
    let counters = workload.counters.clone();
    let acknowledged = workload.stop().await;
    let load_ended = origin.elapsed();
    let coordinator = cluster.bridge(0).expect("every replica runs after the heal");
    let stats = settled_within(coordinator, settings.drain_within).await;
    let drained = stats.is_some();
    let stats = match stats {
        Some(stats) => stats,
        None => coordinator.outbox_stats().await,
    };
    notes.push(format!("clients: {}", counters.summary()));
    notes.push(format!(
        "load ended at {:.1} s; outbox after the drain (within {} s): {stats}{}",
        load_ended.as_secs_f64(),
        settings.drain_within.as_secs(),
        if drained { "" } else { " - NOT DRAINED" }
    ));

    let mut history = History {
        acknowledged,
        faults,
        ..History::default()
    };
    for received in vendor.received().into_iter().chain(three_dolphins.received()) {
        match arrival(&received) {
            Some(arrival) => history.arrivals.push(arrival),
            None => history.unrecognised += 1,
        }
    }
    // Each side's log is in arrival order; merged by time, each ticket's arrivals stay in order.
    history.arrivals.sort_by_key(|a| a.at);
    let report = Report::check(&history);
    drop(cluster);
    drop(schema);
    Outcome { report, drained, notes }
}

fn arrival(received: &Received) -> Option<Arrival> {
    Some(Arrival {
        event: EventId::parse(&received.message())?,
        replica: received.replica,
        at: received.at,
    })
}
