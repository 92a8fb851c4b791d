//! Property tests (the fuzz targets) over the Incoming parser/validator and the webhook
//! signature check. `PROPTEST_CASES=N` runs more cases; CI runs the default.

use dolphin_bridge::config::{WebhookAuth, WebhookConfig};
use dolphin_bridge::contract::{IncomingEvent, ParseError};
use dolphin_bridge::webhook_auth::{SignedRequest, standard_webhooks_signature, verify};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const FIELDS: [&str; 14] = [
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
    "groupId",
    "GroupId",
    "language",
    "Language",
];

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("text"),
            Just("IMAGE"),
            Just("Location"),
            Just("-6.2,106.8"),
            Just("91,0"),
            Just("https://cdn.example.com/a.png"),
            Just("/relative"),
            Just("2021-04-28T15:39:37.945"),
            Just("2021-02-30T10:00:00.000"),
            Just(""),
            Just("  "),
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object built from the contract's field names (and some others) with arbitrary values.
fn event_like() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        prop::sample::select(FIELDS.to_vec()).prop_map(str::to_string),
        "[a-z]{1,6}"
    ];
    prop::collection::vec((field, any_json()), 0..18).prop_map(|pairs| {
        let mut map = Map::new();
        for (k, v) in pairs {
            map.insert(k, v);
        }
        Value::Object(map)
    })
}

fn valid_event() -> Value {
    json!({"ticketNumber":"294c9ea88f7e649f8c37ae895ebab247","channel":"whatsapp",
        "accountId":"628128778222","contactId":"d61d77735f3fe08bcf6d6b96fa06ba9d",
        "messageType":"text","message":"Halo","mediaLink":"","customerName":"Farhan Akbar",
        "createdDate":"2021-04-28T15:39:37.945","owner":"82ab0fd5cfd1e80d1ff97c0cfc9aaaa"})
}

proptest! {
    /// Arbitrary bytes never panic, and are either an event or a described refusal.
    #[test]
    fn parser_total_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        match IncomingEvent::parse(&bytes) {
            Ok(_) => {}
            Err(ParseError::Malformed(m)) => prop_assert!(!m.is_empty()),
            Err(ParseError::Invalid(fields)) => prop_assert!(!fields.is_empty()),
        }
    }

    /// Objects shaped like events: an accepted one survives a round trip through its stored
    /// form unchanged; a refused one names at least one field, and only fields it was given or
    /// the contract requires.
    #[test]
    fn parser_on_event_shapes(value in event_like()) {
        let body = value.to_string();
        match IncomingEvent::parse(body.as_bytes()) {
            Ok(event) => {
                let stored = serde_json::to_string(&event).unwrap();
                let again: IncomingEvent = serde_json::from_str(&stored).unwrap();
                prop_assert_eq!(again, event);
            }
            Err(ParseError::Invalid(fields)) => {
                prop_assert!(!fields.is_empty());
                for f in fields {
                    prop_assert!(FIELDS.contains(&f.field.as_str()), "unexpected field {}", f.field);
                }
            }
            Err(ParseError::Malformed(m)) => prop_assert!(false, "an object was called malformed: {}", m),
        }
    }

    /// Changing one mandatory field of a valid event to a wrong type is refused naming it.
    #[test]
    fn wrong_type_is_named(index in 0usize..10, replacement in prop_oneof![Just(Value::Null), Just(json!(1)), Just(json!([])), Just(json!({}))]) {
        let mut value = valid_event();
        let field = FIELDS[index];
        value[field] = replacement;
        match IncomingEvent::parse(value.to_string().as_bytes()) {
            Err(ParseError::Invalid(fields)) => prop_assert!(fields.iter().any(|f| f.field == field)),
            other => prop_assert!(false, "{field}: {other:?}"),
        }
    }

    /// A correct Standard Webhooks signature verifies; any change to the body, id or timestamp
    /// does not; garbage headers never panic.
    #[test]
    fn signatures(body in prop::collection::vec(any::<u8>(), 0..256), flip in any::<prop::sample::Index>(),
                  id in "[a-zA-Z0-9_]{1,20}", junk in ".{0,60}") {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let config = WebhookConfig { auth: WebhookAuth::StandardWebhooks, secret: Some(secret.into()), tolerance_s: 300, dedupe_header: None, header: None, query: None, hmac: None, ticket_pointers: Vec::new() };
        let now = 1_700_000_000;
        let signature = standard_webhooks_signature(secret, &id, now, &body);
        let headers = |id: &str, ts: i64, sig: &str| vec![
            ("webhook-id".to_string(), id.to_string()),
            ("webhook-timestamp".to_string(), ts.to_string()),
            ("webhook-signature".to_string(), sig.to_string()),
        ];
        let accepts = |headers: &[(String, String)], query: &str, body: &[u8]| {
            verify(&config, &SignedRequest { headers, query, body }, now).is_ok()
        };
        let good = headers(&id, now, &signature);
        prop_assert!(accepts(&good, "", &body));
        if !body.is_empty() {
            let mut changed = body.clone();
            let i = flip.index(changed.len());
            changed[i] ^= 0x01;
            prop_assert!(!accepts(&good, "", &changed));
        }
        let other_id = headers(&format!("{id}x"), now, &signature);
        prop_assert!(!accepts(&other_id, "", &body));
        let other_ts = headers(&id, now + 1, &signature);
        prop_assert!(!accepts(&other_ts, "", &body));
        let garbage = headers(&junk, now, &junk);
        let _ = accepts(&garbage, &junk, &body);
    }
}
