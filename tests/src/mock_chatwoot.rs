//! `MockChatwoot`: a stateful mock of the Chatwoot Application API, for end-to-end tests of the
//! `chatwoot` adapter.
//!
//! It serves exactly the endpoints the adapter calls, under `/api/v1/accounts/{account_id}`
//! (account [`ACCOUNT_ID`], one API-channel inbox [`INBOX_ID`]), answering with payloads shaped
//! like Chatwoot's (`app/views/api/v1/...` jbuilder views, `app/models/*#webhook_data`):
//!
//! | call | answer |
//! | --- | --- |
//! | `GET /contacts/search?q=&page=` | `{"meta": {count, current_page}, "payload": [contact]}`: at most 15 a page, name, email, phone or identifier containing `q`, newest first (Chatwoot gives no order; an older exact match falls off page 1) |
//! | `POST /contacts/filter?page=` | `{"meta": {count, current_page}, "payload": [contact]}` for `{"payload": [{attribute_key, filter_operator: "equal_to", values}]}` on `identifier`, `email`, `phone_number` or `name`, compared case-insensitively (`LOWER(...)`), 15 a page |
//! | `POST /contacts` | `{"payload": {"contact": contact, "contact_inbox": {"inbox", "source_id"}}}`; 422 `{"message", "attributes"}` for a taken identifier or phone, or a phone not in E.164 |
//! | `POST /contacts/{id}/contact_inboxes` | `{"source_id", "inbox"}` |
//! | `GET /contacts/{id}/conversations` | `{"payload": [conversation]}`: the contact's 20 newest (by id, newest first), no paging |
//! | `POST /conversations` | conversation (`contact_id` + `inbox_id` [+ `source_id`], or a known `source_id`); with [`lock_to_single_conversation`](MockChatwoot::set_lock_to_single_conversation) the contact's existing conversation in the inbox instead |
//! | `POST /conversations/filter?page=` | `{"meta": {..}, "payload": [conversation]}` for a custom attribute the account defined ([`define_conversation_attribute`](MockChatwoot::define_conversation_attribute)), else 422 `{"message": "Invalid attribute key ..."}`; 25 a page |
//! | `GET /conversations/{id}` | conversation |
//! | `POST /conversations/{id}/toggle_status` | `{"meta": {}, "payload": {"success", "current_status", "conversation_id"}}` |
//! | `GET /conversations/{id}/messages?after=&before=` | `{"meta": {..}, "payload": [message]}`: the newest 20 (oldest first); `before=id` the 20 before it, `after=id` the 100 after it (MessageFinder) |
//! | `POST /conversations/{id}/messages` | message (an incoming message reopens a resolved conversation); `echo_id` is not stored (Chatwoot only echoes it to the sender's live connection). A JSON body or a `multipart/form-data` one, parsed as Rack does (the `boundary` parameter, quoted or not; `name[]` an array, `name[key]` a hash, text values as strings); each `attachments[]` file part (a `filename`, its `Content-Type`) is stored with the message ([`Message::files`]) with an attachment whose `file_type` is `FileTypeHelper`'s (`image`, `video`, `audio` for the few types it names, else `file`); a file part without a `Content-Type` is 422 as in Chatwoot. An `attachments` field that is not a file (e.g. JSON URLs) uploads nothing: the message is stored without attachments |
//! | `GET /inboxes/{id}` | the inbox, 404 once [`delete_inbox`](MockChatwoot::delete_inbox) is called |
//!
//! Every request must carry the access token given to [`MockChatwoot::start`] in the header
//! `api-access-token` or `api_access_token` (one Rack key; else 401 `{"error": "Invalid Access
//! Token"}`). [`set_underscores_in_headers`](MockChatwoot::set_underscores_in_headers)`(false)` puts
//! the mock behind an nginx with its default `underscores_in_headers off`, which drops header names
//! with an underscore, so that `api_access_token` never arrives. Another account
//! id is 401, unknown records 404 `{"error": "Resource could not be found"}`, and every call naming
//! the inbox 404s once it is deleted. Ids are distinct per kind (contacts from 101, conversations
//! from 1, messages from 1001) so a mixed-up id shows; conversation ids are display ids, which
//! Chatwoot numbers per account: [`conversation_status_changed_in_other_account`](MockChatwoot::conversation_status_changed_in_other_account)
//! gives another account's event with the same id.
//!
//! With [`send_webhooks_to`](MockChatwoot::send_webhooks_to)`(url, secret)` the mock POSTs webhooks
//! itself, in order, as the API inbox does: `message_created` for every incoming, outgoing and
//! template message (`webhook_sendable?`), `conversation_status_changed` for every status change,
//! signed with `X-Chatwoot-Signature` / `X-Chatwoot-Timestamp` / `X-Chatwoot-Delivery` when a
//! secret is given; [`webhook_deliveries`](MockChatwoot::webhook_deliveries) lists what was sent
//! and answered.
//!
//! ```ignore
//! let chatwoot = MockChatwoot::start("secret-token").await;
//! // tenant config: base_url = chatwoot.base_url(), account_id = "1", inbox_id = "1",
//! //                api_access_token = "secret-token"; allowed host: chatwoot.base_url()
//! let messages = chatwoot.wait_for_messages(1).await;
//! let conversation = chatwoot.conversations()[0].id;
//! let webhook = chatwoot.message_created_outgoing(conversation, "Halo, ada yang bisa dibantu?");
//! bridge.send_webhook("chatwoot", "/webhook", &webhook).await;
//! ```
//!
//! API:
//! - [`MockChatwoot::start`]`(token)` / [`MockChatwoot::start_on`]`(addr, token)`,
//!   [`base_url`](MockChatwoot::base_url), [`account_id`](MockChatwoot::account_id),
//!   [`inbox_id`](MockChatwoot::inbox_id).
//! - State: [`contacts`](MockChatwoot::contacts), [`conversations`](MockChatwoot::conversations),
//!   [`messages`](MockChatwoot::messages)`(conversation_id)`,
//!   [`all_messages`](MockChatwoot::all_messages), [`wait_for_messages`](MockChatwoot::wait_for_messages)`(n)`;
//!   a message's uploads are its [`files`](Message::files) ([`UploadedFile`]: name, content type, bytes).
//! - Requests: [`requests`](MockChatwoot::requests) (every one, refused and failed included),
//!   [`requests_to`](MockChatwoot::requests_to)`(method, path_contains)`.
//! - Failures: [`fail_next`](MockChatwoot::fail_next)`(n, status)` (next `n` requests, before any
//!   processing), [`fail_next_matching`](MockChatwoot::fail_next_matching)`(method, path_contains,
//!   n, status)`, [`fail_next_after_commit`](MockChatwoot::fail_next_after_commit)`(method,
//!   path_contains, n, status)` (the request is processed, then answered with `status`: a lost
//!   response), [`set_delay`](MockChatwoot::set_delay)`(duration)` (every answer waits; the request
//!   is processed first, as a slow server that commits and then times out the caller),
//!   [`lose_next_message_response_then_agent_replies`](MockChatwoot::lose_next_message_response_then_agent_replies)`(status, replies)`
//!   (a message create is processed, agents add `replies` messages, the answer is lost).
//! - Chatwoot's settings and records made outside the API:
//!   [`set_lock_to_single_conversation`](MockChatwoot::set_lock_to_single_conversation),
//!   [`define_conversation_attribute`](MockChatwoot::define_conversation_attribute),
//!   [`delete_inbox`](MockChatwoot::delete_inbox), [`set_underscores_in_headers`](MockChatwoot::set_underscores_in_headers),
//!   [`add_contact`](MockChatwoot::add_contact), [`add_conversation`](MockChatwoot::add_conversation),
//!   [`delete_contact`](MockChatwoot::delete_contact), [`delete_conversation`](MockChatwoot::delete_conversation),
//!   [`agent_resolves`](MockChatwoot::agent_resolves).
//! - Webhooks the mock sends itself: [`send_webhooks_to`](MockChatwoot::send_webhooks_to),
//!   [`webhook_deliveries`](MockChatwoot::webhook_deliveries), [`wait_for_webhook_deliveries`](MockChatwoot::wait_for_webhook_deliveries).
//! - Webhook payloads (real-shaped, as Chatwoot POSTs them; the message is also stored):
//!   [`message_created_outgoing`](MockChatwoot::message_created_outgoing)`(conversation_id, content)`,
//!   [`message_created_with_attachment`](MockChatwoot::message_created_with_attachment)`(conversation_id, content, file_type, data_url)`,
//!   [`message_created_with_attachments`](MockChatwoot::message_created_with_attachments),
//!   [`message_created_incoming`](MockChatwoot::message_created_incoming),
//!   [`private_note`](MockChatwoot::private_note)`(conversation_id, content)`,
//!   [`message_created_template`](MockChatwoot::message_created_template)`(conversation_id, content)`,
//!   [`conversation_resolved`](MockChatwoot::conversation_resolved)`(conversation_id)`,
//!   [`conversation_status_changed`](MockChatwoot::conversation_status_changed)`(conversation_id, status)`,
//!   [`conversation_status_changed_in_other_account`](MockChatwoot::conversation_status_changed_in_other_account)`(conversation_id, status)`;
//!   [`signature_headers`]`(secret, body)` signs a body as Chatwoot does.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};

use crate::mock_http::{MockServer, Recorded, Reply};
use crate::wait::{WAIT, wait_for};

/// The account the mock serves.
pub const ACCOUNT_ID: u64 = 1;
/// The mock's API-channel inbox.
pub const INBOX_ID: u64 = 1;
/// An account of the same installation that is not ours: its conversation display ids repeat ours.
pub const OTHER_ACCOUNT_ID: u64 = 2;
/// The other account's API inbox (inbox ids are global, unlike conversation display ids).
pub const OTHER_INBOX_ID: u64 = 2;
/// `ContactsController::RESULTS_PER_PAGE` (search and filter).
const CONTACTS_PER_PAGE: usize = 15;
/// How many conversations `GET /contacts/{id}/conversations` answers (newest first, no paging).
const CONTACT_CONVERSATIONS_LIMIT: usize = 20;
/// `MessageFinder`: the latest or `before` window, and the `after` window.
const MESSAGES_WINDOW: usize = 20;
const MESSAGES_AFTER_LIMIT: usize = 100;
/// Kaminari's default page size, used by the conversation filter.
const CONVERSATIONS_PER_PAGE: usize = 25;
const INBOX_NAME: &str = "3Dolphins";
const ACCOUNT_NAME: &str = "Acme Support";
const AGENT: (u64, &str, &str) = (1, "Agent Smith", "agent@acme.test");

