//! The WebAssembly side: one wasmtime [`Engine`], adapters compiled once (and cached on disk),
//! a fresh [`Store`] per call instantiated from an `InstancePre` (or, for tenants that opt in, an
//! instance kept from an earlier call: [`InstanceReuse`]), limits on memory, CPU time and host
//! calls, and the host functions the `adapter` world imports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use tracing::Instrument as _;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, UpdateDeadline};

use crate::config::{LimitsConfig, Origin, TenantConfig, parse_origin};
use crate::contract::IncomingEvent;
use crate::egress::EgressClients;
use crate::metrics::{METRICS, Metrics};
use crate::redaction::SecretSet;
use crate::scheduler::{CpuClock, GuestScheduler};
use crate::store::Store;
use crate::telemetry;
use crate::three_dolphins::ThreeDolphinsClient;

mod adapter_log;
mod breaker;
mod call_error;
mod call_state;
mod compile_cache;
mod imports;
mod instance_reuse;
mod limiter;
mod outgoing_http;
mod wasi_interfaces;
mod wit_contract;
mod world_0_1;
pub mod worlds;
pub use breaker::{BreakerView, Breakers, CircuitBreaker};
pub use call_error::{CallError, LoadError};
use call_error::{adapter_error, classify_failure, redact_error};
use call_state::CallStart;
pub use call_state::CallState;
pub use compile_cache::CacheDirError;
use compile_cache::Caching;
pub use instance_reuse::InstanceReuse;
use instance_reuse::LiveInstance;
pub use outgoing_http::{MAX_REQUEST_HEADER_BYTES, MAX_REQUEST_HEADERS, header_pairs};
use wit_contract::to_wit_incoming;
pub use wit_contract::{CallContext, complete_adapter_event, from_wit_type, to_wit_type};
use worlds::{Adapter, AdapterPre, World};

/// Generated from the WIT worlds this host serves: the current one, which is the host's own
/// model (re-exported here), and each earlier one, served through a thin conversion
/// ([`worlds`]).
pub mod bindings {
    /// `dolphin:bridge@0.2.0`, from `wit/adapter.wit`.
    pub mod v0_2 {
        wasmtime::component::bindgen!({
            world: "adapter",
            path: "../wit",
            imports: { default: async | trappable },
            exports: { default: async },
            anyhow: true,
        });
    }

    /// `dolphin:bridge@0.1.0`, from `wit/0.1/adapter.wit` (kept unchanged).
    pub mod v0_1 {
        wasmtime::component::bindgen!({
            world: "adapter",
            path: "../wit/0.1",
            imports: { default: async | trappable },
            exports: { default: async },
            anyhow: true,
        });
    }

    pub use v0_2::*;
}

use bindings::dolphin::bridge::{self as wit, types as wt};

/// The WIT package this host implements.
pub const WIT_PACKAGE: &str = "dolphin:bridge";
/// The newest WIT package version this host implements; [`worlds::World`] lists every one.
pub const WIT_VERSION: &str = "0.2.0";

/// How often the epoch ticks: CPU limits are enforced with this granularity, and a busy guest
/// yields its thread to the scheduler this often (the time slice busy guests share; a call of a
/// lighter tenant does not wait for it, see [`crate::scheduler`]).
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Most bytes of strings and lists a guest may pass the host in one host call, or return from
/// one export call (a webhook's outcome): wasmtime's "hostcall fuel". Past it the call fails
/// with [`CallError::LimitExceeded`]. The largest legitimate argument is an `http.send`
/// body of about 1 MiB, or a 256 KiB key-value value; 40 000 headers (refused by
/// `http.send`'s own caps, after they are copied) take about 2.3 MiB. Wasmtime's default,
/// 128 MiB, let a guest make the host copy its whole memory at every call.
pub const HOSTCALL_FUEL: usize = 4 << 20;

/// Applies the per-host-call data limit ([`HOSTCALL_FUEL`]) to a store.
fn limit_host_calls<T>(store: &mut wasmtime::Store<T>) {
    store.set_hostcall_fuel(HOSTCALL_FUEL);
}

