//! What a test bridge runs with: [`BridgeConfig`] (its configuration file, built in code), its
//! [`Tenant`]s and their [`WebhookAuth`], and the tokens every test bridge is given.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::adapters;

/// The bridge's default Incoming path.
pub const INCOMING_PATH: &str = "/3dolphins/incoming";
/// The admin token every test bridge is configured with.
pub const ADMIN_TOKEN: &str = "e2e-bridge-admin-token";
/// The credential test bridges demand on the Incoming endpoint (sent by [`Bridge::send_event`]).
pub const INCOMING_TOKEN: &str = "e2e-incoming-token";
/// The retry schedule of test bridges unless a test sets its own: two quick retries, so a
/// delivery that keeps failing is dead-lettered after three attempts within a second.
pub const TEST_RETRY_SCHEDULE_MS: [u64; 2] = [100, 200];

/// One `[[tenants]]` entry.
#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub name: String,
    pub owner: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    pub adapter: PathBuf,
    pub allowed_hosts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_timeout_ms: Option<u64>,
    /// Loopback and private addresses allowed: on by default here, as every mock is on loopback.
    pub allow_private_networks: bool,
    pub config: BTreeMap<String, String>,
    /// `[tenants.limits]` values (`memory_mib`, `cpu_ms`, ...); the bridge's defaults otherwise.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, u64>,
    /// `[tenants.instance_reuse]` values (`idle`, `max_calls`); off unless a test sets them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub instance_reuse: BTreeMap<String, u64>,
    /// `[tenants.webhook]`: no verification unless a test sets one.
    pub webhook: WebhookAuth,
    /// `[tenants.telemetry]` values (`propagate`); the bridge's defaults otherwise.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub telemetry: BTreeMap<String, bool>,
}

/// `[tenants.webhook]`: how the bridge verifies the vendor's webhook requests.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookAuth {
    /// `none`, `token`, `chatwoot`, `standard-webhooks` or `hmac`.
    pub auth: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tolerance_s: Option<u64>,
    /// The header naming a webhook for deduplication; the bridge's default for `auth` when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedupe_header: Option<String>,
    /// `auth = "token"`: the header carrying the token (the bridge's default when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `auth = "token"`: the query parameter that may carry the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// `auth = "hmac"`: the `[tenants.webhook.hmac]` table, key by key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hmac: Option<std::collections::BTreeMap<String, String>>,
}

impl WebhookAuth {
    pub fn none() -> WebhookAuth {
        WebhookAuth {
            auth: "none".into(),
            secret: None,
            tolerance_s: None,
            dedupe_header: None,
            header: None,
            query: None,
            hmac: None,
        }
    }

    /// `auth` (`token`, `chatwoot`, `standard-webhooks`, `hmac`) with `secret`.
    pub fn with_secret(auth: &str, secret: &str) -> WebhookAuth {
        WebhookAuth {
            auth: auth.into(),
            secret: Some(secret.into()),
            tolerance_s: None,
            dedupe_header: None,
            header: None,
            query: None,
            hmac: None,
        }
    }

    /// `auth = "token"`: the token comes in header `name`.
    pub fn token_header(mut self, name: &str) -> WebhookAuth {
        self.header = Some(name.into());
        self
    }

    /// `auth = "token"`: the token may come in query parameter `name`.
    pub fn token_query(mut self, name: &str) -> WebhookAuth {
        self.query = Some(name.into());
        self
    }

    /// `auth = "hmac"`: the scheme's keys and values (`header`, `encoding`, `signed`...).
    pub fn hmac_scheme(mut self, pairs: &[(&str, &str)]) -> WebhookAuth {
        self.hmac = Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        self
    }

    /// Deduplicates webhooks on header `name`.
    pub fn dedupe_header(mut self, name: &str) -> WebhookAuth {
        self.dedupe_header = Some(name.into());
        self
    }
}

impl Tenant {
    pub fn new(name: &str, owner: &str, adapter: impl Into<PathBuf>) -> Tenant {
        Tenant {
            name: name.into(),
            owner: owner.into(),
            channels: Vec::new(),
            adapter: adapter.into(),
            allowed_hosts: Vec::new(),
            http_timeout_ms: None,
            call_timeout_ms: None,
            allow_private_networks: true,
            config: BTreeMap::new(),
            limits: BTreeMap::new(),
            instance_reuse: BTreeMap::new(),
            webhook: WebhookAuth::none(),
            telemetry: BTreeMap::new(),
        }
    }

