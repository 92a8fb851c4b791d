//! Canary deployments: a version deployed with a percent ([`AdapterRegistry::deploy`]) serves
//! that share of the tenant's tickets beside the active version (chosen per ticket by
//! [`crate::tenants::canary_bucket`]), each with call counts of its own. The canary ends by hand
//! (promote, abort) or on its own: every `[deployments.canary] check_interval_ms` both sides'
//! figures since it started (every replica's, summed in the shared store) are judged by the
//! [`CanaryPolicy`]; one that fails more than the active version is rolled back, recorded in
//! the history with its figures. An event the canary failed is not dead-lettered but retried
//! (`outbox`), in its ticket's order: once the canary is rolled back, the active version
//! delivers it. Ending a
//! canary is a change of the (shared) versions list that names the canary it ends, so however
//! many replicas decide at once, one decision is taken.

use std::sync::Arc;

use super::canary_policy::{CanaryPolicy, Verdict};
use super::deploy::mirror;
use super::{AdapterRegistry, DeployError, RegistryEventKind};
use crate::runtime::AdapterStats;
use crate::store::{
    ArmFigures, CanaryEnd, CanaryFigures, CanaryOutcome, DeploymentChange, NotTheCanary, TenantVersions,
};
use crate::tenants::Tenant;

/// A running canary's call counts on both sides when it started on this replica.
pub(super) struct Baseline {
    content_hash: String,
    current_hash: String,
    current: ArmFigures,
    canary: ArmFigures,
}

/// A tenant's running canary as `/admin` and the status page show it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    pub tenant: String,
    /// The canary's content hash.
    pub content_hash: String,
    /// The active version's content hash.
    pub current_hash: String,
    pub percent: u8,
    /// Calls since the canary started: every replica's as of the last check on a shared store,
    /// this replica's otherwise.
    pub current: ArmStatus,
    pub canary: ArmStatus,
    /// What the policy says of these figures now.
    pub verdict: String,
}

/// One side's calls, errors and latency while the canary runs.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArmStatus {
    pub calls: u64,
    pub failures: u64,
    /// In percent.
    pub failure_rate: f64,
    pub mean_latency_ms: Option<f64>,
}

impl From<ArmFigures> for ArmStatus {
    fn from(figures: ArmFigures) -> ArmStatus {
        ArmStatus {
            calls: figures.calls,
            failures: figures.failures,
            failure_rate: 100.0 * figures.failure_rate(),
            mean_latency_ms: figures.mean_latency_ms(),
        }
    }
}

/// The history entry of a canary's end.
pub(super) fn event_kind(end: CanaryEnd) -> RegistryEventKind {
    match end {
        CanaryEnd::Promoted => RegistryEventKind::CanaryPromoted,
        CanaryEnd::Aborted => RegistryEventKind::CanaryAborted,
        CanaryEnd::RolledBack => RegistryEventKind::CanaryRolledBack,
    }
}

/// `stats` as figures (a fault or the adapter's own error counts as a failure).
fn figures_of(stats: &AdapterStats) -> ArmFigures {
    use std::sync::atomic::Ordering::Relaxed;
    ArmFigures {
        calls: stats.calls.load(Relaxed),
        failures: stats.errors.load(Relaxed) + stats.adapter_errors.load(Relaxed),
        latency_micros: stats.latency_micros.load(Relaxed),
    }
}

fn since(now: ArmFigures, then: ArmFigures) -> ArmFigures {
    ArmFigures {
        calls: now.calls.saturating_sub(then.calls),
        failures: now.failures.saturating_sub(then.failures),
        latency_micros: now.latency_micros.saturating_sub(then.latency_micros),
    }
}

