//! A partner with only its deploy token cannot wear the bridge down through the deploy path:
//! rejected deploys leave no open descriptors, no compiled code on disk or in memory and no
//! trace in the operators' history; a slow deploy holds up no reload and no other tenant's
//! deploy; one tenant's deploy keeps every other tenant's protections (its open circuit
//! breaker); uploads wait in a bounded line.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use dolphin_bridge_tests::HttpResponse;
use dolphin_bridge_tests::adapters::{adapter, bridge_binary, hostile};
use dolphin_bridge_tests::bridge::ADMIN_TOKEN;
use dolphin_bridge_tests::reload_support::{
    admin_reload, echo_build_bytes, garbage_bytes, metric, sha256_hex, wasi_command_bytes, with_custom_section,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::deployments::{ACME_DEPLOY_TOKEN, BETA_DEPLOY_TOKEN, DeployEnv, KEEP, unique_payload};
use crate::status_page::{csrf_of, multipart};

/// The fake vendor of beta's deploy fixtures fails every message: every deploy to beta is
/// rejected by its fixtures, after it compiled.
fn fail_beta_fixtures(env: &DeployEnv) {
    std::fs::write(
        env.beta_fixtures.join("vendor.json"),
        r#"[{ "method": "POST", "path": "/echo", "status": 500, "body": "down" }]"#,
    )
    .unwrap();
}

/// How many descriptors the bridge process has open now.
fn open_descriptors(env: &DeployEnv) -> usize {
    let folder = format!("/proc/{}/fd", env.bridge.pid());
    std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("cannot list {folder}: {e}"))
        .count()
}

/// The files in `dir` (none when it does not exist).
fn files_in(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Gives the bridge a compile cache of its own, `cache` in the test's folder (the harness shares
/// one between bridges).
fn cache_of_its_own(table: &mut toml::Table, dir: &Path) {
    let adapters = table
        .entry("adapters")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .expect("an [adapters] table");
    adapters.insert(
        "cache_dir".into(),
        toml::Value::String(dir.join("cache").display().to_string()),
    );
}

/// The content hashes whose compiled code is in the compile cache `dir`.
fn cached_hashes(dir: &Path) -> BTreeSet<String> {
    files_in(dir)
        .iter()
        .filter_map(|file| file.strip_suffix(".cwasm"))
        .filter_map(|file| file.split_once('-').map(|(hash, _)| hash.to_string()))
        .collect()
}

/// Every fixture run stops its fake vendor: the bridge's open descriptors stay flat however
/// many deploys the fixtures reject.
#[tokio::test(flavor = "multi_thread")]
async fn rejected_deploys_leave_no_open_descriptors() {
    let env = DeployEnv::start().await;
    fail_beta_fixtures(&env);
    let component = with_custom_section(&echo_build_bytes("v1"), "release", b"descriptors");
    // One first, so that whatever the first deploy opens for good (the compile cache) is open.
    let first = env.deploy("beta", BETA_DEPLOY_TOKEN, component.clone()).await;
    assert_eq!(first.status, 422, "{}", first.describe());
    let before = open_descriptors(&env);
    const DEPLOYS: usize = 12;
    for _ in 0..DEPLOYS {
        let rejected = env.deploy("beta", BETA_DEPLOY_TOKEN, component.clone()).await;
        assert_eq!(rejected.status, 422, "{}", rejected.describe());
    }
    // A fixture run's fake vendor and its connections close as the run's tasks end, which a
    // loaded machine may finish a moment after the answer: what counts is that they do.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = open_descriptors(&env);
    while after > before + 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = open_descriptors(&env);
    }
    assert!(
        after <= before + 2,
        "{DEPLOYS} rejected deploys grew the open descriptors from {before} to {after} (5 s after the last)"
    );
}

