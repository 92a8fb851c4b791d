//! The registry's recent events (reloads, adapter loads and rejections, deploys, rollbacks),
//! for the status page.
//!
//! Rejected deploys, which a partner can send as fast as it likes, are kept in a list of their
//! own: however many there are, they push no reload, load, deploy or rollback out.

use std::collections::VecDeque;

use super::AdapterRegistry;
use crate::clock::rfc3339;

/// How many [`RegistryEvent`]s [`AdapterRegistry::history`] keeps: this many rejected
/// deploys, and this many of every other kind.
pub const HISTORY_LEN: usize = 50;

/// The two bounded lists of [`RegistryEvent`]s, oldest first.
#[derive(Debug, Default)]
pub(super) struct History {
    /// Everything but rejected deploys.
    operations: VecDeque<RegistryEvent>,
    rejected_deploys: VecDeque<RegistryEvent>,
}

impl History {
    /// Adds `event` to its list, dropping that list's oldest past [`HISTORY_LEN`].
    fn push(&mut self, event: RegistryEvent) {
        let list = match event.kind {
            RegistryEventKind::DeployRejected => &mut self.rejected_deploys,
            _ => &mut self.operations,
        };
        if list.len() == HISTORY_LEN {
            list.pop_front();
        }
        list.push_back(event);
    }

    /// Both lists merged, newest first.
    fn newest_first(&self) -> Vec<RegistryEvent> {
        let mut events: Vec<RegistryEvent> = self.operations.iter().chain(&self.rejected_deploys).cloned().collect();
        // Stable: events of the same instant keep the order they were recorded in.
        events.sort_by_key(|event| event.at);
        events.reverse();
        events
    }
}

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
    CanaryStarted,
    CanaryPromoted,
    CanaryAborted,
    /// A canary stopped on its own for failing more than the active version; the reason has
    /// the figures.
    CanaryRolledBack,
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
    /// and the last [`HISTORY_LEN`] rejected deploys, newest first.
    pub fn history(&self) -> Vec<RegistryEvent> {
        self.history.lock().expect("history lock").newest_first()
    }

    /// Adds an event to the history, dropping the oldest of its list past [`HISTORY_LEN`].
    pub(super) fn record(
        &self,
        kind: RegistryEventKind,
        tenant: Option<&str>,
        hash: Option<&str>,
        reason: Option<String>,
    ) {
        self.history.lock().expect("history lock").push(RegistryEvent {
            at: chrono::Utc::now(),
            kind,
            tenant: tenant.map(str::to_string),
            content_hash: hash.map(|h| h.chars().take(12).collect()),
            reason,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: RegistryEventKind) -> RegistryEvent {
        RegistryEvent {
            at: chrono::Utc::now(),
            kind,
            tenant: Some("acme".into()),
            content_hash: None,
            reason: None,
        }
    }

    #[test]
    fn rejected_deploys_push_out_only_rejected_deploys() {
        let mut history = History::default();
        history.push(event(RegistryEventKind::ReloadOk));
        history.push(event(RegistryEventKind::Deployed));
        for _ in 0..HISTORY_LEN + 10 {
            history.push(event(RegistryEventKind::DeployRejected));
        }
        let events = history.newest_first();
        assert_eq!(events.len(), HISTORY_LEN + 2);
        let kinds: Vec<RegistryEventKind> = events.iter().map(|e| e.kind).collect();
        assert!(kinds.contains(&RegistryEventKind::ReloadOk), "{kinds:?}");
        assert!(kinds.contains(&RegistryEventKind::Deployed), "{kinds:?}");
        assert!(events.windows(2).all(|pair| pair[0].at >= pair[1].at), "newest first");
    }

    #[test]
    fn each_list_keeps_its_newest() {
        let mut history = History::default();
        for _ in 0..HISTORY_LEN + 5 {
            history.push(event(RegistryEventKind::ReloadOk));
        }
        history.push(event(RegistryEventKind::RolledBack));
        let events = history.newest_first();
        assert_eq!(events.len(), HISTORY_LEN);
        assert_eq!(events[0].kind, RegistryEventKind::RolledBack);
    }
}
