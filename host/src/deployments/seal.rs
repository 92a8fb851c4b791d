//! Seals on shared deployed versions: with `[deployments] signing_key` set, a replica that
//! deploys a version writes beside it an HMAC-SHA256, under that key, of the tenant and the
//! version's content hash; a replica takes a shared version as a tenant's only when its seal
//! checks. The key is in every replica's configuration and never in the database, so someone
//! who can write to the database (or change the traffic to it) cannot make the replicas run a
//! component of their own as any tenant, nor move one tenant's version to another. They can
//! still choose among a tenant's sealed versions (as a rollback would), or stop a replica from
//! following.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::DeploymentsConfig;
use crate::store::StoredVersion;

/// What the MAC covers before the tenant and the hash: the purpose, so a seal is good for
/// nothing else.
const DOMAIN: &[u8] = b"dolphin-bridge shared deployed version v1\0";

/// The key that seals and checks shared versions.
pub struct DeploymentSeal {
    key: Vec<u8>,
}

/// The key stays out of debug output.
impl std::fmt::Debug for DeploymentSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeploymentSeal(..)")
    }
}

impl DeploymentSeal {
    /// The seal of the configuration, when `[deployments] signing_key` is set.
    pub fn configured(config: &DeploymentsConfig) -> Option<DeploymentSeal> {
        config.signing_key.as_deref().map(|key| DeploymentSeal {
            key: key.trim().as_bytes().to_vec(),
        })
    }

    fn mac(&self, tenant: &str, content_hash: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes a key of any length");
        mac.update(DOMAIN);
        mac.update(tenant.as_bytes());
        mac.update(b"\0");
        mac.update(content_hash.as_bytes());
        mac
    }

    /// The seal of `tenant`'s version `content_hash`, in hex.
    pub fn seal(&self, tenant: &str, content_hash: &str) -> String {
        hex::encode(self.mac(tenant, content_hash).finalize().into_bytes())
    }

    /// Whether `version` carries a good seal for `tenant` (compared in constant time).
    pub fn checks(&self, tenant: &str, version: &StoredVersion) -> bool {
        let Some(seal) = version.seal.as_deref().and_then(|s| hex::decode(s).ok()) else {
            return false;
        };
        self.mac(tenant, &version.content_hash).verify_slice(&seal).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(key: &str) -> DeploymentSeal {
        DeploymentSeal {
            key: key.as_bytes().to_vec(),
        }
    }

    fn version(hash: &str, seal: Option<String>) -> StoredVersion {
        StoredVersion {
            content_hash: hash.into(),
            size_bytes: 1,
            deployed_at: chrono::Utc::now(),
            seal,
        }
    }

    #[test]
    fn a_seal_holds_for_its_tenant_and_hash_under_its_key_only() {
        let key = seal("signing-key-0123456789");
        let hash = "a".repeat(64);
        let sealed = version(&hash, Some(key.seal("acme", &hash)));
        assert!(key.checks("acme", &sealed));
        assert!(!key.checks("globex", &sealed), "moved to another tenant");
        assert!(!seal("another-key-0123456789").checks("acme", &sealed), "another key");
        let other_hash = version(&"b".repeat(64), sealed.seal.clone());
        assert!(!key.checks("acme", &other_hash), "put on other bytes");
        assert!(!key.checks("acme", &version(&hash, None)), "no seal");
        assert!(!key.checks("acme", &version(&hash, Some("zz".into()))), "not hex");
    }

    #[test]
    fn the_tenant_and_hash_cannot_be_shifted_into_each_other() {
        let key = seal("signing-key-0123456789");
        assert_ne!(key.seal("ab", "c"), key.seal("a", "bc"));
    }

    #[test]
    fn the_key_is_not_shown_in_debug_output() {
        assert!(!format!("{:?}", seal("signing-key-0123456789")).contains("signing-key"));
    }
}
