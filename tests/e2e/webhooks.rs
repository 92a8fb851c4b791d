//! Vendor webhooks (echo adapter) become Outgoing and Command events at 3Dolphins; a vendor's
//! retries of one webhook (its delivery id again) are answered as the first and stored once,
//! and a retry after the bridge answered an error is processed.

use std::collections::BTreeSet;

use dolphin_bridge_tests::bridge::WebhookAuth;
use dolphin_bridge_tests::events::{EXAMPLE_CUSTOMER, EXAMPLE_OWNER, fresh_ticket, is_contract_timestamp};
use dolphin_bridge_tests::mock_chatwoot::{hmac_sha256, signature_headers_at};
use dolphin_bridge_tests::signing::{base64, standard_webhook_headers, unix_now};
use dolphin_bridge_tests::three_dolphins::EVENT_PATH;
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, HttpResponse, MockThreeDolphins};
use serde_json::{Value, json};

use crate::common::{API_TOKEN, ECHO_TENANT, EchoEnv, assert_accepted, assert_refused, hostile_villain, post_webhook};

/// Starts the echo set-up and opens a ticket with an Incoming event (channel `whatsapp`).
async fn env_with_ticket() -> (EchoEnv, String) {
    let env = EchoEnv::start().await;
    let event = Event::fresh();
    assert_accepted(&env.bridge.send_event(event.clone()).await);
    (env, event.ticket_number())
}

