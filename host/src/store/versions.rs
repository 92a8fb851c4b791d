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

/// A tenant's deployed versions: newest first, which one is active (`None`: the tenant runs
/// its configured file) and which one, if any, serves a share of its tickets as a canary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantVersions {
    pub versions: Vec<StoredVersion>,
    pub active: Option<String>,
    /// The version serving `percent` of the tickets beside the active one (a kept version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryVersion>,
    /// How the last canary ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_canary: Option<CanaryOutcome>,
}

/// A kept version that serves a share of a tenant's tickets beside the active version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryVersion {
    pub content_hash: String,
    /// The share of the tenant's tickets it serves, 1 to 99.
    pub percent: u8,
    #[serde(with = "crate::clock::rfc3339")]
    pub started_at: DateTime<Utc>,
}

/// How a canary ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CanaryEnd {
    /// Made the active version (by hand or after enough calls as good as the active one's).
    Promoted,
    /// Stopped by hand; the active version serves every ticket again.
    Aborted,
    /// Stopped because it failed more than the active version.
    RolledBack,
}

/// The end of a tenant's last canary, with the figures it was decided on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryOutcome {
    pub content_hash: String,
    pub end: CanaryEnd,
    /// Why, with the figures (no secrets).
    pub reason: String,
    #[serde(with = "crate::clock::rfc3339")]
    pub at: DateTime<Utc>,
}

/// Why a canary could not be ended: it is not (or no longer) the tenant's canary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{content_hash:.12} is not the tenant's canary (it ended, or another replaced it)")]
pub struct NotTheCanary {
    pub content_hash: String,
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

    /// The canary's kept version.
    pub fn canary_version(&self) -> Option<&StoredVersion> {
        let canary = self.canary.as_ref()?;
        self.versions.iter().find(|v| v.content_hash == canary.content_hash)
    }

    /// The first hash in the list (a kept version's or the active one) that is not of the form
    /// of a content hash ([`is_content_hash`]); `None` when every one is.
    pub fn malformed_hash(&self) -> Option<&str> {
        self.versions
            .iter()
            .map(|v| v.content_hash.as_str())
            .chain(self.active.as_deref())
            .chain(self.canary.as_ref().map(|c| c.content_hash.as_str()))
            .find(|hash| !is_content_hash(hash))
    }

    /// Puts `version` first and makes it active (ending any canary), then keeps the newest
    /// `keep` versions (the active one always). Returns the content hashes no longer kept.
    pub fn deployed(&mut self, version: StoredVersion, keep: usize) -> Vec<String> {
        self.versions.retain(|v| v.content_hash != version.content_hash);
        self.active = Some(version.content_hash.clone());
        self.canary = None;
        self.versions.insert(0, version);
        self.trim(keep)
    }

    /// Puts `version` first as the canary serving `percent` of the tickets (replacing any
    /// canary; the active version stays), then keeps the newest `keep` versions (the active one
    /// and the canary always). Returns the content hashes no longer kept.
    pub fn canary_started(&mut self, version: StoredVersion, percent: u8, keep: usize) -> Vec<String> {
        self.versions.retain(|v| v.content_hash != version.content_hash);
        self.canary = Some(CanaryVersion {
            content_hash: version.content_hash.clone(),
            percent,
            started_at: version.deployed_at,
        });
        self.versions.insert(0, version);
        self.trim(keep)
    }

    /// Ends the canary `outcome` names as it says (promoted: it becomes the active version) and
    /// remembers the outcome. Refused when the canary is another version or there is none: a
    /// decision is only ever taken on the canary it was made for.
    pub fn canary_ended(&mut self, outcome: CanaryOutcome) -> Result<(), NotTheCanary> {
        match &self.canary {
            Some(canary) if canary.content_hash == outcome.content_hash => {}
            _ => {
                return Err(NotTheCanary {
                    content_hash: outcome.content_hash,
                });
            }
        }
        if outcome.end == CanaryEnd::Promoted {
            self.active = Some(outcome.content_hash.clone());
        }
        self.canary = None;
        self.last_canary = Some(outcome);
        Ok(())
    }

