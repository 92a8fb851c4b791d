//! Partner deployments: `PUT /admin/tenants/{t}/adapter`, `GET .../versions`,
//! `POST .../rollback`, scoped deploy tokens, and the `deploy` / `versions` / `rollback`
//! commands, against a bridge serving a steady stream of Incoming events. Versions are told
//! apart by the two tagged echo builds (`echo-v1`, `echo-v2` copy their tag into every delivered
//! body as `build`). Throughout, no request may fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dolphin_bridge_tests::adapters::{bridge_binary, echo_world_0_1};
use dolphin_bridge_tests::bridge::{ADMIN_TOKEN, INCOMING_TOKEN, start_on_config_file};
use dolphin_bridge_tests::copy_dir::copy_dir;
use dolphin_bridge_tests::events::EXAMPLE_OWNER;
use dolphin_bridge_tests::reload_support::{
    EventStream, IncomingSender, Sent, adapter_info, admin_reload, echo_build_bytes, garbage_bytes, overwrite_in_place,
    sha256_hex, wasi_command_bytes, with_custom_section,
};
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, HttpResponse, MockThreeDolphins, MockVendor, Tenant};
use serde_json::Value;

use crate::common::{API_TOKEN, assert_accepted};

pub(crate) const BETA_OWNER: &str = "beta0000000000000000000000000001";
pub(crate) const ACME_DEPLOY_TOKEN: &str = "acme-partner-deploy-token-0001";
pub(crate) const BETA_DEPLOY_TOKEN: &str = "beta-partner-deploy-token-0001";
/// `[deployments] max_bytes` of these bridges (the echo builds are about 130 KiB).
const MAX_BYTES: usize = 1 << 20;
/// `[deployments] keep` of these bridges.
pub(crate) const KEEP: usize = 3;

/// A bridge with tenants `acme` (the example owner) and `beta`, both on echo-v1 files in a
/// folder of the test's own, each with a deploy token, beta's deploys gated by a copy of echo's
/// `plugin test` fixtures; the store and deployments sit beside the config, so a bridge started
/// again on it finds them.
pub(crate) struct DeployEnv {
    pub(crate) bridge: Bridge,
    _three_dolphins: MockThreeDolphins,
    pub(crate) vendor: MockVendor,
    config_path: PathBuf,
    /// acme's configured adapter file.
    acme_file: PathBuf,
    /// beta's deploy fixtures (a copy of echo's).
    pub(crate) beta_fixtures: PathBuf,
    pub(crate) dir: tempfile::TempDir,
}

impl DeployEnv {
    pub(crate) async fn start() -> DeployEnv {
        DeployEnv::start_with(|_, _| {}).await
    }

