//! Traces: one per event, from the request that brought it (an Incoming POST or a vendor
//! webhook) through every delivery attempt, the adapter call and its host calls, to the vendor
//! or 3Dolphins. Spans are `tracing` spans, made into OpenTelemetry spans and exported over
//! OTLP/HTTP by [`Exporter`] when `[telemetry] otlp_endpoint` is set; with traces off no span is
//! made at all ([`span`] gives [`Span::none`]).
//!
//! A trace crosses the store as a W3C `traceparent` ([`traceparent`], [`continue_trace`]): the
//! accepting span's is stored with the event, and each attempt, on whichever replica and
//! however late, is its child. A `traceparent` header on an Incoming request or a webhook is
//! continued the same way. Spans carry identifiers, methods, hosts, statuses and outcomes:
//! never a header value, a body, a query string or an adapter's free text.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

mod export;
mod log_format;

pub use export::Exporter;
pub use log_format::WithTraceId;

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// Whether spans are made (set once, when the exporter starts).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether traces are on in this process.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The span `make` builds when traces are on, else a disabled span (nothing is recorded, and
/// the fields `make` would have computed are not).
pub fn span(make: impl FnOnce() -> Span) -> Span {
    if enabled() { make() } else { Span::none() }
}

/// Makes `span` (just created, not yet entered) a child of the remote span `traceparent` names;
/// an absent or malformed one leaves it a root.
pub fn continue_trace(span: &Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent.filter(|_| !span.is_disabled()) else {
        return;
    };
    let carrier = HashMap::from([(TRACEPARENT.to_string(), traceparent.trim().to_string())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        // Fails only for a span already started, which callers never pass.
        let _ = span.set_parent(context);
    }
}

/// The `traceparent` header of a request, if it has one that is text.
pub fn traceparent_header(headers: &http::HeaderMap) -> Option<&str> {
    headers.get(TRACEPARENT).and_then(|v| v.to_str().ok())
}

/// `span`'s W3C `traceparent` (`00-{trace id}-{span id}-{flags}`), or `None` when traces are
/// off or the span is disabled.
pub fn traceparent(span: &Span) -> Option<String> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Marks `span` failed, with `kind` (a fixed word such as `timeout`, never free text) as its
/// `error.type` and status description.
pub fn record_error(span: &Span, kind: &str) {
    span.record("error.type", kind);
    span.record("otel.status_code", "ERROR");
}

/// An HTTP method as a span records it: a standard method as it is, any other `_OTHER` (as
/// OpenTelemetry's conventions say: a method is the adapter's text).
pub fn method_name(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("_OTHER")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_traces_spans_are_disabled_and_carry_no_context() {
        let span = span(|| tracing::info_span!("never"));
        assert!(span.is_disabled());
        assert_eq!(traceparent(&span), None);
        continue_trace(&span, Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    }

    #[test]
    fn only_standard_methods_are_named() {
        assert_eq!(method_name("POST"), "POST");
        assert_eq!(method_name("post"), "_OTHER");
        assert_eq!(method_name("X-TOKEN-s3cr3t"), "_OTHER");
    }

    #[test]
    fn a_traceparent_header_is_read_when_it_is_text() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(traceparent_header(&headers), None);
        headers.insert(TRACEPARENT, "00-a-b-01".parse().unwrap());
        assert_eq!(traceparent_header(&headers), Some("00-a-b-01"));
    }
}
