//! The bridge's TOML configuration: loading, `${ENV}` substitution, defaults and validation.
//!
//! Every error names the file and the field (`tenants[1].owner`), never a secret's value.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::redaction::SecretSet;

/// The shortest `admin.token` and `server.incoming_token` accepted, in bytes (surrounding
/// whitespace not counted): tokens the operator generates, for which 16 random bytes are cheap.
pub const MIN_TOKEN_BYTES: usize = 16;

/// The shortest webhook secret accepted, in bytes (of the decoded key for a `whsec_` secret).
/// Vendors issue these (Chatwoot's are 24 characters, Standard Webhooks keys 24 to 64 bytes), so
/// the floor only catches placeholders and typos.
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 8;

/// The shortest value accepted in a tenant's `[tenants.secrets]` table, in bytes: vendor API
/// keys and passwords are longer, and a very short secret would redact ordinary words.
pub const MIN_ADAPTER_SECRET_BYTES: usize = 8;

/// Parts of a `[tenants.config]` key that mark its value as a secret (compared ignoring case):
/// a safety net for secrets not moved to `[tenants.secrets]`.
const SECRET_KEY_MARKERS: [&str; 12] = [
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "key",
    "credential",
    "auth",
    "bearer",
    "jwt",
    "dsn",
    "webhook_url",
];

/// The largest `tenants[].webhook.tolerance_s`: one day.
pub const MAX_WEBHOOK_TOLERANCE_S: u64 = 86_400;

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
    pub tenants: Vec<TenantConfig>,
}

/// `[server]`: where and how the bridge listens.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// The base URL 3Dolphins reaches the bridge at (for `properties`); defaults to `http://{listen}`.
    pub public_url: Option<String>,
    /// Path where 3Dolphins POSTs Incoming events.
    #[serde(default = "defaults::incoming_path")]
    pub incoming_path: String,
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
    /// How long a client may take to send its request headers.
    #[serde(default = "defaults::header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// How long a client may take to send its body once the headers are in.
    #[serde(default = "defaults::header_read_timeout_ms")]
    pub body_read_timeout_ms: u64,
    /// The credential 3Dolphins must present on the Incoming endpoint (a secret), as
    /// `Authorization: Bearer <token>` or `X-Bridge-Token: <token>`. Required unless
    /// `allow_unauthenticated = true`.
    pub incoming_token: Option<String>,
    /// Explicitly run the Incoming endpoint without a credential (development only).
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// When set, only these source networks (CIDR) may call the Incoming endpoint.
    #[serde(default)]
    pub incoming_networks: Vec<String>,
}

/// `[store]`: the embedded database (SQLite at `path`), or a PostgreSQL database (`url`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The SQLite file, unless `url` is set (adapter cache and deployments default beside it).
    #[serde(default = "defaults::store_path")]
    pub path: PathBuf,
    /// Writes waiting for the store's writer at most; past it, Incoming events and webhooks are
    /// answered 503 `store_busy` (with `Retry-After`) instead of queueing without bound.
    #[serde(default = "defaults::write_queue")]
    pub write_queue: usize,
    /// `postgres://user:password@host:port/database`: store in PostgreSQL instead of SQLite.
    /// The password is a secret (kept out of logs and errors); `${VAR}` substitution applies.
    pub url: Option<String>,
    /// PostgreSQL: connections held at most.
    #[serde(default = "defaults::pool_size")]
    pub pool_size: usize,
}

