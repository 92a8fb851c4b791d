//! `config`: the tenant's `[tenants.config]`, read-only.

use crate::runtime::{CallState, wit};

impl wit::config::Host for CallState {
    async fn get(&mut self, key: String) -> anyhow::Result<Option<String>> {
        Ok(self.host.config.get(&key).cloned())
    }
}
