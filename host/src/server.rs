//! The HTTP server: routing, body limits, the JSON error shape, and the two flows (3Dolphins
//! Incoming events and vendor webhooks).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use std::net::IpAddr;

use subtle::ConstantTimeEq;

use crate::config::{ServerConfig, network_contains, parse_network};
use crate::contract::{FieldError, IncomingEvent, ParseError, ThreeDolphinsEvent, shorten};
use crate::registry::AdapterRegistry;
use crate::runtime::bindings::dolphin::bridge::types as wt;
use crate::runtime::{CallContext, CallError, complete_adapter_event, header_pairs};
use crate::webhook_auth::{self, SignedRequest};

mod admin;
mod deployments;
mod status_page;
mod vendor_answer;

use crate::metrics::{METRICS, Metrics};
use crate::outbox::Outbox;
use crate::store::{Direction, NewDelivery, StoreError, StoredResponse, TicketInfo, WebhookAccepted};
use crate::tenants::Tenant;
pub use status_page::Sessions as StatusPageSessions;
use vendor_answer::{vendor_answer, vendor_response};

/// The response body type of every handler.
pub type Body = Full<Bytes>;

/// An error as every client sees it: `{"error": {"code", "message", "fields"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<FieldError>,
}

impl ApiError {
    /// An error without field details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// The HTTP response carrying this error.
    pub fn response(&self) -> Response<Body> {
        let mut error = json!({ "code": self.code, "message": self.message });
        if !self.fields.is_empty() {
            error["fields"] = serde_json::to_value(&self.fields).expect("fields serialize");
        }
        let mut response = json_response(self.status, &json!({ "error": error }));
        // These are answered before the body was read (or while it was too large or too slow);
        // the connection cannot be reused, so say so instead of closing it unannounced.
        if matches!(self.status.as_u16(), 401 | 403 | 404 | 405 | 408 | 413 | 415) {
            response
                .headers_mut()
                .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
        }
        if matches!(self.code, "store_busy" | "webhook_concurrency_limit") {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from_static("1"));
        }
        response
    }
}

/// A JSON response.
pub fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .expect("valid response")
}

/// What the request handlers share.
pub struct AppState {
    pub server: ServerConfig,
    pub registry: Arc<AdapterRegistry>,
    pub outbox: Arc<Outbox>,
    /// Bearer token of the `/admin/...` endpoints; they answer 404 when none is set.
    pub admin_token: Option<String>,
    /// Bearer token of `GET /metrics` (which names every tenant); open when none is set.
    pub metrics_token: Option<String>,
    /// The status page's logged-in sessions (in memory: a restart logs everyone out).
    pub sessions: StatusPageSessions,
}

/// Accepts connections on `listener` until `shutdown` is cancelled, then lets open requests
/// finish for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: CancellationToken,
    grace: Duration,
) -> anyhow::Result<()> {
    let header_timeout = Duration::from_millis(state.server.header_read_timeout_ms);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        let service = hyper::service::service_fn(move |request| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(&state, peer.ip(), request).await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(64 * 1024)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("open connections did not finish within the shutdown grace period");
    }
    Ok(())
}

/// Routes one request from `peer`.
pub async fn handle(state: &AppState, peer: IpAddr, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_string();
    let result = if path == state.server.incoming_path {
        match *request.method() {
            Method::POST => match authorize_incoming(state, peer, &request) {
                Ok(()) => handle_incoming(state, request).await,
                Err(e) => Err(e),
            },
            _ => Err(method_not_allowed("POST")),
        }
    } else if let Some(rest) = path.strip_prefix("/vendors/") {
        let (tenant, sub_path) = match rest.split_once('/') {
            Some((tenant, sub)) => (tenant.to_string(), format!("/{sub}")),
            None => (rest.to_string(), "/".to_string()),
        };
        handle_webhook(state, &tenant, sub_path, request).await
    } else if status_page::owns(&path) {
        status_page::handle(state, &path, request).await
    } else if let Some(rest) = path.strip_prefix("/admin/") {
        let rest = rest.to_string();
        admin::handle(state, &rest, request).await
    } else if path == "/healthz" || path == "/readyz" || path == "/metrics" {
        if request.method() != Method::GET {
            Err(method_not_allowed("GET"))
        } else if path == "/healthz" {
            Ok(json_response(StatusCode::OK, &json!({ "status": "ok" })))
        } else if path == "/readyz" {
            readiness(state).await
        } else if let Some(token) = &state.metrics_token
            && !admin::bearer_matches(&request, token)
        {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid metrics bearer token is required",
            ))
        } else {
            Ok(Response::builder()
                .header(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
                .body(Full::new(Bytes::from(METRICS.encode())))
                .expect("valid response"))
        }
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no endpoint at {path}"),
        ))
    };
    result.unwrap_or_else(|error| {
        Metrics::count(&METRICS.refused, "", error.code);
        error.response()
    })
}