/// A contact's link to an inbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactInbox {
    pub inbox_id: u64,
    pub source_id: String,
}

/// A contact as the mock stores it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Contact {
    pub id: u64,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone_number: Option<String>,
    pub identifier: Option<String>,
    pub additional_attributes: Value,
    pub custom_attributes: Value,
    pub contact_inboxes: Vec<ContactInbox>,
    pub created_at: i64,
}

/// A conversation as the mock stores it (`id` is Chatwoot's `display_id`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conversation {
    pub id: u64,
    pub uuid: String,
    pub account_id: u64,
    pub inbox_id: u64,
    pub contact_id: u64,
    /// The contact_inbox source id the conversation belongs to.
    pub source_id: String,
    /// `open`, `resolved`, `pending` or `snoozed`.
    pub status: String,
    pub additional_attributes: Value,
    pub custom_attributes: Value,
    pub created_at: i64,
}

/// A message as the mock stores it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub id: u64,
    pub conversation_id: u64,
    pub content: Option<String>,
    /// `incoming`, `outgoing`, `activity` or `template`.
    pub message_type: String,
    pub content_type: String,
    pub content_attributes: Value,
    pub private: bool,
    pub source_id: Option<String>,
    /// Attachment payloads (`push_event_data` shape).
    pub attachments: Vec<Value>,
    /// The files uploaded with the message (multipart `attachments[]`), in order; empty for
    /// messages made without an upload.
    pub files: Vec<UploadedFile>,
    pub created_at: i64,
}

