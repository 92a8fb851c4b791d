//! A corpus of bad input against one running bridge: malformed and hostile bodies, wrong types
//! and missing fields, oversized and deeply nested bodies, invalid UTF-8, wrong content types,
//! credentials and webhook signatures that do not hold, slow senders, broken body framing,
//! wrong methods and unknown paths. Every case goes over its own raw TCP connection, so the
//! exact answer (or the absence of one) is seen.
//!
//! For every case: a 4xx with a JSON body whose `error.code` names the problem (and whose
//! `fields` name exactly the fields at fault), never a 5xx, never a connection dropped without
//! an answer. The exceptions are asserted precisely:
//! - a client that does not finish its request head within `server.header_read_timeout_ms` is
//!   disconnected without one response byte: hyper 1.x ends the connection with a
//!   header-timeout error and writes nothing;
//! - a request hyper's HTTP/1 parser refuses (bad request line, bad `Content-Length`, control
//!   characters in a header, too many or too large headers, a too long target) gets hyper's own
//!   400/414/431 with an empty body, and an HTTP/2 preface gets the connection closed: the
//!   bridge never sees these requests;
//! - a refused `HEAD` gets the head of the JSON error and no body, as HTTP requires.
//!
//! Then: the bridge still runs, its log has no panic, no adapter ran for any corpus case (per
//! tenant, from `/metrics`), every refusal was counted by its code in `/metrics`, and nothing
//! reached the vendor or 3Dolphins (a valid sentinel event sent last is the vendor's only
//! delivery).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use dolphin_bridge_tests::bridge::{ADMIN_TOKEN, INCOMING_PATH, INCOMING_TOKEN, WebhookAuth};
use dolphin_bridge_tests::corpus_support::{
    RawEnd, RawExchange, RawOutcome, Step, authority, chunked, request_head, start_with_server_options,
};
use dolphin_bridge_tests::events::{EXAMPLE_OWNER, IDENTIFIER_FIELDS, MANDATORY_FIELDS, fresh_ticket};
use dolphin_bridge_tests::mock_chatwoot::{hmac_sha256, signature_headers_at};
use dolphin_bridge_tests::signing::{base64, standard_webhook_headers, unix_now};
use dolphin_bridge_tests::{BridgeConfig, Event, MockThreeDolphins, MockVendor, Tenant, adapters};
use serde_json::{Value, json};

use crate::common::{API_TOKEN, assert_accepted, echo_tenant, refusal_problem};

/// `server.max_body_bytes` of the corpus bridge.
const MAX_BODY: usize = 256 * 1024;
/// `server.header_read_timeout_ms` and `server.body_read_timeout_ms` of the corpus bridge.
const READ_TIMEOUT_MS: u64 = 500;
/// How long one exchange may take before it counts as a hang (generous: cases end within about
/// READ_TIMEOUT_MS, or at once).
const EXCHANGE_LIMIT: Duration = Duration::from_secs(15);
/// Exchanges running at once.
const PARALLEL: usize = 8;

/// The tenant whose webhooks carry Standard Webhooks signatures.
const SW_TENANT: &str = "signed-sw";
const SW_OWNER: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
const SW_SECRET: &str = "corpus-standard-webhooks-secret";
/// The tenant whose webhooks carry Chatwoot signatures.
const CW_TENANT: &str = "signed-cw";
const CW_OWNER: &str = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0";
const CW_SECRET: &str = "corpus-chatwoot-secret";
/// The Standard Webhooks id used once before the corpus, so that the corpus can replay it.
const SW_PRIMED_ID: &str = "msg_corpus_primed";

/// What a case must get.
#[derive(Debug, Clone)]
enum Expect {
    /// `status` with `{"error":{"code": code, "message": …, "fields": [exactly these]}}`.
    Refused {
        status: u16,
        code: &'static str,
        fields: Vec<String>,
    },
    /// A `HEAD` refused with `status`: the head of the same error, and no body (RFC 9110).
    RefusedHead { status: u16 },
    /// The header read timeout: the connection is closed (FIN or reset) with not one byte
    /// answered, while the client is still sending its head.
    ClosedWithoutResponse,
    /// Refused by hyper's HTTP/1 parser before the bridge sees a request: `status` with an
    /// empty body and `Connection: close` (hyper writes these itself; they are not JSON).
    RefusedByHyper { status: u16 },
    /// Closed by hyper without a response although the whole request was sent (an HTTP/2
    /// preface on this HTTP/1-only server).
    ClosedByHyper,
    /// Exactly this status and body: a webhook the bridge answered before gets that answer again.
    Answer { status: u16, body: Vec<u8> },
}

fn refused(status: u16, code: &'static str) -> Expect {
    Expect::Refused {
        status,
        code,
        fields: Vec::new(),
    }
}

fn invalid(fields: &[&str]) -> Expect {
    Expect::Refused {
        status: 422,
        code: "invalid_event",
        fields: fields.iter().map(|f| f.to_string()).collect(),
    }
}

fn malformed() -> Expect {
    refused(400, "malformed_json")
}

fn unknown_owner() -> Expect {
    Expect::Refused {
        status: 422,
        code: "unknown_tenant",
        fields: vec!["owner".into()],
    }
}

struct Case {
    category: &'static str,
    name: String,
    steps: Vec<Step>,
    expect: Expect,
}

/// Builds the corpus.
struct Corpus {
    cases: Vec<Case>,
    now: i64,
    /// Tickets the signed tenants know (a forged webhook for them would reach 3Dolphins).
    sw_ticket: String,
    cw_ticket: String,
    /// The answer to the primed webhooks, which their replays get again.
    primed_answer: (u16, Vec<u8>),
}

