//! The store suite: what every [`Store`] backend promises, run against each of them
//! (`store::sqlite::tests` and `store::postgres::tests` instantiate it with [`store_suite!`]).
//! Tests of one backend's own machinery (files, pragmas, injected faults) stay with it.

use std::future::Future;
use std::time::Duration;

use super::*;
use crate::clock::tests::SteppingTime;
use crate::clock::{Clock, now_ms};

/// A store under test, and whatever must live as long as it (its file, its schema).
pub(crate) trait Fixture: Send + Sync {
    fn store(&self) -> &dyn Store;
    /// Another store on the same database, as a second bridge process would open it.
    fn replica(&self) -> impl Future<Output = Box<dyn Store>> + Send;
}

/// Declares one `#[tokio::test]` per suite test, each on a fresh fixture from `$fresh` (an
/// expression evaluating to a future of a [`Fixture`]).
macro_rules! store_suite {
    ($fresh:expr) => {
        $crate::store::suite::store_suite!(@tests $fresh;
            kv_is_namespaced_by_tenant,
            kv_quota_counts_a_tenants_keys_and_values_and_a_replaced_value_once,
            an_attempt_not_made_gives_its_claim_back,
            only_the_head_of_each_ticket_is_due,
            order_is_kept_per_owner_and_ticket_across_tenants,
            due_leaves_out_the_tenants_it_is_told_to_skip,
            a_claim_counts_the_attempt_sets_a_lease_and_is_taken_once,
            a_lease_is_renewed_by_its_owner_only_and_released_with_the_outcome,
            a_lease_that_ends_unrenewed_is_claimed_by_another_process,
            a_claim_read_before_a_renewal_loses_to_it,
            a_replayed_dead_letter_waits_for_a_later_event_that_is_running,
            released_leases_are_due_at_once_with_their_attempts_counted,
            next_due_after_looks_at_heads_only,
            idempotency_key_returns_the_first_id,
            webhook_keys_store_once_and_return_the_first_answer,
            a_webhook_event_whose_key_was_stored_is_stored_once,
            replay_moves_dead_letters_to_another_tenant_and_purges_delete_them,
            backlog_by_tenant_counts_pending_deliveries_and_their_oldest_and_dead_letters_by_tenant_the_dead,
            purge_removes_what_is_past_retention_in_batches,
            tickets_and_their_contacts_are_known_to_their_owner_only,
            an_enqueued_event_remembers_its_ticket_in_the_same_write,
            a_wall_clock_step_neither_fires_retries_early_nor_holds_them,
            two_processes_claim_each_attempt_once,
            two_processes_storing_one_idempotency_key_store_one_event,
            a_webhook_retried_on_two_processes_at_once_is_stored_once,
            one_event_key_sent_to_two_processes_at_once_is_stored_once,
            a_tenants_quota_holds_across_processes,
            heartbeats_list_each_replica_once_with_what_it_serves,
            replicas_unseen_for_thirty_seconds_are_stale_and_after_a_day_forgotten,
            an_events_trace_context_is_stored_with_it_for_every_process,
        );
    };
    (@tests $fresh:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let fixture = $fresh.await;
                $crate::store::suite::$name(&fixture).await;
            }
        )*
    };
}
pub(crate) use store_suite;

pub(crate) fn delivery(id: &str, ticket: &str, key: Option<&str>) -> NewDelivery {
    NewDelivery {
        delivery_id: id.into(),
        tenant: "acme".into(),
        owner: "acme-owner".into(),
        direction: Direction::ToVendor,
        ticket: ticket.into(),
        payload: "{}".into(),
        idempotency_key: key.map(str::to_string),
        event_key: None,
        ticket_info: None,
        trace_context: None,
    }
}

pub(crate) const WINDOW: Duration = Duration::from_secs(60);

pub(crate) async fn due_ids(store: &dyn Store, now: i64) -> Vec<String> {
    let due = store.due(now, 10, &[]).await.unwrap();
    due.into_iter().map(|d| d.delivery_id).collect()
}

pub(crate) async fn get(store: &dyn Store, id: &str) -> Delivery {
    store.delivery(id).await.unwrap().expect("stored")
}

/// Remembers `owner`'s `ticket` as an Incoming event does: with a delivery of that ticket.
pub(crate) async fn remember(store: &dyn Store, owner: &str, ticket: &str, info: TicketInfo) {
    let delivery = NewDelivery {
        owner: owner.into(),
        ticket_info: Some(info),
        ..delivery(&uuid::Uuid::now_v7().to_string(), ticket, None)
    };
    store.enqueue(vec![delivery], WINDOW).await.unwrap();
}

pub(crate) fn ticket_with(contact_id: &str) -> TicketInfo {
    TicketInfo {
        channel: "whatsapp".into(),
        customer_name: "Budi".into(),
        contact_id: contact_id.into(),
    }
}

pub(crate) async fn kv_is_namespaced_by_tenant(f: &impl Fixture) {
    let store = f.store();
    store.kv_set("a", "k", b"1".to_vec(), 1 << 20).await.unwrap();
    store.kv_set("b", "k", b"2".to_vec(), 1 << 20).await.unwrap();
    assert_eq!(store.kv_get("a", "k").await.unwrap(), Some(b"1".to_vec()));
    store.kv_delete("a", "k").await.unwrap();
    assert_eq!(store.kv_get("a", "k").await.unwrap(), None);
    assert_eq!(store.kv_get("b", "k").await.unwrap(), Some(b"2".to_vec()));
}

