//! Traces: with `[telemetry] otlp_endpoint` set, the bridge exports one trace per event to an
//! OTLP/HTTP receiver (here a mock on loopback that decodes the protobuf): the Incoming request
//! or the webhook, every delivery attempt (a retry included) as a child of the acceptance, the
//! adapter call, its host calls and the post to 3Dolphins; a client's `traceparent` is
//! continued, the vendor gets one only when the tenant asks, and no secret is in any span.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dolphin_bridge_tests::bridge::INCOMING_TOKEN;
use dolphin_bridge_tests::mock_http::{MockServer, Recorded, Reply};
use dolphin_bridge_tests::{BridgeConfig, Event, Tenant, WAIT, wait_for};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::{Value, json};

use crate::common::{API_TOKEN, ECHO_TENANT, EchoEnv, assert_accepted, post_webhook};

/// The echo tenant's vendor token (`[tenants.config] token`, redacted as a secret).
const VENDOR_TOKEN: &str = "e2e-traces-vendor-token-9f81c2";
/// The echo tenant's webhook token (`[tenants.webhook] secret`).
const WEBHOOK_TOKEN: &str = "e2e-traces-webhook-token-77d0ab";
/// A client's trace: the span that sent the Incoming request.
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
/// `[telemetry] service_name` of the test bridges.
const SERVICE: &str = "dolphin-bridge-e2e";

/// One exported span, its ids in hex and its attributes as text.
#[derive(Debug, Clone)]
struct Exported {
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: BTreeMap<String, String>,
    /// OpenTelemetry's status code: 0 unset, 1 ok, 2 error.
    status: i32,
}

impl Exported {
    fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

fn text_of(value: Option<&AnyValue>) -> String {
    match value {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(pairs: &[KeyValue]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                text_of(kv.value.as_ref().and_then(|v| v.value.as_ref())),
            )
        })
        .collect()
}

