//! Signing webhook requests the way vendors do, for the webhook-verification tests.
//! (Chatwoot's scheme is in [`crate::mock_chatwoot::signature_headers`].)

use std::time::{SystemTime, UNIX_EPOCH};

use crate::mock_chatwoot::hmac_sha256;

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,...`)
/// for `body`, signed with a raw (not `whsec_`) `secret`.
pub fn standard_webhook_headers(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    let ts = timestamp.to_string();
    let mac = hmac_sha256(secret.as_bytes(), &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts),
        ("webhook-signature".into(), format!("v1,{}", base64(&mac))),
    ]
}
