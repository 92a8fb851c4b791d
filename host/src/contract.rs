//! The 3Dolphins integration contract: the Incoming, Outgoing and Command events, their parsing
//! and validation. Pure data, no I/O.
//!
//! The loose ends of the contract are read as the spec page says: `GroupId`/`groupId` and
//! `Language`/`language` are both accepted, `messageType` is case-insensitive, identifiers must
//! be non-empty, media links must be absolute http(s) URLs, a location must parse, and fields the
//! contract does not name are kept and passed on.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The pattern of `createdDate`: `yyyy-MM-dd'T'HH:mm:ss.SSS`, no zone.
pub const CREATED_DATE_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3f";

/// What a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Text,
    Image,
    Video,
    Audio,
    File,
    Location,
}

impl MessageType {
    /// Every type, in the contract's order.
    pub const ALL: [MessageType; 6] = [
        MessageType::Text,
        MessageType::Image,
        MessageType::Video,
        MessageType::Audio,
        MessageType::File,
        MessageType::Location,
    ];

    /// The lower-case name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Text => "text",
            MessageType::Image => "image",
            MessageType::Video => "video",
            MessageType::Audio => "audio",
            MessageType::File => "file",
            MessageType::Location => "location",
        }
    }

    /// Parses a type name case-insensitively.
    pub fn parse(text: &str) -> Option<MessageType> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(text.trim()))
    }

    /// Whether this type carries a media link.
    pub fn is_media(self) -> bool {
        matches!(
            self,
            MessageType::Image | MessageType::Video | MessageType::Audio | MessageType::File
        )
    }
}

/// A customer message, 3Dolphins -> vendor, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncomingEvent {
    pub ticket_number: String,
    pub channel: String,
    pub account_id: String,
    pub contact_id: String,
    pub message_type: MessageType,
    pub message: String,
    pub media_link: String,
    pub customer_name: String,
    pub created_date: String,
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Fields the contract does not name, as received.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Why a body is not a valid Incoming event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// Not UTF-8, not JSON, or not a JSON object.
    #[error("{0}")]
    Malformed(String),
    /// A JSON object with one or more bad fields (all of them listed).
    #[error("invalid event: {}", .0.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
}

impl IncomingEvent {
    /// Parses and validates a request body.
    pub fn parse(body: &[u8]) -> Result<IncomingEvent, ParseError> {
        let text =
            std::str::from_utf8(body).map_err(|e| ParseError::Malformed(format!("body is not valid UTF-8: {e}")))?;
        let value: Value =
            serde_json::from_str(text).map_err(|e| ParseError::Malformed(format!("body is not valid JSON: {e}")))?;
        match value {
            Value::Object(map) => Self::from_object(map),
            other => Err(ParseError::Malformed(format!(
                "body must be a JSON object, got {}",
                json_kind(&other)
            ))),
        }
    }

