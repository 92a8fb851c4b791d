//! The delivery SLO metrics on `/metrics` (delivery latency, outbox depth, the oldest pending
//! event's age, dead letters, replicas' heartbeat ages), and the shipped Prometheus rules and
//! Grafana dashboard, whose queries must name metrics the bridge exports.

use std::time::{Duration, Instant};

use dolphin_bridge_tests::bridge::Bridge;
use dolphin_bridge_tests::reload_support::{metric_value, metrics_text};
use dolphin_bridge_tests::wait::WAIT;
use dolphin_bridge_tests::{Event, adapters};
use serde_json::{Value, json};

use crate::common::{ECHO_TENANT, EchoEnv, assert_accepted};

/// Polls `/metrics` until `holds` is true of it; returns that text.
async fn wait_for_metrics(bridge: &Bridge, what: &str, holds: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = metrics_text(bridge).await;
        if holds(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn delivered_pending_and_dead_events_show_in_the_slo_metrics() {
    let env = EchoEnv::start().await;
    let tenant = [("tenant", ECHO_TENANT)];
    let latency = [("tenant", ECHO_TENANT), ("direction", "to_vendor")];

    // Delivered: one observation of the latency, nothing pending, no dead letter.
    assert_accepted(&env.bridge.send_event(Event::fresh().message("first")).await);
    let text = wait_for_metrics(&env.bridge, "one delivery observed", |text| {
        metric_value(text, "dolphin_bridge_delivery_latency_seconds_count", &latency) == 1.0
    })
    .await;
    let sum = metric_value(&text, "dolphin_bridge_delivery_latency_seconds_sum", &latency);
    assert!(
        sum > 0.0 && sum < WAIT.as_secs_f64(),
        "the latency is the time it took: {sum}\n{text}"
    );
    assert_eq!(
        metric_value(&text, "dolphin_bridge_outbox_pending", &tenant),
        0.0,
        "{text}"
    );
    assert_eq!(
        metric_value(&text, "dolphin_bridge_dead_letters", &tenant),
        0.0,
        "{text}"
    );

    // A 400 is permanent for the echo adapter: a dead letter.
    env.vendor.fail_next(1, 400);
    assert_accepted(&env.bridge.send_event(Event::fresh().message("refused")).await);
    wait_for_metrics(&env.bridge, "one dead letter", |text| {
        metric_value(text, "dolphin_bridge_dead_letters", &tenant) == 1.0
    })
    .await;

    // A vendor that does not answer yet: the event stays pending, and its age grows.
    env.vendor.set_delay(Duration::from_secs(30));
    assert_accepted(&env.bridge.send_event(Event::fresh().message("waiting")).await);
    let first = wait_for_metrics(&env.bridge, "one pending event", |text| {
        metric_value(text, "dolphin_bridge_outbox_pending", &tenant) == 1.0
    })
    .await;
    let age = metric_value(&first, "dolphin_bridge_outbox_oldest_pending_seconds", &tenant);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let later = metrics_text(&env.bridge).await;
    let older = metric_value(&later, "dolphin_bridge_outbox_oldest_pending_seconds", &tenant);
    assert!(
        older >= age + 1.0,
        "the oldest event's age grows: {age} then {older}\n{later}"
    );
    assert_eq!(
        metric_value(&later, "dolphin_bridge_outbox_pending", &tenant),
        1.0,
        "{later}"
    );
    assert_eq!(
        metric_value(&later, "dolphin_bridge_delivery_latency_seconds_count", &latency),
        1.0,
        "only delivered events are observed: {later}"
    );
    // This process's own heartbeat, seconds old at most.
    let heartbeats: Vec<&str> = later
        .lines()
        .filter(|l| l.starts_with("dolphin_bridge_replica_heartbeat_age_seconds{"))
        .collect();
    assert_eq!(heartbeats.len(), 1, "{later}");
    let age: f64 = heartbeats[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert!(age < 30.0, "{}", heartbeats[0]);
}

/// The metric names in `expr` (PromQL): every `dolphin_bridge_...` identifier.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("dolphin_bridge_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Whether `/metrics` (`text`) exports `name`: as a sample, or as a family whose samples
/// (a counter's `_total`, a histogram's `_bucket`, `_sum` and `_count`) have not been written yet.
fn exported(text: &str, name: &str) -> bool {
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .any(|l| l.split(['{', ' ']).next() == Some(name));
    let family = ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| name.strip_suffix(suffix))
        .chain([name])
        .any(|family| text.lines().any(|l| l.starts_with(&format!("# TYPE {family} "))));
    samples || family
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboards_and_the_alert_rules_queries_name_exported_metrics() {
    let env = EchoEnv::start().await;
    let event = Event::fresh();
    let ticket = event.ticket_number();
    assert_accepted(&env.bridge.send_event(event).await);
    env.bridge.wait_until_settled().await;
    let reply = env
        .bridge
        .send_webhook(
            ECHO_TENANT,
            "/webhook",
            &json!({"ticketNumber": ticket, "message": "hello"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.describe());
    env.bridge.wait_until_settled().await;
    let text = metrics_text(&env.bridge).await;

    let root = adapters::workspace_root();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/dolphin-bridge.json")).expect("the dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut queries: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|target| target["expr"].as_str().map(str::to_string))
        .collect();
    assert!(queries.len() >= 8, "every panel has its query: {queries:?}");
    for variable in dashboard["templating"]["list"].as_array().expect("variables") {
        if let Some(query) = variable["definition"].as_str() {
            queries.push(query.to_string());
        }
    }
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/dolphin-bridge-rules.yml")).expect("the rules");
    let rule_queries: Vec<String> = rules
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("expr:"))
        .map(str::to_string)
        .collect();
    assert_eq!(rule_queries.len(), 5, "{rules}");
    queries.extend(rule_queries);

    let mut missing = Vec::new();
    for query in &queries {
        let names = metric_names(query);
        assert!(!names.is_empty(), "a query names no metric of the bridge: {query}");
        missing.extend(names.into_iter().filter(|name| !exported(&text, name)));
    }
    assert!(missing.is_empty(), "queried but not exported: {missing:?}\n{text}");
    for slo in [
        "dolphin_bridge_delivery_latency_seconds_bucket",
        "dolphin_bridge_outbox_pending",
        "dolphin_bridge_outbox_oldest_pending_seconds",
        "dolphin_bridge_dead_letters",
    ] {
        assert!(queries.iter().any(|q| q.contains(slo)), "nothing shows {slo}");
    }
}
