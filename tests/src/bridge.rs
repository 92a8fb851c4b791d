//! `Bridge`: the real `dolphin-bridge serve` in a child process, with its config in a temp dir.
//!
//! The child is killed when the `Bridge` drops; when that happens during a panic (a failed
//! test), everything the bridge wrote to stderr is printed, so the test's output shows it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::adapters;
pub use crate::bridge_config::{
    ADMIN_TOKEN, BridgeConfig, INCOMING_PATH, INCOMING_TOKEN, TEST_RETRY_SCHEDULE_MS, Tenant, WebhookAuth,
};
use crate::client::{HttpClient, HttpResponse};
use crate::wait::{WAIT, wait_for};

/// How long a bridge may take from spawn to `listening on` (adapters compile on a cold cache).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// Bridges start one at a time, so that a cold adapter cache is filled by the first and read by
/// the others instead of every test compiling the same adapters at once.
static START_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A running `dolphin-bridge serve`.
pub struct Bridge {
    child: Child,
    url: String,
    log: Arc<Mutex<String>>,
    client: HttpClient,
    config_path: PathBuf,
    /// Sent as `Authorization: Bearer` on the Incoming endpoint.
    incoming_token: Option<String>,
    // Dropped last: holds the config and the store (none when started from a given file).
    _dir: Option<tempfile::TempDir>,
}

impl Bridge {
    /// Starts a bridge with `config`; panics (showing its stderr) when it does not come up.
    pub async fn start(config: BridgeConfig) -> Bridge {
        match Self::try_start(config).await {
            Ok(bridge) => bridge,
            Err(err) => panic!("the bridge did not start: {err}"),
        }
    }