    /// As [`DeployEnv::start`], with `adjust` given the configuration's TOML (and the test's
    /// folder) before the bridge starts.
    pub(crate) async fn start_with(adjust: impl FnOnce(&mut toml::Table, &Path)) -> DeployEnv {
        let dir = tempfile::Builder::new()
            .prefix("dolphin-bridge-deploy-")
            .tempdir()
            .expect("a temp dir");
        let acme_file = dir.path().join("acme.wasm");
        let beta_file = dir.path().join("beta.wasm");
        std::fs::write(&acme_file, echo_build_bytes("v1")).unwrap();
        std::fs::write(&beta_file, echo_build_bytes("v1")).unwrap();
        let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
        let vendor = MockVendor::start().await;
        let echo = |name: &str, owner: &str, file: &Path| {
            Tenant::new(name, owner, file)
                .allow(&vendor.base_url())
                .config("url", &vendor.url())
        };
        let config = BridgeConfig::new(&three_dolphins.base_url())
            .api_token(API_TOKEN)
            .tenant(echo("acme", EXAMPLE_OWNER, &acme_file))
            .tenant(echo("beta", BETA_OWNER, &beta_file));
        // The harness has no builder for `[tenants.deploy]`: add it to the generated TOML.
        let mut table: toml::Table = config.to_toml().parse().expect("valid TOML");
        let tenants = table["tenants"].as_array_mut().expect("tenants");
        for (tenant, token) in tenants.iter_mut().zip([ACME_DEPLOY_TOKEN, BETA_DEPLOY_TOKEN]) {
            let mut deploy = toml::Table::new();
            deploy.insert("token".into(), toml::Value::String(token.into()));
            tenant
                .as_table_mut()
                .expect("a tenant table")
                .insert("deploy".into(), toml::Value::Table(deploy));
        }
        let beta_fixtures = dir.path().join("beta-fixtures");
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/echo/fixtures"),
            &beta_fixtures,
        );
        tenants[1]["deploy"].as_table_mut().expect("deploy table").insert(
            "fixtures".into(),
            toml::Value::String(beta_fixtures.display().to_string()),
        );
        let mut deployments = toml::Table::new();
        deployments.insert("max_bytes".into(), toml::Value::Integer(MAX_BYTES as i64));
        deployments.insert("keep".into(), toml::Value::Integer(KEEP as i64));
        table.insert("deployments".into(), toml::Value::Table(deployments));
        adjust(&mut table, dir.path());
        let config_path = dir.path().join("bridge.toml");
        std::fs::write(&config_path, toml::to_string(&table).unwrap()).unwrap();
        let bridge = start_on_config_file(&config_path, Some(INCOMING_TOKEN)).await;
        DeployEnv {
            bridge,
            _three_dolphins: three_dolphins,
            vendor,
            config_path,
            acme_file,
            beta_fixtures,
            dir,
        }
    }

    /// `method /admin/tenants/{tenant}/{action}` with `token` (none: no Authorization header).
    pub(crate) async fn call(
        &self,
        method: &str,
        tenant: &str,
        action: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> HttpResponse {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/wasm")];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        let url = format!("{}/admin/tenants/{tenant}/{action}", self.bridge.url());
        self.bridge.client().send(method, &url, &headers, body).await
    }

    pub(crate) async fn deploy(&self, tenant: &str, token: &str, component: Vec<u8>) -> HttpResponse {
        self.call("PUT", tenant, "adapter", Some(token), component).await
    }

    pub(crate) async fn versions(&self, tenant: &str, token: &str) -> Vec<Value> {
        let response = self.call("GET", tenant, "versions", Some(token), Vec::new()).await;
        assert_eq!(response.status, 200, "{}", response.describe());
        response.json()["versions"].as_array().cloned().unwrap_or_default()
    }

    /// Sends one event on a fresh ticket of acme, waits until it is delivered, and returns the
    /// build that handled it.
    pub(crate) async fn probe_build(&self) -> String {
        let id = assert_accepted(
            &self
                .bridge
                .send_event(Event::fresh().owner(EXAMPLE_OWNER).message("probe"))
                .await,
        );
        self.bridge.wait_for_delivery(&id, "delivered").await;
        let bodies: Vec<Value> = self
            .vendor
            .bodies()
            .into_iter()
            .filter(|b| b["deliveryId"] == id.as_str())
            .collect();
        assert_eq!(bodies.len(), 1, "probe {id} should arrive once: {bodies:#?}");
        bodies[0]["build"].as_str().unwrap_or_default().to_string()
    }
}

/// Bytes no earlier run used (for custom sections that make a component new to the cache).
pub(crate) fn unique_payload() -> Vec<u8> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos}-{}", std::process::id()).into_bytes()
}

/// The requests of a stream that failed: every answer that is not a 202 for a new event.
fn failures(sent: &[Sent]) -> Vec<String> {
    sent.iter().filter(|s| !s.accepted()).map(Sent::describe).collect()
}

/// `(hash, source, active)` of each version, in the order listed.
fn summary(versions: &[Value]) -> Vec<(String, String, bool)> {
    versions
        .iter()
        .map(|v| {
            (
                v["contentHash"].as_str().unwrap_or_default().to_string(),
                v["source"].as_str().unwrap_or_default().to_string(),
                v["active"] == true,
            )
        })
        .collect()
}

