//! A stateful Rocket.Chat Omnichannel server (the `rocketchat` adapter's vendor).
//!
//! The Livechat REST API as Rocket.Chat implements it in
//! `apps/meteor/app/livechat/server/api/v1/{visitor,room,message}.ts`:
//! - `POST /api/v1/livechat/visitor` registers (or updates) the visitor of `visitor.token`;
//! - `GET /api/v1/livechat/room?token=..[&rid=..]` answers the visitor's one open room, opening
//!   one when there is none (`{room, newRoom}`); an unknown token is `invalid-token`, an `rid`
//!   that is not this visitor's open room `invalid-room`;
//! - `POST /api/v1/livechat/room.close` closes a visitor's room;
//! - `POST /api/v1/livechat/message` needs the visitor token and its open room; a client `_id`
//!   already used fails as MongoDB's duplicate-key error, as Rocket.Chat lets it through.
//!
//! Failures are Rocket.Chat's `API.v1.failure` shape: 400 `{"success": false, "error": "..."}`.
//! Webhook payloads are built as `apps/meteor/app/livechat/server/hooks/sendToCRM.ts` builds them
//! and sent with the `X-RocketChat-Livechat-Token` header (`apps/meteor/app/livechat/server/lib/webhooks.ts`).

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::client::{HttpClient, HttpResponse};
use crate::mock_http::{MockServer, Recorded, Reply};

/// The header Rocket.Chat puts its Omnichannel webhook secret in.
pub const TOKEN_HEADER: &str = "X-RocketChat-Livechat-Token";

/// A Livechat visitor.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub id: String,
    pub token: String,
    pub name: Option<String>,
    pub department: Option<String>,
}

/// A Livechat room.
#[derive(Debug, Clone)]
pub struct Room {
    pub id: String,
    pub visitor_token: String,
    pub open: bool,
}

/// A message in a room.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub rid: String,
    pub msg: String,
    /// The visitor token when the visitor sent it (Rocket.Chat's mark of a visitor message).
    pub token: Option<String>,
}

#[derive(Default)]
struct State {
    visitors: Vec<Visitor>,
    rooms: Vec<Room>,
    messages: Vec<Message>,
    requests: Vec<Recorded>,
    /// Statuses to answer the next message posts with (after storing them when `stored`).
    message_failures: Vec<(u16, bool)>,
    /// Answer the next room lookups with 200 and a body that is not JSON.
    garbled_room_answers: u32,
    next_id: u64,
}

impl State {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:014}", self.next_id)
    }
}

/// The mock Rocket.Chat; stops when dropped.
pub struct MockRocketChat {
    server: MockServer,
    state: Arc<Mutex<State>>,
    webhook_token: String,
    client: HttpClient,
}

fn failure(error: &str) -> Reply {
    Reply::json(400, &json!({"success": false, "error": error}))
}

fn success(mut body: Value) -> Reply {
    body["success"] = json!(true);
    Reply::json(200, &body)
}

fn room_json(room: &Room, visitor: &Visitor) -> Value {
    json!({
        "_id": room.id,
        "t": "l",
        "open": room.open,
        "v": {"_id": visitor.id, "token": visitor.token, "username": format!("guest-{}", visitor.id)},
    })
}

impl MockRocketChat {
    /// Starts on a free port; webhooks it sends carry `webhook_token`.
    pub async fn start(webhook_token: &str) -> MockRocketChat {
        let state = Arc::new(Mutex::new(State::default()));
        let handler_state = state.clone();
        let server = MockServer::start(Arc::new(move |request: &Recorded| {
            let mut state = handler_state.lock().unwrap();
            state.requests.push(request.clone());
            handle(&mut state, request)
        }))
        .await;
        MockRocketChat {
            server,
            state,
            webhook_token: webhook_token.to_string(),
            client: HttpClient::new(),
        }
    }