fn method_not_allowed(allowed: &str) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this endpoint accepts {allowed}"),
    )
}

/// Checks the Incoming endpoint's source network and credential (constant-time).
fn authorize_incoming(state: &AppState, peer: IpAddr, request: &Request<Incoming>) -> Result<(), ApiError> {
    let networks = &state.server.incoming_networks;
    if !networks.is_empty()
        && !networks
            .iter()
            .filter_map(|n| parse_network(n).ok())
            .any(|n| network_contains(n, peer))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_network",
            "this source address may not call the Incoming endpoint",
        ));
    }
    let Some(token) = state.server.incoming_token.as_deref().filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let headers = request.headers();
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-bridge-token").and_then(|v| v.to_str().ok()));
    match given {
        Some(given) if bool::from(given.as_bytes().ct_eq(token.as_bytes())) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credential",
            "the credential does not match",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_credential",
            "send Authorization: Bearer <token> or X-Bridge-Token",
        )),
    }
}

/// Reads the whole body within the body read timeout, refusing more than `limit` bytes.
async fn read_body_timed(state: &AppState, request: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let timeout = Duration::from_millis(state.server.body_read_timeout_ms);
    match tokio::time::timeout(timeout, read_body(request, limit)).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the body did not arrive within {} ms", timeout.as_millis()),
        )),
    }
}

/// Reads the whole body, refusing more than `limit` bytes.
async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "body_unreadable",
            format!("could not read the body: {e}"),
        )),
    }
}

/// `POST {incoming_path}`: a customer message from 3Dolphins.
async fn handle_incoming(state: &AppState, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    if let Some(content_type) = request.headers().get(header::CONTENT_TYPE) {
        let essence = content_type
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Content-Type must be application/json",
            ));
        }
    }
    let idempotency_key = request
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        // Hashed: any length is kept apart from every other key, and stored in 64 bytes.
        .map(|k| format!("header:{}", hex::encode(Sha256::digest(k.as_bytes()))));
    let body = read_body_timed(state, request, state.server.max_body_bytes).await?;
    let event = IncomingEvent::parse(&body).map_err(|e| match e {
        ParseError::Malformed(message) => ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", message),
        ParseError::Invalid(fields) => ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_event",
            message: format!("{} invalid field(s)", fields.len()),
            fields,
        },
    })?;
    let tenants = state.registry.snapshot();
    let Some(tenant) = tenants.route(&event.owner, &event.channel).cloned() else {
        let (owner, channel) = (shorten(&event.owner), shorten(&event.channel));
        let (field, message) = if tenants.knows_owner(&event.owner) {
            (
                "channel",
                format!("no tenant of owner `{owner}` serves channel `{channel}`"),
            )
        } else {
            ("owner", format!("no tenant serves owner `{owner}`"))
        };
        return Err(ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "unknown_tenant",
            message: message.clone(),
            fields: vec![FieldError {
                field: field.into(),
                message,
            }],
        });
    };
    let delivery = NewDelivery {
        delivery_id: uuid::Uuid::now_v7().to_string(),
        tenant: tenant.name.clone(),
        direction: Direction::ToVendor,
        ticket: event.ticket_number.clone(),
        payload: serde_json::to_string(&event).expect("events serialize"),
        idempotency_key: Some(idempotency_key.unwrap_or_else(|| body_key(&body))),
        owner: event.owner.clone(),
        ticket_info: Some(TicketInfo {
            channel: event.channel.clone(),
            customer_name: event.customer_name.clone(),
            contact_id: event.contact_id.clone(),
        }),
    };
    let accepted = state.outbox.accept(vec![delivery]).await.map_err(store_unavailable)?;
    let accepted = &accepted[0];
    let outcome = if accepted.duplicate { "duplicate" } else { "accepted" };
    Metrics::count(&METRICS.incoming, &tenant.name, outcome);
    tracing::info!(tenant = %tenant.name, delivery_id = %accepted.delivery_id, ticket = %event.ticket_number,
        duplicate = accepted.duplicate, "incoming event accepted");
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({ "status": "success", "deliveryId": accepted.delivery_id, "duplicate": accepted.duplicate }),
    ))
}

