//! Standard HTTP clients in adapters: `fetch()` in JavaScript, `urllib.request` in Python and a
//! wasi:http client (`wstd`) in Rust, each through `plugin test` with the same fixtures. A
//! request to the fake vendor (the tenant's one allowed origin) is sent with its secret header
//! redacted in what is printed; a request to another host is refused, and the policy's reason is
//! printed.

use std::process::Output;

use dolphin_bridge_tests::adapters;
use dolphin_bridge_tests::bridge::run_plugin_test;

/// The adapters, one per language, the client each uses, and what a refused request makes of
/// the Incoming event: wasi:http's `HTTP-request-denied` carries no reason, so `fetch()` and
/// wstd cannot tell it from an outage and retry later; Python's `urllib` goes through
/// `http.send`, whose denial names the policy's reason, and is permanent.
const ADAPTERS: &[(&str, &str, &str)] = &[
    (
        "standard-http-js",
        "fetch()",
        "result: retry_later: adapter asked to retry later: post message: TypeError: NetworkError",
    ),
    (
        "standard-http-python",
        "urllib.request",
        "result: permanent: adapter failed permanently: post message: denied by the bridge: https://vendor.example:443 is not an allowed host",
    ),
    (
        "standard-http-rust",
        "wstd::http::Client",
        "result: retry_later: adapter asked to retry later: post message: ErrorCode::HttpRequestDenied",
    ),
];

/// What the fixtures' tenant keeps secret (`tests/fixtures/standard-http/*/tenant.toml`).
const TOKEN: &str = "standard-http-fixture-token";

fn run(adapter: &str, fixtures: &str) -> (Output, String) {
    let dir = adapters::workspace_root()
        .join("tests/fixtures/standard-http")
        .join(fixtures);
    let output = run_plugin_test(&adapters::adapter(adapter), &dir);
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text)
}

#[test]
fn each_languages_standard_client_reaches_the_allowed_vendor_with_its_secret_redacted() {
    for (adapter, client, _) in ADAPTERS {
        let (output, text) = run(adapter, "allowed");
        assert_eq!(output.status.code(), Some(0), "{adapter} ({client}):\n{text}");
        let incoming = text
            .split("== ")
            .find(|s| s.starts_with("incoming/01-customer-message.json"))
            .unwrap_or_else(|| panic!("{adapter}: the Incoming fixture is reported:\n{text}"));
        assert!(incoming.contains("result: ok"), "{adapter}: {incoming}");
        assert!(
            incoming.contains("-> vendor POST /messages"),
            "{adapter} ({client}) sent the vendor request: {incoming}"
        );
        assert!(
            incoming.contains(r#""message": "Halo""#),
            "{adapter}: its body: {incoming}"
        );
        assert!(
            incoming
                .to_ascii_lowercase()
                .contains("authorization: bearer [redacted]"),
            "{adapter}: the secret header, redacted: {incoming}"
        );
        assert!(!text.contains(TOKEN), "{adapter}: a secret was printed:\n{text}");
    }
}

#[test]
fn each_languages_standard_client_is_refused_a_host_outside_the_allow_list_with_the_reason() {
    for (adapter, client, refused) in ADAPTERS {
        let (output, text) = run(adapter, "denied");
        // The one fixture is `*.fails.json`: it passes when the Incoming event fails.
        assert_eq!(output.status.code(), Some(0), "{adapter} ({client}):\n{text}");
        assert!(text.contains("PASS (failed as expected)"), "{adapter}:\n{text}");
        assert!(text.contains(refused), "{adapter} ({client}): {refused}:\n{text}");
        assert!(
            text.contains("https://vendor.example:443 is not an allowed host for tenant `plugin-test`"),
            "{adapter} ({client}): the policy's reason is printed:\n{text}"
        );
        assert!(
            !text.contains("-> vendor"),
            "{adapter}: nothing reached a vendor:\n{text}"
        );
        assert!(!text.contains(TOKEN), "{adapter}: a secret was printed:\n{text}");
    }
}