pub(crate) async fn kv_quota_counts_a_tenants_keys_and_values_and_a_replaced_value_once(f: &impl Fixture) {
    let store = f.store();
    let quota = 100;
    assert_eq!(
        store.kv_set("a", "k1", vec![0; 40], quota).await.unwrap(),
        KvWrite::Stored
    );
    assert_eq!(
        store.kv_set("a", "k2", vec![0; 40], quota).await.unwrap(),
        KvWrite::Stored
    );
    // 84 bytes held; 2 + 40 more would be 126.
    assert_eq!(
        store.kv_set("a", "k3", vec![0; 40], quota).await.unwrap(),
        KvWrite::OverQuota
    );
    assert_eq!(store.kv_get("a", "k3").await.unwrap(), None);
    // Replacing a value counts the new one only (42 + 2 + 56 = 100); another tenant has its own
    // quota.
    assert_eq!(
        store.kv_set("a", "k2", vec![1; 56], quota).await.unwrap(),
        KvWrite::Stored
    );
    assert_eq!(
        store.kv_set("b", "k3", vec![0; 98], quota).await.unwrap(),
        KvWrite::Stored
    );
}

/// A claim given back (the adapter was resting) leaves the attempt count as it was and the
/// head waiting until the given time, still holding its ticket back.
pub(crate) async fn an_attempt_not_made_gives_its_claim_back(f: &impl Fixture) {
    let store = f.store();
    store
        .enqueue(vec![delivery("a1", "A", None), delivery("a2", "A", None)], WINDOW)
        .await
        .unwrap();
    let a1 = get(store, "a1").await;
    assert!(store.claim(a1.seq, 0, &lease(now_ms() + 60_000)).await.unwrap());
    let resting = Outcome::NotAttempted(now_ms() + 5_000, "adapter is resting".into());
    assert!(store.record(a1.seq, 1, resting).await.unwrap());
    let a1 = get(store, "a1").await;
    assert_eq!((a1.state.as_str(), a1.attempts), ("pending", 0));
    assert!(due_ids(store, now_ms()).await.is_empty(), "a2 waits behind a1");
    let later = now_ms() + 5_000;
    assert_eq!(due_ids(store, later).await, ["a1"]);
    assert!(
        store
            .claim(a1.seq, 0, &lease_at(OWNER, later, later + 60_000))
            .await
            .unwrap(),
        "claimed as attempt 1 again"
    );
}

pub(crate) async fn only_the_head_of_each_ticket_is_due(f: &impl Fixture) {
    let store = f.store();
    let batch = vec![
        delivery("a1", "A", None),
        delivery("a2", "A", None),
        delivery("b1", "B", None),
    ];
    store.enqueue(batch, WINDOW).await.unwrap();
    assert_eq!(due_ids(store, now_ms()).await, ["a1", "b1"]);
    // A waiting head holds back its own ticket only.
    let a1 = get(store, "a1").await;
    assert!(store.claim(a1.seq, 0, &lease(now_ms() + 60_000)).await.unwrap());
    assert!(
        store
            .record(a1.seq, 1, Outcome::RetryAt(now_ms() + 60_000, "vendor 503".into()))
            .await
            .unwrap()
    );
    assert_eq!(due_ids(store, now_ms()).await, ["b1"]);
    // A dead head lets the ticket move on, and replay brings it back.
    let retried = now_ms() + 60_000;
    assert!(
        store
            .claim(a1.seq, 1, &lease_at(OWNER, retried, retried + 60_000))
            .await
            .unwrap()
    );
    assert!(
        store
            .record(a1.seq, 2, Outcome::Dead("permanent".into()))
            .await
            .unwrap()
    );
    assert_eq!(due_ids(store, now_ms()).await, ["a2", "b1"]);
    assert_eq!(store.replay(DeadLetterFilter::One("a1".into()), None).await.unwrap(), 1);
    let a1 = get(store, "a1").await;
    assert_eq!((a1.state.as_str(), a1.attempts, a1.retry_base), ("pending", 2, 2));
    assert_eq!(due_ids(store, now_ms()).await, ["b1", "a1"], "earliest due first");
}

pub(crate) async fn order_is_kept_per_owner_and_ticket_across_tenants(f: &impl Fixture) {
    let store = f.store();
    let mut moved = delivery("a2", "A", None);
    moved.tenant = "acme-whatsapp".into();
    let batch = vec![delivery("a1", "A", None), moved];
    store.enqueue(batch, WINDOW).await.unwrap();
    assert_eq!(
        due_ids(store, now_ms()).await,
        ["a1"],
        "a2 waits behind a1 of another tenant"
    );
}

pub(crate) async fn due_leaves_out_the_tenants_it_is_told_to_skip(f: &impl Fixture) {
    let store = f.store();
    let mut other = delivery("b1", "B", None);
    other.tenant = "globex".into();
    other.owner = "globex-owner".into();
    store
        .enqueue(vec![delivery("a1", "A", None), other], WINDOW)
        .await
        .unwrap();
    let due = store.due(now_ms(), 10, &["acme".into()]).await.unwrap();
    assert_eq!(due.iter().map(|d| d.delivery_id.as_str()).collect::<Vec<_>>(), ["b1"]);
}

/// The lease owner the suite's claims name.
pub(crate) const OWNER: &str = "replica-a";

/// A lease of [`OWNER`] until `until_ms`.
pub(crate) fn lease(until_ms: i64) -> Lease {
    lease_of(OWNER, until_ms)
}

/// A lease of `owner` taken now until `until_ms`.
pub(crate) fn lease_of(owner: &str, until_ms: i64) -> Lease {
    lease_at(owner, now_ms(), until_ms)
}

