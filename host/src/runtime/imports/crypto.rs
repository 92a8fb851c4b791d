//! `crypto`: HMAC, SHA-256, constant-time comparison and random bytes, computed by the host so
//! that no adapter hand-writes them. The data passed is bounded by the per-host-call data limit
//! like every other import; random bytes by [`MAX_RANDOM_BYTES`] a call.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::runtime::{CallState, wit};

/// Most bytes one `random-bytes` call returns.
pub const MAX_RANDOM_BYTES: u32 = 1024;

/// HMAC of `message` with `key` under `hash`.
fn hmac(hash: wit::crypto::Hash, key: &[u8], message: &[u8]) -> Vec<u8> {
    fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    }
    match hash {
        wit::crypto::Hash::Sha1 => mac::<Hmac<sha1::Sha1>>(key, message),
        wit::crypto::Hash::Sha256 => mac::<Hmac<Sha256>>(key, message),
        wit::crypto::Hash::Sha512 => mac::<Hmac<Sha512>>(key, message),
    }
}

impl wit::crypto::Host for CallState {
    async fn hmac(&mut self, hash: wit::crypto::Hash, key: Vec<u8>, message: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        Ok(hmac(hash, &key, &message))
    }

    async fn sha256(&mut self, data: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        Ok(Sha256::digest(&data).to_vec())
    }

    async fn constant_time_equal(&mut self, a: Vec<u8>, b: Vec<u8>) -> anyhow::Result<bool> {
        Ok(bool::from(a.ct_eq(&b)))
    }

    async fn random_bytes(&mut self, len: u32) -> anyhow::Result<Vec<u8>> {
        if len > MAX_RANDOM_BYTES {
            let limit = format!("random-bytes limit of {MAX_RANDOM_BYTES} bytes per call");
            self.limit_hit = Some(limit.clone());
            anyhow::bail!(limit);
        }
        let mut bytes = vec![0u8; len as usize];
        rand::rng().fill_bytes(&mut bytes);
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 (SHA-256, SHA-512) and RFC 2202 test case 2 (SHA-1).
    #[test]
    fn hmac_matches_the_rfc_vectors() {
        let (key, data) = (b"Jefe".as_slice(), b"what do ya want for nothing?".as_slice());
        assert_eq!(
            hex::encode(hmac(wit::crypto::Hash::Sha256, key, data)),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex::encode(hmac(wit::crypto::Hash::Sha512, key, data)),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
        assert_eq!(
            hex::encode(hmac(wit::crypto::Hash::Sha1, key, data)),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }
}
