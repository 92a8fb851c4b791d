//! [`OutgoingHttp`] as wasmtime-wasi-http's hooks object: each wasi:http request is admitted
//! against the call's budget, then sent by [`send_http`], as `http.send`'s are.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use tracing::Instrument as _;
use wasmtime_wasi_http::{Error as WasiHttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::{OutgoingHttp, request_span, send_http};
use crate::runtime::TenantHost;
use crate::runtime::adapter_log::loggable;
use crate::runtime::bindings::dolphin::bridge::http::HttpError;
use crate::runtime::bindings::dolphin::bridge::types as wt;

/// The result `send_request` hands wasmtime-wasi-http: the response, and the future that reports
/// errors of its body (none: the body is read before the response is given).
type Sent = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), WasiHttpError>> + Send>,
    ),
    WasiHttpError,
>;

impl WasiHttpHooks for OutgoingHttp {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), WasiHttpError>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        // Made here, while the guest runs: a child of the call's span.
        let span = request_span("wasi:http");
        let admitted = self.admit();
        let host = self.host.clone();
        let io = self.io.clone();
        let delivery_id = self.delivery_id.clone();
        Box::new(async move {
            if let Err(refusal) = admitted {
                crate::telemetry::record_error(&span, refusal.kind());
                return Err(WasiHttpError::InternalError(Some(refusal.to_string())));
            }
            let request = into_wit_request(request, host.limits.memory_bytes).await?;
            let sent = io
                .spawn(send_http(host.clone(), request, span.clone()).instrument(span))
                .await
                .map_err(|e| WasiHttpError::InternalError(Some(format!("the request failed: {e}"))))?;
            let response = sent.map_err(|error| into_wasi_error(error, &host, &delivery_id))?;
            let body: WasiBody = Full::new(Bytes::from(response.body))
                .map_err(|never| match never {})
                .boxed_unsync();
            let mut built = http::Response::builder().status(response.status);
            for (name, value) in &response.headers {
                built = built.header(name, value);
            }
            let built = built
                .body(body)
                .map_err(|e| WasiHttpError::InternalError(Some(format!("the vendor's answer: {e}"))))?;
            Ok((built, Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

/// A wasi:http request as the `http` import's record, its body read whole (at most
/// `max_body_bytes`, which bounds what `http.send` takes too: the guest's memory).
async fn into_wit_request(
    request: http::Request<WasiBody>,
    max_body_bytes: usize,
) -> Result<wt::HttpRequest, WasiHttpError> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, max_body_bytes)
        .collect()
        .await
        .map_err(|_| WasiHttpError::HttpRequestBodySize(Some(max_body_bytes as u64)))?
        .to_bytes();
    let mut headers = Vec::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let value = value.to_str().map_err(|_| WasiHttpError::HttpRequestHeaderSize {
            field_name: Some(name.to_string()),
            field_size: None,
        })?;
        headers.push((name.to_string(), value.to_string()));
    }
    Ok(wt::HttpRequest {
        method: parts.method.to_string(),
        url: parts.uri.to_string(),
        headers,
        body: body.to_vec(),
    })
}

/// The wasi:http error code for an `http.send` error. A denial's reason (which origin, which
/// range) has no place in wasi:http's `HTTP-request-denied`: it is logged, redacted, as
/// `http.send`'s caller logs it.
fn into_wasi_error(error: HttpError, host: &TenantHost, delivery_id: &str) -> WasiHttpError {
    match error {
        HttpError::Denied(reason) => {
            let reason = loggable(&reason, &host.secrets);
            tracing::warn!(tenant = %host.tenant, %delivery_id, %reason, "adapter HTTP request denied (wasi:http)");
            WasiHttpError::HttpRequestDenied
        }
        HttpError::Timeout => WasiHttpError::HttpResponseTimeout,
        HttpError::LimitExceeded(what) => WasiHttpError::InternalError(Some(what)),
        HttpError::Connection(what) => WasiHttpError::InternalError(Some(loggable(&what, &host.secrets))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use http_body_util::Empty;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::clock::Deadline;
    use crate::config::TenantConfig;
    use crate::runtime::outgoing_http::Refusal;
    use crate::runtime::{Breakers, HostServices};
    use crate::store::{CommitMode, SqliteStore};

    /// A vendor on loopback that answers every request 200 `hi` and counts them.
    async fn vendor() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).await.unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-vendor: yes\r\nconnection: close\r\n\r\nhi")
                    .await;
            }
        });
        (url, seen)
    }

    /// The hooks of a call for a tenant allowed `vendor_url` only, with `http_calls` requests.
    fn hooks(vendor_url: &str, http_calls: u32, lease: Option<Arc<Deadline>>) -> OutgoingHttp {
        let dir = std::env::temp_dir().join(format!("dolphin-outgoing-http-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let tenant: TenantConfig = toml::from_str(&format!(
            "name = \"acme\"\nowner = \"o\"\nadapter = \"a.wasm\"\nallowed_hosts = [\"{vendor_url}\"]\n\
             allow_private_networks = true\n[limits]\nhttp_calls = {http_calls}\n[secrets]\ntoken = \"s3cr3t-value-1234\""
        ))
        .unwrap();
        let three_dolphins = toml::from_str("base_url = \"http://127.0.0.1:9\"\napi_token = \"t\"").unwrap();
        let services = Arc::new(HostServices {
            store: Arc::new(SqliteStore::open(&dir.join("store.db"), CommitMode::Group).unwrap()),
            egress: crate::egress::EgressClients::new().unwrap(),
            three_dolphins: crate::three_dolphins::ThreeDolphinsClient::new(three_dolphins).unwrap(),
        });
        let breakers = Breakers::new(5, Duration::from_secs(1));
        let host = TenantHost::from_config(&tenant, breakers, Default::default(), services).unwrap();
        OutgoingHttp::new(Arc::new(host), tokio::runtime::Handle::current(), lease, "d-1".into())
    }

    fn get(url: &str) -> http::Request<WasiBody> {
        let body: WasiBody = Empty::<Bytes>::new().map_err(|never| match never {}).boxed_unsync();
        http::Request::get(url).body(body).unwrap()
    }

    async fn send(
        hooks: &mut OutgoingHttp,
        request: http::Request<WasiBody>,
    ) -> Result<http::Response<WasiBody>, WasiHttpError> {
        let sent = Box::into_pin(hooks.send_request(request, None, Box::new(async { Ok(()) }))).await;
        sent.map(|(response, _)| response)
    }

    #[tokio::test]
    async fn an_allowed_origin_is_sent_and_its_answer_given_back() {
        let (url, seen) = vendor().await;
        let mut hooks = hooks(&url, 4, None);
        let response = send(&mut hooks, get(&format!("{url}/messages"))).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-vendor"], "yes");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"hi");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn another_origin_is_denied_and_not_sent() {
        let (url, seen) = vendor().await;
        let (other, other_seen) = vendor().await;
        let mut hooks = hooks(&url, 4, None);
        let error = send(&mut hooks, get(&format!("{other}/messages"))).await.unwrap_err();
        assert!(matches!(error, WasiHttpError::HttpRequestDenied), "{error}");
        let error = send(&mut hooks, get("http://169.254.169.254/latest/meta-data"))
            .await
            .unwrap_err();
        assert!(matches!(error, WasiHttpError::HttpRequestDenied), "{error}");
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(other_seen.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn the_calls_budget_counts_every_request_and_refuses_past_it() {
        let (url, seen) = vendor().await;
        let mut hooks = hooks(&url, 2, None);
        // `http.send` takes from the same budget.
        assert_eq!(hooks.admit(), Ok(()));
        send(&mut hooks, get(&url)).await.unwrap();
        let error = send(&mut hooks, get(&url)).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            WasiHttpError::InternalError(Some("limit of 2 HTTP requests per call reached".into())).to_string()
        );
        assert_eq!(hooks.admit(), Err(Refusal::TooManyRequests(2)));
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn nothing_is_sent_once_the_deliverys_lease_has_ended() {
        let (url, seen) = vendor().await;
        let lease = Arc::new(Deadline::at(tokio::time::Instant::now()));
        let mut hooks = hooks(&url, 4, Some(lease));
        assert!(send(&mut hooks, get(&url)).await.is_err());
        assert_eq!(hooks.admit(), Err(Refusal::LeaseEnded));
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_request_body_larger_than_the_calls_memory_is_refused() {
        let (url, seen) = vendor().await;
        let mut hooks = hooks(&url, 4, None);
        let limit = hooks.host.limits.memory_bytes;
        let body: WasiBody = Full::new(Bytes::from(vec![b'x'; limit + 1]))
            .map_err(|never| match never {})
            .boxed_unsync();
        let request = http::Request::post(&url).body(body).unwrap();
        let error = send(&mut hooks, request).await.unwrap_err();
        assert!(
            matches!(error, WasiHttpError::HttpRequestBodySize(Some(n)) if n == limit as u64),
            "{error}"
        );
        assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