    /// Whether the adapter may call loopback and private addresses (default here: yes).
    pub fn allow_private_networks(mut self, allow: bool) -> Tenant {
        self.allow_private_networks = allow;
        self
    }

    /// `[tenants.telemetry] propagate`: the adapter's requests carry the trace's `traceparent`.
    pub fn propagate_traces(mut self, propagate: bool) -> Tenant {
        self.telemetry.insert("propagate".into(), propagate);
        self
    }

    /// Sets one `[tenants.limits]` value.
    pub fn limit(mut self, key: &str, value: u64) -> Tenant {
        self.limits.insert(key.into(), value);
        self
    }

    /// Sets one `[tenants.instance_reuse]` value.
    pub fn instance_reuse(mut self, key: &str, value: u64) -> Tenant {
        self.instance_reuse.insert(key.into(), value);
        self
    }

    /// How the vendor's webhooks are verified.
    pub fn webhook(mut self, auth: WebhookAuth) -> Tenant {
        self.webhook = auth;
        self
    }

    /// Narrows the tenant to these channels.
    pub fn channels(mut self, channels: &[&str]) -> Tenant {
        self.channels = channels.iter().map(|c| c.to_string()).collect();
        self
    }

    /// Allows the adapter to call `origin` (`http://127.0.0.1:PORT`).
    pub fn allow(mut self, origin: &str) -> Tenant {
        self.allowed_hosts.push(origin.trim_end_matches('/').to_string());
        self
    }

    /// Sets one `[tenants.config]` value.
    pub fn config(mut self, key: &str, value: &str) -> Tenant {
        self.config.insert(key.into(), value.into());
        self
    }

    /// Removes one `[tenants.config]` value.
    pub fn without_config(mut self, key: &str) -> Tenant {
        self.config.remove(key);
        self
    }

    pub fn http_timeout_ms(mut self, ms: u64) -> Tenant {
        self.http_timeout_ms = Some(ms);
        self
    }

    pub fn call_timeout_ms(mut self, ms: u64) -> Tenant {
        self.call_timeout_ms = Some(ms);
        self
    }
}

/// A whole bridge configuration; `BridgeConfig::new(mock.base_url())` then add tenants.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    pub three_dolphins_base_url: String,
    pub api_token: Option<String>,
    pub three_dolphins_timeout_ms: Option<u64>,
    pub max_body_bytes: Option<u64>,
    /// `[server] incoming_token`; see [`INCOMING_TOKEN`].
    pub incoming_token: Option<String>,
    /// `[server] public_url` (for `properties`).
    pub public_url: Option<String>,
    /// `[delivery] retry_schedule_ms`; see [`TEST_RETRY_SCHEDULE_MS`].
    pub retry_schedule_ms: Vec<u64>,
    /// `[delivery] lease_ms`: how long a claimed delivery is held before another may claim it
    /// (the bridge's default when unset).
    pub lease_ms: Option<u64>,
    /// `[delivery] max_in_flight_per_tenant` (the bridge's default when unset).
    pub max_in_flight_per_tenant: Option<usize>,
    /// `[store] url`: a PostgreSQL database instead of the SQLite file beside the config.
    pub store_url: Option<String>,
    /// `[admin] token`; the harness reads delivery states through the admin endpoints.
    pub admin_token: Option<String>,
    pub tenants: Vec<Tenant>,
    /// Environment variables for the child (for `${VAR}` in the config).
    pub env: Vec<(String, String)>,
    /// Lines appended verbatim to the generated TOML (for options the builder lacks).
    pub extra_toml: String,
}

#[derive(Serialize)]
struct ConfigFile<'a> {
    server: ServerSection,
    store: StoreSection,
    adapters: AdaptersSection,
    three_dolphins: ThreeDolphinsSection,
    delivery: DeliverySection,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin: Option<AdminSection>,
    tenants: &'a [Tenant],
}

#[derive(Serialize)]
struct DeliverySection {
    retry_schedule_ms: Vec<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_in_flight_per_tenant: Option<usize>,
}

#[derive(Serialize)]
struct AdminSection {
    token: String,
}

#[derive(Serialize)]
struct ServerSection {
    listen: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_body_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    incoming_token: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    allow_unauthenticated: bool,
}

