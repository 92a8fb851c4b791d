//! `dolphin-bridge plugin run`: the bridge run locally on one adapter with a printing fake
//! 3Dolphins and a printing fake vendor (or a real vendor's URL). The tests send the `curl`
//! lines it prints, parsed and sent with the tests' own HTTP client, and read what its fakes
//! print.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dolphin_bridge_tests::wait::{WAIT, wait_for};
use dolphin_bridge_tests::{HttpClient, MockVendor, adapters};
use serde_json::Value;

/// How long the first start may take: compiling the adapter when the cache does not hold it.
const START: Duration = Duration::from_secs(180);

/// A running `plugin run`, its output gathered as it comes; interrupted and waited for when
/// dropped.
struct PluginRun {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl PluginRun {
    /// Starts `dolphin-bridge plugin run ADAPTER --fixtures FIXTURES [extra]` and waits for
    /// its `curl` lines.
    async fn start(adapter: &Path, fixtures: &Path, extra: &[&str]) -> PluginRun {
        let mut child = Command::new(adapters::bridge_binary())
            .args(["plugin", "run"])
            .arg(adapter)
            .arg("--fixtures")
            .arg(fixtures)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting plugin run");
        let run = PluginRun {
            stdout: gather(child.stdout.take().expect("piped stdout")),
            stderr: gather(child.stderr.take().expect("piped stderr")),
            child,
        };
        wait_for("the curl lines of plugin run", START, || {
            (run.requests().len() == 2).then_some(())
        })
        .await;
        run
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The printed `curl` lines, as requests.
    fn requests(&self) -> Vec<CurlRequest> {
        self.stdout()
            .lines()
            .filter(|line| line.starts_with("curl "))
            .map(CurlRequest::parse)
            .collect()
    }

    /// Waits until stdout holds `needle`; returns stdout.
    async fn wait_for_stdout(&self, needle: &str) -> String {
        wait_for(&format!("{needle:?} in the output of plugin run"), WAIT, || {
            let out = self.stdout();
            out.contains(needle).then_some(out)
        })
        .await
    }

    /// Interrupts it as Ctrl-C does and waits for it to exit; its exit code.
    async fn interrupt(&mut self) -> Option<i32> {
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        wait_for("plugin run to exit after Ctrl-C", WAIT, || {
            self.child.try_wait().ok().flatten()
        })
        .await
        .code()
    }
}

impl Drop for PluginRun {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Copies what `from` writes into a string, on a thread of its own.
fn gather(from: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let into = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            let mut text = into.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    text
}

/// One printed `curl` line: `curl -sS -X METHOD 'URL' -H 'NAME: VALUE'… --data-raw 'BODY'`.
#[derive(Debug, Clone)]
struct CurlRequest {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl CurlRequest {
    fn parse(line: &str) -> CurlRequest {
        let words = shell_words(line);
        let mut request = CurlRequest {
            method: "GET".into(),
            url: String::new(),
            headers: Vec::new(),
            body: String::new(),
        };
        let mut words = words.into_iter().skip(1);
        while let Some(word) = words.next() {
            match word.as_str() {
                "-sS" => {}
                "-X" => request.method = words.next().expect("a method after -X"),
                "-H" => {
                    let header = words.next().expect("a header after -H");
                    let (name, value) = header.split_once(": ").expect("NAME: VALUE");
                    request.headers.push((name.into(), value.into()));
                }
                "--data-raw" => request.body = words.next().expect("a body after --data-raw"),
                url if url.starts_with("http://") => request.url = url.into(),
                other => panic!("an unexpected argument {other:?} in {line}"),
            }
        }
        request
    }

