//! `dolphin-bridge plugin test`: an adapter run against fixtures with a recording fake vendor,
//! without a configuration file, a bridge, 3Dolphins or a vendor.

use std::path::Path;
use std::process::Output;

use dolphin_bridge_tests::adapters;
use dolphin_bridge_tests::bridge::{run_plugin_test, run_plugin_test_with};
use dolphin_bridge_tests::copy_dir::copy_dir;

/// Runs `plugin test` on the echo adapter with `fixtures`.
fn plugin_test(fixtures: &Path) -> Output {
    run_plugin_test(&adapters::echo(), fixtures)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `files` (relative path, content) under a new temp folder.
fn fixture_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    for (path, content) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("creating a fixture folder");
        std::fs::write(path, content).expect("writing a fixture");
    }
    dir
}

#[test]
fn the_echo_fixtures_pass_and_show_what_goes_to_the_vendor_and_to_3dolphins() {
    let output = plugin_test(&adapters::workspace_root().join("plugins/echo/fixtures"));
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");

    let incoming = stdout
        .split("== ")
        .find(|s| s.starts_with("incoming/01-customer-message.json"))
        .unwrap_or_else(|| panic!("the Incoming fixture is reported: {stdout}"));
    assert!(incoming.contains("result: ok"), "{incoming}");
    assert!(
        incoming.contains("-> vendor POST /echo"),
        "the vendor request: {incoming}"
    );
    assert!(incoming.contains(r#""message": "Halo""#), "its body: {incoming}");
    assert!(
        incoming.contains("authorization: Bearer [redacted]"),
        "the secret header, redacted: {incoming}"
    );
    assert!(!stdout.contains("echo-fixture-token"), "a secret was printed: {stdout}");

    let reply = stdout
        .split("== ")
        .find(|s| s.starts_with("webhooks/02-agent-reply.json"))
        .unwrap_or_else(|| panic!("the webhook fixture is reported: {stdout}"));
    assert!(
        reply.contains("-> 3Dolphins POST /dolphin/integration/incomingMessage"),
        "the 3Dolphins event: {reply}"
    );
    assert!(
        reply.contains(r#""message": "Hello Farhan, how can I help?""#),
        "{reply}"
    );
    assert!(
        reply.contains(r#""channel": "whatsapp""#),
        "the channel the Incoming fixture stored in KV: {reply}"
    );
    assert!(reply.contains("<- answer 200"), "{reply}");

    assert!(stdout.contains("PASS (failed as expected)"), "{stdout}");
    assert!(stdout.contains("3 of 3 fixture(s) passed"), "{stdout}");
}

#[test]
fn a_vendor_error_fails_the_incoming_fixture_and_is_printed() {
    let dir = fixture_dir(&[
        ("tenant.toml", "[config]\nurl = \"${VENDOR_URL}/echo\"\n"),
        (
            "vendor.json",
            r#"[{"method": "POST", "path": "/echo", "status": 500, "body": {"error": "vendor down"}}]"#,
        ),
        (
            "incoming/01-message.json",
            r#"{"ticketNumber": "t-1", "channel": "whatsapp", "accountId": "a", "contactId": "c",
                "messageType": "text", "message": "Halo", "mediaLink": "", "customerName": "Farhan",
                "createdDate": "2021-04-28T15:39:37.945", "owner": "o-1"}"#,
        ),
    ]);
    let output = plugin_test(dir.path());
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("result: retry_later"), "the error kind: {stdout}");
    assert!(stdout.contains("vendor answered HTTP 500"), "the error: {stdout}");
    assert!(
        stdout.contains("-> vendor POST /echo"),
        "the request is still shown: {stdout}"
    );
    assert!(stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.contains("0 of 1 fixture(s) passed"), "{stdout}");
}

#[test]
fn a_bad_fixture_folder_is_one_clear_line() {
    let missing = tempfile::tempdir().expect("a temp dir").path().join("nowhere");
    let output = plugin_test(&missing);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(stderr.contains("nowhere"), "the folder is named: {stderr}");

    let dir = fixture_dir(&[("webhooks/01-broken.json", "{\n  \"body\": {\n    oops\n}\n")]);
    let output = plugin_test(dir.path());
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("01-broken.json:3:"),
        "the file and line of the broken JSON: {stderr}"
    );
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "one line: {stderr}"
    );
    assert!(stdout.is_empty(), "nothing runs: {stdout}");
}

