//! Durable delivery: events are persisted before they are acknowledged, then delivered by
//! workers in order per ticket, retried with backoff and full jitter, and dead-lettered when
//! they fail for good.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};
use tracing::Instrument as _;

use crate::activity::Activity;
use crate::clock::{Deadline, now_ms};
use crate::cluster::ReplicaId;
use crate::config::DeliveryConfig;
use crate::contract::{IncomingEvent, ThreeDolphinsEvent};
use crate::metrics::{METRICS, Metrics};
use crate::registry::AdapterRegistry;
use crate::runtime::{CallContext, CallError};
use crate::store::{
    Accepted, Delivery, Direction, Lease, NewDelivery, OrderKey, Outcome, PurgeBefore, Store, StoredResponse,
    WebhookAccepted,
};
use crate::telemetry;
use crate::tenants::Arm;
use crate::three_dolphins::ThreeDolphinsError;

/// What became of one attempt.
enum Attempt {
    Delivered,
    /// Failed for now; the adapter's hint of when to come back, if any.
    RetryLater(String, Option<Duration>),
    Permanent(String),
    /// The adapter was resting (its circuit breaker open) for this long: nothing was tried.
    NotMade(Duration, String),
    /// The lease ended before the attempt did (renewals failed or were refused): the attempt
    /// was stopped, and its delivery is another replica's (or this one's again) once due.
    LeaseLost,
}

/// How long a dispatcher waits before looking again when nothing tells it to: a replay made by
/// another process (the `dead-letters` command) is picked up within this.
const IDLE_LOOK: Duration = Duration::from_secs(1);
/// After the store failed a claim, the ticket waits this long before it is tried again.
const STORE_FAILURE_BACKOFF: Duration = Duration::from_secs(1);
/// On a shared store, how soon an event this process did not attempt (its breaker open) is due
/// again, to any replica.
const SHARED_STORE_REST_LOOK: Duration = Duration::from_secs(1);
/// Due reads one dispatch makes at most (each skips the tenants the previous one filled).
const MAX_READS_PER_DISPATCH: usize = 8;
/// Deliveries of one tenant started at once, as a multiple of those attempting at once
/// (`max_in_flight_per_tenant`): the others are claimed ahead (see [`Outbox::dispatch`]).
const CLAIMED_AHEAD_FACTOR: usize = 2;

/// Deliveries this process runs now: their order keys, and per tenant how many are started and
/// the slots their attempts take.
///
/// What keeps a ticket's events one at a time is the store's lease, across processes; the keys
/// here only spare this process a claim that would fail (a head it already runs).
#[derive(Default)]
struct InFlight {
    keys: HashSet<OrderKey>,
    per_tenant: HashMap<String, TenantRuns>,
}

/// One tenant's deliveries in this process.
struct TenantRuns {
    /// Started: being claimed, waiting for an attempt slot, or attempting.
    started: usize,
    /// `max_in_flight_per_tenant` permits, one held by each attempt.
    attempt_slots: Arc<Semaphore>,
}

impl InFlight {
    /// Takes `key` for a delivery of `tenant`, whose attempts take one of `attempts_at_once`
    /// slots; false when that key already has one running.
    fn start(&mut self, key: OrderKey, tenant: &str, attempts_at_once: usize) -> bool {
        if !self.keys.insert(key) {
            return false;
        }
        self.per_tenant
            .entry(tenant.to_string())
            .or_insert_with(|| TenantRuns {
                started: 0,
                attempt_slots: Arc::new(Semaphore::new(attempts_at_once)),
            })
            .started += 1;
        true
    }

    fn finish(&mut self, key: &OrderKey, tenant: &str) {
        self.keys.remove(key);
        self.release_tenant(tenant);
    }

    /// Gives back `tenant`'s share only: its delivery has made its attempt, and what is left
    /// (recording the outcome) is the store's work, while the ticket stays held until then.
    fn release_tenant(&mut self, tenant: &str) {
        if let Some(runs) = self.per_tenant.get_mut(tenant) {
            runs.started -= 1;
            // None started holds a slot: a later start gets a fresh semaphore.
            if runs.started == 0 {
                self.per_tenant.remove(tenant);
            }
        }
    }

