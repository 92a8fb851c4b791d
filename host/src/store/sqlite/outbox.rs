//! The SQLite store's outbox: accepting deliveries (with their idempotency keys), finding due
//! ones, claims and leases, outcomes, dead letters, replay, purges, stats and backlog.

use std::time::Duration;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params};

use super::tickets::remember_ticket;
use super::{Queueing, SqliteStore};
use crate::store::{
    Accepted, DeadLetterFilter, Delivery, Direction, Lease, NewDelivery, OutboxStats, Outcome, PurgeBefore,
    TenantBacklog, TenantDeadLetters,
};

/// Rows one purge step deletes: a purge never holds the writer for long.
const PURGE_BATCH: usize = 1000;

const DELIVERY_COLUMNS: &str = "seq, delivery_id, tenant, owner, direction, ticket, payload, attempts, retry_base, state, \
     last_error, created_at, next_attempt_at, lease_owner, trace_context";

fn delivery_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        seq: row.get(0)?,
        delivery_id: row.get(1)?,
        tenant: row.get(2)?,
        owner: row.get(3)?,
        direction: Direction::parse(&row.get::<_, String>(4)?),
        ticket: row.get(5)?,
        payload: row.get(6)?,
        attempts: row.get(7)?,
        retry_base: row.get(8)?,
        state: row.get(9)?,
        last_error: row.get(10)?,
        created_at: row.get(11)?,
        next_attempt_at: row.get(12)?,
        lease_owner: row.get(13)?,
        trace_context: row.get(14)?,
    })
}

/// `WHERE` fragment and parameters selecting dead letters by `filter` (parameters from `?2`).
fn dead_letter_condition(filter: &DeadLetterFilter) -> (&'static str, Option<String>) {
    match filter {
        DeadLetterFilter::One(id) => ("state = 'dead' AND delivery_id = ?2", Some(id.clone())),
        DeadLetterFilter::Tenant(tenant) => ("state = 'dead' AND tenant = ?2", Some(tenant.clone())),
        DeadLetterFilter::All => ("state = 'dead' AND ?2 IS NULL", None),
    }
}

/// Stores `items` on `conn` (inside the caller's write, which the writer undoes alone if it
/// fails), each unless its idempotency key was taken within `window`, remembering their tickets.
pub(super) fn enqueue_in(
    conn: &Connection,
    items: &[&NewDelivery],
    window: Duration,
    now: i64,
) -> rusqlite::Result<Vec<Accepted>> {
    let window_start = now - window.as_millis() as i64;
    let mut accepted = Vec::with_capacity(items.len());
    for item in items {
        if let Some(info) = &item.ticket_info {
            remember_ticket(conn, &item.owner, &item.ticket, info, now)?;
        }
        if let Some(key) = &item.idempotency_key {
            let earlier: Option<String> = conn
                .prepare_cached(
                    "SELECT delivery_id FROM idempotency WHERE tenant = ?1 AND key = ?2 AND created_at > ?3",
                )?
                .query_row(params![item.tenant, key, window_start], |row| row.get(0))
                .optional()?;
            if let Some(delivery_id) = earlier {
                accepted.push(Accepted {
                    delivery_id,
                    duplicate: true,
                });
                continue;
            }
            conn.prepare_cached(
                "INSERT INTO idempotency (tenant, key, delivery_id, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, key) DO UPDATE SET delivery_id = excluded.delivery_id,
                     created_at = excluded.created_at",
            )?
            .execute(params![item.tenant, key, item.delivery_id, now])?;
        }
        conn.prepare_cached(
            "INSERT INTO outbox (delivery_id, tenant, owner, direction, ticket, payload, state, created_at, next_attempt_at,
                 trace_context)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7, ?8)",
        )?
        .execute(params![
            item.delivery_id,
            item.tenant,
            item.owner,
            item.direction.as_str(),
            item.ticket,
            item.payload,
            now,
            item.trace_context
        ])?;
        accepted.push(Accepted {
            delivery_id: item.delivery_id.clone(),
            duplicate: false,
        });
    }
    Ok(accepted)
}