/// Whether `error` is a store refusing another resource handle: the host's resource table full
/// (WASI handles) or wasmtime's count of the store's component handles at its limit (its error
/// type is private: its message identifies it, pinned by a test).
fn is_handle_limit(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<wasmtime::component::ResourceTableError>(),
            Some(wasmtime::component::ResourceTableError::Full)
        )
    }) || format!("{error:#}").contains("store handle limit exceeded")
}

/// Whether `error` is wasmtime refusing to copy more than [`HOSTCALL_FUEL`] bytes in one host
/// call (its error type is private: its message is what identifies it, pinned by a test).
fn is_hostcall_fuel_exhausted(error: &wasmtime::Error) -> bool {
    format!("{error:#}").contains("fuel allocated for hostcalls has been exhausted")
}

/// Limits applied to every adapter call.
#[derive(Debug, Clone)]
pub struct CallLimits {
    /// Linear memory per instance, in bytes.
    pub memory_bytes: usize,
    /// Table elements per table.
    pub table_elements: usize,
    /// Guest CPU time per call (time spent running, not waiting for host calls or a thread).
    pub cpu_time: Duration,
    /// Outbound HTTP requests per call.
    pub http_calls: u32,
    /// Key-value operations per call.
    pub kv_ops: u32,
    /// 3Dolphins look-ups per call.
    pub lookups: u32,
    /// Bytes of log messages per call; more fails the call.
    pub log_bytes: usize,
    /// Largest KV key and value.
    pub kv_key_bytes: usize,
    pub kv_value_bytes: usize,
    /// Largest vendor response body read.
    pub http_response_bytes: usize,
    /// Bytes the tenant's key-value store may hold in all (across calls).
    pub kv_total_bytes: u64,
    /// Events one webhook call may produce.
    pub webhook_events: usize,
    /// Webhook calls of the tenant running at once.
    pub webhook_concurrency: usize,
    /// WASI resource handles one instance may hold at once (host resource table and the
    /// store's component handles).
    pub resource_handles: usize,
}

impl From<&LimitsConfig> for CallLimits {
    fn from(limits: &LimitsConfig) -> Self {
        CallLimits {
            memory_bytes: limits.memory_mib << 20,
            table_elements: limiter::MAX_TABLE_ELEMENTS,
            cpu_time: Duration::from_millis(limits.cpu_ms),
            http_calls: limits.http_calls,
            kv_ops: limits.kv_ops,
            lookups: limits.lookups,
            log_bytes: limits.log_bytes,
            kv_key_bytes: 1 << 10,
            kv_value_bytes: 256 << 10,
            http_response_bytes: limits.http_response_bytes,
            kv_total_bytes: limits.kv_total_bytes,
            webhook_events: limits.webhook_events,
            webhook_concurrency: limits.webhook_concurrency.max(1),
            resource_handles: limits.resource_handles,
        }
    }
}

impl Default for CallLimits {
    /// The configuration's defaults.
    fn default() -> Self {
        CallLimits::from(&LimitsConfig::default())
    }
}

/// The outside world as adapters of one tenant may see it.
pub struct TenantHost {
    pub tenant: String,
    pub owner: String,
    pub config: BTreeMap<String, String>,
    pub allowed_origins: Vec<Origin>,
    /// Whether loopback, link-local and private addresses may be reached.
    pub allow_private_networks: bool,
    /// Secret values of the tenant's config, removed from adapter logs and errors (searched for
    /// as built once, when the tenant is loaded).
    pub secrets: SecretSet,
    /// One breaker per direction: webhooks anyone can send (with `auth = "none"` or a leaked
    /// token) cannot rest the adapter that delivers the tenant's customers' messages.
    pub breakers: Breakers,
    /// Permits for webhook calls running at once (`limits.webhook_concurrency`).
    pub webhook_slots: Arc<tokio::sync::Semaphore>,
    /// Calls of this tenant's current adapter version.
    pub stats: Arc<AdapterStats>,
    /// `[tenants.telemetry] propagate`: the adapter's outbound requests carry a `traceparent`.
    pub propagate_trace: bool,
    pub http_timeout: Duration,
    pub call_timeout: Duration,
    pub limits: CallLimits,
    pub services: Arc<HostServices>,
}

