//! A tenant's secrets never leak, plain or encoded, through any place the bridge writes text
//! to: its log (stderr), an adapter's error as the dead letters show it (`GET /admin/dead-letters`,
//! `dead-letters show`), `check` on a configuration with a TOML syntax error on a secret's line,
//! and the `POST /admin/reload` 422 for such a file. And `/metrics` (which names every tenant)
//! answers only with its token when one is set.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use dolphin_bridge_tests::bridge::run_on_config_file;
use dolphin_bridge_tests::events::EXAMPLE_OWNER;
use dolphin_bridge_tests::mock_http::{MockServer, Recorded, Reply};
use dolphin_bridge_tests::reload_support::admin_reload;
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, MockThreeDolphins, Tenant, adapters};
use serde_json::Value;

use crate::common::{API_TOKEN, Failures, assert_accepted};

/// The vendor credential, in the tenant's `[tenants.secrets]` table (the echo adapter sends it as
/// `Authorization: Bearer`). A quote and a backslash: the characters Debug and JSON escape.
const VENDOR_TOKEN: &str = "vendor\"t0ken\\e2e-4321";
/// A fragment of [`VENDOR_TOKEN`] that no redaction marker or error text contains.
const VENDOR_TOKEN_PART: &str = "t0ken";
/// A secret left in `[tenants.config]` under a key the heuristic recognises (`passwd`).
const DB_PASSWORD: &str = "db-pa55wd-e2e-8765";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Percent-encodes every byte but the unreserved ones, as URL builders do.
fn percent_encoded(secret: &str) -> String {
    secret
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `(case, what the vendor answers)`: each secret in each form a vendor or an adapter may
/// echo it in.
fn leak_cases() -> Vec<(String, String)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64_url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut cases = Vec::new();
    for (name, secret) in [("vendor token", VENDOR_TOKEN), ("db password", DB_PASSWORD)] {
        cases.extend([
            (format!("{name}, raw"), format!("token {secret} refused")),
            (format!("{name}, debug-escaped"), format!("token {secret:?} refused")),
            (
                format!("{name}, json-escaped"),
                serde_json::json!({ "error": "bad token", "token": secret }).to_string(),
            ),
            (
                format!("{name}, percent-encoded"),
                format!("GET /x?access_token={}", percent_encoded(secret)),
            ),
            (
                format!("{name}, base64"),
                format!("token {} refused", b64.encode(secret)),
            ),
            (
                format!("{name}, url-safe base64"),
                format!("token {} refused", b64_url.encode(secret)),
            ),
            (
                format!("{name}, basic auth"),
                format!("Authorization: Basic {}", b64.encode(format!("bridge:{secret}"))),
            ),
        ]);
    }
    cases
}