    async fn send(&self, client: &HttpClient) -> dolphin_bridge_tests::HttpResponse {
        let headers: Vec<(&str, &str)> = self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        client
            .send(&self.method, &self.url, &headers, self.body.clone().into_bytes())
            .await
    }
}

/// The arguments of a shell line of single-quoted words, as a POSIX shell splits them.
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut in_word) = (Vec::new(), String::new(), false, false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('\'', _) => {
                quoted = !quoted;
                in_word = true;
            }
            ('\\', false) => {
                word.extend(chars.next());
                in_word = true;
            }
            (' ', false) => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
            }
            (c, _) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The temporary folder `plugin run` printed it uses.
fn temporary_folder(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("temporary folder "))
        .and_then(|rest| rest.split(" (").next())
        .unwrap_or_else(|| panic!("no temporary folder line: {stdout}"))
        .to_string()
}

#[tokio::test]
async fn the_printed_curl_lines_reach_the_fake_vendor_and_the_fake_3dolphins_and_a_rebuild_is_served() {
    let work = tempfile::tempdir().expect("a temp dir");
    // A copy of its own, replaced by another build below as a rebuild would.
    let adapter = work.path().join("echo.wasm");
    std::fs::copy(adapters::adapter("echo-v1"), &adapter).expect("copying the adapter");
    let fixtures = adapters::workspace_root().join("plugins/echo/fixtures");
    let mut run = PluginRun::start(&adapter, &fixtures, &[]).await;
    let client = HttpClient::new();
    let [incoming, webhook] = <[CurlRequest; 2]>::try_from(run.requests()).expect("two curl lines");
    assert!(incoming.url.ends_with("/3dolphins/incoming"), "{incoming:?}");
    assert!(incoming.url.starts_with("http://127.0.0.1:"), "{incoming:?}");
    assert!(webhook.url.contains("/vendors/local/"), "{webhook:?}");

    let answer = incoming.send(&client).await;
    assert_eq!(answer.status, 202, "{}", answer.describe());
    let out = run.wait_for_stdout(r#""build": "v1""#).await;
    assert_vendor_got_the_fixture(&out, "POST /echo", "echo-fixture-token");
    assert_the_webhook_reaches_3dolphins(&run, &client, &webhook).await;

    // A rebuild: the file replaced whole, as build tools write it.
    let rebuilt = work.path().join("echo.wasm.new");
    std::fs::copy(adapters::adapter("echo-v2"), &rebuilt).expect("copying the rebuild");
    std::fs::rename(&rebuilt, &adapter).expect("replacing the adapter");
    wait_for("the rebuild to be loaded", WAIT, || {
        (run.stderr().matches("adapter loaded").count() >= 2).then_some(())
    })
    .await;
    let mut event: Value = serde_json::from_str(&incoming.body).expect("the Incoming body is JSON");
    event["message"] = "after the rebuild".into();
    let again = CurlRequest {
        body: event.to_string(),
        ..incoming.clone()
    };
    let answer = again.send(&client).await;
    assert_eq!(answer.status, 202, "{}", answer.describe());
    let out = run.wait_for_stdout(r#""build": "v2""#).await;
    assert!(out.contains(r#""message": "after the rebuild""#), "{out}");

    let folder = temporary_folder(&out);
    assert!(Path::new(&folder).is_dir(), "{folder} exists while it runs");
    assert_eq!(run.interrupt().await, Some(0), "{}", run.stderr());
    assert!(
        run.stdout().contains(&format!("stopped; removed {folder}")),
        "{}",
        run.stdout()
    );
    assert!(!Path::new(&folder).exists(), "{folder} is removed on Ctrl-C");
}

#[tokio::test]
async fn with_vendor_the_adapter_sends_to_that_vendor() {
    let vendor = MockVendor::start().await;
    let fixtures = tempfile::tempdir().expect("a temp dir");
    let echo = adapters::workspace_root().join("plugins/echo/fixtures");
    std::fs::create_dir(fixtures.path().join("incoming")).expect("incoming/");
    std::fs::copy(
        echo.join("incoming/01-customer-message.json"),
        fixtures.path().join("incoming/01-customer-message.json"),
    )
    .expect("copying the Incoming fixture");
    std::fs::write(
        fixtures.path().join("tenant.toml"),
        format!(
            "owner = \"82ab0fd5cfd1e80d1ff97c0cfc9aaaa\"\n[config]\nurl = \"${{VENDOR_URL}}{}\"\ntag = \"real\"\n",
            vendor.path()
        ),
    )
    .expect("tenant.toml");
    let vendor_flag = format!("{}/", vendor.base_url());
    let run = PluginRun::start(&adapters::echo(), fixtures.path(), &["--vendor", &vendor_flag]).await;
    let out = run.stdout();
    assert!(out.contains(&format!("vendor: {}", vendor.base_url())), "{out}");
    assert!(!out.contains("fake vendor on"), "no fake vendor: {out}");

    let incoming = run.requests().remove(0);
    let answer = incoming.send(&HttpClient::new()).await;
    assert_eq!(answer.status, 202, "{}", answer.describe());
    let bodies = vendor.wait_for_bodies(1).await;
    assert_eq!(bodies[0]["message"], "Halo", "{bodies:?}");
    assert_eq!(bodies[0]["tag"], "real", "{bodies:?}");
    assert!(
        !run.stdout().contains("vendor <- "),
        "nothing reached a fake vendor: {}",
        run.stdout()
    );
}

/// The JavaScript template as `plugin new` writes it, built, run with its own fixtures: the
/// printed Incoming line reaches the fake vendor and the webhook line the fake 3Dolphins.
#[tokio::test]
async fn the_js_templates_curl_lines_reach_the_fake_vendor_and_the_fake_3dolphins() {
    let installed = crate::plugin_new::installed_componentize_js();
    let work = tempfile::tempdir().expect("a temp dir");
    let project = crate::plugin_new::plugin_new(work.path(), "js", "run-js", &[]);
    // What `npm install` would put there.
    std::os::unix::fs::symlink(&installed, project.join("node_modules")).expect("linking node_modules");
    crate::plugin_new::run(
        "node build.mjs",
        Command::new("node").arg("build.mjs").current_dir(&project),
    );
    let run = PluginRun::start(&project.join("run_js.wasm"), &project.join("fixtures"), &[]).await;
    let client = HttpClient::new();
    let [incoming, webhook] = <[CurlRequest; 2]>::try_from(run.requests()).expect("two curl lines");

    let answer = incoming.send(&client).await;
    assert_eq!(answer.status, 202, "{}", answer.describe());
    let out = run.wait_for_stdout("vendor <- POST /messages").await;
    assert_vendor_got_the_fixture(&out, "POST /messages", "fixture-token");
    assert_the_webhook_reaches_3dolphins(&run, &client, &webhook).await;
}

/// The fake vendor printed the Incoming fixture's request as `request` (method and path), its
/// secret header redacted, and `secret` nowhere.
fn assert_vendor_got_the_fixture(out: &str, request: &str, secret: &str) {
    let vendor = out
        .split("vendor <- ")
        .nth(1)
        .unwrap_or_else(|| panic!("the vendor printed no request: {out}"));
    assert!(vendor.starts_with(request), "{vendor}");
    assert!(vendor.contains(r#""message": "Halo""#), "the fixture's event: {vendor}");
    assert!(vendor.contains("authorization: Bearer [redacted]"), "{vendor}");
    assert!(!out.contains(secret), "a secret was printed: {out}");
}

/// Sends the printed webhook line: answered 200, its Outgoing event printed by the fake 3Dolphins.
async fn assert_the_webhook_reaches_3dolphins(run: &PluginRun, client: &HttpClient, webhook: &CurlRequest) {
    let answer = webhook.send(client).await;
    assert_eq!(answer.status, 200, "{}", answer.describe());
    let out = run
        .wait_for_stdout("3Dolphins <- Outgoing on ticket 294c9ea88f7e649f8c37ae895ebab247")
        .await;
    let event = out.split("3Dolphins <- Outgoing").nth(1).expect("the event");
    assert!(
        event.contains(r#""message": "Hello Farhan, how can I help?""#),
        "{event}"
    );
}
