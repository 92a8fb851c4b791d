//! The bridge's clock: wall time read once, at start, and advanced by the monotonic clock.
//!
//! Retry times, leases and windows are stored as epoch milliseconds, so they must be comparable
//! with wall time across restarts. Inside one process, though, a wall-clock step (NTP, an
//! operator's `date`) must neither fire every retry at once (a step forwards) nor hold every
//! ticket for the length of the step (a step backwards). So the process reads the wall clock
//! once and counts from there with a monotonic clock: steps are only seen by the next start.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// Where a [`Clock`] reads time; tests inject one that steps.
pub trait TimeSource: Send + Sync {
    /// Wall time, epoch milliseconds.
    fn wall_ms(&self) -> i64;
    /// Time since an arbitrary fixed point; never goes backwards.
    fn monotonic(&self) -> Duration;
}

/// The operating system's clocks.
pub struct SystemTime;

impl TimeSource for SystemTime {
    fn wall_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    fn monotonic(&self) -> Duration {
        static START: LazyLock<Instant> = LazyLock::new(Instant::now);
        START.elapsed()
    }
}

/// Epoch milliseconds that never step: the wall time at the clock's creation plus the
/// monotonic time elapsed since.
pub struct Clock {
    source: Box<dyn TimeSource>,
    anchor_wall_ms: i64,
    anchor_monotonic: Duration,
}

impl Clock {
    /// A clock anchored at `source`'s wall time now.
    pub fn new(source: Box<dyn TimeSource>) -> Clock {
        Clock {
            anchor_wall_ms: source.wall_ms(),
            anchor_monotonic: source.monotonic(),
            source,
        }
    }

    /// Now, in epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        let elapsed = self.source.monotonic().saturating_sub(self.anchor_monotonic);
        self.anchor_wall_ms + elapsed.as_millis() as i64
    }
}

/// Environment variable that shifts the process's clock by a signed number of milliseconds.
///
/// A fault-injection knob: tests cannot step the machine's clock, so a replica started with an
/// offset stands for one whose wall clock was wrong when it started (before NTP sync).
pub const CLOCK_OFFSET_ENV: &str = "DOLPHIN_BRIDGE_CLOCK_OFFSET_MS";

/// The system clock shifted by a fixed offset.
struct OffsetTime {
    offset_ms: i64,
}

impl TimeSource for OffsetTime {
    fn wall_ms(&self) -> i64 {
        SystemTime.wall_ms() + self.offset_ms
    }

    fn monotonic(&self) -> Duration {
        SystemTime.monotonic()
    }
}

/// The process's clock, anchored at first use (shifted by [`CLOCK_OFFSET_ENV`] when set).
static PROCESS_CLOCK: LazyLock<Clock> = LazyLock::new(|| {
    let offset_ms = std::env::var(CLOCK_OFFSET_ENV)
        .ok()
        .and_then(|value| value.trim().parse::<i64>().ok())
        .unwrap_or(0);
    Clock::new(Box::new(OffsetTime { offset_ms }))
});

/// Now, in epoch milliseconds, as the process's [`Clock`] counts it.
pub fn now_ms() -> i64 {
    PROCESS_CLOCK.now_ms()
}

/// A point in monotonic time that its owner moves: a lease's end as its holder knows it, moved
/// on at each renewal. Work bounded by it stops when it is reached ([`Deadline::reached`]) and
/// checks it before each step that must not happen late ([`Deadline::passed`]).
pub struct Deadline {
    at: std::sync::Mutex<tokio::time::Instant>,
    moved: tokio::sync::Notify,
}

impl std::fmt::Debug for Deadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let left = self.current().saturating_duration_since(tokio::time::Instant::now());
        f.debug_struct("Deadline").field("left", &left).finish()
    }
}

impl Deadline {
    /// A deadline at `at`.
    pub fn at(at: tokio::time::Instant) -> Deadline {
        Deadline {
            at: std::sync::Mutex::new(at),
            moved: tokio::sync::Notify::new(),
        }
    }

