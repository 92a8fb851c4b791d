//! The PostgreSQL store's tickets: what the bridge remembers of each owner's tickets (channel,
//! customer, contact), written with their Incoming events and read by adapters' look-ups.

use deadpool_postgres::Transaction;

use super::PostgresStore;
use crate::store::TicketInfo;

/// Remembers (or updates) what is known of `owner`'s `ticket`.
pub(super) async fn remember_ticket(
    tx: &Transaction<'_>,
    owner: &str,
    ticket: &str,
    info: &TicketInfo,
    now: i64,
) -> anyhow::Result<()> {
    let upsert = tx
        .prepare_cached(
            "INSERT INTO tickets (owner, ticket_number, channel, customer_name, contact_id, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (owner, ticket_number) DO UPDATE SET channel = excluded.channel,
                 customer_name = excluded.customer_name, contact_id = excluded.contact_id,
                 updated_at = excluded.updated_at",
        )
        .await?;
    tx.execute(
        &upsert,
        &[
            &owner,
            &ticket,
            &info.channel,
            &info.customer_name,
            &info.contact_id,
            &now,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn ticket(store: &PostgresStore, owner: &str, ticket: &str) -> anyhow::Result<Option<TicketInfo>> {
    let rows = store
        .query(
            "SELECT channel, customer_name, contact_id FROM tickets WHERE owner = $1 AND ticket_number = $2",
            &[&owner, &ticket],
        )
        .await?;
    Ok(rows.first().map(|row| TicketInfo {
        channel: row.get(0),
        customer_name: row.get(1),
        contact_id: row.get(2),
    }))
}

pub(super) async fn is_contact_of_owner(store: &PostgresStore, owner: &str, contact_id: &str) -> anyhow::Result<bool> {
    // Tickets remembered before contacts were have '' as their contact: never a match.
    if contact_id.is_empty() {
        return Ok(false);
    }
    let rows = store
        .query(
            "SELECT EXISTS (SELECT 1 FROM tickets WHERE owner = $1 AND contact_id = $2)",
            &[&owner, &contact_id],
        )
        .await?;
    Ok(rows.first().is_some_and(|row| row.get(0)))
}
