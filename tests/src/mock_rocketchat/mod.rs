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
//!   already used is not stored again and the route answers 400 (`sendMessage` returns early,
//!   apps/meteor/app/lib/server/functions/sendMessage.ts);
//! - `GET /api/v1/livechat/message/:_id?token=..&rid=..` answers a stored message
//!   (apps/meteor/app/livechat/server/api/v1/message.ts);
//! - `POST /api/v1/livechat/room.close` is refused with `error-not-allowed-to-close-conversation`
//!   while `Omnichannel_allow_visitors_to_close_conversation` is off (default on; room.ts,
//!   apps/meteor/server/settings/omnichannel.ts);
//! - a message longer than `Livechat_message_character_limit` is refused with
//!   `message-length-exceeds-character-limit` while `Livechat_enable_message_character_limit` is on
//!   (default off, limit 0; message.ts, omnichannel.ts); `GET /api/v1/livechat/config` tells the
//!   limit as `config.settings.limitTextLength` (apps/meteor/app/livechat/server/api/v1/config.ts,
//!   `settings()` in apps/meteor/app/livechat/server/api/lib/livechat.ts);
//! - a removed visitor (`DELETE /api/v1/livechat/visitor/:token`, visitor.ts) takes its rooms and
//!   their messages with it (`cleanGuestHistory`, apps/meteor/app/livechat/server/lib/guests.ts);
//!   its token is `invalid-token` to every route until it is registered again;
//! - a new room is refused with `no-agent-online` while no agent is online, as
//!   `QueueManager.requestRoom` does with `Livechat_accept_chats_with_no_agents` at its default
//!   (false) (apps/meteor/app/livechat/server/lib/QueueManager.ts);
//! - every route goes through the REST rate limiter at its defaults (`API_Enable_Rate_Limiter`
//!   on, 10 calls per 60 s per IP and route), apps/meteor/app/api/server/api.ts with Meteor's
//!   `RateLimiter` (meteor/meteor packages/rate-limit/rate-limit.js).
//!
//! Failures are Rocket.Chat's `API.v1.failure` shape: 400 `{"success": false, "error": "..."}`
//! (apps/meteor/app/api/server/api.ts). Webhook payloads are built as
//! `apps/meteor/app/livechat/server/hooks/sendToCRM.ts` builds them and sent as
//! `apps/meteor/app/livechat/server/lib/webhooks.ts` sends them: `X-RocketChat-Livechat-Token`,
//! `Livechat_http_timeout` (5000 ms), retried 4 x that timeout later, 5 attempts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::client::HttpClient;
use crate::mock_http::{MockServer, Recorded, Reply};

mod webhooks;

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
    /// Who closed it, as `closeRoom` records it (apps/meteor/app/livechat/server/lib/closeRoom.ts):
    /// `"visitor"` through `POST livechat/room.close`, `"user"` when an agent closed it.
    pub closer: Option<String>,
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

struct State {
    visitors: Vec<Visitor>,
    rooms: Vec<Room>,
    messages: Vec<Message>,
    requests: Vec<Recorded>,
    /// Statuses to answer the next message posts with (after storing them when `stored`).
    message_failures: Vec<(u16, bool)>,
    /// Answer the next room lookups with 200 and a body that is not JSON.
    garbled_room_answers: u32,
    /// Whether any agent is online (world state; the mock starts with one online).
    agents_online: bool,
    limiter: RateLimiter,
    rate_limited: usize,
    /// `API_Enable_Rate_Limiter` (default true).
    rate_limiter_enabled: bool,
    /// The answer being built is a proxy's (a planned failure), without Rocket.Chat's headers.
    proxy_answer: bool,
    /// `Omnichannel_allow_visitors_to_close_conversation` (default true).
    visitors_can_close: bool,
    /// `Livechat_message_character_limit` while `Livechat_enable_message_character_limit` is on
    /// (default off).
    message_character_limit: Option<usize>,
    next_id: u64,
}

impl Default for State {
    fn default() -> State {
        State {
            visitors: Vec::new(),
            rooms: Vec::new(),
            messages: Vec::new(),
            requests: Vec::new(),
            message_failures: Vec::new(),
            garbled_room_answers: 0,
            agents_online: true,
            limiter: RateLimiter::new(DEFAULT_RATE_LIMIT_CALLS, DEFAULT_RATE_LIMIT_WINDOW),
            rate_limited: 0,
            rate_limiter_enabled: true,
            proxy_answer: false,
            visitors_can_close: true,
            message_character_limit: None,
            next_id: 0,
        }
    }
}

