//! How refusals are logged. One warn line per refused request floods the log under attack (an
//! abuse run logged one webhook refusal 46,704 times), so of each (subject, reason) the first
//! [`LOGGED_PER_WINDOW`] refusals of a window are logged one by one, and the rest only counted:
//! once the window ends, one summary line says how many were not logged. Windows start at a
//! key's first refusal and are kept only while they last; subjects are configured tenants or the
//! bridge's own credentials, so the keys are bounded. Every refusal is still counted in
//! `dolphin_bridge_refused_requests_total` whether or not it is logged.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Refusals of one (subject, reason) logged one by one per window.
pub const LOGGED_PER_WINDOW: u64 = 5;
/// The window of [`LOGGED_PER_WINDOW`].
pub const WINDOW: Duration = Duration::from_secs(60);

/// One (subject, reason)'s refusals in its current window.
struct Window {
    started: Instant,
    refused: u64,
}

/// A window that ended with refusals that were not logged one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    /// The tenant (or the credential) refused.
    pub subject: String,
    /// Why: the refusal's error code.
    pub reason: &'static str,
    /// How many refusals of the window were not logged.
    pub count: u64,
}

impl Suppressed {
    /// The summary line of the window.
    pub fn log(&self) {
        tracing::warn!(subject = %self.subject, reason = self.reason, suppressed = self.count,
            window_s = WINDOW.as_secs(), "refusals not logged one by one in the last window");
    }
}

/// The refusals of every (subject, reason) in its current window.
pub struct RefusalLog {
    logged: u64,
    window: Duration,
    windows: Mutex<HashMap<(String, &'static str), Window>>,
}

impl Default for RefusalLog {
    /// [`LOGGED_PER_WINDOW`] per [`WINDOW`].
    fn default() -> RefusalLog {
        RefusalLog::new(LOGGED_PER_WINDOW, WINDOW)
    }
}

impl RefusalLog {
    /// Logs the first `logged` refusals of each (subject, reason) per `window`.
    pub fn new(logged: u64, window: Duration) -> RefusalLog {
        RefusalLog {
            logged,
            window,
            windows: Mutex::default(),
        }
    }

    /// Counts a refusal of `subject` for `reason` at `now`; runs `log` when it is one of the
    /// first of its window, and logs the summary of the key's previous window if that one ended
    /// with refusals not logged.
    pub fn refused(&self, subject: &str, reason: &'static str, log: impl FnOnce()) {
        let (first, ended) = self.note(subject, reason, Instant::now());
        if let Some(ended) = ended {
            ended.log();
        }
        if first {
            log();
        }
    }

    /// Counts a refusal at `now`: whether it is to be logged, and the key's previous window
    /// when it ended with refusals not logged.
    pub fn note(&self, subject: &str, reason: &'static str, now: Instant) -> (bool, Option<Suppressed>) {
        let mut windows = self.windows.lock().expect("refusal log lock");
        let key = (subject.to_string(), reason);
        let mut ended = None;
        if let Some(window) = windows.get_mut(&key) {
            if now < window.started + self.window {
                window.refused += 1;
                return (window.refused <= self.logged, None);
            }
            ended = self.suppressed(&key, window);
        }
        windows.insert(
            key,
            Window {
                started: now,
                refused: 1,
            },
        );
        (self.logged > 0, ended)
    }

    /// Forgets the windows that ended by `now`; the ones with refusals not logged, to be
    /// summarized.
    pub fn ended(&self, now: Instant) -> Vec<Suppressed> {
        let mut windows = self.windows.lock().expect("refusal log lock");
        let mut ended = Vec::new();
        windows.retain(|key, window| {
            if now < window.started + self.window {
                return true;
            }
            ended.extend(self.suppressed(key, window));
            false
        });
        ended
    }

    /// Logs the summary of every window that ended by now, every `WINDOW / 4`, for as long as
    /// it runs.
    pub async fn summarize(&self) {
        let mut tick = tokio::time::interval(self.window / 4);
        loop {
            tick.tick().await;
            for ended in self.ended(Instant::now()) {
                ended.log();
            }
        }
    }

    fn suppressed(&self, key: &(String, &'static str), window: &Window) -> Option<Suppressed> {
        (window.refused > self.logged).then(|| Suppressed {
            subject: key.0.clone(),
            reason: key.1,
            count: window.refused - self.logged,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONCURRENCY: &str = "webhook_concurrency_limit";

    fn log() -> RefusalLog {
        RefusalLog::new(3, Duration::from_secs(60))
    }

    fn logged(log: &RefusalLog, subject: &str, reason: &'static str, now: Instant, n: usize) -> Vec<bool> {
        (0..n).map(|_| log.note(subject, reason, now).0).collect()
    }

    #[test]
    fn the_first_refusals_of_a_window_are_logged_and_the_rest_summarized_once_it_ends() {
        let log = log();
        let start = Instant::now();
        assert_eq!(
            logged(&log, "acme", CONCURRENCY, start, 1000),
            [vec![true; 3], vec![false; 997]].concat()
        );
        assert_eq!(log.ended(start + Duration::from_secs(59)), [], "the window goes on");
        assert_eq!(
            log.ended(start + Duration::from_secs(60)),
            [Suppressed {
                subject: "acme".into(),
                reason: CONCURRENCY,
                count: 997
            }]
        );
        assert_eq!(log.ended(start + Duration::from_secs(61)), [], "summarized once");
        assert_eq!(
            logged(&log, "acme", CONCURRENCY, start + Duration::from_secs(61), 4),
            [true, true, true, false],
            "a new window logs its first ones again"
        );
    }

    #[test]
    fn tenants_and_reasons_count_apart() {
        let log = log();
        let now = Instant::now();
        assert!(!logged(&log, "acme", CONCURRENCY, now, 10)[9]);
        assert!(logged(&log, "beta", CONCURRENCY, now, 1)[0]);
        assert!(logged(&log, "acme", "invalid_token", now, 1)[0]);
    }

    #[test]
    fn a_refusal_after_the_window_brings_the_summary_of_the_last_one() {
        let log = log();
        let start = Instant::now();
        logged(&log, "acme", CONCURRENCY, start, 5);
        let (first, ended) = log.note("acme", CONCURRENCY, start + Duration::from_secs(90));
        assert!(first);
        assert_eq!(
            ended,
            Some(Suppressed {
                subject: "acme".into(),
                reason: CONCURRENCY,
                count: 2
            })
        );
        assert_eq!(log.ended(start + Duration::from_secs(100)), [], "already summarized");
    }

    #[test]
    fn a_window_without_suppressed_refusals_has_no_summary_and_is_forgotten() {
        let log = log();
        let start = Instant::now();
        logged(&log, "acme", CONCURRENCY, start, 3);
        assert_eq!(log.ended(start + Duration::from_secs(60)), []);
        assert!(log.windows.lock().unwrap().is_empty());
        let (first, ended) = log.note("acme", CONCURRENCY, start + Duration::from_secs(61));
        assert_eq!((first, ended), (true, None));
    }
}