/// A component that is rejected (another world, failing fixtures) is neither written to the
/// compile cache nor kept compiled in memory; an accepted one is, once.
#[tokio::test(flavor = "multi_thread")]
async fn rejected_deploys_leave_nothing_compiled_on_disk_or_in_memory() {
    let env = DeployEnv::start_with(cache_of_its_own).await;
    fail_beta_fixtures(&env);
    let cache = env.dir.path().join("cache");
    let cached_at_start = files_in(&cache);
    let compiled = || metric(&env.bridge, "dolphin_bridge_adapters_compiled", &[]);
    let run = unique_payload();
    for i in 0..3 {
        let section = format!("release-{i}");
        let wrong_world = with_custom_section(&wasi_command_bytes(), &section, &run);
        let response = env.deploy("acme", ACME_DEPLOY_TOKEN, wrong_world).await;
        assert_eq!(response.status, 422, "{}", response.describe());
        let failing = with_custom_section(&echo_build_bytes("v1"), &section, &run);
        let response = env.deploy("beta", BETA_DEPLOY_TOKEN, failing).await;
        assert_eq!(response.status, 422, "{}", response.describe());
    }
    assert_eq!(
        files_in(&cache),
        cached_at_start,
        "6 rejected components were written to the compile cache"
    );
    // acme and beta serve the same echo-v1 file content: one compiled adapter.
    assert_eq!(compiled().await, 1.0, "rejected components stay compiled in memory");

    let accepted = with_custom_section(&echo_build_bytes("v2"), "accepted", &run);
    let response = env.deploy("acme", ACME_DEPLOY_TOKEN, accepted).await;
    assert_eq!(response.status, 200, "{}", response.describe());
    assert_eq!(
        files_in(&cache).len(),
        cached_at_start.len() + 1,
        "the accepted one is cached"
    );
    assert_eq!(compiled().await, 2.0);
}

/// The compiled code of the versions `[deployments] keep` drops leaves the compile cache with
/// their files, unless another tenant keeps the same component: the cache holds the kept
/// versions and the configured files, however many versions were deployed.
#[tokio::test(flavor = "multi_thread")]
async fn the_compile_cache_holds_only_what_is_kept_or_configured() {
    let env = DeployEnv::start_with(cache_of_its_own).await;
    let cache = env.dir.path().join("cache");
    let run = unique_payload();
    let builds: Vec<Vec<u8>> = (0..KEEP + 2)
        .map(|i| with_custom_section(&echo_build_bytes("v2"), &format!("kept-{i}"), &run))
        .collect();
    // beta keeps the first of acme's builds.
    let response = env.deploy("beta", BETA_DEPLOY_TOKEN, builds[0].clone()).await;
    assert_eq!(response.status, 200, "{}", response.describe());
    for build in &builds {
        let response = env.deploy("acme", ACME_DEPLOY_TOKEN, build.clone()).await;
        assert_eq!(response.status, 200, "{}", response.describe());
    }
    let mut expected: BTreeSet<String> = builds.iter().rev().take(KEEP).map(|b| sha256_hex(b)).collect();
    expected.insert(sha256_hex(&builds[0]));
    // Both tenants' configured files.
    expected.insert(sha256_hex(&echo_build_bytes("v1")));
    assert_eq!(
        cached_hashes(&cache),
        expected,
        "{} versions deployed, {KEEP} kept: the cache holds the kept ones, beta's and the configured file",
        builds.len()
    );
}

/// `method /admin/tenants/{tenant}/{action}` with `token` and `body`, on a task of its own: the
/// answer and how long it took.
fn spawn_call(
    env: &DeployEnv,
    method: &'static str,
    path: String,
    token: &'static str,
    body: Vec<u8>,
) -> tokio::task::JoinHandle<(HttpResponse, Duration)> {
    let (url, client) = (env.bridge.url().to_string(), env.bridge.client().clone());
    tokio::spawn(async move {
        let started = Instant::now();
        let headers = [
            ("content-type", "application/wasm"),
            ("authorization", &format!("Bearer {token}")),
        ];
        let response = client.send(method, &format!("{url}{path}"), &headers, body).await;
        (response, started.elapsed())
    })
}

/// While `slow` (`what`, which must hold up nobody) runs, a reload and a deploy of a new build
/// to `tenant` both complete; returns `slow`'s answer.
async fn reload_and_deploy_beside(
    env: &DeployEnv,
    slow: tokio::task::JoinHandle<(HttpResponse, Duration)>,
    what: &str,
    (tenant, token): (&str, &str),
) -> HttpResponse {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!slow.is_finished(), "{what} should still be running");
    let started = Instant::now();
    let reload = tokio::time::timeout(Duration::from_secs(60), admin_reload(&env.bridge))
        .await
        .expect("the reload answers");
    assert_eq!(reload.status, 200, "{}", reload.describe());
    let reloaded_after = started.elapsed();
    let reload_finished_first = !slow.is_finished();
    let build = with_custom_section(&echo_build_bytes("v2"), "beside-a-slow-one", &unique_payload());
    let other = env.deploy(tenant, token, build).await;
    assert_eq!(other.status, 200, "{}", other.describe());
    let deployed_after = started.elapsed();
    let deploy_finished_first = !slow.is_finished();
    let (response, slow_took) = slow.await.unwrap();
    assert!(
        reload_finished_first && deploy_finished_first,
        "the reload took {reloaded_after:?} and {tenant}'s deploy {deployed_after:?}: they waited for \
         {what}, which took {slow_took:?}"
    );
    response
}