    /// `http://127.0.0.1:PORT`, the server's Site URL.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn visitors(&self) -> Vec<Visitor> {
        self.state.lock().unwrap().visitors.clone()
    }

    pub fn rooms(&self) -> Vec<Room> {
        self.state.lock().unwrap().rooms.clone()
    }

    /// Messages of room `rid`, oldest first.
    pub fn messages(&self, rid: &str) -> Vec<Message> {
        let state = self.state.lock().unwrap();
        state.messages.iter().filter(|m| m.rid == rid).cloned().collect()
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The next `n` message posts are stored but answered `status` (a reply lost on the way).
    pub fn store_then_fail_next_messages(&self, n: usize, status: u16) {
        let mut state = self.state.lock().unwrap();
        state.message_failures.extend(std::iter::repeat_n((status, true), n));
    }

    /// The next `n` message posts are refused with `status` without storing.
    pub fn fail_next_messages(&self, n: usize, status: u16) {
        let mut state = self.state.lock().unwrap();
        state.message_failures.extend(std::iter::repeat_n((status, false), n));
    }

    /// The next `n` room lookups answer 200 with an HTML page (a proxy's error page, say).
    pub fn garble_next_room_answers(&self, n: u32) {
        self.state.lock().unwrap().garbled_room_answers = n;
    }

    /// An agent closes room `rid` in Rocket.Chat.
    pub fn close_room(&self, rid: &str) {
        let mut state = self.state.lock().unwrap();
        let room = state.rooms.iter_mut().find(|r| r.id == rid).expect("a known room");
        room.open = false;
    }

    /// The `visitor` and room fields of a webhook for room `rid`
    /// (`getLivechatRoomGuestInfo`, apps/meteor/app/livechat/server/lib/Helper.ts and sendToCRM.ts).
    fn webhook_base(&self, rid: &str, kind: &str) -> Value {
        let state = self.state.lock().unwrap();
        let room = state.rooms.iter().find(|r| r.id == rid).expect("a known room");
        let visitor = state
            .visitors
            .iter()
            .find(|v| v.token == room.visitor_token)
            .expect("the room's visitor");
        json!({
            "_id": rid,
            "label": visitor.name,
            "topic": null,
            "createdAt": "2026-01-05T08:00:00.000Z",
            "lastMessageAt": "2026-01-05T08:01:00.000Z",
            "tags": [],
            "customFields": {},
            "visitor": {
                "_id": visitor.id,
                "token": visitor.token,
                "name": visitor.name,
                "username": format!("guest-{}", visitor.id),
                "email": null,
                "phone": null,
                "department": visitor.department,
                "ip": "127.0.0.1",
                "os": "Linux",
                "browser": "Other",
                "customFields": {},
            },
            "agent": {"_id": AGENT_ID, "username": "agent.sari", "name": "Sari", "email": "sari@example.com"},
            "type": kind,
            "messages": [],
        })
    }

    /// A `type: "Message"` webhook for an agent's text `text` in room `rid`.
    pub fn agent_message_webhook(&self, rid: &str, text: &str) -> Value {
        let mut payload = self.webhook_base(rid, "Message");
        let id = self.state.lock().unwrap().id("AgentMsg");
        payload["messages"] = json!([{
            "u": {"_id": AGENT_ID, "username": "agent.sari", "name": "Sari"},
            "_id": id,
            "username": "agent.sari",
            "msg": text,
            "ts": "2026-01-05T08:01:00.000Z",
            "rid": rid,
            "agentId": AGENT_ID,
            "_updatedAt": "2026-01-05T08:01:00.000Z",
        }]);
        payload
    }

    /// A `type: "Message"` webhook for a file an agent uploaded to room `rid`, as
    /// `normalizeMessageFileUpload` (apps/meteor/app/utils/server/functions) completes it.
    pub fn agent_file_webhook(&self, rid: &str, file_name: &str, mime: &str, description: &str) -> Value {
        let mut payload = self.webhook_base(rid, "Message");
        let (id, file_id) = {
            let mut state = self.state.lock().unwrap();
            (state.id("AgentMsg"), state.id("File"))
        };
        let path = format!("/file-upload/{file_id}/{file_name}");
        payload["messages"] = json!([{
            "u": {"_id": AGENT_ID, "username": "agent.sari", "name": "Sari"},
            "_id": id,
            "username": "agent.sari",
            "msg": "",
            "ts": "2026-01-05T08:02:00.000Z",
            "rid": rid,
            "agentId": AGENT_ID,
            "file": {"_id": file_id, "name": file_name, "type": mime},
            "attachments": [{
                "title": file_name,
                "title_link": path,
                "title_link_download": true,
                "description": description,
                "type": "file",
            }],
            "fileUpload": {"publicFilePath": format!("{}{path}?token=jwt", self.base_url()), "type": mime, "size": 1024},
            "_updatedAt": "2026-01-05T08:02:00.000Z",
        }]);
        payload
    }

    /// A `type: "Message"` webhook for the visitor's own message in room `rid` (sent when
    /// "Send request on visitor message" is on): no `agentId`.
    pub fn visitor_message_webhook(&self, rid: &str, text: &str) -> Value {
        let mut payload = self.webhook_base(rid, "Message");
        let username = payload["visitor"]["username"].clone();
        let visitor_id = payload["visitor"]["_id"].clone();
        payload["messages"] = json!([{
            "u": {"_id": visitor_id, "username": username, "name": payload["visitor"]["name"]},
            "_id": "VisitorMsg0001",
            "username": username,
            "msg": text,
            "ts": "2026-01-05T08:00:30.000Z",
            "rid": rid,
            "_updatedAt": "2026-01-05T08:00:30.000Z",
        }]);
        payload
    }

    /// A `type: "LivechatSessionStart"` webhook for room `rid` (no messages of interest).
    pub fn session_start_webhook(&self, rid: &str) -> Value {
        self.webhook_base(rid, "LivechatSessionStart")
    }

    /// The `type: "LivechatSession"` webhook Rocket.Chat sends when an agent closes room `rid`;
    /// the room is closed first.
    pub fn session_closed_webhook(&self, rid: &str) -> Value {
        self.close_room(rid);
        let mut payload = self.webhook_base(rid, "LivechatSession");
        payload["departmentId"] = Value::Null;
        payload["servedBy"] = json!({"_id": AGENT_ID, "username": "agent.sari", "ts": "2026-01-05T08:00:05.000Z"});
        payload["closedAt"] = json!("2026-01-05T08:05:00.000Z");
        payload["closedBy"] = json!({"_id": AGENT_ID, "username": "agent.sari"});
        payload["closer"] = json!("user");
        payload
    }

    /// POSTs `payload` to `url` as Rocket.Chat's `sendRequest` does, with the token header.
    pub async fn send_webhook(&self, url: &str, payload: &Value) -> HttpResponse {
        let body = serde_json::to_vec(payload).expect("JSON serialises");
        self.client
            .send(
                "POST",
                url,
                &[
                    ("content-type", "application/json"),
                    (TOKEN_HEADER, &self.webhook_token),
                ],
                body,
            )
            .await
    }
}

