//! Vendor webhooks (echo adapter) become Outgoing and Command events at 3Dolphins.

use std::collections::BTreeSet;

use dolphin_bridge_tests::events::{EXAMPLE_CUSTOMER, EXAMPLE_OWNER, is_contract_timestamp};
use dolphin_bridge_tests::three_dolphins::EVENT_PATH;
use dolphin_bridge_tests::{Event, HttpResponse};
use serde_json::{Value, json};

use crate::common::{ECHO_TENANT, EchoEnv, assert_accepted};

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
