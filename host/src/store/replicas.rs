//! The replica directory's records: each serving process's heartbeat ([`ReplicaStatus`]) and the
//! adapter version it serves per tenant ([`ServedAdapter`]). Written by the cluster's heartbeat;
//! read by `/admin/adapters` and the status page on any replica sharing the store.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A replica not seen for this long is reported `stale`.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
/// A replica not seen for this long is deleted from the directory.
pub const FORGET_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// The adapter version a replica serves for one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServedAdapter {
    pub tenant: String,
    /// Hex SHA-256 of the component.
    pub content_hash: String,
    /// When this replica loaded it.
    #[serde(with = "crate::clock::rfc3339")]
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
    /// Not seen for [`STALE_AFTER`]: set by [`Store::replicas`](super::Store::replicas),
    /// ignored by [`Store::heartbeat`](super::Store::heartbeat).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_is_stale_after_thirty_seconds_unseen() {
        assert!(!ReplicaStatus::is_stale(1_000, 1_000 + 30_000));
        assert!(ReplicaStatus::is_stale(1_000, 1_000 + 30_001));
    }
}
