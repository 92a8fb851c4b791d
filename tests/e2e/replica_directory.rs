//! The replica directory: bridges sharing one PostgreSQL database (`[store] url`) each write a
//! heartbeat, and `GET /admin/adapters` on any of them lists every replica with the adapter
//! version it serves per tenant.
//!
//! Each test works in a schema of its own on the test server (`DOLPHIN_BRIDGE_TEST_POSTGRES_URL`,
//! set by `cargo xtask test`); without it the test fails, naming the variable.

use dolphin_bridge_tests::bridge::ADMIN_TOKEN;
use dolphin_bridge_tests::events::EXAMPLE_OWNER;
use dolphin_bridge_tests::reload_support::{adapter_info, echo_build, echo_build_bytes, sha256_hex};
use dolphin_bridge_tests::replica_support::{TempSchema, assert_store_is_postgres};
use dolphin_bridge_tests::{Bridge, BridgeConfig, MockThreeDolphins, MockVendor, Tenant, WAIT};
use serde_json::Value;

use crate::common::API_TOKEN;

/// Two replicas on a fresh schema, both serving tenant `acme` from the echo-v1 build.
struct TwoReplicas {
    a: Bridge,
    b: Bridge,
    _three_dolphins: MockThreeDolphins,
    _vendor: MockVendor,
    _schema: TempSchema,
}

impl TwoReplicas {
    async fn start() -> TwoReplicas {
        let schema = TempSchema::create().await;
        let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
        let vendor = MockVendor::start().await;
        let acme = Tenant::new("acme", EXAMPLE_OWNER, echo_build("v1"))
            .allow(&vendor.base_url())
            .config("url", &vendor.url());
        let config = BridgeConfig::new(&three_dolphins.base_url())
            .api_token(API_TOKEN)
            .store_url(schema.url())
            .tenant(acme);
        let a = Bridge::start(config.clone()).await;
        let b = Bridge::start(config).await;
        for bridge in [&a, &b] {
            assert_store_is_postgres(bridge).await;
        }
        TwoReplicas {
            a,
            b,
            _three_dolphins: three_dolphins,
            _vendor: vendor,
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

/// A deploy to one replica shows in the directory at once, on the other replica too: the
/// directory tells which version each replica serves.
#[tokio::test(flavor = "multi_thread")]
async fn a_deploy_shows_which_version_each_replica_serves() {
    let env = TwoReplicas::start().await;
    let v1 = sha256_hex(&echo_build_bytes("v1"));
    let v2_bytes = echo_build_bytes("v2");
    let v2 = sha256_hex(&v2_bytes);
    wait_for_directory(&env.b, "acme", [(listen(&env.a), &v1), (listen(&env.b), &v1)]).await;

    let auth = format!("Bearer {ADMIN_TOKEN}");
    let url = format!("{}/admin/tenants/acme/adapter", env.a.url());
    let deployed = env
        .a
        .client()
        .send(
            "PUT",
            &url,
            &[("authorization", &auth), ("content-type", "application/wasm")],
            v2_bytes,
        )
        .await;
    assert_eq!(deployed.status, 200, "{}", deployed.describe());
    assert_eq!(adapter_info(&env.a, "acme").await["contentHash"], v2.as_str());

    // The directory shows the deploying replica on the new version; the other replica still
    // serves (and reports) the version it has.
    let b_view = wait_for_directory(&env.b, "acme", [(listen(&env.a), &v2), (listen(&env.b), &v1)]).await;
    assert_eq!(b_view.len(), 2, "{b_view:#?}");
}
