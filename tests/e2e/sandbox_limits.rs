//! Holes in the sandbox and its configuration, closed: secrets too short to be real (an empty
//! `[admin] token` used to open the admin API), an unbounded webhook tolerance, IPv6 ranges
//! that embed or tunnel to a private IPv4 address; and adapters that attack the host itself
//! (many memories, a shared memory, floods of denied requests or headers, answers that would
//! act on the bridge's origin, events speaking for another owner), each stopped by a named
//! limit while a healthy tenant is served.

use std::path::PathBuf;

use dolphin_bridge_tests::bridge::{WebhookAuth, run_subcommand};
use dolphin_bridge_tests::events::EXAMPLE_OWNER;
use dolphin_bridge_tests::reload_support::{admin_reload, log_mark, replace_by_rename, wait_for_log_line};
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, MockThreeDolphins, MockVendor, Tenant, adapters};
use serde_json::json;

use crate::common::{self, API_TOKEN, Attacked, VILLAIN_OWNER, assert_accepted, hostile_villain};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A config `check` accepts but for what `customize` changes.
fn config(customize: impl FnOnce(Tenant) -> Tenant) -> BridgeConfig {
    BridgeConfig::new("http://127.0.0.1:9")
        .api_token(API_TOKEN)
        .tenant(customize(Tenant::new("acme", EXAMPLE_OWNER, adapters::echo())))
}

