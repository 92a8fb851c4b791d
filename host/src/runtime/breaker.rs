//! The circuit breakers that rest a tenant's adapter after repeated faults: one per direction,
//! so faulting webhooks never rest the delivery of the tenant's customers' messages.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::CallError;

/// Rests a tenant's adapter after repeated faults (traps, limits, timeouts), so a broken adapter
/// costs its own tenant retries, not everyone's CPU. When a rest ends, one call (the trial) goes
/// ahead while the others keep waiting: a fault rests the adapter again, anything else closes
/// the breaker. So a rest's end lets one call through, not a burst of everything that waited.
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    failures: std::sync::atomic::AtomicU32,
    state: std::sync::Mutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    /// Resting until then.
    open_until: Option<Instant>,
    /// When the trial call after a rest started; a trial whose result never came (its caller
    /// went away) stops holding the others back after one more cool-down.
    trial_since: Option<Instant>,
}

impl CircuitBreaker {
    /// Opens after `threshold` consecutive faults, for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        CircuitBreaker {
            threshold: threshold.max(1),
            cooldown,
            failures: Default::default(),
            state: Default::default(),
        }
    }

    /// Lets a call go ahead (`Ok`), or says how long the adapter still rests. Once a rest is
    /// over, the first call to ask is the trial.
    pub(super) fn admit(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut state = self.state.lock().expect("breaker lock");
        let Some(until) = state.open_until else {
            return Ok(());
        };
        if let Some(left) = until.checked_duration_since(now) {
            return Err(left);
        }
        if let Some(trial_left) = state
            .trial_since
            .and_then(|since| (since + self.cooldown).checked_duration_since(now))
        {
            return Err(trial_left);
        }
        state.trial_since = Some(now);
        Ok(())
    }

    /// Where the breaker stands now.
    pub fn view(&self) -> BreakerView {
        let now = Instant::now();
        let state = self.state.lock().expect("breaker lock");
        match (state.open_until, state.trial_since) {
            (None, _) => BreakerView::Closed,
            (Some(until), _) if until > now => BreakerView::Open(until - now),
            (Some(_), Some(_)) => BreakerView::Trial,
            (Some(_), None) => BreakerView::TrialDue,
        }
    }

    pub(super) fn record(&self, result: &Result<(), &CallError>) {
        let mut state = self.state.lock().expect("breaker lock");
        match result {
            // Not run at all: says nothing of the adapter.
            Err(CallError::CircuitOpen(_)) => {}
            // A success ends a run of faults; the vendor's or the data's fault does not. Either
            // shows the adapter runs again when it is the trial's; a call that started before
            // the rest does not cut it short.
            Ok(()) | Err(CallError::RetryLater { .. } | CallError::Permanent(_)) => {
                if result.is_ok() {
                    self.failures.store(0, Ordering::Relaxed);
                }
                if state.trial_since.is_some() {
                    self.failures.store(0, Ordering::Relaxed);
                    *state = BreakerState::default();
                }
            }
            Err(_) => {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if failures >= self.threshold || state.trial_since.is_some() {
                    *state = BreakerState {
                        open_until: Some(Instant::now() + self.cooldown),
                        trial_since: None,
                    };
                }
            }
        }
    }
}

/// What [`CircuitBreaker::view`] shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerView {
    /// Calls go ahead.
    Closed,
    /// The adapter rests for this much longer.
    Open(Duration),
    /// The rest is over; the next call is the trial.
    TrialDue,
    /// The trial call is running; the others wait for its result.
    Trial,
}

/// A tenant's circuit breakers, one per kind of call.
pub struct Breakers {
    /// For `on-incoming` calls (delivering 3Dolphins' events).
    pub incoming: CircuitBreaker,
    /// For `on-vendor-webhook` calls.
    pub webhooks: CircuitBreaker,
}

impl Breakers {
    /// Two breakers that open after `threshold` consecutive faults, for `cooldown`.
    pub fn new(threshold: u32, cooldown: Duration) -> Breakers {
        Breakers {
            incoming: CircuitBreaker::new(threshold, cooldown),
            webhooks: CircuitBreaker::new(threshold, cooldown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rest's end lets one trial call through, not everything that waited; the trial's fault
    /// rests the adapter again, its success closes the breaker.
    #[test]
    fn after_a_rest_one_trial_call_goes_ahead() {
        let breaker = CircuitBreaker::new(2, Duration::from_millis(50));
        let trap = CallError::Trapped("unreachable".into());
        assert!(breaker.admit().is_ok());
        breaker.record(&Err(&trap));
        assert!(breaker.admit().is_ok(), "one fault of two does not rest the adapter");
        breaker.record(&Err(&trap));
        assert!(breaker.admit().is_err(), "two consecutive faults rest it");
        breaker.record(&Ok(()));
        assert!(
            breaker.admit().is_err(),
            "a call that started before the rest does not end it"
        );
        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.admit().is_ok(), "the trial");
        assert!(breaker.admit().is_err(), "a second call while the trial runs");
        breaker.record(&Err(&trap));
        assert!(breaker.admit().is_err(), "the trial's fault rests it again");
        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.admit().is_ok(), "the next trial");
        breaker.record(&Err(&CallError::RetryLater {
            reason: "vendor down".into(),
            after: None,
        }));
        assert!(breaker.admit().is_ok() && breaker.admit().is_ok(), "closed again");
    }

    /// The view the status page shows follows the breaker: closed, open, trial due, trial running.
    #[test]
    fn the_view_follows_the_breaker() {
        let breaker = CircuitBreaker::new(1, Duration::from_millis(40));
        assert_eq!(breaker.view(), BreakerView::Closed);
        breaker.record(&Err(&CallError::Timeout(10)));
        assert!(matches!(breaker.view(), BreakerView::Open(left) if left <= Duration::from_millis(40)));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(breaker.view(), BreakerView::TrialDue);
        assert!(breaker.admit().is_ok());
        assert_eq!(breaker.view(), BreakerView::Trial);
        breaker.record(&Ok(()));
        assert_eq!(breaker.view(), BreakerView::Closed);
    }

    /// A trial whose caller went away (no result recorded) holds the others back for one
    /// cool-down only.
    #[test]
    fn a_trial_that_never_reports_does_not_rest_the_adapter_for_ever() {
        let breaker = CircuitBreaker::new(1, Duration::from_millis(40));
        breaker.record(&Err(&CallError::Timeout(10)));
        std::thread::sleep(Duration::from_millis(50));
        assert!(breaker.admit().is_ok(), "the trial");
        assert!(breaker.admit().is_err());
        std::thread::sleep(Duration::from_millis(50));
        assert!(breaker.admit().is_ok(), "a new trial after one more cool-down");
    }
}
