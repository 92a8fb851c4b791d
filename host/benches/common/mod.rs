//! What the adapter benches share: one timed webhook call through the bridge's runtime.

use std::time::{Duration, Instant};

use dolphin_bridge::registry::AdapterRegistry;
use dolphin_bridge::runtime::bindings::dolphin::bridge::types as wt;
use dolphin_bridge::runtime::{CallContext, CallError};

/// Runs tenant `tenant`'s `on-vendor-webhook` with a JSON POST of `body`, as delivery
/// `delivery_id`; how long the call took, and its outcome.
pub async fn timed_webhook(
    registry: &AdapterRegistry,
    tenant: &str,
    body: Vec<u8>,
    delivery_id: String,
) -> (Duration, Result<wt::WebhookOutcome, CallError>) {
    let tenants = registry.snapshot();
    let loaded = tenants.by_name(tenant).expect("tenant loaded");
    let request = wt::WebhookRequest {
        method: "POST".into(),
        path: "/".into(),
        query: String::new(),
        headers: vec![("content-type".into(), "application/json".into())],
        body,
    };
    let ctx = CallContext {
        tenant: tenant.to_string(),
        delivery_id,
        attempt: 1,
        lease: None,
    };
    let started = Instant::now();
    let outcome = registry
        .runtime()
        .call_webhook(&loaded.adapter, loaded.host.clone(), &loaded.instances, ctx, request)
        .await;
    (started.elapsed(), outcome)
}
