//! The Sunshine Conversations adapter (JavaScript) end to end: Incoming events become a user, a
//! personal conversation per ticket and user messages at the mock Sunshine; business replies and
//! a switchboard release with reason `ticketClosed` come back to the mock 3Dolphins; the user's
//! own messages are ignored; retried deliveries create nothing twice; the host checks `X-API-Key`.

use dolphin_bridge_tests::bridge::WebhookAuth;
use dolphin_bridge_tests::events::{EXAMPLE_CONTACT_ID, EXAMPLE_OWNER};
use dolphin_bridge_tests::mock_sunshine::{APP_ID, Conversation, MockSunshine};
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
    async fn start() -> SunshineEnv {
        let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
        let sunshine = MockSunshine::start(KEY_ID, KEY_SECRET).await;
        let tenant = Tenant::new(TENANT, EXAMPLE_OWNER, adapters::sunshine())
            .allow(&sunshine.base_url())
            .config("base_url", &sunshine.base_url())
            .config("app_id", APP_ID)
            .config("key_id", KEY_ID)
            .config("key_secret", KEY_SECRET)
            .webhook(WebhookAuth::with_secret("token", WEBHOOK_SECRET).token_header("X-API-Key"));
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
    let env = SunshineEnv::start().await;
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
