//! `MockSunshine`: a stateful mock of the Zendesk Sunshine Conversations API v2, for end-to-end
//! tests of the `sunshine` adapter.
//!
//! Paths, bodies and error shapes follow the Sunshine Conversations OpenAPI spec
//! (`zendesk/sunshine-conversations-api-spec`, `openapi.yaml`): every answer is JSON, errors are
//! `{"errors": [{"code", "title"}]}` (`errorResponse`). It serves, under `/v2/apps/{appId}`:
//!
//! | call | answer |
//! | --- | --- |
//! | `GET /` (the app) | 200 `{"app": {"id", "settings": {"multiConvoEnabled"}}}` (`GetApp`) |
//! | `POST /users` | 201 `{"user"}` (`userResponse`); 409 `conflict` "User already exists" for a taken `externalId` |
//! | `GET /users/{userIdOrExternalId}` | 200 `{"user"}`; 404 `user_not_found` |
//! | `POST /conversations` | 201 `{"conversation"}`; a `personal` one needs exactly one participant (`userId` or `userExternalId`) that exists (else 400 `bad_request` / 404 `user_not_found`); `displayName` 1-100 characters; with `multiConvoEnabled` false (the default) a user already in a conversation is refused 400 `bad_request` |
//! | `GET /conversations?filter[userId]=` | 200 `{"conversations", "meta": {"hasMore", "afterCursor"}, "links": {"next"}}`, the user's conversations, oldest first, `page[size]` (default 25, 1-100) at a time after `page[after]`; no filter is 400 |
//! | `GET /conversations/{id}` | 200 `{"conversation"}` with `activeSwitchboardIntegration` (omitted when none; `GetConversation`, `conversationTruncated`); 404 `conversation_not_found` |
//! | `POST /conversations/{id}/passControl` | 200 `{}`: the named switchboard integration takes control (`PassControl`; see [`switchboard`]) |
//! | `POST /conversations/{id}/releaseControl` | 200 `{}`: no integration has control until the next activity (`ReleaseControl`) |
//! | `DELETE /conversations/{id}` | 200 `{}` (through [`delete_conversation`](MockSunshine::delete_conversation), which then sends `conversation:remove` to the subscribed target); the user's default conversation is 400 `bad_request`; 404 `conversation_not_found` |
//! | `POST /conversations/{id}/messages` | 201 `{"messages": [message]}` (`messagePostResponse`); `author.type: user` must name a participant; `text` at most 4096 characters; a deleted conversation is 404 `conversation_not_found`; one holding 30,000 messages 423 `locked` |
//! | `GET /conversations/{id}/messages` | 200 `{"messages", "meta": {"hasMore", "beforeCursor"}}`: the newest 100, oldest first (`listMessages`) |
//!
//! Every request needs HTTP Basic auth with the API key id and secret given to
//! [`MockSunshine::start`] (else 401 `unauthorized`); another app id is 404 `app_not_found`.
//!
//! It also plays Sunshine's webhook side: [`send_webhook`](MockSunshine::send_webhook) POSTs a v2
//! integration webhook `{"app": {"id"}, "webhook": {"id", "version": "v2"}, "events": [...]}` with
//! the shared secret in `X-API-Key`; the event builders ([`business_message`](MockSunshine::business_message),
//! [`user_message`](MockSunshine::user_message), [`switchboard_event`](MockSunshine::switchboard_event))
//! give events shaped like the spec's `conversationMessageEvent` and `switchboard*Event` examples.
//! [`resend_last_webhook`](MockSunshine::resend_last_webhook) sends the last request again, byte
//! for byte, as Sunshine's retry policy does after a non-2xx answer or 20 s without one.
//!
//! A user's message goes to the switchboard integration in control of its conversation; the agent
//! workspace makes a ticket of it only when it has control (module [`switchboard`]).
//!
//! The app's settings are Sunshine's defaults: `multiConvoEnabled` false until
//! [`enable_multi_convo`](MockSunshine::enable_multi_convo) (irreversible, like the setting).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use serde_json::{Value, json};

use crate::client::HttpClient;
use crate::mock_http::{MockServer, Recorded, Reply};

mod switchboard;
mod webhooks;

use switchboard::Switchboard;
pub use switchboard::{
    AGENT_WORKSPACE, AGENT_WORKSPACE_TYPE, BOT, BRIDGE, ControlChange, SwitchboardIntegration, Ticket,
};

