//! The Sunshine Conversations adapter (JavaScript) end to end: Incoming events become a user, a
//! personal conversation per ticket and user messages at the mock Sunshine; business replies and
//! a switchboard release with reason `ticketClosed` come back to the mock 3Dolphins; the user's
//! own messages are ignored; retried deliveries create nothing twice; the host checks `X-API-Key`;
//! each ticket's conversation is handed to the agent workspace through the mock's switchboard.
//!
//! The mock app has Sunshine's default settings (`multiConvoEnabled` false) unless a test turns
//! multi-conversations on, as the README recommends.

use dolphin_bridge_tests::bridge::WebhookAuth;
use dolphin_bridge_tests::events::{EXAMPLE_CONTACT_ID, EXAMPLE_OWNER};
use dolphin_bridge_tests::mock_sunshine::{AGENT_WORKSPACE, APP_ID, BOT, BRIDGE, Conversation, MockSunshine};
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, MockThreeDolphins, Tenant, adapters};
use serde_json::{Value, json};

use crate::common::{API_TOKEN, assert_accepted};

const TENANT: &str = "acme-sunshine";
const KEY_ID: &str = "app_5ebee0975ac5304b664a12fb";
const KEY_SECRET: &str = "e2e-sunshine-key-secret";
/// The webhook's shared secret, sent by Sunshine in `X-API-Key`.
const WEBHOOK_SECRET: &str = "e2e-sunshine-webhook-secret";

/// The bridge with one Sunshine tenant (the example owner).
struct SunshineEnv {
    // Dropped first: the bridge stops before the mocks free their ports.
    bridge: Bridge,
    three_dolphins: MockThreeDolphins,
    sunshine: MockSunshine,
}

impl SunshineEnv {
    /// The app at Sunshine's defaults: `multiConvoEnabled` false.
    async fn start() -> SunshineEnv {
        SunshineEnv::start_with(false).await
    }

    /// The app with `multiConvoEnabled` set (the recommended setting).
    async fn start_multi_convo() -> SunshineEnv {
        SunshineEnv::start_with(true).await
    }

    async fn start_with(multi_convo: bool) -> SunshineEnv {
        SunshineEnv::start_configured(multi_convo, &[]).await
    }

    /// Like [`start_with`](SunshineEnv::start_with), with further adapter config keys.
    async fn start_configured(multi_convo: bool, extra: &[(&str, &str)]) -> SunshineEnv {
        let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
        let sunshine = MockSunshine::start(KEY_ID, KEY_SECRET).await;
        if multi_convo {
            sunshine.enable_multi_convo();
        }
        let mut tenant = Tenant::new(TENANT, EXAMPLE_OWNER, adapters::sunshine())
            .allow(&sunshine.base_url())
            .config("base_url", &sunshine.base_url())
            .config("app_id", APP_ID)
            .config("key_id", KEY_ID)
            .config("key_secret", KEY_SECRET)
            .webhook(WebhookAuth::with_secret("token", WEBHOOK_SECRET).token_header("X-API-Key"));
        for (key, value) in extra {
            tenant = tenant.config(key, value);
        }
        let bridge = Bridge::start(
            BridgeConfig::new(&three_dolphins.base_url())
                .api_token(API_TOKEN)
                .tenant(tenant),
        )
        .await;
        SunshineEnv {
            bridge,
            three_dolphins,
            sunshine,
        }
    }

    /// Sends an Incoming event and waits until it is delivered; returns the delivery's state.
    async fn deliver(&self, event: Event) -> Value {
        let id = assert_accepted(&self.bridge.send_event(event).await);
        self.bridge.wait_for_delivery(&id, "delivered").await
    }

    /// The one conversation of `ticket` (by the metadata the adapter gives it).
    fn conversation_of(&self, ticket: &str) -> Conversation {
        let matching: Vec<Conversation> = self
            .sunshine
            .conversations()
            .into_iter()
            .filter(|c| c.metadata["dolphinTicket"] == ticket)
            .collect();
        assert_eq!(matching.len(), 1, "conversations: {:#?}", self.sunshine.conversations());
        matching.into_iter().next().unwrap()
    }

