//! The live set of tenants and their compiled adapters, swapped atomically as a whole.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;

use crate::config::{Config, parse_origin};
use crate::runtime::{CallLimits, HostServices, LoadedAdapter, Runtime, TenantHost};
use crate::tenants::{Tenant, TenantSet};

/// Owns the current [`TenantSet`]; readers take a snapshot and keep it for a whole request.
pub struct AdapterRegistry {
    runtime: Runtime,
    services: Arc<HostServices>,
    current: ArcSwap<TenantSet>,
}

impl AdapterRegistry {
    /// Compiles every tenant's adapter and builds the first snapshot.
    pub fn load(runtime: Runtime, services: Arc<HostServices>, config: &Config) -> anyhow::Result<Self> {
        let set = build_set(&runtime, &services, config)?;
        Ok(AdapterRegistry {
            runtime,
            services,
            current: ArcSwap::from_pointee(set),
        })
    }

    /// The tenants as they are now.
    pub fn snapshot(&self) -> Arc<TenantSet> {
        self.current.load_full()
    }

    /// The runtime adapters run in.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Services shared by every tenant.
    pub fn services(&self) -> &Arc<HostServices> {
        &self.services
    }
}

/// Builds a tenant set from `config`, compiling each distinct adapter file once.
pub fn build_set(runtime: &Runtime, services: &Arc<HostServices>, config: &Config) -> anyhow::Result<TenantSet> {
    let mut compiled: HashMap<PathBuf, Arc<LoadedAdapter>> = HashMap::new();
    let mut tenants = Vec::with_capacity(config.tenants.len());
    for tenant in &config.tenants {
        let adapter = match compiled.get(&tenant.adapter) {
            Some(adapter) => adapter.clone(),
            None => {
                let adapter = Arc::new(
                    runtime
                        .load(&tenant.adapter)
                        .with_context(|| format!("tenant `{}`", tenant.name))?,
                );
                compiled.insert(tenant.adapter.clone(), adapter.clone());
                adapter
            }
        };
        let allowed_origins = tenant
            .allowed_hosts
            .iter()
            .map(|h| parse_origin(h).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let host = TenantHost {
            tenant: tenant.name.clone(),
            owner: tenant.owner.clone(),
            config: tenant.config.clone(),
            allowed_origins,
            http_timeout: Duration::from_millis(tenant.http_timeout_ms),
            call_timeout: Duration::from_millis(tenant.call_timeout_ms),
            limits: CallLimits::default(),
            services: services.clone(),
        };
        tenants.push(Tenant {
            name: tenant.name.clone(),
            owner: tenant.owner.clone(),
            channels: tenant.channels.iter().map(|c| c.to_ascii_lowercase()).collect(),
            adapter,
            host: Arc::new(host),
        });
    }
    Ok(TenantSet::new(tenants))
}
