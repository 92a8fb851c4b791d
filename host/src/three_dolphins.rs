//! Client for the 3Dolphins side: posting Outgoing/Command events and the Contact / Conversation
//! History look-ups adapters may ask for.

use std::time::Duration;

use serde_json::{Value, json};
use thiserror::Error;
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::config::ThreeDolphinsConfig;
use crate::contract::ThreeDolphinsEvent;
use crate::telemetry;

/// Why 3Dolphins did not take an event or answer a look-up.
#[derive(Debug, Error)]
pub enum ThreeDolphinsError {
    /// Connection failure, timeout, 5xx or 429: worth retrying.
    #[error("3Dolphins unavailable: {0}")]
    Unavailable(String),
    /// 3Dolphins refused the request (4xx, or an answer other than `{"status":"success"}`).
    #[error("3Dolphins refused: {0}")]
    Refused(String),
    /// The record looked up does not exist.
    #[error("not found")]
    NotFound,
}

/// Talks to one 3Dolphins server.
#[derive(Clone)]
pub struct ThreeDolphinsClient {
    http: reqwest::Client,
    config: ThreeDolphinsConfig,
}

/// Idle connections kept to 3Dolphins for the next post (as many as deliveries usually run at
/// once), closed after 30 s idle: a burst does not leave a descriptor per request open.
const IDLE_CONNECTIONS: usize = 16;

impl ThreeDolphinsClient {
    /// A client for `config`.
    pub fn new(config: ThreeDolphinsConfig) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(IDLE_CONNECTIONS)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(ThreeDolphinsClient { http, config })
    }

    /// Posts one event to its path and expects `{"status":"success"}`, in span
    /// `3dolphins.post` (a child of the current one: the delivery's attempt), which records the
    /// event's kind, 3Dolphins' host and the answer's status.
    pub async fn post_event(&self, event: &ThreeDolphinsEvent, delivery_id: &str) -> Result<(), ThreeDolphinsError> {
        let (path, kind) = match event {
            ThreeDolphinsEvent::Outgoing(_) => (&self.config.outgoing_path, "outgoing"),
            ThreeDolphinsEvent::Command(_) => (&self.config.command_path, "command"),
        };
        let url = format!("{}{}", self.config.base_url.trim_end_matches('/'), path);
        let span = telemetry::span(|| {
            let host = url::Url::parse(&url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string));
            tracing::info_span!("3dolphins.post", otel.kind = "client", http.request.method = "POST",
                server.address = host.unwrap_or_default(), event = kind, http.response.status_code = Empty,
                error.type = Empty, otel.status_code = Empty)
        });
        let result = self
            .post(&url, event, delivery_id, &span)
            .instrument(span.clone())
            .await;
        if let Err(e) = &result {
            let kind = match e {
                ThreeDolphinsError::Unavailable(_) => "unavailable",
                ThreeDolphinsError::Refused(_) => "refused",
                ThreeDolphinsError::NotFound => "not_found",
            };
            telemetry::record_error(&span, kind);
        }
        result
    }

    async fn post(
        &self,
        url: &str,
        event: &ThreeDolphinsEvent,
        delivery_id: &str,
        span: &tracing::Span,
    ) -> Result<(), ThreeDolphinsError> {
        let response = self
            .http
            .post(url)
            .header("Idempotency-Key", delivery_id)
            .json(&event.body())
            .send()
            .await
            .map_err(|e| ThreeDolphinsError::Unavailable(describe(&e)))?;
        let status = response.status();
        span.record("http.response.status_code", status.as_u16());
        let body = match response.bytes().await {
            Ok(body) => body,
            // 3Dolphins may have taken the event, or not: only a retry (with the same
            // Idempotency-Key) settles it, never a dead letter.
            Err(e) => {
                return Err(ThreeDolphinsError::Unavailable(format!(
                    "answered {status} but its body could not be read: {}",
                    describe(&e)
                )));
            }
        };
        check_status(status, &body)?;
        let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if answer.get("status").and_then(Value::as_str) == Some("success") {
            Ok(())
        } else {
            Err(ThreeDolphinsError::Refused(format!(
                "answered {status} without {{\"status\":\"success\"}}: {}",
                preview(&body)
            )))
        }
    }

    /// The Contact API: the `data` of the contact with this id, as JSON text.
    pub async fn contact(&self, contact_id: &str) -> Result<String, ThreeDolphinsError> {
        let url = format!("{}{}", self.config.api_base(), self.config.contact_path);
        let request = self.http.get(url).query(&[("contactId", contact_id)]);
        self.lookup(request).await
    }

    /// The Conversation History (report) API: the `data` for this ticket, as JSON text.
    pub async fn history(&self, ticket_number: &str) -> Result<String, ThreeDolphinsError> {
        let url = format!("{}{}", self.config.api_base(), self.config.history_path);
        let request = self
            .http
            .post(url)
            .query(&[("startIndex", "0")])
            .json(&json!({ "ticketNumber": ticket_number }));
        self.lookup(request).await
    }

    async fn lookup(&self, request: reqwest::RequestBuilder) -> Result<String, ThreeDolphinsError> {
        let Some(token) = &self.config.api_token else {
            return Err(ThreeDolphinsError::Refused(
                "three_dolphins.api_token is not configured".into(),
            ));
        };
        let response = request
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| ThreeDolphinsError::Unavailable(describe(&e)))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(ThreeDolphinsError::NotFound);
        }
        let body = response.bytes().await.unwrap_or_default();
        check_status(status, &body)?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|_| ThreeDolphinsError::Refused(format!("answer is not JSON: {}", preview(&body))))?;
        match answer.get("data") {
            None | Some(Value::Null) => Err(ThreeDolphinsError::NotFound),
            Some(data) => Ok(data.to_string()),
        }
    }
}

