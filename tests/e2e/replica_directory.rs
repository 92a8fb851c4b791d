//! The replica directory: bridges sharing one PostgreSQL database (`[store] url`) each write a
//! heartbeat, and `GET /admin/adapters` on any of them lists every replica with the adapter
//! version it serves per tenant.
//!
//! Each test works in a schema of its own on the test server (`DOLPHIN_BRIDGE_TEST_POSTGRES_URL`,
//! set by `cargo xtask test`); without it the test fails, naming the variable.

use dolphin_bridge_tests::bridge::{ADMIN_TOKEN, INCOMING_TOKEN, start_on_config_file};
use dolphin_bridge_tests::events::EXAMPLE_OWNER;
use dolphin_bridge_tests::reload_support::{
    adapter_info, echo_build, echo_build_bytes, log_lines_since, sha256_hex, wait_for_adapter_hash, wait_for_log_line,
};
use dolphin_bridge_tests::replica_support::{TempSchema, assert_store_is_postgres};
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, HttpResponse, MockThreeDolphins, MockVendor, Tenant, WAIT};
use serde_json::Value;

use crate::common::{API_TOKEN, assert_accepted, echo_build_replica_config};

/// Two replicas on a fresh schema, both serving tenant `acme` from the echo-v1 build.
struct TwoReplicas {
    a: Bridge,
    b: Bridge,
    /// The configuration both run on, for a replica started later.
    config: BridgeConfig,
    _three_dolphins: MockThreeDolphins,
    vendor: MockVendor,
    _schema: TempSchema,
}

impl TwoReplicas {
    async fn start() -> TwoReplicas {
        let schema = TempSchema::create().await;
        let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
        let vendor = MockVendor::start().await;
        let config = echo_build_replica_config(schema.url(), &three_dolphins, &vendor, "v1");
        let a = Bridge::start(config.clone()).await;
        let b = Bridge::start(config.clone()).await;
        for bridge in [&a, &b] {
            assert_store_is_postgres(bridge).await;
        }
        TwoReplicas {
            a,
            b,
            config,
            _three_dolphins: three_dolphins,
            vendor,
            _schema: schema,
        }
    }
}

/// `host:port` a bridge listens on, as its heartbeat names it.
fn listen(bridge: &Bridge) -> &str {
    bridge.url().trim_start_matches("http://")
}

/// The `replicas` array of `bridge`'s `/admin/adapters`.
async fn replicas(bridge: &Bridge) -> Vec<Value> {
    let response = bridge.admin_get("adapters").await;
    assert_eq!(response.status, 200, "GET /admin/adapters: {}", response.describe());
    let body = response.json();
    body["replicas"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("/admin/adapters has no replicas array: {body}"))
}

/// The content hash `entry` (a replica) serves for `tenant`.
fn served_hash<'a>(entry: &'a Value, tenant: &str) -> Option<&'a str> {
    entry["adapters"].as_array()?.iter().find(|a| a["tenant"] == tenant)?["contentHash"].as_str()
}

