//! Standard HTTP for adapters: `wasi:http/outgoing-handler`, what `fetch()` in JavaScript and a
//! wasi:http client in Rust call, served by the same policy as the `http` import. [`OutgoingHttp`]
//! is wasmtime-wasi-http's hooks object for a call, and its one policy point: every request a
//! guest sends through wasi:http reaches [`OutgoingHttp::send_request`], which counts it against
//! the call's request budget (shared with `http.send`), and sends it with `http.send`'s own code:
//! the tenant's allowed origins, address ranges, header caps, timeout and response size. The
//! bridge never sends a request with wasmtime-wasi-http's own client.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use wasmtime_wasi_http::{Error as WasiHttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::bindings::dolphin::bridge::http::HttpError;
use super::bindings::dolphin::bridge::types as wt;
use super::imports::http::send_http;
use super::TenantHost;
use crate::clock::Deadline;
use crate::runtime::adapter_log::loggable;

/// Why a request was not admitted to the network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The delivery's lease ended: another replica may be making it now.
    #[error("the delivery's lease has ended: the request is not sent")]
    LeaseEnded,
    /// The call made as many requests as `limits.http_calls` allows.
    #[error("limit of {0} HTTP requests per call reached")]
    TooManyRequests(u32),
}

/// The outbound HTTP of one call: its budget and the tenant whose policy applies.
pub struct OutgoingHttp {
    host: Arc<TenantHost>,
    /// The runtime that performs host calls which wait for the network.
    io: tokio::runtime::Handle,
    lease: Option<Arc<Deadline>>,
    /// The delivery the call makes, named in the log line of a denied request.
    delivery_id: String,
    sent: u32,
}

impl OutgoingHttp {
    /// The outbound HTTP of a call for `host`'s tenant, with no request made yet.
    pub fn new(
        host: Arc<TenantHost>,
        io: tokio::runtime::Handle,
        lease: Option<Arc<Deadline>>,
        delivery_id: String,
    ) -> Self {
        OutgoingHttp {
            host,
            io,
            lease,
            delivery_id,
            sent: 0,
        }
    }

    /// Counts one request against the call's budget, or says why it may not be sent.
    pub fn admit(&mut self) -> Result<(), Refusal> {
        if self.lease.as_ref().is_some_and(|lease| lease.passed()) {
            return Err(Refusal::LeaseEnded);
        }
        self.sent += 1;
        if self.sent > self.host.limits.http_calls {
            return Err(Refusal::TooManyRequests(self.host.limits.http_calls));
        }
        Ok(())
    }
}

/// The result `send_request` hands wasmtime-wasi-http: the response, and the future that reports
/// errors of its body (none: the body is read before the response is given).
type Sent = Result<(http::Response<WasiBody>, Box<dyn Future<Output = Result<(), WasiHttpError>> + Send>), WasiHttpError>;

impl WasiHttpHooks for OutgoingHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), WasiHttpError>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let admitted = self.admit();
        let host = self.host.clone();
        let io = self.io.clone();
        let delivery_id = self.delivery_id.clone();
        Box::new(async move {
            if let Err(refusal) = admitted {
                return Err(WasiHttpError::InternalError(Some(refusal.to_string())));
            }
            let request = into_wit_request(request, host.limits.memory_bytes).await?;
            let sent = io
                .spawn(send_http(host.clone(), request))
                .await
                .map_err(|e| WasiHttpError::InternalError(Some(format!("the request failed: {e}"))))?;
            let response = sent.map_err(|error| into_wasi_error(error, &host, &delivery_id))?;
            let body: WasiBody = Full::new(Bytes::from(response.body))
                .map_err(|never| match never {})
                .boxed_unsync();
            let mut built = http::Response::builder().status(response.status);
            for (name, value) in &response.headers {
                built = built.header(name, value);
            }
            let built = built
                .body(body)
                .map_err(|e| WasiHttpError::InternalError(Some(format!("the vendor's answer: {e}"))))?;
            Ok((built, Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

/// A wasi:http request as the `http` import's record, its body read whole (at most
/// `max_body_bytes`, which bounds what `http.send` takes too: the guest's memory).
async fn into_wit_request(request: http::Request<WasiBody>, max_body_bytes: usize) -> Result<wt::HttpRequest, WasiHttpError> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, max_body_bytes)
        .collect()
        .await
        .map_err(|_| WasiHttpError::HttpRequestBodySize(Some(max_body_bytes as u64)))?
        .to_bytes();
    let mut headers = Vec::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let value = value.to_str().map_err(|_| WasiHttpError::HttpRequestHeaderSize {
            field_name: Some(name.to_string()),
            field_size: None,
        })?;
        headers.push((name.to_string(), value.to_string()));
    }
    Ok(wt::HttpRequest {
        method: parts.method.to_string(),
        url: parts.uri.to_string(),
        headers,
        body: body.to_vec(),
    })
}

/// The wasi:http error code for an `http.send` error. A denial's reason (which origin, which
/// range) has no place in wasi:http's `HTTP-request-denied`: it is logged, redacted, as
/// `http.send`'s caller logs it.
fn into_wasi_error(error: HttpError, host: &TenantHost, delivery_id: &str) -> WasiHttpError {
    match error {
        HttpError::Denied(reason) => {
            let reason = loggable(&reason, &host.secrets);
            tracing::warn!(tenant = %host.tenant, %delivery_id, %reason, "adapter HTTP request denied (wasi:http)");
            WasiHttpError::HttpRequestDenied
        }
        HttpError::Timeout => WasiHttpError::HttpResponseTimeout,
        HttpError::LimitExceeded(what) => WasiHttpError::InternalError(Some(what)),
        HttpError::Connection(what) => WasiHttpError::InternalError(Some(loggable(&what, &host.secrets))),
    }
}