impl AdapterRegistry {
    /// Notes both sides' call counts when `built` starts a canary here (a new canary, or a new
    /// active version beside it), so its figures count from then; forgets them when it has none.
    pub(super) fn start_canary_count(&self, built: &Tenant) {
        let mut baselines = self.canary_baselines.lock().expect("canary baselines lock");
        let Some(arm) = &built.canary else {
            baselines.remove(&built.name);
            return;
        };
        let same = baselines.get(&built.name).is_some_and(|b| {
            b.content_hash == arm.adapter.content_hash && b.current_hash == built.adapter.content_hash
        });
        if !same {
            baselines.insert(
                built.name.clone(),
                Baseline {
                    content_hash: arm.adapter.content_hash.clone(),
                    current_hash: built.adapter.content_hash.clone(),
                    current: figures_of(&built.host.stats),
                    canary: figures_of(&arm.host.stats),
                },
            );
        }
    }

    /// `tenant`'s running canary (its content hash) and both sides' figures on this replica
    /// since it started here.
    fn local_figures(&self, tenant: &Tenant) -> Option<(String, CanaryFigures)> {
        let arm = tenant.canary.as_ref()?;
        let baselines = self.canary_baselines.lock().expect("canary baselines lock");
        let baseline = baselines
            .get(&tenant.name)
            .filter(|b| b.content_hash == arm.adapter.content_hash)?;
        let figures = CanaryFigures {
            current: since(figures_of(&tenant.host.stats), baseline.current),
            canary: since(figures_of(&arm.host.stats), baseline.canary),
        };
        Some((arm.adapter.content_hash.clone(), figures))
    }

    /// `tenant`'s running canary with both sides' figures; `None` when none runs.
    pub fn canary_status(&self, tenant: &str) -> Option<CanaryStatus> {
        let snapshot = self.snapshot();
        let running = snapshot.by_name(tenant)?;
        let arm = running.canary.as_ref()?;
        let (hash, local) = self.local_figures(running)?;
        let summed = match self.shared() {
            Some(_) => self
                .canary_figures
                .lock()
                .expect("canary figures lock")
                .get(tenant)
                .filter(|(checked, _)| *checked == hash)
                .map(|(_, figures)| *figures),
            None => None,
        };
        let figures = summed.unwrap_or(local);
        let verdict = match CanaryPolicy::from(&self.config().deployments.canary).judge(&figures) {
            Verdict::Wait => "waiting for enough canary calls".to_string(),
            Verdict::Keep => "within the margin".to_string(),
            Verdict::RollBack(reason) => format!("to be rolled back: {reason}"),
            Verdict::Promote(reason) => format!("to be promoted: {reason}"),
        };
        Some(CanaryStatus {
            tenant: tenant.to_string(),
            content_hash: hash,
            current_hash: running.adapter.content_hash.clone(),
            percent: arm.percent,
            current: figures.current.into(),
            canary: figures.canary.into(),
            verdict,
        })
    }

    /// `tenant`'s versions as every replica sees them: the shared list when the store shares
    /// one for it, else this replica's.
    async fn current_versions(&self, tenant: &str) -> Result<TenantVersions, DeployError> {
        let shared = match self.shared() {
            Some(shared) => shared.shared_versions(tenant).await.map_err(DeployError::Storage)?,
            None => None,
        };
        match shared {
            Some(listed) => Ok(listed),
            None => self.deployments.versions(tenant).map_err(DeployError::Storage),
        }
    }

    /// How `tenant`'s last canary ended, from the shared list on a shared store.
    pub async fn last_canary(self: &Arc<Self>, tenant: &str) -> Result<Option<CanaryOutcome>, DeployError> {
        Ok(self.current_versions(tenant).await?.last_canary)
    }

    /// Makes `tenant`'s canary its active version, for every ticket.
    pub async fn promote_canary(self: &Arc<Self>, tenant: &str) -> Result<CanaryOutcome, DeployError> {
        self.end_canary(tenant, None, CanaryEnd::Promoted, "promoted by hand".to_string())
            .await
    }

