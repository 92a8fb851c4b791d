//! An adapter looks contacts and conversation history up in 3Dolphins through the host (the
//! `three-dolphins` import): the host calls the Contact and Report APIs with the configured
//! token, and a failed look-up is the adapter's to retry, without the token in any error.
//! Look-ups are scoped to the tenant's owner (tickets it has seen and their contacts), counted
//! against `limits.lookups`, and their time counts against the call's timeout, not its CPU time.

use dolphin_bridge_tests::events::EXAMPLE_OWNER;
use dolphin_bridge_tests::three_dolphins::{CONTACT_PATH, HISTORY_PATH, history_message};
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, MockVendor};
use serde_json::json;

use crate::common::{API_TOKEN, Attacked, EchoEnv, assert_accepted, echo_tenant, hostile_villain};

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

/// A contact for the mock's Contact API.
fn contact(id: &str) -> serde_json::Value {
    json!({ "id": id, "contactFirstName": "Someone" })
}

/// The global API token could read any owner's tickets and contacts: an adapter asking for
/// another owner's ticket history or contact gets `not-found` (as for an id that does not
/// exist) and 3Dolphins is not even asked, while its own ticket and contact are looked up.
#[tokio::test(flavor = "multi_thread")]
async fn an_adapter_cannot_look_up_another_owners_ticket_or_contact() {
    let (acme_ticket, acme_contact) = (Event::fresh().ticket_number(), "acc0acc0acc0acc0acc0acc0acc0acc0");
    let env = Attacked::start(
        hostile_villain()
            .config("mode", "lookup-other-owner")
            .config("other_ticket", &acme_ticket)
            .config("other_contact", acme_contact),
    )
    .await;
    // 3Dolphins knows both owners' records: only the host's scoping can keep them apart.
    let villain_contact = "bad0bad0bad0bad0bad0bad0bad0c0c0";
    env.three_dolphins.add_contact(contact(acme_contact));
    env.three_dolphins.add_contact(contact(villain_contact));
    env.three_dolphins
        .add_history(&acme_ticket, history_message(&acme_ticket, "private", false, 1));
    // The healthy tenant's ticket, with its contact, is known to the bridge.
    env.assert_served(Event::fresh().ticket(&acme_ticket).with("contactId", acme_contact))
        .await;

    let villain_event = Event::fresh().with("contactId", villain_contact);
    let villain_ticket = villain_event.ticket_number();
    env.three_dolphins
        .add_history(&villain_ticket, history_message(&villain_ticket, "mine", false, 2));
    let (_, report) = env.villain_event_dead(villain_event).await;
    assert!(
        report.contains(
            "lookup-other-owner: other-history=not-found; other-contact=not-found; own-history=found; own-contact=found"
        ),
        "{report}"
    );
    for request in env.three_dolphins.api_requests() {
        assert_ne!(
            request.query_param("contactId").as_deref(),
            Some(acme_contact),
            "3Dolphins was asked for the other owner's contact"
        );
        assert!(
            !request.text().contains(&acme_ticket),
            "3Dolphins was asked for the other owner's ticket: {}",
            request.text()
        );
    }
    // Warned and counted, without the id asked for.
    let log = env.bridge.stderr();
    assert!(
        log.contains("3Dolphins look-up outside the tenant's owner answered not-found"),
        "{log}"
    );
    assert!(!log.contains(acme_contact), "the contact id was logged: {log}");
    let metrics = env.bridge.client().get(&format!("{}/metrics", env.bridge.url())).await;
    assert!(
        metrics
            .text()
            .contains(r#"dolphin_bridge_three_dolphins_lookups_total{tenant="villain",outcome="out_of_scope"} 2"#),
        "{}",
        metrics.text()
    );
    env.assert_served(Event::fresh()).await;
}

/// Look-ups are counted per call: past `limits.lookups` (20 by default) the import answers
/// `failed` naming the limit and 3Dolphins is not asked, while a healthy tenant is served.
#[tokio::test(flavor = "multi_thread")]
async fn a_lookup_flood_is_stopped_by_the_lookup_limit() {
    let env = Attacked::start(hostile_villain().config("mode", "lookup-flood")).await;
    let villain_event = Event::fresh();
    let villain_ticket = villain_event.ticket_number();
    env.three_dolphins
        .add_history(&villain_ticket, history_message(&villain_ticket, "mine", false, 1));
    let ((_, report), ()) = tokio::join!(env.villain_event_dead(villain_event), env.assert_served(Event::fresh()));
    assert!(
        report.contains("lookup-flood: found=20; then: failed(lookup limit of 20 per call exceeded (limits.lookups))"),
        "{report}"
    );
    let asked = env.three_dolphins.api_requests().len();
    assert_eq!(asked, 20, "3Dolphins was asked {asked} times");
    env.assert_served(Event::fresh()).await;
}

/// A 3Dolphins that never answers a look-up: the wait is not the guest's CPU time (a 100 ms CPU
/// limit is not hit) but counts against the call's wall-clock timeout, which ends the call.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_lookup_counts_against_the_call_timeout_not_the_cpu_limit() {
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let vendor = MockVendor::start().await;
    let tenant = echo_tenant("acme", EXAMPLE_OWNER, &vendor)
        .config("with_history", "true")
        .limit("cpu_ms", 100)
        .call_timeout_ms(1500);
    let bridge = Bridge::start(
        BridgeConfig::new(&silent_url)
            .api_token(API_TOKEN)
            .three_dolphins_timeout_ms(60_000)
            .tenant(tenant),
    )
    .await;
    let id = assert_accepted(&bridge.send_event(Event::fresh()).await);
    let dead = bridge.wait_for_delivery(&id, "dead").await;
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("timed out after 1500 ms"), "{error}");
    assert!(vendor.requests().is_empty(), "nothing reached the vendor");
}
