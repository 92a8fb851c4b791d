//! `[telemetry]`: OpenTelemetry traces, exported over OTLP/HTTP (protobuf) when
//! `otlp_endpoint` is set; and a tenant's `[tenants.telemetry]`, whether its vendor is sent the
//! trace context.

use serde::Deserialize;

use super::network::check_http_url;
use super::{FieldError, invalid};

/// The path the OTLP/HTTP protocol posts spans to, under a collector's base URL.
pub const OTLP_TRACES_PATH: &str = "/v1/traces";

/// `[telemetry]`: where and how spans are exported. Off unless `otlp_endpoint` is set.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP base URL (`http://otel-collector:4318`); spans are posted to
    /// `{otlp_endpoint}/v1/traces` (or to the URL itself when it already ends so).
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute.
    #[serde(default = "defaults::service_name")]
    pub service_name: String,
    /// The `service.instance.id` resource attribute; the replica id (the one leases and
    /// `/admin/adapters` show) when unset.
    pub instance: Option<String>,
    /// How long finished spans wait, at most, before they are sent (the batch's delay).
    #[serde(default = "defaults::export_interval_ms")]
    pub export_interval_ms: u64,
    /// How long one export may take before it is abandoned.
    #[serde(default = "defaults::export_timeout_ms")]
    pub export_timeout_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: defaults::service_name(),
            instance: None,
            export_interval_ms: defaults::export_interval_ms(),
            export_timeout_ms: defaults::export_timeout_ms(),
        }
    }
}

impl TelemetryConfig {
    /// The URL spans are posted to, when traces are on.
    pub fn traces_url(&self) -> Option<String> {
        let endpoint = self.otlp_endpoint.as_deref()?.trim_end_matches('/');
        Some(match endpoint.ends_with(OTLP_TRACES_PATH) {
            true => endpoint.to_string(),
            false => format!("{endpoint}{OTLP_TRACES_PATH}"),
        })
    }

    pub(super) fn check(&self) -> Result<(), FieldError> {
        if let Some(endpoint) = &self.otlp_endpoint {
            check_http_url(endpoint).map_err(|m| invalid("telemetry.otlp_endpoint", m))?;
            let url = url::Url::parse(endpoint).expect("checked above");
            if url.query().is_some() || url.fragment().is_some() {
                return Err(invalid(
                    "telemetry.otlp_endpoint",
                    "must have no query or fragment (the collector's base URL)",
                ));
            }
        }
        if self.service_name.trim().is_empty() {
            return Err(invalid("telemetry.service_name", "must not be empty"));
        }
        if self.instance.as_deref().is_some_and(|i| i.trim().is_empty()) {
            return Err(invalid("telemetry.instance", "must not be empty when set"));
        }
        if !(1..=60_000).contains(&self.export_interval_ms) {
            return Err(invalid("telemetry.export_interval_ms", "must be 1 to 60000"));
        }
        if !(1..=60_000).contains(&self.export_timeout_ms) {
            return Err(invalid("telemetry.export_timeout_ms", "must be 1 to 60000"));
        }
        Ok(())
    }
}

/// `[tenants.telemetry]`: what the tenant's vendor is told of traces.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantTelemetryConfig {
    /// Send a W3C `traceparent` header (the host call's span) on the adapter's outbound
    /// requests, replacing any the adapter set. Off by default: the vendor learns nothing of
    /// the bridge's traces.
    #[serde(default)]
    pub propagate: bool,
}

mod defaults {
    pub fn service_name() -> String {
        "dolphin-bridge".into()
    }
    pub fn export_interval_ms() -> u64 {
        5_000
    }
    pub fn export_timeout_ms() -> u64 {
        10_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> TelemetryConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn traces_go_to_the_collectors_v1_traces_path() {
        assert_eq!(TelemetryConfig::default().traces_url(), None);
        let config = parse("otlp_endpoint = \"http://collector:4318\"");
        assert_eq!(config.traces_url().as_deref(), Some("http://collector:4318/v1/traces"));
        let config = parse("otlp_endpoint = \"http://collector:4318/v1/traces\"");
        assert_eq!(config.traces_url().as_deref(), Some("http://collector:4318/v1/traces"));
        let config = parse("otlp_endpoint = \"https://c.example/otlp/\"");
        assert_eq!(config.traces_url().as_deref(), Some("https://c.example/otlp/v1/traces"));
        assert_eq!(config.service_name, "dolphin-bridge");
        assert!(config.check().is_ok());
    }

    #[test]
    fn a_wrong_endpoint_or_interval_is_refused() {
        for (text, field) in [
            ("otlp_endpoint = \"collector:4318\"", "telemetry.otlp_endpoint"),
            ("otlp_endpoint = \"ftp://c\"", "telemetry.otlp_endpoint"),
            ("otlp_endpoint = \"http://c/?token=x\"", "telemetry.otlp_endpoint"),
            ("service_name = \" \"", "telemetry.service_name"),
            ("export_interval_ms = 0", "telemetry.export_interval_ms"),
        ] {
            assert_eq!(parse(text).check().unwrap_err().field, field, "{text}");
        }
        assert!(toml::from_str::<TelemetryConfig>("endpoint = \"http://c\"").is_err());
        assert!(
            toml::from_str::<TenantTelemetryConfig>("propagate = true")
                .unwrap()
                .propagate
        );
        assert!(!TenantTelemetryConfig::default().propagate);
    }
}
