//! The outbound HTTP of one adapter call, whichever way the guest asks: the `http` import
//! (`http.send`) or standard HTTP, `wasi:http/outgoing-handler` (what `fetch()` in JavaScript and
//! wasi:http clients in Rust call). [`OutgoingHttp`] is the one policy point of both: it admits
//! each request against the call's budget and lease, and [`send_http`] sends it under the
//! tenant's allowed origins, address ranges, header caps, timeout and response size. For
//! wasi:http it is wasmtime-wasi-http's hooks object (`wasi_hooks`): the bridge never sends a
//! request with wasmtime-wasi-http's own client.

use std::sync::Arc;

use tracing::Span;
use tracing::field::Empty;

use super::TenantHost;
use crate::clock::Deadline;
use crate::telemetry;

pub(super) use send::send_http;
pub use send::{MAX_REQUEST_HEADER_BYTES, MAX_REQUEST_HEADERS, header_pairs};

mod send;
mod wasi_hooks;

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

impl Refusal {
    /// The span's `error.type` for it.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::LeaseEnded => "lease_ended",
            Refusal::TooManyRequests(_) => "limit_exceeded",
        }
    }
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

/// The span of one adapter request, a child of the call's (the current span, while the guest
/// runs); `api` is how the adapter asked (`http.send` or `wasi:http`). [`send_http`] records
/// the method, the vendor's host and port, and the status.
pub(super) fn request_span(api: &'static str) -> Span {
    telemetry::span(|| {
        tracing::info_span!("http.send", otel.kind = "client", adapter.api = api, http.request.method = Empty,
            server.address = Empty, server.port = Empty, http.response.status_code = Empty, error.type = Empty,
            otel.status_code = Empty)
    })
}
