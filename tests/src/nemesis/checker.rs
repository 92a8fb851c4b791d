//! The nemesis's checker: pure logic over a run's history (what the clients had acknowledged,
//! what the vendor and 3Dolphins received, which faults were injected when), judged against the
//! delivery promise: nothing acknowledged is lost; each ticket's events arrive in order; a
//! duplicate only when an attempt was cut off.
//!
//! - **Lost**: an acknowledged event that never arrived.
//! - **Order violation**: an arrival (first or repeated) of a ticket's event after a later event
//!   of the same ticket and direction had arrived: `S2` before `S1`, or `S1, S2, S1`.
//! - **Duplicate**: an event that arrived more than once. Each copy after the first must be
//!   explained by a fault that cut an attempt off:
//!   - a kill of the replica that sent the earlier copy, at or after it (within [`SLACK`]: what
//!     a process wrote before it died still reaches the listener a little later) and before
//!     the later copy (the process started again is a new one: a kill explains nothing it sends);
//!   - a pause of, or a dropped or blackholed link to the database from, the replica that sent
//!     either copy (the earlier one could not record its outcome; the later one may have held
//!     a stale claim), lasting into the span from the earlier copy (less [`SLACK`]) to the later;
//!   - a database restart (any replica) lasting into that span.
//!
//!   A slowed link or a clock offset cuts nothing: a duplicate they cause is unexplained.
//!
//! The verdict passes with no loss, no order violation and every duplicate explained.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::time::Duration;

/// How long after a fault a copy may arrive and still be one the fault cut off: what a process
/// wrote before it was stopped still reaches the listener a little later.
pub const SLACK: Duration = Duration::from_millis(250);

/// Which way an event goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// From 3Dolphins to the vendor (posted to the Incoming endpoint).
    Incoming,
    /// From the vendor to 3Dolphins (a webhook mapped to an Outgoing event).
    Outgoing,
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stream::Incoming => "in",
            Stream::Outgoing => "out",
        })
    }
}

/// One event of the workload: its direction, its ticket (by index) and its place in the
/// ticket's events of that direction (from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId {
    pub stream: Stream,
    pub ticket: usize,
    pub seq: usize,
}

impl EventId {
    /// The text the event carries (`in t3 s5`): the workload writes it, the checker reads it.
    pub fn text(&self) -> String {
        format!("{} t{} s{}", self.stream, self.ticket, self.seq)
    }

    /// Reads back an [`EventId::text`].
    pub fn parse(text: &str) -> Option<EventId> {
        let mut parts = text.split(' ');
        let stream = match parts.next()? {
            "in" => Stream::Incoming,
            "out" => Stream::Outgoing,
            _ => return None,
        };
        let ticket = parts.next()?.strip_prefix('t')?.parse().ok()?;
        let seq = parts.next()?.strip_prefix('s')?.parse().ok()?;
        parts.next().is_none().then_some(EventId { stream, ticket, seq })
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// One arrival of an event at the vendor or 3Dolphins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub event: EventId,
    /// The replica whose listener received it.
    pub replica: usize,
    /// When (since the run began).
    pub at: Duration,
}

/// The kinds of fault the nemesis injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// SIGKILL, then a new process on the same files.
    Kill,
    /// The replica's link to the database closes every connection.
    PartitionDrop,
    /// The replica's link to the database holds every byte.
    PartitionBlackhole,
    /// The replica's link to the database adds latency.
    PartitionSlow,
    /// `pg_ctl restart -m fast`.
    DbRestartFast,
    /// `pg_ctl restart -m immediate` (a crash and recovery).
    DbRestartImmediate,
    /// The replica runs with its clock shifted (`DOLPHIN_BRIDGE_CLOCK_OFFSET_MS`).
    ClockOffset,
}

impl FaultKind {
    /// Every kind, in the table's order.
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Pause,
        FaultKind::Kill,
        FaultKind::PartitionDrop,
        FaultKind::PartitionBlackhole,
        FaultKind::PartitionSlow,
        FaultKind::DbRestartFast,
        FaultKind::DbRestartImmediate,
        FaultKind::ClockOffset,
    ];

    /// The name printed in the table.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Pause => "pause",
            FaultKind::Kill => "kill",
            FaultKind::PartitionDrop => "partition-drop",
            FaultKind::PartitionBlackhole => "partition-blackhole",
            FaultKind::PartitionSlow => "partition-slow",
            FaultKind::DbRestartFast => "db-restart-fast",
            FaultKind::DbRestartImmediate => "db-restart-immediate",
            FaultKind::ClockOffset => "clock-offset",
        }
    }

    /// Whether the fault can cut an attempt off before its outcome is recorded.
    pub fn cuts_attempts(self) -> bool {
        !matches!(self, FaultKind::PartitionSlow | FaultKind::ClockOffset)
    }
}