type Headers = Vec<(&'static str, Vec<u8>)>;

fn h(name: &'static str, value: impl AsRef<[u8]>) -> (&'static str, Vec<u8>) {
    (name, value.as_ref().to_vec())
}

/// A whole request (head with Content-Length, then the body) sent at once.
fn request(method: &str, target: &str, headers: &Headers, body: &[u8]) -> Vec<Step> {
    let borrowed: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let mut bytes = request_head(method, target, &borrowed, Some(body.len()));
    bytes.extend_from_slice(body);
    vec![Step::Send(bytes)]
}

/// A head without Content-Length (for chunked bodies and dribbling).
fn head_only(method: &str, target: &str, headers: &Headers) -> Vec<u8> {
    let borrowed: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    request_head(method, target, &borrowed, None)
}

fn json_ct() -> (&'static str, Vec<u8>) {
    h("content-type", "application/json")
}

fn bearer() -> (&'static str, Vec<u8>) {
    h("authorization", format!("Bearer {INCOMING_TOKEN}"))
}

fn admin_auth() -> (&'static str, Vec<u8>) {
    h("authorization", format!("Bearer {ADMIN_TOKEN}"))
}

/// The credential and JSON content type of a proper Incoming request.
fn incoming_headers() -> Headers {
    vec![json_ct(), bearer()]
}

/// A valid event's JSON with `field` set to the raw JSON text `raw` (e.g. `NaN`).
fn with_raw(field: &str, raw: &str) -> Vec<u8> {
    let placeholder = "\u{1}placeholder\u{1}";
    let text = String::from_utf8(Event::fresh().with(field, placeholder).bytes()).unwrap();
    let quoted = serde_json::to_string(placeholder).unwrap();
    text.replacen(&quoted, raw, 1).into_bytes()
}

/// A valid event's JSON with raw `bytes` placed inside `field`'s string value.
fn with_bytes_in(field: &str, bytes: &[u8]) -> Vec<u8> {
    let marker = "MARKER-0123456789";
    let mut body = Event::fresh().with(field, format!("a{marker}b")).bytes();
    let at = body.windows(marker.len()).position(|w| w == marker.as_bytes()).unwrap();
    body.splice(at..at + marker.len(), bytes.iter().copied());
    body
}

/// `body` with `insert` placed just before its final `}`.
fn before_last_brace(body: &[u8], insert: &[u8]) -> Vec<u8> {
    let at = body.iter().rposition(|b| *b == b'}').unwrap();
    let mut out = body[..at].to_vec();
    out.extend_from_slice(insert);
    out.extend_from_slice(&body[at..]);
    out
}

/// `body` with `insert` placed just after its first `{`.
fn after_first_brace(body: &[u8], insert: &[u8]) -> Vec<u8> {
    let mut out = b"{".to_vec();
    out.extend_from_slice(insert);
    out.extend_from_slice(&body[1..]);
    out
}

fn utf16(text: &str, big_endian: bool, bom: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let units = if bom { vec![0xfeff_u16] } else { Vec::new() };
    for unit in units.into_iter().chain(text.encode_utf16()) {
        out.extend_from_slice(&if big_endian {
            unit.to_be_bytes()
        } else {
            unit.to_le_bytes()
        });
    }
    out
}

/// A valid event padded with an unknown field to exactly `size` bytes.
fn padded_event(size: usize) -> Vec<u8> {
    let event = Event::fresh().with("padding", "");
    let base = event.bytes().len();
    let body = event.with("padding", "x".repeat(size - base)).bytes();
    assert_eq!(body.len(), size);
    body
}

impl Corpus {
    fn add(&mut self, category: &'static str, name: impl Into<String>, steps: Vec<Step>, expect: Expect) {
        self.cases.push(Case {
            category,
            name: name.into(),
            steps,
            expect,
        });
    }

    /// POST to the Incoming endpoint with the credential and JSON content type.
    fn incoming(&mut self, category: &'static str, name: impl Into<String>, body: &[u8], expect: Expect) {
        let steps = request("POST", INCOMING_PATH, &incoming_headers(), body);
        self.add(category, name, steps, expect);
    }

    fn malformed_json(&mut self) {
        const C: &str = "malformed JSON";
        let valid = Event::fresh().bytes();
        for i in 1..=20 {
            let cut = valid.len() * i / 21;
            self.incoming(C, format!("truncated to {cut} bytes"), &valid[..cut], malformed());
        }
        self.incoming(C, "without its closing brace", &valid[..valid.len() - 1], malformed());
        let garbage: [(&str, &[u8]); 9] = [
            ("a letter", b"x"),
            ("a closing brace", b"}"),
            ("an empty object", b"{}"),
            ("a comma", b","),
            ("a NUL byte", b"\0"),
            ("a closing bracket", b"]"),
            ("a line comment", b" // trailing"),
            ("a shell comment", b"\n# trailing"),
            ("a second event", &Event::fresh().bytes()),
        ];
        for (what, tail) in garbage {
            let mut body = Event::fresh().bytes();
            body.extend_from_slice(tail);
            self.incoming(C, format!("trailing garbage: {what}"), &body, malformed());
        }
        for (field, raw) in [
            ("accountId", "NaN"),
            ("contactId", "Infinity"),
            ("ticketNumber", "-Infinity"),
            ("unknownNumber", "NaN"),
        ] {
            self.incoming(C, format!("{field}: {raw}"), &with_raw(field, raw), malformed());
        }
        let comment_cases: [(&str, Vec<u8>); 4] = [
            (
                "a leading line comment",
                [b"// 3Dolphins\n".as_slice(), &valid].concat(),
            ),
            (
                "a leading block comment",
                [b"/* 3Dolphins */".as_slice(), &valid].concat(),
            ),
            (
                "a block comment inside",
                after_first_brace(&Event::fresh().bytes(), b"/* c */"),
            ),
            (
                "a leading shell comment",
                [b"# 3Dolphins\n".as_slice(), &valid].concat(),
            ),
        ];
        for (what, body) in comment_cases {
            self.incoming(C, format!("comment: {what}"), &body, malformed());
        }
        let text = String::from_utf8(Event::fresh().bytes()).unwrap();
        let bom_cases: [(&str, Vec<u8>); 5] = [
            ("UTF-8 BOM", [b"\xef\xbb\xbf".as_slice(), text.as_bytes()].concat()),
            ("UTF-16LE with BOM", utf16(&text, false, true)),
            ("UTF-16BE with BOM", utf16(&text, true, true)),
            ("UTF-16LE without BOM", utf16(&text, false, false)),
            (
                "UTF-32LE BOM",
                [b"\xff\xfe\x00\x00".as_slice(), text.as_bytes()].concat(),
            ),
        ];
        for (what, body) in bom_cases {
            self.incoming(C, format!("encoding: {what}"), &body, malformed());
        }
        let syntax: [(&str, Vec<u8>); 21] = [
            ("single-quoted strings", text.replace('"', "'").into_bytes()),
            (
                "unquoted keys",
                text.replacen("\"ticketNumber\"", "ticketNumber", 1).into_bytes(),
            ),
            ("a trailing comma", before_last_brace(text.as_bytes(), b",")),
            ("a leading zero", with_raw("n", "01")),
            ("a hex number", with_raw("n", "0x1F")),
            ("a plus sign", with_raw("n", "+1")),
            ("a bare fraction", with_raw("n", ".5")),
            ("a trailing dot", with_raw("n", "1.")),
            ("an exponent without digits", with_raw("n", "1e")),
            ("a raw newline in a string", with_bytes_in("message", b"line\nbreak")),
            ("a raw tab in a string", with_bytes_in("message", b"tab\there")),
            ("a raw NUL in a string", with_bytes_in("message", b"nul\0here")),
            ("an unknown escape", with_bytes_in("message", br"\x41")),
            ("a short unicode escape", with_bytes_in("message", br"\u12")),
            (
                "a missing colon",
                text.replacen("\"ticketNumber\":", "\"ticketNumber\" ", 1).into_bytes(),
            ),
            ("a missing comma", text.replacen(",\"", " \"", 1).into_bytes()),
            (
                "an unclosed string",
                br#"{"ticketNumber":"294c9ea88f7e649f8c37ae895ebab247}"#.to_vec(),
            ),
            ("True capitalised", with_raw("flag", "True")),
            ("undefined", with_raw("channel", "undefined")),
            (
                "a key without a value",
                before_last_brace(text.as_bytes(), b",\"orphan\":"),
            ),
            ("only a comma inside", b"{,}".to_vec()),
        ];
        for (what, body) in syntax {
            self.incoming(C, format!("syntax: {what}"), &body, malformed());
        }
        let not_objects: [(&str, Vec<u8>); 9] = [
            ("an empty array", b"[]".to_vec()),
            ("an array of one event", format!("[{text}]").into_bytes()),
            ("a string", br#""ticketNumber""#.to_vec()),
            ("a number", b"42".to_vec()),
            ("true", b"true".to_vec()),
            ("null", b"null".to_vec()),
            ("an empty body", Vec::new()),
            ("only whitespace", b" \r\n\t ".to_vec()),
            ("form encoding", b"ticketNumber=294c&owner=82ab".to_vec()),
        ];
        for (what, body) in not_objects {
            self.incoming(C, format!("not an object: {what}"), &body, malformed());
        }
    }

    fn deep_nesting(&mut self) {
        const C: &str = "deeply nested JSON";
        let arrays = |depth: usize| [b"[".repeat(depth), b"]".repeat(depth)].concat();
        let objects = |depth: usize| [br#"{"a":"#.repeat(depth), b"1".to_vec(), b"}".repeat(depth)].concat();
        let cases: [(&str, Vec<u8>); 7] = [
            ("10,000 arrays, balanced", arrays(10_000)),
            ("10,000 arrays, never closed", b"[".repeat(10_000)),
            ("100,000 arrays, never closed", b"[".repeat(100_000)),
            ("10,000 objects, balanced", objects(10_000)),
            (
                "an event whose message is 10,000 arrays deep",
                with_raw("message", std::str::from_utf8(&arrays(10_000)).unwrap()),
            ),
            (
                "an event with an unknown field 10,000 objects deep",
                with_raw("nested", std::str::from_utf8(&objects(10_000)).unwrap()),
            ),
            (
                "an event with an unknown field 50,000 arrays deep",
                with_raw("nested", std::str::from_utf8(&arrays(50_000)).unwrap()),
            ),
        ];
        for (what, body) in cases {
            assert!(body.len() <= MAX_BODY, "{what} must fit the body limit");
            self.incoming(C, what, &body, malformed());
        }
    }

    fn wrong_types(&mut self) {
        const C: &str = "wrong JSON types";
        let mandatory_values = [json!(42), json!(true), json!(["x"]), json!({"v": "x"}), Value::Null];
        for field in MANDATORY_FIELDS {
            for value in &mandatory_values {
                let body = Event::fresh().with(field, value.clone()).bytes();
                self.incoming(C, format!("{field} = {value}"), &body, invalid(&[field]));
            }
        }
        // The optional fields may be null (taken as absent); anything else but a string is wrong.
        let optional_values = [json!(-1.5e3), json!(false), json!([]), json!({})];
        for field in ["groupId", "GroupId", "language", "Language"] {
            for value in &optional_values {
                let body = Event::fresh().with(field, value.clone()).bytes();
                self.incoming(C, format!("{field} = {value}"), &body, invalid(&[field]));
            }
        }
    }

    fn missing_and_empty(&mut self) {
        const C: &str = "missing or empty fields";
        for field in MANDATORY_FIELDS {
            let body = Event::fresh().without(field).bytes();
            self.incoming(C, format!("without {field}"), &body, invalid(&[field]));
        }
        for field in IDENTIFIER_FIELDS {
            let body = Event::fresh().with(field, "").bytes();
            self.incoming(C, format!("{field} empty"), &body, invalid(&[field]));
            let body = Event::fresh().with(field, " \t\r\n\u{a0}").bytes();
            self.incoming(C, format!("{field} only whitespace"), &body, invalid(&[field]));
        }
        self.incoming(C, "an empty object", b"{}", invalid(&MANDATORY_FIELDS));
        let body = Event::fresh().message("").bytes();
        self.incoming(C, "a text without message text", &body, invalid(&["message"]));
        let body = Event::image("", "caption").bytes();
        self.incoming(C, "an image without mediaLink", &body, invalid(&["mediaLink"]));
    }

    fn unknown_owners(&mut self) {
        const C: &str = "unknown tenant";
        for (what, owner) in [
            (
                "an owner no tenant serves",
                "ffffffffffffffffffffffffffffffff".to_string(),
            ),
            ("a known owner in upper case", EXAMPLE_OWNER.to_ascii_uppercase()),
            ("a known owner with a trailing space", format!("{EXAMPLE_OWNER} ")),
        ] {
            let body = Event::fresh().owner(&owner).bytes();
            self.incoming(C, what, &body, unknown_owner());
        }
        // No named field may hold U+0000 (PostgreSQL cannot store it): refused before routing.
        let body = Event::fresh().owner(&format!("{EXAMPLE_OWNER}\0")).bytes();
        self.incoming(C, "a known owner with a NUL", &body, invalid(&["owner"]));
    }

    fn long_strings(&mut self) {
        const C: &str = "long strings";
        let long = |c: &str| c.repeat(200_000);
        let cases: [(&str, Vec<u8>, Expect); 10] = [
            (
                "messageType of 200,000 letters",
                Event::fresh().with("messageType", long("x")).bytes(),
                invalid(&["messageType"]),
            ),
            (
                "messageType of 100,000 two-byte letters",
                Event::fresh().with("messageType", "é".repeat(100_000)).bytes(),
                invalid(&["messageType"]),
            ),
            (
                "messageType of 30,000 escaped NULs",
                with_raw("messageType", &format!("\"{}\"", r"\u0000".repeat(30_000))),
                invalid(&["messageType"]),
            ),
            (
                "createdDate of 200,000 digits",
                Event::fresh().with("createdDate", long("2")).bytes(),
                invalid(&["createdDate"]),
            ),
            (
                "an image whose mediaLink is 200,000 letters",
                Event::image(&long("a"), "caption").bytes(),
                invalid(&["mediaLink"]),
            ),
            (
                "a location of 200,000 digits",
                Event::location(&long("1")).bytes(),
                invalid(&["message"]),
            ),
            (
                "accountId of 200,000 spaces",
                Event::fresh().with("accountId", long(" ")).bytes(),
                invalid(&["accountId"]),
            ),
            (
                "an owner of 200,000 letters",
                Event::fresh().owner(&long("o")).bytes(),
                unknown_owner(),
            ),
            (
                "a 200,000-letter key and no ticketNumber",
                Event::fresh().without("ticketNumber").with(&long("k"), "v").bytes(),
                invalid(&["ticketNumber"]),
            ),
            (
                "a string of 200,000 letters never closed",
                format!("{{\"message\":\"{}", long("m")).into_bytes(),
                malformed(),
            ),
        ];
        for (what, body, expect) in cases {
            assert!(body.len() <= MAX_BODY, "{what} must fit the body limit");
            self.incoming(C, what, &body, expect);
        }
    }

    fn invalid_utf8(&mut self) {
        const C: &str = "invalid UTF-8";
        let patterns: [(&str, &[u8]); 18] = [
            ("0xFF", b"\xff"),
            ("0xFE", b"\xfe"),
            ("a lone continuation byte", b"\x80"),
            ("a lone 0xBF", b"\xbf"),
            ("an overlong '/' (2 bytes)", b"\xc0\xaf"),
            ("an overlong '/' (3 bytes)", b"\xe0\x80\xaf"),
            ("an overlong '/' (4 bytes)", b"\xf0\x80\x80\xaf"),
            ("an encoded surrogate U+D800", b"\xed\xa0\x80"),
            ("an encoded surrogate U+DFFF", b"\xed\xbf\xbf"),
            ("a code point above U+10FFFF", b"\xf4\x90\x80\x80"),
            ("a 5-byte sequence", b"\xf8\x88\x80\x80\x80"),
            ("a 6-byte sequence", b"\xfc\x84\x80\x80\x80\x80"),
            ("a 2-byte sequence cut short", b"\xc3"),
            ("a 3-byte sequence cut short", b"\xe2\x82"),
            ("a 4-byte sequence cut short", b"\xf0\x9f\x98"),
            ("Latin-1 e-acute", b"caf\xe9"),
            ("a Windows-1252 curly quote", b"\x93quoted\x94"),
            ("CESU-8 (a surrogate pair)", b"\xed\xa0\xbd\xed\xb8\x80"),
        ];
        for (what, bytes) in patterns {
            self.incoming(
                C,
                format!("{what} in message"),
                &with_bytes_in("message", bytes),
                malformed(),
            );
        }
        let valid = Event::fresh().bytes();
        self.incoming(
            C,
            "0xFF in a key",
            &after_first_brace(&valid, b"\"k\xff\":1,"),
            malformed(),
        );
        self.incoming(
            C,
            "0xC0 between members",
            &after_first_brace(&valid, b"\xc0"),
            malformed(),
        );
        self.incoming(
            C,
            "0xFF after the object",
            &[valid.as_slice(), b"\xff"].concat(),
            malformed(),
        );
        let escapes: [(&str, &[u8]); 3] = [
            ("an escaped lone high surrogate", br"\ud800"),
            ("an escaped lone low surrogate", br"\udc00"),
            ("an escaped high surrogate before a letter", br"\ud83d\u0041"),
        ];
        for (what, bytes) in escapes {
            self.incoming(
                C,
                format!("{what} in message"),
                &with_bytes_in("message", bytes),
                malformed(),
            );
        }
    }

    fn content_types(&mut self) {
        const C: &str = "wrong content type";
        let types: [&[u8]; 17] = [
            b"text/plain",
            b"text/plain; charset=utf-8",
            b"application/x-www-form-urlencoded",
            b"multipart/form-data; boundary=x",
            b"application/xml",
            b"text/json",
            b"application/jsonp",
            b"application/json-patch+json",
            b"application/vnd.api+json",
            b"application/problem+json",
            b"json",
            b"",
            b"*/*",
            b"application/*",
            b"application/json, text/plain",
            b"application/octet-stream",
            b"application/js\xc3\xb6n",
        ];
        for content_type in types {
            let headers = vec![h("content-type", content_type), bearer()];
            let name = format!("Content-Type {:?}", String::from_utf8_lossy(content_type));
            let steps = request("POST", INCOMING_PATH, &headers, &Event::fresh().bytes());
            self.add(C, name, steps, refused(415, "unsupported_media_type"));
        }
    }

    fn credentials(&mut self) {
        const C: &str = "missing or wrong credential";
        let missing = || refused(401, "missing_credential");
        let wrong = || refused(401, "invalid_credential");
        let cases: [(&str, Headers, Expect); 13] = [
            ("no credential", vec![json_ct()], missing()),
            (
                "a wrong bearer token",
                vec![json_ct(), h("authorization", "Bearer not-the-token")],
                wrong(),
            ),
            (
                "a wrong X-Bridge-Token",
                vec![json_ct(), h("x-bridge-token", "not-the-token")],
                wrong(),
            ),
            (
                "an empty X-Bridge-Token",
                vec![json_ct(), h("x-bridge-token", "")],
                wrong(),
            ),
            (
                "the token cut short",
                vec![json_ct(), h("authorization", "Bearer e2e-incoming")],
                wrong(),
            ),
            (
                "the token with a suffix",
                vec![json_ct(), h("authorization", format!("Bearer {INCOMING_TOKEN}x"))],
                wrong(),
            ),
            (
                "the token in upper case",
                vec![
                    json_ct(),
                    h("authorization", format!("Bearer {}", INCOMING_TOKEN.to_uppercase())),
                ],
                wrong(),
            ),
            (
                "the admin token",
                vec![json_ct(), h("authorization", format!("Bearer {ADMIN_TOKEN}"))],
                wrong(),
            ),
            (
                "Basic credentials",
                vec![json_ct(), h("authorization", "Basic ZTJlOmUyZS1pbmNvbWluZy10b2tlbg==")],
                missing(),
            ),
            (
                "`Bearer` without a token",
                vec![json_ct(), h("authorization", "Bearer")],
                missing(),
            ),
            (
                "the token in another header",
                vec![json_ct(), h("x-api-key", INCOMING_TOKEN)],
                missing(),
            ),
            (
                "a bearer token of non-ASCII bytes",
                vec![json_ct(), h("authorization", b"Bearer \xff\xfe\xfd")],
                missing(),
            ),
            (
                "a wrong token and a malformed body",
                vec![json_ct(), h("authorization", "Bearer not-the-token")],
                wrong(),
            ),
        ];
        for (what, headers, expect) in cases {
            let body = if what.contains("malformed") {
                b"{not json".to_vec()
            } else {
                Event::fresh().bytes()
            };
            self.add(C, what, request("POST", INCOMING_PATH, &headers, &body), expect);
        }
        let target = format!("{INCOMING_PATH}?token={INCOMING_TOKEN}");
        let steps = request("POST", &target, &vec![json_ct()], &Event::fresh().bytes());
        self.add(C, "the token in the query string", steps, missing());
        // Refused before the body is read: an 8 MiB body declared, none of it sent.
        let mut head = head_only("POST", INCOMING_PATH, &vec![json_ct()]);
        head.truncate(head.len() - 2);
        head.extend_from_slice(b"content-length: 8388608\r\n\r\n");
        self.add(
            C,
            "no credential, an 8 MiB body declared and not sent",
            vec![Step::Send(head)],
            missing(),
        );
        let unauthorized = || refused(401, "unauthorized");
        let admin: [(&str, &str, &str, Headers, &[u8]); 5] = [
            ("admin outbox without a token", "GET", "/admin/outbox", vec![], b""),
            (
                "admin dead letters with a wrong token",
                "GET",
                "/admin/dead-letters",
                vec![h("authorization", "Bearer wrong")],
                b"",
            ),
            ("admin reload without a token", "POST", "/admin/reload", vec![], b""),
            (
                "admin replay with the Incoming token",
                "POST",
                "/admin/dead-letters/replay",
                vec![json_ct(), bearer()],
                br#"{"all":true}"#,
            ),
            (
                "admin adapters with the token as X-Bridge-Token",
                "GET",
                "/admin/adapters",
                vec![h("x-bridge-token", ADMIN_TOKEN)],
                b"",
            ),
        ];
        for (what, method, path, headers, body) in admin {
            self.add(C, what, request(method, path, &headers, body), unauthorized());
        }
    }

    fn huge_bodies(&mut self) {
        const C: &str = "body over max_body_bytes";
        let too_large = || refused(413, "body_too_large");
        let just_over = padded_event(MAX_BODY + 1);
        self.incoming(C, "one byte over, with Content-Length", &just_over, too_large());
        let mib = padded_event(1 << 20);
        self.incoming(C, "1 MiB, with Content-Length", &mib, too_large());
        let big = padded_event(8 << 20);
        self.incoming(C, "8 MiB, with Content-Length", &big, too_large());

        let declared = |length: &str, extra: &[u8]| {
            let mut head = head_only("POST", INCOMING_PATH, &incoming_headers());
            head.truncate(head.len() - 2);
            head.extend_from_slice(format!("content-length: {length}\r\n").as_bytes());
            head.extend_from_slice(extra);
            head.extend_from_slice(b"\r\n");
            head
        };
        self.add(
            C,
            "1 TB declared, nothing sent",
            vec![Step::Send(declared("1000000000000", b""))],
            too_large(),
        );
        self.add(
            C,
            "1 TB declared with Expect: 100-continue",
            vec![Step::Send(declared("1000000000000", b"expect: 100-continue\r\n"))],
            too_large(),
        );
        let mut over_declared = declared(&(MAX_BODY + 1).to_string(), b"");
        over_declared.extend_from_slice(&just_over[..1000]);
        self.add(
            C,
            "one byte over declared, a little sent, then silence",
            vec![Step::Send(over_declared), Step::Pause(Duration::from_secs(60))],
            too_large(),
        );

        let chunked_head = {
            let mut headers = incoming_headers();
            headers.push(h("transfer-encoding", "chunked"));
            head_only("POST", INCOMING_PATH, &headers)
        };
        let chunked_cases: [(&str, Vec<u8>); 4] = [
            ("one byte over, chunked in 1 KiB", chunked(&just_over, 1024)),
            ("8 MiB chunked in 64 KiB", chunked(&big, 64 * 1024)),
            ("1 MiB in one chunk", chunked(&mib, mib.len())),
            (
                "just over the limit in 64-byte chunks",
                chunked(&mib[..MAX_BODY + 4096], 64),
            ),
        ];
        for (what, body) in chunked_cases {
            self.add(
                C,
                what,
                vec![Step::Send([chunked_head.as_slice(), &body].concat())],
                too_large(),
            );
        }
        // A chunk that announces 4 GiB and then sends more than the limit of it.
        let mut announced = chunked_head.clone();
        announced.extend_from_slice(b"ffffffff\r\n");
        announced.extend_from_slice(&mib);
        self.add(
            C,
            "a chunk announcing 4 GiB",
            vec![Step::Send(announced), Step::Pause(Duration::from_secs(60))],
            too_large(),
        );

        let forged = self.forged_sw_body();
        let mut sw = self.sw_headers("msg_huge_1", self.now, &forged);
        sw.push(json_ct());
        self.add(
            C,
            "a Standard Webhooks webhook, with Content-Length",
            request("POST", &format!("/vendors/{SW_TENANT}/hook"), &sw, &just_over),
            too_large(),
        );
        let mut cw = self.cw_headers(self.now, &forged);
        cw.push(json_ct());
        cw.push(h("transfer-encoding", "chunked"));
        let mut steps = head_only("POST", &format!("/vendors/{CW_TENANT}/hook"), &cw);
        steps.extend_from_slice(&chunked(&mib, 16 * 1024));
        self.add(C, "a Chatwoot webhook, chunked", vec![Step::Send(steps)], too_large());
        let replay_body = [br#"{"all":true,"pad":""#.as_slice(), &b"x".repeat(70_000), b"\"}"].concat();
        self.add(
            C,
            "admin replay over its 64 KiB limit",
            request(
                "POST",
                "/admin/dead-letters/replay",
                &vec![json_ct(), admin_auth()],
                &replay_body,
            ),
            too_large(),
        );
    }

    /// A webhook body the signed tenants' echo adapter would turn into an Outgoing event for
    /// 3Dolphins, were it ever let through.
    fn forged_sw_body(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({"ticketNumber": self.sw_ticket, "message": "forged"})).unwrap()
    }

    fn forged_cw_body(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({"ticketNumber": self.cw_ticket, "message": "forged"})).unwrap()
    }

    fn sw_headers(&self, id: &str, timestamp: i64, body: &[u8]) -> Headers {
        standard_webhook_headers(SW_SECRET, id, timestamp, body)
            .into_iter()
            .map(|(name, value)| (static_name(&name), value.into_bytes()))
            .collect()
    }

    /// What a replay of a primed webhook must get: the primed answer, and nothing runs.
    fn primed_again(&self) -> Expect {
        Expect::Answer {
            status: self.primed_answer.0,
            body: self.primed_answer.1.clone(),
        }
    }

    fn cw_headers(&self, timestamp: i64, body: &[u8]) -> Headers {
        signature_headers_at(CW_SECRET, body, timestamp)
            .into_iter()
            .map(|(name, value)| (static_name(&name), value.into_bytes()))
            .collect()
    }

    /// Stale and future timestamps are 6 minutes off (the tolerance is 5): far enough that the
    /// time the corpus takes to run cannot bring a validly signed one back within tolerance.
    fn standard_webhooks(&mut self) {
        const C: &str = "Standard Webhooks signature";
        let body = self.forged_sw_body();
        let now = self.now;
        let target = format!("/vendors/{SW_TENANT}/hook");
        let missing = || refused(401, "missing_signature");
        let bad = || refused(401, "invalid_signature");
        let malformed_sig = || refused(401, "malformed_signature");
        let stale = || refused(401, "stale_timestamp");
        let signed = |id: &str, ts: i64, signed_body: &[u8]| {
            standard_webhook_headers(SW_SECRET, id, ts, signed_body)
                .into_iter()
                .map(|(name, value)| (static_name(&name), value.into_bytes()))
                .collect::<Headers>()
        };
        let with = |mut headers: Headers, name: &'static str, value: Vec<u8>| {
            headers.retain(|(n, _)| *n != name);
            headers.push((name, value));
            headers
        };
        let without = |mut headers: Headers, name: &str| {
            headers.retain(|(n, _)| *n != name);
            headers
        };
        let good = signed("msg_sw_1", now, &body);
        let sig_of = |headers: &Headers| {
            let value = &headers.iter().find(|(n, _)| *n == "webhook-signature").unwrap().1;
            String::from_utf8(value.clone()).unwrap()
        };
        let good_sig = sig_of(&good);
        let cases: Vec<(&str, Headers, Vec<u8>, Expect)> = vec![
            ("no signature headers", vec![], body.clone(), missing()),
            (
                "no webhook-id",
                without(good.clone(), "webhook-id"),
                body.clone(),
                missing(),
            ),
            (
                "no webhook-timestamp",
                without(good.clone(), "webhook-timestamp"),
                body.clone(),
                missing(),
            ),
            (
                "no webhook-signature",
                without(good.clone(), "webhook-signature"),
                body.clone(),
                missing(),
            ),
            (
                "signed with another secret",
                standard_webhook_headers("another-secret", "msg_sw_2", now, &body)
                    .into_iter()
                    .map(|(n, v)| (static_name(&n), v.into_bytes()))
                    .collect(),
                body.clone(),
                bad(),
            ),
            (
                "a tampered body",
                signed("msg_sw_3", now, &body),
                body.iter().map(|b| if *b == b'f' { b'F' } else { *b }).collect(),
                bad(),
            ),
            (
                "the signature of another id",
                with(signed("msg_sw_4", now, &body), "webhook-id", b"msg_sw_other".to_vec()),
                body.clone(),
                bad(),
            ),
            (
                "the signature of another timestamp",
                with(
                    signed("msg_sw_5", now - 1, &body),
                    "webhook-timestamp",
                    now.to_string().into_bytes(),
                ),
                body.clone(),
                bad(),
            ),
            (
                "scheme v2 instead of v1",
                with(
                    good.clone(),
                    "webhook-signature",
                    good_sig.replacen("v1,", "v2,", 1).into_bytes(),
                ),
                body.clone(),
                bad(),
            ),
            (
                "a signature that is not base64",
                with(good.clone(), "webhook-signature", b"v1,!!!not-base64!!!".to_vec()),
                body.clone(),
                bad(),
            ),
            (
                "an empty signature",
                with(good.clone(), "webhook-signature", Vec::new()),
                body.clone(),
                bad(),
            ),
            (
                "a truncated signature",
                with(good.clone(), "webhook-signature", good_sig.as_bytes()[..20].to_vec()),
                body.clone(),
                bad(),
            ),
            (
                "a signature without its scheme",
                with(good.clone(), "webhook-signature", good_sig.as_bytes()[3..].to_vec()),
                body.clone(),
                bad(),
            ),
            (
                "only bogus signatures in the list",
                with(
                    good.clone(),
                    "webhook-signature",
                    format!("v1,{} v1,{}", base64(&[0; 32]), base64(&[1; 32])).into_bytes(),
                ),
                body.clone(),
                bad(),
            ),
            (
                "the signature of the body plus a newline",
                signed("msg_sw_6", now, &[body.as_slice(), b"\n"].concat()),
                body.clone(),
                bad(),
            ),
            (
                "a signature of non-ASCII bytes",
                with(good.clone(), "webhook-signature", b"v1,\xff\xfe\xfd".to_vec()),
                body.clone(),
                bad(),
            ),
            (
                "a word for a timestamp",
                with(good.clone(), "webhook-timestamp", b"yesterday".to_vec()),
                body.clone(),
                malformed_sig(),
            ),
            (
                "a fractional timestamp",
                with(good.clone(), "webhook-timestamp", format!("{now}.5").into_bytes()),
                body.clone(),
                malformed_sig(),
            ),
            (
                "an ISO 8601 timestamp",
                with(good.clone(), "webhook-timestamp", b"2021-04-28T15:39:37Z".to_vec()),
                body.clone(),
                malformed_sig(),
            ),
            (
                "an empty timestamp",
                with(good.clone(), "webhook-timestamp", Vec::new()),
                body.clone(),
                malformed_sig(),
            ),
            (
                "a timestamp beyond 64 bits",
                with(good.clone(), "webhook-timestamp", b"99999999999999999999".to_vec()),
                body.clone(),
                malformed_sig(),
            ),
            (
                "a timestamp 6 minutes old",
                signed("msg_sw_7", now - 360, &body),
                body.clone(),
                stale(),
            ),
            (
                "a timestamp a day old",
                signed("msg_sw_8", now - 86_400, &body),
                body.clone(),
                stale(),
            ),
            ("timestamp 0", signed("msg_sw_9", 0, &body), body.clone(), stale()),
            (
                "a timestamp 6 minutes ahead",
                signed("msg_sw_10", now + 360, &body),
                body.clone(),
                stale(),
            ),
            (
                "a timestamp a year ahead",
                signed("msg_sw_11", now + 365 * 86_400, &body),
                body.clone(),
                stale(),
            ),
            (
                "a timestamp in milliseconds",
                signed("msg_sw_12", now * 1000, &body),
                body.clone(),
                stale(),
            ),
            (
                "the largest 64-bit timestamp",
                signed("msg_sw_13", i64::MAX, &body),
                body.clone(),
                stale(),
            ),
            (
                "the smallest 64-bit timestamp",
                signed("msg_sw_14", i64::MIN, &body),
                body.clone(),
                stale(),
            ),
            (
                "a negative timestamp",
                signed("msg_sw_15", -now, &body),
                body.clone(),
                stale(),
            ),
            (
                "the primed id again, same request",
                signed(SW_PRIMED_ID, self.now, &primed_body()),
                primed_body(),
                self.primed_again(),
            ),
            (
                "the primed id again, another body and timestamp",
                signed(SW_PRIMED_ID, now + 1, &body),
                body.clone(),
                self.primed_again(),
            ),
        ];
        for (what, mut headers, sent_body, expect) in cases {
            headers.push(json_ct());
            self.add(C, what, request("POST", &target, &headers, &sent_body), expect);
        }
    }

    fn chatwoot(&mut self) {
        const C: &str = "Chatwoot signature";
        let body = self.forged_cw_body();
        let now = self.now;
        let target = format!("/vendors/{CW_TENANT}/hook");
        let missing = || refused(401, "missing_signature");
        let bad = || refused(401, "invalid_signature");
        let malformed_sig = || refused(401, "malformed_signature");
        let stale = || refused(401, "stale_timestamp");
        let signed = |ts: i64, signed_body: &[u8]| self.cw_headers(ts, signed_body);
        let with = |mut headers: Headers, name: &'static str, value: Vec<u8>| {
            headers.retain(|(n, _)| *n != name);
            headers.push((name, value));
            headers
        };
        let without = |mut headers: Headers, name: &str| {
            headers.retain(|(n, _)| *n != name);
            headers
        };
        let good = signed(now, &body);
        let sig = "X-Chatwoot-Signature";
        let good_sig = String::from_utf8(good.iter().find(|(n, _)| *n == sig).unwrap().1.clone()).unwrap();
        let hex = good_sig.trim_start_matches("sha256=").to_string();
        let primed = primed_body();
        let primed_headers = signed(self.now, &primed);
        let primed_sig = String::from_utf8(primed_headers.iter().find(|(n, _)| *n == sig).unwrap().1.clone()).unwrap();
        let other_secret = {
            let mac = hmac_sha256(b"another-secret", &[now.to_string().as_bytes(), b".", &body]);
            let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
            with(
                good.clone(),
                "X-Chatwoot-Signature",
                format!("sha256={hex}").into_bytes(),
            )
        };
        let cases: Vec<(&str, Headers, Vec<u8>, Expect)> = vec![
            ("no signature headers", vec![], body.clone(), missing()),
            ("no signature", without(good.clone(), sig), body.clone(), missing()),
            (
                "no timestamp",
                without(good.clone(), "X-Chatwoot-Timestamp"),
                body.clone(),
                missing(),
            ),
            (
                "a signature without `sha256=`",
                with(good.clone(), "X-Chatwoot-Signature", hex.clone().into_bytes()),
                body.clone(),
                malformed_sig(),
            ),
            (
                "`sha1=` instead of `sha256=`",
                with(good.clone(), "X-Chatwoot-Signature", format!("sha1={hex}").into_bytes()),
                body.clone(),
                malformed_sig(),
            ),
            (
                "`SHA256=` in upper case",
                with(
                    good.clone(),
                    "X-Chatwoot-Signature",
                    format!("SHA256={hex}").into_bytes(),
                ),
                body.clone(),
                malformed_sig(),
            ),
            (
                "a signature that is not hex",
                with(
                    good.clone(),
                    "X-Chatwoot-Signature",
                    format!("sha256={}", "zz".repeat(32)).into_bytes(),
                ),
                body.clone(),
                malformed_sig(),
            ),
            (
                "an odd number of hex digits",
                with(
                    good.clone(),
                    "X-Chatwoot-Signature",
                    format!("sha256={}", &hex[..63]).into_bytes(),
                ),
                body.clone(),
                malformed_sig(),
            ),
            ("signed with another secret", other_secret, body.clone(), bad()),
            (
                "a tampered body",
                good.clone(),
                body.iter().map(|b| if *b == b'f' { b'F' } else { *b }).collect(),
                bad(),
            ),
            (
                "the signature of another timestamp",
                with(
                    signed(now - 1, &body),
                    "X-Chatwoot-Timestamp",
                    now.to_string().into_bytes(),
                ),
                body.clone(),
                bad(),
            ),
            (
                "an empty `sha256=`",
                with(good.clone(), "X-Chatwoot-Signature", b"sha256=".to_vec()),
                body.clone(),
                bad(),
            ),
            (
                "a truncated signature",
                with(
                    good.clone(),
                    "X-Chatwoot-Signature",
                    format!("sha256={}", &hex[..32]).into_bytes(),
                ),
                body.clone(),
                bad(),
            ),
            (
                "a timestamp 6 minutes old",
                signed(now - 360, &body),
                body.clone(),
                stale(),
            ),
            (
                "a timestamp an hour ahead",
                signed(now + 3_600, &body),
                body.clone(),
                stale(),
            ),
            (
                "a word for a timestamp",
                with(good.clone(), "X-Chatwoot-Timestamp", b"now".to_vec()),
                body.clone(),
                malformed_sig(),
            ),
            (
                "the smallest 64-bit timestamp",
                signed(i64::MIN, &body),
                body.clone(),
                stale(),
            ),
            (
                "the primed request again",
                primed_headers.clone(),
                primed.clone(),
                self.primed_again(),
            ),
            (
                "the primed request again, its signature's hex in upper case",
                with(
                    primed_headers.clone(),
                    "X-Chatwoot-Signature",
                    format!("sha256={}", primed_sig.trim_start_matches("sha256=").to_uppercase()).into_bytes(),
                ),
                primed.clone(),
                self.primed_again(),
            ),
        ];
        for (what, mut headers, sent_body, expect) in cases {
            headers.push(json_ct());
            self.add(C, what, request("POST", &target, &headers, &sent_body), expect);
        }
    }

    fn slow_senders(&mut self) {
        const C: &str = "slow sender";
        let forever = Duration::from_secs(60);
        // Header timeouts: the head is never completed.
        let dribbled_header = |target: &str| {
            vec![
                Step::Send(format!("POST {target} HTTP/1.1\r\nhost: 127.0.0.1\r\n").into_bytes()),
                Step::Dribble {
                    bytes: [b"x-slow: ".as_slice(), &b"a".repeat(600)].concat(),
                    chunk: 1,
                    every: Duration::from_millis(100),
                },
            ]
        };
        self.add(
            C,
            "Incoming head dribbled a byte per 100 ms",
            dribbled_header(INCOMING_PATH),
            Expect::ClosedWithoutResponse,
        );
        self.add(
            C,
            "webhook head dribbled a byte per 100 ms",
            dribbled_header(&format!("/vendors/{SW_TENANT}/hook")),
            Expect::ClosedWithoutResponse,
        );
        self.add(
            C,
            "connected, nothing sent",
            vec![Step::Pause(forever)],
            Expect::ClosedWithoutResponse,
        );
        self.add(
            C,
            "half a request line, then silence",
            vec![Step::Send(b"POST /3dolph".to_vec()), Step::Pause(forever)],
            Expect::ClosedWithoutResponse,
        );
        self.add(
            C,
            "a head without its blank line, then silence",
            vec![
                Step::Send(
                    format!(
                        "POST {INCOMING_PATH} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {INCOMING_TOKEN}\r\n"
                    )
                    .into_bytes(),
                ),
                Step::Pause(forever),
            ],
            Expect::ClosedWithoutResponse,
        );

        // Body timeouts: the head is complete, the body is not.
        let timeout = || refused(408, "body_timeout");
        let event = Event::fresh().bytes();
        let dribbled_body = |target: &str, mut headers: Headers, body: &[u8]| {
            headers.push(h("content-length", body.len().to_string()));
            vec![
                Step::Send(head_only("POST", target, &headers)),
                Step::Dribble {
                    bytes: body.to_vec(),
                    chunk: 1,
                    every: Duration::from_millis(100),
                },
            ]
        };
        self.add(
            C,
            "Incoming body dribbled a byte per 100 ms",
            dribbled_body(INCOMING_PATH, incoming_headers(), &event),
            timeout(),
        );
        let mut half = head_only(
            "POST",
            INCOMING_PATH,
            &[incoming_headers(), vec![h("content-length", event.len().to_string())]].concat(),
        );
        half.extend_from_slice(&event[..event.len() / 2]);
        self.add(
            C,
            "Incoming body half sent, then silence",
            vec![Step::Send(half), Step::Pause(forever)],
            timeout(),
        );
        let mut chunked_headers = incoming_headers();
        chunked_headers.push(h("transfer-encoding", "chunked"));
        self.add(
            C,
            "Incoming chunks dribbled one per 100 ms, never ending",
            vec![
                Step::Send(head_only("POST", INCOMING_PATH, &chunked_headers)),
                Step::Dribble {
                    bytes: b"1\r\n{\r\n".repeat(600),
                    chunk: 6,
                    every: Duration::from_millis(100),
                },
            ],
            timeout(),
        );
        let forged = self.forged_sw_body();
        let mut sw = self.sw_headers("msg_slow_1", self.now, &forged);
        sw.push(json_ct());
        self.add(
            C,
            "Standard Webhooks body dribbled",
            dribbled_body(&format!("/vendors/{SW_TENANT}/hook"), sw, &forged),
            timeout(),
        );
        let forged = self.forged_cw_body();
        let mut cw = self.cw_headers(self.now, &forged);
        cw.push(json_ct());
        cw.push(h("content-length", forged.len().to_string()));
        let mut stalled = head_only("POST", &format!("/vendors/{CW_TENANT}/hook"), &cw);
        stalled.extend_from_slice(&forged[..10]);
        self.add(
            C,
            "Chatwoot body stalled after 10 bytes",
            vec![Step::Send(stalled), Step::Pause(forever)],
            timeout(),
        );
        let replay = br#"{"deliveryId":"0000"}"#;
        let mut stalled = head_only(
            "POST",
            "/admin/dead-letters/replay",
            &vec![json_ct(), admin_auth(), h("content-length", replay.len().to_string())],
        );
        stalled.extend_from_slice(&replay[..5]);
        self.add(
            C,
            "admin replay body stalled after 5 bytes",
            vec![Step::Send(stalled), Step::Pause(forever)],
            timeout(),
        );
    }

    fn broken_framing(&mut self) {
        const C: &str = "broken body framing";
        let unreadable = || refused(400, "body_unreadable");
        let mut chunked_headers = incoming_headers();
        chunked_headers.push(h("transfer-encoding", "chunked"));
        let chunked_head = head_only("POST", INCOMING_PATH, &chunked_headers);
        let event = Event::fresh().bytes();
        let cases: [(&str, Vec<u8>); 4] = [
            ("a chunk size that is not hex", b"zz\r\nabc\r\n0\r\n\r\n".to_vec()),
            (
                "a chunk size beyond 64 bits",
                b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n".to_vec(),
            ),
            ("a chunk longer than announced", b"2\r\nabcdef\r\n0\r\n\r\n".to_vec()),
            (
                "a chunk size followed by garbage",
                [
                    format!("{:x}", event.len()).as_bytes(),
                    b" x\r\n",
                    &event,
                    b"\r\n0\r\n\r\n",
                ]
                .concat(),
            ),
        ];
        for (what, body) in cases {
            self.add(
                C,
                what,
                vec![Step::Send([chunked_head.as_slice(), &body].concat())],
                unreadable(),
            );
        }
        let mut cut = chunked_head.clone();
        cut.extend_from_slice(&chunked(&event, 64));
        cut.truncate(cut.len() - 5);
        self.add(
            C,
            "chunks without the last chunk, then the write side closed",
            vec![Step::Send(cut), Step::ShutdownWrite],
            unreadable(),
        );
        let mut short = head_only(
            "POST",
            INCOMING_PATH,
            &[incoming_headers(), vec![h("content-length", event.len().to_string())]].concat(),
        );
        short.extend_from_slice(&event[..event.len() - 10]);
        self.add(
            C,
            "10 bytes short of Content-Length, then the write side closed",
            vec![Step::Send(short), Step::ShutdownWrite],
            unreadable(),
        );
    }

    fn protocol_errors(&mut self) {
        const C: &str = "HTTP/1 protocol error (answered by hyper)";
        let bare = |status| Expect::RefusedByHyper { status };
        let start = format!("POST {INCOMING_PATH} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
        let with_head = |extra: &[u8]| [start.as_bytes(), extra, b"\r\n"].concat();
        let many_headers: Vec<u8> = (0..1000).flat_map(|i| format!("x-h{i}: v\r\n").into_bytes()).collect();
        let cases: [(&str, Vec<u8>, Expect); 8] = [
            ("a request line of garbage", b"GARBAGE\r\n\r\n".to_vec(), bare(400)),
            ("HTTP/3.0", b"GET / HTTP/3.0\r\nhost: x\r\n\r\n".to_vec(), bare(400)),
            ("Content-Length: abc", with_head(b"content-length: abc\r\n"), bare(400)),
            (
                "two different Content-Lengths",
                [
                    with_head(b"content-length: 5\r\ncontent-length: 6\r\n"),
                    b"abcdef".to_vec(),
                ]
                .concat(),
                bare(400),
            ),
            (
                "a control character in a header",
                with_head(b"x-ctl: a\x01b\r\n"),
                bare(400),
            ),
            (
                "a 200 KB header",
                with_head(&[b"x-big: ".as_slice(), &b"a".repeat(200_000), b"\r\n"].concat()),
                bare(431),
            ),
            ("1,000 headers", with_head(&many_headers), bare(431)),
            (
                "a 100 KB request target",
                format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(100_000)).into_bytes(),
                bare(414),
            ),
        ];
        for (what, bytes, expect) in cases {
            self.add(
                C,
                what,
                vec![Step::Send(bytes), Step::Pause(Duration::from_secs(60))],
                expect,
            );
        }
        self.add(
            C,
            "an HTTP/2 preface",
            vec![
                Step::Send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
                Step::Pause(Duration::from_secs(60)),
            ],
            Expect::ClosedByHyper,
        );
    }

    fn wrong_methods(&mut self) {
        const C: &str = "wrong method";
        let not_allowed = || refused(405, "method_not_allowed");
        for method in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "post"] {
            let steps = request(method, INCOMING_PATH, &incoming_headers(), &Event::fresh().bytes());
            self.add(C, format!("{method} {INCOMING_PATH}"), steps, not_allowed());
        }
        let steps = request("HEAD", INCOMING_PATH, &incoming_headers(), b"");
        self.add(
            C,
            format!("HEAD {INCOMING_PATH}"),
            steps,
            Expect::RefusedHead { status: 405 },
        );
        for (method, path) in [
            ("POST", "/admin/outbox"),
            ("DELETE", "/admin/dead-letters"),
            ("PUT", "/admin/adapters"),
            ("GET", "/admin/reload"),
            ("PATCH", "/admin/dead-letters/replay"),
        ] {
            let steps = request(method, path, &vec![admin_auth()], b"");
            self.add(C, format!("{method} {path}"), steps, not_allowed());
        }
    }

    fn unknown_paths(&mut self) {
        const C: &str = "unknown path";
        let not_found = || refused(404, "not_found");
        let long_path = format!("/{}", "a".repeat(8_000));
        // `/admin` and `/admin/` are the status page's (tests/e2e/status_page.rs).
        let paths: [&str; 18] = [
            "/",
            "/3dolphins",
            "/3dolphins/incoming/",
            "/3dolphins/incoming/extra",
            "/3DOLPHINS/INCOMING",
            "//3dolphins/incoming",
            "/3dolphins//incoming",
            "/3dolphins/incoming%20",
            "/3dolphins/incoming;v=1",
            "/3dolphins/%69ncoming",
            "/.env",
            "/..%2f..%2fetc%2fpasswd",
            "/healthz/x",
            "/vendors",
            "/favicon.ico",
            "/api/v1/incoming",
            "http://127.0.0.1/unknown",
            &long_path,
        ];
        for path in paths {
            let steps = request("POST", path, &incoming_headers(), &Event::fresh().bytes());
            let name = format!(
                "POST {}",
                if path.len() > 60 {
                    "/aaa… (8,000 letters)"
                } else {
                    path
                }
            );
            self.add(C, name, steps, not_found());
        }
        for path in ["/admin/unknown", "/admin/dead-letters/no-such-delivery"] {
            self.add(
                C,
                format!("GET {path}"),
                request("GET", path, &vec![admin_auth()], b""),
                not_found(),
            );
        }
        let unknown_tenant = || refused(404, "unknown_tenant");
        for path in [
            "/vendors/nobody/hook",
            "/vendors//hook",
            "/vendors/",
            "/vendors/%2e%2e/admin/outbox",
            "/vendors/SIGNED-SW/hook",
            "/vendors/signed-sw%00/hook",
        ] {
            let steps = request("POST", path, &vec![json_ct()], br#"{"ticketNumber":"x","message":"y"}"#);
            self.add(C, format!("POST {path}"), steps, unknown_tenant());
        }
    }
}

