//! Judges the running canaries every `[deployments.canary] check_interval_ms`
//! ([`AdapterRegistry::check_canaries`]), this replica's figures reported under its
//! [`ReplicaId`]. Lives above the registry, beside the other tasks a replica runs.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::heartbeat::ReplicaId;
use crate::registry::AdapterRegistry;

/// Checks the canaries until `shutdown`; a failed check (the store unreachable) is logged and
/// made again at the next interval.
pub async fn watch(registry: Arc<AdapterRegistry>, shutdown: CancellationToken) {
    let replica = ReplicaId::current();
    loop {
        let interval = registry.config().deployments.canary.check_interval();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if let Err(e) = registry.check_canaries(replica.as_str()).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "cannot check the running canaries; trying again"
            );
        }
    }
}
