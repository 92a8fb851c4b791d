//! Incoming events for the tests, starting from the spec's example.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// The owner (tenant id) of the spec's example event.
pub const EXAMPLE_OWNER: &str = "82ab0fd5cfd1e80d1ff97c0cfc9aaaa";
pub const EXAMPLE_TICKET: &str = "294c9ea88f7e649f8c37ae895ebab247";
pub const EXAMPLE_CONTACT_ID: &str = "d61d77735f3fe08bcf6d6b96fa06ba9d";
pub const EXAMPLE_ACCOUNT_ID: &str = "628128778222";
pub const EXAMPLE_CUSTOMER: &str = "Farhan Akbar";
pub const EXAMPLE_CREATED: &str = "2021-04-28T15:39:37.945";

/// The ten fields the contract marks mandatory, in the spec's order.
pub const MANDATORY_FIELDS: [&str; 10] = [
    "ticketNumber",
    "channel",
    "accountId",
    "contactId",
    "messageType",
    "message",
    "mediaLink",
    "customerName",
    "createdDate",
    "owner",
];

/// The mandatory fields that must also be non-empty.
pub const IDENTIFIER_FIELDS: [&str; 7] = [
    "ticketNumber",
    "channel",
    "accountId",
    "contactId",
    "messageType",
    "owner",
    "createdDate",
];

/// The spec's example Incoming event, exactly (as valid JSON).
pub fn example_event() -> Value {
    json!({
        "ticketNumber": EXAMPLE_TICKET,
        "channel": "whatsapp",
        "accountId": EXAMPLE_ACCOUNT_ID,
        "contactId": EXAMPLE_CONTACT_ID,
        "messageType": "text",
        "message": "Halo",
        "mediaLink": "",
        "customerName": EXAMPLE_CUSTOMER,
        "createdDate": EXAMPLE_CREATED,
        "owner": EXAMPLE_OWNER,
        "groupId": "",
        "language": ""
    })
}

/// A ticket number no other test uses (32 hex digits, like 3Dolphins').
pub fn fresh_ticket() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:016x}{:016x}", n ^ (u64::from(std::process::id()) << 32))
}

/// A fluent builder over an Incoming event's JSON.
#[derive(Debug, Clone)]
pub struct Event(Map<String, Value>);

impl Event {
    /// The spec's example event.
    pub fn example() -> Event {
        match example_event() {
            Value::Object(map) => Event(map),
            _ => unreachable!(),
        }
    }

    /// The example event on a fresh ticket.
    pub fn fresh() -> Event {
        Event::example().ticket(&fresh_ticket())
    }

    /// An image on a fresh ticket.
    pub fn image(media_link: &str, caption: &str) -> Event {
        Event::fresh()
            .with("messageType", "image")
            .with("mediaLink", media_link)
            .with("message", caption)
    }

    /// A location on a fresh ticket (`"latitude,longitude"`).
    pub fn location(lat_lng: &str) -> Event {
        Event::fresh()
            .with("messageType", "location")
            .with("message", lat_lng)
            .with("mediaLink", "")
    }

    pub fn ticket(self, ticket_number: &str) -> Event {
        self.with("ticketNumber", ticket_number)
    }

    pub fn owner(self, owner: &str) -> Event {
        self.with("owner", owner)
    }

    pub fn message(self, text: &str) -> Event {
        self.with("message", text)
    }

    /// Sets (or adds) a field.
    pub fn with(mut self, field: &str, value: impl Into<Value>) -> Event {
        self.0.insert(field.to_string(), value.into());
        self
    }

    /// Removes a field.
    pub fn without(mut self, field: &str) -> Event {
        self.0.remove(field);
        self
    }

    /// A field's current value.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field)
    }

    /// The ticket number as a string (empty when absent or not a string).
    pub fn ticket_number(&self) -> String {
        self.0
            .get("ticketNumber")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    pub fn json(&self) -> Value {
        Value::Object(self.0.clone())
    }

    pub fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).expect("JSON serialises")
    }
}

impl From<Event> for Value {
    fn from(event: Event) -> Value {
        Value::Object(event.0)
    }
}

/// True when `text` has the shape `yyyy-MM-ddTHH:mm:ss.SSS`.
pub fn is_contract_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 23
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            _ => c.is_ascii_digit(),
        })
}
