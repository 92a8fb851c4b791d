//! Follows deployments made on other replicas: every [`CHECK_EVERY`] reads the shared store's
//! change counter and, when it moved, lets the registry activate what changed. Lives above both
//! the store and the registry, which is why it is not part of either.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::registry::AdapterRegistry;
use crate::store::Store;

/// How often a replica checks the store for a deploy or rollback made elsewhere.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

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
