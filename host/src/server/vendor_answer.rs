//! What an adapter may answer a vendor's webhook with. The answer goes out on the bridge's own
//! origin, so an adapter must not be able to set cookies, redirect, serve HTML or open CORS
//! there: the status passes (1xx becomes 200), the content type only when it is JSON or plain
//! text, a few harmless headers pass, and every answer says `nosniff`.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;

use super::Body;
use crate::runtime::bindings::dolphin::bridge::types as wt;
use crate::store::StoredResponse;

/// Headers an adapter may set on its answer besides `Content-Type`.
const PASSED_HEADERS: [&str; 3] = ["retry-after", "cache-control", "x-request-id"];
/// Content types an adapter may answer with (their essence, parameters allowed).
const PASSED_CONTENT_TYPES: [&str; 2] = ["application/json", "text/plain"];
/// What a content type outside that list becomes.
const FALLBACK_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// The adapter's answer as the vendor gets it (and gets it again on a retry), after the policy
/// above; headers that are not valid HTTP are left out.
pub(super) fn vendor_answer(response: wt::HttpResponse) -> StoredResponse {
    let status = match StatusCode::from_u16(response.status) {
        Ok(status) if !status.is_informational() => status,
        _ => StatusCode::OK,
    };
    let mut headers = Vec::new();
    for (name, value) in response.headers {
        let lower = name.to_ascii_lowercase();
        if http::HeaderValue::from_str(&value).is_err() {
            continue;
        }
        if lower == "content-type" {
            let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            let value = if PASSED_CONTENT_TYPES.contains(&essence.as_str()) {
                value
            } else {
                FALLBACK_CONTENT_TYPE.to_string()
            };
            headers.push((lower, value));
        } else if PASSED_HEADERS.contains(&lower.as_str()) {
            headers.push((lower, value));
        }
    }
    StoredResponse {
        status: status.as_u16(),
        headers,
        body: response.body,
    }
}

/// The HTTP response carrying a webhook's `answer`.
pub(super) fn vendor_response(answer: &StoredResponse) -> Response<Body> {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut builder = Response::builder()
        .status(status)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    for (name, value) in &answer.headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            builder = builder.header(name, value);
        }
    }
    builder
        .body(Full::new(Bytes::from(answer.body.clone())))
        .expect("status and headers were checked")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)]) -> Response<Body> {
        let response = wt::HttpResponse {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: b"<script>alert(1)</script>".to_vec(),
        };
        vendor_response(&vendor_answer(response))
    }

    #[test]
    fn an_adapter_cannot_serve_html_set_cookies_redirect_or_open_cors_on_the_bridges_origin() {
        let response = answer(
            302,
            &[
                ("Content-Type", "text/html"),
                ("Set-Cookie", "session=stolen"),
                ("Location", "https://evil.example/"),
                ("Access-Control-Allow-Origin", "*"),
                ("Content-Security-Policy", "default-src *"),
                ("Retry-After", "30"),
            ],
        );
        let headers = response.headers();
        assert_eq!(headers["content-type"], FALLBACK_CONTENT_TYPE);
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["retry-after"], "30");
        for stripped in [
            "set-cookie",
            "location",
            "access-control-allow-origin",
            "content-security-policy",
        ] {
            assert!(headers.get(stripped).is_none(), "{stripped} passed");
        }
        // A redirect without a Location is harmless; the status is the adapter's to choose.
        assert_eq!(response.status(), 302);
    }

    #[test]
    fn json_and_plain_text_pass_and_informational_statuses_become_200() {
        let json = answer(201, &[("content-type", "application/json; charset=utf-8")]);
        assert_eq!(json.headers()["content-type"], "application/json; charset=utf-8");
        assert_eq!(json.status(), 201);
        let plain = answer(101, &[("Content-Type", "Text/Plain")]);
        assert_eq!(plain.headers()["content-type"], "Text/Plain");
        assert_eq!(plain.status(), 200);
        let sniffable = answer(200, &[]);
        assert!(sniffable.headers().get("content-type").is_none());
        assert_eq!(sniffable.headers()["x-content-type-options"], "nosniff");
    }
}
