//! `dolphin-bridge deploy | versions | rollback | canary`: the deployment endpoints of a running
//! bridge (`/admin/tenants/{t}/...`), called with the admin token or the tenant's deploy token.

use std::io::Write;
use std::path::PathBuf;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::cli::CanaryAction;
use crate::terminal_text::escape;

/// What to ask the bridge.
#[derive(Debug, Clone)]
pub enum Action {
    /// Upload the component at `file` as the tenant's new version (with `canary`: as a canary
    /// serving that percent of its tickets).
    Deploy { file: PathBuf, canary: Option<u8> },
    /// List the tenant's versions.
    Versions,
    /// Return the tenant to its previous version.
    Rollback,
    /// Show, promote or abort the tenant's canary.
    Canary(CanaryAction),
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

/// How long the client waits for the bridge's `100 Continue` before it sends a component anyway
/// (a proxy between may not pass it on).
const CONTINUE_WAIT: Duration = Duration::from_secs(5);

/// How long one request may take, the upload and the bridge's checks of it included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Does `action` for `tenant` on `remote`, printing the outcome to `out`.
pub async fn run(remote: &Remote, tenant: &str, action: Action, out: &mut impl Write) -> Result<(), ClientError> {
    let (method, path, body): (_, &[&str], _) = match &action {
        Action::Deploy { file, .. } => {
            let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            (Method::PUT, &["adapter"], Some(bytes))
        }
        Action::Versions => (Method::GET, &["versions"], None),
        Action::Rollback => (Method::POST, &["rollback"], None),
        Action::Canary(CanaryAction::Status) => (Method::GET, &["canary"], None),
        Action::Canary(CanaryAction::Promote) => (Method::POST, &["canary", "promote"], None),
        Action::Canary(CanaryAction::Abort) => (Method::POST, &["canary", "abort"], None),
    };
    let mut url = url::Url::parse(&remote.url).with_context(|| format!("`{}` is not a URL", remote.url))?;
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("`{}` cannot be a base URL", remote.url))?
        .pop_if_empty()
        .extend(["admin", "tenants", tenant])
        .extend(path);
    if let Action::Deploy {
        canary: Some(percent), ..
    } = &action
    {
        url.query_pairs_mut().append_pair("canary", &percent.to_string());
    }
    let (status, text) = tokio::time::timeout(REQUEST_TIMEOUT, send(method, &url, &remote.token, body))
        .await
        .map_err(|_| anyhow::anyhow!("the bridge at {} did not answer within {REQUEST_TIMEOUT:?}", remote.url))?
        .with_context(|| format!("cannot reach the bridge at {}", remote.url))?;
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
        Action::Deploy { canary: None, .. } => write(out, format!("deployed {}", describe(&json["version"])))?,
        Action::Deploy {
            canary: Some(percent), ..
        } => write(
            out,
            format!(
                "deployed as a canary for {percent}% of the tickets: {}",
                describe(&json["version"])
            ),
        )?,
        Action::Rollback => write(out, format!("rolled back to {}", describe(&json["version"])))?,
        Action::Versions => {
            for version in json["versions"].as_array().into_iter().flatten() {
                let marker = match (version["active"] == true, version["canary"].as_u64()) {
                    (true, _) => "*".to_string(),
                    (false, Some(percent)) => format!("canary {percent}%:"),
                    (false, None) => " ".to_string(),
                };
                write(out, format!("{marker} {}", describe(version)))?;
            }
        }
        Action::Canary(CanaryAction::Status) => {
            for line in canary_lines(&json) {
                write(out, line)?;
            }
        }
        Action::Canary(CanaryAction::Promote | CanaryAction::Abort) => {
            let ended = &json["canary"];
            let hash: String = escape(ended["contentHash"].as_str().unwrap_or("?"))
                .chars()
                .take(12)
                .collect();
            write(
                out,
                format!("canary {hash} {}", escape(ended["end"].as_str().unwrap_or("ended"))),
            )?
        }
    }
    Ok(())
}

