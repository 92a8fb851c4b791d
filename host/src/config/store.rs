//! `[store]`: the embedded SQLite database or a PostgreSQL one, and the store's default sizes.

use std::path::PathBuf;

use serde::Deserialize;

use super::{FieldError, invalid};

/// Writes the embedded store's writer queue holds by default before client writes are refused.
pub const DEFAULT_WRITE_QUEUE: usize = 8192;
/// Connections the PostgreSQL store's pool holds at most by default.
pub const DEFAULT_POOL_SIZE: usize = 16;

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

impl StoreConfig {
    /// The store of a file without a `[store]` section: SQLite, every field its default.
    pub(super) fn unset() -> StoreConfig {
        StoreConfig {
            path: defaults::store_path(),
            write_queue: defaults::write_queue(),
            url: None,
            pool_size: defaults::pool_size(),
        }
    }

    pub(super) fn check(&self) -> Result<(), FieldError> {
        if let Some(url) = &self.url {
            let scheme = url::Url::parse(url).ok().map(|u| u.scheme().to_string());
            if !matches!(scheme.as_deref(), Some("postgres" | "postgresql")) {
                return Err(invalid(
                    "store.url",
                    "must be a PostgreSQL URL: postgres://user:password@host:port/database",
                ));
            }
        }
        Ok(())
    }
}

mod defaults {
    use std::path::PathBuf;

    pub fn store_path() -> PathBuf {
        "dolphin-bridge.db".into()
    }
    pub fn write_queue() -> usize {
        super::DEFAULT_WRITE_QUEUE
    }
    pub fn pool_size() -> usize {
        super::DEFAULT_POOL_SIZE
    }
}
