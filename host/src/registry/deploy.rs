//! Versions deployed over HTTP: validated, stored by content hash ([`crate::deployments`]) and
//! swapped in like a reload; rolled back one step at a time. With a store that shares
//! deployments, the change is written to it before this replica swaps, and the other replicas
//! follow ([`AdapterRegistry::follow_shared`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{AdapterRegistry, RegistryEventKind};
use crate::clock::rfc3339;
use crate::config::{Config, TenantConfig};
use crate::deployments::seal::DeploymentSeal;
use crate::deployments::shared::{Refused, cache_component, check_list, check_sealed};
use crate::runtime::{LoadedAdapter, content_hash};
use crate::store::{DeploymentChange, RollbackTarget, SharedDeployments, StoredVersion, TenantVersions};
use crate::tenants::Tenant;

/// Where a tenant's adapter version comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterSource {
    /// The tenant's configured `adapter` file.
    File,
    /// A version deployed over HTTP.
    Deployed,
}

/// One version of a tenant's adapter.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterVersion {
    pub tenant: String,
    /// Hex SHA-256 of the component.
    pub content_hash: String,
    pub size_bytes: u64,
    /// When it was deployed; for the configured file, when it was loaded (or, when it is not
    /// active, last modified).
    #[serde(with = "rfc3339")]
    pub deployed_at: chrono::DateTime<chrono::Utc>,
    pub source: AdapterSource,
    /// Whether the tenant runs this version now (for every ticket not on a canary).
    pub active: bool,
    /// While this version is the tenant's canary: the percent of the tickets it serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<u8>,
}

/// Why a deploy or rollback did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("no tenant named `{0}`")]
    UnknownTenant(String),
    /// The component was refused: not a component, another world, an incompatible WIT version,
    /// failing fixtures. The reason names no secret and no server path.
    #[error("the component was rejected: {0}")]
    Rejected(String),
    #[error("there is no previous version to roll back to")]
    NoPreviousVersion,
    #[error("a canary serves 1 to 99 percent of the tickets, not {0}")]
    InvalidCanaryPercent(u8),
    #[error("the tenant has no canary running")]
    NoCanary,
    #[error("the deployment store failed: {0:#}")]
    Storage(anyhow::Error),
}

