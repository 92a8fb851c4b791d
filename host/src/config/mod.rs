//! The bridge's TOML configuration: loading, `${ENV}` substitution, and the checks that span
//! sections; each section's types, defaults and checks live in a file of their own.
//!
//! Every error names the file and the field (`tenants[1].owner`), never a secret's value.

mod adapters;
mod canary;
mod delivery;
mod deployments;
mod limits;
mod network;
mod secrets;
mod server;
mod store;
mod telemetry;
mod tenants;
mod three_dolphins;
mod webhook;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::redaction::SecretSet;

pub use adapters::{AdaptersConfig, MAX_POOL_INSTANCES};
pub use canary::CanaryConfig;
pub use delivery::DeliveryConfig;
pub use deployments::{DeploymentsConfig, TenantDeployConfig};
pub use limits::{InstanceReuseConfig, LimitsConfig, MAX_IDLE_INSTANCES, MAX_LOOKUPS_PER_CALL, MAX_MEMORY_MIB};
pub use network::{Origin, network_contains, parse_network, parse_origin};
pub use secrets::{MIN_TOKEN_BYTES, is_secret_key};
pub use server::{AdminConfig, MetricsConfig, ServerConfig};
pub use store::{DEFAULT_POOL_SIZE, DEFAULT_WRITE_QUEUE, StoreConfig};
pub use telemetry::{OTLP_TRACES_PATH, TelemetryConfig, TenantTelemetryConfig};
pub use tenants::{MIN_ADAPTER_SECRET_BYTES, TenantConfig};
pub use three_dolphins::ThreeDolphinsConfig;
pub use webhook::{
    HmacAlgorithm, HmacScheme, MAX_WEBHOOK_TOLERANCE_S, MIN_WEBHOOK_SECRET_BYTES, SignatureEncoding, SignedPart,
    SignedTemplate, WebhookAuth, WebhookConfig,
};

/// Why a configuration was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is not valid TOML. Only the place and the parser's message are kept: the
    /// offending line may hold a secret.
    #[error("{path}: TOML syntax error at line {line}, column {column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// Valid TOML of the wrong shape (an unknown field, a wrong type); secrets in the message are
    /// redacted.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: field `{field}`: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

/// A field a section's check refused, and why; [`ConfigError::Invalid`] once the file is named.
struct FieldError {
    field: String,
    message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

/// The whole configuration, with defaults applied and relative paths resolved.
#[derive(Clone)]
pub struct Config {
    /// The file it was loaded from.
    pub source: PathBuf,
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub adapters: AdaptersConfig,
    pub three_dolphins: ThreeDolphinsConfig,
    pub delivery: DeliveryConfig,
    pub admin: AdminConfig,
    pub metrics: MetricsConfig,
    pub deployments: DeploymentsConfig,
    /// Traces: off unless `otlp_endpoint` is set.
    pub telemetry: TelemetryConfig,
    pub tenants: Vec<TenantConfig>,
}

/// Secrets stay out of debug output: only names and shapes are shown.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("source", &self.source)
            .field("listen", &self.server.listen)
            .field("store", &self.store.path)
            .field("tenants", &self.tenants.iter().map(|t| &t.name).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The file's raw shape, before defaults that depend on other fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: Option<ServerConfig>,
    store: Option<StoreConfig>,
    #[serde(default)]
    adapters: AdaptersConfig,
    three_dolphins: ThreeDolphinsConfig,
    #[serde(default)]
    delivery: DeliveryConfig,
    #[serde(default)]
    admin: AdminConfig,
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default)]
    deployments: DeploymentsConfig,
    #[serde(default)]
    telemetry: TelemetryConfig,
    #[serde(default)]
    tenants: Vec<TenantConfig>,
}

