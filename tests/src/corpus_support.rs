//! Helpers for the bad-input corpus (`e2e/corpus.rs`) and the isolation bench
//! (`src/bin/isolation-bench.rs`):
//!
//! - [`start_with_options`] / [`start_with_server_options`] run a bridge with settings the
//!   [`BridgeConfig`] builder has no method for (`[server] header_read_timeout_ms`,
//!   `body_read_timeout_ms`, `[adapters] breaker_failures`, ...).
//! - [`RawExchange`] sends arbitrary bytes over one TCP connection (broken framing, bytes
//!   dribbled or stalled, a half-closed write side) and reports exactly how the server ended
//!   the exchange: a response, a close without a response, or a reset.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::adapters;
use crate::bridge::{Bridge, BridgeConfig};
use crate::client::HttpResponse;

/// A [`Bridge`] started from a config file this value owns (dropped after the bridge stops).
pub struct TunedBridge {
    // Dropped first: the child is killed before its folder is removed.
    bridge: Bridge,
    _dir: tempfile::TempDir,
}

impl Deref for TunedBridge {
    type Target = Bridge;
    fn deref(&self) -> &Bridge {
        &self.bridge
    }
}

impl DerefMut for TunedBridge {
    fn deref_mut(&mut self) -> &mut Bridge {
        &mut self.bridge
    }
}

/// The TOML of `config` with `options` (`(table, key, value)`, e.g.
/// `("server", "header_read_timeout_ms", 500.into())`) set in its top-level tables.
pub fn toml_with_options(config: &BridgeConfig, options: &[(&str, &str, toml::Value)]) -> String {
    let mut document: toml::Table = config.to_toml().parse().expect("the harness writes valid TOML");
    for (table, key, value) in options {
        document
            .entry(table.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap_or_else(|| panic!("[{table}] is not a table"))
            .insert(key.to_string(), value.clone());
    }
    toml::to_string(&document).expect("a TOML table serialises")
}

/// Starts a bridge with `config` plus `options` (`(table, key, value)`) the builder has no
/// method for; panics, showing its output, when it does not start.
pub async fn start_with_options(config: &BridgeConfig, options: &[(&str, &str, toml::Value)]) -> TunedBridge {
    let dir = tempfile::Builder::new()
        .prefix("dolphin-bridge-e2e-")
        .tempdir()
        .expect("a temp dir");
    let path = dir.path().join("bridge.toml");
    let text = toml_with_options(config, options);
    std::fs::write(&path, &text).unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    // The store path (`bridge.db`) is relative, so it resolves against the config's folder.
    let mut bridge = Bridge::start_from_file(&adapters::bridge_binary(), &path, &config.env, false)
        .await
        .unwrap_or_else(|err| panic!("the bridge did not start: {err}\nits config:\n{text}"));
    bridge.set_incoming_token(config.incoming_token.as_deref());
    TunedBridge { bridge, _dir: dir }
}

/// [`start_with_options`] for the `[server]` table (e.g. `("body_read_timeout_ms", 500.into())`).
pub async fn start_with_server_options(config: &BridgeConfig, server_options: &[(&str, toml::Value)]) -> TunedBridge {
    let options: Vec<(&str, &str, toml::Value)> = server_options
        .iter()
        .map(|(key, value)| ("server", *key, value.clone()))
        .collect();
    start_with_options(config, &options).await
}

/// One step of what the client does on a raw connection.
#[derive(Debug, Clone)]
pub enum Step {
    /// Writes these bytes at once.
    Send(Vec<u8>),
    /// Writes these bytes `chunk` bytes at a time, waiting `every` before each chunk.
    Dribble {
        bytes: Vec<u8>,
        chunk: usize,
        every: Duration,
    },
    /// Waits.
    Pause(Duration),
    /// Closes the write side (FIN); the read side stays open for the answer.
    ShutdownWrite,
}

/// How the server ended a raw exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawEnd {
    /// The server closed the connection (EOF on the read side).
    Closed,
    /// The connection was reset (the error as the OS reported it).
    Reset(String),
    /// Neither within the exchange's time limit.
    TimedOut,
}

/// What happened on a raw connection.
#[derive(Debug, Clone)]
pub struct RawOutcome {
    /// Every byte the server sent.
    pub received: Vec<u8>,
    pub end: RawEnd,
    /// Bytes the client had written when the exchange ended.
    pub sent: usize,
    /// Whether every step had run when the exchange ended.
    pub client_finished: bool,
    /// The error of a failed write, if one failed (e.g. the server had closed).
    pub write_error: Option<String>,
}

impl RawOutcome {
    /// The first HTTP response in [`received`](Self::received), when it holds a complete head.
    pub fn response(&self) -> Option<HttpResponse> {
        parse_response(&self.received).ok()
    }

    /// The response to a `HEAD` request: its head, with no body whatever its `Content-Length`
    /// says; `None` when anything follows the head.
    pub fn response_to_head(&self) -> Option<HttpResponse> {
        let (status, headers, head_len) = parse_head(&self.received).ok()?;
        (head_len == self.received.len()).then(|| HttpResponse {
            status,
            headers,
            body: Bytes::new(),
        })
    }