impl AdapterRegistry {
    /// Validates `component` as `tenant`'s adapter (a component of the adapter world and a
    /// compatible WIT version, compiled; the tenant's `[tenants.deploy] fixtures` passing, when
    /// set), stores it by content hash and activates it through the same atomic swap as a
    /// reload: requests already running finish on the version they started with. With
    /// `canary`, it serves that percent of the tenant's tickets beside the active version
    /// instead (see [`crate::registry::canary`]). A rejected component changes nothing.
    pub async fn deploy(
        self: &Arc<Self>,
        tenant: &str,
        component: Vec<u8>,
        canary: Option<u8>,
    ) -> Result<AdapterVersion, DeployError> {
        if let Some(percent) = canary.filter(|p| !(1..=99).contains(p)) {
            return Err(DeployError::InvalidCanaryPercent(percent));
        }
        let tenant_config = configured_tenant(&self.config.load(), tenant)?;
        let size_bytes = component.len() as u64;
        // Hashing (and copying for the shared store) up to `max_bytes` takes a while: not on a
        // request thread.
        let shared = self.shared().is_some();
        let (component, hash, for_shared) = tokio::task::spawn_blocking(move || {
            let hash = content_hash(&component);
            let for_shared = shared.then(|| component.clone());
            (component, hash, for_shared)
        })
        .await
        .map_err(|e| DeployError::Storage(anyhow::Error::from(e).context("hashing the component failed")))?;
        if canary.is_some()
            && self
                .snapshot()
                .by_name(tenant)
                .is_some_and(|t| t.adapter.content_hash == hash)
        {
            return Err(DeployError::Rejected(
                "this version is the active one: a canary must be another version".to_string(),
            ));
        }
        // Compiling and the fixtures run outside the lock: reloads, rollbacks and other
        // tenants' deploys go on meanwhile.
        let adapter = match self.validate(&tenant_config, &hash, component).await {
            Ok(adapter) => adapter,
            Err(e) => {
                if let DeployError::Rejected(reason) = &e {
                    tracing::warn!(tenant, hash = %&hash[..12], reason = %reason,
                        "deploy rejected; the previous version keeps serving");
                }
                self.record(
                    RegistryEventKind::DeployRejected,
                    Some(tenant),
                    Some(&hash),
                    Some(e.to_string()),
                );
                return Err(e);
            }
        };
        let _one_at_a_time = self.reloading.lock().await;
        // A reload may have changed the configuration meanwhile.
        let config = self.config.load_full();
        if let Err(e) = configured_tenant(&config, tenant) {
            self.forget_unlisted_off_thread(tenant, &hash).await;
            return Err(e);
        }
        let this = self.clone();
        let name = tenant.to_string();
        let version = StoredVersion {
            content_hash: hash.clone(),
            size_bytes,
            deployed_at: chrono::Utc::now(),
            seal: DeploymentSeal::configured(&config.deployments).map(|seal| seal.seal(tenant, &hash)),
        };
        let stored = version.clone();
        let keep = self.deployments.keep();
        // Shared first: once committed there, every replica activates it.
        let shared_list = match (self.shared(), for_shared) {
            (Some(shared), Some(component)) => {
                let change = DeploymentChange::Deployed {
                    version: version.clone(),
                    component,
                    canary,
                };
                match shared.change_deployment(tenant, keep, change).await {
                    Ok(list) => Some(list),
                    Err(e) => {
                        self.forget_unlisted_off_thread(tenant, &hash).await;
                        return Err(DeployError::Storage(e));
                    }
                }
            }
            _ => None,
        };
        self.keep_compiled(adapter);
        // The files of versions no longer kept go once the new list is written and swapped in.
        tokio::task::spawn_blocking(move || -> Result<(), DeployError> {
            let versions = this.deployments.versions(&name).map_err(DeployError::Storage)?;
            let dropped = this.commit(&name, &config, versions, |v| match (shared_list, canary) {
                (Some(list), _) => mirror(v, list),
                (None, Some(percent)) => v.canary_started(stored, percent, keep),
                (None, None) => v.deployed(stored, keep),
            })?;
            let current = this.deployments.versions(&name).map_err(DeployError::Storage)?;
            for gone in &dropped {
                this.deployments.remove_unlisted(&name, gone, &current);
            }
            this.uncache_unused(&dropped);
            Ok(())
        })
        .await
        .map_err(|e| DeployError::Storage(anyhow::Error::from(e).context("the deploy task failed")))??;
        match canary {
            Some(percent) => {
                self.record(
                    RegistryEventKind::CanaryStarted,
                    Some(tenant),
                    Some(&hash),
                    Some(format!("{percent}% of the tickets")),
                );
                tracing::info!(tenant, hash = %&hash[..12], size_bytes, percent, "adapter version deployed as a canary");
            }
            None => {
                self.record(RegistryEventKind::Deployed, Some(tenant), Some(&hash), None);
                tracing::info!(tenant, hash = %&hash[..12], size_bytes, "adapter version deployed");
            }
        }
        Ok(AdapterVersion {
            tenant: tenant.to_string(),
            content_hash: hash,
            size_bytes,
            deployed_at: version.deployed_at,
            source: AdapterSource::Deployed,
            active: canary.is_none(),
            canary,
        })
    }

