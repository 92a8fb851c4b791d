//! `[server]`, `[admin]` and `[metrics]`: where the bridge listens, and the credentials its
//! endpoints require.

use std::net::SocketAddr;

use serde::Deserialize;

use super::network::{check_http_url, check_path, parse_network};
use super::secrets::{MIN_TOKEN_BYTES, check_optional_token, check_secret};
use super::{FieldError, invalid};

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
    /// Failed credentials (admin token and login, deploy tokens, the Incoming and metrics
    /// tokens) one source may send per `auth_failure_window_ms` and credential before its
    /// further attempts at that credential are answered 429; 0 turns the limit off.
    #[serde(default = "defaults::auth_failure_limit")]
    pub auth_failure_limit: u32,
    /// The window of `auth_failure_limit`, counted from a source's first failure in it.
    #[serde(default = "defaults::auth_failure_window_ms")]
    pub auth_failure_window_ms: u64,
    /// How many (source, credential) failure counts are kept at most; beyond, the oldest
    /// window is forgotten first.
    #[serde(default = "defaults::auth_failure_sources")]
    pub auth_failure_sources: usize,
}

impl ServerConfig {
    /// The URL 3Dolphins should use to reach this bridge.
    pub fn public_base_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{}", self.listen),
        }
    }

    /// The Incoming endpoint: a path that is no built-in endpoint's, and a sound credential
    /// unless it runs without one explicitly.
    pub(super) fn check_incoming(&self) -> Result<(), FieldError> {
        check_path(&self.incoming_path).map_err(|m| invalid("server.incoming_path", m))?;
        if self.incoming_path.starts_with("/vendors/") || self.incoming_path == "/healthz" {
            return Err(invalid("server.incoming_path", "collides with a built-in endpoint"));
        }
        if self.incoming_token.as_deref().is_none_or(str::is_empty) && !self.allow_unauthenticated {
            return Err(invalid(
                "server.incoming_token",
                "is required (or set allow_unauthenticated = true for development)",
            ));
        }
        if let Some(token) = &self.incoming_token {
            check_secret(token, MIN_TOKEN_BYTES).map_err(|m| invalid("server.incoming_token", m))?;
        }
        Ok(())
    }

    /// The failure limit's window and table: at least 1 ms and 1 entry while it is on.
    pub(super) fn check_auth_failures(&self) -> Result<(), FieldError> {
        if self.auth_failure_limit == 0 {
            return Ok(());
        }
        if self.auth_failure_window_ms == 0 {
            return Err(invalid(
                "server.auth_failure_window_ms",
                "must be at least 1 (or set auth_failure_limit = 0 to turn the limit off)",
            ));
        }
        if self.auth_failure_sources == 0 {
            return Err(invalid(
                "server.auth_failure_sources",
                "must be at least 1 (or set auth_failure_limit = 0 to turn the limit off)",
            ));
        }
        Ok(())
    }

    /// The networks allowed to call the Incoming endpoint, and the public URL.
    pub(super) fn check_addresses(&self) -> Result<(), FieldError> {
        for (i, network) in self.incoming_networks.iter().enumerate() {
            parse_network(network).map_err(|m| invalid(format!("server.incoming_networks[{i}]"), m))?;
        }
        if let Some(url) = &self.public_url {
            check_http_url(url).map_err(|m| invalid("server.public_url", m))?;
        }
        Ok(())
    }
}

/// `[admin]`: the admin HTTP endpoints.
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token for `/admin/...`; the endpoints are off when unset.
    pub token: Option<String>,
}

impl AdminConfig {
    pub(super) fn check(&self) -> Result<(), FieldError> {
        check_optional_token("admin.token", &self.token, "turn the admin endpoints off")
    }
}

/// `[metrics]`: the `/metrics` endpoint.
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Bearer token `GET /metrics` must present (a secret); unset, the endpoint is open.
    pub token: Option<String>,
}

impl MetricsConfig {
    pub(super) fn check(&self) -> Result<(), FieldError> {
        check_optional_token("metrics.token", &self.token, "leave /metrics open")
    }
}

mod defaults {
    use std::net::SocketAddr;

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
    pub fn auth_failure_limit() -> u32 {
        10
    }
    pub fn auth_failure_window_ms() -> u64 {
        60_000
    }
    pub fn auth_failure_sources() -> usize {
        10_000
    }
}