/// The app id the mock serves.
pub const APP_ID: &str = "5ebee0975ac5304b664a12fa";
/// The id of the webhook the mock sends as (`webhook.id`).
pub const WEBHOOK_ID: &str = "5f4eaef81e3dcc117c7ba48a";
/// The size of a page of `GET .../messages` (fixed by Sunshine).
const MESSAGE_PAGE: usize = 100;
/// The default and the largest `page[size]` of the other lists (spec: `page.size`, default 25,
/// maximum 100).
const DEFAULT_PAGE_SIZE: usize = 25;
const MAX_PAGE_SIZE: usize = 100;
/// The most messages a conversation holds (spec "Conversation Size Limits": 30,000, then `423
/// Locked` on posting, `PostMessage` 423 example `locked`).
const MESSAGE_LIMIT: usize = 30_000;
/// The longest message `text` (spec: `textMessage.text`, `maxLength: 4096`).
const MAX_TEXT: usize = 4096;
/// The longest conversation `displayName` (spec: `displayName`, `minLength: 1`, `maxLength: 100`).
const MAX_DISPLAY_NAME: usize = 100;

/// A Sunshine user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub external_id: Option<String>,
    pub profile: Value,
    pub metadata: Value,
}

impl User {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "externalId": self.external_id,
            "profile": self.profile,
            "metadata": self.metadata,
            "signedUpAt": "2020-09-30T15:14:29.834Z",
            "authenticated": false,
            "identities": [],
        })
    }
}

/// A Sunshine conversation.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub id: String,
    /// `personal` or `sdkGroup`.
    pub kind: String,
    /// Participants' user ids.
    pub participants: Vec<String>,
    pub display_name: Option<String>,
    pub metadata: Value,
    /// Spec `conversation.isDefault`: "true for the first personal conversation created for the
    /// user, and false in all other cases"; the default one cannot be deleted (`DeleteConversation`
    /// answers 400).
    pub is_default: bool,
}

impl Conversation {
    /// Spec `conversation`; `activeSwitchboardIntegration` is omitted when none is active.
    fn json(&self, active: Option<Value>) -> Value {
        let mut json = json!({
            "id": self.id,
            "type": self.kind,
            "displayName": self.display_name,
            "metadata": self.metadata,
            "isDefault": self.is_default,
        });
        if let Some(active) = active {
            json["activeSwitchboardIntegration"] = active;
        }
        json
    }
}

/// A message of a conversation.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    /// `{"type": "user"|"business", "userId"?}`.
    pub author: Value,
    /// `{"type": "text"|"image"|"file"|..., ...}`.
    pub content: Value,
    pub metadata: Value,
}

impl Message {
    /// The author type: `user` or `business`.
    pub fn author_type(&self) -> &str {
        self.author["type"].as_str().unwrap_or("")
    }

    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "received": "2020-09-30T18:00:56.820Z",
            "author": self.author,
            "content": self.content,
            "metadata": self.metadata,
            "source": { "type": "api:conversations" },
        })
    }
}

/// A request to fail: the next `remaining` matching ones are answered `status`, before any
/// processing (`after_commit` false) or after it (true: a lost response).
#[derive(Debug, Clone)]
struct Failure {
    method: String,
    path_contains: String,
    remaining: u32,
    status: u16,
    after_commit: bool,
}

#[derive(Debug, Default)]
struct State {
    authorization: String,
    users: Vec<User>,
    conversations: Vec<Conversation>,
    messages: Vec<Message>,
    requests: Vec<Recorded>,
    failures: Vec<Failure>,
    /// Spec `appSettings.multiConvoEnabled`: whether users may be part of several conversations.
    /// Unset in a new app (false); enabling it is irreversible.
    multi_convo_enabled: bool,
    /// `http://127.0.0.1:PORT`, for the `links` of paginated answers.
    base_url: String,
    /// The subscribed webhook's target and shared secret (see [`MockSunshine::subscribe`]).
    webhook: Option<(String, String)>,
    /// The last webhook request sent: target, secret and body.
    last_webhook: Option<(String, String, Vec<u8>)>,
    /// The app's switchboard (`None`: deleted, see [`MockSunshine::delete_switchboard`]).
    switchboard: Option<Switchboard>,
    /// The user's messages each switchboard integration got: (integration, conversation, text).
    routed: Vec<(String, String, String)>,
    /// The agent workspace's tickets.
    tickets: Vec<Ticket>,
    /// Passes and releases of control.
    control_changes: Vec<ControlChange>,
}

