//! An adapter looks contacts and conversation history up in 3Dolphins through the host (the
//! `three-dolphins` import): the host calls the Contact and Report APIs with the configured
//! token, and a failed look-up is the adapter's to retry, without the token in any error.

use dolphin_bridge_tests::Event;
use dolphin_bridge_tests::three_dolphins::{CONTACT_PATH, HISTORY_PATH, history_message};

use crate::common::{API_TOKEN, EchoEnv, assert_accepted};

/// The echo tenant, asking for the contact and the history of every event it delivers.
async fn with_lookups(api_token: &str) -> EchoEnv {
    let api_token = api_token.to_string();
    EchoEnv::start_with(move |config, tenant| {
        config
            .api_token(&api_token)
            .tenant(tenant.config("with_contact", "true").config("with_history", "true"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_adapter_reads_the_contact_and_the_history_from_3dolphins() {
    let env = with_lookups(API_TOKEN).await;
    let event = Event::fresh();
    let ticket = event.ticket_number();
    env.three_dolphins
        .add_history(&ticket, history_message(&ticket, "Halo", false, 1_619_599_177_945));
    env.three_dolphins.add_history(
        &ticket,
        history_message(&ticket, "Selamat siang", true, 1_619_599_180_000),
    );
    let id = assert_accepted(&env.bridge.send_event(event).await);
    env.bridge.wait_for_delivery(&id, "delivered").await;

    let body = env.vendor.wait_for_bodies(1).await.remove(0);
    assert_eq!(body["ticketNumber"], ticket.as_str());
    // The contact of the example event's contactId, as the Contact API's `data`.
    assert_eq!(body["contact"]["id"], "d61d77735f3fe08bcf6d6b96fa06ba9d", "{body:#}");
    assert_eq!(body["contact"]["contactFirstName"], "Farhan", "{body:#}");
    let history = body["history"].as_array().expect("the history is a list");
    let messages: Vec<&str> = history.iter().filter_map(|m| m["message"].as_str()).collect();
    assert_eq!(messages, ["Halo", "Selamat siang"], "{body:#}");

    // Both APIs were called by the host, with the configured token.
    let requests = env.three_dolphins.api_requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, [CONTACT_PATH, HISTORY_PATH]);
    for request in &requests {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {API_TOKEN}").as_str())
        );
    }
    assert_eq!(
        requests[0].query_param("contactId").as_deref(),
        Some("d61d77735f3fe08bcf6d6b96fa06ba9d")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn what_3dolphins_does_not_know_is_delivered_as_null() {
    let env = with_lookups(API_TOKEN).await;
    let event = Event::fresh().with("contactId", "0000000000000000000000000000dead");
    let id = assert_accepted(&env.bridge.send_event(event).await);
    env.bridge.wait_for_delivery(&id, "delivered").await;
    let body = env.vendor.wait_for_bodies(1).await.remove(0);
    assert!(body["contact"].is_null(), "an unknown contact is null: {body:#}");
    // A ticket without history: the Report API answers an empty list.
    assert_eq!(body["history"], serde_json::json!([]), "{body:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_lookup_is_retried_and_its_error_holds_no_token() {
    const WRONG_TOKEN: &str = "not-the-3dolphins-token";
    let env = with_lookups(WRONG_TOKEN).await;
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    let dead = env.bridge.wait_for_delivery(&id, "dead").await;
    // Retried as the adapter asked (retry-later), then given up on.
    assert_eq!(dead["attempts"], 3, "{dead:#}");
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("3Dolphins contact lookup"),
        "the error names the lookup: {error}"
    );
    assert!(error.contains("401"), "the error gives 3Dolphins' answer: {error}");
    assert!(!error.contains(WRONG_TOKEN), "the token leaked into the error: {error}");
    assert!(
        !env.bridge.stderr().contains(WRONG_TOKEN),
        "the token leaked into the log"
    );
    assert!(env.vendor.requests().is_empty(), "nothing reached the vendor");
}
