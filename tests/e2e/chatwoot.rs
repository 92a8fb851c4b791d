//! The Chatwoot adapter end to end: Incoming events become a contact, a conversation per ticket
//! and messages at the mock Chatwoot; agent replies and resolves come back to the mock 3Dolphins;
//! vendor failures are retried without duplicates; another tenant on another vendor stays apart.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dolphin_bridge_tests::bridge::WebhookAuth;
use dolphin_bridge_tests::events::{
    EXAMPLE_CONTACT_ID, EXAMPLE_CUSTOMER, EXAMPLE_OWNER, fresh_ticket, is_contract_timestamp,
};
use dolphin_bridge_tests::mock_chatwoot::{Conversation, MockChatwoot, signature_headers, signature_headers_at};
use dolphin_bridge_tests::mock_http::{MockServer, Recorded, Reply};
use dolphin_bridge_tests::signing::unix_now;
use dolphin_bridge_tests::three_dolphins::EVENT_PATH;
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, MockThreeDolphins, MockVendor, Tenant, adapters};
use serde_json::{Value, json};

use crate::common::{API_TOKEN, assert_accepted, assert_refused, echo_tenant};

const CHATWOOT_TOKEN: &str = "e2e-chatwoot-token";
const TENANT: &str = "acme-chatwoot";
const TAG: &str = "acme-cw";
/// The owner of the second tenant, on the echo vendor.
const GLOBEX: &str = "b7e1c0ffee0000000000000000000001";

/// The bridge with a Chatwoot tenant (the example owner) and an echo tenant (`globex`).
struct ChatwootEnv {
    // Dropped first: the bridge stops before the mocks free their ports.
    bridge: Bridge,
    three_dolphins: MockThreeDolphins,
    chatwoot: MockChatwoot,
    echo_vendor: MockVendor,
}

fn chatwoot_tenant(chatwoot: &MockChatwoot) -> Tenant {
    Tenant::new(TENANT, EXAMPLE_OWNER, adapters::chatwoot())
        .allow(&chatwoot.base_url())
        .config("base_url", &chatwoot.base_url())
        .config("account_id", &chatwoot.account_id().to_string())
        .config("inbox_id", &chatwoot.inbox_id().to_string())
        .config("api_access_token", CHATWOOT_TOKEN)
        .config("tag", TAG)
}

impl ChatwootEnv {
    async fn start() -> ChatwootEnv {
        Self::start_with(|t| t).await
    }

    async fn start_with(customize: impl FnOnce(Tenant) -> Tenant) -> ChatwootEnv {
        let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
        let chatwoot = MockChatwoot::start(CHATWOOT_TOKEN).await;
        let echo_vendor = MockVendor::start().await;
        let bridge = Bridge::start(
            BridgeConfig::new(&three_dolphins.base_url())
                .api_token(API_TOKEN)
                .tenant(customize(chatwoot_tenant(&chatwoot)))
                .tenant(echo_tenant("globex", GLOBEX, &echo_vendor)),
        )
        .await;
        ChatwootEnv {
            bridge,
            three_dolphins,
            chatwoot,
            echo_vendor,
        }
    }

    /// Sends an Incoming event and waits until it is delivered; returns its delivery id.
    async fn deliver(&self, event: Event) -> String {
        let id = assert_accepted(&self.bridge.send_event(event).await);
        self.bridge.wait_for_delivery(&id, "delivered").await;
        id
    }

