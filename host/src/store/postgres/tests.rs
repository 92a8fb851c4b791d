//! The PostgreSQL store's tests, against a real server: the shared suite (`store::suite`) and
//! what is PostgreSQL's own (migrations under concurrent starts, the heads its triggers keep).
//!
//! `cargo xtask test` starts a throwaway server and names its database in
//! `DOLPHIN_BRIDGE_TEST_POSTGRES_URL`; without it these tests fail (they are never skipped).
//! Each test works in a schema of its own, so they run in parallel.

use super::*;
use crate::clock::now_ms;
use crate::store::suite::{Fixture, OWNER, WINDOW, delivery, due_ids, get, lease, lease_at, store_suite};

/// The variable naming the test server's database.
const URL_ENV: &str = "DOLPHIN_BRIDGE_TEST_POSTGRES_URL";

store_suite!(TempSchema::new());

/// The test server's URL; panics, naming the variable and the command that sets it, when unset.
fn server_url() -> String {
    std::env::var(URL_ENV).unwrap_or_else(|_| {
        panic!(
            "{URL_ENV} is not set: the PostgreSQL store's tests need a server. \
             Run them with `cargo xtask test`, which starts one (or point {URL_ENV} at a database)"
        )
    })
}

/// `url` with every session's `search_path` set to `schema`.
fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// A schema of its own on the test server, with a store on it; dropped with the fixture.
struct TempSchema {
    name: String,
    url: String,
    store: PostgresStore,
    /// A connection of the test's own in the schema, as another process (a command) would have.
    side: tokio_postgres::Client,
}

impl TempSchema {
    async fn new() -> TempSchema {
        let (name, url) = Self::empty().await;
        let store = PostgresStore::open(&url, 4).await.unwrap();
        let side = connect(&url).await;
        TempSchema { name, url, store, side }
    }

    /// A new empty schema: its name, and the URL of a session in it.
    async fn empty() -> (String, String) {
        Self::empty_named(format!("t_{}", uuid::Uuid::now_v7().simple())).await
    }

    /// A new empty schema called `name`: its name, and the URL of a session in it.
    async fn empty_named(name: String) -> (String, String) {
        connect(&server_url())
            .await
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap();
        let url = with_search_path(&server_url(), &name);
        (name, url)
    }
}

impl Fixture for TempSchema {
    fn store(&self) -> &dyn Store {
        &self.store
    }

    async fn replica(&self) -> Box<dyn Store> {
        Box::new(PostgresStore::open(&self.url, 4).await.unwrap())
    }
}

impl Drop for TempSchema {
    fn drop(&mut self) {
        // Dropped on a runtime of its own, as the test's is blocked here. A lock still held by
        // the test's connections (whose tasks cannot run meanwhile) makes it give up, not wait.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let client = connect(&server_url()).await;
                let drop = format!("SET lock_timeout = '2s'; DROP SCHEMA {name} CASCADE");
                let _ = client.batch_execute(&drop).await;
            });
        })
        .join();
    }
}

/// Replicas started at once on an empty database all open it, and the schema is applied once.
#[tokio::test]
async fn concurrent_opens_on_an_empty_database_apply_the_schema_once() {
    let (name, url) = TempSchema::empty().await;
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::open(&url, 1).await })
        })
        .collect();
    for open in opens {
        open.await.unwrap().expect("every replica opens the store");
    }
    let side = connect(&url).await;
    let applied: Vec<i32> = side
        .query("SELECT version FROM refinery_schema_history ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut embedded: Vec<i32> = migrations::embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .collect();
    embedded.sort_unstable();
    assert_eq!(applied, embedded, "each migration applied once");
    let fixture = TempSchema {
        store: PostgresStore::open(&url, 1).await.unwrap(),
        name,
        url,
        side,
    };
    fixture
        .store
        .enqueue(vec![delivery("d1", "A", None)], WINDOW)
        .await
        .unwrap();
    assert_eq!(due_ids(&fixture.store, now_ms()).await, ["d1"]);
}

#[tokio::test]
async fn health_commits_and_reports_synchronous_commit() {
    let t = TempSchema::new().await;
    assert_eq!(t.store.last_commit_age(), None);
    let health = t.store.health().await.unwrap();
    assert_eq!(health.synchronous, "on");
    assert!(health.journal_mode.starts_with("wal_level="), "{health:?}");
    assert!(t.store.last_commit_age().is_some());
}

/// An unreachable server's error names the server but never the password of the URL.
#[tokio::test]
async fn errors_name_the_server_but_not_the_password() {
    let error = PostgresStore::open("postgres://bridge:pw-not-shown-0123@127.0.0.1:1/bridge", 1)
        .await
        .err()
        .expect("nothing listens on port 1");
    let text = format!("{error:#}");
    assert!(text.contains("postgres://bridge@127.0.0.1:1/bridge"), "{text}");
    assert!(!text.contains("pw-not-shown-0123"), "{text}");
    let error = PostgresStore::open("postgres://bridge:pw-not-shown-0123@host:port/x", 1)
        .await
        .err()
        .expect("not a URL");
    assert!(!format!("{error:#}").contains("pw-not-shown-0123"));
}

/// A ticket's head: ticket, seq, tenant, due time.
type Head = (String, i64, String, i64);

