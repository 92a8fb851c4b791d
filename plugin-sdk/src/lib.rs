//! Write dolphin-bridge adapters in Rust.
//!
//! An adapter is a WebAssembly component implementing the WIT world `dolphin:bridge/adapter@0.1.0`
//! (`wit/adapter.wit`). This crate holds the generated bindings and a few typed helpers so an
//! adapter is short:
//!
//! ```ignore
//! use dolphin_bridge_sdk::{Adapter, AdapterError, CallContext, IncomingEvent, WebhookOutcome,
//!     WebhookRequest, export_adapter, log, webhook};
//!
//! struct Mine;
//!
//! impl Adapter for Mine {
//!     fn on_incoming(ctx: &CallContext, event: IncomingEvent) -> Result<(), AdapterError> {
//!         log::info(&format!("ticket {} on delivery {}", event.ticket_number, ctx.delivery_id));
//!         Ok(())
//!     }
//!     fn on_vendor_webhook(_: &CallContext, _: WebhookRequest) -> Result<WebhookOutcome, AdapterError> {
//!         Ok(webhook::ok(Vec::new()))
//!     }
//! }
//!
//! export_adapter!(Mine);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --profile adapter -p NAME`; the crate must be a
//! `cdylib`. The helpers also compile natively (the imports then panic when called), so pure
//! mapping code can be unit-tested with a plain `cargo test -p NAME`.

#![warn(missing_docs)]

/// The bindings `wit-bindgen` generates for the `adapter` world.
///
/// Prefer the re-exports at the crate root; this module is public for the [`export_adapter!`]
/// macro and for the rare adapter that needs a raw import.
#[allow(missing_docs, clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "adapter",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_adapter_world",
        default_bindings_module: "dolphin_bridge_sdk::bindings",
    });
}

pub use bindings::dolphin::bridge::types::{
    AdapterError, BridgeEvent, CallContext, CommandEvent, Headers, HttpRequest, HttpResponse, IncomingEvent,
    MessageType, OutgoingEvent, TicketCommand, WebhookOutcome, WebhookRequest,
};
pub use serde_json;
pub use serde_json::{Value, json};

/// What an adapter implements: the two exports of the `adapter` world.
///
/// Both are associated functions (no `self`): the host makes a fresh instance for every call, so
/// an adapter keeps nothing in memory between calls; use [`kv`] for what must last.
pub trait Adapter {
    /// Deliver one customer message (3Dolphins Incoming event) to the vendor.
    ///
    /// Called once per delivery attempt with the same `ctx.delivery_id` on every retry; events of
    /// one ticket never run concurrently. Return [`AdapterError::RetryLater`] for transient
    /// failures and [`AdapterError::Permanent`] for failures a retry cannot fix.
    fn on_incoming(ctx: &CallContext, event: IncomingEvent) -> Result<(), AdapterError>;

    /// Map one vendor webhook request to 3Dolphins events and the response the vendor gets.
    fn on_vendor_webhook(ctx: &CallContext, request: WebhookRequest) -> Result<WebhookOutcome, AdapterError>;
}

/// Exports a type implementing [`Adapter`] as the component's `on-incoming` and
/// `on-vendor-webhook`. Use it once, at the root of the adapter crate: `export_adapter!(MyType);`
#[macro_export]
macro_rules! export_adapter {
    ($adapter:ty) => {
        const _: () = {
            struct __DolphinBridgeExport;

            impl $crate::bindings::Guest for __DolphinBridgeExport {
                fn on_incoming(
                    ctx: $crate::CallContext,
                    event: $crate::IncomingEvent,
                ) -> ::core::result::Result<(), $crate::AdapterError> {
                    <$adapter as $crate::Adapter>::on_incoming(&ctx, event)
                }

                fn on_vendor_webhook(
                    ctx: $crate::CallContext,
                    request: $crate::WebhookRequest,
                ) -> ::core::result::Result<$crate::WebhookOutcome, $crate::AdapterError> {
                    <$adapter as $crate::Adapter>::on_vendor_webhook(&ctx, request)
                }
            }

            $crate::bindings::__export_adapter_world!(
                __DolphinBridgeExport with_types_in $crate::bindings
            );
        };
    };
}

