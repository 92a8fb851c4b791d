//! The SQLite store's webhook receipts: a webhook's keys with its first answer, and its events'
//! own keys, stored with its deliveries in one write, so a vendor's retry is answered as the
//! first was and an event it sends again is stored once.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::outbox::enqueue_in;
use super::{Queueing, SqliteStore};
use crate::clock;
use crate::store::{Accepted, NewDelivery, StoredResponse, WebhookAccepted};

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
            let since = now - window.as_millis() as i64;
            let mut kept = Vec::with_capacity(deliveries.len());
            // Per delivery in order: `Some` an event seen before (its first delivery), `None` one
            // stored now.
            let mut seen = Vec::with_capacity(deliveries.len());
            for delivery in &deliveries {
                let first = match &delivery.event_key {
                    Some(key) => take_event_key(c, &tenant, key, &delivery.delivery_id, since, now)?,
                    None => None,
                };
                if first.is_none() {
                    kept.push(delivery);
                }
                seen.push(first);
            }
            let mut stored = enqueue_in(c, &kept, Duration::ZERO, now)?.into_iter();
            Ok(WebhookAccepted::New(
                seen.into_iter()
                    .map(|first| match first {
                        Some(delivery_id) => Accepted {
                            delivery_id,
                            duplicate: true,
                        },
                        None => stored.next().expect("one stored delivery per new event"),
                    })
                    .collect(),
            ))
        })
        .await
}

/// Takes `tenant`'s event key `key` for `delivery_id`, unless it was stored since `since`: then
/// the id of the delivery stored for it first.
fn take_event_key(
    conn: &Connection,
    tenant: &str,
    key: &str,
    delivery_id: &str,
    since: i64,
    now: i64,
) -> rusqlite::Result<Option<String>> {
    let first: Option<String> = conn
        .prepare_cached("SELECT delivery_id FROM webhook_events WHERE tenant = ?1 AND key = ?2 AND created_at > ?3")?
        .query_row(params![tenant, key, since], |row| row.get(0))
        .optional()?;
    if first.is_none() {
        conn.prepare_cached(
            "INSERT INTO webhook_events (tenant, key, delivery_id, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant, key) DO UPDATE SET delivery_id = excluded.delivery_id, created_at = excluded.created_at",
        )?
        .execute(params![tenant, key, delivery_id, now])?;
    }
    Ok(first)
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