/// A file uploaded with a message, as Rack hands it to Chatwoot (`ActionDispatch::Http::UploadedFile`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UploadedFile {
    /// The part's `filename` (without any directory, as Rack keeps it).
    pub filename: String,
    /// The part's `Content-Type`, as sent.
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl Message {
    fn type_number(&self) -> u64 {
        match self.message_type.as_str() {
            "incoming" => 0,
            "outgoing" => 1,
            "activity" => 2,
            _ => 3,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum When {
    /// Answer the failure without processing.
    Before,
    /// Process the request, then answer the failure.
    AfterCommit,
}

#[derive(Debug, Clone)]
struct Failure {
    method: Option<String>,
    path_contains: Option<String>,
    remaining: u32,
    status: u16,
    when: When,
    /// Agent messages added to the same conversation after the request is processed.
    agent_replies: usize,
}

impl Failure {
    fn matches(&self, req: &Recorded) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(&req.method))
            && self.path_contains.as_deref().is_none_or(|p| req.path.contains(p))
    }
}

struct State {
    token: String,
    /// The mock's own `http://127.0.0.1:PORT`, for the `data_url` of uploaded files.
    base_url: String,
    requests: Vec<Recorded>,
    contacts: Vec<Contact>,
    conversations: Vec<Conversation>,
    messages: Vec<Message>,
    next_contact: u64,
    next_conversation: u64,
    next_message: u64,
    next_source: u64,
    next_attachment: u64,
    failures: VecDeque<Failure>,
    delay: Duration,
    /// Whether header names with an underscore reach Chatwoot (nginx's `underscores_in_headers`).
    underscores_in_headers: bool,
    /// The inbox's `lock_to_single_conversation`.
    lock_to_single_conversation: bool,
    inbox_deleted: bool,
    /// Keys of the account's conversation custom attribute definitions.
    conversation_attributes: Vec<String>,
    /// Where webhooks go, in order, when [`MockChatwoot::send_webhooks_to`] was called.
    webhooks: Option<tokio::sync::mpsc::UnboundedSender<Value>>,
}

/// A webhook the mock sent and what the receiver answered.
#[derive(Debug, Clone)]
pub struct WebhookDelivery {
    /// The payload's `event`.
    pub event: String,
    pub payload: Value,
    /// The receiver's status; 0 when it could not be reached.
    pub status: u16,
    pub response: String,
}

/// A stateful mock Chatwoot on 127.0.0.1 (see the module docs).
pub struct MockChatwoot {
    server: MockServer,
    state: Arc<Mutex<State>>,
    deliveries: Arc<Mutex<Vec<WebhookDelivery>>>,
}

fn not_found() -> Reply {
    Reply::json(404, &json!({"error": "Resource could not be found"}))
}

fn invalid(message: &str, attribute: &str) -> Reply {
    Reply::json(422, &json!({"message": message, "attributes": [attribute]}))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `2024-05-01T10:00:00.000Z` for Unix seconds (how Rails renders a time in JSON).
pub fn iso8601(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn is_e164(phone: &str) -> bool {
    let Some(digits) = phone.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

fn str_field(body: &Value, name: &str) -> Option<String> {
    match body.get(name)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn id_field(body: &Value, name: &str) -> Option<u64> {
    match body.get(name)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn object_field(body: &Value, name: &str) -> Value {
    match body.get(name) {
        Some(v @ Value::Object(_)) => v.clone(),
        _ => json!({}),
    }
}

impl State {
    fn new(token: &str) -> State {
        State {
            token: token.to_owned(),
            base_url: String::new(),
            requests: Vec::new(),
            contacts: Vec::new(),
            conversations: Vec::new(),
            messages: Vec::new(),
            next_contact: 101,
            next_conversation: 1,
            next_message: 1001,
            next_source: 1,
            next_attachment: 1,
            failures: VecDeque::new(),
            delay: Duration::ZERO,
            underscores_in_headers: true,
            lock_to_single_conversation: false,
            inbox_deleted: false,
            conversation_attributes: Vec::new(),
            webhooks: None,
        }
    }

    fn new_source_id(&mut self) -> String {
        let n = self.next_source;
        self.next_source += 1;
        format!("5e0c1a2b-{:04x}-4000-8000-{n:012x}", n % 0xffff)
    }

    // ---- JSON shapes -------------------------------------------------------------------------

    fn inbox_json(&self) -> Value {
        json!({
            "id": INBOX_ID,
            "avatar_url": "",
            "channel_id": 1,
            "name": INBOX_NAME,
            "channel_type": "Channel::Api",
            "greeting_enabled": false,
            "greeting_message": null,
            "working_hours_enabled": false,
            "enable_email_collect": true,
            "csat_survey_enabled": false,
            "enable_auto_assignment": true,
            "webhook_url": "",
            "inbox_identifier": "mockInboxIdentifier",
            "allow_messages_after_resolved": true,
            "lock_to_single_conversation": self.lock_to_single_conversation,
        })
    }

    /// `api/v1/models/_contact.json.jbuilder` with contact_inboxes.
    fn contact_json(&self, c: &Contact) -> Value {
        json!({
            "additional_attributes": c.additional_attributes,
            "availability_status": "offline",
            "email": c.email,
            "id": c.id,
            "name": c.name,
            "phone_number": c.phone_number,
            "blocked": false,
            "identifier": c.identifier,
            "thumbnail": "",
            "custom_attributes": c.custom_attributes,
            "last_activity_at": null,
            "created_at": c.created_at,
            "contact_inboxes": c.contact_inboxes.iter().map(|ci| json!({
                "source_id": ci.source_id,
                "inbox": self.inbox_json(),
            })).collect::<Vec<_>>(),
        })
    }

    /// `Contact#push_event_data`.
    fn contact_push_json(&self, c: &Contact) -> Value {
        json!({
            "additional_attributes": c.additional_attributes,
            "custom_attributes": c.custom_attributes,
            "email": c.email,
            "id": c.id,
            "identifier": c.identifier,
            "name": c.name,
            "phone_number": c.phone_number,
            "thumbnail": "",
            "blocked": false,
            "type": "contact",
        })
    }

    fn agent_push_json() -> Value {
        json!({
            "id": AGENT.0,
            "name": AGENT.1,
            "available_name": AGENT.1,
            "avatar_url": "",
            "type": "user",
            "availability_status": "online",
            "thumbnail": "",
        })
    }

    /// `Message#push_event_data` (also the REST message shape).
    fn message_json(&self, m: &Message) -> Value {
        let conversation = self.conversation(m.conversation_id);
        let mut data = json!({
            "id": m.id,
            "content": m.content,
            "account_id": ACCOUNT_ID,
            "inbox_id": INBOX_ID,
            "conversation_id": m.conversation_id,
            "message_type": m.type_number(),
            "created_at": m.created_at,
            "updated_at": iso8601(m.created_at),
            "private": m.private,
            "status": "sent",
            "source_id": m.source_id,
            "content_type": m.content_type,
            "content_attributes": m.content_attributes,
            "sender_type": if m.message_type == "incoming" { "Contact" } else { "User" },
            "sender_id": if m.message_type == "incoming" {
                conversation.map(|c| c.contact_id).unwrap_or(0)
            } else {
                AGENT.0
            },
            "external_source_ids": {},
            "additional_attributes": {},
            "processed_message_content": m.content,
            "sentiment": {},
            "conversation": {
                "assignee_id": null,
                "unread_count": 0,
                "last_activity_at": m.created_at,
                "contact_inbox": {"source_id": conversation.map(|c| c.source_id.clone())},
            },
        });
        if !m.attachments.is_empty() {
            data["attachments"] = json!(m.attachments);
        }
        data["sender"] = if m.message_type == "incoming" {
            conversation
                .and_then(|c| self.contact(c.contact_id))
                .map(|c| self.contact_push_json(c))
                .unwrap_or(Value::Null)
        } else {
            Self::agent_push_json()
        };
        data
    }

    /// `api/v1/conversations/partials/_conversation.json.jbuilder`.
    fn conversation_json(&self, c: &Conversation) -> Value {
        let last = self.messages.iter().rev().find(|m| m.conversation_id == c.id);
        json!({
            "meta": {
                "sender": self.contact(c.contact_id).map(|ct| self.contact_json(ct)),
                "channel": "Channel::Api",
                "hmac_verified": false,
            },
            "id": c.id,
            "messages": last.map(|m| vec![self.message_json(m)]).unwrap_or_default(),
            "account_id": c.account_id,
            "uuid": c.uuid,
            "additional_attributes": c.additional_attributes,
            "agent_last_seen_at": 0,
            "assignee_last_seen_at": 0,
            "can_reply": true,
            "contact_last_seen_at": 0,
            "custom_attributes": c.custom_attributes,
            "inbox_id": c.inbox_id,
            "labels": [],
            "muted": false,
            "snoozed_until": null,
            "status": c.status,
            "created_at": c.created_at,
            "timestamp": last.map(|m| m.created_at).unwrap_or(c.created_at),
            "first_reply_created_at": 0,
            "unread_count": 0,
            "last_non_activity_message": last.map(|m| self.message_json(m)),
            "last_activity_at": last.map(|m| m.created_at).unwrap_or(c.created_at),
            "priority": null,
            "waiting_since": 0,
        })
    }

    /// `Conversation#webhook_data` (`Conversations::EventDataPresenter#push_data`).
    fn conversation_webhook_json(&self, c: &Conversation) -> Value {
        let last = self
            .messages
            .iter()
            .rev()
            .find(|m| m.conversation_id == c.id && !m.private && m.message_type != "activity");
        json!({
            "additional_attributes": c.additional_attributes,
            "can_reply": true,
            "channel": "Channel::Api",
            "contact_inbox": {
                "id": c.id,
                "contact_id": c.contact_id,
                "inbox_id": c.inbox_id,
                "source_id": c.source_id,
                "created_at": iso8601(c.created_at),
                "updated_at": iso8601(c.created_at),
                "hmac_verified": false,
                "pubsub_token": "mockPubsubToken",
            },
            "id": c.id,
            "inbox_id": c.inbox_id,
            "messages": last.map(|m| vec![self.message_json(m)]).unwrap_or_default(),
            "labels": [],
            "meta": {
                "sender": self.contact(c.contact_id).map(|ct| self.contact_push_json(ct)),
                "assignee": Self::agent_push_json(),
                "team": null,
                "hmac_verified": false,
            },
            "status": c.status,
            "custom_attributes": c.custom_attributes,
            "snoozed_until": null,
            "unread_count": 0,
            "first_reply_created_at": null,
            "priority": null,
            "waiting_since": 0,
            "agent_last_seen_at": 0,
            "contact_last_seen_at": 0,
            "last_activity_at": last.map(|m| m.created_at).unwrap_or(c.created_at),
            "timestamp": last.map(|m| m.created_at).unwrap_or(c.created_at),
            "created_at": c.created_at,
            "updated_at": c.created_at as f64,
        })
    }

    /// `Message#webhook_data` merged with `event: message_created`.
    fn message_webhook_json(&self, m: &Message) -> Value {
        let conversation = self.conversation(m.conversation_id);
        let sender = match m.message_type.as_str() {
            "incoming" => conversation
                .and_then(|c| self.contact(c.contact_id))
                .map(|c| json!({"id": c.id, "name": c.name, "avatar": "", "type": "contact"}))
                .unwrap_or(Value::Null),
            // Greetings, out-of-office and CSAT messages are Chatwoot's own: no sender.
            "template" => Value::Null,
            _ => json!({"id": AGENT.0, "name": AGENT.1, "email": AGENT.2, "type": "user"}),
        };
        let mut data = json!({
            "account": {"id": ACCOUNT_ID, "name": ACCOUNT_NAME},
            "additional_attributes": {},
            "content_attributes": m.content_attributes,
            "content_type": m.content_type,
            "content": m.content,
            "conversation": conversation.map(|c| self.conversation_webhook_json(c)),
            "created_at": iso8601(m.created_at),
            "id": m.id,
            "inbox": {"id": INBOX_ID, "name": INBOX_NAME},
            "message_type": m.message_type,
            "private": m.private,
            "sender": sender,
            "source_id": m.source_id,
            "event": "message_created",
        });
        if !m.attachments.is_empty() {
            data["attachments"] = json!(m.attachments);
        }
        data
    }

    // ---- lookups -----------------------------------------------------------------------------

    fn contact(&self, id: u64) -> Option<&Contact> {
        self.contacts.iter().find(|c| c.id == id)
    }

    fn conversation(&self, id: u64) -> Option<&Conversation> {
        self.conversations.iter().find(|c| c.id == id)
    }

    // ---- endpoints ---------------------------------------------------------------------------

    /// The access token as Rails sees it: `api-access-token` and `api_access_token` are the same
    /// Rack key, but the underscored name is dropped by a proxy with `underscores_in_headers off`.
    fn access_token<'r>(&self, req: &'r Recorded) -> Option<&'r str> {
        req.header("api-access-token").or_else(|| {
            self.underscores_in_headers
                .then(|| req.header("api_access_token"))
                .flatten()
        })
    }

    fn route(&mut self, req: &Recorded) -> Reply {
        if self.access_token(req) != Some(self.token.as_str()) {
            return Reply::json(401, &json!({"error": "Invalid Access Token"}));
        }
        let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        let ["api", "v1", "accounts", account, rest @ ..] = segments.as_slice() else {
            return not_found();
        };
        if account.parse::<u64>().ok() != Some(ACCOUNT_ID) {
            return Reply::json(401, &json!({"error": "You are not authorized to access this account"}));
        }
        let (body, files) = match request_params(req) {
            Ok(params) => params,
            Err(reply) => return reply,
        };
        let id = |s: &str| s.parse::<u64>().ok();
        match (req.method.as_str(), rest) {
            ("GET", ["contacts", "search"]) => self.search_contacts(req),
            ("POST", ["contacts", "filter"]) => self.filter_contacts(req, &body),
            ("POST", ["contacts"]) => self.create_contact(&body),
            ("POST", ["contacts", c, "contact_inboxes"]) => match id(c) {
                Some(c) => self.create_contact_inbox(c, &body),
                None => not_found(),
            },
            ("GET", ["contacts", c, "conversations"]) => match id(c) {
                Some(c) => self.contact_conversations(c),
                None => not_found(),
            },
            ("POST", ["conversations"]) => self.create_conversation(&body),
            ("POST", ["conversations", "filter"]) => self.filter_conversations(req, &body),
            ("GET", ["inboxes", i]) => match id(i) {
                Some(INBOX_ID) if !self.inbox_deleted => Reply::json(200, &self.inbox_json()),
                _ => not_found(),
            },
            ("GET", ["conversations", c]) => match id(c).and_then(|c| self.conversation(c)) {
                Some(c) => Reply::json(200, &self.conversation_json(c)),
                None => not_found(),
            },
            ("POST", ["conversations", c, "toggle_status"]) => match id(c) {
                Some(c) => self.toggle_status(c, &body),
                None => not_found(),
            },
            ("GET", ["conversations", c, "messages"]) => match id(c) {
                Some(c) => self.list_messages(c, req),
                None => not_found(),
            },
            ("POST", ["conversations", c, "messages"]) => match id(c) {
                Some(c) => self.create_message(c, &body, files),
                None => not_found(),
            },
            _ => not_found(),
        }
    }

    fn search_contacts(&self, req: &Recorded) -> Reply {
        let Some(q) = req.query_param("q").filter(|q| !q.trim().is_empty()) else {
            return Reply::json(422, &json!({"error": "Specify search string with parameter q"}));
        };
        let q = q.trim().to_lowercase();
        let hit = |field: &Option<String>| field.as_deref().is_some_and(|f| f.to_lowercase().contains(&q));
        // Chatwoot orders nothing; newest first makes an older exact match fall off page 1.
        let matching: Vec<&Contact> = self
            .contacts
            .iter()
            .rev()
            .filter(|c| {
                hit(&c.name) || hit(&c.email) || hit(&c.phone_number) || hit(&c.identifier) || c.id.to_string() == q
            })
            .collect();
        self.contacts_page(req, &matching)
    }

    /// One page (`?page=`, from 1) of contacts, 15 a page, as search and filter answer it.
    fn contacts_page(&self, req: &Recorded, contacts: &[&Contact]) -> Reply {
        let page = page_number(req);
        let found: Vec<Value> = contacts
            .iter()
            .skip((page - 1) * CONTACTS_PER_PAGE)
            .take(CONTACTS_PER_PAGE)
            .map(|c| self.contact_json(c))
            .collect();
        Reply::json(
            200,
            &json!({"meta": {"count": contacts.len(), "current_page": page}, "payload": found}),
        )
    }

    /// `Contacts::FilterService` for `equal_to` on standard text attributes: `LOWER(column) = value`.
    fn filter_contacts(&self, req: &Recorded, body: &Value) -> Reply {
        let Some(conditions) = body.get("payload").and_then(Value::as_array) else {
            return Reply::json(422, &json!({"message": "payload is missing"}));
        };
        let mut matching: Vec<&Contact> = self.contacts.iter().rev().collect();
        for condition in conditions {
            let key = condition.get("attribute_key").and_then(Value::as_str).unwrap_or("");
            let operator = condition.get("filter_operator").and_then(Value::as_str).unwrap_or("");
            let Some(value) = condition.pointer("/values/0").and_then(Value::as_str) else {
                return Reply::json(422, &json!({"message": format!("Invalid value - [{key}]")}));
            };
            if operator != "equal_to" {
                return Reply::json(
                    422,
                    &json!({"message": format!("Invalid operator. The allowed operators for {key} are [equal_to].")}),
                );
            }
            let field = |c: &Contact| -> Option<String> {
                match key {
                    "identifier" => c.identifier.clone(),
                    "email" => c.email.clone(),
                    "phone_number" => c.phone_number.clone(),
                    "name" => c.name.clone(),
                    _ => None,
                }
            };
            if !matches!(key, "identifier" | "email" | "phone_number" | "name") {
                return Reply::json(422, &json!({"message": format!("Invalid attribute key - [{key}]")}));
            }
            let value = value.to_lowercase();
            matching.retain(|c| field(c).is_some_and(|f| f.to_lowercase() == value));
        }
        self.contacts_page(req, &matching)
    }

    /// `Conversations::FilterService` for `equal_to` on a conversation custom attribute the
    /// account defined (text: compared lower-cased); 422 for an undefined key.
    fn filter_conversations(&self, req: &Recorded, body: &Value) -> Reply {
        let Some(conditions) = body.get("payload").and_then(Value::as_array) else {
            return Reply::json(422, &json!({"message": "payload is missing"}));
        };
        let mut matching: Vec<&Conversation> = self.conversations.iter().rev().collect();
        for condition in conditions {
            let key = condition.get("attribute_key").and_then(Value::as_str).unwrap_or("");
            let value = condition.pointer("/values/0").and_then(Value::as_str);
            let operator = condition.get("filter_operator").and_then(Value::as_str);
            if !self.conversation_attributes.iter().any(|k| k == key) {
                return Reply::json(422, &json!({"message": format!("Invalid attribute key - [{key}]")}));
            }
            let (Some(value), Some("equal_to")) = (value, operator) else {
                return Reply::json(422, &json!({"message": format!("Invalid value - [{key}]")}));
            };
            let value = value.to_lowercase();
            matching.retain(|c| {
                c.custom_attributes
                    .get(key)
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.to_lowercase() == value)
            });
        }
        let page = page_number(req);
        let payload: Vec<Value> = matching
            .iter()
            .skip((page - 1) * CONVERSATIONS_PER_PAGE)
            .take(CONVERSATIONS_PER_PAGE)
            .map(|c| self.conversation_json(c))
            .collect();
        Reply::json(200, &json!({"meta": {"all_count": matching.len()}, "payload": payload}))
    }

    fn create_contact(&mut self, body: &Value) -> Reply {
        let identifier = str_field(body, "identifier");
        let phone = str_field(body, "phone_number");
        let email = str_field(body, "email").map(|e| e.to_lowercase());
        if let Some(identifier) = &identifier
            && self.contacts.iter().any(|c| c.identifier.as_ref() == Some(identifier))
        {
            return invalid("Identifier has already been taken", "identifier");
        }
        if let Some(phone) = &phone {
            if !is_e164(phone) {
                return invalid("Phone number should be in e164 format", "phone_number");
            }
            if self.contacts.iter().any(|c| c.phone_number.as_ref() == Some(phone)) {
                return invalid("Phone number has already been taken", "phone_number");
            }
        }
        if let Some(email) = &email
            && self.contacts.iter().any(|c| c.email.as_ref() == Some(email))
        {
            return invalid("Email has already been taken", "email");
        }
        let inbox = id_field(body, "inbox_id");
        if inbox.is_some_and(|i| i != INBOX_ID || self.inbox_deleted) {
            return not_found();
        }
        let mut contact = Contact {
            id: self.next_contact,
            name: str_field(body, "name"),
            email,
            phone_number: phone,
            identifier,
            additional_attributes: object_field(body, "additional_attributes"),
            custom_attributes: object_field(body, "custom_attributes"),
            contact_inboxes: Vec::new(),
            created_at: now(),
        };
        self.next_contact += 1;
        let contact_inbox = if inbox.is_some() {
            let source_id = str_field(body, "source_id").unwrap_or_else(|| self.new_source_id());
            contact.contact_inboxes.push(ContactInbox {
                inbox_id: INBOX_ID,
                source_id: source_id.clone(),
            });
            json!({"inbox": self.inbox_json(), "source_id": source_id})
        } else {
            json!({"inbox": null, "source_id": null})
        };
        let payload = json!({"payload": {
            "contact": self.contact_json(&contact),
            "contact_inbox": contact_inbox,
        }});
        self.contacts.push(contact);
        Reply::json(200, &payload)
    }

    fn create_contact_inbox(&mut self, contact_id: u64, body: &Value) -> Reply {
        if self.contact(contact_id).is_none() || id_field(body, "inbox_id") != Some(INBOX_ID) || self.inbox_deleted {
            return not_found();
        }
        let source_id = str_field(body, "source_id").unwrap_or_else(|| self.new_source_id());
        let contact = self
            .contacts
            .iter_mut()
            .find(|c| c.id == contact_id)
            .expect("checked above");
        let source_id = match contact
            .contact_inboxes
            .iter()
            .find(|ci| ci.inbox_id == INBOX_ID && ci.source_id == source_id)
        {
            Some(existing) => existing.source_id.clone(),
            None => {
                contact.contact_inboxes.push(ContactInbox {
                    inbox_id: INBOX_ID,
                    source_id: source_id.clone(),
                });
                source_id
            }
        };
        Reply::json(200, &json!({"source_id": source_id, "inbox": self.inbox_json()}))
    }

    fn contact_conversations(&self, contact_id: u64) -> Reply {
        if self.contact(contact_id).is_none() {
            return not_found();
        }
        // `order(id: :desc).limit(20)`: older conversations are not reachable here.
        let payload: Vec<Value> = self
            .conversations
            .iter()
            .rev()
            .filter(|c| c.contact_id == contact_id)
            .take(CONTACT_CONVERSATIONS_LIMIT)
            .map(|c| self.conversation_json(c))
            .collect();
        Reply::json(200, &json!({"payload": payload}))
    }

    fn create_conversation(&mut self, body: &Value) -> Reply {
        let source_id = str_field(body, "source_id");
        let (contact_id, source_id) = match (id_field(body, "contact_id"), id_field(body, "inbox_id")) {
            (Some(contact_id), Some(inbox_id)) => {
                if inbox_id != INBOX_ID || self.inbox_deleted || self.contact(contact_id).is_none() {
                    return not_found();
                }
                // ContactInboxBuilder: reuse the contact's inbox link, else make one.
                let contact = self
                    .contacts
                    .iter()
                    .find(|c| c.id == contact_id)
                    .expect("checked above");
                let existing = contact
                    .contact_inboxes
                    .iter()
                    .find(|ci| source_id.as_ref().is_none_or(|s| *s == ci.source_id))
                    .map(|ci| ci.source_id.clone());
                let source_id = match existing {
                    Some(s) => s,
                    None => {
                        let s = source_id.clone().unwrap_or_else(|| self.new_source_id());
                        if self
                            .contacts
                            .iter()
                            .any(|c| c.contact_inboxes.iter().any(|ci| ci.source_id == s))
                        {
                            return Reply::json(422, &json!({"error": "source_id should be unique"}));
                        }
                        let contact = self
                            .contacts
                            .iter_mut()
                            .find(|c| c.id == contact_id)
                            .expect("checked above");
                        contact.contact_inboxes.push(ContactInbox {
                            inbox_id: INBOX_ID,
                            source_id: s.clone(),
                        });
                        s
                    }
                };
                (contact_id, source_id)
            }
            _ => {
                let Some(source_id) = source_id.filter(|_| !self.inbox_deleted) else {
                    return not_found();
                };
                match self
                    .contacts
                    .iter()
                    .find(|c| c.contact_inboxes.iter().any(|ci| ci.source_id == source_id))
                {
                    Some(c) => (c.id, source_id),
                    None => return not_found(),
                }
            }
        };
        // ConversationBuilder: a locked inbox answers the contact inbox's first conversation.
        if self.lock_to_single_conversation
            && let Some(existing) = self.conversations.iter().find(|c| c.source_id == source_id)
        {
            return Reply::json(200, &self.conversation_json(existing));
        }
        let id = self.next_conversation;
        self.next_conversation += 1;
        let status = match body.get("status").and_then(Value::as_str) {
            Some(s @ ("open" | "resolved" | "pending" | "snoozed")) => s.to_owned(),
            _ => "open".to_owned(),
        };
        let conversation = Conversation {
            id,
            uuid: format!("c0nv0000-0000-4000-8000-{id:012x}"),
            account_id: ACCOUNT_ID,
            inbox_id: INBOX_ID,
            contact_id,
            source_id,
            status,
            additional_attributes: object_field(body, "additional_attributes"),
            custom_attributes: object_field(body, "custom_attributes"),
            created_at: now(),
        };
        self.conversations.push(conversation);
        if let Some(message) = body.get("message").filter(|m| m.is_object()) {
            self.insert_message(id, message, "outgoing");
        }
        let conversation = self.conversation(id).expect("just inserted");
        Reply::json(200, &self.conversation_json(conversation))
    }

    fn toggle_status(&mut self, id: u64, body: &Value) -> Reply {
        let Some(conversation) = self.conversations.iter_mut().find(|c| c.id == id) else {
            return not_found();
        };
        let previous = conversation.status.clone();
        conversation.status = match body.get("status").and_then(Value::as_str) {
            Some(s) => s.to_owned(),
            None if conversation.status == "open" => "resolved".into(),
            None => "open".into(),
        };
        let conversation = conversation.clone();
        if previous != conversation.status {
            self.queue_status_webhook(id, &previous);
        }
        Reply::json(
            200,
            &json!({"meta": {}, "payload": {
                "success": true, "current_status": conversation.status, "conversation_id": id}}),
        )
    }

    /// `MessageFinder`: `after=id` the (at most 100) next ones, `before=id` the 20 before it,
    /// else the newest 20; always oldest first.
    fn list_messages(&self, conversation_id: u64, req: &Recorded) -> Reply {
        let Some(conversation) = self.conversation(conversation_id) else {
            return not_found();
        };
        let param = |name: &str| req.query_param(name).and_then(|v| v.parse::<u64>().ok());
        let messages: Vec<&Message> = self
            .messages
            .iter()
            .filter(|m| m.conversation_id == conversation_id)
            .collect();
        let window: Vec<&Message> = match (param("after"), param("before")) {
            (Some(after), _) => messages
                .into_iter()
                .filter(|m| m.id > after)
                .take(MESSAGES_AFTER_LIMIT)
                .collect(),
            (None, before) => {
                let older: Vec<&Message> = messages
                    .into_iter()
                    .filter(|m| before.is_none_or(|b| m.id < b))
                    .collect();
                let start = older.len().saturating_sub(MESSAGES_WINDOW);
                older[start..].to_vec()
            }
        };
        let payload: Vec<Value> = window.iter().map(|m| self.message_json(m)).collect();
        Reply::json(
            200,
            &json!({
                "meta": {
                    "labels": [],
                    "additional_attributes": conversation.additional_attributes,
                    "contact": self.contact(conversation.contact_id).map(|c| self.contact_push_json(c)),
                    "assignee": null,
                    "agent_last_seen_at": null,
                    "assignee_last_seen_at": null,
                },
                "payload": payload,
            }),
        )
    }

    /// `MessagesController#create`: `files` are the multipart `attachments[]` parts; an
    /// `attachments` param that is not a file (JSON URLs) uploads nothing.
    fn create_message(&mut self, conversation_id: u64, body: &Value, files: Vec<FilePart>) -> Reply {
        if self.conversation(conversation_id).is_none() {
            return not_found();
        }
        let message_type = body.get("message_type").and_then(Value::as_str).unwrap_or("outgoing");
        if !matches!(message_type, "incoming" | "outgoing") {
            return Reply::json(
                422,
                &json!({"error": format!("'{message_type}' is not a valid message_type")}),
            );
        }
        let mut uploads = Vec::with_capacity(files.len());
        for file in files {
            // `FileTypeHelper#file_type` calls `content_type.include?`: nil raises, and the
            // controller answers the error as 422.
            let Some(content_type) = file.content_type else {
                return Reply::json(422, &json!({"error": "undefined method `include?' for nil:NilClass"}));
            };
            uploads.push(UploadedFile {
                filename: file.filename,
                content_type,
                bytes: file.bytes,
            });
        }
        let message_id = self.next_message;
        let attachments = uploads
            .iter()
            .map(|file| self.upload_attachment_json(message_id, file))
            .collect();
        let id = self.insert_message_with_attachments(conversation_id, body, message_type, attachments, uploads);
        let message = self.messages.iter().find(|m| m.id == id).expect("just inserted");
        Reply::json(200, &self.message_json(message))
    }

    /// Stores a message; an incoming one reopens a resolved conversation (as Chatwoot does).
    fn insert_message(&mut self, conversation_id: u64, body: &Value, message_type: &str) -> u64 {
        self.insert_message_with_attachments(conversation_id, body, message_type, Vec::new(), Vec::new())
    }

    /// [`insert_message`](Self::insert_message) with attachment payloads (made for the id
    /// [`next_message`](Self::next_message) holds) and the uploaded files they describe.
    fn insert_message_with_attachments(
        &mut self,
        conversation_id: u64,
        body: &Value,
        message_type: &str,
        attachments: Vec<Value>,
        files: Vec<UploadedFile>,
    ) -> u64 {
        let id = self.next_message;
        self.next_message += 1;
        let message = Message {
            id,
            conversation_id,
            content: body.get("content").and_then(Value::as_str).map(str::to_owned),
            message_type: message_type.to_owned(),
            content_type: body
                .get("content_type")
                .and_then(Value::as_str)
                .unwrap_or("text")
                .to_owned(),
            content_attributes: object_field(body, "content_attributes"),
            private: bool_field(body, "private"),
            source_id: str_field(body, "source_id"),
            attachments,
            files,
            created_at: now(),
        };
        let mut reopened = false;
        if message_type == "incoming"
            && let Some(c) = self.conversations.iter_mut().find(|c| c.id == conversation_id)
            && c.status == "resolved"
        {
            c.status = "open".into();
            reopened = true;
        }
        let sendable = matches!(message_type, "incoming" | "outgoing" | "template");
        self.messages.push(message);
        // WebhookListener#message_created, only for `webhook_sendable?` messages.
        if sendable && let Some(m) = self.messages.last().cloned() {
            self.queue_webhook(self.message_webhook_json(&m));
        }
        if reopened {
            self.queue_status_webhook(conversation_id, "resolved");
        }
        id
    }

    /// Hands a payload to the webhook sender, when the mock sends webhooks.
    fn queue_webhook(&self, payload: Value) {
        if let Some(sender) = &self.webhooks {
            // The receiving task ends only with the mock; a send error means it is gone.
            let _ = sender.send(payload);
        }
    }

    /// `conversation_status_changed` for a conversation whose status just left `previous`.
    fn queue_status_webhook(&self, conversation_id: u64, previous: &str) {
        if self.webhooks.is_none() {
            return;
        }
        if let Some(c) = self.conversation(conversation_id) {
            let mut payload = self.conversation_webhook_json(c);
            payload["event"] = json!("conversation_status_changed");
            payload["changed_attributes"] = json!([
                {"status": {"previous_value": previous, "current_value": c.status}}
            ]);
            self.queue_webhook(payload);
        }
    }

    /// Adds `count` agent replies to the conversation of the message `reply` describes.
    fn add_agent_replies_after(&mut self, reply: &Reply, count: usize) {
        let created: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        let Some(conversation_id) = created.get("conversation_id").and_then(Value::as_u64) else {
            return;
        };
        for n in 1..=count {
            let body = json!({"content": format!("agent reply {n}"), "private": false});
            self.insert_message(conversation_id, &body, "outgoing");
        }
    }

    fn attachment_json(&mut self, message_id: u64, file_type: &str, data_url: &str) -> Value {
        let id = self.next_attachment;
        self.next_attachment += 1;
        if file_type == "location" {
            return json!({
                "id": id, "message_id": message_id, "file_type": "location",
                "account_id": ACCOUNT_ID, "coordinates_lat": -6.2, "coordinates_long": 106.816666,
                "fallback_title": "Jakarta", "data_url": data_url,
            });
        }
        let extension = data_url
            .rsplit('/')
            .next()
            .and_then(|name| name.rsplit_once('.'))
            .map(|(_, ext)| ext.to_owned());
        json!({
            "id": id,
            "message_id": message_id,
            "file_type": file_type,
            "account_id": ACCOUNT_ID,
            "extension": extension,
            "data_url": data_url,
            "thumb_url": if file_type == "image" { data_url } else { "" },
            "file_size": 48213,
            "width": if file_type == "image" { json!(640) } else { Value::Null },
            "height": if file_type == "image" { json!(480) } else { Value::Null },
        })
    }
}

impl State {
    /// The attachment of an uploaded file (`Attachment#push_event_data`), served from the
    /// mock's ActiveStorage path.
    fn upload_attachment_json(&mut self, message_id: u64, file: &UploadedFile) -> Value {
        let id = self.next_attachment;
        self.next_attachment += 1;
        let extension = file.filename.rsplit_once('.').map(|(_, ext)| ext.to_owned());
        let data_url = format!(
            "{}/rails/active_storage/blobs/redirect/blob{id}/{}",
            self.base_url,
            path_segment(&file.filename)
        );
        json!({
            "id": id,
            "message_id": message_id,
            "file_type": file_type(&file.content_type),
            "account_id": ACCOUNT_ID,
            "extension": extension,
            "data_url": data_url,
            "thumb_url": data_url,
            "file_size": file.bytes.len(),
            "width": null,
            "height": null,
        })
    }
}

/// `name` escaped for a URL path segment (unreserved characters kept).
fn path_segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// `FileTypeHelper#file_type`: only these exact content types are images and videos.
fn file_type(content_type: &str) -> &'static str {
    match content_type {
        "image/jpeg" | "image/png" | "image/gif" | "image/bmp" | "image/webp" => "image",
        "video/ogg" | "video/mp4" | "video/webm" | "video/quicktime" => "video",
        _ if content_type.contains("audio/") => "audio",
        _ => "file",
    }
}

/// A boolean param as ActiveRecord casts it: JSON `true`, or the text `true`, `1`, `t`, `on`
/// (multipart values are text).
fn bool_field(body: &Value, name: &str) -> bool {
    match body.get(name) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "t" | "on"),
        Some(Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    }
}

/// A file part of a multipart body, before Chatwoot looks at it.
struct FilePart {
    filename: String,
    content_type: Option<String>,
    bytes: Vec<u8>,
}

/// A request's params as Rails parses them: a JSON object (empty body: none), or a
/// `multipart/form-data` form (text fields as strings, `attachments[]` files apart); a body
/// Rails cannot parse is 400.
fn request_params(req: &Recorded) -> Result<(Value, Vec<FilePart>), Reply> {
    let content_type = req.header("content-type").unwrap_or("");
    if content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        let parts = multipart::parse(content_type, &req.body)
            .map_err(|e| Reply::json(400, &json!({"error": format!("invalid multipart body: {e}")})))?;
        return Ok(multipart::params(parts));
    }
    if req.body.is_empty() {
        return Ok((json!({}), Vec::new()));
    }
    serde_json::from_slice(&req.body)
        .map(|body| (body, Vec::new()))
        .map_err(|_| Reply::json(400, &json!({"error": "malformed JSON body"})))
}

