//! `[[tenants]]`: each 3Dolphins owner bound to an adapter, with its values and secrets, and the
//! checks that span tenants (unique names and routes).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::deployments::TenantDeployConfig;
use super::limits::{InstanceReuseConfig, LimitsConfig};
use super::network::parse_origin;
use super::secrets::{check_secret, is_secret_key, url_password};
use super::telemetry::TenantTelemetryConfig;
use super::webhook::{WebhookConfig, check_webhook};
use super::{FieldError, invalid};

/// The shortest value accepted in a tenant's `[tenants.secrets]` table, in bytes: vendor API
/// keys and passwords are longer, and a very short secret would redact ordinary words.
pub const MIN_ADAPTER_SECRET_BYTES: usize = 8;

/// One `[[tenants]]` entry: a 3Dolphins owner bound to an adapter.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Unique name, used in the webhook URL `/vendors/{name}/...` and in logs.
    pub name: String,
    /// The 3Dolphins `owner` this tenant serves.
    pub owner: String,
    /// When set, only these channels of the owner route here.
    #[serde(default)]
    pub channels: Vec<String>,
    /// The adapter component file.
    pub adapter: PathBuf,
    /// Origins (`scheme://host[:port]`) the adapter may call through `http.send`.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Timeout of one outbound HTTP call.
    #[serde(default = "defaults::http_timeout_ms")]
    pub http_timeout_ms: u64,
    /// Timeout of one whole adapter call, host calls included.
    #[serde(default = "defaults::call_timeout_ms")]
    pub call_timeout_ms: u64,
    /// Values the adapter reads through its `config` import. Secrets belong in `secrets`; a value
    /// whose key looks like a secret's (`token`, `password`, `dsn`, ...) is redacted all the same.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Secret values the adapter reads through the same `config` import; always redacted from
    /// logs and errors. A key may be in `config` or here, not both.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Allow outbound calls to loopback, link-local and private addresses (off by default).
    #[serde(default)]
    pub allow_private_networks: bool,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Opt-in: instances of the adapter kept between calls (off by default: a fresh instance
    /// for every call).
    #[serde(default)]
    pub instance_reuse: InstanceReuseConfig,
    /// Required: how webhook requests are verified (`auth = "none"` to opt out explicitly).
    pub webhook: Option<WebhookConfig>,
    /// Deploying versions of this tenant's adapter over HTTP.
    #[serde(default)]
    pub deploy: TenantDeployConfig,
    /// Traces: whether the vendor is sent the trace context (off by default).
    #[serde(default)]
    pub telemetry: TenantTelemetryConfig,
}

impl TenantConfig {
    /// Values to keep out of logs and errors: every `secrets` value, `config` values whose key
    /// looks like a secret's (see [`is_secret_key`]), passwords in URLs among the `config`
    /// values, and the webhook secret.
    pub fn secret_values(&self) -> Vec<String> {
        let mut secrets: Vec<String> = self.secrets.values().cloned().collect();
        for (key, value) in &self.config {
            if is_secret_key(key) {
                secrets.push(value.clone());
            } else if let Some(password) = url_password(value) {
                secrets.push(password);
            }
        }
        secrets.extend(self.webhook.as_ref().and_then(|w| w.secret.clone()));
        secrets
    }

    /// What the adapter reads through its `config` import: `config` and `secrets` together
    /// (validated to share no key).
    pub fn adapter_values(&self) -> BTreeMap<String, String> {
        let mut values = self.config.clone();
        values.extend(self.secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
        values
    }
}

/// Every tenant's fields, and that no two tenants share a name or a route (an owner and
/// channel). Webhook ids are kept `webhook_dedupe_window_ms` (`delivery.webhook_dedupe_window_ms`).
pub(super) fn check_tenants(tenants: &[TenantConfig], webhook_dedupe_window_ms: u64) -> Result<(), FieldError> {
    let mut names = std::collections::HashSet::new();
    let mut routes = std::collections::HashSet::new();
    for (i, tenant) in tenants.iter().enumerate() {
        let field = |f: &str| format!("tenants[{i}].{f}");
        let name_ok = !tenant.name.is_empty()
            && tenant.name.len() <= 64
            && tenant
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(invalid(
                field("name"),
                "must be 1-64 characters of a-z, A-Z, 0-9, '-' or '_'",
            ));
        }
        if !names.insert(tenant.name.as_str()) {
            return Err(invalid(
                field("name"),
                format!("`{}` is used by another tenant", tenant.name),
            ));
        }
        if tenant.owner.trim().is_empty() {
            return Err(invalid(field("owner"), "must not be empty"));
        }
        let channels: Vec<Option<String>> = if tenant.channels.is_empty() {
            vec![None]
        } else {
            tenant.channels.iter().map(|c| Some(c.to_ascii_lowercase())).collect()
        };
        for channel in channels {
            if channel.as_deref() == Some("") {
                return Err(invalid(field("channels"), "a channel must not be empty"));
            }
            if !routes.insert((tenant.owner.clone(), channel.clone())) {
                let what = match &channel {
                    Some(c) => format!("owner `{}` channel `{c}`", tenant.owner),
                    None => format!("owner `{}` (all channels)", tenant.owner),
                };
                return Err(invalid(
                    field("channels"),
                    format!("{what} already routes to another tenant"),
                ));
            }
        }
        for (key, secret) in &tenant.secrets {
            let field = field(&format!("secrets.{key}"));
            if tenant.config.contains_key(key) {
                return Err(invalid(
                    field,
                    format!("is also set in tenants[{i}].config: a key belongs in one of the two tables"),
                ));
            }
            check_secret(secret, MIN_ADAPTER_SECRET_BYTES).map_err(|m| invalid(field, m))?;
        }
        for (j, origin) in tenant.allowed_hosts.iter().enumerate() {
            parse_origin(origin).map_err(|m| invalid(field(&format!("allowed_hosts[{j}]")), m))?;
        }
        check_webhook(tenant.webhook.as_ref(), webhook_dedupe_window_ms, &field)?;
        tenant.deploy.check(&field)?;
        tenant.limits.check(&field)?;
        tenant.instance_reuse.check(&field)?;
        if tenant.http_timeout_ms == 0 || tenant.call_timeout_ms == 0 {
            return Err(invalid(field("call_timeout_ms"), "timeouts must be above 0"));
        }
    }
    Ok(())
}

mod defaults {
    pub fn http_timeout_ms() -> u64 {
        10_000
    }
    pub fn call_timeout_ms() -> u64 {
        30_000
    }
}
