//! Shared deployments whose database rows were tampered with: a replica recomputes the hash of
//! every component it reads from the shared store and checks the form of every hash before it
//! names a file after it, and with `[deployments] signing_key` takes only versions sealed with
//! the key; a row that fails is refused, logged, and the previous version keeps serving.
//!
//! Each test works in a schema of its own on the test server (`DOLPHIN_BRIDGE_TEST_POSTGRES_URL`,
//! set by `cargo xtask test`); without it the test fails, naming the variable.

use dolphin_bridge_tests::bridge::ADMIN_TOKEN;
use dolphin_bridge_tests::client::HttpResponse;
use dolphin_bridge_tests::reload_support::{
    adapter_info, echo_build_bytes, log_lines_since, sha256_hex, wait_for_log_line, with_custom_section,
};
use dolphin_bridge_tests::replica_support::{TempSchema, assert_store_is_postgres};
use dolphin_bridge_tests::{Bridge, MockThreeDolphins, MockVendor};

use crate::common::{API_TOKEN, echo_build_replica_config};

/// A replica of `schema` serving tenant `acme` from the echo-v1 build, with `key` as its
/// `[deployments] signing_key`.
fn replica_config(
    schema: &TempSchema,
    three_dolphins: &MockThreeDolphins,
    vendor: &MockVendor,
    key: Option<&str>,
) -> dolphin_bridge_tests::BridgeConfig {
    let mut config = echo_build_replica_config(schema.url(), three_dolphins, vendor, "v1");
    if let Some(key) = key {
        config.extra_toml = format!("[deployments]\nsigning_key = \"{key}\"");
    }
    config
}

/// One replica on a fresh schema serving tenant `acme` from the echo-v1 build.
struct OneReplica {
    bridge: Bridge,
    schema: TempSchema,
    _three_dolphins: MockThreeDolphins,
    _vendor: MockVendor,
}

/// The replicas' `[deployments] signing_key` in the tests that set one.
const SIGNING_KEY: &str = "replicas-signing-key-0123";

impl OneReplica {
    async fn start() -> OneReplica {
        Self::start_with_key(None).await
    }

    /// One replica whose `[deployments] signing_key` is `key`.
    async fn start_with_key(key: Option<&str>) -> OneReplica {
        let schema = TempSchema::create().await;
        let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
        let vendor = MockVendor::start().await;
        let config = replica_config(&schema, &three_dolphins, &vendor, key);
        let bridge = Bridge::start(config).await;
        assert_store_is_postgres(&bridge).await;
        OneReplica {
            bridge,
            schema,
            _three_dolphins: three_dolphins,
            _vendor: vendor,
        }
    }

    /// Writes, as someone with write access to the database would, a shared version of `acme`
    /// claiming hash `claimed` and holding `component`, makes it active and bumps the counter
    /// replicas poll.
    async fn plant_version(&self, claimed: &str, component: &[u8]) {
        let client = self.schema.client().await;
        let generation: i64 = client
            .query_one(
                "UPDATE deployment_generation SET value = value + 1 RETURNING value",
                &[],
            )
            .await
            .expect("bump the generation")
            .get(0);
        client
            .execute(
                "INSERT INTO deployment_versions (tenant, content_hash, size_bytes, deployed_at, deployed, component)
                 VALUES ('acme', $1, $2, $3, $4, $5)",
                &[
                    &claimed,
                    &(component.len() as i64),
                    &"2026-01-01T00:00:00+00:00",
                    &generation,
                    &component,
                ],
            )
            .await
            .expect("insert the planted version");
        client
            .execute(
                "INSERT INTO deployment_tenants (tenant, active, keep, changed) VALUES ('acme', $1, 5, $2)",
                &[&claimed, &generation],
            )
            .await
            .expect("make the planted version active");
    }
}

/// A row whose bytes are not the ones its hash names (here: echo-v2 with an extra section, under
/// echo-v2's hash) is refused: the replica logs it once and keeps serving echo-v1.
#[tokio::test(flavor = "multi_thread")]
async fn a_shared_version_whose_bytes_do_not_match_its_hash_is_refused() {
    let env = OneReplica::start().await;
    let v1 = sha256_hex(&echo_build_bytes("v1"));
    let v2_bytes = echo_build_bytes("v2");
    let claimed = sha256_hex(&v2_bytes);
    let tampered = with_custom_section(&v2_bytes, "planted", b"someone else's code");
    env.plant_version(&claimed, &tampered).await;

    let needles = ["refused", "acme", "does not match"];
    let line = wait_for_log_line(&env.bridge, 0, &needles).await;
    assert!(line.contains(&claimed[..12]), "names the claimed hash: {line}");
    let served = adapter_info(&env.bridge, "acme").await;
    assert_eq!(served["contentHash"], v1.as_str(), "{served}");
    assert_eq!(served["source"], "file", "{served}");
    // Further polls do not try it again.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert_eq!(
        log_lines_since(&env.bridge, 0, &needles).len(),
        1,
        "{}",
        env.bridge.stderr()
    );
    assert_eq!(adapter_info(&env.bridge, "acme").await["contentHash"], v1.as_str());
}

