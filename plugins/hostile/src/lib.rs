//! `hostile`: **TEST ONLY. Never configure it for a real tenant.** A deliberately misbehaving
//! adapter that the host's sandbox, limit and isolation tests load.
//!
//! The behaviour is config `mode` when set, else the Incoming event's `message` text (trimmed,
//! lower-case), else for webhooks the query parameter `mode` (`/vendors/{tenant}/x?mode=loop`):
//!
//! | mode | does |
//! | --- | --- |
//! | `trap` | executes `unreachable` (a wasm trap) |
//! | `panic` | panics (also a trap, after the panic message is written to stderr) |
//! | `loop` | spins forever (needs the host's CPU limit) |
//! | `alloc` | allocates and touches 1 MiB blocks without end (needs the memory limit) |
//! | `recurse` | recurses without end (stack overflow) |
//! | `ssrf` | `http.send` GETs config `loopback_url` (if set) and `http://169.254.169.254/latest/meta-data/`, then fails permanently with a report such as `ssrf: loopback=denied(..); metadata=denied(..)`; a `status=` entry means the host let the request out |
//! | `kv-write` | stores `x` = `secret-of-{tenant}` in its own KV, then succeeds |
//! | `kv-peek` | reads `x` and keys that would belong to another tenant (config `other_tenant`, default `other`: `../{other}/x`, `{other}/x`, `{other}:x`, `/{other}/x`, `..\{other}\x`, `%2e%2e/{other}/x`, `\0{other}/x`) and fails permanently with a report `kv-peek: key=value|none|error(..); ...` |
//! | `http-flood` | sends 1000 GETs to config `loopback_url` and fails permanently with a count of each outcome |
//! | `log-flood` | writes 100 000 log lines, then succeeds |
//! | `kv-fill` | stores 256 KiB values under keys new to this call until the host refuses one, then fails permanently with a report `kv-fill: N stored; then: ERROR` |
//! | `events-flood` | (webhooks) answers with 1000 Outgoing events for ticket `flood` (channel `whatsapp`) |
//! | `log-forge` | logs a message and a field holding a newline, a line that looks like another tenant's, and an ANSI escape, then succeeds |
//! | `ansi-error` | fails permanently with an error holding terminal control sequences: `"ansi-error: \x1b[2J\x1b]0;forged\x07\r\nFORGED  result: ok\u{9b}31m"` (clear screen, a window title, a forged line, a C1 CSI) |
//! | `hang` | `http.send` GETs config `loopback_url` once (a vendor that does not answer keeps the call running), then succeeds |
//! | `deny-spam` | `http.send` GETs a host no tenant may call (`http://deny-spam.invalid/`) 100 000 times (the host logs each denial), then fails permanently with a count `deny-spam: denied=N other=N` |
//! | `many-headers` | `http.send` GETs config `loopback_url` with 40 000 headers, then fails permanently with a report `many-headers: limit-exceeded(..)` (a `status=` entry means the host sent it) |
//! | `html-response` | (webhooks) answers 302 with `Content-Type: text/html`, `Set-Cookie`, `Location`, `Access-Control-Allow-Origin`, `X-Request-Id: hostile` and a `<script>` body |
//! | `extra-reserved` | (webhooks) answers with one Outgoing event for ticket `extra-reserved` (channel `whatsapp`) whose `extra` sets `owner` to config `other_owner` (default `another-owner`) |
//! | `lookup-other-owner` | (Incoming) looks up the history of config `other_ticket` and the contact config `other_contact` (another owner's), then its own event's history and contact, and fails permanently with a report `lookup-other-owner: other-history=..; other-contact=..; own-history=..; own-contact=..`, each `found`, `not-found` or `failed(..)` |
//! | `lookup-flood` | (Incoming) looks up its own ticket's history 1000 times, stopping at the first failure, and fails permanently with a report `lookup-flood: found=N; then: failed(..)` |
//! | `instance-calls` | counts the calls its instance has served, this one included, and answers the count: webhooks 200 `{"instance_calls":N}`, Incoming a permanent error `instance-calls: N` (tests of `[tenants.instance_reuse]`) |
//! | `handle-leak` | opens config `handles` (default 2 000 000) `wasi:cli/stdout` streams and never drops them (each one an entry in the host's resource table), then fails permanently with `handle-leak: N opened` |
//! | `leak-calls` | opens config `handles` (default 1000) `wasi:cli/stdout` streams and never drops them, then answers as `instance-calls` does |
//! | `tcp-socket` | connects a TCP socket to config `socket_address` (default `127.0.0.1:9`) through WASI sockets (Rust's `std::net`), then fails permanently with a report `tcp-socket: connected` or `tcp-socket: error(..)`; the host is meant to trap the call instead |
//! | `name-lookup` | resolves `localhost` through WASI's `ip-name-lookup` (Rust's `ToSocketAddrs`), then fails permanently with a report `name-lookup: N addresses` or `name-lookup: error(..)`; the host is meant to trap the call instead |
//! | `echo-request` | (webhooks) answers 200 with the headers and query it was given: `{"headers":[[name,value],..],"query":".."}` |
//! | `ok`, anything else | succeeds (webhooks: 200 `{"status":"ok"}`, no events) |

