//! Soak: mixed load for `SOAK_SECONDS` (default 120, what CI runs; `SOAK_SECONDS=1800` is the
//! 30-minute run) while the bridge is SIGKILLed and restarted 10 times spread over the run.
//!
//! ```sh
//! SOAK_SECONDS=1800 cargo test -p dolphin-bridge-tests --test e2e -- soak --nocapture
//! ```
//!
//! Several tenants and tickets send Incoming events through the echo adapter to a vendor that
//! answers 503 to about a fifth of its requests at random, and each tenant's vendor sends
//! webhooks that become Outgoing events to a 3Dolphins that answers 503 to about a tenth. Every
//! event is resent until acknowledged (Incoming with its `Idempotency-Key`, webhooks with their
//! `X-Request-Id`, the tenants' `dedupe_header`). At the end, once the outbox is empty, every
//! acknowledged event must have been delivered under one delivery id, each ticket's first
//! deliveries must be in acknowledgement order, and every duplicate must be a re-run by a later
//! start of the bridge (a kill came between), with a higher attempt number on the vendor side.
//! The randomness is seeded (`SOAK_SEED` overrides; the seed is printed).
//!
//! Each start of the bridge gets its number in the environment (`SOAK_GENERATION`), which the
//! config puts in what it sends (the echo tenant's `tag`, the 3Dolphins Outgoing path), so every
//! request received names the start of the bridge that sent it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use dolphin_bridge_tests::crash_support::{
    Acknowledged, BridgeFiles, IncomingSender, LoadCounters, Rng, Target, add_to_table, assert_store_durable,
    seed_from_env, str_field, unique_owner, wait_settled,
};
use dolphin_bridge_tests::events::fresh_ticket;
use dolphin_bridge_tests::mock_http::{MockServer, Recorded, Reply};
use dolphin_bridge_tests::{Bridge, BridgeConfig, Event, HttpClient, Tenant, adapters};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::common::API_TOKEN;

const DEFAULT_SOAK_SECONDS: u64 = 120;
const SOAK_KILLS: usize = 10;
const SOAK_TENANTS: usize = 3;
const TICKETS_PER_TENANT: usize = 4;
/// The seed of the failures, the kill moments and the senders' pacing; `SOAK_SEED` overrides it.
const SOAK_SEED: u64 = 0x50a4_d01f_1b1d_0001;
/// Share of the vendor's answers that are 503, and of 3Dolphins' (percent).
const VENDOR_FAIL_PERCENT: u64 = 20;
const THREE_DOLPHINS_FAIL_PERCENT: u64 = 10;
/// Short waits, and enough retries that a run of 503s never exhausts them (0.2^16).
const RETRY_SCHEDULE_MS: [u64; 15] = [
    50, 100, 200, 400, 800, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000,
];
/// Between two events of one ticket's sender: this many ms plus up to as many again (a steady
/// load of about 80 events a second, not a benchmark: the rest of the suite runs beside it).
const INCOMING_PACE_MS: u64 = 100;
const WEBHOOK_PACE_MS: u64 = 150;
/// No event may take longer than this to be acknowledged, restarts included.
const SEND_DEADLINE: Duration = Duration::from_secs(90);
/// How long a kill meant to land just as a mock accepts a delivery waits for one.
const ACCEPT_WAIT: Duration = Duration::from_secs(10);
/// Each start of the bridge acknowledges at least this many events before it is killed.
const MIN_ACKS_BETWEEN_KILLS: usize = 20;
/// The environment variable holding the bridge's start number, and the 3Dolphins path prefix.
const GENERATION_VAR: &str = "SOAK_GENERATION";
const OUTGOING_PREFIX: &str = "/soak-3dolphins/";
/// The vendor's id of a webhook, which its resends keep (the tenants' `webhook.dedupe_header`).
const DEDUPE_HEADER: &str = "x-request-id";

// ---------------------------------------------------------------------------------------------
// Recording mocks

