//! `[tenants.limits]` and `[tenants.instance_reuse]`: what one adapter call may use, and whether
//! a tenant's instances are kept between calls.

use serde::Deserialize;

use super::{FieldError, invalid};

/// Largest `instance_reuse.idle`.
pub const MAX_IDLE_INSTANCES: usize = 64;

/// Largest `limits.memory_mib`: the most a 32-bit linear memory holds.
pub const MAX_MEMORY_MIB: usize = 4096;

/// Most look-ups `limits.lookups` may allow per call.
pub const MAX_LOOKUPS_PER_CALL: u32 = 1_000;

/// Fewest and most WASI resource handles `limits.resource_handles` may allow (the most is
/// wasmtime's own default cap on a store's component handles).
pub const RESOURCE_HANDLES_RANGE: std::ops::RangeInclusive<usize> = 16..=100_000;

/// `[tenants.limits]`: what one adapter call may use; every field has a safe default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Linear memory per instance, MiB.
    pub memory_mib: usize,
    /// Guest CPU time per call, ms (time spent running, not waiting for host calls or a thread).
    pub cpu_ms: u64,
    /// Outbound HTTP requests per call.
    pub http_calls: u32,
    /// Key-value operations per call.
    pub kv_ops: u32,
    /// Log bytes per call; logging past it fails the call.
    pub log_bytes: usize,
    /// Largest vendor response body, bytes.
    pub http_response_bytes: usize,
    /// Bytes (keys and values) the tenant's key-value store may hold in all.
    pub kv_total_bytes: u64,
    /// Events one webhook call may produce.
    pub webhook_events: usize,
    /// Webhook calls of the tenant running at once; more are answered 503.
    pub webhook_concurrency: usize,
    /// 3Dolphins look-ups (`three-dolphins.contact` / `history`) per call; at most
    /// [`MAX_LOOKUPS_PER_CALL`], as each one is a request to 3Dolphins with the bridge's token.
    pub lookups: u32,
    /// WASI resource handles (streams, pollables, …) the call's instance may hold at once: host
    /// memory outside `memory_mib`, so bounded on their own; within [`RESOURCE_HANDLES_RANGE`].
    pub resource_handles: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            memory_mib: 128,
            cpu_ms: 2_000,
            http_calls: 32,
            kv_ops: 1_000,
            log_bytes: 64 << 10,
            http_response_bytes: 16 << 20,
            kv_total_bytes: 64 << 20,
            webhook_events: 100,
            webhook_concurrency: 16,
            lookups: 20,
            resource_handles: 4096,
        }
    }
}

impl LimitsConfig {
    /// `field` names a field of the tenant (`tenants[i].…`).
    pub(super) fn check(&self, field: &dyn Fn(&str) -> String) -> Result<(), FieldError> {
        if self.memory_mib == 0 || self.cpu_ms == 0 || self.http_response_bytes == 0 {
            return Err(invalid(
                field("limits"),
                "memory_mib, cpu_ms and http_response_bytes must be above 0",
            ));
        }
        if self.memory_mib > MAX_MEMORY_MIB {
            return Err(invalid(
                field("limits.memory_mib"),
                format!("must be at most {MAX_MEMORY_MIB} (a 32-bit linear memory)"),
            ));
        }
        if self.lookups > MAX_LOOKUPS_PER_CALL {
            return Err(invalid(
                field("limits.lookups"),
                format!("must be at most {MAX_LOOKUPS_PER_CALL}"),
            ));
        }
        if !RESOURCE_HANDLES_RANGE.contains(&self.resource_handles) {
            return Err(invalid(
                field("limits.resource_handles"),
                format!(
                    "must be from {} to {}",
                    RESOURCE_HANDLES_RANGE.start(),
                    RESOURCE_HANDLES_RANGE.end()
                ),
            ));
        }
        Ok(())
    }
}

/// `[tenants.instance_reuse]`: whether calls of the tenant may run in an instance an earlier
/// call of the same tenant and adapter version used. What one call leaves in the guest's memory
/// is then seen by the next: only for adapters that keep nothing of one call's data (README,
/// Security).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InstanceReuseConfig {
    /// Instances kept between calls, at most; 0 (the default) turns reuse off.
    pub idle: usize,
    /// Calls one instance serves before it is dropped for a fresh one.
    pub max_calls: u32,
    /// Milliseconds a kept instance may wait for a call before it is dropped (freeing its pool
    /// slot and memory).
    pub idle_ms: u64,
}

impl Default for InstanceReuseConfig {
    fn default() -> Self {
        InstanceReuseConfig {
            idle: 0,
            max_calls: 1_000,
            idle_ms: 60_000,
        }
    }
}

impl InstanceReuseConfig {
    /// `field` names a field of the tenant (`tenants[i].…`).
    pub(super) fn check(&self, field: &dyn Fn(&str) -> String) -> Result<(), FieldError> {
        if self.idle > MAX_IDLE_INSTANCES {
            return Err(invalid(
                field("instance_reuse.idle"),
                format!("must be at most {MAX_IDLE_INSTANCES}"),
            ));
        }
        if self.max_calls == 0 {
            return Err(invalid(field("instance_reuse.max_calls"), "must be above 0"));
        }
        if self.idle_ms == 0 {
            return Err(invalid(field("instance_reuse.idle_ms"), "must be above 0"));
        }
        Ok(())
    }
}