pub(super) async fn enqueue(
    store: &SqliteStore,
    deliveries: Vec<NewDelivery>,
    window: Duration,
) -> anyhow::Result<Vec<Accepted>> {
    store
        .write(Queueing::RefuseWhenFull, move |c, now| {
            enqueue_in(c, &deliveries.iter().collect::<Vec<_>>(), window, now)
        })
        .await
}

pub(super) async fn due(
    store: &SqliteStore,
    now: i64,
    limit: usize,
    skip_tenants: &[String],
) -> anyhow::Result<Vec<Delivery>> {
    let skip = serde_json::to_string(skip_tenants).expect("names serialize");
    store
        .read(move |c| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE seq IN (
                     SELECT seq FROM ticket_heads
                     WHERE next_attempt_at <= ?1 AND tenant NOT IN (SELECT value FROM json_each(?3))
                     ORDER BY next_attempt_at, seq LIMIT ?2)
                 ORDER BY next_attempt_at, seq"
            );
            let mut statement = c.prepare_cached(&sql)?;
            let rows = statement.query_map(params![now, limit as i64, skip], delivery_row)?;
            rows.collect()
        })
        .await
}

pub(super) async fn next_due_after(store: &SqliteStore, now: i64) -> anyhow::Result<Option<i64>> {
    store
        .read(move |c| {
            c.prepare_cached("SELECT MIN(next_attempt_at) FROM ticket_heads WHERE next_attempt_at > ?1")?
                .query_row(params![now], |r| r.get(0))
        })
        .await
}

/// The condition of a claim beyond the attempt count (`?5` the lease's start): the delivery's
/// time has come (an earlier lease ended), and no other event of its ticket holds a lease (a
/// replayed dead letter waits for a later event that is running).
const CLAIMABLE: &str = "next_attempt_at <= ?5 AND NOT EXISTS (
         SELECT 1 FROM outbox other WHERE other.owner = outbox.owner AND other.direction = outbox.direction
         AND other.ticket = outbox.ticket AND other.state = 'pending' AND other.seq <> outbox.seq
         AND other.lease_owner IS NOT NULL AND other.next_attempt_at > ?5)";

pub(super) async fn claim(store: &SqliteStore, seq: i64, attempts: u32, lease: &Lease) -> anyhow::Result<bool> {
    let (owner, from, until) = (lease.owner.clone(), lease.from_ms, lease.until_ms);
    store
        .write(Queueing::WaitForRoom, move |c, _| {
            c.prepare_cached(&format!(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?3, lease_owner = ?4
                 WHERE seq = ?1 AND state = 'pending' AND attempts = ?2 AND {CLAIMABLE}"
            ))?
            .execute(params![seq, attempts, until, owner, from])
            .map(|n| n == 1)
        })
        .await
}

pub(super) async fn release_all_leases(store: &SqliteStore) -> anyhow::Result<usize> {
    store
        .write(Queueing::WaitForRoom, move |c, now| {
            c.execute(
                "UPDATE outbox SET next_attempt_at = ?1, lease_owner = NULL
                 WHERE state = 'pending' AND lease_owner IS NOT NULL",
                params![now],
            )
        })
        .await
}

pub(super) async fn renew(store: &SqliteStore, seq: i64, attempt: u32, lease: &Lease) -> anyhow::Result<bool> {
    let (owner, until) = (lease.owner.clone(), lease.until_ms);
    store
        .write(Queueing::WaitForRoom, move |c, _| {
            c.prepare_cached(
                "UPDATE outbox SET next_attempt_at = ?3
                 WHERE seq = ?1 AND state = 'pending' AND attempts = ?2 AND lease_owner = ?4",
            )?
            .execute(params![seq, attempt, until, owner])
            .map(|n| n == 1)
        })
        .await
}