/// Sends one request with `token` and, when there is one, `body` as a component: announced with
/// `Expect: 100-continue` and sent only once the bridge answers `100 Continue` (or after
/// [`CONTINUE_WAIT`]), so that a bridge refusing the upload before reading it (no upload slot, a
/// wrong token) answers its JSON error instead of the client meeting a reset connection
/// halfway through the body. Returns the status and the answer's text.
async fn send(
    method: Method,
    url: &url::Url,
    token: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<(StatusCode, String)> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build(connector);
    let request = Request::builder()
        .method(method)
        .uri(url.as_str())
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    let request = match body {
        Some(bytes) => {
            let continued = Arc::new(tokio::sync::Notify::new());
            let go = continued.clone();
            let mut request = request
                .header(header::CONTENT_TYPE, "application/wasm")
                .header(header::EXPECT, "100-continue")
                .body(AfterContinue::new(Bytes::from(bytes), async move {
                    tokio::select! {
                        () = go.notified() => {}
                        () = tokio::time::sleep(CONTINUE_WAIT) => {}
                    }
                }))
                .context("building the request")?;
            hyper::ext::on_informational(&mut request, move |response| {
                if response.status() == StatusCode::CONTINUE {
                    continued.notify_one();
                }
            });
            request
        }
        None => request.body(AfterContinue::empty()).context("building the request")?,
    };
    let response = client.request(request).await?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .context("reading the bridge's answer")?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// A request body sent whole once `go` completes; none for an empty one.
struct AfterContinue {
    go: Pin<Box<dyn Future<Output = ()> + Send>>,
    body: Option<Bytes>,
}

impl AfterContinue {
    fn new(body: Bytes, go: impl Future<Output = ()> + Send + 'static) -> AfterContinue {
        AfterContinue {
            go: Box::pin(go),
            body: Some(body),
        }
    }

    fn empty() -> AfterContinue {
        AfterContinue {
            go: Box::pin(std::future::ready(())),
            body: None,
        }
    }
}

impl hyper::body::Body for AfterContinue {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.body.is_none() {
            return Poll::Ready(None);
        }
        std::task::ready!(self.go.as_mut().poll(cx));
        Poll::Ready(self.body.take().map(|body| Ok(Frame::data(body))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.body.as_ref().map_or(0, |body| body.len() as u64))
    }
}

/// The lines `canary status` prints: the running canary's figures side by side (or that none
/// runs) and how the last one ended, the answer's text escaped.
fn canary_lines(json: &Value) -> Vec<String> {
    let text = |value: &Value| escape(value.as_str().unwrap_or("?")).into_owned();
    let short = |value: &Value| text(value).chars().take(12).collect::<String>();
    let mut lines = Vec::new();
    let canary = &json["canary"];
    if canary.is_null() {
        lines.push("no canary running".to_string());
    } else {
        let percent = canary["percent"].as_u64().unwrap_or(0);
        lines.push(format!(
            "canary {} on {percent}% of the tickets beside {}",
            short(&canary["contentHash"]),
            short(&canary["currentHash"])
        ));
        for (side, share) in [("current", 100 - percent), ("canary", percent)] {
            let arm = &canary[side];
            let latency = arm["meanLatencyMs"]
                .as_f64()
                .map_or_else(|| "-".to_string(), |ms| format!("{ms:.1} ms"));
            lines.push(format!(
                "  {side:<8} {share:>3}%  {} calls, {} failed ({:.1}%), mean {latency}",
                arm["calls"],
                arm["failures"],
                arm["failureRate"].as_f64().unwrap_or(0.0)
            ));
        }
        lines.push(format!("  {}", text(&canary["verdict"])));
    }
    let last = &json["lastCanary"];
    if !last.is_null() {
        lines.push(format!(
            "last canary {}: {} at {}: {}",
            short(&last["contentHash"]),
            text(&last["end"]),
            text(&last["at"]),
            text(&last["reason"])
        ));
    }
    lines
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
