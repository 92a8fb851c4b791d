//! Valid Incoming events reach the adapter as the contract says (through the echo adapter,
//! which forwards what it got to the mock vendor).

use dolphin_bridge_tests::Event;
use dolphin_bridge_tests::events::{EXAMPLE_OWNER, example_event, fresh_ticket};
use serde_json::{Value, json};

use crate::common::{ECHO_TAG, ECHO_TENANT, EchoEnv, assert_accepted};

#[tokio::test(flavor = "multi_thread")]
async fn spec_example_event_is_accepted_and_delivered_once_with_every_field() {
    let env = EchoEnv::start().await;
    let response = env.bridge.send_event(example_event()).await;
    let delivery_id = assert_accepted(&response);

    env.vendor.wait_for_bodies(1).await;
    let stats = env.bridge.wait_until_settled().await;
    assert_eq!(stats["delivered"], 1, "{stats}");
    let bodies = env.vendor.bodies();
    assert_eq!(bodies.len(), 1, "delivered more than once: {bodies:#?}");
    let requests = env.vendor.requests();
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, env.vendor.path());
    let got = &bodies[0];
    let example = example_event();
    for (field, value) in example.as_object().unwrap() {
        assert_eq!(&got[field], value, "field {field} at the vendor: {got:#}");
    }
    assert_eq!(got["deliveryId"], delivery_id.as_str());
    assert_eq!(got["attempt"], 1);
    assert_eq!(got["tenant"], ECHO_TENANT);
    assert_eq!(got["tag"], ECHO_TAG);
    assert!(
        env.three_dolphins.event_posts().is_empty(),
        "an Incoming event made the bridge post to 3Dolphins"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn message_type_is_case_insensitive_and_reaches_the_adapter_lower_case() {
    let env = EchoEnv::start().await;
    // One ticket, so that the vendor receives them in this order.
    let ticket = fresh_ticket();
    let cases = [
        Event::location("-6.175,106.827").with("messageType", "Location"),
        Event::fresh().with("messageType", "TEXT"),
        Event::image("https://cdn.example.com/a.jpg", "").with("messageType", "Image"),
        Event::fresh()
            .with("messageType", "File")
            .with("mediaLink", "http://files.example.com/report.pdf"),
    ];
    for event in &cases {
        let response = env.bridge.send_event(event.clone().ticket(&ticket)).await;
        assert_accepted(&response);
    }
    let bodies = env.vendor.wait_for_bodies(cases.len()).await;
    let got: Vec<(&str, &str)> = bodies
        .iter()
        .map(|b| {
            (
                b["messageType"].as_str().unwrap_or("?"),
                b["message"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("location", "-6.175,106.827"),
            ("text", "Halo"),
            ("image", ""),
            ("file", "Halo"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn capitalised_group_id_and_language_are_read_as_group_id_and_language() {
    let env = EchoEnv::start().await;
    let event = Event::fresh()
        .without("groupId")
        .without("language")
        .with("GroupId", "room-7")
        .with("Language", "id");
    assert_accepted(&env.bridge.send_event(event).await);
    let body = &env.vendor.wait_for_bodies(1).await[0];
    assert_eq!(body["groupId"], "room-7", "{body:#}");
    assert_eq!(body["language"], "id", "{body:#}");
    assert!(
        body.get("GroupId").is_none() && body.get("Language").is_none(),
        "the capitalised spellings were also passed on as unknown fields: {body:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn absent_group_id_and_language_are_absent_at_the_adapter() {
    let env = EchoEnv::start().await;
    let event = Event::fresh().without("groupId").without("language");
    assert_accepted(&env.bridge.send_event(event).await);
    let body = &env.vendor.wait_for_bodies(1).await[0];
    assert!(body.get("groupId").is_none(), "{body:#}");
    assert!(body.get("language").is_none(), "{body:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_media_type_with_an_absolute_link_is_accepted_even_without_caption() {
    let env = EchoEnv::start().await;
    let links = [
        ("image", "https://cdn.example.com/photo.jpg"),
        ("video", "https://cdn.example.com/clip.mp4?sig=abc&x=1"),
        ("audio", "http://cdn.example.com:8080/voice.ogg"),
        ("file", "https://cdn.example.com/files/report%202021.pdf"),
    ];
    let ticket = fresh_ticket();
    for (kind, link) in links {
        let event = Event::image(link, "").with("messageType", kind).ticket(&ticket);
        assert_accepted(&env.bridge.send_event(event).await);
    }
    let bodies = env.vendor.wait_for_bodies(links.len()).await;
    for (body, (kind, link)) in bodies.iter().zip(links) {
        assert_eq!(body["messageType"], kind);
        assert_eq!(body["mediaLink"], link);
        assert_eq!(body["message"], "");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_customer_name_is_accepted_for_anonymous_chats() {
    let env = EchoEnv::start().await;
    let event = Event::fresh().with("customerName", "").with("channel", "webchat");
    assert_accepted(&env.bridge.send_event(event).await);
    let body = &env.vendor.wait_for_bodies(1).await[0];
    assert_eq!(body["customerName"], "");
    assert_eq!(body["channel"], "webchat");
}

#[tokio::test(flavor = "multi_thread")]
async fn location_with_space_after_comma_and_extreme_values_is_accepted() {
    let env = EchoEnv::start().await;
    for lat_lng in ["-6.2, 106.8", "90,180", "-90,-180", "0,0"] {
        let response = env.bridge.send_event(Event::location(lat_lng)).await;
        assert_accepted(&response);
    }
    let bodies = env.vendor.wait_for_bodies(4).await;
    assert!(bodies.iter().all(|b| b["messageType"] == "location"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_fields_reach_the_adapter_untouched() {
    let env = EchoEnv::start().await;
    let extras = json!({
        "priority": 3,
        "ratio": 0.25,
        "vip": true,
        "note": "hello \"there\" — ünïcode",
        "meta": {"source": "ivr", "tags": ["a", 1, null, {"x": [true]}]},
        "nothing": null
    });
    let mut event = Event::fresh();
    for (name, value) in extras.as_object().unwrap() {
        event = event.with(name, value.clone());
    }
    assert_accepted(&env.bridge.send_event(event).await);
    let body = &env.vendor.wait_for_bodies(1).await[0];
    for (name, value) in extras.as_object().unwrap() {
        assert_eq!(
            body.get(name),
            Some(value),
            "unknown field {name} at the vendor: {body:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sticker_arrives_as_the_text_stiker() {
    let env = EchoEnv::start().await;
    let event = Event::fresh().with("messageType", "text").message("Stiker");
    assert_accepted(&env.bridge.send_event(event).await);
    let body = &env.vendor.wait_for_bodies(1).await[0];
    assert_eq!(body["messageType"], "text");
    assert_eq!(body["message"], "Stiker");
    assert_eq!(body["mediaLink"], "");
}

#[tokio::test(flavor = "multi_thread")]
async fn content_type_variants_of_json_and_a_missing_content_type_are_accepted() {
    let env = EchoEnv::start().await;
    let content_types = [
        Some("application/json; charset=utf-8"),
        Some("Application/JSON"),
        Some("application/json;charset=UTF-8"),
        None,
    ];
    for content_type in content_types {
        let response = env.bridge.send_raw(content_type, Event::fresh().bytes()).await;
        assert_eq!(
            response.status,
            202,
            "Content-Type {content_type:?}: {}",
            response.describe()
        );
    }
    env.vendor.wait_for_bodies(content_types.len()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_event_gets_its_own_delivery_id() {
    let env = EchoEnv::start().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(assert_accepted(&env.bridge.send_event(Event::fresh()).await));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "delivery ids repeat: {ids:?}");
    let bodies = env.vendor.wait_for_bodies(3).await;
    let mut delivered: Vec<String> = bodies
        .iter()
        .map(|b: &Value| b["deliveryId"].as_str().unwrap_or_default().to_string())
        .collect();
    delivered.sort();
    assert_eq!(delivered, ids);
    assert!(bodies.iter().all(|b| b["owner"] == EXAMPLE_OWNER));
}
