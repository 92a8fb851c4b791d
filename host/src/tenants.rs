//! Which tenant an event belongs to: `owner` (optionally narrowed by `channel`) -> tenant, over
//! one immutable snapshot of the configuration.

use std::collections::HashMap;
use std::sync::Arc;

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
