//! `/admin/tenants/{t}/adapter` (PUT: deploy; `?canary=P`: as a canary serving P% of the
//! tickets), `/admin/tenants/{t}/versions` (GET), `/admin/tenants/{t}/rollback` (POST) and
//! `/admin/tenants/{t}/canary` (GET; `/promote` and `/abort`: POST), behind the admin bearer
//! token or tenant `t`'s deploy token (`[tenants.deploy] token`). A deploy token opens these
//! endpoints of its own tenant and nothing else.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::upload_slots::{UploadRefused, UploadSlot};
use super::{ApiError, AppState, Body, auth, json_response, method_not_allowed, read_body_within};
use crate::contract::shorten;
use crate::registry::DeployError;

/// The least time a deploy's body may take to arrive (components are megabytes).
const MIN_UPLOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Routes `/admin/tenants/{rest}`.
pub async fn handle(state: &AppState, rest: &str, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let Some((tenant, action)) = rest.split_once('/') else {
        return Err(not_found(rest));
    };
    if !matches!(
        action,
        "adapter" | "versions" | "rollback" | "canary" | "canary/promote" | "canary/abort"
    ) {
        return Err(not_found(rest));
    }
    auth::admin_or_deploy_token(state, tenant, &request)?;
    let registry = &state.registry;
    match (request.method().clone(), action) {
        (Method::PUT, "adapter") => {
            let canary = canary_percent(request.uri().query())?;
            // Taken before the body is read, held until the deploy ends.
            let _slot = take_upload_slot(state, tenant)?;
            let body = read_upload(state, request, registry.deploy_max_bytes()).await?;
            let version = registry
                .deploy(tenant, Vec::from(body), canary)
                .await
                .map_err(deploy_error)?;
            Ok(json_response(StatusCode::OK, &json!({ "version": version })))
        }
        (Method::GET, "canary") => {
            let last = registry.last_canary(tenant).await.map_err(deploy_error)?;
            Ok(json_response(
                StatusCode::OK,
                &json!({
                    "tenant": tenant,
                    "canary": registry.canary_status(tenant),
                    "lastCanary": last,
                    "policy": registry.config().deployments.canary,
                }),
            ))
        }
        (Method::POST, "canary/promote") => {
            let outcome = registry.promote_canary(tenant).await.map_err(deploy_error)?;
            Ok(json_response(StatusCode::OK, &json!({ "canary": outcome })))
        }
        (Method::POST, "canary/abort") => {
            let outcome = registry.abort_canary(tenant).await.map_err(deploy_error)?;
            Ok(json_response(StatusCode::OK, &json!({ "canary": outcome })))
        }
        (Method::GET, "versions") => {
            let versions = registry.listed_versions(tenant).await.map_err(deploy_error)?;
            Ok(json_response(
                StatusCode::OK,
                &json!({ "tenant": tenant, "keep": registry.config().deployments.keep, "versions": versions }),
            ))
        }
        (Method::POST, "rollback") => {
            let version = registry.rollback(tenant).await.map_err(deploy_error)?;
            Ok(json_response(StatusCode::OK, &json!({ "version": version })))
        }
        (_, "adapter") => Err(method_not_allowed("PUT")),
        (_, "versions" | "canary") => Err(method_not_allowed("GET")),
        _ => Err(method_not_allowed("POST")),
    }
}

/// The `canary` query parameter of a deploy: the percent of the tickets the version serves as a
/// canary (1 to 99); `None` when absent (a deploy activates the version for every ticket).
pub(super) fn canary_percent(query: Option<&str>) -> Result<Option<u8>, ApiError> {
    let Some(value) = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(name, _)| name == "canary")
        .map(|(_, value)| value.into_owned())
    else {
        return Ok(None);
    };
    parse_canary_percent(&value).map(Some)
}

/// A canary's percent as a deploy gives it: a whole number from 1 to 99.
pub(super) fn parse_canary_percent(value: &str) -> Result<u8, ApiError> {
    match value.trim().parse::<u8>() {
        Ok(percent @ 1..=99) => Ok(percent),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_canary",
            format!(
                "canary must be a whole percent of the tickets from 1 to 99, not `{}`",
                shorten(value)
            ),
        )),
    }
}

/// Reads a deploy's upload, at most `limit` bytes, within the body read timeout but no less
/// than a minute (components are megabytes).
pub(super) async fn read_upload(state: &AppState, request: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let timeout = Duration::from_millis(state.server.body_read_timeout_ms).max(MIN_UPLOAD_TIMEOUT);
    read_body_within(request, limit, timeout).await
}

/// A slot for an upload to `tenant` (which must be configured), or the refusal naming the
/// limit that is reached: 429 for the tenant's own, 503 for the bridge's.
pub(super) fn take_upload_slot(state: &AppState, tenant: &str) -> Result<UploadSlot, ApiError> {
    if !state.registry.config().tenants.iter().any(|t| t.name == tenant) {
        return Err(deploy_error(DeployError::UnknownTenant(tenant.to_string())));
    }
    state.uploads.try_take(tenant).map_err(|refused| {
        let (status, code) = match &refused {
            UploadRefused::TenantBusy { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_uploads"),
            UploadRefused::AllBusy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "uploads_busy"),
        };
        ApiError::new(status, code, refused.to_string())
    })
}

/// The client-facing error of a deploy, version list or rollback.
fn deploy_error(error: DeployError) -> ApiError {
    match error {
        DeployError::UnknownTenant(name) => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_tenant",
            format!("no tenant named `{}`", shorten(&name)),
        ),
        DeployError::Rejected(reason) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "rejected", reason),
        DeployError::InvalidCanaryPercent(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_canary", error.to_string())
        }
        DeployError::NoCanary => ApiError::new(StatusCode::CONFLICT, "no_canary", error.to_string()),
        DeployError::NoPreviousVersion => ApiError::new(
            StatusCode::CONFLICT,
            "no_previous_version",
            "the tenant runs its configured adapter file; there is no older version",
        ),
        DeployError::Storage(e) => {
            tracing::error!(error = format!("{e:#}"), "deployment store failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_failed",
                "the deployment store failed; the previous version keeps serving (see the bridge's log)",
            )
        }
    }
}

fn not_found(rest: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no admin endpoint /admin/tenants/{}", shorten(rest)),
    )
}
