//! Prometheus metrics: one registry for the process and the few helpers that record into it.
//! Labels carry tenant names and outcomes, never secrets or message content.

use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a per-tenant outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantOutcome {
    pub tenant: String,
    pub outcome: String,
}

/// Labels of a per-tenant figure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabel {
    pub tenant: String,
}

/// Labels of a per-tenant, per-direction figure (`to_vendor`, `to_3dolphins`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantDirection {
    pub tenant: String,
    pub direction: String,
}

/// Labels of a per-replica figure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabel {
    pub replica: String,
}

/// One tenant's outbox as the store holds it, for the gauges read at each scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantOutbox {
    pub tenant: String,
    pub pending: u64,
    /// How long the oldest pending delivery has waited since it was accepted; 0 with none.
    pub oldest_pending_seconds: f64,
    pub dead: u64,
}

impl TenantOutbox {
    /// `tenant` with nothing pending and no dead letters.
    pub fn empty(tenant: &str) -> TenantOutbox {
        TenantOutbox {
            tenant: tenant.to_string(),
            pending: 0,
            oldest_pending_seconds: 0.0,
            dead: 0,
        }
    }
}

/// Every metric the bridge exports.
pub struct Metrics {
    registry: Registry,
    /// Incoming events by tenant and outcome (accepted, duplicate).
    pub incoming: Family<TenantOutcome, Counter>,
    /// Vendor webhooks answered, by tenant and outcome: `accepted` (the adapter ran and its
    /// answer was sent, after its events were stored), `duplicate` (a retry or replay of one
    /// answered before, given that answer again). Refused webhooks count in `refused`.
    pub webhooks: Family<TenantOutcome, Counter>,
    /// Requests refused before reaching a tenant, by reason (the JSON error code).
    pub refused: Family<TenantOutcome, Counter>,
    /// Delivery attempts by tenant and outcome (delivered, retry, dead; postponed: not made, the
    /// adapter was resting).
    pub deliveries: Family<TenantOutcome, Counter>,
    /// Adapter calls by tenant and outcome (ok, retry_later, permanent, trapped, limit, timeout).
    pub adapter_calls: Family<TenantOutcome, Counter>,
    /// Adapter reloads by tenant and outcome (loaded, rejected).
    pub reloads: Family<TenantOutcome, Counter>,
    /// Configuration reloads rejected as a whole.
    pub config_rejected: Counter,
    /// Adapter calls refused by an open circuit breaker, by tenant.
    pub circuit_open: Family<TenantOutcome, Counter>,
    /// CPU time adapters ran, by tenant (seconds).
    pub adapter_cpu: Family<TenantLabel, Counter<f64, AtomicU64>>,
    /// Per adapter call: how long it was ready to run but waited for an adapter thread, by
    /// tenant (seconds).
    pub adapter_wait: Family<TenantLabel, Histogram, fn() -> Histogram>,
    /// Passes of the delivery dispatcher (each reads what is due): an idle bridge makes about
    /// one a second.
    pub dispatches: Counter,
    /// Adapters' 3Dolphins look-ups by tenant and outcome: `found`, `not_found`, `failed`,
    /// `out_of_scope` (a ticket or contact not of the tenant's owner: answered not-found, 3Dolphins
    /// not asked) and `limit_exceeded` (past `limits.lookups`).
    pub lookups: Family<TenantOutcome, Counter>,
    /// Compiled adapters held in memory: one per distinct content the tenants run (a deploy's
    /// component joins only once it is accepted).
    pub adapters_compiled: Gauge,
    /// Adapter files read and hashed: at a reload, once per file; when listing versions, only
    /// for a file that changed since it was last hashed.
    pub adapter_file_hashes: Counter,
    /// Delivered events, from acceptance to the answer that delivered them, by tenant and
    /// direction (seconds): the delivery SLO.
    pub delivery_latency: Family<TenantDirection, Histogram, fn() -> Histogram>,
    /// Pending deliveries by tenant, read from the store at each scrape (on PostgreSQL the
    /// shared store: every replica reports the same).
    pub outbox_pending: Family<TenantLabel, Gauge>,
    /// How long each tenant's oldest pending delivery has waited since it was accepted
    /// (seconds), read from the store at each scrape.
    pub outbox_oldest_pending: Family<TenantLabel, Gauge<f64, AtomicU64>>,
    /// Dead letters by tenant (waiting for a replay or a purge), read from the store at each
    /// scrape.
    pub dead_letters: Family<TenantLabel, Gauge>,
    /// Seconds since each replica's last heartbeat in the store, read at each scrape (a replica
    /// past 30 s is stale: its leases are taken over).
    pub replica_heartbeat_age: Family<ReplicaLabel, Gauge<f64, AtomicU64>>,
}

