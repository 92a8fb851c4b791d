//! Pure mappings between 3Dolphins events and Chatwoot payloads (no host calls: unit-tested
//! natively).

use dolphin_bridge_sdk::{AdapterError, BridgeEvent, IncomingEvent, MessageType, Value, WebhookEvent, events, json};

/// KV key of the ticket -> conversation link.
pub fn ticket_key(ticket_number: &str) -> String {
    format!("ticket:{ticket_number}")
}

/// KV key of the conversation -> ticket link.
pub fn conversation_key(conversation_id: &str) -> String {
    format!("conversation:{conversation_id}")
}

/// KV key of the 3Dolphins contact -> Chatwoot contact link.
pub fn contact_key(contact_id: &str) -> String {
    format!("contact:{contact_id}")
}

/// The dedupe key of the `part`-th event (from 0) made of Chatwoot message `message_id`:
/// `message:{id}` for the first, `message:{id}:2`, `message:{id}:3`, ... for the next ones (a
/// message with several attachments gives several events, each with its own key). The host
/// forwards each key once, so a message that both the account webhook and the inbox webhook
/// send, or that Chatwoot sends again, reaches 3Dolphins once.
pub fn message_dedupe_key(message_id: &str, part: usize) -> String {
    match part {
        0 => format!("message:{message_id}"),
        _ => format!("message:{message_id}:{}", part + 1),
    }
}

/// A Chatwoot id as text, whether the JSON has it as a number or a string.
pub fn id_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// A Chatwoot id as a number.
pub fn id_number(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The Chatwoot contact for a 3Dolphins contact id.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactLink {
    pub id: u64,
    /// The contact's `source_id` in our API inbox.
    pub source_id: String,
}

impl ContactLink {
    pub fn to_json(&self) -> Value {
        json!({ "id": self.id, "source_id": self.source_id })
    }

    pub fn from_json(value: &Value) -> Option<Self> {
        Some(Self {
            id: id_number(value.get("id"))?,
            source_id: value.get("source_id")?.as_str()?.to_owned(),
        })
    }
}

/// The conversation of a ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketLink {
    pub conversation_id: u64,
    pub contact_id: u64,
    pub channel: String,
    /// The last delivery id whose message Chatwoot accepted.
    pub last_delivery: Option<String>,
    /// The Chatwoot id of that message: where a retried delivery starts looking for its own.
    pub last_message_id: Option<u64>,
}

impl TicketLink {
    pub fn to_json(&self) -> Value {
        json!({
            "conversation_id": self.conversation_id,
            "contact_id": self.contact_id,
            "channel": self.channel,
            "last_delivery": self.last_delivery,
            "last_message_id": self.last_message_id,
        })
    }

    pub fn from_json(value: &Value) -> Option<Self> {
        Some(Self {
            conversation_id: id_number(value.get("conversation_id"))?,
            contact_id: id_number(value.get("contact_id")).unwrap_or(0),
            channel: value.get("channel").and_then(Value::as_str).unwrap_or("").to_owned(),
            last_delivery: value.get("last_delivery").and_then(Value::as_str).map(str::to_owned),
            last_message_id: id_number(value.get("last_message_id")),
        })
    }
}

/// The ticket of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationLink {
    pub ticket_number: String,
    pub channel: String,
}

impl ConversationLink {
    pub fn to_json(&self) -> Value {
        json!({ "ticket_number": self.ticket_number, "channel": self.channel })
    }

    pub fn from_json(value: &Value) -> Option<Self> {
        Some(Self {
            ticket_number: value.get("ticket_number")?.as_str()?.to_owned(),
            channel: value.get("channel").and_then(Value::as_str).unwrap_or("").to_owned(),
        })
    }
}

