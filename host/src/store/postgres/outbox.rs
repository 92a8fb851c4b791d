//! The PostgreSQL store's outbox: accepting deliveries (with their idempotency keys), finding
//! due ones, leases, dead letters, replay, purges, stats and backlog (claims and outcomes are
//! written in groups: [`super::claims`]).

use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::PostgresStore;
use super::claims::LOCK_TICKETS_OF_DELIVERIES;
use super::tickets::remember_ticket;
use crate::store::{
    Accepted, DeadLetterFilter, Delivery, Direction, Lease, NewDelivery, OutboxStats, PurgeBefore, TenantBacklog,
    TenantDeadLetters,
};

/// Rows one purge step deletes.
const PURGE_BATCH: i64 = 1000;
/// Dead letters one replay transaction makes pending again: a replay of a tenant's thousands
/// holds the locks of this many tickets at most.
const REPLAY_BATCH: i64 = 500;

/// Takes the head locks (`lock_ticket_heads`, migration V5) of the tickets `$1` names, in the
/// order of the locks' keys. The triggers take them again (held already, they do not wait), so
/// two transactions covering the same tickets in other orders cannot deadlock.
const LOCK_TICKETS_IN_ORDER: &str = "SELECT lock_ticket_heads(o, d, t) FROM (
         SELECT DISTINCT hashtext(o || '/' || d || '/' || t) AS h, o, d, t
         FROM unnest($1::text[], $2::text[], $3::text[]) AS x(o, d, t)
         ORDER BY h, o, d, t OFFSET 0) sorted";

/// Takes the head locks of the tickets of `items` in key order (see [`LOCK_TICKETS_IN_ORDER`]).
pub(super) async fn lock_tickets_in_order(tx: &Transaction<'_>, items: &[&NewDelivery]) -> anyhow::Result<()> {
    if items.len() < 2 {
        return Ok(());
    }
    let owners: Vec<&str> = items.iter().map(|d| d.owner.as_str()).collect();
    let directions: Vec<&str> = items.iter().map(|d| d.direction.as_str()).collect();
    let tickets: Vec<&str> = items.iter().map(|d| d.ticket.as_str()).collect();
    let lock = tx.prepare_cached(LOCK_TICKETS_IN_ORDER).await?;
    tx.execute(&lock, &[&owners, &directions, &tickets])
        .await
        .context("taking the tickets' locks")?;
    Ok(())
}

const DELIVERY_COLUMNS: &str = "seq, delivery_id, tenant, owner, direction, ticket, payload, attempts, retry_base, state, \
     last_error, created_at, next_attempt_at, lease_owner, trace_context";

fn delivery_row(row: &Row) -> Delivery {
    Delivery {
        seq: row.get(0),
        delivery_id: row.get(1),
        tenant: row.get(2),
        owner: row.get(3),
        direction: Direction::parse(row.get(4)),
        ticket: row.get(5),
        payload: row.get(6),
        attempts: row.get::<_, i32>(7) as u32,
        retry_base: row.get::<_, i32>(8) as u32,
        state: row.get(9),
        last_error: row.get(10),
        created_at: row.get(11),
        next_attempt_at: row.get(12),
        lease_owner: row.get(13),
        trace_context: row.get(14),
    }
}

/// `WHERE` fragment selecting dead letters by `filter`, and its parameter (`$<param>`).
fn dead_letter_condition(filter: &DeadLetterFilter, param: usize) -> (String, Option<String>) {
    match filter {
        DeadLetterFilter::One(id) => (format!("state = 'dead' AND delivery_id = ${param}"), Some(id.clone())),
        DeadLetterFilter::Tenant(tenant) => (format!("state = 'dead' AND tenant = ${param}"), Some(tenant.clone())),
        DeadLetterFilter::All => (format!("state = 'dead' AND ${param}::text IS NULL"), None),
    }
}

/// Stores `items` in `tx`, each unless its idempotency key was taken within `window`,
/// remembering their tickets.
pub(super) async fn enqueue_in(
    tx: &Transaction<'_>,
    items: &[NewDelivery],
    window: Duration,
    now: i64,
) -> anyhow::Result<Vec<Accepted>> {
    let window_start = now - window.as_millis() as i64;
    lock_tickets_in_order(tx, &items.iter().collect::<Vec<_>>()).await?;
    let mut accepted = Vec::with_capacity(items.len());
    for item in items {
        if let Some(info) = &item.ticket_info {
            remember_ticket(tx, &item.owner, &item.ticket, info, now).await?;
        }
        if let Some(key) = &item.idempotency_key {
            // Taken unless held within the window; a concurrent holder (another process) is
            // waited for, then seen.
            let take = tx
                .prepare_cached(
                    "INSERT INTO idempotency (tenant, key, delivery_id, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (tenant, key) DO UPDATE SET delivery_id = excluded.delivery_id,
                         created_at = excluded.created_at
                     WHERE idempotency.created_at <= $5
                     RETURNING delivery_id",
                )
                .await?;
            let taken = tx
                .query_opt(&take, &[&item.tenant, key, &item.delivery_id, &now, &window_start])
                .await?;
            if taken.is_none() {
                let earlier = tx
                    .query_one(
                        "SELECT delivery_id FROM idempotency WHERE tenant = $1 AND key = $2",
                        &[&item.tenant, key],
                    )
                    .await?;
                accepted.push(Accepted {
                    delivery_id: earlier.get(0),
                    duplicate: true,
                });
                continue;
            }
        }
        let insert = tx
            .prepare_cached(
                "INSERT INTO outbox (delivery_id, tenant, owner, direction, ticket, payload, state, created_at,
                     next_attempt_at, trace_context)
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7, $8)",
            )
            .await?;
        tx.execute(
            &insert,
            &[
                &item.delivery_id,
                &item.tenant,
                &item.owner,
                &item.direction.as_str(),
                &item.ticket,
                &item.payload,
                &now,
                &item.trace_context,
            ],
        )
        .await?;
        accepted.push(Accepted {
            delivery_id: item.delivery_id.clone(),
            duplicate: false,
        });
    }
    Ok(accepted)
}