/// One request a [`Sink`] received.
#[derive(Debug, Clone)]
struct Hit {
    /// Order of arrival at this sink.
    seq: u64,
    /// The start of the bridge that sent it (from the request itself).
    generation: Option<u64>,
    /// What the sink answered.
    status: u16,
    ticket: String,
    message: String,
    delivery_id: String,
    /// The adapter's attempt number (vendor side; 3Dolphins posts carry none: 0).
    attempt: u64,
}

impl Hit {
    fn ok(&self) -> bool {
        self.status < 300
    }
}

/// Reads a request into a [`Hit`] (seq and status left for the sink); `None`: not readable.
type Parse = fn(&Recorded) -> Option<Hit>;

#[derive(Default)]
struct SinkState {
    hits: Vec<Hit>,
    /// Requests it could not read (a body cut short by a kill, or anything unexpected).
    unreadable: usize,
}

/// A mock that records compactly what it receives and answers 503 to `fail_percent` of the
/// requests, chosen by a seeded generator.
struct Sink {
    server: MockServer,
    state: Arc<Mutex<SinkState>>,
    /// Notified as it accepts a request (just before answering it).
    accepted: Arc<Notify>,
}

impl Sink {
    async fn start(rng: Rng, fail_percent: u64, parse: Parse, ok: Value, failed: Value) -> Sink {
        let state = Arc::new(Mutex::new(SinkState::default()));
        let rng = Mutex::new(rng);
        let recorded = state.clone();
        let accepted = Arc::new(Notify::new());
        let accepting = accepted.clone();
        let server = MockServer::start(Arc::new(move |request: &Recorded| {
            let mut state = recorded.lock().unwrap();
            let Some(mut hit) = parse(request) else {
                state.unreadable += 1;
                return Reply::json(400, &json!({"error": "unreadable request"}));
            };
            let fail = rng.lock().unwrap().below(100) < fail_percent;
            hit.status = if fail { 503 } else { 200 };
            hit.seq = state.hits.len() as u64;
            let status = hit.status;
            state.hits.push(hit);
            if !fail {
                accepting.notify_waiters();
            }
            Reply::json(status, if fail { &failed } else { &ok })
        }))
        .await;
        Sink {
            server,
            state,
            accepted,
        }
    }

    /// Waits until it accepts a request (at most `timeout`); whether it did.
    async fn next_accepted(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.accepted.notified()).await.is_ok()
    }

    fn base_url(&self) -> String {
        self.server.base_url()
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.lock().unwrap().hits.clone()
    }

    fn unreadable(&self) -> usize {
        self.state.lock().unwrap().unreadable
    }
}

/// What the echo adapter posts to `/vendor/{tenant}`: the event, `deliveryId`, `attempt`, and
/// the tenant's `tag` (the bridge's start number).
fn parse_vendor_request(request: &Recorded) -> Option<Hit> {
    if !request.path.starts_with("/vendor/") {
        return None;
    }
    let body: Value = serde_json::from_slice(&request.body).ok()?;
    Some(Hit {
        seq: 0,
        generation: str_field(&body, "tag").parse().ok(),
        status: 0,
        ticket: str_field(&body, "ticketNumber").to_string(),
        message: str_field(&body, "message").to_string(),
        delivery_id: str_field(&body, "deliveryId").to_string(),
        attempt: body["attempt"].as_u64()?,
    })
}

/// An Outgoing event posted to `/soak-3dolphins/{generation}/outgoing` with the delivery id as
/// `Idempotency-Key`.
fn parse_three_dolphins_request(request: &Recorded) -> Option<Hit> {
    let generation = request
        .path
        .strip_prefix(OUTGOING_PREFIX)?
        .strip_suffix("/outgoing")?
        .parse()
        .ok();
    let body: Value = serde_json::from_slice(&request.body).ok()?;
    Some(Hit {
        seq: 0,
        generation,
        status: 0,
        ticket: str_field(&body, "ticketNumber").to_string(),
        message: str_field(&body, "message").to_string(),
        delivery_id: request.header("idempotency-key")?.to_string(),
        attempt: 0,
    })
}

// ---------------------------------------------------------------------------------------------
// Senders