    fn current(&self) -> tokio::time::Instant {
        *self.at.lock().expect("deadline lock")
    }

    /// Moves it to `at` (later after a renewal; now when the lease is lost).
    pub fn move_to(&self, at: tokio::time::Instant) {
        *self.at.lock().expect("deadline lock") = at;
        self.moved.notify_waiters();
    }

    /// Whether it has been reached, read from the clock now (not from a timer, which a process
    /// resumed after a pause may not have fired yet).
    pub fn passed(&self) -> bool {
        tokio::time::Instant::now() >= self.current()
    }

    /// Completes when it is reached, following every move.
    pub async fn reached(&self) {
        loop {
            let moved = self.moved.notified();
            let at = self.current();
            if tokio::time::Instant::now() >= at {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = moved => {}
            }
        }
    }
}

/// (De)serializes a UTC time as an RFC 3339 string.
pub mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `time` as RFC 3339.
    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&time.to_rfc3339())
    }

    /// Reads an RFC 3339 time.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

    use super::*;

    /// A time source whose wall clock a test can step and whose monotonic clock it advances.
    #[derive(Default)]
    pub struct SteppingTime {
        wall_ms: AtomicI64,
        monotonic_ms: AtomicU64,
    }

    impl SteppingTime {
        pub fn at(wall_ms: i64) -> Arc<SteppingTime> {
            let time = Arc::new(SteppingTime::default());
            time.wall_ms.store(wall_ms, Ordering::SeqCst);
            time
        }

        /// Real time passing: both clocks move.
        pub fn advance(&self, ms: u64) {
            self.wall_ms.fetch_add(ms as i64, Ordering::SeqCst);
            self.monotonic_ms.fetch_add(ms, Ordering::SeqCst);
        }

        /// The wall clock is set (NTP, an operator): only it moves.
        pub fn step_wall(&self, ms: i64) {
            self.wall_ms.fetch_add(ms, Ordering::SeqCst);
        }
    }

    impl TimeSource for Arc<SteppingTime> {
        fn wall_ms(&self) -> i64 {
            self.wall_ms.load(Ordering::SeqCst)
        }

        fn monotonic(&self) -> Duration {
            Duration::from_millis(self.monotonic_ms.load(Ordering::SeqCst))
        }
    }

    #[test]
    fn wall_clock_steps_do_not_move_the_clock() {
        let time = SteppingTime::at(1_000_000);
        let clock = Clock::new(Box::new(time.clone()));
        assert_eq!(clock.now_ms(), 1_000_000);
        time.advance(250);
        assert_eq!(clock.now_ms(), 1_000_250);
        time.step_wall(3_600_000);
        assert_eq!(clock.now_ms(), 1_000_250, "a step forwards is not seen");
        time.step_wall(-7_200_000);
        time.advance(50);
        assert_eq!(
            clock.now_ms(),
            1_000_300,
            "a step backwards is not seen; time keeps going"
        );
    }

    #[tokio::test]
    async fn a_deadline_follows_its_moves() {
        let start = tokio::time::Instant::now();
        let deadline = Arc::new(Deadline::at(start + Duration::from_millis(100)));
        let waiter = tokio::spawn({
            let deadline = deadline.clone();
            async move {
                deadline.reached().await;
                tokio::time::Instant::now() - start
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        deadline.move_to(start + Duration::from_millis(400));
        assert!(!deadline.passed());
        assert!(
            waiter.await.unwrap() >= Duration::from_millis(400),
            "moved on, not the first end"
        );
        assert!(deadline.passed());
        deadline.move_to(tokio::time::Instant::now() + Duration::from_secs(60));
        deadline.move_to(tokio::time::Instant::now());
        assert!(deadline.passed(), "moved to now: lost at once");
    }

    #[test]
    fn a_new_clock_reads_the_wall_clock_again() {
        let time = SteppingTime::at(5_000);
        time.step_wall(60_000);
        assert_eq!(Clock::new(Box::new(time)).now_ms(), 65_000);
    }
}