/// A lease of `owner` taken at `from_ms` (a test's time) until `until_ms`.
pub(crate) fn lease_at(owner: &str, from_ms: i64, until_ms: i64) -> Lease {
    Lease {
        owner: owner.into(),
        from_ms,
        until_ms,
    }
}

/// A lease names its holder; only the holder renews it (pushing back when the delivery is due
/// again), and recording the outcome releases it, after which no renewal is written.
pub(crate) async fn a_lease_is_renewed_by_its_owner_only_and_released_with_the_outcome(f: &impl Fixture) {
    let store = f.store();
    store.enqueue(vec![delivery("d1", "A", None)], WINDOW).await.unwrap();
    let d1 = get(store, "d1").await;
    assert_eq!(d1.lease_owner, None);
    let first = now_ms() + 5_000;
    assert!(store.claim(d1.seq, 0, &lease(first)).await.unwrap());
    assert_eq!(get(store, "d1").await.lease_owner.as_deref(), Some(OWNER));
    assert!(
        !store
            .renew(d1.seq, 1, &lease_of("replica-b", first + 50_000))
            .await
            .unwrap(),
        "another process cannot renew it"
    );
    assert!(
        !store.renew(d1.seq, 2, &lease(first + 50_000)).await.unwrap(),
        "nor can another attempt"
    );
    assert_eq!(get(store, "d1").await.next_attempt_at, first);
    let renewed = first + 10_000;
    assert!(store.renew(d1.seq, 1, &lease(renewed)).await.unwrap());
    assert_eq!(get(store, "d1").await.next_attempt_at, renewed);
    assert!(
        due_ids(store, first).await.is_empty(),
        "the renewed lease holds past the first"
    );
    let retry_at = now_ms() + 1_000;
    assert!(
        store
            .record(d1.seq, 1, Outcome::RetryAt(retry_at, "busy".into()))
            .await
            .unwrap()
    );
    let released = get(store, "d1").await;
    assert_eq!((released.lease_owner, released.next_attempt_at), (None, retry_at));
    assert!(
        !store.renew(d1.seq, 1, &lease(renewed + 10_000)).await.unwrap(),
        "a renewal after the outcome (one already under way) changes nothing"
    );
    assert_eq!(get(store, "d1").await.next_attempt_at, retry_at);
}

/// A process that dies mid-attempt stops renewing: when its lease ends, another process claims
/// the delivery's next attempt, and the dead holder can neither renew nor record any more.
pub(crate) async fn a_lease_that_ends_unrenewed_is_claimed_by_another_process(f: &impl Fixture) {
    let store = f.store();
    let replica = f.replica().await;
    store
        .enqueue(vec![delivery("d1", "A", None), delivery("d2", "A", None)], WINDOW)
        .await
        .unwrap();
    let d1 = get(store, "d1").await;
    let ends = now_ms() + 1_000;
    assert!(store.claim(d1.seq, 0, &lease(ends)).await.unwrap());
    assert!(
        replica.due(ends - 1, 10, &[]).await.unwrap().is_empty(),
        "held, and d2 waits behind it"
    );
    let due = replica.due(ends, 10, &[]).await.unwrap();
    assert_eq!(due.iter().map(|d| d.delivery_id.as_str()).collect::<Vec<_>>(), ["d1"]);
    assert!(
        replica
            .claim(d1.seq, 1, &lease_at("replica-b", ends, ends + 60_000))
            .await
            .unwrap()
    );
    assert_eq!(get(store, "d1").await.lease_owner.as_deref(), Some("replica-b"));
    assert!(!store.renew(d1.seq, 1, &lease(ends + 90_000)).await.unwrap());
    assert!(!store.record(d1.seq, 1, Outcome::Delivered).await.unwrap());
    assert!(replica.record(d1.seq, 2, Outcome::Delivered).await.unwrap());
    assert_eq!(due_ids(&*replica, now_ms()).await, ["d2"]);
}

/// A claim judges the lease as it is when the claim is made, not as `due` read it: a renewal
/// committed in between (the holder is alive, only slow) stops it.
pub(crate) async fn a_claim_read_before_a_renewal_loses_to_it(f: &impl Fixture) {
    let store = f.store();
    let replica = f.replica().await;
    store.enqueue(vec![delivery("d1", "A", None)], WINDOW).await.unwrap();
    let d1 = get(store, "d1").await;
    let ends = now_ms() + 1_000;
    assert!(store.claim(d1.seq, 0, &lease(ends)).await.unwrap());
    let seen = replica.due(ends, 10, &[]).await.unwrap();
    assert_eq!(seen.len(), 1, "due to the other process once the lease has ended");
    assert!(store.renew(d1.seq, 1, &lease(ends + 60_000)).await.unwrap());
    assert!(
        !replica
            .claim(d1.seq, seen[0].attempts, &lease_at("replica-b", ends, ends + 60_000))
            .await
            .unwrap(),
        "the renewed lease holds"
    );
    assert_eq!(get(store, "d1").await.lease_owner.as_deref(), Some(OWNER));
}

