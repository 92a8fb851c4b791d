//! The SQLite store's tickets: what the bridge remembers of each owner's tickets (channel,
//! customer, contact), written with their Incoming events and read by adapters' look-ups.

use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use crate::store::TicketInfo;

/// Remembers (or updates) what is known of `owner`'s `ticket`.
pub(super) fn remember_ticket(
    conn: &Connection,
    owner: &str,
    ticket: &str,
    info: &TicketInfo,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO tickets (owner, ticket_number, channel, customer_name, contact_id, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (owner, ticket_number) DO UPDATE SET channel = excluded.channel,
             customer_name = excluded.customer_name, contact_id = excluded.contact_id,
             updated_at = excluded.updated_at",
    )?
    .execute(params![
        owner,
        ticket,
        info.channel,
        info.customer_name,
        info.contact_id,
        now
    ])
    .map(drop)
}

pub(super) async fn ticket(store: &SqliteStore, owner: &str, ticket: &str) -> anyhow::Result<Option<TicketInfo>> {
    let (owner, ticket) = (owner.to_string(), ticket.to_string());
    store
        .point_read(move |c| {
            c.prepare_cached(
                "SELECT channel, customer_name, contact_id FROM tickets WHERE owner = ?1 AND ticket_number = ?2",
            )?
            .query_row(params![owner, ticket], |row| {
                Ok(TicketInfo {
                    channel: row.get(0)?,
                    customer_name: row.get(1)?,
                    contact_id: row.get(2)?,
                })
            })
            .optional()
        })
        .await
}

pub(super) async fn is_contact_of_owner(store: &SqliteStore, owner: &str, contact_id: &str) -> anyhow::Result<bool> {
    // Tickets remembered before contacts were have '' as their contact: never a match.
    if contact_id.is_empty() {
        return Ok(false);
    }
    let (owner, contact_id) = (owner.to_string(), contact_id.to_string());
    store
        .point_read(move |c| {
            c.prepare_cached("SELECT EXISTS (SELECT 1 FROM tickets WHERE owner = ?1 AND contact_id = ?2)")?
                .query_row(params![owner, contact_id], |row| row.get(0))
        })
        .await
}