#[tokio::test]
async fn deploy_reject_and_rollback_under_load_with_scoped_tokens() {
    let env = DeployEnv::start().await;
    // Contents new to the shared compile cache, so these deploys compile while events stream.
    let run = unique_payload();
    let v1 = echo_build_bytes("v1");
    let v2 = with_custom_section(&echo_build_bytes("v2"), "run", &run);
    let wrong_world_component = with_custom_section(&wasi_command_bytes(), "run", &run);
    let (v1_hash, v2_hash) = (sha256_hex(&v1), sha256_hex(&v2));
    assert_eq!(env.probe_build().await, "v1");
    let stream = EventStream::start(
        &IncomingSender::new(&env.bridge),
        EXAMPLE_OWNER,
        4,
        Duration::from_millis(10),
    );
    stream.wait_for_more(20).await;

    // Broken components are rejected with the reason; the old version keeps serving.
    let garbage = env.deploy("acme", ACME_DEPLOY_TOKEN, garbage_bytes(4096, 7)).await;
    assert_eq!(garbage.status, 422, "{}", garbage.describe());
    assert_eq!(garbage.error_code().as_deref(), Some("rejected"));
    let reason = garbage.error_message().unwrap_or_default();
    assert!(reason.contains("not a WebAssembly component"), "{reason}");
    let started = Instant::now();
    let wrong_world = env.deploy("acme", ACME_DEPLOY_TOKEN, wrong_world_component).await;
    let rejected_window = (started, Instant::now());
    assert_eq!(wrong_world.status, 422, "{}", wrong_world.describe());
    let reason = wrong_world.error_message().unwrap_or_default();
    assert!(reason.contains("does not implement the adapter world"), "{reason}");
    let dir = env.dir.path().display().to_string();
    for response in [&garbage, &wrong_world] {
        assert!(
            !response.text().contains(&dir),
            "a server path leaked: {}",
            response.text()
        );
    }
    stream.wait_for_more(20).await;
    assert_eq!(adapter_info(&env.bridge, "acme").await["contentHash"], v1_hash.as_str());
    assert_eq!(env.probe_build().await, "v1");

    // A partner's token opens its own tenant only.
    let foreign = env.deploy("acme", BETA_DEPLOY_TOKEN, v2.clone()).await;
    assert_eq!(foreign.status, 403, "{}", foreign.describe());
    assert_eq!(foreign.error_code().as_deref(), Some("forbidden"));
    let foreign_rollback = env
        .call("POST", "acme", "rollback", Some(BETA_DEPLOY_TOKEN), Vec::new())
        .await;
    assert_eq!(foreign_rollback.status, 403, "{}", foreign_rollback.describe());
    let other_endpoint = env
        .bridge
        .client()
        .send(
            "GET",
            &format!("{}/admin/adapters", env.bridge.url()),
            &[("authorization", &format!("Bearer {ACME_DEPLOY_TOKEN}"))],
            Vec::new(),
        )
        .await;
    assert_eq!(other_endpoint.status, 401, "{}", other_endpoint.describe());
    let anonymous = env.call("PUT", "acme", "adapter", None, v2.clone()).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.describe());
    let too_large = env
        .deploy("acme", ACME_DEPLOY_TOKEN, garbage_bytes(MAX_BYTES + 1, 5))
        .await;
    assert_eq!(too_large.status, 413, "{}", too_large.describe());
    let unknown = env.deploy("nobody", ADMIN_TOKEN, v2.clone()).await;
    assert_eq!(unknown.status, 404, "{}", unknown.describe());
    assert_eq!(adapter_info(&env.bridge, "acme").await["contentHash"], v1_hash.as_str());

    // A good deploy under load: the new version serves.
    let started = Instant::now();
    let deployed = env.deploy("acme", ACME_DEPLOY_TOKEN, v2.clone()).await;
    let deploy_window = (started, Instant::now());
    assert_eq!(deployed.status, 200, "{}", deployed.describe());
    let version = &deployed.json()["version"];
    assert_eq!(version["contentHash"], v2_hash.as_str());
    assert_eq!(version["source"], "deployed");
    assert_eq!(version["active"], true);
    let info = adapter_info(&env.bridge, "acme").await;
    assert_eq!(info["contentHash"], v2_hash.as_str());
    assert_eq!(info["source"], "deployed");
    assert_eq!(adapter_info(&env.bridge, "beta").await["source"], "file");
    stream.wait_for_more(20).await;
    assert_eq!(env.probe_build().await, "v2");
    assert_eq!(
        summary(&env.versions("acme", ACME_DEPLOY_TOKEN).await),
        [
            (v2_hash.clone(), "deployed".into(), true),
            (v1_hash.clone(), "file".into(), false)
        ]
    );

    // Rollback returns to v1 (the configured file) in one step; then there is nothing older.
    let rolled_back = env
        .call("POST", "acme", "rollback", Some(ACME_DEPLOY_TOKEN), Vec::new())
        .await;
    assert_eq!(rolled_back.status, 200, "{}", rolled_back.describe());
    assert_eq!(rolled_back.json()["version"]["contentHash"], v1_hash.as_str());
    assert_eq!(rolled_back.json()["version"]["source"], "file");
    stream.wait_for_more(20).await;
    assert_eq!(env.probe_build().await, "v1");
    assert_eq!(
        summary(&env.versions("acme", ADMIN_TOKEN).await),
        [
            (v2_hash.clone(), "deployed".into(), false),
            (v1_hash.clone(), "file".into(), true)
        ]
    );
    let nothing_older = env
        .call("POST", "acme", "rollback", Some(ADMIN_TOKEN), Vec::new())
        .await;
    assert_eq!(nothing_older.status, 409, "{}", nothing_older.describe());
    assert_eq!(nothing_older.error_code().as_deref(), Some("no_previous_version"));

    let sent = stream.stop().await;
    assert!(sent.len() > 100, "the stream sent only {} events", sent.len());
    let failed = failures(&sent);
    assert!(failed.is_empty(), "{} request(s) failed: {failed:#?}", failed.len());
    for (what, (from, to)) in [("rejected", rejected_window), ("good", deploy_window)] {
        let during = sent.iter().filter(|s| s.sent_at < to && s.answered_at > from).count();
        assert!(
            during > 0,
            "no event was in flight during the {what} deploy ({:?})",
            to - from
        );
        eprintln!(
            "{what} deploy took {:?}; {during} event(s) answered meanwhile",
            to - from
        );
    }
    let stats = env.bridge.wait_until_settled().await;
    assert_eq!(stats["dead"], 0, "{stats}");
    assert!(env.bridge.dead_letters(None).await.is_empty());
}

