//! `/vendors/{tenant}/...`: vendors' webhooks, checked by the tenant's webhook auth, mapped by
//! its adapter into Outgoing and Command events, and stored with the vendor's answer before it
//! is sent.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::field::Empty;
use tracing::{Instrument, Span};

use super::auth_throttle::Credential;
use super::vendor_answer::{vendor_answer, vendor_response};
use super::{ApiError, AppState, Body, auth, read_body_timed, store_unavailable};
use crate::contract::ThreeDolphinsEvent;
use crate::metrics::{METRICS, Metrics};
use crate::runtime::bindings::dolphin::bridge::types as wt;
use crate::runtime::{CallContext, CallError, complete_adapter_event, header_pairs};
use crate::store::{Direction, NewDelivery, StoredResponse, WebhookAccepted};
use crate::telemetry;
use crate::tenants::Tenant;
use crate::webhook_auth::{self, SignedRequest};

/// The client-facing error for a failed adapter call.
fn call_failed(error: CallError) -> ApiError {
    let (status, code) = match &error {
        CallError::RetryLater { .. } => (StatusCode::BAD_GATEWAY, "adapter_retry_later"),
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
///
/// Runs in span `webhook.receive` (the child of the request's `traceparent`, when it has one),
/// whose context is stored with the events it produced.
pub(super) async fn handle(
    state: &AppState,
    tenant_name: &str,
    path: String,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let span = telemetry::span(|| {
        tracing::info_span!("webhook.receive", otel.kind = "server", http.request.method = %telemetry::method_name(request.method().as_str()),
            http.route = "/vendors/{tenant}/*", tenant = Empty, delivery_id = Empty, events = Empty,
            duplicate = Empty, http.response.status_code = Empty, error.type = Empty, otel.status_code = Empty)
    });
    telemetry::continue_trace(&span, telemetry::traceparent_header(request.headers()));
    let result = receive(state, tenant_name, path, request, &span)
        .instrument(span.clone())
        .await;
    super::record_answer(&span, &result);
    result
}

/// Verifies, maps and stores one webhook; `span` is the request's.
async fn receive(
    state: &AppState,
    tenant_name: &str,
    path: String,
    request: Request<Incoming>,
    span: &Span,
) -> Result<Response<Body>, ApiError> {
    let tenants = state.registry.snapshot();
    let Some(tenant) = tenants.by_name(tenant_name).cloned() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_tenant",
            format!("no tenant named `{tenant_name}`"),
        ));
    };
    span.record("tenant", tenant.name.as_str());
    // Behind the failure limit of the tenant's webhook secret: a source locked out of it is
    // refused before its body is read.
    let source = auth::source(&request);
    let credential = Credential::WebhookAuth(tenant.name.clone());
    auth::refuse_locked_out(state, source, &credential)?;
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
        state.refusals.refused(&tenant.name, e.code(), || {
            tracing::warn!(tenant = %tenant.name, error = %e, "webhook refused");
        });
        if e.is_wrong_secret() {
            auth::count_failure(state, source, &credential);
        }
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
            span.record("duplicate", true);
            return Ok(answer_duplicate(&tenant, &first));
        }
    }
    // Each running webhook call holds an instance with up to the tenant's memory limit.
    let Ok(_slot) = tenant.host.webhook_slots.clone().try_acquire_owned() else {
        let limit = tenant.host.limits.webhook_concurrency;
        let code = "webhook_concurrency_limit";
        state.refusals.refused(&tenant.name, code, || {
            tracing::warn!(tenant = %tenant.name, limit, "webhook refused: too many running for the tenant");
        });
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            format!("{limit} webhook(s) of this tenant are being processed (limit webhook_concurrency); retry"),
        ));
    };
    let delivery_id = uuid::Uuid::now_v7().to_string();
    span.record("delivery_id", delivery_id.as_str());
    let ctx = CallContext {
        tenant: tenant.name.clone(),
        delivery_id: delivery_id.clone(),
        attempt: 1,
        lease: None,
    };
    // The bridge's webhook token is the vendor's credential to the bridge, not the adapter's.
    let (headers, query) = webhook_auth::without_token(&tenant.webhook, headers, query);
    let webhook = wt::WebhookRequest {
        method,
        path,
        query,
        headers,
        body: body.to_vec(),
    };
    // While a canary runs, the version of the ticket the vendor names, when it names one.
    let ticket = webhook_ticket(&tenant.webhook.ticket_pointers, &webhook.body);
    let serving = tenant.serving(ticket.as_deref());
    let outcome = state
        .registry
        .runtime()
        .call_webhook(serving.adapter, serving.host.clone(), serving.instances, ctx, webhook)
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
    span.record("events", outcome.events.len());
    // Every event of the webhook joins its trace when it is delivered.
    let trace_context = telemetry::traceparent(span);
    let mut deliveries = Vec::with_capacity(outcome.events.len());
    for keyed in outcome.events {
        // The vendor's own id of the event, in the tenant's namespace of event keys.
        let event_key = keyed.dedupe_key.filter(|k| !k.is_empty()).map(webhook_auth::bounded);
        let event = complete_event(state, &tenant, keyed.event).await?;
        deliveries.push(NewDelivery {
            delivery_id: uuid::Uuid::now_v7().to_string(),
            tenant: tenant.name.clone(),
            direction: Direction::ToThreeDolphins,
            ticket: event.ticket_number().to_string(),
            payload: serde_json::to_string(&event).expect("events serialize"),
            idempotency_key: None,
            event_key,
            ticket_info: None,
            owner: tenant.owner.clone(),
            trace_context: trace_context.clone(),
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
        let accepted = match accepted {
            // A concurrent retry of this webhook committed first; what this one produced is dropped.
            WebhookAccepted::Duplicate(first) => {
                span.record("duplicate", true);
                return Ok(answer_duplicate(&tenant, &first));
            }
            WebhookAccepted::New(accepted) => accepted,
        };
        let seen = accepted.iter().filter(|a| a.duplicate).count();
        if seen > 0 {
            tracing::info!(tenant = %tenant.name, %delivery_id, events = seen,
                "webhook events already received (same dedupe key): not stored again");
        }
        if events > seen {
            tracing::info!(tenant = %tenant.name, %delivery_id, events = events - seen, "webhook events accepted for 3Dolphins");
        }
    }
    Metrics::count(&METRICS.webhooks, &tenant.name, "accepted");
    Ok(vendor_response(&answer))
}

/// The 3Dolphins ticket a webhook's JSON `body` names at the first of `pointers` that holds a
/// string or a number; `None` without pointers (the body is then not parsed), when the body is
/// not JSON or when none holds one.
fn webhook_ticket(pointers: &[String], body: &[u8]) -> Option<String> {
    if pointers.is_empty() {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    pointers.iter().find_map(|pointer| match json.pointer(pointer)? {
        serde_json::Value::String(ticket) if !ticket.is_empty() => Some(ticket.clone()),
        serde_json::Value::Number(ticket) => Some(ticket.to_string()),
        _ => None,
    })
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

#[cfg(test)]
mod tests {
    use super::webhook_ticket;

    #[test]
    fn the_ticket_is_read_at_the_first_pointer_that_holds_one() {
        let pointers = [
            "/conversation/custom_attributes/ticket_number".to_string(),
            "/ticketNumber".to_string(),
        ];
        let chatwoot = br#"{"event":"message_created","conversation":{"custom_attributes":{"ticket_number":"T-9"}}}"#;
        assert_eq!(webhook_ticket(&pointers, chatwoot).as_deref(), Some("T-9"));
        assert_eq!(
            webhook_ticket(&pointers, br#"{"ticketNumber": 42}"#).as_deref(),
            Some("42")
        );
        assert_eq!(webhook_ticket(&pointers, br#"{"ticketNumber": ""}"#), None);
        assert_eq!(webhook_ticket(&pointers, b"not json"), None);
        assert_eq!(webhook_ticket(&[], br#"{"ticketNumber": "T-1"}"#), None);
    }
}