    fn count(&self, tenant: &str) -> usize {
        self.per_tenant.get(tenant).map_or(0, |runs| runs.started)
    }

    /// The attempt slots of `tenant`, which has a delivery started.
    fn attempt_slots(&self, tenant: &str) -> Option<Arc<Semaphore>> {
        self.per_tenant.get(tenant).map(|runs| runs.attempt_slots.clone())
    }

    /// Tenants with `cap` deliveries started: a due read leaves them out.
    fn saturated(&self, cap: usize) -> Vec<String> {
        let mut tenants: Vec<String> = self
            .per_tenant
            .iter()
            .filter(|(_, runs)| runs.started >= cap)
            .map(|(t, _)| t.clone())
            .collect();
        tenants.sort();
        tenants
    }
}

/// What bounds the deliveries running in this process: started ones (`workers` times
/// [`CLAIMED_AHEAD_FACTOR`]) and attempting ones (`workers`).
struct Runs {
    started: Arc<Semaphore>,
    attempting: Arc<Semaphore>,
}

/// A delivery's share of its tenant's in-flight cap, given back when dropped (and the
/// dispatcher woken, as the tenant may start another delivery).
struct TenantShare<'a> {
    outbox: &'a Outbox,
    tenant: String,
}

impl Drop for TenantShare<'_> {
    fn drop(&mut self) {
        self.outbox
            .in_flight
            .lock()
            .expect("in-flight lock")
            .release_tenant(&self.tenant);
        self.outbox.wake.notify_one();
    }
}

/// A started delivery not yet claimed, counted in [`Outbox::claiming`] until dropped.
struct Claiming(Arc<AtomicUsize>);

impl Claiming {
    fn counted_in(count: &Arc<AtomicUsize>) -> Claiming {
        count.fetch_add(1, Ordering::Relaxed);
        Claiming(count.clone())
    }
}

impl Drop for Claiming {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The outbox: accepts events durably and runs their delivery.
pub struct Outbox {
    store: Arc<dyn Store>,
    config: DeliveryConfig,
    /// The holder named in this process's leases.
    lease_owner: String,
    wake: Notify,
    in_flight: Mutex<InFlight>,
    /// Deliveries started and not yet claimed: still due in the store, a due read finds them
    /// again (and passes over them).
    claiming: Arc<AtomicUsize>,
    activity: Activity,
}

impl Outbox {
    /// An outbox over `store`.
    pub fn new(store: Arc<dyn Store>, config: DeliveryConfig) -> Arc<Outbox> {
        Arc::new(Outbox {
            store,
            config,
            lease_owner: ReplicaId::current().to_string(),
            wake: Notify::new(),
            in_flight: Mutex::new(InFlight::default()),
            claiming: Arc::new(AtomicUsize::new(0)),
            activity: Activity::default(),
        })
    }

    /// The store behind it.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Recent deliveries and failures per tenant.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// Persists `deliveries` (committed to disk) and wakes the workers.
    pub async fn accept(&self, deliveries: Vec<NewDelivery>) -> anyhow::Result<Vec<Accepted>> {
        let window = Duration::from_millis(self.config.idempotency_window_ms);
        let accepted = self.store.enqueue(deliveries, window).await?;
        self.wake.notify_one();
        Ok(accepted)
    }

    /// How long a vendor's webhook key is remembered.
    pub fn webhook_dedupe_window(&self) -> Duration {
        Duration::from_millis(self.config.webhook_dedupe_window_ms)
    }

    /// Persists a webhook's `deliveries` with its keys and `response` (see
    /// [`Store::accept_webhook`]) and wakes the workers.
    pub async fn accept_webhook(
        &self,
        tenant: &str,
        keys: &[String],
        response: StoredResponse,
        deliveries: Vec<NewDelivery>,
    ) -> anyhow::Result<WebhookAccepted> {
        let window = self.webhook_dedupe_window();
        let accepted = self
            .store
            .accept_webhook(tenant, keys, response, deliveries, window)
            .await?;
        self.wake.notify_one();
        Ok(accepted)
    }

