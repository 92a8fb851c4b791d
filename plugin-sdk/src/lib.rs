//! Write dolphin-bridge adapters in Rust.
//!
//! An adapter is a WebAssembly component implementing the WIT world `dolphin:bridge/adapter@0.2.0`
//! (`wit/adapter.wit`). This crate holds the generated bindings and a few typed helpers so an
//! adapter is short:
//!
//! ```ignore
//! use dolphin_bridge_sdk::{Adapter, AdapterError, CallContext, IncomingEvent, WebhookOutcome,
//!     WebhookRequest, events, export_adapter, http, json, log, webhook};
//!
//! struct Mine;
//!
//! impl Adapter for Mine {
//!     fn on_incoming(ctx: &CallContext, event: IncomingEvent) -> Result<(), AdapterError> {
//!         log::info(&format!("ticket {} on delivery {}", event.ticket_number, ctx.delivery_id));
//!         // 2xx is delivered; 408/429/5xx retry later, after the vendor's `Retry-After`.
//!         http::post_json("https://vendor.example/messages", &[], &json!({ "text": event.message }))?;
//!         Ok(())
//!     }
//!     fn on_vendor_webhook(_: &CallContext, _request: WebhookRequest) -> Result<WebhookOutcome, AdapterError> {
//!         let reply = events::text("ticket-1", "hello");
//!         // The vendor's message id: the host forwards the event once, however often it comes.
//!         Ok(webhook::ok(vec![reply.with_dedupe_key("message:42")]))
//!     }
//! }
//!
//! export_adapter!(Mine);
//! ```
//!
//! What 0.2 of the world adds, and where it is here:
//! - **Dedupe keys.** A webhook yields [`WebhookEvent`]s: a [`BridgeEvent`] and an optional
//!   `dedupe_key`, the vendor's own id of it. The host stores the key with the event and drops a
//!   later event of the tenant with a key it stored (within `delivery.webhook_dedupe_window_ms`),
//!   so a vendor's retry, or the same message arriving in two webhooks, reaches 3Dolphins once.
//!   Make one with [`BridgeEvent::with_dedupe_key`], or `event.into()` for none.
//! - **Retry hints.** [`AdapterError::RetryLater`] holds a [`Retry`]: a reason and `after_ms`,
//!   how long the vendor asked to wait. [`AdapterError::retry_later`] gives none,
//!   [`AdapterError::retry_after`] one; the [`http`] helpers read the vendor's `Retry-After` or
//!   `X-RateLimit-Reset` themselves (see [`http::retry_after_ms`]).
//! - **Crypto.** [`crypto`]: HMAC, SHA-256, constant-time comparison and random bytes computed by
//!   the host, e.g. [`crypto::verify_hmac_sha256_hex`] for a vendor's webhook signature.
//!
//! Build with `cargo build --target wasm32-wasip2 --profile adapter -p NAME`; the crate must be a
//! `cdylib`. The helpers also compile natively (the imports then panic when called), so pure
//! mapping code can be unit-tested with a plain `cargo test -p NAME`.

#![warn(missing_docs)]

