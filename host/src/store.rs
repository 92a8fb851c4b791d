//! The embedded database (SQLite, WAL mode): adapters' key-value data and what the bridge
//! remembers of each ticket. One file, one fsync domain.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

/// What the bridge remembers of a ticket from its Incoming events, to complete the Outgoing and
/// Command events an adapter produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketInfo {
    pub channel: String,
    pub customer_name: String,
}

/// Handle to the embedded database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the store directory {}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("opening the store {}", path.display()))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS kv (
                 tenant TEXT NOT NULL,
                 key TEXT NOT NULL,
                 value BLOB NOT NULL,
                 PRIMARY KEY (tenant, key)
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS tickets (
                 owner TEXT NOT NULL,
                 ticket_number TEXT NOT NULL,
                 channel TEXT NOT NULL,
                 customer_name TEXT NOT NULL,
                 updated_at INTEGER NOT NULL,
                 PRIMARY KEY (owner, ticket_number)
             ) WITHOUT ROWID;",
        )
        .with_context(|| format!("initialising the store {}", path.display()))?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on a blocking thread.
    async fn with_conn<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> anyhow::Result<R> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut conn)
        })
        .await
        .context("store task failed")?
        .context("store query failed")
    }

    /// Reads one of `tenant`'s keys.
    pub async fn kv_get(&self, tenant: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let (tenant, key) = (tenant.to_string(), key.to_string());
        self.with_conn(move |c| {
            c.query_row(
                "SELECT value FROM kv WHERE tenant = ?1 AND key = ?2",
                params![tenant, key],
                |row| row.get(0),
            )
            .optional()
        })
        .await
    }

    /// Writes one of `tenant`'s keys.
    pub async fn kv_set(&self, tenant: &str, key: &str, value: Vec<u8>) -> anyhow::Result<()> {
        let (tenant, key) = (tenant.to_string(), key.to_string());
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO kv (tenant, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant, key) DO UPDATE SET value = excluded.value",
                params![tenant, key, value],
            )
            .map(drop)
        })
        .await
    }

    /// Deletes one of `tenant`'s keys (no error when absent).
    pub async fn kv_delete(&self, tenant: &str, key: &str) -> anyhow::Result<()> {
        let (tenant, key) = (tenant.to_string(), key.to_string());
        self.with_conn(move |c| {
            c.execute("DELETE FROM kv WHERE tenant = ?1 AND key = ?2", params![tenant, key])
                .map(drop)
        })
        .await
    }

    /// Remembers a ticket's channel and customer name from an Incoming event.
    pub async fn remember_ticket(&self, owner: &str, ticket: &str, info: TicketInfo) -> anyhow::Result<()> {
        let (owner, ticket) = (owner.to_string(), ticket.to_string());
        let now = chrono::Utc::now().timestamp_millis();
        self.with_conn(move |c| {
            c.execute(
                "INSERT INTO tickets (owner, ticket_number, channel, customer_name, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (owner, ticket_number) DO UPDATE SET channel = excluded.channel,
                     customer_name = excluded.customer_name, updated_at = excluded.updated_at",
                params![owner, ticket, info.channel, info.customer_name, now],
            )
            .map(drop)
        })
        .await
    }

    /// What the bridge knows of a ticket, if it has seen it.
    pub async fn ticket(&self, owner: &str, ticket: &str) -> anyhow::Result<Option<TicketInfo>> {
        let (owner, ticket) = (owner.to_string(), ticket.to_string());
        self.with_conn(move |c| {
            c.query_row(
                "SELECT channel, customer_name FROM tickets WHERE owner = ?1 AND ticket_number = ?2",
                params![owner, ticket],
                |row| {
                    Ok(TicketInfo {
                        channel: row.get(0)?,
                        customer_name: row.get(1)?,
                    })
                },
            )
            .optional()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kv_is_namespaced_by_tenant() {
        let dir = std::env::temp_dir().join(format!("db-kv-{}", uuid::Uuid::now_v7()));
        let store = Store::open(&dir.join("t.db")).unwrap();
        store.kv_set("a", "k", b"1".to_vec()).await.unwrap();
        store.kv_set("b", "k", b"2".to_vec()).await.unwrap();
        assert_eq!(store.kv_get("a", "k").await.unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.kv_get("b", "k").await.unwrap(), Some(b"2".to_vec()));
        store.kv_delete("a", "k").await.unwrap();
        assert_eq!(store.kv_get("a", "k").await.unwrap(), None);
        assert_eq!(store.kv_get("b", "k").await.unwrap(), Some(b"2".to_vec()));
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn tickets_are_remembered_per_owner() {
        let dir = std::env::temp_dir().join(format!("db-t-{}", uuid::Uuid::now_v7()));
        let store = Store::open(&dir.join("t.db")).unwrap();
        let info = TicketInfo {
            channel: "whatsapp".into(),
            customer_name: "Farhan".into(),
        };
        store.remember_ticket("o1", "t1", info.clone()).await.unwrap();
        assert_eq!(store.ticket("o1", "t1").await.unwrap(), Some(info));
        assert_eq!(store.ticket("o2", "t1").await.unwrap(), None);
        std::fs::remove_dir_all(dir).ok();
    }
}