    /// Drops the oldest versions past `keep` (at least the active one and the canary are kept).
    fn trim(&mut self, keep: usize) -> Vec<String> {
        let keep = keep.max(1 + usize::from(self.canary.is_some()));
        let mut dropped = Vec::new();
        while self.versions.len() > keep {
            let protected = |hash: &str| {
                self.active.as_deref() == Some(hash) || self.canary.as_ref().is_some_and(|c| c.content_hash == hash)
            };
            let Some(oldest) = self.versions.iter().rposition(|v| !protected(&v.content_hash)) else {
                break;
            };
            dropped.push(self.versions.remove(oldest).content_hash);
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

    /// Makes `target` active (the deployed versions stay kept), ending any canary.
    pub fn activate(&mut self, target: &RollbackTarget) {
        self.canary = None;
        self.active = match target {
            RollbackTarget::Deployed(hash) => Some(hash.clone()),
            RollbackTarget::File => None,
        };
    }
}

/// A change to a tenant's shared versions.
#[derive(Debug, Clone)]
pub enum DeploymentChange {
    /// `version` (whose bytes are `component`) deployed: first in the list and active, or with
    /// `canary`, the canary serving that percent of the tickets; the newest `keep` versions are
    /// kept.
    Deployed {
        version: StoredVersion,
        component: Vec<u8>,
        canary: Option<u8>,
    },
    /// A kept version (or the configured file) made active, as a rollback does.
    Activated(RollbackTarget),
    /// The canary ended (promoted, aborted or rolled back).
    CanaryEnded(CanaryOutcome),
}

impl DeploymentChange {
    /// Applies this change to `versions`, keeping `keep`; returns the content hashes no longer
    /// kept. Activating a version that is not kept, or ending a canary that is not the
    /// tenant's, is an error that changes nothing.
    pub fn apply_to(&self, versions: &mut TenantVersions, keep: usize) -> anyhow::Result<Vec<String>> {
        match self {
            DeploymentChange::Deployed { version, canary, .. } => Ok(match canary {
                Some(percent) => versions.canary_started(version.clone(), *percent, keep),
                None => versions.deployed(version.clone(), keep),
            }),
            DeploymentChange::Activated(target) => {
                if let RollbackTarget::Deployed(hash) = target
                    && !versions.versions.iter().any(|v| &v.content_hash == hash)
                {
                    anyhow::bail!("version {hash} is no longer kept");
                }
                versions.activate(target);
                Ok(Vec::new())
            }
            DeploymentChange::CanaryEnded(outcome) => {
                versions.canary_ended(outcome.clone())?;
                Ok(Vec::new())
            }
        }
    }
}

/// One side of a canary's calls while it runs: the active version's or the canary's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArmFigures {
    pub calls: u64,
    /// Calls that failed: a fault (trap, limit, timeout) or the adapter's own error.
    pub failures: u64,
    /// The calls' time, summed, in microseconds.
    pub latency_micros: u64,
}

impl ArmFigures {
    /// The share of calls that failed (0 without calls).
    pub fn failure_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.failures as f64 / self.calls as f64
        }
    }

    /// The mean call time in milliseconds (`None` without calls).
    pub fn mean_latency_ms(&self) -> Option<f64> {
        (self.calls > 0).then(|| self.latency_micros as f64 / self.calls as f64 / 1000.0)
    }
}

impl std::ops::Add for ArmFigures {
    type Output = ArmFigures;

    fn add(self, other: ArmFigures) -> ArmFigures {
        ArmFigures {
            calls: self.calls + other.calls,
            failures: self.failures + other.failures,
            latency_micros: self.latency_micros + other.latency_micros,
        }
    }
}

/// A running canary's calls on both sides, counted since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryFigures {
    /// The active version's calls.
    pub current: ArmFigures,
    pub canary: ArmFigures,
}

/// Both sides' figures added up (several replicas' into one).
impl std::ops::Add for CanaryFigures {
    type Output = CanaryFigures;

    fn add(self, other: CanaryFigures) -> CanaryFigures {
        CanaryFigures {
            current: self.current + other.current,
            canary: self.canary + other.canary,
        }
    }
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
    /// Records `figures`, `replica`'s own count of `tenant`'s canary `content_hash` (replacing
    /// what it recorded before), and returns the sum of every replica's: the figures the one
    /// decision on the canary is taken on.
    async fn report_canary_figures(
        &self,
        tenant: &str,
        content_hash: &str,
        replica: &str,
        figures: CanaryFigures,
    ) -> anyhow::Result<CanaryFigures>;
}

/// A version of one byte, deployed now, unsealed: the fixture of tests on version lists.
#[cfg(test)]
pub(crate) fn test_version(hash: &str) -> StoredVersion {
    StoredVersion {
        content_hash: hash.into(),
        size_bytes: 1,
        deployed_at: Utc::now(),
        seal: None,
    }
}

#[cfg(test)]
mod tests {
    use super::test_version as version;
    use super::*;

    fn hashes(versions: &TenantVersions) -> Vec<&str> {
        versions.versions.iter().map(|v| v.content_hash.as_str()).collect()
    }

    #[test]
    fn keeps_the_newest_n_and_drops_the_oldest() {
        let mut versions = TenantVersions::default();
        let mut dropped = Vec::new();
        for hash in ["a", "b", "c", "d"] {
            dropped.extend(versions.deployed(version(hash), 3));
        }
        assert_eq!(hashes(&versions), ["d", "c", "b"]);
        assert_eq!(versions.active.as_deref(), Some("d"));
        assert_eq!(dropped, ["a"]);
    }

