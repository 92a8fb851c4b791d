//! Deployed adapter versions as the store keeps them: the list per tenant ([`TenantVersions`])
//! and, for a store several replicas share, the [`SharedDeployments`] they all read and change.
//! The rules of deploying and rolling back are the deployments module's; these are its records.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One deployed version as `versions.json` keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredVersion {
    /// Hex SHA-256 of the component.
    pub content_hash: String,
    pub size_bytes: u64,
    /// When it was (last) deployed.
    #[serde(with = "crate::clock::rfc3339")]
    pub deployed_at: DateTime<Utc>,
    /// The seal of `[deployments] signing_key` on the tenant and the hash, in hex (`None`:
    /// deployed without a key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

/// Whether `hash` has the form of a content hash: 64 lowercase hex digits (a hex SHA-256). Only
/// such a hash may name a file or key a compiled copy; anything else read from a shared store is
/// refused.
pub fn is_content_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A tenant's deployed versions: newest first, and which one is active (`None`: the tenant runs
/// its configured file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantVersions {
    pub versions: Vec<StoredVersion>,
    pub active: Option<String>,
}

/// What a rollback goes back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackTarget {
    /// A kept deployed version, by content hash.
    Deployed(String),
    /// The tenant's configured adapter file.
    File,
}

impl TenantVersions {
    /// The active deployed version.
    pub fn active_version(&self) -> Option<&StoredVersion> {
        let active = self.active.as_deref()?;
        self.versions.iter().find(|v| v.content_hash == active)
    }

    /// The first hash in the list (a kept version's or the active one) that is not of the form
    /// of a content hash ([`is_content_hash`]); `None` when every one is.
    pub fn malformed_hash(&self) -> Option<&str> {
        self.versions
            .iter()
            .map(|v| v.content_hash.as_str())
            .chain(self.active.as_deref())
            .find(|hash| !is_content_hash(hash))
    }

    /// Puts `version` first and makes it active, then keeps the newest `keep` versions (the
    /// active one always). Returns the content hashes no longer kept.
    pub fn deployed(&mut self, version: StoredVersion, keep: usize) -> Vec<String> {
        self.versions.retain(|v| v.content_hash != version.content_hash);
        self.active = Some(version.content_hash.clone());
        self.versions.insert(0, version);
        let keep = keep.max(1);
        let mut dropped = Vec::new();
        while self.versions.len() > keep {
            // The active version is first, so the last one is never it.
            let last = self.versions.pop().expect("more than one version");
            dropped.push(last.content_hash);
        }
        dropped
    }

    /// Where a rollback from the active version goes: the version deployed before it, or the
    /// file from the oldest kept one; `None` when the tenant already runs its file.
    pub fn rollback_target(&self) -> Option<RollbackTarget> {
        let active = self.active.as_deref()?;
        let position = self.versions.iter().position(|v| v.content_hash == active);
        match position.and_then(|p| self.versions.get(p + 1)) {
            Some(older) => Some(RollbackTarget::Deployed(older.content_hash.clone())),
            None => Some(RollbackTarget::File),
        }
    }

    /// Makes `target` active (the deployed versions stay kept).
    pub fn activate(&mut self, target: &RollbackTarget) {
        self.active = match target {
            RollbackTarget::Deployed(hash) => Some(hash.clone()),
            RollbackTarget::File => None,
        };
    }
}

/// A change to a tenant's shared versions.
#[derive(Debug, Clone)]
pub enum DeploymentChange {
    /// `version` (whose bytes are `component`) deployed: first in the list and active; the
    /// newest `keep` versions are kept.
    Deployed { version: StoredVersion, component: Vec<u8> },
    /// A kept version (or the configured file) made active, as a rollback does.
    Activated(RollbackTarget),
}

/// Deployed versions kept in a store several replicas share.
#[async_trait::async_trait]
pub trait SharedDeployments: Send + Sync {
    /// A counter that grows with every committed change of any tenant's versions (0: none yet).
    async fn deployment_generation(&self) -> anyhow::Result<i64>;
    /// `tenant`'s shared versions, newest first; `None` when no replica has deployed to it.
    async fn shared_versions(&self, tenant: &str) -> anyhow::Result<Option<TenantVersions>>;
    /// The component of `tenant`'s kept version `content_hash`, if it is kept.
    async fn shared_component(&self, tenant: &str, content_hash: &str) -> anyhow::Result<Option<Vec<u8>>>;
    /// Applies `change` to `tenant`'s versions in one transaction (the component, the list, the
    /// active version and the counter; the components of versions no longer kept deleted), and
    /// returns the new list. Changes of any tenant are applied one at a time. Activating a
    /// version that is not kept is an error that changes nothing.
    async fn change_deployment(
        &self,
        tenant: &str,
        keep: usize,
        change: DeploymentChange,
    ) -> anyhow::Result<TenantVersions>;
}
