//! Several bridge replicas on one PostgreSQL database (`[store] url`), as behind a load
//! balancer: events sent to any of them are delivered once per delivery id, in order per ticket,
//! with a vendor slower than a claim's lease, and when a replica is SIGKILLed under load.
//!
//! Each test works in a schema of its own on the test server (`DOLPHIN_BRIDGE_TEST_POSTGRES_URL`,
//! set by `cargo xtask test`). The figures are printed (`--nocapture` shows them); assertions
//! are about counts and orderings, never about how long something took.

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dolphin_bridge_tests::crash_support::{
    Acknowledged, BridgeFiles, IncomingSender, LoadCounters, Rng, Target, seed_from_env, unique_owner, wait_settled,
};
use dolphin_bridge_tests::events::fresh_ticket;
use dolphin_bridge_tests::nemesis::database::Database;
use dolphin_bridge_tests::nemesis::proxy::{LinkMode, Proxy};
use dolphin_bridge_tests::replica_support::{
    Receipts, SentEvent, TempSchema, assert_store_is_postgres, event_text, settled_within,
};
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, HttpClient, MockThreeDolphins, MockVendor};
use serde_json::Value;

use crate::common::{API_TOKEN, assert_accepted, echo_tenant};

/// Starts `n` replicas on `files` and checks that each runs on PostgreSQL.
async fn start_replicas(files: &BridgeFiles, n: usize, what: &str) -> Vec<Bridge> {
    let mut replicas = Vec::with_capacity(n);
    for r in 0..n {
        let replica = files.start().await;
        let store = assert_store_is_postgres(&replica).await;
        println!("{what}: replica {r} at {}, /readyz store {store}", replica.url());
        replicas.push(replica);
    }
    replicas
}

// ---------------------------------------------------------------------------------------------
// 1. A vendor slower than a claim's lease

/// The vendor answers after this long: longer than a claim's lease ([`SLOW_LEASE_MS`]), so only
/// a lease the running attempt keeps renewing holds the other replica back.
const SLOW_VENDOR: Duration = Duration::from_millis(2_500);
/// `[delivery] lease_ms` of the slow-vendor test.
const SLOW_LEASE_MS: u64 = 1_000;
const SLOW_TICKETS: usize = 3;
const SLOW_EVENTS_PER_TICKET: usize = 2;
/// Far more than the deliveries need (each ticket's events one after another, tickets at once).
const SLOW_SETTLE_WITHIN: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_deliver_a_slow_vendors_event_once() {
    deliver_a_slow_vendors_events_once("slow vendor", &[0, 0]).await;
}

/// A replica whose clock was 20 s ahead when it started (before NTP synced it) sees the other's
/// leases 20 s early; on its own clock it would claim attempts still running and run each again.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_whose_clock_is_ahead_does_not_take_over_running_attempts() {
    deliver_a_slow_vendors_events_once("clock ahead", &[0, 20_000]).await;
}