    /// Wakes the dispatcher (after a replay, say).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs deliveries until `shutdown` is cancelled, then waits up to the grace period for
    /// running ones. Events still pending stay in the store for the next start.
    pub async fn run(self: Arc<Self>, registry: Arc<AdapterRegistry>, shutdown: CancellationToken) {
        let workers = self.config.workers.max(1);
        // Deliveries started (claiming, claimed ahead, attempting) and attempting.
        let runs = Runs {
            started: Arc::new(Semaphore::new(workers * CLAIMED_AHEAD_FACTOR)),
            attempting: Arc::new(Semaphore::new(workers)),
        };
        let tasks = TaskTracker::new();
        tasks.spawn(self.clone().purge_loop(shutdown.clone()));
        if let Some(signal) = self.store.due_signal() {
            tasks.spawn(self.clone().forward_due_signal(signal, shutdown.clone()));
        }
        while !shutdown.is_cancelled() {
            METRICS.dispatches.inc();
            let next_wait = match self.dispatch(&registry, &runs, &tasks).await {
                Ok(wait) => wait,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "outbox dispatch failed; retrying");
                    STORE_FAILURE_BACKOFF
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(next_wait) => {}
                _ = shutdown.cancelled() => {}
            }
        }
        tasks.close();
        let grace = Duration::from_millis(self.config.shutdown_grace_ms);
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!(
                "deliveries still running at the end of the shutdown grace period; they will be retried on the next start"
            );
        }
    }

    /// Starts every due delivery it has room for; returns how long to sleep at most.
    ///
    /// Heads it cannot start now (their tenant is at its cap, or every worker is busy) are
    /// looked at again when a running delivery ends, which wakes the dispatcher; so the sleep
    /// only has to reach the next head that becomes due later.
    async fn dispatch(
        self: &Arc<Self>,
        registry: &Arc<AdapterRegistry>,
        runs: &Runs,
        tasks: &TaskTracker,
    ) -> anyhow::Result<Duration> {
        let attempts_at_once = self.config.max_in_flight_per_tenant.max(1);
        // A tenant's next deliveries are claimed while its attempts run, so that the claim's
        // commit (a disk sync) overlaps them instead of lengthening each: as many started as
        // may attempt at once, and as many again claimed ahead, waiting for an attempt slot.
        let cap = attempts_at_once * CLAIMED_AHEAD_FACTOR;
        let now = self.store.now_ms();
        for _ in 0..MAX_READS_PER_DISPATCH {
            let free = runs.started.available_permits();
            if free == 0 {
                break;
            }
            // Tenants at their cap are left out of the read, so their heads cannot fill it and
            // hide other tenants' (one slow tenant cannot delay another's deliveries).
            let skip = self.in_flight.lock().expect("in-flight lock").saturated(cap);
            // What one read can start (a tenant starts `cap` at most: a tenant it fills is
            // skipped by the next read), and the deliveries this process is claiming, which
            // the read finds again. A read of every due head would cost the store a row per
            // due ticket for each delivery started.
            let limit = free.min(cap) + self.claiming.load(Ordering::Relaxed);
            let due = self.store.due(now, limit, &skip).await?;
            let read_all = due.len() < limit;
            let mut started_any = false;
            for delivery in due {
                let key = delivery.order_key();
                {
                    let mut in_flight = self.in_flight.lock().expect("in-flight lock");
                    if in_flight.count(&delivery.tenant) >= cap
                        || !in_flight.start(key.clone(), &delivery.tenant, attempts_at_once)
                    {
                        continue;
                    }
                }
                started_any = true;
                let Ok(permit) = runs.started.clone().try_acquire_owned() else {
                    self.in_flight
                        .lock()
                        .expect("in-flight lock")
                        .finish(&key, &delivery.tenant);
                    break;
                };
                let (outbox, registry, attempting) = (self.clone(), registry.clone(), runs.attempting.clone());
                let claiming = Claiming::counted_in(&self.claiming);
                tasks.spawn(async move {
                    let share = TenantShare {
                        outbox: &outbox,
                        tenant: delivery.tenant.clone(),
                    };
                    outbox
                        .claim_and_deliver(&registry, delivery, share, claiming, &attempting)
                        .await;
                    outbox.in_flight.lock().expect("in-flight lock").keys.remove(&key);
                    drop(permit);
                    outbox.wake.notify_one();
                });
            }
            if read_all || !started_any {
                break;
            }
        }
        let wait = match self.store.next_due_after(now).await? {
            Some(at) => Duration::from_millis((at - self.store.now_ms()).max(1) as u64).min(IDLE_LOOK),
            None => IDLE_LOOK,
        };
        Ok(wait)
    }

    /// Wakes the dispatcher whenever the store says another process made work due.
    async fn forward_due_signal(self: Arc<Self>, signal: Arc<Notify>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = signal.notified() => self.wake.notify_one(),
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// A lease for this process from now, on the store's clock.
    fn lease(&self) -> Lease {
        Lease::taken_at(
            &self.lease_owner,
            self.store.now_ms(),
            Duration::from_millis(self.config.lease_ms),
        )
    }

    /// Claims `delivery` for its next attempt, makes it, and records its outcome. The tenant's
    /// `share` of the in-flight cap is given back as soon as the attempt is made: the cap bounds
    /// what a tenant has running against its adapter and vendor, and recording the outcome (a
    /// commit) overlaps the tenant's next attempts instead of holding one of them back.
    async fn claim_and_deliver(
        &self,
        registry: &AdapterRegistry,
        delivery: Delivery,
        share: TenantShare<'_>,
        claiming: Claiming,
        attempting: &Arc<Semaphore>,
    ) {
        let attempt = delivery.attempts + 1;
        let retry_index = attempt - delivery.retry_base;
        // `due` may have read this delivery just before an attempt that was running (here or in
        // another replica) recorded its outcome; the claim has the last word.
        let lease_ms = Duration::from_millis(self.config.lease_ms);
        let asked = tokio::time::Instant::now();
        // Counted as claiming until the claim is made (or, after a failed one, the backoff
        // ends): the delivery is due in the store meanwhile.
        match self.store.claim(delivery.seq, delivery.attempts, &self.lease()).await {
            Ok(true) => drop(claiming),
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(delivery_id = %delivery.delivery_id, error = format!("{e:#}"),
                    "cannot claim a delivery; it stays pending");
                tokio::time::sleep(STORE_FAILURE_BACKOFF).await;
                return;
            }
        }
        // The lease as this process knows it ends a margin before the store's end, counted from
        // when the claim was asked: the store's end is later still, whatever the round trip.
        let lease = Arc::new(Deadline::at(asked + held_for(lease_ms)));
        // Renewed beside the attempt (not between its polls), so a slow store write never
        // stalls the call, and a call slower than a lease is still not claimed by another
        // replica; until the outcome is recorded, as a slow record must not outlive the lease.
        let renewal = AbortOnDropHandle::new(tokio::spawn(renew_lease(
            self.store.clone(),
            delivery.seq,
            attempt,
            self.lease_owner.clone(),
            lease_ms,
            lease.clone(),
            delivery.delivery_id.clone(),
        )));
        // Claimed ahead, it waits for one of its tenant's attempt slots, then for one of the
        // bridge's (its lease renewed meanwhile).
        let slots = self
            .in_flight
            .lock()
            .expect("in-flight lock")
            .attempt_slots(&delivery.tenant);
        let slot = tokio::select! {
            slots = async {
                let tenant_slot = match slots {
                    Some(slots) => slots.acquire_owned().await.ok(),
                    None => None,
                };
                (tenant_slot, attempting.clone().acquire_owned().await.ok())
            } => Some(slots),
            () = lease.reached() => None,
        };
        // Each attempt is a child of the span that accepted the event, whenever and wherever it
        // is made: the acceptance's context is stored with the event. It starts once the
        // delivery has its slots, so its length is the attempt's.
        let span = telemetry::span(|| {
            tracing::info_span!("delivery.attempt", otel.kind = "consumer", tenant = %delivery.tenant,
                delivery_id = %delivery.delivery_id, ticket = %delivery.ticket,
                direction = delivery.direction.as_str(), attempt, outcome = tracing::field::Empty,
                error.type = tracing::field::Empty, otel.status_code = tracing::field::Empty)
        });
        telemetry::continue_trace(&span, delivery.trace_context.as_deref());
        // A lease that ends (renewals refused, or the store out of reach for its length) stops
        // the attempt: another replica may be making the next one.
        let outcome = if lease.passed() {
            Attempt::LeaseLost
        } else {
            tokio::select! {
                outcome = attempt_delivery(registry, &delivery, attempt, &lease).instrument(span.clone()) => outcome,
                () = lease.reached() => Attempt::LeaseLost,
            }
        };
        // An answer that came after the lease ended is not recorded unless it says delivered
        // (true whoever holds the delivery now; any other is the lease's own doing or stale).
        let outcome = match outcome {
            Attempt::Delivered => Attempt::Delivered,
            _ if lease.passed() => Attempt::LeaseLost,
            other => other,
        };
        drop(slot);
        drop(share);
        let retries = self.config.retry_schedule_ms.len();
        let label = match &outcome {
            Attempt::Delivered => "delivered",
            Attempt::LeaseLost => "lease_lost",
            Attempt::NotMade(..) => "postponed",
            Attempt::RetryLater(..) if (retry_index as usize) <= retries => "retry",
            _ => "dead",
        };
        Metrics::count(&METRICS.deliveries, &delivery.tenant, label);
        span.record("outcome", label);
        if matches!(label, "retry" | "dead" | "lease_lost") {
            telemetry::record_error(&span, label);
        }
        match &outcome {
            Attempt::Delivered => self.activity.delivered(&delivery.tenant, now_ms()),
            Attempt::RetryLater(error, _) | Attempt::Permanent(error) => {
                self.activity.failed(&delivery.tenant, now_ms(), error)
            }
            Attempt::NotMade(..) | Attempt::LeaseLost => {}
        }
        // Logged inside the attempt's span: the lines carry its trace id.
        let outcome = span.in_scope(|| match outcome {
            Attempt::Delivered => {
                tracing::info!(tenant = %delivery.tenant, delivery_id = %delivery.delivery_id,
                    ticket = %delivery.ticket, attempt, direction = ?delivery.direction, "delivered");
                let waited = (self.store.now_ms() - delivery.created_at).max(0) as u64;
                Metrics::observe_delivered(
                    &delivery.tenant,
                    delivery.direction.as_str(),
                    Duration::from_millis(waited),
                );
                Some(Outcome::Delivered)
            }
            Attempt::RetryLater(error, hint) => match self.config.retry_schedule_ms.get(retry_index as usize - 1) {
                Some(&max_wait) => {
                    let wait = retry_wait(rand::rng().random_range(0..=max_wait), hint) as i64;
                    tracing::warn!(tenant = %delivery.tenant, delivery_id = %delivery.delivery_id,
                        ticket = %delivery.ticket, attempt, retry_in_ms = wait, %error, "delivery failed; will retry");
                    Some(Outcome::RetryAt(self.store.now_ms() + wait, error))
                }
                None => {
                    let error = format!("gave up after {retry_index} attempts: {error}");
                    tracing::error!(tenant = %delivery.tenant, delivery_id = %delivery.delivery_id,
                        ticket = %delivery.ticket, %error, "dead letter");
                    Some(Outcome::Dead(error))
                }
            },
            Attempt::Permanent(error) => {
                tracing::error!(tenant = %delivery.tenant, delivery_id = %delivery.delivery_id,
                    ticket = %delivery.ticket, attempt, %error, "dead letter");
                Some(Outcome::Dead(error))
            }
            // Not an attempt: none of the retries is used up, and the event is looked at again
            // when the rest is over (spread over a quarter of it, as others of the tenant wait
            // too), not at every retry of the schedule in between. A breaker is this process's
            // own: on a shared store the event is soon due again, for replicas whose breakers
            // are closed, instead of waiting for this one's rest.
            Attempt::NotMade(rest, error) => {
                let rest = match self.store.is_shared() {
                    true => rest.min(SHARED_STORE_REST_LOOK),
                    false => rest,
                };
                let spread = rand::rng().random_range(0..=rest.as_millis() as i64 / 4);
                let wait = rest.as_millis() as i64 + spread;
                tracing::info!(tenant = %delivery.tenant, delivery_id = %delivery.delivery_id,
                    ticket = %delivery.ticket, retry_in_ms = wait, %error, "adapter resting; delivery postponed");
                Some(Outcome::NotAttempted(self.store.now_ms() + wait, error))
            }
            Attempt::LeaseLost => {
                tracing::warn!(tenant = %delivery.tenant, delivery_id = %delivery.delivery_id,
                    ticket = %delivery.ticket, attempt,
                    "the delivery's lease ended during its attempt: stopped, and not recorded; it is attempted again once due");
                None
            }
        });
        let Some(outcome) = outcome else {
            return;
        };
        let recorded = self.store.record(delivery.seq, attempt, outcome).await;
        drop(renewal);
        match recorded {
            Ok(true) => {}
            Ok(false) => tracing::warn!(delivery_id = %delivery.delivery_id, attempt,
                "the delivery changed while this attempt ran; its outcome was not recorded"),
            // The lease, no longer renewed, holds the delivery back until it ends: it is
            // attempted again then (by any replica), never sooner.
            Err(e) => tracing::error!(delivery_id = %delivery.delivery_id, attempt, error = format!("{e:#}"),
                "cannot record a delivery outcome; the delivery is attempted again after its lease"),
        }
    }

    /// Deletes, every minute, what is past its retention: delivered events, idempotency and
    /// webhook keys, tickets not seen for long, and (when configured) dead letters.
    async fn purge_loop(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = shutdown.cancelled() => return,
            }
            let now = self.store.now_ms();
            let ago = |ms: u64| now.saturating_sub(ms as i64);
            let before = PurgeBefore {
                delivered: ago(self.config.retention_ms),
                idempotency_keys: ago(self.config.idempotency_window_ms),
                webhook_keys: ago(self.config.webhook_dedupe_window_ms),
                tickets: ago(self.config.ticket_retention_ms),
                dead_letters: self.config.dead_letter_retention_ms.map(ago),
            };
            match self.store.purge(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "purged events past retention"),
                Err(e) => tracing::warn!(error = format!("{e:#}"), "purge failed"),
            }
        }
    }
}