/// The idempotency key of a body without an `Idempotency-Key` header: a hash of its JSON with
/// object keys sorted, so the same event re-sent is recognised however its fields are ordered.
fn body_key(body: &[u8]) -> String {
    fn canonical(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<_> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    canonical(&map[key], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut text = String::new();
    canonical(&value, &mut text);
    format!("body:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

pub(crate) fn store_unavailable(error: anyhow::Error) -> ApiError {
    if error.downcast_ref::<StoreError>() == Some(&StoreError::Busy) {
        tracing::warn!("store busy: refusing a write");
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_busy",
            "the bridge's store is not keeping up; retry after the Retry-After delay",
        );
    }
    tracing::error!(error = format!("{error:#}"), "store failure");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the bridge's store failed; retry",
    )
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

/// The client-facing error for a failed adapter call.
fn call_failed(error: CallError) -> ApiError {
    let (status, code) = match &error {
        CallError::RetryLater(_) => (StatusCode::BAD_GATEWAY, "adapter_retry_later"),
        CallError::Permanent(_) => (StatusCode::BAD_GATEWAY, "adapter_permanent"),
        CallError::Trapped(_) | CallError::Instantiate(_) => (StatusCode::BAD_GATEWAY, "adapter_trapped"),
        CallError::LimitExceeded(_) => (StatusCode::BAD_GATEWAY, "adapter_limit_exceeded"),
        CallError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "adapter_timeout"),
        CallError::CircuitOpen(_) => (StatusCode::SERVICE_UNAVAILABLE, "adapter_circuit_open"),
    };
    ApiError::new(status, code, error.to_string())
}

/// `/vendors/{tenant}/...`: a vendor webhook, mapped by the tenant's adapter.
///
/// A webhook whose dedupe key (the vendor's id of it, see [`webhook_auth::verify`]) was answered
/// within `delivery.webhook_dedupe_window_ms` gets that answer again, and nothing runs or is
/// stored. Otherwise the adapter runs and the vendor is answered once its events are committed
/// together with the key and the answer; when the bridge answers an error instead (adapter
/// failure, store failure) nothing is recorded, so the vendor's retry is processed afresh.
async fn handle_webhook(
    state: &AppState,
    tenant_name: &str,
    path: String,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let tenants = state.registry.snapshot();
    let Some(tenant) = tenants.by_name(tenant_name).cloned() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_tenant",
            format!("no tenant named `{tenant_name}`"),
        ));
    };
    let method = request.method().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let headers = header_pairs(request.headers());
    let body = read_body_timed(state, request, state.server.max_body_bytes).await?;
    let signed = SignedRequest {
        headers: &headers,
        query: &query,
        body: &body,
    };
    let now = chrono::Utc::now().timestamp();
    let keys = webhook_auth::verify(&tenant.webhook, &signed, now).map_err(|e| {
        tracing::warn!(tenant = %tenant.name, error = %e, "webhook refused");
        ApiError::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string())
    })?;
    if !keys.is_empty() {
        let window = state.outbox.webhook_dedupe_window();
        let first = state
            .outbox
            .store()
            .webhook_response(&tenant.name, &keys, window)
            .await
            .map_err(store_unavailable)?;
        if let Some(first) = first {
            return Ok(answer_duplicate(&tenant, &first));
        }
    }
    // Each running webhook call holds an instance with up to the tenant's memory limit.
    let Ok(_slot) = tenant.host.webhook_slots.clone().try_acquire_owned() else {
        let limit = tenant.host.limits.webhook_concurrency;
        tracing::warn!(tenant = %tenant.name, limit, "webhook refused: too many running for the tenant");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "webhook_concurrency_limit",
            format!("{limit} webhook(s) of this tenant are being processed (limit webhook_concurrency); retry"),
        ));
    };
    let delivery_id = uuid::Uuid::now_v7().to_string();
    let ctx = CallContext {
        tenant: tenant.name.clone(),
        delivery_id: delivery_id.clone(),
        attempt: 1,
    };
    let webhook = wt::WebhookRequest {
        method,
        path,
        query,
        headers,
        body: body.to_vec(),
    };
    let outcome = state
        .registry
        .runtime()
        .call_webhook(&tenant.adapter, tenant.host.clone(), &tenant.instances, ctx, webhook)
        .await
        .map_err(|error| {
            tracing::warn!(tenant = %tenant.name, %delivery_id, %error, "webhook not mapped");
            // The webhook endpoint is public: the adapter's error stays in the log.
            let mut api_error = call_failed(error);
            api_error.message = format!("the adapter could not process this webhook (delivery id {delivery_id})");
            api_error
        })?;
    let limit = tenant.host.limits.webhook_events;
    if outcome.events.len() > limit {
        tracing::warn!(tenant = %tenant.name, %delivery_id, events = outcome.events.len(), limit,
            "webhook refused: the adapter produced more events than its limit");
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "adapter_limit_exceeded",
            format!(
                "the adapter produced more than {limit} events for one webhook (limit webhook_events; delivery id {delivery_id})"
            ),
        ));
    }
    let answer = vendor_answer(outcome.response);
    let mut deliveries = Vec::with_capacity(outcome.events.len());
    for event in outcome.events {
        let event = complete_event(state, &tenant, event).await?;
        deliveries.push(NewDelivery {
            delivery_id: uuid::Uuid::now_v7().to_string(),
            tenant: tenant.name.clone(),
            direction: Direction::ToThreeDolphins,
            ticket: event.ticket_number().to_string(),
            payload: serde_json::to_string(&event).expect("events serialize"),
            idempotency_key: None,
            ticket_info: None,
            owner: tenant.owner.clone(),
        });
    }
    let events = deliveries.len();
    // An adapter's 408, 429 or 5xx without events asks the vendor to send the webhook again:
    // that retry must run the adapter, so the answer is not recorded.
    let asks_for_retry = matches!(answer.status, 408 | 429 | 500..);
    let record = events > 0 || (!keys.is_empty() && !asks_for_retry);
    if record {
        let accepted = state
            .outbox
            .accept_webhook(&tenant.name, &keys, answer.clone(), deliveries)
            .await
            .map_err(store_unavailable)?;
        if let WebhookAccepted::Duplicate(first) = accepted {
            // A concurrent retry of this webhook committed first; what this one produced is dropped.
            return Ok(answer_duplicate(&tenant, &first));
        }
        if events > 0 {
            tracing::info!(tenant = %tenant.name, %delivery_id, events, "webhook events accepted for 3Dolphins");
        }
    }
    Metrics::count(&METRICS.webhooks, &tenant.name, "accepted");
    Ok(vendor_response(&answer))
}