/// Compiling and running fixtures happen outside the registry's lock: a reload and another
/// tenant's deploy complete while one tenant's fixtures (an adapter spinning to its CPU limit in
/// each fixture) are still running.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_and_another_tenants_deploy_complete_during_a_slow_fixture_run() {
    let env = DeployEnv::start().await;
    // The hostile adapter spins in every fixture until its 2 s of CPU are spent.
    let tenant_toml = env.beta_fixtures.join("tenant.toml");
    let fixture_tenant = std::fs::read_to_string(&tenant_toml)
        .unwrap()
        .replace("[config]\n", "[config]\nmode = \"loop\"\n");
    std::fs::write(&tenant_toml, fixture_tenant).unwrap();
    let component = std::fs::read(hostile()).unwrap();
    let slow = spawn_call(
        &env,
        "PUT",
        "/admin/tenants/beta/adapter".into(),
        BETA_DEPLOY_TOKEN,
        component,
    );
    let response = reload_and_deploy_beside(&env, slow, "beta's deploy", ("acme", ACME_DEPLOY_TOKEN)).await;
    assert_eq!(response.status, 422, "{}", response.describe());
}

/// A rollback compiles its target outside the registry's lock too: a reload and another
/// tenant's deploy complete while a rollback to a configured Python adapter, whose compiled code
/// is no longer in the compile cache, compiles it; the rollback then succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_and_another_tenants_deploy_complete_during_a_rollbacks_cold_compile() {
    let env = DeployEnv::start_with(|table, dir| {
        cache_of_its_own(table, dir);
        std::fs::copy(adapter("echo-python"), dir.join("acme.wasm")).unwrap();
    })
    .await;
    let build = with_custom_section(&echo_build_bytes("v2"), "rolled-back", &unique_payload());
    let deployed = env.deploy("acme", ACME_DEPLOY_TOKEN, build).await;
    assert_eq!(deployed.status, 200, "{}", deployed.describe());
    // Nothing compiled is left on disk: the rollback compiles acme's file cold.
    let cache = env.dir.path().join("cache");
    for file in files_in(&cache) {
        std::fs::remove_file(cache.join(file)).unwrap();
    }
    let slow = spawn_call(
        &env,
        "POST",
        "/admin/tenants/acme/rollback".into(),
        ACME_DEPLOY_TOKEN,
        Vec::new(),
    );
    let response = reload_and_deploy_beside(&env, slow, "acme's rollback", ("beta", BETA_DEPLOY_TOKEN)).await;
    assert_eq!(response.status, 200, "{}", response.describe());
    assert_eq!(response.json()["version"]["source"], "file", "{}", response.describe());
}

/// A deploy to one tenant swaps in that tenant only: another tenant's open circuit breaker
/// stays open.
#[tokio::test(flavor = "multi_thread")]
async fn another_tenants_open_breaker_survives_a_deploy() {
    let env = DeployEnv::start().await;
    let deployed = env
        .deploy("acme", ACME_DEPLOY_TOKEN, std::fs::read(hostile()).unwrap())
        .await;
    assert_eq!(deployed.status, 200, "{}", deployed.describe());
    let trap = async || {
        let response = env
            .bridge
            .send_webhook("acme", "/hook?mode=trap", &serde_json::json!({}))
            .await;
        response.error_code().unwrap_or_else(|| response.describe())
    };
    // The default breaker opens after 10 consecutive faults.
    let mut answers = Vec::new();
    for _ in 0..11 {
        answers.push(trap().await);
    }
    let mut opened = vec!["adapter_trapped".to_string(); 10];
    opened.push("adapter_circuit_open".into());
    assert_eq!(answers, opened);

    let beta = env.deploy("beta", BETA_DEPLOY_TOKEN, echo_build_bytes("v2")).await;
    assert_eq!(beta.status, 200, "{}", beta.describe());
    assert_eq!(
        trap().await,
        "adapter_circuit_open",
        "beta's deploy closed acme's breaker"
    );
}