pub(super) async fn enqueue(
    store: &PostgresStore,
    deliveries: Vec<NewDelivery>,
    window: Duration,
) -> anyhow::Result<Vec<Accepted>> {
    let now = store.clock.now_ms();
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    let accepted = enqueue_in(&tx, &deliveries, window, now).await?;
    tx.commit().await.context("store commit failed")?;
    client.done();
    store.committed();
    store.announce.notify_one();
    Ok(accepted)
}

pub(super) async fn due(
    store: &PostgresStore,
    now: i64,
    limit: usize,
    skip_tenants: &[String],
) -> anyhow::Result<Vec<Delivery>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE seq IN (
             SELECT seq FROM ticket_heads
             WHERE next_attempt_at <= $1 AND NOT (tenant = ANY ($3))
             ORDER BY next_attempt_at, seq LIMIT $2)
         ORDER BY next_attempt_at, seq"
    );
    let rows = store.query(&sql, &[&now, &(limit as i64), &skip_tenants]).await?;
    Ok(rows.iter().map(delivery_row).collect())
}

pub(super) async fn next_due_after(store: &PostgresStore, now: i64) -> anyhow::Result<Option<i64>> {
    let rows = store
        .query(
            "SELECT MIN(next_attempt_at) FROM ticket_heads WHERE next_attempt_at > $1",
            &[&now],
        )
        .await?;
    Ok(rows.first().and_then(|row| row.get(0)))
}

pub(super) async fn release_all_leases(store: &PostgresStore) -> anyhow::Result<usize> {
    let released = store
        .write(
            "UPDATE outbox SET next_attempt_at = $1, lease_owner = NULL
             WHERE state = 'pending' AND lease_owner IS NOT NULL",
            &[&store.clock.now_ms()],
        )
        .await?;
    Ok(released as usize)
}

pub(super) async fn renew(store: &PostgresStore, seq: i64, attempt: u32, lease: &Lease) -> anyhow::Result<bool> {
    let changed = store
        .write(
            "UPDATE outbox SET next_attempt_at = $3
             WHERE seq = $1 AND state = 'pending' AND attempts = $2 AND lease_owner = $4",
            &[&seq, &(attempt as i32), &lease.until_ms, &lease.owner],
        )
        .await?;
    Ok(changed == 1)
}

pub(super) async fn dead_letters(
    store: &PostgresStore,
    tenant: Option<&str>,
    limit: usize,
) -> anyhow::Result<Vec<Delivery>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE state = 'dead' AND ($1::text IS NULL OR tenant = $1)
         ORDER BY seq LIMIT $2"
    );
    let rows = store.query(&sql, &[&tenant, &(limit as i64)]).await?;
    Ok(rows.iter().map(delivery_row).collect())
}

pub(super) async fn delivery(store: &PostgresStore, delivery_id: &str) -> anyhow::Result<Option<Delivery>> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM outbox WHERE delivery_id = $1");
    let rows = store.query(&sql, &[&delivery_id]).await?;
    Ok(rows.first().map(delivery_row))
}

