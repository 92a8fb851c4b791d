//! The status page in a real headless Chromium: `tests/browser/status_page.mjs` (Playwright)
//! logs in, finds the tenants and a dead letter, replays it with the page's button until the
//! page shows it delivered, deploys a new adapter version with the upload form and rolls it
//! back, deploys it again as a canary (shown beside the current version) and aborts it; then
//! the bridge's own API confirms what the page showed.
//!
//! Needs Chromium (`DOLPHIN_BRIDGE_CHROMIUM`, default `/usr/bin/chromium`) and the script's
//! packages (`npm ci` in `tests/browser`); `cargo xtask test` installs both. Missing either, the
//! test fails: it never skips.
//!
//! The page's screenshot (logged in, tenants and a dead letter shown) goes to a temp folder, or
//! to `DOLPHIN_BRIDGE_SCREENSHOT` (relative to the workspace root) when set:
//! `cargo xtask screenshot` regenerates `docs/status-page.png` that way.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dolphin_bridge_tests::Event;
use dolphin_bridge_tests::adapters::workspace_root;
use dolphin_bridge_tests::bridge::ADMIN_TOKEN;
use dolphin_bridge_tests::events::EXAMPLE_OWNER;
use dolphin_bridge_tests::reload_support::{adapter_info, echo_build, sha256_hex};
use dolphin_bridge_tests::{Bridge, BridgeConfig, MockThreeDolphins, MockVendor, Tenant};
use serde_json::Value;

use crate::common::{API_TOKEN, ECHO_TENANT, assert_accepted};

/// A second tenant, so that the page lists more than one and the replay form can re-home.
const OTHER_TENANT: &str = "globex";
const OTHER_OWNER: &str = "91abe7c0ffee00000000000000000042";

/// The Chromium the script drives.
fn chromium() -> PathBuf {
    let path = std::env::var_os("DOLPHIN_BRIDGE_CHROMIUM")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.is_file(),
        "Chromium is missing at {}: install the distribution's `chromium` package (`cargo xtask test` does), \
         or point DOLPHIN_BRIDGE_CHROMIUM at one",
        path.display()
    );
    path
}

/// The folder of the browser script, with its packages installed.
fn script_dir() -> PathBuf {
    let dir = workspace_root().join("tests").join("browser");
    assert!(
        dir.join("node_modules").join("playwright-core").is_dir(),
        "the browser script's packages are missing: run `npm ci` in {} (`cargo xtask test` does)",
        dir.display()
    );
    dir
}

/// Where the screenshot goes: `DOLPHIN_BRIDGE_SCREENSHOT` (relative to the workspace root), else
/// `fallback`.
fn screenshot_path(fallback: &Path) -> PathBuf {
    match std::env::var_os("DOLPHIN_BRIDGE_SCREENSHOT").filter(|p| !p.is_empty()) {
        Some(path) => workspace_root().join(path),
        None => fallback.join("status-page.png"),
    }
}

fn echo_v1(name: &str, owner: &str, vendor: &MockVendor) -> Tenant {
    Tenant::new(name, owner, echo_build("v1"))
        .allow(&vendor.base_url())
        .config("url", &vendor.url())
}