/// `+{digits}` (E.164, as Chatwoot validates `phone_number`) when `account_id` looks like a
/// phone number: it starts with `+`, or the channel carries phone numbers (WhatsApp, SMS,
/// phone) and the id is 8-15 digits with a country code (no leading 0). Spaces, dashes, dots
/// and parentheses are ignored. Other channels' numeric ids (e.g. Telegram's) are not phones.
pub fn phone_number(account_id: &str, channel: &str) -> Option<String> {
    let trimmed = account_id.trim();
    let explicit = trimmed.starts_with('+');
    let digits: String = trimmed
        .trim_start_matches('+')
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let channel = channel.to_ascii_lowercase();
    let phone_channel = channel == "wa" || ["whatsapp", "sms", "phone"].iter().any(|c| channel.contains(c));
    let valid =
        (8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0');
    (valid && (explicit || phone_channel)).then(|| format!("+{digits}"))
}

/// The contact's display name: the customer's name, else their channel account id.
pub fn contact_name(event: &IncomingEvent) -> String {
    let name = event.customer_name.trim();
    if name.is_empty() {
        event.account_id.clone()
    } else {
        name.to_owned()
    }
}

/// The text of the Chatwoot message for an Incoming event.
pub fn message_content(event: &IncomingEvent) -> String {
    let text = event.message.trim();
    match event.message_type {
        MessageType::Text => event.message.clone(),
        MessageType::Location => {
            let coordinates: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            format!("Location: https://maps.google.com/?q={coordinates}")
        }
        MessageType::Image | MessageType::Video | MessageType::Audio | MessageType::File => {
            if text.is_empty() || text == event.media_link {
                event.media_link.clone()
            } else {
                format!("{text}\n{}", event.media_link)
            }
        }
    }
}

/// The body of `POST /conversations/{id}/messages` for an Incoming event.
pub fn message_body(event: &IncomingEvent, delivery_id: &str, tag: Option<&str>) -> Value {
    let mut body = json!({
        "content": message_content(event),
        "message_type": "incoming",
        "private": false,
        "source_id": delivery_id,
        "echo_id": delivery_id,
    });
    if let Some(tag) = tag {
        body["content_attributes"] = json!({ "bridge_tag": tag });
    }
    body
}

/// Why a webhook gives no events (answered 200).
#[derive(Debug, PartialEq)]
pub struct Ignored(pub String);

fn ignored<T>(reason: impl Into<String>) -> Result<Result<T, Ignored>, AdapterError> {
    Ok(Err(Ignored(reason.into())))
}

/// Which webhooks concern the tenant, and what of them is forwarded.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The configured account: a payload naming another is ignored.
    pub account_id: Option<&'a str>,
    /// The configured inbox: every event must name it (conversation ids are per account, and
    /// conversation events carry no account, so the inbox, whose id is global, tells them apart).
    pub inbox_id: Option<&'a str>,
    /// Whether template messages (greetings, out-of-office, CSAT) become Outgoing events.
    pub forward_templates: bool,
}

/// The inbox id a payload names: `inbox.id` (messages), `inbox_id` (conversations) or
/// `conversation.inbox_id`.
pub fn payload_inbox(payload: &Value) -> Option<String> {
    id_text(payload.pointer("/inbox/id"))
        .or_else(|| id_text(payload.get("inbox_id")))
        .or_else(|| id_text(payload.pointer("/conversation/inbox_id")))
}