/// Rejected deploys have a list of their own in the operators' history: 60 of them do not push
/// the last reload out of it.
#[tokio::test(flavor = "multi_thread")]
async fn rejected_deploys_do_not_push_reloads_out_of_the_history() {
    let env = DeployEnv::start().await;
    let reload = admin_reload(&env.bridge).await;
    assert_eq!(reload.status, 200, "{}", reload.describe());
    for seed in 0..60 {
        let rejected = env.deploy("acme", ACME_DEPLOY_TOKEN, garbage_bytes(1024, seed)).await;
        assert_eq!(rejected.status, 422, "{}", rejected.describe());
    }
    let page = status_page(&env).await;
    assert!(
        page.contains("data-kind=\"reload-ok\""),
        "the reload is gone from the history after 60 rejected deploys"
    );
    assert!(
        page.contains("data-kind=\"deploy-rejected\""),
        "rejections are listed too"
    );
}

/// The status page, logged in with the admin token.
async fn status_page(env: &DeployEnv) -> String {
    status_page_session(env).await.1
}

/// A status page session's cookie (`name=value`) and the page it shows.
async fn status_page_session(env: &DeployEnv) -> (String, String) {
    let (client, base) = (env.bridge.client(), env.bridge.url().to_string());
    let login = client
        .send(
            "POST",
            &format!("{base}/admin/login"),
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("token={ADMIN_TOKEN}"),
        )
        .await;
    assert_eq!(login.status, 303, "{}", login.describe());
    let cookie = login.header("set-cookie").expect("a session cookie");
    let cookie = cookie.split(';').next().unwrap_or_default().to_string();
    let page = client
        .send("GET", &format!("{base}/admin"), &[("cookie", &cookie)], Vec::new())
        .await;
    assert_eq!(page.status, 200, "{}", page.describe());
    (cookie, page.text())
}

/// Where the status page's deploy form of `tenant` posts to.
fn form_action(page: &str, tenant: &str) -> String {
    let marker = format!("<form class=\"deploy\" data-tenant=\"{tenant}\" method=\"post\" action=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no deploy form of {tenant}: {page}"))
        + marker.len();
    let end = start + page[start..].find('"').expect("the action's end");
    page[start..end].replace("&amp;", "&")
}

/// Deploys `component` to `tenant` with the status page's form, as a browser sends it.
async fn form_deploy(env: &DeployEnv, cookie: &str, page: &str, tenant: &str, component: &[u8]) -> HttpResponse {
    let (content_type, body) = multipart(&[("csrf", &csrf_of(page)), ("tenant", tenant)], component);
    let url = format!("{}{}", env.bridge.url(), form_action(page, tenant));
    env.bridge
        .client()
        .send(
            "POST",
            &url,
            &[("content-type", &content_type), ("cookie", cookie)],
            body,
        )
        .await
}

/// Asserts the status page refused with `status` and shows `code`.
fn assert_page_refusal(response: &HttpResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{}", response.describe());
    let page = response.text();
    assert!(
        page.contains(&format!("id=\"problem\" class=\"problem\" data-code=\"{code}\"")),
        "{page}"
    );
}

/// Listing versions does not read and hash the tenant's configured adapter file at every
/// request: it is hashed when read at start, and again only once it changes.
#[tokio::test(flavor = "multi_thread")]
async fn listing_versions_does_not_hash_the_adapter_file_at_every_request() {
    let env = DeployEnv::start().await;
    // With a deployed version active, the configured file is listed beside it, not running.
    let deployed = env.deploy("acme", ACME_DEPLOY_TOKEN, echo_build_bytes("v2")).await;
    assert_eq!(deployed.status, 200, "{}", deployed.describe());
    let hashes = || metric(&env.bridge, "dolphin_bridge_adapter_file_hashes_total", &[]);
    let before = hashes().await;
    assert!(before >= 1.0, "the adapter files read at start are counted: {before}");
    for _ in 0..10 {
        assert_eq!(env.versions("acme", ACME_DEPLOY_TOKEN).await.len(), 2);
    }
    status_page(&env).await;
    assert_eq!(
        hashes().await,
        before,
        "listing versions read and hashed the adapter file again"
    );
    // A changed file is listed with its new hash.
    let changed = with_custom_section(&echo_build_bytes("v1"), "changed", &unique_payload());
    std::fs::write(env.dir.path().join("acme.wasm"), &changed).unwrap();
    let versions = env.versions("acme", ACME_DEPLOY_TOKEN).await;
    let file = versions
        .iter()
        .find(|v| v["source"] == "file")
        .expect("the file is listed");
    assert_eq!(file["contentHash"], sha256_hex(&changed).as_str());
}