#[test]
fn terminal_control_characters_in_an_adapter_error_are_printed_escaped() {
    let dir = fixture_dir(&[
        ("tenant.toml", "[config]\nmode = \"ansi-error\"\n"),
        ("vendor.json", "[]"),
        (
            "incoming/01-message.json",
            r#"{"ticketNumber": "t-1", "channel": "whatsapp", "accountId": "a", "contactId": "c",
                "messageType": "text", "message": "Halo", "mediaLink": "", "customerName": "Farhan",
                "createdDate": "2021-04-28T15:39:37.945", "owner": "o-1"}"#,
        ),
    ]);
    let output = run_plugin_test(&adapters::hostile(), dir.path());
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let controls: Vec<char> = stdout.chars().filter(|c| c.is_control() && *c != '\n').collect();
    assert!(
        controls.is_empty(),
        "control characters printed raw: {controls:?}\n{stdout:?}"
    );
    assert!(
        stdout.contains(r"ansi-error: \u{1b}[2J\u{1b}]0;forged\u{7}\r\nFORGED  result: ok\u{9b}31m"),
        "the adapter's error, escaped, on one line: {stdout}"
    );
}

/// `--update` writes each fixture's `NAME.expect.json` from what it produced, and the next run
/// passes against them; an expectation the adapter does not meet fails the fixture, naming the
/// difference, even though the adapter itself succeeded.
#[test]
fn expectations_are_written_by_update_and_a_difference_fails_naming_it() {
    let dir = tempfile::tempdir().expect("a temp dir");
    copy_dir(&adapters::workspace_root().join("plugins/echo/fixtures"), dir.path());
    let updated = run_plugin_test_with(&adapters::echo(), dir.path(), &["--update"]);
    let stdout = text(&updated.stdout);
    assert_eq!(updated.status.code(), Some(0), "{stdout}\n{}", text(&updated.stderr));
    assert!(
        stdout.contains("expect: written to 02-agent-reply.expect.json"),
        "{stdout}"
    );
    let golden_path = dir.path().join("webhooks/02-agent-reply.expect.json");
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&golden_path).expect("the golden file")).expect("JSON");
    assert_eq!(golden["result"], "ok", "{golden}");
    assert_eq!(
        golden["events"][0]["message"], "Hello Farhan, how can I help?",
        "{golden}"
    );
    assert!(
        golden["events"][0].get("createdDate").is_none(),
        "the clock is left out: {golden}"
    );
    assert_eq!(golden["vendor_requests"], serde_json::json!([]), "{golden}");
    let incoming: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("incoming/01-customer-message.expect.json")).expect("the golden file"),
    )
    .expect("JSON");
    assert_eq!(incoming["vendor_requests"][0]["method"], "POST", "{incoming}");
    assert_eq!(incoming["vendor_requests"][0]["path"], "/echo", "{incoming}");

    let again = plugin_test(dir.path());
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));

    std::fs::write(
        &golden_path,
        r#"{"status": 200, "events": [{"message": "Hello Farhan!"}], "vendor_requests": [{"method": "POST", "path": "/echo"}]}"#,
    )
    .expect("an expectation");
    let failed = plugin_test(dir.path());
    let stdout = text(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{stdout}");
    let reply = stdout
        .split("== ")
        .find(|s| s.starts_with("webhooks/02-agent-reply.json"))
        .unwrap_or_else(|| panic!("the webhook fixture is reported: {stdout}"));
    assert!(reply.contains("result: ok"), "the adapter itself succeeded: {reply}");
    assert!(
        reply.contains(r#"expect: events[0].message: expected "Hello Farhan!", got "Hello Farhan, how can I help?""#),
        "{reply}"
    );
    assert!(reply.contains("expect: vendor_requests: expected 1, got 0"), "{reply}");
    assert!(reply.contains("FAIL (not as expected)"), "{reply}");
}