/// The agent of every webhook.
pub const AGENT_ID: &str = "AgentSari0000001";

fn handle(state: &mut State, request: &Recorded) -> Reply {
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/api/v1/livechat/visitor") => register_visitor(state, &body),
        ("GET", "/api/v1/livechat/room") => get_room(state, request),
        ("POST", "/api/v1/livechat/room.close") => close_room(state, &body),
        ("POST", "/api/v1/livechat/message") => post_message(state, &body),
        _ => Reply::json(
            404,
            &json!({"success": false, "error": format!("API endpoint \"{}\" does not exist!", request.path)}),
        ),
    }
}

fn str_field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

fn register_visitor(state: &mut State, body: &Value) -> Reply {
    let Some(token) = body.get("visitor").and_then(|v| str_field(v, "token")) else {
        return Reply::json(
            400,
            &json!({"success": false, "error": "Match error: Missing key 'token' in field visitor", "errorType": "error-invalid-params"}),
        );
    };
    if token.trim().is_empty() {
        return Reply::json(
            400,
            &json!({"success": false, "error": "Token cannot be empty [error-invalid-token]", "errorType": "error-invalid-token"}),
        );
    }
    let name = str_field(&body["visitor"], "name").map(String::from);
    let department = str_field(&body["visitor"], "department").map(String::from);
    let index = match state.visitors.iter().position(|v| v.token == token) {
        Some(index) => index,
        None => {
            let id = state.id("Visitor");
            state.visitors.push(Visitor {
                id,
                token: token.to_string(),
                name: None,
                department: None,
            });
            state.visitors.len() - 1
        }
    };
    let visitor = &mut state.visitors[index];
    if name.is_some() {
        visitor.name = name;
    }
    if department.is_some() {
        visitor.department = department;
    }
    success(json!({"visitor": {"_id": visitor.id, "token": visitor.token, "name": visitor.name}}))
}