use std::time::Duration;

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
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::dolphin::bridge::types::{
    AdapterError, BridgeEvent, CallContext, CommandEvent, Headers, HttpRequest, HttpResponse, IncomingEvent,
    MessageType, OutgoingEvent, Retry, TicketCommand, WebhookEvent, WebhookOutcome, WebhookRequest,
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

/// A transient failure with no hint when to try again: the host retries the delivery on its own
/// schedule. Same as [`AdapterError::retry_later`].
pub fn retry_later(reason: impl Into<String>) -> AdapterError {
    AdapterError::retry_later(reason)
}

/// A transient failure the vendor said to retry no sooner than `after` from now. Same as
/// [`AdapterError::retry_after`].
pub fn retry_after(reason: impl Into<String>, after: Duration) -> AdapterError {
    AdapterError::retry_after(reason, after)
}

/// A failure a retry cannot fix: the host dead-letters the delivery. Same as
/// [`AdapterError::permanent`].
pub fn permanent(reason: impl Into<String>) -> AdapterError {
    AdapterError::permanent(reason)
}

/// The error for a vendor answering `status` to `call` (e.g. `"POST /api/v1/.../contacts"`):
/// 408, 429 and 5xx are [`AdapterError::RetryLater`] (with no `after_ms`: the status alone says
/// nothing of when; [`http::response_error`] also reads the answer's headers), anything else
/// (other 4xx, 3xx, 1xx) is [`AdapterError::Permanent`]. `detail` (e.g. a body excerpt) is
/// appended when not empty.
pub fn status_error(call: &str, status: u16, detail: &str) -> AdapterError {
    let mut message = format!("{call}: vendor answered HTTP {status}");
    if !detail.is_empty() {
        message.push_str(": ");
        message.push_str(detail);
    }
    if is_transient_status(status) {
        AdapterError::retry_later(message)
    } else {
        AdapterError::permanent(message)
    }
}

/// Whether a vendor's `status` is worth retrying: 408, 429 and 5xx.
pub fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// Milliseconds in `duration`, `u64::MAX` when more.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl AdapterError {
    /// A transient failure with no hint when to try again (`retry-later` with `after-ms` none):
    /// the host retries on its own schedule.
    pub fn retry_later(reason: impl Into<String>) -> Self {
        Self::RetryLater(Retry {
            reason: reason.into(),
            after_ms: None,
        })
    }

    /// A transient failure the vendor said to retry no sooner than `after` from now (e.g. its
    /// `Retry-After`). The host waits at least that long (at most one hour) and never less than
    /// its own retry schedule says.
    pub fn retry_after(reason: impl Into<String>, after: Duration) -> Self {
        Self::retry_after_ms(reason, millis(after))
    }

    /// [`AdapterError::retry_after`] with the wait in milliseconds.
    pub fn retry_after_ms(reason: impl Into<String>, after_ms: u64) -> Self {
        Self::RetryLater(Retry {
            reason: reason.into(),
            after_ms: Some(after_ms),
        })
    }

    /// A failure a retry cannot fix (bad data, a vendor 4xx, missing config): the host
    /// dead-letters the delivery.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::Permanent(reason.into())
    }

    /// Why it failed, whichever the kind.
    pub fn reason(&self) -> &str {
        match self {
            Self::RetryLater(retry) => &retry.reason,
            Self::Permanent(reason) => reason,
        }
    }

    /// How long the vendor asked to wait, in milliseconds; `None` for no hint and for
    /// [`AdapterError::Permanent`].
    pub fn after_ms(&self) -> Option<u64> {
        match self {
            Self::RetryLater(retry) => retry.after_ms,
            Self::Permanent(_) => None,
        }
    }

    /// Whether the host retries it ([`AdapterError::RetryLater`]).
    pub fn is_retry_later(&self) -> bool {
        matches!(self, Self::RetryLater(_))
    }

    /// The same error with its reason rewritten by `f` (e.g. to name the call), its kind and
    /// `after_ms` kept.
    pub fn map_reason(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            Self::RetryLater(Retry { reason, after_ms }) => Self::RetryLater(Retry {
                reason: f(reason),
                after_ms,
            }),
            Self::Permanent(reason) => Self::Permanent(f(reason)),
        }
    }

    /// The same error with `after_ms` set to `after_ms` when it is a
    /// [`AdapterError::RetryLater`] and `after_ms` is `Some` (a permanent error stays as it is).
    pub fn with_after_ms(self, after_ms: Option<u64>) -> Self {
        match (self, after_ms) {
            (Self::RetryLater(retry), Some(after_ms)) => Self::RetryLater(Retry {
                reason: retry.reason,
                after_ms: Some(after_ms),
            }),
            (other, _) => other,
        }
    }
}

impl BridgeEvent {
    /// The ticket the event is for.
    pub fn ticket_number(&self) -> &str {
        match self {
            Self::Outgoing(event) => &event.ticket_number,
            Self::Command(event) => &event.ticket_number,
        }
    }

