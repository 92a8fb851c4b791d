//! `MockThreeDolphins`: the 3Dolphins side the bridge talks to.
//!
//! - Every POST outside the API prefix is an event (Outgoing or Command, told apart by `event`):
//!   recorded, and answered `{"status":"success"}` unless told to fail.
//! - `GET /dolphin/apiv1/graph/contacts/contactById?contactId=ID`: the Contact API.
//! - `POST /dolphin/apiv1/graph/report/conversations?startIndex=N`: the Report API's conversation
//!   history, filtered by the body's `ticketNumber`.
//!
//! The API answers 401 without `Authorization: Bearer TOKEN`, and wraps data as 3Dolphins does:
//! `{"status":"success","data":...}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::mock_http::{MockServer, Recorded, Reply};
use crate::wait::{WAIT, wait_for};

/// Where the bridge posts Outgoing and Command events by default.
pub const EVENT_PATH: &str = "/dolphin/integration/incomingMessage";
/// The API prefix (the bridge's default `api_base_url` is base URL + this).
pub const API_PREFIX: &str = "/dolphin/apiv1";
pub const CONTACT_PATH: &str = "/dolphin/apiv1/graph/contacts/contactById";
pub const HISTORY_PATH: &str = "/dolphin/apiv1/graph/report/conversations";

#[derive(Default)]
struct State {
    /// Every event POST, in arrival order, with whether it was accepted.
    event_posts: Vec<(Recorded, bool)>,
    api_requests: Vec<Recorded>,
    fail_next: u32,
    fail_status: u16,
    non_success_next: u32,
    contacts: HashMap<String, Value>,
    history: HashMap<String, Vec<Value>>,
    /// The next this many Contact API answers wait [`State::slow_lookup`] first.
    slow_lookups_next: u32,
    slow_lookup: Duration,
}

/// A mock 3Dolphins server on 127.0.0.1.
pub struct MockThreeDolphins {
    server: MockServer,
    state: Arc<Mutex<State>>,
    token: String,
}

impl MockThreeDolphins {
    /// Starts on a free port; `token` is the Bearer token the API demands. Knows the contact of
    /// the spec's example event (see [`example_contact`]).
    pub async fn start(token: &str) -> MockThreeDolphins {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), token, false)
            .await
            .expect("start the mock 3Dolphins")
    }

    /// Starts on `addr`; with `print`, writes every request it gets to stdout (for the demo).
    pub async fn start_on(addr: SocketAddr, token: &str, print: bool) -> std::io::Result<MockThreeDolphins> {
        let state = Arc::new(Mutex::new(State::default()));
        let contact = example_contact();
        state
            .lock()
            .unwrap()
            .contacts
            .insert(contact["id"].as_str().unwrap_or_default().to_string(), contact);
        let handler_state = state.clone();
        let expected_auth = format!("Bearer {token}");
        let server = MockServer::start_on(
            addr,
            Arc::new(move |req: &Recorded| {
                let reply = handle(&handler_state, &expected_auth, req);
                if print {
                    print_exchange(req, &reply);
                }
                reply
            }),
        )
        .await?;
        Ok(MockThreeDolphins {
            server,
            state,
            token: token.to_string(),
        })
    }

    /// `http://127.0.0.1:PORT`: the bridge's `three_dolphins.base_url`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// `http://127.0.0.1:PORT/dolphin/apiv1`.
    pub fn api_base_url(&self) -> String {
        format!("{}{API_PREFIX}", self.server.base_url())
    }

    /// The Bearer token the API accepts.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Every event POST received (accepted or answered with a failure), in order.
    pub fn event_posts(&self) -> Vec<Recorded> {
        let state = self.state.lock().unwrap();
        state.event_posts.iter().map(|(r, _)| r.clone()).collect()
    }

    /// The bodies of the event POSTs answered `{"status":"success"}`, in order.
    pub fn events(&self) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        state
            .event_posts
            .iter()
            .filter(|(_, accepted)| *accepted)
            .map(|(r, _)| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    /// The `message` of each accepted event, in order.
    pub fn messages(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Accepted Outgoing events (no `event` field).
    pub fn outgoing(&self) -> Vec<Value> {
        self.events().into_iter().filter(|e| e.get("event").is_none()).collect()
    }

    /// Accepted Command events (with an `event` field).
    pub fn commands(&self) -> Vec<Value> {
        self.events().into_iter().filter(|e| e.get("event").is_some()).collect()
    }

    /// Waits until at least `n` events were accepted; returns them all.
    pub async fn wait_for_events(&self, n: usize) -> Vec<Value> {
        wait_for(&format!("{n} event(s) at the mock 3Dolphins"), WAIT, || {
            let events = self.events();
            (events.len() >= n).then_some(events)
        })
        .await
    }

    /// The next `n` event POSTs are answered with `status` and `{"status":"failed",...}`.
    pub fn fail_next(&self, n: u32, status: u16) {
        let mut state = self.state.lock().unwrap();
        state.fail_next = n;
        state.fail_status = status;
    }

    /// The next `n` event POSTs are answered 200 but `{"status":"failed",...}`.
    pub fn answer_non_success_next(&self, n: u32) {
        self.state.lock().unwrap().non_success_next = n;
    }

    /// The next `n` Contact API answers come after `delay` (a 3Dolphins slow to answer).
    pub fn slow_down_next_lookups(&self, n: u32, delay: Duration) {
        let mut state = self.state.lock().unwrap();
        state.slow_lookups_next = n;
        state.slow_lookup = delay;
    }

    /// Adds (or replaces) a contact for the Contact API; keyed by its `id`.
    pub fn add_contact(&self, contact: Value) {
        let id = contact["id"].as_str().expect("a contact has a string `id`").to_string();
        self.state.lock().unwrap().contacts.insert(id, contact);
    }

    /// Appends a message record to a ticket's history (see [`history_message`]).
    pub fn add_history(&self, ticket_number: &str, message: Value) {
        self.state
            .lock()
            .unwrap()
            .history
            .entry(ticket_number.to_string())
            .or_default()
            .push(message);
    }

    /// Every request to the API prefix (Contact, history, anything else), in order.
    pub fn api_requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().api_requests.clone()
    }
}