/// The distinctive text of each leak: what must appear nowhere.
fn leaked_forms() -> Vec<String> {
    let mut forms: Vec<String> = leak_cases()
        .into_iter()
        .map(|(_, answer)| {
            // The part of the answer that encodes the secret: its longest word.
            answer
                .split([' ', '=', '"', ','])
                .max_by_key(|w| w.len())
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    forms.extend([VENDOR_TOKEN_PART.to_string(), DB_PASSWORD.to_string()]);
    forms
}

/// The first leaked form `text` contains.
fn leak_in(text: &str) -> Option<String> {
    leaked_forms().into_iter().find(|form| text.contains(form.as_str()))
}

/// A vendor that answers each delivery 400 with the leak named by the event's `message`; and
/// the `Authorization` header of every request it got.
async fn leaking_vendor() -> (MockServer, Arc<Mutex<Vec<String>>>) {
    let cases = leak_cases();
    let authorizations = Arc::new(Mutex::new(Vec::new()));
    let seen = authorizations.clone();
    let server = MockServer::start(Arc::new(move |request: &Recorded| {
        let authorization = request.header("authorization").unwrap_or_default().to_string();
        seen.lock().unwrap().push(authorization);
        let case = request.json()["message"].as_str().unwrap_or_default().to_string();
        match cases.iter().find(|(name, _)| *name == case) {
            Some((_, answer)) => Reply::text(400, answer),
            None => Reply::text(500, "unknown case"),
        }
    }))
    .await;
    (server, authorizations)
}

/// A TOML basic string holding `value`.
fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_string()).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_leaks_into_the_log_or_the_dead_letters_in_any_encoding() {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let (vendor, authorizations) = leaking_vendor().await;
    let tenant = Tenant::new("acme", EXAMPLE_OWNER, adapters::echo())
        .allow(&vendor.base_url())
        .config("url", &format!("{}/messages", vendor.base_url()))
        .config("db_passwd", DB_PASSWORD);
    let mut config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .tenant(tenant)
        .retry_schedule_ms(&[]);
    // Read by the adapter as config `token`, like a `[tenants.config]` value.
    config.extra_toml = format!("[tenants.secrets]\ntoken = {}\n", toml_string(VENDOR_TOKEN));
    let bridge = Bridge::start(config).await;

    let mut sent = Vec::new();
    for (case, _) in leak_cases() {
        let response = bridge.send_event(Event::fresh().message(&case)).await;
        sent.push((case, assert_accepted(&response)));
    }
    let mut failures = Failures::default();
    for (case, delivery_id) in &sent {
        let delivery = bridge.wait_for_delivery(delivery_id, "dead").await;
        let error = delivery["last_error"].as_str().unwrap_or_default().to_string();
        failures.check(
            &format!("{case}: GET /admin/dead-letters/{{id}}"),
            match leak_in(&error) {
                Some(form) => Some(format!("shows {form:?}: {error}")),
                None if !error.contains("[redacted]") => Some(format!("nothing was redacted: {error}")),
                None => None,
            },
        );
        let shown = run_on_config_file(bridge.config_path(), &["dead-letters", "show", delivery_id]);
        let output = format!("{}{}", text(&shown.stdout), text(&shown.stderr));
        failures.check(
            &format!("{case}: dead-letters show"),
            match (shown.status.success(), leak_in(&output)) {
                (false, _) => Some(format!("failed: {output}")),
                (true, Some(form)) => Some(format!("shows {form:?}: {output}")),
                (true, None) => None,
            },
        );
    }
    let listed = bridge.dead_letters(Some("acme")).await;
    let listed = Value::from(listed).to_string();
    failures.check(
        "GET /admin/dead-letters",
        leak_in(&listed).map(|form| format!("shows {form:?}")),
    );
    let log = bridge.stderr();
    failures.check(
        "the bridge's log",
        leak_in(&log).map(|form| format!("shows {form:?}:\n{log}")),
    );
    // The secret did reach the adapter, through the `config` import, and the vendor.
    let bearer = format!("Bearer {VENDOR_TOKEN}");
    let authorizations = authorizations.lock().unwrap().clone();
    failures.check(
        "the vendor got the token from [tenants.secrets]",
        (authorizations.len() != sent.len() || authorizations.iter().any(|a| *a != bearer))
            .then(|| format!("{} deliveries, authorizations {authorizations:?}", sent.len())),
    );
    failures.assert_none();
}

/// A line holding a secret, broken so that the file is no longer TOML.
fn broken_secret_lines() -> Vec<(&'static str, String)> {
    let value = toml_string(VENDOR_TOKEN);
    vec![
        ("unclosed string", format!("api_key = \"{VENDOR_TOKEN}\n")),
        ("missing =", format!("api_key {value}\n")),
        ("bare value", format!("api_key = {VENDOR_TOKEN}\n")),
        ("text after the value", format!("api_key = {value} trailing\n")),
    ]
}

/// A configuration `check` and the bridge accept, but for `broken_line` appended to the
/// tenant's `[tenants.config]`.
fn config_text(three_dolphins: &str, broken_line: &str) -> String {
    let tenant = Tenant::new("acme", EXAMPLE_OWNER, adapters::echo()).config("tag", "acme-tag");
    let mut text = BridgeConfig::new(three_dolphins)
        .api_token(API_TOKEN)
        .tenant(tenant)
        .to_toml();
    assert!(text.contains("[tenants.config]\n"), "{text}");
    text = text.replace("[tenants.config]\n", &format!("[tenants.config]\n{broken_line}"));
    text
}

/// The line (from 1) of `text` that holds `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("the line is there")
        + 1
}