    /// Returns `tenant` to the version deployed before the active one in one step (from the
    /// oldest kept deployed version: to its configured file), through the same swap as
    /// [`AdapterRegistry::deploy`]. As in a deploy, the target compiles (when the compile cache
    /// does not hold it) outside the registry's lock; under the lock the target is found again,
    /// and only one that changed meanwhile is loaded there.
    pub async fn rollback(self: &Arc<Self>, tenant: &str) -> Result<AdapterVersion, DeployError> {
        let (_, prepared_path) = self.rollback_target(tenant).await?;
        let prepared = self.load_rollback_target(prepared_path.clone()).await?;
        let _one_at_a_time = self.reloading.lock().await;
        let config = self.config.load_full();
        let (target, path) = self.rollback_target(tenant).await?;
        // Another swap may have dropped the compiled copy meanwhile.
        self.keep_compiled(prepared);
        if path != prepared_path {
            self.load_rollback_target(path).await?;
        }
        let shared_after = match self.shared() {
            Some(shared) => Some(
                shared
                    .change_deployment(
                        tenant,
                        self.deployments.keep(),
                        DeploymentChange::Activated(target.clone()),
                    )
                    .await
                    .map_err(DeployError::Storage)?,
            ),
            None => None,
        };
        let this = self.clone();
        let name = tenant.to_string();
        tokio::task::spawn_blocking(move || -> Result<(), DeployError> {
            let versions = this.deployments.versions(&name).map_err(DeployError::Storage)?;
            this.commit(&name, &config, versions, |v| match shared_after {
                Some(list) => {
                    mirror(v, list);
                }
                None => v.activate(&target),
            })
        })
        .await
        .map_err(|e| DeployError::Storage(anyhow::Error::from(e).context("the rollback task failed")))??;
        let active = self
            .versions(tenant)?
            .into_iter()
            .find(|v| v.active)
            .ok_or_else(|| DeployError::Storage(anyhow::anyhow!("no active version after the rollback")))?;
        self.record(
            RegistryEventKind::RolledBack,
            Some(tenant),
            Some(&active.content_hash),
            None,
        );
        tracing::info!(tenant, hash = %&active.content_hash[..12], source = ?active.source, "adapter rolled back");
        Ok(active)
    }

    /// Where a rollback of `tenant` goes now, and the target's component file. With a shared
    /// store, the shared list says where a rollback goes, and the target's component comes from
    /// there when this replica has not kept it.
    async fn rollback_target(self: &Arc<Self>, tenant: &str) -> Result<(RollbackTarget, PathBuf), DeployError> {
        let config = self.config.load();
        let tenant_config = configured_tenant(&config, tenant)?;
        let shared_versions = match self.shared() {
            Some(shared) => {
                let versions = shared.shared_versions(tenant).await.map_err(DeployError::Storage)?;
                let seal = DeploymentSeal::configured(&config.deployments);
                if let Some(versions) = &versions {
                    check_list(tenant, versions, seal.as_ref()).map_err(|e| DeployError::Rejected(e.to_string()))?;
                }
                if let Some((versions, RollbackTarget::Deployed(hash))) =
                    versions.as_ref().and_then(|v| Some((v, v.rollback_target()?)))
                {
                    check_sealed(tenant, versions, &hash, seal.as_ref())
                        .map_err(|e| DeployError::Rejected(e.to_string()))?;
                    cache_component(shared, &self.deployments, tenant, &hash)
                        .await
                        .map_err(|e| match e.downcast::<Refused>() {
                            Ok(refused) => DeployError::Rejected(refused.to_string()),
                            Err(e) => DeployError::Storage(e),
                        })?;
                }
                versions
            }
            None => None,
        };
        let versions = match &shared_versions {
            Some(versions) => versions.clone(),
            None => self.deployments.versions(tenant).map_err(DeployError::Storage)?,
        };
        let target = versions.rollback_target().ok_or(DeployError::NoPreviousVersion)?;
        let path = match &target {
            RollbackTarget::Deployed(hash) => self.deployments.component_path(tenant, hash),
            RollbackTarget::File => tenant_config.adapter,
        };
        Ok((target, path))
    }