fn handle(state: &Mutex<State>, expected_auth: &str, req: &Recorded) -> Reply {
    let mut state = state.lock().unwrap();
    if req.path.starts_with(API_PREFIX) {
        state.api_requests.push(req.clone());
        if req.header("authorization") != Some(expected_auth) {
            return Reply::json(
                401,
                &json!({"status": "failed", "message": "invalid or missing Bearer token"}),
            );
        }
        return match (req.method.as_str(), req.path.as_str()) {
            ("GET", CONTACT_PATH) => {
                let id = req.query_param("contactId").unwrap_or_default();
                let reply = match state.contacts.get(&id) {
                    Some(contact) => Reply::json(200, &json!({"status": "success", "data": contact})),
                    None => Reply::json(
                        404,
                        &json!({"status": "failed", "message": format!("contact {id} not found")}),
                    ),
                };
                if state.slow_lookups_next > 0 {
                    state.slow_lookups_next -= 1;
                    return reply.with_delay(state.slow_lookup);
                }
                reply
            }
            ("POST", HISTORY_PATH) => {
                let Ok(filter) = serde_json::from_slice::<Value>(&req.body) else {
                    return Reply::json(400, &json!({"status": "failed", "message": "bad filter"}));
                };
                let ticket = filter["ticketNumber"].as_str().unwrap_or_default();
                let start: usize = req.query_param("startIndex").and_then(|s| s.parse().ok()).unwrap_or(0);
                let messages: Vec<Value> = state
                    .history
                    .get(ticket)
                    .map(|m| m.iter().skip(start).cloned().collect())
                    .unwrap_or_default();
                Reply::json(200, &json!({"status": "success", "data": messages}))
            }
            _ => Reply::json(404, &json!({"status": "failed", "message": "no such API"})),
        };
    }
    if req.method != "POST" {
        return Reply::json(405, &json!({"status": "failed", "message": "POST only"}));
    }
    if state.fail_next > 0 {
        state.fail_next -= 1;
        let status = state.fail_status;
        state.event_posts.push((req.clone(), false));
        return Reply::json(status, &json!({"status": "failed", "message": "mock failure"}));
    }
    if state.non_success_next > 0 {
        state.non_success_next -= 1;
        state.event_posts.push((req.clone(), false));
        return Reply::json(200, &json!({"status": "failed", "message": "ticket not found"}));
    }
    state.event_posts.push((req.clone(), true));
    Reply::json(200, &json!({"status": "success"}))
}

fn print_exchange(req: &Recorded, reply: &Reply) {
    let body = match serde_json::from_slice::<Value>(&req.body) {
        Ok(json) => serde_json::to_string_pretty(&json).unwrap_or_default(),
        Err(_) => req.text(),
    };
    let what = if req.path.starts_with(API_PREFIX) {
        "API call"
    } else if body.contains("\"event\"") {
        "Command"
    } else {
        "Outgoing"
    };
    let query = if req.query.is_empty() {
        String::new()
    } else {
        format!("?{}", req.query)
    };
    println!(
        "[3Dolphins] {what}: {} {}{query} -> {}",
        req.method, req.path, reply.status
    );
    for line in body.lines() {
        println!("[3Dolphins]   {line}");
    }
}