/// An event a sender got acknowledged.
#[derive(Debug, Clone)]
struct Acked {
    ticket: String,
    message: String,
    /// The delivery id the bridge answered (Incoming); webhooks are not told theirs.
    delivery_id: Option<String>,
    ack_seq: usize,
}

/// Sends one ticket's Incoming events until `end`, each resent until acknowledged.
async fn send_incoming(
    owner: String,
    ticket: String,
    sender: IncomingSender,
    acks_on_ticket: Arc<AtomicUsize>,
    end: Instant,
    mut rng: Rng,
) -> Vec<Acked> {
    let mut acked = Vec::new();
    let mut n = 0;
    while Instant::now() < end {
        let message = format!("m{n}");
        let body = Event::example().owner(&owner).ticket(&ticket).message(&message).bytes();
        let Acknowledged { delivery_id, ack_seq } = sender
            .send_until_acknowledged(&format!("{ticket}-{n}"), &body, &format!("{ticket} {message}"))
            .await;
        acks_on_ticket.fetch_add(1, Ordering::SeqCst);
        acked.push(Acked {
            ticket: ticket.clone(),
            message,
            delivery_id: Some(delivery_id),
            ack_seq,
        });
        n += 1;
        tokio::time::sleep(Duration::from_millis(
            INCOMING_PACE_MS + rng.below(INCOMING_PACE_MS + 1),
        ))
        .await;
    }
    acked
}

/// What a webhook sender saw.
#[derive(Default)]
struct WebhookOutcome {
    acked: Vec<Acked>,
    sent: usize,
    /// Webhooks resent after no answer (the bridge was killed): perhaps stored already, so the
    /// bridge must recognise the resend by its `X-Request-Id` and answer it as the first.
    resent_unanswered: usize,
    /// 5xx answers (nothing stored; resent).
    refused: usize,
}

