//! A small HTTP/1 client for the tests (hyper-util's legacy client).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// No request of the tests may take longer than this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

type Body = BoxBody<Bytes, Infallible>;

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics showing status and body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("response {} is not JSON ({err}): {:?}", self.status, self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.code` of the bridge's error shape.
    pub fn error_code(&self) -> Option<String> {
        let json: Value = serde_json::from_slice(&self.body).ok()?;
        json["error"]["code"].as_str().map(str::to_string)
    }

    /// `error.message` of the bridge's error shape.
    pub fn error_message(&self) -> Option<String> {
        let json: Value = serde_json::from_slice(&self.body).ok()?;
        json["error"]["message"].as_str().map(str::to_string)
    }

    /// The `field` of every entry in `error.fields` (empty when absent).
    pub fn error_fields(&self) -> Vec<String> {
        let Ok(json) = serde_json::from_slice::<Value>(&self.body) else {
            return Vec::new();
        };
        json["error"]["fields"]
            .as_array()
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|f| f["field"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `status 200: {...}`, for assertion messages.
    pub fn describe(&self) -> String {
        format!("status {}: {}", self.status, self.text())
    }
}

/// A cloneable client; each test may make its own.
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Body>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    pub fn new() -> HttpClient {
        HttpClient {
            inner: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends a request; panics on a transport error or after a minute.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> HttpResponse {
        let body = Full::new(body.into()).boxed();
        self.try_send_body(method, url, headers, body)
            .await
            .unwrap_or_else(|err| panic!("{method} {url}: {err}"))
    }

    /// Like [`send`](Self::send) but a transport error is returned, not a panic.
    pub async fn try_send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<HttpResponse, String> {
        let body = Full::new(body.into()).boxed();
        self.try_send_body(method, url, headers, body).await
    }

    async fn try_send_body(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<HttpResponse, String> {
        let mut builder = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?)
            .uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(body).map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self.inner.request(request).await.map_err(|e| {
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(inner) = source {
                    text.push_str(": ");
                    text.push_str(&inner.to_string());
                    source = inner.source();
                }
                text
            })?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("reading the body: {e}"))?
                .to_bytes();
            Ok(HttpResponse {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no response within {REQUEST_TIMEOUT:?}"))?
    }

    /// POSTs `body` as `application/json`.
    pub async fn post_json(&self, url: &str, body: &Value) -> HttpResponse {
        self.send(
            "POST",
            url,
            &[("content-type", "application/json")],
            serde_json::to_vec(body).expect("JSON serialises"),
        )
        .await
    }

    /// POSTs raw bytes with the given content type (none: no Content-Type header).
    pub async fn post_raw(&self, url: &str, content_type: Option<&str>, body: impl Into<Bytes>) -> HttpResponse {
        match content_type {
            Some(ct) => self.send("POST", url, &[("content-type", ct)], body).await,
            None => self.send("POST", url, &[], body).await,
        }
    }

    /// POSTs `chunks` with chunked transfer encoding (no Content-Length).
    pub async fn post_chunked(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        chunks: Vec<Bytes>,
    ) -> Result<HttpResponse, String> {
        let body = ChunkBody(chunks.into_iter().collect()).boxed();
        self.try_send_body("POST", url, headers, body).await
    }

    pub async fn get(&self, url: &str) -> HttpResponse {
        self.send("GET", url, &[], Bytes::new()).await
    }
}

/// A body sent in the given chunks, without a length.
struct ChunkBody(std::collections::VecDeque<Bytes>);

impl hyper::body::Body for ChunkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    // No size hint: hyper sends it chunked.
}