/// A transient failure: the host retries the delivery later.
pub fn retry_later(message: impl Into<String>) -> AdapterError {
    AdapterError::RetryLater(message.into())
}

/// A failure a retry cannot fix: the host dead-letters the delivery.
pub fn permanent(message: impl Into<String>) -> AdapterError {
    AdapterError::Permanent(message.into())
}

/// The error for a vendor answering `status` to `call` (e.g. `"POST /api/v1/.../contacts"`):
/// 408, 429 and 5xx are [`AdapterError::RetryLater`], anything else (other 4xx, 3xx, 1xx) is
/// [`AdapterError::Permanent`]. `detail` (e.g. a body excerpt) is appended when not empty.
pub fn status_error(call: &str, status: u16, detail: &str) -> AdapterError {
    let mut message = format!("{call}: vendor answered HTTP {status}");
    if !detail.is_empty() {
        message.push_str(": ");
        message.push_str(detail);
    }
    if status == 408 || status == 429 || status >= 500 {
        AdapterError::RetryLater(message)
    } else {
        AdapterError::Permanent(message)
    }
}

/// The lower-case 3Dolphins name of a message type (`"text"`, `"image"`, ...).
pub fn message_type_name(message_type: MessageType) -> &'static str {
    match message_type {
        MessageType::Text => "text",
        MessageType::Image => "image",
        MessageType::Video => "video",
        MessageType::Audio => "audio",
        MessageType::File => "file",
        MessageType::Location => "location",
    }
}

/// Parses a 3Dolphins message type name, case-insensitively (`"Location"` is `location`).
pub fn parse_message_type(name: &str) -> Option<MessageType> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "text" => MessageType::Text,
        "image" => MessageType::Image,
        "video" => MessageType::Video,
        "audio" => MessageType::Audio,
        "file" => MessageType::File,
        "location" => MessageType::Location,
        _ => return None,
    })
}

/// The Incoming event as 3Dolphins JSON (camelCase field names, `groupId`/`language` only when
/// set, the `extra` fields decoded and added as they came).
pub fn incoming_json(event: &IncomingEvent) -> Value {
    let mut map = serde_json::Map::new();
    for (name, raw) in &event.extra {
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.clone()));
        map.insert(name.clone(), value);
    }
    let fields = [
        ("ticketNumber", &event.ticket_number),
        ("channel", &event.channel),
        ("accountId", &event.account_id),
        ("contactId", &event.contact_id),
        ("message", &event.message),
        ("mediaLink", &event.media_link),
        ("customerName", &event.customer_name),
        ("createdDate", &event.created_date),
        ("owner", &event.owner),
    ];
    for (name, value) in fields {
        map.insert(name.into(), Value::String(value.clone()));
    }
    map.insert("messageType".into(), message_type_name(event.message_type).into());
    if let Some(group_id) = &event.group_id {
        map.insert("groupId".into(), group_id.clone().into());
    }
    if let Some(language) = &event.language {
        map.insert("language".into(), language.clone().into());
    }
    Value::Object(map)
}

/// Header lookup, case-insensitive: the first value of `name` in `headers`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The first value of `name` in a raw query string (`a=1&b=x%20y`), percent- and `+`-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