    /// Validates a JSON object, collecting every bad field.
    pub fn from_object(mut map: Map<String, Value>) -> Result<IncomingEvent, ParseError> {
        let mut errors = Vec::new();
        let mut required = |map: &mut Map<String, Value>, name: &str, non_empty: bool| match map.remove(name) {
            None => {
                errors.push(FieldError::new(name, "is missing"));
                String::new()
            }
            Some(Value::String(s)) => {
                if non_empty && s.trim().is_empty() {
                    errors.push(FieldError::new(name, "must not be empty"));
                }
                if s.contains('\0') {
                    errors.push(FieldError::new(name, NUL_MESSAGE));
                }
                s
            }
            Some(other) => {
                errors.push(FieldError::new(
                    name,
                    format!("must be a string, got {}", json_kind(&other)),
                ));
                String::new()
            }
        };
        let ticket_number = required(&mut map, "ticketNumber", true);
        let channel = required(&mut map, "channel", true);
        let account_id = required(&mut map, "accountId", true);
        let contact_id = required(&mut map, "contactId", true);
        let message_type_text = required(&mut map, "messageType", true);
        let message = required(&mut map, "message", false);
        let media_link = required(&mut map, "mediaLink", false);
        let customer_name = required(&mut map, "customerName", false);
        let created_date = required(&mut map, "createdDate", true);
        let owner = required(&mut map, "owner", true);
        let group_id = optional(&mut map, &["groupId", "GroupId"], &mut errors);
        let language = optional(&mut map, &["language", "Language"], &mut errors);

        let message_type = if message_type_text.trim().is_empty() {
            None
        } else {
            let parsed = MessageType::parse(&message_type_text);
            if parsed.is_none() {
                errors.push(FieldError::new(
                    "messageType",
                    format!(
                        "`{}` is not one of text, image, video, audio, file, location",
                        shorten(&message_type_text)
                    ),
                ));
            }
            parsed
        };
        if let Some(kind) = message_type {
            check_content(kind, &message, &media_link, &mut errors);
        }
        if !created_date.trim().is_empty() && !is_created_date(&created_date) {
            errors.push(FieldError::new(
                "createdDate",
                format!(
                    "`{}` is not a date-time of the form yyyy-MM-ddTHH:mm:ss.SSS",
                    shorten(&created_date)
                ),
            ));
        }

        match message_type {
            Some(message_type) if errors.is_empty() => Ok(IncomingEvent {
                ticket_number,
                channel,
                account_id,
                contact_id,
                message_type,
                message,
                media_link,
                customer_name,
                created_date,
                owner,
                group_id,
                language,
                extra: map,
            }),
            _ => Err(ParseError::Invalid(errors)),
        }
    }
}

/// Why a field holding U+0000 is refused: PostgreSQL's text cannot hold it, so either store
/// would have to treat it differently (the embedded one took it, PostgreSQL failed every retry);
/// both refuse it, and 3Dolphins is told which field.
const NUL_MESSAGE: &str = "must not contain the NUL character (U+0000)";

/// Whether `text` is exactly `yyyy-MM-ddTHH:mm:ss.SSS` and a real date-time (chrono alone
/// would also accept a missing or longer fraction).
fn is_created_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 23
        && b[19] == b'.'
        && b[20..].iter().all(u8::is_ascii_digit)
        && chrono::NaiveDateTime::parse_from_str(text, CREATED_DATE_FORMAT).is_ok()
}

/// Takes the first present key among `names` (the spec's spellings of one field).
fn optional(map: &mut Map<String, Value>, names: &[&str], errors: &mut Vec<FieldError>) -> Option<String> {
    let mut found = None;
    for name in names {
        match map.remove(*name) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                if s.contains('\0') {
                    errors.push(FieldError::new(name, NUL_MESSAGE));
                }
                found.get_or_insert(s);
            }
            Some(other) => errors.push(FieldError::new(
                name,
                format!("must be a string, got {}", json_kind(&other)),
            )),
        }
    }
    found
}

/// The rules that depend on the message type.
fn check_content(kind: MessageType, message: &str, media_link: &str, errors: &mut Vec<FieldError>) {
    let message_missing = errors.iter().any(|e| e.field == "message");
    match kind {
        MessageType::Text if !message_missing && message.trim().is_empty() => {
            errors.push(FieldError::new("message", "must not be empty for a text message"));
        }
        MessageType::Location if !message_missing => {
            if let Err(problem) = parse_location(message) {
                errors.push(FieldError::new("message", problem));
            }
        }
        media if media.is_media() && !errors.iter().any(|e| e.field == "mediaLink") => {
            if let Err(problem) = check_media_link(media_link) {
                errors.push(FieldError::new(
                    "mediaLink",
                    format!("{problem} (required for {})", media.as_str()),
                ));
            }
        }
        _ => {}
    }
}

