//! Bad Incoming events are refused with a 4xx naming every bad field, and nothing of them
//! reaches the vendor or 3Dolphins. Each test runs its cases against one bridge, reports every
//! failing case, then proves with a sentinel event that nothing was forwarded.

use dolphin_bridge_tests::Event;
use dolphin_bridge_tests::bridge::INCOMING_TOKEN;
use dolphin_bridge_tests::events::{IDENTIFIER_FIELDS, MANDATORY_FIELDS};
use serde_json::{Value, json};

use crate::common::{EchoEnv, Failures, assert_refused, refusal_problem};

/// Sends each event and expects 422 `invalid_event` naming exactly the listed fields among
/// the contract's (other fields may not be blamed).
async fn expect_invalid(env: &EchoEnv, cases: Vec<(String, Event, Vec<&str>)>) {
    let mut failures = Failures::default();
    for (case, event, fields) in cases {
        let response = env.bridge.send_event(event).await;
        let mut problem = refusal_problem(&response, 422, "invalid_event", &fields);
        if problem.is_none() {
            let blamed: Vec<String> = response
                .error_fields()
                .into_iter()
                .filter(|f| !fields.contains(&f.as_str()))
                .collect();
            if !blamed.is_empty() {
                problem = Some(format!(
                    "also blames valid field(s) {blamed:?}: {}",
                    response.describe()
                ));
            }
        }
        failures.check(&case, problem);
    }
    failures.assert_none();
}