/// The URL's password stays out of debug output.
impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self.url.as_deref().map(|url| match url::Url::parse(url) {
            Ok(mut parsed) if parsed.password().is_some() => {
                let _ = parsed.set_password(Some("redacted"));
                parsed.to_string()
            }
            Ok(parsed) => parsed.to_string(),
            Err(_) => "(not a URL)".to_string(),
        });
        f.debug_struct("StoreConfig")
            .field("path", &self.path)
            .field("write_queue", &self.write_queue)
            .field("url", &url)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// `[adapters]`: settings shared by every adapter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptersConfig {
    /// Where compiled adapters are cached; defaults to `adapter-cache` beside the store.
    pub cache_dir: Option<PathBuf>,
    /// WebAssembly stack per call, in KiB (engine-wide).
    pub max_wasm_stack_kib: usize,
    /// Consecutive failed calls after which a tenant's adapter is rested.
    pub breaker_failures: u32,
    /// How long a tripped tenant rests before one trial call.
    pub breaker_cooldown_ms: u64,
    /// Threads that run adapter code (0: one per CPU but one, at least one). They run at a lower
    /// OS priority than the threads serving HTTP, and are shared between tenants by recent CPU use.
    pub threads: usize,
    /// Adapter instances alive at once, across tenants: the size of wasmtime's instance pool
    /// (a call holds one from instantiation until it returns, host calls included). Calls past
    /// it wait for one, within their call timeout.
    pub pool_instances: u32,
}

impl AdaptersConfig {
    /// How many adapter threads to start. By default one CPU is left to accepting, committing
    /// and delivering, which adapters spinning on every other CPU then cannot slow down much
    /// (`isolation-bench` on 2 CPUs: healthy p99 under attack 2x alone with one adapter thread,
    /// 18x with two).
    pub fn adapter_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |cpus| cpus.get().saturating_sub(1).max(1)),
            n => n,
        }
    }
}

impl Default for AdaptersConfig {
    fn default() -> Self {
        AdaptersConfig {
            cache_dir: None,
            max_wasm_stack_kib: 512,
            breaker_failures: 10,
            breaker_cooldown_ms: 30_000,
            threads: 0,
            pool_instances: 256,
        }
    }
}

/// `[tenants.limits]`: what one adapter call may use; every field has a safe default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Linear memory per instance, MiB.
    pub memory_mib: usize,
    /// Guest CPU time per call, ms (time spent running, not waiting for host calls or a thread).
    pub cpu_ms: u64,
    /// Outbound HTTP requests per call.
    pub http_calls: u32,
    /// Key-value operations per call.
    pub kv_ops: u32,
    /// Log bytes per call; logging past it fails the call.
    pub log_bytes: usize,
    /// Largest vendor response body, bytes.
    pub http_response_bytes: usize,
    /// Bytes (keys and values) the tenant's key-value store may hold in all.
    pub kv_total_bytes: u64,
    /// Events one webhook call may produce.
    pub webhook_events: usize,
    /// Webhook calls of the tenant running at once; more are answered 503.
    pub webhook_concurrency: usize,
    /// 3Dolphins look-ups (`three-dolphins.contact` / `history`) per call; at most
    /// [`MAX_LOOKUPS_PER_CALL`], as each one is a request to 3Dolphins with the bridge's token.
    pub lookups: u32,
}

/// `[tenants.instance_reuse]`: whether calls of the tenant may run in an instance an earlier
/// call of the same tenant and adapter version used. What one call leaves in the guest's memory
/// is then seen by the next: only for adapters that keep nothing of one call's data (README,
/// Security).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InstanceReuseConfig {
    /// Instances kept between calls, at most; 0 (the default) turns reuse off.
    pub idle: usize,
    /// Calls one instance serves before it is dropped for a fresh one.
    pub max_calls: u32,
}

impl Default for InstanceReuseConfig {
    fn default() -> Self {
        InstanceReuseConfig {
            idle: 0,
            max_calls: 1_000,
        }
    }
}

/// Largest `instance_reuse.idle`.
pub const MAX_IDLE_INSTANCES: usize = 64;

/// Largest `limits.memory_mib`: the most a 32-bit linear memory holds.
pub const MAX_MEMORY_MIB: usize = 4096;

/// Largest `adapters.pool_instances`: each instance slot reserves address space for up to 16
/// memories of 4 GiB, and 512 of them already take 32 TiB of the 128 TiB a process has.
pub const MAX_POOL_INSTANCES: u32 = 512;