/// A dead letter replayed while a later event of its ticket is being attempted becomes the
/// ticket's head, but is not claimed until that attempt has ended: one at a time per ticket.
pub(crate) async fn a_replayed_dead_letter_waits_for_a_later_event_that_is_running(f: &impl Fixture) {
    let store = f.store();
    let replica = f.replica().await;
    store
        .enqueue(vec![delivery("s1", "A", None), delivery("s2", "A", None)], WINDOW)
        .await
        .unwrap();
    let s1 = get(store, "s1").await;
    assert!(store.claim(s1.seq, 0, &lease(now_ms() + 60_000)).await.unwrap());
    assert!(store.record(s1.seq, 1, Outcome::Dead("refused".into())).await.unwrap());
    let s2 = get(store, "s2").await;
    assert!(store.claim(s2.seq, 0, &lease(now_ms() + 60_000)).await.unwrap());
    assert_eq!(store.replay(DeadLetterFilter::One("s1".into()), None).await.unwrap(), 1);
    assert_eq!(
        due_ids(&*replica, now_ms()).await,
        ["s1"],
        "the replayed event is the head"
    );
    assert!(
        !replica
            .claim(s1.seq, 1, &lease_of("replica-b", now_ms() + 60_000))
            .await
            .unwrap(),
        "not while s2's attempt runs"
    );
    assert!(
        store
            .record(s2.seq, 1, Outcome::RetryAt(now_ms() + 60_000, "busy".into()))
            .await
            .unwrap()
    );
    assert!(
        replica
            .claim(s1.seq, 1, &lease_of("replica-b", now_ms() + 60_000))
            .await
            .unwrap(),
        "once it has ended"
    );
}

/// The embedded store's server, started after a crash, releases the dead run's leases: those
/// deliveries are due at once, their attempts still counted; nothing else changes.
pub(crate) async fn released_leases_are_due_at_once_with_their_attempts_counted(f: &impl Fixture) {
    let store = f.store();
    let batch = vec![
        delivery("a1", "A", None),
        delivery("b1", "B", None),
        delivery("c1", "C", None),
    ];
    store.enqueue(batch, WINDOW).await.unwrap();
    let (a1, b1) = (get(store, "a1").await, get(store, "b1").await);
    assert!(store.claim(a1.seq, 0, &lease(now_ms() + 60_000)).await.unwrap());
    assert!(store.claim(b1.seq, 0, &lease(now_ms() + 60_000)).await.unwrap());
    assert!(
        store
            .record(b1.seq, 1, Outcome::RetryAt(now_ms() + 60_000, "down".into()))
            .await
            .unwrap()
    );
    assert_eq!(due_ids(store, now_ms()).await, ["c1"]);
    assert_eq!(
        store.release_all_leases().await.unwrap(),
        1,
        "a1 only: b1 waits for its retry"
    );
    let released = get(store, "a1").await;
    assert_eq!((released.attempts, released.lease_owner), (1, None));
    let mut due = due_ids(store, now_ms()).await;
    due.sort();
    assert_eq!(due, ["a1", "c1"]);
}

pub(crate) async fn a_claim_counts_the_attempt_sets_a_lease_and_is_taken_once(f: &impl Fixture) {
    let store = f.store();
    store.enqueue(vec![delivery("d1", "A", None)], WINDOW).await.unwrap();
    let d1 = get(store, "d1").await;
    let lease_until = now_ms() + 5_000;
    assert!(store.claim(d1.seq, 0, &lease(lease_until)).await.unwrap());
    assert!(
        !store.claim(d1.seq, 0, &lease(lease_until)).await.unwrap(),
        "a stale claim loses"
    );
    let claimed = get(store, "d1").await;
    assert_eq!((claimed.attempts, claimed.next_attempt_at), (1, lease_until));
    assert!(due_ids(store, now_ms()).await.is_empty(), "not due while leased");
    assert_eq!(
        due_ids(store, lease_until).await,
        ["d1"],
        "due again when the lease ends"
    );
    // An outcome for another attempt than the one that claimed it is not written.
    assert!(!store.record(d1.seq, 2, Outcome::Delivered).await.unwrap());
    assert!(store.record(d1.seq, 1, Outcome::Delivered).await.unwrap());
    assert!(!store.record(d1.seq, 1, Outcome::Dead("late".into())).await.unwrap());
    assert_eq!(get(store, "d1").await.state, "delivered");
}

pub(crate) async fn next_due_after_looks_at_heads_only(f: &impl Fixture) {
    let store = f.store();
    let batch = vec![delivery("a1", "A", None), delivery("a2", "A", None)];
    store.enqueue(batch, WINDOW).await.unwrap();
    let a1 = get(store, "a1").await;
    let later = now_ms() + 3_600_000;
    assert!(store.claim(a1.seq, 0, &lease(later)).await.unwrap());
    // a2 was due long ago, but waits behind a1: the next thing due is a1's lease end.
    assert_eq!(store.next_due_after(now_ms()).await.unwrap(), Some(later));
}

pub(crate) async fn idempotency_key_returns_the_first_id(f: &impl Fixture) {
    let store = f.store();
    let first = store
        .enqueue(vec![delivery("d1", "A", Some("k"))], WINDOW)
        .await
        .unwrap();
    let again = store
        .enqueue(vec![delivery("d2", "A", Some("k"))], WINDOW)
        .await
        .unwrap();
    let accepted = |id: &str, duplicate| Accepted {
        delivery_id: id.into(),
        duplicate,
    };
    assert_eq!(first[0], accepted("d1", false));
    assert_eq!(again[0], accepted("d1", true));
    assert_eq!(store.stats().await.unwrap().pending, 1);
    // Outside the window the same key is a new event.
    let later = store
        .enqueue(vec![delivery("d3", "A", Some("k"))], Duration::ZERO)
        .await
        .unwrap();
    assert!(!later[0].duplicate);
}