/// Maps a Chatwoot webhook payload to 3Dolphins events for the tenant's `scope`; `lookup` finds
/// the ticket of a conversation id. A message's events carry dedupe keys made of its id
/// ([`message_dedupe_key`]); a Close carries none (a conversation may be resolved again after
/// it is reopened).
pub fn webhook_events(
    payload: &Value,
    scope: Scope<'_>,
    lookup: impl Fn(&str) -> Result<Option<ConversationLink>, AdapterError>,
) -> Result<Result<Vec<WebhookEvent>, Ignored>, AdapterError> {
    let event = payload.get("event").and_then(Value::as_str).unwrap_or("");
    if let (Some(expected), Some(actual)) = (scope.account_id, id_text(payload.pointer("/account/id")))
        && expected != actual
    {
        return ignored(format!("event of another account ({actual})"));
    }
    if let Some(expected) = scope.inbox_id {
        match payload_inbox(payload) {
            Some(actual) if actual == expected => {}
            Some(actual) => return ignored(format!("event of another inbox ({actual})")),
            None => return ignored("event without an inbox id"),
        }
    }
    let events = match event {
        "message_created" => {
            let sendable = is_outgoing(payload.get("message_type"))
                || (scope.forward_templates && is_template(payload.get("message_type")));
            if !sendable {
                return ignored("not an outgoing message");
            }
            if payload.get("private").and_then(Value::as_bool).unwrap_or(false) {
                return ignored("private note");
            }
            let Some(conversation_id) =
                id_text(payload.pointer("/conversation/id")).or_else(|| id_text(payload.get("conversation_id")))
            else {
                return ignored("message without a conversation id");
            };
            let Some(link) = lookup(&conversation_id)? else {
                return ignored(format!("conversation {conversation_id} is not a bridged ticket"));
            };
            let events = message_events(payload, &link);
            if events.is_empty() {
                return ignored("message with neither text nor attachments");
            }
            let message_id = id_text(payload.get("id"));
            events
                .into_iter()
                .enumerate()
                .map(|(part, event)| match &message_id {
                    Some(id) => event.with_dedupe_key(message_dedupe_key(id, part)),
                    None => event.into(),
                })
                .collect()
        }
        "conversation_status_changed" | "conversation_resolved" => {
            if conversation_status(payload) != Some("resolved") {
                return ignored("conversation status is not resolved");
            }
            let Some(conversation_id) = id_text(payload.get("id")) else {
                return ignored("conversation without an id");
            };
            let Some(link) = lookup(&conversation_id)? else {
                return ignored(format!("conversation {conversation_id} is not a bridged ticket"));
            };
            vec![events::close(&link.ticket_number, non_empty(&link.channel)).into()]
        }
        "" => return ignored("payload without an event"),
        other => return ignored(format!("event `{other}` is not handled")),
    };
    Ok(Ok(events))
}