/// `check` refuses `config`, naming `field` and never showing `secret`.
fn assert_refused(config: &BridgeConfig, field: &str, secret: &str) {
    let output = run_subcommand("check", config);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(!output.status.success(), "accepted ({field}): {stdout}\n{stderr}");
    assert!(stderr.contains(field), "the field is not named: {stderr}");
    if !secret.is_empty() {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "the secret was shown: {stdout}\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_admin_token_does_not_open_the_admin_api() {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let mut config = BridgeConfig::new(&three_dolphins.base_url()).api_token(API_TOKEN);
    config.admin_token = Some(String::new());
    match Bridge::try_start(config.clone()).await {
        Ok(bridge) => {
            let open = bridge
                .client()
                .get(&format!("{}/admin/dead-letters", bridge.url()))
                .await;
            panic!(
                "a bridge with an empty admin token started; GET /admin/dead-letters without credentials: {}",
                open.status
            );
        }
        Err(err) => assert!(err.contains("admin.token"), "{err}"),
    }
    assert_refused(&config, "admin.token", "");
}

#[test]
fn short_secrets_are_refused_without_being_shown() {
    let mut short_admin = config(|t| t);
    short_admin.admin_token = Some("adm-tok-15bytes".into());
    assert_refused(&short_admin, "admin.token", "adm-tok-15bytes");

    let short_incoming = config(|t| t).incoming_token(Some("in-tok-15-bytes"));
    assert_refused(&short_incoming, "server.incoming_token", "in-tok-15-bytes");

    for auth in ["token", "chatwoot", "standard-webhooks"] {
        let short = config(|t| t.webhook(WebhookAuth::with_secret(auth, "7-bytes")));
        assert_refused(&short, "tenants[0].webhook.secret", "7-bytes");
        let long_enough = config(|t| t.webhook(WebhookAuth::with_secret(auth, "8--bytes")));
        let output = run_subcommand("check", &long_enough);
        assert!(output.status.success(), "{auth}: {}", text(&output.stderr));
    }
    for secret in ["whsec_", "whsec_!!not-base64!!", "whsec_c2hvcnQh"] {
        let bad = config(|t| t.webhook(WebhookAuth::with_secret("standard-webhooks", secret)));
        assert_refused(&bad, "tenants[0].webhook.secret", secret);
    }
}

#[test]
fn a_tolerance_past_one_day_is_refused() {
    let with_tolerance = |tolerance_s: u64| {
        config(|t| {
            t.webhook(WebhookAuth {
                tolerance_s: Some(tolerance_s),
                ..WebhookAuth::with_secret("chatwoot", "chatwoot-webhook-secret")
            })
        })
    };
    // Two days: within the default dedupe window (3 days), so only the cap refuses it.
    assert_refused(
        &with_tolerance(2 * 86_400),
        "tenants[0].webhook.tolerance_s",
        "chatwoot-webhook-secret",
    );
    let output = run_subcommand("check", &with_tolerance(86_400));
    assert!(output.status.success(), "{}", text(&output.stderr));
}

/// Every range, as an allowed origin whose address embeds or tunnels to loopback (or is
/// site-local): the adapter's request is denied before any connection is tried.
#[tokio::test(flavor = "multi_thread")]
async fn adapters_cannot_reach_ipv6_ranges_that_embed_ipv4() {
    let origins = [
        "http://[::7f00:1]:9",          // IPv4-compatible ::127.0.0.1
        "http://[2002:7f00:1::1]:9",    // 6to4 of 127.0.0.1
        "http://[2001::1]:9",           // Teredo
        "http://[64:ff9b:1::7f00:1]:9", // local-use NAT64 of 127.0.0.1
        "http://[64:ff9b::7f00:1]:9",   // NAT64 of 127.0.0.1
        "http://[fec0::1]:9",           // site-local
    ];
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let mut config = BridgeConfig::new(&three_dolphins.base_url()).api_token(API_TOKEN);
    let owner = |i: usize| format!("0bad{i:028}");
    for (i, origin) in origins.iter().enumerate() {
        config = config.tenant(
            Tenant::new(&format!("villain{i}"), &owner(i), adapters::hostile())
                .allow_private_networks(false)
                .allow(origin)
                .config("mode", "ssrf")
                .config("loopback_url", &format!("{origin}/")),
        );
    }
    let bridge = Bridge::start(config).await;
    for (i, origin) in origins.iter().enumerate() {
        let id = assert_accepted(&bridge.send_event(Event::fresh().owner(&owner(i))).await);
        let dead = bridge.wait_for_delivery(&id, "dead").await;
        let error = dead["last_error"].as_str().unwrap_or_default();
        assert!(error.contains("loopback=denied("), "{origin}: {error}");
    }
}

/// The components in the WebAssembly text format (`plugins/hostile-wat`, built by
/// `cargo xtask build-plugins`).
fn wat_component(name: &str) -> PathBuf {
    adapters::adapter(&format!("hostile-wat-{name}"))
}

/// 12 memories of 48 MiB are each under any limit on one memory; counted together they are far
/// over the call's `memory_mib`. Four such calls at once fail with the limit's error while a
/// healthy tenant is served, and are not retried (they would fail the same way every time).
#[tokio::test(flavor = "multi_thread")]
async fn many_memories_are_stopped_by_the_calls_memory_limit() {
    let mut env =
        Attacked::start(Tenant::new("villain", VILLAIN_OWNER, wat_component("memories")).limit("memory_mib", 64)).await;
    let send = || env.bridge.send_event(Event::fresh().owner(VILLAIN_OWNER));
    let (a, b, c, d) = tokio::join!(send(), send(), send(), send());
    let ids: Vec<String> = [a, b, c, d].iter().map(assert_accepted).collect();
    env.assert_healthy_tenant_served().await;
    for id in &ids {
        let dead = env.bridge.wait_for_delivery(id, "dead").await;
        let error = dead["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("memory limit of 64 MiB (all of the call's memories together)"),
            "the reason names the memory limit: {error}"
        );
        assert_eq!(dead["attempts"], 1, "an exceeded limit is not retried: {dead:#}");
    }
    env.assert_healthy_tenant_served().await;
}

/// Given room for its memories, the same component runs and answers its own error: the memory
/// limit, not a broken component, is what stops it above.
#[tokio::test(flavor = "multi_thread")]
async fn the_many_memories_component_runs_when_its_memories_fit() {
    let env =
        Attacked::start(Tenant::new("villain", VILLAIN_OWNER, wat_component("memories")).limit("memory_mib", 1024))
            .await;
    let (dead, error) = env.villain_dead("ok").await;
    assert_eq!(dead["attempts"], 1);
    assert!(error.contains("memories: all 12 memories were created"), "{error}");
}

/// A shared memory grows without asking the store's limiter: the engine has no threads, so a
/// component holding one is refused when loaded: by `check`, and by a reload, which keeps the
/// tenant on its previous adapter while every tenant goes on being served.
#[tokio::test(flavor = "multi_thread")]
async fn a_component_with_a_shared_memory_is_refused_at_load() {
    let shared_grow = std::fs::read(wat_component("shared-grow")).expect("the shared-grow component");
    let checked = run_subcommand(
        "check",
        &BridgeConfig::new("http://127.0.0.1:9")
            .api_token(API_TOKEN)
            .tenant(Tenant::new("villain", VILLAIN_OWNER, wat_component("shared-grow"))),
    );
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(!checked.status.success(), "check accepted a shared memory: {stderr}");
    assert!(
        stderr.contains("villain") && stderr.contains("hostile_wat_shared_grow.wasm"),
        "the error names the tenant and the file: {stderr}"
    );
    assert!(
        stderr.contains("shared memor"),
        "the error names the shared memory: {stderr}"
    );

    // A running bridge: the villain's adapter file is replaced by the shared-memory component.
    let dir = tempfile::tempdir().expect("a temp dir");
    let villain_file = dir.path().join("villain.wasm");
    std::fs::copy(adapters::hostile(), &villain_file).expect("copying the hostile adapter");
    let mut env = Attacked::start(Tenant::new("villain", VILLAIN_OWNER, &villain_file)).await;
    let mark = log_mark(&env.bridge);
    replace_by_rename(&villain_file, &shared_grow);
    let response = admin_reload(&env.bridge).await;
    assert_eq!(response.status, 200, "{}", response.describe());
    assert_eq!(
        response.json()["kept_previous"],
        json!(["villain"]),
        "the villain keeps its previous adapter: {}",
        response.describe()
    );
    // The log arrives through a pipe, maybe after the reload's answer: wait for the line.
    let rejected = wait_for_log_line(&env.bridge, mark, &["adapter file rejected", "villain"]).await;
    assert!(rejected.contains("shared memor"), "the log says why: {rejected}");
    env.assert_healthy_tenant_served().await;
    // The villain runs its previous version: the shared memory never ran.
    let id = env.villain_event("ok").await;
    env.bridge.wait_for_delivery(&id, "delivered").await;
}

/// Every denied request is logged by the host; the denials are charged to the call's log
/// budget, so thousands of them (the request count allowing) fail the call naming the log limit
/// and leave a bounded log.
#[tokio::test(flavor = "multi_thread")]
async fn denied_requests_are_charged_to_the_log_budget() {
    let mut env = Attacked::start(hostile_villain().limit("http_calls", 100_000).call_timeout_ms(60_000)).await;
    let (dead, error) = env.villain_dead("deny-spam").await;
    assert_eq!(dead["attempts"], 1, "{error}");
    assert!(error.contains("log limit of 65536 bytes per call"), "{error}");
    let log = env.bridge.stderr();
    let denials = log
        .lines()
        .filter(|l| l.contains("adapter HTTP request denied"))
        .count();
    // Each reason names the denied origin (`http://deny-spam.invalid`, and more), so the default
    // 64 KiB budget covers at most this many denials.
    let most = (64 << 10) / "http://deny-spam.invalid".len() + 1;
    assert!(
        (1..=most).contains(&denials),
        "{denials} denials logged (at most {most} fit the budget); log size {} bytes",
        log.len()
    );
    env.assert_healthy_tenant_served().await;
}

/// An adapter answer that would redirect, set a cookie, open CORS and serve HTML on the
/// bridge's origin reaches the vendor without any of it, and with `nosniff`.
#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_answer_cannot_act_on_the_bridges_origin() {
    let mut env = Attacked::start(hostile_villain()).await;
    let answer = env
        .bridge
        .send_webhook("villain", "/hook?mode=html-response", &json!({}))
        .await;
    assert_eq!(answer.status, 302, "the status passes: {}", answer.describe());
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; charset=utf-8"),
        "HTML is served as plain text: {:?}",
        answer.headers
    );
    for header in ["set-cookie", "location", "access-control-allow-origin"] {
        assert_eq!(answer.header(header), None, "{header} passed: {:?}", answer.headers);
    }
    assert_eq!(
        answer.header("x-content-type-options"),
        Some("nosniff"),
        "{:?}",
        answer.headers
    );
    assert_eq!(
        answer.header("x-request-id"),
        Some("hostile"),
        "a harmless header passes"
    );
    env.assert_healthy_tenant_served().await;
}

