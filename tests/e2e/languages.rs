//! Adapters written in Python (componentize-py) and JavaScript (componentize-js) run in the same
//! host as Rust ones: the `echo-python` and `echo-js` adapters in both directions.

use dolphin_bridge_tests::events::EXAMPLE_OWNER;
use dolphin_bridge_tests::{
    Bridge, BridgeConfig, Event, HttpResponse, MockThreeDolphins, MockVendor, Tenant, adapters,
};
use serde_json::json;

use crate::common::{API_TOKEN, assert_accepted};

fn assert_vendor_ok(response: &HttpResponse) {
    assert_eq!(response.status, 200, "{}", response.describe());
    assert_eq!(response.json(), json!({"status": "ok"}));
}

/// Runs the echo round trip through the adapter `name`, which tags what it posts with `language`.
async fn round_trip(name: &str, language: &str) {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = MockVendor::start().await;
    let tenant = Tenant::new(name, EXAMPLE_OWNER, adapters::adapter(name))
        .allow(&vendor.base_url())
        .config("url", &vendor.url());
    let bridge = Bridge::start(
        BridgeConfig::new(&three_dolphins.base_url())
            .api_token(API_TOKEN)
            .tenant(tenant),
    )
    .await;

    // 3Dolphins -> vendor: every contract field, the delivery id, and unknown fields untouched.
    let event = Event::fresh()
        .message("Halo from 3Dolphins")
        .with("somethingNew", json!({"a": [1, 2]}));
    let delivery_id = assert_accepted(&bridge.send_event(event.clone()).await);
    let bodies = vendor.wait_for_bodies(1).await;
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    let body = &bodies[0];
    assert_eq!(body["language"], language);
    assert_eq!(body["deliveryId"], delivery_id.as_str());
    assert_eq!(body["attempt"], 1);
    assert_eq!(body["tenant"], name);
    assert_eq!(body["ticketNumber"], event.ticket_number().as_str());
    assert_eq!(body["message"], "Halo from 3Dolphins");
    assert_eq!(body["messageType"], "text");
    assert_eq!(body["owner"], EXAMPLE_OWNER);
    assert_eq!(body["somethingNew"], json!({"a": [1, 2]}));

    // Vendor -> 3Dolphins: a reply and a close, completed by the host from the ticket.
    let ticket = event.ticket_number();
    let reply = bridge
        .send_webhook(
            name,
            "/hook",
            &json!({"ticketNumber": ticket, "message": "Selamat Datang"}),
        )
        .await;
    assert_vendor_ok(&reply);
    let close = bridge
        .send_webhook(name, "/hook", &json!({"ticketNumber": ticket, "event": "Close"}))
        .await;
    assert_vendor_ok(&close);
    let events = three_dolphins.wait_for_events(2).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0]["ticketNumber"], ticket.as_str());
    assert_eq!(events[0]["message"], "Selamat Datang");
    assert_eq!(events[0]["channel"], "whatsapp");
    assert_eq!(events[0]["owner"], EXAMPLE_OWNER);
    assert_eq!(
        events[1],
        json!({"ticketNumber": ticket, "channel": "whatsapp", "owner": EXAMPLE_OWNER, "event": "Close"})
    );

    // A bad webhook is answered by the adapter and posts nothing.
    let bad = bridge.send_webhook(name, "/hook", &json!({"nothing": true})).await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(three_dolphins.events().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_adapter_carries_both_directions() {
    round_trip("echo-python", "python").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_javascript_adapter_carries_both_directions() {
    round_trip("echo-js", "javascript").await;
}