    #[test]
    fn redeploying_a_kept_version_moves_it_first_without_a_duplicate() {
        let mut versions = TenantVersions::default();
        for hash in ["a", "b", "a"] {
            versions.deployed(version(hash), 5);
        }
        assert_eq!(hashes(&versions), ["a", "b"]);
        assert_eq!(versions.active.as_deref(), Some("a"));
    }

    #[test]
    fn rollback_goes_one_version_back_then_to_the_file_then_nowhere() {
        let mut versions = TenantVersions::default();
        for hash in ["a", "b", "c"] {
            versions.deployed(version(hash), 5);
        }
        let mut steps = Vec::new();
        while let Some(target) = versions.rollback_target() {
            versions.activate(&target);
            steps.push(target);
        }
        assert_eq!(
            steps,
            [
                RollbackTarget::Deployed("b".into()),
                RollbackTarget::Deployed("a".into()),
                RollbackTarget::File
            ]
        );
        assert_eq!(versions.active, None);
        assert_eq!(hashes(&versions), ["c", "b", "a"], "rolling back deletes nothing");
    }

    #[test]
    fn a_deploy_after_a_rollback_becomes_newest_and_active_version_is_never_dropped() {
        let mut versions = TenantVersions::default();
        for hash in ["a", "b"] {
            versions.deployed(version(hash), 2);
        }
        versions.activate(&versions.rollback_target().unwrap());
        assert_eq!(versions.active.as_deref(), Some("a"));
        let dropped = versions.deployed(version("c"), 2);
        assert_eq!(hashes(&versions), ["c", "b"]);
        assert_eq!(dropped, ["a"]);
        assert_eq!(versions.active.as_deref(), Some("c"));
    }

    #[test]
    fn a_canary_is_kept_beside_the_active_version_and_trimming_spares_both() {
        let mut versions = TenantVersions::default();
        versions.deployed(version("a"), 2);
        versions.deployed(version("b"), 2);
        let dropped = versions.canary_started(version("c"), 10, 2);
        assert_eq!(hashes(&versions), ["c", "b"], "keep 2: the canary and the active one");
        assert_eq!(dropped, ["a"]);
        assert_eq!(versions.active.as_deref(), Some("b"));
        // With keep 1 both stay all the same.
        let dropped = versions.canary_started(version("d"), 20, 1);
        assert_eq!(hashes(&versions), ["d", "b"]);
        assert_eq!(dropped, ["c"]);
        assert_eq!(
            versions.canary.as_ref().map(|c| (c.content_hash.as_str(), c.percent)),
            Some(("d", 20))
        );
        // A plain deploy ends the canary.
        versions.deployed(version("e"), 5);
        assert_eq!(versions.canary, None);
    }

    #[test]
    fn ending_a_canary_needs_that_canary_and_promoting_makes_it_active() {
        let mut versions = TenantVersions::default();
        versions.deployed(version("a"), 5);
        versions.canary_started(version("b"), 10, 5);
        let outcome = |hash: &str, end| CanaryOutcome {
            content_hash: hash.into(),
            end,
            reason: "figures".into(),
            at: Utc::now(),
        };
        let before = versions.clone();
        assert!(versions.canary_ended(outcome("a", CanaryEnd::Promoted)).is_err());
        assert_eq!(versions, before, "a refused decision changes nothing");
        versions.canary_ended(outcome("b", CanaryEnd::Promoted)).unwrap();
        assert_eq!((versions.active.as_deref(), &versions.canary), (Some("b"), &None));
        assert_eq!(versions.last_canary.as_ref().map(|o| o.end), Some(CanaryEnd::Promoted));
        assert!(
            versions.canary_ended(outcome("b", CanaryEnd::RolledBack)).is_err(),
            "decided once"
        );

        versions.canary_started(version("c"), 10, 5);
        versions.canary_ended(outcome("c", CanaryEnd::RolledBack)).unwrap();
        assert_eq!(
            versions.active.as_deref(),
            Some("b"),
            "a rolled back canary leaves the active version"
        );
        // A rollback ends a canary as well.
        versions.canary_started(version("d"), 10, 5);
        versions.activate(&RollbackTarget::File);
        assert_eq!((versions.active.as_deref(), &versions.canary), (None, &None));
    }

    #[test]
    fn a_versions_file_without_canary_fields_still_reads() {
        let text = r#"{"versions":[],"active":null}"#;
        let versions: TenantVersions = serde_json::from_str(text).unwrap();
        assert_eq!(versions, TenantVersions::default());
    }
}