/// The process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("dolphin_bridge");
        let incoming = Family::<TenantOutcome, Counter>::default();
        let webhooks = Family::<TenantOutcome, Counter>::default();
        let refused = Family::<TenantOutcome, Counter>::default();
        let deliveries = Family::<TenantOutcome, Counter>::default();
        let adapter_calls = Family::<TenantOutcome, Counter>::default();
        let reloads = Family::<TenantOutcome, Counter>::default();
        let config_rejected = Counter::default();
        let circuit_open = Family::<TenantOutcome, Counter>::default();
        let adapter_cpu = Family::<TenantLabel, Counter<f64, AtomicU64>>::default();
        // 50 us to about 26 s.
        let adapter_wait: Family<TenantLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_05, 4.0, 10)));
        registry.register(
            "incoming_events",
            "Incoming events by tenant and outcome",
            incoming.clone(),
        );
        registry.register(
            "webhooks",
            "Vendor webhooks answered, by tenant and outcome",
            webhooks.clone(),
        );
        registry.register("refused_requests", "Requests refused, by error code", refused.clone());
        registry.register(
            "delivery_attempts",
            "Delivery attempts by tenant and outcome",
            deliveries.clone(),
        );
        registry.register(
            "adapter_calls",
            "Adapter calls by tenant and outcome",
            adapter_calls.clone(),
        );
        registry.register(
            "adapter_reloads",
            "Adapter (re)loads by tenant and outcome",
            reloads.clone(),
        );
        registry.register(
            "config_reloads_rejected",
            "Configuration reloads rejected",
            config_rejected.clone(),
        );
        registry.register(
            "circuit_open",
            "Adapter calls refused by an open circuit breaker",
            circuit_open.clone(),
        );
        registry.register(
            "adapter_cpu_seconds",
            "CPU time adapters ran, by tenant",
            adapter_cpu.clone(),
        );
        registry.register(
            "adapter_wait_seconds",
            "Time adapter calls were ready to run but waited for an adapter thread, by tenant",
            adapter_wait.clone(),
        );
        let dispatches = Counter::default();
        registry.register(
            "outbox_dispatches",
            "Passes of the delivery dispatcher",
            dispatches.clone(),
        );
        let lookups = Family::<TenantOutcome, Counter>::default();
        registry.register(
            "three_dolphins_lookups",
            "Adapters' 3Dolphins look-ups by tenant and outcome",
            lookups.clone(),
        );
        let adapters_compiled = Gauge::default();
        registry.register(
            "adapters_compiled",
            "Compiled adapters held in memory",
            adapters_compiled.clone(),
        );
        let adapter_file_hashes = Counter::default();
        registry.register(
            "adapter_file_hashes",
            "Adapter files read and hashed",
            adapter_file_hashes.clone(),
        );
        // 10 ms to about 87 minutes: a delivery on the first attempt, and one after the retry
        // schedule's longest waits.
        let delivery_latency: Family<TenantDirection, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.01, 2.0, 20)));
        registry.register(
            "delivery_latency_seconds",
            "Delivered events from acceptance to delivery, by tenant and direction",
            delivery_latency.clone(),
        );
        let outbox_pending = Family::<TenantLabel, Gauge>::default();
        registry.register(
            "outbox_pending",
            "Pending deliveries by tenant, read from the store",
            outbox_pending.clone(),
        );
        let outbox_oldest_pending = Family::<TenantLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "outbox_oldest_pending_seconds",
            "Age of each tenant's oldest pending delivery, read from the store",
            outbox_oldest_pending.clone(),
        );
        let dead_letters = Family::<TenantLabel, Gauge>::default();
        registry.register(
            "dead_letters",
            "Dead letters by tenant, read from the store",
            dead_letters.clone(),
        );
        let replica_heartbeat_age = Family::<ReplicaLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "replica_heartbeat_age_seconds",
            "Seconds since each replica's last heartbeat, read from the store",
            replica_heartbeat_age.clone(),
        );
        Metrics {
            registry,
            replica_heartbeat_age,
            delivery_latency,
            outbox_pending,
            outbox_oldest_pending,
            dead_letters,
            adapters_compiled,
            adapter_file_hashes,
            incoming,
            webhooks,
            refused,
            deliveries,
            adapter_calls,
            reloads,
            config_rejected,
            circuit_open,
            adapter_cpu,
            adapter_wait,
            dispatches,
            lookups,
        }
    }

    /// Records how long one call of `tenant` waited for an adapter thread.
    pub fn observe_wait(tenant: &str, waited: Duration) {
        METRICS
            .adapter_wait
            .get_or_create(&TenantLabel {
                tenant: tenant.to_string(),
            })
            .observe(waited.as_secs_f64());
    }

    /// Adds `spent` to the CPU time of `tenant`'s adapter.
    pub fn add_cpu(tenant: &str, spent: Duration) {
        METRICS
            .adapter_cpu
            .get_or_create(&TenantLabel {
                tenant: tenant.to_string(),
            })
            .inc_by(spent.as_secs_f64());
    }

    /// Records one delivered event of `tenant` in `direction`, accepted `latency` ago.
    pub fn observe_delivered(tenant: &str, direction: &str, latency: Duration) {
        METRICS
            .delivery_latency
            .get_or_create(&TenantDirection {
                tenant: tenant.to_string(),
                direction: direction.to_string(),
            })
            .observe(latency.as_secs_f64());
    }

    /// Sets the outbox gauges to `outboxes`, the store's figures now; a tenant not among them is
    /// no longer reported.
    pub fn set_outboxes(&self, outboxes: &[TenantOutbox]) {
        self.outbox_pending.clear();
        self.outbox_oldest_pending.clear();
        self.dead_letters.clear();
        for outbox in outboxes {
            let label = TenantLabel {
                tenant: outbox.tenant.clone(),
            };
            self.outbox_pending.get_or_create(&label).set(outbox.pending as i64);
            self.outbox_oldest_pending
                .get_or_create(&label)
                .set(outbox.oldest_pending_seconds);
            self.dead_letters.get_or_create(&label).set(outbox.dead as i64);
        }
    }

    /// Sets the heartbeat ages to `ages` (replica id, seconds), the store's figures now.
    pub fn set_replica_ages(&self, ages: &[(String, f64)]) {
        self.replica_heartbeat_age.clear();
        for (replica, age) in ages {
            self.replica_heartbeat_age
                .get_or_create(&ReplicaLabel {
                    replica: replica.clone(),
                })
                .set(*age);
        }
    }

    /// Makes `tenant`'s counters that alerts watch exist at zero before their first event.
    pub fn seed_tenant(tenant: &str) {
        let _zero = METRICS.circuit_open.get_or_create(&TenantOutcome {
            tenant: tenant.to_string(),
            outcome: "refused".to_string(),
        });
    }

    /// Adds one to `family` for (`tenant`, `outcome`).
    pub fn count(family: &Family<TenantOutcome, Counter>, tenant: &str, outcome: &str) {
        family
            .get_or_create(&TenantOutcome {
                tenant: tenant.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String");
        text
    }
}
