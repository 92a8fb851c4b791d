//! `log`: adapter log lines, tagged with the tenant and delivery, secrets removed, charged to
//! the call's log budget.

use crate::runtime::adapter_log::{loggable, loggable_fields};
use crate::runtime::{CallState, wit};

impl CallState {
    /// Counts `bytes` of adapter-influenced log text against the call's budget. Logging past
    /// the budget fails the call: a flood costs its own tenant, not the CPU everyone shares.
    pub(super) fn charge_log(&mut self, bytes: usize) -> anyhow::Result<()> {
        self.log_bytes += bytes;
        if self.log_bytes > self.host.limits.log_bytes {
            let limit = format!("log limit of {} bytes per call", self.host.limits.log_bytes);
            self.limit_hit = Some(limit.clone());
            anyhow::bail!(limit);
        }
        Ok(())
    }
}

impl wit::log::Host for CallState {
    async fn log(
        &mut self,
        level: wit::log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> anyhow::Result<()> {
        self.charge_log(message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>())?;
        let secrets = &self.host.secrets;
        let fields = loggable_fields(&fields, secrets);
        let message = loggable(&message, secrets);
        let (tenant, delivery_id) = (&self.host.tenant, &self.delivery_id);
        use wit::log::Level;
        match level {
            Level::Trace => tracing::trace!(target: "adapter", %tenant, %delivery_id, %fields, "{message}"),
            Level::Debug => tracing::debug!(target: "adapter", %tenant, %delivery_id, %fields, "{message}"),
            Level::Info => tracing::info!(target: "adapter", %tenant, %delivery_id, %fields, "{message}"),
            Level::Warn => tracing::warn!(target: "adapter", %tenant, %delivery_id, %fields, "{message}"),
            Level::Error => tracing::error!(target: "adapter", %tenant, %delivery_id, %fields, "{message}"),
        }
        Ok(())
    }
}
