//! The Rocket.Chat (Python) adapter end to end: Incoming events become a Livechat visitor, a room
//! per ticket and visitor messages at the mock Rocket.Chat; agents' messages and closed sessions
//! come back through the Omnichannel webhook (token checked by the bridge) to the mock 3Dolphins;
//! retries do not duplicate; an uncaught Python exception leaves its traceback in the log.

use dolphin_bridge_tests::bridge::WebhookAuth;
use dolphin_bridge_tests::events::{EXAMPLE_CONTACT_ID, EXAMPLE_CUSTOMER, EXAMPLE_OWNER, fresh_ticket};
use dolphin_bridge_tests::mock_chatwoot::hmac_sha256;
use dolphin_bridge_tests::mock_rocketchat::{MockRocketChat, Room, TOKEN_HEADER};
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, HttpResponse, MockThreeDolphins, Tenant, adapters};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::common::{API_TOKEN, assert_accepted};

const TENANT: &str = "acme-rocketchat";
const WEBHOOK_TOKEN: &str = "e2e-livechat-secret";
/// The tenant's `visitor_token_secret`, the key of the visitor tokens' HMAC.
const VISITOR_TOKEN_SECRET: &str = "e2e-visitor-token-secret-5c1d";

/// The bridge with one Rocket.Chat tenant (the example owner).
struct RocketChatEnv {
    // Dropped first: the bridge stops before the mocks free their ports.
    bridge: Bridge,
    three_dolphins: MockThreeDolphins,
    rocketchat: MockRocketChat,
}

impl RocketChatEnv {
    async fn start() -> RocketChatEnv {
        RocketChatEnv::start_with(|tenant| tenant, |config| config).await
    }

    /// Starts with the tenant and the bridge's config changed by `tenant` and `config`.
    async fn start_with(
        tenant: impl FnOnce(Tenant) -> Tenant,
        config: impl FnOnce(BridgeConfig) -> BridgeConfig,
    ) -> RocketChatEnv {
        let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
        let rocketchat = MockRocketChat::start(WEBHOOK_TOKEN).await;
        let base = Tenant::new(TENANT, EXAMPLE_OWNER, adapters::rocketchat())
            .allow(&rocketchat.base_url())
            .config("base_url", &rocketchat.base_url())
            .config("department", "sales")
            .config("visitor_token_secret", VISITOR_TOKEN_SECRET)
            .webhook(WebhookAuth::with_secret("token", WEBHOOK_TOKEN).token_header(TOKEN_HEADER));
        let bridge = Bridge::start(config(
            BridgeConfig::new(&three_dolphins.base_url())
                .api_token(API_TOKEN)
                .tenant(tenant(base)),
        ))
        .await;
        RocketChatEnv {
            bridge,
            three_dolphins,
            rocketchat,
        }
    }

    /// Sends an Incoming event and waits until it settles in `state`; returns its delivery id
    /// and the delivery as the admin API shows it.
    async fn deliver_as(&self, event: Event, state: &str) -> (String, Value) {
        let id = assert_accepted(&self.bridge.send_event(event).await);
        let delivery = self.bridge.wait_for_delivery(&id, state).await;
        (id, delivery)
    }

    /// The one room, which must exist.
    fn only_room(&self) -> Room {
        let rooms = self.rocketchat.rooms();
        assert_eq!(rooms.len(), 1, "rooms: {rooms:#?}");
        rooms.into_iter().next().unwrap()
    }

    fn texts(&self, rid: &str) -> Vec<String> {
        self.rocketchat.messages(rid).into_iter().map(|m| m.msg).collect()
    }