#[derive(Serialize)]
struct StoreSection {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

#[derive(Serialize)]
struct AdaptersSection {
    cache_dir: PathBuf,
}

#[derive(Serialize)]
struct ThreeDolphinsSection {
    base_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
}

impl BridgeConfig {
    /// A config posting to the 3Dolphins at `three_dolphins_base_url`, with no tenants yet.
    pub fn new(three_dolphins_base_url: &str) -> BridgeConfig {
        BridgeConfig {
            three_dolphins_base_url: three_dolphins_base_url.trim_end_matches('/').to_string(),
            api_token: None,
            three_dolphins_timeout_ms: None,
            max_body_bytes: None,
            incoming_token: Some(INCOMING_TOKEN.into()),
            public_url: None,
            retry_schedule_ms: TEST_RETRY_SCHEDULE_MS.to_vec(),
            lease_ms: None,
            max_in_flight_per_tenant: None,
            store_url: None,
            admin_token: Some(ADMIN_TOKEN.into()),
            tenants: Vec::new(),
            env: Vec::new(),
            extra_toml: String::new(),
        }
    }

    /// The Incoming credential; `None` runs the endpoint unauthenticated.
    pub fn incoming_token(mut self, token: Option<&str>) -> BridgeConfig {
        self.incoming_token = token.map(str::to_string);
        self
    }

    pub fn public_url(mut self, url: &str) -> BridgeConfig {
        self.public_url = Some(url.into());
        self
    }

    pub fn api_token(mut self, token: &str) -> BridgeConfig {
        self.api_token = Some(token.into());
        self
    }

    pub fn three_dolphins_timeout_ms(mut self, ms: u64) -> BridgeConfig {
        self.three_dolphins_timeout_ms = Some(ms);
        self
    }

    pub fn max_body_bytes(mut self, bytes: u64) -> BridgeConfig {
        self.max_body_bytes = Some(bytes);
        self
    }

    /// Waits before each retry (`[delivery] retry_schedule_ms`); empty: no retries.
    pub fn retry_schedule_ms(mut self, schedule: &[u64]) -> BridgeConfig {
        self.retry_schedule_ms = schedule.to_vec();
        self
    }

    /// Holds a claimed delivery this long before another process may claim it
    /// (`[delivery] lease_ms`).
    pub fn lease_ms(mut self, ms: u64) -> BridgeConfig {
        self.lease_ms = Some(ms);
        self
    }

    /// Attempts of one tenant running at once (`[delivery] max_in_flight_per_tenant`).
    pub fn max_in_flight_per_tenant(mut self, attempts: usize) -> BridgeConfig {
        self.max_in_flight_per_tenant = Some(attempts);
        self
    }

    /// Stores in the PostgreSQL database at `url` (`[store] url`) instead of the SQLite file.
    pub fn store_url(mut self, url: &str) -> BridgeConfig {
        self.store_url = Some(url.into());
        self
    }

    pub fn tenant(mut self, tenant: Tenant) -> BridgeConfig {
        self.tenants.push(tenant);
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> BridgeConfig {
        self.env.push((name.into(), value.into()));
        self
    }

    /// The TOML text (store relative to the config's folder, shared adapter cache).
    pub fn to_toml(&self) -> String {
        let file = ConfigFile {
            server: ServerSection {
                listen: "127.0.0.1:0".into(),
                max_body_bytes: self.max_body_bytes,
                public_url: self.public_url.clone(),
                incoming_token: self.incoming_token.clone(),
                allow_unauthenticated: self.incoming_token.is_none(),
            },
            store: StoreSection {
                path: "bridge.db".into(),
                url: self.store_url.clone(),
            },
            adapters: AdaptersSection {
                cache_dir: adapters::shared_adapter_cache(),
            },
            three_dolphins: ThreeDolphinsSection {
                base_url: self.three_dolphins_base_url.clone(),
                api_token: self.api_token.clone(),
                timeout_ms: self.three_dolphins_timeout_ms,
            },
            delivery: DeliverySection {
                retry_schedule_ms: self.retry_schedule_ms.clone(),
                lease_ms: self.lease_ms,
                max_in_flight_per_tenant: self.max_in_flight_per_tenant,
            },
            admin: self.admin_token.clone().map(|token| AdminSection { token }),
            tenants: &self.tenants,
        };
        let mut text = toml::to_string(&file).expect("the config serialises to TOML");
        if !self.extra_toml.is_empty() {
            text.push('\n');
            text.push_str(&self.extra_toml);
            text.push('\n');
        }
        text
    }

    /// Writes the config into `dir` as `bridge.toml`; returns its path.
    pub fn write_to(&self, dir: &Path) -> PathBuf {
        let path = dir.join("bridge.toml");
        std::fs::write(&path, self.to_toml()).unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        path
    }
}