#[tokio::test]
async fn deployed_version_survives_file_changes_and_restart_and_the_cli_deploys() {
    let mut env = DeployEnv::start().await;
    let (v1, v2) = (echo_build_bytes("v1"), echo_build_bytes("v2"));
    let v2_hash = sha256_hex(&v2);
    let deployed = env.deploy("acme", ACME_DEPLOY_TOKEN, v2.clone()).await;
    assert_eq!(deployed.status, 200, "{}", deployed.describe());

    // The configured file changes while a deployed version is active: the deployed one stays.
    overwrite_in_place(&env.acme_file, &with_custom_section(&v1, "changed", b"by hand"));
    let reload = admin_reload(&env.bridge).await;
    assert_eq!(reload.status, 200, "{}", reload.describe());
    assert_eq!(adapter_info(&env.bridge, "acme").await["contentHash"], v2_hash.as_str());
    assert_eq!(env.probe_build().await, "v2");

    // A restart keeps the active deployed version.
    env.bridge.terminate();
    env.bridge
        .wait_for_exit(Duration::from_secs(20))
        .await
        .expect("the bridge stops");
    env.bridge = start_on_config_file(&env.config_path, Some(INCOMING_TOKEN)).await;
    let info = adapter_info(&env.bridge, "acme").await;
    assert_eq!(info["contentHash"], v2_hash.as_str());
    assert_eq!(info["source"], "deployed");
    assert_eq!(env.probe_build().await, "v2");
    let ready = env.bridge.client().get(&format!("{}/readyz", env.bridge.url())).await;
    assert_eq!(ready.status, 200, "{}", ready.describe());

    // The CLI against the running bridge: a good deploy, a listing, a rejection, a rollback.
    let cli = |args: &[&str], token: &str| {
        Command::new(bridge_binary())
            .args(args)
            .env("DOLPHIN_BRIDGE_URL", env.bridge.url())
            .env("DOLPHIN_BRIDGE_DEPLOY_TOKEN", token)
            .env_remove("DOLPHIN_BRIDGE_CONFIG")
            .current_dir(env.dir.path())
            .output()
            .expect("run dolphin-bridge")
    };
    let v1_tagged = with_custom_section(&v1, "release", b"cli");
    let v1_tagged_path = env.dir.path().join("v1-tagged.wasm");
    std::fs::write(&v1_tagged_path, &v1_tagged).unwrap();
    let out = cli(
        &["deploy", "-t", "acme", v1_tagged_path.to_str().unwrap()],
        ACME_DEPLOY_TOKEN,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&sha256_hex(&v1_tagged)[..12]), "{stdout}");
    assert_eq!(env.probe_build().await, "v1");

    let out = cli(&["versions", "-t", "acme"], ACME_DEPLOY_TOKEN);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "two deployed versions and the file: {stdout}");
    assert!(
        lines[0].starts_with('*') && lines[0].contains(&sha256_hex(&v1_tagged)[..12]),
        "{stdout}"
    );
    assert!(lines[1].contains(&v2_hash[..12]), "{stdout}");

    let garbage_path = env.dir.path().join("garbage.wasm");
    std::fs::write(&garbage_path, garbage_bytes(1024, 3)).unwrap();
    let out = cli(
        &["deploy", "-t", "acme", garbage_path.to_str().unwrap()],
        ACME_DEPLOY_TOKEN,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("422") && stderr.contains("not a WebAssembly component"),
        "{stderr}"
    );

    let out = cli(
        &["deploy", "-t", "acme", v1_tagged_path.to_str().unwrap()],
        BETA_DEPLOY_TOKEN,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("403"), "{stderr}");

    let out = cli(&["rollback", "-t", "acme"], ACME_DEPLOY_TOKEN);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&v2_hash[..12]), "{stdout}");
    assert_eq!(env.probe_build().await, "v2");
}