/// Most look-ups `limits.lookups` may allow per call.
pub const MAX_LOOKUPS_PER_CALL: u32 = 1_000;

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            memory_mib: 128,
            cpu_ms: 2_000,
            http_calls: 32,
            kv_ops: 1_000,
            log_bytes: 64 << 10,
            http_response_bytes: 16 << 20,
            kv_total_bytes: 64 << 20,
            webhook_events: 100,
            webhook_concurrency: 16,
            lookups: 20,
        }
    }
}

/// How a tenant's webhook requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookAuth {
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature` (HMAC-SHA256).
    StandardWebhooks,
    /// Chatwoot: `X-Chatwoot-Signature: sha256=HMAC(secret, "{timestamp}.{body}")` and
    /// `X-Chatwoot-Timestamp`.
    Chatwoot,
    /// A shared secret in a header (`X-Webhook-Token` unless `header` names another), or in a
    /// query parameter when `query` names one.
    Token,
    /// No verification (development only; must be chosen explicitly).
    None,
}

/// `[tenants.webhook]`: verification of the vendor's webhook requests.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub auth: WebhookAuth,
    /// The signing secret or token (a secret). Standard Webhooks secrets may carry `whsec_`.
    pub secret: Option<String>,
    /// How far a signed timestamp may be from now, seconds.
    #[serde(default = "defaults::webhook_tolerance_s")]
    pub tolerance_s: u64,
    /// The request header carrying the vendor's id of a webhook, the same on each of its
    /// retries: a webhook whose id was seen within `delivery.webhook_dedupe_window_ms` is answered
    /// as the first was and stores nothing. Unset: `x-chatwoot-delivery` for Chatwoot (the
    /// signature when the header is absent), `webhook-id` for Standard Webhooks, none otherwise.
    pub dedupe_header: Option<String>,
    /// `auth = "token"`: the request header carrying the token; `X-Webhook-Token` when unset.
    pub header: Option<String>,
    /// `auth = "token"`: a query parameter that may carry the token instead of the header, for
    /// vendors that can only be given a URL; unset, the header only (a token in a URL ends up
    /// in access logs).
    pub query: Option<String>,
}

/// `[three_dolphins]`: the 3Dolphins server the bridge posts to and looks things up in.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreeDolphinsConfig {
    pub base_url: String,
    #[serde(default = "defaults::event_path")]
    pub outgoing_path: String,
    #[serde(default = "defaults::event_path")]
    pub command_path: String,
    /// Defaults to `{base_url}/dolphin/apiv1`.
    pub api_base_url: Option<String>,
    /// Bearer token for the Contact and History APIs (a secret).
    pub api_token: Option<String>,
    #[serde(default = "defaults::contact_path")]
    pub contact_path: String,
    #[serde(default = "defaults::history_path")]
    pub history_path: String,
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
}

/// The shortest `[delivery] lease_ms`: a lease renewed more often than every 100 ms would be
/// mostly store writes.
const MIN_LEASE_MS: u64 = 300;

/// `[delivery]`: how events are delivered and kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Deliveries running at once (across all tickets).
    pub workers: usize,
    /// Delivery attempts of one tenant running at once (from the claim until the adapter has
    /// answered; recording the outcome is not counted), so a slow or misbehaving tenant cannot
    /// take every worker.
    pub max_in_flight_per_tenant: usize,
    /// Wait before each retry, in milliseconds; the length is the number of retries. Each wait
    /// is drawn uniformly from `0..=value` (full jitter).
    pub retry_schedule_ms: Vec<u64>,
    /// An identical Incoming body (or the same `Idempotency-Key`) within this window is answered
    /// with the first delivery id instead of being queued again.
    pub idempotency_window_ms: u64,
    /// Delivered events are deleted after this long.
    pub retention_ms: u64,
    /// How long in-flight deliveries may take to finish at shutdown.
    pub shutdown_grace_ms: u64,
    /// How long a vendor's webhook id is remembered, so that the vendor's retries of one webhook
    /// are answered as the first was and stored once. Vendors retry for a day or more
    /// (Standard Webhooks senders for about 27 hours), far past the signature tolerance.
    pub webhook_dedupe_window_ms: u64,
    /// What the bridge remembers of a ticket (channel, customer name) is deleted when the ticket
    /// has had no Incoming event for this long.
    pub ticket_retention_ms: u64,
    /// Dead letters are deleted this long after they died; unset (the default): kept until
    /// replayed or purged with `dead-letters purge`.
    pub dead_letter_retention_ms: Option<u64>,
    /// How long a claimed delivery is held for the process running its attempt; the holder
    /// renews it every third of this while the attempt runs. When a process dies mid-attempt,
    /// the delivery is due again, to any replica, at most this long after the last renewal.
    pub lease_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            workers: 32,
            max_in_flight_per_tenant: 8,
            // 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 3 h, 6 h, 12 h: about 23 hours in all.
            retry_schedule_ms: vec![
                5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000, 10_800_000, 21_600_000, 43_200_000,
            ],
            idempotency_window_ms: 120_000,
            retention_ms: 7 * 24 * 3_600_000,
            shutdown_grace_ms: 10_000,
            webhook_dedupe_window_ms: 3 * 24 * 3_600_000,
            ticket_retention_ms: 90 * 24 * 3_600_000,
            dead_letter_retention_ms: None,
            lease_ms: 15_000,
        }
    }
}

/// `[admin]`: the admin HTTP endpoints.
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token for `/admin/...`; the endpoints are off when unset.
    pub token: Option<String>,
}

/// `[deployments]`: adapter versions uploaded to a running bridge (`PUT /admin/tenants/{t}/adapter`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeploymentsConfig {
    /// Where deployed versions are kept; defaults to `deployments` beside the store.
    pub dir: Option<PathBuf>,
    /// Versions kept per tenant (the active one included); older ones are deleted.
    pub keep: usize,
    /// The largest component a deploy accepts, in bytes.
    pub max_bytes: usize,
}

impl Default for DeploymentsConfig {
    fn default() -> Self {
        DeploymentsConfig {
            dir: None,
            keep: 5,
            max_bytes: 64 << 20,
        }
    }
}

/// `[tenants.deploy]`: who may deploy a tenant's adapter over HTTP, and what a version must pass.
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantDeployConfig {
    /// A deploy token scoped to this tenant (a secret): it may deploy, list and roll back this
    /// tenant's adapter and call nothing else.
    pub token: Option<String>,
    /// A `plugin test` fixture folder every deployed version must pass.
    pub fixtures: Option<PathBuf>,
}

/// `[metrics]`: the `/metrics` endpoint.
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Bearer token `GET /metrics` must present (a secret); unset, the endpoint is open.
    pub token: Option<String>,
}

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
    #[serde(default = "defaults::timeout_ms")]
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

/// Whether a `[tenants.config]` key names a secret: it contains one of `token`, `secret`,
/// `password`, `passwd`, `pwd`, `key`, `credential`, `auth`, `bearer`, `jwt`, `dsn` or
/// `webhook_url`, ignoring case.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_MARKERS.iter().any(|marker| key.contains(marker))
}

/// The password of a URL such as `postgres://user:password@host/db`.
fn url_password(value: &str) -> Option<String> {
    let url = url::Url::parse(value).ok()?;
    url.password().filter(|p| !p.is_empty()).map(str::to_string)
}