pub(crate) async fn webhook_keys_store_once_and_return_the_first_answer(f: &impl Fixture) {
    let store = f.store();
    let response = |body: &str| StoredResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
    };
    let mut event = delivery("w1", "A", None);
    event.direction = Direction::ToThreeDolphins;
    // The vendor's id and the signature: a repeat is recognised by either.
    let keys = ["wh-1".to_string(), "sig".to_string()];
    let first = store
        .accept_webhook("acme", &keys, response("first"), vec![event.clone()], WINDOW)
        .await
        .unwrap();
    assert!(matches!(first, WebhookAccepted::New(ref a) if a.len() == 1));
    event.delivery_id = "w2".into();
    let again = store
        .accept_webhook(
            "acme",
            &["sig".to_string()],
            response("second"),
            vec![event.clone()],
            WINDOW,
        )
        .await
        .unwrap();
    assert_eq!(again, WebhookAccepted::Duplicate(response("first")));
    assert!(store.delivery("w2").await.unwrap().is_none());
    assert_eq!(
        store
            .webhook_response("acme", &["wh-1".to_string()], WINDOW)
            .await
            .unwrap(),
        Some(response("first"))
    );
    assert_eq!(store.webhook_response("globex", &keys, WINDOW).await.unwrap(), None);
}

pub(crate) async fn replay_moves_dead_letters_to_another_tenant_and_purges_delete_them(f: &impl Fixture) {
    let store = f.store();
    let batch = vec![delivery("d1", "A", None), delivery("d2", "B", None)];
    store.enqueue(batch, WINDOW).await.unwrap();
    for id in ["d1", "d2"] {
        let d = get(store, id).await;
        assert!(store.claim(d.seq, 0, &lease(now_ms())).await.unwrap());
        assert!(
            store
                .record(d.seq, 1, Outcome::Dead("tenant removed".into()))
                .await
                .unwrap()
        );
    }
    let moved = store
        .replay(DeadLetterFilter::One("d1".into()), Some("acme-new"))
        .await
        .unwrap();
    assert_eq!(moved, 1);
    let d1 = get(store, "d1").await;
    assert_eq!((d1.tenant.as_str(), d1.state.as_str()), ("acme-new", "pending"));
    let purged = store
        .purge_dead_letters(DeadLetterFilter::All, now_ms() + 1)
        .await
        .unwrap();
    assert_eq!(purged, 1);
    assert!(store.delivery("d2").await.unwrap().is_none());
}

pub(crate) async fn backlog_by_tenant_counts_pending_deliveries_and_their_oldest_and_dead_letters_by_tenant_the_dead(
    f: &impl Fixture,
) {
    let store = f.store();
    let other = |id: &str| NewDelivery {
        tenant: "beta".into(),
        ..delivery(id, id, None)
    };
    store.enqueue(vec![delivery("a1", "A", None)], WINDOW).await.unwrap();
    let first = get(store, "a1").await.created_at;
    store
        .enqueue(
            vec![delivery("a2", "B", None), delivery("a3", "C", None), other("b1")],
            WINDOW,
        )
        .await
        .unwrap();
    // A dead letter and a delivered event are not waiting.
    let a3 = get(store, "a3").await;
    assert!(store.claim(a3.seq, 0, &lease(now_ms())).await.unwrap());
    assert!(store.record(a3.seq, 1, Outcome::Dead("gone".into())).await.unwrap());
    let b1 = get(store, "b1").await;
    assert!(store.claim(b1.seq, 0, &lease(now_ms())).await.unwrap());
    assert!(store.record(b1.seq, 1, Outcome::Delivered).await.unwrap());
    let backlog = store.backlog_by_tenant().await.unwrap();
    assert_eq!(
        backlog,
        vec![TenantBacklog {
            tenant: "acme".into(),
            pending: 2,
            oldest_created_at: first,
        }]
    );
    assert_eq!(
        store.dead_letters_by_tenant().await.unwrap(),
        vec![TenantDeadLetters {
            tenant: "acme".into(),
            dead: 1,
        }]
    );
}

pub(crate) async fn purge_removes_what_is_past_retention_in_batches(f: &impl Fixture) {
    let store = f.store();
    let batch: Vec<_> = (0..2_500)
        .map(|i| delivery(&format!("d{i}"), &format!("T{i}"), None))
        .collect();
    store.enqueue(batch, WINDOW).await.unwrap();
    store.enqueue(vec![delivery("kept", "K", None)], WINDOW).await.unwrap();
    // Remembered with one more delivery, which is delivered with the others.
    remember(
        store,
        "acme-owner",
        "A",
        TicketInfo {
            channel: "whatsapp".into(),
            customer_name: "Budi".into(),
            contact_id: "c-budi".into(),
        },
    )
    .await;
    for d in store.due(now_ms(), 3_000, &[]).await.unwrap() {
        if d.delivery_id != "kept" {
            assert!(store.claim(d.seq, 0, &lease(now_ms())).await.unwrap());
            assert!(store.record(d.seq, 1, Outcome::Delivered).await.unwrap());
        }
    }
    let later = now_ms() + 1;
    let before = PurgeBefore {
        delivered: later,
        idempotency_keys: later,
        webhook_keys: later,
        tickets: later,
        dead_letters: None,
    };
    assert_eq!(store.purge(before).await.unwrap(), 2_501);
    assert!(store.delivery("kept").await.unwrap().is_some());
    assert_eq!(store.ticket("acme-owner", "A").await.unwrap(), None);
    assert!(!store.is_contact_of_owner("acme-owner", "c-budi").await.unwrap());
}