    /// `closed after 1234 bytes sent, 0 received` and the like, for assertion messages.
    pub fn describe(&self) -> String {
        let head = String::from_utf8_lossy(&self.received[..self.received.len().min(600)]).into_owned();
        format!(
            "{:?} after {} byte(s) sent (all steps done: {}), write error {:?}, {} byte(s) received: {head:?}",
            self.end,
            self.sent,
            self.client_finished,
            self.write_error,
            self.received.len()
        )
    }
}

/// One raw HTTP/1.1 exchange on a fresh connection to `addr` (`127.0.0.1:PORT`): runs `steps`
/// while reading everything the server sends, until the server closes or resets the
/// connection, or `limit` passes. Reading goes on while the client is still writing, so an
/// early answer (413, 401) is seen even when the server stops reading the body.
pub struct RawExchange;

impl RawExchange {
    pub async fn run(addr: &str, steps: Vec<Step>, limit: Duration) -> RawOutcome {
        let stream = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|err| panic!("cannot connect to {addr}: {err}"));
        stream.set_nodelay(true).ok();
        let (mut read, mut write) = stream.into_split();
        let sent = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicBool::new(false));
        let writer = {
            let sent = sent.clone();
            let finished = finished.clone();
            tokio::spawn(async move {
                for step in steps {
                    match step {
                        Step::Send(bytes) => {
                            write.write_all(&bytes).await.map_err(|e| e.to_string())?;
                            sent.fetch_add(bytes.len(), Ordering::Relaxed);
                        }
                        Step::Dribble { bytes, chunk, every } => {
                            for piece in bytes.chunks(chunk.max(1)) {
                                tokio::time::sleep(every).await;
                                write.write_all(piece).await.map_err(|e| e.to_string())?;
                                sent.fetch_add(piece.len(), Ordering::Relaxed);
                            }
                        }
                        Step::Pause(duration) => tokio::time::sleep(duration).await,
                        Step::ShutdownWrite => write.shutdown().await.map_err(|e| e.to_string())?,
                    }
                }
                finished.store(true, Ordering::Relaxed);
                // Keep the write side open (unless shut down above) until the reader is done.
                std::future::pending::<()>().await;
                Ok::<(), String>(())
            })
        };
        let mut received = Vec::new();
        let reading = async {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) => return RawEnd::Closed,
                    Ok(n) => received.extend_from_slice(&buf[..n]),
                    Err(err) => return RawEnd::Reset(err.to_string()),
                }
            }
        };
        let end = tokio::time::timeout(limit, reading).await.unwrap_or(RawEnd::TimedOut);
        let client_finished = finished.load(Ordering::Relaxed);
        let write_error = if writer.is_finished() {
            match writer.await {
                Ok(Err(err)) => Some(err),
                _ => None,
            }
        } else {
            writer.abort();
            None
        };
        RawOutcome {
            received,
            end,
            sent: sent.load(Ordering::Relaxed),
            client_finished,
            write_error,
        }
    }
}

/// `METHOD target HTTP/1.1`, `Host`, `Connection: close`, then `headers` and, when `body` is
/// given, its `Content-Length`; the head ends with the blank line.
pub fn request_head(method: &str, target: &str, headers: &[(&str, &[u8])], content_length: Option<usize>) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n").into_bytes();
    for (name, value) in headers {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    if let Some(length) = content_length {
        head.extend_from_slice(format!("content-length: {length}\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// `body` in HTTP/1.1 chunked encoding, `chunk` bytes per chunk, with the final empty chunk.
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / chunk.max(1) * 8 + 8);
    for piece in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Parses the first response in `bytes`: status line, headers, and the body by
/// `Transfer-Encoding: chunked`, `Content-Length`, or else everything up to the close.
pub fn parse_response(bytes: &[u8]) -> Result<HttpResponse, String> {
    let (status, headers, head_len) = parse_head(bytes)?;
    let rest = &bytes[head_len..];
    let is_chunked = headers
        .get(http::header::TRANSFER_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if is_chunked {
        dechunk(rest)?
    } else if let Some(length) = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        rest.get(..length)
            .ok_or_else(|| format!("the body ended after {} of {length} bytes", rest.len()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body: Bytes::from(body),
    })
}

/// Parses a response head: status, headers, and the head's length (blank line included).
pub fn parse_head(bytes: &[u8]) -> Result<(u16, HeaderMap, usize), String> {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete response head")?;
    let head = std::str::from_utf8(&bytes[..end]).map_err(|e| format!("the head is not UTF-8: {e}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 status line: {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status code in {status_line:?}"))?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("a bad header line {line:?}"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|e| e.to_string())?;
        let value = HeaderValue::from_str(value.trim()).map_err(|e| e.to_string())?;
        headers.append(name, value);
    }
    Ok((status, headers, end + 4))
}

fn dechunk(mut bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = bytes
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunk size line without its end")?;
        let size_text = std::str::from_utf8(&bytes[..line_end]).map_err(|e| e.to_string())?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|e| format!("chunk size {size_text:?}: {e}"))?;
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let data = bytes.get(..size).ok_or("a chunk cut short")?;
        out.extend_from_slice(data);
        bytes = bytes.get(size + 2..).ok_or("a chunk without its end")?;
    }
}

/// The `host:port` part of `http://host:port`.
pub fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, rest)| rest).unwrap_or(url);
    rest.split('/').next().unwrap_or(rest)
}