impl ThreeDolphinsConfig {
    /// The API base for Contact / History look-ups.
    pub fn api_base(&self) -> String {
        match &self.api_base_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("{}/dolphin/apiv1", self.base_url.trim_end_matches('/')),
        }
    }
}

impl ServerConfig {
    /// The URL 3Dolphins should use to reach this bridge.
    pub fn public_base_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }
}

/// Writes the embedded store's writer queue holds by default before client writes are refused.
pub const DEFAULT_WRITE_QUEUE: usize = 8192;
/// Connections the PostgreSQL store's pool holds at most by default.
pub const DEFAULT_POOL_SIZE: usize = 16;

mod defaults {
    use std::net::SocketAddr;
    use std::path::PathBuf;

    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn incoming_path() -> String {
        "/3dolphins/incoming".into()
    }
    pub fn max_body_bytes() -> usize {
        1024 * 1024
    }
    pub fn header_read_timeout_ms() -> u64 {
        10_000
    }
    pub fn store_path() -> PathBuf {
        "dolphin-bridge.db".into()
    }
    pub fn write_queue() -> usize {
        super::DEFAULT_WRITE_QUEUE
    }
    pub fn pool_size() -> usize {
        super::DEFAULT_POOL_SIZE
    }
    pub fn event_path() -> String {
        "/dolphin/integration/incomingMessage".into()
    }
    pub fn contact_path() -> String {
        "/graph/contacts/contactById".into()
    }
    pub fn history_path() -> String {
        "/graph/report/conversations".into()
    }
    pub fn timeout_ms() -> u64 {
        10_000
    }
    pub fn call_timeout_ms() -> u64 {
        30_000
    }
    pub fn webhook_tolerance_s() -> u64 {
        300
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
        let mut store = raw.store.unwrap_or(StoreConfig {
            path: defaults::store_path(),
            write_queue: defaults::write_queue(),
            url: None,
            pool_size: defaults::pool_size(),
        });
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
            tenants,
        };
        config.validate()?;
        Ok(config)
    }

    fn invalid(&self, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.source.clone(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// An optional bearer token (`field`): when set, at least [`MIN_TOKEN_BYTES`]. An empty one
    /// is refused with a hint that leaving it unset would `unset_does`.
    fn check_optional_token(&self, field: &str, token: &Option<String>, unset_does: &str) -> Result<(), ConfigError> {
        let Some(token) = token else {
            return Ok(());
        };
        check_secret(token, MIN_TOKEN_BYTES).map_err(|m| {
            let hint = match token.trim().is_empty() {
                true => format!(" (leave it unset to {unset_does})"),
                false => String::new(),
            };
            self.invalid(field, format!("{m}{hint}"))
        })
    }

    /// A tenant's webhook deduplication: a header name, and ids kept at least as long as a
    /// signed request may be replayed.
    fn check_webhook_options(
        &self,
        webhook: &WebhookConfig,
        field: &dyn Fn(&str) -> String,
    ) -> Result<(), ConfigError> {
        for (name, header) in [("dedupe_header", &webhook.dedupe_header), ("header", &webhook.header)] {
            if let Some(header) = header
                && http::HeaderName::from_bytes(header.as_bytes()).is_err()
            {
                return Err(self.invalid(field(&format!("webhook.{name}")), "is not an HTTP header name"));
            }
        }
        for (name, set) in [("header", webhook.header.is_some()), ("query", webhook.query.is_some())] {
            if set && webhook.auth != WebhookAuth::Token {
                return Err(self.invalid(field(&format!("webhook.{name}")), "applies only to auth = \"token\""));
            }
        }
        if webhook.query.as_deref().is_some_and(str::is_empty) {
            return Err(self.invalid(field("webhook.query"), "must name a query parameter"));
        }
        if matches!(webhook.auth, WebhookAuth::StandardWebhooks | WebhookAuth::Chatwoot)
            && webhook.tolerance_s.saturating_mul(1_000) > self.delivery.webhook_dedupe_window_ms
        {
            return Err(self.invalid(
                field("webhook.tolerance_s"),
                "is longer than delivery.webhook_dedupe_window_ms: a webhook replayed after its id is forgotten would be processed again",
            ));
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_path(&self.server.incoming_path).map_err(|m| self.invalid("server.incoming_path", m))?;
        if self.server.incoming_path.starts_with("/vendors/") || self.server.incoming_path == "/healthz" {
            return Err(self.invalid("server.incoming_path", "collides with a built-in endpoint"));
        }
        if self.server.incoming_token.as_deref().is_none_or(str::is_empty) && !self.server.allow_unauthenticated {
            return Err(self.invalid(
                "server.incoming_token",
                "is required (or set allow_unauthenticated = true for development)",
            ));
        }
        if let Some(token) = &self.server.incoming_token {
            check_secret(token, MIN_TOKEN_BYTES).map_err(|m| self.invalid("server.incoming_token", m))?;
        }
        self.check_optional_token("admin.token", &self.admin.token, "turn the admin endpoints off")?;
        self.check_optional_token("metrics.token", &self.metrics.token, "leave /metrics open")?;
        if let Some(url) = &self.store.url {
            let scheme = url::Url::parse(url).ok().map(|u| u.scheme().to_string());
            if !matches!(scheme.as_deref(), Some("postgres" | "postgresql")) {
                return Err(self.invalid(
                    "store.url",
                    "must be a PostgreSQL URL: postgres://user:password@host:port/database",
                ));
            }
        }
        if self.delivery.lease_ms < MIN_LEASE_MS {
            return Err(self.invalid(
                "delivery.lease_ms",
                format!("must be at least {MIN_LEASE_MS} (it is renewed every third of it)"),
            ));
        }
        if self.deployments.keep == 0 {
            return Err(self.invalid("deployments.keep", "must be at least 1 (the active version)"));
        }
        if self.deployments.max_bytes == 0 {
            return Err(self.invalid("deployments.max_bytes", "must be at least 1"));
        }
        for (i, network) in self.server.incoming_networks.iter().enumerate() {
            parse_network(network).map_err(|m| self.invalid(format!("server.incoming_networks[{i}]"), m))?;
        }
        if let Some(url) = &self.server.public_url {
            check_http_url(url).map_err(|m| self.invalid("server.public_url", m))?;
        }
        if !(1..=MAX_POOL_INSTANCES).contains(&self.adapters.pool_instances) {
            return Err(self.invalid(
                "adapters.pool_instances",
                format!("must be between 1 and {MAX_POOL_INSTANCES}"),
            ));
        }
        let td = &self.three_dolphins;
        check_http_url(&td.base_url).map_err(|m| self.invalid("three_dolphins.base_url", m))?;
        check_http_url(&td.api_base()).map_err(|m| self.invalid("three_dolphins.api_base_url", m))?;
        for (field, path) in [
            ("three_dolphins.outgoing_path", &td.outgoing_path),
            ("three_dolphins.command_path", &td.command_path),
            ("three_dolphins.contact_path", &td.contact_path),
            ("three_dolphins.history_path", &td.history_path),
        ] {
            check_path(path).map_err(|m| self.invalid(field, m))?;
        }
        let mut names = std::collections::HashSet::new();
        let mut routes = std::collections::HashSet::new();
        for (i, tenant) in self.tenants.iter().enumerate() {
            let field = |f: &str| format!("tenants[{i}].{f}");
            let name_ok = !tenant.name.is_empty()
                && tenant.name.len() <= 64
                && tenant
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok {
                return Err(self.invalid(field("name"), "must be 1-64 characters of a-z, A-Z, 0-9, '-' or '_'"));
            }
            if !names.insert(tenant.name.as_str()) {
                return Err(self.invalid(field("name"), format!("`{}` is used by another tenant", tenant.name)));
            }
            if tenant.owner.trim().is_empty() {
                return Err(self.invalid(field("owner"), "must not be empty"));
            }
            let channels: Vec<Option<String>> = if tenant.channels.is_empty() {
                vec![None]
            } else {
                tenant.channels.iter().map(|c| Some(c.to_ascii_lowercase())).collect()
            };
            for channel in channels {
                if channel.as_deref() == Some("") {
                    return Err(self.invalid(field("channels"), "a channel must not be empty"));
                }
                if !routes.insert((tenant.owner.clone(), channel.clone())) {
                    let what = match &channel {
                        Some(c) => format!("owner `{}` channel `{c}`", tenant.owner),
                        None => format!("owner `{}` (all channels)", tenant.owner),
                    };
                    return Err(self.invalid(field("channels"), format!("{what} already routes to another tenant")));
                }
            }
            for (key, secret) in &tenant.secrets {
                let field = field(&format!("secrets.{key}"));
                if tenant.config.contains_key(key) {
                    return Err(self.invalid(
                        field,
                        format!("is also set in tenants[{i}].config: a key belongs in one of the two tables"),
                    ));
                }
                check_secret(secret, MIN_ADAPTER_SECRET_BYTES).map_err(|m| self.invalid(field, m))?;
            }
            for (j, origin) in tenant.allowed_hosts.iter().enumerate() {
                parse_origin(origin).map_err(|m| self.invalid(field(&format!("allowed_hosts[{j}]")), m))?;
            }
            match &tenant.webhook {
                None => {
                    return Err(self.invalid(
                        field("webhook"),
                        "is required: set auth to standard-webhooks, chatwoot, token, or none",
                    ));
                }
                Some(webhook)
                    if webhook.auth != WebhookAuth::None && webhook.secret.as_deref().is_none_or(str::is_empty) =>
                {
                    return Err(self.invalid(field("webhook.secret"), "is required for this auth"));
                }
                Some(webhook) => {
                    if webhook.auth != WebhookAuth::None
                        && let Some(secret) = &webhook.secret
                    {
                        check_webhook_secret(webhook.auth, secret)
                            .map_err(|m| self.invalid(field("webhook.secret"), m))?;
                    }
                    if webhook.tolerance_s > MAX_WEBHOOK_TOLERANCE_S {
                        return Err(self.invalid(
                            field("webhook.tolerance_s"),
                            format!("must be at most {MAX_WEBHOOK_TOLERANCE_S} seconds (one day)"),
                        ));
                    }
                    self.check_webhook_options(webhook, &field)?
                }
            }
            self.check_optional_token(
                &field("deploy.token"),
                &tenant.deploy.token,
                "allow deploys with the admin token only",
            )?;
            let limits = &tenant.limits;
            if limits.memory_mib == 0 || limits.cpu_ms == 0 || limits.http_response_bytes == 0 {
                return Err(self.invalid(
                    field("limits"),
                    "memory_mib, cpu_ms and http_response_bytes must be above 0",
                ));
            }
            if limits.memory_mib > MAX_MEMORY_MIB {
                return Err(self.invalid(
                    field("limits.memory_mib"),
                    format!("must be at most {MAX_MEMORY_MIB} (a 32-bit linear memory)"),
                ));
            }
            if limits.lookups > MAX_LOOKUPS_PER_CALL {
                return Err(self.invalid(
                    field("limits.lookups"),
                    format!("must be at most {MAX_LOOKUPS_PER_CALL}"),
                ));
            }
            if tenant.instance_reuse.idle > MAX_IDLE_INSTANCES {
                return Err(self.invalid(
                    field("instance_reuse.idle"),
                    format!("must be at most {MAX_IDLE_INSTANCES}"),
                ));
            }
            if tenant.instance_reuse.max_calls == 0 {
                return Err(self.invalid(field("instance_reuse.max_calls"), "must be above 0"));
            }
            if tenant.http_timeout_ms == 0 || tenant.call_timeout_ms == 0 {
                return Err(self.invalid(field("call_timeout_ms"), "timeouts must be above 0"));
            }
        }
        Ok(())
    }
}

/// An allowed origin: lower-case scheme, host, and explicit port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

/// Parses `scheme://host[:port]` (no path) into an [`Origin`].
pub fn parse_origin(text: &str) -> Result<Origin, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if url.path() != "/" && !url.path().is_empty() || url.query().is_some() {
        return Err(format!("`{text}` must be scheme://host[:port] without a path"));
    }
    Origin::of(&url).ok_or_else(|| format!("`{text}` must be an http or https URL with a host"))
}

impl Origin {
    /// The origin of an absolute http(s) URL.
    pub fn of(url: &url::Url) -> Option<Origin> {
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        Some(Origin {
            scheme: url.scheme().to_string(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default()?,
        })
    }
}

/// Parses a CIDR network such as `10.0.0.0/8` or `::1/128` (a bare address is one host).
pub fn parse_network(text: &str) -> Result<(std::net::IpAddr, u8), String> {
    let (address, prefix) = text.split_once('/').unwrap_or((text, ""));
    let address: std::net::IpAddr = address
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not an IP network such as 10.0.0.0/8"))?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix = if prefix.is_empty() {
        max
    } else {
        prefix
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("`{text}` has a bad prefix length"))?
    };
    Ok((address, prefix))
}

