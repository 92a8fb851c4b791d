//! Who may call what: every bearer token and credential the server checks (the admin token, the
//! tenants' deploy tokens, the metrics token), each compared in constant time, and each behind
//! the failure limit of `auth_throttle`.

use std::net::IpAddr;
use std::time::Instant;

use http::{Request, StatusCode, header};
use hyper::body::Incoming;
use subtle::ConstantTimeEq;

use super::auth_throttle::Credential;
use super::{ApiError, AppState};

/// The address a request came from, put in its extensions by the router.
#[derive(Debug, Clone, Copy)]
pub(super) struct Peer(pub IpAddr);

/// Runs `check` of credential `what` unless the request's source is locked out of it (then 429,
/// before anything is compared); a 401 from `check` counts as a failure of `what` from that
/// source. Other refusals (another tenant's valid token, endpoints turned off) count for nothing.
pub(super) fn throttled<B, T>(
    state: &AppState,
    request: &Request<B>,
    what: Credential,
    check: impl FnOnce() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let source = source(request);
    refuse_locked_out(state, source, &what)?;
    let result = check();
    if let Err(error) = &result
        && error.status == StatusCode::UNAUTHORIZED
    {
        count_failure(state, source, &what);
    }
    result
}

/// The address `request` came from; `None` for a request the router did not see.
pub(super) fn source<B>(request: &Request<B>) -> Option<IpAddr> {
    request.extensions().get::<Peer>().map(|peer| peer.0)
}

/// The 429 refusal of an attempt at `what` while `source` is locked out of it, to be answered
/// before anything is read or compared.
pub(super) fn refuse_locked_out(state: &AppState, source: Option<IpAddr>, what: &Credential) -> Result<(), ApiError> {
    let Some(source) = source else {
        return Ok(());
    };
    match state.auth_throttle.locked(source, what, Instant::now()) {
        None => Ok(()),
        Some(wait) => {
            let refusal = state.auth_throttle.refusal(what, wait);
            let credential = what.describe();
            state.refusals.refused(&credential, refusal.code, || {
                tracing::warn!(%source, %credential, limit = state.server.auth_failure_limit,
                    "refused: too many failed credentials from this source");
            });
            Err(refusal)
        }
    }
}

/// Counts a failed attempt at `what` from `source` towards its lockout.
pub(super) fn count_failure(state: &AppState, source: Option<IpAddr>, what: &Credential) {
    if let Some(source) = source {
        state.auth_throttle.failed(source, what, Instant::now());
    }
}

/// Whether `given` is `expected`, compared in constant time (for equal lengths).
pub(super) fn tokens_match(given: &str, expected: &str) -> bool {
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// Checks `Authorization: Bearer <admin token>` in constant time, behind the failure limit.
pub(super) fn admin(state: &AppState, request: &Request<Incoming>) -> Result<(), ApiError> {
    throttled(state, request, Credential::AdminToken, || {
        admin_unthrottled(state, request)
    })
}

fn admin_unthrottled(state: &AppState, request: &Request<Incoming>) -> Result<(), ApiError> {
    let Some(token) = &state.admin_token else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "admin_disabled",
            "admin endpoints are off: set [admin] token in the configuration",
        ));
    };
    if bearer_matches(request, token) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid admin bearer token is required",
        ))
    }
}

/// Whether `request` carries `Authorization: Bearer <token>`, compared in constant time.
pub(super) fn bearer_matches(request: &Request<Incoming>, token: &str) -> bool {
    tokens_match(bearer_token(request), token)
}

/// The token of `Authorization: Bearer <token>`; empty when there is none.
pub(super) fn bearer_token(request: &Request<Incoming>) -> &str {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
}

/// The admin token opens every tenant; a deploy token only its own tenant (403 for another
/// tenant's, named or not). Without the admin token configured, deploy tokens still work.
/// Behind the failure limit, counted per tenant (tenants the bridge does not know share one
/// count, so inventing names gains no guesses).
pub(super) fn admin_or_deploy_token(
    state: &AppState,
    tenant: &str,
    request: &Request<Incoming>,
) -> Result<(), ApiError> {
    let known = state.registry.config().tenants.iter().any(|t| t.name == tenant);
    let what = Credential::DeployToken(if known { tenant.to_string() } else { String::new() });
    throttled(state, request, what, || {
        deploy_token_unthrottled(state, tenant, request)
    })
}

fn deploy_token_unthrottled(state: &AppState, tenant: &str, request: &Request<Incoming>) -> Result<(), ApiError> {
    let given = bearer_token(request);
    let matches = |token: &str| tokens_match(given, token);
    if state.admin_token.as_deref().is_some_and(matches) {
        return Ok(());
    }
    let config = state.registry.config();
    // Every tenant's token is compared (no early exit), so the time taken does not tell which
    // tenant's token a guess came close to.
    let owner = config.tenants.iter().fold(None, |found, t| {
        let hit = t.deploy.token.as_deref().is_some_and(matches);
        found.or(hit.then_some(t))
    });
    match owner {
        Some(owner) if owner.name == tenant => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this deploy token is not valid for this tenant",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin token or this tenant's deploy token is required",
        )),
    }
}
