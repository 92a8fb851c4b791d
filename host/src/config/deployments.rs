//! `[deployments]` and `[tenants.deploy]`: adapter versions deployed to a running bridge over
//! HTTP, where they are kept, and who may deploy a tenant's adapter.

use std::path::PathBuf;

use serde::Deserialize;

use super::canary::CanaryConfig;
use super::secrets::check_optional_token;
use super::{FieldError, invalid};

/// `[deployments]`: adapter versions uploaded to a running bridge (`PUT /admin/tenants/{t}/adapter`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeploymentsConfig {
    /// Where deployed versions are kept; defaults to `deployments` beside the store.
    pub dir: Option<PathBuf>,
    /// Versions kept per tenant (the active one included); older ones are deleted.
    pub keep: usize,
    /// The largest component a deploy accepts, in bytes.
    pub max_bytes: usize,
    /// Deploy uploads under way at once, all tenants together (read at start); past it a deploy
    /// is refused with 503 `uploads_busy`.
    pub max_uploads: usize,
    /// Deploy uploads under way at once for one tenant (read at start); past it a deploy is
    /// refused with 429 `too_many_uploads`.
    pub max_uploads_per_tenant: usize,
    /// A secret every replica of a shared store holds: each deployed version is sealed with it
    /// in the database, and a version without a good seal is not run (see `deployments::seal`).
    pub signing_key: Option<String>,
    /// `[deployments.canary]`: when a canary is rolled back or promoted on its own.
    pub canary: CanaryConfig,
}

/// The signing key stays out of debug output.
impl std::fmt::Debug for DeploymentsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentsConfig")
            .field("dir", &self.dir)
            .field("keep", &self.keep)
            .field("max_bytes", &self.max_bytes)
            .field("max_uploads", &self.max_uploads)
            .field("max_uploads_per_tenant", &self.max_uploads_per_tenant)
            .field("signing_key", &self.signing_key.as_ref().map(|_| "(set)"))
            .field("canary", &self.canary)
            .finish()
    }
}

impl Default for DeploymentsConfig {
    fn default() -> Self {
        DeploymentsConfig {
            dir: None,
            keep: 5,
            max_bytes: 64 << 20,
            max_uploads: 4,
            max_uploads_per_tenant: 1,
            signing_key: None,
            canary: CanaryConfig::default(),
        }
    }
}

impl DeploymentsConfig {
    pub(super) fn check(&self) -> Result<(), FieldError> {
        if self.keep == 0 {
            return Err(invalid("deployments.keep", "must be at least 1 (the active version)"));
        }
        if self.max_bytes == 0 {
            return Err(invalid("deployments.max_bytes", "must be at least 1"));
        }
        check_optional_token(
            "deployments.signing_key",
            &self.signing_key,
            "leave shared deployed versions unsealed",
        )?;
        if self.max_uploads == 0 || self.max_uploads_per_tenant == 0 {
            return Err(invalid(
                "deployments.max_uploads",
                "max_uploads and max_uploads_per_tenant must be at least 1",
            ));
        }
        self.canary.check()
    }
}

/// `[tenants.deploy]`: who may deploy a tenant's adapter over HTTP, and what a version must pass.
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantDeployConfig {
    /// A deploy token scoped to this tenant (a secret): it may deploy, list and roll back this
    /// tenant's adapter and call nothing else.
    pub token: Option<String>,
    /// A `plugin test` fixture folder every deployed version must pass.
    pub fixtures: Option<PathBuf>,
}

impl TenantDeployConfig {
    /// `field` names a field of the tenant (`tenants[i].…`).
    pub(super) fn check(&self, field: &dyn Fn(&str) -> String) -> Result<(), FieldError> {
        check_optional_token(
            &field("deploy.token"),
            &self.token,
            "allow deploys with the admin token only",
        )
    }
}

/// That each deploy token opens one tenant only: no two tenants share one, and none is the admin
/// token (which opens every tenant and endpoint). The error names the fields, never the token.
pub(super) fn check_deploy_tokens(
    tenants: &[super::TenantConfig],
    admin_token: Option<&str>,
) -> Result<(), FieldError> {
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (i, tenant) in tenants.iter().enumerate() {
        let Some(token) = tenant.deploy.token.as_deref() else {
            continue;
        };
        let field = format!("tenants[{i}].deploy.token");
        if admin_token == Some(token) {
            return Err(invalid(
                field,
                "is the admin token: a deploy token must open its own tenant only",
            ));
        }
        if let Some((_, first)) = seen.iter().find(|(t, _)| *t == token) {
            return Err(invalid(
                field,
                format!(
                    "is also tenants[{first}].deploy.token: each tenant needs a deploy token of its own, or a \
                     partner could deploy to a tenant it does not own"
                ),
            ));
        }
        seen.push((token, i));
    }
    Ok(())
}
