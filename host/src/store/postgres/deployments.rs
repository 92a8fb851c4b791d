//! The PostgreSQL store's [`SharedDeployments`]: tables `deployment_tenants`,
//! `deployment_versions` and `deployment_generation` (migration V4).

use anyhow::Context;
use deadpool_postgres::GenericClient;

use super::PostgresStore;
use crate::store::{DeploymentChange, RollbackTarget, SharedDeployments, StoredVersion, TenantVersions};

/// `tenant`'s versions as `client` sees them; `None` when the tenant has no row.
async fn versions_in(client: &impl GenericClient, tenant: &str) -> anyhow::Result<Option<TenantVersions>> {
    let active = client
        .query_opt("SELECT active FROM deployment_tenants WHERE tenant = $1", &[&tenant])
        .await?;
    let Some(active) = active else {
        return Ok(None);
    };
    let rows = client
        .query(
            "SELECT content_hash, size_bytes, deployed_at, seal FROM deployment_versions
             WHERE tenant = $1 ORDER BY deployed DESC",
            &[&tenant],
        )
        .await?;
    let mut versions = Vec::with_capacity(rows.len());
    for row in rows {
        let deployed_at: String = row.get(2);
        versions.push(StoredVersion {
            content_hash: row.get(0),
            size_bytes: row.get::<_, i64>(1) as u64,
            deployed_at: chrono::DateTime::parse_from_rfc3339(&deployed_at)
                .with_context(|| format!("tenant `{tenant}`: deployed_at {deployed_at:?}"))?
                .with_timezone(&chrono::Utc),
            seal: row.get(3),
        });
    }
    Ok(Some(TenantVersions {
        versions,
        active: active.get(0),
    }))
}

#[async_trait::async_trait]
impl SharedDeployments for PostgresStore {
    async fn deployment_generation(&self) -> anyhow::Result<i64> {
        let rows = self
            .query("SELECT COALESCE(max(changed), 0)::BIGINT FROM deployment_tenants", &[])
            .await?;
        Ok(rows.first().map_or(0, |row| row.get(0)))
    }

    async fn shared_versions(&self, tenant: &str) -> anyhow::Result<Option<TenantVersions>> {
        let client = self.client().await?;
        let versions = versions_in(&*client, tenant).await;
        client.done();
        versions
    }

    async fn shared_component(&self, tenant: &str, content_hash: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let rows = self
            .query(
                "SELECT component FROM deployment_versions WHERE tenant = $1 AND content_hash = $2",
                &[&tenant, &content_hash],
            )
            .await?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    async fn change_deployment(
        &self,
        tenant: &str,
        keep: usize,
        change: DeploymentChange,
    ) -> anyhow::Result<TenantVersions> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The counter's row lock orders changes: they commit in generation order.
        let generation: i64 = tx
            .query_one(
                "UPDATE deployment_generation SET value = value + 1 RETURNING value",
                &[],
            )
            .await?
            .get(0);
        let mut versions = versions_in(&tx, tenant).await?.unwrap_or_default();
        let dropped = match &change {
            DeploymentChange::Deployed { version, .. } => versions.deployed(version.clone(), keep),
            DeploymentChange::Activated(target) => {
                if let RollbackTarget::Deployed(hash) = target
                    && !versions.versions.iter().any(|v| &v.content_hash == hash)
                {
                    anyhow::bail!("tenant `{tenant}`: version {hash} is no longer kept");
                }
                versions.activate(target);
                Vec::new()
            }
        };
        tx.execute(
            "INSERT INTO deployment_tenants (tenant, active, keep, changed) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant) DO UPDATE SET active = excluded.active, keep = excluded.keep,
               changed = excluded.changed",
            &[&tenant, &versions.active, &(keep as i32), &generation],
        )
        .await?;
        if let DeploymentChange::Deployed { version, component } = &change {
            tx.execute(
                "INSERT INTO deployment_versions (tenant, content_hash, size_bytes, deployed_at, deployed, component, seal)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (tenant, content_hash) DO UPDATE SET deployed_at = excluded.deployed_at,
                   deployed = excluded.deployed, seal = excluded.seal",
                &[
                    &tenant,
                    &version.content_hash,
                    &(version.size_bytes as i64),
                    &version.deployed_at.to_rfc3339(),
                    &generation,
                    component,
                    &version.seal,
                ],
            )
            .await?;
        }
        if !dropped.is_empty() {
            tx.execute(
                "DELETE FROM deployment_versions WHERE tenant = $1 AND content_hash = ANY($2)",
                &[&tenant, &dropped],
            )
            .await?;
        }
        tx.commit().await.context("store commit failed")?;
        client.done();
        self.committed();
        Ok(versions)
    }
}