/// What scopes an adapter's 3Dolphins look-ups: the tickets its owner has seen and their
/// contacts, never another owner's.
pub(crate) async fn tickets_and_their_contacts_are_known_to_their_owner_only(f: &impl Fixture) {
    let store = f.store();
    remember(store, "owner-a", "T1", ticket_with("c-1")).await;
    remember(store, "owner-b", "T2", ticket_with("c-2")).await;

    assert_eq!(store.ticket("owner-a", "T1").await.unwrap(), Some(ticket_with("c-1")));
    assert_eq!(store.ticket("owner-a", "T2").await.unwrap(), None);
    assert!(store.is_contact_of_owner("owner-a", "c-1").await.unwrap());
    assert!(!store.is_contact_of_owner("owner-a", "c-2").await.unwrap());
    assert!(!store.is_contact_of_owner("owner-a", "").await.unwrap());

    // A later Incoming event of the ticket with another contact: the ticket's contact is the
    // latest one.
    remember(store, "owner-a", "T1", ticket_with("c-3")).await;
    assert!(store.is_contact_of_owner("owner-a", "c-3").await.unwrap());
    assert!(!store.is_contact_of_owner("owner-a", "c-1").await.unwrap());
}

/// An Incoming event remembers its ticket in the transaction that stores it, a duplicate too
/// (the latest event's contact is the ticket's), and a refused batch remembers nothing.
pub(crate) async fn an_enqueued_event_remembers_its_ticket_in_the_same_write(f: &impl Fixture) {
    let store = f.store();
    let with_ticket = |id: &str, key: &str, contact: &str| NewDelivery {
        owner: "owner-a".into(),
        ticket_info: Some(ticket_with(contact)),
        ..delivery(id, "T1", Some(key))
    };
    store
        .enqueue(vec![with_ticket("d1", "k1", "c-1")], WINDOW)
        .await
        .unwrap();
    assert_eq!(store.ticket("owner-a", "T1").await.unwrap(), Some(ticket_with("c-1")));
    let again = store
        .enqueue(vec![with_ticket("d2", "k1", "c-2")], WINDOW)
        .await
        .unwrap();
    assert!(again[0].duplicate);
    assert_eq!(store.ticket("owner-a", "T1").await.unwrap(), Some(ticket_with("c-2")));
    assert_eq!(store.ticket("owner-a", "T9").await.unwrap(), None);
}

/// Item: retry times are compared with the process's clock, which a wall-clock step does not
/// move: a retry an hour away stays an hour away when the wall clock jumps forwards.
pub(crate) async fn a_wall_clock_step_neither_fires_retries_early_nor_holds_them(f: &impl Fixture) {
    let time = SteppingTime::at(now_ms());
    let clock = Clock::new(Box::new(time.clone()));
    let store = f.store();
    store.enqueue(vec![delivery("d1", "A", None)], WINDOW).await.unwrap();
    let d1 = get(store, "d1").await;
    let retry_at = clock.now_ms() + 3_600_000;
    assert!(store.claim(d1.seq, 0, &lease(retry_at)).await.unwrap());
    time.step_wall(2 * 3_600_000);
    assert!(
        due_ids(store, clock.now_ms()).await.is_empty(),
        "not fired by a step forwards"
    );
    time.step_wall(-4 * 3_600_000);
    time.advance(3_600_000);
    assert_eq!(
        due_ids(store, clock.now_ms()).await,
        ["d1"],
        "not held by a step backwards"
    );
}

/// Two bridge processes on one database race to claim the same attempts: each is claimed once.
pub(crate) async fn two_processes_claim_each_attempt_once(f: &impl Fixture) {
    let store = f.store();
    let replica = f.replica().await;
    let batch = (0..20)
        .map(|i| delivery(&format!("d{i}"), &format!("T{i}"), None))
        .collect();
    store.enqueue(batch, WINDOW).await.unwrap();
    let (mine, theirs) = (lease(now_ms() + 60_000), lease_of("replica-b", now_ms() + 60_000));
    for d in store.due(now_ms(), 100, &[]).await.unwrap() {
        let (here, there) = tokio::join!(store.claim(d.seq, 0, &mine), replica.claim(d.seq, 0, &theirs));
        let wins = [here.unwrap(), there.unwrap()];
        assert_eq!(
            wins.iter().filter(|won| **won).count(),
            1,
            "{} claimed {wins:?}",
            d.delivery_id
        );
        assert_eq!(get(store, &d.delivery_id).await.attempts, 1);
    }
    assert!(store.due(now_ms(), 100, &[]).await.unwrap().is_empty(), "all leased");
}

/// A client's retry of one event reaching two processes at once stores one event: both answer
/// with its id, one of them as a duplicate.
pub(crate) async fn two_processes_storing_one_idempotency_key_store_one_event(f: &impl Fixture) {
    let store = f.store();
    let replica = f.replica().await;
    for round in 0..20 {
        let key = format!("key-{round}");
        let (here, there) = tokio::join!(
            store.enqueue(vec![delivery(&format!("a{round}"), "A", Some(&key))], WINDOW),
            replica.enqueue(vec![delivery(&format!("b{round}"), "A", Some(&key))], WINDOW),
        );
        let (here, there) = (here.unwrap().remove(0), there.unwrap().remove(0));
        assert_eq!(here.delivery_id, there.delivery_id, "round {round}");
        assert_eq!(u8::from(here.duplicate) + u8::from(there.duplicate), 1, "round {round}");
    }
    assert_eq!(store.stats().await.unwrap().pending, 20);
}

