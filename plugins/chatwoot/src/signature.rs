//! Chatwoot webhook signatures: `X-Chatwoot-Signature: sha256={hex}` where `hex` is
//! HMAC-SHA256(secret, "{X-Chatwoot-Timestamp}.{raw body}"), the timestamp in Unix seconds.

use sha2::{Digest, Sha256};

/// How far the signed timestamp may be from the adapter's clock, in seconds.
pub const TOLERANCE_SECS: i64 = 300;

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The current Unix time in seconds (WASI wall clock).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Checks a webhook's signature headers; the error says why (no secret material in it).
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), &'static str> {
    let timestamp = timestamp.map(str::trim).ok_or("missing X-Chatwoot-Timestamp")?;
    let signature = signature.map(str::trim).ok_or("missing X-Chatwoot-Signature")?;
    let seconds: i64 = timestamp.parse().map_err(|_| "malformed X-Chatwoot-Timestamp")?;
    if (now - seconds).abs() > TOLERANCE_SECS {
        return Err("X-Chatwoot-Timestamp is outside the allowed window");
    }
    let expected = hex(&hmac_sha256(secret, &[timestamp.as_bytes(), b".", body]));
    let given = signature
        .strip_prefix("sha256=")
        .unwrap_or(signature)
        .to_ascii_lowercase();
    let same = given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err("X-Chatwoot-Signature does not match")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn rfc4231_long_key() {
        let key = [0xaau8; 131];
        let mac = hmac_sha256(&key, &[b"Test Using Larger Than Block-Size Key - Hash Key First"]);
        assert_eq!(
            hex(&mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn verifies() {
        let body = br#"{"event":"message_created"}"#;
        let sig = format!("sha256={}", hex(&hmac_sha256(b"s3", &[b"1700000000", b".", body])));
        assert_eq!(verify(b"s3", Some("1700000000"), Some(&sig), body, 1700000100), Ok(()));
        assert!(verify(b"s3", Some("1700000000"), Some(&sig[7..]), body, 1700000000).is_ok());
        assert!(verify(b"other", Some("1700000000"), Some(&sig), body, 1700000000).is_err());
        assert!(verify(b"s3", Some("1700000000"), Some(&sig), b"{}", 1700000000).is_err());
        assert!(verify(b"s3", Some("1700000000"), Some(&sig), body, 1700000400).is_err());
        assert!(verify(b"s3", None, Some(&sig), body, 1700000000).is_err());
        assert!(verify(b"s3", Some("1700000000"), None, body, 1700000000).is_err());
    }
}
