//! Sending one adapter request: checked against the tenant's allowed origins, address ranges
//! and header caps, sent with the tenant's egress client, its answer read up to the response
//! size limit. `http.send` and wasi:http both end here.

use std::sync::Arc;

use tracing::Span;

use crate::config::Origin;
use crate::egress::check_literal_host;
use crate::runtime::{TenantHost, wit, wt};
use crate::telemetry;

/// Most headers one adapter HTTP request may carry.
pub const MAX_REQUEST_HEADERS: usize = 100;
/// Most bytes of header names and values one adapter HTTP request may carry.
pub const MAX_REQUEST_HEADER_BYTES: usize = 64 << 10;

/// Checks an adapter request's headers against [`MAX_REQUEST_HEADERS`] and
/// [`MAX_REQUEST_HEADER_BYTES`] before any is parsed: past them (an HTTP client's header map holds
/// at most 32 768) the request is refused, not the host brought down.
fn check_request_headers(headers: &[(String, String)]) -> Result<(), String> {
    if headers.len() > MAX_REQUEST_HEADERS {
        return Err(format!(
            "request has {} headers; at most {MAX_REQUEST_HEADERS} are allowed",
            headers.len()
        ));
    }
    let bytes: usize = headers.iter().map(|(name, value)| name.len() + value.len()).sum();
    if bytes > MAX_REQUEST_HEADER_BYTES {
        return Err(format!(
            "request headers take {bytes} bytes; at most {MAX_REQUEST_HEADER_BYTES} bytes are allowed"
        ));
    }
    Ok(())
}

/// Performs one adapter HTTP request after checking it against the tenant's grant, recording
/// it on `span` (see [`request_span`](super::request_span)): the method, the vendor's host
/// (redacted as the adapter's text is) and port, the status or the kind of failure; never the
/// path, the query, a header or a body. With `[tenants.telemetry] propagate`, the request
/// carries `span`'s `traceparent` instead of any the adapter set.
pub(in crate::runtime) async fn send_http(
    host: Arc<TenantHost>,
    request: wt::HttpRequest,
    span: Span,
) -> Result<wt::HttpResponse, wit::http::HttpError> {
    let result = send_checked(&host, request, &span).await;
    match &result {
        Ok(response) => {
            span.record("http.response.status_code", response.status);
            if response.status >= 500 {
                span.record("otel.status_code", "ERROR");
            }
        }
        Err(error) => telemetry::record_error(&span, error_kind(error)),
    }
    result
}

/// The `error.type` of a failed request.
fn error_kind(error: &wit::http::HttpError) -> &'static str {
    use wit::http::HttpError;
    match error {
        HttpError::Denied(_) => "denied",
        HttpError::Timeout => "timeout",
        HttpError::LimitExceeded(_) => "limit_exceeded",
        HttpError::Connection(_) => "connection",
    }
}

async fn send_checked(
    host: &TenantHost,
    request: wt::HttpRequest,
    span: &Span,
) -> Result<wt::HttpResponse, wit::http::HttpError> {
    use wit::http::HttpError;
    span.record("http.request.method", telemetry::method_name(&request.method));
    let url = url::Url::parse(&request.url).map_err(|e| HttpError::Denied(format!("invalid URL: {e}")))?;
    let origin = Origin::of(&url).ok_or_else(|| HttpError::Denied("only http and https URLs are allowed".into()))?;
    if !span.is_disabled() {
        span.record("server.address", host.secrets.redact(&origin.host));
        span.record("server.port", origin.port);
    }
    if !host.allowed_origins.contains(&origin) {
        return Err(HttpError::Denied(format!(
            "{}://{}:{} is not an allowed host for tenant `{}`",
            origin.scheme, origin.host, origin.port, host.tenant
        )));
    }
    check_literal_host(&url, host.allow_private_networks).map_err(HttpError::Denied)?;
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| HttpError::Denied(format!("invalid method `{}`", request.method)))?;
    let client = host
        .services
        .egress
        .for_tenant(&host.tenant, host.allow_private_networks)
        .map_err(HttpError::Connection)?;
    check_request_headers(&request.headers).map_err(HttpError::LimitExceeded)?;
    let mut builder = client.request(method, url).timeout(host.http_timeout);
    let traceparent = host.propagate_trace.then(|| telemetry::traceparent(span)).flatten();
    for (name, value) in &request.headers {
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection"
        ) {
            continue;
        }
        if traceparent.is_some() && matches!(lower.as_str(), telemetry::TRACEPARENT | "tracestate") {
            continue;
        }
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HttpError::Denied(format!("invalid header name `{name}`")))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| HttpError::Denied(format!("invalid value for header `{name}`")))?;
        builder = builder.header(name, value);
    }
    if let Some(traceparent) = traceparent {
        builder = builder.header(telemetry::TRACEPARENT, traceparent);
    }
    let mut response = builder.body(request.body).send().await.map_err(|e| {
        if e.is_timeout() {
            HttpError::Timeout
        } else {
            let description = describe_reqwest(&e);
            if description.contains("resolves only to loopback") {
                HttpError::Denied(description)
            } else {
                HttpError::Connection(description)
            }
        }
    })?;
    let status = response.status().as_u16();
    let headers = header_pairs(response.headers());
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > host.limits.http_response_bytes {
                    return Err(HttpError::LimitExceeded(format!(
                        "response body larger than {} bytes",
                        host.limits.http_response_bytes
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => return Err(HttpError::Timeout),
            Err(e) => return Err(HttpError::Connection(describe_reqwest(&e))),
        }
    }
    Ok(wt::HttpResponse { status, headers, body })
}

/// A header map as the WIT's list of (name, value) pairs; values that are not UTF-8 are
/// converted lossily.
pub fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn describe_reqwest(error: &reqwest::Error) -> String {
    let mut text = if error.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_headers_are_capped() {
        let headers = |n: usize, value: &str| -> Vec<(String, String)> {
            (0..n).map(|i| (format!("x-h{i}"), value.to_string())).collect()
        };
        assert!(check_request_headers(&headers(MAX_REQUEST_HEADERS, "v")).is_ok());
        let err = check_request_headers(&headers(MAX_REQUEST_HEADERS + 1, "v")).unwrap_err();
        assert!(err.contains("101 headers") && err.contains("at most 100"), "{err}");
        // What made reqwest panic: more header names than its header map holds.
        assert!(check_request_headers(&headers(40_000, "v")).is_err());
        let big = "v".repeat(MAX_REQUEST_HEADER_BYTES / 2);
        let err = check_request_headers(&headers(2, &big)).unwrap_err();
        assert!(err.contains("65536 bytes"), "{err}");
        assert!(check_request_headers(&headers(1, &big)).is_ok());
    }
}