/// Polls `bridge`'s directory until the replicas listening on `a` and `b` serve `tenant` with
/// `hash_a` and `hash_b`; returns the directory. Panics after [`WAIT`] showing the last one.
async fn wait_for_directory(bridge: &Bridge, tenant: &str, expect: [(&str, &str); 2]) -> Vec<Value> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let directory = replicas(bridge).await;
        let matches = expect.iter().all(|(listen, hash)| {
            directory
                .iter()
                .any(|r| r["listen"] == *listen && r["stale"] == false && served_hash(r, tenant) == Some(hash))
        });
        if matches {
            return directory;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never listed {expect:?} for {tenant} within {WAIT:?}: {directory:#?}",
            bridge.url()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Both replicas appear in `/admin/adapters` of either, each with its own id, where it listens
/// and the same content hash for the tenant; each marks itself, and only itself, as `self`.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_list_each_other_with_the_version_they_serve() {
    let env = TwoReplicas::start().await;
    let hash = adapter_info(&env.a, "acme").await["contentHash"]
        .as_str()
        .expect("a content hash")
        .to_string();
    assert_eq!(adapter_info(&env.b, "acme").await["contentHash"], hash.as_str());
    for bridge in [&env.a, &env.b] {
        let directory = wait_for_directory(bridge, "acme", [(listen(&env.a), &hash), (listen(&env.b), &hash)]).await;
        assert_eq!(directory.len(), 2, "{directory:#?}");
        assert_ne!(directory[0]["replicaId"], directory[1]["replicaId"], "{directory:#?}");
        let this: Vec<&Value> = directory.iter().filter(|r| r["self"] == true).collect();
        assert_eq!(this.len(), 1, "{directory:#?}");
        assert_eq!(this[0]["listen"], listen(bridge), "{directory:#?}");
        let body = bridge.admin_get("adapters").await.json();
        assert_eq!(body["replica"], this[0]["replicaId"], "{body}");
        assert!(
            body["adapters"][0]["contentHash"].is_string(),
            "existing fields kept: {body}"
        );
    }
}

/// `method /admin/tenants/acme/{action}` on `bridge` with the admin token.
async fn tenant_call(bridge: &Bridge, method: &str, action: &str, body: Vec<u8>) -> HttpResponse {
    tenant_call_for(bridge, "acme", method, action, body).await
}

/// `method /admin/tenants/{tenant}/{action}` on `bridge` with the admin token.
async fn tenant_call_for(bridge: &Bridge, tenant: &str, method: &str, action: &str, body: Vec<u8>) -> HttpResponse {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let url = format!("{}/admin/tenants/{tenant}/{action}", bridge.url());
    bridge
        .client()
        .send(
            method,
            &url,
            &[("authorization", &auth), ("content-type", "application/wasm")],
            body,
        )
        .await
}

/// The active content hash in `bridge`'s `GET /admin/tenants/acme/versions`.
async fn active_version(bridge: &Bridge) -> String {
    let response = tenant_call(bridge, "GET", "versions", Vec::new()).await;
    assert_eq!(response.status, 200, "{}", response.describe());
    let body = response.json();
    let versions = body["versions"].as_array().cloned().unwrap_or_default();
    let active: Vec<&Value> = versions.iter().filter(|v| v["active"] == true).collect();
    assert_eq!(active.len(), 1, "one active version: {body}");
    active[0]["contentHash"].as_str().unwrap_or_default().to_string()
}

/// Sends one event of acme to `bridge`, waits until it is delivered (by whichever replica
/// claims it) and returns the echo build that handled it (`v1` or `v2`).
async fn probe_build(env: &TwoReplicas, bridge: &Bridge) -> String {
    let id = assert_accepted(
        &bridge
            .send_event(Event::fresh().owner(EXAMPLE_OWNER).message("probe"))
            .await,
    );
    bridge.wait_for_delivery(&id, "delivered").await;
    let bodies: Vec<Value> = env
        .vendor
        .bodies()
        .into_iter()
        .filter(|b| b["deliveryId"] == id.as_str())
        .collect();
    assert_eq!(bodies.len(), 1, "probe {id} should arrive once: {bodies:#?}");
    bodies[0]["build"].as_str().unwrap_or_default().to_string()
}

/// A deploy to one replica reaches the other through the shared store: the directory shows both
/// on the new version and the other replica's events run on it; a rollback on the other
/// replica brings both back; a replica started after the deploy serves the deployed version
/// from its start.
#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_or_rollback_on_one_replica_reaches_every_replica() {
    let env = TwoReplicas::start().await;
    let v1 = sha256_hex(&echo_build_bytes("v1"));
    let v2_bytes = echo_build_bytes("v2");
    let v2 = sha256_hex(&v2_bytes);
    wait_for_directory(&env.b, "acme", [(listen(&env.a), &v1), (listen(&env.b), &v1)]).await;
    assert_eq!(probe_build(&env, &env.b).await, "v1");

    let deployed = tenant_call(&env.a, "PUT", "adapter", v2_bytes).await;
    assert_eq!(deployed.status, 200, "{}", deployed.describe());
    assert_eq!(adapter_info(&env.a, "acme").await["contentHash"], v2.as_str());

    // B follows: its own /admin/adapters, the directory, and the events it takes.
    let b_view = wait_for_directory(&env.b, "acme", [(listen(&env.a), &v2), (listen(&env.b), &v2)]).await;
    assert_eq!(b_view.len(), 2, "{b_view:#?}");
    let on_b = adapter_info(&env.b, "acme").await;
    assert_eq!(on_b["contentHash"], v2.as_str(), "{on_b}");
    assert_eq!(on_b["source"], "deployed", "{on_b}");
    assert_eq!(probe_build(&env, &env.b).await, "v2");
    assert_eq!(active_version(&env.b).await, v2, "B lists the shared versions");

    // A replica started now serves v2 as soon as it is ready, from the shared store.
    let c = Bridge::start(env.config.clone()).await;
    let on_c = adapter_info(&c, "acme").await;
    assert_eq!(on_c["contentHash"], v2.as_str(), "{on_c}");
    assert_eq!(on_c["source"], "deployed", "{on_c}");
    assert!(
        log_lines_since(&c, 0, &["adapter version activated from the shared store"]).is_empty(),
        "C loaded v2 at start, not by following later:\n{}",
        c.stderr()
    );

    // A rollback on B takes A (and C) back to v1.
    let rolled = tenant_call(&env.b, "POST", "rollback", Vec::new()).await;
    assert_eq!(rolled.status, 200, "{}", rolled.describe());
    assert_eq!(adapter_info(&env.b, "acme").await["contentHash"], v1.as_str());
    let a_view = wait_for_directory(&env.a, "acme", [(listen(&env.a), &v1), (listen(&env.b), &v1)]).await;
    assert_eq!(a_view.len(), 3, "{a_view:#?}");
    let deadline = std::time::Instant::now() + WAIT;
    while adapter_info(&c, "acme").await["contentHash"] != v1.as_str() {
        assert!(std::time::Instant::now() < deadline, "C never went back to v1");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(adapter_info(&env.a, "acme").await["source"], "file");
    assert_eq!(probe_build(&env, &env.a).await, "v1");
    assert_eq!(active_version(&env.a).await, v1);
}

/// A version that fails to validate on one replica (there, its deploy fixtures fail) is logged
/// once and not tried again when other changes make that replica look at the shared store: it
/// keeps serving its version, and still follows other tenants' deploys.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_a_replica_rejects_is_logged_once_and_not_retried() {
    const BETA_OWNER: &str = "beta0000000000000000000000000001";
    let schema = TempSchema::create().await;
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = MockVendor::start().await;
    let echo = |name: &str, owner: &str| {
        Tenant::new(name, owner, echo_build("v1"))
            .allow(&vendor.base_url())
            .config("url", &vendor.url())
    };
    let config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .store_url(schema.url())
        .tenant(echo("acme", EXAMPLE_OWNER))
        .tenant(echo("beta", BETA_OWNER));
    let a = Bridge::start(config.clone()).await;

    // B gates acme's versions with echo's fixtures against a vendor that fails every message.
    let dir = tempfile::Builder::new()
        .prefix("dolphin-bridge-replica-")
        .tempdir()
        .expect("a temp dir");
    let fixtures = dir.path().join("fixtures");
    let echo_fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/echo/fixtures");
    for entry in walk(&echo_fixtures) {
        let to = fixtures.join(entry.strip_prefix(&echo_fixtures).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
    std::fs::write(
        fixtures.join("vendor.json"),
        r#"[{ "method": "POST", "path": "/echo", "status": 500, "body": "down" }]"#,
    )
    .unwrap();
    let mut table: toml::Table = config.to_toml().parse().expect("valid TOML");
    let mut deploy = toml::Table::new();
    deploy.insert("fixtures".into(), toml::Value::String(fixtures.display().to_string()));
    table["tenants"].as_array_mut().expect("tenants")[0]
        .as_table_mut()
        .expect("a tenant table")
        .insert("deploy".into(), toml::Value::Table(deploy));
    let config_path = dir.path().join("bridge.toml");
    std::fs::write(&config_path, toml::to_string(&table).unwrap()).unwrap();
    let b = start_on_config_file(&config_path, Some(INCOMING_TOKEN)).await;

    let v1 = sha256_hex(&echo_build_bytes("v1"));
    let v2_bytes = echo_build_bytes("v2");
    let v2 = sha256_hex(&v2_bytes);
    let deployed = tenant_call_for(&a, "acme", "PUT", "adapter", v2_bytes.clone()).await;
    assert_eq!(deployed.status, 200, "{}", deployed.describe());
    let rejected = ["rejected here", "acme", "fixtures failed"];
    wait_for_log_line(&b, 0, &rejected).await;

    // Another change: B follows beta's deploy, and does not try acme's version again.
    let deployed = tenant_call_for(&a, "beta", "PUT", "adapter", v2_bytes).await;
    assert_eq!(deployed.status, 200, "{}", deployed.describe());
    wait_for_adapter_hash(&b, "beta", &v2).await;
    assert_eq!(adapter_info(&b, "acme").await["contentHash"], v1.as_str());
    let lines = log_lines_since(&b, 0, &rejected);
    assert_eq!(lines.len(), 1, "rejected once, not retried: {lines:#?}");
    wait_for_directory(&a, "acme", [(listen(&a), &v2), (listen(&b), &v1)]).await;
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
