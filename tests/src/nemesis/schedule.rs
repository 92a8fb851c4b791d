//! The nemesis's schedule: which fault, on which replica, when and for how long, drawn from a
//! seed. One fault at a time, each healed before the next, with quiet gaps between; the same
//! seed (and the same fault kinds available) gives the same schedule.

use std::fmt;
use std::time::Duration;

use crate::crash_support::Rng;
use crate::nemesis::checker::FaultKind;

/// Quiet time at the start of the run, before the first fault.
const LEAD_IN: Duration = Duration::from_secs(3);
/// Quiet time between two faults, at least and at most (ms).
const GAP_MS: (u64, u64) = (1_000, 3_000);
/// How long a pause, a partition, or a kill's down time lasts, at least and at most (ms).
const HOLD_MS: (u64, u64) = (500, 6_000);
/// The added latency of a slowed link, per chunk of bytes, at least and at most (ms).
const LATENCY_MS: (u64, u64) = (50, 400);
/// The size of a clock offset, at least and at most (ms; either sign).
const OFFSET_MS: (u64, u64) = (3_000, 30_000);
/// How long a clock offset lasts, at least and at most (ms).
const OFFSET_HOLD_MS: (u64, u64) = (5_000, 15_000);

/// One fault of the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFault {
    /// When it begins, from the start of the faults (later if the previous fault ran late).
    pub at: Duration,
    pub kind: FaultKind,
    /// The replica it hits (unused by a database restart).
    pub replica: usize,
    /// How long until it is healed (a kill: how long the replica stays down).
    pub hold: Duration,
    /// A slowed link's latency per chunk.
    pub latency: Duration,
    /// A clock offset, in milliseconds.
    pub offset_ms: i64,
}

impl fmt::Display for PlannedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>7.2}s {}", self.at.as_secs_f64(), self.kind.name())?;
        match self.kind {
            FaultKind::DbRestartFast | FaultKind::DbRestartImmediate => Ok(()),
            FaultKind::PartitionSlow => write!(
                f,
                " r{} for {} ms, +{} ms per chunk",
                self.replica,
                self.hold.as_millis(),
                self.latency.as_millis()
            ),
            FaultKind::ClockOffset => write!(
                f,
                " r{} by {:+} ms for {} ms",
                self.replica,
                self.offset_ms,
                self.hold.as_millis()
            ),
            _ => write!(f, " r{} for {} ms", self.replica, self.hold.as_millis()),
        }
    }
}

/// Draws a schedule of faults lasting at most `period` over `replicas` replicas, choosing among
/// `kinds`.
pub fn plan(seed: u64, period: Duration, replicas: usize, kinds: &[FaultKind]) -> Vec<PlannedFault> {
    assert!(
        !kinds.is_empty() && replicas > 0,
        "a schedule needs fault kinds and replicas"
    );
    let mut rng = Rng(seed);
    let mut schedule = Vec::new();
    let mut at = LEAD_IN;
    loop {
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        let replica = rng.below(replicas as u64) as usize;
        let mut fault = PlannedFault {
            at,
            kind,
            replica,
            hold: between(&mut rng, HOLD_MS),
            latency: Duration::ZERO,
            offset_ms: 0,
        };
        match kind {
            FaultKind::PartitionSlow => fault.latency = between(&mut rng, LATENCY_MS),
            FaultKind::ClockOffset => {
                let size = between(&mut rng, OFFSET_MS).as_millis() as i64;
                fault.offset_ms = if rng.below(2) == 0 { size } else { -size };
                fault.hold = between(&mut rng, OFFSET_HOLD_MS);
            }
            FaultKind::DbRestartFast | FaultKind::DbRestartImmediate => fault.hold = Duration::ZERO,
            _ => {}
        }
        let ends = at + fault.hold;
        if ends > period {
            return schedule;
        }
        schedule.push(fault);
        at = ends + between(&mut rng, GAP_MS);
    }
}

/// A duration drawn uniformly from `low..=high` milliseconds.
fn between(rng: &mut Rng, (low, high): (u64, u64)) -> Duration {
    Duration::from_millis(low + rng.below(high - low + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(120);

    #[test]
    fn one_seed_gives_one_schedule() {
        let first = plan(7, PERIOD, 3, &FaultKind::ALL);
        assert_eq!(first, plan(7, PERIOD, 3, &FaultKind::ALL));
        assert_ne!(first, plan(8, PERIOD, 3, &FaultKind::ALL));
        assert!(first.len() >= 5, "{first:#?}");
    }

    #[test]
    fn faults_follow_one_another_within_the_period_and_the_kinds_given() {
        let kinds = [FaultKind::Pause, FaultKind::Kill];
        let schedule = plan(42, PERIOD, 3, &kinds);
        let mut free_from = Duration::ZERO;
        for fault in &schedule {
            assert!(fault.at >= free_from, "{fault} overlaps the fault before it");
            assert!(fault.at + fault.hold <= PERIOD, "{fault} ends after the period");
            assert!(kinds.contains(&fault.kind) && fault.replica < 3, "{fault}");
            free_from = fault.at + fault.hold;
        }
    }

    #[test]
    fn many_seeds_draw_every_kind() {
        let mut seen = std::collections::HashSet::new();
        for seed in 0..20 {
            seen.extend(plan(seed, PERIOD, 3, &FaultKind::ALL).into_iter().map(|f| f.kind));
        }
        assert_eq!(seen.len(), FaultKind::ALL.len());
    }
}