/// What `ticket_heads` says, and what `outbox` itself says the head of each ticket is.
async fn heads_both_ways(side: &tokio_postgres::Client) -> (Vec<Head>, Vec<Head>) {
    let read = async |sql: &str| -> Vec<Head> {
        let rows = side.query(sql, &[]).await.unwrap();
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect()
    };
    let kept = read("SELECT ticket, seq, tenant, next_attempt_at FROM ticket_heads ORDER BY ticket").await;
    let derived = read(
        "SELECT ticket, seq, tenant, next_attempt_at FROM outbox o WHERE state = 'pending'
           AND seq = (SELECT MIN(seq) FROM outbox h WHERE h.state = 'pending'
                      AND h.owner = o.owner AND h.direction = o.direction AND h.ticket = o.ticket)
         ORDER BY ticket",
    )
    .await;
    (kept, derived)
}

/// The heads the dispatcher reads are kept by triggers: after every kind of write, from the
/// store or from another connection, they are exactly the first pending delivery of each ticket.
#[tokio::test]
async fn ticket_heads_follow_every_write() {
    let t = TempSchema::new().await;
    let store = &t.store;
    let side = &t.side;
    async fn assert_heads(side: &tokio_postgres::Client, step: &str) {
        let (kept, derived) = heads_both_ways(side).await;
        assert_eq!(kept, derived, "after {step}");
    }
    let batch = ["a1", "a2", "a3", "b1", "b2", "c1"]
        .iter()
        .map(|id| delivery(id, &id[..1], None))
        .collect();
    store.enqueue(batch, WINDOW).await.unwrap();
    assert_heads(side, "enqueue").await;
    assert_eq!(heads_both_ways(side).await.0.len(), 3);

    let a1 = get(store, "a1").await;
    assert!(store.claim(a1.seq, 0, &lease(now_ms() + 60_000)).await.unwrap());
    assert_heads(side, "claim").await;
    let retry = Outcome::RetryAt(now_ms() + 5_000, "vendor down".into());
    assert!(store.record(a1.seq, 1, retry).await.unwrap());
    assert_heads(side, "retry").await;
    let retried = now_ms() + 5_000;
    assert!(
        store
            .claim(a1.seq, 1, &lease_at(OWNER, retried, retried))
            .await
            .unwrap()
    );
    assert!(store.record(a1.seq, 2, Outcome::Delivered).await.unwrap());
    assert_heads(side, "delivered").await;
    let a2 = get(store, "a2").await;
    assert!(store.claim(a2.seq, 0, &lease(now_ms())).await.unwrap());
    assert!(store.record(a2.seq, 1, Outcome::Dead("bad".into())).await.unwrap());
    assert_heads(side, "dead").await;
    let b1 = get(store, "b1").await;
    assert!(store.claim(b1.seq, 0, &lease(now_ms())).await.unwrap());
    assert!(store.record(b1.seq, 1, Outcome::Dead("bad".into())).await.unwrap());
    assert_heads(side, "dead at the head of b").await;

    // a2 is older than a3, the head now: replayed, it is the head of `a` again.
    let replayed = store
        .replay(DeadLetterFilter::One("a2".into()), Some("acme-new"))
        .await
        .unwrap();
    assert_eq!(replayed, 1);
    assert_heads(side, "replay to another tenant").await;
    assert_eq!(due_ids(store, now_ms()).await, vec!["b2", "c1", "a2"]);

    side.execute(
        "UPDATE outbox SET state = 'pending', next_attempt_at = 0 WHERE delivery_id = 'b1'",
        &[],
    )
    .await
    .unwrap();
    assert_heads(side, "replay by another connection").await;
    side.execute("DELETE FROM outbox WHERE delivery_id = 'c1'", &[])
        .await
        .unwrap();
    assert_heads(side, "a pending delivery deleted").await;
    store
        .purge_dead_letters(DeadLetterFilter::All, now_ms() + 1)
        .await
        .unwrap();
    assert_heads(side, "purge").await;
}

/// Another process's dispatcher hears of new work when it is committed (`LISTEN/NOTIFY`), not at
/// its next poll: an enqueue, a finished head with an event behind it, and a replay each notify.
#[tokio::test]
async fn work_made_due_by_one_process_wakes_the_others() {
    let t = TempSchema::new().await;
    let other = PostgresStore::open(&t.url, 2).await.unwrap();
    let signal = other.due_signal().expect("PostgreSQL signals due work");
    let heard = || async {
        tokio::time::timeout(std::time::Duration::from_secs(5), signal.notified())
            .await
            .is_ok()
    };
    // The listener says it is listening by notifying once; wait for that first.
    assert!(heard().await, "the listener connected");
    let store = &t.store;
    store
        .enqueue(vec![delivery("a1", "A", None), delivery("a2", "A", None)], WINDOW)
        .await
        .unwrap();
    assert!(heard().await, "an enqueue notifies");
    let a1 = get(store, "a1").await;
    assert!(store.claim(a1.seq, 0, &lease(now_ms() + 60_000)).await.unwrap());
    assert!(store.record(a1.seq, 1, Outcome::Dead("bad".into())).await.unwrap());
    assert!(heard().await, "a2 becoming the head notifies");
    store.replay(DeadLetterFilter::One("a1".into()), None).await.unwrap();
    assert!(heard().await, "a replay notifies");
}