pub(super) async fn record(store: &SqliteStore, seq: i64, attempt: u32, outcome: Outcome) -> anyhow::Result<bool> {
    store
        .write(Queueing::WaitForRoom, move |c, now| {
            let changed = match &outcome {
                Outcome::Delivered => c
                    .prepare_cached(
                        "UPDATE outbox SET state = 'delivered', finished_at = ?3, last_error = NULL, lease_owner = NULL
                         WHERE seq = ?1 AND state = 'pending' AND attempts = ?2",
                    )?
                    .execute(params![seq, attempt, now])?,
                Outcome::RetryAt(at, error) => c
                    .prepare_cached(
                        "UPDATE outbox SET next_attempt_at = ?3, last_error = ?4, lease_owner = NULL
                         WHERE seq = ?1 AND state = 'pending' AND attempts = ?2",
                    )?
                    .execute(params![seq, attempt, at, error])?,
                Outcome::Dead(error) => c
                    .prepare_cached(
                        "UPDATE outbox SET state = 'dead', last_error = ?3, finished_at = ?4, lease_owner = NULL
                         WHERE seq = ?1 AND state = 'pending' AND attempts = ?2",
                    )?
                    .execute(params![seq, attempt, error, now])?,
                Outcome::NotAttempted(at, error) => c
                    .prepare_cached(
                        "UPDATE outbox SET attempts = attempts - 1, next_attempt_at = ?3, last_error = ?4, lease_owner = NULL
                         WHERE seq = ?1 AND state = 'pending' AND attempts = ?2",
                    )?
                    .execute(params![seq, attempt, at, error])?,
            };
            Ok(changed == 1)
        })
        .await
}

pub(super) async fn dead_letters(
    store: &SqliteStore,
    tenant: Option<&str>,
    limit: usize,
) -> anyhow::Result<Vec<Delivery>> {
    let tenant = tenant.map(str::to_string);
    store
        .read(move |c| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE state = 'dead' AND (?1 IS NULL OR tenant = ?1)
                 ORDER BY seq LIMIT ?2"
            );
            let mut statement = c.prepare_cached(&sql)?;
            let rows = statement.query_map(params![tenant, limit as i64], delivery_row)?;
            rows.collect()
        })
        .await
}

pub(super) async fn delivery(store: &SqliteStore, delivery_id: &str) -> anyhow::Result<Option<Delivery>> {
    let id = delivery_id.to_string();
    store
        .read(move |c| {
            c.query_row(
                &format!("SELECT {DELIVERY_COLUMNS} FROM outbox WHERE delivery_id = ?1"),
                params![id],
                delivery_row,
            )
            .optional()
        })
        .await
}

pub(super) async fn replay(
    store: &SqliteStore,
    filter: DeadLetterFilter,
    to_tenant: Option<&str>,
) -> anyhow::Result<usize> {
    let to_tenant = to_tenant.map(str::to_string);
    store
        .write(Queueing::WaitForRoom, move |c, now| {
            let (condition, value) = dead_letter_condition(&filter);
            c.execute(
                &format!(
                    "UPDATE outbox SET state = 'pending', retry_base = attempts, next_attempt_at = ?1,
                         finished_at = NULL, tenant = COALESCE(?3, tenant)
                     WHERE {condition}"
                ),
                params![now, value, to_tenant],
            )
        })
        .await
}

pub(super) async fn purge_dead_letters(
    store: &SqliteStore,
    filter: DeadLetterFilter,
    before_ms: i64,
) -> anyhow::Result<usize> {
    let (condition, value) = dead_letter_condition(&filter);
    let value = value.map_or(SqlValue::Null, SqlValue::Text);
    delete_in_batches(
        store,
        "outbox",
        "seq",
        format!("{condition} AND finished_at < ?1"),
        vec![SqlValue::Integer(before_ms), value],
    )
    .await
}

