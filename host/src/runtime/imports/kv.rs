//! `kv`: the tenant's persistent key-value store, namespaced by tenant in the host, with per-call
//! operation counts, key/value size caps and the tenant's total quota.

use crate::runtime::{CallState, wit};
use crate::store::KvWrite;

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
        if let Err(e) = self.count_kv() {
            return Ok(Err(e));
        }
        let result = self.host.services.store.kv_get(&self.host.tenant, &key).await;
        Ok(result.map_err(|e| format!("store failure: {e:#}")))
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> anyhow::Result<Result<(), String>> {
        if let Err(e) = self.count_kv() {
            return Ok(Err(e));
        }
        let limits = &self.host.limits;
        if key.len() > limits.kv_key_bytes || value.len() > limits.kv_value_bytes {
            return Ok(Err(format!(
                "key or value too large (limits: key {} bytes, value {} bytes)",
                limits.kv_key_bytes, limits.kv_value_bytes
            )));
        }
        let quota = limits.kv_total_bytes;
        let result = self
            .host
            .services
            .store
            .kv_set(&self.host.tenant, &key, value, quota)
            .await;
        Ok(match result {
            Ok(KvWrite::Stored) => Ok(()),
            Ok(KvWrite::OverQuota) => Err(format!(
                "the tenant's key-value quota of {quota} bytes is reached (limit kv_total_bytes)"
            )),
            Err(e) => Err(format!("store failure: {e:#}")),
        })
    }

    async fn delete(&mut self, key: String) -> anyhow::Result<Result<(), String>> {
        if let Err(e) = self.count_kv() {
            return Ok(Err(e));
        }
        let result = self.host.services.store.kv_delete(&self.host.tenant, &key).await;
        Ok(result.map_err(|e| format!("store failure: {e:#}")))
    }
}
