//! Who may call the bridge and where adapters may call: the Incoming credential, vendor webhook
//! verification (shared token, Standard Webhooks signatures) and the private-network guard.
//! (Chatwoot-signed webhooks are in `chatwoot.rs`.)

use dolphin_bridge_tests::Event;
use dolphin_bridge_tests::bridge::{INCOMING_TOKEN, WebhookAuth};
use dolphin_bridge_tests::signing::{standard_webhook_headers, unix_now};
use serde_json::json;

use crate::common::{EchoEnv, assert_accepted, assert_refused, post_webhook};

#[tokio::test(flavor = "multi_thread")]
async fn the_incoming_endpoint_demands_its_credential() {
    let env = EchoEnv::start().await;
    let json_ct = ("content-type", "application/json");
    let body = || Event::fresh().bytes();

    let none = env.bridge.send_incoming_with_headers(&[json_ct], body()).await;
    assert_refused(&none, 401, "missing_credential", &[]);
    let wrong = env
        .bridge
        .send_incoming_with_headers(&[json_ct, ("authorization", "Bearer not-the-token")], body())
        .await;
    assert_refused(&wrong, 401, "invalid_credential", &[]);
    let wrong = env
        .bridge
        .send_incoming_with_headers(&[json_ct, ("x-bridge-token", "not-the-token")], body())
        .await;
    assert_refused(&wrong, 401, "invalid_credential", &[]);
    // Unauthenticated callers learn nothing about the body: the credential is checked first.
    let invalid = env
        .bridge
        .send_incoming_with_headers(&[json_ct], b"{not json".to_vec())
        .await;
    assert_refused(&invalid, 401, "missing_credential", &[]);

    // The other accepted form of the credential.
    let ok = env
        .bridge
        .send_incoming_with_headers(&[json_ct, ("x-bridge-token", INCOMING_TOKEN)], body())
        .await;
    let id = assert_accepted(&ok);
    env.bridge.wait_for_delivery(&id, "delivered").await;
    let stats = env.bridge.wait_until_settled().await;
    assert_eq!(stats["delivered"], 1, "only the authenticated event: {stats}");
    assert_eq!(env.vendor.requests().len(), 1);
}

/// An echo tenant whose webhooks are verified with `auth`, and an open ticket.
async fn env_with_webhook_auth(auth: WebhookAuth) -> (EchoEnv, String) {
    let env = EchoEnv::start_with(|config, tenant| config.tenant(tenant.webhook(auth))).await;
    let event = Event::fresh();
    let id = assert_accepted(&env.bridge.send_event(event.clone()).await);
    env.bridge.wait_for_delivery(&id, "delivered").await;
    (env, event.ticket_number())
}

#[tokio::test(flavor = "multi_thread")]
async fn token_verified_webhooks_need_the_shared_token() {
    let (env, ticket) = env_with_webhook_auth(WebhookAuth::with_secret("token", "s3cret-token")).await;
    let body = |text: &str| serde_json::to_vec(&json!({"ticketNumber": ticket, "message": text})).unwrap();
    let header = |value: &str| vec![("x-webhook-token".to_string(), value.to_string())];

    let missing = post_webhook(&env, "", &[], &body("no token")).await;
    assert_eq!(missing.status, 401, "{}", missing.describe());
    let wrong = post_webhook(&env, "", &header("guess"), &body("wrong token")).await;
    assert_refused(&wrong, 401, "invalid_token", &[]);

    let by_header = post_webhook(&env, "", &header("s3cret-token"), &body("by header")).await;
    assert_eq!(by_header.status, 200, "{}", by_header.describe());
    // The query form counts only where the tenant names a parameter (below).
    let by_query = post_webhook(&env, "?token=s3cret-token", &[], &body("by query")).await;
    assert_refused(&by_query, 401, "missing_signature", &[]);

    env.three_dolphins.wait_for_events(1).await;
    env.bridge.wait_until_settled().await;
    let messages = env.three_dolphins.messages();
    assert_eq!(messages, ["by header"]);
}