pub(super) async fn purge(store: &SqliteStore, before: PurgeBefore) -> anyhow::Result<usize> {
    let steps = [
        (
            "outbox",
            "seq",
            "state = 'delivered' AND finished_at < ?1",
            Some(before.delivered),
        ),
        (
            "outbox",
            "seq",
            "state = 'dead' AND finished_at < ?1",
            before.dead_letters,
        ),
        (
            "idempotency",
            "tenant, key",
            "created_at < ?1",
            Some(before.idempotency_keys),
        ),
        ("webhooks", "tenant, key", "created_at < ?1", Some(before.webhook_keys)),
        (
            "webhook_events",
            "tenant, key",
            "created_at < ?1",
            Some(before.webhook_keys),
        ),
        (
            "tickets",
            "owner, ticket_number",
            "updated_at < ?1",
            Some(before.tickets),
        ),
    ];
    let mut events = 0;
    for (table, key, condition, before) in steps {
        let Some(before) = before else { continue };
        let deleted = delete_in_batches(
            store,
            table,
            key,
            condition.to_string(),
            vec![SqlValue::Integer(before)],
        )
        .await?;
        if table == "outbox" {
            events += deleted;
        }
    }
    Ok(events)
}

/// Deletes the rows of `table` (whose key is `key`) matching `condition` with `values`,
/// [`PURGE_BATCH`] rows per write, so a large purge never holds the writer for long.
/// The condition is checked again by the DELETE itself: a row another writer changed after
/// the batch was selected (a dead letter replayed, a key taken again) is judged as that writer
/// left it.
async fn delete_in_batches(
    store: &SqliteStore,
    table: &'static str,
    key: &'static str,
    condition: String,
    values: Vec<SqlValue>,
) -> anyhow::Result<usize> {
    let sql = format!(
        "DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {condition} LIMIT {PURGE_BATCH})
         AND {condition}"
    );
    let mut total = 0;
    loop {
        let (sql, values) = (sql.clone(), values.clone());
        let deleted = store
            .write(Queueing::WaitForRoom, move |c, _| {
                c.prepare_cached(&sql)?.execute(rusqlite::params_from_iter(&values))
            })
            .await?;
        total += deleted;
        if deleted < PURGE_BATCH {
            return Ok(total);
        }
    }
}

pub(super) async fn stats(store: &SqliteStore) -> anyhow::Result<OutboxStats> {
    store
        .read(|c| {
            let mut stats = OutboxStats::default();
            let mut statement = c.prepare_cached("SELECT state, COUNT(*) FROM outbox GROUP BY state")?;
            let rows = statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
            for row in rows {
                let (state, count) = row?;
                match state.as_str() {
                    "pending" => stats.pending = count,
                    "delivered" => stats.delivered = count,
                    "dead" => stats.dead = count,
                    _ => {}
                }
            }
            Ok(stats)
        })
        .await
}

pub(super) async fn dead_letters_by_tenant(store: &SqliteStore) -> anyhow::Result<Vec<TenantDeadLetters>> {
    store
        .read(|c| {
            let mut statement = c.prepare_cached(
                "SELECT tenant, COUNT(*) FROM outbox WHERE state = 'dead' GROUP BY tenant ORDER BY tenant",
            )?;
            let rows = statement.query_map([], |r| {
                Ok(TenantDeadLetters {
                    tenant: r.get(0)?,
                    dead: r.get(1)?,
                })
            })?;
            rows.collect()
        })
        .await
}

pub(super) async fn backlog_by_tenant(store: &SqliteStore) -> anyhow::Result<Vec<TenantBacklog>> {
    store
        .read(|c| {
            let mut statement = c.prepare_cached(
                "SELECT tenant, COUNT(*), MIN(created_at) FROM outbox WHERE state = 'pending'
                 GROUP BY tenant ORDER BY tenant",
            )?;
            let rows = statement.query_map([], |r| {
                Ok(TenantBacklog {
                    tenant: r.get(0)?,
                    pending: r.get(1)?,
                    oldest_created_at: r.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
}