/// One injected fault: its kind, the replica it hit (`None`: all of them, as a database
/// restart does), and when it began and was healed (since the run began).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultWindow {
    pub kind: FaultKind,
    pub replica: Option<usize>,
    pub start: Duration,
    pub end: Duration,
    /// What exactly was done (`SIGKILL`, `+20000 ms`, `300 ms per chunk`, ...).
    pub detail: String,
}

impl FaultWindow {
    fn hits(&self, replica: usize) -> bool {
        self.replica.is_none_or(|r| r == replica)
    }

    fn describe(&self) -> String {
        let whom = self
            .replica
            .map_or_else(|| "all replicas".to_string(), |r| format!("r{r}"));
        format!(
            "{} of {whom} ({}) {}-{}",
            self.kind.name(),
            self.detail,
            seconds(self.start),
            seconds(self.end)
        )
    }
}

/// Everything a run produced.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Every acknowledged event.
    pub acknowledged: Vec<EventId>,
    /// Every arrival at the vendor and at 3Dolphins, each side in arrival order (the two sides
    /// may be interleaved).
    pub arrivals: Vec<Arrival>,
    /// Requests whose body named no workload event (cut short, or foreign).
    pub unrecognised: usize,
    pub faults: Vec<FaultWindow>,
}

/// One arrival that broke a ticket's order.
#[derive(Debug, Clone)]
pub struct OrderViolation {
    pub arrival: Arrival,
    /// The later event of the ticket that had already arrived.
    pub after: EventId,
    /// Whether this arrival was a repeat of an event that had arrived before.
    pub repeat: bool,
}

/// Why no fault explains a re-send, and the kind of the nearest fault of either sender.
#[derive(Debug, Clone)]
pub struct Unexplained {
    pub why: String,
    pub nearest: Option<FaultKind>,
}

/// An event that arrived more than once, with each re-send's explanation.
#[derive(Debug, Clone)]
pub struct Duplicate {
    pub event: EventId,
    pub copies: Vec<Arrival>,
    /// For each copy after the first: the fault that cut the earlier attempt off, or why none
    /// does, with the kind of the nearest fault (for the reader).
    pub explanations: Vec<Result<String, Unexplained>>,
}

impl Duplicate {
    pub fn explained(&self) -> bool {
        self.explanations.iter().all(Result::is_ok)
    }
}

/// The checker's findings.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub acknowledged: BTreeMap<Stream, usize>,
    /// Distinct acknowledged events that arrived.
    pub delivered: BTreeMap<Stream, usize>,
    pub lost: Vec<EventId>,
    pub order_violations: Vec<OrderViolation>,
    pub duplicates: Vec<Duplicate>,
    /// Arrivals of events never acknowledged (sent, answered with an error or not at all).
    pub unacknowledged_arrivals: usize,
    pub unrecognised: usize,
    pub faults_by_kind: BTreeMap<FaultKind, usize>,
}

impl Report {
    /// Checks `history`.
    pub fn check(history: &History) -> Report {
        let mut report = Report {
            unrecognised: history.unrecognised,
            ..Report::default()
        };
        for fault in &history.faults {
            *report.faults_by_kind.entry(fault.kind).or_default() += 1;
        }
        let acknowledged: HashSet<EventId> = history.acknowledged.iter().copied().collect();
        for event in &acknowledged {
            *report.acknowledged.entry(event.stream).or_default() += 1;
        }
        let mut copies: HashMap<EventId, Vec<Arrival>> = HashMap::new();
        let mut latest: HashMap<(Stream, usize), EventId> = HashMap::new();
        for arrival in &history.arrivals {
            let seen = copies.entry(arrival.event).or_default();
            let key = (arrival.event.stream, arrival.event.ticket);
            match latest.get(&key) {
                Some(&after) if after.seq > arrival.event.seq => report.order_violations.push(OrderViolation {
                    arrival: arrival.clone(),
                    after,
                    repeat: !seen.is_empty(),
                }),
                _ => {
                    latest.insert(key, arrival.event);
                }
            }
            seen.push(arrival.clone());
        }
        for (event, arrived) in &copies {
            if acknowledged.contains(event) {
                *report.delivered.entry(event.stream).or_default() += 1;
            } else {
                report.unacknowledged_arrivals += arrived.len();
            }
            if arrived.len() > 1 {
                let explanations = arrived
                    .windows(2)
                    .map(|pair| explain(&pair[0], &pair[1], &history.faults))
                    .collect();
                report.duplicates.push(Duplicate {
                    event: *event,
                    copies: arrived.clone(),
                    explanations,
                });
            }
        }
        report.duplicates.sort_by_key(|d| d.event);
        report.lost = acknowledged
            .iter()
            .filter(|e| !copies.contains_key(e))
            .copied()
            .collect();
        report.lost.sort();
        report
    }

