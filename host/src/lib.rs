//! dolphin-bridge: connects the 3Dolphins customer-service platform to live-agent vendors through
//! sandboxed WebAssembly adapters.
//!
//! One module per concern: [`config`] (the TOML file), [`contract`] (the 3Dolphins events),
//! [`server`] (HTTP), [`tenants`] (routing), [`runtime`] (wasmtime and host functions),
//! [`scheduler`] (the threads adapters run on), [`registry`] (the live tenant set), [`redaction`]
//! (secrets kept out of logs and errors), [`store`] (the embedded database), [`clock`] (time that
//! never steps) and [`three_dolphins`] (the 3Dolphins client).

pub mod activity;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod contract;
pub mod deploy_client;
pub mod deployments;
pub mod egress;
pub mod metrics;
pub mod outbox;
pub mod plugin_new;
pub mod plugin_test;
pub mod redaction;
pub mod registry;
pub mod runtime;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod tenants;
pub mod terminal_text;
pub mod three_dolphins;
pub mod webhook_auth;

use std::sync::Arc;

use anyhow::Context;

use config::Config;
use registry::AdapterRegistry;
use runtime::{HostServices, Runtime};

/// Opens the configured store: PostgreSQL when `[store] url` is set (its migrations applied),
/// else the SQLite file at `[store] path`.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn store::Store>> {
    if let Some(url) = &config.store.url {
        return Ok(Arc::new(store::PostgresStore::open(url, config.store.pool_size).await?));
    }
    open_embedded_store(config)
}

/// Opens the configured store for a command (`check`, `dead-letters`): as [`open_store`], but a
/// PostgreSQL schema is only checked, never migrated (commands run against production).
pub async fn open_store_for_command(config: &Config) -> anyhow::Result<Arc<dyn store::Store>> {
    if let Some(url) = &config.store.url {
        return Ok(Arc::new(
            store::PostgresStore::open_for_command(url, config.store.pool_size).await?,
        ));
    }
    open_embedded_store(config)
}

fn open_embedded_store(config: &Config) -> anyhow::Result<Arc<dyn store::Store>> {
    Ok(Arc::new(store::SqliteStore::open_with(
        &config.store.path,
        store::CommitMode::Group,
        config.store.write_queue,
        |_| Ok(()),
    )?))
}

/// Builds the runtime and compiles every tenant's adapter.
pub fn build_registry(config: &Config, store: Arc<dyn store::Store>) -> anyhow::Result<AdapterRegistry> {
    let three_dolphins = three_dolphins::ThreeDolphinsClient::new(config.three_dolphins.clone())?;
    let services = Arc::new(HostServices {
        store,
        egress: egress::EgressClients::new()?,
        three_dolphins,
    });
    let cache_dir = config.adapters.cache_dir.clone().context("adapter cache dir")?;
    let runtime = Runtime::new(
        cache_dir,
        config.adapters.max_wasm_stack_kib << 10,
        config.adapters.adapter_threads(),
        config.adapters.pool_instances,
    )?;
    AdapterRegistry::load(runtime, services, config)
}

/// The property lines a 3Dolphins administrator sets for this bridge: its base URL and the
/// paths it serves. The bridge takes every 3Dolphins -> third-party event on one endpoint, so
/// both paths name it.
pub fn properties(config: &Config) -> String {
    format!(
        "# Where 3Dolphins reaches the bridge\n\
         app.ext.integration.api.base.url={base}\n\
         # Path on the bridge where 3Dolphins sends messages to the third party\n\
         app.ext.integration.api.sendMessage={path}\n\
         # Path on the bridge that receives 3Dolphins' incoming (customer) messages\n\
         app.ext.integration.api.incomingMessage={path}\n",
        base = config.server.public_base_url(),
        path = config.server.incoming_path,
    )
}