use dolphin_bridge_sdk::{
    Adapter, AdapterError, BridgeEvent, CallContext, IncomingEvent, MessageType, WebhookOutcome, WebhookRequest,
    config, events, export_adapter, http, kv, log, permanent, query_param, webhook,
};
use std::hint::black_box;

struct Hostile;

export_adapter!(Hostile);

impl Adapter for Hostile {
    fn on_incoming(ctx: &CallContext, event: IncomingEvent) -> Result<(), AdapterError> {
        let mode = config::get("mode").unwrap_or_else(|| event.message.trim().to_ascii_lowercase());
        match mode.as_str() {
            "lookup-other-owner" => return Err(permanent(lookup_other_owner(&event))),
            "lookup-flood" => return Err(permanent(lookup_flood(&event))),
            _ => {}
        }
        run(ctx, &mode)
    }

    fn on_vendor_webhook(ctx: &CallContext, request: WebhookRequest) -> Result<WebhookOutcome, AdapterError> {
        let mode = config::get("mode")
            .or_else(|| query_param(&request.query, "mode"))
            .unwrap_or_default();
        if mode == "events-flood" {
            let events = (0..1000)
                .map(|i| {
                    let mut event = events::outgoing("flood", MessageType::Text, &format!("flood {i}"), "");
                    event.channel = Some("whatsapp".into());
                    BridgeEvent::Outgoing(event).into()
                })
                .collect();
            return Ok(webhook::ok(events));
        }
        if mode == "html-response" {
            return Ok(webhook::outcome(Vec::new(), html_response()));
        }
        if mode == "extra-reserved" {
            return Ok(webhook::ok(vec![extra_reserved_event().into()]));
        }
        if mode == "echo-request" {
            let body = dolphin_bridge_sdk::json!({ "headers": request.headers, "query": request.query });
            return Ok(webhook::outcome(Vec::new(), json_response(body.to_string())));
        }
        if mode == "leak-calls" {
            leak_handles(config_number("handles", 1000));
        }
        if mode == "instance-calls" || mode == "leak-calls" {
            let body = format!("{{\"instance_calls\":{}}}", count_instance_call());
            return Ok(webhook::outcome(Vec::new(), json_response(body)));
        }
        run(ctx, &mode)?;
        Ok(webhook::ok(Vec::new()))
    }
}

