//! The live set of tenants and their compiled adapters, swapped atomically as a whole, and its
//! reload when the configuration or an adapter file changes (`notify`, SIGHUP, admin endpoint).
//!
//! A request takes one snapshot and keeps it to the end, so it finishes on the version it
//! started with. A reload compiles off the request path; a broken adapter file keeps the
//! previous version serving, and an invalid configuration is rejected whole.
//!
//! Versions deployed over HTTP ([`AdapterRegistry::deploy`], [`AdapterRegistry::rollback`]) go
//! through the same swap; the rules between a tenant's configured file and its deployed
//! versions are in [`crate::deployments`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;

use crate::config::{Config, TenantConfig};
use crate::deployments::DeploymentStore;
use crate::metrics::{METRICS, Metrics};
use crate::runtime::{AdapterStats, Breakers, HostServices, InstanceReuse, LoadedAdapter, Runtime, TenantHost};
use crate::tenants::{CanaryArm, Tenant, TenantSet};

mod canary;
mod canary_policy;
mod deploy;
mod file_hashes;
mod follow;
mod history;
mod watcher;

pub use canary::{ArmStatus, CanaryStatus};
pub use canary_policy::{CanaryPolicy, Verdict};
pub use deploy::{AdapterSource, AdapterVersion, DeployError};
pub use history::{HISTORY_LEN, RegistryEvent, RegistryEventKind, TENANT_HISTORY_LEN};
pub use watcher::ChangeWatcher;
use watcher::normalize;

/// Threads deploy fixtures run on, shared by every tenant's deploys.
const FIXTURE_THREADS: usize = 1;

/// Owns the current [`TenantSet`]; readers take a snapshot and keep it for a whole request.
pub struct AdapterRegistry {
    runtime: Runtime,
    /// The runtime deploy fixtures run in: the same engine, with a thread of its own.
    fixture_runtime: Runtime,
    services: Arc<HostServices>,
    config_path: PathBuf,
    current: ArcSwap<TenantSet>,
    /// Compiled adapters by content hash, so an unchanged file is never compiled again, and
    /// files of the same content (under other paths) share one compiled copy.
    compiled: std::sync::Mutex<HashMap<String, Arc<LoadedAdapter>>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Circuit breaker settings: consecutive faults, cooldown.
    breaker: (u32, Duration),
    /// Call counts by (tenant, adapter content hash): kept across reloads that keep the version.
    stats: std::sync::Mutex<HashMap<(String, String), Arc<AdapterStats>>>,
    /// The configuration the current snapshot was built from.
    config: ArcSwap<Config>,
    /// Deployed adapter versions.
    deployments: DeploymentStore,
    /// The last [`HISTORY_LEN`] reloads, and per tenant its last [`TENANT_HISTORY_LEN`] loads,
    /// deploys, rollbacks and canaries and apart its last [`TENANT_HISTORY_LEN`] rejected deploys.
    history: std::sync::Mutex<history::History>,
    /// Adapter files' hashes, for listing versions without reading the files again.
    file_hashes: file_hashes::FileHashes,
    /// Running canaries' call counts when they started here, by tenant.
    canary_baselines: std::sync::Mutex<HashMap<String, canary::Baseline>>,
    /// The figures the last check of each running canary decided on (every replica's, on a
    /// shared store), by tenant.
    canary_figures: std::sync::Mutex<HashMap<String, (String, crate::store::CanaryFigures)>>,
}

/// What a reload did.
#[derive(Debug, Default, serde::Serialize)]
pub struct ReloadReport {
    /// Tenants whose adapter version changed or that were added.
    pub loaded: Vec<String>,
    /// Tenants whose new adapter file was rejected; they keep their previous version.
    pub kept_previous: Vec<String>,
    pub removed: Vec<String>,
}