/// `API_Enable_Rate_Limiter_Limit_Calls_Default`: 10, the default Rocket.Chat's server settings
/// give it (section `API_Rate_Limiter`, beside `API_Enable_Rate_Limiter`: true), read by
/// apps/meteor/app/api/server/api.ts as `defaultRateLimiterOptions`.
pub const DEFAULT_RATE_LIMIT_CALLS: u32 = 10;
/// `API_Enable_Rate_Limiter_Limit_Time_Default`: 60000 ms.
pub const DEFAULT_RATE_LIMIT_WINDOW: Duration = Duration::from_secs(60);

/// Rocket.Chat's REST rate limiter: one Meteor `RateLimiter` rule per route and method
/// (`addRateLimiterRuleForRoutes`, apps/meteor/app/api/server/api.ts), keyed by IP within the
/// rule. As meteor/meteor packages/rate-limit/rate-limit.js: a rule has one window for all its
/// keys, started when the rule is added and restarted by the first call after it ran out
/// (`increment`); every call is counted before it is checked (`enforceRateLimit` calls
/// `increment` then `check`), so a refused call counts too; a call is refused while its count
/// is above the limit and the window runs.
struct RateLimiter {
    calls: u32,
    window: Duration,
    /// Per rule (route and method): the window's start and the counts per IP.
    rules: HashMap<String, (Instant, HashMap<String, u32>)>,
    /// When the rules were added (the server's start): every rule's first window starts then.
    started: Instant,
}

/// What `enforceRateLimit` answers for one call.
struct RateCheck {
    allowed: bool,
    /// The route's `numRequestsAllowed` (`X-RateLimit-Limit`).
    limit: u32,
    remaining: i64,
    time_to_reset: Duration,
}

impl RateLimiter {
    fn new(calls: u32, window: Duration) -> RateLimiter {
        RateLimiter {
            calls,
            window,
            rules: HashMap::new(),
            started: Instant::now(),
        }
    }

    /// The limit of `route`: its own `rateLimiterOptions` where the route sets them, else the
    /// defaults. `livechat/visitor` sets 5 calls per 60000 ms
    /// (apps/meteor/app/livechat/server/api/v1/visitor.ts), whatever the default settings.
    fn limit_of(&self, route: &str) -> (u32, Duration) {
        if route == "/api/v1/livechat/visitorpost" {
            (5, Duration::from_secs(60))
        } else {
            (self.calls, self.window)
        }
    }

    fn call(&mut self, route: &str, ip: &str) -> RateCheck {
        let (calls, window) = self.limit_of(route);
        let now = Instant::now();
        let started = self.started;
        let (reset, counts) = self
            .rules
            .entry(route.to_string())
            .or_insert_with(|| (started, HashMap::new()));
        if now.duration_since(*reset) > window {
            *reset = now;
            counts.clear();
        }
        let count = counts.entry(ip.to_string()).or_insert(0);
        *count += 1;
        let elapsed = now.duration_since(*reset);
        let time_to_reset = window.saturating_sub(elapsed);
        if *count > calls && elapsed < window {
            RateCheck {
                allowed: false,
                remaining: 0,
                limit: calls,
                time_to_reset,
            }
        } else {
            RateCheck {
                allowed: true,
                remaining: i64::from(calls) - i64::from(*count),
                limit: calls,
                time_to_reset,
            }
        }
    }
}

/// The rate limiter's rule name of a request: `/api/v1/<route pattern><method>` as
/// `_internalRouteActionHandler` builds `objectForRateLimitMatch.route` (api.ts).
fn rate_limit_route(method: &str, path: &str) -> Option<String> {
    let pattern = match path {
        "/api/v1/livechat/visitor"
        | "/api/v1/livechat/room"
        | "/api/v1/livechat/room.close"
        | "/api/v1/livechat/config"
        | "/api/v1/livechat/message" => path.to_string(),
        _ if path.starts_with("/api/v1/livechat/message/") => "/api/v1/livechat/message/:_id".to_string(),
        _ => return None,
    };
    Some(format!("{pattern}{}", method.to_ascii_lowercase()))
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis()
}