/// An OTLP/HTTP receiver on 127.0.0.1: takes `POST /v1/traces` (protobuf), answers 200.
struct Receiver {
    server: MockServer,
    bodies: Arc<Mutex<Vec<Bytes>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        let server = MockServer::start(Arc::new(move |request: &Recorded| {
            if request.method != "POST" || request.path != "/v1/traces" {
                return Reply::text(404, "not an OTLP traces endpoint");
            }
            assert_eq!(request.header("content-type"), Some("application/x-protobuf"));
            kept.lock().unwrap().push(request.body.clone());
            Reply {
                status: 200,
                headers: vec![("content-type".into(), "application/x-protobuf".into())],
                body: Vec::new(),
                delay: std::time::Duration::ZERO,
            }
        }))
        .await;
        Receiver { server, bodies }
    }

    /// Every span received so far, and the resources that sent them.
    fn received(&self) -> (Vec<Exported>, Vec<BTreeMap<String, String>>) {
        let mut spans = Vec::new();
        let mut resources = Vec::new();
        for body in self.bodies.lock().unwrap().iter() {
            let request = ExportTraceServiceRequest::decode(body.as_ref()).expect("an OTLP protobuf request");
            for resource_spans in request.resource_spans {
                resources.push(attributes(
                    &resource_spans.resource.map(|r| r.attributes).unwrap_or_default(),
                ));
                for scope in resource_spans.scope_spans {
                    for span in scope.spans {
                        spans.push(Exported {
                            name: span.name,
                            kind: span.kind,
                            trace_id: hex(&span.trace_id),
                            span_id: hex(&span.span_id),
                            parent: hex(&span.parent_span_id),
                            attributes: attributes(&span.attributes),
                            status: span.status.map_or(0, |s| s.code),
                        });
                    }
                }
            }
        }
        (spans, resources)
    }

    /// Waits until `ready` says the spans received are complete; returns them.
    async fn wait_for(&self, what: &str, ready: impl Fn(&[Exported]) -> bool) -> Vec<Exported> {
        wait_for(what, WAIT, || {
            let (spans, _) = self.received();
            ready(&spans).then_some(spans)
        })
        .await
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The echo tenant with a vendor token and a webhook token, delivering to the mock vendor, on
/// a bridge exporting to `receiver` every 50 ms with JSON logs.
async fn traced_env(receiver: &Receiver, propagate: bool) -> EchoEnv {
    let endpoint = receiver.server.base_url();
    EchoEnv::start_with(move |config: BridgeConfig, tenant: Tenant| {
        let mut config = config
            .tenant(
                tenant
                    .config("token", VENDOR_TOKEN)
                    .webhook(dolphin_bridge_tests::bridge::WebhookAuth::with_secret(
                        "token",
                        WEBHOOK_TOKEN,
                    ))
                    .propagate_traces(propagate),
            )
            .env("DOLPHIN_BRIDGE_LOG_FORMAT", "json");
        config.extra_toml = format!(
            "[telemetry]\notlp_endpoint = \"{endpoint}\"\nservice_name = \"{SERVICE}\"\nexport_interval_ms = 50\n"
        );
        config
    })
    .await
}

/// No span and no resource holds a secret, a header value or a query string.
fn assert_no_secrets(spans: &[Exported], resources: &[BTreeMap<String, String>]) {
    let values = spans
        .iter()
        .flat_map(|s| s.attributes.iter().map(move |(k, v)| (s.name.as_str(), k, v)))
        .chain(resources.iter().flat_map(|r| r.iter().map(|(k, v)| ("resource", k, v))));
    for (span, key, value) in values {
        for secret in [VENDOR_TOKEN, WEBHOOK_TOKEN, INCOMING_TOKEN, API_TOKEN, "Bearer"] {
            assert!(!value.contains(secret), "{span}: {key} = {value:?} holds a secret");
        }
        assert!(
            !value.contains('?'),
            "{span}: {key} = {value:?} looks like a URL with a query"
        );
    }
}

/// The one span named `name` whose parent is `parent`.
fn child<'a>(spans: &'a [Exported], name: &str, parent: &Exported) -> &'a Exported {
    let found: Vec<&Exported> = spans
        .iter()
        .filter(|s| s.name == name && s.parent == parent.span_id)
        .collect();
    assert_eq!(found.len(), 1, "one {name} under {}: {spans:#?}", parent.name);
    assert_eq!(found[0].trace_id, parent.trace_id, "{name} is in its parent's trace");
    found[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incoming_event_is_one_trace_continuing_the_clients_with_its_retried_attempts() {
    let receiver = Receiver::start().await;
    let env = traced_env(&receiver, true).await;
    env.vendor.fail_next(1, 503);
    let auth = format!("Bearer {INCOMING_TOKEN}");
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let response = env
        .bridge
        .send_incoming_with_headers(
            &[
                ("content-type", "application/json"),
                ("authorization", &auth),
                ("traceparent", &traceparent),
            ],
            Event::fresh().bytes(),
        )
        .await;
    let id = assert_accepted(&response);
    let delivery = env.bridge.wait_for_delivery(&id, "delivered").await;
    assert_eq!(
        delivery["attempts"], 2,
        "one failed attempt and its retry: {delivery:#}"
    );

    let spans = receiver
        .wait_for("the incoming event's spans, both attempts' included", |spans| {
            let attempts = spans
                .iter()
                .filter(|s| s.name == "delivery.attempt" && s.attr("delivery_id") == id)
                .count();
            let sends = spans.iter().filter(|s| s.name == "http.send").count();
            spans.iter().any(|s| s.name == "incoming.accept") && attempts == 2 && sends == 2
        })
        .await;

    // The Incoming request's span continues the client's trace.
    let accept = spans.iter().find(|s| s.name == "incoming.accept").unwrap();
    assert_eq!(accept.trace_id, CLIENT_TRACE, "{accept:#?}");
    assert_eq!(accept.parent, CLIENT_SPAN, "{accept:#?}");
    assert_eq!(accept.kind, SpanKind::Server as i32);
    assert_eq!(accept.attr("tenant"), ECHO_TENANT);
    assert_eq!(accept.attr("delivery_id"), id);
    assert_eq!(accept.attr("http.response.status_code"), "202");

    // Both attempts are children of the acceptance, in its trace; the first failed.
    let mut attempts: Vec<&Exported> = spans
        .iter()
        .filter(|s| s.name == "delivery.attempt" && s.parent == accept.span_id)
        .collect();
    attempts.sort_by_key(|s| s.attr("attempt").to_string());
    assert_eq!(attempts.len(), 2, "{spans:#?}");
    for (attempt, (number, outcome)) in attempts.iter().zip([("1", "retry"), ("2", "delivered")]) {
        assert_eq!(attempt.trace_id, CLIENT_TRACE);
        assert_eq!(
            (attempt.attr("attempt"), attempt.attr("outcome")),
            (number, outcome),
            "{attempt:#?}"
        );
        assert_eq!(attempt.attr("delivery_id"), id);
        assert_eq!(attempt.attr("direction"), "to_vendor");
    }
    assert_eq!(
        attempts[0].status, 2,
        "the failed attempt is an error: {:#?}",
        attempts[0]
    );

    // Each attempt ran the adapter, whose host calls are its children: the key-value write and
    // the request to the vendor (its method, host, port and status; the vendor got the request
    // span's traceparent, as the tenant propagates).
    let vendor_port = env.vendor.base_url().rsplit(':').next().unwrap().to_string();
    let requests = env.vendor.requests();
    assert_eq!(requests.len(), 2);
    for ((attempt, status), request) in attempts.iter().zip(["503", "200"]).zip(&requests) {
        let call = child(&spans, "adapter.call", attempt);
        assert_eq!(call.attr("adapter.export"), "on-incoming");
        child(&spans, "kv.set", call);
        let send = child(&spans, "http.send", call);
        assert_eq!(send.kind, SpanKind::Client as i32);
        assert_eq!(send.attr("adapter.api"), "http.send");
        assert_eq!(send.attr("http.request.method"), "POST");
        assert_eq!(send.attr("server.address"), "127.0.0.1");
        assert_eq!(send.attr("server.port"), vendor_port);
        assert_eq!(send.attr("http.response.status_code"), status);
        assert_eq!(
            request.header("traceparent"),
            Some(format!("00-{CLIENT_TRACE}-{}-01", send.span_id).as_str()),
            "the vendor's request carries its span's context"
        );
    }

    let (spans, resources) = receiver.received();
    assert!(
        resources
            .iter()
            .all(|r| r.get("service.name").map(String::as_str) == Some(SERVICE)
                && r.get("service.instance.id").is_some_and(|i| !i.is_empty())),
        "{resources:#?}"
    );
    assert_no_secrets(&spans, &resources);

    // The log lines of the acceptance and of the failed attempt carry the trace id.
    let log = env.bridge.stderr();
    for message in ["incoming event accepted", "delivery failed; will retry"] {
        let line = log
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| line["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no line {message:?} in the log:\n{log}"));
        assert_eq!(line["trace_id"], CLIENT_TRACE, "{line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_is_one_trace_down_to_the_post_of_its_event_to_3dolphins() {
    let receiver = Receiver::start().await;
    let env = traced_env(&receiver, false).await;
    // A ticket the bridge knows (its Incoming event delivered, to a vendor told nothing).
    let event = Event::fresh();
    let id = assert_accepted(&env.bridge.send_event(event.clone()).await);
    env.bridge.wait_for_delivery(&id, "delivered").await;
    assert_eq!(
        env.vendor.requests()[0].header("traceparent"),
        None,
        "a tenant that does not propagate sends no trace context"
    );

    let body = json!({"ticketNumber": event.ticket_number(), "message": "from the agent"});
    let headers = [("x-webhook-token".to_string(), WEBHOOK_TOKEN.to_string())];
    let response = post_webhook(&env, "", &headers, body.to_string().as_bytes()).await;
    assert_eq!(response.status, 200, "{}", response.describe());
    env.three_dolphins.wait_for_events(1).await;

    let spans = receiver
        .wait_for("the webhook's spans down to the post to 3Dolphins", |spans| {
            // A span is exported when it ends, a parent after its children: the attempt's comes
            // after the post's, maybe in a later batch.
            spans.iter().any(|s| s.name == "webhook.receive")
                && spans.iter().any(|s| s.name == "3dolphins.post")
                && spans
                    .iter()
                    .any(|s| s.name == "delivery.attempt" && s.attr("direction") == "to_3dolphins")
        })
        .await;
    let webhook = spans.iter().find(|s| s.name == "webhook.receive").unwrap();
    assert_eq!(webhook.parent, "", "a webhook without a traceparent starts a trace");
    assert_eq!(webhook.kind, SpanKind::Server as i32);
    assert_eq!(webhook.attr("tenant"), ECHO_TENANT);
    assert_eq!(webhook.attr("events"), "1");
    assert_eq!(webhook.attr("http.response.status_code"), "200");
    let call = child(&spans, "adapter.call", webhook);
    assert_eq!(call.attr("adapter.export"), "on-vendor-webhook");
    child(&spans, "kv.get", call);
    let attempt = child(&spans, "delivery.attempt", webhook);
    assert_eq!(attempt.attr("direction"), "to_3dolphins");
    assert_eq!(attempt.attr("outcome"), "delivered");
    let post = child(&spans, "3dolphins.post", attempt);
    assert_eq!(post.kind, SpanKind::Client as i32);
    assert_eq!(post.attr("event"), "outgoing");
    assert_eq!(post.attr("http.response.status_code"), "200");

    // The Incoming event's trace is another one.
    let accept = spans.iter().find(|s| s.name == "incoming.accept").unwrap();
    assert_ne!(accept.trace_id, webhook.trace_id);
    assert_eq!(accept.parent, "", "a request without a traceparent starts a trace");

    let (spans, resources) = receiver.received();
    assert_no_secrets(&spans, &resources);
}
