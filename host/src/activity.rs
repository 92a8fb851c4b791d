//! Recent delivery activity per tenant, in memory, for the status page: deliveries per minute
//! over the last hour (a ring of 60 one-minute buckets), and the last success and failure with
//! its error. Fed where the outbox records an attempt's outcome; lost at restart, by design.

use std::collections::HashMap;
use std::sync::Mutex;

/// Minutes the ring covers.
pub const MINUTES: usize = 60;
const MINUTE_MS: i64 = 60_000;
/// Characters of a failure's error that are kept.
const ERROR_CHARS: usize = 300;

/// A failed attempt as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Epoch milliseconds.
    pub at: i64,
    /// The error (already redacted by the runtime), shortened to a few hundred characters.
    pub error: String,
}

/// One tenant's recent activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantActivity {
    /// `(minute since the epoch, deliveries in it)`, indexed by minute modulo [`MINUTES`].
    ring: [(i64, u32); MINUTES],
    /// Epoch milliseconds of the last delivery.
    pub last_success: Option<i64>,
    pub last_failure: Option<Failure>,
}

impl Default for TenantActivity {
    fn default() -> Self {
        TenantActivity {
            ring: [(i64::MIN, 0); MINUTES],
            last_success: None,
            last_failure: None,
        }
    }
}

impl TenantActivity {
    fn delivered(&mut self, now_ms: i64) {
        let minute = now_ms.div_euclid(MINUTE_MS);
        let slot = &mut self.ring[minute.rem_euclid(MINUTES as i64) as usize];
        if slot.0 != minute {
            *slot = (minute, 0);
        }
        slot.1 += 1;
        self.last_success = Some(self.last_success.map_or(now_ms, |last| last.max(now_ms)));
    }

    /// Deliveries per minute over the last hour up to `now_ms`, oldest minute first (the last
    /// entry is the current, partial minute).
    pub fn per_minute(&self, now_ms: i64) -> [u32; MINUTES] {
        let current = now_ms.div_euclid(MINUTE_MS);
        let mut counts = [0; MINUTES];
        for (i, count) in counts.iter_mut().enumerate() {
            let minute = current - (MINUTES - 1 - i) as i64;
            let (at, n) = self.ring[minute.rem_euclid(MINUTES as i64) as usize];
            if at == minute {
                *count = n;
            }
        }
        counts
    }
}

/// Every tenant's recent activity.
#[derive(Debug, Default)]
pub struct Activity {
    tenants: Mutex<HashMap<String, TenantActivity>>,
}

impl Activity {
    /// Counts a delivery of `tenant` at `now_ms`.
    pub fn delivered(&self, tenant: &str, now_ms: i64) {
        let mut tenants = self.tenants.lock().expect("activity lock");
        tenants.entry(tenant.to_string()).or_default().delivered(now_ms);
    }

    /// Remembers a failed attempt of `tenant` at `now_ms` with its `error`.
    pub fn failed(&self, tenant: &str, now_ms: i64, error: &str) {
        let error = if error.chars().count() > ERROR_CHARS {
            let kept: String = error.chars().take(ERROR_CHARS).collect();
            format!("{kept}…")
        } else {
            error.to_string()
        };
        let mut tenants = self.tenants.lock().expect("activity lock");
        tenants.entry(tenant.to_string()).or_default().last_failure = Some(Failure { at: now_ms, error });
    }

    /// What is known of `tenant` (empty when nothing happened since the start).
    pub fn tenant(&self, tenant: &str) -> TenantActivity {
        let tenants = self.tenants.lock().expect("activity lock");
        tenants.get(tenant).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    #[test]
    fn deliveries_land_in_their_minute_and_the_hour_slides() {
        let activity = Activity::default();
        activity.delivered("acme", T0);
        activity.delivered("acme", T0 + 1_000);
        activity.delivered("acme", T0 + MINUTE_MS);
        activity.delivered("other", T0);
        let now = T0 + MINUTE_MS + 5;
        let counts = activity.tenant("acme").per_minute(now);
        assert_eq!((counts[MINUTES - 2], counts[MINUTES - 1]), (2, 1));
        assert_eq!(counts.iter().sum::<u32>(), 3);
        assert_eq!(activity.tenant("other").per_minute(now).iter().sum::<u32>(), 1);
        // An hour later the first minute has left the window; its slot is reused, not added to.
        let later = T0 + MINUTES as i64 * MINUTE_MS;
        let counts = activity.tenant("acme").per_minute(later);
        assert_eq!(counts.iter().sum::<u32>(), 1, "{counts:?}");
        activity.delivered("acme", later);
        let counts = activity.tenant("acme").per_minute(later);
        assert_eq!((counts[MINUTES - 1], counts.iter().sum::<u32>()), (1, 2));
        assert_eq!(activity.tenant("acme").last_success, Some(later));
    }

    #[test]
    fn a_quiet_tenant_has_an_empty_hour_and_failures_keep_a_short_error() {
        let activity = Activity::default();
        assert_eq!(activity.tenant("nobody").per_minute(T0), [0; MINUTES]);
        activity.failed("acme", T0, &"x".repeat(1000));
        let failure = activity.tenant("acme").last_failure.expect("a failure");
        assert_eq!(failure.at, T0);
        assert_eq!(failure.error.chars().count(), ERROR_CHARS + 1);
        assert_eq!(activity.tenant("acme").last_success, None);
    }
}