pub(super) async fn replay(
    store: &PostgresStore,
    filter: DeadLetterFilter,
    to_tenant: Option<&str>,
) -> anyhow::Result<usize> {
    let (select_condition, value) = dead_letter_condition(&filter, 1);
    let (condition, _) = dead_letter_condition(&filter, 2);
    let select = format!("SELECT seq FROM outbox WHERE {select_condition} ORDER BY seq LIMIT {REPLAY_BATCH}");
    let update = format!(
        "UPDATE outbox SET state = 'pending', retry_base = attempts, next_attempt_at = $1,
             finished_at = NULL, tenant = COALESCE($3, tenant)
         WHERE seq = ANY($4) AND {condition}"
    );
    let mut replayed = 0;
    // In batches, each taking its tickets' locks in key order (as accepting does).
    loop {
        let mut client = store.client().await?;
        let tx = client.transaction().await?;
        let batch: Vec<i64> = tx
            .query(&select, &[&value])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        tx.execute(LOCK_TICKETS_OF_DELIVERIES, &[&batch])
            .await
            .context("taking the tickets' locks")?;
        let now = store.clock.now_ms();
        let changed = tx.execute(&update, &[&now, &value, &to_tenant, &batch]).await?;
        tx.commit().await.context("store commit failed")?;
        client.done();
        store.committed();
        replayed += changed;
        if (batch.len() as i64) < REPLAY_BATCH || changed == 0 {
            break;
        }
    }
    if replayed > 0 {
        // At once, not through the announcer: a `dead-letters replay` command exits next.
        let notified = match store.client().await {
            Ok(client) => {
                let sent = client.execute("SELECT pg_notify($1, '')", &[&store.channel]).await;
                client.done();
                sent.map(drop).map_err(anyhow::Error::from)
            }
            Err(e) => Err(e),
        };
        if let Err(e) = notified {
            tracing::debug!(
                error = format!("{e:#}"),
                "cannot announce the replay; replicas find it at their next poll"
            );
        }
    }
    Ok(replayed as usize)
}

pub(super) async fn purge_dead_letters(
    store: &PostgresStore,
    filter: DeadLetterFilter,
    before_ms: i64,
) -> anyhow::Result<usize> {
    let (condition, value) = dead_letter_condition(&filter, 2);
    delete_in_batches(
        store,
        "outbox",
        "seq",
        &format!("{condition} AND finished_at < $1"),
        &[&before_ms, &value],
    )
    .await
}

pub(super) async fn purge(store: &PostgresStore, before: PurgeBefore) -> anyhow::Result<usize> {
    let steps = [
        (
            "outbox",
            "seq",
            "state = 'delivered' AND finished_at < $1",
            Some(before.delivered),
        ),
        (
            "outbox",
            "seq",
            "state = 'dead' AND finished_at < $1",
            before.dead_letters,
        ),
        (
            "idempotency",
            "tenant, key",
            "created_at < $1",
            Some(before.idempotency_keys),
        ),
        ("webhooks", "tenant, key", "created_at < $1", Some(before.webhook_keys)),
        (
            "webhook_events",
            "tenant, key",
            "created_at < $1",
            Some(before.webhook_keys),
        ),
        (
            "tickets",
            "owner, ticket_number",
            "updated_at < $1",
            Some(before.tickets),
        ),
    ];
    let mut events = 0;
    for (table, key, condition, before) in steps {
        let Some(before) = before else { continue };
        let deleted = delete_in_batches(store, table, key, condition, &[&before]).await?;
        if table == "outbox" {
            events += deleted;
        }
    }
    Ok(events)
}

/// Deletes the rows of `table` (whose key is `key`) matching `condition`, [`PURGE_BATCH`]
/// rows per transaction, so a large purge never holds locks for long.
/// The condition is checked again by the DELETE itself: a row another writer changed after
/// the batch was selected (a dead letter replayed, a key taken again) is judged as that writer
/// left it.
async fn delete_in_batches(
    store: &PostgresStore,
    table: &str,
    key: &str,
    condition: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> anyhow::Result<usize> {
    let sql = format!(
        "DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {condition} LIMIT {PURGE_BATCH})
         AND {condition}"
    );
    let mut total = 0;
    loop {
        let deleted = store.write(&sql, params).await?;
        total += deleted as usize;
        if deleted < PURGE_BATCH as u64 {
            return Ok(total);
        }
    }
}

pub(super) async fn stats(store: &PostgresStore) -> anyhow::Result<OutboxStats> {
    let rows = store
        .query("SELECT state, COUNT(*) FROM outbox GROUP BY state", &[])
        .await?;
    let mut stats = OutboxStats::default();
    for row in rows {
        let count = row.get::<_, i64>(1) as u64;
        match row.get::<_, &str>(0) {
            "pending" => stats.pending = count,
            "delivered" => stats.delivered = count,
            "dead" => stats.dead = count,
            _ => {}
        }
    }
    Ok(stats)
}

pub(super) async fn dead_letters_by_tenant(store: &PostgresStore) -> anyhow::Result<Vec<TenantDeadLetters>> {
    let rows = store
        .query(
            "SELECT tenant, COUNT(*) FROM outbox WHERE state = 'dead' GROUP BY tenant ORDER BY tenant",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| TenantDeadLetters {
            tenant: row.get(0),
            dead: row.get::<_, i64>(1) as u64,
        })
        .collect())
}

pub(super) async fn backlog_by_tenant(store: &PostgresStore) -> anyhow::Result<Vec<TenantBacklog>> {
    let rows = store
        .query(
            "SELECT tenant, COUNT(*), MIN(created_at) FROM outbox WHERE state = 'pending'
             GROUP BY tenant ORDER BY tenant",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| TenantBacklog {
            tenant: row.get(0),
            pending: row.get::<_, i64>(1) as u64,
            oldest_created_at: row.get(2),
        })
        .collect())
}
