//! The SQLite store's tenant key-value store (adapters' own data), within each tenant's quota.

use rusqlite::{OptionalExtension, params};

use super::{Queueing, SqliteStore};
use crate::store::KvWrite;

pub(super) async fn get(store: &SqliteStore, tenant: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let (tenant, key) = (tenant.to_string(), key.to_string());
    store
        .point_read(move |c| {
            c.prepare_cached("SELECT value FROM kv WHERE tenant = ?1 AND key = ?2")?
                .query_row(params![tenant, key], |row| row.get(0))
                .optional()
        })
        .await
}

pub(super) async fn set(
    store: &SqliteStore,
    tenant: &str,
    key: &str,
    value: Vec<u8>,
    quota: u64,
) -> anyhow::Result<KvWrite> {
    let (tenant, key) = (tenant.to_string(), key.to_string());
    store
        .write(Queueing::RefuseWhenFull, move |c, _| {
            // What the tenant holds besides this key, counted where the rows are: the check and
            // the write are one step of the one writer, so concurrent calls cannot both pass it.
            let others: i64 = c
                .prepare_cached(
                    "SELECT COALESCE(SUM(length(key) + length(value)), 0) FROM kv WHERE tenant = ?1 AND key <> ?2",
                )?
                .query_row(params![tenant, key], |r| r.get(0))?;
            if others as u64 + (key.len() + value.len()) as u64 > quota {
                return Ok(KvWrite::OverQuota);
            }
            c.prepare_cached(
                "INSERT INTO kv (tenant, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant, key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![tenant, key, value])?;
            Ok(KvWrite::Stored)
        })
        .await
}

pub(super) async fn delete(store: &SqliteStore, tenant: &str, key: &str) -> anyhow::Result<()> {
    let (tenant, key) = (tenant.to_string(), key.to_string());
    store
        .write(Queueing::RefuseWhenFull, move |c, _| {
            c.execute("DELETE FROM kv WHERE tenant = ?1 AND key = ?2", params![tenant, key])
                .map(drop)
        })
        .await
}