/// Sends one tenant's vendor webhooks (each an Outgoing event on `ticket`) until `end`, once
/// the ticket is known to the bridge, as a vendor does: each with its own id
/// (`X-Request-Id`, the tenant's `dedupe_header`), resent with that id until answered 200.
async fn send_webhooks(
    tenant: String,
    ticket: String,
    target: Arc<RwLock<Target>>,
    counters: Arc<LoadCounters>,
    acks_on_ticket: Arc<AtomicUsize>,
    end: Instant,
    mut rng: Rng,
) -> WebhookOutcome {
    let client = HttpClient::new();
    let mut outcome = WebhookOutcome::default();
    let known_by = Instant::now() + SEND_DEADLINE;
    while acks_on_ticket.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < known_by, "ticket {ticket} was never acknowledged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut n = 0;
    while Instant::now() < end {
        let message = format!("w{n}");
        let body = serde_json::to_vec(&json!({"ticketNumber": ticket, "message": message})).expect("JSON");
        let request_id = format!("{tenant}-{ticket}-{message}");
        let headers = [
            ("content-type", "application/json"),
            (DEDUPE_HEADER, request_id.as_str()),
        ];
        outcome.sent += 1;
        let deadline = Instant::now() + SEND_DEADLINE;
        loop {
            let (generation, url) = {
                let target = target.read().unwrap();
                (target.generation, format!("{}/vendors/{tenant}/soak", target.base_url))
            };
            match client.try_send("POST", &url, &headers, body.clone()).await {
                Ok(response) if response.status == 200 => {
                    outcome.acked.push(Acked {
                        ticket: ticket.clone(),
                        message: message.clone(),
                        delivery_id: None,
                        ack_seq: counters.ack_seq.fetch_add(1, Ordering::SeqCst),
                    });
                    counters.acknowledged.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                Ok(response) if response.status >= 500 => outcome.refused += 1,
                // Another server on a killed bridge's old port: nothing of ours stored it.
                Ok(_) if generation != target.read().unwrap().generation => {}
                Ok(response) => panic!(
                    "the bridge refused webhook {message} on {ticket}: {}",
                    response.describe()
                ),
                Err(_) => {
                    outcome.resent_unanswered += 1;
                    // Wait for the next start of the bridge instead of hammering a dead port.
                    let wait_until = Instant::now() + Duration::from_millis(500);
                    while target.read().unwrap().generation == generation && Instant::now() < wait_until {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "webhook {message} on {ticket} was not answered within {SEND_DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(WEBHOOK_PACE_MS + rng.below(WEBHOOK_PACE_MS + 1))).await;
    }
    outcome
}

// ---------------------------------------------------------------------------------------------
// What arrived

/// The figures of one direction.
#[derive(Default, Debug)]
struct Report {
    acknowledged: usize,
    delivered: usize,
    /// Accepted (2xx) arrivals of an event after its first.
    duplicates: usize,
    /// ... of which sent by a later start of the bridge than the previous accepted one.
    duplicates_after_kill: usize,
    /// ... of which carrying a higher attempt number than the previous accepted one.
    duplicates_with_higher_attempt: usize,
    /// Arrivals after a 503 (the retry schedule at work).
    retries_after_failure: usize,
    /// Distinct events that arrived without having been acknowledged (every event sent is
    /// resent until acknowledged, so none should).
    unacknowledged_arrived: usize,
    lost: Vec<String>,
    reordered: Vec<String>,
    wrong_id: Vec<String>,
    unexplained_duplicates: Vec<String>,
    same_attempt_duplicates: Vec<String>,
}

/// Compares what `hits` received with what was acknowledged. With `attempts`, a duplicate must
/// carry a higher attempt number than the accepted arrival before it.
fn analyse(acked: &[Acked], hits: &[Hit], attempts: bool) -> Report {
    let mut report = Report {
        acknowledged: acked.len(),
        ..Report::default()
    };
    let index: HashMap<(&str, &str), usize> = acked
        .iter()
        .enumerate()
        .map(|(i, a)| ((a.ticket.as_str(), a.message.as_str()), i))
        .collect();
    let mut of_event: Vec<Vec<&Hit>> = vec![Vec::new(); acked.len()];
    let mut unacknowledged: HashSet<(&str, &str)> = HashSet::new();
    for hit in hits {
        match index.get(&(hit.ticket.as_str(), hit.message.as_str())) {
            Some(&i) => of_event[i].push(hit),
            None => {
                unacknowledged.insert((hit.ticket.as_str(), hit.message.as_str()));
            }
        }
    }
    report.unacknowledged_arrived = unacknowledged.len();

    for (event, hits) in acked.iter().zip(&of_event) {
        let name = format!("{} {}", event.ticket, event.message);
        let expected_id = event
            .delivery_id
            .clone()
            .or_else(|| hits.first().map(|h| h.delivery_id.clone()));
        if let Some(expected_id) = &expected_id
            && let Some(other) = hits.iter().find(|h| h.delivery_id != *expected_id)
        {
            report.wrong_id.push(format!(
                "{name}: expected {expected_id}, one arrival carried {}",
                other.delivery_id
            ));
        }
        report.retries_after_failure += hits.windows(2).filter(|pair| !pair[0].ok()).count();
        let accepted: Vec<&&Hit> = hits.iter().filter(|h| h.ok()).collect();
        if accepted.is_empty() {
            report
                .lost
                .push(format!("{name} ({expected_id:?}), {} failed arrival(s)", hits.len()));
            continue;
        }
        report.delivered += 1;
        for pair in accepted.windows(2) {
            let (before, again) = (pair[0], pair[1]);
            report.duplicates += 1;
            match (before.generation, again.generation) {
                (Some(b), Some(a)) if a > b => report.duplicates_after_kill += 1,
                (b, a) => report.unexplained_duplicates.push(format!(
                    "{name}: accepted by start {b:?} (arrival #{}) and again by start {a:?} (arrival #{})",
                    before.seq, again.seq
                )),
            }
            if again.attempt > before.attempt {
                report.duplicates_with_higher_attempt += 1;
            } else if attempts {
                report.same_attempt_duplicates.push(format!(
                    "{name}: accepted as attempt {} and again as attempt {}",
                    before.attempt, again.attempt
                ));
            }
        }
    }

    // Per ticket, in acknowledgement order: no arrival of an event before the previous event's
    // first accepted arrival (so first arrivals are in acknowledgement order, and nothing of a
    // ticket overtakes an event still being retried).
    let mut by_ticket: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, event) in acked.iter().enumerate() {
        by_ticket.entry(event.ticket.as_str()).or_default().push(i);
    }
    for events in by_ticket.values_mut() {
        events.sort_by_key(|&i| acked[i].ack_seq);
        for pair in events.windows(2) {
            let (before, after) = (pair[0], pair[1]);
            let Some(before_accepted) = of_event[before].iter().find(|h| h.ok()) else {
                continue;
            };
            if let Some(first) = of_event[after].first()
                && first.seq < before_accepted.seq
            {
                report.reordered.push(format!(
                    "{} {} (arrival #{}) arrived before {} was first accepted (arrival #{})",
                    acked[after].ticket, acked[after].message, first.seq, acked[before].message, before_accepted.seq
                ));
            }
        }
    }
    report
}

fn print_report(side: &str, report: &Report) {
    println!(
        "soak: {side}: acknowledged {}, delivered {} distinct, duplicates {} ({} sent again by a later start, {} with a \
         higher attempt), retries after a 503 {}, unacknowledged but delivered {}, lost {}, reordered {}",
        report.acknowledged,
        report.delivered,
        report.duplicates,
        report.duplicates_after_kill,
        report.duplicates_with_higher_attempt,
        report.retries_after_failure,
        report.unacknowledged_arrived,
        report.lost.len(),
        report.reordered.len()
    );
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn soak_mixed_load_with_vendor_failures_and_ten_sigkills_loses_nothing_keeps_ticket_order_and_repeats_only_after_a_kill()
 {
    let seconds = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_SOAK_SECONDS);
    let run = Duration::from_secs(seconds);
    let seed = seed_from_env("SOAK_SEED", SOAK_SEED);
    let mut rng = Rng(seed);

    let vendor = Sink::start(
        Rng::fork(seed, 1_000),
        VENDOR_FAIL_PERCENT,
        parse_vendor_request,
        json!({"ok": true}),
        json!({"error": "soak vendor: unavailable"}),
    )
    .await;
    let three_dolphins = Sink::start(
        Rng::fork(seed, 2_000),
        THREE_DOLPHINS_FAIL_PERCENT,
        parse_three_dolphins_request,
        json!({"status": "success"}),
        json!({"status": "failed", "message": "soak 3Dolphins: unavailable"}),
    )
    .await;
    let token = format!("soak-token-{}", fresh_ticket());
    let tenants: Vec<(String, String)> = (0..SOAK_TENANTS)
        .map(|i| (format!("soak{i}"), unique_owner(&format!("soak{i}"))))
        .collect();
    let mut config = BridgeConfig::new(&three_dolphins.base_url())
        .api_token(API_TOKEN)
        .incoming_token(Some(&token))
        .retry_schedule_ms(&RETRY_SCHEDULE_MS);
    for (name, owner) in &tenants {
        config = config.tenant(
            Tenant::new(name, owner, adapters::echo())
                .allow(&vendor.base_url())
                .config("url", &format!("{}/vendor/{name}", vendor.base_url()))
                .config("tag", &format!("${{{GENERATION_VAR}}}")),
        );
    }
    let outgoing_path = format!("outgoing_path = \"{OUTGOING_PREFIX}${{{GENERATION_VAR}}}/outgoing\"");
    let files = BridgeFiles::write_edited(&config, |text| {
        let unverified = "\n[tenants.webhook]\nauth = \"none\"\n";
        assert_eq!(
            text.matches(unverified).count(),
            SOAK_TENANTS,
            "tenants' webhook tables in:\n{text}"
        );
        let text = text.replace(
            unverified,
            &format!("\n[tenants.webhook]\nauth = \"none\"\ndedupe_header = \"{DEDUPE_HEADER}\"\n"),
        );
        add_to_table(&text, "three_dolphins", &[&outgoing_path])
    });
    let env = |generation: u64| vec![(GENERATION_VAR.to_string(), generation.to_string())];

    let mut bridge: Bridge = files.start_with_env(&env(0)).await;
    let store = assert_store_durable(&bridge).await;
    let target = Target::shared(0, &bridge);
    let counters = Arc::new(LoadCounters::default());
    let sender = IncomingSender {
        client: HttpClient::new(),
        target: target.clone(),
        token: token.clone(),
        counters: counters.clone(),
        deadline: SEND_DEADLINE,
    };

    // Kill moments: the run cut into SOAK_KILLS + 1 equal slices, a kill near each inner cut
    // (up to a quarter of a slice either way). Of every three kills, one lands there, one just
    // as the vendor accepts a delivery and one just as 3Dolphins accepts one: the bridge dies
    // before it can record the outcome, and the next start delivers that event again.
    let slice_ms = run.as_millis() as u64 / (SOAK_KILLS as u64 + 1);
    let plan_ms: Vec<u64> = (1..=SOAK_KILLS as u64)
        .map(|k| k * slice_ms - slice_ms / 4 + rng.below(slice_ms / 2 + 1))
        .collect();
    println!(
        "soak: {seconds} s (SOAK_SECONDS; 1800 for the 30-minute run), seed {seed:#x} (SOAK_SEED overrides), \
         {SOAK_TENANTS} tenants x {TICKETS_PER_TENANT} tickets + 1 webhook sender each, vendor 503 {VENDOR_FAIL_PERCENT}%, \
         3Dolphins 503 {THREE_DOLPHINS_FAIL_PERCENT}%, kills at ms {plan_ms:?}; /readyz store {store}"
    );

    let started = Instant::now();
    let end = started + run;
    let mut incoming = Vec::new();
    let mut webhooks = Vec::new();
    for (i, (name, owner)) in tenants.iter().enumerate() {
        for j in 0..TICKETS_PER_TENANT {
            let ticket = fresh_ticket();
            let acks_on_ticket = Arc::new(AtomicUsize::new(0));
            incoming.push(tokio::spawn(send_incoming(
                owner.clone(),
                ticket.clone(),
                sender.clone(),
                acks_on_ticket.clone(),
                end,
                Rng::fork(seed, (i * TICKETS_PER_TENANT + j) as u64),
            )));
            if j == 0 {
                webhooks.push(tokio::spawn(send_webhooks(
                    name.clone(),
                    ticket,
                    target.clone(),
                    counters.clone(),
                    acks_on_ticket,
                    end,
                    Rng::fork(seed, 100 + i as u64),
                )));
            }
        }
    }

    let mut kills = 0;
    let mut last_kill_acks = 0;
    for (k, &at_ms) in plan_ms.iter().enumerate() {
        let due = started + Duration::from_millis(at_ms);
        let wait_started = Instant::now();
        while Instant::now() < due
            || counters.acknowledged.load(Ordering::SeqCst) < last_kill_acks + MIN_ACKS_BETWEEN_KILLS
        {
            assert!(
                wait_started.elapsed() < run + SEND_DEADLINE,
                "the load stalled at {} acknowledged events before kill {}",
                counters.acknowledged.load(Ordering::SeqCst),
                k + 1
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let moment = match k % 3 {
            1 if vendor.next_accepted(ACCEPT_WAIT).await => "as the vendor accepted a delivery",
            2 if three_dolphins.next_accepted(ACCEPT_WAIT).await => "as 3Dolphins accepted a delivery",
            _ => "at a random moment",
        };
        let acks_at_kill = counters.acknowledged.load(Ordering::SeqCst);
        let killed_at = started.elapsed();
        assert!(
            Instant::now() < end,
            "kill {} came after the load had finished ({:.1} s): the bridge restarts too slowly for this SOAK_SECONDS",
            k + 1,
            killed_at.as_secs_f64()
        );
        let status = bridge.kill_hard();
        kills += 1;
        let down_at = Instant::now();
        bridge = files.start_with_env(&env(k as u64 + 1)).await;
        Target::point_at(&target, k as u64 + 1, &bridge);
        println!(
            "soak: kill {} ({status}) {moment}, at {:.1} s after {acks_at_kill} acknowledged; back after {} ms",
            k + 1,
            killed_at.as_secs_f64(),
            down_at.elapsed().as_millis()
        );
        last_kill_acks = acks_at_kill;
    }

    let mut acked_incoming: Vec<Acked> = Vec::new();
    for task in incoming {
        match task.await {
            Ok(acked) => acked_incoming.extend(acked),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    let mut acked_outgoing: Vec<Acked> = Vec::new();
    let (mut webhooks_sent, mut webhooks_resent, mut webhooks_refused) = (0, 0, 0);
    for task in webhooks {
        match task.await {
            Ok(outcome) => {
                acked_outgoing.extend(outcome.acked);
                webhooks_sent += outcome.sent;
                webhooks_resent += outcome.resent_unanswered;
                webhooks_refused += outcome.refused;
            }
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    let load_took = started.elapsed();
    let stats = wait_settled(&bridge, Duration::from_secs(120 + seconds / 2)).await;
    println!(
        "soak: load took {:.1} s, settled at {:.1} s; outbox {stats}; senders: {}; webhooks: {webhooks_sent} sent, \
         {webhooks_resent} resent after no answer (same {DEDUPE_HEADER}), {webhooks_refused} 5xx (resent); unreadable requests: vendor {}, \
         3Dolphins {}",
        load_took.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        counters.summary(),
        vendor.unreadable(),
        three_dolphins.unreadable()
    );

    let to_vendor = analyse(&acked_incoming, &vendor.hits(), true);
    let to_three_dolphins = analyse(&acked_outgoing, &three_dolphins.hits(), false);
    print_report("Incoming -> vendor", &to_vendor);
    print_report("webhook Outgoing -> 3Dolphins", &to_three_dolphins);
    let both = [&to_vendor, &to_three_dolphins];
    let sum = |f: fn(&Report) -> usize| -> usize { both.iter().map(|r| f(r)).sum() };
    let sent = acked_incoming.len() + webhooks_sent;
    println!(
        "soak: sent {sent}, acknowledged {}, delivered {} distinct, duplicates {}, lost {}, reordered {}, kills {kills}",
        sum(|r| r.acknowledged),
        sum(|r| r.delivered),
        sum(|r| r.duplicates),
        sum(|r| r.lost.len()),
        sum(|r| r.reordered.len()),
    );

    assert_eq!(stats["dead"], 0, "dead letters: {:#?}", bridge.dead_letters(None).await);
    for (side, report) in [("vendor", &to_vendor), ("3Dolphins", &to_three_dolphins)] {
        assert!(
            report.lost.is_empty(),
            "{side}: {} acknowledged event(s) never accepted: {:#?}",
            report.lost.len(),
            report.lost
        );
        assert!(
            report.reordered.is_empty(),
            "{side}: {} event(s) out of ticket order: {:#?}",
            report.reordered.len(),
            report.reordered
        );
        assert_eq!(
            report.unacknowledged_arrived, 0,
            "{side}: events arrived that no sender had acknowledged"
        );
        assert!(
            report.wrong_id.is_empty(),
            "{side}: arrivals with another delivery id than the event's: {:#?}",
            report.wrong_id
        );
        assert!(
            report.unexplained_duplicates.is_empty(),
            "{side}: {} duplicate(s) not sent by a later start of the bridge (no kill between): {:#?}",
            report.unexplained_duplicates.len(),
            report.unexplained_duplicates
        );
        assert!(
            report.same_attempt_duplicates.is_empty(),
            "{side}: {} duplicate(s) re-run without a higher attempt number: {:#?}",
            report.same_attempt_duplicates.len(),
            report.same_attempt_duplicates
        );
    }
    assert!(
        to_vendor.retries_after_failure > 0 && to_three_dolphins.retries_after_failure > 0,
        "the mocks' 503s were never retried: the failures did not happen"
    );
}