impl TenantHost {
    /// Counts the adapter's own error and turns it into a [`CallError`], redacted of secrets.
    fn adapter_failed(&self, error: wt::AdapterError) -> CallError {
        self.stats.adapter_errors.fetch_add(1, Ordering::Relaxed);
        adapter_error(error, &self.secrets)
    }

    /// The host side of `tenant` as configured, with its breakers and the call counters of its
    /// adapter version.
    pub fn from_config(
        tenant: &TenantConfig,
        breakers: Breakers,
        stats: Arc<AdapterStats>,
        services: Arc<HostServices>,
    ) -> anyhow::Result<TenantHost> {
        let allowed_origins = tenant
            .allowed_hosts
            .iter()
            .map(|h| parse_origin(h).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let limits = CallLimits::from(&tenant.limits);
        Ok(TenantHost {
            tenant: tenant.name.clone(),
            owner: tenant.owner.clone(),
            config: tenant.adapter_values(),
            allowed_origins,
            allow_private_networks: tenant.allow_private_networks,
            secrets: SecretSet::new(tenant.secret_values()),
            breakers,
            webhook_slots: Arc::new(tokio::sync::Semaphore::new(limits.webhook_concurrency)),
            stats,
            propagate_trace: tenant.telemetry.propagate,
            http_timeout: Duration::from_millis(tenant.http_timeout_ms),
            call_timeout: Duration::from_millis(tenant.call_timeout_ms),
            limits,
            services,
        })
    }
}

/// Services shared by every tenant.
pub struct HostServices {
    pub store: Arc<dyn Store>,
    pub egress: EgressClients,
    pub three_dolphins: ThreeDolphinsClient,
}

/// How often a tenant's adapter version was called, and how many calls failed.
#[derive(Debug, Default)]
pub struct AdapterStats {
    pub calls: AtomicU64,
    /// Calls that faulted: a trap, a limit, a timeout.
    pub errors: AtomicU64,
    /// Calls the adapter itself ended with its `adapter-error` (`retry-later` or `permanent`).
    pub adapter_errors: AtomicU64,
    /// Guest CPU time the calls used, in microseconds.
    pub cpu_micros: AtomicU64,
    /// The calls' time from start to answer, summed, in microseconds.
    pub latency_micros: AtomicU64,
}

/// One compiled adapter, ready to instantiate.
#[derive(Clone)]
pub struct LoadedAdapter {
    pub path: PathBuf,
    /// Hex SHA-256 of the component file.
    pub content_hash: String,
    /// The `dolphin:bridge` version the adapter was built against (as its imports name it).
    pub wit_version: String,
    /// The world it runs in.
    pub world: World,
    pre: AdapterPre,
}

impl LoadedAdapter {
    /// The same compiled adapter, loaded from a file of the same content at `path`: it shares
    /// this one's code and instance template instead of holding a copy of its own.
    pub fn at_path(&self, path: &Path) -> LoadedAdapter {
        LoadedAdapter {
            path: path.to_path_buf(),
            ..self.clone()
        }
    }
}

/// The wasmtime engine and linker shared by all adapters.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<CallState>>,
    cache_dir: PathBuf,
    scheduler: Arc<GuestScheduler>,
    /// One permit per instance slot of the pool: a call waits here rather than fail to
    /// instantiate when every slot is taken.
    instance_slots: Arc<tokio::sync::Semaphore>,
    /// Instances all tenants together may keep between calls: half the pool, so idle
    /// instances never hold every slot a fresh call needs.
    parking_places: Arc<tokio::sync::Semaphore>,
}

impl Runtime {
    /// Builds the engine with a pool of `pool_instances` instance slots, starts its epoch ticker
    /// and `threads` adapter threads, and links the host functions.
    pub fn new(
        cache_dir: PathBuf,
        max_wasm_stack: usize,
        threads: usize,
        pool_instances: u32,
    ) -> anyhow::Result<Runtime> {
        compile_cache::prepare_cache_dir(&cache_dir)?;
        crate::scheduler::lower_compile_pool_priority();
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.max_wasm_stack(max_wasm_stack);
        limiter::restrict_features(&mut config);
        config.allocation_strategy(limiter::instance_pool(pool_instances));
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .context("starting the epoch thread")?;
        let mut linker = Linker::new(&engine);
        wasi_interfaces::add_to_linker(&mut linker)?;
        worlds::add_to_linker(&mut linker)?;
        Ok(Runtime {
            linker: Arc::new(linker),
            cache_dir,
            scheduler: Arc::new(GuestScheduler::new(threads, preempter(&engine))?),
            engine,
            instance_slots: Arc::new(tokio::sync::Semaphore::new(pool_instances as usize)),
            parking_places: Arc::new(tokio::sync::Semaphore::new(pool_instances as usize / 2)),
        })
    }

