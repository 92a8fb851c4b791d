//! Deployed versions shared by every replica of a PostgreSQL store: a deploy or rollback on any
//! replica writes the component, the tenant's list of versions and which one is active to the
//! database in one transaction ([`SharedDeployments::change_deployment`]), and every replica
//! follows (`cluster::deployment_follower`): when a tenant's active version is not the one it
//! serves, it fetches the component into its local [`DeploymentStore`] (now a cache,
//! [`cache_component`]) and activates it through the same validation and swap as a deploy. A
//! replica that starts copies the active versions before it loads its adapters ([`prime`]).
//!
//! Tenants no replica has deployed to have no shared list: they run their files, and a local
//! list (from before the store was shared) is left as it is. With the embedded store nothing is
//! shared: versions stay on the local disk.

use anyhow::Context;

use super::DeploymentStore;
use crate::config::Config;
use crate::store::{SharedDeployments, Store};

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