/// A vendor's webhook retried at two processes at once: stored once, and the other answer is
/// the stored one.
/// A webhook event with a key is stored once per tenant within the window, whichever webhook
/// (no webhook keys at all here, as with token auth and no delivery header) carries it again;
/// the events without a key, and the other tenants', are stored as they come.
pub(crate) async fn a_webhook_event_whose_key_was_stored_is_stored_once(f: &impl Fixture) {
    let store = f.store();
    let answer = StoredResponse {
        status: 200,
        headers: vec![],
        body: b"ok".to_vec(),
    };
    let event = |id: &str, key: Option<&str>, tenant: &str| NewDelivery {
        direction: Direction::ToThreeDolphins,
        event_key: key.map(str::to_string),
        tenant: tenant.into(),
        ..delivery(id, "A", None)
    };
    let first = store
        .accept_webhook(
            "acme",
            &[],
            answer.clone(),
            vec![event("e1", Some("m-1"), "acme"), event("e2", None, "acme")],
            WINDOW,
        )
        .await
        .unwrap();
    let WebhookAccepted::New(first) = first else {
        panic!("stored: {first:?}")
    };
    assert_eq!(first.iter().map(|a| a.duplicate).collect::<Vec<_>>(), [false, false]);
    // The same message again, beside a new one and one without a key, in a second webhook.
    let again = store
        .accept_webhook(
            "acme",
            &[],
            answer.clone(),
            vec![
                event("e3", Some("m-2"), "acme"),
                event("e4", Some("m-1"), "acme"),
                event("e5", None, "acme"),
                event("e6", Some("m-2"), "acme"),
            ],
            WINDOW,
        )
        .await
        .unwrap();
    let WebhookAccepted::New(again) = again else {
        panic!("stored: {again:?}")
    };
    let seen: Vec<(&str, bool)> = again.iter().map(|a| (a.delivery_id.as_str(), a.duplicate)).collect();
    assert_eq!(seen, [("e3", false), ("e1", true), ("e5", false), ("e3", true)]);
    for (id, stored) in [
        ("e1", true),
        ("e2", true),
        ("e3", true),
        ("e4", false),
        ("e5", true),
        ("e6", false),
    ] {
        assert_eq!(store.delivery(id).await.unwrap().is_some(), stored, "{id}");
    }
    // Keys are per tenant, and a key older than the window is taken again.
    let other = store
        .accept_webhook(
            "globex",
            &[],
            answer.clone(),
            vec![event("g1", Some("m-1"), "globex")],
            WINDOW,
        )
        .await
        .unwrap();
    assert!(
        matches!(other, WebhookAccepted::New(ref a) if !a[0].duplicate),
        "{other:?}"
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    let late = store
        .accept_webhook(
            "acme",
            &[],
            answer,
            vec![event("e7", Some("m-1"), "acme")],
            Duration::from_millis(10),
        )
        .await
        .unwrap();
    assert!(
        matches!(late, WebhookAccepted::New(ref a) if !a[0].duplicate),
        "{late:?}"
    );
}

/// The same event key in webhooks that two processes store at once: one delivery.
pub(crate) async fn one_event_key_sent_to_two_processes_at_once_is_stored_once(f: &impl Fixture) {
    let store = f.store();
    let replica = f.replica().await;
    let answer = StoredResponse {
        status: 200,
        headers: vec![],
        body: vec![],
    };
    for round in 0..20 {
        let event = |id: String| NewDelivery {
            direction: Direction::ToThreeDolphins,
            event_key: Some(format!("m-{round}")),
            ..delivery(&id, "A", None)
        };
        let (here, there) = tokio::join!(
            store.accept_webhook("acme", &[], answer.clone(), vec![event(format!("a{round}"))], WINDOW),
            replica.accept_webhook("acme", &[], answer.clone(), vec![event(format!("b{round}"))], WINDOW),
        );
        let outcomes = [here.unwrap(), there.unwrap()];
        let stored = outcomes
            .iter()
            .filter(|o| matches!(o, WebhookAccepted::New(a) if !a[0].duplicate))
            .count();
        assert_eq!(stored, 1, "round {round}: {outcomes:?}");
    }
    assert_eq!(store.stats().await.unwrap().pending, 20);
}

pub(crate) async fn a_webhook_retried_on_two_processes_at_once_is_stored_once(f: &impl Fixture) {
    let store = f.store();
    let replica = f.replica().await;
    let response = |body: &str| StoredResponse {
        status: 200,
        headers: vec![],
        body: body.as_bytes().to_vec(),
    };
    for round in 0..20 {
        let keys = [format!("wh-{round}")];
        let mut event = delivery(&format!("a{round}"), "A", None);
        event.direction = Direction::ToThreeDolphins;
        let mut other = event.clone();
        other.delivery_id = format!("b{round}");
        let (here, there) = tokio::join!(
            store.accept_webhook("acme", &keys, response("here"), vec![event], WINDOW),
            replica.accept_webhook("acme", &keys, response("there"), vec![other], WINDOW),
        );
        let outcomes = [here.unwrap(), there.unwrap()];
        let new = outcomes.iter().filter(|o| matches!(o, WebhookAccepted::New(_))).count();
        assert_eq!(new, 1, "round {round}: {outcomes:?}");
    }
    assert_eq!(store.stats().await.unwrap().pending, 20);
}

/// Two processes filling one tenant's key-value quota at once cannot both pass the check.
pub(crate) async fn a_tenants_quota_holds_across_processes(f: &impl Fixture) {
    let store = f.store();
    let replica = f.replica().await;
    let quota = 100;
    for round in 0..10 {
        let tenant = format!("t{round}");
        let (here, there) = tokio::join!(
            store.kv_set(&tenant, "k1", vec![0; 60], quota),
            replica.kv_set(&tenant, "k2", vec![0; 60], quota),
        );
        let stored = [here.unwrap(), there.unwrap()];
        assert_eq!(
            stored.iter().filter(|s| **s == KvWrite::Stored).count(),
            1,
            "round {round}: {stored:?}"
        );
    }
    // Rewrites that do not grow a key run beside growing writes of other keys: still exactly
    // one of two growing writes that cannot both fit is stored, and every rewrite is.
    let quota = 120;
    for round in 0..10 {
        let tenant = format!("r{round}");
        assert_eq!(
            store.kv_set(&tenant, "k1", vec![1; 58], quota).await.unwrap(),
            KvWrite::Stored
        );
        let (same, smaller, grow_here, grow_there) = tokio::join!(
            store.kv_set(&tenant, "k1", vec![2; 58], quota),
            replica.kv_set(&tenant, "k1", vec![3; 50], quota),
            store.kv_set(&tenant, "k2", vec![0; 50], quota),
            replica.kv_set(&tenant, "k3", vec![0; 50], quota),
        );
        assert_eq!(
            (same.unwrap(), smaller.unwrap()),
            (KvWrite::Stored, KvWrite::Stored),
            "round {round}"
        );
        let grown = [grow_here.unwrap(), grow_there.unwrap()];
        assert_eq!(
            grown.iter().filter(|s| **s == KvWrite::Stored).count(),
            1,
            "round {round}: {grown:?}"
        );
    }
}

fn replica_status(id: &str, last_seen: i64, hash: &str) -> crate::store::ReplicaStatus {
    crate::store::ReplicaStatus {
        replica_id: id.into(),
        started_at: last_seen - 1_000,
        last_seen,
        listen: "127.0.0.1:8080".into(),
        adapters: vec![crate::store::ServedAdapter {
            tenant: "acme".into(),
            content_hash: hash.into(),
            loaded_at: chrono::DateTime::from_timestamp_millis(last_seen - 500).unwrap(),
        }],
        stale: false,
    }
}

/// Each replica's heartbeat replaces its own row; every process sharing the store lists all of
/// them, with the versions each serves.
pub(crate) async fn heartbeats_list_each_replica_once_with_what_it_serves(f: &impl Fixture) {
    let store = f.store();
    let replica = f.replica().await;
    let now = now_ms();
    store
        .heartbeat(&replica_status("host-1-aaaaaa", now, "h1"))
        .await
        .unwrap();
    replica
        .heartbeat(&replica_status("host-2-bbbbbb", now, "h1"))
        .await
        .unwrap();
    store
        .heartbeat(&replica_status("host-1-aaaaaa", now + 5, "h2"))
        .await
        .unwrap();
    for listing in [store.replicas().await.unwrap(), replica.replicas().await.unwrap()] {
        assert_eq!(
            listing,
            [
                replica_status("host-1-aaaaaa", now + 5, "h2"),
                replica_status("host-2-bbbbbb", now, "h1")
            ]
        );
    }
}

/// A replica not seen for 30 s is listed as stale; one not seen for a day is deleted by the
/// next heartbeat.
pub(crate) async fn replicas_unseen_for_thirty_seconds_are_stale_and_after_a_day_forgotten(f: &impl Fixture) {
    let store = f.store();
    let now = now_ms();
    store
        .heartbeat(&replica_status("gone", now - 25 * 3_600_000, "h"))
        .await
        .unwrap();
    store
        .heartbeat(&replica_status("quiet", now - 31_000, "h"))
        .await
        .unwrap();
    store
        .heartbeat(&replica_status("live", now - 1_000, "h"))
        .await
        .unwrap();
    let listing: Vec<(String, bool)> = store
        .replicas()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.replica_id, r.stale))
        .collect();
    assert_eq!(listing, [("live".to_string(), false), ("quiet".to_string(), true)]);
}