/// `multipart/form-data` as Rack's parser reads it.
mod multipart {
    use super::FilePart;
    use serde_json::{Map, Value};

    /// One part: its `name`, `filename` and `Content-Type` when given, and its bytes.
    pub struct Part {
        pub name: String,
        pub filename: Option<String>,
        pub content_type: Option<String>,
        pub data: Vec<u8>,
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|window| window == needle)
    }

    /// The value of `key` in a header's `; key=value` parameters (quoted or not; `\"` kept as `"`).
    pub fn parameter(header: &str, key: &str) -> Option<String> {
        let mut rest = header.split_once(';')?.1;
        loop {
            let (name, after) = rest.split_once('=')?;
            let after = after.trim_start();
            let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next().map(|(_, escaped)| escaped)),
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        other => value.push(other),
                    }
                }
                let next = quoted[end..].split_once(';').map_or("", |(_, n)| n);
                (value, next)
            } else {
                let (value, next) = after.split_once(';').unwrap_or((after, ""));
                (value.trim().to_owned(), next)
            };
            if name.trim().eq_ignore_ascii_case(key) {
                return Some(value);
            }
            rest = next;
        }
    }

    /// The parts of `body`; an error for a missing boundary or an unterminated body.
    pub fn parse(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
        let boundary = parameter(content_type, "boundary")
            .filter(|b| !b.is_empty())
            .ok_or("no boundary in Content-Type")?;
        let delimiter = format!("--{boundary}").into_bytes();
        let next_delimiter = [b"\r\n".as_slice(), &delimiter].concat();
        // A preamble may precede the first delimiter.
        let first = if body.starts_with(&delimiter) {
            0
        } else {
            find(body, &next_delimiter).ok_or("no opening boundary")? + 2
        };
        let mut rest = &body[first + delimiter.len()..];
        let mut parts = Vec::new();
        loop {
            if rest.starts_with(b"--") {
                return Ok(parts);
            }
            rest = rest.strip_prefix(b"\r\n").ok_or("boundary not followed by CRLF")?;
            let (head, content) = match rest.strip_prefix(b"\r\n") {
                Some(content) => (&b""[..], content),
                None => {
                    let end = find(rest, b"\r\n\r\n").ok_or("part headers not terminated")?;
                    (&rest[..end], &rest[end + 4..])
                }
            };
            let end = find(content, &next_delimiter).ok_or("part not terminated by a boundary")?;
            let mut part = Part {
                name: String::new(),
                filename: None,
                content_type: None,
                data: content[..end].to_vec(),
            };
            for line in String::from_utf8_lossy(head).split("\r\n") {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-disposition" => {
                        part.name = parameter(value, "name").unwrap_or_default();
                        // Rack keeps the last path segment of a filename (old browsers sent paths).
                        part.filename = parameter(value, "filename")
                            .map(|f| f.rsplit(['/', '\\']).next().unwrap_or_default().to_owned());
                    }
                    "content-type" => part.content_type = Some(value.trim().to_owned()),
                    _ => {}
                }
            }
            parts.push(part);
            rest = &content[end + next_delimiter.len()..];
        }
    }

    /// Rails params of the parts: `a` a string, `a[]` an array, `a[b]` a hash; the files of
    /// `attachments[]` (a part with an empty filename is no file, as in Rack) come apart.
    pub fn params(parts: Vec<Part>) -> (Value, Vec<FilePart>) {
        let mut params = Map::new();
        let mut files = Vec::new();
        for part in parts {
            match part.filename {
                Some(filename) if part.name == "attachments[]" && !filename.is_empty() => files.push(FilePart {
                    filename,
                    content_type: part.content_type,
                    bytes: part.data,
                }),
                Some(_) => {}
                None => {
                    let value = Value::String(String::from_utf8_lossy(&part.data).into_owned());
                    if let Some(array) = part.name.strip_suffix("[]") {
                        let entry = params.entry(array).or_insert_with(|| Value::Array(Vec::new()));
                        if let Value::Array(items) = entry {
                            items.push(value);
                        }
                    } else if let Some((hash, key)) = part.name.strip_suffix(']').and_then(|n| n.split_once('[')) {
                        let entry = params.entry(hash).or_insert_with(|| Value::Object(Map::new()));
                        if let Value::Object(map) = entry {
                            map.insert(key.to_owned(), value);
                        }
                    } else {
                        params.insert(part.name, value);
                    }
                }
            }
        }
        (Value::Object(params), files)
    }
}