/// The body of the webhooks sent once before the corpus (so that the corpus can replay them):
/// verified, then answered 400 by the echo adapter with no event.
fn primed_body() -> Vec<u8> {
    br#"{"primed":true}"#.to_vec()
}

fn static_name(name: &str) -> &'static str {
    match name.to_ascii_lowercase().as_str() {
        "webhook-id" => "webhook-id",
        "webhook-timestamp" => "webhook-timestamp",
        "webhook-signature" => "webhook-signature",
        "x-chatwoot-signature" => "X-Chatwoot-Signature",
        "x-chatwoot-timestamp" => "X-Chatwoot-Timestamp",
        "x-chatwoot-delivery" => "X-Chatwoot-Delivery",
        other => panic!("unexpected signing header {other}"),
    }
}

/// What is wrong with `outcome` for `expect`, if anything.
fn problem(expect: &Expect, outcome: &RawOutcome) -> Option<String> {
    match expect {
        Expect::ClosedWithoutResponse => {
            let closed = matches!(outcome.end, RawEnd::Closed | RawEnd::Reset(_));
            if closed && outcome.received.is_empty() && !outcome.client_finished {
                None
            } else {
                Some(format!(
                    "expected the connection closed without a response while the head was still being sent; got {}",
                    outcome.describe()
                ))
            }
        }
        Expect::RefusedByHyper { status } => match outcome.response() {
            Some(response)
                if response.status == *status
                    && response.body.is_empty()
                    && response.header("connection") == Some("close") =>
            {
                None
            }
            _ => Some(format!(
                "expected hyper's bare {status} (no body, Connection: close); got {}",
                outcome.describe()
            )),
        },
        Expect::ClosedByHyper => {
            let closed = matches!(outcome.end, RawEnd::Closed | RawEnd::Reset(_));
            if closed && outcome.received.is_empty() {
                None
            } else {
                Some(format!(
                    "expected the connection closed without a response; got {}",
                    outcome.describe()
                ))
            }
        }
        Expect::RefusedHead { status } => match outcome.response_to_head() {
            Some(response)
                if response.status == *status
                    && response
                        .header("content-type")
                        .is_some_and(|ct| ct.starts_with("application/json")) =>
            {
                None
            }
            _ => Some(format!(
                "expected the head of a JSON {status} and no body; got {}",
                outcome.describe()
            )),
        },
        Expect::Answer { status, body } => match outcome.response() {
            Some(response) if response.status == *status && response.body.as_ref() == body.as_slice() => None,
            _ => Some(format!(
                "expected the first answer again ({status} {}); got {}",
                String::from_utf8_lossy(body),
                outcome.describe()
            )),
        },
        Expect::Refused { status, code, fields } => {
            if outcome.end == RawEnd::TimedOut {
                return Some(format!("no answer within {EXCHANGE_LIMIT:?}: {}", outcome.describe()));
            }
            let Some(response) = outcome.response() else {
                return Some(format!("no HTTP response: {}", outcome.describe()));
            };
            let wanted: Vec<&str> = fields.iter().map(String::as_str).collect();
            if let Some(problem) = refusal_problem(&response, *status, code, &wanted) {
                return Some(problem);
            }
            let named: BTreeSet<String> = response.error_fields().into_iter().collect();
            let expected: BTreeSet<String> = fields.iter().cloned().collect();
            if named != expected {
                return Some(format!(
                    "fields {named:?} instead of exactly {expected:?}: {}",
                    response.describe()
                ));
            }
            if !response
                .header("content-type")
                .is_some_and(|ct| ct.starts_with("application/json"))
            {
                return Some(format!(
                    "Content-Type {:?}, not application/json",
                    response.header("content-type")
                ));
            }
            None
        }
    }
}

