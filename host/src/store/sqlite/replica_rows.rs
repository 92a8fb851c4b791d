//! The SQLite store's rows of the replica directory (`store::replicas` holds their type): each
//! serving process's heartbeat.

use rusqlite::params;

use super::{Queueing, SqliteStore};
use crate::clock;
use crate::store::{FORGET_AFTER, ReplicaStatus};

pub(super) async fn heartbeat(store: &SqliteStore, replica: &ReplicaStatus) -> anyhow::Result<()> {
    let adapters = replica.adapters_json();
    let replica = replica.clone();
    let forget_before = clock::now_ms() - FORGET_AFTER.as_millis() as i64;
    store
        .write(Queueing::WaitForRoom, move |c, _| {
            c.prepare_cached(
                "INSERT INTO replicas (replica_id, started_at, last_seen, listen, adapters)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (replica_id) DO UPDATE SET started_at = excluded.started_at,
                   last_seen = excluded.last_seen, listen = excluded.listen, adapters = excluded.adapters",
            )?
            .execute(params![
                replica.replica_id,
                replica.started_at,
                replica.last_seen,
                replica.listen,
                adapters
            ])?;
            c.prepare_cached("DELETE FROM replicas WHERE last_seen < ?1")?
                .execute(params![forget_before])
                .map(drop)
        })
        .await
}

pub(super) async fn replicas(store: &SqliteStore) -> anyhow::Result<Vec<ReplicaStatus>> {
    let now = clock::now_ms();
    store
        .read(move |c| {
            c.prepare_cached(
                "SELECT replica_id, started_at, last_seen, listen, adapters FROM replicas ORDER BY replica_id",
            )?
            .query_map([], |row| {
                let last_seen: i64 = row.get(2)?;
                let adapters: String = row.get(4)?;
                Ok(ReplicaStatus {
                    replica_id: row.get(0)?,
                    started_at: row.get(1)?,
                    last_seen,
                    listen: row.get(3)?,
                    adapters: ReplicaStatus::parse_adapters(&adapters),
                    stale: ReplicaStatus::is_stale(last_seen, now),
                })
            })?
            .collect()
        })
        .await
}