    /// A runtime on this one's engine and instance pool, with `threads` adapter threads of its
    /// own: what runs there (a deploy's fixtures) takes no thread tenants' calls run on, and
    /// adapters compiled by either run in both.
    pub fn with_threads_of_its_own(&self, threads: usize) -> anyhow::Result<Runtime> {
        Ok(Runtime {
            scheduler: Arc::new(GuestScheduler::new(threads, preempter(&self.engine))?),
            ..self.clone()
        })
    }

    /// Compiles (or loads from the cache) the component read from `path`, whose
    /// [`content_hash`] the caller has taken already, and checks its world; a new compilation is
    /// written to the cache.
    pub fn load_bytes(&self, path: &Path, bytes: &[u8], content_hash: String) -> Result<LoadedAdapter, LoadError> {
        self.load(path, bytes, content_hash, Caching::ReadWrite)
    }

    /// As [`Runtime::load_bytes`], without writing a new compilation to the cache: for a
    /// deployed component, which [`Runtime::cache_compiled`] writes once it is accepted.
    pub fn load_bytes_uncached(
        &self,
        path: &Path,
        bytes: &[u8],
        content_hash: String,
    ) -> Result<LoadedAdapter, LoadError> {
        self.load(path, bytes, content_hash, Caching::ReadOnly)
    }