/// The contact of the spec's example event (`contactId` d61d77735f3fe08bcf6d6b96fa06ba9d), in the
/// Contact API's shape.
pub fn example_contact() -> Value {
    json!({
        "id": "d61d77735f3fe08bcf6d6b96fa06ba9d",
        "owner": "82ab0fd5cfd1e80d1ff97c0cfc9aaaa",
        "createdDate": 1619599177945_i64,
        "createdBy": "82ab0fd5cfd1e80d1ff97c0cfc9aaaa",
        "modifiedDate": 1619599177945_i64,
        "modifiedBy": "82ab0fd5cfd1e80d1ff97c0cfc9aaaa",
        "contactFirstName": "Farhan",
        "contactLastName": "Akbar",
        "contactEmail": ["farhan.akbar@example.com"],
        "contactEmailString": "farhan.akbar@example.com",
        "phones": ["628128778222"],
        "phonesString": "628128778222",
        "phoneTypes": ["Mobile"],
        "socialIdWhatsapp": ["628128778222"],
        "socialNameWhatsapp": ["Farhan Akbar"],
        "username": "Farhan Akbar",
        "additionalFieldsObject": [{"name": "language", "value": "id"}]
    })
}

/// One message record as the Report API returns it (a subset of its fields).
pub fn history_message(ticket_number: &str, message: &str, from_agent: bool, epoch_ms: i64) -> Value {
    json!({
        "ticketNumber": ticket_number,
        "accountId": "628128778222",
        "accountName": if from_agent { "Agent" } else { "Farhan Akbar" },
        "customerName": "Farhan Akbar",
        "contactId": "d61d77735f3fe08bcf6d6b96fa06ba9d",
        "channelType": "whatsapp",
        "answer": from_agent,
        "message": message,
        "cleanedMessage": message,
        "createdDate": epoch_ms
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::HttpClient;

    #[tokio::test(flavor = "multi_thread")]
    async fn serves_contacts_and_history_behind_the_token_and_records_events() {
        let mock = MockThreeDolphins::start("t0ken").await;
        let client = HttpClient::new();
        let contact_url = format!(
            "{}/graph/contacts/contactById?contactId=d61d77735f3fe08bcf6d6b96fa06ba9d",
            mock.api_base_url()
        );
        let denied = client.get(&contact_url).await;
        assert_eq!(denied.status, 401);
        let found = client
            .send("GET", &contact_url, &[("authorization", "Bearer t0ken")], Vec::new())
            .await;
        assert_eq!(found.status, 200);
        assert_eq!(found.json()["status"], "success");
        assert_eq!(found.json()["data"]["contactFirstName"], "Farhan");
        let missing = client
            .send(
                "GET",
                &contact_url.replace("d61d", "0000"),
                &[("authorization", "Bearer t0ken")],
                Vec::new(),
            )
            .await;
        assert_eq!(missing.status, 404);

        mock.add_history("T1", history_message("T1", "Halo", false, 1));
        mock.add_history("T1", history_message("T1", "Ada yang bisa dibantu?", true, 2));
        let history = client
            .send(
                "POST",
                &format!("{}/graph/report/conversations?startIndex=1", mock.api_base_url()),
                &[("authorization", "Bearer t0ken")],
                json!({"ticketNumber": "T1"}).to_string(),
            )
            .await;
        assert_eq!(history.status, 200);
        let data = history.json()["data"].clone();
        assert_eq!(data.as_array().map(Vec::len), Some(1));
        assert_eq!(data[0]["message"], "Ada yang bisa dibantu?");
        assert_eq!(mock.api_requests().len(), 4);

        mock.fail_next(1, 503);
        let url = format!("{}{EVENT_PATH}", mock.base_url());
        let failed = client.post_json(&url, &json!({"ticketNumber": "T1"})).await;
        assert_eq!(failed.status, 503);
        let ok = client
            .post_json(&url, &json!({"ticketNumber": "T1", "event": "Close"}))
            .await;
        assert_eq!(ok.json(), json!({"status": "success"}));
        assert_eq!(mock.event_posts().len(), 2);
        assert_eq!(mock.events().len(), 1);
        assert_eq!(mock.commands().len(), 1);
        assert!(mock.outgoing().is_empty());
    }
}
