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
pub mod plugin_run;
pub mod plugin_test;
pub mod redaction;
pub mod registry;
pub mod runtime;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod tenants;
pub mod terminal_text;
pub mod three_dolphins;
pub mod webhook_auth;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use config::Config;
use outbox::Outbox;
use registry::{AdapterRegistry, ChangeWatcher};
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

/// The bridge `serve` runs, built from a configuration: its store opened, its adapters compiled
/// and its files watched; [`Bridge::serve`] then serves it.
pub struct Bridge {
    config: Config,
    registry: Arc<AdapterRegistry>,
    outbox: Arc<Outbox>,
    watcher: ChangeWatcher,
    /// One server per SQLite file; processes sharing a PostgreSQL database need no such lock.
    _one_server: Option<store::ServerLock>,
}

impl Bridge {
    /// Opens the store (under the server lock for SQLite, with the last run's leases
    /// released), starts watching the configuration and adapter files, and compiles every
    /// tenant's adapter (versions deployed on other replicas first).
    pub async fn start(config: Config) -> anyhow::Result<Bridge> {
        let one_server = match config.store.url {
            None => Some(store::ServerLock::acquire(&config.store.path)?),
            Some(_) => None,
        };
        let watcher = ChangeWatcher::start(&config)?;
        let store = open_store(&config).await?;
        if one_server.is_some() {
            // Under the server lock, every lease is a dead process's: its deliveries go now, not
            // when their leases would have ended.
            let released = store
                .release_all_leases()
                .await
                .context("releasing the leases of the last run")?;
            if released > 0 {
                tracing::info!(
                    released,
                    "deliveries that were running when the last server stopped are due again"
                );
            }
        }
        // Versions deployed on other replicas load before this one serves.
        deployments::shared::prime(&config, store.as_ref()).await?;
        let registry = Arc::new(build_registry(&config, store.clone())?);
        let outbox = Outbox::new(store, config.delivery.clone());
        Ok(Bridge {
            config,
            registry,
            outbox,
            watcher,
            _one_server: one_server,
        })
    }

    /// The live tenant set (to reload it on a signal).
    pub fn registry(&self) -> &Arc<AdapterRegistry> {
        &self.registry
    }

    /// Serves on `listener` until `shutdown`, with the outbox delivering, the heartbeat and the
    /// deploy follower running and changed files reloaded; then lets running requests and
    /// deliveries finish within `delivery.shutdown_grace_ms`.
    pub async fn serve(self, listener: tokio::net::TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Bridge {
            config,
            registry,
            outbox,
            watcher,
            _one_server,
        } = self;
        let address = listener.local_addr()?;
        let delivery = tokio::spawn(outbox.clone().run(registry.clone(), shutdown.clone()));
        tokio::spawn(cluster::heartbeat::run_heartbeat(
            outbox.store().clone(),
            registry.clone(),
            address,
            shutdown.clone(),
        ));
        tokio::spawn(cluster::deployment_follower::follow(
            outbox.store().clone(),
            registry.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(cluster::canary_watch::watch(registry.clone(), shutdown.clone()));
        let watched = registry.clone();
        let watch_shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = watched.watch(watcher, watch_shutdown).await {
                tracing::error!(
                    error = format!("{e:#}"),
                    "file watching stopped; reload with SIGHUP or POST /admin/reload"
                );
            }
        });
        let state = Arc::new(server::AppState {
            server: config.server.clone(),
            registry,
            outbox,
            admin_token: config.admin.token.clone(),
            metrics_token: config.metrics.token.clone(),
            sessions: Default::default(),
            uploads: server::UploadSlots::new(
                config.deployments.max_uploads,
                config.deployments.max_uploads_per_tenant,
            ),
            auth_throttle: server::AuthThrottle::new(server::ThrottleLimits {
                limit: config.server.auth_failure_limit,
                window: Duration::from_millis(config.server.auth_failure_window_ms),
                max_sources: config.server.auth_failure_sources,
            }),
            refusals: Default::default(),
        });
        let grace = Duration::from_millis(config.delivery.shutdown_grace_ms);
        server::serve(listener, state, shutdown, grace).await?;
        delivery.await.context("the delivery task failed")?;
        Ok(())
    }
}