fn run(ctx: &CallContext, mode: &str) -> Result<(), AdapterError> {
    log::info(&format!("hostile: mode `{mode}`"));
    match mode {
        "trap" => trap(),
        "panic" => panic!("hostile adapter panics on purpose"),
        "loop" => spin(),
        "alloc" => allocate(),
        "recurse" => {
            black_box(recurse(black_box(1)));
            Ok(())
        }
        "ssrf" => Err(permanent(ssrf())),
        "kv-write" => kv::set_string("x", &format!("secret-of-{}", ctx.tenant)),
        "kv-peek" => Err(permanent(kv_peek())),
        "http-flood" => Err(permanent(http_flood())),
        "kv-fill" => Err(permanent(kv_fill(ctx))),
        "log-forge" => {
            log::log(
                log::Level::Warn,
                "forged next\nFORGED  INFO adapter: tenant=acme delivered\x1b[2J",
                &[("detail", "x\r\nFORGED field line")],
            );
            Ok(())
        }
        "ansi-error" => Err(permanent(
            "ansi-error: \x1b[2J\x1b]0;forged\x07\r\nFORGED  result: ok\u{9b}31m",
        )),
        "hang" => {
            let url = config::get("loopback_url").unwrap_or_default();
            let _ = get(&url);
            Ok(())
        }
        "deny-spam" => Err(permanent(deny_spam())),
        "instance-calls" => Err(permanent(format!("instance-calls: {}", count_instance_call()))),
        "handle-leak" => {
            let opened = leak_handles(config_number("handles", 2_000_000));
            Err(permanent(format!("handle-leak: {opened} opened")))
        }
        "leak-calls" => {
            leak_handles(config_number("handles", 1000));
            Err(permanent(format!("instance-calls: {}", count_instance_call())))
        }
        "many-headers" => Err(permanent(many_headers())),
        "tcp-socket" => Err(permanent(tcp_socket())),
        "name-lookup" => Err(permanent(name_lookup())),
        "log-flood" => {
            for i in 0..100_000u32 {
                log::info(&format!("hostile log flood line {i}"));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// What one 3Dolphins look-up answered: `found`, `not-found` or `failed(..)` (never the data).
fn lookup_outcome(
    result: Result<String, dolphin_bridge_sdk::bindings::dolphin::bridge::three_dolphins::LookupError>,
) -> String {
    use dolphin_bridge_sdk::bindings::dolphin::bridge::three_dolphins::LookupError;
    match result {
        Ok(_) => "found".into(),
        Err(LookupError::NotFound) => "not-found".into(),
        Err(LookupError::Failed(e)) => format!("failed({e})"),
    }
}

/// Asks for another owner's ticket history and contact, then for its own event's.
fn lookup_other_owner(event: &IncomingEvent) -> String {
    use dolphin_bridge_sdk::bindings::dolphin::bridge::three_dolphins as lookups;
    let other_ticket = config::get("other_ticket").unwrap_or_default();
    let other_contact = config::get("other_contact").unwrap_or_default();
    format!(
        "lookup-other-owner: other-history={}; other-contact={}; own-history={}; own-contact={}",
        lookup_outcome(lookups::history(&other_ticket)),
        lookup_outcome(lookups::contact(&other_contact)),
        lookup_outcome(lookups::history(&event.ticket_number)),
        lookup_outcome(lookups::contact(&event.contact_id)),
    )
}

/// Looks up its own ticket's history until the host refuses.
fn lookup_flood(event: &IncomingEvent) -> String {
    use dolphin_bridge_sdk::bindings::dolphin::bridge::three_dolphins as lookups;
    for found in 0..1000u32 {
        let outcome = lookup_outcome(lookups::history(&event.ticket_number));
        if outcome != "found" {
            return format!("lookup-flood: found={found}; then: {outcome}");
        }
    }
    "lookup-flood: found=1000".into()
}

fn trap() -> ! {
    #[cfg(target_family = "wasm")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_family = "wasm"))]
    std::process::abort();
}

fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

fn allocate() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 1 << 20];
        // Touch every page so the memory is really used.
        for i in (0..block.len()).step_by(4096) {
            block[i] = 1;
        }
        blocks.push(black_box(block));
    }
}

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 16]);
    recurse(black_box(frame[3] + 1)) + frame[7]
}

fn describe(result: Result<dolphin_bridge_sdk::HttpResponse, http::HttpError>) -> String {
    match result {
        Ok(r) => format!("status={} body={}", r.status, http::excerpt(&r.body)),
        Err(http::HttpError::Denied(e)) => format!("denied({e})"),
        Err(http::HttpError::Timeout) => "timeout".into(),
        Err(http::HttpError::Connection(e)) => format!("connection({e})"),
        Err(http::HttpError::LimitExceeded(e)) => format!("limit-exceeded({e})"),
    }
}

fn get(url: &str) -> Result<dolphin_bridge_sdk::HttpResponse, http::HttpError> {
    http::try_send(&http::request("GET", url, &[], Vec::new()))
}

/// New keys on every call (named after the delivery), so what earlier calls stored still counts.
fn kv_fill(ctx: &CallContext) -> String {
    let value = vec![7u8; 256 << 10];
    for i in 0..10_000u32 {
        if let Err(e) = kv::set(&format!("fill-{}-{i}", ctx.delivery_id), &value) {
            return format!("kv-fill: {i} stored; then: {e:?}");
        }
    }
    "kv-fill: 10000 stored".into()
}

fn ssrf() -> String {
    let mut report = Vec::new();
    if let Some(url) = config::get("loopback_url") {
        report.push(format!("loopback={}", describe(get(&url))));
    }
    let metadata = get("http://169.254.169.254/latest/meta-data/");
    report.push(format!("metadata={}", describe(metadata)));
    format!("ssrf: {}", report.join("; "))
}

fn kv_peek() -> String {
    let other = config::get("other_tenant").unwrap_or_else(|| "other".into());
    let keys = [
        "x".to_owned(),
        format!("../{other}/x"),
        format!("{other}/x"),
        format!("{other}:x"),
        format!("/{other}/x"),
        format!("..\\{other}\\x"),
        format!("%2e%2e/{other}/x"),
        format!("\0{other}/x"),
    ];
    let seen: Vec<String> = keys
        .iter()
        .map(|key| {
            let value = match kv::get(key) {
                Ok(Some(v)) => String::from_utf8_lossy(&v).into_owned(),
                Ok(None) => "none".into(),
                Err(e) => format!("error({})", e.reason()),
            };
            format!("{}={value}", key.escape_default())
        })
        .collect();
    format!("kv-peek: {}", seen.join("; "))
}

