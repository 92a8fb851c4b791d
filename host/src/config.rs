//! The bridge's TOML configuration: loading, `${ENV}` substitution, defaults and validation.
//!
//! Every error names the file and the field (`tenants[1].owner`), never a secret's value.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// The shortest `admin.token` and `server.incoming_token` accepted, in bytes (surrounding
/// whitespace not counted): tokens the operator generates, for which 16 random bytes are cheap.
pub const MIN_TOKEN_BYTES: usize = 16;

/// The shortest webhook secret accepted, in bytes (of the decoded key for a `whsec_` secret).
/// Vendors issue these (Chatwoot's are 24 characters, Standard Webhooks keys 24 to 64 bytes), so
/// the floor only catches placeholders and typos.
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 8;

/// The largest `tenants[].webhook.tolerance_s`: one day.
pub const MAX_WEBHOOK_TOLERANCE_S: u64 = 86_400;

/// Why a configuration was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
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

/// `[store]`: the embedded database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default = "defaults::store_path")]
    pub path: PathBuf,
    /// Writes waiting for the store's writer at most; past it, Incoming events and webhooks are
    /// answered 503 `store_busy` (with `Retry-After`) instead of queueing without bound.
    #[serde(default = "defaults::write_queue")]
    pub write_queue: usize,
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
}

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
    /// A shared secret in the `X-Webhook-Token` header or the `token` query parameter.
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

/// `[delivery]`: how events are delivered and kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Deliveries running at once (across all tickets).
    pub workers: usize,
    /// Deliveries of one tenant running at once, so a slow or misbehaving tenant cannot take
    /// every worker.
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
    /// Values the adapter reads through its `config` import; may hold secrets.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Allow outbound calls to loopback, link-local and private addresses (off by default).
    #[serde(default)]
    pub allow_private_networks: bool,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Required: how webhook requests are verified (`auth = "none"` to opt out explicitly).
    pub webhook: Option<WebhookConfig>,
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
    /// Values to keep out of logs and errors: config values whose key names a secret, and the
    /// webhook secret.
    pub fn secret_values(&self) -> Vec<String> {
        const MARKERS: [&str; 6] = ["token", "secret", "password", "key", "credential", "auth"];
        let mut secrets: Vec<String> = self
            .config
            .iter()
            .filter(|(k, _)| {
                let k = k.to_ascii_lowercase();
                MARKERS.iter().any(|m| k.contains(m))
            })
            .map(|(_, v)| v.clone())
            .collect();
        secrets.extend(self.webhook.as_ref().and_then(|w| w.secret.clone()));
        secrets
    }
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
        crate::store::DEFAULT_WRITE_QUEUE
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
        let mut value: toml::Value = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        substitute_env(&mut value, "", env).map_err(|(field, message)| ConfigError::Invalid {
            path: path.to_path_buf(),
            field,
            message,
        })?;
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
        });
        store.path = resolve(&store.path);
        let mut adapters = raw.adapters;
        adapters.cache_dir = Some(match &adapters.cache_dir {
            Some(dir) => resolve(dir),
            None => store.path.parent().unwrap_or(Path::new(".")).join("adapter-cache"),
        });
        let mut tenants = raw.tenants;
        for tenant in &mut tenants {
            tenant.adapter = resolve(&tenant.adapter);
        }
        let config = Config {
            source: path.to_path_buf(),
            server,
            store,
            adapters,
            three_dolphins: raw.three_dolphins,
            delivery: raw.delivery,
            admin: raw.admin,
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

    /// A tenant's webhook deduplication: a header name, and ids kept at least as long as a
    /// signed request may be replayed.
    fn check_webhook_dedupe(&self, webhook: &WebhookConfig, field: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        if let Some(header) = &webhook.dedupe_header
            && http::HeaderName::from_bytes(header.as_bytes()).is_err()
        {
            return Err(self.invalid(field("webhook.dedupe_header"), "is not an HTTP header name"));
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
        if let Some(token) = &self.admin.token {
            check_secret(token, MIN_TOKEN_BYTES).map_err(|m| {
                let hint = match token.trim().is_empty() {
                    true => " (leave it unset to turn the admin endpoints off)",
                    false => "",
                };
                self.invalid("admin.token", format!("{m}{hint}"))
            })?;
        }
        for (i, network) in self.server.incoming_networks.iter().enumerate() {
            parse_network(network).map_err(|m| self.invalid(format!("server.incoming_networks[{i}]"), m))?;
        }
        if let Some(url) = &self.server.public_url {
            check_http_url(url).map_err(|m| self.invalid("server.public_url", m))?;
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
                    self.check_webhook_dedupe(webhook, &field)?
                }
            }
            let limits = &tenant.limits;
            if limits.memory_mib == 0 || limits.cpu_ms == 0 || limits.http_response_bytes == 0 {
                return Err(self.invalid(
                    field("limits"),
                    "memory_mib, cpu_ms and http_response_bytes must be above 0",
                ));
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

/// Replaces `${NAME}` in every string of `value`; `$${` stands for a literal `${`.
fn substitute_env(
    value: &mut toml::Value,
    field: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    match value {
        toml::Value::String(s) => {
            *s = expand(s, env).map_err(|m| (field.to_string(), m))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute_env(item, &format!("{field}[{i}]"), env)?;
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let name = if field.is_empty() {
                    key.clone()
                } else {
                    format!("{field}.{key}")
                };
                substitute_env(item, &name, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
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
    fn empty_or_short_admin_token_is_refused() {
        for token in ["", "   ", "short-admin-tok"] {
            let err = refused(&format!("[admin]\ntoken = \"{token}\"\n"), "", "");
            assert_names_field_not_value(&err, "admin.token", token.trim());
        }
        let ok = format!("[admin]\ntoken = \"admin-token-0123456\"\n{MINIMAL}");
        assert!(Config::parse(Path::new("b.toml"), &ok, &env).is_ok());
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
