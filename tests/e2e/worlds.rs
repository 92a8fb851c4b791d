//! The adapter worlds side by side, and what the 0.2 world gives adapters: a 0.1 component, kept
//! as it was built, runs unchanged beside 0.2 ones; webhook events keyed by the vendor's own ids
//! reach 3Dolphins once (stored in the same transaction as the events); the host's `crypto`
//! verifies signed webhooks in every language; JavaScript sees the real clock and fresh
//! randomness; and a vendor's `Retry-After` holds the next attempt back.

use std::time::Duration;

use dolphin_bridge_tests::bridge::{WebhookAuth, run_plugin_test, run_subcommand};
use dolphin_bridge_tests::events::EXAMPLE_OWNER;
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, MockThreeDolphins, MockVendor, Tenant, adapters};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::common::{API_TOKEN, EchoEnv, assert_accepted, echo_tenant, post_webhook};

/// The webhook token of the tenants below (token auth, no delivery header: Rocket.Chat's and
/// Sunshine's way).
const WEBHOOK_TOKEN: &str = "worlds-webhook-token";

fn token_header() -> Vec<(String, String)> {
    vec![("x-webhook-token".to_string(), WEBHOOK_TOKEN.to_string())]
}

/// An open ticket of `env`'s echo tenant.
async fn open_ticket(env: &EchoEnv) -> String {
    let event = Event::fresh();
    let id = assert_accepted(&env.bridge.send_event(event.clone()).await);
    env.bridge.wait_for_delivery(&id, "delivered").await;
    event.ticket_number()
}

