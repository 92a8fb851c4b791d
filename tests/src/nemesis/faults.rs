//! Injecting the schedule's faults into the cluster and the database, one at a time, each
//! healed before the next; every fault is logged as a [`FaultWindow`] for the checker.

use std::time::{Duration, Instant};

use crate::nemesis::checker::{FaultKind, FaultWindow};
use crate::nemesis::cluster::Cluster;
use crate::nemesis::database::Database;
use crate::nemesis::proxy::LinkMode;
use crate::nemesis::schedule::PlannedFault;

/// Faults that cannot be injected in this run, with why (printed with the table).
pub fn not_injectable(database: &Database) -> Vec<(String, String)> {
    let mut out = vec![(
        "wal-disk-full".to_string(),
        "filling the write-ahead log's disk needs a size-limited file system under pg_wal (a small tmpfs or loop \
         mount), which needs root and would hold up every other test on the machine"
            .to_string(),
    )];
    if let Some(why) = database.cannot_restart() {
        out.push(("db-restart-fast, db-restart-immediate".to_string(), why.to_string()));
    }
    out
}

/// The fault kinds this run can inject.
pub fn injectable_kinds(database: &Database) -> Vec<FaultKind> {
    FaultKind::ALL
        .into_iter()
        .filter(|kind| {
            database.cannot_restart().is_none()
                || !matches!(kind, FaultKind::DbRestartFast | FaultKind::DbRestartImmediate)
        })
        .collect()
}

/// Injects faults and keeps their log.
pub struct Nemesis<'a> {
    cluster: &'a mut Cluster,
    database: &'a Database,
    /// When the run began: every time in the log counts from it.
    origin: Instant,
    /// When the faults began: the schedule's times count from it.
    faults_began: Instant,
    pub log: Vec<FaultWindow>,
}

impl<'a> Nemesis<'a> {
    pub fn new(cluster: &'a mut Cluster, database: &'a Database, origin: Instant) -> Nemesis<'a> {
        Nemesis {
            cluster,
            database,
            origin,
            faults_began: Instant::now(),
            log: Vec::new(),
        }
    }

    /// Runs the whole schedule, printing each fault as it goes.
    pub async fn run(&mut self, schedule: &[PlannedFault]) {
        for fault in schedule {
            let due = self.faults_began + fault.at;
            tokio::time::sleep_until(due.into()).await;
            self.inject(fault).await;
            if let Some(last) = self.log.last() {
                println!(
                    "nemesis: {fault}: {} at {:.2}s-{:.2}s ({})",
                    last.kind.name(),
                    last.start.as_secs_f64(),
                    last.end.as_secs_f64(),
                    last.detail
                );
            }
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn record(&mut self, kind: FaultKind, replica: Option<usize>, start: Duration, detail: String) {
        let end = self.now();
        self.log.push(FaultWindow {
            kind,
            replica,
            start,
            end,
            detail,
        });
    }

    /// Injects one fault, holds it, heals it.
    pub async fn inject(&mut self, fault: &PlannedFault) {
        let r = fault.replica;
        let start = self.now();
        match fault.kind {
            FaultKind::Pause => {
                self.cluster.pause(r, true);
                tokio::time::sleep(fault.hold).await;
                self.cluster.pause(r, false);
                self.record(FaultKind::Pause, Some(r), start, "SIGSTOP, SIGCONT".into());
            }
            FaultKind::Kill => {
                self.kill_and_restart(r, fault.hold, 0, "SIGKILL").await;
            }
            FaultKind::PartitionDrop | FaultKind::PartitionBlackhole | FaultKind::PartitionSlow => {
                let (mode, detail) = match fault.kind {
                    FaultKind::PartitionDrop => (LinkMode::Drop, "connections closed".to_string()),
                    FaultKind::PartitionBlackhole => (LinkMode::Blackhole, "bytes held".to_string()),
                    _ => (
                        LinkMode::Slow(fault.latency),
                        format!("+{} ms per chunk", fault.latency.as_millis()),
                    ),
                };
                self.cluster.set_link(r, mode);
                tokio::time::sleep(fault.hold).await;
                self.cluster.set_link(r, LinkMode::Pass);
                self.record(fault.kind, Some(r), start, detail);
            }
            FaultKind::DbRestartFast | FaultKind::DbRestartImmediate => {
                let immediate = fault.kind == FaultKind::DbRestartImmediate;
                let detail = match self.database.restart(immediate).await {
                    Ok(()) => "pg_ctl restart".to_string(),
                    Err(error) => format!("FAILED: {error}"),
                };
                self.record(fault.kind, None, start, detail);
            }
            FaultKind::ClockOffset => {
                // The window begins with the kill: the process that starts next is the shifted one.
                let shift = Duration::ZERO;
                self.kill_and_restart(r, shift, fault.offset_ms, "SIGKILL to set a clock offset")
                    .await;
                tokio::time::sleep(fault.hold).await;
                self.kill_and_restart(r, shift, 0, "SIGKILL to clear the clock offset")
                    .await;
                self.log.push(FaultWindow {
                    kind: FaultKind::ClockOffset,
                    replica: Some(r),
                    start,
                    end: self.now(),
                    detail: format!("{:+} ms", fault.offset_ms),
                });
            }
        }
    }

    /// SIGKILLs replica `r`, waits `down`, starts it again with clock offset `offset_ms`; logs
    /// the kill at the instant of the kill (the process that starts again cuts nothing).
    async fn kill_and_restart(&mut self, r: usize, down: Duration, offset_ms: i64, how: &str) {
        let killed_at = self.now();
        self.cluster.kill(r);
        self.log.push(FaultWindow {
            kind: FaultKind::Kill,
            replica: Some(r),
            start: killed_at,
            end: killed_at,
            detail: format!("{how}, down {} ms", down.as_millis()),
        });
        tokio::time::sleep(down).await;
        self.cluster.restart(r, offset_ms).await;
    }
}