/// The vendor's bodies for delivery `id`.
fn bodies_of(vendor: &MockVendor, id: &str) -> Vec<Value> {
    vendor.bodies().into_iter().filter(|b| b["deliveryId"] == id).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_headless_browser_logs_in_replays_a_dead_letter_deploys_rolls_back_and_runs_a_canary_on_the_status_page() {
    let chromium = chromium();
    let script_dir = script_dir();
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = MockVendor::start().await;
    let bridge = Bridge::start(
        BridgeConfig::new(&three_dolphins.base_url())
            .api_token(API_TOKEN)
            .tenant(echo_v1(ECHO_TENANT, EXAMPLE_OWNER, &vendor))
            .tenant(echo_v1(OTHER_TENANT, OTHER_OWNER, &vendor)),
    )
    .await;

    // A few deliveries for the other tenant, so that the page has some to show.
    for n in 0..5 {
        let event = Event::fresh().owner(OTHER_OWNER).message(&format!("delivered {n}"));
        let id = assert_accepted(&bridge.send_event(event).await);
        bridge.wait_for_delivery(&id, "delivered").await;
    }

    // A dead letter: the vendor refuses the first attempt for good (400), then works.
    vendor.fail_next(1, 400);
    let id = assert_accepted(
        &bridge
            .send_event(Event::fresh().message("refused, then replayed"))
            .await,
    );
    bridge.wait_for_delivery(&id, "dead").await;
    assert_eq!(bodies_of(&vendor, &id).len(), 1, "only the refused attempt so far");

    let (original, new) = (echo_build("v1"), echo_build("v2"));
    let original_hash = sha256_hex(&std::fs::read(&original).expect("echo-v1"));
    let new_hash = sha256_hex(&std::fs::read(&new).expect("echo-v2"));
    assert_ne!(original_hash, new_hash);
    let temp = tempfile::Builder::new()
        .prefix("dolphin-bridge-browser-")
        .tempdir()
        .expect("a temp dir");
    let screenshot = screenshot_path(temp.path());
    if let Some(parent) = screenshot.parent() {
        std::fs::create_dir_all(parent).expect("the screenshot's folder");
    }
    let _ = std::fs::remove_file(&screenshot);

    let mut script = Command::new("node");
    script
        .current_dir(&script_dir)
        .arg("status_page.mjs")
        .arg("--url")
        .arg(bridge.url())
        .args(["--token", ADMIN_TOKEN, "--tenant", ECHO_TENANT, "--dead-letter", &id])
        .arg("--original")
        .arg(&original)
        .arg("--new")
        .arg(&new)
        .arg("--screenshot")
        .arg(&screenshot)
        .arg("--chromium")
        .arg(&chromium);
    let output: Output = tokio::task::spawn_blocking(move || script.output())
        .await
        .expect("the script's thread")
        .expect("node runs (it is needed to build the JavaScript adapters too)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{report}");
    assert!(
        output.status.success(),
        "the browser flow failed ({}):\n{report}\nbridge log:\n{}",
        output.status,
        bridge.stderr()
    );
    assert!(report.contains("browser: all expectations met"), "{report}");

    // What the page showed, from the bridge's side: the replayed event reached the vendor once
    // more, on the original version.
    let delivered = bridge.wait_for_delivery(&id, "delivered").await;
    assert_eq!(delivered["tenant"], ECHO_TENANT, "{delivered}");
    let bodies = bodies_of(&vendor, &id);
    assert_eq!(bodies.len(), 2, "the refused attempt and the replay: {bodies:#?}");
    assert_eq!(bodies[1]["build"], "v1", "{bodies:#?}");

    // The deploy happened and was rolled back: v2 is kept as a version, v1 runs and serves.
    let versions = bridge.admin_get(&format!("tenants/{ECHO_TENANT}/versions")).await;
    assert_eq!(versions.status, 200, "{}", versions.describe());
    let listed: Vec<Value> = versions.json()["versions"].as_array().cloned().unwrap_or_default();
    assert!(
        listed.iter().any(|v| v["contentHash"] == new_hash.as_str()),
        "the deployed version is not kept: {listed:#?}"
    );
    let info = adapter_info(&bridge, ECHO_TENANT).await;
    assert_eq!(info["contentHash"], original_hash.as_str(), "{info}");
    let probe = assert_accepted(&bridge.send_event(Event::fresh().message("after the rollback")).await);
    bridge.wait_for_delivery(&probe, "delivered").await;
    assert_eq!(bodies_of(&vendor, &probe)[0]["build"], "v1");
    assert_eq!(
        adapter_info(&bridge, OTHER_TENANT).await["contentHash"],
        original_hash.as_str()
    );

    // The screenshot: a PNG of a real page, not an empty one.
    let png = std::fs::read(&screenshot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", screenshot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 20_000,
        "a suspiciously small screenshot: {} bytes",
        png.len()
    );
    println!("screenshot: {} ({} bytes)", screenshot.display(), png.len());
}
