//! A misbehaving adapter (the test-only `hostile` adapter) fails only its own calls: the bridge
//! keeps serving every other tenant, and no tenant reaches another's data or a host it was not
//! allowed.

use std::time::{Duration, Instant};

use dolphin_bridge_tests::corpus_support::start_with_options;
use dolphin_bridge_tests::events::EXAMPLE_OWNER;
use dolphin_bridge_tests::reload_support::{metric_value, metrics_text};
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, MockThreeDolphins, MockVendor, Tenant, adapters};
use serde_json::Value;

use crate::common::{API_TOKEN, Attacked, VILLAIN_OWNER, assert_accepted, echo_tenant, hostile_villain};

const OTHER_OWNER: &str = "0the40the40the40the40the40the4aa";

#[tokio::test(flavor = "multi_thread")]
async fn a_trapping_adapter_fails_only_its_own_deliveries() {
    let mut env = Attacked::start(hostile_villain()).await;
    for mode in ["trap", "panic", "recurse"] {
        let (dead, error) = env.villain_dead(mode).await;
        assert_eq!(dead["attempts"], 1, "a trap is not retried: {dead:#}");
        assert!(
            error.contains("trap"),
            "{mode}: the reason should say it trapped: {error}"
        );
        env.assert_healthy_tenant_served().await;
    }
    // The same tenant works again for a call that does not trap: nothing stayed broken.
    let id = env.villain_event("ok").await;
    env.bridge.wait_for_delivery(&id, "delivered").await;
    assert!(env.bridge.is_running());
    let letters = env.bridge.dead_letters(Some("acme")).await;
    assert!(letters.is_empty(), "the healthy tenant has dead letters: {letters:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_looping_adapter_is_stopped_by_its_cpu_limit_while_others_are_served() {
    // A CPU budget well inside the call timeout, so the CPU limit is what stops the spin.
    let mut env = Attacked::start(hostile_villain().call_timeout_ms(20_000).limit("cpu_ms", 500)).await;
    let id = env.villain_event("loop").await;
    // While the hostile call spins, the healthy tenant is served.
    env.bridge.wait_for_log("hostile: mode `loop`").await;
    env.assert_healthy_tenant_served().await;
    assert_eq!(
        env.bridge.delivery(&id).await["state"],
        "pending",
        "the spinning call ended before the healthy tenant was served"
    );

    let dead = env.bridge.wait_for_delivery(&id, "dead").await;
    // Spinning is the adapter's own fault: stopped and dead-lettered, not retried.
    assert_eq!(dead["attempts"], 1, "{dead:#}");
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("CPU time limit of 500 ms"),
        "the reason names the CPU limit: {error}"
    );
    env.assert_healthy_tenant_served().await;

    // The CPU each tenant's adapter used is exported: the spinner's whole budget, and more
    // than the healthy tenant's few calls.
    let text = metrics_text(&env.bridge).await;
    let cpu = |tenant| metric_value(&text, "dolphin_bridge_adapter_cpu_seconds_total", &[("tenant", tenant)]);
    let (villain, acme) = (cpu("villain"), cpu("acme"));
    assert!(villain >= 0.5, "the spinner's CPU time is counted: {villain} s");
    assert!(acme > 0.0 && acme < villain, "healthy {acme} s, spinner {villain} s");
    // So is how long each call waited for an adapter thread: one sample per call.
    let waits = |tenant| {
        metric_value(
            &text,
            "dolphin_bridge_adapter_wait_seconds_count",
            &[("tenant", tenant)],
        )
    };
    assert_eq!(waits("villain"), 1.0, "{text}");
    assert_eq!(waits("acme"), 2.0, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adapter_allocating_without_end_is_stopped() {
    let mut env = Attacked::start(hostile_villain().call_timeout_ms(20_000)).await;
    let (dead, error) = env.villain_dead("alloc").await;
    assert_eq!(dead["attempts"], 1, "not retried: {dead:#}");
    assert!(
        error.contains("memory") || error.contains("trapped"),
        "stopped by the memory limit: {error}"
    );
    env.assert_healthy_tenant_served().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_flood_does_not_take_the_bridge_down() {
    let mut env = Attacked::start(hostile_villain().call_timeout_ms(20_000)).await;
    let id = env.villain_event("log-flood").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = env.bridge.delivery(&id).await["state"].clone();
        if state != "pending" {
            break;
        }
        assert!(Instant::now() < deadline, "the log flood is still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.assert_healthy_tenant_served().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_cannot_read_another_tenants_kv() {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let bridge = Bridge::start(
        BridgeConfig::new(&three_dolphins.base_url())
            .api_token(API_TOKEN)
            .tenant(hostile_villain().config("other_tenant", "other"))
            .tenant(Tenant::new("other", OTHER_OWNER, adapters::hostile()).config("other_tenant", "villain")),
    )
    .await;
    let run = async |owner: &str, mode: &str, state: &str| {
        let id = assert_accepted(&bridge.send_event(Event::fresh().owner(owner).message(mode)).await);
        let delivery = bridge.wait_for_delivery(&id, state).await;
        delivery["last_error"].as_str().unwrap_or_default().to_string()
    };

    run(OTHER_OWNER, "kv-write", "delivered").await;
    // The writer sees its own value (so the peek below is not vacuous).
    let own = run(OTHER_OWNER, "kv-peek", "dead").await;
    assert!(own.contains("x=secret-of-other"), "the writer's own key: {own}");

    let report = run(VILLAIN_OWNER, "kv-peek", "dead").await;
    assert!(report.contains("kv-peek:"), "{report}");
    assert!(report.contains("x=none"), "the peeker's own `x`: {report}");
    assert!(
        !report.contains("secret-of-other"),
        "a tenant read another tenant's KV: {report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adapter_cannot_call_a_host_outside_its_allow_list() {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let allowed = MockVendor::start().await;
    let forbidden = MockVendor::start().await;
    // The echo tenant may call `allowed` only, but is configured to post to `forbidden`.
    let tenant = echo_tenant("acme", EXAMPLE_OWNER, &allowed).config("url", &forbidden.url());
    let bridge = Bridge::start(
        BridgeConfig::new(&three_dolphins.base_url())
            .api_token(API_TOKEN)
            .tenant(tenant),
    )
    .await;
    let id = assert_accepted(&bridge.send_event(Event::fresh()).await);
    let dead = bridge.wait_for_delivery(&id, "dead").await;
    assert_eq!(dead["attempts"], 1, "a denied call is not retried: {dead:#}");
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("denied"), "{error}");
    assert!(forbidden.requests().is_empty(), "the host let the call out");
    assert!(allowed.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_whose_adapter_traps_is_a_502_and_posts_nothing() {
    let mut env = Attacked::start(hostile_villain()).await;
    let trap = env
        .bridge
        .send_webhook("villain", "/hook?mode=trap", &serde_json::json!({}))
        .await;
    assert_eq!(trap.status, 502, "{}", trap.describe());
    assert_eq!(
        trap.error_code().as_deref(),
        Some("adapter_trapped"),
        "{}",
        trap.describe()
    );
    let ok = env
        .bridge
        .send_webhook("villain", "/hook?mode=ok", &serde_json::json!({}))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.describe());
    assert!(env.three_dolphins.event_posts().is_empty());
    env.assert_healthy_tenant_served().await;
}

/// Webhooks can come from anyone who knows the URL (with `auth = "none"`, or a leaked token):
/// their faults rest the webhook side of the adapter only, never the delivery of the tenant's
/// customers' messages.
#[tokio::test(flavor = "multi_thread")]
async fn trapping_webhooks_trip_the_webhook_breaker_but_incoming_deliveries_go_on() {
    let env = Attacked::start(hostile_villain()).await;
    let trap = async || {
        env.bridge
            .send_webhook("villain", "/hook?mode=trap", &serde_json::json!({}))
            .await
    };
    // The default breaker opens after 10 consecutive faults.
    for _ in 0..10 {
        let response = trap().await;
        assert_eq!(
            response.error_code().as_deref(),
            Some("adapter_trapped"),
            "{}",
            response.describe()
        );
    }
    let rested = trap().await;
    assert_eq!(
        rested.error_code().as_deref(),
        Some("adapter_circuit_open"),
        "{}",
        rested.describe()
    );
    let id = env.villain_event("ok").await;
    let delivered = env.bridge.wait_for_delivery(&id, "delivered").await;
    assert_eq!(delivered["attempts"], 1, "{delivered}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_cannot_fill_the_disk_through_its_key_value_store() {
    let mut env = Attacked::start(hostile_villain().limit("kv_total_bytes", 1 << 20)).await;
    let (_, first) = env.villain_dead("kv-fill").await;
    // Three 256 KiB values fit in 1 MiB (with their keys); the fourth would not.
    assert!(first.contains("kv-fill: 3 stored; then:"), "{first}");
    assert!(
        first.contains("quota of 1048576 bytes") && first.contains("kv_total_bytes"),
        "{first}"
    );
    // The quota holds across calls: what is stored counts.
    let (_, second) = env.villain_dead("kv-fill").await;
    assert!(second.contains("kv-fill: 0 stored"), "{second}");
    env.assert_healthy_tenant_served().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_cannot_flood_3dolphins_with_events() {
    let mut env = Attacked::start(hostile_villain()).await;
    let flood = env
        .bridge
        .send_webhook("villain", "/hook?mode=events-flood", &serde_json::json!({}))
        .await;
    assert_eq!(flood.status, 502, "{}", flood.describe());
    assert_eq!(flood.error_code().as_deref(), Some("adapter_limit_exceeded"));
    assert!(flood.text().contains("webhook_events"), "{}", flood.describe());
    env.assert_healthy_tenant_served().await;
    assert_eq!(env.bridge.outbox_stats().await["pending"], 0);
    assert!(env.three_dolphins.event_posts().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_gets_no_more_concurrent_webhook_calls_than_its_limit() {
    let hanging = MockVendor::start().await;
    hanging.set_delay(Duration::from_secs(600));
    let mut env = Attacked::start(
        hostile_villain()
            .limit("webhook_concurrency", 1)
            .allow(&hanging.base_url())
            .config("loopback_url", &hanging.url()),
    )
    .await;
    let running = {
        let client = env.bridge.client().clone();
        let url = format!("{}?mode=hang", env.bridge.webhook_url("villain", "/hook"));
        tokio::spawn(async move { client.post_raw(&url, Some("application/json"), "{}").await })
    };
    hanging.wait_for_bodies(1).await;
    let refused = env
        .bridge
        .send_webhook("villain", "/hook?mode=ok", &serde_json::json!({}))
        .await;
    assert_eq!(refused.status, 503, "{}", refused.describe());
    assert_eq!(refused.error_code().as_deref(), Some("webhook_concurrency_limit"));
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(!running.is_finished(), "the first webhook call still runs");
    env.assert_healthy_tenant_served().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adapter_cannot_forge_log_lines_or_send_terminal_escapes() {
    let env = Attacked::start(hostile_villain()).await;
    let id = env.villain_event("log-forge").await;
    env.bridge.wait_for_delivery(&id, "delivered").await;
    env.bridge.wait_for_log("forged next").await;
    let log = env.bridge.stderr();
    let forged: Vec<&str> = log.lines().filter(|l| l.starts_with("FORGED")).collect();
    assert!(forged.is_empty(), "forged lines: {forged:?}");
    assert!(!log.contains('\u{1b}'), "an escape reached the log");
    assert!(log.contains("forged next\\u{a}FORGED"), "the newline is shown escaped");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_a_line_whatever_an_adapter_logs() {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let bridge = Bridge::start(
        BridgeConfig::new(&three_dolphins.base_url())
            .api_token(API_TOKEN)
            .env("DOLPHIN_BRIDGE_LOG_FORMAT", "json")
            .tenant(hostile_villain()),
    )
    .await;
    let id = assert_accepted(
        &bridge
            .send_event(Event::fresh().owner(VILLAIN_OWNER).message("log-forge"))
            .await,
    );
    bridge.wait_for_delivery(&id, "delivered").await;
    bridge.wait_for_log("forged next").await;
    let log = bridge.stderr();
    let mut adapter_lines = 0;
    // The harness keeps the bridge's stdout in the same log, marked `[stdout]`.
    for line in log
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("[stdout]"))
    {
        let record: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if record["target"] == "adapter" {
            adapter_lines += 1;
            assert_eq!(record["fields"]["tenant"], "villain", "{record}");
        }
    }
    assert!(adapter_lines >= 1, "no adapter record in:\n{log}");
}

/// With every slot of the instance pool taken (`adapters.pool_instances = 1`, held by a call
/// waiting for a slow vendor), a second call waits for the slot and is served, rather than
/// failing to instantiate.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_finds_the_instance_pool_full_waits_for_a_slot() {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let slow = MockVendor::start().await;
    slow.set_delay(Duration::from_millis(1_500));
    let villain = hostile_villain()
        .allow(&slow.base_url())
        .config("loopback_url", &slow.url());
    let config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .tenant(villain);
    let bridge = start_with_options(&config, &[("adapters", "pool_instances", 1.into())]).await;
    let holding = {
        let client = bridge.client().clone();
        let url = format!("{}?mode=hang", bridge.webhook_url("villain", "/hook"));
        tokio::spawn(async move { client.post_raw(&url, Some("application/json"), "{}").await })
    };
    slow.wait_for_bodies(1).await;
    let first_call_waits_since = Instant::now();
    let waiting = bridge
        .send_webhook("villain", "/hook?mode=ok", &serde_json::json!({}))
        .await;
    assert_eq!(waiting.status, 200, "{}", waiting.describe());
    // The first call holds the only slot until the vendor answers it, 1.5 s after its request
    // arrived: the second is served only then. (Whether the first call's client task has run
    // by now is up to the test's scheduler, so that is not what is asserted.)
    let waited = first_call_waits_since.elapsed();
    assert!(
        waited >= Duration::from_millis(1_200),
        "the second call was served after {waited:?}, while the first still held the only slot"
    );
    let held = holding.await.expect("the first call's task");
    assert_eq!(held.status, 200, "{}", held.describe());
}

/// An event that comes due while its tenant's adapter is resting is not attempted: it waits
/// for the rest to end (with none of its retries used up), then the trial call delivers it.
/// Before, each refusal counted as a failed attempt, and the test retry schedule (100 and 200
/// ms) dead-lettered it within 300 ms without the adapter ever running.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_due_while_its_adapter_rests_waits_for_the_rest_to_end() {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .tenant(hostile_villain());
    let bridge = start_with_options(
        &config,
        &[
            ("adapters", "breaker_failures", 1.into()),
            ("adapters", "breaker_cooldown_ms", 2_000.into()),
        ],
    )
    .await;
    let send = async |message: &str| {
        assert_accepted(
            &bridge
                .send_event(Event::fresh().owner(VILLAIN_OWNER).message(message))
                .await,
        )
    };
    let trapped = send("trap").await;
    bridge.wait_for_delivery(&trapped, "dead").await;
    let resting_since = Instant::now();
    let waiting = send("ok").await;
    let delivered = bridge.wait_for_delivery(&waiting, "delivered").await;
    assert_eq!(delivered["attempts"], 1, "{delivered}");
    assert!(
        resting_since.elapsed() >= Duration::from_millis(1_500),
        "delivered {:?} after the breaker opened, before its 2 s rest could end",
        resting_since.elapsed()
    );
}