impl MockChatwoot {
    /// Starts on a free port of 127.0.0.1; requests must carry `api-access-token: {token}`.
    pub async fn start(token: &str) -> MockChatwoot {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), token)
            .await
            .expect("start the mock Chatwoot")
    }

    /// Starts on `addr` (port 0 picks a free one).
    pub async fn start_on(addr: SocketAddr, token: &str) -> std::io::Result<MockChatwoot> {
        let state = Arc::new(Mutex::new(State::new(token)));
        let handler_state = state.clone();
        let server = MockServer::start_on(
            addr,
            Arc::new(move |req: &Recorded| {
                let mut state = handler_state.lock().unwrap_or_else(|e| e.into_inner());
                state.requests.push(req.clone());
                let failure = state.failures.iter().position(|f| f.matches(req)).map(|i| {
                    let f = &mut state.failures[i];
                    f.remaining -= 1;
                    let (status, when, agent_replies) = (f.status, f.when, f.agent_replies);
                    if f.remaining == 0 {
                        state.failures.remove(i);
                    }
                    (status, when, agent_replies)
                });
                let reply = match failure {
                    Some((status, When::Before, _)) => Reply::json(status, &json!({"error": "mock Chatwoot failure"})),
                    Some((status, When::AfterCommit, agent_replies)) => {
                        let processed = state.route(req);
                        if agent_replies > 0 {
                            state.add_agent_replies_after(&processed, agent_replies);
                        }
                        Reply::json(status, &json!({"error": "mock Chatwoot failure after commit"}))
                    }
                    None => state.route(req),
                };
                reply.with_delay(state.delay)
            }),
        )
        .await?;
        state.lock().unwrap_or_else(|e| e.into_inner()).base_url = server.base_url();
        Ok(MockChatwoot {
            server,
            state,
            deliveries: Arc::new(Mutex::new(Vec::new())),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `http://127.0.0.1:PORT`: the adapter's `base_url` and the tenant's allowed host.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The account id the mock serves ([`ACCOUNT_ID`]).
    pub fn account_id(&self) -> u64 {
        ACCOUNT_ID
    }

    /// The API inbox id ([`INBOX_ID`]).
    pub fn inbox_id(&self) -> u64 {
        INBOX_ID
    }

    /// Every request received, in order (refused and failed ones included).
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// The requests with `method` whose path contains `path_contains`.
    pub fn requests_to(&self, method: &str, path_contains: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.contains(path_contains))
            .collect()
    }

    /// The contacts, in creation order.
    pub fn contacts(&self) -> Vec<Contact> {
        self.state().contacts.clone()
    }

    /// The conversations, in creation order.
    pub fn conversations(&self) -> Vec<Conversation> {
        self.state().conversations.clone()
    }

    /// The messages of one conversation, oldest first.
    pub fn messages(&self, conversation_id: u64) -> Vec<Message> {
        self.state()
            .messages
            .iter()
            .filter(|m| m.conversation_id == conversation_id)
            .cloned()
            .collect()
    }

    /// Every message of every conversation, in creation order.
    pub fn all_messages(&self) -> Vec<Message> {
        self.state().messages.clone()
    }

    /// Waits until at least `n` messages exist (all conversations); returns them all.
    pub async fn wait_for_messages(&self, n: usize) -> Vec<Message> {
        wait_for(&format!("{n} message(s) at the mock Chatwoot"), WAIT, || {
            let messages = self.all_messages();
            (messages.len() >= n).then_some(messages)
        })
        .await
    }

    /// The next `n` requests (any) are answered with `status` and not processed.
    pub fn fail_next(&self, n: u32, status: u16) {
        self.push_failure(None, None, n, status, When::Before);
    }

    /// The next `n` requests with `method` whose path contains `path_contains` are answered with
    /// `status` and not processed.
    pub fn fail_next_matching(&self, method: &str, path_contains: &str, n: u32, status: u16) {
        self.push_failure(Some(method), Some(path_contains), n, status, When::Before);
    }

    /// The next `n` matching requests are processed (records created) and then answered with
    /// `status`: a response lost after the commit.
    pub fn fail_next_after_commit(&self, method: &str, path_contains: &str, n: u32, status: u16) {
        self.push_failure(Some(method), Some(path_contains), n, status, When::AfterCommit);
    }

    /// The next message create is processed, then agents add `replies` messages to the same
    /// conversation, then the create is answered with `status`: the caller's retry finds its
    /// message behind more than one window of newer messages.
    pub fn lose_next_message_response_then_agent_replies(&self, status: u16, replies: usize) {
        self.state().failures.push_back(Failure {
            method: Some("POST".into()),
            path_contains: Some("/messages".into()),
            remaining: 1,
            status,
            when: When::AfterCommit,
            agent_replies: replies,
        });
    }

    fn push_failure(&self, method: Option<&str>, path: Option<&str>, n: u32, status: u16, when: When) {
        if n == 0 {
            return;
        }
        self.state().failures.push_back(Failure {
            method: method.map(str::to_owned),
            path_contains: path.map(str::to_owned),
            remaining: n,
            status,
            when,
            agent_replies: 0,
        });
    }

    /// Header names with an underscore reach Chatwoot (`true`, the default: Chatwoot's own server
    /// passes them) or are dropped as by an nginx in front with its default
    /// `underscores_in_headers off` (`false`).
    pub fn set_underscores_in_headers(&self, allowed: bool) {
        self.state().underscores_in_headers = allowed;
    }

    /// The inbox's `lock_to_single_conversation` setting.
    pub fn set_lock_to_single_conversation(&self, locked: bool) {
        self.state().lock_to_single_conversation = locked;
    }

    /// Defines a conversation custom attribute (type text) in the account, so that
    /// `POST /conversations/filter` accepts it.
    pub fn define_conversation_attribute(&self, key: &str) {
        self.state().conversation_attributes.push(key.to_owned());
    }

    /// Deletes the API inbox: every call naming it answers 404.
    pub fn delete_inbox(&self) {
        self.state().inbox_deleted = true;
    }

    /// A conversation of the contact in the inbox, with `custom_attributes.ticket_number`, as an
    /// earlier installation of the bridge made it. Returns its id.
    pub fn add_conversation(&self, contact_id: u64, ticket_number: &str) -> u64 {
        let mut state = self.state();
        let source_id = state
            .contact(contact_id)
            .and_then(|c| c.contact_inboxes.first())
            .map(|ci| ci.source_id.clone())
            .unwrap_or_else(|| panic!("contact {contact_id} is not in the mock's inbox"));
        let id = state.next_conversation;
        state.next_conversation += 1;
        let attributes = json!({"ticket_number": ticket_number});
        state.conversations.push(Conversation {
            id,
            uuid: format!("c0nv0000-0000-4000-8000-{id:012x}"),
            account_id: ACCOUNT_ID,
            inbox_id: INBOX_ID,
            contact_id,
            source_id,
            status: "open".into(),
            additional_attributes: attributes.clone(),
            custom_attributes: attributes,
            created_at: now(),
        });
        id
    }

    /// From now on, POSTs every webhook the API inbox would send to `url`, in order, signed
    /// with `secret` when given (see the module docs). Call it inside a Tokio runtime: the
    /// sender is a task of it.
    pub fn send_webhooks_to(&self, url: &str, secret: Option<&str>) {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Value>();
        let deliveries = self.deliveries.clone();
        let (url, secret) = (url.to_owned(), secret.map(str::to_owned));
        tokio::spawn(async move {
            let client = crate::client::HttpClient::new();
            while let Some(payload) = receiver.recv().await {
                let body = serde_json::to_vec(&payload).expect("JSON serializes");
                let mut headers = vec![
                    ("content-type".to_owned(), "application/json".to_owned()),
                    ("accept".to_owned(), "application/json".to_owned()),
                ];
                if let Some(secret) = &secret {
                    headers.extend(signature_headers(secret, &body));
                }
                let header_refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let (status, response) = match client.try_send("POST", &url, &header_refs, body).await {
                    Ok(r) => (r.status, r.text()),
                    Err(e) => (0, e),
                };
                let event = payload["event"].as_str().unwrap_or_default().to_owned();
                deliveries
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(WebhookDelivery {
                        event,
                        payload,
                        status,
                        response,
                    });
            }
        });
        self.state().webhooks = Some(sender);
    }

    /// The webhooks the mock sent so far, in order, with the answers.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        self.deliveries.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until at least `n` webhooks were sent and answered; returns them all.
    pub async fn wait_for_webhook_deliveries(&self, n: usize) -> Vec<WebhookDelivery> {
        wait_for(&format!("{n} webhook(s) sent by the mock Chatwoot"), WAIT, || {
            let sent = self.webhook_deliveries();
            (sent.len() >= n).then_some(sent)
        })
        .await
    }

    /// Every answer waits `delay` after the request is processed (zero: answer at once).
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// A contact as the mock would have made it (for tests that start from an existing contact).
    /// Returns its id.
    pub fn add_contact(&self, name: &str, identifier: &str, phone_number: Option<&str>) -> u64 {
        let mut state = self.state();
        let id = state.next_contact;
        state.next_contact += 1;
        let source_id = state.new_source_id();
        state.contacts.push(Contact {
            id,
            name: Some(name.to_owned()),
            email: None,
            phone_number: phone_number.map(str::to_owned),
            identifier: Some(identifier.to_owned()),
            additional_attributes: json!({}),
            custom_attributes: json!({}),
            contact_inboxes: vec![ContactInbox {
                inbox_id: INBOX_ID,
                source_id,
            }],
            created_at: now(),
        });
        id
    }

    /// Deletes a contact and its conversations and messages (as an agent could in Chatwoot).
    pub fn delete_contact(&self, contact_id: u64) {
        let mut state = self.state();
        state.contacts.retain(|c| c.id != contact_id);
        let gone: Vec<u64> = state
            .conversations
            .iter()
            .filter(|c| c.contact_id == contact_id)
            .map(|c| c.id)
            .collect();
        state.conversations.retain(|c| c.contact_id != contact_id);
        state.messages.retain(|m| !gone.contains(&m.conversation_id));
    }

    /// Deletes a conversation and its messages.
    pub fn delete_conversation(&self, conversation_id: u64) {
        let mut state = self.state();
        state.conversations.retain(|c| c.id != conversation_id);
        state.messages.retain(|m| m.conversation_id != conversation_id);
    }

    // ---- webhook payloads --------------------------------------------------------------------

    fn message_webhook(
        &self,
        conversation_id: u64,
        content: Option<&str>,
        message_type: &str,
        private: bool,
        attachments: &[(&str, &str)],
    ) -> Value {
        let mut state = self.state();
        let body = json!({"content": content, "private": private});
        let next_id = state.next_message;
        let attachments: Vec<Value> = attachments
            .iter()
            .map(|(file_type, url)| state.attachment_json(next_id, file_type, url))
            .collect();
        let id = state.insert_message_with_attachments(conversation_id, &body, message_type, attachments, Vec::new());
        let message = state
            .messages
            .iter()
            .find(|m| m.id == id)
            .expect("just inserted")
            .clone();
        state.message_webhook_json(&message)
    }

    /// `message_created` for an agent's public reply (`message_type: "outgoing"`).
    pub fn message_created_outgoing(&self, conversation_id: u64, content: &str) -> Value {
        self.message_webhook(conversation_id, Some(content), "outgoing", false, &[])
    }

    /// `message_created` for an agent's reply with one attachment; `file_type` is Chatwoot's
    /// (`image`, `audio`, `video`, `file`, `location`, ...), `data_url` the file's URL. An empty
    /// `content` is sent as `null`, as Chatwoot does for a bare attachment.
    pub fn message_created_with_attachment(
        &self,
        conversation_id: u64,
        content: &str,
        file_type: &str,
        data_url: &str,
    ) -> Value {
        self.message_created_with_attachments(conversation_id, content, &[(file_type, data_url)])
    }

    /// `message_created` for an agent's reply with several attachments (`(file_type, data_url)`).
    pub fn message_created_with_attachments(
        &self,
        conversation_id: u64,
        content: &str,
        attachments: &[(&str, &str)],
    ) -> Value {
        let content = (!content.is_empty()).then_some(content);
        self.message_webhook(conversation_id, content, "outgoing", false, attachments)
    }

    /// `message_created` for a customer message (`message_type: "incoming"`): what Chatwoot sends
    /// back for the messages the adapter itself posts.
    pub fn message_created_incoming(&self, conversation_id: u64, content: &str) -> Value {
        self.message_webhook(conversation_id, Some(content), "incoming", false, &[])
    }

    /// `message_created` for an agent's private note (`outgoing`, `private: true`).
    pub fn private_note(&self, conversation_id: u64, content: &str) -> Value {
        self.message_webhook(conversation_id, Some(content), "outgoing", true, &[])
    }

    /// `conversation_status_changed` to `resolved` (the conversation is marked resolved).
    pub fn conversation_resolved(&self, conversation_id: u64) -> Value {
        self.conversation_status_changed(conversation_id, "resolved")
    }

    /// `conversation_status_changed` to `status` (stored), with `changed_attributes`.
    pub fn conversation_status_changed(&self, conversation_id: u64, status: &str) -> Value {
        let mut state = self.state();
        let previous = match state.conversations.iter_mut().find(|c| c.id == conversation_id) {
            Some(c) => std::mem::replace(&mut c.status, status.to_owned()),
            None => "open".to_owned(),
        };
        let mut payload = match state.conversation(conversation_id) {
            Some(c) => state.conversation_webhook_json(c),
            None => json!({"id": conversation_id, "inbox_id": INBOX_ID, "status": status,
                "channel": "Channel::Api", "messages": [], "meta": {}}),
        };
        payload["event"] = json!("conversation_status_changed");
        payload["changed_attributes"] = json!([
            {"status": {"previous_value": previous, "current_value": status}}
        ]);
        if previous != status {
            state.queue_webhook(payload.clone());
        }
        payload
    }

    /// `conversation_status_changed` of another account's conversation with the same display id
    /// (Chatwoot numbers conversations per account), in that account's inbox [`OTHER_INBOX_ID`].
    /// Like every conversation event it has no `account` key. Nothing is stored.
    pub fn conversation_status_changed_in_other_account(&self, conversation_id: u64, status: &str) -> Value {
        let state = self.state();
        let stranger = Conversation {
            id: conversation_id,
            uuid: format!("07he4000-0000-4000-8000-{conversation_id:012x}"),
            account_id: OTHER_ACCOUNT_ID,
            inbox_id: OTHER_INBOX_ID,
            contact_id: 0,
            source_id: "b0a7c1d2-0000-4000-8000-000000000001".into(),
            status: status.to_owned(),
            additional_attributes: json!({}),
            custom_attributes: json!({}),
            created_at: now(),
        };
        let mut payload = state.conversation_webhook_json(&stranger);
        payload["event"] = json!("conversation_status_changed");
        payload["changed_attributes"] = json!([
            {"status": {"previous_value": "open", "current_value": status}}
        ]);
        payload
    }

    /// `message_created` for a template message Chatwoot itself sends in the conversation
    /// (greeting, out-of-office, CSAT: `message_type: "template"`, no sender).
    pub fn message_created_template(&self, conversation_id: u64, content: &str) -> Value {
        self.message_webhook(conversation_id, Some(content), "template", false, &[])
    }

    /// An agent resolves the conversation in Chatwoot's UI: the status changes (and, when the
    /// mock sends webhooks, `conversation_status_changed` is sent).
    pub fn agent_resolves(&self, conversation_id: u64) {
        let mut state = self.state();
        let Some(conversation) = state.conversations.iter_mut().find(|c| c.id == conversation_id) else {
            panic!("no conversation {conversation_id} at the mock Chatwoot");
        };
        let previous = std::mem::replace(&mut conversation.status, "resolved".into());
        if previous != "resolved" {
            state.queue_status_webhook(conversation_id, &previous);
        }
    }
}

/// The headers Chatwoot signs a webhook with: `X-Chatwoot-Signature: sha256={hex}` over
/// `"{timestamp}.{body}"` (HMAC-SHA256 under `secret`), `X-Chatwoot-Timestamp` (now) and
/// `X-Chatwoot-Delivery`.
pub fn signature_headers(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    signature_headers_at(secret, body, now())
}

/// [`signature_headers`] with a given Unix timestamp (e.g. a stale one).
pub fn signature_headers_at(secret: &str, body: &[u8], timestamp: i64) -> Vec<(String, String)> {
    let ts = timestamp.to_string();
    let mac = hmac_sha256(secret.as_bytes(), &[ts.as_bytes(), b".", body]);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        ("X-Chatwoot-Signature".into(), format!("sha256={hex}")),
        ("X-Chatwoot-Timestamp".into(), ts),
        (
            "X-Chatwoot-Delivery".into(),
            format!("mock-{timestamp}-{}", hex.get(..8).unwrap_or("")),
        ),
    ]
}