/// What is wrong with an error `shown` for the syntax error on `line`: the secret shown, or the
/// place not named.
fn syntax_error_problem(shown: &str, line: usize) -> Option<String> {
    if let Some(form) = leak_in(shown) {
        return Some(format!("shows {form:?}: {shown}"));
    }
    (!shown.contains(&format!("line {line}, column "))).then(|| format!("does not name line {line}: {shown}"))
}

#[test]
fn check_names_a_toml_syntax_error_without_quoting_the_secret_on_its_line() {
    let mut failures = Failures::default();
    for (case, broken) in broken_secret_lines() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let config = config_text("http://127.0.0.1:9", &broken);
        let path = dir.path().join("bridge.toml");
        std::fs::write(&path, &config).expect("write the config");
        let output = run_on_config_file(&path, &["check"]);
        let shown = format!("{}{}", text(&output.stdout), text(&output.stderr));
        let problem = match output.status.success() {
            true => Some(format!("accepted: {shown}")),
            false => syntax_error_problem(&shown, line_of(&config, "api_key")),
        };
        failures.check(case, problem);
    }
    failures.assert_none();
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_of_a_file_with_a_toml_syntax_error_never_shows_the_secret_on_its_line() {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let good = config_text(&three_dolphins.base_url(), "");
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("bridge.toml");
    std::fs::write(&path, &good).expect("write the config");
    let bridge = dolphin_bridge_tests::bridge::start_on_config_file(&path, None).await;

    let mut failures = Failures::default();
    for (case, broken) in broken_secret_lines() {
        let config = config_text(&three_dolphins.base_url(), &broken);
        std::fs::write(&path, &config).expect("write the broken config");
        let response = admin_reload(&bridge).await;
        let problem = match response.status {
            422 => syntax_error_problem(&response.text(), line_of(&config, "api_key")),
            other => Some(format!("status {other} instead of 422: {}", response.text())),
        };
        failures.check(&format!("{case}: POST /admin/reload"), problem);
    }
    // Each rejected reload was logged (by the admin call, and by the file watcher).
    bridge.wait_for_log("configuration reload rejected").await;
    let log = bridge.stderr();
    failures.check(
        "the bridge's log",
        leak_in(&log).map(|form| format!("shows {form:?}:\n{log}")),
    );
    failures.assert_none();
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_answer_only_with_their_token_when_one_is_set() {
    const METRICS_TOKEN: &str = "e2e-metrics-token-0123";
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let mut config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .tenant(Tenant::new("acme", EXAMPLE_OWNER, adapters::echo()));
    config.extra_toml = format!("[metrics]\ntoken = \"{METRICS_TOKEN}\"\n");
    let bridge = Bridge::start(config).await;
    let url = format!("{}/metrics", bridge.url());
    let client = bridge.client();

    let mut failures = Failures::default();
    let bearer = |token: &str| format!("Bearer {token}");
    for (case, headers) in [
        ("no credential", vec![]),
        (
            "a wrong token",
            vec![("authorization", bearer("e2e-metrics-token-0124"))],
        ),
        (
            "the admin token",
            vec![("authorization", bearer(dolphin_bridge_tests::bridge::ADMIN_TOKEN))],
        ),
        (
            "the token without Bearer",
            vec![("authorization", METRICS_TOKEN.to_string())],
        ),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = client.send("GET", &url, &headers, bytes::Bytes::new()).await;
        failures.check(
            case,
            crate::common::refusal_problem(&response, 401, "unauthorized", &[]).or_else(|| {
                response
                    .text()
                    .contains("acme")
                    .then(|| format!("the refusal names a tenant: {}", response.text()))
            }),
        );
    }
    let auth = bearer(METRICS_TOKEN);
    let response = client
        .send("GET", &url, &[("authorization", auth.as_str())], bytes::Bytes::new())
        .await;
    failures.check(
        "the metrics token",
        (response.status != 200 || !response.text().contains("dolphin_bridge_"))
            .then(|| format!("not the metrics: {}", response.describe())),
    );
    failures.assert_none();
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_stay_open_without_a_token() {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let config = BridgeConfig::new(&three_dolphins.base_url()).api_token(API_TOKEN);
    let bridge = Bridge::start(config).await;
    let response = bridge.client().get(&format!("{}/metrics", bridge.url())).await;
    assert_eq!(response.status, 200, "{}", response.describe());
}