/// `message_type` is `"outgoing"` in webhooks (`1` in push events).
fn is_outgoing(message_type: Option<&Value>) -> bool {
    match message_type {
        Some(Value::String(s)) => s == "outgoing",
        Some(Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    }
}

/// `message_type` `"template"` (`3`): a message Chatwoot itself sends (greeting, out-of-office,
/// CSAT), which `webhook_sendable?` sends to webhooks.
fn is_template(message_type: Option<&Value>) -> bool {
    match message_type {
        Some(Value::String(s)) => s == "template",
        Some(Value::Number(n)) => n.as_u64() == Some(3),
        _ => false,
    }
}

fn conversation_status(payload: &Value) -> Option<&str> {
    payload.get("status").and_then(Value::as_str).or_else(|| {
        payload
            .get("changed_attributes")?
            .as_array()?
            .iter()
            .find_map(|c| c.pointer("/status/current_value")?.as_str())
    })
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// One Outgoing event per attachment, the text as the caption of the first media attachment,
/// or as a text event of its own.
fn message_events(payload: &Value, link: &ConversationLink) -> Vec<BridgeEvent> {
    let ticket = &link.ticket_number;
    let content = payload
        .get("content")
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or("");
    let mut out = Vec::new();
    let mut caption_used = content.is_empty();
    for attachment in payload
        .get("attachments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let url = attachment.get("data_url").and_then(Value::as_str).unwrap_or("");
        let kind = attachment.get("file_type").and_then(Value::as_str).unwrap_or("file");
        let event = match kind {
            "location" => {
                let lat = attachment.get("coordinates_lat").and_then(Value::as_f64);
                let lng = attachment.get("coordinates_long").and_then(Value::as_f64);
                let (Some(lat), Some(lng)) = (lat, lng) else {
                    continue;
                };
                events::outgoing(ticket, MessageType::Location, &format!("{lat},{lng}"), "")
            }
            _ if url.is_empty() => continue,
            _ => {
                let message_type = match kind {
                    "image" => MessageType::Image,
                    "audio" => MessageType::Audio,
                    "video" => MessageType::Video,
                    _ => MessageType::File,
                };
                let caption = if caption_used { "" } else { content };
                caption_used = true;
                events::outgoing(ticket, message_type, caption, url)
            }
        };
        out.push(event);
    }
    if !caption_used {
        out.insert(0, events::outgoing(ticket, MessageType::Text, content, ""));
    }
    let channel = non_empty(&link.channel);
    out.into_iter()
        .map(|mut o| {
            o.channel = channel.clone();
            BridgeEvent::Outgoing(o)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dolphin_bridge_sdk::{OutgoingEvent, TicketCommand};

    /// An Incoming event of ticket `T1` for tests.
    pub(crate) fn event(message_type: MessageType, message: &str, media: &str) -> IncomingEvent {
        IncomingEvent {
            ticket_number: "T1".into(),
            channel: "whatsapp".into(),
            account_id: "628128778222".into(),
            contact_id: "c1".into(),
            message_type,
            message: message.into(),
            media_link: media.into(),
            customer_name: "".into(),
            created_date: "2021-04-28T15:39:37.945".into(),
            owner: "o".into(),
            group_id: None,
            language: None,
            extra: vec![],
        }
    }

    fn lookup(id: &str) -> Result<Option<ConversationLink>, AdapterError> {
        Ok((id == "7").then(|| ConversationLink {
            ticket_number: "T1".into(),
            channel: "whatsapp".into(),
        }))
    }

    const SCOPE: Scope<'static> = Scope {
        account_id: Some("1"),
        inbox_id: Some("1"),
        forward_templates: true,
    };

    /// Maps `payload` in inbox 1 (unless it names an inbox).
    fn map(mut payload: Value) -> Result<Vec<WebhookEvent>, Ignored> {
        if payload_inbox(&payload).is_none() && payload.is_object() {
            payload["inbox_id"] = json!(1);
        }
        webhook_events(&payload, SCOPE, lookup).unwrap()
    }

    fn outgoing(e: &WebhookEvent) -> &OutgoingEvent {
        match &e.event {
            BridgeEvent::Outgoing(o) => o,
            _ => panic!("not outgoing"),
        }
    }

    #[test]
    fn dedupe_keys() {
        assert_eq!(message_dedupe_key("42", 0), "message:42");
        assert_eq!(message_dedupe_key("42", 1), "message:42:2");
        assert_eq!(message_dedupe_key("42", 2), "message:42:3");
    }

    #[test]
    fn phones() {
        assert_eq!(
            phone_number("628128778222", "whatsapp").as_deref(),
            Some("+628128778222")
        );
        assert_eq!(
            phone_number("+62 812-877-8222", "telegram").as_deref(),
            Some("+628128778222")
        );
        assert_eq!(phone_number("123456789", "telegram"), None);
        assert_eq!(phone_number("08128778222", "whatsapp"), None);
        assert_eq!(phone_number("abc", "whatsapp"), None);
        assert_eq!(phone_number("1234567", "whatsapp"), None);
        assert_eq!(phone_number("6281287782221234", "whatsapp"), None);
    }

    #[test]
    fn contents() {
        assert_eq!(message_content(&event(MessageType::Text, "Stiker", "")), "Stiker");
        assert_eq!(
            message_content(&event(MessageType::Location, "-6.2, 106.8", "")),
            "Location: https://maps.google.com/?q=-6.2,106.8"
        );
        assert_eq!(
            message_content(&event(MessageType::Image, "look", "https://m/x.png")),
            "look\nhttps://m/x.png"
        );
        assert_eq!(
            message_content(&event(MessageType::File, "", "https://m/x.pdf")),
            "https://m/x.pdf"
        );
        let body = message_body(&event(MessageType::Text, "hi", ""), "d1", Some("v2"));
        assert_eq!(body["source_id"], "d1");
        assert_eq!(body["message_type"], "incoming");
        assert_eq!(body["content_attributes"]["bridge_tag"], "v2");
        assert!(
            message_body(&event(MessageType::Text, "hi", ""), "d1", None)
                .get("content_attributes")
                .is_none()
        );
        let mut anonymous = event(MessageType::Text, "hi", "");
        assert_eq!(contact_name(&anonymous), "628128778222");
        anonymous.customer_name = " Farhan ".into();
        assert_eq!(contact_name(&anonymous), "Farhan");
    }

    #[test]
    fn outgoing_text() {
        let events = map(
            json!({"event": "message_created", "id": 1001, "message_type": "outgoing",
            "private": false, "content": "Hello", "conversation": {"id": 7}, "account": {"id": 1}}),
        )
        .unwrap();
        assert_eq!(events.len(), 1);
        let o = outgoing(&events[0]);
        assert_eq!((o.ticket_number.as_str(), o.message.as_str()), ("T1", "Hello"));
        assert_eq!(o.channel.as_deref(), Some("whatsapp"));
        assert!(matches!(o.message_type, MessageType::Text));
        // The message id is the dedupe key: a second webhook with the same message is dropped
        // by the host.
        assert_eq!(events[0].dedupe_key.as_deref(), Some("message:1001"));
        let without_id = map(json!({"event": "message_created", "message_type": "outgoing",
            "content": "Hello", "conversation": {"id": 7}}))
        .unwrap();
        assert_eq!(without_id[0].dedupe_key, None);
    }

    #[test]
    fn the_same_message_gives_the_same_keys() {
        let payload = json!({"event": "message_created", "id": "55", "message_type": "outgoing",
            "content": "again", "conversation": {"id": 7}, "account": {"id": 1}});
        let keys =
            |events: Vec<WebhookEvent>| -> Vec<Option<String>> { events.into_iter().map(|e| e.dedupe_key).collect() };
        let first = keys(map(payload.clone()).unwrap());
        assert_eq!(first, [Some("message:55".to_owned())]);
        assert_eq!(keys(map(payload).unwrap()), first);
        let other = json!({"event": "message_created", "id": 56, "message_type": "outgoing",
            "content": "again", "conversation": {"id": 7}});
        assert_eq!(keys(map(other).unwrap()), [Some("message:56".to_owned())]);
    }

    #[test]
    fn attachments() {
        let events = map(
            json!({"event": "message_created", "id": 2002, "message_type": "outgoing",
            "content": "see", "conversation": {"id": 7}, "attachments": [
                {"file_type": "image", "data_url": "https://cw/a.png"},
                {"file_type": "location", "coordinates_lat": -6.2, "coordinates_long": 106.8},
                {"file_type": "file", "data_url": "https://cw/b.pdf"},
                {"file_type": "audio"}
            ]}),
        )
        .unwrap();
        assert_eq!(events.len(), 3);
        let (a, b, c) = (outgoing(&events[0]), outgoing(&events[1]), outgoing(&events[2]));
        assert!(matches!(a.message_type, MessageType::Image));
        assert_eq!((a.message.as_str(), a.media_link.as_str()), ("see", "https://cw/a.png"));
        assert!(matches!(b.message_type, MessageType::Location));
        assert_eq!(b.message, "-6.2,106.8");
        assert!(matches!(c.message_type, MessageType::File));
        assert_eq!((c.message.as_str(), c.media_link.as_str()), ("", "https://cw/b.pdf"));
        // One key per event of the message, all made of its id.
        let keys: Vec<Option<&str>> = events.iter().map(|e| e.dedupe_key.as_deref()).collect();
        assert_eq!(
            keys,
            [Some("message:2002"), Some("message:2002:2"), Some("message:2002:3")]
        );

        let only_location = map(json!({"event": "message_created", "message_type": "outgoing",
            "content": "here", "conversation": {"id": 7}, "attachments": [
                {"file_type": "location", "coordinates_lat": 1.5, "coordinates_long": 2.0}]}))
        .unwrap();
        assert_eq!(only_location.len(), 2);
        assert_eq!(outgoing(&only_location[0]).message, "here");
        assert_eq!(outgoing(&only_location[1]).message, "1.5,2");
    }

    #[test]
    fn resolved_closes() {
        let events = map(json!({"event": "conversation_status_changed", "id": 7,
            "status": "resolved", "account": {"id": 1}}))
        .unwrap();
        let BridgeEvent::Command(c) = &events[0].event else {
            panic!()
        };
        assert!(matches!(c.command, TicketCommand::Close));
        // A conversation can be resolved again after it is reopened: no key.
        assert_eq!(events[0].dedupe_key, None);
        assert_eq!(c.ticket_number, "T1");
        assert_eq!(c.channel.as_deref(), Some("whatsapp"));
        let via_changes = map(json!({"event": "conversation_resolved", "id": 7,
            "changed_attributes": [{"status": {"previous_value": "open", "current_value": "resolved"}}]}));
        assert!(via_changes.is_ok());
        assert!(map(json!({"event": "conversation_status_changed", "id": 7, "status": "open"})).is_err());
    }

    #[test]
    fn ignores() {
        let base = json!({"event": "message_created", "message_type": "outgoing", "private": false,
            "content": "x", "conversation": {"id": 7}});
        let with = |k: &str, v: Value| {
            let mut p = base.clone();
            p[k] = v;
            p
        };
        assert!(map(with("message_type", json!("incoming"))).is_err());
        assert!(map(with("private", json!(true))).is_err());
        assert!(map(with("conversation", json!({"id": 8}))).is_err());
        assert!(map(with("account", json!({"id": 2}))).is_err());
        assert!(map(with("event", json!("conversation_updated"))).is_err());
        assert!(map(with("content", json!(""))).is_err());
        assert!(map(json!({})).is_err());
        assert!(map(with("message_type", json!(1))).is_ok());
        assert!(map(with("inbox", json!({"id": 2}))).is_err());
        assert!(map(with("inbox_id", json!(2))).is_err());
        let no_inbox = webhook_events(&base, SCOPE, lookup).unwrap();
        assert!(matches!(no_inbox, Err(Ignored(reason)) if reason == "event without an inbox id"));
    }

    #[test]
    fn templates() {
        let template = json!({"event": "message_created", "id": 3003, "message_type": "template", "inbox": {"id": 1},
            "private": false, "content": "We are away", "conversation": {"id": 7}, "account": {"id": 1}});
        let events = map(template.clone()).unwrap();
        assert_eq!(outgoing(&events[0]).message, "We are away");
        assert_eq!(events[0].dedupe_key.as_deref(), Some("message:3003"));
        let off = Scope {
            forward_templates: false,
            ..SCOPE
        };
        assert!(webhook_events(&template, off, lookup).unwrap().is_err());
    }

    #[test]
    fn links_round_trip() {
        let t = TicketLink {
            conversation_id: 7,
            contact_id: 3,
            channel: "wa".into(),
            last_delivery: Some("d1".into()),
            last_message_id: Some(1001),
        };
        assert_eq!(TicketLink::from_json(&t.to_json()), Some(t));
        let c = ContactLink {
            id: 3,
            source_id: "s".into(),
        };
        assert_eq!(ContactLink::from_json(&c.to_json()), Some(c));
    }
}
