//! Adapter versions deployed to a running bridge (`PUT /admin/tenants/{t}/adapter`), kept on
//! disk per tenant: `<dir>/<tenant>/<sha256>.wasm` and `<dir>/<tenant>/versions.json`, which
//! lists the kept versions newest first and names the active one.
//!
//! # The rules
//!
//! - A tenant with an active deployed version runs it, whatever its configured `adapter` file
//!   holds: changes to that file are not loaded (nor validated) while a deployed version is
//!   active, so that a file copied by hand never silently replaces a deployed version. Rolling
//!   back past the oldest deployed version returns the tenant to its file.
//! - A tenant without one runs its configured file, as without deployments.
//! - Deploying puts the new version first and makes it active; deploying a version that is
//!   already kept moves it to the front. The newest `keep` versions are kept, the active one
//!   always; the files of older ones are deleted.
//! - Rolling back activates the version deployed before the active one; from the oldest kept
//!   deployed version it activates the configured file (which counts as the oldest version of
//!   all); from the file there is nothing to roll back to.
//! - `versions.json` is replaced atomically (written to a temp file, synced, renamed, and the
//!   folder synced), so a crash leaves the old list or the new one. A file that cannot be parsed
//!   is an error naming it, never an empty list: the bridge does not silently forget a
//!   deployed version.
//! - With a PostgreSQL store the versions are shared by every replica ([`shared`]); this folder
//!   is then each replica's cache of them.

pub mod seal;
pub mod shared;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::store::{TenantVersions, is_content_hash};

/// The name of the per-tenant list of versions.
const VERSIONS_FILE: &str = "versions.json";

/// The folder of deployed versions, one sub-folder per tenant.
#[derive(Debug, Clone)]
pub struct DeploymentStore {
    dir: PathBuf,
    keep: usize,
}

impl DeploymentStore {
    /// The store in `dir` keeping `keep` versions per tenant; nothing is created until a deploy.
    pub fn new(dir: PathBuf, keep: usize) -> DeploymentStore {
        DeploymentStore { dir, keep }
    }

    /// How many versions are kept per tenant.
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// Whether `path` is a file of this store (a deployed version's component).
    pub fn contains(&self, path: &Path) -> bool {
        path.starts_with(&self.dir)
    }

    fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.dir.join(tenant)
    }

    /// The component file of `tenant`'s version `content_hash`.
    pub fn component_path(&self, tenant: &str, content_hash: &str) -> PathBuf {
        self.tenant_dir(tenant).join(format!("{content_hash}.wasm"))
    }

    /// `tenant`'s versions; none when it has no `versions.json`. A file that cannot be read or
    /// parsed is an error naming it.
    pub fn versions(&self, tenant: &str) -> anyhow::Result<TenantVersions> {
        let path = self.tenant_dir(tenant).join(VERSIONS_FILE);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TenantVersions::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let versions: TenantVersions = serde_json::from_slice(&text).with_context(|| {
            format!(
                "{} is corrupt; fix or remove it (removing returns tenant `{tenant}` to its configured adapter file)",
                path.display()
            )
        })?;
        if let Some(active) = &versions.active
            && versions.active_version().is_none()
        {
            anyhow::bail!(
                "{}: the active version {active} is not among the kept versions",
                path.display()
            );
        }
        if let Some(canary) = &versions.canary
            && versions.canary_version().is_none()
        {
            anyhow::bail!(
                "{}: the canary version {} is not among the kept versions",
                path.display(),
                canary.content_hash
            );
        }
        Ok(versions)
    }

    /// Writes `versions` as `tenant`'s list, atomically.
    pub fn write_versions(&self, tenant: &str, versions: &TenantVersions) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(versions).expect("versions serialize");
        write_atomically(&self.tenant_dir(tenant), VERSIONS_FILE, &json)
    }

    /// Stores `bytes` as `tenant`'s version `content_hash` (not yet listed or active); a file
    /// already there is kept (same name, same content).
    pub fn put_component(&self, tenant: &str, content_hash: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
        anyhow::ensure!(
            is_content_hash(content_hash),
            "tenant `{tenant}`: {content_hash:?} is not a content hash; nothing is stored under it"
        );
        let path = self.component_path(tenant, content_hash);
        if path.metadata().is_ok_and(|m| m.len() == bytes.len() as u64) {
            return Ok(path);
        }
        write_atomically(&self.tenant_dir(tenant), &format!("{content_hash}.wasm"), bytes)?;
        Ok(path)
    }

    /// Deletes `tenant`'s component `content_hash` unless `versions` still lists it (or it is not
    /// a content hash, which names no file of this store).
    pub fn remove_unlisted(&self, tenant: &str, content_hash: &str, versions: &TenantVersions) {
        if !is_content_hash(content_hash) || versions.versions.iter().any(|v| v.content_hash == content_hash) {
            return;
        }
        let path = self.component_path(tenant, content_hash);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %path.display(), error = %e, "cannot delete a version no longer kept");
        }
    }
}

