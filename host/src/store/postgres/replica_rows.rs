//! The PostgreSQL store's rows of the replica directory (`store::replicas` holds their type):
//! each serving process's heartbeat.

use super::PostgresStore;
use crate::clock;
use crate::store::{FORGET_AFTER, ReplicaStatus};

pub(super) async fn heartbeat(store: &PostgresStore, replica: &ReplicaStatus) -> anyhow::Result<()> {
    let adapters = replica.adapters_json();
    store
        .write(
            "INSERT INTO replicas (replica_id, started_at, last_seen, listen, adapters)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (replica_id) DO UPDATE SET started_at = excluded.started_at,
               last_seen = excluded.last_seen, listen = excluded.listen, adapters = excluded.adapters",
            &[
                &replica.replica_id,
                &replica.started_at,
                &replica.last_seen,
                &replica.listen,
                &adapters,
            ],
        )
        .await?;
    let forget_before = clock::now_ms() - FORGET_AFTER.as_millis() as i64;
    store
        .write("DELETE FROM replicas WHERE last_seen < $1", &[&forget_before])
        .await?;
    Ok(())
}

pub(super) async fn replicas(store: &PostgresStore) -> anyhow::Result<Vec<ReplicaStatus>> {
    let now = clock::now_ms();
    let rows = store
        .query(
            "SELECT replica_id, started_at, last_seen, listen, adapters FROM replicas ORDER BY replica_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            let last_seen: i64 = row.get(2);
            let adapters: String = row.get(4);
            ReplicaStatus {
                replica_id: row.get(0),
                started_at: row.get(1),
                last_seen,
                listen: row.get(3),
                adapters: ReplicaStatus::parse_adapters(&adapters),
                stale: ReplicaStatus::is_stale(last_seen, now),
            }
        })
        .collect())
}
