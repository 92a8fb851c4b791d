//! `[delivery]`: how events are delivered (workers, retries, leases) and how long what the bridge
//! stores is kept.

use serde::Deserialize;

use super::{FieldError, invalid};

/// The shortest `[delivery] lease_ms`: a lease renewed more often than every 100 ms would be
/// mostly store writes.
const MIN_LEASE_MS: u64 = 300;

/// `[delivery]`: how events are delivered and kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Delivery attempts running at once (across all tickets); twice as many may be started,
    /// the others claimed ahead and waiting for their attempt.
    pub workers: usize,
    /// Delivery attempts of one tenant running at once (until the adapter has answered;
    /// recording the outcome is not counted), so a slow or misbehaving tenant cannot take every
    /// worker. As many more are claimed ahead while they run.
    pub max_in_flight_per_tenant: usize,
    /// Wait before each retry, in milliseconds; the length is the number of retries. Each wait
    /// is drawn uniformly from `0..=value` (full jitter).
    pub retry_schedule_ms: Vec<u64>,
    /// An identical Incoming body (or the same `Idempotency-Key`) within this window is answered
    /// with the first delivery id instead of being queued again.
    pub idempotency_window_ms: u64,
    /// Delivered events are deleted after this long.
    pub retention_ms: u64,
    /// How long in-flight deliveries may take to finish at shutdown.
    pub shutdown_grace_ms: u64,
    /// How long a vendor's webhook id is remembered, so that the vendor's retries of one webhook
    /// are answered as the first was and stored once. Vendors retry for a day or more
    /// (Standard Webhooks senders for about 27 hours), far past the signature tolerance.
    pub webhook_dedupe_window_ms: u64,
    /// What the bridge remembers of a ticket (channel, customer name) is deleted when the ticket
    /// has had no Incoming event for this long.
    pub ticket_retention_ms: u64,
    /// Dead letters are deleted this long after they died; unset (the default): kept until
    /// replayed or purged with `dead-letters purge`.
    pub dead_letter_retention_ms: Option<u64>,
    /// How long a claimed delivery is held for the process running its attempt; the holder
    /// renews it every third of this while the attempt runs. When a process dies mid-attempt,
    /// the delivery is due again, to any replica, at most this long after the last renewal.
    pub lease_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            workers: 32,
            max_in_flight_per_tenant: 8,
            // 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 3 h, 6 h, 12 h: about 23 hours in all.
            retry_schedule_ms: vec![
                5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000, 10_800_000, 21_600_000, 43_200_000,
            ],
            idempotency_window_ms: 120_000,
            retention_ms: 7 * 24 * 3_600_000,
            shutdown_grace_ms: 10_000,
            webhook_dedupe_window_ms: 3 * 24 * 3_600_000,
            ticket_retention_ms: 90 * 24 * 3_600_000,
            dead_letter_retention_ms: None,
            lease_ms: 15_000,
        }
    }
}

impl DeliveryConfig {
    pub(super) fn check(&self) -> Result<(), FieldError> {
        if self.lease_ms < MIN_LEASE_MS {
            return Err(invalid(
                "delivery.lease_ms",
                format!("must be at least {MIN_LEASE_MS} (it is renewed every third of it)"),
            ));
        }
        Ok(())
    }
}