fn assert_vendor_ok(response: &HttpResponse) {
    assert_eq!(response.status, 200, "{}", response.describe());
    assert_eq!(response.json(), json!({"status": "ok"}));
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_reply_becomes_one_outgoing_event_with_the_tickets_channel_and_name() {
    let (env, ticket) = env_with_ticket().await;
    let response = env
        .bridge
        .send_webhook(
            ECHO_TENANT,
            "/webhook",
            &json!({"ticketNumber": ticket, "message": "Selamat Datang Customer"}),
        )
        .await;
    assert_vendor_ok(&response);

    env.three_dolphins.wait_for_events(1).await;
    env.bridge.wait_until_settled().await;
    let posts = env.three_dolphins.event_posts();
    assert_eq!(posts.len(), 1, "expected one POST to 3Dolphins: {posts:#?}");
    assert_eq!(posts[0].path, EVENT_PATH);
    assert!(
        posts[0]
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "Content-Type {:?}",
        posts[0].header("content-type")
    );
    let outgoing = posts[0].json();
    let expected_keys: BTreeSet<String> = [
        "ticketNumber",
        "channel",
        "messageType",
        "message",
        "mediaLink",
        "customerName",
        "owner",
        "createdDate",
    ]
    .map(String::from)
    .into();
    assert_eq!(keys(&outgoing), expected_keys, "{outgoing:#}");
    assert_eq!(outgoing["ticketNumber"], ticket.as_str());
    assert_eq!(outgoing["channel"], "whatsapp");
    assert_eq!(outgoing["messageType"], "text");
    assert_eq!(outgoing["message"], "Selamat Datang Customer");
    assert_eq!(outgoing["mediaLink"], "");
    assert_eq!(outgoing["customerName"], EXAMPLE_CUSTOMER);
    assert_eq!(outgoing["owner"], EXAMPLE_OWNER);
    let created = outgoing["createdDate"].as_str().unwrap_or_default();
    assert!(
        is_contract_timestamp(created),
        "createdDate {created:?} is not yyyy-MM-ddTHH:mm:ss.SSS"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_media_reply_carries_its_type_and_link() {
    let (env, ticket) = env_with_ticket().await;
    let response = env
        .bridge
        .send_webhook(
            ECHO_TENANT,
            "/webhook",
            &json!({"ticketNumber": ticket, "message": "the invoice", "messageType": "File",
                    "mediaLink": "https://files.example.com/invoice.pdf"}),
        )
        .await;
    assert_vendor_ok(&response);
    let outgoing = &env.three_dolphins.wait_for_events(1).await[0];
    assert_eq!(outgoing["messageType"], "file");
    assert_eq!(outgoing["message"], "the invoice");
    assert_eq!(outgoing["mediaLink"], "https://files.example.com/invoice.pdf");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_close_becomes_exactly_the_command_event() {
    let (env, ticket) = env_with_ticket().await;
    let response = env
        .bridge
        .send_webhook(
            ECHO_TENANT,
            "/webhook",
            &json!({"ticketNumber": ticket, "event": "Close"}),
        )
        .await;
    assert_vendor_ok(&response);
    env.three_dolphins.wait_for_events(1).await;
    env.bridge.wait_until_settled().await;
    let posts = env.three_dolphins.event_posts();
    assert_eq!(posts.len(), 1, "{posts:#?}");
    assert_eq!(posts[0].path, EVENT_PATH);
    assert_eq!(
        posts[0].json(),
        json!({"ticketNumber": ticket, "channel": "whatsapp", "owner": EXAMPLE_OWNER, "event": "Close"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replies_and_close_of_one_ticket_arrive_in_order() {
    let (env, ticket) = env_with_ticket().await;
    for text in ["one", "two", "three"] {
        let response = env
            .bridge
            .send_webhook(ECHO_TENANT, "/w", &json!({"ticketNumber": ticket, "message": text}))
            .await;
        assert_vendor_ok(&response);
    }
    let response = env
        .bridge
        .send_webhook(ECHO_TENANT, "/w", &json!({"ticketNumber": ticket, "event": "Close"}))
        .await;
    assert_vendor_ok(&response);
    let events = env.three_dolphins.wait_for_events(4).await;
    let got: Vec<String> = events
        .iter()
        .map(|e| {
            e.get("event")
                .or_else(|| e.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    assert_eq!(got, ["one", "two", "three", "Close"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_the_adapter_refuses_posts_nothing() {
    let (env, ticket) = env_with_ticket().await;
    let response = env
        .bridge
        .send_webhook(ECHO_TENANT, "/webhook", &json!({"ticketNumber": ticket}))
        .await;
    assert_eq!(response.status, 400, "{}", response.describe());
    assert!(response.json()["error"].is_string(), "{}", response.describe());
    let response = env
        .bridge
        .client()
        .post_raw(
            &env.bridge.webhook_url(ECHO_TENANT, "/webhook"),
            Some("application/json"),
            "not json",
        )
        .await;
    assert_eq!(response.status, 400, "{}", response.describe());
    let stats = env.bridge.wait_until_settled().await;
    assert_eq!(stats["delivered"], 1, "only the Incoming event: {stats}");
    assert!(env.three_dolphins.event_posts().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn three_dolphins_unavailable_is_retried_with_the_same_idempotency_key() {
    let (env, ticket) = env_with_ticket().await;
    env.three_dolphins.fail_next(2, 503);
    let response = env
        .bridge
        .send_webhook(
            ECHO_TENANT,
            "/w",
            &json!({"ticketNumber": ticket, "message": "are you there?"}),
        )
        .await;
    // The vendor is answered once the events are stored, whatever 3Dolphins does.
    assert_vendor_ok(&response);
    let events = env.three_dolphins.wait_for_events(1).await;
    env.bridge.wait_until_settled().await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["message"], "are you there?");
    let posts = env.three_dolphins.event_posts();
    assert_eq!(posts.len(), 3, "two failed tries and one accepted");
    let keys: Vec<Option<&str>> = posts.iter().map(|p| p.header("idempotency-key")).collect();
    assert!(keys[0].is_some_and(|k| !k.is_empty()), "no Idempotency-Key: {keys:?}");
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "the key changed between tries: {keys:?}"
    );
    assert!(
        posts.iter().all(|p| p.body == posts[0].body),
        "the body changed between tries"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn three_dolphins_refusing_an_event_makes_a_dead_letter_with_the_reason() {
    let (env, ticket) = env_with_ticket().await;
    env.three_dolphins.answer_non_success_next(1);
    let response = env
        .bridge
        .send_webhook(ECHO_TENANT, "/w", &json!({"ticketNumber": ticket, "event": "Close"}))
        .await;
    assert_vendor_ok(&response);
    let letters = wait_for_dead_letters(&env, 1).await;
    assert_eq!(letters[0]["direction"], "to_3dolphins", "{letters:#?}");
    assert_eq!(letters[0]["ticket"], ticket.as_str());
    let error = letters[0]["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("success"),
        "the reason names the missing success: {error}"
    );
    assert!(env.three_dolphins.events().is_empty());
    assert_eq!(env.three_dolphins.event_posts().len(), 1, "not retried");
}

async fn wait_for_dead_letters(env: &EchoEnv, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + dolphin_bridge_tests::WAIT;
    loop {
        let letters = env.bridge.dead_letters(Some(ECHO_TENANT)).await;
        if letters.len() >= n {
            return letters;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {n} dead letter(s): {letters:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

// Vendor retries. A vendor that gets no 2xx (or no answer) sends the same webhook again: Chatwoot
// with the same `X-Chatwoot-Delivery` and a new timestamp and signature, Standard Webhooks
// senders with the same `webhook-id`.

const SW_SECRET: &str = "e2e-dedupe-standard-webhooks-secret";
const CW_SECRET: &str = "e2e-dedupe-chatwoot-secret";

/// The echo set-up with the tenant's webhooks verified as `auth`; no ticket open yet.
async fn env_with_auth(auth: WebhookAuth) -> EchoEnv {
    EchoEnv::start_with(|config, tenant| config.tenant(tenant.webhook(auth))).await
}

/// Opens `ticket` with an Incoming event (channel `whatsapp`) and waits until it is delivered.
async fn open_ticket(env: &EchoEnv, ticket: &str) {
    let id = assert_accepted(&env.bridge.send_event(Event::fresh().ticket(ticket)).await);
    env.bridge.wait_for_delivery(&id, "delivered").await;
}

/// An agent reply on `ticket`, as the vendor's webhook body.
fn reply(ticket: &str, text: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"ticketNumber": ticket, "message": text})).unwrap()
}

/// Chatwoot's headers for its delivery `delivery` of `body`, signed at `timestamp`.
fn chatwoot_delivery(delivery: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    let mut headers = signature_headers_at(CW_SECRET, body, timestamp);
    headers.retain(|(name, _)| !name.eq_ignore_ascii_case("x-chatwoot-delivery"));
    headers.push(("X-Chatwoot-Delivery".into(), delivery.into()));
    headers
}

/// Signs a vendor's delivery (its id, when, the body) into the request headers.
type Delivery = fn(&str, i64, &[u8]) -> Vec<(String, String)>;

/// Standard Webhooks headers for message `id` of `body`, signed at `timestamp`.
fn standard_delivery(id: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    standard_webhook_headers(SW_SECRET, id, timestamp, body)
}

/// Asserts `again` is `first` once more: status, body and content type.
fn assert_same_answer(first: &HttpResponse, again: &HttpResponse) {
    assert_eq!(
        (again.status, &again.body),
        (first.status, &first.body),
        "the repeat was not answered as the first: first {}, repeat {}",
        first.describe(),
        again.describe()
    );
    assert_eq!(again.header("content-type"), first.header("content-type"));
}

/// Once the outbox has nothing pending (so whatever was stored was delivered): the events
/// 3Dolphins accepted.
async fn settled_events(env: &EchoEnv) -> Vec<Value> {
    env.bridge.wait_until_settled().await;
    env.three_dolphins.events()
}

fn messages(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The first try of a webhook fails (its ticket is not open yet, so the adapter's event has no
/// channel and the bridge answers 502); the vendor's retry, once the ticket is open, is processed.
async fn a_retry_after_a_failed_first_try_is_processed_once(auth: WebhookAuth, delivery: Delivery) {
    let env = env_with_auth(auth).await;
    let ticket = fresh_ticket();
    let body = reply(&ticket, "the reply that must not be lost");
    let now = unix_now();

    let failed = post_webhook(&env, "", &delivery("d-retry", now - 2, &body), &body).await;
    assert_refused(&failed, 502, "adapter_invalid_event", &[]);
    assert!(settled_events(&env).await.is_empty());

    open_ticket(&env, &ticket).await;
    let retried = post_webhook(&env, "", &delivery("d-retry", now, &body), &body).await;
    assert_vendor_ok(&retried);
    // The vendor did not get that 200 and tries once more: answered the same, nothing stored.
    let again = post_webhook(&env, "", &delivery("d-retry", now + 1, &body), &body).await;
    assert_same_answer(&retried, &again);

    let events = settled_events(&env).await;
    assert_eq!(messages(&events), ["the reply that must not be lost"], "{events:#?}");
    assert_eq!(env.three_dolphins.event_posts().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standard_webhooks_retry_after_a_502_is_processed_once() {
    let auth = WebhookAuth::with_secret("standard-webhooks", SW_SECRET);
    a_retry_after_a_failed_first_try_is_processed_once(auth, standard_delivery).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chatwoot_retry_after_a_502_is_processed_once() {
    let auth = WebhookAuth::with_secret("chatwoot", CW_SECRET);
    a_retry_after_a_failed_first_try_is_processed_once(auth, chatwoot_delivery).await;
}

/// One delivery sent twice (signed again) is one event and the same answer; another delivery
/// of the same body is another event (an agent may send the same text twice).
async fn a_delivery_sent_twice_is_one_event(auth: WebhookAuth, delivery: Delivery) {
    let env = env_with_auth(auth).await;
    let ticket = fresh_ticket();
    open_ticket(&env, &ticket).await;
    let body = reply(&ticket, "sent once, received twice");
    let now = unix_now();

    let first = post_webhook(&env, "", &delivery("d-1", now - 1, &body), &body).await;
    assert_vendor_ok(&first);
    let again = post_webhook(&env, "", &delivery("d-1", now, &body), &body).await;
    assert_same_answer(&first, &again);
    assert_eq!(messages(&settled_events(&env).await), ["sent once, received twice"]);

    let other = post_webhook(&env, "", &delivery("d-2", now, &body), &body).await;
    assert_vendor_ok(&other);
    let events = settled_events(&env).await;
    assert_eq!(
        messages(&events),
        ["sent once, received twice", "sent once, received twice"],
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chatwoot_delivery_sent_twice_is_one_outgoing_event() {
    a_delivery_sent_twice_is_one_event(WebhookAuth::with_secret("chatwoot", CW_SECRET), chatwoot_delivery).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standard_webhooks_id_sent_twice_is_one_outgoing_event() {
    let auth = WebhookAuth::with_secret("standard-webhooks", SW_SECRET);
    a_delivery_sent_twice_is_one_event(auth, standard_delivery).await;
}

/// Copies arriving together usually both find the id unseen and run the adapter: the commit
/// decides, and the later copy gets the earlier one's answer.
#[tokio::test(flavor = "multi_thread")]
async fn two_copies_of_a_delivery_at_once_are_one_event() {
    let env = env_with_auth(WebhookAuth::with_secret("chatwoot", CW_SECRET)).await;
    let ticket = fresh_ticket();
    open_ticket(&env, &ticket).await;
    let now = unix_now();
    let texts: Vec<String> = (0..5).map(|i| format!("raced {i}")).collect();
    for (i, text) in texts.iter().enumerate() {
        let body = reply(&ticket, text);
        let delivery = format!("d-race-{i}");
        let (first, retry) = (
            chatwoot_delivery(&delivery, now - 1, &body),
            chatwoot_delivery(&delivery, now, &body),
        );
        let (a, b) = tokio::join!(
            post_webhook(&env, "", &first, &body),
            post_webhook(&env, "", &retry, &body)
        );
        assert_vendor_ok(&a);
        assert_same_answer(&a, &b);
    }
    let events = settled_events(&env).await;
    assert_eq!(messages(&events), texts, "{events:#?}");
    let metrics = env
        .bridge
        .client()
        .get(&format!("{}/metrics", env.bridge.url()))
        .await
        .text();
    for (outcome, n) in [("accepted", 5), ("duplicate", 5)] {
        let line = format!("dolphin_bridge_webhooks_total{{tenant=\"{ECHO_TENANT}\",outcome=\"{outcome}\"}} {n}");
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in /metrics:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_dedupe_header_names_token_verified_webhooks() {
    let auth = WebhookAuth::with_secret("token", "s3cret-token").dedupe_header("X-Request-Id");
    let env = env_with_auth(auth).await;
    let ticket = fresh_ticket();
    open_ticket(&env, &ticket).await;
    let token = ("x-webhook-token".to_string(), "s3cret-token".to_string());
    let with_id = |id: &str| vec![token.clone(), ("x-request-id".to_string(), id.to_string())];

    let body = reply(&ticket, "with an id");
    let first = post_webhook(&env, "", &with_id("r-1"), &body).await;
    assert_vendor_ok(&first);
    assert_same_answer(&first, &post_webhook(&env, "", &with_id("r-1"), &body).await);
    // Without the header nothing names the webhook: each is new.
    let body = reply(&ticket, "without an id");
    for _ in 0..2 {
        assert_vendor_ok(&post_webhook(&env, "", std::slice::from_ref(&token), &body).await);
    }
    let events = settled_events(&env).await;
    assert_eq!(
        messages(&events),
        ["with an id", "without an id", "without an id"],
        "{events:#?}"
    );
}

/// The bridge's webhook token (in its header and its query parameter) authenticates the vendor
/// to the bridge and stops there: the adapter (hostile's `echo-request`) gets every other header
/// and parameter as sent, and not the token.
#[tokio::test(flavor = "multi_thread")]
async fn the_adapter_never_sees_the_bridges_webhook_token() {
    const TOKEN: &str = "s3cret-webhook-token";
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let auth = WebhookAuth::with_secret("token", TOKEN)
        .token_header("X-RocketChat-Livechat-Token")
        .token_query("token");
    let config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .tenant(hostile_villain().webhook(auth));
    let bridge = Bridge::start(config).await;
    let by_header = bridge.webhook_url("villain", "/hook?mode=echo-request&b=x%20y");
    let by_query = bridge.webhook_url("villain", &format!("/hook?mode=echo-request&token={TOKEN}&b=x%20y"));
    for (url, headers) in [
        (
            by_header,
            vec![
                ("x-rocketchat-livechat-token", TOKEN),
                ("x-vendor-signature", "v1,kept"),
            ],
        ),
        (by_query, vec![("x-vendor-signature", "v1,kept")]),
    ] {
        let mut all = vec![("content-type", "application/json")];
        all.extend(headers);
        let answer = bridge.client().send("POST", &url, &all, "{}").await;
        assert_eq!(answer.status, 200, "{}", answer.describe());
        let seen = String::from_utf8_lossy(&answer.body).into_owned();
        assert!(!seen.contains(TOKEN), "the adapter saw the webhook token: {seen}");
        let seen: Value = serde_json::from_str(&seen).expect("the adapter answers JSON");
        assert_eq!(seen["query"], "mode=echo-request&b=x%20y", "{seen}");
        let names: Vec<&str> = seen["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .filter_map(|pair| pair[0].as_str())
            .collect();
        assert!(names.contains(&"x-vendor-signature"), "other headers pass: {names:?}");
        assert!(
            !names
                .iter()
                .any(|n| n.eq_ignore_ascii_case("x-rocketchat-livechat-token")),
            "{names:?}"
        );
    }
}

/// A flood of refused webhooks is not a flood of log lines: of one tenant's refusals for one
/// reason, the first few of a window are logged one by one (the rest are summed up in one line
/// when the window ends), and every one is counted in `refused_requests_total`.
#[tokio::test(flavor = "multi_thread")]
async fn refused_webhooks_are_logged_a_few_per_window_and_all_counted() {
    let env = env_with_auth(WebhookAuth::with_secret("token", "s3cret-token")).await;
    for _ in 0..30 {
        let refused = post_webhook(&env, "", &[], b"{}").await;
        assert_eq!(refused.status, 401, "{}", refused.describe());
        assert_eq!(refused.error_code().as_deref(), Some("missing_signature"));
    }
    let refusals = dolphin_bridge_tests::reload_support::metric(
        &env.bridge,
        "dolphin_bridge_refused_requests_total",
        &[("tenant", ""), ("outcome", "missing_signature")],
    )
    .await;
    assert_eq!(refusals, 30.0, "every refusal is counted");
    let log = env.bridge.stderr();
    let logged = log.lines().filter(|line| line.contains("webhook refused")).count();
    assert_eq!(logged, 5, "the first 5 of the window are logged: {log}");
}

/// `auth = "hmac"` set up for Zendesk (base64 HMAC-SHA256 of the RFC 3339 timestamp header and the
/// body, as developer.zendesk.com's "Verifying webhook authenticity" describes): a signed
/// webhook reaches 3Dolphins once even when sent twice (its signature is its dedupe key); a wrong
/// signature is refused 401 `invalid_signature`, a stale one 401 `stale_timestamp`, and neither
/// stores anything.
#[tokio::test(flavor = "multi_thread")]
async fn a_zendesk_signed_webhook_is_verified_by_the_hmac_scheme() {
    const SECRET: &str = "e2e-zendesk-signing-secret";
    let auth = WebhookAuth::with_secret("hmac", SECRET).hmac_scheme(&[
        ("header", "X-Zendesk-Webhook-Signature"),
        ("encoding", "base64"),
        ("signed", "{timestamp}{body}"),
        ("timestamp_header", "X-Zendesk-Webhook-Signature-Timestamp"),
    ]);
    let env = env_with_auth(auth).await;
    let ticket = fresh_ticket();
    open_ticket(&env, &ticket).await;
    let zendesk = |secret: &str, at: i64, body: &[u8]| {
        let timestamp = chrono::DateTime::from_timestamp(at, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mac = hmac_sha256(secret.as_bytes(), &[timestamp.as_bytes(), body]);
        vec![
            ("X-Zendesk-Webhook-Signature-Timestamp".to_string(), timestamp),
            ("X-Zendesk-Webhook-Signature".to_string(), base64(&mac)),
        ]
    };
    let body = reply(&ticket, "signed by zendesk");
    let signed = zendesk(SECRET, unix_now(), &body);
    let first = post_webhook(&env, "", &signed, &body).await;
    assert_vendor_ok(&first);
    assert_same_answer(&first, &post_webhook(&env, "", &signed, &body).await);

    let forged = reply(&ticket, "forged");
    let wrong = post_webhook(&env, "", &zendesk("not-the-secret-0123", unix_now(), &forged), &forged).await;
    assert_refused(&wrong, 401, "invalid_signature", &[]);
    let stale = post_webhook(&env, "", &zendesk(SECRET, unix_now() - 3600, &forged), &forged).await;
    assert_refused(&stale, 401, "stale_timestamp", &[]);
    for refusal in [&wrong, &stale] {
        assert!(!refusal.describe().contains(SECRET), "{}", refusal.describe());
    }
    assert_eq!(messages(&settled_events(&env).await), ["signed by zendesk"]);
}