impl State {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:014}", self.next_id)
    }

    /// A new visitor of `token`, without name or department.
    fn add_visitor(&mut self, token: &str) {
        let id = self.id("Visitor");
        self.visitors.push(Visitor {
            id,
            token: token.to_string(),
            name: None,
            department: None,
        });
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

    /// The next `n` message posts are stored but answered `status` by a proxy (a reply lost on the way).
    pub fn store_then_fail_next_messages(&self, n: usize, status: u16) {
        let mut state = self.state.lock().unwrap();
        state.message_failures.extend(std::iter::repeat_n((status, true), n));
    }

    /// The next `n` message posts are answered `status` by a proxy without reaching Rocket.Chat.
    pub fn fail_next_messages(&self, n: usize, status: u16) {
        let mut state = self.state.lock().unwrap();
        state.message_failures.extend(std::iter::repeat_n((status, false), n));
    }

    /// The next `n` room lookups answer 200 with an HTML page (a proxy's error page, say).
    pub fn garble_next_room_answers(&self, n: u32) {
        self.state.lock().unwrap().garbled_room_answers = n;
    }

    /// An agent closes room `rid` in Rocket.Chat (`closer: "user"`, closeRoom.ts).
    pub fn close_room(&self, rid: &str) {
        let mut state = self.state.lock().unwrap();
        let room = state.rooms.iter_mut().find(|r| r.id == rid).expect("a known room");
        room.open = false;
        room.closer = Some("user".into());
    }

    /// Agents come online or go offline. While none is online a new room is refused with
    /// `no-agent-online` (QueueManager.requestRoom, `Livechat_accept_chats_with_no_agents` false).
    pub fn set_agents_online(&self, online: bool) {
        self.state.lock().unwrap().agents_online = online;
    }

    /// Sets `API_Enable_Rate_Limiter_Limit_Calls_Default` and `..._Limit_Time_Default` (the
    /// window), as an admin would; the rules start again (`reloadRoutesToRefreshRateLimiter`).
    pub fn set_rate_limit(&self, calls: u32, window: Duration) {
        self.state.lock().unwrap().limiter = RateLimiter::new(calls, window);
    }

    /// Turns `API_Enable_Rate_Limiter` off, as an operator may: no call is limited and no
    /// `X-RateLimit-*` header is sent (`shouldVerifyRateLimit`, api.ts). For benches that call
    /// faster than the default 10 a minute.
    pub fn disable_rate_limiter(&self) {
        self.state.lock().unwrap().rate_limiter_enabled = false;
    }

    /// Sets `Omnichannel_allow_visitors_to_close_conversation` (default on): off, a visitor's
    /// `room.close` is refused with `error-not-allowed-to-close-conversation` (room.ts).
    pub fn set_visitors_can_close(&self, allowed: bool) {
        self.state.lock().unwrap().visitors_can_close = allowed;
    }

    /// Turns `Livechat_enable_message_character_limit` on with `Livechat_message_character_limit`
    /// = `limit` (both off / 0 by default, apps/meteor/server/settings/omnichannel.ts).
    pub fn set_message_character_limit(&self, limit: usize) {
        self.state.lock().unwrap().message_character_limit = Some(limit);
    }

    /// Removes the visitor of `token` as `DELETE livechat/visitor/:token` does (visitor.ts): refused
    /// while it has an open room (`visitor-has-open-rooms`, at the default
    /// `Livechat_Allow_collect_and_store_HTTP_header_informations` false); `removeGuest` then cleans
    /// its history (`cleanGuestHistory`, apps/meteor/app/livechat/server/lib/guests.ts): its rooms
    /// and their messages go too.
    pub fn remove_visitor(&self, token: &str) {
        let mut state = self.state.lock().unwrap();
        assert!(
            !state.rooms.iter().any(|r| r.visitor_token == token && r.open),
            "visitor-has-open-rooms"
        );
        let rooms: Vec<String> = state
            .rooms
            .iter()
            .filter(|r| r.visitor_token == token)
            .map(|r| r.id.clone())
            .collect();
        state.messages.retain(|m| !rooms.contains(&m.rid));
        state.rooms.retain(|r| r.visitor_token != token);
        state.visitors.retain(|v| v.token != token);
    }

    /// A visitor of `token` with an open room, made before the test (as an earlier version of the
    /// bridge would have registered it); returns the room's id.
    pub fn add_visitor_with_open_room(&self, token: &str) -> String {
        let mut state = self.state.lock().unwrap();
        state.add_visitor(token);
        let rid = state.id("Room");
        state.rooms.push(Room {
            id: rid.clone(),
            visitor_token: token.to_string(),
            open: true,
            closer: None,
        });
        rid
    }

    /// How many requests were refused with 429.
    pub fn rate_limited(&self) -> usize {
        self.state.lock().unwrap().rate_limited
    }
}