    fn load(
        &self,
        path: &Path,
        bytes: &[u8],
        content_hash: String,
        caching: Caching,
    ) -> Result<LoadedAdapter, LoadError> {
        let not_component = |reason: String| LoadError::NotAComponent {
            path: path.to_path_buf(),
            reason,
        };
        match bytes.get(0..8) {
            Some([0, b'a', b's', b'm', 0x0d, 0, 1, 0]) => {}
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {
                return Err(not_component(
                    "it is a core WebAssembly module; build for wasm32-wasip2 or componentize it".into(),
                ));
            }
            _ => return Err(not_component("it does not start with the component header".into())),
        }
        let component = self
            .compile_cached(&content_hash, bytes, caching)
            .map_err(|e| not_component(format!("{e:#}")))?;
        let (world, wit_version) = self.world_of(path, &component)?;
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
            path: path.to_path_buf(),
            reason: format!("{:#}", anyhow::Error::from(e)),
        };
        let linker = wasi_interfaces::linker_for(&self.engine, &self.linker, &component).map_err(wrong_world)?;
        let instance_pre = linker.instantiate_pre(&component).map_err(wrong_world)?;
        let pre = AdapterPre::new(world, instance_pre).map_err(wrong_world)?;
        Ok(LoadedAdapter {
            path: path.to_path_buf(),
            content_hash,
            wit_version,
            world,
            pre,
        })
    }

    /// Finds which `dolphin:bridge` version the component imports, and the world that serves
    /// it; a version of no served world is refused. A component that imports none of the
    /// package's interfaces is taken for the current world.
    fn world_of(&self, path: &Path, component: &Component) -> Result<(World, String), LoadError> {
        let ty = component.component_type();
        let mut found: Option<(World, String)> = None;
        for (name, _) in ty.imports(&self.engine) {
            let Some(rest) = name.strip_prefix(&format!("{WIT_PACKAGE}/")) else {
                continue;
            };
            let version = rest.split_once('@').map(|(_, v)| v.to_string()).unwrap_or_default();
            let world = World::for_version(&version).filter(|w| found.as_ref().is_none_or(|(f, _)| f == w));
            let Some(world) = world else {
                return Err(LoadError::IncompatibleVersion {
                    path: path.to_path_buf(),
                    found: format!(
                        "{WIT_PACKAGE}@{}",
                        if version.is_empty() { "(unversioned)" } else { &version }
                    ),
                });
            };
            found = Some((world, version));
        }
        Ok(found.unwrap_or_else(|| (World::V0_2, WIT_VERSION.to_string())))
    }

    /// Runs `on-incoming` in a fresh instance, or one `instances` kept.
    pub async fn call_incoming(
        &self,
        adapter: &Arc<LoadedAdapter>,
        host: Arc<TenantHost>,
        instances: &Arc<InstanceReuse>,
        ctx: CallContext,
        event: &IncomingEvent,
    ) -> Result<(), CallError> {
        let event = to_wit_incoming(event);
        let tenant = host.clone();
        self.run(
            adapter,
            host,
            instances,
            ctx,
            Export::OnIncoming,
            |bindings, store, ctx| Box::pin(async move { bindings.call_on_incoming(store, &ctx, &event).await }),
        )
        .await
        .and_then(|result| result.map_err(|e| tenant.adapter_failed(e)))
    }

    /// Runs `on-vendor-webhook` in a fresh instance, or one `instances` kept.
    pub async fn call_webhook(
        &self,
        adapter: &Arc<LoadedAdapter>,
        host: Arc<TenantHost>,
        instances: &Arc<InstanceReuse>,
        ctx: CallContext,
        request: wt::WebhookRequest,
    ) -> Result<wt::WebhookOutcome, CallError> {
        let tenant = host.clone();
        self.run(
            adapter,
            host,
            instances,
            ctx,
            Export::OnVendorWebhook,
            |bindings, store, ctx| {
                Box::pin(async move { bindings.call_on_vendor_webhook(store, &ctx, &request).await })
            },
        )
        .await
        .and_then(|result| result.map_err(|e| tenant.adapter_failed(e)))
    }

    /// Runs `call` on the adapter threads in an instance `instances` kept, else in a new store
    /// with the tenant's limits, unless the breaker `breaker` picks is open. A call that ends
    /// with the adapter's own answer gives its instance back to `instances`.
    async fn run<R: Send + 'static>(
        &self,
        adapter: &Arc<LoadedAdapter>,
        host: Arc<TenantHost>,
        instances: &Arc<InstanceReuse>,
        ctx: CallContext,
        export: Export,
        call: impl for<'a> FnOnce(
            &'a Adapter,
            &'a mut wasmtime::Store<CallState>,
            wt::CallContext,
        ) -> std::pin::Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>
        + Send
        + 'static,
    ) -> Result<R, CallError> {
        // Entered whenever the guest runs: host calls' spans are its children.
        let span = telemetry::span(|| {
            tracing::info_span!("adapter.call", tenant = %ctx.tenant, delivery_id = %ctx.delivery_id,
                attempt = ctx.attempt, adapter.export = export.name(), adapter.world = %adapter.wit_version,
                outcome = tracing::field::Empty, error.type = tracing::field::Empty,
                otel.status_code = tracing::field::Empty)
        });
        if let Err(left) = export.breaker(&host.breakers).admit() {
            Metrics::count(&METRICS.circuit_open, &ctx.tenant, "refused");
            span.record("outcome", "circuit_open");
            telemetry::record_error(&span, "circuit_open");
            return Err(CallError::CircuitOpen(left.as_millis().max(1) as u64));
        }
        let started = std::time::Instant::now();
        let call_timeout = host.call_timeout;
        let cpu_limit = host.limits.cpu_time;
        // Host calls that wait for the network run here, on the caller's runtime: its threads
        // are not the ones guests keep busy.
        let io = tokio::runtime::Handle::current();
        let cpu_clock = Arc::<CpuClock>::default();
        let start = CallStart {
            host: host.clone(),
            delivery_id: ctx.delivery_id.clone(),
            io,
            cpu_clock: cpu_clock.clone(),
            lease: ctx.lease.clone(),
        };
        let kept = instances.take();
        let (engine, slots) = (self.engine.clone(), self.instance_slots.clone());
        let (instances, places) = (instances.clone(), self.parking_places.clone());
        let (adapter, wit_ctx) = (adapter.clone(), ctx.to_wit());
        let work = async move {
            let mut live = match kept {
                Some(mut kept) => {
                    kept.store.data_mut().begin(start);
                    prepare_for_call(&mut kept.store);
                    kept
                }
                None => instantiate(&engine, &slots, &adapter, CallState::new(start), cpu_limit).await?,
            };
            let result = call(&live.adapter, &mut live.store, wit_ctx).await;
            let value = result.map_err(|e| classify_failure(e, live.store.data()))?;
            live.calls += 1;
            instances.give_back(live, &places);
            Ok(value)
        };
        // Dropping the handle (at the timeout, or when our caller goes away) cancels the call.
        let task = self
            .scheduler
            .spawn(&ctx.tenant, cpu_clock.clone(), work.instrument(span.clone()));
        let result = match tokio::time::timeout(call_timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(failed)) => Err(CallError::Trapped(format!(
                "the host failed while running the call: {failed}"
            ))),
            Err(_) => Err(CallError::Timeout(call_timeout.as_millis() as u64)),
        };
        export.breaker(&host.breakers).record(&result.as_ref().map(drop));
        let result = result.map_err(|e| redact_error(e, &host.secrets));
        host.stats.calls.fetch_add(1, Ordering::Relaxed);
        let cpu_micros = u64::try_from(cpu_clock.used().as_micros()).unwrap_or(u64::MAX);
        host.stats.cpu_micros.fetch_add(cpu_micros, Ordering::Relaxed);
        let latency_micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        host.stats.latency_micros.fetch_add(latency_micros, Ordering::Relaxed);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => {
                host.stats.errors.fetch_add(1, Ordering::Relaxed);
                telemetry::record_error(&span, e.kind());
                e.kind()
            }
        };
        span.record("outcome", outcome);
        Metrics::count(&METRICS.adapter_calls, &ctx.tenant, outcome);
        Metrics::add_cpu(&ctx.tenant, cpu_clock.used());
        Metrics::observe_wait(&ctx.tenant, cpu_clock.waited());
        result
    }
}

