//! The PostgreSQL schema's versions (`host/migrations/postgres`): applied by a serving bridge
//! when it opens the store, only checked by the commands.
//!
//! The rules that let replicas of two releases share a database during a rolling upgrade:
//! - a migration, once shipped, never changes ([`SHIPPED`] holds each one's checksum, and a
//!   test compares); a fix is a new migration;
//! - every migration keeps the schema usable by the release before it (it adds tables, columns
//!   with defaults, indexes; it drops only constraints or objects no earlier release reads), so
//!   a bridge runs on a schema newer than its own, saying so;
//! - a database that applied a migration as an earlier release shipped it ([`SHIPPED_BEFORE`])
//!   is accepted, and a later migration brings it to the same state.

use anyhow::Context;
use refinery::Migration;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::CONNECT_TIMEOUT;

pub(super) mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// The advisory lock held while migrations run ("dolphinm" as a number).
const MIGRATION_LOCK: i64 = 0x646f_6c70_6869_6e6d;

/// Migrations as an earlier release shipped them under a version since rewritten (the text is
/// kept in `host/migrations/postgres-history`): version, what shipped it, checksum.
const SHIPPED_BEFORE: &[(i32, &str, u64)] = &[(2, "leases_and_due_notifications (325f69c)", 6_832_903_264_001_106_887)];

/// Applies the migrations the database lacks, holding [`MIGRATION_LOCK`] on a connection of its
/// own (released when it closes, should this process die half-way); then repairs the ticket
/// heads (see [`super::session::repair_ticket_heads`]).
pub async fn migrate(config: &tokio_postgres::Config, tls: MakeRustlsConnect) -> anyhow::Result<()> {
    let mut config = config.clone();
    config.connect_timeout(CONNECT_TIMEOUT);
    let (mut client, connection) = config.connect(tls).await.context("connecting")?;
    let driver = tokio::spawn(connection);
    let outcome = async {
        client
            .batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
            .await
            .context("taking the migration lock")?;
        let runner = runner();
        check_applied(&applied_migrations(&runner, &mut client).await?)?;
        let report = runner.run_async(&mut client).await.context("applying migrations")?;
        for migration in report.applied_migrations() {
            tracing::info!(
                version = migration.version(),
                name = migration.name(),
                "store migration applied"
            );
        }
        let wrong = super::session::repair_ticket_heads(&mut client).await?;
        if wrong > 0 {
            tracing::warn!(wrong, "ticket heads differed from the outbox; rebuilt");
        }
        anyhow::Ok(())
    }
    .await;
    drop(client);
    let _ = driver.await;
    outcome
}

/// Checks, without changing anything, that the database's schema is at least this bridge's
/// and that what it applied is what this bridge ships: what a command needs before it works
/// on a production database.
pub async fn require_current(client: &mut tokio_postgres::Client) -> anyhow::Result<()> {
    let applied = applied_migrations(&runner(), client).await?;
    check_applied(&applied)?;
    let ours = latest_version();
    let theirs = applied.iter().map(Migration::version).max().unwrap_or(0);
    if theirs < ours {
        anyhow::bail!(
            "the database's schema is at version {theirs} and this bridge needs {ours}: start the bridge \
             (`dolphin-bridge serve`, which applies migrations) before running commands on it"
        );
    }
    Ok(())
}

/// What the database applied (nothing when it has no history table yet).
async fn applied_migrations(
    runner: &refinery::Runner,
    client: &mut tokio_postgres::Client,
) -> anyhow::Result<Vec<Migration>> {
    let history: bool = client
        .query_one("SELECT to_regclass('refinery_schema_history') IS NOT NULL", &[])
        .await
        .context("looking for the migration history")?
        .get(0);
    if !history {
        return Ok(Vec::new());
    }
    runner
        .get_applied_migrations_async(client)
        .await
        .context("reading the applied migrations")
}

fn runner() -> refinery::Runner {
    // Checked by `check_applied` instead: refinery's own checks refuse a newer schema (no
    // rolling upgrade) and the first V2.
    embedded::migrations::runner()
        .set_abort_divergent(false)
        .set_abort_missing(false)
}

fn latest_version() -> i32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(Migration::version)
        .max()
        .unwrap_or(0)
}

/// Refuses a database that applied a migration of one of our versions other than the one we
/// ship (or shipped before); tells of a schema newer than ours.
fn check_applied(applied: &[Migration]) -> anyhow::Result<()> {
    let ours = embedded::migrations::runner();
    for migration in applied {
        let version = migration.version();
        match ours.get_migrations().iter().find(|m| m.version() == version) {
            Some(shipped) if shipped.checksum() == migration.checksum() => {}
            Some(_)
                if SHIPPED_BEFORE
                    .iter()
                    .any(|(v, _, sum)| *v == version && *sum == migration.checksum()) => {}
            Some(shipped) => anyhow::bail!(
                "the database applied migration V{version}__{} with another text than this bridge's V{version}__{}: \
                 it was changed after it shipped, or the database was migrated by another program",
                migration.name(),
                shipped.name()
            ),
            None => tracing::info!(
                version,
                name = migration.name(),
                "the database's schema is newer than this bridge's; running on it (migrations keep the \
                 schema usable by the release before)"
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shipped migration: version and checksum.
    const SHIPPED: &[(i32, u64)] = &[
        (1, 13_644_753_215_759_507_658),
        (2, 4_875_268_666_357_559_849),
        (3, 6_124_801_416_251_815_507),
        (4, 5_078_990_866_370_960_995),
        (5, 4_581_552_977_329_475_611),
        (6, 2_340_645_614_825_616_489),
        (7, 3_945_677_815_954_174_579),
        (8, 11_641_378_715_106_915_590),
        (9, 3_761_124_874_632_722_375),
        (10, 11_113_893_674_999_647_786),
        (11, 9_945_519_301_214_427_087),
        (12, 5_744_728_217_457_281_098),
    ];

    #[test]
    fn shipped_migrations_never_change() {
        let runner = embedded::migrations::runner();
        // Embedded in file-name order (V10 before V2); refinery applies them by version.
        let mut now: Vec<(i32, u64)> = runner
            .get_migrations()
            .iter()
            .map(|m| (m.version(), m.checksum()))
            .collect();
        now.sort_unstable();
        assert_eq!(
            now, SHIPPED,
            "a shipped migration was changed, or a new one is not listed in SHIPPED: write a new migration \
             instead of editing one, and list a new one's checksum"
        );
    }

    #[test]
    fn migrations_shipped_before_are_kept_with_their_checksum() {
        for (version, what, sum) in SHIPPED_BEFORE {
            let path = format!(
                "{}/migrations/postgres-history/V{version}__{}.sql",
                env!("CARGO_MANIFEST_DIR"),
                what.split(' ').next().unwrap()
            );
            let sql = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let file = std::path::Path::new(&path).file_stem().unwrap().to_str().unwrap();
            let migration = Migration::unapplied(file, &sql).unwrap();
            assert_eq!(migration.checksum(), *sum, "{path}");
        }
    }
}