    /// Loads the rollback target at `path` (compiling it when the compile cache does not hold
    /// it) on a blocking thread: it must load before anything changes.
    async fn load_rollback_target(self: &Arc<Self>, path: PathBuf) -> Result<Arc<LoadedAdapter>, DeployError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            this.adapter_for(&path, &mut HashMap::new()).map_err(|e| {
                DeployError::Rejected(format!(
                    "the previous version does not load: {}",
                    without_path(&e, &path)
                ))
            })
        })
        .await
        .map_err(|e| DeployError::Storage(anyhow::Error::from(e).context("the rollback task failed")))?
    }

    /// `tenant`'s versions, newest first: the kept deployed versions, then its configured file
    /// (the oldest version, which a rollback from the oldest deployed one returns to; left out
    /// when it cannot be read and is not active).
    pub fn versions(&self, tenant: &str) -> Result<Vec<AdapterVersion>, DeployError> {
        configured_tenant(&self.config.load(), tenant)?;
        let stored = self.deployments.versions(tenant).map_err(DeployError::Storage)?;
        self.versions_from(tenant, stored)
    }

    /// As [`AdapterRegistry::versions`], from the list every replica shares when the store
    /// shares deployments (and the tenant has one there), else from this replica's.
    /// The lists are read, and the configured file hashed when it changed, on a blocking thread.
    pub async fn listed_versions(self: &Arc<Self>, tenant: &str) -> Result<Vec<AdapterVersion>, DeployError> {
        configured_tenant(&self.config.load(), tenant)?;
        let shared = match self.shared() {
            Some(shared) => shared.shared_versions(tenant).await.map_err(DeployError::Storage)?,
            None => None,
        };
        let (this, tenant) = (self.clone(), tenant.to_string());
        tokio::task::spawn_blocking(move || match shared {
            Some(stored) => this.versions_from(&tenant, stored),
            None => this.versions(&tenant),
        })
        .await
        .map_err(|e| DeployError::Storage(anyhow::Error::from(e).context("listing the versions failed")))?
    }

    /// [`AdapterRegistry::versions`] of each of `tenants` (an error as its message), read on a
    /// blocking thread.
    pub async fn versions_of_each(
        self: &Arc<Self>,
        tenants: Vec<String>,
    ) -> anyhow::Result<HashMap<String, Result<Vec<AdapterVersion>, String>>> {
        let this = self.clone();
        let listed = tokio::task::spawn_blocking(move || {
            tenants
                .into_iter()
                .map(|tenant| {
                    let versions = this.versions(&tenant).map_err(|e| e.to_string());
                    (tenant, versions)
                })
                .collect()
        })
        .await?;
        Ok(listed)
    }

    /// `tenant`'s versions given its deployed ones, `stored`.
    fn versions_from(&self, tenant: &str, stored: TenantVersions) -> Result<Vec<AdapterVersion>, DeployError> {
        let config = self.config.load();
        let tenant_config = &configured_tenant(&config, tenant)?;
        let mut versions: Vec<AdapterVersion> = stored
            .versions
            .iter()
            .map(|v| AdapterVersion {
                tenant: tenant.to_string(),
                content_hash: v.content_hash.clone(),
                size_bytes: v.size_bytes,
                deployed_at: v.deployed_at,
                source: AdapterSource::Deployed,
                active: stored.active.as_deref() == Some(v.content_hash.as_str()),
                canary: stored
                    .canary
                    .as_ref()
                    .filter(|c| c.content_hash == v.content_hash)
                    .map(|c| c.percent),
            })
            .collect();
        let snapshot = self.snapshot();
        let running = snapshot.by_name(tenant).filter(|_| stored.active.is_none());
        let file = match running {
            Some(running) => Some(AdapterVersion {
                tenant: tenant.to_string(),
                content_hash: running.adapter.content_hash.clone(),
                size_bytes: std::fs::metadata(&running.adapter.path).map_or(0, |m| m.len()),
                deployed_at: running.loaded_at,
                source: AdapterSource::File,
                active: true,
                canary: None,
            }),
            // Hashed again only when the file changed.
            None => self
                .file_hashes
                .hash_of(&tenant_config.adapter)
                .ok()
                .map(|(hash, metadata)| AdapterVersion {
                    tenant: tenant.to_string(),
                    content_hash: hash,
                    size_bytes: metadata.len(),
                    deployed_at: metadata
                        .modified()
                        .map_or_else(|_| chrono::Utc::now(), chrono::DateTime::from),
                    source: AdapterSource::File,
                    active: false,
                    canary: None,
                }),
        };
        versions.extend(file);
        Ok(versions)
    }

    /// The deployments every replica of the store shares, if it shares them.
    pub(super) fn shared(&self) -> Option<&dyn SharedDeployments> {
        self.services.store.shared_deployments()
    }

    /// Where `tenant`'s running adapter comes from.
    pub fn adapter_source(&self, tenant: &Tenant) -> AdapterSource {
        match self.deployments.contains(&tenant.adapter.path) {
            true => AdapterSource::Deployed,
            false => AdapterSource::File,
        }
    }

    /// The configuration the current tenants were built from.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The largest component [`AdapterRegistry::deploy`] is given over HTTP, in bytes.
    pub fn deploy_max_bytes(&self) -> usize {
        self.config.load().deployments.max_bytes
    }

    /// Why the adapters are not all loaded: the configured tenants without a running adapter.
    /// Empty when every configured tenant serves.
    pub fn not_loaded(&self) -> Vec<String> {
        let snapshot = self.snapshot();
        self.config
            .load()
            .tenants
            .iter()
            .filter(|t| snapshot.by_name(&t.name).is_none())
            .map(|t| format!("tenant `{}` has no adapter loaded", t.name))
            .collect()
    }

    /// Loads `component` (stored under its hash) and runs the tenant's deploy fixtures on it.
    /// An accepted component is returned compiled, and its compiled code is cached on disk; a
    /// rejected one is deleted, and neither cached nor kept compiled.
    pub(super) async fn validate(
        self: &Arc<Self>,
        tenant: &TenantConfig,
        hash: &str,
        component: Vec<u8>,
    ) -> Result<Arc<LoadedAdapter>, DeployError> {
        let this = self.clone();
        let (name, owned_hash) = (tenant.name.clone(), hash.to_string());
        let (path, adapter) = tokio::task::spawn_blocking(move || -> Result<_, DeployError> {
            let (name, hash) = (name.as_str(), owned_hash.as_str());
            let path = this
                .deployments
                .put_component(name, hash, &component)
                .map_err(DeployError::Storage)?;
            let known = this.compiled.lock().expect("compiled lock").get(hash).cloned();
            let adapter = match known {
                Some(same_content) => same_content.at_path(&path),
                None => this
                    .runtime
                    .load_bytes_uncached(&path, &component, hash.to_string())
                    .map_err(|e| {
                        this.forget_unlisted(name, hash);
                        DeployError::Rejected(without_path(&e.into(), &path))
                    })?,
            };
            Ok((path, Arc::new(adapter)))
        })
        .await
        .map_err(|e| DeployError::Storage(anyhow::Error::from(e).context("the deploy task failed")))??;
        if let Some(fixtures) = &tenant.deploy.fixtures {
            let mut out = Vec::new();
            let outcome =
                crate::plugin_test::run_compiled(&self.fixture_runtime, adapter.clone(), fixtures, &mut out).await;
            let rejected = match outcome {
                Ok(true) => None,
                Ok(false) => Some(format!(
                    "fixtures failed: {}",
                    failed_fixtures(&String::from_utf8_lossy(&out))
                )),
                Err(e) => Some(format!(
                    "the fixtures could not run: {}",
                    without_fixture_paths(&without_path(&e, &path), fixtures)
                )),
            };
            if let Some(reason) = rejected {
                self.forget_unlisted_off_thread(&tenant.name, hash).await;
                return Err(DeployError::Rejected(reason));
            }
        }
        let (runtime, accepted) = (self.runtime.clone(), adapter.clone());
        let cached = tokio::task::spawn_blocking(move || runtime.cache_compiled(&accepted)).await;
        if let Err(e) = cached.map_err(anyhow::Error::from).and_then(|written| written) {
            tracing::warn!(tenant = %tenant.name, hash = %&hash[..12], error = format!("{e:#}"),
                "cannot cache the compiled adapter; a restart compiles it again");
        }
        Ok(adapter)
    }

    /// Deletes the compiled code of the `dropped` versions from the compile cache, but for those
    /// still in use: kept by any tenant, any tenant's configured file, or running. When a
    /// tenant's list cannot be read, nothing is deleted.
    pub(super) fn uncache_unused(&self, dropped: &[String]) {
        if dropped.is_empty() {
            return;
        }
        let snapshot = self.snapshot();
        let mut in_use: HashSet<String> = snapshot.all().iter().flat_map(|t| t.content_hashes()).collect();
        for tenant in &self.config.load().tenants {
            let Ok(kept) = self.deployments.versions(&tenant.name) else {
                return;
            };
            in_use.extend(kept.versions.into_iter().map(|v| v.content_hash));
            if let Ok((hash, _)) = self.file_hashes.hash_of(&tenant.adapter) {
                in_use.insert(hash);
            }
        }
        for hash in dropped.iter().filter(|hash| !in_use.contains(*hash)) {
            self.runtime.uncache(hash);
        }
    }

    /// Deletes the stored component `hash` of `tenant` unless a kept version is it.
    fn forget_unlisted(&self, tenant: &str, hash: &str) {
        if let Ok(versions) = self.deployments.versions(tenant) {
            self.deployments.remove_unlisted(tenant, hash, &versions);
        }
    }

    /// [`AdapterRegistry::forget_unlisted`] on a blocking thread: it reads and deletes files.
    async fn forget_unlisted_off_thread(self: &Arc<Self>, tenant: &str, hash: &str) {
        let (this, tenant, hash) = (self.clone(), tenant.to_string(), hash.to_string());
        if let Err(e) = tokio::task::spawn_blocking(move || this.forget_unlisted(&tenant, &hash)).await {
            tracing::warn!(error = %e, "deleting a rejected component failed");
        }
    }

    /// Applies `change` to `tenant`'s `versions`, writes them, and swaps in the current tenant
    /// set with `tenant` built again from `config` (the others stay as they are); on a failed swap the previous list is written back. Returns what
    /// `change` returned.
    pub(super) fn commit<R>(
        &self,
        tenant: &str,
        config: &Config,
        versions: TenantVersions,
        change: impl FnOnce(&mut TenantVersions) -> R,
    ) -> Result<R, DeployError> {
        let mut changed = versions.clone();
        let outcome = change(&mut changed);
        self.deployments
            .write_versions(tenant, &changed)
            .map_err(DeployError::Storage)?;
        let previous = self.snapshot();
        match self.rebuild_tenant(config, &previous, tenant) {
            Ok(set) => {
                self.current.store(Arc::new(set));
                self.prune_compiled();
                Ok(outcome)
            }
            Err(e) => {
                self.prune_compiled();
                if let Err(restore) = self.deployments.write_versions(tenant, &versions) {
                    tracing::error!(
                        tenant,
                        error = format!("{restore:#}"),
                        "cannot restore the list of versions"
                    );
                }
                Err(DeployError::Storage(e))
            }
        }
    }
}

