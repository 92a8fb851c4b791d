//! What the PostgreSQL store asks of every connection and of the server: the session settings
//! the delivery promise rests on (set, not assumed), timeouts that keep one stalled peer from
//! stalling the others, the server settings it checks at start, the repair of ticket heads, and
//! the database's clock, which every replica reads for leases and due times.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context;

use crate::clock;

/// A statement running longer is cancelled by the server (a purge or replay batch takes far less).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// A lock waited for longer fails the statement: a paused replica's transaction is not waited
/// for until the idle timeout ends it.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// A transaction left idle this long (its replica paused or cut off) is ended by the server,
/// releasing its row and advisory locks.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(15);
/// Keepalives start after this much silence, then probe every [`KEEPALIVE_INTERVAL`], and
/// give up after [`KEEPALIVE_RETRIES`]: a connection to a server that vanished (a failover
/// that blackholes the old primary) fails in about 30 s, not the system's 2 hours.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
/// See [`KEEPALIVE_IDLE`].
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// See [`KEEPALIVE_IDLE`].
pub const KEEPALIVE_RETRIES: u32 = 3;
/// Data sent and not acknowledged this long fails the connection.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// A replica whose clock is further than this from the database's says so (it follows the
/// database's either way).
pub const CLOCK_OFFSET_WARNING: Duration = Duration::from_secs(1);

/// Offsets this small are taken as none, beside the measurement's own uncertainty: both clocks
/// are read in whole milliseconds, and leases are seconds long.
const OFFSET_RESOLUTION_MS: i64 = 10;

/// `config` with the settings of the store's pooled sessions: durable commits and read
/// committed isolation whatever the server's defaults, the timeouts above, and keepalives.
pub fn pooled_session(config: &tokio_postgres::Config) -> tokio_postgres::Config {
    let mut config = with_keepalives(config);
    let settings = format!(
        "-c synchronous_commit=on -c default_transaction_isolation=read\\ committed \
         -c statement_timeout={} -c lock_timeout={} -c idle_in_transaction_session_timeout={}",
        STATEMENT_TIMEOUT.as_millis(),
        LOCK_TIMEOUT.as_millis(),
        IDLE_IN_TRANSACTION_TIMEOUT.as_millis()
    );
    let options = match config.get_options() {
        Some(given) if !given.trim().is_empty() => format!("{given} {settings}"),
        _ => settings,
    };
    config.options(options);
    config
}

/// `config` with keepalives and a TCP user timeout (for every connection, the migration and
/// `LISTEN` ones too, which must not wait on a statement timeout).
pub fn with_keepalives(config: &tokio_postgres::Config) -> tokio_postgres::Config {
    let mut config = config.clone();
    config
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES)
        .tcp_user_timeout(TCP_USER_TIMEOUT);
    config
}

/// Server settings under which an acknowledged event can be lost, in words for the log and
/// `/readyz` (empty when none).
pub async fn durability_warnings(client: &impl tokio_postgres::GenericClient) -> anyhow::Result<Vec<String>> {
    let mut warnings = Vec::new();
    let show = |name: &'static str| async move {
        let row = client
            .query_one(&format!("SHOW {name}"), &[])
            .await
            .with_context(|| format!("reading the server's {name}"))?;
        anyhow::Ok(row.get::<_, String>(0))
    };
    if show("fsync").await? == "off" {
        warnings.push("the server runs with fsync=off: a crash of its machine loses acknowledged events".into());
    }
    if show("full_page_writes").await? == "off" {
        warnings.push("the server runs with full_page_writes=off: a crash can corrupt its tables".into());
    }
    // Standbys the server streams to without waiting for them: a failover to one loses what it
    // had not received. Rows are visible to roles with pg_read_all_stats; others see none.
    let asynchronous: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM pg_stat_replication WHERE sync_state IN ('async', 'potential')",
            &[],
        )
        .await
        .context("reading pg_stat_replication")?
        .get(0);
    if asynchronous > 0 {
        warnings.push(format!(
            "the server has {asynchronous} asynchronous standby(s): a failover to one loses acknowledged events \
             (list them in synchronous_standby_names)"
        ));
    }
    Ok(warnings)
}

