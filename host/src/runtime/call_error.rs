//! Why an adapter could not be loaded ([`LoadError`]) or one of its calls failed ([`CallError`]),
//! and how a failed call is classified, with the tenant's secrets removed from every message.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::bindings::dolphin::bridge::types as wt;
use super::call_state::CallState;
use super::worlds::World;
use super::{HOSTCALL_FUEL, WIT_PACKAGE, is_handle_limit, is_hostcall_fuel_exhausted};
use crate::redaction::SecretSet;

/// Why an adapter could not be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("{path} is not a WebAssembly component: {reason}")]
    NotAComponent { path: PathBuf, reason: String },
    #[error("{path} targets {found}; this host serves {WIT_PACKAGE} {served}", served = World::served_series())]
    IncompatibleVersion { path: PathBuf, found: String },
    #[error("{path} does not implement the adapter world: {reason}")]
    WrongWorld { path: PathBuf, reason: String },
}

/// Why one adapter call failed.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum CallError {
    /// The adapter reported a transient failure, with the vendor's hint of when to come back
    /// (0.2 world's `after-ms`) when it gave one.
    #[error("adapter asked to retry later: {reason}")]
    RetryLater { reason: String, after: Option<Duration> },
    /// The adapter reported a failure that retrying will not fix.
    #[error("adapter failed permanently: {0}")]
    Permanent(String),
    /// The guest trapped (panic, unreachable, stack overflow...).
    #[error("adapter trapped: {0}")]
    Trapped(String),
    /// The call exceeded one of its limits (named in the message).
    #[error("adapter exceeded its {0}")]
    LimitExceeded(String),
    /// The call did not finish within the tenant's call timeout.
    #[error("adapter call timed out after {0} ms")]
    Timeout(u64),
    /// The adapter could not be instantiated.
    #[error("adapter could not start: {0}")]
    Instantiate(String),
    /// The tenant's adapter faulted repeatedly and is resting; not called.
    #[error("adapter is resting after repeated faults ({0} ms left)")]
    CircuitOpen(u64),
}

impl CallError {
    /// A short name for metrics and error codes.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::RetryLater { .. } => "retry_later",
            CallError::Permanent(_) => "permanent",
            CallError::Trapped(_) => "trapped",
            CallError::LimitExceeded(_) => "limit_exceeded",
            CallError::Timeout(_) => "timeout",
            CallError::Instantiate(_) => "instantiate",
            CallError::CircuitOpen(_) => "circuit_open",
        }
    }
}

/// Turns a failed call into the error the caller acts on.
pub(super) fn classify_failure(error: wasmtime::Error, state: &CallState) -> CallError {
    if let Some(limit) = state.limit_hit.as_ref().or(state.limiter.hit.as_ref()) {
        return CallError::LimitExceeded(limit.clone());
    }
    if is_hostcall_fuel_exhausted(&error) {
        return CallError::LimitExceeded(hostcall_limit());
    }
    if is_handle_limit(&error) {
        return CallError::LimitExceeded(handle_limit(state.host.limits.resource_handles));
    }
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::StackOverflow => CallError::LimitExceeded("wasm stack limit".into()),
            other => CallError::Trapped(format!("{other}")),
        };
    }
    let text = format!("{:#}", anyhow::Error::from(error));
    CallError::Trapped(truncate(&state.host.secrets.redact(&text), 1024))
}

/// The name of the per-host-call data limit, as a call that exceeds it reports it.
pub(super) fn hostcall_limit() -> String {
    format!("host-call data limit of {} MiB per host call", HOSTCALL_FUEL >> 20)
}

/// The name of the resource handle limit, as a call that exceeds it reports it.
pub(super) fn handle_limit(handles: usize) -> String {
    format!("resource handle limit of {handles} (limits.resource_handles)")
}

/// Removes the tenant's secret values from an error message.
pub(super) fn redact_error(error: CallError, secrets: &SecretSet) -> CallError {
    let r = |m: String| secrets.redact(&m);
    match error {
        CallError::RetryLater { reason, after } => CallError::RetryLater {
            reason: r(reason),
            after,
        },
        CallError::Permanent(m) => CallError::Permanent(r(m)),
        CallError::Trapped(m) => CallError::Trapped(r(m)),
        CallError::LimitExceeded(m) => CallError::LimitExceeded(r(m)),
        CallError::Instantiate(m) => CallError::Instantiate(r(m)),
        other => other,
    }
}

/// An adapter's own error, secrets removed before it is cut to length (a cut could otherwise
/// leave part of a secret that redaction no longer recognises).
pub(super) fn adapter_error(error: wt::AdapterError, secrets: &SecretSet) -> CallError {
    let text = |m: String| truncate(&secrets.redact(&m), 1024);
    match error {
        wt::AdapterError::RetryLater(retry) => CallError::RetryLater {
            reason: text(retry.reason),
            after: retry.after_ms.map(Duration::from_millis),
        },
        wt::AdapterError::Permanent(m) => CallError::Permanent(text(m)),
    }
}

pub(super) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A secret that the 1 KiB cut would split is still removed whole: redaction comes first.
    #[test]
    fn an_adapter_error_loses_its_secrets_before_it_is_cut() {
        let secret = "s3cret-token-0123456789".to_string();
        let message = format!("{}{secret} and more", "x".repeat(1010));
        let CallError::Permanent(text) = adapter_error(wt::AdapterError::Permanent(message), &SecretSet::new([secret]))
        else {
            panic!("a permanent error stays permanent");
        };
        assert!(!text.contains("s3cr"), "part of the secret survived: {text}");
        assert!(text.contains("[redacted]"), "{text}");
    }
}