/// Parses a location message `latitude,longitude` into degrees.
pub fn parse_location(message: &str) -> Result<(f64, f64), String> {
    let bad = || {
        format!(
            "`{}` is not a location `latitude,longitude` in decimal degrees",
            shorten(message)
        )
    };
    let (lat, lng) = message.split_once(',').ok_or_else(bad)?;
    let number = |s: &str| {
        let s = s.trim();
        let plain = !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+');
        if plain {
            s.parse::<f64>().ok().filter(|v| v.is_finite())
        } else {
            None
        }
    };
    let (lat, lng) = (number(lat).ok_or_else(bad)?, number(lng).ok_or_else(bad)?);
    if !(-90.0..=90.0).contains(&lat) {
        return Err(format!("latitude {lat} is outside -90..90"));
    }
    if !(-180.0..=180.0).contains(&lng) {
        return Err(format!("longitude {lng} is outside -180..180"));
    }
    Ok((lat, lng))
}

/// Checks that a media link is an absolute http(s) URL with a host.
pub fn check_media_link(link: &str) -> Result<(), String> {
    if link.trim().is_empty() {
        return Err("must not be empty".into());
    }
    match url::Url::parse(link) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => Ok(()),
        _ => Err(format!("`{}` is not an absolute http(s) URL", shorten(link))),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Shortens user text quoted in an error message.
pub fn shorten(text: &str) -> String {
    const MAX: usize = 64;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}...", text.chars().take(MAX).collect::<String>())
    }
}

/// An agent's reply, vendor -> 3Dolphins, as posted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutgoingEvent {
    pub ticket_number: String,
    pub channel: String,
    pub message_type: MessageType,
    pub message: String,
    pub media_link: String,
    pub customer_name: String,
    pub owner: String,
    pub created_date: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A ticket command, vendor -> 3Dolphins, as posted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandEvent {
    pub ticket_number: String,
    pub channel: String,
    pub owner: String,
    /// `Close`.
    pub event: String,
}

/// An event for 3Dolphins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ThreeDolphinsEvent {
    Outgoing(OutgoingEvent),
    Command(CommandEvent),
}

impl ThreeDolphinsEvent {
    /// The ticket it belongs to.
    pub fn ticket_number(&self) -> &str {
        match self {
            ThreeDolphinsEvent::Outgoing(e) => &e.ticket_number,
            ThreeDolphinsEvent::Command(e) => &e.ticket_number,
        }
    }

    /// The JSON body 3Dolphins expects.
    pub fn body(&self) -> Value {
        match self {
            ThreeDolphinsEvent::Outgoing(e) => serde_json::to_value(e),
            ThreeDolphinsEvent::Command(e) => serde_json::to_value(e),
        }
        .expect("events serialize")
    }
}

