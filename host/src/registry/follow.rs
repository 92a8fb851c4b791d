//! Replicas of a shared store following each other: the active version and the canary the
//! shared store names are fetched, checked, validated and swapped in as a deploy does.

use std::collections::HashSet;
use std::sync::Arc;

use super::deploy::mirror;
use super::{AdapterRegistry, AdapterSource, DeployError, RegistryEventKind};
use crate::config::TenantConfig;
use crate::deployments::seal::DeploymentSeal;
use crate::deployments::shared::{Refused, cache_component, check_bytes, check_list, short};
use crate::runtime::LoadedAdapter;
use crate::store::{SharedDeployments, TenantVersions, is_content_hash};
use crate::tenants::Tenant;

impl AdapterRegistry {
    /// Brings every configured tenant to the versions the shared store names (the active one
    /// and the canary): fetches each into the local cache and validates and swaps it in as a
    /// deploy does; a tenant already there only has its local list brought up to date. A
    /// version that fails to validate is logged, recorded and added to `rejected`, and not
    /// tried again while the shared store names it (a rejected canary leaves the tenant on its
    /// current version alone here). An error (the store unreachable) leaves the rest for the
    /// next call. As in a deploy, compiling and the fixtures run outside the registry's lock.
    pub async fn follow_shared(self: &Arc<Self>, rejected: &mut HashSet<(String, String)>) -> anyhow::Result<()> {
        let Some(shared) = self.shared() else {
            return Ok(());
        };
        let config = self.config.load_full();
        let seal = DeploymentSeal::configured(&config.deployments);
        for tenant in &config.tenants {
            let name = tenant.name.as_str();
            let Some(list) = shared.shared_versions(name).await? else {
                continue;
            };
            let wanted = list.active.clone().unwrap_or_default();
            let wanted_canary = list.canary.as_ref().map(|c| c.content_hash.clone());
            rejected.retain(|(t, hash)| t != name || *hash == wanted || Some(hash) == wanted_canary.as_ref());
            if let Err(refused) = check_list(name, &list, seal.as_ref()) {
                if !rejected.contains(&(name.to_string(), wanted.clone())) {
                    self.refuse_shared(name, &wanted, &refused, rejected);
                }
                continue;
            }
            let snapshot = self.snapshot();
            let running = snapshot.by_name(name);
            let canary_rejected = wanted_canary
                .as_ref()
                .is_some_and(|hash| rejected.contains(&(name.to_string(), hash.clone())));
            let serves_active = running.is_some_and(|running| self.serves_active(running, &list));
            let serves_canary = canary_rejected || running.is_some_and(|running| serves_canary(running, &list));
            if serves_active && serves_canary {
                let _one_at_a_time = self.reloading.lock().await;
                let local = self.deployments.versions(name)?;
                if local != list {
                    self.record_canary_end(name, &local, &list);
                    self.deployments.write_versions(name, &list)?;
                }
                continue;
            }
            if rejected.contains(&(name.to_string(), wanted.clone())) {
                continue;
            }
            let mut validated = Vec::new();
            if !serves_active && let Some(hash) = &list.active {
                match self.prepare_shared(shared, tenant, hash, &wanted, rejected).await? {
                    Some(adapter) => validated.push(adapter),
                    None => continue,
                }
            }
            if !serves_canary && let Some(hash) = &wanted_canary {
                // A refused canary is recorded in `rejected`; the tenant goes on without it here.
                validated.extend(self.prepare_shared(shared, tenant, hash, hash, rejected).await?);
            }
            let _one_at_a_time = self.reloading.lock().await;
            for adapter in validated {
                self.keep_compiled(adapter);
            }
            let local = self.deployments.versions(name)?;
            self.record_canary_end(name, &local, &list);
            let this = self.clone();
            let (owned, config_for_swap, list_for_swap) = (name.to_string(), config.clone(), list.clone());
            let swapped = tokio::task::spawn_blocking(move || -> Result<Vec<String>, DeployError> {
                this.commit(&owned, &config_for_swap, local, |v| mirror(v, list_for_swap))
            })
            .await?;
            match swapped {
                Ok(dropped) => {
                    for gone in &dropped {
                        self.deployments.remove_unlisted(name, gone, &list);
                    }
                    let this = self.clone();
                    tokio::task::spawn_blocking(move || this.uncache_unused(&dropped)).await?;
                    let served = self.snapshot().by_name(name).map(|t| t.adapter.content_hash.clone());
                    if !serves_active {
                        self.record(RegistryEventKind::Deployed, Some(name), served.as_deref(), None);
                    }
                    if !serves_canary && let Some(canary) = &list.canary {
                        self.record(
                            RegistryEventKind::CanaryStarted,
                            Some(name),
                            Some(&canary.content_hash),
                            Some(format!("{}% of the tickets", canary.percent)),
                        );
                    }
                    tracing::info!(
                        tenant = name,
                        hash = served.as_deref().map(|h| &h[..12]),
                        canary = wanted_canary.as_deref().map(|h| &h[..12]),
                        "adapter versions activated from the shared store"
                    );
                }
                Err(e) => {
                    let reason = e.to_string();
                    tracing::error!(tenant = name, reason = %reason,
                        "the shared active version cannot be swapped in here; the previous version keeps serving");
                    self.record(
                        RegistryEventKind::DeployRejected,
                        Some(name),
                        list.active.as_deref(),
                        Some(reason),
                    );
                    rejected.insert((name.to_string(), wanted));
                }
            }
        }
        Ok(())
    }