/// The agent of every webhook.
pub const AGENT_ID: &str = "AgentSari0000001";

fn handle(state: &mut State, request: &Recorded) -> Reply {
    let route = rate_limit_route(&request.method, &request.path).filter(|_| state.rate_limiter_enabled);
    let limit = route.map(|route| {
        // All requests come from 127.0.0.1 (`getRequestIP`, api.ts).
        state.limiter.call(&route, "127.0.0.1")
    });
    if let Some(check) = &limit
        && !check.allowed
    {
        state.rate_limited += 1;
        let seconds = check.time_to_reset.as_millis().div_ceil(1000);
        // `enforceRateLimit` throws `error-too-many-requests`; the route answers
        // `API.v1.tooManyRequests(e.message)` (api.ts).
        let reply = Reply::json(
            429,
            &json!({"success": false, "error": format!("Error, too many requests. Please slow down. You must wait {seconds} seconds before trying this endpoint again. [error-too-many-requests]")}),
        );
        return with_rate_headers(reply, check);
    }
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let reply = match (request.method.as_str(), request.path.as_str()) {
        ("POST", "/api/v1/livechat/visitor") => register_visitor(state, &body),
        ("GET", "/api/v1/livechat/room") => get_room(state, request),
        ("POST", "/api/v1/livechat/room.close") => close_room(state, &body),
        ("POST", "/api/v1/livechat/message") => post_message(state, &body),
        ("GET", "/api/v1/livechat/config") => livechat_config(state),
        ("GET", path) if path.starts_with("/api/v1/livechat/message/") => {
            get_message(state, request, &path["/api/v1/livechat/message/".len()..])
        }
        _ => Reply::json(
            404,
            &json!({"success": false, "error": format!("API endpoint \"{}\" does not exist!", request.path)}),
        ),
    };
    match &limit {
        Some(check) if !std::mem::take(&mut state.proxy_answer) => with_rate_headers(reply, check),
        _ => reply,
    }
}

/// `enforceRateLimit` sets these on every answer of a limited route, refused or not (api.ts):
/// `X-RateLimit-Reset` is the epoch time in milliseconds when the window ends.
fn with_rate_headers(mut reply: Reply, check: &RateCheck) -> Reply {
    reply
        .headers
        .push(("X-RateLimit-Limit".into(), check.limit.to_string()));
    reply
        .headers
        .push(("X-RateLimit-Remaining".into(), check.remaining.to_string()));
    reply.headers.push((
        "X-RateLimit-Reset".into(),
        (epoch_ms() + check.time_to_reset.as_millis()).to_string(),
    ));
    reply
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
            state.add_visitor(token);
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
    if !state.agents_online {
        // QueueManager.requestRoom with `Livechat_accept_chats_with_no_agents` at its default
        // (false) throws Meteor.Error('no-agent-online', 'Sorry, no online agents'); the route's
        // catch answers `API.v1.failure(e.message, e.error)` (api.ts).
        return Reply::json(
            400,
            &json!({"success": false, "error": "Sorry, no online agents [no-agent-online]", "errorType": "no-agent-online"}),
        );
    }
    let room = Room {
        id: state.id("Room"),
        visitor_token: token,
        open: true,
        closer: None,
    };
    state.rooms.push(room.clone());
    success(json!({"room": room_json(&room, &visitor), "newRoom": true}))
}

/// The open room `rid` of the visitor of `token` as `room.close` (room.ts) and `message`
/// (message.ts) find it: `findGuest` (else `invalid-token`), `findRoom` (else `invalid-room`,
/// apps/meteor/app/livechat/server/api/lib/livechat.ts), then open (else `room-closed`).
fn open_visitor_room<'a>(state: &'a mut State, token: &str, rid: &str) -> Result<&'a mut Room, Reply> {
    if !state.visitors.iter().any(|v| v.token == token) {
        return Err(failure("invalid-token"));
    }
    match state.rooms.iter_mut().find(|r| r.id == rid && r.visitor_token == token) {
        None => Err(failure("invalid-room")),
        Some(room) if !room.open => Err(failure("room-closed")),
        Some(room) => Ok(room),
    }
}

