//! Durable delivery: events are persisted before they are acknowledged, then delivered by
//! workers in order per ticket, retried with backoff and full jitter, and dead-lettered when
//! they fail for good.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::DeliveryConfig;
use crate::contract::{IncomingEvent, ThreeDolphinsEvent};
use crate::metrics::{METRICS, Metrics};
use crate::registry::AdapterRegistry;
use crate::runtime::{CallContext, CallError};
use crate::store::{Accepted, Delivery, Direction, NewDelivery, Store, now_ms};
use crate::three_dolphins::ThreeDolphinsError;

/// What became of one attempt.
enum Attempt {
    Delivered,
    RetryLater(String),
    Permanent(String),
}

/// The outbox: accepts events durably and runs their delivery.
pub struct Outbox {
    store: Arc<dyn Store>,
    config: DeliveryConfig,
    wake: Notify,
    /// Order keys with a delivery running now: their next event waits.
    in_flight: Mutex<HashSet<(String, Direction, String)>>,
}

impl Outbox {
    /// An outbox over `store`.
    pub fn new(store: Arc<dyn Store>, config: DeliveryConfig) -> Arc<Outbox> {
        Arc::new(Outbox {
            store,
            config,
            wake: Notify::new(),
            in_flight: Mutex::new(HashSet::new()),
        })
    }

    /// The store behind it.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Persists `deliveries` (committed to disk) and wakes the workers.
    pub async fn accept(&self, deliveries: Vec<NewDelivery>) -> anyhow::Result<Vec<Accepted>> {
        let window = Duration::from_millis(self.config.idempotency_window_ms);
        let accepted = self.store.enqueue(deliveries, window).await?;
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
        let workers = Arc::new(Semaphore::new(self.config.workers.max(1)));
        let tasks = TaskTracker::new();
        tasks.spawn(self.clone().purge_loop(shutdown.clone()));
        while !shutdown.is_cancelled() {
            let next_wait = match self.dispatch(&registry, &workers, &tasks).await {
                Ok(wait) => wait,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "outbox dispatch failed; retrying");
                    Duration::from_millis(500)
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

    /// Starts every due delivery it has a worker for; returns how long to sleep at most.
    async fn dispatch(
        self: &Arc<Self>,
        registry: &Arc<AdapterRegistry>,
        workers: &Arc<Semaphore>,
        tasks: &TaskTracker,
    ) -> anyhow::Result<Duration> {
        let free = workers.available_permits();
        if free == 0 {
            return Ok(Duration::from_millis(1_000));
        }
        let busy = self.in_flight.lock().expect("in-flight lock").len();
        // Read past what the workers can take, so that a busy tenant's backlog does not hide
        // other tenants' due deliveries.
        let due = self.store.due(now_ms(), free + busy + 256).await?;
        let cap = self.config.max_in_flight_per_tenant.max(1);
        for delivery in due {
            let tenant_busy = {
                let in_flight = self.in_flight.lock().expect("in-flight lock");
                in_flight
                    .iter()
                    .filter(|(tenant, _, _)| *tenant == delivery.tenant)
                    .count()
            };
            if tenant_busy >= cap {
                continue;
            }
            let key = delivery.order_key();
            if !self.in_flight.lock().expect("in-flight lock").insert(key.clone()) {
                continue;
            }
            let Ok(permit) = workers.clone().try_acquire_owned() else {
                self.in_flight.lock().expect("in-flight lock").remove(&key);
                break;
            };
            let (outbox, registry) = (self.clone(), registry.clone());
            tasks.spawn(async move {
                // `due` may have read this delivery just before an attempt that was running
                // recorded its outcome; the writer has the last word on whether it is still due.
                match outbox.store.still_due(delivery.seq, delivery.attempts).await {
                    Ok(true) => outbox.deliver(&registry, delivery).await,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = format!("{e:#}"), "cannot check a delivery; it stays pending"),
                }
                outbox.in_flight.lock().expect("in-flight lock").remove(&key);
                drop(permit);
                outbox.wake.notify_one();
            });
        }
        let wait = match self.store.next_due_at().await? {
            Some(at) => Duration::from_millis((at - now_ms()).clamp(1, 1_000) as u64),
            // Nothing pending: an occasional look catches replays made by another process.
            None => Duration::from_millis(1_000),
        };
        Ok(wait)
    }

    /// Makes one attempt and records its outcome.
    async fn deliver(&self, registry: &AdapterRegistry, delivery: Delivery) {
        let attempt = delivery.attempts + 1;
        let outcome = attempt_delivery(registry, &delivery, attempt).await;
        let label = match &outcome {
            Attempt::Delivered => "delivered",
            Attempt::RetryLater(_) if (attempt as usize) <= self.config.retry_schedule_ms.len() => "retry",
            _ => "dead",
        };
        Metrics::count(&METRICS.deliveries, &delivery.tenant, label);
        let recorded = match outcome {
            Attempt::Delivered => {
                tracing::info!(tenant = %delivery.tenant, delivery_id = %delivery.delivery_id,
                    ticket = %delivery.ticket, attempt, direction = ?delivery.direction, "delivered");
                self.store.mark_delivered(delivery.seq).await
            }
            Attempt::RetryLater(error) => match self.config.retry_schedule_ms.get(attempt as usize - 1) {
                Some(&max_wait) => {
                    let wait = rand::rng().random_range(0..=max_wait) as i64;
                    tracing::warn!(tenant = %delivery.tenant, delivery_id = %delivery.delivery_id,
                        ticket = %delivery.ticket, attempt, retry_in_ms = wait, %error, "delivery failed; will retry");
                    self.store.retry_at(delivery.seq, now_ms() + wait, &error).await
                }
                None => {
                    let error = format!("gave up after {attempt} attempts: {error}");
                    tracing::error!(tenant = %delivery.tenant, delivery_id = %delivery.delivery_id,
                        ticket = %delivery.ticket, %error, "dead letter");
                    self.store.dead_letter(delivery.seq, &error).await
                }
            },
            Attempt::Permanent(error) => {
                tracing::error!(tenant = %delivery.tenant, delivery_id = %delivery.delivery_id,
                    ticket = %delivery.ticket, attempt, %error, "dead letter");
                self.store.dead_letter(delivery.seq, &error).await
            }
        };
        if let Err(e) = recorded {
            // The delivery stays pending and is attempted again: at least once.
            tracing::error!(delivery_id = %delivery.delivery_id, error = format!("{e:#}"), "cannot record a delivery outcome");
        }
    }

    /// Deletes old delivered events and idempotency keys, every minute.
    async fn purge_loop(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = shutdown.cancelled() => return,
            }
            let now = now_ms();
            let delivered_before = now - self.config.retention_ms as i64;
            let keys_before = now - self.config.idempotency_window_ms as i64;
            match self.store.purge(delivered_before, keys_before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "purged delivered events past retention"),
                Err(e) => tracing::warn!(error = format!("{e:#}"), "purge failed"),
            }
        }
    }
}