/// Makes `local` a copy of `shared`; returns the content hashes `local` listed that `shared`
/// does not.
pub(super) fn mirror(local: &mut TenantVersions, shared: TenantVersions) -> Vec<String> {
    let gone = local
        .versions
        .iter()
        .filter(|old| !shared.versions.iter().any(|v| v.content_hash == old.content_hash))
        .map(|old| old.content_hash.clone())
        .collect();
    *local = shared;
    gone
}

/// `error`'s message with the server path `path` replaced by "the component".
fn without_path(error: &anyhow::Error, path: &Path) -> String {
    format!("{error:#}").replace(&path.display().to_string(), "the component")
}

/// `reason` with the fixture folder's path dropped from the paths of its files (`tenant.toml`,
/// `incoming/x.json`) and replaced elsewhere by "the fixture folder": the partner learns which
/// file is wrong, not where the server keeps it.
fn without_fixture_paths(reason: &str, fixtures: &Path) -> String {
    let dir = fixtures.display().to_string();
    let dir = dir.trim_end_matches('/');
    reason
        .replace(&format!("{dir}/"), "")
        .replace(dir, "the fixture folder")
}

/// The names of the failed fixtures in `plugin test` output, and its summary line.
fn failed_fixtures(output: &str) -> String {
    let mut current = "";
    let mut failed = Vec::new();
    let mut summary = "";
    for line in output.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            current = name;
        } else if line.trim_start().starts_with("FAIL") {
            failed.push(current);
        } else if line.ends_with("fixture(s) passed") {
            summary = line;
        }
    }
    format!("{} ({summary})", failed.join(", "))
}

/// `tenant`'s configuration.
fn configured_tenant(config: &Config, tenant: &str) -> Result<TenantConfig, DeployError> {
    config
        .tenants
        .iter()
        .find(|t| t.name == tenant)
        .cloned()
        .ok_or_else(|| DeployError::UnknownTenant(tenant.to_string()))
}
