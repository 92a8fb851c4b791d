//! `[deployments.canary]`: when a canary deployment is rolled back or promoted on its own.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{FieldError, invalid};

/// `[deployments.canary]`: the automatic decision on a running canary, taken on both versions'
/// calls since it started (every replica's, on a shared store).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CanaryConfig {
    /// Calls the canary must have made before anything is decided on its figures.
    pub min_calls: u64,
    /// How many percentage points the canary's failure rate may exceed the current version's
    /// before it is rolled back (10: 12% against 1% rolls back, 8% against 1% does not).
    pub max_failure_margin: f64,
    /// Calls after which a canary within the margin is promoted on its own; 0: only by hand.
    pub promote_after_calls: u64,
    /// How often the running canaries' figures are looked at, in milliseconds.
    pub check_interval_ms: u64,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        CanaryConfig {
            min_calls: 50,
            max_failure_margin: 10.0,
            promote_after_calls: 0,
            check_interval_ms: 5_000,
        }
    }
}

impl CanaryConfig {
    /// How often the running canaries are looked at.
    pub fn check_interval(&self) -> Duration {
        Duration::from_millis(self.check_interval_ms)
    }

    pub(super) fn check(&self) -> Result<(), FieldError> {
        if self.min_calls == 0 {
            return Err(invalid("deployments.canary.min_calls", "must be at least 1"));
        }
        if !(0.0..=100.0).contains(&self.max_failure_margin) {
            return Err(invalid(
                "deployments.canary.max_failure_margin",
                "must be between 0 and 100 (percentage points)",
            ));
        }
        if self.promote_after_calls != 0 && self.promote_after_calls < self.min_calls {
            return Err(invalid(
                "deployments.canary.promote_after_calls",
                "must be 0 (promote by hand) or at least min_calls",
            ));
        }
        if self.check_interval_ms == 0 {
            return Err(invalid("deployments.canary.check_interval_ms", "must be at least 1"));
        }
        Ok(())
    }
}