#[tokio::test]
async fn deploy_fixtures_gate_a_tenants_versions() {
    let env = DeployEnv::start().await;
    let v2 = echo_build_bytes("v2");
    let passing = env.deploy("beta", BETA_DEPLOY_TOKEN, v2.clone()).await;
    assert_eq!(passing.status, 200, "{}", passing.describe());
    assert_eq!(
        adapter_info(&env.bridge, "beta").await["contentHash"],
        sha256_hex(&v2).as_str()
    );

    // The fake vendor now fails every message: the Incoming fixture fails, the deploy too.
    std::fs::write(
        env.beta_fixtures.join("vendor.json"),
        r#"[{ "method": "POST", "path": "/echo", "status": 500, "body": "down" }]"#,
    )
    .unwrap();
    let v1_tagged = with_custom_section(&echo_build_bytes("v1"), "release", b"fixtures");
    let failing = env.deploy("beta", ADMIN_TOKEN, v1_tagged).await;
    assert_eq!(failing.status, 422, "{}", failing.describe());
    let reason = failing.error_message().unwrap_or_default();
    assert!(
        reason.contains("fixtures failed") && reason.contains("incoming/01-customer-message.json"),
        "{reason}"
    );
    assert!(
        !reason.contains("echo-fixture-token"),
        "a fixture secret leaked: {reason}"
    );
    assert_eq!(
        adapter_info(&env.bridge, "beta").await["contentHash"],
        sha256_hex(&v2).as_str()
    );
    let versions = env.versions("beta", BETA_DEPLOY_TOKEN).await;
    assert_eq!(versions.len(), 2, "the rejected version is not kept: {versions:#?}");
}