/// The echo tenant `acme` on `adapter`, its webhooks checked by token alone.
async fn token_env(adapter: std::path::PathBuf) -> EchoEnv {
    EchoEnv::start_with(|config, tenant| {
        let tenant = Tenant {
            adapter,
            ..tenant.webhook(WebhookAuth::with_secret("token", WEBHOOK_TOKEN))
        };
        config.tenant(tenant)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_0_1_component_runs_unchanged_beside_a_0_2_one() {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = MockVendor::start().await;
    const OLD_OWNER: &str = "0123456789abcdef0123456789abcdef";
    let old = Tenant::new("old", OLD_OWNER, adapters::echo_world_0_1())
        .allow(&vendor.base_url())
        .config("url", &vendor.url());
    let new = echo_tenant("new", EXAMPLE_OWNER, &vendor);
    let bridge = Bridge::start(
        BridgeConfig::new(&three_dolphins.base_url())
            .api_token(API_TOKEN)
            .tenant(old)
            .tenant(new),
    )
    .await;

    // Each serves its own world, as /admin/adapters says.
    let listed = bridge.admin_get("adapters").await.json();
    let world_of = |tenant: &str| -> String {
        let adapters = listed["adapters"].as_array().expect("a list of adapters");
        let entry = adapters
            .iter()
            .find(|a| a["tenant"] == tenant)
            .expect("the tenant is listed");
        entry["witVersion"].as_str().expect("a world").to_string()
    };
    assert_eq!(world_of("old"), "dolphin:bridge@0.1.0");
    assert_eq!(world_of("new"), "dolphin:bridge@0.2.0");

    // 3Dolphins -> vendor through the 0.1 component.
    let event = Event::fresh().owner(OLD_OWNER).message("Halo, old world");
    let id = assert_accepted(&bridge.send_event(event.clone()).await);
    bridge.wait_for_delivery(&id, "delivered").await;
    let bodies = vendor.wait_for_bodies(1).await;
    assert_eq!(bodies[0]["message"], "Halo, old world");
    assert_eq!(bodies[0]["tenant"], "old");
    assert_eq!(bodies[0]["deliveryId"], id.as_str());

    // Vendor -> 3Dolphins through it: a reply and a close, completed by the host.
    let ticket = event.ticket_number();
    let reply = bridge
        .send_webhook("old", "/hook", &json!({"ticketNumber": ticket, "message": "Selamat"}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.describe());
    assert_eq!(reply.json(), json!({"status": "ok"}));
    let close = bridge
        .send_webhook("old", "/hook", &json!({"ticketNumber": ticket, "event": "Close"}))
        .await;
    assert_eq!(close.status, 200, "{}", close.describe());
    let posted = three_dolphins.wait_for_events(2).await;
    assert_eq!(posted[0]["message"], "Selamat");
    assert_eq!(posted[0]["owner"], OLD_OWNER);
    assert_eq!(Some(&posted[0]["channel"]), event.get("channel"));
    assert_eq!(posted[1]["event"], "Close");

    // A vendor's 5xx is still a retry for it (its 0.1 `retry-later` carries no hint).
    vendor.fail_next(1, 503);
    let second = Event::fresh().owner(OLD_OWNER);
    let id = assert_accepted(&bridge.send_event(second).await);
    let delivered = bridge.wait_for_delivery(&id, "delivered").await;
    assert_eq!(delivered["attempts"], 2, "{delivered:#}");
}

#[test]
fn check_and_plugin_test_take_a_0_1_component() {
    let config = BridgeConfig::new("http://127.0.0.1:9")
        .api_token(API_TOKEN)
        .tenant(Tenant::new("old", EXAMPLE_OWNER, adapters::echo_world_0_1()));
    let checked = run_subcommand("check", &config);
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        stdout.contains("dolphin:bridge@0.1.0"),
        "check names the adapter's world: {stdout}"
    );

    let work = tempfile::tempdir().expect("a temp dir");
    let fixtures = work.path().join("fixtures");
    std::fs::create_dir_all(fixtures.join("incoming")).unwrap();
    std::fs::create_dir_all(fixtures.join("webhooks")).unwrap();
    let event = Event::fresh().message("fixture");
    std::fs::write(fixtures.join("incoming/01.json"), event.bytes()).unwrap();
    std::fs::write(
        fixtures.join("webhooks/01.json"),
        serde_json::to_vec(&json!({
            "body": {"ticketNumber": event.ticket_number(), "message": "reply"}
        }))
        .unwrap(),
    )
    .unwrap();
    let output = run_plugin_test(&adapters::echo_world_0_1(), &fixtures);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("2 of 2 fixture(s) passed"), "{stdout}");
    assert!(stdout.contains("-> 3Dolphins POST"), "the webhook's event: {stdout}");
}

/// Without a delivery header, a vendor's retry (Rocket.Chat's after a 5 s answer, Sunshine's
/// after 20 s) is the same body again: the event's key, from the body, lets it through once.
#[tokio::test(flavor = "multi_thread")]
async fn the_same_webhook_twice_with_token_auth_reaches_3dolphins_once() {
    let env = token_env(adapters::echo()).await;
    let ticket = open_ticket(&env).await;
    let body = serde_json::to_vec(&json!({"ticketNumber": ticket, "message": "only once", "id": "msg-1"})).unwrap();
    for attempt in 1..=2 {
        let answer = post_webhook(&env, "", &token_header(), &body).await;
        assert_eq!(answer.status, 200, "attempt {attempt}: {}", answer.describe());
        assert_eq!(
            answer.json(),
            json!({"status": "ok"}),
            "answered as the adapter answered"
        );
    }
    // The same message inside another webhook, beside a new one.
    let other = json!({"ticketNumber": ticket, "message": "second", "id": "msg-2"});
    let answer = post_webhook(&env, "", &token_header(), &serde_json::to_vec(&other).unwrap()).await;
    assert_eq!(answer.status, 200, "{}", answer.describe());
    env.three_dolphins.wait_for_events(2).await;
    let stats = env.bridge.wait_until_settled().await;
    assert_eq!(env.three_dolphins.messages(), ["only once", "second"]);
    assert_eq!(stats["delivered"], 3, "the Incoming event and two replies: {stats}");
}

/// What the 0.1 world could not do: the same 0.1 echo, the same body twice, and the reply reaches
/// the customer twice (the test above fails this way on the host before the 0.2 world).
#[tokio::test(flavor = "multi_thread")]
async fn a_0_1_adapter_cannot_key_its_events_so_the_retry_is_delivered_again() {
    let env = token_env(adapters::echo_world_0_1()).await;
    let ticket = open_ticket(&env).await;
    let body = serde_json::to_vec(&json!({"ticketNumber": ticket, "message": "twice", "id": "msg-1"})).unwrap();
    for _ in 0..2 {
        let answer = post_webhook(&env, "", &token_header(), &body).await;
        assert_eq!(answer.status, 200, "{}", answer.describe());
    }
    env.three_dolphins.wait_for_events(2).await;
    assert_eq!(env.three_dolphins.messages(), ["twice", "twice"]);
}

/// The event keys are stored in the same transaction as the events: when that transaction
/// fails after the adapter ran, the key is not taken either, and the vendor's retry is
/// processed, not skipped.
#[tokio::test(flavor = "multi_thread")]
async fn after_a_store_failure_the_vendors_retry_is_processed_not_skipped() {
    let env = token_env(adapters::echo()).await;
    let ticket = open_ticket(&env).await;
    let injector = env.bridge.open_store();
    // Every new delivery fails to be stored, as a full disk or a failed commit would make it.
    injector
        .execute_batch(
            "CREATE TRIGGER injected_failure BEFORE INSERT ON outbox
             BEGIN SELECT RAISE(ABORT, 'injected store failure'); END;",
        )
        .unwrap();
    let body = serde_json::to_vec(&json!({"ticketNumber": ticket, "message": "kept", "id": "msg-7"})).unwrap();
    let failed = post_webhook(&env, "", &token_header(), &body).await;
    assert_eq!(failed.status, 503, "the vendor is told to retry: {}", failed.describe());
    injector.execute_batch("DROP TRIGGER injected_failure").unwrap();

    let retried = post_webhook(&env, "", &token_header(), &body).await;
    assert_eq!(retried.status, 200, "{}", retried.describe());
    env.three_dolphins.wait_for_events(1).await;
    env.bridge.wait_until_settled().await;
    assert_eq!(env.three_dolphins.messages(), ["kept"]);
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, as the echo adapters expect in `x-echo-signature`.
fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex_lower(&mac.finalize().into_bytes()))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Each language's echo checks a signed webhook with the host's `crypto` (HMAC and a
/// constant-time comparison), with nothing hand-written.
#[tokio::test(flavor = "multi_thread")]
async fn signed_webhooks_are_verified_with_the_host_crypto_in_every_language() {
    const SECRET: &str = "echo-signing-secret-0123456789";
    for name in ["echo", "echo-python", "echo-js"] {
        let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
        let vendor = MockVendor::start().await;
        let tenant = Tenant::new(name, EXAMPLE_OWNER, adapters::adapter(name))
            .allow(&vendor.base_url())
            .config("url", &vendor.url())
            .config("signing_secret", SECRET);
        let bridge = Bridge::start(
            BridgeConfig::new(&three_dolphins.base_url())
                .api_token(API_TOKEN)
                .tenant(tenant),
        )
        .await;
        let event = Event::fresh();
        let id = assert_accepted(&bridge.send_event(event.clone()).await);
        bridge.wait_for_delivery(&id, "delivered").await;

        let body = serde_json::to_vec(&json!({"ticketNumber": event.ticket_number(), "message": "signed"})).unwrap();
        let url = bridge.webhook_url(name, "/hook");
        let post = |sig: Option<String>| {
            let body = body.clone();
            let url = url.clone();
            let client = bridge.client();
            async move {
                let mut headers = vec![("content-type", "application/json".to_string())];
                if let Some(sig) = sig {
                    headers.push(("x-echo-signature", sig));
                }
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                client.send("POST", &url, &headers, body).await
            }
        };
        let unsigned = post(None).await;
        assert_eq!(unsigned.status, 401, "{name}: {}", unsigned.describe());
        assert_eq!(unsigned.json(), json!({"error": "bad signature"}), "{name}");
        let forged = post(Some(signature("another-secret-of-some-length", &body))).await;
        assert_eq!(forged.status, 401, "{name}: {}", forged.describe());
        let signed = post(Some(signature(SECRET, &body))).await;
        assert_eq!(signed.status, 200, "{name}: {}", signed.describe());
        three_dolphins.wait_for_events(1).await;
        bridge.wait_until_settled().await;
        assert_eq!(
            three_dolphins.messages(),
            ["signed"],
            "{name}: only the signed webhook's event"
        );
    }
}

/// JavaScript adapters see the time of the call and fresh random values, not values frozen
/// when the component was built.
#[tokio::test(flavor = "multi_thread")]
async fn javascript_sees_the_real_clock_and_fresh_randomness() {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let tenant = Tenant::new("echo-js", EXAMPLE_OWNER, adapters::adapter("echo-js")).config("report_runtime", "true");
    let bridge = Bridge::start(
        BridgeConfig::new(&three_dolphins.base_url())
            .api_token(API_TOKEN)
            .tenant(tenant),
    )
    .await;
    let event = Event::fresh();
    let id = assert_accepted(&bridge.send_event(event.clone()).await);
    bridge.wait_for_delivery(&id, "delivered").await;
    let body = json!({"ticketNumber": event.ticket_number(), "message": "what time is it"});
    let mut answers = Vec::new();
    for _ in 0..2 {
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as f64;
        let answer = bridge.send_webhook("echo-js", "/hook", &body).await;
        let after = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as f64;
        assert_eq!(answer.status, 200, "{}", answer.describe());
        let answer = answer.json();
        let now = answer["now"].as_f64().unwrap_or_else(|| panic!("a time: {answer}"));
        // A second of slack for the two clocks' granularity.
        assert!(
            now >= before - 1_000.0 && now <= after + 1_000.0,
            "Date.now() {now} outside [{before}, {after}]"
        );
        answers.push(answer);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let randoms: Vec<f64> = answers
        .iter()
        .map(|a| a["random"].as_f64().expect("a number"))
        .collect();
    assert!(randoms.iter().all(|r| (0.0..1.0).contains(r)), "{randoms:?}");
    assert_ne!(randoms[0], randoms[1], "Math.random() gave the same value twice");
}

/// A vendor answering 429 with `Retry-After: 30`: the adapter passes the hint on, and the next
/// attempt is held back at least that long though the schedule says a few milliseconds; the
/// attempt counts once.
#[tokio::test(flavor = "multi_thread")]
async fn a_vendors_retry_after_holds_the_next_attempt_back() {
    let env = EchoEnv::start_with(|config, tenant| config.retry_schedule_ms(&[50, 50, 50]).tenant(tenant)).await;
    env.vendor.fail_next_with(1, 429, &[("retry-after", "30")]);
    let before = now_ms();
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    let delivery = wait_for_attempts(&env, &id, 1).await;
    assert_eq!(delivery["state"], "pending", "{delivery:#}");
    let next = delivery["next_attempt_at"]
        .as_i64()
        .unwrap_or_else(|| panic!("a next attempt: {delivery:#}"));
    assert!(
        next >= before + 30_000,
        "the next attempt is due {} ms after the first",
        next - before
    );
    assert!(
        next <= now_ms() + 30_000 + 1_000,
        "and not much later: {} ms",
        next - now_ms()
    );
    assert!(
        delivery["last_error"].as_str().unwrap_or_default().contains("429"),
        "{delivery:#}"
    );
    // Nothing else is tried meanwhile: the schedule's 50 ms would have made three attempts by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.vendor.requests().len(), 1);
    assert_eq!(env.bridge.delivery(&id).await["attempts"], 1);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The delivery once it has `attempts` attempts recorded.
async fn wait_for_attempts(env: &EchoEnv, id: &str, attempts: u64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let delivery = env.bridge.delivery(id).await;
        if delivery["attempts"].as_u64() >= Some(attempts) && delivery["last_error"].is_string() {
            return delivery;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no attempt recorded: {delivery:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