/// A running mock Sunshine Conversations API (see the module docs).
pub struct MockSunshine {
    server: MockServer,
    state: Arc<Mutex<State>>,
    client: HttpClient,
}

/// Sunshine ids are 24 hex digits (Mongo ObjectIds); distinct prefixes per kind show mix-ups.
fn new_id(kind: u8) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{kind:02x}{:022x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn error(status: u16, code: &str, title: &str) -> Reply {
    Reply::json(status, &json!({ "errors": [{ "code": code, "title": title }] }))
}

impl MockSunshine {
    /// Starts on a free port; requests must authenticate with `key_id` / `key_secret`.
    pub async fn start(key_id: &str, key_secret: &str) -> MockSunshine {
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{key_id}:{key_secret}"));
        let state = Arc::new(Mutex::new(State {
            authorization: format!("Basic {credentials}"),
            switchboard: Some(Switchboard::zendesk()),
            ..State::default()
        }));
        let handler_state = state.clone();
        let server = MockServer::start(Arc::new(move |request: &Recorded| {
            let mut state = handler_state.lock().expect("mock state lock");
            state.handle(request)
        }))
        .await;
        state.lock().expect("mock state lock").base_url = server.base_url();
        MockSunshine {
            server,
            state,
            client: HttpClient::new(),
        }
    }

    /// Turns the app's `multiConvoEnabled` setting on (spec `appSettings.multiConvoEnabled`:
    /// "Enabling `multiConvo` is **irreversible**", so there is no way back).
    pub fn enable_multi_convo(&self) {
        self.state().multi_convo_enabled = true;
    }

    /// Subscribes a webhook with this target and shared secret: deleting a conversation
    /// ([`delete_conversation`](MockSunshine::delete_conversation)) sends it `conversation:remove`.
    pub fn subscribe(&self, url: &str, secret: &str) {
        self.state().webhook = Some((url.into(), secret.into()));
    }

    /// Fills the conversation up with business messages until it holds `total` messages.
    pub fn fill_conversation(&self, conversation_id: &str, total: usize) {
        let mut state = self.state();
        let have = state
            .messages
            .iter()
            .filter(|m| m.conversation_id == conversation_id)
            .count();
        for _ in have..total {
            state.messages.push(Message {
                id: new_id(0x3e),
                conversation_id: conversation_id.into(),
                author: json!({ "type": "business" }),
                content: json!({ "type": "text", "text": "filler" }),
                metadata: Value::Null,
            });
        }
    }

    /// Adds a conversation of the user made outside the adapter (e.g. by the user on another
    /// channel), following the same rules as `POST /conversations`; returns its id.
    pub fn add_conversation(&self, user_id: &str, metadata: Value) -> String {
        let body = json!({ "type": "personal", "participants": [{ "userId": user_id }], "metadata": metadata });
        let reply = self.state().create_conversation(&body);
        assert_eq!(reply.status, 201, "add_conversation refused");
        let body: Value = serde_json::from_slice(&reply.body).expect("JSON answer");
        body["conversation"]["id"].as_str().expect("an id").to_owned()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("mock state lock")
    }

    /// `http://127.0.0.1:PORT`, the adapter's `base_url`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn users(&self) -> Vec<User> {
        self.state().users.clone()
    }

    pub fn conversations(&self) -> Vec<Conversation> {
        self.state().conversations.clone()
    }

    /// The messages of one conversation, oldest first.
    pub fn messages(&self, conversation_id: &str) -> Vec<Message> {
        let state = self.state();
        state
            .messages
            .iter()
            .filter(|m| m.conversation_id == conversation_id)
            .cloned()
            .collect()
    }

    /// Adds a user made outside the adapter (e.g. by another integration); returns its id.
    pub fn add_user(&self, external_id: &str) -> String {
        let user = User {
            id: new_id(0x26),
            external_id: Some(external_id.into()),
            profile: json!({}),
            metadata: json!({}),
        };
        let id = user.id.clone();
        self.state().users.push(user);
        id
    }

    /// Every request received, refused and failed ones included.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// The next `n` requests with this method and a path containing `path_contains` are answered
    /// `status` without being processed.
    pub fn fail_next_matching(&self, method: &str, path_contains: &str, n: u32, status: u16) {
        self.add_failure(method, path_contains, n, status, false);
    }

    /// The next `n` matching requests are processed, then answered `status`: the caller does not
    /// know they succeeded (a lost response).
    pub fn fail_next_after_commit(&self, method: &str, path_contains: &str, n: u32, status: u16) {
        self.add_failure(method, path_contains, n, status, true);
    }

    fn add_failure(&self, method: &str, path_contains: &str, n: u32, status: u16, after_commit: bool) {
        self.state().failures.push(Failure {
            method: method.into(),
            path_contains: path_contains.into(),
            remaining: n,
            status,
            after_commit,
        });
    }
}