/// How long a lease is held by its holder's own count: a tenth less than the store's, for the
/// difference between the replicas' reading of the store's clock.
fn held_for(lease: Duration) -> Duration {
    lease - lease / 10
}

/// Extends the lease of `attempt` of delivery `seq` every third of `lease` until aborted (when
/// the outcome is recorded), moving `held` on after each renewal the store takes. A renewal the
/// store refuses means the lease was lost (it ended while this process could not reach the
/// store, and another replica claimed the delivery): `held` ends now, which stops the attempt.
async fn renew_lease(
    store: Arc<dyn Store>,
    seq: i64,
    attempt: u32,
    owner: String,
    lease: Duration,
    held: Arc<Deadline>,
    delivery_id: String,
) {
    let every = lease / 3;
    loop {
        tokio::time::sleep(every).await;
        let asked = tokio::time::Instant::now();
        let renewed = Lease::taken_at(&owner, store.now_ms(), lease);
        match store.renew(seq, attempt, &renewed).await {
            Ok(true) => held.move_to(asked + held_for(lease)),
            Ok(false) => {
                tracing::warn!(%delivery_id, attempt, "lost the lease of a running attempt: the attempt is stopped");
                held.move_to(tokio::time::Instant::now());
                return;
            }
            Err(e) => {
                tracing::warn!(%delivery_id, attempt, error = format!("{e:#}"), "cannot renew a lease; trying again")
            }
        }
    }
}