/// Sends events of several tickets to replicas started with these clock offsets (ms), to a
/// vendor slower than a lease, and checks each arrives once, in order.
async fn deliver_a_slow_vendors_events_once(what: &str, clock_offsets_ms: &[i64]) {
    let schema = TempSchema::create().await;
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = MockVendor::start().await;
    vendor.set_delay(SLOW_VENDOR);
    let owner = unique_owner("slow");
    let config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .store_url(schema.url())
        .lease_ms(SLOW_LEASE_MS)
        .tenant(echo_tenant("slow", &owner, &vendor));
    let files = BridgeFiles::write(&config, &[]);
    let mut replicas = Vec::new();
    for (r, offset) in clock_offsets_ms.iter().enumerate() {
        let env = [("DOLPHIN_BRIDGE_CLOCK_OFFSET_MS".to_string(), offset.to_string())];
        let replica = files.start_with_env(&env).await;
        let store = assert_store_is_postgres(&replica).await;
        println!(
            "{what}: replica {r} at {}, clock offset {offset} ms, /readyz store {store}",
            replica.url()
        );
        replicas.push(replica);
    }

    // Each ticket's events go to both replicas in turn.
    let tickets: Vec<String> = (0..SLOW_TICKETS).map(|_| fresh_ticket()).collect();
    let mut sent = Vec::new();
    let started = Instant::now();
    for n in 0..SLOW_EVENTS_PER_TICKET {
        for (t, ticket) in tickets.iter().enumerate() {
            let replica = &replicas[(t + n) % replicas.len()];
            let event = Event::example().owner(&owner).ticket(ticket).message(&event_text(t, n));
            let delivery_id = assert_accepted(&replica.send_event(event).await);
            sent.push(SentEvent {
                ticket: ticket.clone(),
                n,
                delivery_id,
            });
        }
    }
    let settled = settled_within(&replicas[0], SLOW_SETTLE_WITHIN).await;
    let took = started.elapsed();
    let receipts = Receipts::examine(&vendor.requests(), &sent);
    println!(
        "{what}: {} events on {SLOW_TICKETS} tickets, vendor answering after {} ms; {} vendor request(s), \
         {} delivery id(s) arrived, {} of them more than once ({} repeat(s)); outbox {}; {:.1} s",
        sent.len(),
        SLOW_VENDOR.as_millis(),
        receipts.requests,
        receipts.delivered,
        receipts.duplicates.len(),
        receipts.repeats(),
        settled
            .as_ref()
            .map_or_else(|| "not settled".to_string(), Value::to_string),
        took.as_secs_f64()
    );
    for line in receipts.describe_duplicates() {
        println!("{what}: duplicate {line}");
    }

    assert!(
        receipts.duplicates.is_empty(),
        "{} delivery id(s) reached the vendor more than once: an attempt slower than its lease was claimed \
         and run again by the other replica while it was still running:\n{}",
        receipts.duplicates.len(),
        receipts.describe_duplicates().join("\n")
    );
    assert!(
        settled.is_some(),
        "the outbox did not settle within {SLOW_SETTLE_WITHIN:?}: {}",
        replicas[0].outbox_stats().await
    );
    assert!(receipts.lost.is_empty(), "never delivered: {:?}", receipts.lost);
    assert!(receipts.mismatched.is_empty(), "{:#?}", receipts.mismatched);
    assert!(receipts.out_of_order.is_empty(), "{:#?}", receipts.out_of_order);
    assert_eq!(
        schema.outbox_rows().await,
        sent.len() as i64,
        "one outbox row per event in the test's schema"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Three replicas under load, one SIGKILLed and restarted

const REPLICAS: usize = 3;
const LOAD_TICKETS: usize = 24;
const LOAD_EVENTS_PER_TICKET: usize = 25;
/// The replica killed and restarted.
const KILLED: usize = 1;
/// Killed once this share (percent) of the events is acknowledged.
const KILL_AT_PERCENT: usize = 40;
/// `[delivery] workers` of every replica: at most this many deliveries run on one at once.
const WORKERS: usize = 4;
/// `[delivery] max_in_flight_per_tenant` (the test has one tenant).
const MAX_IN_FLIGHT_PER_TENANT: usize = 4;
/// The vendor's answer takes this long, so that deliveries are in flight at the kill.
const LOAD_VENDOR_DELAY: Duration = Duration::from_millis(20);
/// At most this long (ms) between two events of one ticket's sender.
const LOAD_PACE_MS: u64 = 40;
/// `[delivery] lease_ms` of the load test: how soon the killed replica's deliveries are taken up.
const LOAD_LEASE_MS: u64 = 2_000;
/// No event may take longer than this to be acknowledged, the restart included.
const LOAD_SEND_DEADLINE: Duration = Duration::from_secs(45);
/// The seed of the senders' pacing; `REPLICAS_SEED` overrides it.
const LOAD_SEED: u64 = 0x5eed_0000_3e91_1ca5;

/// Sends ticket `t`'s events one after another, each to the next replica in turn (starting at
/// replica `t`), resending an unanswered one with the same `Idempotency-Key`.
async fn send_ticket(
    t: usize,
    ticket: String,
    owner: String,
    senders: Vec<IncomingSender>,
    mut rng: Rng,
) -> Vec<SentEvent> {
    let mut sent = Vec::with_capacity(LOAD_EVENTS_PER_TICKET);
    for n in 0..LOAD_EVENTS_PER_TICKET {
        let body = Event::example()
            .owner(&owner)
            .ticket(&ticket)
            .message(&event_text(t, n))
            .bytes();
        let sender = &senders[(t + n) % senders.len()];
        let Acknowledged { delivery_id, .. } = sender
            .send_until_acknowledged(&format!("{ticket}-{n}"), &body, &format!("event t{t} m{n}"))
            .await;
        sent.push(SentEvent {
            ticket: ticket.clone(),
            n,
            delivery_id,
        });
        tokio::time::sleep(Duration::from_millis(rng.below(LOAD_PACE_MS + 1))).await;
    }
    sent
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_lose_nothing_when_one_is_killed_and_restarted() {
    let seed = seed_from_env("REPLICAS_SEED", LOAD_SEED);
    let total = LOAD_TICKETS * LOAD_EVENTS_PER_TICKET;
    let schema = TempSchema::create().await;
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = MockVendor::start().await;
    vendor.set_delay(LOAD_VENDOR_DELAY);
    let owner = unique_owner("replicas");
    let token = format!("replicas-token-{}", fresh_ticket());
    let config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .incoming_token(Some(&token))
        .retry_schedule_ms(&[100, 200, 400, 800, 1600])
        .store_url(schema.url())
        .lease_ms(LOAD_LEASE_MS)
        .tenant(echo_tenant("replicas", &owner, &vendor));
    let files = BridgeFiles::write(
        &config,
        &[
            &format!("workers = {WORKERS}"),
            &format!("max_in_flight_per_tenant = {MAX_IN_FLIGHT_PER_TENANT}"),
        ],
    );
    let mut replicas = start_replicas(&files, REPLICAS, "replicas").await;

    let counters = Arc::new(LoadCounters::default());
    let targets: Vec<Arc<RwLock<Target>>> = replicas.iter().map(|r| Target::shared(0, r)).collect();
    let senders: Vec<IncomingSender> = targets
        .iter()
        .map(|target| IncomingSender {
            client: HttpClient::new(),
            target: target.clone(),
            token: token.clone(),
            counters: counters.clone(),
            deadline: LOAD_SEND_DEADLINE,
        })
        .collect();
    let tickets: Vec<String> = (0..LOAD_TICKETS).map(|_| fresh_ticket()).collect();
    let started = Instant::now();
    let tasks: Vec<_> = tickets
        .iter()
        .enumerate()
        .map(|(t, ticket)| {
            tokio::spawn(send_ticket(
                t,
                ticket.clone(),
                owner.clone(),
                senders.clone(),
                Rng::fork(seed, t as u64),
            ))
        })
        .collect();

    // SIGKILL one replica mid-run, then start it again on the same config (a new port).
    let kill_at = total * KILL_AT_PERCENT / 100;
    while counters.acknowledged.load(Ordering::SeqCst) < kill_at {
        assert!(
            started.elapsed() < LOAD_SEND_DEADLINE,
            "the load stalled at {} acknowledged events before the kill",
            counters.acknowledged.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let acks_at_kill = counters.acknowledged.load(Ordering::SeqCst);
    let status = replicas[KILLED].kill_hard();
    let down_at = Instant::now();
    let requests_at_kill = vendor.requests().len();
    replicas[KILLED] = files.start().await;
    let store = assert_store_is_postgres(&replicas[KILLED]).await;
    Target::point_at(&targets[KILLED], 1, &replicas[KILLED]);
    // Whatever the killed process had sent has arrived by now: every arrival after this was
    // sent by a replica that is running.
    let requests_when_back = vendor.requests().len();
    println!(
        "replicas: killed replica {KILLED} ({status}) at {:.2} s after {acks_at_kill} of {total} acknowledged and \
         {requests_at_kill} vendor requests; back after {} ms at {} ({store})",
        (down_at - started).as_secs_f64(),
        down_at.elapsed().as_millis(),
        replicas[KILLED].url()
    );
    assert!(acks_at_kill < total, "the kill came after the load had finished");

    let mut sent: Vec<SentEvent> = Vec::with_capacity(total);
    for task in tasks {
        match task.await {
            Ok(ticket_sent) => sent.extend(ticket_sent),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    let load_took = started.elapsed();
    let stats = wait_settled(&replicas[0], Duration::from_secs(60)).await;
    let settled_at = started.elapsed();
    for replica in &replicas {
        assert_store_is_postgres(replica).await;
    }
    let rows = schema.outbox_rows().await;
    let receipts = Receipts::examine(&vendor.requests(), &sent);

    // The in-flight bound of the killed replica: attempts of its one tenant run under the
    // tenant's cap, and every delivery (recording its outcome included) holds one of its workers.
    let in_flight_bound = WORKERS;
    println!(
        "replicas: sent {total}, acknowledged {}, delivered {} distinct, duplicates {} ({} repeat(s)), lost {}; \
         load {:.1} s, settled at {:.1} s; outbox {stats}, {rows} row(s) in schema {}",
        sent.len(),
        receipts.delivered,
        receipts.duplicates.len(),
        receipts.repeats(),
        receipts.lost.len(),
        load_took.as_secs_f64(),
        settled_at.as_secs_f64(),
        schema.name()
    );
    println!(
        "replicas: senders: {}; vendor: {} request(s), {} cut off",
        counters.summary(),
        receipts.requests,
        receipts.cut_off
    );
    println!(
        "replicas: duplicates are attempts cut by the kill whose outcome was never recorded, delivered again by \
         another replica once their lease ({LOAD_LEASE_MS} ms) ran out; at most the killed replica's in-flight bound, {in_flight_bound} \
         (workers {WORKERS}, max_in_flight_per_tenant {MAX_IN_FLIGHT_PER_TENANT})"
    );
    for line in receipts.describe_duplicates() {
        println!("replicas: duplicate {line}");
    }

    assert_eq!(sent.len(), total, "every event acknowledged");
    assert!(
        receipts.lost.is_empty(),
        "{} acknowledged event(s) never reached the vendor: {:?}",
        receipts.lost.len(),
        receipts.lost
    );
    assert!(receipts.mismatched.is_empty(), "{:#?}", receipts.mismatched);
    assert!(
        receipts.out_of_order.is_empty(),
        "first deliveries out of ticket order: {:#?}",
        receipts.out_of_order
    );
    assert_eq!(rows, total as i64, "one outbox row per acknowledged event");
    assert!(
        receipts.duplicates.len() <= in_flight_bound,
        "{} delivery id(s) arrived more than once, more than the {in_flight_bound} the killed replica can have had \
         in flight:\n{}",
        receipts.duplicates.len(),
        receipts.describe_duplicates().join("\n")
    );
    let unexplained: Vec<String> = receipts
        .duplicates
        .iter()
        .filter(|d| d.arrivals.len() != 2 || d.arrivals[0] >= requests_when_back || d.arrivals[1] < requests_at_kill)
        .map(|d| {
            format!(
                "{} (m{} of {}): vendor requests {:?}",
                d.delivery_id, d.n, d.ticket, d.arrivals
            )
        })
        .collect();
    assert!(
        unexplained.is_empty(),
        "duplicates not explained by the kill (each must have arrived once before the killed replica was back, \
         and once more after the kill): {unexplained:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. A replica cut off from the database in the middle of an attempt

/// `[delivery] lease_ms` of the cut-off test.
const CUT_LEASE_MS: u64 = 1_000;
/// The cut-off replica's look-up (made inside its attempt, before the vendor is asked) answers
/// after this long: far past its lease, and past the other replica's deliveries of the ticket.
const CUT_LOOKUP_DELAY: Duration = Duration::from_secs(8);

/// A replica cut off from PostgreSQL (but not from 3Dolphins or the vendor) while an attempt
/// runs cannot renew its lease; the other replica takes the ticket over when the lease ends and
/// delivers S1 then S2. The cut-off replica must stop its attempt when its lease ends: going on,
/// it would post S1 after them, and the vendor would see S1, S2, S1.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_cut_off_from_the_database_stops_its_attempt_when_its_lease_ends() {
    let database = Database::from_env();
    let schema = TempSchema::create_on(&database.url).await;
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    three_dolphins.slow_down_next_lookups(1, CUT_LOOKUP_DELAY);
    let vendor = MockVendor::start().await;
    let owner = unique_owner("cut");
    let link = Proxy::start(database.addr).await;
    let config = |store_url: &str| {
        BridgeConfig::new(&three_dolphins.base_url())
            .api_token(API_TOKEN)
            .store_url(store_url)
            .lease_ms(CUT_LEASE_MS)
            .tenant(echo_tenant("cut", &owner, &vendor).config("with_contact", "true"))
    };
    let cut_files = BridgeFiles::write(&config(&database.through(schema.url(), link.addr())), &[]);
    let cut = cut_files.start().await;
    let ticket = fresh_ticket();
    let mut sent = Vec::new();
    for n in 0..2 {
        let event = Event::example()
            .owner(&owner)
            .ticket(&ticket)
            .message(&event_text(0, n));
        sent.push(SentEvent {
            ticket: ticket.clone(),
            n,
            delivery_id: assert_accepted(&cut.send_event(event).await),
        });
    }
    // The attempt of S1 is under way once its look-up has reached 3Dolphins: cut the link then.
    let waited = Instant::now();
    while three_dolphins.api_requests().is_empty() {
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "the first attempt never looked the contact up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    link.set_mode(LinkMode::Blackhole);
    let other_files = BridgeFiles::write(&config(schema.url()), &[]);
    let other = other_files.start().await;
    let settled = settled_within(&other, SLOW_SETTLE_WITHIN).await;
    assert!(
        settled.is_some(),
        "the other replica did not deliver the ticket: {}",
        other.outbox_stats().await
    );
    // Past the moment the cut-off replica's look-up answers, with time for it to post.
    tokio::time::sleep(CUT_LOOKUP_DELAY.saturating_sub(waited.elapsed()) + Duration::from_secs(2)).await;
    let receipts = Receipts::examine(&vendor.requests(), &sent);
    println!(
        "cut off: {} vendor request(s), {} duplicate(s), {} out of order",
        receipts.requests,
        receipts.duplicates.len(),
        receipts.out_of_order.len()
    );
    assert!(receipts.lost.is_empty(), "never delivered: {:?}", receipts.lost);
    assert!(
        receipts.out_of_order.is_empty() && receipts.duplicates.is_empty(),
        "the cut-off replica went on after its lease ended: out of order {:#?}, duplicates:\n{}",
        receipts.out_of_order,
        receipts.describe_duplicates().join("\n")
    );
    link.set_mode(LinkMode::Pass);
    drop(cut);
}
