//! The delivery guarantee with the real binary, under the failures it is made for: SIGKILL at
//! random moments under load, a vendor down for a while, a vendor refusing an event for good
//! (dead letter, then replay from the command line), and SIGTERM with deliveries in flight.
//!
//! The figures each test measures are printed (`--nocapture` shows them); assertions are about
//! counts and orderings, never about how long something took.

use std::collections::HashMap;
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use dolphin_bridge_tests::bridge::run_on_config_file;
use dolphin_bridge_tests::crash_support::{
    Acknowledged, BridgeFiles, IncomingSender, LoadCounters, Rng, Target, assert_store_durable, seed_from_env,
    str_field, unique_owner, wait_settled,
};
use dolphin_bridge_tests::events::fresh_ticket;
use dolphin_bridge_tests::mock_http::{MockServer, Recorded, Reply};
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, HttpClient, MockThreeDolphins, MockVendor, Tenant, adapters};
use serde_json::{Value, json};

use crate::common::{API_TOKEN, assert_accepted, echo_tenant};

// ---------------------------------------------------------------------------------------------
// Shared pieces

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits until every delivery in `ids` is `delivered` (each panics early if it goes dead).
async fn wait_all_delivered(bridge: &Bridge, ids: &[String]) {
    for id in ids {
        bridge.wait_for_delivery(id, "delivered").await;
    }
}

/// One request a [`ScriptedVendor`] received.
#[derive(Debug, Clone)]
struct Arrival {
    /// Position among the requests of every vendor sharing the same counter.
    seq: u64,
    at: Instant,
    /// What the vendor answered.
    status: u16,
    body: Value,
}

impl Arrival {
    fn ticket(&self) -> &str {
        str_field(&self.body, "ticketNumber")
    }
    fn message(&self) -> &str {
        str_field(&self.body, "message")
    }
    fn delivery_id(&self) -> &str {
        str_field(&self.body, "deliveryId")
    }
    fn attempt(&self) -> u64 {
        self.body["attempt"].as_u64().unwrap_or(0)
    }
}

/// A vendor for the echo adapter that answers its n-th request (from 0) with `status(n)` and
/// records when each arrived, numbered on a counter shared with other vendors (to order
/// arrivals across vendors).
struct ScriptedVendor {
    server: MockServer,
    path: String,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
}

impl ScriptedVendor {
    async fn start(counter: Arc<AtomicU64>, status: impl Fn(usize) -> u16 + Send + Sync + 'static) -> ScriptedVendor {
        let path = format!("/vendor/{}", fresh_ticket());
        let arrivals = Arc::new(Mutex::new(Vec::<Arrival>::new()));
        let (recorded, own_path) = (arrivals.clone(), path.clone());
        let server = MockServer::start(Arc::new(move |request: &Recorded| {
            if request.path != own_path {
                return Reply::json(404, &json!({"error": "not this vendor"}));
            }
            let mut arrivals = recorded.lock().unwrap();
            let status = status(arrivals.len());
            arrivals.push(Arrival {
                seq: counter.fetch_add(1, Ordering::SeqCst),
                at: Instant::now(),
                status,
                body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
            });
            Reply::json(status, &json!({"ok": status < 300}))
        }))
        .await;
        ScriptedVendor { server, path, arrivals }
    }

    fn url(&self) -> String {
        format!("{}{}", self.server.base_url(), self.path)
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().unwrap().clone()
    }

    /// An echo tenant posting to this vendor.
    fn tenant(&self, name: &str, owner: &str) -> Tenant {
        Tenant::new(name, owner, adapters::echo())
            .allow(&self.server.base_url())
            .config("url", &self.url())
    }
}

/// Sends one event for `owner` on `ticket`; returns its delivery id.
async fn send(bridge: &Bridge, owner: &str, ticket: &str, message: &str) -> String {
    let event = Event::example().owner(owner).ticket(ticket).message(message);
    assert_accepted(&bridge.send_event(event).await)
}