    /// Starts a bridge; the error holds why, with the bridge's stderr.
    pub async fn try_start(config: BridgeConfig) -> Result<Bridge, String> {
        let dir = tempfile::Builder::new()
            .prefix("dolphin-bridge-e2e-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let config_path = config.write_to(dir.path());
        let _guard = START_LOCK.lock().await;
        let mut bridge = Self::spawn(
            &adapters::bridge_binary(),
            &config_path,
            &config.env,
            false,
            Some(dir),
            &[],
        )
        .await
        .map_err(|err| format!("{err}\nits config:\n{}", config.to_toml()))?;
        bridge.incoming_token = config.incoming_token.clone();
        Ok(bridge)
    }

    /// The credential sent on the Incoming endpoint (for a bridge started from a file).
    pub fn set_incoming_token(&mut self, token: Option<&str>) {
        self.incoming_token = token.map(str::to_string);
    }

    /// Starts `BINARY serve --config config_path` with extra environment `env`; with
    /// `echo_output`, the bridge's log is also copied to this process's stderr (for the demo).
    pub async fn start_from_file(
        binary: &Path,
        config_path: &Path,
        env: &[(String, String)],
        echo_output: bool,
    ) -> Result<Bridge, String> {
        Self::spawn(binary, config_path, env, echo_output, None, &[]).await
    }

    /// Starts `WRAPPER... BINARY serve --config config_path`: the bridge run through a program
    /// that execs it (such as `unshare`, to give it a name resolver of the test's own), so that
    /// its process id stays the one [`Bridge::pid`] reports.
    pub async fn start_wrapped(
        binary: &Path,
        config_path: &Path,
        env: &[(String, String)],
        wrapper: &[std::ffi::OsString],
    ) -> Result<Bridge, String> {
        Self::spawn(binary, config_path, env, false, None, wrapper).await
    }

    async fn spawn(
        binary: &Path,
        config_path: &Path,
        env: &[(String, String)],
        echo_output: bool,
        dir: Option<tempfile::TempDir>,
        wrapper: &[std::ffi::OsString],
    ) -> Result<Bridge, String> {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .arg("serve")
            .arg("--config")
            .arg(config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &dir {
            command.current_dir(dir.path());
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().map_err(|e| format!("cannot spawn the bridge: {e}"))?;

        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let stderr_log = log.clone();
        let stderr_copy = std::thread::spawn(move || copy_lines(stderr, &stderr_log, echo_output));

        let stdout = child.stdout.take().expect("piped stdout");
        let stdout_log = log.clone();
        let (url_tx, url_rx) = tokio::sync::oneshot::channel::<String>();
        std::thread::spawn(move || {
            let mut url_tx = Some(url_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.trim().strip_prefix("listening on ")
                    && let Some(tx) = url_tx.take()
                {
                    let _ = tx.send(url.trim_end_matches('/').to_string());
                }
                stdout_log.lock().unwrap().push_str(&format!("[stdout] {line}\n"));
            }
        });

        let mut bridge = Bridge {
            child,
            url: String::new(),
            log,
            client: HttpClient::new(),
            config_path: config_path.to_path_buf(),
            incoming_token: None,
            _dir: dir,
        };
        match tokio::time::timeout(START_TIMEOUT, url_rx).await {
            Ok(Ok(url)) => {
                bridge.url = url;
                Ok(bridge)
            }
            Ok(Err(_)) => {
                // stdout closed without the line: the bridge exited.
                let status = bridge.child.wait().ok();
                let _ = stderr_copy.join();
                Err(format!(
                    "it exited ({}) without printing `listening on`; its output:\n{}",
                    status.map(|s| s.to_string()).unwrap_or_default(),
                    bridge.stderr(),
                ))
            }
            Err(_) => Err(format!(
                "no `listening on` line within {START_TIMEOUT:?}; its output:\n{}",
                bridge.stderr()
            )),
        }
    }

    /// `http://127.0.0.1:PORT` from the `listening on` line.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where 3Dolphins posts Incoming events.
    pub fn incoming_url(&self) -> String {
        format!("{}{INCOMING_PATH}", self.url)
    }

    /// `/vendors/{tenant}{rest}` (`rest` starts with `/` or is empty).
    pub fn webhook_url(&self, tenant: &str, rest: &str) -> String {
        format!("{}/vendors/{tenant}{rest}", self.url)
    }

    /// A connection of its own to the bridge's SQLite store (`bridge.db` beside its config), as
    /// another process would open it: waits up to 5 s for the bridge's write lock.
    pub fn open_store(&self) -> rusqlite::Connection {
        let database = self
            .config_path()
            .parent()
            .expect("the bridge's folder")
            .join("bridge.db");
        let store = rusqlite::Connection::open(&database).expect("opening the bridge's store");
        store.busy_timeout(Duration::from_secs(5)).expect("a busy timeout");
        store
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Everything the bridge wrote so far (stderr, and stdout lines marked `[stdout]`).
    pub fn stderr(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the bridge's output contains `needle`.
    pub async fn wait_for_log(&self, needle: &str) {
        wait_for(&format!("{needle:?} in the bridge's log"), WAIT, || {
            self.stderr().contains(needle).then_some(())
        })
        .await
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `Authorization: Bearer <incoming token>`, when the bridge has one.
    pub fn incoming_auth(&self) -> Option<(&'static str, String)> {
        self.incoming_token
            .as_ref()
            .map(|token| ("authorization", format!("Bearer {token}")))
    }

    /// POSTs an Incoming event (JSON) to the bridge, with the Incoming credential.
    pub async fn send_event(&self, event: impl Into<Value>) -> HttpResponse {
        let body = serde_json::to_vec(&event.into()).expect("JSON serialises");
        self.send_raw(Some("application/json"), body).await
    }

    /// POSTs raw bytes to the Incoming path with an optional Content-Type and the credential.
    pub async fn send_raw(&self, content_type: Option<&str>, body: impl Into<bytes::Bytes>) -> HttpResponse {
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(ct) = content_type {
            headers.push(("content-type", ct));
        }
        let auth = self.incoming_auth();
        if let Some((name, value)) = &auth {
            headers.push((name, value.as_str()));
        }
        self.client.send("POST", &self.incoming_url(), &headers, body).await
    }

    /// POSTs to the Incoming path with exactly these headers (no credential added).
    pub async fn send_incoming_with_headers(
        &self,
        headers: &[(&str, &str)],
        body: impl Into<bytes::Bytes>,
    ) -> HttpResponse {
        self.client.send("POST", &self.incoming_url(), headers, body).await
    }

    /// POSTs a JSON webhook to `/vendors/{tenant}{rest}`.
    pub async fn send_webhook(&self, tenant: &str, rest: &str, body: &Value) -> HttpResponse {
        self.client.post_json(&self.webhook_url(tenant, rest), body).await
    }

    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    /// `GET /admin/{path}` with the admin token.
    pub async fn admin_get(&self, path: &str) -> HttpResponse {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        self.client
            .send(
                "GET",
                &format!("{}/admin/{path}", self.url),
                &[("authorization", &auth)],
                bytes::Bytes::new(),
            )
            .await
    }

    /// One delivery (any state) as the admin API shows it (`state`, `attempts`, `last_error`, ...).
    pub async fn delivery(&self, delivery_id: &str) -> Value {
        let response = self.admin_get(&format!("dead-letters/{delivery_id}")).await;
        assert_eq!(response.status, 200, "delivery {delivery_id}: {}", response.describe());
        response.json()
    }

    /// Waits until delivery `delivery_id` is in `state` (`delivered`, `dead`, `pending`);
    /// panics early, showing the delivery, if it settles in another final state.
    pub async fn wait_for_delivery(&self, delivery_id: &str, state: &str) -> Value {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let delivery = self.delivery(delivery_id).await;
            let now = delivery["state"].as_str().unwrap_or_default();
            if now == state {
                return delivery;
            }
            if now != "pending" || std::time::Instant::now() >= deadline {
                panic!("delivery {delivery_id} is {now}, not {state}: {delivery:#}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `{"pending","delivered","dead"}` counts of the outbox.
    pub async fn outbox_stats(&self) -> Value {
        let response = self.admin_get("outbox").await;
        assert_eq!(response.status, 200, "outbox stats: {}", response.describe());
        response.json()
    }

    /// Waits until the outbox has nothing pending; returns its counts.
    pub async fn wait_until_settled(&self) -> Value {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let stats = self.outbox_stats().await;
            if stats["pending"] == 0 {
                return stats;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the outbox did not settle: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Dead letters (optionally of one tenant), oldest first.
    pub async fn dead_letters(&self, tenant: Option<&str>) -> Vec<Value> {
        let path = match tenant {
            Some(tenant) => format!("dead-letters?tenant={tenant}"),
            None => "dead-letters".to_string(),
        };
        let response = self.admin_get(&path).await;
        assert_eq!(response.status, 200, "dead letters: {}", response.describe());
        response.json()["deadLetters"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- dolphin-bridge output ({}) ----\n{}---- end of dolphin-bridge output ----",
                self.url,
                self.stderr()
            );
        }
    }
}

fn copy_lines(from: impl Read, to: &Mutex<String>, echo: bool) {
    for line in BufReader::new(from).lines() {
        let Ok(line) = line else { break };
        if echo {
            eprintln!("{line}");
        }
        let mut log = to.lock().unwrap();
        log.push_str(&line);
        log.push('\n');
    }
}

/// Runs `dolphin-bridge SUBCOMMAND --config FILE` with `config` written to a temp dir, and
/// returns its output (for `check` and `properties`).
pub fn run_subcommand(subcommand: &str, config: &BridgeConfig) -> Output {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config_path = config.write_to(dir.path());
    let mut command = Command::new(adapters::bridge_binary());
    command
        .arg(subcommand)
        .arg("--config")
        .arg(&config_path)
        .current_dir(dir.path())
        .stdin(Stdio::null());
    for (name, value) in &config.env {
        command.env(name, value);
    }
    command
        .output()
        .unwrap_or_else(|err| panic!("cannot run dolphin-bridge {subcommand}: {err}"))
}

/// Runs `dolphin-bridge plugin test ADAPTER --fixtures FIXTURES` in an empty folder, with the
/// configuration variable pointing at a file that does not exist: the command must need none.
pub fn run_plugin_test(adapter: &Path, fixtures: &Path) -> Output {
    run_plugin_test_with(adapter, fixtures, &[])
}

/// As [`run_plugin_test`], with more arguments (`--update`).
pub fn run_plugin_test_with(adapter: &Path, fixtures: &Path, args: &[&str]) -> Output {
    let work = tempfile::tempdir().expect("a temp dir");
    Command::new(adapters::bridge_binary())
        .args(["plugin", "test"])
        .arg(adapter)
        .arg("--fixtures")
        .arg(fixtures)
        .args(args)
        .arg("--cache-dir")
        .arg(work.path().join("cache"))
        .env("DOLPHIN_BRIDGE_CONFIG", work.path().join("missing.toml"))
        .current_dir(work.path())
        .stdin(Stdio::null())
        .output()
        .expect("running dolphin-bridge plugin test")
}

// Process control, for crash, shutdown and restart tests: the bridge's files outlive its process.

impl Bridge {
    /// The bridge's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the bridge with SIGKILL (no chance to finish anything, as in a crash) and reaps it;
    /// returns its exit status.
    pub fn kill_hard(&mut self) -> std::process::ExitStatus {
        // `Child::kill` sends SIGKILL on Unix.
        let _ = self.child.kill();
        self.child.wait().expect("reaping the killed bridge")
    }

    /// Sends SIGTERM (`kill -TERM PID`): the orderly shutdown an init system asks for.
    pub fn terminate(&self) {
        let pid = self.pid().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap_or_else(|err| panic!("cannot run `kill -TERM {pid}`: {err}"));
        assert!(status.success(), "`kill -TERM {pid}` failed: {status}");
    }

    /// Waits up to `timeout` for the process to exit; its exit status, or `None` while it runs.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Starts `dolphin-bridge serve` on an existing config file, so on the database it names (after
/// a kill or a shutdown, say); `incoming_token` is the credential [`Bridge::send_event`] sends.
/// The caller keeps the config's folder alive.
pub async fn start_on_config_file(config_path: &Path, incoming_token: Option<&str>) -> Bridge {
    let _guard = START_LOCK.lock().await;
    match Bridge::start_from_file(&adapters::bridge_binary(), config_path, &[], false).await {
        Ok(mut bridge) => {
            bridge.set_incoming_token(incoming_token);
            bridge
        }
        Err(err) => panic!("the bridge did not start on {}: {err}", config_path.display()),
    }
}

/// Runs `dolphin-bridge ARGS... --config config_path` against an existing config file and the
/// database it names (e.g. `dead-letters list` beside a running bridge); returns its output.
pub fn run_on_config_file(config_path: &Path, args: &[&str]) -> Output {
    Command::new(adapters::bridge_binary())
        .args(args)
        .arg("--config")
        .arg(config_path)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("cannot run dolphin-bridge {}: {err}", args.join(" ")))
}