fn http_flood() -> String {
    let Some(url) = config::get("loopback_url") else {
        return "http-flood: config `loopback_url` is not set".into();
    };
    let (mut ok, mut denied, mut limited, mut failed) = (0, 0, 0, 0);
    for _ in 0..1000 {
        match get(&url) {
            Ok(_) => ok += 1,
            Err(http::HttpError::Denied(_)) => denied += 1,
            Err(http::HttpError::LimitExceeded(_)) => limited += 1,
            Err(_) => failed += 1,
        }
    }
    format!("http-flood: responses={ok} denied={denied} limit-exceeded={limited} failed={failed}")
}

/// Denied requests cost the host a log line each: as many as the host lets this call make.
fn deny_spam() -> String {
    let (mut denied, mut other) = (0u32, 0u32);
    for i in 0..100_000u32 {
        match get(&format!("http://deny-spam.invalid/{i}")) {
            Err(http::HttpError::Denied(_)) => denied += 1,
            _ => other += 1,
        }
    }
    format!("deny-spam: denied={denied} other={other}")
}

/// One request with 40 000 distinct header names (an HTTP client's header map holds 32 768).
fn many_headers() -> String {
    let Some(url) = config::get("loopback_url") else {
        return "many-headers: config `loopback_url` is not set".into();
    };
    let request = dolphin_bridge_sdk::HttpRequest {
        method: "GET".into(),
        url,
        headers: (0..40_000).map(|i| (format!("x-h{i}"), "v".to_string())).collect(),
        body: Vec::new(),
    };
    format!("many-headers: {}", describe(http::try_send(&request)))
}

/// An answer that would, on the bridge's origin, redirect, set a cookie, open CORS and serve a
/// script as HTML.
/// Calls this instance has served, this one included: state that outlives a call only when the
/// host reuses the instance.
/// Config `key` as a number, else `default`.
fn config_number(key: &str, default: u32) -> u32 {
    config::get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[cfg(target_family = "wasm")]
#[link(wasm_import_module = "wasi:cli/stdout@0.2.0")]
unsafe extern "C" {
    /// `wasi:cli/stdout.get-stdout`: a new `output-stream` handle on every call.
    #[link_name = "get-stdout"]
    fn get_stdout() -> i32;
}

/// Connects a TCP socket through WASI sockets, which the host does not give adapters.
fn tcp_socket() -> String {
    let target = config::get("socket_address").unwrap_or_else(|| "127.0.0.1:9".into());
    match std::net::TcpStream::connect(target.as_str()) {
        Ok(_) => "tcp-socket: connected".into(),
        Err(e) => format!("tcp-socket: error({e})"),
    }
}

/// Resolves a name through WASI's `ip-name-lookup`, which the host does not give adapters.
fn name_lookup() -> String {
    use std::net::ToSocketAddrs;
    match ("localhost", 80).to_socket_addrs() {
        Ok(addresses) => format!("name-lookup: {} addresses", addresses.count()),
        Err(e) => format!("name-lookup: error({e})"),
    }
}

/// Opens `n` stdout streams and forgets them: each stays in the host's resource table until the
/// instance goes. Returns how many were opened (a host that refuses one traps the call).
#[cfg(target_family = "wasm")]
fn leak_handles(n: u32) -> u32 {
    for _ in 0..n {
        // SAFETY: a WASI import without arguments, answering a handle the guest owns.
        black_box(unsafe { get_stdout() });
    }
    n
}

/// Natively (the crate's own tests) there is no host table to fill.
#[cfg(not(target_family = "wasm"))]
fn leak_handles(n: u32) -> u32 {
    n
}

fn count_instance_call() -> u32 {
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
}

fn json_response(body: String) -> dolphin_bridge_sdk::HttpResponse {
    dolphin_bridge_sdk::HttpResponse {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.into_bytes(),
    }
}

fn html_response() -> dolphin_bridge_sdk::HttpResponse {
    let headers = [
        ("Content-Type", "text/html"),
        ("Set-Cookie", "session=hostile; Path=/"),
        ("Location", "https://evil.example/"),
        ("Access-Control-Allow-Origin", "*"),
        ("X-Request-Id", "hostile"),
    ];
    dolphin_bridge_sdk::HttpResponse {
        status: 302,
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        body: b"<script>alert(document.cookie)</script>".to_vec(),
    }
}

/// An Outgoing event that tries to speak for another 3Dolphins owner through its extra fields.
fn extra_reserved_event() -> BridgeEvent {
    let owner = config::get("other_owner").unwrap_or_else(|| "another-owner".into());
    let mut event = events::outgoing("extra-reserved", MessageType::Text, "not yours", "");
    event.channel = Some("whatsapp".into());
    event.extra = vec![("owner".into(), format!("\"{owner}\""))];
    BridgeEvent::Outgoing(event)
}
