//! `dolphin-bridge deploy | versions | rollback`: the deployment endpoints of a running bridge
//! (`/admin/tenants/{t}/...`), called with the admin token or the tenant's deploy token.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

use crate::terminal_text::escape;

/// What to ask the bridge.
#[derive(Debug, Clone)]
pub enum Action {
    /// Upload the component at this path as the tenant's new version.
    Deploy(PathBuf),
    /// List the tenant's versions.
    Versions,
    /// Return the tenant to its previous version.
    Rollback,
}

/// A running bridge and the bearer token to present.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The bridge's base URL (`http://127.0.0.1:8080`).
    pub url: String,
    /// The admin token or the tenant's deploy token.
    pub token: String,
}

/// Why the bridge refused (its JSON error, control characters escaped), or why it could not be
/// asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The bridge answered with an error status.
    #[error("the bridge refused ({status}): {code}: {message}")]
    Refused { status: u16, code: String, message: String },
    /// The request could not be made or its answer not read.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Does `action` for `tenant` on `remote`, printing the outcome to `out`.
pub async fn run(remote: &Remote, tenant: &str, action: Action, out: &mut impl Write) -> Result<(), ClientError> {
    let (method, last, body) = match &action {
        Action::Deploy(file) => {
            let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            (reqwest::Method::PUT, "adapter", Some(bytes))
        }
        Action::Versions => (reqwest::Method::GET, "versions", None),
        Action::Rollback => (reqwest::Method::POST, "rollback", None),
    };
    let mut url = url::Url::parse(&remote.url).with_context(|| format!("`{}` is not a URL", remote.url))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("`{}` cannot be a base URL", remote.url))?
        .pop_if_empty()
        .extend(["admin", "tenants", tenant, last]);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .context("building the HTTP client")?;
    let mut request = client.request(method, url.clone()).bearer_auth(&remote.token);
    if let Some(body) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/wasm")
            .body(body);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the bridge at {}", remote.url))?;
    let status = response.status();
    let text = response.text().await.context("reading the bridge's answer")?;
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !status.is_success() {
        let error = &json["error"];
        return Err(ClientError::Refused {
            status: status.as_u16(),
            code: escape(error["code"].as_str().unwrap_or("unknown")).into_owned(),
            message: escape(error["message"].as_str().unwrap_or(text.trim())).into_owned(),
        });
    }
    let write = |out: &mut dyn Write, line: String| writeln!(out, "{line}").context("writing the output");
    match action {
        Action::Deploy(_) => write(out, format!("deployed {}", describe(&json["version"])))?,
        Action::Rollback => write(out, format!("rolled back to {}", describe(&json["version"])))?,
        Action::Versions => {
            for version in json["versions"].as_array().into_iter().flatten() {
                let marker = if version["active"] == true { "*" } else { " " };
                write(out, format!("{marker} {}", describe(version)))?;
            }
        }
    }
    Ok(())
}

/// `tenant acme: sha256 0123456789ab (1234 bytes, deployed, 2026-...)`, the answer's text with
/// its control characters escaped.
fn describe(version: &Value) -> String {
    let field = |name: &str| escape(version[name].as_str().unwrap_or("?")).into_owned();
    let hash: String = field("contentHash").chars().take(12).collect();
    format!(
        "tenant {}: sha256 {hash} ({} bytes, {}, {})",
        field("tenant"),
        version["sizeBytes"],
        field("source"),
        field("deployedAt"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_described_with_the_answers_control_characters_escaped() {
        let version = serde_json::json!({
            "tenant": "acme\u{1b}[2J",
            "contentHash": "é\r0123456789abcdef",
            "sizeBytes": 12,
            "source": "deployed\nFORGED",
            "deployedAt": "2026-01-01T00:00:00Z",
        });
        assert_eq!(
            describe(&version),
            r"tenant acme\u{1b}[2J: sha256 é\r012345678 (12 bytes, deployed\nFORGED, 2026-01-01T00:00:00Z)"
        );
    }
}
