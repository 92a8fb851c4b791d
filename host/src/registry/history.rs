//! The registry's recent events (reloads, adapter loads and rejections, deploys, rollbacks,
//! canaries), for the status page.
//!
//! A partner can cause its tenant's events as fast as it likes (deploys accepted or rejected,
//! canaries started and aborted): each tenant's events are kept in lists of their own, so
//! however many there are they push out no other tenant's events and none of the bridge's own
//! (reloads); rejected deploys apart again, so they push out none of the tenant's operations.

use std::collections::{HashMap, VecDeque};

use super::AdapterRegistry;
use crate::clock::rfc3339;

/// How many of the bridge's own events (reloads) [`AdapterRegistry::history`] keeps.
pub const HISTORY_LEN: usize = 50;

/// How many events of each tenant it keeps: this many rejected deploys, and this many of every
/// other kind.
pub const TENANT_HISTORY_LEN: usize = 20;

/// The bounded lists of [`RegistryEvent`]s, each oldest first.
#[derive(Debug, Default)]
pub(super) struct History {
    /// Events of no tenant.
    bridge: VecDeque<RegistryEvent>,
    tenants: HashMap<String, TenantHistory>,
}

#[derive(Debug, Default)]
struct TenantHistory {
    /// Everything but rejected deploys.
    operations: VecDeque<RegistryEvent>,
    rejected_deploys: VecDeque<RegistryEvent>,
}

impl History {
    /// Adds `event` to its list, dropping that list's oldest past its bound.
    fn push(&mut self, event: RegistryEvent) {
        let (list, bound) = match &event.tenant {
            None => (&mut self.bridge, HISTORY_LEN),
            Some(tenant) => {
                let lists = self.tenants.entry(tenant.clone()).or_default();
                match event.kind {
                    RegistryEventKind::DeployRejected => (&mut lists.rejected_deploys, TENANT_HISTORY_LEN),
                    _ => (&mut lists.operations, TENANT_HISTORY_LEN),
                }
            }
        };
        if list.len() == bound {
            list.pop_front();
        }
        list.push_back(event);
    }

    /// Every list merged, newest first.
    fn newest_first(&self) -> Vec<RegistryEvent> {
        let tenants = self
            .tenants
            .values()
            .flat_map(|t| t.operations.iter().chain(&t.rejected_deploys));
        let mut events: Vec<RegistryEvent> = self.bridge.iter().chain(tenants).cloned().collect();
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
    /// The last [`HISTORY_LEN`] reloads and, per tenant, its last [`TENANT_HISTORY_LEN`] adapter
    /// loads and rejections, deploys, rollbacks and canaries and its last
    /// [`TENANT_HISTORY_LEN`] rejected deploys, newest first.
    pub fn history(&self) -> Vec<RegistryEvent> {
        self.history.lock().expect("history lock").newest_first()
    }

    /// Adds an event to the history, dropping the oldest of its list past its bound.
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

    fn event(tenant: Option<&str>, kind: RegistryEventKind) -> RegistryEvent {
        RegistryEvent {
            at: chrono::Utc::now(),
            kind,
            tenant: tenant.map(str::to_string),
            content_hash: None,
            reason: None,
        }
    }

    #[test]
    fn a_tenants_flood_pushes_out_only_that_tenants_events_of_the_same_list() {
        let mut history = History::default();
        history.push(event(None, RegistryEventKind::ReloadOk));
        history.push(event(Some("beta"), RegistryEventKind::Deployed));
        history.push(event(Some("acme"), RegistryEventKind::RolledBack));
        for _ in 0..TENANT_HISTORY_LEN + 10 {
            history.push(event(Some("acme"), RegistryEventKind::DeployRejected));
            history.push(event(Some("acme"), RegistryEventKind::CanaryStarted));
            history.push(event(Some("acme"), RegistryEventKind::CanaryAborted));
        }
        let events = history.newest_first();
        assert_eq!(events.len(), 2 + 2 * TENANT_HISTORY_LEN);
        let kept = |tenant: Option<&str>, kind| events.iter().any(|e| e.tenant.as_deref() == tenant && e.kind == kind);
        assert!(kept(None, RegistryEventKind::ReloadOk), "the bridge's reload stays");
        assert!(
            kept(Some("beta"), RegistryEventKind::Deployed),
            "another tenant's deploy stays"
        );
        assert!(
            !kept(Some("acme"), RegistryEventKind::RolledBack),
            "pushed out by acme's own canaries"
        );
        assert!(events.windows(2).all(|pair| pair[0].at >= pair[1].at), "newest first");
    }

    #[test]
    fn each_list_keeps_its_newest() {
        let mut history = History::default();
        for _ in 0..HISTORY_LEN + 5 {
            history.push(event(None, RegistryEventKind::ReloadOk));
        }
        history.push(event(None, RegistryEventKind::ReloadRejected));
        let events = history.newest_first();
        assert_eq!(events.len(), HISTORY_LEN);
        assert_eq!(events[0].kind, RegistryEventKind::ReloadRejected);
    }
}
