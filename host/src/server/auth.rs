//! Who may call what: every bearer token and credential the server checks (the admin token, the
//! tenants' deploy tokens, the metrics token), each compared in constant time.

use http::{Request, StatusCode, header};
use hyper::body::Incoming;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};

/// Whether `given` is `expected`, compared in constant time (for equal lengths).
pub(super) fn tokens_match(given: &str, expected: &str) -> bool {
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// Checks `Authorization: Bearer <admin token>` in constant time.
pub(super) fn admin(state: &AppState, request: &Request<Incoming>) -> Result<(), ApiError> {
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
pub(super) fn admin_or_deploy_token(
    state: &AppState,
    tenant: &str,
    request: &Request<Incoming>,
) -> Result<(), ApiError> {
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
