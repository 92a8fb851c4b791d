//! The PostgreSQL store's [`SharedDeployments`]: tables `deployment_tenants`,
//! `deployment_versions` and `deployment_generation` (migration V4), the canary columns and
//! `deployment_canary_figures` (V12).

use anyhow::Context;
use deadpool_postgres::GenericClient;

use super::PostgresStore;
use crate::store::{CanaryFigures, DeploymentChange, SharedDeployments, StoredVersion, TenantVersions};

/// `tenant`'s versions as `client` sees them; `None` when the tenant has no row.
async fn versions_in(client: &impl GenericClient, tenant: &str) -> anyhow::Result<Option<TenantVersions>> {
    let row = client
        .query_opt(
            "SELECT active, canary, last_canary FROM deployment_tenants WHERE tenant = $1",
            &[&tenant],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let canary = json_column(&row, 1).with_context(|| format!("tenant `{tenant}`: canary"))?;
    let last_canary = json_column(&row, 2).with_context(|| format!("tenant `{tenant}`: last_canary"))?;
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
        active: row.get(0),
        canary,
        last_canary,
    }))
}

/// The JSON text column `index` of `row`, read as a `T`.
fn json_column<T: serde::de::DeserializeOwned>(row: &tokio_postgres::Row, index: usize) -> anyhow::Result<Option<T>> {
    let text: Option<String> = row.get(index);
    Ok(text.map(|text| serde_json::from_str(&text)).transpose()?)
}

/// `value` as the JSON text of a column.
fn as_json<T: serde::Serialize>(value: &Option<T>) -> Option<String> {
    value.as_ref().map(|v| serde_json::to_string(v).expect("serializes"))
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
        let dropped = change
            .apply_to(&mut versions, keep)
            .with_context(|| format!("tenant `{tenant}`"))?;
        let (canary, last_canary) = (as_json(&versions.canary), as_json(&versions.last_canary));
        tx.execute(
            "INSERT INTO deployment_tenants (tenant, active, keep, changed, canary, last_canary)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant) DO UPDATE SET active = excluded.active, keep = excluded.keep,
               changed = excluded.changed, canary = excluded.canary, last_canary = excluded.last_canary",
            &[
                &tenant,
                &versions.active,
                &(keep as i32),
                &generation,
                &canary,
                &last_canary,
            ],
        )
        .await?;
        if let DeploymentChange::Deployed { version, component, .. } = &change {
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
        // Figures of canaries that are over are not summed again.
        let running = versions.canary.as_ref().map(|c| c.content_hash.clone());
        tx.execute(
            "DELETE FROM deployment_canary_figures WHERE tenant = $1 AND content_hash IS DISTINCT FROM $2",
            &[&tenant, &running],
        )
        .await?;
        tx.commit().await.context("store commit failed")?;
        client.done();
        self.committed();
        Ok(versions)
    }

    async fn report_canary_figures(
        &self,
        tenant: &str,
        content_hash: &str,
        replica: &str,
        figures: CanaryFigures,
    ) -> anyhow::Result<CanaryFigures> {
        let mine = serde_json::to_string(&figures).expect("figures serialize");
        let client = self.client().await?;
        // Only while it is the tenant's canary: a late report of an ended one is not kept.
        client
            .execute(
                "INSERT INTO deployment_canary_figures (tenant, content_hash, replica, figures)
                 SELECT $1, $2, $3, $4 FROM deployment_tenants
                 WHERE tenant = $1 AND canary::jsonb ->> 'contentHash' = $2
                 ON CONFLICT (tenant, content_hash, replica) DO UPDATE SET figures = excluded.figures",
                &[&tenant, &content_hash, &replica, &mine],
            )
            .await?;
        let rows = client
            .query(
                "SELECT figures FROM deployment_canary_figures WHERE tenant = $1 AND content_hash = $2",
                &[&tenant, &content_hash],
            )
            .await?;
        client.done();
        let mut sum = CanaryFigures::default();
        for row in rows {
            let text: String = row.get(0);
            let figures: CanaryFigures =
                serde_json::from_str(&text).with_context(|| format!("tenant `{tenant}`: canary figures"))?;
            sum = sum + figures;
        }
        Ok(sum)
    }
}