    /// The texts of the user's messages in a conversation, oldest first.
    fn user_texts(&self, conversation_id: &str) -> Vec<String> {
        self.sunshine
            .messages(conversation_id)
            .iter()
            .filter(|m| m.author_type() == "user")
            .map(|m| m.content["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Subscribes the bridge's webhook URL at the mock (so deletions send `conversation:remove`).
    fn subscribe(&self) {
        let url = self.bridge.webhook_url(TENANT, "/sunshine");
        self.sunshine.subscribe(&url, WEBHOOK_SECRET);
    }

    /// Sends a webhook with these events and the right secret; expects 200 and returns the answer.
    async fn webhook(&self, events: Vec<Value>) -> Value {
        let url = self.bridge.webhook_url(TENANT, "/sunshine");
        let response = self.sunshine.send_webhook(&url, WEBHOOK_SECRET, events).await;
        assert_eq!(response.status, 200, "{}", response.describe());
        response.json()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sunshine_round_trip_message_reply_and_close() {
    let env = SunshineEnv::start_multi_convo().await;
    let event = Event::fresh().message("Halo, pesanan saya belum sampai");
    let ticket = event.ticket_number();
    env.deliver(event).await;

    // One user for the contact, authenticated with Basic auth, one personal conversation.
    let users = env.sunshine.users();
    assert_eq!(users.len(), 1, "{users:#?}");
    assert_eq!(
        users[0].external_id.as_deref(),
        Some(format!("3dolphins-{EXAMPLE_CONTACT_ID}").as_str())
    );
    assert_eq!(users[0].profile, json!({"givenName": "Farhan", "surname": "Akbar"}));
    let conversation = env.conversation_of(&ticket);
    assert_eq!(conversation.kind, "personal");
    assert_eq!(conversation.participants, [users[0].id.clone()]);
    let messages = env.sunshine.messages(&conversation.id);
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0].author, json!({"type": "user", "userId": users[0].id}));
    assert_eq!(
        messages[0].content,
        json!({"type": "text", "text": "Halo, pesanan saya belum sampai"})
    );

    // A second ticket of the same contact: the same user, a conversation of its own.
    let second = Event::fresh().message("tiket kedua");
    let second_ticket = second.ticket_number();
    env.deliver(second).await;
    assert_eq!(env.sunshine.users().len(), 1);
    assert_ne!(env.conversation_of(&second_ticket).id, conversation.id);

    // An agent's text and image, the user's own message and a release without ticketClosed, in
    // one webhook request: two Outgoing events, in order.
    let text = env
        .sunshine
        .business_message(&conversation.id, json!({"type": "text", "text": "Baik, kami cek dulu"}));
    let image = env.sunshine.business_message(
        &conversation.id,
        json!({"type": "image", "text": "resi", "mediaUrl": "https://media.example.com/resi.jpg"}),
    );
    let own = env.sunshine.user_message(&conversation.id, "ini pesan saya sendiri");
    let transfer =
        env.sunshine
            .switchboard_event(&conversation.id, "switchboard:releaseControl", Some("transferToEmail"));
    let answer = env.webhook(vec![text, own, image, transfer]).await;
    assert_eq!(answer, json!({"status": "ok", "events": 2}));
    let events = env.three_dolphins.wait_for_events(2).await;
    assert_eq!(events[0]["ticketNumber"], ticket.as_str());
    assert_eq!(events[0]["messageType"], "text");
    assert_eq!(events[0]["message"], "Baik, kami cek dulu");
    assert_eq!(events[0]["owner"], EXAMPLE_OWNER);
    assert_eq!(events[0]["channel"], "whatsapp");
    assert_eq!(events[1]["messageType"], "image");
    assert_eq!(events[1]["message"], "resi");
    assert_eq!(events[1]["mediaLink"], "https://media.example.com/resi.jpg");

    // The switchboard releasing control because the ticket was closed: a Close command.
    let close = env
        .sunshine
        .switchboard_event(&conversation.id, "switchboard:releaseControl", Some("ticketClosed"));
    assert_eq!(env.webhook(vec![close]).await, json!({"status": "ok", "events": 1}));
    let events = env.three_dolphins.wait_for_events(3).await;
    assert_eq!(
        events[2],
        json!({"ticketNumber": ticket, "channel": "whatsapp", "owner": EXAMPLE_OWNER, "event": "Close"})
    );
    env.bridge.wait_until_settled().await;
    assert_eq!(env.three_dolphins.events().len(), 3, "nothing else reached 3Dolphins");
}

#[tokio::test(flavor = "multi_thread")]
async fn sunshine_a_user_that_exists_already_is_read_after_the_409() {
    let env = SunshineEnv::start().await;
    let contact = "c0ffee00000000000000000000000042";
    let existing = env.sunshine.add_user(&format!("3dolphins-{contact}"));
    let event = Event::fresh().with("contactId", contact);
    let ticket = event.ticket_number();
    env.deliver(event).await;
    assert_eq!(env.sunshine.users().len(), 1, "no second user");
    let statuses: Vec<(String, String)> = env
        .sunshine
        .requests()
        .iter()
        .filter(|r| r.path.contains("/users"))
        .map(|r| {
            (
                r.method.clone(),
                r.path.rsplit('/').next().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("POST".to_owned(), "users".to_owned()),
            ("GET".to_owned(), format!("3dolphins-{contact}"))
        ],
        "created, met the 409, then read the user by its externalId"
    );
    assert_eq!(env.conversation_of(&ticket).participants, [existing]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sunshine_only_the_users_own_messages_are_ignored() {
    let env = SunshineEnv::start().await;
    let event = Event::fresh();
    let ticket = event.ticket_number();
    env.deliver(event).await;
    let conversation = env.conversation_of(&ticket);
    let own = env.sunshine.user_message(&conversation.id, "Halo lagi");
    assert_eq!(env.webhook(vec![own]).await, json!({"status": "ok", "events": 0}));
    // The same request with an agent's reply after it proves the first was answered, not lost.
    let own = env.sunshine.user_message(&conversation.id, "Halo lagi");
    let reply = env
        .sunshine
        .business_message(&conversation.id, json!({"type": "text", "text": "Ya?"}));
    assert_eq!(
        env.webhook(vec![own, reply]).await,
        json!({"status": "ok", "events": 1})
    );
    let events = env.three_dolphins.wait_for_events(1).await;
    env.bridge.wait_until_settled().await;
    assert_eq!(env.three_dolphins.events().len(), 1, "{events:#?}");
    assert_eq!(events[0]["message"], "Ya?");
}

#[tokio::test(flavor = "multi_thread")]
async fn sunshine_lost_answers_are_retried_without_duplicates() {
    let env = SunshineEnv::start().await;
    sunshine_lost_answers_are_retried_without_duplicates_in(&env).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sunshine_lost_answers_are_retried_without_duplicates_with_multi_convo() {
    let env = SunshineEnv::start_multi_convo().await;
    sunshine_lost_answers_are_retried_without_duplicates_in(&env).await;
}

async fn sunshine_lost_answers_are_retried_without_duplicates_in(env: &SunshineEnv) {
    // The conversation is created but its answer is lost: the retry finds it by its metadata.
    env.sunshine.fail_next_after_commit("POST", "/conversations", 1, 504);
    let first = Event::fresh().message("pertama");
    let ticket = first.ticket_number();
    let delivery = env.deliver(first).await;
    assert_eq!(delivery["attempts"], 2, "{delivery:#}");
    let conversation = env.conversation_of(&ticket);
    assert_eq!(env.user_texts(&conversation.id), ["pertama"]);

    // The message is posted but its answer is lost: the retry finds it by the delivery id.
    env.sunshine.fail_next_after_commit("POST", "/messages", 1, 503);
    let delivery = env.deliver(Event::fresh().ticket(&ticket).message("kedua")).await;
    assert_eq!(delivery["attempts"], 2, "{delivery:#}");
    assert_eq!(env.user_texts(&conversation.id), ["pertama", "kedua"]);
    assert_eq!(env.sunshine.conversations().len(), 1);
    assert_eq!(env.sunshine.users().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn sunshine_webhooks_without_the_api_key_are_refused_by_the_host() {
    let env = SunshineEnv::start().await;
    let event = Event::fresh();
    let ticket = event.ticket_number();
    env.deliver(event).await;
    let conversation = env.conversation_of(&ticket);
    let reply = env
        .sunshine
        .business_message(&conversation.id, json!({"type": "text", "text": "palsu"}));
    let url = env.bridge.webhook_url(TENANT, "/sunshine");
    let refused = env.sunshine.send_webhook(&url, "not-the-secret", vec![reply]).await;
    assert_eq!(refused.status, 401, "{}", refused.describe());
    env.bridge.wait_until_settled().await;
    assert!(env.three_dolphins.events().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn sunshine_rejecting_the_key_is_a_dead_letter_naming_the_call() {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let sunshine = MockSunshine::start(KEY_ID, KEY_SECRET).await;
    let tenant = Tenant::new(TENANT, EXAMPLE_OWNER, adapters::sunshine())
        .allow(&sunshine.base_url())
        .config("base_url", &sunshine.base_url())
        .config("app_id", APP_ID)
        .config("key_id", KEY_ID)
        .config("key_secret", "a-wrong-secret");
    let bridge = Bridge::start(
        BridgeConfig::new(&three_dolphins.base_url())
            .api_token(API_TOKEN)
            .tenant(tenant),
    )
    .await;
    let id = assert_accepted(&bridge.send_event(Event::fresh()).await);
    let dead = bridge.wait_for_delivery(&id, "dead").await;
    assert_eq!(dead["attempts"], 1, "a 401 is not retried: {dead:#}");
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("create user answered 401"), "{error}");
    assert!(!error.contains("a-wrong-secret"), "{error}");
    assert!(sunshine.users().is_empty());
}

/// Defect 1: at Sunshine's default `multiConvoEnabled: false` a user cannot be part of a second
/// conversation; a contact's second ticket goes into the user's one conversation (the ticket in
/// each message's metadata) instead of becoming a dead letter, and agents' replies there go to
/// the ticket that wrote last.
#[tokio::test(flavor = "multi_thread")]
async fn sunshine_a_second_ticket_at_the_default_settings_shares_the_users_conversation() {
    let env = SunshineEnv::start().await;
    let first = Event::fresh().message("tiket pertama");
    let first_ticket = first.ticket_number();
    env.deliver(first).await;
    let conversation = env.conversation_of(&first_ticket);

    let second = Event::fresh().message("tiket kedua");
    let second_ticket = second.ticket_number();
    let delivery = env.deliver(second).await;
    assert_eq!(delivery["attempts"], 1, "{delivery:#}");
    assert_eq!(
        env.sunshine.conversations().len(),
        1,
        "{:#?}",
        env.sunshine.conversations()
    );
    assert_eq!(env.user_texts(&conversation.id), ["tiket pertama", "tiket kedua"]);
    let messages = env.sunshine.messages(&conversation.id);
    assert_eq!(messages[0].metadata["dolphinTicket"], first_ticket.as_str());
    assert_eq!(messages[1].metadata["dolphinTicket"], second_ticket.as_str());

    // An agent's reply in the shared conversation answers the ticket that wrote last.
    let reply = env
        .sunshine
        .business_message(&conversation.id, json!({"type": "text", "text": "untuk tiket kedua"}));
    assert_eq!(env.webhook(vec![reply]).await, json!({"status": "ok", "events": 1}));
    let events = env.three_dolphins.wait_for_events(1).await;
    assert_eq!(events[0]["ticketNumber"], second_ticket.as_str());

    // The first ticket still posts into the same conversation; a third ticket whose post fails
    // once (503) is retried into the same conversation too.
    env.deliver(Event::fresh().ticket(&first_ticket).message("lagi")).await;
    assert_eq!(
        env.user_texts(&conversation.id),
        ["tiket pertama", "tiket kedua", "lagi"]
    );
    env.sunshine.fail_next_matching("POST", "/messages", 1, 503);
    let third = Event::fresh().message("tiket ketiga");
    let delivery = env.deliver(third).await;
    assert_eq!(delivery["attempts"], 2, "{delivery:#}");
    assert_eq!(env.sunshine.conversations().len(), 1);
    assert_eq!(env.user_texts(&conversation.id).len(), 4);
}

/// Defect 2: a conversation deleted in Sunshine (`conversation:remove`) drops the ticket's
/// mapping, so the ticket's next message opens a new conversation instead of a 404 dead letter.
#[tokio::test(flavor = "multi_thread")]
async fn sunshine_a_removed_conversation_is_forgotten_and_opened_again() {
    // Only a user's non-default conversations can be deleted: two tickets, multi-conversations on.
    let env = SunshineEnv::start_multi_convo().await;
    env.subscribe();
    env.deliver(Event::fresh()).await;
    let event = Event::fresh().message("sebelum");
    let ticket = event.ticket_number();
    env.deliver(event).await;
    let removed = env.conversation_of(&ticket);
    let deleted = env.sunshine.delete_conversation(&removed.id).await;
    assert_eq!(deleted.status, 200, "{}", deleted.describe());

    let delivery = env.deliver(Event::fresh().ticket(&ticket).message("sesudah")).await;
    assert_eq!(delivery["attempts"], 1, "{delivery:#}");
    let reopened = env.conversation_of(&ticket);
    assert_ne!(reopened.id, removed.id);
    assert_eq!(env.user_texts(&reopened.id), ["sesudah"]);
    // Replies in the new conversation reach the ticket.
    let reply = env
        .sunshine
        .business_message(&reopened.id, json!({"type": "text", "text": "baru"}));
    assert_eq!(env.webhook(vec![reply]).await, json!({"status": "ok", "events": 1}));
    let events = env.three_dolphins.wait_for_events(1).await;
    assert_eq!(events[0]["ticketNumber"], ticket.as_str());
}

/// Defect 2: a conversation deleted without the bridge hearing of it (no `conversation:remove`
/// subscription, or the event lost) answers the post 404 `conversation_not_found`: the adapter
/// opens a new conversation and posts there, once.
#[tokio::test(flavor = "multi_thread")]
async fn sunshine_a_post_into_a_deleted_conversation_opens_a_new_one() {
    let env = SunshineEnv::start_multi_convo().await;
    env.deliver(Event::fresh()).await;
    let event = Event::fresh().message("sebelum");
    let ticket = event.ticket_number();
    env.deliver(event).await;
    let removed = env.conversation_of(&ticket);
    let deleted = env.sunshine.delete_conversation(&removed.id).await;
    assert_eq!(deleted.status, 200, "{}", deleted.describe());

    let before = env.sunshine.requests().len();
    let delivery = env.deliver(Event::fresh().ticket(&ticket).message("sesudah")).await;
    assert_eq!(delivery["attempts"], 1, "{delivery:#}");
    let reopened = env.conversation_of(&ticket);
    assert_ne!(reopened.id, removed.id);
    assert_eq!(env.user_texts(&reopened.id), ["sesudah"]);
    let into_removed = env.sunshine.requests()[before..]
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(&format!("{}/messages", removed.id)))
        .count();
    assert_eq!(into_removed, 1, "one post into the deleted conversation (answered 404)");
}

/// Defect 3: Sunshine re-sends a webhook it got no answer to within 20 s (or a non-2xx one) with
/// the same `events[].id`: the reply reaches 3Dolphins once.
#[tokio::test(flavor = "multi_thread")]
async fn sunshine_a_resent_webhook_reaches_3dolphins_once() {
    let env = SunshineEnv::start().await;
    let event = Event::fresh();
    let ticket = event.ticket_number();
    env.deliver(event).await;
    let conversation = env.conversation_of(&ticket);
    let reply = env
        .sunshine
        .business_message(&conversation.id, json!({"type": "text", "text": "sekali saja"}));
    let close = env
        .sunshine
        .switchboard_event(&conversation.id, "switchboard:releaseControl", Some("ticketClosed"));
    assert_eq!(
        env.webhook(vec![reply, close]).await,
        json!({"status": "ok", "events": 2})
    );
    env.three_dolphins.wait_for_events(2).await;
    for _ in 0..2 {
        let again = env.sunshine.resend_last_webhook().await;
        assert_eq!(again.status, 200, "{}", again.describe());
    }
    env.bridge.wait_until_settled().await;
    let events = env.three_dolphins.events();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0]["message"], "sekali saja");
    assert_eq!(events[1]["event"], "Close");
}

/// Defect 4: a retried delivery looks for its conversation through every page of the user's
/// conversations (25 a page by default, `meta.hasMore`, `page[after]`), not only the first.
#[tokio::test(flavor = "multi_thread")]
async fn sunshine_a_retry_finds_its_conversation_past_the_first_page() {
    let env = SunshineEnv::start_multi_convo().await;
    let contact = "c0ffee00000000000000000000000077";
    let user = env.sunshine.add_user(&format!("3dolphins-{contact}"));
    for i in 0..130 {
        env.sunshine
            .add_conversation(&user, json!({"dolphinTicket": format!("older-{i}")}));
    }
    env.sunshine.fail_next_after_commit("POST", "/conversations", 1, 504);
    let event = Event::fresh().with("contactId", contact).message("halaman enam");
    let ticket = event.ticket_number();
    let delivery = env.deliver(event).await;
    assert_eq!(delivery["attempts"], 2, "{delivery:#}");
    let conversation = env.conversation_of(&ticket);
    assert_eq!(env.user_texts(&conversation.id), ["halaman enam"]);
    assert_eq!(env.sunshine.conversations().len(), 131);
}

/// Defect 1, the other side: with `multiConvoEnabled` on, a refused conversation is not a
/// multi-conversation refusal; the ticket is a dead letter naming the call, not slipped into the
/// user's other conversation.
#[tokio::test(flavor = "multi_thread")]
async fn sunshine_a_refused_conversation_with_multi_convo_on_is_a_dead_letter() {
    let env = SunshineEnv::start_multi_convo().await;
    let first = Event::fresh();
    let first_ticket = first.ticket_number();
    env.deliver(first).await;
    env.sunshine.fail_next_matching("POST", "/conversations", 1, 400);
    let id = assert_accepted(&env.bridge.send_event(Event::fresh().message("ditolak")).await);
    let dead = env.bridge.wait_for_delivery(&id, "dead").await;
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("create conversation answered 400"), "{error}");
    assert_eq!(env.user_texts(&env.conversation_of(&first_ticket).id).len(), 1);
}

/// Defect 5: Sunshine's field limits. A `displayName` takes 1-100 characters (a longer customer
/// name is cut, not refused); a message `text` at most 4096 (a longer one is a dead letter saying
/// so, before anything is made at Sunshine).
#[tokio::test(flavor = "multi_thread")]
async fn sunshine_field_limits_cut_the_name_and_refuse_long_texts() {
    let env = SunshineEnv::start().await;
    let long_name = "Farhan ".repeat(30);
    let event = Event::fresh()
        .with("customerName", long_name.trim())
        .message("nama panjang");
    let ticket = event.ticket_number();
    env.deliver(event).await;
    let name = env.conversation_of(&ticket).display_name.unwrap_or_default();
    assert_eq!(name.chars().count(), 100, "{name}");

    let before = env.sunshine.requests().len();
    let id = assert_accepted(&env.bridge.send_event(Event::fresh().message(&"a".repeat(4097))).await);
    let dead = env.bridge.wait_for_delivery(&id, "dead").await;
    assert_eq!(dead["attempts"], 1, "{dead:#}");
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("at most 4096"), "{error}");
    assert_eq!(env.sunshine.requests().len(), before, "nothing was sent to Sunshine");
}

/// Defect 5: a conversation holding Sunshine's 30,000 messages answers 423 `locked`: a dead
/// letter saying so (no retry, no second conversation).
#[tokio::test(flavor = "multi_thread")]
async fn sunshine_a_full_conversation_is_a_dead_letter_naming_the_limit() {
    let env = SunshineEnv::start().await;
    let event = Event::fresh();
    let ticket = event.ticket_number();
    env.deliver(event).await;
    let conversation = env.conversation_of(&ticket);
    env.sunshine.fill_conversation(&conversation.id, 30_000);
    let id = assert_accepted(
        &env.bridge
            .send_event(Event::fresh().ticket(&ticket).message("penuh"))
            .await,
    );
    let dead = env.bridge.wait_for_delivery(&id, "dead").await;
    assert_eq!(dead["attempts"], 1, "{dead:#}");
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("post message answered 423 (locked: Message limit of 30000"),
        "{error}"
    );
    assert_eq!(env.sunshine.conversations().len(), 1);
}

/// Item 5: Zendesk customers reach the API at `https://{subdomain}.zendesk.com/sc` (spec
/// `servers`; `api.smooch.io` is for legacy Sunshine Conversations only): with `subdomain` set
/// and no `base_url`, the adapter calls the Zendesk host (here refused by the bridge, as it is
/// not an allowed host, which shows the URL); with neither, it says which setting is missing.
#[tokio::test(flavor = "multi_thread")]
async fn sunshine_zendesk_customers_default_to_their_subdomains_api() {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let tenant = |subdomain: Option<&str>| {
        let tenant = Tenant::new(TENANT, EXAMPLE_OWNER, adapters::sunshine())
            .config("app_id", APP_ID)
            .config("key_id", KEY_ID)
            .config("key_secret", KEY_SECRET);
        match subdomain {
            Some(subdomain) => tenant.config("subdomain", subdomain),
            None => tenant,
        }
    };
    for (subdomain, expected) in [(Some("acme"), "https://acme.zendesk.com"), (None, "`subdomain`")] {
        let bridge = Bridge::start(
            BridgeConfig::new(&three_dolphins.base_url())
                .api_token(API_TOKEN)
                .tenant(tenant(subdomain)),
        )
        .await;
        let id = assert_accepted(&bridge.send_event(Event::fresh()).await);
        let dead = bridge.wait_for_delivery(&id, "dead").await;
        let error = dead["last_error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{error}");
        assert!(!error.contains("smooch.io"), "{error}");
    }
}

/// Item 5: a ticket closed in Zendesk can reach the webhook as `switchboard:passControl` and then
/// `switchboard:releaseControl`, both with reason `ticketClosed`: one Close reaches 3Dolphins.
/// The ticket writing again and being closed again is a second Close.
#[tokio::test(flavor = "multi_thread")]
async fn sunshine_pass_and_release_of_one_ticket_close_send_one_close() {
    let env = SunshineEnv::start().await;
    let event = Event::fresh();
    let ticket = event.ticket_number();
    env.deliver(event).await;
    let conversation = env.conversation_of(&ticket);
    let closing = |env: &SunshineEnv| {
        vec![
            env.sunshine
                .switchboard_event(&conversation.id, "switchboard:passControl", Some("ticketClosed")),
            env.sunshine
                .switchboard_event(&conversation.id, "switchboard:releaseControl", Some("ticketClosed")),
        ]
    };
    env.webhook(closing(&env)).await;
    env.three_dolphins.wait_for_events(1).await;
    env.bridge.wait_until_settled().await;
    assert_eq!(
        env.three_dolphins.events().len(),
        1,
        "{:#?}",
        env.three_dolphins.events()
    );

    env.deliver(Event::fresh().ticket(&ticket).message("lagi")).await;
    env.webhook(closing(&env)).await;
    env.three_dolphins.wait_for_events(2).await;
    env.bridge.wait_until_settled().await;
    let events = env.three_dolphins.events();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(events.iter().all(|e| e["event"] == "Close"), "{events:#?}");
}

/// Item 5: system messages are marked by `author.subtypes: ["activity"]` (spec `author.subtypes`)
/// as well as by `activity`: neither reaches the customer. Agents' audio and video arrive as
/// `file` content with their `mediaType` and become 3Dolphins `audio` and `video` events.
#[tokio::test(flavor = "multi_thread")]
async fn sunshine_activity_subtypes_are_ignored_and_agents_audio_and_video_keep_their_type() {
    let env = SunshineEnv::start().await;
    let event = Event::fresh();
    let ticket = event.ticket_number();
    env.deliver(event).await;
    let conversation = env.conversation_of(&ticket);
    let mut system = env
        .sunshine
        .business_message(&conversation.id, json!({"type": "text", "text": "Agent Smith joined"}));
    system["payload"]["message"]["author"]["subtypes"] = json!(["activity"]);
    let audio = env.sunshine.business_message(
        &conversation.id,
        json!({"type": "file", "mediaUrl": "https://media.example.com/voice.ogg", "mediaType": "audio/ogg", "altText": "voice.ogg"}),
    );
    let video = env.sunshine.business_message(
        &conversation.id,
        json!({"type": "file", "text": "tutorial", "mediaUrl": "https://media.example.com/howto.mp4", "mediaType": "video/mp4"}),
    );
    let pdf = env.sunshine.business_message(
        &conversation.id,
        json!({"type": "file", "mediaUrl": "https://media.example.com/invoice.pdf", "mediaType": "application/pdf"}),
    );
    assert_eq!(
        env.webhook(vec![system, audio, video, pdf]).await,
        json!({"status": "ok", "events": 3})
    );
    let events = env.three_dolphins.wait_for_events(3).await;
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["messageType"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(types, ["audio", "video", "file"], "{events:#?}");
    assert_eq!(events[1]["message"], "tutorial");
    assert_eq!(events[0]["mediaLink"], "https://media.example.com/voice.ogg");
}

/// Item 2: at the switchboard's default settings a new conversation is given to the default
/// integration (here the account's AI agent), so without a hand-off the customer's message goes
/// to the bot and no agent ticket is made. The adapter passes control to the agent workspace
/// before posting: the message reaches an agent, and the agent's reply comes back.
#[tokio::test(flavor = "multi_thread")]
async fn sunshine_a_new_tickets_message_reaches_the_agent_workspace() {
    let env = SunshineEnv::start().await;
    env.subscribe();
    let event = Event::fresh().message("tolong hubungkan ke agen");
    let ticket = event.ticket_number();
    env.deliver(event).await;
    let conversation = env.conversation_of(&ticket);
    assert_eq!(
        env.sunshine.agent_workspace_messages(&conversation.id),
        ["tolong hubungkan ke agen"],
        "routed: {:?}",
        env.sunshine.routed()
    );
    assert!(
        env.sunshine.routed().iter().all(|(to, ..)| to != BOT),
        "{:?}",
        env.sunshine.routed()
    );
    assert_eq!(
        env.sunshine.active_integration(&conversation.id).as_deref(),
        Some(AGENT_WORKSPACE)
    );
    let passes: Vec<Value> = env
        .sunshine
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/passControl"))
        .map(|r| r.json())
        .collect();
    assert_eq!(passes, [json!({"switchboardIntegration": "zd:agentWorkspace"})]);
    assert!(env.sunshine.agent_reply(&conversation.id, "Halo, saya Rina").await);
    let events = env.three_dolphins.wait_for_events(1).await;
    assert_eq!(events[0]["message"], "Halo, saya Rina");
    assert_eq!(events[0]["ticketNumber"], ticket.as_str());
}

/// Item 2: a ticket closed in Zendesk releases control (`ticketClosed`); the conversation then
/// goes back to the default integration (here the bridge's own), so a continuing ticket's next
/// message would stay with the bridge. The adapter passes control again, once even when that
/// pass's answer is lost and the delivery retried: the message reaches an agent in a new ticket.
#[tokio::test(flavor = "multi_thread")]
async fn sunshine_a_continuing_ticket_is_handed_to_an_agent_again_after_ticket_closed() {
    let env = SunshineEnv::start_multi_convo().await;
    env.sunshine.set_default_switchboard_integration(BRIDGE);
    env.subscribe();
    let event = Event::fresh().message("pertama");
    let ticket = event.ticket_number();
    env.deliver(event).await;
    let conversation = env.conversation_of(&ticket);
    assert_eq!(env.sunshine.agent_workspace_messages(&conversation.id), ["pertama"]);

    env.sunshine.close_ticket(&conversation.id).await;
    let events = env.three_dolphins.wait_for_events(1).await;
    assert_eq!(events[0]["event"], "Close");
    assert_eq!(env.sunshine.active_integration(&conversation.id), None);

    env.sunshine.fail_next_after_commit("POST", "/passControl", 1, 504);
    let delivery = env.deliver(Event::fresh().ticket(&ticket).message("kedua")).await;
    assert_eq!(delivery["attempts"], 2, "{delivery:#}");
    let tickets = env.sunshine.tickets();
    assert_eq!(tickets.len(), 2, "{tickets:#?}");
    assert!(!tickets[0].open && tickets[1].open, "{tickets:#?}");
    assert_eq!(tickets[1].messages, ["kedua"], "routed: {:?}", env.sunshine.routed());
    assert!(
        env.sunshine.routed().iter().all(|(to, ..)| to != BRIDGE),
        "{:?}",
        env.sunshine.routed()
    );
    assert_eq!(env.user_texts(&conversation.id), ["pertama", "kedua"]);
    let passes = env
        .sunshine
        .control_changes()
        .iter()
        .filter(|c| c.kind == "switchboard:passControl")
        .count();
    assert_eq!(
        passes,
        2,
        "one pass per hand-off: {:#?}",
        env.sunshine.control_changes()
    );
}

/// Item 2: `pass_control_to = "none"` (an app without a switchboard) makes no passControl call;
/// every integration, the agent workspace too, gets the messages there.
#[tokio::test(flavor = "multi_thread")]
async fn sunshine_pass_control_turned_off_makes_no_pass_control_call() {
    let env = SunshineEnv::start_configured(false, &[("pass_control_to", "none")]).await;
    env.sunshine.delete_switchboard();
    let event = Event::fresh().message("tanpa switchboard");
    let ticket = event.ticket_number();
    let delivery = env.deliver(event).await;
    assert_eq!(delivery["attempts"], 1, "{delivery:#}");
    let conversation = env.conversation_of(&ticket);
    assert_eq!(
        env.sunshine.agent_workspace_messages(&conversation.id),
        ["tanpa switchboard"]
    );
    let passes = env
        .sunshine
        .requests()
        .iter()
        .filter(|r| r.path.contains("Control"))
        .count();
    assert_eq!(passes, 0, "no switchboard action");
}
