//! `cargo xtask demo` keeps working: its scripted round trip runs to the end.

use std::process::Stdio;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_round_trip_completes() {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(["--listen", "127.0.0.1:0", "--once"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the demo");
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the demo finished within 2 minutes")
        .expect("the demo's output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the demo failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for expected in [
        "the bridge answered 202",
        "[Chatwoot] POST /api/v1/accounts/1/conversations/1/messages",
        "[3Dolphins] Outgoing: POST /dolphin/integration/incomingMessage -> 200",
        "[3Dolphins] Command: POST /dolphin/integration/incomingMessage -> 200",
        "1 message(s); Chatwoot -> bridge -> 3Dolphins: 1 Outgoing, 1 Command",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
}