/// A request with 40 000 header names (more than an HTTP client's header map holds) is refused
/// by the header cap before anything is sent: the call fails naming it, nothing panics.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_with_too_many_headers_fails_the_call_not_the_host() {
    let target = MockVendor::start().await;
    let mut env = Attacked::start(
        hostile_villain()
            .allow(&target.base_url())
            .config("loopback_url", &target.url()),
    )
    .await;
    let (dead, error) = env.villain_dead("many-headers").await;
    assert_eq!(dead["attempts"], 1, "{error}");
    assert!(
        error.contains("many-headers: limit-exceeded(request has 40000 headers; at most 100 are allowed)"),
        "{error}"
    );
    assert!(target.requests().is_empty(), "the request went out");
    assert!(!env.bridge.stderr().contains("panicked"), "the host panicked");
    env.assert_healthy_tenant_served().await;
}

/// An Outgoing event whose `extra` sets `owner` would speak for another 3Dolphins owner: the
/// webhook is answered `502 adapter_invalid_event` naming the key, and nothing is stored or
/// posted.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_cannot_set_a_reserved_key_through_extra() {
    let mut env = Attacked::start(hostile_villain().config("other_owner", EXAMPLE_OWNER)).await;
    let answer = env
        .bridge
        .send_webhook("villain", "/hook?mode=extra-reserved", &json!({}))
        .await;
    common::assert_refused(&answer, 502, "adapter_invalid_event", &[]);
    assert!(
        answer.error_message().unwrap_or_default().contains("`owner`"),
        "the key is named: {}",
        answer.describe()
    );
    assert_eq!(env.bridge.outbox_stats().await["pending"], 0);
    env.assert_healthy_tenant_served().await;
    assert!(
        env.three_dolphins.event_posts().is_empty(),
        "posted to 3Dolphins: {:#?}",
        env.three_dolphins.event_posts()
    );
}