/// A row whose hash is not 64 hex digits (here `../../x`, which as a file name would leave the
/// tenant's folder) is refused before anything is written or compiled under it.
#[tokio::test(flavor = "multi_thread")]
async fn a_shared_version_with_a_malformed_hash_is_refused() {
    let env = OneReplica::start().await;
    let v1 = sha256_hex(&echo_build_bytes("v1"));
    env.plant_version("../../x", &echo_build_bytes("v2")).await;

    wait_for_log_line(&env.bridge, 0, &["refused", "acme", "not a content hash"]).await;
    let served = adapter_info(&env.bridge, "acme").await;
    assert_eq!(served["contentHash"], v1.as_str(), "{served}");
    assert_eq!(served["source"], "file", "{served}");
    assert!(
        !env.bridge.stderr().contains("panicked"),
        "no panic on the short hash:\n{}",
        env.bridge.stderr()
    );
}

/// With `[deployments] signing_key`, a version written to the database with its true hash (as
/// someone with write access to it, or on a plain path to it, could) carries no seal of the key
/// and is refused: the replica keeps serving echo-v1.
#[tokio::test(flavor = "multi_thread")]
async fn with_a_signing_key_a_version_planted_with_its_true_hash_is_refused() {
    let env = OneReplica::start_with_key(Some(SIGNING_KEY)).await;
    let v1 = sha256_hex(&echo_build_bytes("v1"));
    let v2_bytes = echo_build_bytes("v2");
    let v2 = sha256_hex(&v2_bytes);
    env.plant_version(&v2, &v2_bytes).await;

    let line = wait_for_log_line(&env.bridge, 0, &["refused", "acme", "no valid seal"]).await;
    assert!(line.contains(&v2[..12]), "names the version: {line}");
    assert!(!line.contains(SIGNING_KEY), "never the key: {line}");
    let served = adapter_info(&env.bridge, "acme").await;
    assert_eq!(served["contentHash"], v1.as_str(), "{served}");
    assert_eq!(served["source"], "file", "{served}");
}

/// A version deployed through a replica with the key is sealed in the database and served; a
/// replica that starts later with the same key takes it, one with another key refuses it and
/// serves its file.
#[tokio::test(flavor = "multi_thread")]
async fn with_a_signing_key_a_deployed_version_is_sealed_and_other_keys_refuse_it() {
    let env = OneReplica::start_with_key(Some(SIGNING_KEY)).await;
    let v1 = sha256_hex(&echo_build_bytes("v1"));
    let v2_bytes = echo_build_bytes("v2");
    let v2 = sha256_hex(&v2_bytes);
    let deployed = put_adapter(&env.bridge, v2_bytes).await;
    assert_eq!(deployed.status, 200, "{}", deployed.describe());
    assert_eq!(adapter_info(&env.bridge, "acme").await["contentHash"], v2.as_str());
    let seal: Option<String> = env
        .schema
        .client()
        .await
        .query_one(
            "SELECT seal FROM deployment_versions WHERE tenant = 'acme' AND content_hash = $1",
            &[&v2],
        )
        .await
        .expect("the deployed version's row")
        .get(0);
    let seal = seal.expect("the version is sealed");
    assert_eq!(seal.len(), 64, "hex HMAC-SHA256: {seal}");

    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = MockVendor::start().await;
    let same_key = Bridge::start(replica_config(&env.schema, &three_dolphins, &vendor, Some(SIGNING_KEY))).await;
    let served = adapter_info(&same_key, "acme").await;
    assert_eq!(served["contentHash"], v2.as_str(), "{served}");
    assert_eq!(served["source"], "deployed", "{served}");

    let other_key = Bridge::start(replica_config(
        &env.schema,
        &three_dolphins,
        &vendor,
        Some("another-signing-key-0123"),
    ))
    .await;
    let served = adapter_info(&other_key, "acme").await;
    assert_eq!(served["contentHash"], v1.as_str(), "{served}");
    assert!(
        other_key.stderr().contains("no valid seal"),
        "the refusal is logged:\n{}",
        other_key.stderr()
    );
}

/// `PUT /admin/tenants/acme/adapter` with the admin token.
async fn put_adapter(bridge: &Bridge, component: Vec<u8>) -> HttpResponse {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let url = format!("{}/admin/tenants/acme/adapter", bridge.url());
    bridge
        .client()
        .send(
            "PUT",
            &url,
            &[("authorization", &auth), ("content-type", "application/wasm")],
            component,
        )
        .await
}