// ---------------------------------------------------------------------------------------------
// 1. SIGKILL under load

const CRASH_TICKETS: usize = 20;
const CRASH_EVENTS_PER_TICKET: usize = 110;
const CRASH_KILLS: usize = 5;
/// The seed of the kill moments and the senders' pacing; `DURABILITY_SEED` overrides it.
const CRASH_SEED: u64 = 0xd01f_1b1d_6e00_0001;
/// At most this long (ms) between two events of one ticket's sender: a steady load.
const CRASH_PACE_MS: u64 = 6;
/// No event may take longer than this to be acknowledged, restarts included.
const CRASH_SEND_DEADLINE: Duration = Duration::from_secs(90);
/// Each restarted bridge acknowledges at least this many events before it is killed again.
const CRASH_MIN_ACKS_BETWEEN_KILLS: usize = 40;

/// One acknowledged event.
struct Ack {
    event: usize,
    delivery_id: String,
    ack_seq: usize,
}

/// Sends ticket `t`'s events one after another (each once acknowledged), pacing them, and
/// resending an unanswered one with the same `Idempotency-Key` to wherever the bridge now is.
async fn send_ticket(t: usize, ticket: String, owner: String, sender: IncomingSender, mut rng: Rng) -> Vec<Ack> {
    let mut acks = Vec::with_capacity(CRASH_EVENTS_PER_TICKET);
    for n in 0..CRASH_EVENTS_PER_TICKET {
        let body = Event::example()
            .owner(&owner)
            .ticket(&ticket)
            .message(&format!("t{t} m{n}"))
            .bytes();
        let Acknowledged { delivery_id, ack_seq } = sender
            .send_until_acknowledged(&format!("{ticket}-{n}"), &body, &format!("event t{t} m{n}"))
            .await;
        acks.push(Ack {
            event: t * CRASH_EVENTS_PER_TICKET + n,
            delivery_id,
            ack_seq,
        });
        tokio::time::sleep(Duration::from_millis(rng.below(CRASH_PACE_MS + 1))).await;
    }
    acks
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_under_load_loses_no_acknowledged_event_keeps_ticket_order_and_repeats_only_with_the_same_delivery_id()
{
    let seed = seed_from_env("DURABILITY_SEED", CRASH_SEED);
    let total = CRASH_TICKETS * CRASH_EVENTS_PER_TICKET;
    let mut rng = Rng(seed);

    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = MockVendor::start().await;
    let owner = unique_owner("crash");
    let token = format!("crash-token-{}", fresh_ticket());
    let config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .incoming_token(Some(&token))
        .retry_schedule_ms(&[100, 200, 400, 800, 1600])
        .tenant(echo_tenant("crash", &owner, &vendor));
    let files = BridgeFiles::write(&config, &[]);
    let mut bridge = files.start().await;
    // SIGKILL keeps the page cache, so this test alone would pass with `synchronous = OFF`:
    // the writer's own connection must say FULL.
    let store = assert_store_durable(&bridge).await;
    println!("crash test: /readyz store {store}");
    let target: Arc<RwLock<Target>> = Target::shared(0, &bridge);
    let counters = Arc::new(LoadCounters::default());
    let sender = IncomingSender {
        client: HttpClient::new(),
        target: target.clone(),
        token: token.clone(),
        counters: counters.clone(),
        deadline: CRASH_SEND_DEADLINE,
    };

    // Kill moments: one at a random point of each of CRASH_KILLS equal slices of 8%..92% of the
    // acknowledgements, then a random 0..40 ms more.
    let (low, high) = (total * 8 / 100, total * 92 / 100);
    let slice = (high - low) / CRASH_KILLS;
    let plan: Vec<(usize, u64)> = (0..CRASH_KILLS)
        .map(|k| (low + k * slice + rng.below(slice as u64) as usize, rng.below(40)))
        .collect();
    println!("crash test: seed {seed:#x} (DURABILITY_SEED overrides), kill after (acks, +ms): {plan:?}");

    let tickets: Vec<String> = (0..CRASH_TICKETS).map(|_| fresh_ticket()).collect();
    let started = Instant::now();
    let senders: Vec<_> = tickets
        .iter()
        .enumerate()
        .map(|(t, ticket)| {
            tokio::spawn(send_ticket(
                t,
                ticket.clone(),
                owner.clone(),
                sender.clone(),
                Rng::fork(seed, t as u64),
            ))
        })
        .collect();

    let mut last_kill_acks = 0;
    for (k, &(planned, extra_ms)) in plan.iter().enumerate() {
        let threshold = planned.max(last_kill_acks + CRASH_MIN_ACKS_BETWEEN_KILLS);
        let wait_started = Instant::now();
        while counters.acknowledged.load(Ordering::SeqCst) < threshold {
            assert!(
                wait_started.elapsed() < CRASH_SEND_DEADLINE,
                "the load stalled at {} acknowledged events before kill {}",
                counters.acknowledged.load(Ordering::SeqCst),
                k + 1
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(extra_ms)).await;
        let acks_at_kill = counters.acknowledged.load(Ordering::SeqCst);
        let requests_at_kill = vendor.requests().len();
        let status = bridge.kill_hard();
        let down_at = Instant::now();
        bridge = files.start().await;
        Target::point_at(&target, k as u64 + 1, &bridge);
        println!(
            "crash test: kill {} ({status}) at {:.2} s, after {acks_at_kill} acknowledged (threshold {threshold} + {extra_ms} ms) \
             and {requests_at_kill} vendor requests; back after {} ms",
            k + 1,
            (down_at - started).as_secs_f64(),
            down_at.elapsed().as_millis()
        );
        assert!(
            acks_at_kill < total,
            "kill {} came after the load had finished: raise the load or lower the kill points",
            k + 1
        );
        last_kill_acks = acks_at_kill;
    }

    let mut acks: Vec<Ack> = Vec::with_capacity(total);
    for sender in senders {
        match sender.await {
            Ok(ticket_acks) => acks.extend(ticket_acks),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    let load_took = started.elapsed();
    let stats = wait_settled(&bridge, Duration::from_secs(90)).await;
    assert_store_durable(&bridge).await;
    println!(
        "crash test: load took {:.1} s, settled at {:.1} s; outbox {stats}",
        load_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    // What reached the vendor: event (t, n) -> the delivery id and attempt number of each
    // arrival, in order.
    let mut event_of: HashMap<(String, String), usize> = HashMap::new();
    for (t, ticket) in tickets.iter().enumerate() {
        for n in 0..CRASH_EVENTS_PER_TICKET {
            event_of.insert((ticket.clone(), format!("t{t} m{n}")), t * CRASH_EVENTS_PER_TICKET + n);
        }
    }
    let mut arrivals: Vec<Vec<(String, u64)>> = vec![Vec::new(); total];
    let mut first_arrival_order: Vec<Vec<usize>> = vec![Vec::new(); CRASH_TICKETS];
    let (mut cut_off, mut foreign) = (0, 0);
    for request in vendor.requests() {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            // A request cut short by a kill while it was being written.
            cut_off += 1;
            continue;
        };
        let key = (
            str_field(&body, "ticketNumber").to_string(),
            str_field(&body, "message").to_string(),
        );
        let Some(&event) = event_of.get(&key) else {
            foreign += 1;
            continue;
        };
        if arrivals[event].is_empty() {
            first_arrival_order[event / CRASH_EVENTS_PER_TICKET].push(event % CRASH_EVENTS_PER_TICKET);
        }
        arrivals[event].push((
            str_field(&body, "deliveryId").to_string(),
            body["attempt"].as_u64().unwrap_or(0),
        ));
    }

    let acknowledged = acks.len();
    let lost: Vec<String> = acks
        .iter()
        .filter(|ack| arrivals[ack.event].is_empty())
        .map(|ack| {
            format!(
                "t{} m{} ({})",
                ack.event / CRASH_EVENTS_PER_TICKET,
                ack.event % CRASH_EVENTS_PER_TICKET,
                ack.delivery_id
            )
        })
        .collect();
    let delivered = arrivals.iter().filter(|a| !a.is_empty()).count();
    let duplicates: usize = arrivals.iter().map(|a| a.len().saturating_sub(1)).sum();
    let repeated_events = arrivals.iter().filter(|a| a.len() > 1).count();
    // The attempt number is counted when a delivery is claimed, so a re-run of one that had
    // already started (killed before its outcome was recorded) carries attempt >= 2: attempt 1
    // reaches the vendor at most once per delivery id.
    let repeats_counted: usize = arrivals
        .iter()
        .map(|a| a.iter().skip(1).filter(|(_, attempt)| *attempt >= 2).count())
        .sum();
    let attempt_one_twice: Vec<String> = acks
        .iter()
        .filter(|ack| arrivals[ack.event].iter().filter(|(_, attempt)| *attempt == 1).count() > 1)
        .map(|ack| {
            format!(
                "t{} m{} ({}): attempts {:?}",
                ack.event / CRASH_EVENTS_PER_TICKET,
                ack.event % CRASH_EVENTS_PER_TICKET,
                ack.delivery_id,
                arrivals[ack.event]
                    .iter()
                    .map(|(_, attempt)| *attempt)
                    .collect::<Vec<_>>()
            )
        })
        .collect();
    println!(
        "crash test: sent {total}, acknowledged {acknowledged}, delivered {delivered} distinct, duplicates {duplicates}, \
         lost {}, kills {CRASH_KILLS}",
        lost.len()
    );
    println!(
        "crash test: {repeated_events} event(s) arrived more than once; of the {duplicates} repeat(s), {repeats_counted} \
         carried attempt >= 2 and {} event(s) reached the vendor twice with attempt 1",
        attempt_one_twice.len()
    );
    println!(
        "crash test: senders: {}; vendor: {cut_off} cut-off request(s), {foreign} unknown",
        counters.summary()
    );

    // Every acknowledged event reached the vendor.
    assert!(
        lost.is_empty(),
        "{} acknowledged event(s) never reached the vendor: {lost:?}",
        lost.len()
    );

    // Every arrival of an event, the first and any repeat, carries the delivery id it was
    // acknowledged with.
    let strays: Vec<String> = acks
        .iter()
        .filter(|ack| arrivals[ack.event].iter().any(|(id, _)| *id != ack.delivery_id))
        .map(|ack| {
            format!(
                "t{} m{}: acknowledged as {}, arrived as {:?}",
                ack.event / CRASH_EVENTS_PER_TICKET,
                ack.event % CRASH_EVENTS_PER_TICKET,
                ack.delivery_id,
                arrivals[ack.event].iter().map(|(id, _)| id).collect::<Vec<_>>()
            )
        })
        .collect();
    assert!(
        strays.is_empty(),
        "{} event(s) arrived with another delivery id than they were acknowledged with: {strays:#?}",
        strays.len()
    );

    // A re-run after a kill is a new attempt: no delivery id reached the vendor twice as attempt 1.
    assert!(
        attempt_one_twice.is_empty(),
        "{} event(s) reached the vendor more than once with attempt 1 (a re-run after a kill must carry attempt >= 2): \
         {attempt_one_twice:#?}",
        attempt_one_twice.len()
    );

    // Per ticket, first arrivals are in acknowledgement order.
    for (t, first) in first_arrival_order.iter().enumerate() {
        let mut ticket_acks: Vec<&Ack> = acks.iter().filter(|a| a.event / CRASH_EVENTS_PER_TICKET == t).collect();
        ticket_acks.sort_by_key(|a| a.ack_seq);
        let accepted: Vec<usize> = ticket_acks.iter().map(|a| a.event % CRASH_EVENTS_PER_TICKET).collect();
        assert_eq!(
            first, &accepted,
            "ticket t{t}: first arrivals (left) out of acknowledgement order (right)"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. A vendor down for a while

const RETRY_SCHEDULE_MS: [u64; 6] = [100, 200, 400, 800, 1600, 3200];
/// Allowance for dispatch, instantiation and a busy machine on top of a retry's maximum wait.
const RETRY_SLACK_MS: u64 = 2_000;
/// Vendor A answers 503 to its first requests: down for a while, three tickets retrying.
const VENDOR_A_DOWN_FOR: usize = 12;
const OUTAGE_TICKETS: usize = 3;
const OUTAGE_EVENTS_PER_TICKET: usize = 3;

#[tokio::test(flavor = "multi_thread")]
async fn a_vendor_down_for_a_while_gets_every_event_once_in_ticket_order_retried_with_one_delivery_id_within_the_schedule_while_the_other_tenant_is_not_held_back()
 {
    let counter = Arc::new(AtomicU64::new(0));
    let vendor_a = ScriptedVendor::start(counter.clone(), |n| if n < VENDOR_A_DOWN_FOR { 503 } else { 200 }).await;
    let vendor_b = ScriptedVendor::start(counter.clone(), |_| 200).await;
    let (owner_a, owner_b) = (unique_owner("alpha"), unique_owner("beta"));
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .retry_schedule_ms(&RETRY_SCHEDULE_MS)
        .tenant(vendor_a.tenant("alpha", &owner_a))
        .tenant(vendor_b.tenant("beta", &owner_b));
    let bridge = Bridge::start(config).await;

    // Tenant A's events first; B's once A's vendor has refused one (A is down, and retrying).
    let tickets_a: Vec<String> = (0..OUTAGE_TICKETS).map(|_| fresh_ticket()).collect();
    let tickets_b: Vec<String> = (0..OUTAGE_TICKETS).map(|_| fresh_ticket()).collect();
    let mut sent: Vec<(&str, String, String, String)> = Vec::new(); // (tenant, ticket, message, id)
    for n in 0..OUTAGE_EVENTS_PER_TICKET {
        for ticket in &tickets_a {
            let message = format!("alpha {n}");
            let id = send(&bridge, &owner_a, ticket, &message).await;
            sent.push(("alpha", ticket.clone(), message, id));
        }
    }
    dolphin_bridge_tests::wait_until("vendor A refusing a first attempt", dolphin_bridge_tests::WAIT, || {
        vendor_a.arrivals().iter().any(|a| a.status == 503)
    })
    .await;
    for n in 0..OUTAGE_EVENTS_PER_TICKET {
        for ticket in &tickets_b {
            let message = format!("beta {n}");
            let id = send(&bridge, &owner_b, ticket, &message).await;
            sent.push(("beta", ticket.clone(), message, id));
        }
    }
    let ids: Vec<String> = sent.iter().map(|s| s.3.clone()).collect();
    wait_all_delivered(&bridge, &ids).await;
    let (arrivals_a, arrivals_b) = (vendor_a.arrivals(), vendor_b.arrivals());

    // Every event of both tenants delivered once, in order per ticket.
    for (tenant, tickets, arrivals) in [("alpha", &tickets_a, &arrivals_a), ("beta", &tickets_b, &arrivals_b)] {
        for ticket in tickets {
            let delivered: Vec<&str> = arrivals
                .iter()
                .filter(|a| a.status < 300 && a.ticket() == ticket)
                .map(|a| a.message())
                .collect();
            let expected: Vec<&str> = sent
                .iter()
                .filter(|s| s.0 == tenant && s.1 == *ticket)
                .map(|s| s.2.as_str())
                .collect();
            assert_eq!(
                delivered, expected,
                "{tenant} ticket {ticket}: delivered (left) vs sent (right)"
            );
        }
    }

    // A's attempts: one delivery id per event, attempts 1, 2, ... each after at most the
    // schedule's wait (plus slack) since the previous one.
    let mut report = Vec::new();
    let mut problems = Vec::new();
    for (_, ticket, message, id) in sent.iter().filter(|s| s.0 == "alpha") {
        let attempts: Vec<&Arrival> = arrivals_a
            .iter()
            .filter(|a| a.ticket() == ticket && a.message() == message)
            .collect();
        let numbers: Vec<u64> = attempts.iter().map(|a| a.attempt()).collect();
        let expected: Vec<u64> = (1..=attempts.len() as u64).collect();
        if numbers != expected {
            problems.push(format!("{message} on {ticket}: attempt numbers {numbers:?}"));
        }
        if let Some(other) = attempts.iter().find(|a| a.delivery_id() != id) {
            problems.push(format!(
                "{message} on {ticket}: attempt {} carries {} instead of {id}",
                other.attempt(),
                other.delivery_id()
            ));
        }
        let mut gaps = Vec::new();
        for pair in attempts.windows(2) {
            let gap = (pair[1].at - pair[0].at).as_millis() as u64;
            let failed_attempt = pair[0].attempt() as usize;
            let max = RETRY_SCHEDULE_MS
                .get(failed_attempt.wrapping_sub(1))
                .copied()
                .unwrap_or(0);
            gaps.push(format!("{gap}/{max}"));
            if gap > max + RETRY_SLACK_MS {
                problems.push(format!(
                    "{message} on {ticket}: {gap} ms between attempts {} and {}, more than {max} ms + {RETRY_SLACK_MS} ms",
                    pair[0].attempt(),
                    pair[1].attempt()
                ));
            }
        }
        if !gaps.is_empty() {
            report.push(format!(
                "{message}: {} attempts, gaps ms (actual/max) {}",
                attempts.len(),
                gaps.join(" ")
            ));
        }
    }
    println!(
        "vendor down: vendor A answered {} requests, {} of them 503",
        arrivals_a.len(),
        arrivals_a.iter().filter(|a| a.status == 503).count()
    );
    for line in &report {
        println!("vendor down: {line}");
    }
    assert!(problems.is_empty(), "tenant A's retries: {problems:#?}");

    // B is not held back by A: all of B's events arrived before A's vendor first accepted one.
    let last_b = arrivals_b.iter().map(|a| a.seq).max().expect("B's vendor got requests");
    let first_a_success = arrivals_a
        .iter()
        .find(|a| a.status < 300)
        .map(|a| a.seq)
        .expect("A's vendor accepted requests");
    println!(
        "vendor down: B's last event was vendor request #{last_b}; A's vendor recovered at request #{first_a_success}"
    );
    assert!(
        last_b < first_a_success,
        "B's last event (request #{last_b}) arrived after A's vendor recovered (request #{first_a_success})"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Permanent failure, dead letter, replay from the command line

/// `dolphin-bridge dead-letters ARGS...` on the bridge's files; panics unless it succeeds.
fn dead_letters(bridge: &Bridge, args: &[&str]) -> String {
    let mut full = vec!["dead-letters"];
    full.extend_from_slice(args);
    let output: Output = run_on_config_file(bridge.config_path(), &full);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "dolphin-bridge {}: {}\n{stdout}\n{stderr}",
        full.join(" "),
        output.status
    );
    stdout
}

/// The ids `dead-letters list` printed, after checking its count line.
fn listed_ids(stdout: &str) -> Vec<String> {
    let ids: Vec<String> = stdout
        .lines()
        .filter(|l| l.contains("tenant="))
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        .collect();
    assert!(
        stdout.contains(&format!("{} dead letter(s)", ids.len())),
        "list output:\n{stdout}"
    );
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vendor_4xx_makes_a_dead_letter_that_the_cli_lists_shows_and_replays_by_id_tenant_or_all_with_the_same_delivery_id()
 {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let (vendor_a, vendor_b) = (MockVendor::start().await, MockVendor::start().await);
    let (owner_a, owner_b) = (unique_owner("alpha"), unique_owner("beta"));
    let config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .tenant(echo_tenant("alpha", &owner_a, &vendor_a))
        .tenant(echo_tenant("beta", &owner_b, &vendor_b));
    let bridge = Bridge::start(config).await;
    let ids_at =
        |vendor: &MockVendor, id: &str| -> usize { vendor.bodies().iter().filter(|b| b["deliveryId"] == id).count() };

    // A 4xx is permanent: a dead letter after one attempt, with the vendor's status as its error.
    vendor_a.fail_next(1, 422);
    let first = send(&bridge, &owner_a, &fresh_ticket(), "refused once").await;
    let dead = bridge.wait_for_delivery(&first, "dead").await;
    assert_eq!(dead["attempts"], 1, "{dead:#}");
    assert!(str_field(&dead, "last_error").contains("422"), "{dead:#}");

    let list = dead_letters(&bridge, &["list"]);
    assert_eq!(listed_ids(&list), [first.as_str()], "list output:\n{list}");
    let line = list.lines().find(|l| l.starts_with(&first)).unwrap_or_default();
    assert!(
        line.contains("tenant=alpha") && line.contains("error=") && line.contains("422"),
        "list line: {line}"
    );

    let show: Value = serde_json::from_str(&dead_letters(&bridge, &["show", &first])).expect("show prints JSON");
    assert_eq!(
        (&show["delivery_id"], &show["state"], &show["tenant"]),
        (&json!(first), &json!("dead"), &json!("alpha")),
        "{show:#}"
    );
    assert!(str_field(&show, "last_error").contains("422"), "{show:#}");

    // Fixed (the vendor accepts again): replay by id, from the command line, while the bridge runs.
    let replayed = dead_letters(&bridge, &["replay", &first]);
    assert!(replayed.contains("1 dead letter(s) queued again"), "{replayed}");
    bridge.wait_for_delivery(&first, "delivered").await;
    assert_eq!(
        ids_at(&vendor_a, &first),
        2,
        "the refused attempt and the replayed one, same delivery id"
    );
    assert_eq!(vendor_a.bodies().len(), 2, "{:#?}", vendor_a.bodies());

    // `--tenant`: only that tenant's dead letters come back.
    vendor_a.fail_next(2, 410);
    vendor_b.fail_next(1, 400);
    let a1 = send(&bridge, &owner_a, &fresh_ticket(), "alpha one").await;
    let a2 = send(&bridge, &owner_a, &fresh_ticket(), "alpha two").await;
    let b1 = send(&bridge, &owner_b, &fresh_ticket(), "beta one").await;
    for id in [&a1, &a2, &b1] {
        bridge.wait_for_delivery(id, "dead").await;
    }
    let mut listed = listed_ids(&dead_letters(&bridge, &["list", "--tenant", "alpha"]));
    listed.sort();
    let mut expected = vec![a1.clone(), a2.clone()];
    expected.sort();
    assert_eq!(listed, expected, "alpha's dead letters");
    let replayed = dead_letters(&bridge, &["replay", "--tenant", "alpha"]);
    assert!(replayed.contains("2 dead letter(s) queued again"), "{replayed}");
    wait_all_delivered(&bridge, &[a1.clone(), a2.clone()]).await;
    assert_eq!(
        bridge.delivery(&b1).await["state"],
        "dead",
        "beta's dead letter was not replayed"
    );
    assert_eq!(listed_ids(&dead_letters(&bridge, &["list"])), [b1.as_str()]);

    // `--all`.
    let replayed = dead_letters(&bridge, &["replay", "--all"]);
    assert!(replayed.contains("1 dead letter(s) queued again"), "{replayed}");
    bridge.wait_for_delivery(&b1, "delivered").await;
    assert!(listed_ids(&dead_letters(&bridge, &["list"])).is_empty());
    for (vendor, id) in [(&vendor_a, &a1), (&vendor_a, &a2), (&vendor_b, &b1)] {
        assert_eq!(
            ids_at(vendor, id),
            2,
            "{id}: the refused attempt and the replayed one, same delivery id"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. SIGTERM with deliveries in flight, then a restart

const SHUTDOWN_GRACE_MS: u64 = 1_500;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_deliveries_in_flight_exits_0_at_the_end_of_the_grace_period_and_a_restart_delivers_what_was_left_in_ticket_order()
 {
    let three_dolphins = MockThreeDolphins::start(API_TOKEN).await;
    let vendor = MockVendor::start().await;
    // Slower than the grace period: what is in flight cannot finish before the bridge stops.
    vendor.set_delay(Duration::from_secs(60));
    let owner = unique_owner("shutdown");
    let config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .tenant(echo_tenant("acme", &owner, &vendor));
    let files = BridgeFiles::write(&config, &[&format!("shutdown_grace_ms = {SHUTDOWN_GRACE_MS}")]);
    let mut bridge = files.start().await;

    let tickets: Vec<String> = (0..3).map(|_| fresh_ticket()).collect();
    let mut sent: Vec<(String, String, String)> = Vec::new(); // (ticket, message, id)
    for n in 0..3 {
        for ticket in &tickets {
            let message = format!("m{n}");
            let id = send(&bridge, &owner, ticket, &message).await;
            sent.push((ticket.clone(), message, id));
        }
    }
    // The head of each ticket is at the vendor; the rest wait behind it.
    let in_flight = vendor.wait_for_bodies(tickets.len()).await;
    assert!(in_flight.iter().all(|b| b["message"] == "m0"), "{in_flight:#?}");

    let asked = Instant::now();
    bridge.terminate();
    let status = bridge
        .wait_for_exit(Duration::from_millis(SHUTDOWN_GRACE_MS) + Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("the bridge did not exit after SIGTERM:\n{}", bridge.stderr()));
    println!(
        "shutdown: exited {status} {} ms after SIGTERM (grace {SHUTDOWN_GRACE_MS} ms), {} vendor request(s) unanswered",
        asked.elapsed().as_millis(),
        in_flight.len()
    );
    assert!(
        status.success(),
        "exit status {status} after SIGTERM:\n{}",
        bridge.stderr()
    );
    let log = bridge.stderr();
    assert!(
        log.contains("deliveries still running at the end of the shutdown grace period")
            && log.contains("dolphin-bridge stopped"),
        "the bridge stopped at the end of the grace period, with deliveries still running:\n{log}"
    );
    drop(bridge);

    // Restarted on the same database, with the vendor answering at once again.
    vendor.set_delay(Duration::ZERO);
    let bridge = files.start().await;
    let ids: Vec<String> = sent.iter().map(|s| s.2.clone()).collect();
    wait_all_delivered(&bridge, &ids).await;
    let bodies = vendor.bodies();
    for ticket in &tickets {
        let mut first_arrivals: Vec<&str> = Vec::new();
        for body in bodies.iter().filter(|b| b["ticketNumber"] == ticket.as_str()) {
            let message = str_field(body, "message");
            if !first_arrivals.contains(&message) {
                first_arrivals.push(message);
            }
            let expected_id = &sent
                .iter()
                .find(|s| s.0 == *ticket && s.1 == message)
                .expect("a sent event")
                .2;
            assert_eq!(
                str_field(body, "deliveryId"),
                expected_id,
                "ticket {ticket} {message}: {body:#}"
            );
        }
        assert_eq!(
            first_arrivals,
            ["m0", "m1", "m2"],
            "ticket {ticket}: first arrivals in acceptance order"
        );
    }
    println!(
        "shutdown: after the restart the vendor got {} request(s) for {} events (the {} in flight at SIGTERM again)",
        bodies.len() - in_flight.len(),
        sent.len(),
        in_flight.len()
    );
}