/// Writes `name` in `dir` by temp file, fsync, rename and folder fsync.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let temp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::now_v7()));
    let target = dir.join(name);
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, &target)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.with_context(|| format!("cannot write {}", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_version as version;

    /// A fresh folder under the system temp folder, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let dir = std::env::temp_dir().join(format!("deployments-test-{}", uuid::Uuid::now_v7()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn versions_round_trip_and_a_missing_file_means_none() {
        let dir = TempDir::new();
        let store = DeploymentStore::new(dir.0.clone(), 5);
        assert_eq!(store.versions("acme").unwrap(), TenantVersions::default());
        let mut versions = TenantVersions::default();
        versions.deployed(version("a"), 5);
        store.write_versions("acme", &versions).unwrap();
        assert_eq!(store.versions("acme").unwrap(), versions);
        let leftovers: Vec<_> = std::fs::read_dir(dir.0.join("acme"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(leftovers, [VERSIONS_FILE], "no temp file is left behind");
    }

    #[test]
    fn a_corrupt_versions_file_is_an_error_naming_it() {
        let dir = TempDir::new();
        let store = DeploymentStore::new(dir.0.clone(), 5);
        std::fs::create_dir_all(dir.0.join("acme")).unwrap();
        std::fs::write(dir.0.join("acme").join(VERSIONS_FILE), b"{\"versions\": [tru").unwrap();
        let error = format!("{:#}", store.versions("acme").unwrap_err());
        assert!(error.contains(VERSIONS_FILE) && error.contains("corrupt"), "{error}");
    }

    #[test]
    fn an_active_version_that_is_not_kept_is_an_error() {
        let dir = TempDir::new();
        let store = DeploymentStore::new(dir.0.clone(), 5);
        let versions = TenantVersions {
            versions: vec![version("a")],
            active: Some("b".into()),
            ..TenantVersions::default()
        };
        store.write_versions("acme", &versions).unwrap();
        let error = format!("{:#}", store.versions("acme").unwrap_err());
        assert!(error.contains("not among the kept versions"), "{error}");
    }

    #[test]
    fn unlisted_components_are_removed_and_listed_ones_kept() {
        let dir = TempDir::new();
        let store = DeploymentStore::new(dir.0.clone(), 5);
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let kept = store.put_component("acme", &a, b"one").unwrap();
        let gone = store.put_component("acme", &b, b"two").unwrap();
        let mut versions = TenantVersions::default();
        versions.deployed(version(&a), 5);
        store.remove_unlisted("acme", &a, &versions);
        store.remove_unlisted("acme", &b, &versions);
        assert!(kept.exists());
        assert!(!gone.exists());
    }

    #[test]
    fn nothing_is_stored_or_removed_under_a_name_that_is_not_a_content_hash() {
        let dir = TempDir::new();
        let store = DeploymentStore::new(dir.0.join("deployments"), 5);
        let outside = dir.0.join("x.wasm");
        std::fs::write(&outside, b"not the store's").unwrap();
        let error = store.put_component("acme", "../../x", b"one").unwrap_err();
        assert!(format!("{error:#}").contains("not a content hash"), "{error:#}");
        store.remove_unlisted("acme", "../../x", &TenantVersions::default());
        assert!(outside.exists(), "a file outside the store is left alone");
    }
}