/// Deployed versions are shared: what one process deploys or rolls back, another reads (list,
/// active version, components), each change bumping the counter; `keep` trims the shared list
/// and deletes the dropped components; activating a version no longer kept changes nothing.
#[tokio::test]
async fn deployed_versions_are_shared_between_processes() {
    use crate::store::{DeploymentChange, RollbackTarget, SharedDeployments, StoredVersion};

    let t = TempSchema::new().await;
    let other = PostgresStore::open(&t.url, 2).await.unwrap();
    let (one, two) = (&t.store as &dyn SharedDeployments, &other as &dyn SharedDeployments);
    assert_eq!(two.deployment_generation().await.unwrap(), 0);
    assert_eq!(two.shared_versions("acme").await.unwrap(), None);
    let deploy = |hash: &str| DeploymentChange::Deployed {
        version: StoredVersion {
            content_hash: hash.into(),
            size_bytes: 3,
            deployed_at: chrono::Utc::now(),
            seal: Some(format!("{hash}-seal")),
        },
        component: format!("{hash}-bytes").into_bytes(),
        canary: None,
    };
    let mut generations = Vec::new();
    for hash in ["a", "b", "c"] {
        let listed = one.change_deployment("acme", 2, deploy(hash)).await.unwrap();
        assert_eq!(two.shared_versions("acme").await.unwrap().as_ref(), Some(&listed));
        generations.push(two.deployment_generation().await.unwrap());
    }
    assert!(generations.windows(2).all(|w| w[0] < w[1]), "{generations:?}");
    let shared = two.shared_versions("acme").await.unwrap().unwrap();
    let hashes: Vec<&str> = shared.versions.iter().map(|v| v.content_hash.as_str()).collect();
    assert_eq!(hashes, ["c", "b"], "keep 2, newest first");
    assert_eq!(
        shared.versions[0].seal.as_deref(),
        Some("c-seal"),
        "the seal is kept with its version"
    );
    assert_eq!(shared.active.as_deref(), Some("c"));
    assert_eq!(
        two.shared_component("acme", "c").await.unwrap(),
        Some(b"c-bytes".to_vec())
    );
    assert_eq!(
        two.shared_component("acme", "a").await.unwrap(),
        None,
        "a dropped version's bytes go"
    );
    assert_eq!(two.shared_versions("beta").await.unwrap(), None, "per tenant");

    let rolled = two
        .change_deployment(
            "acme",
            2,
            DeploymentChange::Activated(RollbackTarget::Deployed("b".into())),
        )
        .await
        .unwrap();
    assert_eq!(rolled.active.as_deref(), Some("b"));
    assert_eq!(one.shared_versions("acme").await.unwrap(), Some(rolled.clone()));
    assert!(one.deployment_generation().await.unwrap() > generations[2]);

    let before = one.deployment_generation().await.unwrap();
    let refused = one
        .change_deployment(
            "acme",
            2,
            DeploymentChange::Activated(RollbackTarget::Deployed("a".into())),
        )
        .await;
    assert!(format!("{:#}", refused.unwrap_err()).contains("no longer kept"));
    assert_eq!(one.shared_versions("acme").await.unwrap(), Some(rolled));
    assert_eq!(one.deployment_generation().await.unwrap(), before, "nothing changed");

    let to_file = one
        .change_deployment("acme", 2, DeploymentChange::Activated(RollbackTarget::File))
        .await
        .unwrap();
    assert_eq!(to_file.active, None);
    assert_eq!(to_file.versions.len(), 2, "the file activated, the versions stay kept");
}

/// A canary in the shared store: started beside the active version, both replicas' figures
/// summed, ended by one decision (a second decision on the same canary is refused and changes
/// nothing), and the ended canary's figures no longer kept.
#[tokio::test]
async fn a_shared_canary_sums_every_replicas_figures_and_ends_once() {
    use crate::store::{
        ArmFigures, CanaryEnd, CanaryFigures, CanaryOutcome, DeploymentChange, NotTheCanary, SharedDeployments,
        StoredVersion,
    };

    let t = TempSchema::new().await;
    let other = PostgresStore::open(&t.url, 2).await.unwrap();
    let (one, two) = (&t.store as &dyn SharedDeployments, &other as &dyn SharedDeployments);
    let deploy = |hash: &str, canary| DeploymentChange::Deployed {
        version: StoredVersion {
            content_hash: hash.into(),
            size_bytes: 1,
            deployed_at: chrono::Utc::now(),
            seal: None,
        },
        component: hash.as_bytes().to_vec(),
        canary,
    };
    one.change_deployment("acme", 5, deploy("a", None)).await.unwrap();
    let listed = one.change_deployment("acme", 5, deploy("b", Some(10))).await.unwrap();
    assert_eq!(
        listed.active.as_deref(),
        Some("a"),
        "a canary leaves the active version"
    );
    let canary = listed.canary.clone().unwrap();
    assert_eq!((canary.content_hash.as_str(), canary.percent), ("b", 10));
    assert_eq!(two.shared_versions("acme").await.unwrap(), Some(listed));

    let figures = |calls, failures| CanaryFigures {
        current: ArmFigures {
            calls,
            failures: 0,
            latency_micros: 1000 * calls,
        },
        canary: ArmFigures {
            calls,
            failures,
            latency_micros: 2000 * calls,
        },
    };
    one.report_canary_figures("acme", "b", "r1", figures(5, 1))
        .await
        .unwrap();
    let summed = two
        .report_canary_figures("acme", "b", "r2", figures(7, 2))
        .await
        .unwrap();
    assert_eq!(summed, figures(12, 3));
    // A replica's newer count replaces its older one.
    let summed = one
        .report_canary_figures("acme", "b", "r1", figures(6, 1))
        .await
        .unwrap();
    assert_eq!(summed, figures(13, 3));
    // A report on a version that is not the canary is not kept.
    let other_version = one
        .report_canary_figures("acme", "a", "r1", figures(9, 9))
        .await
        .unwrap();
    assert_eq!(other_version, CanaryFigures::default());

    let outcome = CanaryOutcome {
        content_hash: "b".into(),
        end: CanaryEnd::RolledBack,
        reason: "3 of 13 failed".into(),
        at: chrono::Utc::now(),
    };
    let ended = one
        .change_deployment("acme", 5, DeploymentChange::CanaryEnded(outcome.clone()))
        .await
        .unwrap();
    assert_eq!((ended.canary, ended.active.as_deref()), (None, Some("a")));
    assert_eq!(ended.last_canary.as_ref(), Some(&outcome));
    let before = one.deployment_generation().await.unwrap();
    let promoted = CanaryOutcome {
        end: CanaryEnd::Promoted,
        ..outcome
    };
    let again = two
        .change_deployment("acme", 5, DeploymentChange::CanaryEnded(promoted))
        .await
        .unwrap_err();
    assert!(again.downcast_ref::<NotTheCanary>().is_some(), "{again:#}");
    assert_eq!(one.deployment_generation().await.unwrap(), before, "nothing changed");
    assert_eq!(
        two.shared_versions("acme").await.unwrap().unwrap().active.as_deref(),
        Some("a")
    );
    let after = one
        .report_canary_figures("acme", "b", "r1", figures(1, 1))
        .await
        .unwrap();
    assert_eq!(after, CanaryFigures::default(), "an ended canary's figures are gone");
}