/// A request `start` (`PUT /path`) with `headers` (lines without their end) announcing a body of
/// 500,000 bytes of which only `first` is sent: the connection, to be dropped to give up.
async fn slow_upload(env: &DeployEnv, start: String, headers: String, first: &[u8]) -> TcpStream {
    let address = env.bridge.url().trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&address).await.unwrap();
    let head = format!("{start} HTTP/1.1\r\nhost: {address}\r\n{headers}\r\ncontent-length: 500000\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first).await.unwrap();
    stream
}

/// A slow upload of a component to acme through the API, with its deploy token.
async fn slow_upload_to_acme(env: &DeployEnv) -> TcpStream {
    slow_upload(
        env,
        "PUT /admin/tenants/acme/adapter".to_string(),
        format!("authorization: Bearer {ACME_DEPLOY_TOKEN}\r\ncontent-type: application/wasm"),
        &[0u8; 4096],
    )
    .await
}

/// Opens a slow upload to acme with `open`, then deploys garbage (seeded `seed`) to acme with
/// its deploy token: the slow upload (still open) and the answer, the first one that is no
/// rejection of the garbage, for at most 10 s. Each try opens the slow upload anew: the bridge
/// may read its head only after the deploy took acme's slot, and refuse it, or take the slot
/// only after the deploy was answered.
async fn deploy_to_acme_during<F, Fut>(env: &DeployEnv, mut open: F, seed: u64) -> (TcpStream, HttpResponse)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = TcpStream>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let slow = open().await;
        let response = env.deploy("acme", ACME_DEPLOY_TOKEN, garbage_bytes(1024, seed)).await;
        if response.status != 422 || Instant::now() > deadline {
            return (slow, response);
        }
        // Once the bridge has seen it go, acme's slot is free for the next try.
        drop(slow);
        deploy_while(env, "acme", ACME_DEPLOY_TOKEN, seed, 429).await;
    }
}

