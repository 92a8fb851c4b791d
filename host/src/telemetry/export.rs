//! The exporter: spans batched and posted to the collector over OTLP/HTTP (protobuf), by
//! reqwest's blocking client on the batch processor's own thread (never on the runtime that
//! serves requests), with the resource naming the service and the replica.

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::registry::LookupSpan;

use crate::config::TelemetryConfig;

/// The prefix of the targets of the bridge's own spans: only those are exported (no events,
/// nothing of the libraries).
const OWN_TARGETS: &str = "dolphin_bridge";

/// Spans on their way to the collector. Build it before the async runtime starts and
/// [`shutdown`](Exporter::shutdown) it after the runtime has stopped: its HTTP client blocks.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Starts exporting to `[telemetry] otlp_endpoint`, naming this process `instance` unless
    /// `[telemetry] instance` is set; `None` (and no span is ever made) when no endpoint is set.
    pub fn start(config: &TelemetryConfig, instance: &str) -> anyhow::Result<Option<Exporter>> {
        let Some(url) = config.traces_url() else {
            return Ok(None);
        };
        let timeout = Duration::from_millis(config.export_timeout_ms);
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the OTLP exporter's HTTP client")?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(timeout)
            .build()
            .context("building the OTLP exporter")?;
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(Duration::from_millis(config.export_interval_ms))
            .build();
        let processor = BatchSpanProcessor::builder(exporter).with_batch_config(batch).build();
        let instance = config.instance.clone().unwrap_or_else(|| instance.to_string());
        let resource = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", config.service_name.clone()),
                KeyValue::new("service.instance.id", instance),
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            ])
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build();
        super::ENABLED.store(true, Ordering::Relaxed);
        Ok(Some(Exporter { provider }))
    }

    /// The layer that turns the bridge's spans into OpenTelemetry spans for this exporter.
    pub fn layer<S>(&self) -> impl Layer<S>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        span_layer(&self.provider)
    }

    /// Sends what is still batched and stops; after the runtime has stopped.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "traces not all exported at shutdown");
        }
    }
}

/// The bridge's spans (and nothing else: no events, no library's spans) as OpenTelemetry
/// spans of `provider`, without source locations, threads or idle times.
fn span_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("dolphin-bridge"))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        .with_level(false)
        // Decided on the callsite alone (cached), and only spans at `info` (the bridge's).
        .with_filter(
            filter_fn(|meta| meta.is_span() && meta.target().starts_with(OWN_TARGETS))
                .with_max_level_hint(tracing::Level::INFO),
        )
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::telemetry::{continue_trace, traceparent};

    #[test]
    fn a_continued_trace_keeps_its_id_and_its_children_name_their_parent() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry().with(span_layer(&provider));
        tracing::subscriber::with_default(subscriber, || {
            let remote = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let accepted = tracing::info_span!("incoming.accept");
            continue_trace(&accepted, Some(remote));
            let stored = traceparent(&accepted).expect("a traced span has a traceparent");
            let parts: Vec<&str> = stored.split('-').collect();
            assert_eq!(parts.len(), 4, "{stored}");
            assert_eq!(
                (parts[0], parts[1], parts[3]),
                ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01")
            );
            assert_ne!(
                parts[2], "00f067aa0ba902b7",
                "the span is the remote one's child, not itself"
            );

            // An attempt made later continues the stored context.
            let attempt = tracing::info_span!("delivery.attempt");
            continue_trace(&attempt, Some(&stored));
            let child = traceparent(&attempt).unwrap();
            assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{child}");
            assert_ne!(child, stored);

            // Garbage starts a trace of its own.
            let fresh = tracing::info_span!("incoming.accept");
            continue_trace(&fresh, Some("00-not-a-trace-01"));
            let own = traceparent(&fresh).unwrap();
            assert!(!own.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{own}");
        });
    }
}