/// The longest wait an adapter's retry hint (`after-ms`) can ask for; a longer one is cut to it.
pub const MAX_RETRY_HINT: Duration = Duration::from_secs(60 * 60);

/// How long to wait before the next attempt, in milliseconds: the schedule's (jittered) wait,
/// or the adapter's hint of when the vendor takes requests again when that is longer, at most
/// [`MAX_RETRY_HINT`]. A hint never makes the wait shorter than the schedule's, and the attempt
/// counts as one retry either way.
fn retry_wait(scheduled_ms: u64, hint: Option<Duration>) -> u64 {
    let hint_ms = hint.map_or(0, |h| h.min(MAX_RETRY_HINT).as_millis() as u64);
    scheduled_ms.max(hint_ms)
}

/// Runs one attempt: the adapter for Incoming events, a POST for 3Dolphins events.
async fn attempt_delivery(
    registry: &AdapterRegistry,
    delivery: &Delivery,
    attempt: u32,
    lease: &Arc<Deadline>,
) -> Attempt {
    match delivery.direction {
        Direction::ToVendor => {
            let event: IncomingEvent = match serde_json::from_str(&delivery.payload) {
                Ok(event) => event,
                Err(e) => return Attempt::Permanent(format!("stored event is unreadable: {e}")),
            };
            let tenants = registry.snapshot();
            let Some(tenant) = tenants.by_name(&delivery.tenant) else {
                return Attempt::RetryLater(format!("tenant `{}` is not configured", delivery.tenant), None);
            };
            let ctx = CallContext {
                tenant: tenant.name.clone(),
                delivery_id: delivery.delivery_id.clone(),
                attempt,
                lease: Some(lease.clone()),
            };
            // While a canary runs, the ticket's version: the same one for all its events.
            let serving = tenant.serving(Some(&delivery.ticket));
            let result = registry
                .runtime()
                .call_incoming(serving.adapter, serving.host.clone(), serving.instances, ctx, &event)
                .await;
            match result {
                Ok(()) => Attempt::Delivered,
                Err(e @ CallError::CircuitOpen(left_ms)) => {
                    Attempt::NotMade(Duration::from_millis(left_ms), e.to_string())
                }
                Err(CallError::RetryLater { reason, after }) => {
                    Attempt::RetryLater(CallError::RetryLater { reason, after }.to_string(), after)
                }
                Err(e @ (CallError::Timeout(_) | CallError::Instantiate(_))) => {
                    Attempt::RetryLater(e.to_string(), None)
                }
                Err(e @ (CallError::Permanent(_) | CallError::Trapped(_) | CallError::LimitExceeded(_))) => {
                    match serving.arm {
                        Arm::Current => Attempt::Permanent(e.to_string()),
                        // A canary's failure is its own, not the event's: the event waits in its
                        // ticket's order for the next attempt, made by the current version once
                        // the canary is rolled back (or by the canary, until the retries run out).
                        Arm::Canary => Attempt::RetryLater(format!("{e} (on the canary version; retried)"), None),
                    }
                }
            }
        }
        Direction::ToThreeDolphins => {
            let event: ThreeDolphinsEvent = match serde_json::from_str(&delivery.payload) {
                Ok(event) => event,
                Err(e) => return Attempt::Permanent(format!("stored event is unreadable: {e}")),
            };
            if lease.passed() {
                return Attempt::LeaseLost;
            }
            match registry
                .services()
                .three_dolphins
                .post_event(&event, &delivery.delivery_id)
                .await
            {
                Ok(()) => Attempt::Delivered,
                Err(e @ ThreeDolphinsError::Unavailable(_)) => Attempt::RetryLater(e.to_string(), None),
                Err(e) => Attempt::Permanent(e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_hint_holds_the_next_attempt_back_but_never_shortens_it() {
        assert_eq!(retry_wait(2_000, None), 2_000);
        assert_eq!(retry_wait(2_000, Some(Duration::from_secs(30))), 30_000);
        assert_eq!(retry_wait(45_000, Some(Duration::from_secs(30))), 45_000);
        assert_eq!(retry_wait(0, Some(Duration::from_secs(24 * 60 * 60))), 3_600_000);
    }
}