    /// Duplicates with at least one re-send no fault explains.
    pub fn unexplained(&self) -> usize {
        self.duplicates.iter().filter(|d| !d.explained()).count()
    }

    /// No loss, no order violation, every duplicate explained.
    pub fn passed(&self) -> bool {
        self.lost.is_empty() && self.order_violations.is_empty() && self.unexplained() == 0
    }

    /// The table printed at the end of a run (at most `listed` lines per list).
    pub fn table(&self, listed: usize) -> String {
        let mut out = String::new();
        let by = |map: &BTreeMap<Stream, usize>, stream| map.get(&stream).copied().unwrap_or(0);
        let row = |out: &mut String, name: &str, incoming: usize, outgoing: usize| {
            let _ = writeln!(
                out,
                "  {name:<34}{incoming:>10}{outgoing:>10}{:>10}",
                incoming + outgoing
            );
        };
        let count = |stream| (by(&self.acknowledged, stream), by(&self.delivered, stream));
        let split = |items: &mut dyn Iterator<Item = Stream>| {
            let (mut i, mut o) = (0, 0);
            for stream in items {
                match stream {
                    Stream::Incoming => i += 1,
                    Stream::Outgoing => o += 1,
                }
            }
            (i, o)
        };
        let _ = writeln!(out, "  {:<34}{:>10}{:>10}{:>10}", "", "incoming", "outgoing", "total");
        let (ack_in, delivered_in) = count(Stream::Incoming);
        let (ack_out, delivered_out) = count(Stream::Outgoing);
        row(&mut out, "events acknowledged", ack_in, ack_out);
        row(
            &mut out,
            "delivered (distinct, acknowledged)",
            delivered_in,
            delivered_out,
        );
        let (lost_in, lost_out) = split(&mut self.lost.iter().map(|e| e.stream));
        row(&mut out, "lost", lost_in, lost_out);
        let (order_in, order_out) = split(&mut self.order_violations.iter().map(|v| v.arrival.event.stream));
        row(&mut out, "order violations", order_in, order_out);
        let (dup_in, dup_out) = split(&mut self.duplicates.iter().map(|d| d.event.stream));
        row(&mut out, "duplicates", dup_in, dup_out);
        let (bad_in, bad_out) = split(
            &mut self
                .duplicates
                .iter()
                .filter(|d| !d.explained())
                .map(|d| d.event.stream),
        );
        row(&mut out, "  of which unexplained", bad_in, bad_out);
        let _ = writeln!(
            out,
            "  arrivals of unacknowledged events: {}; unrecognised requests: {}",
            self.unacknowledged_arrivals, self.unrecognised
        );
        let faults: Vec<String> = FaultKind::ALL
            .iter()
            .map(|kind| {
                format!(
                    "{} {}",
                    kind.name(),
                    self.faults_by_kind.get(kind).copied().unwrap_or(0)
                )
            })
            .collect();
        let _ = writeln!(out, "  faults injected: {}", faults.join(", "));
        let mut nearest: BTreeMap<&str, usize> = BTreeMap::new();
        for duplicate in &self.duplicates {
            if let Some(Err(unexplained)) = duplicate.explanations.iter().find(|e| e.is_err()) {
                *nearest
                    .entry(unexplained.nearest.map_or("none", FaultKind::name))
                    .or_default() += 1;
            }
        }
        if !nearest.is_empty() {
            let listed: Vec<String> = nearest.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
            let _ = writeln!(out, "  unexplained duplicates by nearest fault: {}", listed.join(", "));
        }
        for duplicate in self.duplicates.iter().take(listed) {
            let copies: Vec<String> = duplicate
                .copies
                .iter()
                .map(|c| format!("r{}@{}", c.replica, seconds(c.at)))
                .collect();
            let _ = writeln!(out, "  duplicate {}: {}", duplicate.event, copies.join(", "));
            for explanation in &duplicate.explanations {
                let _ = match explanation {
                    Ok(why) => writeln!(out, "      explained: {why}"),
                    Err(unexplained) => writeln!(out, "      UNEXPLAINED: {}", unexplained.why),
                };
            }
        }
        for violation in self.order_violations.iter().take(listed) {
            let _ = writeln!(
                out,
                "  order violation: {} {}arrived at r{}@{} after {} had",
                violation.arrival.event,
                if violation.repeat { "(a repeat) " } else { "" },
                violation.arrival.replica,
                seconds(violation.arrival.at),
                violation.after
            );
        }
        let lost: Vec<String> = self.lost.iter().take(listed).map(EventId::text).collect();
        if !lost.is_empty() {
            let _ = writeln!(out, "  lost: {}", lost.join(", "));
        }
        let _ = writeln!(
            out,
            "  verdict: {}",
            if self.passed() {
                "PASS"
            } else {
                "FAIL (lost, out of order or unexplained duplicates)"
            }
        );
        out
    }
}

