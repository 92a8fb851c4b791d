//! The decision on a running canary, from both versions' figures: wait for enough calls, roll
//! back one that fails more than the active version by the configured margin, promote one
//! that did as well for long enough (when that is configured).

use crate::config::CanaryConfig;
use crate::store::{ArmFigures, CanaryFigures};

/// What to do with a running canary now.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Too few canary calls to judge.
    Wait,
    /// Within the margin; it keeps running (until promoted or aborted by hand).
    Keep,
    /// It fails more than the active version by more than the margin; the reason has the
    /// figures.
    RollBack(String),
    /// It did as well as the active version for `promote_after_calls` calls.
    Promote(String),
}

/// [`CanaryConfig`]'s decision rule, apart from any I/O so it is tested on figures alone.
#[derive(Debug, Clone)]
pub struct CanaryPolicy {
    min_calls: u64,
    max_failure_margin: f64,
    promote_after_calls: u64,
}

impl From<&CanaryConfig> for CanaryPolicy {
    fn from(config: &CanaryConfig) -> CanaryPolicy {
        CanaryPolicy {
            min_calls: config.min_calls,
            max_failure_margin: config.max_failure_margin,
            promote_after_calls: config.promote_after_calls,
        }
    }
}

impl CanaryPolicy {
    /// The verdict on `figures`, counted since the canary started.
    pub fn judge(&self, figures: &CanaryFigures) -> Verdict {
        let (canary, current) = (&figures.canary, &figures.current);
        if canary.calls < self.min_calls {
            return Verdict::Wait;
        }
        let over = 100.0 * (canary.failure_rate() - current.failure_rate());
        let compared = format!(
            "the canary failed {} against {} for the current version",
            rate(canary),
            rate(current)
        );
        if over > self.max_failure_margin {
            return Verdict::RollBack(format!(
                "{compared}: {over:.1} points over, more than the margin of {} (after {} canary calls)",
                self.max_failure_margin, canary.calls
            ));
        }
        if self.promote_after_calls > 0 && canary.calls >= self.promote_after_calls {
            return Verdict::Promote(format!(
                "{compared}: within the margin of {} points after {} canary calls",
                self.max_failure_margin, canary.calls
            ));
        }
        Verdict::Keep
    }
}

/// `3 of 50 calls (6.0%)`.
fn rate(arm: &ArmFigures) -> String {
    format!(
        "{} of {} calls ({:.1}%)",
        arm.failures,
        arm.calls,
        100.0 * arm.failure_rate()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min_calls: u64, margin: f64, promote_after_calls: u64) -> CanaryPolicy {
        CanaryPolicy {
            min_calls,
            max_failure_margin: margin,
            promote_after_calls,
        }
    }

    fn figures(current: (u64, u64), canary: (u64, u64)) -> CanaryFigures {
        let arm = |(calls, failures)| ArmFigures {
            calls,
            failures,
            latency_micros: 0,
        };
        CanaryFigures {
            current: arm(current),
            canary: arm(canary),
        }
    }

    #[test]
    fn nothing_is_decided_before_min_calls() {
        let policy = policy(20, 10.0, 40);
        assert_eq!(policy.judge(&figures((100, 0), (19, 19))), Verdict::Wait);
    }

    #[test]
    fn a_canary_failing_more_than_the_margin_over_the_current_version_is_rolled_back_with_its_figures() {
        let policy = policy(20, 10.0, 0);
        let Verdict::RollBack(reason) = policy.judge(&figures((100, 1), (20, 3))) else {
            panic!("15% against 1% is 14 points over a margin of 10");
        };
        assert_eq!(
            reason,
            "the canary failed 3 of 20 calls (15.0%) against 1 of 100 calls (1.0%) for the current version: \
             14.0 points over, more than the margin of 10 (after 20 canary calls)"
        );
        // Within the margin it keeps running, however many calls.
        assert_eq!(policy.judge(&figures((100, 1), (1000, 100))), Verdict::Keep);
        // The current version failing as much excuses the canary: the vendor is down for both.
        assert_eq!(policy.judge(&figures((100, 90), (20, 20))), Verdict::Keep);
    }

    #[test]
    fn a_canary_as_good_as_the_current_version_is_promoted_after_promote_after_calls_only_when_set() {
        assert_eq!(policy(20, 5.0, 0).judge(&figures((50, 0), (500, 0))), Verdict::Keep);
        let policy = policy(20, 5.0, 100);
        assert_eq!(policy.judge(&figures((50, 0), (99, 0))), Verdict::Keep);
        assert!(matches!(policy.judge(&figures((50, 0), (100, 1))), Verdict::Promote(_)));
        // Failing beyond the margin wins over promotion.
        assert!(matches!(
            policy.judge(&figures((50, 0), (100, 10))),
            Verdict::RollBack(_)
        ));
    }

    #[test]
    fn the_configured_margin_is_the_one_used() {
        let config = CanaryConfig {
            min_calls: 10,
            max_failure_margin: 0.0,
            ..CanaryConfig::default()
        };
        let policy = CanaryPolicy::from(&config);
        assert!(matches!(policy.judge(&figures((10, 0), (10, 1))), Verdict::RollBack(_)));
        assert_eq!(policy.judge(&figures((10, 1), (10, 1))), Verdict::Keep);
    }
}