#[tokio::test]
async fn the_newest_versions_are_kept_and_older_files_deleted() {
    let env = DeployEnv::start().await;
    let run = unique_payload();
    let builds: Vec<Vec<u8>> = (0..KEEP + 1)
        .map(|i| with_custom_section(&echo_build_bytes("v2"), &format!("release-{i}"), &run))
        .collect();
    for build in &builds {
        let response = env.deploy("acme", ACME_DEPLOY_TOKEN, build.clone()).await;
        assert_eq!(response.status, 200, "{}", response.describe());
    }
    let listed: Vec<String> = env
        .versions("acme", ACME_DEPLOY_TOKEN)
        .await
        .iter()
        .filter(|v| v["source"] == "deployed")
        .map(|v| v["contentHash"].as_str().unwrap_or_default().to_string())
        .collect();
    let newest_first: Vec<String> = builds.iter().rev().take(KEEP).map(|b| sha256_hex(b)).collect();
    assert_eq!(listed, newest_first);
    let folder = env.dir.path().join("deployments").join("acme");
    let mut files: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut expected: Vec<String> = newest_first.iter().map(|h| format!("{h}.wasm")).collect();
    expected.push("versions.json".into());
    expected.sort();
    assert_eq!(
        files, expected,
        "the oldest version's file is deleted, nothing else is left"
    );
}

/// A partner's adapter built for the 0.1 world deploys and runs as it is, and a 0.2 build replaces
/// it: each serves in its own world, as `/admin/adapters` names it.
#[tokio::test(flavor = "multi_thread")]
async fn a_0_1_component_deploys_beside_0_2_ones() {
    let env = DeployEnv::start().await;
    let world = || async {
        let listed = env.bridge.admin_get("adapters").await.json();
        let adapters = listed["adapters"].as_array().cloned().unwrap_or_default();
        let acme = adapters
            .iter()
            .find(|a| a["tenant"] == "acme")
            .cloned()
            .expect("acme listed");
        acme["witVersion"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(world().await, "dolphin:bridge@0.2.0");
    let old = std::fs::read(echo_world_0_1()).expect("the 0.1 fixture");
    let deployed = env.deploy("acme", ACME_DEPLOY_TOKEN, old).await;
    assert_eq!(deployed.status, 200, "{}", deployed.describe());
    assert_eq!(world().await, "dolphin:bridge@0.1.0");
    // The 0.1 echo was built without a build tag.
    assert_eq!(env.probe_build().await, "");
    let deployed = env.deploy("acme", ACME_DEPLOY_TOKEN, echo_build_bytes("v2")).await;
    assert_eq!(deployed.status, 200, "{}", deployed.describe());
    assert_eq!(world().await, "dolphin:bridge@0.2.0");
    assert_eq!(env.probe_build().await, "v2");
}

/// A version rejected because the tenant's fixtures cannot even be read tells the partner so,
/// without the server's paths and without quoting the fixture file (whose lines may hold a
/// secret): the operator's log has the details.
#[tokio::test]
async fn a_rejection_names_no_server_path_and_quotes_no_fixture_line() {
    let env = DeployEnv::start().await;
    let secret = "fixture-secret-value-0042";
    // An unterminated string: the TOML error points at the line holding the secret.
    std::fs::write(
        env.beta_fixtures.join("tenant.toml"),
        format!("[secrets]\napi_key = \"{secret}\n"),
    )
    .unwrap();
    let component = with_custom_section(&echo_build_bytes("v2"), "run", &unique_payload());
    let response = env.deploy("beta", BETA_DEPLOY_TOKEN, component).await;
    assert_eq!(response.status, 422, "{}", response.describe());
    let text = response.text();
    assert!(
        text.contains("tenant.toml"),
        "the reason should name the fixture file: {text}"
    );
    assert!(!text.contains(secret), "a fixture's line was quoted: {text}");
    let dir = env.dir.path().display().to_string();
    assert!(!text.contains(&dir), "a server path leaked: {text}");
    assert_eq!(env.probe_build().await, "v1");
}