/// Deploys garbage (seeded `seed`) to `tenant` again while it is answered `status`, for at
/// most 10 s; the first other answer (or the last one).
async fn deploy_while(env: &DeployEnv, tenant: &str, token: &str, seed: u64, status: u16) -> HttpResponse {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = env.deploy(tenant, token, garbage_bytes(1024, seed)).await;
        if response.status != status || Instant::now() > deadline {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A bridge taking one upload at a time (components up to 64 MiB) whose upload slot is held by
/// a slow upload to acme, and that upload (its connection open).
async fn bridge_with_its_upload_slot_taken() -> (DeployEnv, TcpStream) {
    let env = DeployEnv::start_with(|table, _| {
        let deployments = table["deployments"].as_table_mut().expect("[deployments]");
        deployments.insert("max_uploads".into(), toml::Value::Integer(1));
        deployments.insert("max_bytes".into(), toml::Value::Integer(64 << 20));
    })
    .await;
    let mut slow = slow_upload_to_acme(&env).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let probe = env.deploy("beta", BETA_DEPLOY_TOKEN, garbage_bytes(1024, 5)).await;
        if probe.status == 503 {
            return (env, slow);
        }
        assert!(
            Instant::now() < deadline,
            "the slow upload never took the upload slot: {}",
            probe.describe()
        );
        // The bridge may read the slow upload's head while a probe holds the slot, and refuse
        // it: an answer on its connection means it holds nothing, so it is opened again.
        if answered(&slow) {
            slow = slow_upload_to_acme(&env).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the bridge has answered (or closed) `stream`, without waiting.
fn answered(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    !matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// The bridge's own deploy client announces a component with `Expect: 100-continue` and sends
/// it only once the bridge asks for it: with every upload slot taken, deploying a 16 MiB
/// component answers the bridge's JSON refusal (503 `uploads_busy`), where the client used to
/// be still sending the body when the bridge answered and closed the connection.
#[tokio::test(flavor = "multi_thread")]
async fn the_deploy_client_gets_the_refusal_of_a_large_upload_not_a_reset() {
    let (env, _slow) = bridge_with_its_upload_slot_taken().await;
    let large = env.dir.path().join("large.wasm");
    std::fs::write(&large, garbage_bytes(16 << 20, 6)).unwrap();
    let started = Instant::now();
    let out = tokio::process::Command::new(bridge_binary())
        .args(["deploy", "-t", "beta", large.to_str().unwrap()])
        .env("DOLPHIN_BRIDGE_URL", env.bridge.url())
        .env("DOLPHIN_BRIDGE_DEPLOY_TOKEN", BETA_DEPLOY_TOKEN)
        .env_remove("DOLPHIN_BRIDGE_CONFIG")
        .output()
        .await
        .expect("run dolphin-bridge deploy");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let took = started.elapsed();
    assert!(!out.status.success(), "the deploy succeeded after {took:?}: {stderr}");
    assert!(
        stderr.contains("the bridge refused (503): uploads_busy") && stderr.contains("max_uploads"),
        "the client shows the bridge's refusal (after {took:?}): {stderr}"
    );
}

/// Uploads wait in a bounded line: one tenant may upload one component at a time and the
/// bridge takes `max_uploads` at once; past either a deploy is refused at once with the limit
/// named, and a slot frees when its upload ends.
#[tokio::test(flavor = "multi_thread")]
async fn parallel_slow_uploads_are_refused_past_the_limits() {
    let env = DeployEnv::start_with(|table, _| {
        let deployments = table["deployments"].as_table_mut().expect("[deployments]");
        deployments.insert("max_uploads".into(), toml::Value::Integer(1));
        deployments.insert("max_uploads_per_tenant".into(), toml::Value::Integer(1));
    })
    .await;
    // A slow upload to acme: the headers and a first part of the body, the rest never sent.
    let (slow, tenant_busy) = deploy_to_acme_during(&env, || slow_upload_to_acme(&env), 1).await;
    assert_eq!(tenant_busy.status, 429, "{}", tenant_busy.describe());
    assert_eq!(tenant_busy.error_code().as_deref(), Some("too_many_uploads"));
    let reason = tenant_busy.error_message().unwrap_or_default();
    assert!(reason.contains("max_uploads_per_tenant"), "{reason}");
    // A small body: refused before it is read, a large one may still be in flight when the
    // bridge answers and closes the connection.
    let all_busy = env.deploy("beta", BETA_DEPLOY_TOKEN, garbage_bytes(1024, 2)).await;
    assert_eq!(all_busy.status, 503, "{}", all_busy.describe());
    assert_eq!(all_busy.error_code().as_deref(), Some("uploads_busy"));
    let reason = all_busy.error_message().unwrap_or_default();
    assert!(reason.contains("[deployments] max_uploads"), "{reason}");
    // The status page's deploy form takes the same slots, before it reads the upload.
    let (cookie, page) = status_page_session(&env).await;
    let acme_form = form_deploy(&env, &cookie, &page, "acme", &garbage_bytes(1024, 4)).await;
    assert_page_refusal(&acme_form, 429, "too_many_uploads");
    assert!(
        acme_form.text().contains("max_uploads_per_tenant"),
        "{}",
        acme_form.text()
    );
    let beta_form = form_deploy(&env, &cookie, &page, "beta", &garbage_bytes(1024, 5)).await;
    assert_page_refusal(&beta_form, 503, "uploads_busy");

    // The slow upload gives up: its slot is free again.
    drop(slow);
    deploy_while(&env, "beta", BETA_DEPLOY_TOKEN, 3, 503).await;
    let deployed = env.deploy("beta", BETA_DEPLOY_TOKEN, echo_build_bytes("v2")).await;
    assert_eq!(deployed.status, 200, "{}", deployed.describe());

    // A slow upload through the form holds acme's slot in turn.
    let slow_form = || {
        slow_upload(
            &env,
            format!("POST {}", form_action(&page, "acme")),
            format!("cookie: {cookie}\r\ncontent-type: multipart/form-data; boundary=slow"),
            b"--slow\r\n",
        )
    };
    let (slow_form, tenant_busy) = deploy_to_acme_during(&env, slow_form, 6).await;
    assert_eq!(tenant_busy.status, 429, "{}", tenant_busy.describe());
    assert_eq!(tenant_busy.error_code().as_deref(), Some("too_many_uploads"));
    drop(slow_form);
    let freed = deploy_while(&env, "acme", ACME_DEPLOY_TOKEN, 7, 429).await;
    assert_eq!(freed.status, 422, "the form's slot is given back: {}", freed.describe());
}