impl Config {
    /// Loads, substitutes `${VAR}` from the process environment, and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text, &|name| std::env::var(name).ok())
    }

    /// Parses `text` as if read from `path`, looking variables up with `env`.
    pub fn parse(path: &Path, text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut value: toml::Value = toml::from_str(text).map_err(|e| syntax_error(path, text, &e))?;
        let mut expanded = Vec::new();
        substitute_env(&mut value, "", env, &mut expanded).map_err(|(field, message)| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            message,
        })?;
        // Messages about the values (a wrong type, a bad URL) may quote them.
        let secrets = document_secrets(&value, expanded);
        Self::from_value(path, value).map_err(|e| e.redacted(&secrets))
    }

    /// The configuration in `value` (variables substituted), with defaults, resolved paths, and
    /// validated.
    fn from_value(path: &Path, value: toml::Value) -> Result<Config, ConfigError> {
        let raw: RawConfig = value.try_into().map_err(|e: toml::de::Error| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
        let server = raw.server.unwrap_or_else(|| {
            toml::Value::Table(Default::default())
                .try_into()
                .expect("server defaults")
        });
        let mut store = raw.store.unwrap_or_else(StoreConfig::unset);
        store.path = resolve(&store.path);
        let mut adapters = raw.adapters;
        adapters.cache_dir = Some(match &adapters.cache_dir {
            Some(dir) => resolve(dir),
            None => store.path.parent().unwrap_or(Path::new(".")).join("adapter-cache"),
        });
        let mut deployments = raw.deployments;
        deployments.dir = Some(match &deployments.dir {
            Some(dir) => resolve(dir),
            None => store.path.parent().unwrap_or(Path::new(".")).join("deployments"),
        });
        let mut tenants = raw.tenants;
        for tenant in &mut tenants {
            tenant.adapter = resolve(&tenant.adapter);
            if let Some(fixtures) = &tenant.deploy.fixtures {
                tenant.deploy.fixtures = Some(resolve(fixtures));
            }
        }
        let config = Config {
            source: path.to_path_buf(),
            server,
            store,
            adapters,
            three_dolphins: raw.three_dolphins,
            delivery: raw.delivery,
            admin: raw.admin,
            metrics: raw.metrics,
            deployments,
            telemetry: raw.telemetry,
            tenants,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.check_sections()
            .map_err(|FieldError { field, message }| ConfigError::Invalid {
                path: self.source.clone(),
                field,
                message,
            })
    }

    /// Every section's checks, in a fixed order: when several fields are wrong, the first one
    /// here is reported.
    fn check_sections(&self) -> Result<(), FieldError> {
        self.server.check_incoming()?;
        self.admin.check()?;
        self.metrics.check()?;
        self.store.check()?;
        self.delivery.check()?;
        self.deployments.check()?;
        self.server.check_addresses()?;
        self.server.check_auth_failures()?;
        self.adapters.check()?;
        self.three_dolphins.check()?;
        self.telemetry.check()?;
        // A tenant's signed webhooks must not outlive the ids kept to recognise their replays.
        tenants::check_tenants(&self.tenants, self.delivery.webhook_dedupe_window_ms)?;
        deployments::check_deploy_tokens(&self.tenants, self.admin.token.as_deref())
    }
}

impl ConfigError {
    /// The error with every one of `secrets` in its message replaced.
    fn redacted(self, secrets: &SecretSet) -> ConfigError {
        match self {
            ConfigError::Parse { path, message } => ConfigError::Parse {
                path,
                message: secrets.redact(&message),
            },
            ConfigError::Invalid { path, field, message } => ConfigError::Invalid {
                path,
                field,
                message: secrets.redact(&message),
            },
            other => other,
        }
    }
}

/// A TOML syntax error as file, line, column (both from 1) and the parser's message, without
/// the source line that `toml`'s own message quotes.
fn syntax_error(path: &Path, text: &str, error: &toml::de::Error) -> ConfigError {
    let at = error.span().map_or(text.len(), |span| span.start.min(text.len()));
    let before = text.get(..at).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    ConfigError::Syntax {
        path: path.to_path_buf(),
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
        message: error.message().trim().lines().collect::<Vec<_>>().join("; "),
    }
}

/// Strings of the parsed file that must not appear in its error messages: values of
/// `secrets` tables and of keys that look like a secret's, passwords in URLs, and every value
/// taken from the environment.
fn document_secrets(value: &toml::Value, expanded: Vec<String>) -> SecretSet {
    fn walk(value: &toml::Value, secret: bool, found: &mut Vec<String>) {
        match value {
            toml::Value::String(s) if secret => found.push(s.clone()),
            toml::Value::String(s) => found.extend(secrets::url_password(s)),
            toml::Value::Array(items) => items.iter().for_each(|item| walk(item, secret, found)),
            toml::Value::Table(table) => {
                for (key, item) in table {
                    walk(item, secret || key == "secrets" || is_secret_key(key), found);
                }
            }
            _ => {}
        }
    }
    let mut found = expanded;
    walk(value, false, &mut found);
    SecretSet::new(found)
}

/// Replaces `${NAME}` in every string of `value`, adding each value substituted to `expanded`;
/// `$${` stands for a literal `${`.
fn substitute_env(
    value: &mut toml::Value,
    field: &str,
    env: &dyn Fn(&str) -> Option<String>,
    expanded: &mut Vec<String>,
) -> Result<(), (String, String)> {
    match value {
        toml::Value::String(s) => {
            *s = expand(s, env, expanded).map_err(|m| (field.to_string(), m))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute_env(item, &format!("{field}[{i}]"), env, expanded)?;
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let name = if field.is_empty() {
                    key.clone()
                } else {
                    format!("{field}.{key}")
                };
                substitute_env(item, &name, env, expanded)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>, expanded: &mut Vec<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| "unclosed `${` (write `$${` for a literal)".to_string())?;
            let name = &after[..end];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("`${{{name}}}` is not a valid environment variable name"));
            }
            let value = env(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            expanded.push(value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[server]
incoming_token = "${IN_TOKEN}"

[three_dolphins]
base_url = "http://127.0.0.1:9000"
api_token = "${TD_TOKEN}"

[[tenants]]
name = "acme"
owner = "o1"
adapter = "chatwoot.wasm"
allowed_hosts = ["http://127.0.0.1:3000"]
webhook = { auth = "token", secret = "${CW_TOKEN}" }
[tenants.config]
api_access_token = "${CW_TOKEN}"
literal = "$${NOT_A_VAR}"
"#;

    fn env(name: &str) -> Option<String> {
        match name {
            "TD_TOKEN" => Some("td-secret".into()),
            "CW_TOKEN" => Some("cw-secret".into()),
            "IN_TOKEN" => Some("in-secret-0123456789".into()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_env_and_resolves_paths() {
        let config = Config::parse(Path::new("/etc/bridge/bridge.toml"), MINIMAL, &env).unwrap();
        assert_eq!(config.three_dolphins.api_token.as_deref(), Some("td-secret"));
        let tenant = &config.tenants[0];
        assert_eq!(tenant.config["api_access_token"], "cw-secret");
        assert_eq!(tenant.config["literal"], "${NOT_A_VAR}");
        assert_eq!(tenant.adapter, Path::new("/etc/bridge/chatwoot.wasm"));
        assert_eq!(config.store.path, Path::new("/etc/bridge/dolphin-bridge.db"));
        assert_eq!(config.server.incoming_path, "/3dolphins/incoming");
        assert_eq!(config.three_dolphins.api_base(), "http://127.0.0.1:9000/dolphin/apiv1");
    }

    #[test]
    fn unset_variable_names_field_not_value() {
        let only_cw = |name: &str| (name != "TD_TOKEN").then(|| env(name)).flatten();
        let err = Config::parse(Path::new("b.toml"), MINIMAL, &only_cw).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("three_dolphins.api_token"), "{text}");
        assert!(text.contains("TD_TOKEN"), "{text}");
        assert!(!text.contains("cw-secret"), "{text}");
    }

    #[test]
    fn duplicate_routes_are_refused() {
        let text = format!(
            "{MINIMAL}\n[[tenants]]\nname = \"other\"\nowner = \"o1\"\nadapter = \"x.wasm\"\nwebhook = {{ auth = \"none\" }}\n"
        );
        let err = Config::parse(Path::new("b.toml"), &text, &env).unwrap_err().to_string();
        assert!(err.contains("tenants[1].channels"), "{err}");
    }

    /// A `[[tenants]]` entry with deploy token `token`.
    fn deploying_tenant(name: &str, owner: &str, token: &str) -> String {
        format!(
            "[[tenants]]\nname = \"{name}\"\nowner = \"{owner}\"\nadapter = \"x.wasm\"\nwebhook = {{ auth = \"none\" }}\n\
             [tenants.deploy]\ntoken = \"{token}\"\n"
        )
    }

    #[test]
    fn a_deploy_token_opens_one_tenant_only() {
        let shared = "shared-deploy-token-0001";
        let text = format!(
            "{MINIMAL}\n{}{}",
            deploying_tenant("b", "o2", shared),
            deploying_tenant("c", "o3", shared)
        );
        let err = Config::parse(Path::new("b.toml"), &text, &env).unwrap_err().to_string();
        assert!(err.contains("tenants[2].deploy.token"), "{err}");
        assert!(err.contains("tenants[1]"), "{err}");
        assert!(!err.contains(shared), "{err}");
        // Nor may it be the admin token, which opens every tenant and endpoint.
        let admin = "the-admin-token-00001";
        let text = format!(
            "{MINIMAL}\n[admin]\ntoken = \"{admin}\"\n{}",
            deploying_tenant("b", "o2", admin)
        );
        let err = Config::parse(Path::new("b.toml"), &text, &env).unwrap_err().to_string();
        assert!(err.contains("tenants[1].deploy.token"), "{err}");
        assert!(!err.contains(admin), "{err}");
    }

    #[test]
    fn bad_origin_is_refused() {
        let text = MINIMAL.replace("http://127.0.0.1:3000", "ftp://x/y");
        let err = Config::parse(Path::new("b.toml"), &text, &env).unwrap_err().to_string();
        assert!(err.contains("tenants[0].allowed_hosts[0]"), "{err}");
    }

    #[test]
    fn credential_and_webhook_auth_are_required() {
        let text = MINIMAL.replace("incoming_token = \"${IN_TOKEN}\"", "");
        let err = Config::parse(Path::new("b.toml"), &text, &env).unwrap_err().to_string();
        assert!(err.contains("server.incoming_token"), "{err}");
        let text = MINIMAL.replace("webhook = { auth = \"token\", secret = \"${CW_TOKEN}\" }", "");
        let err = Config::parse(Path::new("b.toml"), &text, &env).unwrap_err().to_string();
        assert!(err.contains("tenants[0].webhook"), "{err}");
    }

    #[test]
    fn webhook_dedupe_is_checked() {
        let with = |webhook: &str, delivery: &str| {
            let text = MINIMAL.replace("webhook = { auth = \"token\", secret = \"${CW_TOKEN}\" }", webhook);
            Config::parse(Path::new("b.toml"), &format!("[delivery]\n{delivery}\n{text}"), &env)
        };
        let config = with(
            "webhook = { auth = \"token\", secret = \"token-0123\", dedupe_header = \"X-Request-Id\" }",
            "",
        )
        .unwrap();
        let webhook = config.tenants[0].webhook.as_ref().unwrap();
        assert_eq!(webhook.dedupe_header.as_deref(), Some("X-Request-Id"));
        assert_eq!(config.delivery.webhook_dedupe_window_ms, 259_200_000);
        let err = with(
            "webhook = { auth = \"token\", secret = \"token-0123\", dedupe_header = \"a b\" }",
            "",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("tenants[0].webhook.dedupe_header"), "{err}");
        // Signed requests must not outlive their ids: a replay would be processed again.
        let signed = "webhook = { auth = \"chatwoot\", secret = \"secret-0123\", tolerance_s = 600 }";
        let err = with(signed, "webhook_dedupe_window_ms = 300000")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tenants[0].webhook.tolerance_s"), "{err}");
        assert!(with(signed, "webhook_dedupe_window_ms = 600000").is_ok());
    }

    /// `auth = "hmac"` comes with its `hmac` table, parsed once into a template; a template that
    /// signs a timestamp needs its header, and the table belongs to `hmac` only.
    #[test]
    fn an_hmac_scheme_is_parsed_and_checked() {
        let line = "webhook = { auth = \"token\", secret = \"${CW_TOKEN}\" }";
        let zendesk = "webhook = { auth = \"hmac\", secret = \"zendesk-secret-0123\", hmac = { header = \"X-Zendesk-Webhook-Signature\", encoding = \"base64\", signed = \"{timestamp}{body}\", timestamp_header = \"X-Zendesk-Webhook-Signature-Timestamp\" } }";
        let text = MINIMAL.replace(line, zendesk);
        let config = Config::parse(Path::new("b.toml"), &text, &env).unwrap();
        let scheme = config.tenants[0].webhook.as_ref().unwrap().hmac.clone().unwrap();
        assert_eq!(scheme.encoding, SignatureEncoding::Base64);
        assert_eq!(scheme.algorithm, HmacAlgorithm::Sha256);
        assert_eq!(scheme.signed.0, [SignedPart::Timestamp, SignedPart::Body]);
        let err = refused(
            "",
            line,
            "webhook = { auth = \"hmac\", secret = \"zendesk-secret-0123\" }",
        );
        assert!(
            err.contains("tenants[0].webhook.hmac") && err.contains("is required"),
            "{err}"
        );
        let err = refused(
            "",
            line,
            "webhook = { auth = \"hmac\", secret = \"zendesk-secret-0123\", hmac = { header = \"X-Sig\", signed = \"{timestamp}{body}\" } }",
        );
        assert!(
            err.contains("tenants[0].webhook.hmac.signed") && err.contains("timestamp_header"),
            "{err}"
        );
        let err = refused(
            "",
            line,
            "webhook = { auth = \"token\", secret = \"token-0123\", hmac = { header = \"X-Sig\" } }",
        );
        assert!(err.contains("only to auth = \"hmac\""), "{err}");
        let err = refused(
            "",
            line,
            "webhook = { auth = \"hmac\", secret = \"zendesk-secret-0123\", hmac = { header = \"X-Sig\", signed = \"{timestamp}\" } }",
        );
        assert!(err.contains("does not sign {body}"), "{err}");
        assert!(!err.contains("zendesk-secret-0123"), "{err}");
    }

    /// Parses MINIMAL with `replace` swapped for `with` and `prefix` (other sections) before it;
    /// the error text.
    fn refused(prefix: &str, replace: &str, with: &str) -> String {
        assert!(MINIMAL.contains(replace), "{replace}");
        let text = format!("{prefix}\n{}", MINIMAL.replace(replace, with));
        match Config::parse(Path::new("b.toml"), &text, &env) {
            Ok(_) => panic!("accepted: {with}"),
            Err(err) => err.to_string(),
        }
    }

    /// The error names `field` and not `value`.
    fn assert_names_field_not_value(err: &str, field: &str, value: &str) {
        assert!(err.contains(&format!("`{field}`")), "{err}");
        if !value.is_empty() {
            assert!(!err.contains(value), "the secret leaked: {err}");
        }
    }

    const TOKEN_LINE: &str = "incoming_token = \"${IN_TOKEN}\"";
    const WEBHOOK_LINE: &str = "webhook = { auth = \"token\", secret = \"${CW_TOKEN}\" }";

    #[test]
    fn token_header_and_query_apply_to_token_auth_only() {
        let line =
            "webhook = { auth = \"token\", secret = \"${CW_TOKEN}\", header = \"X-API-Key\", query = \"token\" }";
        let config = Config::parse(Path::new("b.toml"), &MINIMAL.replace(WEBHOOK_LINE, line), &env).unwrap();
        let webhook = config.tenants[0].webhook.as_ref().unwrap();
        assert_eq!(webhook.header.as_deref(), Some("X-API-Key"));
        assert_eq!(webhook.query.as_deref(), Some("token"));
        let err = refused(
            "",
            WEBHOOK_LINE,
            "webhook = { auth = \"chatwoot\", secret = \"secret-0123\", header = \"X-API-Key\" }",
        );
        assert!(
            err.contains("`tenants[0].webhook.header`") && err.contains("only to auth = \"token\""),
            "{err}"
        );
        let err = refused(
            "",
            WEBHOOK_LINE,
            "webhook = { auth = \"token\", secret = \"secret-0123\", header = \"bad header\" }",
        );
        assert!(err.contains("`tenants[0].webhook.header`"), "{err}");
        let err = refused(
            "",
            WEBHOOK_LINE,
            "webhook = { auth = \"token\", secret = \"secret-0123\", query = \"\" }",
        );
        assert!(err.contains("`tenants[0].webhook.query`"), "{err}");
    }

    #[test]
    fn empty_or_short_admin_token_is_refused() {
        for token in ["", "   ", "short-admin-tok"] {
            let err = refused(&format!("[admin]\ntoken = \"{token}\"\n"), "", "");
            assert_names_field_not_value(&err, "admin.token", token.trim());
        }
        let ok = format!("[admin]\ntoken = \"admin-token-0123456\"\n{MINIMAL}");
        assert!(Config::parse(Path::new("b.toml"), &ok, &env).is_ok());
    }

    #[test]
    fn deployments_default_beside_the_store_and_deploy_settings_resolve() {
        let line = format!("{WEBHOOK_LINE}\ndeploy = {{ token = \"deploy-token-0123456\", fixtures = \"fx\" }}");
        let config = Config::parse(Path::new("/etc/b/b.toml"), &MINIMAL.replace(WEBHOOK_LINE, &line), &env).unwrap();
        assert_eq!(config.deployments.keep, 5);
        assert_eq!(config.deployments.max_bytes, 64 << 20);
        let store_dir = config.store.path.parent().unwrap();
        assert_eq!(
            config.deployments.dir.as_deref(),
            Some(store_dir.join("deployments").as_path())
        );
        let deploy = &config.tenants[0].deploy;
        assert_eq!(deploy.fixtures.as_deref(), Some(Path::new("/etc/b/fx")));
        assert_eq!(deploy.token.as_deref(), Some("deploy-token-0123456"));
    }

    #[test]
    fn short_deploy_token_and_zero_keep_are_refused() {
        let line = format!("{WEBHOOK_LINE}\ndeploy = {{ token = \"short-deploy\" }}");
        let err = refused("", WEBHOOK_LINE, &line);
        assert_names_field_not_value(&err, "tenants[0].deploy.token", "short-deploy");
        let err = refused("[deployments]\nkeep = 0\n", "", "");
        assert!(err.contains("`deployments.keep`"), "{err}");
    }

    #[test]
    fn empty_or_short_incoming_token_is_refused() {
        for token in ["", "in-token-012345"] {
            let err = refused("", TOKEN_LINE, &format!("incoming_token = \"{token}\""));
            assert_names_field_not_value(&err, "server.incoming_token", token);
        }
        // Even when the endpoint may go unauthenticated, a token that is set must be sound.
        let err = refused(
            "",
            TOKEN_LINE,
            "incoming_token = \"tiny-token\"\nallow_unauthenticated = true",
        );
        assert_names_field_not_value(&err, "server.incoming_token", "tiny-token");
    }

    #[test]
    fn empty_or_short_webhook_secrets_are_refused() {
        for auth in ["token", "chatwoot", "standard-webhooks"] {
            for secret in ["", "seven77"] {
                let line = format!("webhook = {{ auth = \"{auth}\", secret = \"{secret}\" }}");
                let err = refused("", WEBHOOK_LINE, &line);
                assert_names_field_not_value(&err, "tenants[0].webhook.secret", secret);
            }
            let line = format!("webhook = {{ auth = \"{auth}\", secret = \"eight888\" }}");
            let text = MINIMAL.replace(WEBHOOK_LINE, &line);
            assert!(Config::parse(Path::new("b.toml"), &text, &env).is_ok(), "{auth}");
        }
    }

    #[test]
    fn bad_whsec_secrets_are_refused() {
        // Empty key, not base64, and a key of 6 bytes.
        for secret in ["whsec_", "whsec_not*base64!", "whsec_c2hvcnQh"] {
            let line = format!("webhook = {{ auth = \"standard-webhooks\", secret = \"{secret}\" }}");
            let err = refused("", WEBHOOK_LINE, &line);
            assert_names_field_not_value(&err, "tenants[0].webhook.secret", secret);
        }
        let line = "webhook = { auth = \"standard-webhooks\", secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }";
        let text = MINIMAL.replace(WEBHOOK_LINE, line);
        assert!(Config::parse(Path::new("b.toml"), &text, &env).is_ok());
    }

    #[test]
    fn huge_tolerance_is_refused() {
        // TOML integers stop at i64::MAX; a tolerance that large disables the freshness check.
        for tolerance in [86_401, i64::MAX as u64 / 1_000, i64::MAX as u64] {
            let line =
                format!("webhook = {{ auth = \"chatwoot\", secret = \"secret-0123\", tolerance_s = {tolerance} }}");
            // A dedupe window long enough that only the cap can refuse it.
            let err = refused(
                "[delivery]\nwebhook_dedupe_window_ms = 9223372036854775807\n",
                WEBHOOK_LINE,
                &line,
            );
            assert!(err.contains("`tenants[0].webhook.tolerance_s`"), "{err}");
        }
        let line = "webhook = { auth = \"chatwoot\", secret = \"secret-0123\", tolerance_s = 86400 }";
        let text = MINIMAL.replace(WEBHOOK_LINE, line);
        assert!(Config::parse(Path::new("b.toml"), &text, &env).is_ok());
    }

    #[test]
    fn instance_reuse_is_off_by_default_and_bounded() {
        let config = Config::parse(Path::new("b.toml"), MINIMAL, &env).unwrap();
        assert_eq!(config.tenants[0].instance_reuse.idle, 0, "a fresh instance per call");
        let with = |table: &str| format!("{MINIMAL}[tenants.instance_reuse]\n{table}\n");
        let config = Config::parse(Path::new("b.toml"), &with("idle = 4"), &env).unwrap();
        assert_eq!(config.tenants[0].instance_reuse.idle, 4);
        assert_eq!(config.tenants[0].instance_reuse.max_calls, 1_000);
        let err = Config::parse(Path::new("b.toml"), &with("idle = 65"), &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`tenants[0].instance_reuse.idle`") && err.contains("at most 64"),
            "{err}"
        );
        let err = Config::parse(Path::new("b.toml"), &with("idle = 1\nmax_calls = 0"), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`tenants[0].instance_reuse.max_calls`"), "{err}");
    }

    #[test]
    fn config_values_under_secret_looking_keys_are_secrets() {
        let keys = ["db_pwd", "PASSWD", "bearer", "Vendor_JWT", "dsn", "slack_webhook_url"];
        let mut text = MINIMAL.to_string();
        for key in keys {
            text.push_str(&format!("{key} = \"value-of-{key}\"\n"));
        }
        let config = Config::parse(Path::new("b.toml"), &text, &env).unwrap();
        let secrets = config.tenants[0].secret_values();
        assert!(
            secrets.contains(&"cw-secret".to_string()),
            "api_access_token: {secrets:?}"
        );
        for key in keys {
            assert!(secrets.contains(&format!("value-of-{key}")), "{key}: {secrets:?}");
        }
        assert!(!secrets.iter().any(|s| s.contains("NOT_A_VAR")), "{secrets:?}");
    }

    #[test]
    fn a_toml_syntax_error_names_the_place_but_never_quotes_the_line() {
        let secret = "sup3r-s3cret-value";
        let broken = [
            format!("api_access_token = \"{secret}"),
            format!("api_access_token = \"{secret}\\q\""),
            format!("api_access_token \"{secret}\""),
            format!("api_access_token = {secret}"),
            format!("api_access_token = \"{secret}\" trailing"),
        ];
        for line in broken {
            let text = format!("{MINIMAL}{line}\n");
            let line_number = text.lines().count();
            let err = Config::parse(Path::new("b.toml"), &text, &env).unwrap_err().to_string();
            assert!(!err.contains(secret), "the line was quoted: {err}");
            assert!(err.contains("b.toml"), "{err}");
            assert!(err.contains(&format!("line {line_number}, column ")), "{err}");
        }
    }

    #[test]
    fn the_secrets_table_is_read_like_config_and_always_redacted() {
        let text = format!("{MINIMAL}[tenants.secrets]\nvendor_login = \"${{TD_TOKEN}}-login\"\n");
        let config = Config::parse(Path::new("b.toml"), &text, &env).unwrap();
        let tenant = &config.tenants[0];
        // `vendor_login` does not look like a secret's key: only the table makes it one.
        assert!(!is_secret_key("vendor_login"));
        assert_eq!(tenant.adapter_values()["vendor_login"], "td-secret-login");
        assert_eq!(tenant.adapter_values()["literal"], "${NOT_A_VAR}");
        assert!(tenant.secret_values().contains(&"td-secret-login".to_string()));
        assert!(!tenant.config.contains_key("vendor_login"));
    }

    #[test]
    fn a_key_in_both_config_and_secrets_is_refused() {
        let text = format!("{MINIMAL}[tenants.secrets]\nliteral = \"also-a-secret\"\n");
        let err = Config::parse(Path::new("b.toml"), &text, &env).unwrap_err().to_string();
        assert_names_field_not_value(&err, "tenants[0].secrets.literal", "also-a-secret");
    }

    #[test]
    fn empty_or_short_explicit_secrets_are_refused() {
        for secret in ["", "  ", "7-bytes"] {
            let text = format!("{MINIMAL}[tenants.secrets]\nvendor_login = \"{secret}\"\n");
            let err = Config::parse(Path::new("b.toml"), &text, &env).unwrap_err().to_string();
            assert_names_field_not_value(&err, "tenants[0].secrets.vendor_login", secret.trim());
        }
    }

    #[test]
    fn empty_or_short_metrics_token_is_refused() {
        for token in ["", "short-metrics-t"] {
            let err = refused(&format!("[metrics]\ntoken = \"{token}\"\n"), "", "");
            assert_names_field_not_value(&err, "metrics.token", token);
        }
        let ok = format!("[metrics]\ntoken = \"metrics-token-0123\"\n{MINIMAL}");
        let config = Config::parse(Path::new("b.toml"), &ok, &env).unwrap();
        assert_eq!(config.metrics.token.as_deref(), Some("metrics-token-0123"));
        assert!(
            Config::parse(Path::new("b.toml"), MINIMAL, &env)
                .unwrap()
                .metrics
                .token
                .is_none()
        );
    }

    #[test]
    fn store_url_selects_postgres_and_a_bad_one_is_refused_without_its_password() {
        let ok = format!("[store]\nurl = \"postgres://bridge:db-pass-0123@db:5432/bridge\"\n{MINIMAL}");
        let config = Config::parse(Path::new("b.toml"), &ok, &env).unwrap();
        assert_eq!(
            config.store.url.as_deref(),
            Some("postgres://bridge:db-pass-0123@db:5432/bridge")
        );
        assert!(!format!("{:?}", config.store).contains("db-pass-0123"));
        let err = refused("[store]\nurl = \"mysql://bridge:db-pass-0123@db/bridge\"\n", "", "");
        assert_names_field_not_value(&err, "store.url", "db-pass-0123");
    }

    #[test]
    fn url_passwords_in_config_values_are_secrets() {
        let text = format!("{MINIMAL}database = \"postgres://bridge:db-pass-0123@db.internal/bridge\"\n");
        let config = Config::parse(Path::new("b.toml"), &text, &env).unwrap();
        assert!(config.tenants[0].secret_values().contains(&"db-pass-0123".to_string()));
    }

    #[test]
    fn values_quoted_by_shape_and_validation_errors_are_redacted() {
        // A secret from the environment where a number belongs: serde quotes the value.
        let text = MINIMAL.replace(
            "webhook = { auth = \"token\", secret = \"${CW_TOKEN}\" }",
            "webhook = { auth = \"token\", secret = \"x-0123456\", tolerance_s = \"${CW_TOKEN}\" }",
        );
        let err = Config::parse(Path::new("b.toml"), &text, &env).unwrap_err().to_string();
        assert!(!err.contains("cw-secret") && err.contains("[redacted]"), "{err}");
        // A password in a URL that validation quotes.
        let text = MINIMAL.replace(
            "base_url = \"http://127.0.0.1:9000\"",
            "base_url = \"ftp://user:url-pass-0123@127.0.0.1:9000\"",
        );
        let err = Config::parse(Path::new("b.toml"), &text, &env).unwrap_err().to_string();
        assert!(err.contains("three_dolphins.base_url"), "{err}");
        assert!(!err.contains("url-pass-0123"), "{err}");
    }
}
