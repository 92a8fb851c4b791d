//! `[adapters]`: settings shared by every adapter (compiled-adapter cache, threads, instance pool,
//! breaker).

use std::path::PathBuf;

use serde::Deserialize;

use super::{FieldError, invalid};

/// Largest `adapters.pool_instances`: each instance slot reserves address space for up to 16
/// memories of 4 GiB, and 512 of them already take 32 TiB of the 128 TiB a process has.
pub const MAX_POOL_INSTANCES: u32 = 512;

/// `[adapters]`: settings shared by every adapter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptersConfig {
    /// Where compiled adapters are cached; defaults to `adapter-cache` beside the store.
    pub cache_dir: Option<PathBuf>,
    /// WebAssembly stack per call, in KiB (engine-wide).
    pub max_wasm_stack_kib: usize,
    /// Consecutive failed calls after which a tenant's adapter is rested.
    pub breaker_failures: u32,
    /// How long a tripped tenant rests before one trial call.
    pub breaker_cooldown_ms: u64,
    /// Threads that run adapter code (0: one per CPU but one, at least one). They run at a lower
    /// OS priority than the threads serving HTTP, and are shared between tenants by recent CPU use.
    pub threads: usize,
    /// Adapter instances alive at once, across tenants: the size of wasmtime's instance pool
    /// (a call holds one from instantiation until it returns, host calls included). Calls past
    /// it wait for one, within their call timeout.
    pub pool_instances: u32,
}

impl AdaptersConfig {
    /// How many adapter threads to start. By default one CPU is left to accepting, committing
    /// and delivering, which adapters spinning on every other CPU then cannot slow down much
    /// (`isolation-bench` on 2 CPUs: healthy p99 under attack 2x alone with one adapter thread,
    /// 18x with two).
    pub fn adapter_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |cpus| cpus.get().saturating_sub(1).max(1)),
            n => n,
        }
    }

    pub(super) fn check(&self) -> Result<(), FieldError> {
        if !(1..=MAX_POOL_INSTANCES).contains(&self.pool_instances) {
            return Err(invalid(
                "adapters.pool_instances",
                format!("must be between 1 and {MAX_POOL_INSTANCES}"),
            ));
        }
        Ok(())
    }
}

impl Default for AdaptersConfig {
    fn default() -> Self {
        AdaptersConfig {
            cache_dir: None,
            max_wasm_stack_kib: 512,
            breaker_failures: 10,
            breaker_cooldown_ms: 30_000,
            threads: 0,
            pool_instances: 256,
        }
    }
}