/// The adapter export a call runs: its name, and the circuit breaker that counts its failures.
#[derive(Debug, Clone, Copy)]
enum Export {
    OnIncoming,
    OnVendorWebhook,
}

impl Export {
    fn name(self) -> &'static str {
        match self {
            Export::OnIncoming => "on-incoming",
            Export::OnVendorWebhook => "on-vendor-webhook",
        }
    }

    fn breaker(self, breakers: &Breakers) -> &CircuitBreaker {
        match self {
            Export::OnIncoming => &breakers.incoming,
            Export::OnVendorWebhook => &breakers.webhooks,
        }
    }
}

/// A new instance of `adapter` in a store of its own, once a slot of the pool is free.
async fn instantiate(
    engine: &Engine,
    slots: &Arc<tokio::sync::Semaphore>,
    adapter: &LoadedAdapter,
    state: CallState,
    cpu_limit: Duration,
) -> Result<LiveInstance, CallError> {
    let slot = slots
        .clone()
        .acquire_owned()
        .await
        .expect("the instance slots are never closed");
    let mut store = new_store(engine, state, cpu_limit);
    let instance = adapter
        .pre
        .instantiate_async(&mut store)
        .await
        .map_err(|e| match &store.data().limiter.hit {
            // Memories or instances over the limits are the adapter's fault, not a passing
            // failure: retrying would hit the same limit.
            Some(limit) => CallError::LimitExceeded(limit.clone()),
            None => CallError::Instantiate(format!("{:#}", anyhow::Error::from(e))),
        })?;
    Ok(LiveInstance {
        store,
        adapter: instance,
        calls: 0,
        resources_after_first: None,
        _slot: slot,
    })
}

/// What the scheduler calls to make the guest running on a thread yield it: the next epoch.
fn preempter(engine: &Engine) -> impl Fn() + Send + Sync + 'static {
    let engine = engine.weak();
    move || {
        if let Some(engine) = engine.upgrade() {
            engine.increment_epoch();
        }
    }
}

