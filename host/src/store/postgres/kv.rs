//! The PostgreSQL store's tenant key-value store (adapters' own data), within each tenant's
//! quota whichever processes write.

use anyhow::Context;

use super::PostgresStore;
use crate::store::KvWrite;

pub(super) async fn get(store: &PostgresStore, tenant: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let rows = store
        .query("SELECT value FROM kv WHERE tenant = $1 AND key = $2", &[&tenant, &key])
        .await?;
    Ok(rows.first().map(|row| row.get(0)))
}

pub(super) async fn set(
    store: &PostgresStore,
    tenant: &str,
    key: &str,
    value: Vec<u8>,
    quota: u64,
) -> anyhow::Result<KvWrite> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    let size = (key.len() + value.len()) as i64;
    // The key's size now, its row locked until this commits. A write that does not grow it
    // cannot take the tenant past its quota whatever else runs (the most common write: an
    // adapter storing the same mapping again), so it needs no turn.
    let current: Option<i64> = tx
        .query_opt(
            "SELECT (length(key) + length(value))::bigint FROM kv WHERE tenant = $1 AND key = $2 FOR UPDATE",
            &[&tenant, &key],
        )
        .await?
        .map(|row| row.get(0));
    if current.is_none_or(|current| size > current) {
        // Writes that grow a tenant's keys (from any process) take turns: the check and the
        // write cannot interleave with another's.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext('kv'), hashtext($1))", &[&tenant])
            .await?;
        let others: i64 = tx
            .query_one(
                "SELECT COALESCE(SUM(length(key) + length(value)), 0)::bigint FROM kv WHERE tenant = $1 AND key <> $2",
                &[&tenant, &key],
            )
            .await?
            .get(0);
        if (others + size) as u64 > quota {
            tx.rollback().await?;
            client.done();
            return Ok(KvWrite::OverQuota);
        }
    }
    tx.execute(
        "INSERT INTO kv (tenant, key, value) VALUES ($1, $2, $3)
         ON CONFLICT (tenant, key) DO UPDATE SET value = excluded.value",
        &[&tenant, &key, &value],
    )
    .await?;
    tx.commit().await.context("store commit failed")?;
    client.done();
    store.committed();
    Ok(KvWrite::Stored)
}

pub(super) async fn delete(store: &PostgresStore, tenant: &str, key: &str) -> anyhow::Result<()> {
    store
        .write("DELETE FROM kv WHERE tenant = $1 AND key = $2", &[&tenant, &key])
        .await
        .map(drop)
}
