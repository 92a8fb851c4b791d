//! The replica directory: every serving process names itself with a [`ReplicaId`] and writes a
//! heartbeat to the store ([`ReplicaStatus`]: when it started, when it was last seen, where it
//! listens, and which adapter version it serves per tenant), so `/admin/adapters` on any replica
//! sharing the store shows which version each replica serves.
//!
//! A heartbeat is written at start, every [`HEARTBEAT_EVERY`], and as soon as the adapter
//! versions this process serves change (a reload, a deploy or a rollback activated something).
//! A replica not seen for [`STALE_AFTER`](crate::store::STALE_AFTER) is reported stale; the
//! store forgets it after [`FORGET_AFTER`](crate::store::FORGET_AFTER).

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::registry::AdapterRegistry;
use crate::store::{ReplicaStatus, ServedAdapter, Store};

/// How often a replica writes its heartbeat when nothing changes.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// How often a replica looks for a change in the adapter versions it serves (in memory).
const CHANGE_CHECK_EVERY: Duration = Duration::from_millis(250);

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
}