    /// This event as a [`WebhookEvent`] with the vendor's id of it (a message id, an event id) as
    /// its dedupe key: the host forwards it once however many webhooks carry it (within
    /// `delivery.webhook_dedupe_window_ms`). Keys are per tenant; prefix them when the vendor's
    /// ids of different things may be equal (`message:42`, `conversation:42:resolved`).
    pub fn with_dedupe_key(self, key: impl Into<String>) -> WebhookEvent {
        WebhookEvent::new(self).with_dedupe_key(key)
    }
}

impl WebhookEvent {
    /// `event` with no dedupe key (the host forwards every copy it is given).
    pub fn new(event: BridgeEvent) -> Self {
        Self {
            event,
            dedupe_key: None,
        }
    }

    /// The same event with `key` as its dedupe key (see [`BridgeEvent::with_dedupe_key`]).
    pub fn with_dedupe_key(mut self, key: impl Into<String>) -> Self {
        self.dedupe_key = Some(key.into());
        self
    }
}

impl From<BridgeEvent> for WebhookEvent {
    /// The event with no dedupe key.
    fn from(event: BridgeEvent) -> Self {
        Self::new(event)
    }
}

impl From<OutgoingEvent> for BridgeEvent {
    fn from(event: OutgoingEvent) -> Self {
        Self::Outgoing(event)
    }
}

impl From<CommandEvent> for BridgeEvent {
    fn from(event: CommandEvent) -> Self {
        Self::Command(event)
    }
}

impl From<OutgoingEvent> for WebhookEvent {
    /// The Outgoing event with no dedupe key.
    fn from(event: OutgoingEvent) -> Self {
        Self::new(event.into())
    }
}

impl From<CommandEvent> for WebhookEvent {
    /// The Command with no dedupe key.
    fn from(event: CommandEvent) -> Self {
        Self::new(event.into())
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

/// The tenant's adapter configuration: its `[tenants.config]` and `[tenants.secrets]` tables, read
/// alike (a key is a secret when the tenant puts it in `[tenants.secrets]`; the host keeps those
/// out of its logs and status pages). Never log a value read here.
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
        get(key).ok_or_else(|| AdapterError::permanent(format!("adapter config key `{key}` is not set")))
    }
}

/// The tenant's private key-value store. Store failures are [`AdapterError::RetryLater`].
pub mod kv {
    use crate::bindings::dolphin::bridge::kv as raw;
    use crate::{AdapterError, Value};

