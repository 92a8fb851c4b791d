//! Throttling of failed credentials: after `limit` failures of one credential from one source
//! address within a window, that source's further attempts at it are refused (429, with how long
//! to wait) before the credential is compared, so a guess that happens to be right during the
//! lockout is refused too. Keyed by source and by what failed, so a source's wrong admin logins
//! do not lock out its Incoming token, nor one tenant's deploy token or webhook secret
//! another's. Bounded: at most
//! `max_sources` keys are tracked, the one whose window started first is forgotten first.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::StatusCode;

use super::ApiError;

/// What a source tried and failed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Credential {
    /// The status page's login form (the admin token).
    AdminLogin,
    /// `Authorization: Bearer` on `/admin/...`.
    AdminToken,
    /// The admin token or a deploy token on tenant `.0`'s deployments (`""`: a tenant the
    /// bridge does not know, so unknown names share one count).
    DeployToken(String),
    /// `server.incoming_token` on the Incoming endpoint.
    IncomingToken,
    /// `metrics.token` on `GET /metrics`.
    MetricsToken,
    /// Tenant `.0`'s `[tenants.webhook]` token or signature secret on its vendor webhooks: a
    /// count per tenant, so that a source's wrong webhooks to one tenant do not refuse its
    /// webhooks to another.
    WebhookAuth(String),
}

impl Credential {
    /// What it is, for the refusal's message (never a tenant's secret).
    pub(super) fn describe(&self) -> String {
        match self {
            Credential::AdminLogin => "status page login".into(),
            Credential::AdminToken => "admin token".into(),
            Credential::DeployToken(t) if t.is_empty() => "deploy token".into(),
            Credential::DeployToken(t) => format!("deploy token of tenant `{t}`"),
            Credential::IncomingToken => "Incoming token".into(),
            Credential::MetricsToken => "metrics token".into(),
            Credential::WebhookAuth(t) => format!("webhook token or signature of tenant `{t}`"),
        }
    }
}

/// The limits: `limit` failures per `window` and key, at most `max_sources` keys; a `limit` of
/// 0 turns throttling off.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleLimits {
    pub limit: u32,
    pub window: Duration,
    pub max_sources: usize,
}

/// A key's failures in its current window.
struct Failures {
    /// When the window started: the first failure after the last window ended.
    started: (Instant, u64),
    count: u32,
}

#[derive(Default)]
struct Table {
    keys: HashMap<(IpAddr, Credential), Failures>,
    /// The keys by when their window started, oldest first (the number breaks ties).
    by_start: BTreeMap<(Instant, u64), (IpAddr, Credential)>,
    next: u64,
}

/// The failure counts of every tracked source and credential.
pub struct AuthThrottle {
    limits: ThrottleLimits,
    table: Mutex<Table>,
}

impl AuthThrottle {
    pub fn new(limits: ThrottleLimits) -> AuthThrottle {
        AuthThrottle {
            limits,
            table: Mutex::new(Table::default()),
        }
    }

    /// How long `source` must wait before trying `what` again, at `now`; `None` when it may.
    pub fn locked(&self, source: IpAddr, what: &Credential, now: Instant) -> Option<Duration> {
        if self.limits.limit == 0 {
            return None;
        }
        let table = self.table.lock().expect("throttle lock");
        let failures = table.keys.get(&(source, what.clone()))?;
        let ends = failures.started.0 + self.limits.window;
        (failures.count >= self.limits.limit && now < ends).then(|| ends - now)
    }

    /// Counts a failure of `what` from `source` at `now`.
    pub fn failed(&self, source: IpAddr, what: &Credential, now: Instant) {
        if self.limits.limit == 0 || self.limits.max_sources == 0 {
            return;
        }
        let mut table = self.table.lock().expect("throttle lock");
        let key = (source, what.clone());
        let window = self.limits.window;
        if let Some(failures) = table.keys.get_mut(&key)
            && now < failures.started.0 + window
        {
            failures.count = failures.count.saturating_add(1);
            return;
        }
        // A new window for this key: forget its old one, and the oldest keys beyond the bound.
        if let Some(old) = table.keys.remove(&key) {
            table.by_start.remove(&old.started);
        }
        while table.keys.len() >= self.limits.max_sources {
            let Some((_, oldest)) = table.by_start.pop_first() else {
                break;
            };
            table.keys.remove(&oldest);
        }
        let started = (now, table.next);
        table.next += 1;
        table.by_start.insert(started, key.clone());
        table.keys.insert(key, Failures { started, count: 1 });
    }

    /// How many keys are tracked.
    pub fn tracked(&self) -> usize {
        self.table.lock().expect("throttle lock").keys.len()
    }