    /// Stops `tenant`'s canary: the active version serves every ticket again.
    pub async fn abort_canary(self: &Arc<Self>, tenant: &str) -> Result<CanaryOutcome, DeployError> {
        self.end_canary(tenant, None, CanaryEnd::Aborted, "aborted by hand".to_string())
            .await
    }

    /// Judges every running canary on its figures since it started (every replica's on a shared
    /// store, where `replica`'s are reported first) and ends those the policy rolls back or
    /// promotes. A canary another replica ended meanwhile is left alone.
    pub async fn check_canaries(self: &Arc<Self>, replica: &str) -> anyhow::Result<()> {
        let policy = CanaryPolicy::from(&self.config().deployments.canary);
        let snapshot = self.snapshot();
        for tenant in snapshot.all() {
            let Some((hash, local)) = self.local_figures(tenant) else {
                continue;
            };
            let figures = match self.shared() {
                Some(shared) => {
                    shared
                        .report_canary_figures(&tenant.name, &hash, replica, local)
                        .await?
                }
                None => local,
            };
            self.canary_figures
                .lock()
                .expect("canary figures lock")
                .insert(tenant.name.clone(), (hash.clone(), figures));
            let (end, reason) = match policy.judge(&figures) {
                Verdict::RollBack(reason) => (CanaryEnd::RolledBack, reason),
                Verdict::Promote(reason) => (CanaryEnd::Promoted, reason),
                Verdict::Wait | Verdict::Keep => continue,
            };
            match self.end_canary(&tenant.name, Some(&hash), end, reason).await {
                Ok(_) | Err(DeployError::NoCanary) => {}
                Err(e) => tracing::warn!(tenant = %tenant.name, error = %e, "cannot end the canary; trying again"),
            }
        }
        Ok(())
    }

    /// Ends `tenant`'s canary (`expected`: only if it is still that version) as `end` says,
    /// through the same swap as a deploy.
    async fn end_canary(
        self: &Arc<Self>,
        tenant: &str,
        expected: Option<&str>,
        end: CanaryEnd,
        reason: String,
    ) -> Result<CanaryOutcome, DeployError> {
        let _one_at_a_time = self.reloading.lock().await;
        let config = self.config.load_full();
        let canary = self
            .current_versions(tenant)
            .await?
            .canary
            .filter(|c| expected.is_none_or(|e| e == c.content_hash))
            .ok_or(DeployError::NoCanary)?;
        let outcome = CanaryOutcome {
            content_hash: canary.content_hash.clone(),
            end,
            reason,
            at: chrono::Utc::now(),
        };
        let shared_list = match self.shared() {
            Some(shared) => {
                let change = DeploymentChange::CanaryEnded(outcome.clone());
                match shared.change_deployment(tenant, self.deployments.keep(), change).await {
                    Ok(list) => Some(list),
                    Err(e) if e.downcast_ref::<NotTheCanary>().is_some() => return Err(DeployError::NoCanary),
                    Err(e) => return Err(DeployError::Storage(e)),
                }
            }
            None => None,
        };
        let this = self.clone();
        let (name, applied) = (tenant.to_string(), outcome.clone());
        tokio::task::spawn_blocking(move || -> Result<(), DeployError> {
            let versions = this.deployments.versions(&name).map_err(DeployError::Storage)?;
            let ended = this.commit(&name, &config, versions, |v: &mut TenantVersions| match shared_list {
                Some(list) => {
                    mirror(v, list);
                    Ok(())
                }
                None => v.canary_ended(applied),
            })?;
            ended.map_err(|_| DeployError::NoCanary)
        })
        .await
        .map_err(|e| DeployError::Storage(anyhow::Error::from(e).context("the canary task failed")))??;
        self.record(
            event_kind(end),
            Some(tenant),
            Some(&outcome.content_hash),
            Some(outcome.reason.clone()),
        );
        tracing::info!(tenant, hash = %&outcome.content_hash[..12], end = ?end, reason = %outcome.reason, "canary ended");
        Ok(outcome)
    }
}
