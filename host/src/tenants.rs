//! Which tenant an event belongs to: `owner` (optionally narrowed by `channel`) -> tenant, over
//! one immutable snapshot of the configuration; and, while a canary runs, which of the tenant's
//! two versions serves a ticket.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::WebhookConfig;
use crate::runtime::{InstanceReuse, LoadedAdapter, TenantHost};

/// One tenant, ready to serve: its adapter and what the adapter may reach.
pub struct Tenant {
    pub name: String,
    pub owner: String,
    /// Lower-case channels this tenant is narrowed to; empty for all.
    pub channels: Vec<String>,
    pub adapter: Arc<LoadedAdapter>,
    pub host: Arc<TenantHost>,
    /// Instances of `adapter` kept between calls, when the tenant opted in. Held here, not in
    /// `host`, which each kept instance refers to.
    pub instances: Arc<InstanceReuse>,
    /// How its webhook requests are verified.
    pub webhook: WebhookConfig,
    /// When this tenant's current adapter version was swapped in.
    pub loaded_at: chrono::DateTime<chrono::Utc>,
    /// The version serving a share of the tickets beside `adapter`, while a canary runs.
    pub canary: Option<CanaryArm>,
}

/// A canary: a second version of a tenant's adapter serving `percent` of its tickets, with
/// host state of its own (call counters, circuit breakers, kept instances) so that its faults
/// are counted apart and open no breaker of the current version.
pub struct CanaryArm {
    pub adapter: Arc<LoadedAdapter>,
    pub host: Arc<TenantHost>,
    pub instances: Arc<InstanceReuse>,
    /// 1 to 99.
    pub percent: u8,
}

/// Which of a tenant's versions serves a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arm {
    /// The active version.
    Current,
    Canary,
}

/// The version a call runs on, with the host state to run it with.
pub struct Serving<'a> {
    pub arm: Arm,
    pub adapter: &'a Arc<LoadedAdapter>,
    pub host: &'a Arc<TenantHost>,
    pub instances: &'a Arc<InstanceReuse>,
}

impl Tenant {
    /// The content hashes of the versions it runs: the active one and the canary.
    pub fn content_hashes(&self) -> impl Iterator<Item = String> + '_ {
        std::iter::once(self.adapter.content_hash.clone())
            .chain(self.canary.as_ref().map(|c| c.adapter.content_hash.clone()))
    }

    /// The version serving `ticket`: while a canary runs, the canary for the tickets whose
    /// [`canary_bucket`] is below its percent, the current version for the others (and for a
    /// call whose ticket is not known). The same ticket gets the same version for the whole
    /// canary, on every replica.
    pub fn serving(&self, ticket: Option<&str>) -> Serving<'_> {
        match (&self.canary, ticket) {
            (Some(canary), Some(ticket)) if canary_bucket(&canary.adapter.content_hash, ticket) < canary.percent => {
                Serving {
                    arm: Arm::Canary,
                    adapter: &canary.adapter,
                    host: &canary.host,
                    instances: &canary.instances,
                }
            }
            _ => Serving {
                arm: Arm::Current,
                adapter: &self.adapter,
                host: &self.host,
                instances: &self.instances,
            },
        }
    }
}

/// Where `ticket` falls, 0 to 99, for the canary `canary_hash`: a stable hash of both (the
/// same in every process and release), so a conversation stays on one version while a canary
/// runs, and each canary samples other tickets.
pub fn canary_bucket(canary_hash: &str, ticket: &str) -> u8 {
    let digest = Sha256::new()
        .chain_update(canary_hash.as_bytes())
        .chain_update([0])
        .chain_update(ticket.as_bytes())
        .finalize();
    let first = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (first % 100) as u8
}

/// An immutable set of tenants with their routes.
#[derive(Default)]
pub struct TenantSet {
    by_name: HashMap<String, Arc<Tenant>>,
    /// owner -> (channel-specific tenants, catch-all tenant).
    by_owner: HashMap<String, OwnerRoutes>,
}

#[derive(Default)]
struct OwnerRoutes {
    by_channel: HashMap<String, Arc<Tenant>>,
    fallback: Option<Arc<Tenant>>,
}

impl TenantSet {
    /// Builds the routes. Config validation has already refused duplicate routes.
    pub fn new(tenants: Vec<Tenant>) -> TenantSet {
        TenantSet::of_shared(tenants.into_iter().map(Arc::new))
    }

    /// This set with `tenant` in place of the one of its name (or added): every other tenant is
    /// the same one, with its circuit breakers, webhook slots and kept instances.
    pub fn with_replaced(&self, tenant: Tenant) -> TenantSet {
        let tenant = Arc::new(tenant);
        let others = self.by_name.values().filter(|t| t.name != tenant.name).cloned();
        TenantSet::of_shared(others.chain([tenant.clone()]))
    }

    fn of_shared(tenants: impl IntoIterator<Item = Arc<Tenant>>) -> TenantSet {
        let mut set = TenantSet::default();
        for tenant in tenants {
            let routes = set.by_owner.entry(tenant.owner.clone()).or_default();
            if tenant.channels.is_empty() {
                routes.fallback = Some(tenant.clone());
            }
            for channel in &tenant.channels {
                routes.by_channel.insert(channel.clone(), tenant.clone());
            }
            set.by_name.insert(tenant.name.clone(), tenant);
        }
        set
    }

    /// The tenant for an event of `owner` on `channel`: a tenant narrowed to that channel wins
    /// over the owner's catch-all tenant.
    pub fn route(&self, owner: &str, channel: &str) -> Option<&Arc<Tenant>> {
        let routes = self.by_owner.get(owner)?;
        routes
            .by_channel
            .get(&channel.to_ascii_lowercase())
            .or(routes.fallback.as_ref())
    }

    /// Whether any tenant serves `owner`.
    pub fn knows_owner(&self, owner: &str) -> bool {
        self.by_owner.contains_key(owner)
    }

    /// The tenant called `name` (webhook URLs).
    pub fn by_name(&self, name: &str) -> Option<&Arc<Tenant>> {
        self.by_name.get(name)
    }

    /// Every tenant, in name order.
    pub fn all(&self) -> Vec<&Arc<Tenant>> {
        let mut all: Vec<_> = self.by_name.values().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tickets_bucket_is_stable_and_buckets_spread_evenly() {
        let hash = "a".repeat(64);
        // The same in every process and release: a replica and a restart agree on it.
        assert_eq!(canary_bucket(&hash, "T-1"), canary_bucket(&hash, "T-1"));
        // Pinned: replicas of two releases during a rolling upgrade must agree.
        assert_eq!(canary_bucket(&hash, "ticket-42"), 36);
        let below_10 = (0..10_000)
            .filter(|i| canary_bucket(&hash, &format!("T-{i}")) < 10)
            .count();
        assert!((900..1100).contains(&below_10), "{below_10} of 10000 tickets under 10%");
        // Another canary samples other tickets.
        let other = "b".repeat(64);
        let same = (0..1000)
            .filter(|i| canary_bucket(&hash, &format!("T-{i}")) == canary_bucket(&other, &format!("T-{i}")))
            .count();
        assert!(same < 50, "{same} of 1000 tickets in the same bucket for two canaries");
    }
}
