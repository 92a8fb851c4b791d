//! Durable delivery of Incoming events (echo adapter): acknowledged once persisted, delivered
//! once, retried with the same delivery id when the vendor fails for a while, dead-lettered
//! with the reason when it fails for good, replayable, and in order per ticket.

use std::time::Duration;

use dolphin_bridge_tests::bridge::{ADMIN_TOKEN, INCOMING_TOKEN};
use dolphin_bridge_tests::vendor::RefusingPort;
use dolphin_bridge_tests::{Event, example_event};
use serde_json::{Value, json};

use crate::common::{ECHO_TENANT, EchoEnv, assert_accepted, attempts_seen};

fn error_of(delivery: &Value) -> String {
    delivery["last_error"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_event_sent_again_is_acknowledged_as_a_duplicate_and_delivered_once() {
    let env = EchoEnv::start().await;
    let first = assert_accepted(&env.bridge.send_event(example_event()).await);

    // The same event again, even with its fields in another order.
    let mut fields: Vec<(String, Value)> = example_event().as_object().unwrap().clone().into_iter().collect();
    fields.reverse();
    let reordered = Value::Object(fields.into_iter().collect());
    for body in [example_event(), reordered] {
        let again = env.bridge.send_event(body).await;
        assert_eq!(again.status, 202, "{}", again.describe());
        assert_eq!(
            again.json(),
            json!({"status": "success", "deliveryId": first, "duplicate": true})
        );
    }

    // An explicit Idempotency-Key wins over the body: a different body with the same key is
    // the same delivery.
    let auth = format!("Bearer {INCOMING_TOKEN}");
    let keyed = async |message: &str| {
        let body = Event::fresh().message(message).bytes();
        env.bridge
            .send_incoming_with_headers(
                &[
                    ("content-type", "application/json"),
                    ("authorization", &auth),
                    ("idempotency-key", "3dolphins-retry-42"),
                ],
                body,
            )
            .await
    };
    let keyed_id = assert_accepted(&keyed("first try").await);
    let second = keyed("second try").await;
    assert_eq!(second.json()["deliveryId"], keyed_id.as_str());
    assert_eq!(second.json()["duplicate"], true);

    let stats = env.bridge.wait_until_settled().await;
    assert_eq!(stats["delivered"], 2, "{stats}");
    let bodies = env.vendor.bodies();
    assert_eq!(bodies.len(), 2, "{bodies:#?}");
    assert_eq!(bodies.iter().filter(|b| b["message"] == "first try").count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vendor_5xx_is_retried_with_the_same_delivery_id_until_delivered() {
    let env = EchoEnv::start().await;
    env.vendor.fail_next(2, 503);
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    let delivery = env.bridge.wait_for_delivery(&id, "delivered").await;
    assert_eq!(delivery["attempts"], 3, "{delivery:#}");
    assert_eq!(
        attempts_seen(&env.vendor),
        [(1, id.clone()), (2, id.clone()), (3, id.clone())],
        "every attempt carries the same delivery id and counts up"
    );
    assert!(env.three_dolphins.event_posts().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vendor_that_keeps_failing_becomes_a_dead_letter_with_the_reason_and_can_be_replayed() {
    let env = EchoEnv::start().await;
    env.vendor.fail_next(1000, 500);
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    let dead = env.bridge.wait_for_delivery(&id, "dead").await;
    assert_eq!(dead["attempts"], 3, "one try and two retries: {dead:#}");
    assert!(error_of(&dead).contains("500"), "last_error: {dead:#}");
    assert_eq!(env.vendor.requests().len(), 3);
    let letters = env.bridge.dead_letters(Some(ECHO_TENANT)).await;
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(letters[0]["delivery_id"], id.as_str());
    assert!(env.three_dolphins.event_posts().is_empty());

    // The vendor is fixed; an operator replays the dead letter.
    env.vendor.fail_next(0, 500);
    let replay = env
        .bridge
        .client()
        .send(
            "POST",
            &format!("{}/admin/dead-letters/replay", env.bridge.url()),
            &[
                ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
                ("content-type", "application/json"),
            ],
            json!({"deliveryId": id}).to_string(),
        )
        .await;
    assert_eq!(replay.status, 200, "{}", replay.describe());
    assert_eq!(replay.json()["replayed"], 1);
    env.bridge.wait_for_delivery(&id, "delivered").await;
    let seen = attempts_seen(&env.vendor);
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(seen.iter().all(|(_, d)| *d == id), "{seen:?}");
    assert!(env.bridge.dead_letters(None).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vendor_4xx_is_dead_lettered_without_retry() {
    let env = EchoEnv::start().await;
    env.vendor.fail_next(1, 422);
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    let dead = env.bridge.wait_for_delivery(&id, "dead").await;
    assert_eq!(dead["attempts"], 1, "{dead:#}");
    assert!(error_of(&dead).contains("422"), "{dead:#}");
    assert_eq!(env.vendor.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vendor_slower_than_the_http_timeout_is_given_up_on_and_retried() {
    let env = EchoEnv::start_with(|config, tenant| config.tenant(tenant.http_timeout_ms(500))).await;
    // Far longer than any wait of the test: the delivery completes only if the bridge gives up
    // on the slow attempt.
    env.vendor.set_delay(Duration::from_secs(3600));
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    env.vendor.wait_for_bodies(1).await;
    env.vendor.set_delay(Duration::ZERO);
    let delivery = env.bridge.wait_for_delivery(&id, "delivered").await;
    assert_eq!(delivery["attempts"], 2, "{delivery:#}");
    assert_eq!(attempts_seen(&env.vendor), [(1, id.clone()), (2, id.clone())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_over_its_call_timeout_is_stopped_retried_and_dead_lettered() {
    let env =
        EchoEnv::start_with(|config, tenant| config.tenant(tenant.http_timeout_ms(20_000).call_timeout_ms(1_000)))
            .await;
    // Far longer than any wait of the test: it ends only if the bridge stops each attempt.
    env.vendor.set_delay(Duration::from_secs(3600));
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    let dead = env.bridge.wait_for_delivery(&id, "dead").await;
    assert_eq!(dead["attempts"], 3, "{dead:#}");
    let error = error_of(&dead).to_lowercase();
    assert!(error.contains("timed out") || error.contains("timeout"), "{dead:#}");

    // The bridge still serves.
    env.vendor.set_delay(Duration::ZERO);
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    env.bridge.wait_for_delivery(&id, "delivered").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_vendor_is_retried_then_dead_lettered() {
    let refusing = RefusingPort::new();
    let env = EchoEnv::start_with(|config, tenant| {
        let url = format!("{}/echo", refusing.base_url());
        config.tenant(tenant.allow(&refusing.base_url()).config("url", &url))
    })
    .await;
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    let dead = env.bridge.wait_for_delivery(&id, "dead").await;
    assert_eq!(dead["attempts"], 3, "{dead:#}");
    let error = error_of(&dead).to_lowercase();
    assert!(error.contains("connect"), "the reason names the connection: {dead:#}");
    assert!(env.vendor.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn one_tickets_events_reach_the_vendor_in_order_even_across_a_retry() {
    let env = EchoEnv::start().await;
    env.vendor.fail_next(1, 503);
    let ticket = dolphin_bridge_tests::events::fresh_ticket();
    let mut ids = Vec::new();
    for text in ["first", "second", "third", "fourth"] {
        let event = Event::example().ticket(&ticket).message(text);
        ids.push(assert_accepted(&env.bridge.send_event(event).await));
    }
    for id in &ids {
        env.bridge.wait_for_delivery(id, "delivered").await;
    }
    let seen: Vec<String> = env
        .vendor
        .bodies()
        .iter()
        .map(|b| b["message"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(seen, ["first", "first", "second", "third", "fourth"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn many_events_on_many_tickets_are_each_delivered_exactly_once_in_ticket_order() {
    const TICKETS: usize = 20;
    const PER_TICKET: usize = 10;
    let env = EchoEnv::start().await;
    let tickets: Vec<String> = (0..TICKETS)
        .map(|_| dolphin_bridge_tests::events::fresh_ticket())
        .collect();
    let mut sends = Vec::new();
    let auth = format!("Bearer {INCOMING_TOKEN}");
    for (t, ticket) in tickets.iter().enumerate() {
        let client = env.bridge.client().clone();
        let url = env.bridge.incoming_url();
        let ticket = ticket.clone();
        let auth = auth.clone();
        // One task per ticket: a ticket's events are sent in order, tickets concurrently.
        sends.push(tokio::spawn(async move {
            for n in 0..PER_TICKET {
                let event = Event::example().ticket(&ticket).message(&format!("t{t} m{n}"));
                let headers = [("content-type", "application/json"), ("authorization", auth.as_str())];
                let response = client.send("POST", &url, &headers, event.bytes()).await;
                assert_accepted(&response);
            }
        }));
    }
    for send in sends {
        send.await.expect("a sending task");
    }
    let stats = env.bridge.wait_until_settled().await;
    assert_eq!(stats["delivered"], TICKETS * PER_TICKET, "{stats}");
    let bodies = env.vendor.bodies();
    let mut ids: Vec<&str> = bodies
        .iter()
        .map(|b| b["deliveryId"].as_str().unwrap_or_default())
        .collect();
    ids.sort();
    let total = ids.len();
    ids.dedup();
    assert_eq!(
        (total, ids.len()),
        (TICKETS * PER_TICKET, TICKETS * PER_TICKET),
        "(requests, distinct deliveries) at the vendor: some were delivered twice"
    );
    for (t, ticket) in tickets.iter().enumerate() {
        let got: Vec<&str> = bodies
            .iter()
            .filter(|b| b["ticketNumber"] == ticket.as_str())
            .map(|b| b["message"].as_str().unwrap_or_default())
            .collect();
        let expected: Vec<String> = (0..PER_TICKET).map(|n| format!("t{t} m{n}")).collect();
        assert_eq!(got, expected, "ticket {t} out of order");
    }
}

/// Item: deliveries claimed ahead (their claims committed while earlier attempts run) must not
/// raise what a tenant has running against its vendor: at most `max_in_flight_per_tenant`
/// requests at once, and every event still delivered.
#[tokio::test(flavor = "multi_thread")]
async fn claims_ahead_never_raise_a_tenants_requests_at_once_past_its_cap() {
    const CAP: usize = 2;
    const EVENTS: usize = 12;
    // Each answer takes this long, so a tenant's next request can only come after it.
    const VENDOR_DELAY: Duration = Duration::from_millis(300);
    let env = EchoEnv::start_with(|config, tenant| config.max_in_flight_per_tenant(CAP).tenant(tenant)).await;
    env.vendor.set_delay(VENDOR_DELAY);
    for i in 0..EVENTS {
        let event = Event::fresh().message(&format!("m{i}"));
        assert_accepted(&env.bridge.send_event(event).await);
    }
    env.vendor.wait_for_bodies(EVENTS).await;
    let mut arrivals: Vec<std::time::Instant> = env.vendor.requests().iter().map(|r| r.received_at).collect();
    arrivals.sort();
    // Requests arriving within less than one answer's delay of each other were open at once
    // (a margin under the delay for the timer's slack).
    let window = VENDOR_DELAY - Duration::from_millis(60);
    let most_at_once = arrivals
        .iter()
        .enumerate()
        .map(|(i, at)| {
            arrivals[..=i]
                .iter()
                .filter(|earlier| at.duration_since(**earlier) < window)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert_eq!(
        most_at_once,
        CAP,
        "requests open at once (cap {CAP}); arrivals after the first, ms: {:?}",
        arrivals
            .iter()
            .map(|a| a.duration_since(arrivals[0]).as_millis())
            .collect::<Vec<_>>()
    );
    assert_eq!(arrivals.len(), EVENTS, "one request per event");
}
