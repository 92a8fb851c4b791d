//! The SQLite store's webhook receipts: a webhook's keys with its first answer, stored with its
//! deliveries in one write, so a vendor's retry is answered as the first was.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::outbox::enqueue_in;
use super::{Queueing, SqliteStore};
use crate::clock;
use crate::store::{NewDelivery, StoredResponse, WebhookAccepted};

/// The answer stored since `since` for the first of `keys` that has one.
fn webhook_response_in(
    conn: &Connection,
    tenant: &str,
    keys: &[String],
    since: i64,
) -> rusqlite::Result<Option<StoredResponse>> {
    let mut select = conn.prepare_cached(
        "SELECT status, headers, body FROM webhooks WHERE tenant = ?1 AND key = ?2 AND created_at > ?3",
    )?;
    for key in keys {
        let found = select
            .query_row(params![tenant, key, since], |row| {
                let headers: String = row.get(1)?;
                Ok(StoredResponse {
                    status: row.get(0)?,
                    headers: serde_json::from_str(&headers).unwrap_or_default(),
                    body: row.get(2)?,
                })
            })
            .optional()?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

pub(super) async fn accept_webhook(
    store: &SqliteStore,
    tenant: &str,
    keys: &[String],
    response: StoredResponse,
    deliveries: Vec<NewDelivery>,
    window: Duration,
) -> anyhow::Result<WebhookAccepted> {
    let (tenant, keys) = (tenant.to_string(), keys.to_vec());
    store
        .write(Queueing::RefuseWhenFull, move |c, now| {
            if let Some(first) = webhook_response_in(c, &tenant, &keys, now - window.as_millis() as i64)? {
                return Ok(WebhookAccepted::Duplicate(first));
            }
            let headers = serde_json::to_string(&response.headers).expect("headers serialize");
            let mut insert = c.prepare_cached(
                "INSERT INTO webhooks (tenant, key, status, headers, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant, key) DO UPDATE SET status = excluded.status, headers = excluded.headers,
                     body = excluded.body, created_at = excluded.created_at",
            )?;
            for key in &keys {
                insert.execute(params![tenant, key, response.status, headers, response.body, now])?;
            }
            enqueue_in(c, deliveries, Duration::ZERO, now).map(WebhookAccepted::New)
        })
        .await
}

pub(super) async fn webhook_response(
    store: &SqliteStore,
    tenant: &str,
    keys: &[String],
    window: Duration,
) -> anyhow::Result<Option<StoredResponse>> {
    let (tenant, keys) = (tenant.to_string(), keys.to_vec());
    let since = clock::now_ms() - window.as_millis() as i64;
    store.read(move |c| webhook_response_in(c, &tenant, &keys, since)).await
}