/// Why `later` re-sent what `earlier` had delivered: a fault that cuts attempts, hitting either
/// sender, begun by the later copy and not healed before the earlier one (less [`SLACK`]).
fn explain(earlier: &Arrival, later: &Arrival, faults: &[FaultWindow]) -> Result<String, Unexplained> {
    let overlaps = |f: &FaultWindow| f.start <= later.at && f.end + SLACK >= earlier.at;
    let involved = |f: &FaultWindow| f.hits(earlier.replica) || f.hits(later.replica);
    let cuts = |f: &FaultWindow| match f.kind {
        FaultKind::Kill => f.hits(earlier.replica) && overlaps(f),
        kind => kind.cuts_attempts() && involved(f) && overlaps(f),
    };
    if let Some(fault) = faults.iter().find(|f| cuts(f)) {
        return Ok(fault.describe());
    }
    let gap = |f: &FaultWindow| {
        if overlaps(f) {
            Duration::ZERO
        } else if f.start > later.at {
            f.start - later.at
        } else {
            earlier.at.saturating_sub(f.end + SLACK)
        }
    };
    let nearest = faults.iter().filter(|f| involved(f)).min_by_key(|f| gap(f));
    Err(Unexplained {
        why: format!(
            "no fault cutting attempts of r{} or r{} between {} and {}; nearest fault: {}",
            earlier.replica,
            later.replica,
            seconds(earlier.at),
            seconds(later.at),
            nearest.map_or_else(|| "none".to_string(), FaultWindow::describe)
        ),
        nearest: nearest.map(|f| f.kind),
    })
}