/// Decodes `%XX` escapes and `+` (as a space); invalid escapes are kept as they are.
pub fn percent_decode(text: &str) -> String {
    fn hex(byte: u8) -> Option<u8> {
        (byte as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes[i] {
            b'%' if i + 2 < bytes.len() => hex(bytes[i + 1]).zip(hex(bytes[i + 2])).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, other) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes `text` for a URL query value or path segment (RFC 3986 unreserved characters kept).
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Structured logging into the host's log (tagged there with tenant and delivery id).
///
/// Never log secrets: config values such as tokens stay out of messages and fields.
pub mod log {
    pub use crate::bindings::dolphin::bridge::log::Level;

    /// Writes one record with key/value fields.
    pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
        let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        crate::bindings::dolphin::bridge::log::log(level, message, &fields);
    }

    /// Writes a `trace` record.
    pub fn trace(message: &str) {
        log(Level::Trace, message, &[]);
    }

    /// Writes a `debug` record.
    pub fn debug(message: &str) {
        log(Level::Debug, message, &[]);
    }

    /// Writes an `info` record.
    pub fn info(message: &str) {
        log(Level::Info, message, &[]);
    }

    /// Writes a `warn` record.
    pub fn warn(message: &str) {
        log(Level::Warn, message, &[]);
    }

    /// Writes an `error` record.
    pub fn error(message: &str) {
        log(Level::Error, message, &[]);
    }
}

/// The tenant's adapter configuration (`[tenants.config]`), secrets included.
pub mod config {
    use crate::AdapterError;

    /// The value of `key`, or `None` when it is not set or is empty (after trimming spaces).
    pub fn get(key: &str) -> Option<String> {
        crate::bindings::dolphin::bridge::config::get(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The value of `key`, or [`AdapterError::Permanent`] naming the key when it is not set.
    /// The message never contains a config value.
    pub fn require(key: &str) -> Result<String, AdapterError> {
        get(key).ok_or_else(|| AdapterError::Permanent(format!("adapter config key `{key}` is not set")))
    }
}

/// The tenant's private key-value store. Store failures are [`AdapterError::RetryLater`].
pub mod kv {
    use crate::bindings::dolphin::bridge::kv as raw;
    use crate::{AdapterError, Value};

    fn store_error(op: &str, key: &str, error: String) -> AdapterError {
        AdapterError::RetryLater(format!("kv {op} `{key}` failed: {error}"))
    }

    /// The raw bytes under `key`.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, AdapterError> {
        raw::get(key).map_err(|e| store_error("get", key, e))
    }

    /// Stores raw bytes under `key`.
    pub fn set(key: &str, value: &[u8]) -> Result<(), AdapterError> {
        raw::set(key, value).map_err(|e| store_error("set", key, e))
    }

    /// Deletes `key` (no error when it is absent).
    pub fn delete(key: &str) -> Result<(), AdapterError> {
        raw::delete(key).map_err(|e| store_error("delete", key, e))
    }

    /// The UTF-8 string under `key` (invalid UTF-8 is replaced lossily).
    pub fn get_string(key: &str) -> Result<Option<String>, AdapterError> {
        Ok(get(key)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Stores a string under `key`.
    pub fn set_string(key: &str, value: &str) -> Result<(), AdapterError> {
        set(key, value.as_bytes())
    }

    /// The JSON value under `key`; a value that is not JSON reads as absent.
    pub fn get_json(key: &str) -> Result<Option<Value>, AdapterError> {
        Ok(get(key)?.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    /// Stores a JSON value under `key`.
    pub fn set_json(key: &str, value: &Value) -> Result<(), AdapterError> {
        set(key, value.to_string().as_bytes())
    }
}

/// Outbound HTTP through the host (only to the tenant's allowed hosts, with the host's timeout).
pub mod http {
    use crate::bindings::dolphin::bridge::http as raw;
    use crate::{AdapterError, HttpRequest, HttpResponse, Value};

    pub use raw::HttpError;

    /// Sends `request` and returns the host's answer as is (for adapters that must see exactly
    /// why a request was refused). Most adapters want [`send`].
    pub fn try_send(request: &HttpRequest) -> Result<HttpResponse, HttpError> {
        raw::send(request)
    }

    /// Sends `request` and returns the response whatever its status. Transport failures become
    /// errors naming the call: timeout and connection failures are
    /// [`AdapterError::RetryLater`], a denied URL or a used-up host limit is
    /// [`AdapterError::Permanent`].
    pub fn send(request: &HttpRequest) -> Result<HttpResponse, AdapterError> {
        try_send(request).map_err(|e| transport_error(&call_name(&request.method, &request.url), e))
    }

    /// Maps a transport failure of `call` to an [`AdapterError`] (see [`send`]).
    pub fn transport_error(call: &str, error: HttpError) -> AdapterError {
        match error {
            HttpError::Timeout => AdapterError::RetryLater(format!("{call}: timed out")),
            HttpError::Connection(e) => AdapterError::RetryLater(format!("{call}: connection failed: {e}")),
            HttpError::Denied(e) => AdapterError::Permanent(format!("{call}: denied by host: {e}")),
            HttpError::LimitExceeded(e) => AdapterError::Permanent(format!("{call}: host limit exceeded: {e}")),
        }
    }

    /// A short name for a call in error messages: the method and the URL without its query
    /// string (queries may carry credentials), e.g. `POST http://host/api/v1/accounts/1/contacts`.
    pub fn call_name(method: &str, url: &str) -> String {
        let end = url.find(['?', '#']).unwrap_or(url.len());
        format!("{method} {}", &url[..end])
    }

    /// A request with `method`, `url`, `headers` and a raw body.
    pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> HttpRequest {
        HttpRequest {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body,
        }
    }

    /// A vendor's JSON answer.
    #[derive(Debug, Clone)]
    pub struct JsonResponse {
        /// The HTTP status.
        pub status: u16,
        /// The body parsed as JSON; `Value::Null` when it is empty or not JSON.
        pub body: Value,
        /// A one-line excerpt of the raw body (at most 200 characters), for error messages.
        pub excerpt: String,
    }

    impl JsonResponse {
        /// Whether the status is 2xx.
        pub fn is_success(&self) -> bool {
            (200..300).contains(&self.status)
        }
    }

    /// Sends a JSON request (`accept` and, with a body, `content-type: application/json`) and
    /// parses the answer whatever its status; transport failures map as for [`send`].
    pub fn send_json(
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<JsonResponse, AdapterError> {
        let mut all: Vec<(&str, &str)> = vec![("accept", "application/json")];
        let bytes = match body {
            Some(value) => {
                all.push(("content-type", "application/json"));
                value.to_string().into_bytes()
            }
            None => Vec::new(),
        };
        all.extend_from_slice(headers);
        let response = send(&request(method, url, &all, bytes))?;
        Ok(JsonResponse {
            status: response.status,
            body: serde_json::from_slice(&response.body).unwrap_or(Value::Null),
            excerpt: excerpt(&response.body),
        })
    }

    /// Sends a JSON request and returns the parsed body of a 2xx answer; any other status is
    /// an error naming the call, classified by [`crate::status_error`].
    pub fn call_json(
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, AdapterError> {
        let response = send_json(method, url, headers, body)?;
        if response.is_success() {
            Ok(response.body)
        } else {
            Err(crate::status_error(
                &call_name(method, url),
                response.status,
                &response.excerpt,
            ))
        }
    }

    /// `GET url` expecting a 2xx JSON answer (see [`call_json`]).
    pub fn get_json(url: &str, headers: &[(&str, &str)]) -> Result<Value, AdapterError> {
        call_json("GET", url, headers, None)
    }

    /// `POST url` with a JSON body, expecting a 2xx JSON answer (see [`call_json`]).
    pub fn post_json(url: &str, headers: &[(&str, &str)], body: &Value) -> Result<Value, AdapterError> {
        call_json("POST", url, headers, Some(body))
    }

    /// A one-line excerpt of a body (at most 200 characters) for error messages.
    pub fn excerpt(body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        let mut out: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(200)
            .collect();
        if text.chars().count() > 200 {
            out.push('…');
        }
        out.trim().to_owned()
    }
}

/// Read-only lookups in the tenant's 3Dolphins APIs (done by the host).
pub mod three_dolphins {
    use crate::bindings::dolphin::bridge::three_dolphins as raw;
    use crate::{AdapterError, Value};

    fn lookup(result: Result<String, raw::LookupError>, what: &str) -> Result<Option<Value>, AdapterError> {
        match result {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| AdapterError::RetryLater(format!("3Dolphins {what}: bad JSON: {e}"))),
            Err(raw::LookupError::NotFound) => Ok(None),
            Err(raw::LookupError::Failed(e)) => Err(AdapterError::RetryLater(format!("3Dolphins {what}: {e}"))),
        }
    }

    /// The 3Dolphins contact (`data` of the Contact API), `None` when 3Dolphins has none.
    pub fn contact(contact_id: &str) -> Result<Option<Value>, AdapterError> {
        lookup(raw::contact(contact_id), "contact lookup")
    }

    /// The messages of a ticket so far (`data` of the history API), `None` when unknown.
    pub fn history(ticket_number: &str) -> Result<Option<Value>, AdapterError> {
        lookup(raw::history(ticket_number), "history lookup")
    }
}

/// Builders for the events an adapter hands to the host.
pub mod events {
    use crate::{BridgeEvent, CommandEvent, MessageType, OutgoingEvent, TicketCommand};

    /// An Outgoing event (an agent's reply) for `ticket_number`. `media_link` is empty for text
    /// and location. `channel` and `customer-name` are left for the host to fill.
    pub fn outgoing(ticket_number: &str, message_type: MessageType, message: &str, media_link: &str) -> OutgoingEvent {
        OutgoingEvent {
            ticket_number: ticket_number.to_owned(),
            message_type,
            message: message.to_owned(),
            media_link: media_link.to_owned(),
            channel: None,
            customer_name: None,
            extra: Vec::new(),
        }
    }

    /// A text reply for `ticket_number`, as a [`BridgeEvent`].
    pub fn text(ticket_number: &str, message: &str) -> BridgeEvent {
        BridgeEvent::Outgoing(outgoing(ticket_number, MessageType::Text, message, ""))
    }

    /// The Command closing `ticket_number` (`"event": "Close"`), with an optional channel.
    pub fn close(ticket_number: &str, channel: Option<String>) -> BridgeEvent {
        BridgeEvent::Command(CommandEvent {
            ticket_number: ticket_number.to_owned(),
            command: TicketCommand::Close,
            channel,
        })
    }
}

/// Responses and outcomes for `on-vendor-webhook`.
pub mod webhook {
    use crate::{BridgeEvent, HttpResponse, Value, WebhookOutcome, json};

    /// A JSON response with `status` and `content-type: application/json`.
    pub fn json_response(status: u16, body: &Value) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// An error response `{"error": message}` with `status` and no events.
    pub fn error(status: u16, message: &str) -> WebhookOutcome {
        outcome(Vec::new(), json_response(status, &json!({ "error": message })))
    }

    /// `events` answered with 200 `{"status":"ok"}`.
    pub fn ok(events: Vec<BridgeEvent>) -> WebhookOutcome {
        outcome(events, json_response(200, &json!({ "status": "ok" })))
    }

    /// `events` answered with `response`.
    pub fn outcome(events: Vec<BridgeEvent>, response: HttpResponse) -> WebhookOutcome {
        WebhookOutcome { events, response }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_retry_or_permanent() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(status_error("c", status, ""), AdapterError::RetryLater(_)));
        }
        for status in [301, 400, 401, 403, 404, 409, 422] {
            assert!(matches!(status_error("c", status, ""), AdapterError::Permanent(_)));
        }
        let AdapterError::Permanent(m) = status_error("POST /x", 422, "taken") else {
            panic!()
        };
        assert_eq!(m, "POST /x: vendor answered HTTP 422: taken");
    }

    #[test]
    fn query_and_percent() {
        assert_eq!(
            query_param("a=1&mode=log%2Dflood&x", "mode").as_deref(),
            Some("log-flood")
        );
        assert_eq!(query_param("q=a+b", "q").as_deref(), Some("a b"));
        assert_eq!(query_param("x", "x").as_deref(), Some(""));
        assert_eq!(query_param("a=1", "b"), None);
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_encode("a b/ü"), "a%20b%2F%C3%BC");
    }

    #[test]
    fn call_name_drops_query() {
        assert_eq!(http::call_name("GET", "http://h/a?token=s"), "GET http://h/a");
    }
}