    fn store_error(op: &str, key: &str, error: String) -> AdapterError {
        AdapterError::retry_later(format!("kv {op} `{key}` failed: {error}"))
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
///
/// A vendor's answer maps to an error as [`crate::status_error`] says (2xx is success; 408, 429
/// and 5xx retry later; anything else is permanent), and a retry-later carries the vendor's wait
/// hint as `after_ms` (see [`retry_after_ms`]).
pub mod http {
    use crate::bindings::dolphin::bridge::http as raw;
    use crate::{AdapterError, Headers, HttpRequest, HttpResponse, Value, header};
    use std::time::{SystemTime, UNIX_EPOCH};

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

    /// Maps a transport failure of `call` to an [`AdapterError`] (see [`send`]); none has a wait
    /// hint.
    pub fn transport_error(call: &str, error: HttpError) -> AdapterError {
        match error {
            HttpError::Timeout => AdapterError::retry_later(format!("{call}: timed out")),
            HttpError::Connection(e) => AdapterError::retry_later(format!("{call}: connection failed: {e}")),
            HttpError::Denied(e) => AdapterError::permanent(format!("{call}: denied by host: {e}")),
            HttpError::LimitExceeded(e) => AdapterError::permanent(format!("{call}: host limit exceeded: {e}")),
        }
    }

    /// The error for a vendor's non-2xx `response` to `call`: classified by its status as
    /// [`crate::status_error`] does, with an excerpt of its body, and, for a retry-later, the
    /// wait the vendor asked for in its headers as `after_ms` ([`retry_after_ms`]).
    pub fn response_error(call: &str, response: &HttpResponse) -> AdapterError {
        error_for(call, response.status, &response.headers, &excerpt(&response.body))
    }

    fn error_for(call: &str, status: u16, headers: &[(String, String)], excerpt: &str) -> AdapterError {
        let error = crate::status_error(call, status, excerpt);
        if error.is_retry_later() {
            error.with_after_ms(retry_after_ms(headers))
        } else {
            error
        }
    }

    /// How long a vendor's answer asks the caller to wait, in milliseconds from now, read from
    /// its headers (names compared case-insensitively, the first of each used):
    /// 1. `Retry-After` (RFC 9110): delay-seconds (`120`), or an IMF-fixdate (`Wed, 21 Oct 2015
    ///    07:28:00 GMT`) measured from the wall clock (`std::time::SystemTime::now()`, the
    ///    host's WASI clock); a date in the past is `0`. The obsolete RFC 850 and asctime date
    ///    formats, negative or fractional numbers and anything else are ignored.
    /// 2. Otherwise (no `Retry-After`, or one it cannot read) `X-RateLimit-Reset` when it is a
    ///    Unix timestamp: in seconds (from 1 000 000 000, `1700000000`) or milliseconds (from
    ///    1 000 000 000 000, `1700000000000`), measured from the wall clock; a reset in the past
    ///    is `0`. A smaller number is ignored (some vendors send the seconds until the reset
    ///    there, which cannot be told from a timestamp reliably), as is anything else.
    ///
    /// `None` when neither gives a wait. The host caps the wait at one hour and never retries
    /// sooner than its own schedule says.
    pub fn retry_after_ms(headers: &[(String, String)]) -> Option<u64> {
        retry_after_ms_at(headers, SystemTime::now())
    }

    /// [`retry_after_ms`] with `now` as the wall clock's time.
    pub fn retry_after_ms_at(headers: &[(String, String)], now: SystemTime) -> Option<u64> {
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_millis()).ok());
        header(headers, "retry-after")
            .and_then(|value| parse_retry_after(value, now_ms))
            .or_else(|| {
                let reset = parse_rate_limit_reset(header(headers, "x-ratelimit-reset")?)?;
                Some(reset.saturating_sub(now_ms?))
            })
    }

    /// A `Retry-After` value in milliseconds from `now_ms` (Unix milliseconds; `None` when the
    /// clock is unknown, then only delay-seconds are read).
    fn parse_retry_after(value: &str, now_ms: Option<u64>) -> Option<u64> {
        let value = value.trim();
        if let Some(seconds) = parse_digits(value) {
            return Some(seconds.saturating_mul(1000));
        }
        let at_seconds = parse_imf_fixdate(value)?;
        Some(at_seconds.saturating_mul(1000).saturating_sub(now_ms?))
    }

    /// An `X-RateLimit-Reset` that is a Unix timestamp, in Unix milliseconds.
    fn parse_rate_limit_reset(value: &str) -> Option<u64> {
        /// 2001-09-09 in seconds; a smaller number is no timestamp of these years.
        const EPOCH_SECONDS_FROM: u64 = 1_000_000_000;
        /// The same instant in milliseconds: a larger number is a timestamp in milliseconds.
        const EPOCH_MILLIS_FROM: u64 = EPOCH_SECONDS_FROM * 1000;
        match parse_digits(value.trim())? {
            ms @ EPOCH_MILLIS_FROM.. => Some(ms),
            s @ EPOCH_SECONDS_FROM.. => Some(s * 1000),
            _ => None,
        }
    }