impl AdapterRegistry {
    /// Compiles every tenant's adapter and builds the first snapshot; any failure is an error.
    pub fn load(runtime: Runtime, services: Arc<HostServices>, config: &Config) -> anyhow::Result<Self> {
        let registry = AdapterRegistry {
            fixture_runtime: runtime.with_threads_of_its_own(FIXTURE_THREADS)?,
            runtime,
            services,
            config_path: config.source.clone(),
            current: ArcSwap::from_pointee(TenantSet::default()),
            compiled: Default::default(),
            reloading: Default::default(),
            breaker: (
                config.adapters.breaker_failures,
                Duration::from_millis(config.adapters.breaker_cooldown_ms),
            ),
            stats: Default::default(),
            config: ArcSwap::from_pointee(config.clone()),
            deployments: DeploymentStore::new(
                config.deployments.dir.clone().context("deployments dir")?,
                config.deployments.keep,
            ),
            history: Default::default(),
            file_hashes: Default::default(),
            canary_baselines: Default::default(),
            canary_figures: Default::default(),
        };
        let (set, _) = registry.build_set(config, None)?;
        registry.current.store(Arc::new(set));
        registry.prune_compiled();
        Ok(registry)
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

    /// Re-reads the configuration file and every adapter file, and swaps in the result.
    /// An invalid configuration is rejected whole; a broken adapter file keeps its tenant on the
    /// version it had.
    pub async fn reload(self: &Arc<Self>) -> anyhow::Result<ReloadReport> {
        let _one_at_a_time = self.reloading.lock().await;
        let this = self.clone();
        let result = tokio::task::spawn_blocking(move || -> anyhow::Result<ReloadReport> {
            let config = Config::load(&this.config_path)?;
            let previous = this.snapshot();
            let (set, mut report) = this.build_set(&config, Some(&previous))?;
            let now: HashSet<&str> = set.all().iter().map(|t| t.name.as_str()).collect();
            report.removed = previous
                .all()
                .iter()
                .filter(|t| !now.contains(t.name.as_str()))
                .map(|t| t.name.clone())
                .collect();
            this.current.store(Arc::new(set));
            let configured: HashSet<PathBuf> = config.tenants.iter().map(|t| t.adapter.clone()).collect();
            this.config.store(Arc::new(config));
            this.prune_compiled();
            // Forget the files no tenant names any more.
            this.file_hashes.retain(|path| configured.contains(path));
            Ok(report)
        })
        .await
        .context("the reload task failed")?;
        match &result {
            Ok(report) => {
                self.record(RegistryEventKind::ReloadOk, None, None, None);
                tracing::info!(
                    loaded = ?report.loaded, kept_previous = ?report.kept_previous, removed = ?report.removed,
                    "configuration reloaded"
                )
            }
            Err(e) => {
                self.record(RegistryEventKind::ReloadRejected, None, None, Some(format!("{e:#}")));
                METRICS.config_rejected.inc();
                tracing::error!(
                    error = format!("{e:#}"),
                    "configuration reload rejected; the previous one keeps serving"
                );
            }
        }
        result
    }

    /// Builds a tenant set from `config`. With `previous`, a tenant whose adapter file cannot be
    /// loaded keeps its previous adapter; without one (or for a new tenant) that is an error.
    fn build_set(&self, config: &Config, previous: Option<&TenantSet>) -> anyhow::Result<(TenantSet, ReloadReport)> {
        let mut report = ReloadReport::default();
        let mut tenants = Vec::with_capacity(config.tenants.len());
        // Each file is read (and hashed) once, however many tenants name it.
        let mut by_path = HashMap::new();
        for tenant in &config.tenants {
            let before = previous.and_then(|p| p.by_name(&tenant.name));
            tenants.push(self.build_tenant(tenant, before, &mut by_path, &mut report)?);
        }
        Ok((TenantSet::new(tenants), report))
    }

    /// `previous` with only `tenant` (of `config`) built again, as [`AdapterRegistry::build_set`]
    /// builds it: every other tenant keeps its circuit breakers, webhook slots and instances,
    /// and no other adapter file is read.
    fn rebuild_tenant(&self, config: &Config, previous: &TenantSet, tenant: &str) -> anyhow::Result<TenantSet> {
        let configured = config
            .tenants
            .iter()
            .find(|t| t.name == tenant)
            .with_context(|| format!("no tenant named `{tenant}`"))?;
        let rebuilt = self.build_tenant(
            configured,
            previous.by_name(tenant),
            &mut HashMap::new(),
            &mut ReloadReport::default(),
        )?;
        Ok(previous.with_replaced(rebuilt))
    }

    /// One tenant of a new set: its active version (deployed, else its configured file), and
    /// while that cannot be loaded the adapter it had (`before`), reported in `report`.
    fn build_tenant(
        &self,
        tenant: &TenantConfig,
        before: Option<&Arc<Tenant>>,
        by_path: &mut HashMap<PathBuf, Arc<LoadedAdapter>>,
        report: &mut ReloadReport,
    ) -> anyhow::Result<Tenant> {
        // An active deployed version wins over the configured file (see `deployments`).
        let versions = self
            .deployments
            .versions(&tenant.name)
            .with_context(|| format!("tenant `{}`: deployed versions", tenant.name))?;
        let path = match versions.active_version() {
            Some(active) => self.deployments.component_path(&tenant.name, &active.content_hash),
            None => tenant.adapter.clone(),
        };
        let adapter = match self.adapter_for(&path, by_path) {
            Ok(adapter) => {
                if before.is_none_or(|b| b.adapter.content_hash != adapter.content_hash) {
                    Metrics::count(&METRICS.reloads, &tenant.name, "loaded");
                    tracing::info!(tenant = %tenant.name, file = %path.display(),
                        hash = %&adapter.content_hash[..12], wit = %adapter.wit_version, "adapter loaded");
                    self.record(
                        RegistryEventKind::AdapterLoaded,
                        Some(&tenant.name),
                        Some(&adapter.content_hash),
                        None,
                    );
                    report.loaded.push(tenant.name.clone());
                }
                adapter
            }
            Err(e) => match before {
                Some(before) if before.adapter.path == path => {
                    Metrics::count(&METRICS.reloads, &tenant.name, "rejected");
                    tracing::error!(tenant = %tenant.name, error = format!("{e:#}"),
                        hash = %&before.adapter.content_hash[..12],
                        "adapter file rejected; the previous version keeps serving");
                    self.record(
                        RegistryEventKind::AdapterRejected,
                        Some(&tenant.name),
                        Some(&before.adapter.content_hash),
                        Some(format!("{e:#}")),
                    );
                    report.kept_previous.push(tenant.name.clone());
                    before.adapter.clone()
                }
                _ => return Err(e.context(format!("tenant `{}`", tenant.name))),
            },
        };
        let loaded_at = match before {
            Some(before) if before.adapter.content_hash == adapter.content_hash => before.loaded_at,
            _ => chrono::Utc::now(),
        };
        let mut built = self.tenant(tenant, adapter, loaded_at)?;
        if let Some(canary) = &versions.canary {
            let path = self.deployments.component_path(&tenant.name, &canary.content_hash);
            match self.adapter_for(&path, by_path) {
                Ok(adapter) => built.canary = Some(self.canary_arm(tenant, &built, adapter, canary.percent)?),
                // The tenant goes on with its active version alone; the canary is not run here.
                Err(e) => {
                    tracing::error!(tenant = %tenant.name, error = format!("{e:#}"),
                        hash = %&canary.content_hash[..12.min(canary.content_hash.len())],
                        "the canary version does not load; the active version serves every ticket");
                    self.record(
                        RegistryEventKind::AdapterRejected,
                        Some(&tenant.name),
                        Some(&canary.content_hash),
                        Some(format!("canary: {e:#}")),
                    );
                }
            }
        }
        self.start_canary_count(&built);
        Ok(built)
    }

    /// The compiled adapter for the file at `path`, compiling it only if its content is new;
    /// `by_path` keeps what this reload already read.
    fn adapter_for(
        &self,
        path: &Path,
        by_path: &mut HashMap<PathBuf, Arc<LoadedAdapter>>,
    ) -> anyhow::Result<Arc<LoadedAdapter>> {
        if let Some(adapter) = by_path.get(path) {
            return Ok(adapter.clone());
        }
        let cannot_read = || format!("cannot read adapter {}", path.display());
        let metadata = std::fs::metadata(path).with_context(cannot_read)?;
        let bytes = std::fs::read(path).with_context(cannot_read)?;
        let hash = file_hashes::hash_file(&bytes);
        // Deployed components are named by their hash; configured files are listed by it.
        if !self.deployments.contains(path) {
            self.file_hashes.remember(path, &metadata, &hash);
        }
        let known = self.compiled.lock().expect("compiled lock").get(&hash).cloned();
        let adapter = match known {
            Some(same) if same.path == path => same,
            Some(same_content) => Arc::new(same_content.at_path(path)),
            None => {
                let adapter = Arc::new(self.runtime.load_bytes(path, &bytes, hash)?);
                self.keep_compiled(adapter.clone());
                adapter
            }
        };
        by_path.insert(path.to_path_buf(), adapter.clone());
        Ok(adapter)
    }

    /// Keeps `adapter` compiled for the tenants that will run it.
    fn keep_compiled(&self, adapter: Arc<LoadedAdapter>) {
        let mut compiled = self.compiled.lock().expect("compiled lock");
        compiled.insert(adapter.content_hash.clone(), adapter);
        METRICS.adapters_compiled.set(compiled.len() as i64);
    }

    /// Forgets compiled adapters no tenant uses any more.
    fn prune_compiled(&self) {
        let set = self.snapshot();
        let in_use: HashSet<String> = set.all().iter().flat_map(|t| t.content_hashes()).collect();
        let mut compiled = self.compiled.lock().expect("compiled lock");
        compiled.retain(|hash, _| in_use.contains(hash));
        METRICS.adapters_compiled.set(compiled.len() as i64);
    }

    /// The call counts of `tenant`'s version `content_hash`, kept across reloads.
    fn stats_of(&self, tenant: &str, content_hash: &str) -> Arc<AdapterStats> {
        self.stats
            .lock()
            .expect("stats lock")
            .entry((tenant.to_string(), content_hash.to_string()))
            .or_default()
            .clone()
    }

    fn tenant(
        &self,
        tenant: &TenantConfig,
        adapter: Arc<LoadedAdapter>,
        loaded_at: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<Tenant> {
        let stats = self.stats_of(&tenant.name, &adapter.content_hash);
        let breakers = Breakers::new(self.breaker.0, self.breaker.1);
        let host = TenantHost::from_config(tenant, breakers, stats, self.services.clone())?;
        Ok(Tenant {
            name: tenant.name.clone(),
            owner: tenant.owner.clone(),
            channels: tenant.channels.iter().map(|c| c.to_ascii_lowercase()).collect(),
            adapter,
            host: Arc::new(host),
            instances: InstanceReuse::new(&tenant.instance_reuse),
            webhook: tenant
                .webhook
                .clone()
                .expect("validated: every tenant has [tenants.webhook]"),
            loaded_at,
            canary: None,
        })
    }

    /// `adapter` as the canary of `current` (built from `tenant`): host state of its own but
    /// for the tenant's webhook slots, which both versions share.
    fn canary_arm(
        &self,
        tenant: &TenantConfig,
        current: &Tenant,
        adapter: Arc<LoadedAdapter>,
        percent: u8,
    ) -> anyhow::Result<CanaryArm> {
        let stats = self.stats_of(&tenant.name, &adapter.content_hash);
        let breakers = Breakers::new(self.breaker.0, self.breaker.1);
        let mut host = TenantHost::from_config(tenant, breakers, stats, self.services.clone())?;
        host.webhook_slots = current.host.webhook_slots.clone();
        Ok(CanaryArm {
            adapter,
            host: Arc::new(host),
            instances: InstanceReuse::new(&tenant.instance_reuse),
            percent,
        })
    }

    /// The files a reload depends on: the configuration and every configured adapter file
    /// (deployed versions change only through `deploy` and `rollback`).
    fn watched_files(&self) -> HashSet<PathBuf> {
        let mut files: HashSet<PathBuf> = self
            .config
            .load()
            .tenants
            .iter()
            .map(|t| normalize(&t.adapter))
            .collect();
        files.insert(normalize(&self.config_path));
        files
    }

    /// Reloads (debounced) whenever `watcher` sees one of the configuration or adapter files
    /// change, until `shutdown`. Changes seen since the watcher started, even before this was
    /// called, count.
    pub async fn watch(
        self: Arc<Self>,
        mut watcher: ChangeWatcher,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<()> {
        const QUIET: Duration = Duration::from_millis(250);
        loop {
            let files = self.watched_files();
            watcher.watch_folders_of(&files);
            let relevant = |paths: &[PathBuf]| {
                paths.iter().any(|p| {
                    // Cheap name test first: the database beside the config changes constantly.
                    p.file_name()
                        .is_some_and(|n| files.iter().any(|f| f.file_name() == Some(n)))
                        && files.contains(&normalize(p))
                })
            };
            // Wait for a change to one of our files...
            loop {
                let paths = tokio::select! {
                    paths = watcher.events.recv() => paths,
                    _ = shutdown.cancelled() => return Ok(()),
                };
                match paths {
                    Some(paths) if relevant(&paths) => break,
                    Some(_) => continue,
                    None => return Ok(()),
                }
            }
            // ...then for a quiet moment on those files (writers that write in pieces).
            let mut deadline = tokio::time::Instant::now() + QUIET;
            loop {
                match tokio::time::timeout_at(deadline, watcher.events.recv()).await {
                    Ok(Some(paths)) if relevant(&paths) => deadline = tokio::time::Instant::now() + QUIET,
                    Ok(Some(_)) => {}
                    Ok(None) => return Ok(()),
                    Err(_) => break,
                }
            }
            // Errors are logged and counted by `reload`; the previous state keeps serving.
            let _ = self.reload().await;
        }
    }
}
