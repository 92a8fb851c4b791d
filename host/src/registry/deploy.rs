//! Versions deployed over HTTP: validated, stored by content hash ([`crate::deployments`]) and
//! swapped in like a reload; rolled back one step at a time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{AdapterRegistry, RegistryEventKind};
use crate::config::{Config, TenantConfig};
use crate::deployments::{RollbackTarget, StoredVersion, TenantVersions, rfc3339};
use crate::runtime::content_hash;
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
    /// Whether the tenant runs this version now.
    pub active: bool,
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
    #[error("the deployment store failed: {0:#}")]
    Storage(anyhow::Error),
}

impl AdapterRegistry {
    /// Validates `component` as `tenant`'s adapter (a component of the adapter world and a
    /// compatible WIT version, compiled; the tenant's `[tenants.deploy] fixtures` passing, when
    /// set), stores it by content hash and activates it through the same atomic swap as a
    /// reload: requests already running finish on the version they started with. A rejected
    /// component changes nothing.
    pub async fn deploy(self: &Arc<Self>, tenant: &str, component: Vec<u8>) -> Result<AdapterVersion, DeployError> {
        let _one_at_a_time = self.reloading.lock().await;
        let config = self.config.load_full();
        let tenant_config = configured_tenant(&config, tenant)?;
        let hash = content_hash(&component);
        let size_bytes = component.len() as u64;
        let result = self.validate(&tenant_config, &config, &hash, component).await;
        if let Err(e) = &result {
            if let DeployError::Rejected(reason) = e {
                tracing::warn!(tenant, hash = %&hash[..12], reason = %reason,
                    "deploy rejected; the previous version keeps serving");
            }
            self.record(
                RegistryEventKind::DeployRejected,
                Some(tenant),
                Some(&hash),
                Some(e.to_string()),
            );
        }
        result?;
        let this = self.clone();
        let name = tenant.to_string();
        let version = StoredVersion {
            content_hash: hash.clone(),
            size_bytes,
            deployed_at: chrono::Utc::now(),
        };
        let stored = version.clone();
        // The files of versions no longer kept go once the new list is written and swapped in.
        tokio::task::spawn_blocking(move || -> Result<(), DeployError> {
            let versions = this.deployments.versions(&name).map_err(DeployError::Storage)?;
            let keep = this.deployments.keep();
            let dropped = this.commit(&name, &config, versions, |v| v.deployed(stored, keep))?;
            let current = this.deployments.versions(&name).map_err(DeployError::Storage)?;
            for gone in dropped {
                this.deployments.remove_unlisted(&name, &gone, &current);
            }
            Ok(())
        })
        .await
        .map_err(|e| DeployError::Storage(anyhow::Error::from(e).context("the deploy task failed")))??;
        self.record(RegistryEventKind::Deployed, Some(tenant), Some(&hash), None);
        tracing::info!(tenant, hash = %&hash[..12], size_bytes, "adapter version deployed");
        Ok(AdapterVersion {
            tenant: tenant.to_string(),
            content_hash: hash,
            size_bytes,
            deployed_at: version.deployed_at,
            source: AdapterSource::Deployed,
            active: true,
        })
    }

