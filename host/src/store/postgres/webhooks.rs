//! The PostgreSQL store's webhook receipts: a webhook's keys with its first answer, and its
//! events' own keys, taken with its deliveries in one transaction, so a vendor's retry (at any
//! process) is answered as the first was and an event it sends again is stored once.

use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::GenericClient;

use super::PostgresStore;
use super::outbox::enqueue_in;
use crate::store::{Accepted, NewDelivery, StoredResponse, WebhookAccepted};

/// The answer stored since `since` for the first of `keys` that has one.
async fn webhook_response_in(
    client: &impl GenericClient,
    tenant: &str,
    keys: &[String],
    since: i64,
) -> anyhow::Result<Option<StoredResponse>> {
    let select = client
        .prepare_cached("SELECT status, headers, body FROM webhooks WHERE tenant = $1 AND key = $2 AND created_at > $3")
        .await?;
    for key in keys {
        if let Some(row) = client.query_opt(&select, &[&tenant, key, &since]).await? {
            let headers: String = row.get(1);
            return Ok(Some(StoredResponse {
                status: row.get::<_, i32>(0) as u16,
                headers: serde_json::from_str(&headers).unwrap_or_default(),
                body: row.get(2),
            }));
        }
    }
    Ok(None)
}

pub(super) async fn accept_webhook(
    store: &PostgresStore,
    tenant: &str,
    keys: &[String],
    response: StoredResponse,
    deliveries: Vec<NewDelivery>,
    window: Duration,
) -> anyhow::Result<WebhookAccepted> {
    let now = store.clock.now_ms();
    let since = now - window.as_millis() as i64;
    let headers = serde_json::to_string(&response.headers).expect("headers serialize");
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    // Each key is taken unless held within the window: a retry arriving at another process
    // at the same time waits for this transaction, then finds the key held.
    let take = tx
        .prepare_cached(
            "INSERT INTO webhooks (tenant, key, status, headers, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant, key) DO UPDATE SET status = excluded.status, headers = excluded.headers,
                 body = excluded.body, created_at = excluded.created_at
             WHERE webhooks.created_at <= $7
             RETURNING 1",
        )
        .await?;
    let status = i32::from(response.status);
    for key in keys {
        let taken = tx
            .query_opt(&take, &[&tenant, key, &status, &headers, &response.body, &now, &since])
            .await?;
        if taken.is_none() {
            let first = webhook_response_in(&tx, tenant, std::slice::from_ref(key), since)
                .await?
                .context("a webhook key held but its answer not found")?;
            tx.rollback().await?;
            client.done();
            return Ok(WebhookAccepted::Duplicate(first));
        }
    }
    // Each event key is taken the same way; an event whose key is held within the window is
    // not stored, and answers with the delivery first stored for it.
    let take_event = tx
        .prepare_cached(
            "INSERT INTO webhook_events (tenant, key, delivery_id, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant, key) DO UPDATE SET delivery_id = excluded.delivery_id,
                 created_at = excluded.created_at
             WHERE webhook_events.created_at <= $5
             RETURNING 1",
        )
        .await?;
    let first_of = tx
        .prepare_cached("SELECT delivery_id FROM webhook_events WHERE tenant = $1 AND key = $2")
        .await?;
    let mut kept = Vec::with_capacity(deliveries.len());
    // Per delivery in order: `Some` an event seen before (its first delivery), `None` one stored now.
    let mut seen = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let mut first = None;
        if let Some(key) = &delivery.event_key {
            let taken = tx
                .query_opt(&take_event, &[&tenant, key, &delivery.delivery_id, &now, &since])
                .await?;
            if taken.is_none() {
                let row = tx
                    .query_one(&first_of, &[&tenant, key])
                    .await
                    .context("an event key held but its delivery not found")?;
                first = Some(row.get::<_, String>(0));
            }
        }
        if first.is_none() {
            kept.push(delivery);
        }
        seen.push(first);
    }
    let mut stored = enqueue_in(&tx, &kept, Duration::ZERO, now).await?.into_iter();
    let accepted = seen
        .into_iter()
        .map(|first| match first {
            Some(delivery_id) => Accepted {
                delivery_id,
                duplicate: true,
            },
            None => stored.next().expect("one stored delivery per new event"),
        })
        .collect();
    tx.commit().await.context("store commit failed")?;
    client.done();
    store.committed();
    store.announce.notify_one();
    Ok(WebhookAccepted::New(accepted))
}

pub(super) async fn webhook_response(
    store: &PostgresStore,
    tenant: &str,
    keys: &[String],
    window: Duration,
) -> anyhow::Result<Option<StoredResponse>> {
    let since = store.clock.now_ms() - window.as_millis() as i64;
    let client = store.client().await?;
    let response = webhook_response_in(&*client, tenant, keys, since).await;
    client.done();
    response
}