/// HMAC-SHA256 of the concatenated `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The `?page=` of a paged Chatwoot listing, from 1 (Chatwoot's default and floor).
fn page_number(req: &Recorded) -> usize {
    req.query_param("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::HttpClient;

    const TOKEN: &str = "test-token";

    #[test]
    fn dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_714_557_600), "2024-05-01T10:00:00.000Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00.000Z");
    }

    async fn call(mock: &MockChatwoot, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut state = mock.state();
        let req = Recorded {
            method: method.into(),
            path: path.split('?').next().unwrap_or("").into(),
            query: path.split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default(),
            headers: vec![("api-access-token".into(), TOKEN.into())],
            body: body.map(|b| b.to_string().into()).unwrap_or_default(),
            received_at: std::time::Instant::now(),
        };
        let reply = state.route(&req);
        (reply.status, serde_json::from_slice(&reply.body).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn contact_conversation_message_flow() {
        let mock = MockChatwoot::start(TOKEN).await;
        let base = "/api/v1/accounts/1";
        let (status, created) = call(
            &mock,
            "POST",
            &format!("{base}/contacts"),
            Some(json!({
                "inbox_id": 1, "name": "Farhan", "identifier": "c1", "phone_number": "+628128778222"
            })),
        )
        .await;
        assert_eq!(status, 200);
        let contact_id = created["payload"]["contact"]["id"].as_u64().unwrap();
        let source_id = created["payload"]["contact_inbox"]["source_id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(created["payload"]["contact"]["contact_inboxes"][0]["inbox"]["id"], 1);

        let (status, dup) = call(
            &mock,
            "POST",
            &format!("{base}/contacts"),
            Some(json!({
                "inbox_id": 1, "name": "Farhan", "identifier": "c1"
            })),
        )
        .await;
        assert_eq!((status, dup["attributes"][0].as_str()), (422, Some("identifier")));
        let (status, _) = call(
            &mock,
            "POST",
            &format!("{base}/contacts"),
            Some(json!({
                "name": "X", "phone_number": "0812"
            })),
        )
        .await;
        assert_eq!(status, 422);

        let (_, found) = call(&mock, "GET", &format!("{base}/contacts/search?q=c1"), None).await;
        assert_eq!(found["payload"][0]["id"], contact_id);

        let (status, conversation) = call(
            &mock,
            "POST",
            &format!("{base}/conversations"),
            Some(json!({
                "source_id": source_id, "inbox_id": 1, "contact_id": contact_id,
                "custom_attributes": {"ticket_number": "T1"}
            })),
        )
        .await;
        assert_eq!(status, 200);
        let conversation_id = conversation["id"].as_u64().unwrap();
        assert_eq!(mock.conversations()[0].source_id, source_id);

        let (_, list) = call(
            &mock,
            "GET",
            &format!("{base}/contacts/{contact_id}/conversations"),
            None,
        )
        .await;
        assert_eq!(list["payload"][0]["custom_attributes"]["ticket_number"], "T1");

        let path = format!("{base}/conversations/{conversation_id}/messages");
        let (status, message) = call(
            &mock,
            "POST",
            &path,
            Some(json!({
                "content": "Halo", "message_type": "incoming", "source_id": "d1", "echo_id": "d1"
            })),
        )
        .await;
        assert_eq!((status, message["message_type"].as_u64()), (200, Some(0)));
        let (_, messages) = call(&mock, "GET", &path, None).await;
        assert_eq!(messages["payload"][0]["source_id"], "d1");
        assert_eq!(mock.messages(conversation_id)[0].content.as_deref(), Some("Halo"));

        let (status, _) = call(
            &mock,
            "POST",
            &format!("{base}/conversations/999/messages"),
            Some(json!({"content": "x"})),
        )
        .await;
        assert_eq!(status, 404);
    }

    #[tokio::test]
    async fn webhook_payloads_are_shaped_like_chatwoots() {
        let mock = MockChatwoot::start(TOKEN).await;
        let contact = mock.add_contact("Farhan", "c1", None);
        let source_id = mock.contacts()[0].contact_inboxes[0].source_id.clone();
        let (_, conversation) = call(
            &mock,
            "POST",
            "/api/v1/accounts/1/conversations",
            Some(json!({
                "source_id": source_id, "inbox_id": 1, "contact_id": contact
            })),
        )
        .await;
        let id = conversation["id"].as_u64().unwrap();

        let reply = mock.message_created_outgoing(id, "Halo");
        assert_eq!(reply["event"], "message_created");
        assert_eq!(reply["message_type"], "outgoing");
        assert_eq!(reply["private"], false);
        assert_eq!(reply["conversation"]["id"], id);
        assert_eq!(reply["conversation"]["contact_inbox"]["source_id"], source_id.as_str());
        assert_eq!(reply["account"]["id"], 1);
        assert_eq!(reply["sender"]["type"], "user");

        let media = mock.message_created_with_attachment(id, "", "image", "https://cw.test/a.png");
        assert_eq!(media["content"], Value::Null);
        assert_eq!(media["attachments"][0]["file_type"], "image");
        assert_eq!(media["attachments"][0]["data_url"], "https://cw.test/a.png");
        assert_eq!(media["attachments"][0]["extension"], "png");

        assert_eq!(mock.private_note(id, "psst")["private"], true);
        assert_eq!(mock.message_created_incoming(id, "hi")["message_type"], "incoming");

        let resolved = mock.conversation_resolved(id);
        assert_eq!(resolved["event"], "conversation_status_changed");
        assert_eq!(resolved["status"], "resolved");
        assert_eq!(resolved["id"], id);
        assert_eq!(resolved["changed_attributes"][0]["status"]["current_value"], "resolved");
        assert_eq!(mock.conversations()[0].status, "resolved");
        assert_eq!(mock.messages(id).len(), 4);
    }

    #[tokio::test]
    async fn multipart_messages_are_parsed_as_rack_does_and_json_urls_upload_nothing() {
        let mock = MockChatwoot::start(TOKEN).await;
        let contact = mock.add_contact("Farhan", "c1", None);
        let conversation = mock.add_conversation(contact, "T1");
        let url = format!(
            "{}/api/v1/accounts/1/conversations/{conversation}/messages",
            mock.base_url()
        );
        let client = HttpClient::new();
        // Bytes that look like a delimiter without being one, and are not UTF-8.
        let image: Vec<u8> = [b"\x89PNG\r\n\x1a\n--b\r\n--".as_slice(), &[0xff, 0x00, 0xfe]].concat();
        let mut body = b"preamble\r\n--b\r\n".to_vec();
        for (name, value) in [
            ("content", "my receipt"),
            ("message_type", "incoming"),
            ("private", "false"),
            ("source_id", "d1"),
            ("content_attributes[bridge_tag]", "v2"),
        ] {
            body.extend(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n--b\r\n").bytes());
        }
        body.extend(
            b"Content-Disposition: form-data; name=\"attachments[]\"; filename=\"C:\\\\tmp\\\\receipt.png\"\r\n\
              Content-Type: image/png\r\n\r\n",
        );
        body.extend(&image);
        body.extend(b"\r\n--b--\r\n");
        let headers = [
            ("api-access-token", TOKEN),
            ("content-type", "multipart/form-data; boundary=\"b\""),
        ];
        let created = client.send("POST", &url, &headers, body).await;
        assert_eq!(created.status, 200, "{}", created.describe());
        assert_eq!(created.json()["attachments"][0]["file_type"], "image");
        let message = mock.messages(conversation).pop().unwrap();
        assert_eq!(
            (
                message.content.as_deref(),
                message.message_type.as_str(),
                message.private
            ),
            (Some("my receipt"), "incoming", false)
        );
        assert_eq!(message.source_id.as_deref(), Some("d1"));
        assert_eq!(message.content_attributes["bridge_tag"], "v2");
        assert_eq!(
            message.files,
            [UploadedFile {
                filename: "receipt.png".into(),
                content_type: "image/png".into(),
                bytes: image,
            }]
        );
        assert_eq!(message.attachments[0]["extension"], "png");

        // Chatwoot attaches uploads only: URLs in JSON are no files.
        let json_urls = json!({"content": "x", "message_type": "incoming",
            "attachments": ["https://cdn.example.com/receipt.png"]})
        .to_string();
        let headers = [("api-access-token", TOKEN), ("content-type", "application/json")];
        let created = client.send("POST", &url, &headers, json_urls).await;
        assert_eq!(created.status, 200, "{}", created.describe());
        let message = mock.messages(conversation).pop().unwrap();
        assert!(
            message.files.is_empty() && message.attachments.is_empty(),
            "{message:#?}"
        );

        // A file part without a Content-Type fails in FileTypeHelper; a body without its
        // boundary does not parse.
        let untyped = "--b\r\nContent-Disposition: form-data; name=\"attachments[]\"; filename=\"a\"\r\n\r\nx\r\n--b--";
        let headers = [
            ("api-access-token", TOKEN),
            ("content-type", "multipart/form-data; boundary=b"),
        ];
        assert_eq!(client.send("POST", &url, &headers, untyped).await.status, 422);
        let headers = [("api-access-token", TOKEN), ("content-type", "multipart/form-data")];
        assert_eq!(client.send("POST", &url, &headers, untyped).await.status, 400);
        assert_eq!(mock.messages(conversation).len(), 2);
    }

    #[tokio::test]
    async fn over_http_auth_failures_and_delay() {
        let mock = MockChatwoot::start(TOKEN).await;
        let client = HttpClient::new();
        let url = format!("{}/api/v1/accounts/1/contacts/search?q=x", mock.base_url());

        let denied = client.send("GET", &url, &[], "").await;
        assert_eq!(denied.status, 401);
        let underscored = client.send("GET", &url, &[("api_access_token", TOKEN)], "").await;
        assert_eq!(underscored.status, 200, "{}", underscored.describe());
        mock.set_underscores_in_headers(false);
        let dropped = client.send("GET", &url, &[("api_access_token", TOKEN)], "").await;
        assert_eq!(dropped.status, 401, "dropped as by nginx's underscores_in_headers off");

        let ok = client.send("GET", &url, &[("api-access-token", TOKEN)], "").await;
        assert_eq!(ok.status, 200, "{}", ok.describe());
        assert_eq!(ok.json()["payload"], json!([]));

        mock.fail_next(2, 503);
        assert_eq!(
            client
                .send("GET", &url, &[("api-access-token", TOKEN)], "")
                .await
                .status,
            503
        );
        assert_eq!(
            client
                .send("GET", &url, &[("api-access-token", TOKEN)], "")
                .await
                .status,
            503
        );
        assert_eq!(
            client
                .send("GET", &url, &[("api-access-token", TOKEN)], "")
                .await
                .status,
            200
        );

        let create = format!("{}/api/v1/accounts/1/contacts", mock.base_url());
        mock.fail_next_after_commit("POST", "/contacts", 1, 500);
        let body = json!({"identifier": "c9", "inbox_id": 1}).to_string();
        let lost = client.send("POST", &create, &[("api-access-token", TOKEN)], body).await;
        assert_eq!(lost.status, 500);
        assert_eq!(mock.contacts().len(), 1, "processed before the failure");

        mock.set_delay(Duration::from_millis(300));
        let started = std::time::Instant::now();
        client.send("GET", &url, &[("api-access-token", TOKEN)], "").await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(mock.requests_to("GET", "/contacts/search").len(), 8);
        assert_eq!(mock.requests().len(), 9);
    }
}