#[tokio::test(flavor = "multi_thread")]
async fn each_missing_mandatory_field_is_refused_and_named() {
    let env = EchoEnv::start().await;
    let cases = MANDATORY_FIELDS
        .iter()
        .map(|field| (format!("without {field}"), Event::fresh().without(field), vec![*field]))
        .collect();
    expect_invalid(&env, cases).await;
    env.assert_nothing_forwarded().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_field_is_named_in_one_answer() {
    let env = EchoEnv::start().await;
    // All ten mandatory fields missing.
    let mut empty = Event::fresh();
    for field in MANDATORY_FIELDS {
        empty = empty.without(field);
    }
    let response = env.bridge.send_event(empty).await;
    assert_refused(&response, 422, "invalid_event", &MANDATORY_FIELDS);

    // Several different problems at once.
    let mixed = Event::fresh()
        .without("ticketNumber")
        .with("channel", "")
        .with("accountId", 628128778222_u64)
        .with("createdDate", "28/04/2021")
        .with("groupId", 7);
    let response = env.bridge.send_event(mixed).await;
    assert_refused(
        &response,
        422,
        "invalid_event",
        &["ticketNumber", "channel", "accountId", "createdDate", "groupId"],
    );
    let fields = response.json()["error"]["fields"].clone();
    for entry in fields.as_array().unwrap() {
        assert!(
            entry["message"].as_str().is_some_and(|m| !m.is_empty()),
            "a field error without a message: {entry}"
        );
    }
    env.assert_nothing_forwarded().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_empty_identifier_is_refused_and_named() {
    let env = EchoEnv::start().await;
    let mut cases: Vec<(String, Event, Vec<&str>)> = IDENTIFIER_FIELDS
        .iter()
        .map(|field| (format!("{field} empty"), Event::fresh().with(field, ""), vec![*field]))
        .collect();
    cases.extend(IDENTIFIER_FIELDS.iter().map(|field| {
        (
            format!("{field} blank"),
            Event::fresh().with(field, "   "),
            vec![*field],
        )
    }));
    expect_invalid(&env, cases).await;
    env.assert_nothing_forwarded().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_json_types_are_refused_and_named() {
    let env = EchoEnv::start().await;
    let wrong: [(&str, Value); 13] = [
        ("ticketNumber", json!(294)),
        ("channel", json!(["whatsapp"])),
        ("accountId", json!(628128778222_u64)),
        ("contactId", json!({"id": "d61d"})),
        ("messageType", json!(1)),
        ("message", json!(null)),
        ("message", json!(true)),
        ("mediaLink", json!(null)),
        ("customerName", json!(false)),
        ("createdDate", json!(1619599177945_u64)),
        ("owner", json!(null)),
        ("groupId", json!(5)),
        ("language", json!(["id"])),
    ];
    let cases = wrong
        .into_iter()
        .map(|(field, value)| {
            (
                format!("{field} = {value}"),
                Event::fresh().with(field, value),
                vec![field],
            )
        })
        .collect();
    expect_invalid(&env, cases).await;
    env.assert_nothing_forwarded().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_message_types_are_refused_and_named() {
    let env = EchoEnv::start().await;
    let cases = ["sticker", "gif", "txt", "image/png", "locations", "Stiker"]
        .into_iter()
        .map(|kind| {
            (
                format!("messageType {kind:?}"),
                Event::fresh().with("messageType", kind),
                vec!["messageType"],
            )
        })
        .collect();
    expect_invalid(&env, cases).await;
    env.assert_nothing_forwarded().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn media_without_an_absolute_http_link_is_refused_naming_media_link() {
    let env = EchoEnv::start().await;
    let links = [
        "",
        "   ",
        "cdn.example.com/a.jpg",
        "/media/a.jpg",
        "../a.jpg",
        "ftp://cdn.example.com/a.jpg",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://",
        "not a url",
    ];
    let mut cases = Vec::new();
    for kind in ["image", "video", "audio", "file"] {
        for link in links {
            cases.push((
                format!("{kind} with mediaLink {link:?}"),
                Event::image(link, "caption").with("messageType", kind),
                vec!["mediaLink"],
            ));
        }
    }
    expect_invalid(&env, cases).await;
    env.assert_nothing_forwarded().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_message_for_text_or_location_is_refused_naming_message() {
    let env = EchoEnv::start().await;
    let cases = vec![
        (
            "text with empty message".to_string(),
            Event::fresh().message(""),
            vec!["message"],
        ),
        (
            "text with blank message".to_string(),
            Event::fresh().message("  \t "),
            vec!["message"],
        ),
        (
            "location with empty message".to_string(),
            Event::location(""),
            vec!["message"],
        ),
    ];
    expect_invalid(&env, cases).await;
    env.assert_nothing_forwarded().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_locations_are_refused_naming_message() {
    let env = EchoEnv::start().await;
    let bad = [
        "91,0",
        "-90.0001,0",
        "0,180.5",
        "0,-181",
        "abc,def",
        "-6.2",
        "-6.2;106.8",
        "-6.2,106.8,5",
        "NaN,0",
        "inf,0",
        "1e1,2",
        "-6.2,",
        ",106.8",
        "Jakarta",
    ];
    let cases = bad
        .into_iter()
        .map(|loc| (format!("location {loc:?}"), Event::location(loc), vec!["message"]))
        .collect();
    expect_invalid(&env, cases).await;
    env.assert_nothing_forwarded().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_created_dates_are_refused_and_named() {
    let env = EchoEnv::start().await;
    let bad = [
        "2021-02-30T10:00:00.000",  // no such day
        "2021-13-01T10:00:00.000",  // no such month
        "2021-04-28T24:00:00.000",  // no such hour
        "2021-04-28T15:39:37",      // no milliseconds
        "2021-04-28T15:39:37.9",    // too few digits
        "2021-04-28T15:39:37.9451", // too many digits
        "2021-04-28 15:39:37.945",  // space, not T
        "2021-04-28T15:39:37.945Z", // a zone
        "2021-04-28T15:39:37.945+07:00",
        "2021-4-28T15:39:37.945", // month not two digits
        "28-04-2021T15:39:37.945",
        "2021-04-28",
        "yesterday",
    ];
    let cases = bad
        .into_iter()
        .map(|date| {
            (
                format!("createdDate {date:?}"),
                Event::fresh().with("createdDate", date),
                vec!["createdDate"],
            )
        })
        .collect();
    expect_invalid(&env, cases).await;
    env.assert_nothing_forwarded().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_that_are_not_a_json_object_are_malformed() {
    let env = EchoEnv::start().await;
    let bodies: [(&str, Vec<u8>); 9] = [
        ("not JSON", b"ticketNumber=294c9ea8".to_vec()),
        ("truncated JSON", br#"{"ticketNumber":"294c9ea8""#.to_vec()),
        (
            "the original's curly quotes",
            "{\u{201c}accountId\u{201d}:\u{201d}628128778222\u{201d}}"
                .as_bytes()
                .to_vec(),
        ),
        (
            "a JSON array",
            serde_json::to_vec(&json!([Event::fresh().json()])).unwrap(),
        ),
        ("a JSON string", br#""hello""#.to_vec()),
        ("JSON null", b"null".to_vec()),
        ("an empty body", Vec::new()),
        ("invalid UTF-8", {
            let mut bytes = br#"{"ticketNumber":""#.to_vec();
            bytes.extend_from_slice(&[0xff, 0xfe, 0xc3]);
            bytes.extend_from_slice(br#""}"#);
            bytes
        }),
        ("Latin-1 encoded name", {
            let mut bytes = Event::fresh().with("customerName", "JOSE").bytes();
            let at = bytes.windows(4).position(|w| w == b"JOSE").unwrap();
            bytes[at + 3] = 0xc9; // 'É' in Latin-1, not UTF-8
            bytes
        }),
    ];
    let mut failures = Failures::default();
    for (case, body) in bodies {
        let response = env.bridge.send_raw(Some("application/json"), body).await;
        failures.check(case, refusal_problem(&response, 400, "malformed_json", &[]));
    }
    failures.assert_none();
    env.assert_nothing_forwarded().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn other_content_types_are_refused_with_415() {
    let env = EchoEnv::start().await;
    let mut failures = Failures::default();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        "text/json",
    ] {
        let response = env.bridge.send_raw(Some(content_type), Event::fresh().bytes()).await;
        failures.check(
            content_type,
            refusal_problem(&response, 415, "unsupported_media_type", &[]),
        );
    }
    failures.assert_none();
    env.assert_nothing_forwarded().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_limit_are_refused_with_413() {
    const LIMIT: usize = 4096;
    let env = EchoEnv::start_with(|config, tenant| config.max_body_bytes(LIMIT as u64).tenant(tenant)).await;

    // A valid event padded just past the limit, with a Content-Length...
    let padded = |size: usize| {
        let event = Event::fresh().with("padding", "");
        let base = event.bytes().len();
        event.with("padding", "x".repeat(size - base)).bytes()
    };
    let too_big = padded(LIMIT + 1);
    assert_eq!(too_big.len(), LIMIT + 1);
    let response = env.bridge.send_raw(Some("application/json"), too_big).await;
    assert_refused(&response, 413, "body_too_large", &[]);
    assert_eq!(
        response.header("connection"),
        Some("close"),
        "a 413 that leaves the body unread must say `Connection: close`"
    );

    // ...and chunked, without one.
    let chunks: Vec<bytes::Bytes> = padded(LIMIT * 4)
        .chunks(1024)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let response = env
        .bridge
        .client()
        .post_chunked(
            &env.bridge.incoming_url(),
            &[
                ("content-type", "application/json"),
                ("authorization", &format!("Bearer {INCOMING_TOKEN}")),
            ],
            chunks,
        )
        .await
        .expect("a response to a chunked body over the limit");
    assert_refused(&response, 413, "body_too_large", &[]);
    // The rest of that body was not read: the connection cannot serve another request, and a
    // keep-alive client must be told so, or its next request on it fails.
    assert_eq!(
        response.header("connection"),
        Some("close"),
        "a 413 that leaves the body unread must say `Connection: close`"
    );

    // Exactly at the limit is fine.
    let at_limit = padded(LIMIT);
    let response = env.bridge.send_raw(Some("application/json"), at_limit).await;
    assert_eq!(
        response.status,
        202,
        "a body of exactly max_body_bytes: {}",
        response.describe()
    );
    env.vendor.wait_for_bodies(1).await;
    env.bridge.wait_until_settled().await;
    let bodies = env.vendor.bodies();
    assert_eq!(bodies.len(), 1, "an oversized body was forwarded: {bodies:#?}");
}

/// U+0000 in a stored field: PostgreSQL's text cannot hold it, so the bridge on PostgreSQL
/// answered 503 (a store failure) to every retry of 3Dolphins, for ever, while the embedded store
/// took it. Both refuse it now (422, naming the field), and nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_nul_character_is_refused_naming_its_field_on_postgresql_too() {
    use dolphin_bridge_tests::replica_support::{TempSchema, assert_store_is_postgres};
    use dolphin_bridge_tests::{Bridge, BridgeConfig, MockThreeDolphins, MockVendor};

    use crate::common::{API_TOKEN, echo_tenant};

    let schema = TempSchema::create().await;
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = MockVendor::start().await;
    let config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .store_url(schema.url())
        .tenant(echo_tenant(
            "acme",
            dolphin_bridge_tests::events::EXAMPLE_OWNER,
            &vendor,
        ));
    let bridge = Bridge::start(config).await;
    assert_store_is_postgres(&bridge).await;
    for field in ["customerName", "ticketNumber", "contactId"] {
        let event = Event::fresh().with(field, "with\u{0}nul");
        let response = bridge.send_event(event).await;
        assert_refused(&response, 422, "invalid_event", &[field]);
    }
    assert_eq!(schema.outbox_rows().await, 0, "nothing was stored");
}