/// The bridge's peak resident memory so far (`VmHWM` in `/proc/PID/status`), in bytes.
fn peak_rss(bridge: &Bridge) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", bridge.pid())).expect("/proc/PID/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmHWM line");
    kib << 10
}

/// A guest that opens WASI handles (`wasi:cli/stdout` streams) and never drops them grows the
/// host's resource table, which is not guest memory: the call fails at the table's limit, naming
/// it, long before the host's memory grows, and the healthy tenant is served meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_leaks_handles_fails_on_the_handle_limit_and_the_host_stays_small() {
    let mut env = Attacked::start(hostile_villain().limit("cpu_ms", 30_000).call_timeout_ms(60_000)).await;
    env.assert_healthy_tenant_served().await;
    let before = peak_rss(&env.bridge);
    let (dead, error) = env.villain_dead("handle-leak").await;
    let grown = peak_rss(&env.bridge).saturating_sub(before);
    assert_eq!(dead["attempts"], 1, "an exceeded limit is not retried: {error}");
    assert!(
        error.contains("resource handle limit of 4096 (limits.resource_handles)"),
        "the reason names the limit: {error}"
    );
    assert!(grown < 32 << 20, "the bridge's peak RSS grew by {} MiB", grown >> 20);
    env.assert_healthy_tenant_served().await;
}

/// WASI sockets and name look-ups are not linked (adapters reach vendors through `http.send`
/// only): an adapter that imports them still loads, and a call that opens a TCP socket or
/// resolves a name through them (Rust's `std::net`) traps naming the interface, where the host's
/// socket implementation used to answer it. The healthy tenant is served meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn wasi_sockets_and_name_lookups_trap_naming_the_interface() {
    let mut env = Attacked::start(hostile_villain()).await;
    for (mode, function) in [
        ("tcp-socket", "wasi:sockets/tcp-create-socket@0.2.6#create-tcp-socket"),
        // `getaddrinfo` asks for the network handle before it resolves.
        ("name-lookup", "wasi:sockets/instance-network@0.2.6#instance-network"),
    ] {
        let (dead, error) = env.villain_dead(mode).await;
        assert_eq!(dead["attempts"], 1, "a trap is not retried: {error}");
        assert!(
            error.contains("adapter trapped") && error.contains(&format!("`{function}` is not available to adapters")),
            "{mode}: the call traps naming the interface: {error}"
        );
        env.assert_healthy_tenant_served().await;
    }
}