/// Whether `ip` is inside `network` (as parsed by [`parse_network`]).
pub fn network_contains(network: (std::net::IpAddr, u8), ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match (network.0, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => {
            let mask = u32::MAX.checked_shl(32 - network.1 as u32).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let mask = u128::MAX.checked_shl(128 - network.1 as u32).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

fn check_http_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    Origin::of(&url)
        .map(|_| ())
        .ok_or_else(|| format!("`{text}` must be an http or https URL"))
}

fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        return Err(format!("`{path}` must be an absolute path such as /a/b"));
    }
    Ok(())
}

/// A secret is set and at least `min` bytes long (surrounding whitespace not counted). The
/// message never contains the secret.
fn check_secret(secret: &str, min: usize) -> Result<(), String> {
    let length = secret.trim().len();
    if length == 0 {
        return Err("must not be empty".into());
    }
    if length < min {
        return Err(format!("is too short: {length} bytes, at least {min} are required"));
    }
    Ok(())
}

/// A webhook secret of `auth`: at least [`MIN_WEBHOOK_SECRET_BYTES`]; a Standard Webhooks secret
/// with the `whsec_` prefix must carry a base64 key of that size. The message never contains
/// the secret.
fn check_webhook_secret(auth: WebhookAuth, secret: &str) -> Result<(), String> {
    use base64::Engine as _;
    if auth == WebhookAuth::StandardWebhooks
        && let Some(encoded) = secret.strip_prefix("whsec_")
    {
        // Decoded as the signature check decodes it.
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| "is not valid base64 after its prefix".to_string())?;
        if key.is_empty() {
            return Err("has an empty key after its prefix".into());
        }
        if key.len() < MIN_WEBHOOK_SECRET_BYTES {
            return Err(format!(
                "has a key of {} bytes, at least {MIN_WEBHOOK_SECRET_BYTES} are required",
                key.len()
            ));
        }
        return Ok(());
    }
    check_secret(secret, MIN_WEBHOOK_SECRET_BYTES)
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
            toml::Value::String(s) => found.extend(url_password(s)),
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

    #[test]
    fn networks_match_addresses() {
        let net = parse_network("10.0.0.0/8").unwrap();
        assert!(network_contains(net, "10.1.2.3".parse().unwrap()));
        assert!(!network_contains(net, "11.0.0.1".parse().unwrap()));
        assert!(network_contains(net, "::ffff:10.0.0.1".parse().unwrap()));
        assert!(network_contains(parse_network("::1").unwrap(), "::1".parse().unwrap()));
        assert!(parse_network("10.0.0.0/33").is_err());
    }

    #[test]
    fn origins_get_default_ports() {
        let origin = parse_origin("https://API.example.com").unwrap();
        assert_eq!(origin.host, "api.example.com");
        assert_eq!(origin.port, 443);
    }
}
