//! `/healthz` (alive), `/readyz` (the store commits and every adapter loaded) and `/metrics`
//! (Prometheus, behind the metrics token when one is set).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;

use super::auth::{bearer_matches, throttled};
use super::auth_throttle::Credential;
use super::{ApiError, AppState, Body, json_response, method_not_allowed};
use crate::metrics::{METRICS, Metrics, TenantOutbox};

/// Whether `path` is one of the probes.
pub(super) fn owns(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Answers a probe.
pub(super) async fn handle(
    state: &AppState,
    path: &str,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    if request.method() != Method::GET {
        Err(method_not_allowed("GET"))
    } else if path == "/healthz" {
        Ok(json_response(StatusCode::OK, &json!({ "status": "ok" })))
    } else if path == "/readyz" {
        readiness(state).await
    } else if let Err(refused) = throttled(state, request, Credential::MetricsToken, || {
        match &state.metrics_token {
            Some(token) if !bearer_matches(request, token) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid metrics bearer token is required",
            )),
            _ => Ok(()),
        }
    }) {
        Err(refused)
    } else {
        refresh_outboxes(state).await;
        Ok(Response::builder()
            .header(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            .body(Full::new(Bytes::from(METRICS.encode())))
            .expect("valid response"))
    }
}

/// Reads each tenant's pending deliveries, their oldest and its dead letters, and each
/// replica's last heartbeat, from the store into their gauges. A store that does not answer in
/// time leaves them as the last scrape read them (the store's health is `/readyz`'s to report).
async fn refresh_outboxes(state: &AppState) {
    let store = state.outbox.store();
    let read = async {
        let backlog = store.backlog_by_tenant().await?;
        let dead = store.dead_letters_by_tenant().await?;
        let replicas = store.replicas().await?;
        anyhow::Ok((backlog, dead, replicas))
    };
    let (backlog, dead, replicas) = match tokio::time::timeout(READY_TIMEOUT, read).await {
        Ok(Ok(figures)) => figures,
        Ok(Err(error)) => {
            tracing::warn!(
                error = format!("{error:#}"),
                "metrics: reading the outbox figures failed"
            );
            return;
        }
        Err(_) => {
            tracing::warn!("metrics: reading the outbox figures timed out");
            return;
        }
    };
    let now = store.now_ms();
    // Every tenant is reported, at zero when the store holds nothing of it, so that a
    // dashboard's series and an alert's `increase()` start from it.
    let mut outboxes: BTreeMap<String, TenantOutbox> = BTreeMap::new();
    for tenant in state.registry.snapshot().all() {
        Metrics::seed_tenant(&tenant.name);
        outboxes.insert(tenant.name.clone(), TenantOutbox::empty(&tenant.name));
    }
    for tenant in backlog {
        let outbox = outboxes
            .entry(tenant.tenant.clone())
            .or_insert_with(|| TenantOutbox::empty(&tenant.tenant));
        outbox.pending = tenant.pending;
        outbox.oldest_pending_seconds = (now - tenant.oldest_created_at).max(0) as f64 / 1000.0;
    }
    for tenant in dead {
        outboxes
            .entry(tenant.tenant.clone())
            .or_insert_with(|| TenantOutbox::empty(&tenant.tenant))
            .dead = tenant.dead;
    }
    METRICS.set_outboxes(&outboxes.into_values().collect::<Vec<_>>());
    let ages: Vec<(String, f64)> = replicas
        .into_iter()
        .map(|r| (r.replica_id, (now - r.last_seen).max(0) as f64 / 1000.0))
        .collect();
    METRICS.set_replica_ages(&ages);
}

/// How long a store round trip may take before `/readyz` calls the store not ready.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /readyz`: ready when a write through the store's writer commits (so not while the disk
/// is full, the file is locked by another process, or the writer is stuck).
async fn readiness(state: &AppState) -> Result<Response<Body>, ApiError> {
    let store = state.outbox.store();
    let not_ready = |message: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_not_ready", message);
    let health = match tokio::time::timeout(READY_TIMEOUT, store.health()).await {
        Ok(Ok(health)) => health,
        Ok(Err(e)) => {
            tracing::warn!(error = format!("{e:#}"), "readiness: store round trip failed");
            return Err(not_ready("the store's writer could not complete a transaction".into()));
        }
        Err(_) => {
            return Err(not_ready(format!(
                "the store's writer did not answer within {} ms",
                READY_TIMEOUT.as_millis()
            )));
        }
    };
    let not_loaded = state.registry.not_loaded();
    if !not_loaded.is_empty() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "adapters_not_loaded",
            not_loaded.join("; "),
        ));
    }
    let mut store_json = serde_json::to_value(&health).expect("health serializes");
    store_json["lastCommitAgoMs"] = json!(store.last_commit_age().map(|age| age.as_millis() as u64));
    Ok(json_response(
        StatusCode::OK,
        &json!({ "status": "ready", "store": store_json, "adapters": state.registry.snapshot().all().len() }),
    ))
}