fn seconds(at: Duration) -> String {
    format!("{:.2}s", at.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ticket: usize, seq: usize) -> EventId {
        EventId {
            stream: Stream::Incoming,
            ticket,
            seq,
        }
    }

    fn at(event: EventId, replica: usize, ms: u64) -> Arrival {
        Arrival {
            event,
            replica,
            at: Duration::from_millis(ms),
        }
    }

    fn fault(kind: FaultKind, replica: Option<usize>, start_ms: u64, end_ms: u64) -> FaultWindow {
        FaultWindow {
            kind,
            replica,
            start: Duration::from_millis(start_ms),
            end: Duration::from_millis(end_ms),
            detail: String::new(),
        }
    }

    fn history(acknowledged: &[EventId], arrivals: Vec<Arrival>, faults: Vec<FaultWindow>) -> History {
        History {
            acknowledged: acknowledged.to_vec(),
            arrivals,
            unrecognised: 0,
            faults,
        }
    }

    #[test]
    fn texts_round_trip() {
        let id = EventId {
            stream: Stream::Outgoing,
            ticket: 12,
            seq: 3,
        };
        assert_eq!(id.text(), "out t12 s3");
        assert_eq!(EventId::parse(&id.text()), Some(id));
        assert_eq!(EventId::parse("Halo"), None);
        assert_eq!(EventId::parse("in t1 s2 x"), None);
    }

    #[test]
    fn a_clean_history_passes() {
        let h = history(
            &[ev(0, 0), ev(0, 1), ev(1, 0)],
            vec![at(ev(0, 0), 0, 10), at(ev(1, 0), 1, 11), at(ev(0, 1), 2, 20)],
            vec![],
        );
        let report = Report::check(&h);
        assert!(report.passed(), "{}", report.table(10));
        assert_eq!(report.delivered[&Stream::Incoming], 3);
    }

    #[test]
    fn flags_an_acknowledged_event_that_never_arrived() {
        let h = history(&[ev(0, 0), ev(0, 1)], vec![at(ev(0, 0), 0, 10)], vec![]);
        let report = Report::check(&h);
        assert_eq!(report.lost, vec![ev(0, 1)]);
        assert!(!report.passed());
        assert!(report.table(10).contains("lost: in t0 s1"));
    }

    #[test]
    fn an_unacknowledged_event_that_never_arrived_is_not_lost() {
        let h = history(&[ev(0, 0)], vec![at(ev(0, 0), 0, 10), at(ev(0, 1), 0, 12)], vec![]);
        let report = Report::check(&h);
        assert!(report.passed());
        assert_eq!(report.unacknowledged_arrivals, 1);
    }

    #[test]
    fn flags_first_arrivals_out_of_order() {
        let h = history(
            &[ev(0, 0), ev(0, 1)],
            vec![at(ev(0, 1), 0, 10), at(ev(0, 0), 1, 11)],
            vec![],
        );
        let report = Report::check(&h);
        assert_eq!(report.order_violations.len(), 1);
        assert!(!report.order_violations[0].repeat);
        assert!(!report.passed());
    }

    #[test]
    fn a_stale_repeat_after_a_later_event_is_an_order_violation_even_when_explained() {
        // S0, S1, S0: r0 was paused holding S0 while r1 delivered S0 and S1.
        let h = history(
            &[ev(0, 0), ev(0, 1)],
            vec![at(ev(0, 0), 1, 3_000), at(ev(0, 1), 1, 3_100), at(ev(0, 0), 0, 5_000)],
            vec![fault(FaultKind::Pause, Some(0), 1_000, 4_900)],
        );
        let report = Report::check(&h);
        assert_eq!(report.order_violations.len(), 1);
        assert!(report.order_violations[0].repeat);
        assert_eq!(report.unexplained(), 0, "{}", report.table(10));
        assert!(!report.passed());
    }

    #[test]
    fn a_duplicate_without_a_fault_is_unexplained() {
        let h = history(&[ev(0, 0)], vec![at(ev(0, 0), 0, 10), at(ev(0, 0), 1, 2_000)], vec![]);
        let report = Report::check(&h);
        assert_eq!(report.duplicates.len(), 1);
        assert_eq!(report.unexplained(), 1);
        assert!(!report.passed());
        assert!(report.table(10).contains("UNEXPLAINED"));
    }

    #[test]
    fn a_kill_of_the_earlier_sender_between_the_copies_explains_a_duplicate() {
        let h = history(
            &[ev(0, 0)],
            vec![at(ev(0, 0), 0, 1_000), at(ev(0, 0), 1, 4_000)],
            vec![fault(FaultKind::Kill, Some(0), 1_200, 1_200)],
        );
        let report = Report::check(&h);
        assert!(report.passed(), "{}", report.table(10));
        assert_eq!(report.faults_by_kind[&FaultKind::Kill], 1);
    }

    #[test]
    fn a_fault_elsewhere_or_at_another_time_explains_nothing() {
        let arrivals = vec![at(ev(0, 0), 0, 10_000), at(ev(0, 0), 1, 12_000)];
        for unrelated in [
            fault(FaultKind::Kill, Some(2), 11_000, 11_000),
            // The later sender's kill, or the earlier sender's before it sent (its new process
            // sent the copy).
            fault(FaultKind::Kill, Some(1), 11_000, 11_000),
            fault(FaultKind::Kill, Some(0), 9_000, 9_000),
            fault(FaultKind::Pause, Some(0), 2_000, 5_000),
            fault(FaultKind::Pause, Some(0), 13_000, 14_000),
            fault(FaultKind::PartitionSlow, Some(0), 9_000, 13_000),
            fault(FaultKind::ClockOffset, Some(1), 0, 20_000),
        ] {
            let report = Report::check(&history(&[ev(0, 0)], arrivals.clone(), vec![unrelated.clone()]));
            assert_eq!(
                report.unexplained(),
                1,
                "{unrelated:?} explained it:\n{}",
                report.table(10)
            );
        }
    }

    #[test]
    fn a_database_restart_explains_any_replicas_duplicate() {
        let h = history(
            &[ev(0, 0)],
            vec![at(ev(0, 0), 0, 10_000), at(ev(0, 0), 0, 12_000)],
            vec![fault(FaultKind::DbRestartImmediate, None, 10_100, 11_000)],
        );
        assert!(Report::check(&h).passed());
    }

    #[test]
    fn each_resend_of_a_triple_needs_its_own_explanation() {
        let h = history(
            &[ev(0, 0)],
            vec![at(ev(0, 0), 0, 1_000), at(ev(0, 0), 1, 3_000), at(ev(0, 0), 2, 20_000)],
            vec![fault(FaultKind::PartitionDrop, Some(0), 900, 2_000)],
        );
        let report = Report::check(&h);
        assert!(report.duplicates[0].explanations[0].is_ok());
        assert!(report.duplicates[0].explanations[1].is_err());
        assert!(!report.passed());
    }
}
