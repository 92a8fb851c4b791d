//! `[tenants.instance_reuse]`: a fresh instance for every call unless a tenant opts in; then
//! calls of that tenant (and only that tenant) share instances, for at most `max_calls` calls
//! each, and a call that faults takes its instance with it. The `hostile` adapter's
//! `instance-calls` mode answers how many calls its instance has served.

use dolphin_bridge_tests::{Bridge, BridgeConfig, MockThreeDolphins, Tenant, adapters};

use crate::common::{API_TOKEN, hostile_villain};

const OTHER_OWNER: &str = "0the40the40the40the40the40the4bb";

/// The bridge with `tenants` between a mock 3Dolphins and no vendor.
async fn start(tenants: Vec<Tenant>) -> (Bridge, MockThreeDolphins) {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let mut config = BridgeConfig::new(&three_dolphins.base_url()).api_token(API_TOKEN);
    for tenant in tenants {
        config = config.tenant(tenant);
    }
    (Bridge::start(config).await, three_dolphins)
}

/// Sends `tenant` a webhook in `mode`; the HTTP status and body.
async fn webhook(bridge: &Bridge, tenant: &str, mode: &str) -> (u16, String) {
    let response = bridge
        .send_webhook(tenant, &format!("/hook?mode={mode}"), &serde_json::json!({}))
        .await;
    (response.status, String::from_utf8_lossy(&response.body).into_owned())
}

/// How many calls the instance that served this one has served, this one included.
async fn instance_calls(bridge: &Bridge, tenant: &str) -> u64 {
    let (status, body) = webhook(bridge, tenant, "instance-calls").await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("the adapter answers JSON");
    answer["instance_calls"]
        .as_u64()
        .unwrap_or_else(|| panic!("no count in {body}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_gets_a_fresh_instance_by_default() {
    let (bridge, _three_dolphins) = start(vec![hostile_villain()]).await;
    for _ in 0..3 {
        assert_eq!(instance_calls(&bridge, "villain").await, 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_that_opts_in_reuses_an_instance_for_at_most_max_calls() {
    let villain = hostile_villain()
        .instance_reuse("idle", 1)
        .instance_reuse("max_calls", 3);
    let (bridge, _three_dolphins) = start(vec![villain]).await;
    let mut counts = Vec::new();
    for _ in 0..5 {
        counts.push(instance_calls(&bridge, "villain").await);
    }
    assert_eq!(counts, [1, 2, 3, 1, 2], "the fourth call starts a fresh instance");
}

/// The adapter's own error leaves its instance fit for the next call; a trap does not.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_that_faults_takes_its_instance_with_it() {
    let (bridge, _three_dolphins) = start(vec![hostile_villain().instance_reuse("idle", 1)]).await;
    assert_eq!(instance_calls(&bridge, "villain").await, 1);
    assert_eq!(instance_calls(&bridge, "villain").await, 2);
    let (status, body) = webhook(&bridge, "villain", "kv-peek").await;
    assert_ne!(status, 200, "the adapter refuses: {body}");
    assert_eq!(
        instance_calls(&bridge, "villain").await,
        3,
        "kept after the adapter's own error"
    );
    let (status, body) = webhook(&bridge, "villain", "trap").await;
    assert!(body.contains("adapter_trapped"), "{status} {body}");
    assert_eq!(
        instance_calls(&bridge, "villain").await,
        1,
        "a fresh instance after the trap"
    );
}

/// Two tenants on the same adapter file, both opted in, each keep their own instances.
#[tokio::test(flavor = "multi_thread")]
async fn tenants_never_share_an_instance() {
    let other = Tenant::new("other", OTHER_OWNER, adapters::hostile()).instance_reuse("idle", 1);
    let (bridge, _three_dolphins) = start(vec![hostile_villain().instance_reuse("idle", 1), other]).await;
    assert_eq!(instance_calls(&bridge, "villain").await, 1);
    assert_eq!(instance_calls(&bridge, "villain").await, 2);
    assert_eq!(instance_calls(&bridge, "other").await, 1);
    assert_eq!(instance_calls(&bridge, "villain").await, 3);
    assert_eq!(instance_calls(&bridge, "other").await, 2);
}

/// An instance whose calls leave WASI handles open (its host resource table grown since its
/// first call) is not kept: leaked handles do not pile up across calls.
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_that_leaks_handles_is_not_kept() {
    let villain = hostile_villain().instance_reuse("idle", 1).config("handles", "1000");
    let (bridge, _three_dolphins) = start(vec![villain]).await;
    let mut counts = Vec::new();
    for _ in 0..4 {
        let (status, body) = webhook(&bridge, "villain", "leak-calls").await;
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("the adapter answers JSON");
        counts.push(answer["instance_calls"].as_u64().unwrap_or_default());
    }
    assert_eq!(
        counts,
        [1, 2, 1, 2],
        "an instance that grew its table since its first call is dropped"
    );
}

/// Kept instances expire after `idle_ms` without a call.
#[tokio::test(flavor = "multi_thread")]
async fn kept_instances_expire_when_idle() {
    let villain = hostile_villain()
        .instance_reuse("idle", 1)
        .instance_reuse("idle_ms", 500);
    let (bridge, _three_dolphins) = start(vec![villain]).await;
    assert_eq!(instance_calls(&bridge, "villain").await, 1);
    assert_eq!(instance_calls(&bridge, "villain").await, 2);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        instance_calls(&bridge, "villain").await,
        1,
        "a fresh instance after the idle time"
    );
}