    /// Returns `tenant` to the version deployed before the active one in one step (from the
    /// oldest kept deployed version: to its configured file), through the same swap as
    /// [`AdapterRegistry::deploy`].
    pub async fn rollback(self: &Arc<Self>, tenant: &str) -> Result<AdapterVersion, DeployError> {
        let _one_at_a_time = self.reloading.lock().await;
        let config = self.config.load_full();
        let tenant_config = configured_tenant(&config, tenant)?;
        let this = self.clone();
        let name = tenant.to_string();
        let config_for_swap = config.clone();
        tokio::task::spawn_blocking(move || -> Result<(), DeployError> {
            let versions = this.deployments.versions(&name).map_err(DeployError::Storage)?;
            let target = versions.rollback_target().ok_or(DeployError::NoPreviousVersion)?;
            // The target must load before anything changes.
            let path = match &target {
                RollbackTarget::Deployed(hash) => this.deployments.component_path(&name, hash),
                RollbackTarget::File => tenant_config.adapter.clone(),
            };
            this.adapter_for(&path, &mut HashMap::new()).map_err(|e| {
                DeployError::Rejected(format!(
                    "the previous version does not load: {}",
                    without_path(&e, &path)
                ))
            })?;
            this.commit(&name, &config_for_swap, versions, |v| v.activate(&target))
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

    /// `tenant`'s versions, newest first: the kept deployed versions, then its configured file
    /// (the oldest version, which a rollback from the oldest deployed one returns to; left out
    /// when it cannot be read and is not active).
    pub fn versions(&self, tenant: &str) -> Result<Vec<AdapterVersion>, DeployError> {
        let config = self.config.load();
        let tenant_config = &configured_tenant(&config, tenant)?;
        let stored = self.deployments.versions(tenant).map_err(DeployError::Storage)?;
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
            }),
            None => std::fs::read(&tenant_config.adapter).ok().map(|bytes| AdapterVersion {
                tenant: tenant.to_string(),
                content_hash: content_hash(&bytes),
                size_bytes: bytes.len() as u64,
                deployed_at: std::fs::metadata(&tenant_config.adapter)
                    .and_then(|m| m.modified())
                    .map_or_else(|_| chrono::Utc::now(), chrono::DateTime::from),
                source: AdapterSource::File,
                active: false,
            }),
        };
        versions.extend(file);
        Ok(versions)
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
    async fn validate(
        self: &Arc<Self>,
        tenant: &TenantConfig,
        config: &Config,
        hash: &str,
        component: Vec<u8>,
    ) -> Result<(), DeployError> {
        let this = self.clone();
        let (name, owned_hash) = (tenant.name.clone(), hash.to_string());
        let path = tokio::task::spawn_blocking(move || -> Result<PathBuf, DeployError> {
            let (name, hash) = (name.as_str(), owned_hash.as_str());
            let path = this
                .deployments
                .put_component(name, hash, &component)
                .map_err(DeployError::Storage)?;
            let known = this.compiled.lock().expect("compiled lock").get(hash).cloned();
            if known.is_none() {
                match this.runtime.load_bytes(&path, &component, hash.to_string()) {
                    Ok(adapter) => {
                        this.compiled
                            .lock()
                            .expect("compiled lock")
                            .insert(hash.to_string(), Arc::new(adapter));
                    }
                    Err(e) => {
                        this.forget_unlisted(name, hash);
                        return Err(DeployError::Rejected(without_path(&e.into(), &path)));
                    }
                }
            }
            Ok(path)
        })
        .await
        .map_err(|e| DeployError::Storage(anyhow::Error::from(e).context("the deploy task failed")))??;
        let Some(fixtures) = &tenant.deploy.fixtures else {
            return Ok(());
        };
        let options = crate::plugin_test::Options {
            adapter: path.clone(),
            fixtures: fixtures.clone(),
            cache_dir: config.adapters.cache_dir.clone(),
        };
        let mut out = Vec::new();
        let outcome = crate::plugin_test::run(&options, &mut out).await;
        let rejected = match outcome {
            Ok(true) => return Ok(()),
            Ok(false) => format!("fixtures failed: {}", failed_fixtures(&String::from_utf8_lossy(&out))),
            Err(e) => format!("the fixtures could not run: {}", without_path(&e, &path)),
        };
        self.forget_unlisted(&tenant.name, hash);
        Err(DeployError::Rejected(rejected))
    }

    /// Deletes the stored component `hash` of `tenant` unless a kept version is it.
    fn forget_unlisted(&self, tenant: &str, hash: &str) {
        if let Ok(versions) = self.deployments.versions(tenant) {
            self.deployments.remove_unlisted(tenant, hash, &versions);
        }
    }

    /// Applies `change` to `tenant`'s `versions`, writes them, and swaps in the tenant set built
    /// from `config` with them; on a failed swap the previous list is written back. Returns what
    /// `change` returned.
    fn commit<R>(
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
        match self.build_set(config, Some(&previous)) {
            Ok((set, _)) => {
                self.current.store(Arc::new(set));
                self.prune_compiled();
                Ok(outcome)
            }
            Err(e) => {
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

/// `error`'s message with the server path `path` replaced by "the component".
fn without_path(error: &anyhow::Error, path: &Path) -> String {
    format!("{error:#}").replace(&path.display().to_string(), "the component")
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