    /// Rocket.Chat POSTs `payload` to the tenant's webhook URL.
    async fn webhook(&self, payload: &Value) -> HttpResponse {
        let url = self.bridge.webhook_url(TENANT, "/webhook");
        self.rocketchat.send_webhook(&url, payload).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_customer_message_becomes_a_visitor_a_room_and_a_message() {
    let env = RocketChatEnv::start().await;
    let ticket = fresh_ticket();
    env.deliver_as(Event::example().ticket(&ticket), "delivered").await;
    env.deliver_as(
        Event::image("https://cdn.example.com/receipt.jpg", "my receipt").ticket(&ticket),
        "delivered",
    )
    .await;
    env.deliver_as(Event::location("-6.175, 106.827").ticket(&ticket), "delivered")
        .await;

    let visitors = env.rocketchat.visitors();
    assert_eq!(visitors.len(), 1, "{visitors:#?}");
    assert_eq!(visitors[0].name.as_deref(), Some(EXAMPLE_CUSTOMER));
    assert_eq!(visitors[0].department.as_deref(), Some("sales"));
    let room = env.only_room();
    assert!(room.open);
    assert_eq!(room.visitor_token, visitors[0].token);
    assert_eq!(
        env.texts(&room.id),
        [
            "Halo",
            "my receipt\nhttps://cdn.example.com/receipt.jpg",
            "Location: https://maps.google.com/?q=-6.175,106.827",
        ]
    );
    let registrations = env
        .rocketchat
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/livechat/visitor")
        .count();
    assert_eq!(
        registrations, 1,
        "the visitor is registered once (the route is rate-limited)"
    );
    assert!(env.three_dolphins.event_posts().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_ticket_of_the_same_contact_gets_its_own_room() {
    let env = RocketChatEnv::start().await;
    let first = fresh_ticket();
    let second = fresh_ticket();
    env.deliver_as(Event::example().ticket(&first).message("first ticket"), "delivered")
        .await;
    env.deliver_as(Event::example().ticket(&second).message("second ticket"), "delivered")
        .await;

    assert_eq!(env.rocketchat.visitors().len(), 1);
    let rooms = env.rocketchat.rooms();
    assert_eq!(rooms.len(), 2, "{rooms:#?}");
    assert!(
        !rooms[0].open,
        "the first ticket's room is closed to open the second: {rooms:#?}"
    );
    assert!(rooms[1].open);
    assert_eq!(env.texts(&rooms[0].id), ["first ticket"]);
    assert_eq!(env.texts(&rooms[1].id), ["second ticket"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_replies_and_the_close_come_back_and_the_visitors_echo_is_ignored() {
    let env = RocketChatEnv::start().await;
    let ticket = fresh_ticket();
    env.deliver_as(Event::example().ticket(&ticket), "delivered").await;
    let room = env.only_room();

    let ignored = [
        env.rocketchat.session_start_webhook(&room.id),
        env.rocketchat.visitor_message_webhook(&room.id, "Halo"),
    ];
    for payload in &ignored {
        let answer = env.webhook(payload).await;
        assert_eq!(answer.status, 200, "{}", answer.describe());
        assert_eq!(answer.json(), json!({"status": "ok", "events": 0}));
    }

    let reply = env
        .rocketchat
        .agent_message_webhook(&room.id, "Halo, ada yang bisa dibantu?");
    let answer = env.webhook(&reply).await;
    assert_eq!(answer.status, 200, "{}", answer.describe());
    assert_eq!(answer.json(), json!({"status": "ok", "events": 1}));
    let file = env
        .rocketchat
        .agent_file_webhook(&room.id, "invoice.pdf", "application/pdf", "your invoice");
    assert_eq!(env.webhook(&file).await.status, 200);
    let image = env.rocketchat.agent_file_webhook(&room.id, "map.png", "image/png", "");
    assert_eq!(env.webhook(&image).await.status, 200);
    let closed = env.rocketchat.session_closed_webhook(&room.id);
    assert_eq!(env.webhook(&closed).await.json(), json!({"status": "ok", "events": 1}));

    let events = env.three_dolphins.wait_for_events(4).await;
    env.bridge.wait_until_settled().await;
    assert_eq!(env.three_dolphins.events().len(), 4, "{events:#?}");
    assert_eq!(events[0]["ticketNumber"], ticket.as_str());
    assert_eq!(events[0]["messageType"], "text");
    assert_eq!(events[0]["message"], "Halo, ada yang bisa dibantu?");
    assert_eq!(
        events[0]["channel"], "whatsapp",
        "the host fills the channel from the ticket"
    );
    assert_eq!(events[0]["rocketchatMessageId"], reply["messages"][0]["_id"]);
    assert_eq!(events[1]["messageType"], "file");
    assert_eq!(events[1]["message"], "your invoice");
    assert_eq!(
        events[1]["mediaLink"],
        file["messages"][0]["fileUpload"]["publicFilePath"]
    );
    assert_eq!(events[2]["messageType"], "image");
    assert_eq!(
        events[2]["mediaLink"],
        image["messages"][0]["fileUpload"]["publicFilePath"]
    );
    assert_eq!(events[3]["ticketNumber"], ticket.as_str());
    assert_eq!(events[3]["event"], "Close", "{:#}", events[3]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_without_rocketchats_token_is_refused_by_the_bridge() {
    let env = RocketChatEnv::start().await;
    env.deliver_as(Event::fresh(), "delivered").await;
    let room = env.only_room();
    let reply = env.rocketchat.agent_message_webhook(&room.id, "forged");
    let answer = env.bridge.send_webhook(TENANT, "/webhook", &reply).await;
    assert_eq!(answer.status, 401, "{}", answer.describe());
    env.bridge.wait_until_settled().await;
    assert!(env.three_dolphins.events().is_empty());
}

/// Defect 2: Rocket.Chat never answers a duplicate `_id` with MongoDB's duplicate-key error
/// (`sendMessage` returns early, the route answers 400): a retry after a lost answer asks
/// whether the message arrived (`GET livechat/message/:_id`) instead of dead-lettering.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_a_lost_answer_does_not_duplicate_the_message() {
    let env = RocketChatEnv::start().await;
    let ticket = fresh_ticket();
    env.deliver_as(Event::example().ticket(&ticket), "delivered").await;
    // Rocket.Chat stores the message but the answer is a 502 (a proxy timing out, say).
    env.rocketchat.store_then_fail_next_messages(1, 502);
    let (_, delivery) = env
        .deliver_as(Event::example().ticket(&ticket).message("once only"), "delivered")
        .await;
    assert_eq!(delivery["attempts"], 2, "{delivery:#}");
    let room = env.only_room();
    assert_eq!(env.texts(&room.id), ["Halo", "once only"]);
    let message_id = &env.rocketchat.messages(&room.id)[1].id;
    assert!(
        env.rocketchat
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path == format!("/api/v1/livechat/message/{message_id}")),
        "the retry asked Rocket.Chat whether the message arrived"
    );
    let posts = |env: &RocketChatEnv| {
        env.rocketchat
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == "/api/v1/livechat/message")
            .count()
    };
    assert_eq!(posts(&env), 2, "the retry does not post a message Rocket.Chat has");

    // Refused without being stored: the retry finds nothing and sends it.
    env.rocketchat.fail_next_messages(1, 503);
    let (_, delivery) = env
        .deliver_as(
            Event::example().ticket(&ticket).message("sent on the retry"),
            "delivered",
        )
        .await;
    assert_eq!(delivery["attempts"], 2, "{delivery:#}");
    assert_eq!(env.texts(&room.id), ["Halo", "once only", "sent on the retry"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_after_the_agent_closed_the_room_opens_a_new_one() {
    let env = RocketChatEnv::start().await;
    let ticket = fresh_ticket();
    env.deliver_as(Event::example().ticket(&ticket), "delivered").await;
    let first = env.only_room();
    env.rocketchat.close_room(&first.id);
    env.deliver_as(Event::example().ticket(&ticket).message("masih ada?"), "delivered")
        .await;
    let rooms = env.rocketchat.rooms();
    assert_eq!(rooms.len(), 2, "{rooms:#?}");
    assert_eq!(env.texts(&rooms[1].id), ["masih ada?"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_uncaught_python_exception_is_logged_with_its_traceback_and_dead_letters() {
    let env = RocketChatEnv::start().await;
    env.rocketchat.garble_next_room_answers(1);
    let (id, dead) = env.deliver_as(Event::fresh(), "dead").await;
    assert_eq!(dead["attempts"], 1, "a bug is not retried: {dead:#}");
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("JSONDecodeError"), "{dead:#}");

    env.bridge.wait_for_log("Traceback (most recent call last)").await;
    let log = env.bridge.stderr();
    let line = log
        .lines()
        .find(|line| line.contains("Traceback (most recent call last)"))
        .unwrap_or_default();
    assert!(line.contains(TENANT), "the traceback is tagged with the tenant: {line}");
    assert!(
        line.contains(&id),
        "the traceback is tagged with the delivery id: {line}"
    );
    assert!(
        line.contains("app.py"),
        "the traceback names the adapter's file: {line}"
    );
    assert!(
        line.contains("_open_room"),
        "the traceback names the failing function: {line}"
    );
}

/// Defect 1: with `Livechat_accept_chats_with_no_agents` at its default (false) Rocket.Chat
/// refuses a new room while no agent is online (400 `no-agent-online`). That is not the
/// message's fault: it is retried (after `no_agent_retry_ms`) and delivered once an agent is
/// online, not dead-lettered.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_while_no_agent_is_online_is_delivered_when_an_agent_comes_online() {
    let env = RocketChatEnv::start_with(
        |tenant| tenant.config("no_agent_retry_ms", "200"),
        |config| config.retry_schedule_ms(&[50; 20]),
    )
    .await;
    env.rocketchat.set_agents_online(false);
    let ticket = fresh_ticket();
    let id = assert_accepted(
        &env.bridge
            .send_event(Event::example().ticket(&ticket).message("anyone there?"))
            .await,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let delivery = env.bridge.delivery(&id).await;
        assert_eq!(
            delivery["state"], "pending",
            "no agent online is not a reason to give up: {delivery:#}"
        );
        if delivery["attempts"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no retry: {delivery:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(env.rocketchat.rooms().is_empty());

    env.rocketchat.set_agents_online(true);
    let delivery = env.bridge.wait_for_delivery(&id, "delivered").await;
    assert!(delivery["attempts"].as_u64().unwrap() >= 2, "{delivery:#}");
    let room = env.only_room();
    assert_eq!(env.texts(&room.id), ["anyone there?"]);
}

/// Defect 3: Rocket.Chat's REST rate limiter is on by default (10 calls per route and IP per
/// window, a refused call counted too). Fifteen messages of one ticket within one window all
/// arrive, in order, none dead, although the bridge's own retry schedule is far shorter than
/// the window: the retries wait for `X-RateLimit-Reset`.
#[tokio::test(flavor = "multi_thread")]
async fn fifteen_messages_within_the_rate_limit_window_are_all_delivered_in_order() {
    let env = RocketChatEnv::start_with(|tenant| tenant, |config| config.retry_schedule_ms(&[50, 50, 50])).await;
    env.rocketchat.set_rate_limit(10, Duration::from_secs(2));
    let ticket = fresh_ticket();
    let texts: Vec<String> = (1..=15).map(|i| format!("message {i}")).collect();
    let mut ids = Vec::new();
    for text in &texts {
        ids.push(assert_accepted(
            &env.bridge
                .send_event(Event::example().ticket(&ticket).message(text))
                .await,
        ));
    }
    for id in &ids {
        env.bridge.wait_for_delivery(id, "delivered").await;
    }
    let stats = env.bridge.wait_until_settled().await;
    assert_eq!(stats["dead"], 0, "{stats}");
    assert!(
        env.rocketchat.rate_limited() > 0,
        "Rocket.Chat's limiter refused some calls"
    );
    let room = env.only_room();
    assert_eq!(env.texts(&room.id), texts);
}

/// Defect 4: an agent's edit comes back as a `Message` webhook repeating the message (same
/// `_id`) with `editedAt`; it is not forwarded as a new message.
#[tokio::test(flavor = "multi_thread")]
async fn an_agents_edit_is_not_forwarded_as_a_new_message() {
    let env = RocketChatEnv::start().await;
    let ticket = fresh_ticket();
    env.deliver_as(Event::example().ticket(&ticket), "delivered").await;
    let room = env.only_room();
    let reply = env
        .rocketchat
        .agent_message_webhook(&room.id, "Halo, ada yg bisa dibantu?");
    assert_eq!(env.webhook(&reply).await.json(), json!({"status": "ok", "events": 1}));
    let edit = env
        .rocketchat
        .agent_edit_webhook(&reply, "Halo, ada yang bisa dibantu?");
    let answer = env.webhook(&edit).await;
    assert_eq!(answer.status, 200, "{}", answer.describe());
    assert_eq!(
        answer.json(),
        json!({"status": "ok", "events": 0}),
        "the edit is not an event"
    );
    env.three_dolphins.wait_for_events(1).await;
    env.bridge.wait_until_settled().await;
    let events = env.three_dolphins.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["message"], "Halo, ada yg bisa dibantu?");
}

/// Defect 5: a contact's new ticket makes the adapter close the previous ticket's room
/// (`room.close`, as the visitor); Rocket.Chat's `LivechatSession` webhook for it names the
/// visitor as the closer and is not a Close of the previous 3Dolphins ticket. An agent's close
/// still is.
#[tokio::test(flavor = "multi_thread")]
async fn the_bridges_own_close_of_the_previous_room_does_not_close_the_previous_ticket() {
    let env = RocketChatEnv::start().await;
    let first = fresh_ticket();
    let second = fresh_ticket();
    env.deliver_as(Event::example().ticket(&first).message("first ticket"), "delivered")
        .await;
    env.deliver_as(Event::example().ticket(&second).message("second ticket"), "delivered")
        .await;
    let rooms = env.rocketchat.rooms();
    assert_eq!(rooms[0].closer.as_deref(), Some("visitor"), "{rooms:#?}");

    let closed_by_bridge = env.rocketchat.closed_room_webhook(&rooms[0].id);
    assert_eq!(closed_by_bridge["closer"], "visitor");
    let answer = env.webhook(&closed_by_bridge).await;
    assert_eq!(answer.status, 200, "{}", answer.describe());
    assert_eq!(answer.json(), json!({"status": "ok", "events": 0}));

    let closed_by_agent = env.rocketchat.session_closed_webhook(&rooms[1].id);
    assert_eq!(
        env.webhook(&closed_by_agent).await.json(),
        json!({"status": "ok", "events": 1})
    );
    let events = env.three_dolphins.wait_for_events(1).await;
    env.bridge.wait_until_settled().await;
    let events_now = env.three_dolphins.events();
    assert_eq!(events_now.len(), 1, "{events_now:#?}");
    assert_eq!(events[0]["event"], "Close");
    assert_eq!(events[0]["ticketNumber"], second.as_str());
}

/// Defect 6 (kept): Rocket.Chat sends a webhook again when the answer takes longer than
/// `Livechat_http_timeout`; the agent's message reaches 3Dolphins once (keyed by its `_id`).
#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_sent_again_after_a_slow_answer_reaches_3dolphins_once() {
    let env = RocketChatEnv::start().await;
    let ticket = fresh_ticket();
    env.deliver_as(Event::example().ticket(&ticket), "delivered").await;
    let room = env.only_room();
    let reply = env.rocketchat.agent_message_webhook(&room.id, "sekali saja");
    let url = env.bridge.webhook_url(TENANT, "/webhook");
    // No time at all for an answer: every answer is late, so Rocket.Chat sends it all five times
    // (a 1 ms timeout was met once on a loaded machine).
    let attempts = env
        .rocketchat
        .send_webhook_as_rocketchat(&url, &reply, Duration::ZERO)
        .await;
    assert!(attempts.len() >= 2, "Rocket.Chat sent it again: {attempts:?}");
    env.three_dolphins.wait_for_events(1).await;
    env.bridge.wait_until_settled().await;
    let events = env.three_dolphins.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["message"], "sekali saja");
}

/// The visitor token the adapter derives for a contact: `3dh-` and the hex HMAC-SHA256 of
/// `owner NUL contactId` under the tenant's `visitor_token_secret`.
fn hmac_visitor_token(secret: &str, owner: &str, contact_id: &str) -> String {
    let mac = hmac_sha256(secret.as_bytes(), &[owner.as_bytes(), b"\0", contact_id.as_bytes()]);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("3dh-{hex}")
}

/// The token the adapter used before the HMAC (a plain hash of owner and contact id).
fn legacy_visitor_token(owner: &str, contact_id: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{owner}:{contact_id}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("3d-{}", &hex[..40])
}

/// Waits until delivery `id` has been tried at least `attempts` times and is still pending.
async fn wait_for_attempts_while_pending(env: &RocketChatEnv, id: &str, attempts: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let delivery = env.bridge.delivery(id).await;
        assert_eq!(delivery["state"], "pending", "{delivery:#}");
        if delivery["attempts"].as_u64().unwrap_or(0) >= attempts {
            return;
        }
        assert!(Instant::now() < deadline, "no retry: {delivery:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Item 7a: with `Omnichannel_allow_visitors_to_close_conversation` off, Rocket.Chat refuses the
/// bridge's `room.close` of the contact's previous room. The new ticket is not written into the
/// previous ticket's room (and agents' replies there still reach the previous ticket): it waits,
/// and gets a room of its own once an agent has closed the previous one.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_close_of_the_previous_room_keeps_the_new_ticket_out_of_it() {
    let env = RocketChatEnv::start_with(|tenant| tenant, |config| config.retry_schedule_ms(&[100; 60])).await;
    env.rocketchat.set_visitors_can_close(false);
    let first = fresh_ticket();
    let second = fresh_ticket();
    env.deliver_as(Event::example().ticket(&first).message("first ticket"), "delivered")
        .await;
    let previous = env.only_room();
    let id = assert_accepted(
        &env.bridge
            .send_event(Event::example().ticket(&second).message("second ticket"))
            .await,
    );
    wait_for_attempts_while_pending(&env, &id, 2).await;
    assert_eq!(
        env.texts(&previous.id),
        ["first ticket"],
        "not in the previous ticket's room"
    );
    let reply = env
        .rocketchat
        .agent_message_webhook(&previous.id, "untuk tiket pertama");
    assert_eq!(env.webhook(&reply).await.json(), json!({"status": "ok", "events": 1}));
    let events = env.three_dolphins.wait_for_events(1).await;
    assert_eq!(
        events[0]["ticketNumber"],
        first.as_str(),
        "the previous room is still the first ticket's"
    );

    env.rocketchat.close_room(&previous.id);
    env.bridge.wait_for_delivery(&id, "delivered").await;
    let rooms = env.rocketchat.rooms();
    assert_eq!(rooms.len(), 2, "{rooms:#?}");
    assert_eq!(env.texts(&rooms[1].id), ["second ticket"]);
}

/// Item 7b: a visitor removed in Rocket.Chat (`DELETE livechat/visitor/:token`, which takes its
/// rooms with it) is registered again at once: the ticket's next message, and a new ticket's, is
/// delivered on its first attempt in a new room, not refused (`invalid-token`, then
/// `invalid-room` for the removed room).
#[tokio::test(flavor = "multi_thread")]
async fn a_removed_visitor_is_registered_again_at_once() {
    let env = RocketChatEnv::start().await;
    let ticket = fresh_ticket();
    env.deliver_as(Event::example().ticket(&ticket), "delivered").await;
    let room = env.only_room();
    env.rocketchat.close_room(&room.id);
    env.rocketchat.remove_visitor(&room.visitor_token);
    assert!(env.rocketchat.rooms().is_empty());

    let (_, delivery) = env
        .deliver_as(Event::example().ticket(&ticket).message("masih di sini?"), "delivered")
        .await;
    assert_eq!(delivery["attempts"], 1, "{delivery:#}");
    assert_eq!(env.rocketchat.visitors().len(), 1, "registered again");
    let room = env.only_room();
    assert_eq!(env.texts(&room.id), ["masih di sini?"]);

    // Removed again; this time a new ticket of the contact meets it when opening its room.
    env.rocketchat.close_room(&room.id);
    env.rocketchat.remove_visitor(&room.visitor_token);
    let (_, delivery) = env
        .deliver_as(
            Event::example().ticket(&fresh_ticket()).message("tiket baru"),
            "delivered",
        )
        .await;
    assert_eq!(delivery["attempts"], 1, "{delivery:#}");
    assert_eq!(env.texts(&env.only_room().id), ["tiket baru"]);
}

/// Item 7c: an agent's message with several files and a caption typed as the message text: every
/// file reaches 3Dolphins (each with its own type and link), the typed caption with the first,
/// an upload description with its file; a webhook sent again forwards none twice.
#[tokio::test(flavor = "multi_thread")]
async fn an_agents_files_and_their_typed_caption_are_all_forwarded() {
    let env = RocketChatEnv::start().await;
    let ticket = fresh_ticket();
    env.deliver_as(Event::example().ticket(&ticket), "delivered").await;
    let room = env.only_room();
    let files = env.rocketchat.agent_files_webhook(
        &room.id,
        "ini dokumen yang diminta",
        &[
            ("invoice.pdf", "application/pdf", ""),
            ("receipt.jpg", "image/jpeg", "foto struk"),
            ("note.ogg", "audio/ogg", ""),
        ],
    );
    assert_eq!(env.webhook(&files).await.json(), json!({"status": "ok", "events": 3}));
    assert_eq!(env.webhook(&files).await.status, 200);
    let events = env.three_dolphins.wait_for_events(3).await;
    env.bridge.wait_until_settled().await;
    assert_eq!(env.three_dolphins.events().len(), 3, "{events:#?}");
    let base = env.rocketchat.base_url();
    let attachments = &files["messages"][0]["attachments"];
    assert_eq!(events[0]["messageType"], "file");
    assert_eq!(events[0]["message"], "ini dokumen yang diminta");
    assert_eq!(
        events[0]["mediaLink"],
        files["messages"][0]["fileUpload"]["publicFilePath"]
    );
    assert_eq!(events[1]["messageType"], "image");
    assert_eq!(events[1]["message"], "foto struk");
    assert_eq!(
        events[1]["mediaLink"],
        format!("{base}{}", attachments[1]["title_link"].as_str().unwrap())
    );
    assert_eq!(events[2]["messageType"], "audio");
    assert_eq!(events[2]["message"], "");
    assert_eq!(
        events[2]["mediaLink"],
        format!("{base}{}", attachments[2]["title_link"].as_str().unwrap())
    );
}

/// Item 7d: with `Livechat_enable_message_character_limit` on, Rocket.Chat refuses a longer
/// message (`message-length-exceeds-character-limit`); the adapter reads the limit
/// (`livechat/config`) and sends the text in parts within it, in order, nothing lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_over_rocketchats_character_limit_arrives_in_parts() {
    let env = RocketChatEnv::start().await;
    env.rocketchat.set_message_character_limit(40);
    let text = "Selamat pagi, pesanan saya nomor 12345 belum sampai padahal sudah seminggu. \
                Mohon dibantu dicek ya, terima kasih banyak 🙏";
    let (_, delivery) = env
        .deliver_as(Event::example().ticket(&fresh_ticket()).message(text), "delivered")
        .await;
    assert_eq!(delivery["attempts"], 1, "{delivery:#}");
    let parts = env.texts(&env.only_room().id);
    assert!(parts.len() >= 3, "{parts:#?}");
    assert!(parts.iter().all(|p| p.encode_utf16().count() <= 40), "{parts:#?}");
    assert_eq!(parts.concat(), text);
}

/// Item 8: the visitor token (the only credential of Rocket.Chat's public Livechat API) is an
/// HMAC of owner and contact under the tenant's `visitor_token_secret`, not a hash anyone knowing
/// both ids can compute; the secret appears in no log line.
#[tokio::test(flavor = "multi_thread")]
async fn the_visitor_token_is_an_hmac_under_the_tenants_secret() {
    let env = RocketChatEnv::start().await;
    env.deliver_as(Event::example().ticket(&fresh_ticket()), "delivered")
        .await;
    let visitors = env.rocketchat.visitors();
    assert_eq!(visitors.len(), 1);
    assert_eq!(
        visitors[0].token,
        hmac_visitor_token(VISITOR_TOKEN_SECRET, EXAMPLE_OWNER, EXAMPLE_CONTACT_ID)
    );
    assert_ne!(
        visitors[0].token,
        legacy_visitor_token(EXAMPLE_OWNER, EXAMPLE_CONTACT_ID)
    );
    assert!(!env.bridge.stderr().contains(VISITOR_TOKEN_SECRET));
}

/// Item 8, keeping existing visitors: a contact the adapter registered before with the legacy
/// token (its `visitor:` key in the adapter's store) keeps that token, its visitor and its open
/// room; a new contact gets an HMAC token.
#[tokio::test(flavor = "multi_thread")]
async fn a_contact_registered_with_the_legacy_token_keeps_its_visitor() {
    let env = RocketChatEnv::start().await;
    env.deliver_as(
        Event::fresh().with("contactId", "c0ffee0000000000000000000000000a"),
        "delivered",
    )
    .await;
    let legacy = legacy_visitor_token(EXAMPLE_OWNER, EXAMPLE_CONTACT_ID);
    let rid = env.rocketchat.add_visitor_with_open_room(&legacy);
    let ticket = fresh_ticket();
    let store = env.bridge.open_store();
    let tenant: String = store
        .query_row("SELECT tenant FROM kv LIMIT 1", [], |row| row.get(0))
        .expect("the adapter stored keys");
    for (key, value) in [
        (format!("visitor:{legacy}"), json!(true)),
        (format!("ticket:{ticket}"), json!({"rid": rid})),
        (format!("room:{rid}"), json!({"ticket": ticket})),
    ] {
        store
            .execute(
                "INSERT INTO kv (tenant, key, value) VALUES (?1, ?2, ?3)",
                rusqlite::params![tenant, key, value.to_string().into_bytes()],
            )
            .unwrap();
    }

    env.deliver_as(Event::example().ticket(&ticket).message("lanjut"), "delivered")
        .await;
    assert_eq!(env.texts(&rid), ["lanjut"], "the existing room, with the legacy token");
    let visitors = env.rocketchat.visitors();
    assert_eq!(
        visitors.len(),
        2,
        "no new visitor for the legacy contact: {visitors:#?}"
    );
    assert!(
        visitors
            .iter()
            .all(|v| v.token == legacy || v.token.starts_with("3dh-")),
        "{visitors:#?}"
    );
}

/// Item 8: without `visitor_token_secret` a new contact's message is refused with a reason that
/// names the setting (a dead letter to replay once it is set), never with a guessable token.
#[tokio::test(flavor = "multi_thread")]
async fn without_the_visitor_token_secret_a_new_contact_is_refused_naming_the_setting() {
    let env = RocketChatEnv::start_with(|tenant| tenant.without_config("visitor_token_secret"), |config| config).await;
    let (_, dead) = env.deliver_as(Event::fresh(), "dead").await;
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("visitor_token_secret"), "{dead:#}");
    assert!(env.rocketchat.visitors().is_empty());
}