/// The current time in the contract's `createdDate` format (UTC).
pub fn now_created_date() -> String {
    chrono::Utc::now().naive_utc().format(CREATED_DATE_FORMAT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn example() -> Value {
        json!({"ticketNumber":"294c9ea88f7e649f8c37ae895ebab247","channel":"whatsapp",
            "accountId":"628128778222","contactId":"d61d77735f3fe08bcf6d6b96fa06ba9d",
            "messageType":"text","message":"Halo","mediaLink":"","customerName":"Farhan Akbar",
            "createdDate":"2021-04-28T15:39:37.945","owner":"82ab0fd5cfd1e80d1ff97c0cfc9aaaa",
            "groupId":"","language":""})
    }

    fn parse(value: Value) -> Result<IncomingEvent, ParseError> {
        IncomingEvent::parse(value.to_string().as_bytes())
    }

    fn fields(err: ParseError) -> Vec<String> {
        match err {
            ParseError::Invalid(fields) => fields.into_iter().map(|f| f.field).collect(),
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    /// U+0000 cannot be stored by PostgreSQL: refused in every named field, on either store.
    #[test]
    fn a_nul_character_in_a_named_field_is_refused_naming_the_field() {
        for field in [
            "ticketNumber",
            "channel",
            "accountId",
            "contactId",
            "customerName",
            "owner",
            "message",
            "groupId",
        ] {
            let mut event = example();
            event[field] = Value::String("with\u{0}nul".into());
            let err = parse(event).unwrap_err();
            assert_eq!(fields(err.clone()), [field], "{field}: {err}");
            assert!(err.to_string().contains("U+0000"), "{err}");
        }
        // Elsewhere (unnamed fields go on as JSON, which escapes it) it is kept.
        let mut event = example();
        event["somethingNew"] = Value::String("with\u{0}nul".into());
        assert!(parse(event).is_ok());
    }

    #[test]
    fn accepts_the_spec_example() {
        let event = parse(example()).unwrap();
        assert_eq!(event.ticket_number, "294c9ea88f7e649f8c37ae895ebab247");
        assert_eq!(event.message_type, MessageType::Text);
        assert_eq!(event.group_id.as_deref(), Some(""));
        assert!(event.extra.is_empty());
    }

    #[test]
    fn lists_every_bad_field() {
        let mut value = example();
        let map = value.as_object_mut().unwrap();
        map.remove("ticketNumber");
        map.insert("channel".into(), json!(""));
        map.insert("accountId".into(), json!(42));
        map.insert("createdDate".into(), json!("2021-04-28 15:39"));
        let got = fields(parse(value).unwrap_err());
        assert_eq!(got, ["ticketNumber", "channel", "accountId", "createdDate"]);
    }

    #[test]
    fn case_insensitive_type_and_capitalised_optionals() {
        let mut value = example();
        let map = value.as_object_mut().unwrap();
        map.insert("messageType".into(), json!("Location"));
        map.insert("message".into(), json!("-6.2, 106.8"));
        map.remove("groupId");
        map.remove("language");
        map.insert("GroupId".into(), json!("g1"));
        map.insert("Language".into(), json!("id"));
        map.insert("somethingNew".into(), json!({"a": 1}));
        let event = parse(value).unwrap();
        assert_eq!(event.message_type, MessageType::Location);
        assert_eq!(event.group_id.as_deref(), Some("g1"));
        assert_eq!(event.language.as_deref(), Some("id"));
        assert_eq!(event.extra["somethingNew"], json!({"a": 1}));
        let out = serde_json::to_value(&event).unwrap();
        assert_eq!(out["messageType"], "location");
        assert_eq!(out["somethingNew"], json!({"a": 1}));
    }

    #[test]
    fn media_needs_absolute_link() {
        for link in ["", "/relative.png", "ftp://x/y.png", "not a url"] {
            let mut value = example();
            value["messageType"] = json!("image");
            value["mediaLink"] = json!(link);
            assert_eq!(fields(parse(value).unwrap_err()), ["mediaLink"], "{link}");
        }
        let mut value = example();
        value["messageType"] = json!("IMAGE");
        value["message"] = json!("");
        value["mediaLink"] = json!("https://cdn.example.com/a.png");
        assert!(parse(value).is_ok());
    }

    #[test]
    fn locations_must_parse_in_range() {
        for bad in ["", "abc", "91,0", "0,181", "1;2", "NaN,1", "inf,2", "1,2,3", "0x1,2"] {
            let mut value = example();
            value["messageType"] = json!("location");
            value["message"] = json!(bad);
            assert_eq!(fields(parse(value).unwrap_err()), ["message"], "{bad}");
        }
        assert_eq!(parse_location("-6.175,106.827").unwrap(), (-6.175, 106.827));
    }

    #[test]
    fn text_needs_message_and_type_must_be_known() {
        let mut value = example();
        value["message"] = json!("  ");
        assert_eq!(fields(parse(value).unwrap_err()), ["message"]);
        let mut value = example();
        value["messageType"] = json!("sticker");
        assert_eq!(fields(parse(value).unwrap_err()), ["messageType"]);
    }

    #[test]
    fn malformed_bodies() {
        assert!(matches!(IncomingEvent::parse(b"[1]"), Err(ParseError::Malformed(_))));
        assert!(matches!(IncomingEvent::parse(b"{"), Err(ParseError::Malformed(_))));
        assert!(matches!(
            IncomingEvent::parse(b"\xff\xfe"),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn created_date_must_be_real() {
        for bad in [
            "2021-02-30T10:00:00.000",
            "2021-04-28T15:39:37",
            "2021-04-28T15:39:37.945Z",
        ] {
            let mut value = example();
            value["createdDate"] = json!(bad);
            assert_eq!(fields(parse(value).unwrap_err()), ["createdDate"], "{bad}");
        }
    }
}
