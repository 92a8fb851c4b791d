//! `/admin/...` (but `/admin/tenants/...`, the deployments): dead letters and outbox state,
//! behind the admin bearer token.

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, AppState, Body, auth, json_response, method_not_allowed, read_body_timed, store_unavailable};
use std::sync::atomic::Ordering;

use crate::contract::shorten;
use crate::runtime::WIT_PACKAGE;
use crate::store::DeadLetterFilter;

/// Routes `/admin/{rest}`.
pub async fn handle(state: &AppState, rest: &str, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    auth::admin(state, &request)?;
    let store = state.outbox.store();
    match (request.method().clone(), rest) {
        (Method::GET, "adapters") => {
            let tenants = state.registry.snapshot();
            let adapters: Vec<_> = tenants
                .all()
                .iter()
                .map(|t| {
                    json!({
                        "tenant": t.name,
                        "owner": t.owner,
                        "file": t.adapter.path.display().to_string(),
                        "source": state.registry.adapter_source(t),
                        "contentHash": t.adapter.content_hash,
                        "witVersion": format!("{}@{}", WIT_PACKAGE, t.adapter.wit_version),
                        "loadedAt": t.loaded_at.to_rfc3339(),
                        "calls": t.host.stats.calls.load(Ordering::Relaxed),
                        "errors": t.host.stats.errors.load(Ordering::Relaxed),
                        "adapterErrors": t.host.stats.adapter_errors.load(Ordering::Relaxed),
                        // While a canary runs: both versions' calls, failures and latency since
                        // it started, side by side.
                        "canary": state.registry.canary_status(&t.name),
                    })
                })
                .collect();
            let this = crate::cluster::ReplicaId::current();
            let replicas: Vec<_> = store
                .replicas()
                .await
                .map_err(store_unavailable)?
                .into_iter()
                .map(|r| {
                    let is_this = r.replica_id == this.as_str();
                    let mut entry = json!(r);
                    entry["self"] = json!(is_this);
                    entry
                })
                .collect();
            Ok(json_response(
                StatusCode::OK,
                &json!({ "replica": this.as_str(), "adapters": adapters, "replicas": replicas }),
            ))
        }
        (Method::POST, "reload") => match state.registry.reload().await {
            Ok(report) => Ok(json_response(StatusCode::OK, &json!(report))),
            Err(e) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "reload_rejected",
                format!("{e:#}"),
            )),
        },
        (Method::GET, "outbox") => {
            let stats = store.stats().await.map_err(store_unavailable)?;
            Ok(json_response(StatusCode::OK, &json!(stats)))
        }
        (Method::GET, "dead-letters") => {
            let query = Query::parse(request.uri().query());
            let limit = query.limit.unwrap_or(100).min(1000);
            let letters = store
                .dead_letters(query.tenant.as_deref(), limit)
                .await
                .map_err(store_unavailable)?;
            Ok(json_response(StatusCode::OK, &json!({ "deadLetters": letters })))
        }
        (Method::POST, "dead-letters/replay") => {
            let body = read_body_timed(state, request, 64 * 1024).await?;
            let (filter, to_tenant) = replay_filter(&body)?;
            if let Some(tenant) = &to_tenant
                && state.registry.snapshot().by_name(tenant).is_none()
            {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unknown_tenant",
                    format!("no tenant named `{}` to move the dead letters to", shorten(tenant)),
                ));
            }
            let replayed = store
                .replay(filter, to_tenant.as_deref())
                .await
                .map_err(store_unavailable)?;
            state.outbox.wake();
            Ok(json_response(StatusCode::OK, &json!({ "replayed": replayed })))
        }
        (Method::GET, path) if path.starts_with("dead-letters/") => {
            let id = &path["dead-letters/".len()..];
            match store.delivery(id).await.map_err(store_unavailable)? {
                Some(delivery) => Ok(json_response(StatusCode::OK, &json!(delivery))),
                None => Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no delivery `{id}`"),
                )),
            }
        }
        (_, "outbox" | "dead-letters" | "adapters") => Err(method_not_allowed("GET")),
        (_, "dead-letters/replay" | "reload") => Err(method_not_allowed("POST")),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no admin endpoint /admin/{rest}"),
        )),
    }
}

#[derive(Default)]
struct Query {
    tenant: Option<String>,
    limit: Option<usize>,
}

impl Query {
    fn parse(query: Option<&str>) -> Query {
        let mut parsed = Query::default();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "tenant" => parsed.tenant = Some(value.into_owned()),
                "limit" => parsed.limit = value.parse().ok(),
                _ => {}
            }
        }
        parsed
    }
}

/// `{"deliveryId": "..."}`, `{"tenant": "..."}` or `{"all": true}`, each with an optional
/// `"toTenant"` to move the dead letters to before they are retried.
fn replay_filter(body: &[u8]) -> Result<(DeadLetterFilter, Option<String>), ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Replay {
        delivery_id: Option<String>,
        tenant: Option<String>,
        #[serde(default)]
        all: bool,
        to_tenant: Option<String>,
    }
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_replay", message);
    let replay: Replay = serde_json::from_slice(body).map_err(|e| bad(format!("expected a JSON object: {e}")))?;
    let filter = match (replay.delivery_id, replay.tenant, replay.all) {
        (Some(id), None, false) => DeadLetterFilter::One(id),
        (None, Some(tenant), false) => DeadLetterFilter::Tenant(tenant),
        (None, None, true) => DeadLetterFilter::All,
        _ => return Err(bad("give exactly one of deliveryId, tenant, or all: true".into())),
    };
    Ok((filter, replay.to_tenant))
}
