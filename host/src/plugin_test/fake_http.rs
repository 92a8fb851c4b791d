//! The fake servers of `plugin test` and `plugin run`: HTTP servers on 127.0.0.1 that hand each
//! request, read whole, to a handler; the fake vendor answering from `vendor.json`; and how a
//! received request is shown.

use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::fixtures::VendorResponse;

/// One request a fake server received.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub method: String,
    /// The path and query (`/echo?x=1`).
    pub path_and_query: String,
    /// Without the headers the HTTP client adds to every request (`host`, `content-length`,
    /// `accept`).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Recorded {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.path_and_query.split('?').next().unwrap_or_default()
    }

    /// `{prefix}METHOD PATH`, then each header and the body (pretty JSON when it is JSON)
    /// indented below it, each line ending in a newline. Not redacted nor escaped: the caller
    /// does both before printing.
    pub fn describe(&self, prefix: &str) -> String {
        let mut text = format!("{prefix}{} {}\n", self.method, self.path_and_query);
        for (name, value) in &self.headers {
            text.push_str(&format!("      {name}: {value}\n"));
        }
        if !self.body.is_empty() {
            text.push_str(&indent(&pretty(&self.body), "      "));
        }
        text
    }
}

/// What answers each request of a fake server.
pub(crate) type Handler = Arc<dyn Fn(Recorded) -> hyper::Response<Full<Bytes>> + Send + Sync>;

/// A fake server on 127.0.0.1. Dropping it stops it: its listening socket and every connection
/// to it are closed.
pub(crate) struct FakeServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The accept loop, which owns the connections' tasks.
    server: tokio::task::AbortHandle,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Starts a server on a free port of 127.0.0.1 that answers every request with `handler`;
/// `what` names it in the error when it cannot listen.
pub(crate) async fn serve_loopback(what: &str, handler: Handler) -> anyhow::Result<FakeServer> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .with_context(|| format!("starting the {what}"))?;
    let address = listener.local_addr()?;
    let server = tokio::spawn(async move {
        // Aborting the accept loop drops this set, which aborts every connection's task.
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            // Forget the connections that ended.
            while connections.try_join_next().is_some() {}
            let handler = handler.clone();
            let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let handler = handler.clone();
                async move { Ok::<_, std::convert::Infallible>(handler(read_whole(request).await)) }
            });
            connections.spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(FakeServer {
        url: format!("http://{address}"),
        server: server.abort_handle(),
    })
}

/// Starts the fake vendor: every request is handed to `seen`, then answered from `responses`.
pub(crate) async fn start_fake_vendor(
    responses: Vec<VendorResponse>,
    seen: impl Fn(&Recorded) + Send + Sync + 'static,
) -> anyhow::Result<FakeServer> {
    let handler: Handler = Arc::new(move |request: Recorded| {
        seen(&request);
        let found = responses
            .iter()
            .find(|r| r.method.eq_ignore_ascii_case(&request.method) && r.path == request.path());
        vendor_answer(found)
    });
    serve_loopback("fake vendor", handler).await
}

/// `request`, its body read whole (an unreadable body counts as empty).
async fn read_whole(request: hyper::Request<hyper::body::Incoming>) -> Recorded {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    Recorded {
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_else(|| parts.uri.path().to_string()),
        headers: parts
            .headers
            .iter()
            // Added by the HTTP client, the same for every request.
            .filter(|(name, _)| !matches!(name.as_str(), "host" | "content-length" | "accept"))
            .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into()))
            .collect(),
        body,
    }
}

/// The fake vendor's answer: the fixture's, or 404 when none matched.
fn vendor_answer(found: Option<&VendorResponse>) -> hyper::Response<Full<Bytes>> {
    let Some(answer) = found else {
        return json_response(404, r#"{"error":"no fixture response"}"#);
    };
    let mut builder = hyper::Response::builder().status(answer.status);
    let (body, json) = match &answer.body {
        Value::String(text) => (text.clone().into_bytes(), false),
        Value::Null => (Vec::new(), false),
        other => (serde_json::to_vec(other).expect("JSON serializes"), true),
    };
    if json && !answer.headers.keys().any(|k| k.eq_ignore_ascii_case("content-type")) {
        builder = builder.header("content-type", "application/json");
    }
    for (name, value) in &answer.headers {
        builder = builder.header(name, value);
    }
    builder.body(Full::new(Bytes::from(body))).unwrap_or_else(|e| {
        hyper::Response::builder()
            .status(500)
            .body(Full::new(Bytes::from(format!("bad fixture response: {e}"))))
            .expect("a valid response")
    })
}

/// A JSON answer with `status`.
pub(crate) fn json_response(status: u16, body: &'static str) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("a valid response")
}

/// A body for reading: pretty JSON when it is JSON, else the text (lossy).
pub(crate) fn pretty(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => serde_json::to_string_pretty(&value).expect("JSON serializes"),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    }
}

/// `text` with every line indented by `prefix`, ending in a newline.
pub(crate) fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|line| format!("{prefix}{line}\n")).collect()
}
