//! Deployed versions shared by every replica of a PostgreSQL store: a deploy or rollback on any
//! replica writes the component, the tenant's list of versions and which one is active to the
//! database in one transaction ([`SharedDeployments::change_deployment`]), and every replica
//! follows ([`follow`]): it checks the store's change counter every [`CHECK_EVERY`] and, when a
//! tenant's active version is not the one it serves, fetches the component into its local
//! [`DeploymentStore`] (now a cache) and activates it through the same validation and swap as a
//! deploy. A replica that starts copies the active versions before it loads its adapters
//! ([`prime`]).
//!
//! Tenants no replica has deployed to have no shared list: they run their files, and a local
//! list (from before the store was shared) is left as it is. With the embedded store nothing is
//! shared: versions stay on the local disk.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::{DeploymentStore, RollbackTarget, StoredVersion, TenantVersions};
use crate::config::Config;
use crate::registry::AdapterRegistry;
use crate::store::Store;

/// How often a replica checks the store for a deploy or rollback made elsewhere.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

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

/// Copies the shared active version of every configured tenant into the local `[deployments]`
/// folder, and the shared lists over the local ones, so that the adapters load as the other
/// replicas serve them. Nothing to do for a store that does not share deployments.
pub async fn prime(config: &Config, store: &dyn Store) -> anyhow::Result<()> {
    let Some(shared) = store.shared_deployments() else {
        return Ok(());
    };
    let local = DeploymentStore::new(
        config.deployments.dir.clone().context("deployments dir")?,
        config.deployments.keep,
    );
    for tenant in &config.tenants {
        let name = tenant.name.as_str();
        let Some(versions) = shared
            .shared_versions(name)
            .await
            .with_context(|| format!("tenant `{name}`: reading the shared deployed versions"))?
        else {
            continue;
        };
        if let Some(active) = &versions.active {
            cache_component(shared, &local, name, active).await?;
        }
        let before = local.versions(name).unwrap_or_default();
        local.write_versions(name, &versions)?;
        for old in &before.versions {
            local.remove_unlisted(name, &old.content_hash, &versions);
        }
        tracing::info!(
            tenant = name,
            active = versions.active.as_deref().map(|h| &h[..12]),
            "deployed versions taken from the shared store"
        );
    }
    Ok(())
}

/// Makes sure `tenant`'s component `content_hash` is in `local`, fetching it from `shared`.
pub async fn cache_component(
    shared: &dyn SharedDeployments,
    local: &DeploymentStore,
    tenant: &str,
    content_hash: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let path = local.component_path(tenant, content_hash);
    if path.exists() {
        return Ok(path);
    }
    let bytes = shared
        .shared_component(tenant, content_hash)
        .await?
        .with_context(|| format!("tenant `{tenant}`: version {content_hash} is not in the shared store"))?;
    local.put_component(tenant, content_hash, &bytes)
}

/// Follows the shared versions until `shutdown`: every [`CHECK_EVERY`] reads the change counter
/// and, when it moved, activates what changed ([`AdapterRegistry::follow_shared`]). A version
/// this replica rejected is remembered and not tried again (until another change makes it
/// active anew after something else). Returns at once for a store that shares nothing.
pub async fn follow(store: Arc<dyn Store>, registry: Arc<AdapterRegistry>, shutdown: CancellationToken) {
    let Some(shared) = store.shared_deployments() else {
        return;
    };
    let mut seen: Option<i64> = None;
    let mut rejected: HashSet<(String, String)> = HashSet::new();
    loop {
        match shared.deployment_generation().await {
            Ok(generation) if seen != Some(generation) => match registry.follow_shared(&mut rejected).await {
                Ok(()) => seen = Some(generation),
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "cannot follow the shared deployed versions; trying again"
                ),
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(error = format!("{e:#}"), "cannot read the shared deployments' counter"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
}