fn check_status(status: reqwest::StatusCode, body: &[u8]) -> Result<(), ThreeDolphinsError> {
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Err(ThreeDolphinsError::Unavailable(format!(
            "answered {status}: {}",
            preview(body)
        )))
    } else if !status.is_success() {
        Err(ThreeDolphinsError::Refused(format!(
            "answered {status}: {}",
            preview(body)
        )))
    } else {
        Ok(())
    }
}

/// A reqwest error without the URL's query (which may hold ids) but with its cause.
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    match std::error::Error::source(error) {
        Some(source) => format!("{kind}: {source}"),
        None => kind.to_string(),
    }
}

/// The start of a response body, for error messages.
pub fn preview(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    if body.len() > MAX {
        format!("{text}...")
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::contract::CommandEvent;

    fn client(base_url: String) -> ThreeDolphinsClient {
        let config: ThreeDolphinsConfig =
            toml::from_str(&format!("base_url = \"{base_url}\"\ntimeout_ms = 5000")).expect("config");
        ThreeDolphinsClient::new(config).expect("client")
    }

    fn close_command() -> ThreeDolphinsEvent {
        ThreeDolphinsEvent::Command(CommandEvent {
            channel: "whatsapp".into(),
            ticket_number: "T-1".into(),
            owner: "owner".into(),
            event: "Close".into(),
        })
    }

    /// A 2xx whose body breaks off may or may not have been taken: retry (same
    /// Idempotency-Key), never dead-letter.
    #[tokio::test]
    async fn a_2xx_whose_body_cannot_be_read_is_retried_not_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 8192];
            let _ = socket.read(&mut request).await;
            // Promises 100 bytes, sends 12, and hangs up.
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n";
            socket.write_all(head.as_bytes()).await.unwrap();
            socket.write_all(b"{\"status\":\"s").await.unwrap();
        });
        let error = client(base_url).post_event(&close_command(), "d-1").await.unwrap_err();
        assert!(matches!(error, ThreeDolphinsError::Unavailable(_)), "{error}");
        assert!(error.to_string().contains("could not be read"), "{error}");
    }
}
