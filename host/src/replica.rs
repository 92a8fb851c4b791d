//! The replica directory: every serving process names itself with a [`ReplicaId`] and writes a
//! heartbeat to the store ([`ReplicaStatus`]: when it started, when it was last seen, where it
//! listens, and which adapter version it serves per tenant), so `/admin/adapters` on any replica
//! sharing the store shows which version each replica serves.
//!
//! A heartbeat is written at start, every [`HEARTBEAT_EVERY`], and as soon as the adapter
//! versions this process serves change (a reload, a deploy or a rollback activated something).
//! A replica not seen for [`STALE_AFTER`] is reported stale; the store forgets it after
//! [`FORGET_AFTER`].

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::registry::AdapterRegistry;
use crate::store::Store;

/// How often a replica writes its heartbeat when nothing changes.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// How often a replica looks for a change in the adapter versions it serves (in memory).
const CHANGE_CHECK_EVERY: Duration = Duration::from_millis(250);
/// A replica not seen for this long is reported `stale`.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
/// A replica not seen for this long is deleted from the directory.
pub const FORGET_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// The name of one serving process: `{hostname}-{pid}-{suffix}`, the suffix six random hex
/// digits (so a restarted process that got the same pid is still another replica).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReplicaId(String);

impl ReplicaId {
    /// A new id for this process.
    pub fn generate() -> ReplicaId {
        let suffix: u32 = rand::rng().random_range(0..0x100_0000);
        ReplicaId(format!("{}-{}-{suffix:06x}", hostname(), std::process::id()))
    }

    /// This process's id, generated on first use.
    pub fn current() -> &'static ReplicaId {
        static CURRENT: OnceLock<ReplicaId> = OnceLock::new();
        CURRENT.get_or_init(ReplicaId::generate)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The host's name, or `localhost` when it has none that can be read.
fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length, which is what is passed.
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    match std::str::from_utf8(&buffer[..end]) {
        Ok(name) if result == 0 && !name.is_empty() => name.to_string(),
        _ => "localhost".to_string(),
    }
}

/// The adapter version a replica serves for one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServedAdapter {
    pub tenant: String,
    /// Hex SHA-256 of the component.
    pub content_hash: String,
    /// When this replica loaded it.
    #[serde(with = "crate::deployments::rfc3339")]
    pub loaded_at: DateTime<Utc>,
}

/// One replica as the directory knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    pub replica_id: String,
    /// When the process started (epoch ms).
    pub started_at: i64,
    /// When its last heartbeat was written (epoch ms).
    pub last_seen: i64,
    /// The address it listens on.
    pub listen: String,
    /// The adapter version it serves per tenant, in tenant order.
    pub adapters: Vec<ServedAdapter>,
    /// Not seen for [`STALE_AFTER`]: set by [`Store::replicas`], ignored by
    /// [`Store::heartbeat`].
    pub stale: bool,
}

impl ReplicaStatus {
    /// Whether a replica last seen at `last_seen` is stale at `now` (epoch ms).
    pub fn is_stale(last_seen: i64, now: i64) -> bool {
        now - last_seen > STALE_AFTER.as_millis() as i64
    }

    /// The `adapters` column: the served versions as JSON.
    pub(crate) fn adapters_json(&self) -> String {
        serde_json::to_string(&self.adapters).expect("served adapters serialize")
    }

    /// Parses the `adapters` column; an unreadable one reads as none.
    pub(crate) fn parse_adapters(json: &str) -> Vec<ServedAdapter> {
        serde_json::from_str(json).unwrap_or_default()
    }
}

/// The adapter versions `registry` serves now, in tenant order.
pub fn served_adapters(registry: &AdapterRegistry) -> Vec<ServedAdapter> {
    let mut served: Vec<ServedAdapter> = registry
        .snapshot()
        .all()
        .iter()
        .map(|t| ServedAdapter {
            tenant: t.name.clone(),
            content_hash: t.adapter.content_hash.clone(),
            loaded_at: t.loaded_at,
        })
        .collect();
    served.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    served
}

/// Writes this process's heartbeat until `shutdown`: at once, every [`HEARTBEAT_EVERY`], and
/// right after the versions it serves change. A failed write is logged and tried again at the
/// next beat.
pub async fn run_heartbeat(
    store: Arc<dyn Store>,
    registry: Arc<AdapterRegistry>,
    listen: SocketAddr,
    shutdown: CancellationToken,
) {
    let id = ReplicaId::current();
    let started_at = clock::now_ms();
    let mut written: Option<(Vec<ServedAdapter>, tokio::time::Instant)> = None;
    loop {
        let adapters = served_adapters(&registry);
        let due = match &written {
            None => true,
            Some((before, at)) => *before != adapters || at.elapsed() >= HEARTBEAT_EVERY,
        };
        if due {
            let status = ReplicaStatus {
                replica_id: id.to_string(),
                started_at,
                last_seen: clock::now_ms(),
                listen: listen.to_string(),
                adapters: adapters.clone(),
                stale: false,
            };
            match store.heartbeat(&status).await {
                Ok(()) => written = Some((adapters, tokio::time::Instant::now())),
                Err(e) => {
                    tracing::warn!(replica = %id, error = format!("{e:#}"), "cannot write the replica heartbeat");
                    // Try again at the next beat, not at the next change check.
                    written = Some((adapters, tokio::time::Instant::now()));
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(CHANGE_CHECK_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_the_host_and_process_and_differ_per_generation() {
        let (a, b) = (ReplicaId::generate(), ReplicaId::generate());
        assert_ne!(a, b);
        let pid = format!("-{}-", std::process::id());
        assert!(a.as_str().contains(&pid), "{a}");
        assert_eq!(ReplicaId::current(), ReplicaId::current());
    }

    #[test]
    fn a_replica_is_stale_after_thirty_seconds_unseen() {
        assert!(!ReplicaStatus::is_stale(1_000, 1_000 + 30_000));
        assert!(ReplicaStatus::is_stale(1_000, 1_000 + 30_001));
    }
}
