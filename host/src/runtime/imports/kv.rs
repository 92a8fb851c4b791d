//! `kv`: the tenant's persistent key-value store, namespaced by tenant in the host, with per-call
//! operation counts, key/value size caps and the tenant's total quota. The store is called on the
//! I/O runtime (as HTTP is): a database connection opened for it is then driven by threads that
//! guests do not keep busy.

use tracing::Instrument as _;
use tracing::Span;

use crate::runtime::{CallState, wit};
use crate::store::KvWrite;
use crate::telemetry;

/// The span of one key-value operation (`kv.get`, `kv.set`, `kv.delete`), a child of the
/// call's; it names the operation and its outcome, never the key or the value.
fn kv_span(operation: &'static str) -> Span {
    telemetry::span(|| {
        tracing::info_span!("kv", otel.name = operation, kv.operation = operation,
            outcome = tracing::field::Empty, error.type = tracing::field::Empty,
            otel.status_code = tracing::field::Empty)
    })
}

/// Records how an operation ended on its span.
fn record_outcome(span: &Span, outcome: &Result<&'static str, String>) {
    match outcome {
        Ok(what) => {
            span.record("outcome", *what);
        }
        Err(_) => telemetry::record_error(span, "failed"),
    }
}

impl CallState {
    /// Counts one KV operation; `Err` when over the limit.
    fn count_kv(&mut self) -> Result<(), String> {
        self.kv_ops += 1;
        if self.kv_ops > self.host.limits.kv_ops {
            return Err(format!(
                "limit of {} key-value operations per call reached",
                self.host.limits.kv_ops
            ));
        }
        Ok(())
    }
}

impl wit::kv::Host for CallState {
    async fn get(&mut self, key: String) -> anyhow::Result<Result<Option<Vec<u8>>, String>> {
        let span = kv_span("kv.get");
        if let Err(e) = self.count_kv() {
            telemetry::record_error(&span, "limit_exceeded");
            return Ok(Err(e));
        }
        if key.contains('\0') {
            return Ok(Ok(None)); // never stored: see `NUL_KEY`
        }
        let (store, tenant) = (self.host.services.store.clone(), self.host.tenant.clone());
        let get = async move { store.kv_get(&tenant, &key).await }.instrument(span.clone());
        let result = self.on_io_runtime(get).await?;
        let result = result.map_err(|e| format!("store failure: {e:#}"));
        record_outcome(
            &span,
            &result
                .as_ref()
                .map(|v| if v.is_some() { "found" } else { "not_found" })
                .map_err(String::clone),
        );
        Ok(result)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> anyhow::Result<Result<(), String>> {
        let span = kv_span("kv.set");
        if let Err(e) = self.count_kv() {
            telemetry::record_error(&span, "limit_exceeded");
            return Ok(Err(e));
        }
        let limits = &self.host.limits;
        if let Err(e) = check_entry(&key, &value, limits.kv_key_bytes, limits.kv_value_bytes) {
            telemetry::record_error(&span, "refused");
            return Ok(Err(e));
        }
        let quota = limits.kv_total_bytes;
        let (store, tenant) = (self.host.services.store.clone(), self.host.tenant.clone());
        let set = async move { store.kv_set(&tenant, &key, value, quota).await }.instrument(span.clone());
        let result = self.on_io_runtime(set).await?;
        match &result {
            Ok(KvWrite::Stored) => record_outcome(&span, &Ok("stored")),
            Ok(KvWrite::OverQuota) => telemetry::record_error(&span, "over_quota"),
            Err(_) => telemetry::record_error(&span, "failed"),
        }
        Ok(match result {
            Ok(KvWrite::Stored) => Ok(()),
            Ok(KvWrite::OverQuota) => Err(format!(
                "the tenant's key-value quota of {quota} bytes is reached (limit kv_total_bytes)"
            )),
            Err(e) => Err(format!("store failure: {e:#}")),
        })
    }

    async fn delete(&mut self, key: String) -> anyhow::Result<Result<(), String>> {
        let span = kv_span("kv.delete");
        if let Err(e) = self.count_kv() {
            telemetry::record_error(&span, "limit_exceeded");
            return Ok(Err(e));
        }
        if key.contains('\0') {
            return Ok(Ok(())); // never stored: see `NUL_KEY`
        }
        let (store, tenant) = (self.host.services.store.clone(), self.host.tenant.clone());
        let delete = async move { store.kv_delete(&tenant, &key).await }.instrument(span.clone());
        let result = self.on_io_runtime(delete).await?;
        let result = result.map_err(|e| format!("store failure: {e:#}"));
        record_outcome(&span, &result.as_ref().map(|()| "deleted").map_err(String::clone));
        Ok(result)
    }
}

/// Why a key holding U+0000 is refused: PostgreSQL's text cannot hold it, so the embedded store
/// would take what PostgreSQL fails on every retry. Refused by both (and never found).
const NUL_KEY: &str = "a key must not contain the NUL character (U+0000)";

/// Whether an entry may be stored: its key and value within the tenant's sizes, and no U+0000
/// in the key.
fn check_entry(key: &str, value: &[u8], max_key: usize, max_value: usize) -> Result<(), String> {
    if key.len() > max_key || value.len() > max_value {
        return Err(format!(
            "key or value too large (limits: key {max_key} bytes, value {max_value} bytes)"
        ));
    }
    if key.contains('\0') {
        return Err(NUL_KEY.to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_over_the_sizes_or_with_a_nul_in_the_key_are_refused() {
        assert_eq!(check_entry("k", b"v", 8, 8), Ok(()));
        assert!(check_entry("0123456789", b"v", 8, 8).unwrap_err().contains("too large"));
        assert!(check_entry("k", &[0; 9], 8, 8).unwrap_err().contains("too large"));
        assert_eq!(check_entry("a\0b", b"v", 8, 8), Err(NUL_KEY.to_string()));
        // A NUL in the value is data like any other byte.
        assert_eq!(check_entry("k", b"a\0b", 8, 8), Ok(()));
    }
}