impl State {
    fn handle(&mut self, request: &Recorded) -> Reply {
        self.requests.push(request.clone());
        if request.header("authorization") != Some(self.authorization.as_str()) {
            return error(401, "unauthorized", "Authorization Required");
        }
        let failure = self
            .failures
            .iter_mut()
            .find(|f| f.remaining > 0 && f.method == request.method && request.path.contains(&f.path_contains));
        let failure = failure.map(|f| {
            f.remaining -= 1;
            (f.status, f.after_commit)
        });
        if let Some((status, false)) = failure {
            return error(status, "service_unavailable", "Injected failure");
        }
        let reply = self.route(request);
        match failure {
            Some((status, true)) => error(status, "service_unavailable", "Injected failure after commit"),
            _ => reply,
        }
    }

    fn route(&mut self, request: &Recorded) -> Reply {
        let Some(rest) = request.path.strip_prefix("/v2/apps/") else {
            return error(404, "not_found", "Resource not found");
        };
        let mut parts: Vec<&str> = rest.split('/').collect();
        if parts.first() != Some(&APP_ID) {
            return error(404, "app_not_found", "App not found");
        }
        parts.remove(0);
        let body = if request.body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice::<Value>(&request.body) {
                Ok(body) => body,
                Err(_) => return error(400, "bad_request", "Invalid JSON body"),
            }
        };
        match (request.method.as_str(), parts.as_slice()) {
            // `GetApp`: `appResponseWithSubdomain`, `app.settings` (`appSettings`) with
            // `multiConvoEnabled`.
            ("GET", []) => Reply::json(
                200,
                &json!({ "app": {
                    "id": APP_ID,
                    "displayName": "My App",
                    "settings": { "multiConvoEnabled": self.multi_convo_enabled, "maskCreditCardNumbers": true },
                    "metadata": null,
                } }),
            ),
            ("POST", ["users"]) => self.create_user(&body),
            ("GET", ["users", id]) => match self.user(id) {
                Some(user) => Reply::json(200, &json!({ "user": user.json() })),
                None => error(404, "user_not_found", "User not found"),
            },
            ("POST", ["conversations"]) => self.create_conversation(&body),
            ("GET", ["conversations"]) => self.list_conversations(request),
            // `GetConversation`: `conversationResponse`, with `activeSwitchboardIntegration`.
            ("GET", ["conversations", id]) => match self.conversations.iter().find(|c| c.id == *id) {
                Some(conversation) => Reply::json(
                    200,
                    &json!({ "conversation": conversation.json(self.active_switchboard_json(id)) }),
                ),
                None => error(404, "conversation_not_found", "Conversation not found"),
            },
            ("DELETE", ["conversations", id]) => self.delete_conversation(id),
            ("POST", ["conversations", id, "passControl"]) => self.pass_control(id, &body),
            ("POST", ["conversations", id, "releaseControl"]) => {
                let reason = body["metadata"]["reason"].as_str().map(str::to_owned);
                self.release_control(id, reason.as_deref())
            }
            ("POST", ["conversations", id, "messages"]) => self.post_message(id, &body),
            ("GET", ["conversations", id, "messages"]) => {
                if !self.conversations.iter().any(|c| c.id == *id) {
                    return error(404, "conversation_not_found", "Conversation not found");
                }
                let all: Vec<&Message> = self.messages.iter().filter(|m| m.conversation_id == *id).collect();
                let page = &all[all.len().saturating_sub(MESSAGE_PAGE)..];
                let mut meta = json!({ "hasMore": all.len() > MESSAGE_PAGE });
                if all.len() > MESSAGE_PAGE {
                    meta["beforeCursor"] = page[0].id.clone().into();
                }
                let messages: Vec<Value> = page.iter().map(|m| m.json()).collect();
                Reply::json(200, &json!({ "messages": messages, "meta": meta }))
            }
            _ => error(404, "not_found", "Resource not found"),
        }
    }

    /// `ListConversations`: the user's conversations, oldest first (an assumption: the spec does
    /// not give the order), paginated as the spec's "API Pagination and Records Limits" section
    /// and `page` / `meta` / `links` schemas say: `page[size]` records (default 25, 1-100) after
    /// the `page[after]` record id (24 characters), `meta.hasMore`, `meta.afterCursor` (the last
    /// record's id, only when there are more) and `links.next` (likewise); `page[after]` and
    /// `page[before]` together, or a bad size, is 400 "Invalid page query parameters".
    fn list_conversations(&self, request: &Recorded) -> Reply {
        let user_id = match request.query_param("filter[userId]") {
            Some(id) => id,
            None => match request
                .query_param("filter[userExternalId]")
                .and_then(|id| self.user(&id))
            {
                Some(user) => user.id.clone(),
                None => {
                    return error(
                        400,
                        "bad_request",
                        "filter[userId] or filter[userExternalId] is required",
                    );
                }
            },
        };
        let invalid = || error(400, "bad_request", "Invalid page query parameters");
        let size = match request.query_param("page[size]") {
            None => DEFAULT_PAGE_SIZE,
            Some(size) => match size.parse::<usize>() {
                Ok(size) if (1..=MAX_PAGE_SIZE).contains(&size) => size,
                _ => return invalid(),
            },
        };
        let after = request.query_param("page[after]");
        if after.is_some() && request.query_param("page[before]").is_some() {
            return invalid();
        }
        if after.as_ref().is_some_and(|a| a.len() != 24) {
            return invalid();
        }
        let mine: Vec<&Conversation> = self
            .conversations
            .iter()
            .filter(|c| c.participants.contains(&user_id))
            .collect();
        let start = match &after {
            // A cursor is a record id; records after it (an unknown id: from the start, an
            // assumption).
            Some(after) => mine.iter().position(|c| c.id == *after).map_or(0, |i| i + 1),
            None => 0,
        };
        let page: Vec<&Conversation> = mine.iter().skip(start).take(size).copied().collect();
        let has_more = start + page.len() < mine.len();
        let mut answer = json!({
            "conversations": page
                .iter()
                .map(|c| c.json(self.active_switchboard_json(&c.id)))
                .collect::<Vec<Value>>(),
            "meta": { "hasMore": has_more },
            "links": {},
        });
        if has_more {
            let last = page.last().map(|c| c.id.clone()).unwrap_or_default();
            answer["meta"]["afterCursor"] = last.clone().into();
            answer["links"]["next"] = format!(
                "{}/v2/apps/{APP_ID}/conversations?filter[userId]={user_id}&page[size]={size}&page[after]={last}",
                self.base_url
            )
            .into();
        }
        Reply::json(200, &answer)
    }

    /// `DeleteConversation`: 200 `{}` (spec example `emptyResponse`); "the default conversation
    /// cannot be deleted" (400 `bad_request`); an unknown one 404 `conversation_not_found`. Its
    /// messages go with it ("along with its messages and attachments").
    fn delete_conversation(&mut self, conversation_id: &str) -> Reply {
        let Some(conversation) = self.conversations.iter().find(|c| c.id == conversation_id) else {
            return error(404, "conversation_not_found", "Conversation not found");
        };
        if conversation.is_default {
            return error(
                400,
                "bad_request",
                &format!("Conversation {conversation_id} cannot be deleted because it is the default."),
            );
        }
        self.conversations.retain(|c| c.id != conversation_id);
        self.messages.retain(|m| m.conversation_id != conversation_id);
        self.switchboard_forget(conversation_id);
        Reply::json(200, &json!({}))
    }

    /// A user by id or externalId (`userIdOrExternalId`).
    fn user(&self, id: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.id == id || u.external_id.as_deref() == Some(id))
    }

    fn create_user(&mut self, body: &Value) -> Reply {
        let external_id = body["externalId"].as_str().map(str::to_owned);
        if let Some(external_id) = &external_id {
            if external_id.is_empty() {
                return error(400, "bad_request", "externalId must not be empty");
            }
            if self.users.iter().any(|u| u.external_id.as_ref() == Some(external_id)) {
                return error(409, "conflict", "User already exists");
            }
        }
        let user = User {
            id: new_id(0x26),
            external_id,
            profile: body.get("profile").cloned().unwrap_or_else(|| json!({})),
            metadata: body.get("metadata").cloned().unwrap_or_else(|| json!({})),
        };
        let answer = json!({ "user": user.json() });
        self.users.push(user);
        Reply::json(201, &answer)
    }

    fn create_conversation(&mut self, body: &Value) -> Reply {
        let kind = body["type"].as_str().unwrap_or("");
        if kind != "personal" && kind != "sdkGroup" {
            return error(400, "bad_request", "type must be personal or sdkGroup");
        }
        let participants = body["participants"].as_array().cloned().unwrap_or_default();
        if kind == "personal" && participants.len() != 1 {
            return error(
                400,
                "bad_request",
                "A personal conversation needs exactly one participant",
            );
        }
        if let Some(name) = body.get("displayName").filter(|n| !n.is_null()) {
            let length = name.as_str().map_or(0, |n| n.chars().count());
            if !(1..=MAX_DISPLAY_NAME).contains(&length) {
                return error(400, "bad_request", "displayName must be 1 to 100 characters");
            }
        }
        let mut user_ids = Vec::new();
        for participant in &participants {
            let id = participant["userId"]
                .as_str()
                .or_else(|| participant["userExternalId"].as_str())
                .unwrap_or("");
            match self.user(id) {
                Some(user) => user_ids.push(user.id.clone()),
                None => return error(404, "user_not_found", "User not found"),
            }
        }
        // Spec `appSettings.multiConvoEnabled` ("whether users are allowed to be part of several
        // conversations"): off, a user already in a conversation cannot join another. The status
        // and code are an assumption (the spec lists none for it; an SDK report, issue
        // zendesk/sunshine-conversations-ios#228, saw `400 bad request`).
        if !self.multi_convo_enabled
            && user_ids
                .iter()
                .any(|id| self.conversations.iter().any(|c| c.participants.contains(id)))
        {
            return error(
                400,
                "bad_request",
                "Users cannot be part of several conversations unless multiConvoEnabled is set",
            );
        }
        // Spec `conversation.isDefault`: the first personal conversation created for the user.
        let is_default = kind == "personal"
            && !self
                .conversations
                .iter()
                .any(|c| c.kind == "personal" && c.participants.contains(&user_ids[0]));
        let conversation = Conversation {
            id: new_id(0xc0),
            kind: kind.into(),
            participants: user_ids,
            display_name: body["displayName"].as_str().map(str::to_owned),
            metadata: body.get("metadata").cloned().unwrap_or_else(|| json!({})),
            is_default,
        };
        self.switchboard_begin(&conversation.id);
        let answer = json!({ "conversation": conversation.json(self.active_switchboard_json(&conversation.id)) });
        self.conversations.push(conversation);
        Reply::json(201, &answer)
    }

    fn post_message(&mut self, conversation_id: &str, body: &Value) -> Reply {
        let Some(conversation) = self.conversations.iter().find(|c| c.id == conversation_id) else {
            return error(404, "conversation_not_found", "Conversation not found");
        };
        let author = &body["author"];
        match author["type"].as_str() {
            Some("business") => {}
            Some("user") => {
                let user = author["userId"]
                    .as_str()
                    .or_else(|| author["userExternalId"].as_str())
                    .and_then(|id| self.user(id));
                match user {
                    Some(user) if conversation.participants.contains(&user.id) => {}
                    Some(_) => return error(403, "forbidden", "The user is not a participant of the conversation"),
                    None => return error(404, "user_not_found", "User not found"),
                }
            }
            _ => return error(400, "bad_request", "author.type must be user or business"),
        }
        if self
            .messages
            .iter()
            .filter(|m| m.conversation_id == conversation_id)
            .count()
            >= MESSAGE_LIMIT
        {
            return error(423, "locked", "Message limit of 30000 per conversation reached.");
        }
        let content = &body["content"];
        let valid = match content["type"].as_str() {
            // Spec `textMessage.text`: `maxLength: 4096`.
            Some("text") => content["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty() && t.chars().count() <= MAX_TEXT),
            Some("image") | Some("file") => content["mediaUrl"].as_str().is_some(),
            Some("location") => content["coordinates"]["lat"].is_number() && content["coordinates"]["long"].is_number(),
            _ => false,
        };
        if !valid {
            return error(400, "bad_request", "Invalid content");
        }
        let message = Message {
            id: new_id(0x3e),
            conversation_id: conversation_id.into(),
            author: author.clone(),
            content: content.clone(),
            metadata: body.get("metadata").cloned().unwrap_or(Value::Null),
        };
        let answer = json!({ "messages": [message.json()] });
        if message.author_type() == "user" {
            let text = message.content["text"].as_str().unwrap_or_default().to_owned();
            self.switchboard_route(conversation_id, &text);
        }
        self.messages.push(message);
        Reply::json(201, &answer)
    }
}
