//! `serve` refusing to start: a bad configuration, a missing adapter, a port in use, an
//! unwritable store or cache folder. Each ends the process with a non-zero exit code and one
//! line on stderr saying what failed and where: no chain of causes, no backtrace, no warning
//! (the INFO lines of what started before the failure may precede it).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dolphin_bridge_tests::events::EXAMPLE_OWNER;
use dolphin_bridge_tests::{BridgeConfig, Tenant, adapters};

fn config() -> BridgeConfig {
    BridgeConfig::new("http://127.0.0.1:9").tenant(
        Tenant::new("acme", EXAMPLE_OWNER, adapters::echo())
            .allow("http://127.0.0.1:9")
            .config("url", "http://127.0.0.1:9/echo"),
    )
}

/// Runs `serve` on the configuration text `toml` (written into `dir`) and returns its exit code
/// and stderr; fails the test if the bridge does not exit on its own.
fn serve(dir: &Path, toml: &str) -> (Option<i32>, String) {
    let config_path = dir.join("bridge.toml");
    std::fs::write(&config_path, toml).expect("writing the config");
    let mut child = Command::new(adapters::bridge_binary())
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .current_dir(dir)
        // A backtrace must not appear even when one is asked for.
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting dolphin-bridge serve");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the bridge") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the bridge kept running on a configuration it cannot serve");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::io::read_to_string(child.stderr.take().expect("stderr")).expect("reading stderr");
    (status.code(), stderr)
}

/// Asserts one line on stderr besides INFO log lines, an `error:` naming each of `names`, and a
/// failing exit code.
fn assert_one_line_naming(code: Option<i32>, stderr: &str, names: &[&str]) {
    assert!(code.is_some_and(|c| c != 0), "exit code {code:?}; stderr:\n{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !is_info_log_line(l))
        .collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr, got:\n{stderr}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    for name in names {
        assert!(line.contains(name), "`{name}` is named: {line}");
    }
    for noise in ["Caused by", "backtrace", "panicked", "Stack"] {
        assert!(!stderr.contains(noise), "`{noise}` in:\n{stderr}");
    }
}

/// A text log line at INFO level: `2026-12-01T22:56:11.725219Z  INFO target: ...`.
fn is_info_log_line(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let stamp = words.next().unwrap_or("");
    stamp.len() > 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T' && words.next() == Some("INFO")
}

#[test]
fn a_configuration_that_does_not_parse_is_one_line_naming_the_file_and_line() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let toml = format!("{}\n[server\nlisten = 1\n", config().to_toml());
    let (code, stderr) = serve(dir.path(), &toml);
    assert_one_line_naming(code, &stderr, &["bridge.toml", "line"]);
}

#[test]
fn a_missing_adapter_file_is_one_line_naming_the_tenant_and_the_file() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let toml = config()
        .tenant(Tenant::new("ghost", "0000", "no/such/adapter.wasm"))
        .to_toml();
    let (code, stderr) = serve(dir.path(), &toml);
    assert_one_line_naming(code, &stderr, &["ghost", "no/such/adapter.wasm"]);
}

#[test]
fn a_port_in_use_is_one_line_naming_the_address() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port");
    let address = taken.local_addr().expect("its address").to_string();
    let toml = config()
        .to_toml()
        .replace(r#"listen = "127.0.0.1:0""#, &format!(r#"listen = "{address}""#));
    assert!(toml.contains(&address), "the listen line was replaced:\n{toml}");
    let (code, stderr) = serve(dir.path(), &toml);
    assert_one_line_naming(code, &stderr, &[&address, "in use"]);
}

#[test]
fn an_unwritable_store_folder_is_one_line_naming_the_store() {
    let dir = tempfile::tempdir().expect("a temp dir");
    // A file where the store's folder should be: not writable whoever runs the test (even root).
    std::fs::write(dir.path().join("blocker"), "").expect("writing the blocker");
    let toml = config()
        .to_toml()
        .replace(r#"path = "bridge.db""#, r#"path = "blocker/bridge.db""#);
    assert!(
        toml.contains("blocker/bridge.db"),
        "the store line was replaced:\n{toml}"
    );
    let (code, stderr) = serve(dir.path(), &toml);
    assert_one_line_naming(code, &stderr, &["store", "blocker/bridge.db"]);
}

#[test]
fn an_unwritable_cache_folder_is_one_line_naming_the_cache() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("blocker"), "").expect("writing the blocker");
    let cache = adapters::shared_adapter_cache();
    let toml = config().to_toml().replace(
        &format!("cache_dir = {:?}", cache.display().to_string()),
        r#"cache_dir = "blocker/cache""#,
    );
    assert!(toml.contains("blocker/cache"), "the cache line was replaced:\n{toml}");
    let (code, stderr) = serve(dir.path(), &toml);
    assert_one_line_naming(code, &stderr, &["cache", "blocker/cache"]);
}