/// The answer to a webhook the tenant's vendor sent before: the first one's, unchanged.
fn answer_duplicate(tenant: &Tenant, first: &StoredResponse) -> Response<Body> {
    tracing::info!(tenant = %tenant.name, status = first.status, "webhook already received: answered as the first time");
    Metrics::count(&METRICS.webhooks, &tenant.name, "duplicate");
    vendor_response(first)
}

/// Completes an adapter's event into what 3Dolphins expects (see [`complete_adapter_event`]),
/// looking the ticket up in the store.
async fn complete_event(
    state: &AppState,
    tenant: &Tenant,
    event: wt::BridgeEvent,
) -> Result<ThreeDolphinsEvent, ApiError> {
    let invalid = |message: String| ApiError::new(StatusCode::BAD_GATEWAY, "adapter_invalid_event", message);
    let ticket_number = match &event {
        wt::BridgeEvent::Outgoing(e) => &e.ticket_number,
        wt::BridgeEvent::Command(e) => &e.ticket_number,
    };
    if ticket_number.trim().is_empty() {
        return Err(invalid("the adapter produced an event without a ticket number".into()));
    }
    let known = state
        .registry
        .services()
        .store
        .ticket(&tenant.owner, ticket_number)
        .await
        .map_err(store_unavailable)?;
    complete_adapter_event(&tenant.owner, known.as_ref(), event).map_err(invalid)
}
