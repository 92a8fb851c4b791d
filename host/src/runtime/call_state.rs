//! The state one adapter call runs with: WASI with no capabilities, its limits and counters,
//! and the tenant it runs for.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::TenantHost;
use super::bindings::dolphin::bridge::types as wt;
use super::limiter::AdapterLimiter;
use super::outgoing_http::OutgoingHttp;
use crate::clock::Deadline;
use crate::scheduler::CpuClock;

/// What identifies one call to the store it runs in.
pub(super) struct CallStart {
    pub(super) host: Arc<TenantHost>,
    pub(super) delivery_id: String,
    pub(super) io: tokio::runtime::Handle,
    pub(super) cpu_clock: Arc<CpuClock>,
    pub(super) lease: Option<Arc<Deadline>>,
}

/// Per-call state of a store: WASI with no capabilities, limits, counters, and the tenant.
pub struct CallState {
    pub(super) wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub(super) limiter: AdapterLimiter,
    pub(super) host: Arc<TenantHost>,
    pub(super) delivery_id: String,
    /// The runtime that performs host calls which wait for the network.
    pub(super) io: tokio::runtime::Handle,
    /// Time the call's future spent being polled: the guest running, not waiting.
    pub(super) cpu_clock: Arc<CpuClock>,
    /// The lease of the delivery the call makes, if any (see [`CallContext::lease`]).
    ///
    /// [`CallContext::lease`]: crate::runtime::CallContext::lease
    pub(super) lease: Option<Arc<Deadline>>,
    /// The call's outbound HTTP, through `http.send` or wasi:http: its budget and policy.
    pub(super) http: OutgoingHttp,
    pub(super) http_ctx: WasiHttpCtx,
    pub(super) kv_ops: u32,
    pub(super) lookups: u32,
    pub(super) log_bytes: usize,
    pub(super) limit_hit: Option<String>,
}

impl CallState {
    pub(super) fn new(start: CallStart) -> Self {
        let CallStart {
            host,
            delivery_id,
            io,
            cpu_clock,
            lease,
        } = start;
        // No preopened directories, environment, arguments, sockets or name look-ups.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(host.limits.resource_handles);
        CallState {
            wasi,
            table,
            limiter: AdapterLimiter::new(host.limits.memory_bytes, host.limits.table_elements),
            http: OutgoingHttp::new(host.clone(), io.clone(), lease.clone(), delivery_id.clone()),
            http_ctx: WasiHttpCtx::new(),
            host,
            delivery_id,
            io,
            cpu_clock,
            lease,
            kv_ops: 0,
            lookups: 0,
            log_bytes: 0,
            limit_hit: None,
        }
    }

    /// Starts a new call in an instance an earlier call of the tenant used: what the guest
    /// holds (WASI, its resources, the memory it has grown) carries over; the call's identity,
    /// counters, limits hit and clock start again.
    pub(super) fn begin(&mut self, start: CallStart) {
        self.http = OutgoingHttp::new(
            start.host.clone(),
            start.io.clone(),
            start.lease.clone(),
            start.delivery_id.clone(),
        );
        self.host = start.host;
        self.delivery_id = start.delivery_id;
        self.io = start.io;
        self.cpu_clock = start.cpu_clock;
        self.lease = start.lease;
        self.kv_ops = 0;
        self.lookups = 0;
        self.log_bytes = 0;
        self.limit_hit = None;
        self.limiter.hit = None;
    }

    /// The WASI resources the guest holds now (entries of the host's resource table).
    pub(super) fn resources_held(&mut self) -> usize {
        self.table.iter_mut().count()
    }

    pub(super) fn guest_time(&self) -> Duration {
        self.cpu_clock.used()
    }

    /// Runs `work` on the I/O runtime; dropping the returned future cancels it.
    pub(super) fn on_io_runtime<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> impl Future<Output = anyhow::Result<T>> + Send + 'static {
        let task = tokio_util::task::AbortOnDropHandle::new(self.io.spawn(work));
        async move { task.await.context("a host call failed") }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
        }
    }
}

impl wt::Host for CallState {}