/// Deploys of one tenant from two processes at once both land, one after the other: neither
/// list loses the other's version.
#[tokio::test]
async fn concurrent_deploys_from_two_processes_are_applied_one_at_a_time() {
    use crate::store::{DeploymentChange, SharedDeployments, StoredVersion};

    let t = TempSchema::new().await;
    let other = PostgresStore::open(&t.url, 2).await.unwrap();
    let deploy = |hash: String| DeploymentChange::Deployed {
        version: StoredVersion {
            content_hash: hash.clone(),
            size_bytes: 1,
            deployed_at: chrono::Utc::now(),
            seal: None,
        },
        component: hash.into_bytes(),
        canary: None,
    };
    let (one, two) = (&t.store as &dyn SharedDeployments, &other as &dyn SharedDeployments);
    let left = async {
        for i in 0..10 {
            one.change_deployment("acme", 50, deploy(format!("one-{i}")))
                .await
                .unwrap();
        }
    };
    let right = async {
        for i in 0..10 {
            two.change_deployment("acme", 50, deploy(format!("two-{i}")))
                .await
                .unwrap();
        }
    };
    tokio::join!(left, right);
    let shared = one.shared_versions("acme").await.unwrap().unwrap();
    assert_eq!(shared.versions.len(), 20, "{shared:?}");
    assert_eq!(one.deployment_generation().await.unwrap(), 20);
    assert_eq!(shared.active.as_deref(), Some(shared.versions[0].content_hash.as_str()));
}

/// An event stored while the delivery ahead of it on its ticket finishes, on two connections at
/// once, becomes the ticket's head: before the head triggers took a per-ticket lock, the finish
/// could look for the next event before the store committed it, and the enqueue find the old
/// head still there, leaving the new event with no head (a later one then went first).
#[tokio::test]
async fn an_event_stored_while_the_head_finishes_becomes_the_head() {
    let t = TempSchema::new().await;
    let store = &t.store;
    let other = PostgresStore::open(&t.url, 4).await.unwrap();
    for round in 0..150 {
        let ticket = format!("T{round}");
        let (first, next) = (format!("a{round}"), format!("b{round}"));
        store
            .enqueue(vec![delivery(&first, &ticket, None)], WINDOW)
            .await
            .unwrap();
        let head = get(store, &first).await;
        assert!(store.claim(head.seq, 0, &lease(now_ms() + 60_000)).await.unwrap());
        let (recorded, stored) = tokio::join!(
            store.record(head.seq, 1, Outcome::Delivered),
            other.enqueue(vec![delivery(&next, &ticket, None)], WINDOW),
        );
        assert!(recorded.unwrap());
        stored.unwrap();
        let (kept, derived) = heads_both_ways(&t.side).await;
        assert_eq!(kept, derived, "round {round}");
    }
}