    /// Whether `running` runs the version `list` names active.
    fn serves_active(&self, running: &Tenant, list: &TenantVersions) -> bool {
        match &list.active {
            Some(hash) => {
                running.adapter.content_hash == *hash && self.adapter_source(running) == AdapterSource::Deployed
            }
            None => self.adapter_source(running) == AdapterSource::File,
        }
    }

    /// `tenant`'s shared version `hash` fetched into the local cache, checked against its hash
    /// and validated; `None` when it is refused or rejected (logged, recorded and added to
    /// `rejected` under `wanted`). An error is the store's or the disk's.
    async fn prepare_shared(
        self: &Arc<Self>,
        shared: &dyn SharedDeployments,
        tenant: &TenantConfig,
        hash: &str,
        wanted: &str,
        rejected: &mut HashSet<(String, String)>,
    ) -> anyhow::Result<Option<Arc<LoadedAdapter>>> {
        let name = tenant.name.as_str();
        // The cached file is hashed again: the compiled copy is kept under `hash`.
        let checked = match cache_component(shared, &self.deployments, name, hash).await {
            Ok(path) => match tokio::fs::read(&path).await {
                Ok(bytes) => check_bytes(name, hash, bytes).await,
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e),
        };
        let bytes = match checked {
            Ok(bytes) => bytes,
            Err(e) => match e.downcast_ref::<Refused>() {
                Some(refused) => {
                    let local = self.deployments.versions(name)?;
                    self.deployments.remove_unlisted(name, hash, &local);
                    self.refuse_shared(name, wanted, refused, rejected);
                    return Ok(None);
                }
                None => return Err(e),
            },
        };
        match self.validate(tenant, hash, bytes).await {
            Ok(adapter) => Ok(Some(adapter)),
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(tenant = name, hash = %short(hash), reason = %reason,
                    "a version deployed on another replica is rejected here; the previous version keeps serving");
                self.record(RegistryEventKind::DeployRejected, Some(name), Some(hash), Some(reason));
                rejected.insert((name.to_string(), wanted.to_string()));
                Ok(None)
            }
        }
    }

    /// Records the end of a canary another replica decided: `shared` ends one `local` did not.
    fn record_canary_end(&self, tenant: &str, local: &TenantVersions, shared: &TenantVersions) {
        if let Some(outcome) = &shared.last_canary
            && local.last_canary.as_ref() != Some(outcome)
        {
            self.record(
                super::canary::event_kind(outcome.end),
                Some(tenant),
                Some(&outcome.content_hash),
                Some(outcome.reason.clone()),
            );
        }
    }

    /// Logs and records that `tenant`'s shared version `wanted` is refused, and adds it to
    /// `rejected` so that it is not fetched again while it stays the shared active version.
    fn refuse_shared(&self, tenant: &str, wanted: &str, refused: &Refused, rejected: &mut HashSet<(String, String)>) {
        let reason = refused.to_string();
        tracing::error!(tenant, reason = %reason,
            "a version in the shared store is refused: its hash, bytes or seal were not written by a deploy; the previous version keeps serving");
        self.record(
            RegistryEventKind::DeployRejected,
            Some(tenant),
            Some(wanted).filter(|w| is_content_hash(w)),
            Some(reason),
        );
        rejected.insert((tenant.to_string(), wanted.to_string()));
    }
}

/// Whether `running` runs the canary `list` names (or none when it names none).
fn serves_canary(running: &Tenant, list: &TenantVersions) -> bool {
    match (&running.canary, &list.canary) {
        (None, None) => true,
        (Some(arm), Some(canary)) => arm.adapter.content_hash == canary.content_hash && arm.percent == canary.percent,
        _ => false,
    }
}
