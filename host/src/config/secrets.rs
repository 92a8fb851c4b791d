//! Secrets in the configuration: which values count as secrets (to keep out of logs and errors),
//! and how long a secret or token must be.

use super::{FieldError, invalid};

/// The shortest `admin.token` and `server.incoming_token` accepted, in bytes (surrounding
/// whitespace not counted): tokens the operator generates, for which 16 random bytes are cheap.
pub const MIN_TOKEN_BYTES: usize = 16;

/// Parts of a `[tenants.config]` key that mark its value as a secret (compared ignoring case):
/// a safety net for secrets not moved to `[tenants.secrets]`.
const SECRET_KEY_MARKERS: [&str; 12] = [
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "key",
    "credential",
    "auth",
    "bearer",
    "jwt",
    "dsn",
    "webhook_url",
];

/// Whether a `[tenants.config]` key names a secret: it contains one of `token`, `secret`,
/// `password`, `passwd`, `pwd`, `key`, `credential`, `auth`, `bearer`, `jwt`, `dsn` or
/// `webhook_url`, ignoring case.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_MARKERS.iter().any(|marker| key.contains(marker))
}

/// The password of a URL such as `postgres://user:password@host/db`.
pub(super) fn url_password(value: &str) -> Option<String> {
    let url = url::Url::parse(value).ok()?;
    url.password().filter(|p| !p.is_empty()).map(str::to_string)
}

/// A secret is set and at least `min` bytes long (surrounding whitespace not counted). The
/// message never contains the secret.
pub(super) fn check_secret(secret: &str, min: usize) -> Result<(), String> {
    let length = secret.trim().len();
    if length == 0 {
        return Err("must not be empty".into());
    }
    if length < min {
        return Err(format!("is too short: {length} bytes, at least {min} are required"));
    }
    Ok(())
}

/// An optional bearer token (`field`): when set, at least [`MIN_TOKEN_BYTES`]. An empty one
/// is refused with a hint that leaving it unset would `unset_does`.
pub(super) fn check_optional_token(field: &str, token: &Option<String>, unset_does: &str) -> Result<(), FieldError> {
    let Some(token) = token else {
        return Ok(());
    };
    check_secret(token, MIN_TOKEN_BYTES).map_err(|m| {
        let hint = match token.trim().is_empty() {
            true => format!(" (leave it unset to {unset_does})"),
            false => String::new(),
        };
        invalid(field, format!("{m}{hint}"))
    })
}