fn close_room(state: &mut State, body: &Value) -> Reply {
    let (Some(rid), Some(token)) = (str_field(body, "rid"), str_field(body, "token")) else {
        return failure("Match error: Missing key 'rid'");
    };
    if !state.visitors_can_close {
        return failure("error-not-allowed-to-close-conversation");
    }
    let room = match open_visitor_room(state, token, rid) {
        Ok(room) => room,
        Err(reply) => return reply,
    };
    room.open = false;
    // LivechatTyped.closeRoom({ visitor, room, .. }) records the visitor as the closer (closeRoom.ts).
    room.closer = Some("visitor".into());
    success(json!({"rid": rid, "comment": "Closed by visitor"}))
}

fn post_message(state: &mut State, body: &Value) -> Reply {
    let (Some(token), Some(rid), Some(msg)) =
        (str_field(body, "token"), str_field(body, "rid"), str_field(body, "msg"))
    else {
        return failure("Match error: Missing key 'token', 'rid' or 'msg'");
    };
    if let Err(reply) = open_visitor_room(state, token, rid) {
        return reply;
    }
    // `msg.length`: JavaScript counts UTF-16 code units.
    if let Some(limit) = state.message_character_limit
        && msg.encode_utf16().count() > limit
    {
        return failure("message-length-exceeds-character-limit");
    }
    let planned = (!state.message_failures.is_empty()).then(|| state.message_failures.remove(0));
    // A planned failure stands for a proxy in front of Rocket.Chat answering for it (a timeout,
    // a restart): no Rocket.Chat headers.
    state.proxy_answer = planned.is_some();
    if let Some((status, false)) = planned {
        return Reply::json(status, &json!({"success": false, "error": "Internal server error"}));
    }
    let id = match str_field(body, "_id") {
        Some(id) => id.to_string(),
        None => state.id("Msg"),
    };
    if state.messages.iter().any(|m| m.id == id) {
        // sendMessage returns early when a message with this `_id` exists
        // (apps/meteor/app/lib/server/functions/sendMessage.ts: `messageAlreadyExists`), nothing is
        // stored, and the Livechat route fails on the missing result (message.ts); 6.x/7.x answer
        // this 400 (the text is the project issue's, see the adapter README's assumptions).
        return failure("Cannot convert undefined or null to object");
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

/// `Message_MaxAllowedSize`'s default (apps/meteor/server/settings/message.ts).
const MESSAGE_MAX_ALLOWED_SIZE: usize = 5000;

/// `GET /api/v1/livechat/config` (config.ts): the Livechat settings a widget reads; of them the
/// mock answers `settings.limitTextLength`, which `settings()` (api/lib/livechat.ts) computes as
/// `Livechat_enable_message_character_limit && (Livechat_message_character_limit ||
/// Message_MaxAllowedSize)`.
fn livechat_config(state: &State) -> Reply {
    let limit = match state.message_character_limit {
        Some(0) => json!(MESSAGE_MAX_ALLOWED_SIZE),
        Some(limit) => json!(limit),
        None => json!(false),
    };
    success(json!({"config": {"enabled": true, "online": state.agents_online, "settings": {"limitTextLength": limit}}}))
}

/// `GET /api/v1/livechat/message/:_id?token=..&rid=..` (apps/meteor/app/livechat/server/api/v1/message.ts):
/// the visitor of `token`, its room `rid` (open or closed: `findRoom`,
/// apps/meteor/app/livechat/server/api/lib/livechat.ts), then the message, else `invalid-message`.
fn get_message(state: &mut State, request: &Recorded, id: &str) -> Reply {
    let (Some(token), Some(rid)) = (request.query_param("token"), request.query_param("rid")) else {
        return failure("Match error: Missing key 'token' or 'rid'");
    };
    if !state.visitors.iter().any(|v| v.token == token) {
        return failure("invalid-token");
    }
    if !state.rooms.iter().any(|r| r.id == rid && r.visitor_token == token) {
        return failure("invalid-room");
    }
    match state.messages.iter().find(|m| m.id == id) {
        Some(m) => success(json!({"message": {"_id": m.id, "rid": m.rid, "msg": m.msg, "token": m.token}})),
        None => failure("invalid-message"),
    }
}