    /// A non-empty run of ASCII digits as a number (`u64::MAX` when larger).
    fn parse_digits(text: &str) -> Option<u64> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(text.parse().unwrap_or(u64::MAX))
    }

    /// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) in Unix seconds.
    fn parse_imf_fixdate(text: &str) -> Option<u64> {
        const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let mut parts = text.split_ascii_whitespace();
        let day_name = parts.next()?.strip_suffix(',')?;
        let (day, month, year, time, zone) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        if parts.next().is_some() || zone != "GMT" || !DAYS.contains(&day_name) {
            return None;
        }
        let number = |text: &str, len: usize| (text.len() == len).then(|| parse_digits(text)).flatten();
        let day = number(day, 2)?;
        let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
        let year = number(year, 4)?;
        let mut clock = time.split(':');
        let (hour, minute, second) = (
            number(clock.next()?, 2)?,
            number(clock.next()?, 2)?,
            number(clock.next()?, 2)?,
        );
        if clock.next().is_some() || year < 1970 || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60
        {
            return None;
        }
        // Days from 1970-01-01 to the date (Howard Hinnant's days_from_civil).
        let (y, m) = if month <= 2 {
            (year - 1, month + 9)
        } else {
            (year, month - 3)
        };
        let era = y / 400;
        let year_of_era = y - era * 400;
        let day_of_year = (153 * m + 2) / 5 + day - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        let days = (era * 146_097 + day_of_era).checked_sub(719_468)?;
        Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
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
        /// The response headers, as received.
        pub headers: Headers,
        /// The body parsed as JSON; `Value::Null` when it is empty or not JSON.
        pub body: Value,
        /// A one-line excerpt of the raw body (at most 200 characters), for error messages.
        pub excerpt: String,
    }

    impl JsonResponse {
        /// Parses a raw response.
        pub fn from_response(response: HttpResponse) -> Self {
            Self {
                status: response.status,
                body: serde_json::from_slice(&response.body).unwrap_or(Value::Null),
                excerpt: excerpt(&response.body),
                headers: response.headers,
            }
        }

        /// Whether the status is 2xx.
        pub fn is_success(&self) -> bool {
            (200..300).contains(&self.status)
        }

        /// The wait the answer asks for ([`retry_after_ms`] of its headers).
        pub fn retry_after_ms(&self) -> Option<u64> {
            retry_after_ms(&self.headers)
        }

        /// The error for this answer to `call` when it is not a success (see
        /// [`response_error`]: the status classifies it, the excerpt explains it, and
        /// `Retry-After` / `X-RateLimit-Reset` set `after_ms` of a retry-later).
        pub fn error(&self, call: &str) -> AdapterError {
            error_for(call, self.status, &self.headers, &self.excerpt)
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
        Ok(JsonResponse::from_response(response))
    }

    /// Sends a JSON request and returns the parsed body of a 2xx answer; any other status is
    /// an error naming the call ([`JsonResponse::error`]: 408, 429 and 5xx retry later, after
    /// the vendor's `Retry-After` when it sent one; the rest is permanent).
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
            Err(response.error(&call_name(method, url)))
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

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::time::Duration;

        /// 2023-11-14T22:13:20Z.
        const NOW_S: u64 = 1_700_000_000;

        fn at(headers: &[(&str, &str)]) -> Option<u64> {
            let headers: Vec<(String, String)> = headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            retry_after_ms_at(&headers, UNIX_EPOCH + Duration::from_secs(NOW_S))
        }

        #[test]
        fn retry_after_seconds() {
            assert_eq!(at(&[("Retry-After", "120")]), Some(120_000));
            assert_eq!(at(&[("retry-after", " 0 ")]), Some(0));
            assert_eq!(at(&[("RETRY-AFTER", "99999999999999999999999")]), Some(u64::MAX));
            assert_eq!(at(&[("Retry-After", "-5")]), None);
            assert_eq!(at(&[("Retry-After", "1.5")]), None);
            assert_eq!(at(&[("Retry-After", "")]), None);
            assert_eq!(at(&[]), None);
        }

        #[test]
        fn retry_after_dates() {
            // 2023-11-14T22:13:20Z is a Tuesday.
            assert_eq!(at(&[("Retry-After", "Tue, 14 Nov 2023 22:13:50 GMT")]), Some(30_000));
            assert_eq!(at(&[("Retry-After", "Tue, 14 Nov 2023 22:13:20 GMT")]), Some(0));
            assert_eq!(at(&[("Retry-After", "Tue, 14 Nov 2023 22:00:00 GMT")]), Some(0));
            assert_eq!(at(&[("Retry-After", "Wed, 15 Nov 2023 00:00:00 GMT")]), Some(6_400_000));
            assert_eq!(parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
            assert_eq!(parse_imf_fixdate("Thu, 29 Feb 2024 12:00:00 GMT"), Some(1_709_208_000));
            assert_eq!(parse_imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
            // RFC 850 and asctime dates, other zones and malformed dates are not read.
            assert_eq!(parse_imf_fixdate("Sunday, 06-Nov-94 08:49:37 GMT"), None);
            assert_eq!(parse_imf_fixdate("Sun Nov  6 08:49:37 1994"), None);
            assert_eq!(parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 UTC"), None);
            assert_eq!(parse_imf_fixdate("Sun, 6 Nov 1994 08:49:37 GMT"), None);
            assert_eq!(parse_imf_fixdate("Sun, 06 Foo 1994 08:49:37 GMT"), None);
            assert_eq!(parse_imf_fixdate("Sun, 06 Nov 1994 24:49:37 GMT"), None);
            assert_eq!(parse_imf_fixdate("Sun, 06 Nov 1994 08:49 GMT"), None);
            assert_eq!(at(&[("Retry-After", "soon")]), None);
        }

        #[test]
        fn rate_limit_reset() {
            let in_90_s = (NOW_S + 90).to_string();
            assert_eq!(at(&[("X-RateLimit-Reset", &in_90_s)]), Some(90_000));
            let in_1500_ms = (NOW_S * 1000 + 1500).to_string();
            assert_eq!(at(&[("x-ratelimit-reset", &in_1500_ms)]), Some(1500));
            let past = (NOW_S - 10).to_string();
            assert_eq!(at(&[("X-RateLimit-Reset", &past)]), Some(0));
            // Seconds until the reset (no timestamp) and junk are ignored.
            assert_eq!(at(&[("X-RateLimit-Reset", "60")]), None);
            assert_eq!(at(&[("X-RateLimit-Reset", "later")]), None);
            // Retry-After wins; an unreadable one falls back to the reset.
            assert_eq!(
                at(&[("X-RateLimit-Reset", &in_90_s), ("Retry-After", "5")]),
                Some(5_000)
            );
            assert_eq!(
                at(&[("Retry-After", "soon"), ("X-RateLimit-Reset", &in_90_s)]),
                Some(90_000)
            );
        }

        #[test]
        fn errors_carry_the_hint_only_when_retried() {
            let response = |status: u16, headers: &[(&str, &str)]| HttpResponse {
                status,
                headers: headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                body: b"slow down".to_vec(),
            };
            let error = response_error("POST http://v/x", &response(429, &[("Retry-After", "7")]));
            assert_eq!(
                error,
                AdapterError::retry_after_ms("POST http://v/x: vendor answered HTTP 429: slow down", 7_000)
            );
            let error = response_error("c", &response(503, &[]));
            assert_eq!(
                error,
                AdapterError::retry_later("c: vendor answered HTTP 503: slow down")
            );
            let error = response_error("c", &response(400, &[("Retry-After", "7")]));
            assert_eq!(error, AdapterError::permanent("c: vendor answered HTTP 400: slow down"));
            let json = JsonResponse::from_response(response(503, &[("retry-after", "2")]));
            assert_eq!(json.retry_after_ms(), Some(2_000));
            assert_eq!(json.error("c").after_ms(), Some(2_000));
        }
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
                .map_err(|e| AdapterError::retry_later(format!("3Dolphins {what}: bad JSON: {e}"))),
            Err(raw::LookupError::NotFound) => Ok(None),
            Err(raw::LookupError::Failed(e)) => Err(AdapterError::retry_later(format!("3Dolphins {what}: {e}"))),
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
///
/// They build [`BridgeEvent`]s; a webhook answers [`WebhookEvent`]s, made with
/// `event.with_dedupe_key(vendor_id)` ([`BridgeEvent::with_dedupe_key`]) or, with no key,
/// `event.into()`.
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
///
/// Events are [`WebhookEvent`]s: `webhook::ok(vec![event.with_dedupe_key(id)])`, or
/// `webhook::ok(vec![event.into()])` for an event the vendor gives no id of.
pub mod webhook {
    use crate::{HttpResponse, Value, WebhookEvent, WebhookOutcome, json};

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

    /// `events` answered with 200 `{"status":"ok"}` (also when the host drops them all as seen
    /// before by their dedupe keys).
    pub fn ok(events: Vec<WebhookEvent>) -> WebhookOutcome {
        outcome(events, json_response(200, &json!({ "status": "ok" })))
    }

    /// `events` answered with `response`.
    pub fn outcome(events: Vec<WebhookEvent>, response: HttpResponse) -> WebhookOutcome {
        WebhookOutcome { events, response }
    }
}

/// Hashes, HMAC signatures, constant-time comparison and randomness, computed by the host: for
/// checking a vendor's webhook signature, signing a request, or making an id.
///
/// ```ignore
/// // A vendor signing the raw body as `X-Signature: sha256=<hex HMAC-SHA256(secret, body)>`:
/// let secret = config::require("webhook_secret")?;
/// let given = header(&request.headers, "x-signature").unwrap_or("");
/// if !crypto::verify_hmac_sha256_hex(secret.as_bytes(), &request.body, given) {
///     return Ok(webhook::error(401, "bad signature"));
/// }
/// ```
///
/// The functions call the host (natively they panic); [`to_hex`], [`from_hex`] and
/// [`signature_bytes`] are pure.
pub mod crypto {
    use crate::bindings::dolphin::bridge::crypto as raw;

    pub use raw::Hash;

    /// The most bytes one host call of [`random_bytes`] returns; [`random_bytes`] asks for more in
    /// several calls.
    pub const MAX_RANDOM_BYTES_PER_CALL: usize = 1024;

    /// HMAC of `message` with `key`, using `hash` (SHA-1, SHA-256 or SHA-512).
    pub fn hmac(hash: Hash, key: &[u8], message: &[u8]) -> Vec<u8> {
        raw::hmac(hash, key, message)
    }

    /// HMAC-SHA256 of `message` with `key` (32 bytes).
    pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
        hmac(Hash::Sha256, key, message)
    }

    /// The SHA-256 digest of `data` (32 bytes).
    pub fn sha256(data: &[u8]) -> Vec<u8> {
        raw::sha256(data)
    }

    /// Whether `a` and `b` are equal, in a time that depends only on their lengths. Compare a
    /// signature you computed with the one a request carries with this, never with `==`.
    pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
        raw::constant_time_equal(a, b)
    }

    /// `len` bytes from the host's cryptographically secure generator.
    pub fn random_bytes(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let chunk = (len - out.len()).min(MAX_RANDOM_BYTES_PER_CALL);
            // `chunk` is at most 1024, so it fits.
            out.extend(raw::random_bytes(chunk as u32));
        }
        out
    }

    /// Whether `given` is the HMAC-SHA256 of `message` under `secret`, written in hex
    /// (either case), with or without a `sha256=` prefix (the form GitHub, Chatwoot and many
    /// others send); surrounding spaces are ignored. The MAC is computed and compared by the
    /// host, in constant time. Anything that is not hex of 32 bytes is `false`.
    pub fn verify_hmac_sha256_hex(secret: &[u8], message: &[u8], given: &str) -> bool {
        match signature_bytes(given) {
            Some(given) => constant_time_eq(&hmac_sha256(secret, message), &given),
            None => false,
        }
    }

    /// The bytes of a hex signature header value: spaces trimmed, an optional `sha256=` prefix
    /// (any case) dropped, the hex decoded; `None` when it is not hex.
    pub fn signature_bytes(given: &str) -> Option<Vec<u8>> {
        let given = given.trim();
        let hex = match given.get(..7) {
            Some(prefix) if prefix.eq_ignore_ascii_case("sha256=") => &given[7..],
            _ => given,
        };
        from_hex(hex)
    }

    /// Lower-case hex of `bytes`.
    pub fn to_hex(bytes: &[u8]) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(bytes.len() * 2);
        for byte in bytes {
            out.push(DIGITS[usize::from(byte >> 4)] as char);
            out.push(DIGITS[usize::from(byte & 0xf)] as char);
        }
        out
    }

    /// The bytes of `text`, hex digits of either case; `None` for an odd length or another
    /// character. The empty string is no bytes.
    pub fn from_hex(text: &str) -> Option<Vec<u8>> {
        let digits = text.as_bytes();
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        let value = |digit: u8| (digit as char).to_digit(16).map(|d| d as u8);
        digits
            .chunks_exact(2)
            .map(|pair| Some(value(pair[0])? << 4 | value(pair[1])?))
            .collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn hex_round_trip() {
            assert_eq!(to_hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
            assert_eq!(from_hex("000fA5ff"), Some(vec![0x00, 0x0f, 0xa5, 0xff]));
            assert_eq!(from_hex(""), Some(vec![]));
            assert_eq!(from_hex("abc"), None);
            assert_eq!(from_hex("zz"), None);
            assert_eq!(from_hex("+1"), None);
        }

        #[test]
        fn signature_forms() {
            assert_eq!(signature_bytes("sha256=0aff"), Some(vec![0x0a, 0xff]));
            assert_eq!(signature_bytes(" SHA256=0AFF "), Some(vec![0x0a, 0xff]));
            assert_eq!(signature_bytes("0aff"), Some(vec![0x0a, 0xff]));
            assert_eq!(signature_bytes("sha1=0aff"), None);
            assert_eq!(signature_bytes("sha256=0af"), None);
            assert_eq!(signature_bytes("sha256=ü"), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_retry_or_permanent() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert_eq!(
                status_error("c", status, ""),
                AdapterError::retry_later(format!("c: vendor answered HTTP {status}"))
            );
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
    fn error_constructors() {
        let error = AdapterError::retry_after("busy", Duration::from_millis(1500));
        assert_eq!(
            error,
            AdapterError::RetryLater(Retry {
                reason: "busy".into(),
                after_ms: Some(1500)
            })
        );
        assert_eq!(
            (error.reason(), error.after_ms(), error.is_retry_later()),
            ("busy", Some(1500), true)
        );
        assert_eq!(retry_after("x", Duration::MAX).after_ms(), Some(u64::MAX));
        assert_eq!(retry_later("x").after_ms(), None);
        assert_eq!(permanent("bad"), AdapterError::Permanent("bad".into()));
        assert_eq!(permanent("bad").with_after_ms(Some(5)), permanent("bad"));
        assert_eq!(retry_later("x").with_after_ms(Some(5)).after_ms(), Some(5));
        assert_eq!(
            retry_after("x", Duration::from_secs(1)).with_after_ms(None).after_ms(),
            Some(1000)
        );
        let mapped = AdapterError::retry_after_ms("timed out", 9).map_reason(|m| format!("vendor: {m}"));
        assert_eq!(mapped, AdapterError::retry_after_ms("vendor: timed out", 9));
        assert_eq!(permanent("no").map_reason(|m| m + "!"), permanent("no!"));
    }

    #[test]
    fn webhook_events() {
        let keyed = events::text("t1", "hi").with_dedupe_key("message:7");
        assert_eq!(keyed.dedupe_key.as_deref(), Some("message:7"));
        assert_eq!(keyed.event.ticket_number(), "t1");
        let plain: WebhookEvent = events::close("t2", None).into();
        assert_eq!(plain.dedupe_key, None);
        assert_eq!(plain.event.ticket_number(), "t2");
        let outcome = webhook::ok(vec![keyed.clone(), plain.clone().with_dedupe_key("k")]);
        assert_eq!(outcome.events[0], keyed);
        assert_eq!(outcome.events[1].dedupe_key.as_deref(), Some("k"));
        assert_eq!(outcome.response.status, 200);
        assert!(webhook::ok(Vec::new()).events.is_empty());
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
