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
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use std::net::IpAddr;

use crate::config::ServerConfig;
use crate::contract::FieldError;
use crate::registry::AdapterRegistry;

mod admin;
mod auth;
mod auth_throttle;
mod deployments;
mod incoming;
mod probes;
mod refusal_log;
mod status_page;
mod upload_slots;
mod vendor_answer;
mod webhooks;

pub use auth_throttle::{AuthThrottle, ThrottleLimits};
pub use refusal_log::RefusalLog;
pub use upload_slots::UploadSlots;

use crate::metrics::{METRICS, Metrics};
use crate::outbox::Outbox;
use crate::store::StoreError;
pub use status_page::Sessions as StatusPageSessions;

/// The response body type of every handler.
pub type Body = Full<Bytes>;

/// An error as every client sees it: `{"error": {"code", "message", "fields"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<FieldError>,
    /// Seconds for the `Retry-After` header, when the refusal says when to come back.
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    /// An error without field details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
            retry_after_s: None,
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
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from(seconds));
        } else if matches!(self.code, "store_busy" | "webhook_concurrency_limit") {
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
    /// Deploy uploads under way (`[deployments] max_uploads`, `max_uploads_per_tenant`).
    pub uploads: UploadSlots,
    /// Failed credentials per source, and the lockouts they earn (`[server] auth_failure_*`).
    pub auth_throttle: AuthThrottle,
    /// Which refusals are logged one by one, and the summaries of the others.
    pub refusals: RefusalLog,
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
    let summaries = tokio::spawn({
        let state = state.clone();
        async move { state.refusals.summarize().await }
    });
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
    summaries.abort();
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("open connections did not finish within the shutdown grace period");
    }
    Ok(())
}

/// Routes one request from `peer`.
pub async fn handle(state: &AppState, peer: IpAddr, mut request: Request<Incoming>) -> Response<Body> {
    // The credential checks count failures per source (see `auth_throttle`).
    request.extensions_mut().insert(auth::Peer(peer));
    let path = request.uri().path().to_string();
    let result = if path == state.server.incoming_path {
        match *request.method() {
            Method::POST => match auth::throttled(state, &request, auth_throttle::Credential::IncomingToken, || {
                incoming::authorize(state, peer, &request)
            }) {
                Ok(()) => incoming::handle(state, request).await,
                Err(e) => Err(e),
            },
            _ => Err(method_not_allowed("POST")),
        }
    } else if let Some(rest) = path.strip_prefix("/vendors/") {
        let (tenant, sub_path) = match rest.split_once('/') {
            Some((tenant, sub)) => (tenant.to_string(), format!("/{sub}")),
            None => (rest.to_string(), "/".to_string()),
        };
        webhooks::handle(state, &tenant, sub_path, request).await
    } else if status_page::owns(&path) {
        status_page::handle(state, &path, request).await
    } else if let Some(rest) = path.strip_prefix("/admin/tenants/") {
        // Deployments take tenants' deploy tokens as well as the admin token.
        let rest = rest.to_string();
        deployments::handle(state, &rest, request).await
    } else if let Some(rest) = path.strip_prefix("/admin/") {
        let rest = rest.to_string();
        admin::handle(state, &rest, request).await
    } else if probes::owns(&path) {
        probes::handle(state, &path, &request).await
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

/// Reads the whole body within the body read timeout, refusing more than `limit` bytes.
async fn read_body_timed(state: &AppState, request: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let timeout = Duration::from_millis(state.server.body_read_timeout_ms);
    read_body_within(request, limit, timeout).await
}

/// Reads the whole body within `timeout`, refusing more than `limit` bytes.
async fn read_body_within(request: Request<Incoming>, limit: usize, timeout: Duration) -> Result<Bytes, ApiError> {
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

/// Records a request's answer on its server span: the status, and for an error its code as
/// `error.type` (a 5xx marks the span failed).
fn record_answer(span: &tracing::Span, result: &Result<Response<Body>, ApiError>) {
    let status = match result {
        Ok(response) => response.status(),
        Err(error) => {
            span.record("error.type", error.code);
            error.status
        }
    };
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

/// The client-facing error for a store that failed or is not keeping up.
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
