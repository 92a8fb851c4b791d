//! `MockSunshine`: a stateful mock of the Zendesk Sunshine Conversations API v2, for end-to-end
//! tests of the `sunshine` adapter.
//!
//! Paths, bodies and error shapes follow the Sunshine Conversations OpenAPI spec
//! (`zendesk/sunshine-conversations-api-spec`, `openapi.yaml`): every answer is JSON, errors are
//! `{"errors": [{"code", "title"}]}` (`errorResponse`). It serves, under `/v2/apps/{appId}`:
//!
//! | call | answer |
//! | --- | --- |
//! | `POST /users` | 201 `{"user"}` (`userResponse`); 409 `conflict` "User already exists" for a taken `externalId` |
//! | `GET /users/{userIdOrExternalId}` | 200 `{"user"}`; 404 `user_not_found` |
//! | `POST /conversations` | 201 `{"conversation"}`; a `personal` one needs exactly one participant (`userId` or `userExternalId`) that exists (else 400 `bad_request` / 404 `user_not_found`) |
//! | `GET /conversations?filter[userId]=` | 200 `{"conversations", "meta": {"hasMore"}}`, the user's conversations; no filter is 400 |
//! | `POST /conversations/{id}/messages` | 201 `{"messages": [message]}` (`messagePostResponse`); `author.type: user` must name a participant |
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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use serde_json::{Value, json};

use crate::client::{HttpClient, HttpResponse};
use crate::mock_http::{MockServer, Recorded, Reply};

/// The app id the mock serves.
pub const APP_ID: &str = "5ebee0975ac5304b664a12fa";
/// The id of the webhook the mock sends as (`webhook.id`).
pub const WEBHOOK_ID: &str = "5f4eaef81e3dcc117c7ba48a";
/// The size of a page of `GET .../messages` (fixed by Sunshine).
const MESSAGE_PAGE: usize = 100;

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
}

impl Conversation {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "type": self.kind,
            "displayName": self.display_name,
            "metadata": self.metadata,
            "isDefault": false,
            "activeSwitchboardIntegration": null,
        })
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
            ..State::default()
        }));
        let handler_state = state.clone();
        let server = MockServer::start(Arc::new(move |request: &Recorded| {
            let mut state = handler_state.lock().expect("mock state lock");
            state.handle(request)
        }))
        .await;
        MockSunshine {
            server,
            state,
            client: HttpClient::new(),
        }
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

    /// Stores a business (agent) message in the conversation and returns its
    /// `conversation:message` webhook event, shaped like the spec's `conversationMessageEvent`.
    pub fn business_message(&self, conversation_id: &str, content: Value) -> Value {
        let author = json!({ "type": "business", "subtypes": ["agent"], "displayName": "Agent Smith" });
        self.message_event(conversation_id, author, content)
    }

    /// Stores a message of the conversation's user and returns its `conversation:message` event.
    pub fn user_message(&self, conversation_id: &str, text: &str) -> Value {
        let user_id = self
            .state()
            .conversations
            .iter()
            .find(|c| c.id == conversation_id)
            .and_then(|c| c.participants.first().cloned())
            .unwrap_or_default();
        let author = json!({ "type": "user", "userId": user_id, "displayName": "Customer" });
        self.message_event(conversation_id, author, json!({ "type": "text", "text": text }))
    }

    fn message_event(&self, conversation_id: &str, author: Value, content: Value) -> Value {
        let message = Message {
            id: new_id(0x3e),
            conversation_id: conversation_id.into(),
            author,
            content,
            metadata: Value::Null,
        };
        let event = json!({
            "id": new_id(0xe0),
            "createdAt": "2020-09-30T15:14:29.834Z",
            "type": "conversation:message",
            "payload": {
                "conversation": { "id": conversation_id, "type": "personal" },
                "message": message.json(),
            },
        });
        self.state().messages.push(message);
        event
    }

    /// A switchboard event (`switchboard:passControl`, `switchboard:releaseControl`, ...) of the
    /// conversation, with `reason` when given (the spec's `switchboardReleaseControl` schema).
    pub fn switchboard_event(&self, conversation_id: &str, event_type: &str, reason: Option<&str>) -> Value {
        let mut payload = json!({ "conversation": { "id": conversation_id, "type": "personal" } });
        if let Some(reason) = reason {
            payload["reason"] = reason.into();
        }
        json!({
            "id": new_id(0xe0),
            "createdAt": "2020-09-30T15:14:29.834Z",
            "type": event_type,
            "payload": payload,
        })
    }

    /// POSTs one v2 webhook request carrying `events` to `url`, with `secret` in `X-API-Key`.
    pub async fn send_webhook(&self, url: &str, secret: &str, events: Vec<Value>) -> HttpResponse {
        let body = json!({
            "app": { "id": APP_ID },
            "webhook": { "id": WEBHOOK_ID, "version": "v2" },
            "events": events,
        });
        let body = serde_json::to_vec(&body).expect("a JSON value serialises");
        self.client
            .send(
                "POST",
                url,
                &[("content-type", "application/json"), ("x-api-key", secret)],
                body,
            )
            .await
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
            ("POST", ["users"]) => self.create_user(&body),
            ("GET", ["users", id]) => match self.user(id) {
                Some(user) => Reply::json(200, &json!({ "user": user.json() })),
                None => error(404, "user_not_found", "User not found"),
            },
            ("POST", ["conversations"]) => self.create_conversation(&body),
            ("GET", ["conversations"]) => {
                let Some(user_id) = request.query_param("filter[userId]") else {
                    return error(
                        400,
                        "bad_request",
                        "filter[userId] or filter[userExternalId] is required",
                    );
                };
                let conversations: Vec<Value> = self
                    .conversations
                    .iter()
                    .filter(|c| c.participants.contains(&user_id))
                    .map(Conversation::json)
                    .collect();
                Reply::json(
                    200,
                    &json!({ "conversations": conversations, "meta": { "hasMore": false } }),
                )
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
        let conversation = Conversation {
            id: new_id(0xc0),
            kind: kind.into(),
            participants: user_ids,
            display_name: body["displayName"].as_str().map(str::to_owned),
            metadata: body.get("metadata").cloned().unwrap_or_else(|| json!({})),
        };
        let answer = json!({ "conversation": conversation.json() });
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
        let content = &body["content"];
        let valid = match content["type"].as_str() {
            Some("text") => content["text"].as_str().is_some_and(|t| !t.is_empty()),
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
        self.messages.push(message);
        Reply::json(201, &answer)
    }
}