/// Runs one attempt: the adapter for Incoming events, a POST for 3Dolphins events.
async fn attempt_delivery(registry: &AdapterRegistry, delivery: &Delivery, attempt: u32) -> Attempt {
    match delivery.direction {
        Direction::ToVendor => {
            let event: IncomingEvent = match serde_json::from_str(&delivery.payload) {
                Ok(event) => event,
                Err(e) => return Attempt::Permanent(format!("stored event is unreadable: {e}")),
            };
            let tenants = registry.snapshot();
            let Some(tenant) = tenants.by_name(&delivery.tenant) else {
                return Attempt::RetryLater(format!("tenant `{}` is not configured", delivery.tenant));
            };
            let ctx = CallContext {
                tenant: tenant.name.clone(),
                delivery_id: delivery.delivery_id.clone(),
                attempt,
            };
            let result = registry
                .runtime()
                .call_incoming(&tenant.adapter, tenant.host.clone(), ctx, &event)
                .await;
            match result {
                Ok(()) => Attempt::Delivered,
                Err(
                    e @ (CallError::RetryLater(_)
                    | CallError::Timeout(_)
                    | CallError::Instantiate(_)
                    | CallError::CircuitOpen(_)),
                ) => Attempt::RetryLater(e.to_string()),
                Err(e @ (CallError::Permanent(_) | CallError::Trapped(_) | CallError::LimitExceeded(_))) => {
                    Attempt::Permanent(e.to_string())
                }
            }
        }
        Direction::ToThreeDolphins => {
            let event: ThreeDolphinsEvent = match serde_json::from_str(&delivery.payload) {
                Ok(event) => event,
                Err(e) => return Attempt::Permanent(format!("stored event is unreadable: {e}")),
            };
            match registry
                .services()
                .three_dolphins
                .post_event(&event, &delivery.delivery_id)
                .await
            {
                Ok(()) => Attempt::Delivered,
                Err(e @ ThreeDolphinsError::Unavailable(_)) => Attempt::RetryLater(e.to_string()),
                Err(e) => Attempt::Permanent(e.to_string()),
            }
        }
    }
}
