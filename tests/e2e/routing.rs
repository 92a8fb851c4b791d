//! Routing Incoming events to tenants, and the HTTP surface around the two flows.

use dolphin_bridge_tests::events::EXAMPLE_OWNER;
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, MockThreeDolphins, MockVendor};

use crate::common::{API_TOKEN, EchoEnv, assert_accepted, assert_refused, echo_tenant};

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_owner_is_refused_naming_owner() {
    let env = EchoEnv::start().await;
    let response = env
        .bridge
        .send_event(Event::fresh().owner("0000000000000000000000000000dead"))
        .await;
    assert_refused(&response, 422, "unknown_tenant", &["owner"]);
    env.assert_nothing_forwarded().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_channel_the_tenant_does_not_serve_is_refused_naming_channel() {
    let env = EchoEnv::start_with(|config, tenant| config.tenant(tenant.channels(&["whatsapp", "telegram"]))).await;
    let response = env.bridge.send_event(Event::fresh().with("channel", "webchat")).await;
    assert_refused(&response, 422, "unknown_tenant", &["channel"]);
    env.assert_nothing_forwarded().await; // the sentinel is on whatsapp
    let response = env.bridge.send_event(Event::fresh().with("channel", "telegram")).await;
    assert_accepted(&response);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_owner_split_by_channel_reaches_each_channels_tenant_only() {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let wa_vendor = MockVendor::start().await;
    let tg_vendor = MockVendor::start().await;
    let bridge = Bridge::start(
        BridgeConfig::new(&three_dolphins.base_url())
            .api_token(API_TOKEN)
            .tenant(echo_tenant("acme-wa", EXAMPLE_OWNER, &wa_vendor).channels(&["whatsapp"]))
            .tenant(echo_tenant("acme-tg", EXAMPLE_OWNER, &tg_vendor).channels(&["telegram"])),
    )
    .await;

    let wa = Event::fresh().with("channel", "whatsapp").message("via wa");
    let tg = Event::fresh().with("channel", "telegram").message("via tg");
    assert_accepted(&bridge.send_event(wa.clone()).await);
    assert_accepted(&bridge.send_event(tg.clone()).await);

    let wa_bodies = wa_vendor.wait_for_bodies(1).await;
    let tg_bodies = tg_vendor.wait_for_bodies(1).await;
    assert_eq!(wa_bodies.len(), 1, "{wa_bodies:#?}");
    assert_eq!(tg_bodies.len(), 1, "{tg_bodies:#?}");
    assert_eq!(wa_bodies[0]["ticketNumber"], wa.ticket_number().as_str());
    assert_eq!(wa_bodies[0]["tenant"], "acme-wa");
    assert_eq!(wa_bodies[0]["tag"], "acme-wa-tag");
    assert_eq!(tg_bodies[0]["ticketNumber"], tg.ticket_number().as_str());
    assert_eq!(tg_bodies[0]["tenant"], "acme-tg");
    assert_eq!(tg_bodies[0]["tag"], "acme-tg-tag");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_echo_tenants_of_different_owners_stay_apart_both_ways() {
    const GLOBEX: &str = "b7e1c0ffee0000000000000000000001";
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let acme_vendor = MockVendor::start().await;
    let globex_vendor = MockVendor::start().await;
    let bridge = Bridge::start(
        BridgeConfig::new(&three_dolphins.base_url())
            .api_token(API_TOKEN)
            .tenant(echo_tenant("acme", EXAMPLE_OWNER, &acme_vendor))
            .tenant(echo_tenant("globex", GLOBEX, &globex_vendor)),
    )
    .await;

    let acme = Event::fresh().with("channel", "whatsapp");
    let globex = Event::fresh().owner(GLOBEX).with("channel", "telegram");
    assert_accepted(&bridge.send_event(acme.clone()).await);
    assert_accepted(&bridge.send_event(globex.clone()).await);
    let acme_bodies = acme_vendor.wait_for_bodies(1).await;
    let globex_bodies = globex_vendor.wait_for_bodies(1).await;
    assert_eq!(acme_bodies.len(), 1);
    assert_eq!(globex_bodies.len(), 1);
    assert_eq!(acme_bodies[0]["owner"], EXAMPLE_OWNER);
    assert_eq!(acme_bodies[0]["tenant"], "acme");
    assert_eq!(globex_bodies[0]["owner"], GLOBEX);
    assert_eq!(globex_bodies[0]["tenant"], "globex");

    // Replies: each tenant's webhook speaks for its own owner and its own tickets' channel.
    let reply = |ticket: &str, text: &str| serde_json::json!({"ticketNumber": ticket, "message": text});
    let r = bridge
        .send_webhook("globex", "/hook", &reply(&globex.ticket_number(), "from globex"))
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let r = bridge
        .send_webhook("acme", "/hook", &reply(&acme.ticket_number(), "from acme"))
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let mut events = three_dolphins.wait_for_events(2).await;
    events.sort_by_key(|e| e["message"].as_str().unwrap_or_default().to_string());
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0]["message"], "from acme");
    assert_eq!(events[0]["ticketNumber"], acme.ticket_number().as_str());
    assert_eq!(events[0]["owner"], EXAMPLE_OWNER);
    assert_eq!(events[0]["channel"], "whatsapp");
    assert_eq!(events[1]["message"], "from globex");
    assert_eq!(events[1]["ticketNumber"], globex.ticket_number().as_str());
    assert_eq!(events[1]["owner"], GLOBEX);
    assert_eq!(events[1]["channel"], "telegram");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_not_found_and_wrong_methods_answer_json() {
    let env = EchoEnv::start().await;
    let client = env.bridge.client();
    let url = env.bridge.url();

    let health = client.get(&format!("{url}/healthz")).await;
    assert_eq!(health.status, 200, "{}", health.describe());
    assert_eq!(health.json(), serde_json::json!({"status": "ok"}));

    let missing = client.get(&format!("{url}/nothing/here")).await;
    assert_refused(&missing, 404, "not_found", &[]);
    let missing = client
        .post_json(&format!("{url}/3dolphins/incoming/extra"), &Event::fresh().json())
        .await;
    assert_refused(&missing, 404, "not_found", &[]);

    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let response = client.send(method, &env.bridge.incoming_url(), &[], Vec::new()).await;
        assert_refused(&response, 405, "method_not_allowed", &[]);
    }

    let unknown = env
        .bridge
        .send_webhook(
            "nobody",
            "/hook",
            &serde_json::json!({"ticketNumber": "t", "message": "x"}),
        )
        .await;
    assert_refused(&unknown, 404, "unknown_tenant", &[]);
    env.assert_nothing_forwarded().await;
}