    /// The one conversation of `ticket`.
    fn conversation_of(&self, ticket: &str) -> Conversation {
        let matching: Vec<Conversation> = self
            .chatwoot
            .conversations()
            .into_iter()
            .filter(|c| c.custom_attributes["ticket_number"] == ticket)
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "conversations of ticket {ticket}: {:#?}",
            self.chatwoot.conversations()
        );
        matching.into_iter().next().unwrap()
    }

    /// The customers' messages (`incoming`) of a conversation, oldest first.
    fn customer_messages(&self, conversation_id: u64) -> Vec<String> {
        self.chatwoot
            .messages(conversation_id)
            .into_iter()
            .filter(|m| m.message_type == "incoming")
            .map(|m| m.content.unwrap_or_default())
            .collect()
    }

    /// POSTs a Chatwoot webhook payload to the tenant; expects 200 and returns the answer.
    async fn webhook(&self, payload: &Value) -> Value {
        let response = self.bridge.send_webhook(TENANT, "/webhook", payload).await;
        assert_eq!(response.status, 200, "{}", response.describe());
        response.json()
    }

    /// Delivers a text on a fresh ticket; returns (ticket, conversation id).
    async fn open_ticket(&self) -> (String, u64) {
        let event = Event::fresh();
        let ticket = event.ticket_number();
        self.deliver(event).await;
        (ticket.clone(), self.conversation_of(&ticket).id)
    }

    /// Asserts exactly one contact, one conversation and one customer message `text` exist.
    fn assert_created_once(&self, text: &str) {
        let contacts = self.chatwoot.contacts();
        assert_eq!(contacts.len(), 1, "contacts: {contacts:#?}");
        let conversations = self.chatwoot.conversations();
        assert_eq!(conversations.len(), 1, "conversations: {conversations:#?}");
        assert_eq!(
            self.customer_messages(conversations[0].id),
            [text],
            "messages: {:#?}",
            self.chatwoot.all_messages()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_text_event_creates_the_contact_a_conversation_and_the_message() {
    let env = ChatwootEnv::start().await;
    let event = Event::fresh();
    let ticket = event.ticket_number();
    let delivery_id = env.deliver(event).await;

    let contacts = env.chatwoot.contacts();
    assert_eq!(contacts.len(), 1, "{contacts:#?}");
    let contact = &contacts[0];
    assert_eq!(contact.identifier.as_deref(), Some(EXAMPLE_CONTACT_ID));
    assert_eq!(contact.name.as_deref(), Some(EXAMPLE_CUSTOMER));
    assert_eq!(contact.phone_number.as_deref(), Some("+628128778222"));
    assert!(
        contact
            .contact_inboxes
            .iter()
            .any(|ci| ci.inbox_id == env.chatwoot.inbox_id()),
        "the contact is not in the API inbox: {contact:#?}"
    );

    let conversation = env.conversation_of(&ticket);
    assert_eq!(conversation.contact_id, contact.id);
    assert_eq!(conversation.inbox_id, env.chatwoot.inbox_id());
    assert_eq!(conversation.status, "open");
    assert_eq!(conversation.custom_attributes["channel"], "whatsapp");

    let messages = env.chatwoot.messages(conversation.id);
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let message = &messages[0];
    assert_eq!(message.content.as_deref(), Some("Halo"));
    assert_eq!(message.message_type, "incoming");
    assert!(!message.private);
    assert_eq!(message.source_id.as_deref(), Some(delivery_id.as_str()));
    assert_eq!(message.content_attributes["bridge_tag"], TAG);

    // Nothing went to 3Dolphins or to the other tenant's vendor.
    assert!(env.three_dolphins.event_posts().is_empty());
    assert!(env.echo_vendor.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ticket_keeps_its_conversation_and_a_contact_keeps_its_identity() {
    let env = ChatwootEnv::start().await;
    let ticket = fresh_ticket();
    for text in ["Halo", "Saya mau tanya", "Terima kasih"] {
        env.deliver(Event::example().ticket(&ticket).message(text)).await;
    }
    let conversation = env.conversation_of(&ticket);
    assert_eq!(
        env.customer_messages(conversation.id),
        ["Halo", "Saya mau tanya", "Terima kasih"]
    );

    // A new ticket of the same customer: the same contact, a new conversation.
    let other = fresh_ticket();
    env.deliver(Event::example().ticket(&other).message("Halo lagi")).await;
    assert_eq!(env.chatwoot.contacts().len(), 1, "{:#?}", env.chatwoot.contacts());
    let second = env.conversation_of(&other);
    assert_ne!(second.id, conversation.id);
    assert_eq!(second.contact_id, conversation.contact_id);
    assert_eq!(env.customer_messages(second.id), ["Halo lagi"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn image_location_and_sticker_events_become_readable_messages() {
    let env = ChatwootEnv::start().await;
    let ticket = fresh_ticket();
    let events = [
        Event::image("https://cdn.example.com/photo.jpg", "my receipt"),
        Event::image("https://cdn.example.com/bare.jpg", ""),
        Event::location("-6.175, 106.827"),
        Event::fresh().message("Stiker"),
    ];
    for event in events {
        env.deliver(event.ticket(&ticket)).await;
    }
    let conversation = env.conversation_of(&ticket);
    assert_eq!(
        env.customer_messages(conversation.id),
        [
            "my receipt\nhttps://cdn.example.com/photo.jpg",
            "https://cdn.example.com/bare.jpg",
            "Location: https://maps.google.com/?q=-6.175,106.827",
            "Stiker",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_reply_becomes_an_outgoing_event_for_the_ticket() {
    let env = ChatwootEnv::start().await;
    let (ticket, conversation) = env.open_ticket().await;
    let webhook = env
        .chatwoot
        .message_created_outgoing(conversation, "Halo, ada yang bisa dibantu?");
    let answer = env.webhook(&webhook).await;
    assert_eq!(answer, json!({"status": "ok", "events": 1, "tag": TAG}));

    let events = env.three_dolphins.wait_for_events(1).await;
    env.bridge.wait_until_settled().await;
    let posts = env.three_dolphins.event_posts();
    assert_eq!(posts.len(), 1, "{posts:#?}");
    assert_eq!(posts[0].path, EVENT_PATH);
    let outgoing = &events[0];
    let keys: BTreeSet<&str> = outgoing.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "ticketNumber",
            "channel",
            "messageType",
            "message",
            "mediaLink",
            "customerName",
            "owner",
            "createdDate",
        ]),
        "{outgoing:#}"
    );
    assert_eq!(outgoing["ticketNumber"], ticket.as_str());
    assert_eq!(outgoing["owner"], EXAMPLE_OWNER);
    assert_eq!(outgoing["channel"], "whatsapp");
    assert_eq!(outgoing["messageType"], "text");
    assert_eq!(outgoing["message"], "Halo, ada yang bisa dibantu?");
    assert_eq!(outgoing["mediaLink"], "");
    assert_eq!(outgoing["customerName"], EXAMPLE_CUSTOMER);
    assert!(is_contract_timestamp(
        outgoing["createdDate"].as_str().unwrap_or_default()
    ));
    assert!(env.echo_vendor.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_attachment_becomes_a_media_outgoing_event() {
    let env = ChatwootEnv::start().await;
    let (ticket, conversation) = env.open_ticket().await;
    let webhook = env.chatwoot.message_created_with_attachment(
        conversation,
        "your invoice",
        "file",
        "https://chatwoot.example.com/rails/active_storage/invoice.pdf",
    );
    env.webhook(&webhook).await;
    let events = env.three_dolphins.wait_for_events(1).await;
    let outgoing = &events[0];
    assert_eq!(outgoing["ticketNumber"], ticket.as_str());
    assert_eq!(outgoing["messageType"], "file");
    assert_eq!(outgoing["message"], "your invoice");
    assert_eq!(
        outgoing["mediaLink"],
        "https://chatwoot.example.com/rails/active_storage/invoice.pdf"
    );
    assert_eq!(outgoing["owner"], EXAMPLE_OWNER);
}

#[tokio::test(flavor = "multi_thread")]
async fn resolving_the_conversation_closes_the_ticket() {
    let env = ChatwootEnv::start().await;
    let (ticket, conversation) = env.open_ticket().await;
    let webhook = env.chatwoot.conversation_resolved(conversation);
    env.webhook(&webhook).await;
    let events = env.three_dolphins.wait_for_events(1).await;
    env.bridge.wait_until_settled().await;
    assert_eq!(env.three_dolphins.event_posts().len(), 1);
    assert_eq!(
        events[0],
        json!({"ticketNumber": ticket, "channel": "whatsapp", "owner": EXAMPLE_OWNER, "event": "Close"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn private_notes_and_the_echo_of_our_own_messages_are_ignored() {
    let env = ChatwootEnv::start().await;
    let (_, conversation) = env.open_ticket().await;
    let note = env.chatwoot.private_note(conversation, "customer seems upset");
    env.webhook(&note).await;
    let echo = env.chatwoot.message_created_incoming(conversation, "Halo");
    env.webhook(&echo).await;
    let open = env.chatwoot.conversation_status_changed(conversation, "pending");
    env.webhook(&open).await;

    let stats = env.bridge.wait_until_settled().await;
    assert_eq!(
        stats["delivered"], 1,
        "only the Incoming event was ever queued: {stats}"
    );
    assert!(env.three_dolphins.event_posts().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chatwoot_tenant_and_the_echo_tenant_stay_apart() {
    let env = ChatwootEnv::start().await;
    let acme = Event::fresh();
    let globex = Event::fresh()
        .owner(GLOBEX)
        .with("channel", "telegram")
        .message("from globex");
    env.deliver(acme.clone()).await;
    env.deliver(globex.clone()).await;

    // Each event went to its own tenant's vendor only.
    let conversations = env.chatwoot.conversations();
    assert_eq!(conversations.len(), 1, "{conversations:#?}");
    assert_eq!(
        conversations[0].custom_attributes["ticket_number"],
        acme.ticket_number().as_str()
    );
    let echo_bodies = env.echo_vendor.bodies();
    assert_eq!(echo_bodies.len(), 1, "{echo_bodies:#?}");
    assert_eq!(echo_bodies[0]["ticketNumber"], globex.ticket_number().as_str());
    assert_eq!(echo_bodies[0]["tenant"], "globex");

    // Replies from each vendor carry their own tenant's owner.
    let reply = env
        .chatwoot
        .message_created_outgoing(conversations[0].id, "from acme's agent");
    env.webhook(&reply).await;
    let response = env
        .bridge
        .send_webhook(
            "globex",
            "/hook",
            &json!({"ticketNumber": globex.ticket_number(), "message": "from globex's agent"}),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.describe());
    let mut events = env.three_dolphins.wait_for_events(2).await;
    events.sort_by_key(|e| e["message"].as_str().unwrap_or_default().to_string());
    assert_eq!(events[0]["message"], "from acme's agent");
    assert_eq!(events[0]["owner"], EXAMPLE_OWNER);
    assert_eq!(events[0]["channel"], "whatsapp");
    assert_eq!(events[1]["message"], "from globex's agent");
    assert_eq!(events[1]["owner"], GLOBEX);
    assert_eq!(events[1]["channel"], "telegram");

    // A Chatwoot webhook about the other tenant's ticket, sent to the Chatwoot tenant, is not
    // turned into an event for it (the conversation is unknown).
    let foreign = env.chatwoot.message_created_outgoing(9999, "stray");
    env.webhook(&foreign).await;
    env.bridge.wait_until_settled().await;
    assert_eq!(env.three_dolphins.events().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chatwoot_5xx_is_retried_and_nothing_is_created_twice() {
    let env = ChatwootEnv::start().await;
    env.chatwoot.fail_next(1, 500);
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    let delivery = env.bridge.wait_for_delivery(&id, "delivered").await;
    assert_eq!(delivery["attempts"], 2, "{delivery:#}");
    env.assert_created_once("Halo");
}

#[tokio::test(flavor = "multi_thread")]
async fn responses_lost_after_chatwoot_committed_are_retried_without_duplicates() {
    let env = ChatwootEnv::start().await;
    // Each create is done by Chatwoot but its answer is lost, once.
    env.chatwoot.fail_next_after_commit("POST", "/contacts", 1, 502);
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    env.bridge.wait_for_delivery(&id, "delivered").await;
    env.assert_created_once("Halo");

    let env = ChatwootEnv::start().await;
    env.chatwoot.fail_next_after_commit("POST", "/conversations", 1, 504);
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    env.bridge.wait_for_delivery(&id, "delivered").await;
    env.assert_created_once("Halo");

    let env = ChatwootEnv::start().await;
    env.chatwoot.fail_next_after_commit("POST", "/messages", 1, 503);
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    let delivery = env.bridge.wait_for_delivery(&id, "delivered").await;
    assert_eq!(delivery["attempts"], 2, "{delivery:#}");
    env.assert_created_once("Halo");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chatwoot_slower_than_the_http_timeout_is_retried_without_duplicates() {
    let env = ChatwootEnv::start_with(|t| t.http_timeout_ms(500)).await;
    // Far longer than any wait of the test: the delivery completes only if the bridge gives up.
    env.chatwoot.set_delay(Duration::from_secs(3600));
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    dolphin_bridge_tests::wait_until("the first call to reach Chatwoot", dolphin_bridge_tests::WAIT, || {
        !env.chatwoot.requests().is_empty()
    })
    .await;
    env.chatwoot.set_delay(Duration::ZERO);
    let delivery = env.bridge.wait_for_delivery(&id, "delivered").await;
    assert!(
        delivery["attempts"].as_u64().unwrap_or(0) >= 2,
        "the slow attempt was given up on: {delivery:#}"
    );
    env.assert_created_once("Halo");
}

#[tokio::test(flavor = "multi_thread")]
async fn chatwoot_refusing_the_token_is_a_dead_letter_naming_the_status() {
    let env = ChatwootEnv::start_with(|t| t.config("api_access_token", "wrong-token")).await;
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    let dead = env.bridge.wait_for_delivery(&id, "dead").await;
    assert_eq!(dead["attempts"], 1, "a 401 is not retried: {dead:#}");
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("401"), "{error}");
    assert!(env.chatwoot.contacts().is_empty());
    assert!(env.chatwoot.conversations().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn chatwoot_signed_webhooks_are_verified_and_replays_answered_as_the_first() {
    const SECRET: &str = "e2e-chatwoot-webhook-secret";
    let env = ChatwootEnv::start_with(|t| t.webhook(WebhookAuth::with_secret("chatwoot", SECRET))).await;
    let (ticket, conversation) = env.open_ticket().await;
    let payload = env.chatwoot.message_created_outgoing(conversation, "signed reply");
    let body = serde_json::to_vec(&payload).unwrap();
    let post = async |headers: Vec<(String, String)>| {
        let mut all: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        all.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        env.bridge
            .client()
            .send("POST", &env.bridge.webhook_url(TENANT, "/webhook"), &all, body.clone())
            .await
    };

    assert_refused(&post(Vec::new()).await, 401, "missing_signature", &[]);
    assert_refused(
        &post(signature_headers("not-the-secret", &body)).await,
        401,
        "invalid_signature",
        &[],
    );
    assert_refused(
        &post(signature_headers_at(SECRET, &body, unix_now() - 3_600)).await,
        401,
        "stale_timestamp",
        &[],
    );
    let signed = signature_headers(SECRET, &body);
    let accepted = post(signed.clone()).await;
    assert_eq!(accepted.status, 200, "{}", accepted.describe());
    // A replay is answered as the first was and stores nothing.
    let replayed = post(signed).await;
    assert_eq!(
        (replayed.status, &replayed.body),
        (accepted.status, &accepted.body),
        "{}",
        replayed.describe()
    );

    let events = env.three_dolphins.wait_for_events(1).await;
    env.bridge.wait_until_settled().await;
    assert_eq!(env.three_dolphins.events().len(), 1, "{events:#?}");
    assert_eq!(events[0]["ticketNumber"], ticket.as_str());
    assert_eq!(events[0]["message"], "signed reply");
}

/// The customer's phone as the example event's `accountId` makes it.
const EXAMPLE_PHONE: &str = "+628128778222";

#[tokio::test(flavor = "multi_thread")]
async fn a_customer_whose_identifier_is_part_of_other_identifiers_is_found_not_created_again() {
    let env = ChatwootEnv::start().await;
    let customer = env
        .chatwoot
        .add_contact(EXAMPLE_CUSTOMER, EXAMPLE_CONTACT_ID, Some(EXAMPLE_PHONE));
    // Newer contacts whose identifiers contain the customer's: a substring search fills its
    // 15-result page with them.
    for n in 0..16 {
        env.chatwoot
            .add_contact(&format!("Other {n}"), &format!("{EXAMPLE_CONTACT_ID}-{n}"), None);
    }
    let event = Event::fresh();
    let ticket = event.ticket_number();
    env.deliver(event).await;

    assert_eq!(env.chatwoot.contacts().len(), 17, "no contact was created");
    assert_eq!(env.conversation_of(&ticket).contact_id, customer);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_inbox_is_a_dead_letter_naming_the_setting_and_tickets_are_not_merged() {
    let env = ChatwootEnv::start().await;
    env.chatwoot.set_lock_to_single_conversation(true);
    let (first_ticket, conversation) = env.open_ticket().await;

    let second = Event::fresh().message("a second ticket");
    let id = assert_accepted(&env.bridge.send_event(second).await);
    let dead = env.bridge.wait_for_delivery(&id, "dead").await;
    assert_eq!(dead["attempts"], 1, "not retried: {dead:#}");
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("lock_to_single_conversation"), "{error}");
    assert_eq!(
        env.customer_messages(conversation),
        ["Halo"],
        "nothing posted into the first ticket"
    );

    // The first ticket keeps its conversation: an agent's reply there goes to it.
    let reply = env
        .chatwoot
        .message_created_outgoing(conversation, "for the first ticket");
    env.webhook(&reply).await;
    let events = env.three_dolphins.wait_for_events(1).await;
    assert_eq!(events[0]["ticketNumber"], first_ticket.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_reaches_chatwoot_behind_an_nginx_that_drops_underscored_headers() {
    let env = ChatwootEnv::start().await;
    env.chatwoot.set_underscores_in_headers(false);
    env.deliver(Event::fresh()).await;
    env.assert_created_once("Halo");
    let requests = env.chatwoot.requests();
    let has = |r: &Recorded, name: &str| r.headers.iter().any(|(n, _)| n == name);
    assert!(requests.iter().all(|r| has(r, "api-access-token")), "{requests:#?}");
    assert!(!requests.iter().any(|r| has(r, "api_access_token")), "{requests:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_status_change_of_another_accounts_conversation_with_the_same_id_is_ignored() {
    let env = ChatwootEnv::start().await;
    let (ticket, conversation) = env.open_ticket().await;
    let stranger = env
        .chatwoot
        .conversation_status_changed_in_other_account(conversation, "resolved");
    let answer = env.webhook(&stranger).await;
    assert_eq!(answer["status"], "ignored", "{answer}");
    env.bridge.wait_until_settled().await;
    assert!(
        env.three_dolphins.events().is_empty(),
        "{:#?}",
        env.three_dolphins.events()
    );

    // Our own conversation's resolve still closes the ticket.
    let resolved = env.chatwoot.conversation_resolved(conversation);
    env.webhook(&resolved).await;
    let events = env.three_dolphins.wait_for_events(1).await;
    assert_eq!(events[0]["ticketNumber"], ticket.as_str());
    assert_eq!(events[0]["event"], "Close");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_inbox_is_a_permanent_error_naming_the_inbox() {
    let env = ChatwootEnv::start().await;
    env.open_ticket().await;
    env.chatwoot.delete_inbox();
    let id = assert_accepted(&env.bridge.send_event(Event::fresh()).await);
    let dead = env.bridge.wait_for_delivery(&id, "dead").await;
    assert_eq!(dead["attempts"], 1, "not retried: {dead:#}");
    let error = dead["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("inbox") && error.contains("inbox_id"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tickets_conversation_behind_twenty_newer_ones_is_found() {
    let env = ChatwootEnv::start().await;
    env.chatwoot.define_conversation_attribute("ticket_number");
    let contact = env
        .chatwoot
        .add_contact(EXAMPLE_CUSTOMER, EXAMPLE_CONTACT_ID, Some(EXAMPLE_PHONE));
    let ticket = fresh_ticket();
    let existing = env.chatwoot.add_conversation(contact, &ticket);
    for _ in 0..20 {
        env.chatwoot.add_conversation(contact, &fresh_ticket());
    }
    env.deliver(Event::example().ticket(&ticket).message("still me")).await;

    assert_eq!(env.chatwoot.conversations().len(), 21, "no conversation was created");
    assert_eq!(env.customer_messages(existing), ["still me"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_message_response_behind_twenty_agent_replies_is_not_posted_twice() {
    let env = ChatwootEnv::start().await;
    let (ticket, conversation) = env.open_ticket().await;
    env.chatwoot.lose_next_message_response_then_agent_replies(503, 25);
    let id = assert_accepted(
        &env.bridge
            .send_event(Event::example().ticket(&ticket).message("again"))
            .await,
    );
    let delivery = env.bridge.wait_for_delivery(&id, "delivered").await;
    assert_eq!(delivery["attempts"], 2, "{delivery:#}");
    assert_eq!(env.customer_messages(conversation), ["Halo", "again"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn template_messages_are_forwarded_as_outgoing_unless_turned_off() {
    let env = ChatwootEnv::start().await;
    let (ticket, conversation) = env.open_ticket().await;
    let greeting = env
        .chatwoot
        .message_created_template(conversation, "We are away; we reply within a day.");
    let answer = env.webhook(&greeting).await;
    assert_eq!(answer["events"], 1, "{answer}");
    let events = env.three_dolphins.wait_for_events(1).await;
    assert_eq!(events[0]["ticketNumber"], ticket.as_str());
    assert_eq!(events[0]["messageType"], "text");
    assert_eq!(events[0]["message"], "We are away; we reply within a day.");

    let env = ChatwootEnv::start_with(|t| t.config("forward_template_messages", "false")).await;
    let (_, conversation) = env.open_ticket().await;
    let greeting = env.chatwoot.message_created_template(conversation, "Hello!");
    let answer = env.webhook(&greeting).await;
    assert_eq!(answer["status"], "ignored", "{answer}");
    env.bridge.wait_until_settled().await;
    assert!(env.three_dolphins.events().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_delivered_by_two_webhooks_is_forwarded_once() {
    const SECRET: &str = "e2e-chatwoot-webhook-secret";
    let env = ChatwootEnv::start_with(|t| t.webhook(WebhookAuth::with_secret("chatwoot", SECRET))).await;
    let (ticket, conversation) = env.open_ticket().await;
    let payload = env.chatwoot.message_created_outgoing(conversation, "only once");
    let body = serde_json::to_vec(&payload).unwrap();
    // The account webhook and the API inbox's webhook each send it, as separate deliveries.
    for (timestamp, delivery) in [(unix_now(), "account-webhook-1"), (unix_now() - 1, "inbox-webhook-1")] {
        let mut headers = signature_headers_at(SECRET, &body, timestamp);
        for (name, value) in &mut headers {
            if name.eq_ignore_ascii_case("x-chatwoot-delivery") {
                *value = delivery.to_owned();
            }
        }
        let mut all: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        all.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let response = env
            .bridge
            .client()
            .send("POST", &env.bridge.webhook_url(TENANT, "/webhook"), &all, body.clone())
            .await;
        assert_eq!(response.status, 200, "{}", response.describe());
    }
    env.three_dolphins.wait_for_events(1).await;
    env.bridge.wait_until_settled().await;
    let events = env.three_dolphins.events();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["ticketNumber"], ticket.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_chatwoot_sends_itself_after_messages_are_created_reach_3dolphins() {
    const SECRET: &str = "e2e-chatwoot-inbox-secret";
    let env = ChatwootEnv::start_with(|t| {
        t.webhook(WebhookAuth::with_secret("chatwoot", SECRET))
            .config("webhook_secret", SECRET)
    })
    .await;
    env.chatwoot
        .send_webhooks_to(&env.bridge.webhook_url(TENANT, "/chatwoot"), Some(SECRET));

    // The customer's message, created through the API, comes back as an `incoming` webhook.
    let (ticket, conversation) = env.open_ticket().await;
    let echo = env.chatwoot.wait_for_webhook_deliveries(1).await;
    assert_eq!(echo[0].event, "message_created");
    assert_eq!(echo[0].payload["message_type"], "incoming");
    assert_eq!(echo[0].status, 200, "{}", echo[0].response);
    assert!(echo[0].response.contains("ignored"), "{}", echo[0].response);

    // An agent's reply, a greeting template and the resolve, each sent by Chatwoot itself.
    env.chatwoot
        .message_created_outgoing(conversation, "Halo, ada yang bisa dibantu?");
    env.chatwoot.message_created_template(conversation, "Please rate us");
    env.chatwoot.agent_resolves(conversation);
    let sent = env.chatwoot.wait_for_webhook_deliveries(4).await;
    let kinds: Vec<(&str, &str)> = sent
        .iter()
        .map(|d| {
            (
                d.event.as_str(),
                d.payload["message_type"]
                    .as_str()
                    .unwrap_or(d.payload["status"].as_str().unwrap_or("")),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("message_created", "incoming"),
            ("message_created", "outgoing"),
            ("message_created", "template"),
            ("conversation_status_changed", "resolved"),
        ]
    );
    for delivery in &sent {
        assert_eq!(delivery.status, 200, "{}: {}", delivery.event, delivery.response);
    }
    let events = env.three_dolphins.wait_for_events(3).await;
    env.bridge.wait_until_settled().await;
    assert_eq!(env.three_dolphins.events().len(), 3);
    assert_eq!(events[0]["ticketNumber"], ticket.as_str());
    assert_eq!(events[0]["message"], "Halo, ada yang bisa dibantu?");
    assert_eq!(events[1]["message"], "Please rate us");
    assert_eq!(events[2]["event"], "Close");
}

/// A media host (where 3Dolphins keeps customers' files): answers each path with its fixed
/// reply (404 for others) and records every request.
struct MediaHost {
    server: MockServer,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl MediaHost {
    async fn start(files: &[(&str, Reply)]) -> MediaHost {
        let files: HashMap<String, Reply> = files
            .iter()
            .map(|(path, reply)| (path.to_string(), reply.clone()))
            .collect();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let server = MockServer::start(Arc::new(move |req: &Recorded| {
            recorded.lock().unwrap().push(req.clone());
            files
                .get(&req.path)
                .cloned()
                .unwrap_or_else(|| Reply::text(404, "no such file"))
        }))
        .await;
        MediaHost { server, requests }
    }

    /// `http://127.0.0.1:PORT`: the origin a tenant allows.
    fn base_url(&self) -> String {
        self.server.base_url()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url())
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// A PNG's bytes with what a multipart body must survive: CR LF, `--`, bytes that are not UTF-8.
fn receipt_png() -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\r\n--\r\n\r\n".to_vec();
    bytes.extend(0..=255u8);
    bytes
}

/// A file answered with `content_type`.
fn file_reply(content_type: &str, bytes: Vec<u8>) -> Reply {
    Reply {
        status: 200,
        headers: vec![("content-type".into(), content_type.into())],
        body: bytes,
        delay: Duration::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_on_an_allowed_media_host_arrives_in_chatwoot_as_an_attachment_with_its_bytes() {
    let media = MediaHost::start(&[("/files/receipt.png", file_reply("image/png", receipt_png()))]).await;
    let env = ChatwootEnv::start_with(|t| t.allow(&media.base_url())).await;
    let event = Event::image(&media.url("/files/receipt.png"), "my receipt");
    let ticket = event.ticket_number();
    let delivery_id = env.deliver(event).await;

    let messages = env.chatwoot.messages(env.conversation_of(&ticket).id);
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let message = &messages[0];
    assert_eq!(
        message.content.as_deref(),
        Some("my receipt"),
        "the caption, the file attached: {message:#?}"
    );
    assert_eq!((message.message_type.as_str(), message.private), ("incoming", false));
    assert_eq!(message.source_id.as_deref(), Some(delivery_id.as_str()));
    assert_eq!(message.content_attributes["bridge_tag"], TAG);
    assert_eq!(message.files.len(), 1, "{message:#?}");
    let file = &message.files[0];
    assert!(
        file.bytes == receipt_png(),
        "the bytes changed on the way: {:?}",
        file.bytes
    );
    assert_eq!(
        (file.filename.as_str(), file.content_type.as_str()),
        ("receipt.png", "image/png")
    );
    assert_eq!(message.attachments[0]["file_type"], "image");

    let fetched = media.requests();
    assert_eq!(fetched.len(), 1, "{fetched:#?}");
    assert_eq!(
        fetched[0].header("api-access-token"),
        None,
        "Chatwoot's token went to the media host"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_on_a_media_host_not_allowed_arrives_as_caption_and_link() {
    let media = MediaHost::start(&[("/files/receipt.png", file_reply("image/png", receipt_png()))]).await;
    let env = ChatwootEnv::start().await;
    let link = media.url("/files/receipt.png");
    let event = Event::image(&link, "my receipt");
    let ticket = event.ticket_number();
    env.deliver(event).await;

    let messages = env.chatwoot.messages(env.conversation_of(&ticket).id);
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0].content, Some(format!("my receipt\n{link}")));
    assert!(messages[0].files.is_empty(), "{messages:#?}");
    assert!(
        media.requests().is_empty(),
        "the host refused the origin before connecting"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_delivery_with_media_posts_the_message_and_its_file_once() {
    let media = MediaHost::start(&[("/files/receipt.png", file_reply("image/png", receipt_png()))]).await;
    let env = ChatwootEnv::start_with(|t| t.allow(&media.base_url())).await;
    // The message with its upload is stored, but the answer is lost.
    env.chatwoot.fail_next_after_commit("POST", "/messages", 1, 503);
    let event = Event::image(&media.url("/files/receipt.png"), "my receipt");
    let ticket = event.ticket_number();
    let id = assert_accepted(&env.bridge.send_event(event).await);
    let delivery = env.bridge.wait_for_delivery(&id, "delivered").await;
    assert_eq!(delivery["attempts"], 2, "{delivery:#}");

    let messages = env.chatwoot.messages(env.conversation_of(&ticket).id);
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0].files.len(), 1, "{messages:#?}");
    assert!(messages[0].files[0].bytes == receipt_png());
    assert_eq!(
        media.requests().len(),
        1,
        "the retry found its message before downloading the file again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn media_the_bridge_cannot_download_arrives_as_caption_and_link() {
    let media = MediaHost::start(&[("/files/big.jpg", file_reply("image/jpeg", vec![0xd8; 100 << 10]))]).await;
    // Chatwoot's answers in this test stay far below 64 KiB; the file does not.
    let env = ChatwootEnv::start_with(|t| t.allow(&media.base_url()).limit("http_response_bytes", 64 << 10)).await;
    let ticket = fresh_ticket();
    // Signed links carry credentials in the query: they must stay out of the log.
    let (missing, big) = (
        media.url("/files/missing.jpg?signature=media-link-secret"),
        media.url("/files/big.jpg?signature=media-link-secret"),
    );
    for link in [&missing, &big] {
        let id = assert_accepted(&env.bridge.send_event(Event::image(link, "photo").ticket(&ticket)).await);
        let delivery = env.bridge.wait_for_delivery(&id, "delivered").await;
        assert_eq!(delivery["attempts"], 1, "{delivery:#}");
    }
    let conversation = env.conversation_of(&ticket).id;
    assert_eq!(
        env.customer_messages(conversation),
        [format!("photo\n{missing}"), format!("photo\n{big}")]
    );
    assert!(env.chatwoot.messages(conversation).iter().all(|m| m.files.is_empty()));
    assert_eq!(media.requests().len(), 2, "both downloads were tried");
    let log = env.bridge.stderr();
    assert!(
        log.contains("chatwoot: media sent as a link") && log.contains("404") && log.contains("too large"),
        "why each link was sent is logged:\n{log}"
    );
    assert!(
        !log.contains("media-link-secret"),
        "a link's query reached the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_media_host_answering_5xx_is_retried_then_the_link_is_sent() {
    let media = MediaHost::start(&[("/files/receipt.png", Reply::text(503, "busy"))]).await;
    let env = ChatwootEnv::start_with(|t| t.allow(&media.base_url())).await;
    let link = media.url("/files/receipt.png");
    let event = Event::image(&link, "my receipt");
    let ticket = event.ticket_number();
    let id = assert_accepted(&env.bridge.send_event(event).await);
    let delivery = env.bridge.wait_for_delivery(&id, "delivered").await;
    assert_eq!(
        delivery["attempts"], 3,
        "two retries for the media host, then the link: {delivery:#}"
    );
    assert_eq!(media.requests().len(), 3, "{:#?}", media.requests());
    let messages = env.chatwoot.messages(env.conversation_of(&ticket).id);
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0].content, Some(format!("my receipt\n{link}")));
    assert!(messages[0].files.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_larger_than_one_host_call_may_pass_arrives_as_caption_and_link() {
    // Below the 16 MiB a download may take, above the 4 MiB one host call (the upload) may pass.
    let media = MediaHost::start(&[("/files/scan.png", file_reply("image/png", vec![0x42; 5 << 20]))]).await;
    let env = ChatwootEnv::start_with(|t| t.allow(&media.base_url())).await;
    let link = media.url("/files/scan.png");
    let event = Event::image(&link, "my scan");
    let ticket = event.ticket_number();
    let id = assert_accepted(&env.bridge.send_event(event).await);
    let delivery = env.bridge.wait_for_delivery(&id, "delivered").await;
    assert_eq!(delivery["attempts"], 1, "{delivery:#}");
    let messages = env.chatwoot.messages(env.conversation_of(&ticket).id);
    assert_eq!(messages.len(), 1, "{messages:#?}");
    assert_eq!(messages[0].content, Some(format!("my scan\n{link}")));
    assert!(messages[0].files.is_empty());
    assert_eq!(media.requests().len(), 1);
}
