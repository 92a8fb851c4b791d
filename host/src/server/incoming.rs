//! `POST {incoming_path}`: 3Dolphins' Incoming events (a customer wrote), checked, stored in the
//! outbox before they are acknowledged, and delivered to the tenant's adapter later.

use std::net::IpAddr;

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracing::field::Empty;
use tracing::{Instrument, Span};

use super::auth::tokens_match;
use super::{ApiError, AppState, Body, json_response, read_body_timed, store_unavailable};
use crate::config::{network_contains, parse_network};
use crate::contract::{FieldError, IncomingEvent, ParseError, shorten};
use crate::metrics::{METRICS, Metrics};
use crate::store::{Direction, NewDelivery, TicketInfo};
use crate::telemetry;

/// Checks the Incoming endpoint's source network and credential (constant-time).
pub(super) fn authorize(state: &AppState, peer: IpAddr, request: &Request<Incoming>) -> Result<(), ApiError> {
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
        Some(given) if tokens_match(given, token) => Ok(()),
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

/// `POST {incoming_path}`: a customer message from 3Dolphins, in span `incoming.accept` (the
/// child of the request's `traceparent`, when it has one).
pub(super) async fn handle(state: &AppState, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let span = telemetry::span(|| {
        tracing::info_span!("incoming.accept", otel.kind = "server", http.request.method = "POST",
            http.route = %state.server.incoming_path, tenant = Empty, delivery_id = Empty, ticket = Empty,
            duplicate = Empty, http.response.status_code = Empty, error.type = Empty, otel.status_code = Empty)
    });
    telemetry::continue_trace(&span, telemetry::traceparent_header(request.headers()));
    let result = accept(state, request, &span).instrument(span.clone()).await;
    super::record_answer(&span, &result);
    result
}

/// Checks, routes and stores the event; `span` is the request's.
async fn accept(state: &AppState, request: Request<Incoming>, span: &Span) -> Result<Response<Body>, ApiError> {
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
            retry_after_s: None,
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
            retry_after_s: None,
        });
    };
    span.record("tenant", tenant.name.as_str());
    span.record("ticket", event.ticket_number.as_str());
    let delivery = NewDelivery {
        delivery_id: uuid::Uuid::now_v7().to_string(),
        tenant: tenant.name.clone(),
        direction: Direction::ToVendor,
        ticket: event.ticket_number.clone(),
        payload: serde_json::to_string(&event).expect("events serialize"),
        idempotency_key: Some(idempotency_key.unwrap_or_else(|| body_key(&body))),
        event_key: None,
        owner: event.owner.clone(),
        ticket_info: Some(TicketInfo {
            channel: event.channel.clone(),
            customer_name: event.customer_name.clone(),
            contact_id: event.contact_id.clone(),
        }),
        trace_context: telemetry::traceparent(span),
    };
    let accepted = state.outbox.accept(vec![delivery]).await.map_err(store_unavailable)?;
    let accepted = &accepted[0];
    span.record("delivery_id", accepted.delivery_id.as_str());
    span.record("duplicate", accepted.duplicate);
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