/// Sums the samples of counter `name` in OpenMetrics `text` by the value of `label`.
fn metric_by_label(text: &str, name: &str, label: &str) -> BTreeMap<String, u64> {
    let mut sums = BTreeMap::new();
    let needle = format!("{label}=\"");
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name).and_then(|r| r.strip_prefix('{')) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Some(start) = labels.find(&needle) else {
            continue;
        };
        let key = labels[start + needle.len()..].split('"').next().unwrap_or_default();
        let value: f64 = value.trim().parse().unwrap_or_default();
        *sums.entry(key.to_string()).or_default() += value as u64;
    }
    sums
}

#[tokio::test(flavor = "multi_thread")]
async fn corpus_of_bad_input_is_refused_with_4xx_and_nothing_reaches_anyone() {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = MockVendor::start().await;
    let config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .max_body_bytes(MAX_BODY as u64)
        .tenant(echo_tenant("acme", EXAMPLE_OWNER, &vendor))
        .tenant(
            Tenant::new(SW_TENANT, SW_OWNER, adapters::echo())
                .webhook(WebhookAuth::with_secret("standard-webhooks", SW_SECRET)),
        )
        .tenant(
            Tenant::new(CW_TENANT, CW_OWNER, adapters::echo()).webhook(WebhookAuth::with_secret("chatwoot", CW_SECRET)),
        );
    let mut bridge = start_with_server_options(
        &config,
        &[
            ("header_read_timeout_ms", (READ_TIMEOUT_MS as i64).into()),
            ("body_read_timeout_ms", (READ_TIMEOUT_MS as i64).into()),
            // The corpus sends hundreds of wrong tokens from one address to see each refused with
            // its own 401; the throttle that follows 10 of them is tested in `auth_throttle`.
            ("auth_failure_limit", 0.into()),
        ],
    )
    .await;
    let addr = authority(bridge.url()).to_string();

    // Set-up: a ticket for each signed tenant (so a forged webhook would reach 3Dolphins), and
    // one verified webhook each, so that the corpus can replay them.
    let sw_ticket = fresh_ticket();
    let cw_ticket = fresh_ticket();
    for (owner, ticket) in [(SW_OWNER, &sw_ticket), (CW_OWNER, &cw_ticket)] {
        let id = assert_accepted(&bridge.send_event(Event::fresh().owner(owner).ticket(ticket)).await);
        bridge.wait_for_delivery(&id, "delivered").await;
    }
    let now = unix_now();
    let mut corpus = Corpus {
        cases: Vec::new(),
        now,
        sw_ticket,
        cw_ticket,
        primed_answer: (0, Vec::new()),
    };
    let mut primes = vec![(
        format!("/vendors/{SW_TENANT}/hook"),
        corpus.sw_headers(SW_PRIMED_ID, now, &primed_body()),
    )];
    primes.push((
        format!("/vendors/{CW_TENANT}/hook"),
        corpus.cw_headers(now, &primed_body()),
    ));
    for (target, mut headers) in primes {
        headers.push(json_ct());
        let outcome = RawExchange::run(
            &addr,
            request("POST", &target, &headers, &primed_body()),
            EXCHANGE_LIMIT,
        )
        .await;
        let response = outcome
            .response()
            .unwrap_or_else(|| panic!("priming {target}: {}", outcome.describe()));
        assert_eq!(
            response.status,
            400,
            "priming {target}: the echo adapter answers 400 to a body without a ticket: {}",
            response.describe()
        );
        corpus.primed_answer = (response.status, response.body.to_vec());
    }

    corpus.malformed_json();
    corpus.deep_nesting();
    corpus.wrong_types();
    corpus.missing_and_empty();
    corpus.unknown_owners();
    corpus.long_strings();
    corpus.invalid_utf8();
    corpus.content_types();
    corpus.credentials();
    corpus.huge_bodies();
    corpus.standard_webhooks();
    corpus.chatwoot();
    corpus.slow_senders();
    corpus.broken_framing();
    corpus.protocol_errors();
    corpus.wrong_methods();
    corpus.unknown_paths();
    let cases = corpus.cases;
    let names: BTreeSet<(&str, &str)> = cases.iter().map(|c| (c.category, c.name.as_str())).collect();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    assert!(cases.len() >= 200, "only {} cases", cases.len());

    // Run every case, PARALLEL at a time, each on its own connection.
    let limiter = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut running = tokio::task::JoinSet::new();
    for (index, case) in cases.iter().enumerate() {
        let steps = case.steps.clone();
        let addr = addr.clone();
        let permit = limiter.clone().acquire_owned().await.unwrap();
        running.spawn(async move {
            let outcome = RawExchange::run(&addr, steps, EXCHANGE_LIMIT).await;
            drop(permit);
            (index, outcome)
        });
    }
    let mut outcomes: Vec<Option<RawOutcome>> = vec![None; cases.len()];
    while let Some(done) = running.join_next().await {
        let (index, outcome) = done.expect("a case task");
        outcomes[index] = Some(outcome);
    }

    let mut failures = Vec::new();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_category: BTreeMap<&str, usize> = BTreeMap::new();
    let mut server_errors = 0;
    let mut largest_error = (0, String::new());
    for (case, outcome) in cases.iter().zip(&outcomes) {
        let outcome = outcome.as_ref().expect("every case ran");
        *by_category.entry(case.category).or_default() += 1;
        let status = match outcome.response() {
            Some(response) => {
                if response.status >= 500 {
                    server_errors += 1;
                }
                if response.body.len() > largest_error.0 {
                    largest_error = (response.body.len(), case.name.clone());
                }
                response.status.to_string()
            }
            None if outcome.received.is_empty() => "no response".to_string(),
            None => "unparsable".to_string(),
        };
        *by_status.entry(status).or_default() += 1;
        if let Some(problem) = problem(&case.expect, outcome) {
            failures.push(format!("[{}] {}: {problem}", case.category, case.name));
        }
    }

    // The bridge survived, and nothing of the corpus went anywhere: a valid sentinel event is
    // the vendor's only delivery, 3Dolphins got nothing, and no adapter ran for a corpus case
    // (each signed tenant ran twice in the set-up: one Incoming event, one primed webhook).
    let running_still = bridge.is_running();
    let panics = bridge.stderr().matches("panicked").count();
    let sentinel = Event::fresh().message("sentinel");
    let id = assert_accepted(&bridge.send_event(sentinel.clone()).await);
    bridge.wait_for_delivery(&id, "delivered").await;
    let stats = bridge.wait_until_settled().await;
    let bodies = vendor.bodies();
    let metrics = bridge.client().get(&format!("{}/metrics", bridge.url())).await.text();
    let calls = metric_by_label(&metrics, "dolphin_bridge_adapter_calls_total", "tenant");
    let refusals = metric_by_label(&metrics, "dolphin_bridge_refused_requests_total", "outcome");
    let mut expected_refusals: BTreeMap<String, u64> = BTreeMap::new();
    for case in &cases {
        match &case.expect {
            Expect::Refused { code, .. } => *expected_refusals.entry(code.to_string()).or_default() += 1,
            Expect::RefusedHead { .. } => *expected_refusals.entry("method_not_allowed".into()).or_default() += 1,
            Expect::ClosedWithoutResponse
            | Expect::RefusedByHyper { .. }
            | Expect::ClosedByHyper
            | Expect::Answer { .. } => {}
        }
    }

    println!("corpus by category:");
    for (category, n) in &by_category {
        println!("  {category}: {n}");
    }
    println!(
        "corpus by status: {}",
        by_status
            .iter()
            .map(|(status, n)| format!("{status}={n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("largest error body: {} bytes ({})", largest_error.0, largest_error.1);
    let closes: Vec<&RawOutcome> = cases
        .iter()
        .zip(&outcomes)
        .filter(|(case, _)| matches!(case.expect, Expect::ClosedWithoutResponse))
        .filter_map(|(_, outcome)| outcome.as_ref())
        .collect();
    println!(
        "header read timeout: {} connection(s) closed with no response bytes ({} by FIN, {} by reset)",
        closes.iter().filter(|o| o.received.is_empty()).count(),
        closes.iter().filter(|o| o.end == RawEnd::Closed).count(),
        closes.iter().filter(|o| matches!(o.end, RawEnd::Reset(_))).count(),
    );
    println!("corpus: {} cases, {panics} panics, {server_errors} 5xx", cases.len());

    if !running_still {
        failures.push("the bridge process is no longer running".into());
    }
    if panics > 0 {
        failures.push(format!("the bridge's log has {panics} panic(s):\n{}", bridge.stderr()));
    }
    if bodies.len() != 1 || bodies[0]["ticketNumber"] != sentinel.ticket_number().as_str() {
        failures.push(format!("the vendor received more than the sentinel event: {bodies:#?}"));
    }
    if !three_dolphins.event_posts().is_empty() {
        failures.push(format!(
            "3Dolphins received events: {:#?}",
            three_dolphins.event_posts()
        ));
    }
    let expected_calls: BTreeMap<String, u64> = [("acme", 1), (SW_TENANT, 2), (CW_TENANT, 2)]
        .into_iter()
        .map(|(t, n)| (t.to_string(), n))
        .collect();
    if calls != expected_calls {
        failures.push(format!(
            "adapter calls by tenant (/metrics) {calls:?} instead of {expected_calls:?}: an adapter ran for a corpus case"
        ));
    }
    let codes: BTreeSet<&String> = refusals.keys().chain(expected_refusals.keys()).collect();
    let differences: Vec<String> = codes
        .into_iter()
        .filter(|code| refusals.get(*code) != expected_refusals.get(*code))
        .map(|code| {
            format!(
                "{code}: {} counted, {} expected",
                refusals.get(code).copied().unwrap_or(0),
                expected_refusals.get(code).copied().unwrap_or(0)
            )
        })
        .collect();
    if !differences.is_empty() {
        failures.push(format!(
            "refused requests by code (/metrics) differ from the corpus: {}",
            differences.join(", ")
        ));
    }
    if (&stats["delivered"], &stats["dead"]) != (&Value::from(3), &Value::from(0)) {
        failures.push(format!(
            "the outbox holds more than the set-up and the sentinel: {stats}"
        ));
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}
