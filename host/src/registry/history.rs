//! The registry's recent events (reloads, adapter loads and rejections, deploys, rollbacks),
//! for the status page.

use super::AdapterRegistry;
use crate::clock::rfc3339;

/// How many [`RegistryEvent`]s [`AdapterRegistry::history`] keeps.
pub const HISTORY_LEN: usize = 50;

/// What happened, for [`RegistryEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegistryEventKind {
    ReloadOk,
    ReloadRejected,
    AdapterLoaded,
    AdapterRejected,
    Deployed,
    DeployRejected,
    RolledBack,
}

/// One entry of [`AdapterRegistry::history`].
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryEvent {
    #[serde(with = "rfc3339")]
    pub at: chrono::DateTime<chrono::Utc>,
    pub kind: RegistryEventKind,
    pub tenant: Option<String>,
    /// The first 12 hex digits of the content hash concerned.
    pub content_hash: Option<String>,
    /// Why it was rejected (no secrets).
    pub reason: Option<String>,
}

impl AdapterRegistry {
    /// The last [`HISTORY_LEN`] reloads, adapter loads and rejections, deploys and rollbacks,
    /// newest first.
    pub fn history(&self) -> Vec<RegistryEvent> {
        self.history
            .lock()
            .expect("history lock")
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    /// Adds an event to the history, dropping the oldest past [`HISTORY_LEN`].
    pub(super) fn record(
        &self,
        kind: RegistryEventKind,
        tenant: Option<&str>,
        hash: Option<&str>,
        reason: Option<String>,
    ) {
        let mut history = self.history.lock().expect("history lock");
        if history.len() == HISTORY_LEN {
            history.pop_front();
        }
        history.push_back(RegistryEvent {
            at: chrono::Utc::now(),
            kind,
            tenant: tenant.map(str::to_string),
            content_hash: hash.map(|h| h.chars().take(12).collect()),
            reason,
        });
    }
}