/// A webhook key taken again by another process while a purge is deleting it (the purge waits
/// for the other's row lock) is kept: the purge's DELETE checks its condition again on the row
/// as the other process left it. Before, it re-checked only that the key was among the ones it
/// had selected, and deleted the fresh key: the vendor's next retry was stored again.
#[tokio::test]
async fn a_purge_keeps_a_key_another_process_refreshed_meanwhile() {
    let f = TempSchema::new().await;
    let now = crate::clock::now_ms();
    f.side
        .batch_execute(&format!(
            "INSERT INTO webhooks (tenant, key, status, headers, body, created_at)
             VALUES ('acme', 'wh-1', 200, '[]', ''::bytea, {old})",
            old = now - 10_000
        ))
        .await
        .unwrap();
    // Another process takes the key again, in a transaction it has not committed yet.
    let other = connect(&f.url).await;
    other.batch_execute("BEGIN").await.unwrap();
    other
        .execute("UPDATE webhooks SET created_at = $1 WHERE key = 'wh-1'", &[&now])
        .await
        .unwrap();
    let before = PurgeBefore {
        delivered: 0,
        idempotency_keys: 0,
        webhook_keys: now - 5_000,
        tickets: 0,
        dead_letters: None,
    };
    let purge = tokio::spawn({
        let store = PostgresStore::open(&f.url, 2).await.unwrap();
        async move { store.purge(before).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    other.batch_execute("COMMIT").await.unwrap();
    purge.await.unwrap().unwrap();
    let kept = f
        .side
        .query_opt("SELECT created_at FROM webhooks WHERE key = 'wh-1'", &[])
        .await
        .unwrap();
    assert_eq!(
        kept.map(|row| row.get::<_, i64>(0)),
        Some(now),
        "the refreshed key was purged"
    );
}

/// The session settings the promise rests on are the bridge's own, whatever the server's
/// defaults or the URL's options say: commits wait for the disk, transactions read committed.
#[tokio::test]
async fn sessions_commit_durably_in_read_committed_whatever_the_url_asks() {
    let (name, url) = TempSchema::empty().await;
    let url =
        format!("{url}%20-c%20synchronous_commit%3Doff%20-c%20default_transaction_isolation%3Drepeatable%5C%20read");
    let store = PostgresStore::open(&url, 2).await.unwrap();
    assert_eq!(store.health().await.unwrap().synchronous, "on");
    let isolation: String = store.query("SHOW transaction_isolation", &[]).await.unwrap()[0].get(0);
    assert_eq!(isolation, "read committed");
    let search_path: String = store.query("SHOW search_path", &[]).await.unwrap()[0].get(0);
    assert_eq!(search_path, name, "the URL's own options are kept");
    drop(store);
    drop_schema(&name).await;
}

/// Drops a schema a test made with [`TempSchema::empty`] (or by hand).
async fn drop_schema(name: &str) {
    connect(&server_url())
        .await
        .batch_execute(&format!("DROP SCHEMA {name} CASCADE"))
        .await
        .unwrap();
}

/// Sessions waiting on a lock, in this schema's database, other than `side`'s.
async fn lock_waiters(side: &tokio_postgres::Client) -> i64 {
    side.query_one(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

async fn wait_for_lock_waiters(side: &tokio_postgres::Client, n: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while lock_waiters(side).await < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{n} sessions never waited for a lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Two writes whose events cover two tickets in opposite orders (a vendor's webhook with events
/// of two conversations) take the tickets' locks in one order, so neither is aborted as a
/// deadlock. The first is held between its two tickets by an idempotency key another session
/// holds, so the second takes its first ticket in between, as it would under load.
#[tokio::test]
async fn two_writes_covering_two_tickets_in_opposite_orders_do_not_deadlock() {
    let t = TempSchema::new().await;
    let other = PostgresStore::open(&t.url, 2).await.unwrap();
    let mut holder = connect(&t.url).await;
    let hold = holder.transaction().await.unwrap();
    hold.execute(
        "INSERT INTO idempotency (tenant, key, delivery_id, created_at) VALUES ('acme', 'held', 'x', 0)",
        &[],
    )
    .await
    .unwrap();
    let store = PostgresStore::open(&t.url, 2).await.unwrap();
    let first = tokio::spawn({
        async move {
            let batch = vec![delivery("a1", "A", Some("a1-key")), delivery("b1", "B", Some("held"))];
            store.enqueue(batch, WINDOW).await
        }
    });
    wait_for_lock_waiters(&t.side, 1).await;
    let second = tokio::spawn(async move {
        let batch = vec![delivery("b2", "B", None), delivery("a2", "A", None)];
        other.enqueue(batch, WINDOW).await
    });
    wait_for_lock_waiters(&t.side, 2).await;
    hold.rollback().await.unwrap();
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert!(first.is_ok(), "the first write failed: {:#}", first.unwrap_err());
    assert!(second.is_ok(), "the second write failed: {:#}", second.unwrap_err());
}

/// Heads left wrong (by the race migration V5 fixed, or by hand) are rebuilt when a process
/// opens the store, as the embedded store rebuilds them at every open.
#[tokio::test]
async fn heads_left_wrong_are_rebuilt_at_start() {
    let t = TempSchema::new().await;
    t.store
        .enqueue(vec![delivery("a1", "A", None), delivery("a2", "A", None)], WINDOW)
        .await
        .unwrap();
    t.side
        .batch_execute("DELETE FROM ticket_heads; ALTER TABLE outbox DISABLE TRIGGER USER")
        .await
        .unwrap();
    t.side
        .batch_execute("UPDATE outbox SET next_attempt_at = 0; ALTER TABLE outbox ENABLE TRIGGER USER")
        .await
        .unwrap();
    assert!(due_ids(&t.store, now_ms()).await.is_empty(), "no head: nothing due");
    let reopened = PostgresStore::open(&t.url, 2).await.unwrap();
    assert_eq!(due_ids(&reopened, now_ms()).await, ["a1"]);
    let (expected, kept) = heads_both_ways(&t.side).await;
    assert_eq!(kept, expected);
}

/// A store call its caller gave up on (`/readyz` after 2 s) does not leave its connection in
/// the pool with the statement still running: the next call gets a connection at once.
#[tokio::test]
async fn a_statement_given_up_on_does_not_hold_up_the_next_call() {
    let (name, url) = TempSchema::empty().await;
    let store = PostgresStore::open(&url, 1).await.unwrap();
    let given_up = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        store.query("SELECT pg_sleep(25)", &[]),
    )
    .await;
    assert!(given_up.is_err(), "the sleep was given up on");
    let next = tokio::time::timeout(std::time::Duration::from_secs(15), store.query("SELECT 1", &[])).await;
    assert!(next.is_ok(), "the next call waited behind the abandoned statement");
    next.unwrap().unwrap();
    drop(store);
    drop_schema(&name).await;
}

/// A schema whose name is too long for a channel name still gets its wake-ups: `LISTEN` and
/// `pg_notify` use the same (shortened) name.
#[tokio::test]
async fn a_schema_with_a_long_name_still_wakes_the_other_processes() {
    let (name, url) = TempSchema::empty_named(format!("t_{}_{}", uuid::Uuid::now_v7().simple(), "x".repeat(24))).await;
    assert!(name.len() > 44);
    let store = PostgresStore::open(&url, 2).await.unwrap();
    let other = PostgresStore::open(&url, 2).await.unwrap();
    let signal = other.due_signal().unwrap();
    let heard = || async {
        tokio::time::timeout(std::time::Duration::from_secs(5), signal.notified())
            .await
            .is_ok()
    };
    assert!(heard().await, "the listener connected");
    store.enqueue(vec![delivery("a1", "A", None)], WINDOW).await.unwrap();
    assert!(heard().await, "an enqueue notifies");
    drop((store, other));
    drop_schema(&name).await;
}

/// A database first made by the release whose V2 was `leases_and_due_notifications` (rewritten
/// since) opens, and loses that release's NOTIFY trigger; a schema newer than this bridge's
/// (a later release's migration, during a rolling upgrade) opens too.
#[tokio::test]
async fn databases_of_the_first_v2_and_of_a_newer_release_open() {
    let t = TempSchema::new().await;
    let old_v2 = include_str!("../../../migrations/postgres-history/V2__leases_and_due_notifications.sql");
    t.side
        .batch_execute(
            "CREATE FUNCTION notify_due() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM pg_notify('dolphin_bridge_due:' || current_schema(), ''); RETURN NULL; END $$;
             CREATE TRIGGER ticket_heads_notify AFTER INSERT ON ticket_heads
             FOR EACH STATEMENT EXECUTE FUNCTION notify_due();
             DELETE FROM refinery_schema_history WHERE version >= 8",
        )
        .await
        .unwrap();
    let shipped = refinery::Migration::unapplied("V2__leases_and_due_notifications", old_v2).unwrap();
    t.side
        .execute(
            "UPDATE refinery_schema_history SET name = 'leases_and_due_notifications', checksum = $1 WHERE version = 2",
            &[&shipped.checksum().to_string()],
        )
        .await
        .unwrap();
    PostgresStore::open(&t.url, 1)
        .await
        .expect("the first V2's database opens");
    let triggers: i64 = t
        .side
        .query_one(
            "SELECT COUNT(*) FROM pg_trigger WHERE tgname = 'ticket_heads_notify' AND tgrelid = 'ticket_heads'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(triggers, 0, "V8 dropped the first V2's trigger");

    t.side
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (99, 'later', '2026-12-01T00:00:00Z', '1')",
            &[],
        )
        .await
        .unwrap();
    PostgresStore::open(&t.url, 1).await.expect("a newer schema opens");
    PostgresStore::open_for_command(&t.url, 1)
        .await
        .expect("commands run on it too");
}

/// A migration edited after it shipped is refused, naming it.
#[tokio::test]
async fn a_migration_changed_after_it_shipped_is_refused() {
    let t = TempSchema::new().await;
    t.side
        .execute(
            "UPDATE refinery_schema_history SET checksum = '42' WHERE version = 3",
            &[],
        )
        .await
        .unwrap();
    let refused = PostgresStore::open(&t.url, 1).await.err().expect("refused");
    assert!(format!("{refused:#}").contains("V3__replicas"), "{refused:#}");
}

/// Commands do not migrate: on a database behind this bridge they stop, naming the command
/// that migrates, and leave it as it was.
#[tokio::test]
async fn commands_do_not_migrate_the_database() {
    let (name, url) = TempSchema::empty().await;
    let refused = PostgresStore::open_for_command(&url, 1).await.err().expect("refused");
    assert!(format!("{refused:#}").contains("dolphin-bridge serve"), "{refused:#}");
    let tables: i64 = connect(&server_url())
        .await
        .query_one(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "nothing was created");
    drop_schema(&name).await;
}

/// The test server's authority (`ca`) or one that signed nothing of the server's (`other`).
fn test_authority(other: bool) -> String {
    let name = if other {
        "DOLPHIN_BRIDGE_TEST_POSTGRES_OTHER_CA"
    } else {
        "DOLPHIN_BRIDGE_TEST_POSTGRES_CA"
    };
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the tests with `cargo xtask test`"))
}

/// A new schema's URL with `host` in place of the test server's address and `tls` added.
async fn tls_url(host: &str, tls: &str) -> String {
    let (_, url) = TempSchema::empty().await;
    format!("{}&{tls}", url.replacen("@127.0.0.1:", &format!("@{host}:"), 1))
}

/// Whether the store's own pool connections are encrypted, as the server sees them.
async fn pool_is_encrypted(store: &PostgresStore) -> bool {
    let client = store.client().await.unwrap();
    let encrypted = client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    client.done();
    encrypted
}

/// `sslmode=verify-full` with the authority that signed the server's certificate, to the host
/// it names: every connection of the store is TLS, and the health says the certificate and host
/// were checked.
#[tokio::test]
async fn verify_full_with_the_servers_authority_connects_over_tls() {
    let url = tls_url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", test_authority(false)),
    )
    .await;
    let store = PostgresStore::open(&url, 2).await.unwrap();
    assert!(pool_is_encrypted(&store).await);
    let health = store.health().await.unwrap();
    assert_eq!(
        health.transport.as_deref(),
        Some("TLS, certificate and host name checked (sslmode=verify-full)")
    );
    assert!(
        health.warnings.iter().all(|w| !w.contains("connection")),
        "{:?}",
        health.warnings
    );
}

/// The server's certificate names `localhost`: `verify-full` to `127.0.0.1` is refused, while
/// `verify-ca` (the authority only) connects.
#[tokio::test]
async fn verify_full_refuses_a_certificate_for_another_host_name_and_verify_ca_takes_it() {
    let authority = test_authority(false);
    let url = tls_url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={authority}")).await;
    let error = PostgresStore::open(&url, 1).await.err().expect("the name differs");
    let text = format!("{error:#}");
    assert!(text.contains("certificate not valid for name \"127.0.0.1\""), "{text}");
    let url = tls_url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={authority}")).await;
    let store = PostgresStore::open(&url, 1).await.unwrap();
    assert!(pool_is_encrypted(&store).await);
    assert_eq!(
        store.health().await.unwrap().transport.as_deref(),
        Some("TLS, certificate authority checked (sslmode=verify-ca)")
    );
}

/// A certificate no trusted authority signed is refused, by `verify-ca` and by `require` with
/// an `sslrootcert` (libpq's rule), and the error never shows the password.
#[tokio::test]
async fn a_certificate_of_an_untrusted_authority_is_refused() {
    let other = test_authority(true);
    for mode in ["verify-ca", "verify-full", "require"] {
        let url = tls_url("localhost", &format!("sslmode={mode}&sslrootcert={other}")).await;
        let url = url.replacen("postgres://postgres@", "postgres://postgres:pw-not-shown-0123@", 1);
        let error = PostgresStore::open(&url, 1)
            .await
            .err()
            .expect("an untrusted authority");
        let text = format!("{error:#}");
        assert!(text.contains("UnknownIssuer"), "{mode}: {text}");
        assert!(!text.contains("pw-not-shown-0123"), "{mode}: {text}");
    }
}

/// `disable` stays plain; libpq's default `prefer` encrypts where the server offers TLS,
/// without checking the certificate, and says so.
#[tokio::test]
async fn disable_stays_plain_and_the_default_prefers_tls_without_checking() {
    let url = tls_url("127.0.0.1", "sslmode=disable").await;
    let store = PostgresStore::open(&url, 1).await.unwrap();
    assert!(!pool_is_encrypted(&store).await);
    assert_eq!(
        store.health().await.unwrap().transport.as_deref(),
        Some("plain (sslmode=disable)")
    );
    let (_, url) = TempSchema::empty().await;
    let store = PostgresStore::open(&url, 1).await.unwrap();
    assert!(pool_is_encrypted(&store).await);
    assert_eq!(
        store.health().await.unwrap().transport.as_deref(),
        Some("TLS, server certificate not checked (sslmode=prefer)")
    );
}

/// Claims asked for at once are written as one group, and each is answered as it would be
/// alone: a stale attempt count loses, of two events of one ticket only the older is claimed,
/// and one not yet due is not.
#[tokio::test]
async fn a_group_of_claims_answers_each_claim_as_if_alone() {
    let t = TempSchema::new().await;
    let store = &t.store;
    let batch = ["a1", "a2", "b1", "c1", "d1"].map(|id| delivery(id, &id[..1].to_uppercase(), None));
    let mut batch = batch.to_vec();
    batch[1].ticket = "A".into();
    store.enqueue(batch, WINDOW).await.unwrap();
    let seq = |id: &'static str| async move { get(store, id).await.seq };
    let (a1, a2, b1, c1, d1) = (
        seq("a1").await,
        seq("a2").await,
        seq("b1").await,
        seq("c1").await,
        seq("d1").await,
    );
    let now = store.now_ms();
    let until = now + 5_000;
    let asked = |seq, attempts, from| claims::ClaimAsked {
        seq,
        attempts,
        lease: lease_at(OWNER, from, until),
    };
    let answers = claims::claim_group(
        store.pool.clone(),
        vec![
            asked(a2, 0, now),
            asked(a1, 0, now),
            asked(b1, 1, now),
            asked(c1, 0, now),
            asked(d1, 0, now - 60_000),
        ],
    )
    .await;
    let answers: Vec<bool> = answers.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        answers,
        [false, true, false, true, false],
        "a2 (a later event of a1's ticket), b1 (a stale count) and d1 (not due at its lease's start) lose"
    );
    assert_eq!(get(store, "a1").await.lease_owner.as_deref(), Some(OWNER));
    assert_eq!(get(store, "a2").await.attempts, 0);
    assert_eq!(get(store, "b1").await.attempts, 0);
    assert_eq!(get(store, "c1").await.next_attempt_at, until);
    assert_eq!(get(store, "d1").await.attempts, 0);
    assert_eq!(due_ids(store, now).await, ["b1", "d1"], "the leased heads are not due");
}

/// Outcomes recorded at once are one group, each kind written as alone: a finished event hands
/// its ticket to the next, a retry reschedules it, an outcome of another attempt is not written.
/// A group the database refuses (an error text it cannot store) is written again one by one, so
/// the others are recorded and only the refused one fails.
#[tokio::test]
async fn a_group_of_outcomes_records_each_and_a_refused_one_fails_alone() {
    let t = TempSchema::new().await;
    let store = &t.store;
    let ids = ["a1", "a2", "b1", "c1", "d1", "e1"];
    let mut batch: Vec<NewDelivery> = ids
        .iter()
        .map(|id| delivery(id, &id[..1].to_uppercase(), None))
        .collect();
    batch[1].ticket = "A".into();
    store.enqueue(batch, WINDOW).await.unwrap();
    let now = store.now_ms();
    let until = now + 5_000;
    for id in ["a1", "b1", "c1", "d1", "e1"] {
        let seq = get(store, id).await.seq;
        assert!(store.claim(seq, 0, &lease_at(OWNER, now, until)).await.unwrap());
    }
    let outcome = |id: &'static str, attempt, outcome| async move {
        claims::OutcomeAsked {
            seq: get(store, id).await.seq,
            attempt,
            outcome,
            now,
        }
    };
    let retry_at = now + 60_000;
    let group = vec![
        outcome("a1", 1, Outcome::Delivered).await,
        outcome("b1", 1, Outcome::RetryAt(retry_at, "vendor said 503".into())).await,
        outcome("c1", 1, Outcome::Dead("vendor said 400".into())).await,
        outcome("d1", 2, Outcome::Delivered).await,
        outcome("e1", 1, Outcome::NotAttempted(retry_at, "resting".into())).await,
    ];
    let answers: Vec<bool> = claims::record_group(store.pool.clone(), group)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        answers,
        [true, true, true, false, true],
        "d1's outcome is of another attempt"
    );
    assert_eq!(get(store, "a1").await.state, "delivered");
    assert_eq!(get(store, "b1").await.next_attempt_at, retry_at);
    assert_eq!(get(store, "c1").await.state, "dead");
    assert_eq!(
        get(store, "d1").await.lease_owner.as_deref(),
        Some(OWNER),
        "d1 still leased"
    );
    assert_eq!(get(store, "e1").await.attempts, 0, "the attempt not made is given back");
    assert_eq!(due_ids(store, now).await, ["a2"], "a1's ticket goes on with a2");

    let d1 = get(store, "d1").await.seq;
    let a2 = get(store, "a2").await.seq;
    assert!(store.claim(a2, 0, &lease_at(OWNER, now, until)).await.unwrap());
    let refused = vec![
        claims::OutcomeAsked {
            seq: d1,
            attempt: 1,
            outcome: Outcome::Dead("a NUL \0 PostgreSQL cannot store".into()),
            now,
        },
        claims::OutcomeAsked {
            seq: a2,
            attempt: 1,
            outcome: Outcome::Delivered,
            now,
        },
    ];
    let answers = claims::record_group(store.pool.clone(), refused).await;
    assert!(answers[0].is_err(), "the refused outcome fails");
    assert!(*answers[1].as_ref().unwrap(), "the other is recorded");
    assert_eq!(get(store, "a2").await.state, "delivered");
    assert_eq!(get(store, "d1").await.state, "pending");
}

/// Many deliveries of two replicas claimed and finished at once, over the same tickets: every
/// claim and outcome is written (grouped, in the locks' order), none fails as a deadlock, and
/// each event is delivered once (the order per ticket is the suite's to check).
#[tokio::test]
async fn two_replicas_claiming_and_recording_at_once_over_the_same_tickets_never_deadlock() {
    let t = TempSchema::new().await;
    let tickets = ["A", "B", "C", "D", "E", "F", "G", "H"];
    let events_per_ticket = 6;
    let mut batch = Vec::new();
    for n in 0..events_per_ticket {
        for ticket in tickets {
            batch.push(delivery(&format!("{ticket}{n}"), ticket, None));
        }
    }
    t.store.enqueue(batch, WINDOW).await.unwrap();
    let mut replicas = Vec::new();
    for owner in ["replica-a", "replica-b"] {
        replicas.push((owner, Arc::new(PostgresStore::open(&t.url, 4).await.unwrap())));
    }
    let mut delivered: Vec<(String, String)> = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while delivered.len() < tickets.len() * events_per_ticket {
        assert!(std::time::Instant::now() < deadline, "delivered only {delivered:?}");
        // Both replicas read the same heads and race for them, each with all of its claims
        // and then all of its outcomes at once.
        let mut rounds = tokio::task::JoinSet::new();
        for (owner, store) in &replicas {
            let (owner, store) = (*owner, store.clone());
            rounds.spawn(async move {
                let now = store.now_ms();
                let due = store.due(now, 64, &[]).await.unwrap();
                let mut claims = tokio::task::JoinSet::new();
                for d in due {
                    let store = store.clone();
                    claims.spawn(async move {
                        let claimed = store
                            .claim(d.seq, d.attempts, &lease_at(owner, now, now + 30_000))
                            .await;
                        (d, claimed.expect("a claim failed"))
                    });
                }
                let won: Vec<Delivery> = claims
                    .join_all()
                    .await
                    .into_iter()
                    .filter(|(_, c)| *c)
                    .map(|(d, _)| d)
                    .collect();
                let mut records = tokio::task::JoinSet::new();
                for d in won.clone() {
                    let store = store.clone();
                    records.spawn(async move { store.record(d.seq, d.attempts + 1, Outcome::Delivered).await });
                }
                for recorded in records.join_all().await {
                    assert!(
                        recorded.expect("an outcome failed"),
                        "a claimed delivery's outcome is recorded"
                    );
                }
                won
            });
        }
        for won in rounds.join_all().await {
            delivered.extend(won.into_iter().map(|d| (d.ticket, d.delivery_id)));
        }
    }
    delivered.sort_by_key(|(_, id)| id[1..].parse::<u32>().unwrap());
    for ticket in tickets {
        let delivered: Vec<&str> = delivered
            .iter()
            .filter(|(t, _)| t == ticket)
            .map(|(_, id)| id.as_str())
            .collect();
        let expected: Vec<String> = (0..events_per_ticket).map(|n| format!("{ticket}{n}")).collect();
        assert_eq!(delivered, expected, "ticket {ticket}: each event delivered once");
    }
}