fn get_room(state: &mut State, request: &Recorded) -> Reply {
    if state.garbled_room_answers > 0 {
        state.garbled_room_answers -= 1;
        return Reply::text(200, "<html><body>Rocket.Chat is starting</body></html>");
    }
    let Some(token) = request.query_param("token") else {
        return failure("Match error: Missing key 'token'");
    };
    let Some(visitor) = state.visitors.iter().find(|v| v.token == token).cloned() else {
        return failure("invalid-token");
    };
    if let Some(rid) = request.query_param("rid") {
        return match state
            .rooms
            .iter()
            .find(|r| r.id == rid && r.visitor_token == token && r.open)
        {
            Some(room) => success(json!({"room": room_json(room, &visitor), "newRoom": false})),
            None => failure("invalid-room"),
        };
    }
    if let Some(room) = state.rooms.iter().find(|r| r.visitor_token == token && r.open) {
        return success(json!({"room": room_json(room, &visitor), "newRoom": false}));
    }
    let room = Room {
        id: state.id("Room"),
        visitor_token: token,
        open: true,
    };
    state.rooms.push(room.clone());
    success(json!({"room": room_json(&room, &visitor), "newRoom": true}))
}

fn close_room(state: &mut State, body: &Value) -> Reply {
    let (Some(rid), Some(token)) = (str_field(body, "rid"), str_field(body, "token")) else {
        return failure("Match error: Missing key 'rid'");
    };
    if !state.visitors.iter().any(|v| v.token == token) {
        return failure("invalid-token");
    }
    let Some(room) = state.rooms.iter_mut().find(|r| r.id == rid && r.visitor_token == token) else {
        return failure("invalid-room");
    };
    if !room.open {
        return failure("room-closed");
    }
    room.open = false;
    success(json!({"rid": rid, "comment": "Closed by visitor"}))
}

fn post_message(state: &mut State, body: &Value) -> Reply {
    let (Some(token), Some(rid), Some(msg)) =
        (str_field(body, "token"), str_field(body, "rid"), str_field(body, "msg"))
    else {
        return failure("Match error: Missing key 'token', 'rid' or 'msg'");
    };
    if !state.visitors.iter().any(|v| v.token == token) {
        return failure("invalid-token");
    }
    let Some(room) = state.rooms.iter().find(|r| r.id == rid && r.visitor_token == token) else {
        return failure("invalid-room");
    };
    if !room.open {
        return failure("room-closed");
    }
    let planned = (!state.message_failures.is_empty()).then(|| state.message_failures.remove(0));
    if let Some((status, false)) = planned {
        return Reply::json(status, &json!({"success": false, "error": "Internal server error"}));
    }
    let id = match str_field(body, "_id") {
        Some(id) => id.to_string(),
        None => state.id("Msg"),
    };
    if state.messages.iter().any(|m| m.id == id) {
        // Livechat.sendMessage inserts with the client's `_id`; MongoDB refuses the second one.
        return failure(&format!(
            "E11000 duplicate key error collection: rocketchat.rocketchat_message index: _id_ dup key: {{ _id: \"{id}\" }}"
        ));
    }
    let message = Message {
        id: id.clone(),
        rid: rid.to_string(),
        msg: msg.to_string(),
        token: Some(token.to_string()),
    };
    state.messages.push(message);
    if let Some((status, true)) = planned {
        return Reply::json(status, &json!({"success": false, "error": "Internal server error"}));
    }
    success(json!({"message": {"_id": id, "rid": rid, "msg": msg, "token": token}}))
}