/// A tenant names the header its vendor sends the token in (Rocket.Chat:
/// `X-RocketChat-Livechat-Token`), and a query parameter only where the vendor needs one.
#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_names_its_token_header_and_query_parameter() {
    let auth = WebhookAuth::with_secret("token", "s3cret-token")
        .token_header("X-RocketChat-Livechat-Token")
        .token_query("secret");
    let (env, ticket) = env_with_webhook_auth(auth).await;
    let body = |text: &str| serde_json::to_vec(&json!({"ticketNumber": ticket, "message": text})).unwrap();
    let header = |name: &str, value: &str| vec![(name.to_string(), value.to_string())];

    let default_header = post_webhook(&env, "", &header("x-webhook-token", "s3cret-token"), &body("default")).await;
    assert_refused(&default_header, 401, "missing_signature", &[]);
    let wrong = post_webhook(
        &env,
        "",
        &header("x-rocketchat-livechat-token", "guess"),
        &body("wrong"),
    )
    .await;
    assert_refused(&wrong, 401, "invalid_token", &[]);
    let other_param = post_webhook(&env, "?token=s3cret-token", &[], &body("other parameter")).await;
    assert_refused(&other_param, 401, "missing_signature", &[]);

    let named = header("X-RocketChat-Livechat-Token", "s3cret-token");
    let by_header = post_webhook(&env, "", &named, &body("by named header")).await;
    assert_eq!(by_header.status, 200, "{}", by_header.describe());
    let by_query = post_webhook(&env, "?secret=s3cret-token", &[], &body("by query")).await;
    assert_eq!(by_query.status, 200, "{}", by_query.describe());

    env.three_dolphins.wait_for_events(2).await;
    env.bridge.wait_until_settled().await;
    let messages = env.three_dolphins.messages();
    assert_eq!(messages, ["by named header", "by query"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn standard_webhooks_signatures_are_verified_and_replays_answered_as_the_first() {
    const SECRET: &str = "e2e-standard-webhooks-secret";
    let (env, ticket) = env_with_webhook_auth(WebhookAuth::with_secret("standard-webhooks", SECRET)).await;
    let body = serde_json::to_vec(&json!({"ticketNumber": ticket, "message": "signed"})).unwrap();
    let now = unix_now();

    let unsigned = post_webhook(&env, "", &[], &body).await;
    assert_refused(&unsigned, 401, "missing_signature", &[]);
    let wrong_key = standard_webhook_headers("another-secret", "msg_1", now, &body);
    assert_refused(
        &post_webhook(&env, "", &wrong_key, &body).await,
        401,
        "invalid_signature",
        &[],
    );
    let signed = standard_webhook_headers(SECRET, "msg_2", now, &body);
    let tampered = serde_json::to_vec(&json!({"ticketNumber": ticket, "message": "tampered"})).unwrap();
    assert_refused(
        &post_webhook(&env, "", &signed, &tampered).await,
        401,
        "invalid_signature",
        &[],
    );
    let stale = standard_webhook_headers(SECRET, "msg_3", now - 3_600, &body);
    assert_refused(
        &post_webhook(&env, "", &stale, &body).await,
        401,
        "stale_timestamp",
        &[],
    );

    let accepted = post_webhook(&env, "", &signed, &body).await;
    assert_eq!(accepted.status, 200, "{}", accepted.describe());
    // A replay, or the same id signed again over another body, is answered as the first was
    // and stores nothing: the id names the webhook.
    let replayed = post_webhook(&env, "", &signed, &body).await;
    assert_eq!(
        (replayed.status, &replayed.body),
        (accepted.status, &accepted.body),
        "{}",
        replayed.describe()
    );
    let other = serde_json::to_vec(&json!({"ticketNumber": ticket, "message": "same id"})).unwrap();
    let resigned = standard_webhook_headers(SECRET, "msg_2", now + 1, &other);
    let replayed = post_webhook(&env, "", &resigned, &other).await;
    assert_eq!(
        (replayed.status, &replayed.body),
        (accepted.status, &accepted.body),
        "{}",
        replayed.describe()
    );

    env.three_dolphins.wait_for_events(1).await;
    env.bridge.wait_until_settled().await;
    let events = env.three_dolphins.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["message"], "signed");
}

#[tokio::test(flavor = "multi_thread")]
async fn adapters_cannot_reach_private_networks_unless_the_tenant_allows_it() {
    // The vendor is on loopback and in allowed_hosts, but private networks are not allowed.
    let env = EchoEnv::start_with(|config, tenant| config.tenant(tenant.allow_private_networks(false))).await;
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    let dead = env.bridge.wait_for_delivery(&id, "dead").await;
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("denied"),
        "the reason says the call was denied: {dead:#}"
    );
    assert!(env.vendor.requests().is_empty(), "the host let the call out");
}
