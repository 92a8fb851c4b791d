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
//!
//! Nothing read from the shared store is taken on trust: every hash must have the form of a
//! content hash before it names a file ([`check_list`]), and every component's hash is
//! recomputed before it is cached, compiled or run ([`cache_component`]). A row that fails
//! either is [`Refused`]: logged, and the tenant keeps the version it serves.

use anyhow::Context;

use super::DeploymentStore;
use super::seal::DeploymentSeal;
use crate::config::Config;
use crate::runtime::content_hash;
use crate::store::{SharedDeployments, Store, TenantVersions, is_content_hash};

/// Why a version read from the shared store is not used. Someone with write access to the
/// database (or on the path to it) wrote it; the replica keeps the version it serves.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// A hash in the tenant's shared list is not 64 lowercase hex digits.
    #[error("tenant `{tenant}`: the shared version {hash:?} is not a content hash (64 lowercase hex digits)")]
    MalformedHash { tenant: String, hash: String },
    /// The component's bytes hash to something else than the version they are stored as.
    #[error(
        "tenant `{tenant}`: the shared component stored as version {claimed} does not match its hash (its bytes hash to {actual})"
    )]
    HashMismatch {
        tenant: String,
        claimed: String,
        actual: String,
    },
    /// `[deployments] signing_key` is set and the version carries no good seal of it: written by
    /// someone without the key, or deployed before the key was set.
    #[error(
        "tenant `{tenant}`: the shared version {} carries no valid seal of [deployments] signing_key (deploy it again from a replica that has the key)",
        short(hash)
    )]
    Unsealed { tenant: String, hash: String },
}

/// The first 12 characters of `hash` for a log line, or all of it when shorter (a hash read from
/// the store is only trusted to be text).
pub fn short(hash: &str) -> &str {
    hash.char_indices().nth(12).map_or(hash, |(end, _)| &hash[..end])
}

/// Refuses `tenant`'s shared list `versions` when one of its hashes is not a content hash, or,
/// with a `seal`, when its active version is not sealed.
pub fn check_list(tenant: &str, versions: &TenantVersions, seal: Option<&DeploymentSeal>) -> Result<(), Refused> {
    if let Some(hash) = versions.malformed_hash() {
        return Err(Refused::MalformedHash {
            tenant: tenant.to_string(),
            hash: hash.chars().take(80).collect(),
        });
    }
    if let Some(active) = &versions.active {
        check_sealed(tenant, versions, active, seal)?;
    }
    match &versions.canary {
        Some(canary) => check_sealed(tenant, versions, &canary.content_hash, seal),
        None => Ok(()),
    }
}

/// With a `seal`, refuses `tenant`'s version `hash` of `versions` unless it is listed with a good
/// seal; without one, takes it.
pub fn check_sealed(
    tenant: &str,
    versions: &TenantVersions,
    hash: &str,
    seal: Option<&DeploymentSeal>,
) -> Result<(), Refused> {
    let Some(seal) = seal else {
        return Ok(());
    };
    let sealed = versions
        .versions
        .iter()
        .any(|v| v.content_hash == hash && seal.checks(tenant, v));
    match sealed {
        true => Ok(()),
        false => Err(Refused::Unsealed {
            tenant: tenant.to_string(),
            hash: hash.to_string(),
        }),
    }
}

/// Refuses `bytes` as `tenant`'s version `claimed` unless they hash to it. Hashing a large
/// component takes a while: not on a request thread.
pub async fn check_bytes(tenant: &str, claimed: &str, bytes: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let (bytes, actual) = tokio::task::spawn_blocking(move || {
        let actual = content_hash(&bytes);
        (bytes, actual)
    })
    .await
    .context("hashing a shared component")?;
    if actual != claimed {
        return Err(Refused::HashMismatch {
            tenant: tenant.to_string(),
            claimed: claimed.to_string(),
            actual,
        }
        .into());
    }
    Ok(bytes)
}

/// Copies the shared active version (and canary) of every configured tenant into the local `[deployments]`
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
    let seal = DeploymentSeal::configured(&config.deployments);
    if seal.is_none() {
        tracing::warn!(
            "[deployments] signing_key is not set: replicas run whatever version the database names active; \
             set the same key on every replica to run sealed versions only"
        );
    }
    for tenant in &config.tenants {
        let name = tenant.name.as_str();
        let Some(versions) = shared
            .shared_versions(name)
            .await
            .with_context(|| format!("tenant `{name}`: reading the shared deployed versions"))?
        else {
            continue;
        };
        // The active version and the canary are both run from the start.
        let running = versions
            .active
            .iter()
            .chain(versions.canary.as_ref().map(|c| &c.content_hash));
        let mut cached = check_list(name, &versions, seal.as_ref()).map_err(anyhow::Error::from);
        for hash in running {
            if cached.is_ok() {
                cached = cache_component(shared, &local, name, hash).await.map(|_| ());
            }
        }
        if let Err(e) = cached {
            let Some(refused) = e.downcast_ref::<Refused>() else {
                return Err(e);
            };
            tracing::error!(tenant = name, reason = %refused,
                "a version in the shared store is refused; this replica keeps its own list and serves its version");
            continue;
        }
        let before = local.versions(name).unwrap_or_default();
        local.write_versions(name, &versions)?;
        for old in &before.versions {
            local.remove_unlisted(name, &old.content_hash, &versions);
        }
        tracing::info!(
            tenant = name,
            active = versions.active.as_deref().map(short),
            "deployed versions taken from the shared store"
        );
    }
    Ok(())
}

/// Makes sure `tenant`'s component `hash` is in `local`, fetching it from `shared`. The hash must
/// have the form of a content hash and the fetched bytes must hash to it, else the error is a
/// [`Refused`] (see `downcast_ref`) and nothing is written.
pub async fn cache_component(
    shared: &dyn SharedDeployments,
    local: &DeploymentStore,
    tenant: &str,
    hash: &str,
) -> anyhow::Result<std::path::PathBuf> {
    if !is_content_hash(hash) {
        return Err(Refused::MalformedHash {
            tenant: tenant.to_string(),
            hash: hash.chars().take(80).collect(),
        }
        .into());
    }
    let path = local.component_path(tenant, hash);
    if path.exists() {
        return Ok(path);
    }
    let bytes = shared
        .shared_component(tenant, hash)
        .await?
        .with_context(|| format!("tenant `{tenant}`: version {hash} is not in the shared store"))?;
    let bytes = check_bytes(tenant, hash, bytes).await?;
    local.put_component(tenant, hash, &bytes)
}