pub(crate) async fn an_events_trace_context_is_stored_with_it_for_every_process(f: &impl Fixture) {
    let store = f.store();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = NewDelivery {
        trace_context: Some(traceparent.into()),
        ..delivery("traced", "t1", None)
    };
    store
        .enqueue(vec![traced, delivery("untraced", "t2", None)], WINDOW)
        .await
        .unwrap();
    let webhook_event = NewDelivery {
        direction: Direction::ToThreeDolphins,
        trace_context: Some(traceparent.replace("00f067aa0ba902b7", "00f067aa0ba902b8")),
        ..delivery("from-webhook", "t3", None)
    };
    let response = StoredResponse {
        status: 200,
        headers: Vec::new(),
        body: Vec::new(),
    };
    store
        .accept_webhook("acme", &["hook-1".to_string()], response, vec![webhook_event], WINDOW)
        .await
        .unwrap();
    // Read by another process, as a retry on another replica reads it.
    let replica = f.replica().await;
    let mut due: Vec<(String, Option<String>)> = replica
        .due(replica.now_ms() + 1, 10, &[])
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.delivery_id, d.trace_context))
        .collect();
    due.sort();
    assert_eq!(
        due,
        [
            (
                "from-webhook".to_string(),
                Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b8-01".to_string())
            ),
            ("traced".to_string(), Some(traceparent.to_string())),
            ("untraced".to_string(), None),
        ]
    );
    assert_eq!(get(store, "traced").await.trace_context.as_deref(), Some(traceparent));
}