/// Rebuilds `ticket_heads` from the outbox when they differ (heads left wrong by the race that
/// migration V5 fixed, or by a hand edit), under a lock that holds writers of the outbox back
/// for the moment it takes. Returns how many heads were wrong.
pub async fn repair_ticket_heads(client: &mut tokio_postgres::Client) -> anyhow::Result<i64> {
    let tx = client.transaction().await?;
    tx.batch_execute("LOCK TABLE outbox IN SHARE ROW EXCLUSIVE MODE")
        .await
        .context("locking the outbox")?;
    let expected =
        "SELECT DISTINCT ON (owner, direction, ticket) owner, direction, ticket, seq, tenant, next_attempt_at
                    FROM outbox WHERE state = 'pending' ORDER BY owner, direction, ticket, seq";
    let wrong: i64 = tx
        .query_one(
            &format!(
                "SELECT COUNT(*) FROM ({expected}) e FULL JOIN ticket_heads h
                   ON (h.owner, h.direction, h.ticket, h.seq, h.tenant, h.next_attempt_at)
                    = (e.owner, e.direction, e.ticket, e.seq, e.tenant, e.next_attempt_at)
                 WHERE e.seq IS NULL OR h.seq IS NULL"
            ),
            &[],
        )
        .await
        .context("comparing ticket heads with the outbox")?
        .get(0);
    if wrong > 0 {
        tx.batch_execute(&format!(
            "DELETE FROM ticket_heads;
             INSERT INTO ticket_heads (owner, direction, ticket, seq, tenant, next_attempt_at) {expected}"
        ))
        .await
        .context("rebuilding ticket heads")?;
    }
    tx.commit().await.context("committing the ticket heads")?;
    Ok(wrong)
}

/// The database's clock as this process reads it: the offset between its own clock and the
/// server's `clock_timestamp()`, measured at start and at each heartbeat.
#[derive(Default)]
pub struct DatabaseClock {
    offset_ms: AtomicI64,
}

impl DatabaseClock {
    /// Now on the database's clock (epoch ms).
    pub fn now_ms(&self) -> i64 {
        clock::now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// The last measured offset: the database's clock minus this process's.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// Reads the server's clock, taking the middle of the round trip as the moment it was
    /// read; warns when this process's clock is far off.
    pub async fn measure(&self, client: &impl tokio_postgres::GenericClient) -> anyhow::Result<i64> {
        let sent = clock::now_ms();
        let server: i64 = client
            .query_one("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint", &[])
            .await
            .context("reading the database's clock")?
            .get(0);
        let received = clock::now_ms();
        // Within the round trip the offset cannot be told from none (the same machine's clock,
        // read at an unknown moment of it): taken as none, so times stay the process's own.
        let measured = server - (sent + received) / 2;
        let uncertainty = (received - sent) / 2 + OFFSET_RESOLUTION_MS;
        let offset = if measured.abs() <= uncertainty { 0 } else { measured };
        let previous = self.offset_ms.swap(offset, Ordering::Relaxed);
        if offset.unsigned_abs() > CLOCK_OFFSET_WARNING.as_millis() as u64
            && (offset - previous).unsigned_abs() > CLOCK_OFFSET_WARNING.as_millis() as u64 / 2
        {
            tracing::warn!(
                offset_ms = offset,
                "this process's clock differs from the database's; leases and retry times follow the database's"
            );
        }
        Ok(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_sessions_keep_the_options_of_the_url_and_add_the_promise() {
        let config: tokio_postgres::Config = "postgres://u@127.0.0.1/db?options=-c%20search_path%3Dt_1"
            .parse()
            .unwrap();
        let options = pooled_session(&config).get_options().unwrap().to_string();
        assert!(options.starts_with("-c search_path=t_1 "), "{options}");
        for setting in [
            "synchronous_commit=on",
            "default_transaction_isolation=read\\ committed",
            "statement_timeout=30000",
            "lock_timeout=10000",
            "idle_in_transaction_session_timeout=15000",
        ] {
            assert!(options.contains(setting), "{setting} missing from {options}");
        }
        assert_eq!(pooled_session(&config).get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
    }
}