    /// The refusal of a locked-out attempt: 429 naming the limit, with `Retry-After`.
    pub fn refusal(&self, what: &Credential, wait: Duration) -> ApiError {
        let seconds = wait.as_millis().div_ceil(1000).max(1) as u64;
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failures",
            format!(
                "{}: {} failed attempts from this address within {} ms (limit server.auth_failure_limit); retry in {seconds} s",
                what.describe(),
                self.limits.limit,
                self.limits.window.as_millis()
            ),
        );
        error.retry_after_s = Some(seconds);
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    fn throttle(limit: u32, max_sources: usize) -> AuthThrottle {
        AuthThrottle::new(ThrottleLimits {
            limit,
            window: Duration::from_secs(60),
            max_sources,
        })
    }

    fn deploy(tenant: &str) -> Credential {
        Credential::DeployToken(tenant.into())
    }

    #[test]
    fn the_limit_locks_the_source_until_the_window_ends() {
        let t = throttle(3, 100);
        let start = Instant::now();
        for i in 0..3 {
            assert_eq!(t.locked(A, &deploy("acme"), start), None, "attempt {i}");
            t.failed(A, &deploy("acme"), start + Duration::from_secs(i));
        }
        let wait = t.locked(A, &deploy("acme"), start + Duration::from_secs(10));
        assert_eq!(wait, Some(Duration::from_secs(50)));
        assert_eq!(t.locked(A, &deploy("acme"), start + Duration::from_secs(60)), None);
        // A failure after the window starts a new one.
        t.failed(A, &deploy("acme"), start + Duration::from_secs(61));
        assert_eq!(t.locked(A, &deploy("acme"), start + Duration::from_secs(62)), None);
    }

    #[test]
    fn other_sources_and_credentials_count_apart() {
        let t = throttle(2, 100);
        let now = Instant::now();
        for _ in 0..5 {
            t.failed(A, &Credential::AdminLogin, now);
        }
        assert!(t.locked(A, &Credential::AdminLogin, now).is_some());
        assert_eq!(t.locked(B, &Credential::AdminLogin, now), None);
        assert_eq!(t.locked(A, &Credential::IncomingToken, now), None);
        assert_eq!(t.locked(A, &Credential::AdminToken, now), None);
        t.failed(A, &deploy("acme"), now);
        t.failed(A, &deploy("acme"), now);
        assert!(t.locked(A, &deploy("acme"), now).is_some());
        assert_eq!(t.locked(A, &deploy("other"), now), None);
        assert_eq!(
            t.locked(A, &Credential::WebhookAuth("acme".into()), now),
            None,
            "a deploy token is not a webhook secret"
        );
    }

    #[test]
    fn one_tenants_webhook_failures_leave_anothers_webhooks_alone() {
        let t = throttle(2, 100);
        let now = Instant::now();
        let [acme, beta] = ["acme", "beta"].map(|tenant| Credential::WebhookAuth(tenant.into()));
        t.failed(A, &acme, now);
        t.failed(A, &acme, now);
        assert!(t.locked(A, &acme, now).is_some());
        assert_eq!(t.locked(A, &beta, now), None);
        assert_eq!(t.locked(B, &acme, now), None);
        let message = t.refusal(&acme, Duration::from_secs(1)).message;
        assert!(message.contains("webhook") && message.contains("`acme`"), "{message}");
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_oldest_first() {
        let t = throttle(1, 3);
        let now = Instant::now();
        for (i, tenant) in ["a", "b", "c", "d"].into_iter().enumerate() {
            t.failed(A, &deploy(tenant), now + Duration::from_millis(i as u64));
        }
        assert_eq!(t.tracked(), 3);
        let later = now + Duration::from_millis(10);
        assert_eq!(t.locked(A, &deploy("a"), later), None, "the oldest was forgotten");
        for tenant in ["b", "c", "d"] {
            assert!(t.locked(A, &deploy(tenant), later).is_some(), "{tenant}");
        }
    }

    #[test]
    fn a_zero_limit_turns_it_off() {
        let t = throttle(0, 3);
        let now = Instant::now();
        for _ in 0..10 {
            t.failed(A, &Credential::AdminToken, now);
        }
        assert_eq!(t.locked(A, &Credential::AdminToken, now), None);
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn the_refusal_names_the_limit_and_when_to_retry() {
        let t = throttle(10, 3);
        let error = t.refusal(&deploy("acme"), Duration::from_millis(1500));
        assert_eq!(error.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(error.retry_after_s, Some(2));
        assert!(error.message.contains("auth_failure_limit"), "{}", error.message);
        let response = error.response();
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "2");
    }
}