/// A store for one call: the tenant's limits, and a guest that yields at every epoch tick and
/// fails past `cpu_limit` of its own running time.
fn new_store(engine: &Engine, state: CallState, cpu_limit: Duration) -> wasmtime::Store<CallState> {
    let handles = state.host.limits.resource_handles;
    let mut store = wasmtime::Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    store.set_max_component_handles(handles);
    prepare_for_call(&mut store);
    store.epoch_deadline_callback(move |mut store| {
        let state = store.data_mut();
        if state.guest_time() > cpu_limit {
            let limit = format!("CPU time limit of {} ms", cpu_limit.as_millis());
            state.limit_hit = Some(limit.clone());
            return Err(wasmtime::Error::msg(limit));
        }
        // Yield at every tick: the scheduler then gives the thread to whoever should run next.
        Ok(UpdateDeadline::Yield(1))
    });
    store
}

/// Limits that count per call, from zero: data per host call, and the first epoch deadline.
fn prepare_for_call(store: &mut wasmtime::Store<CallState>) {
    limit_host_calls(store);
    store.set_epoch_deadline(1);
}

/// The hex SHA-256 of an adapter file: what identifies a version of it, and keys its compiled
/// copies (in memory and in the compile cache).
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::call_error::hostcall_limit;
    use super::*;

    /// A component whose `run(len)` passes the host import `take` a `list<u8>` of `len` bytes
    /// (its memory holds 6 MiB).
    const PASSES_A_LIST: &str = r#"
        (component
          (import "take" (func $take (param "data" (list u8))))
          (core module $libc (memory (export "memory") 96))
          (core instance $libc (instantiate $libc))
          (core func $take_lowered (canon lower (func $take) (memory (core memory $libc "memory"))))
          (core module $main
            (import "host" "take" (func $take (param i32 i32)))
            (func (export "run") (param $len i32) (call $take (i32.const 0) (local.get $len))))
          (core instance $main (instantiate $main
            (with "host" (instance (export "take" (func $take_lowered))))))
          (core func $run (alias core export $main "run"))
          (func (export "run") (param "len" u32) (canon lift (core func $run))))
    "#;

    /// Calls `run(len)` of [`PASSES_A_LIST`] in a store limited as adapter calls are; the
    /// bytes the host received.
    fn pass_a_list(len: u32) -> Result<usize, wasmtime::Error> {
        let runtime = Runtime::new(std::env::temp_dir().join("dolphin-bridge-test-cache"), 512 << 10, 1, 4).unwrap();
        let component = Component::new(&runtime.engine, wat::parse_str(PASSES_A_LIST).unwrap()).unwrap();
        let mut linker = Linker::<usize>::new(&runtime.engine);
        linker
            .root()
            .func_wrap("take", |mut store, (data,): (Vec<u8>,)| {
                *store.data_mut() = data.len();
                Ok(())
            })
            .unwrap();
        let mut store = wasmtime::Store::new(&runtime.engine, 0usize);
        // The engine interrupts at every epoch tick; this test runs no guest code of note.
        store.set_epoch_deadline(1 << 40);
        limit_host_calls(&mut store);
        let instance = linker.instantiate(&mut store, &component).unwrap();
        let run = instance.get_typed_func::<(u32,), ()>(&mut store, "run").unwrap();
        run.call(&mut store, (len,))?;
        Ok(*store.data())
    }

    #[test]
    fn a_host_call_may_pass_the_largest_legitimate_argument_but_not_more_than_the_fuel() {
        // A 1 MiB HTTP body (with room to spare) passes.
        assert_eq!(pass_a_list(2 << 20).unwrap(), 2 << 20);
        assert_eq!(pass_a_list(HOSTCALL_FUEL as u32).unwrap(), HOSTCALL_FUEL);
        let error = pass_a_list(HOSTCALL_FUEL as u32 + 1).unwrap_err();
        assert!(is_hostcall_fuel_exhausted(&error), "{error:#}");
        assert_eq!(hostcall_limit(), "host-call data limit of 4 MiB per host call");
    }

    #[test]
    fn refuses_core_modules_and_garbage() {
        let runtime = Runtime::new(std::env::temp_dir().join("dolphin-bridge-test-cache"), 512 << 10, 1, 4).unwrap();
        let core = b"\0asm\x01\0\0\0";
        let err = runtime
            .load_bytes(Path::new("m.wasm"), core, content_hash(core))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("core WebAssembly module"), "{err}");
        let err = runtime
            .load_bytes(Path::new("g.wasm"), b"garbage!", content_hash(b"garbage!"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not a WebAssembly component"), "{err}");
    }
}
