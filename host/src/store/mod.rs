//! Persistence: the [`Store`] trait, the types it speaks, and its implementations: the embedded
//! [`SqliteStore`] (the default) and [`PostgresStore`] (`[store] url`), which several bridge
//! processes may share.
//!
//! The outbox's rules live in what the trait promises: an accepted event is on disk before the
//! call returns; a delivery is *claimed* (its attempt counted and a lease set) before it runs, so
//! a crash or a failed outcome write can neither re-run it sooner than the lease nor reuse its
//! attempt number; outcomes are recorded only against the attempt that claimed it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::clock;

mod postgres;
mod replicas;
mod server_lock;
mod sqlite;
#[cfg(test)]
mod suite;
mod versions;

pub use postgres::PostgresStore;
pub use replicas::{FORGET_AFTER, ReplicaStatus, STALE_AFTER, ServedAdapter};
pub use server_lock::ServerLock;
pub use sqlite::{CommitMode, SqliteStore};
#[cfg(test)]
pub(crate) use versions::test_version;
pub use versions::{
    ArmFigures, CanaryEnd, CanaryFigures, CanaryOutcome, CanaryVersion, DeploymentChange, NotTheCanary, RollbackTarget,
    SharedDeployments, StoredVersion, TenantVersions, is_content_hash,
};

/// Errors a caller of the store acts on; anything else is a failure to retry later.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum StoreError {
    /// The writer's queue is full: the store is not keeping up (or is wedged). Refuse new work
    /// and let the client retry.
    #[error("the store's write queue is full")]
    Busy,
    /// The writer thread has stopped.
    #[error("the store writer has stopped")]
    Stopped,
}

/// What the bridge remembers of a ticket from its Incoming events, to complete the Outgoing and
/// Command events an adapter produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketInfo {
    pub channel: String,
    pub customer_name: String,
    /// The 3Dolphins contact the ticket is with: an adapter of the ticket's owner may look it up.
    pub contact_id: String,
}

/// Which way a delivery goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// An Incoming event, delivered through the tenant's adapter to the vendor.
    ToVendor,
    /// An Outgoing or Command event, posted to 3Dolphins.
    #[serde(rename = "to_3dolphins")]
    ToThreeDolphins,
}

impl Direction {
    /// The name stored, logged and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::ToVendor => "to_vendor",
            Direction::ToThreeDolphins => "to_3dolphins",
        }
    }

    fn parse(text: &str) -> Direction {
        if text == "to_vendor" {
            Direction::ToVendor
        } else {
            Direction::ToThreeDolphins
        }
    }
}

/// An event to persist before it is acknowledged.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub delivery_id: String,
    /// The tenant whose adapter (or 3Dolphins owner) it is delivered for.
    pub tenant: String,
    /// The 3Dolphins owner of the ticket. Order is kept per (owner, direction, ticket), so a
    /// ticket re-routed to another tenant by a reload still gets its events in order.
    pub owner: String,
    pub direction: Direction,
    /// Events of one (owner, direction, ticket) are delivered in the order accepted.
    pub ticket: String,
    /// The event as JSON.
    pub payload: String,
    /// When set, a second delivery with the same key (per tenant) inside the idempotency window
    /// is not stored; the first one's id is returned instead.
    pub idempotency_key: Option<String>,
    /// The vendor's own id of the event (a webhook's, 0.2 world's `dedupe-key`): in
    /// [`Store::accept_webhook`], a delivery whose key its tenant stored within the window is
    /// not stored (the first one's id is returned instead), and the key is stored with the
    /// delivery in the same transaction. Unused by [`Store::enqueue`].
    pub event_key: Option<String>,
    /// What to remember of `owner`'s `ticket` (its channel, customer and contact: what scopes and
    /// answers adapters' look-ups), in the same transaction: an Incoming event costs one commit.
    pub ticket_info: Option<TicketInfo>,
    /// The W3C `traceparent` of the span that accepted it (none when traces are off): every
    /// attempt, on any replica and however late, joins that trace.
    pub trace_context: Option<String>,
}

/// The answer to [`Store::enqueue`] for one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub delivery_id: String,
    /// True when an earlier delivery with the same idempotency key was found.
    pub duplicate: bool,
}

/// A webhook's answer, kept so a vendor's retry of the same webhook is answered as the first was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The answer to [`Store::accept_webhook`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAccepted {
    /// The webhook's events were stored.
    New(Vec<Accepted>),
    /// The same webhook was stored before: nothing new was stored; this was its answer.
    Duplicate(StoredResponse),
}

/// A stored delivery.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Acceptance order.
    pub seq: i64,
    pub delivery_id: String,
    pub tenant: String,
    pub owner: String,
    pub direction: Direction,
    pub ticket: String,
    pub payload: String,
    /// Attempts started so far (counted when claimed); the next one is `attempts + 1`.
    pub attempts: u32,
    /// `attempts` when the delivery was last replayed: the retry schedule starts again there.
    pub retry_base: u32,
    pub state: String,
    pub last_error: Option<String>,
    /// Epoch milliseconds.
    pub created_at: i64,
    /// While leased, when the lease ends: the delivery is due again then, to any process.
    pub next_attempt_at: i64,
    /// The replica holding the delivery's lease (an attempt running), if any.
    pub lease_owner: Option<String>,
    /// The W3C `traceparent` of its acceptance (see [`NewDelivery::trace_context`]).
    pub trace_context: Option<String>,
}

impl Delivery {
    /// The key deliveries are ordered by.
    pub fn order_key(&self) -> OrderKey {
        (self.owner.clone(), self.direction, self.ticket.clone())
    }
}

/// (owner, direction, ticket): deliveries with the same key are delivered one at a time, in
/// acceptance order.
pub type OrderKey = (String, Direction, String);

/// A claim's hold on a delivery: which process holds it, from when and until when (epoch ms,
/// in the store's clock: [`Store::now_ms`]). While it holds, no other claim of the delivery (or
/// of another event of its ticket) succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The holder: a process's replica id.
    pub owner: String,
    /// When the lease is taken: a claim succeeds only if the delivery's previous lease (or
    /// retry time) has passed by then.
    pub from_ms: i64,
    pub until_ms: i64,
}

impl Lease {
    /// A lease of `owner` taken at `from_ms` for `length`.
    pub fn taken_at(owner: &str, from_ms: i64, length: Duration) -> Lease {
        Lease {
            owner: owner.to_string(),
            from_ms,
            until_ms: from_ms + length.as_millis() as i64,
        }
    }
}

/// What became of an attempt, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Failed; try again at this time (epoch ms).
    RetryAt(i64, String),
    /// Failed for good: a dead letter.
    Dead(String),
    /// Not attempted after all (the adapter was resting): the claim's attempt is given back,
    /// and the delivery is due again at this time (epoch ms).
    NotAttempted(i64, String),
}

/// Which dead letters to replay, list or purge.
#[derive(Debug, Clone)]
pub enum DeadLetterFilter {
    One(String),
    Tenant(String),
    All,
}

/// Counts of deliveries by state.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct OutboxStats {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
}

/// One tenant's pending deliveries: how many, and since when the oldest waits.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TenantBacklog {
    pub tenant: String,
    pub pending: u64,
    /// When the oldest pending delivery was accepted (epoch ms).
    pub oldest_created_at: i64,
}

/// One tenant's dead letters: how many wait for a replay or a purge.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TenantDeadLetters {
    pub tenant: String,
    pub dead: u64,
}

/// What a purge deletes: rows older than these times (epoch ms).
#[derive(Debug, Clone, Copy)]
pub struct PurgeBefore {
    pub delivered: i64,
    pub idempotency_keys: i64,
    pub webhook_keys: i64,
    pub tickets: i64,
    /// Dead letters are kept until replayed unless a retention is configured.
    pub dead_letters: Option<i64>,
}

/// The answer to [`Store::kv_set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvWrite {
    Stored,
    /// Nothing was stored: the tenant's quota would be exceeded.
    OverQuota,
}

/// What a store round trip found; `/readyz` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StoreHealth {
    /// SQLite: the writer connection's `PRAGMA synchronous` (`full` is what the guarantee
    /// needs). PostgreSQL: the session's `synchronous_commit` (`on` or stronger).
    pub synchronous: String,
    /// SQLite: `PRAGMA journal_mode` (`wal`). PostgreSQL: `wal_level=` the server's.
    pub journal_mode: String,
    /// Settings found that can lose an acknowledged event (PostgreSQL: `fsync=off`, an
    /// asynchronous standby), in words; empty when none.
    pub warnings: Vec<String>,
    /// PostgreSQL: the database's clock minus this process's, as last measured (leases and due
    /// times follow the database's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_offset_ms: Option<i64>,
    /// PostgreSQL: how the connections to the database are protected (plain or TLS, and what of
    /// the server's certificate is checked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
}

/// The bridge's persistence: embedded ([`SqliteStore`]) or shared ([`PostgresStore`]); the
/// suite in `store::suite` holds both to the same promises.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Persists deliveries durably (committed to disk) before returning. A delivery that fails
    /// to store leaves nothing behind (not even its idempotency key); the others still commit.
    async fn enqueue(
        &self,
        deliveries: Vec<NewDelivery>,
        idempotency_window: Duration,
    ) -> anyhow::Result<Vec<Accepted>>;
    /// Persists a webhook's deliveries together with its keys and answer, in one transaction.
    /// A delivery whose `event_key` the tenant stored within `window` is not stored: its
    /// [`Accepted`] names the delivery first stored for the key, as a duplicate.
    /// If any of the keys was stored within `window`, nothing is stored and that first answer is
    /// returned.
    async fn accept_webhook(
        &self,
        tenant: &str,
        keys: &[String],
        response: StoredResponse,
        deliveries: Vec<NewDelivery>,
        window: Duration,
    ) -> anyhow::Result<WebhookAccepted>;
    /// The answer stored within `window` for any of a webhook's keys.
    async fn webhook_response(
        &self,
        tenant: &str,
        keys: &[String],
        window: Duration,
    ) -> anyhow::Result<Option<StoredResponse>>;
    /// Whether other processes may deliver from this store too (PostgreSQL).
    fn is_shared(&self) -> bool {
        false
    }
    /// Now, in epoch milliseconds, on the clock the store's times are compared with: every
    /// replica of a shared store must read the same clock, or one whose clock is wrong claims
    /// leases that have not ended for the others.
    fn now_ms(&self) -> i64 {
        clock::now_ms()
    }
    /// Up to `limit` deliveries that are due at `now_ms` and first pending of their order key,
    /// leaving out those of `skip_tenants`; earliest first.
    async fn due(&self, now_ms: i64, limit: usize, skip_tenants: &[String]) -> anyhow::Result<Vec<Delivery>>;
    /// The earliest `next_attempt_at` after `now_ms` of any delivery first of its order key:
    /// when something becomes due next.
    async fn next_due_after(&self, now_ms: i64) -> anyhow::Result<Option<i64>>;
    /// Claims a delivery for an attempt: if it is still pending with `attempts` attempts, due by
    /// `lease.from_ms` (any earlier lease ended), and no other event of its ticket is leased,
    /// counts the new attempt and leases it to `lease.owner` until `lease.until_ms` (when it is
    /// due again, to any process, should the lease be neither renewed nor released). False when
    /// another attempt, in this process or another, got there first or still holds the ticket.
    async fn claim(&self, seq: i64, attempts: u32, lease: &Lease) -> anyhow::Result<bool>;
    /// Extends the lease of attempt `attempt` to `lease.until_ms`; false (nothing written) when
    /// `lease.owner` no longer holds it (it expired and was claimed again, or was released).
    async fn renew(&self, seq: i64, attempt: u32, lease: &Lease) -> anyhow::Result<bool>;
    /// Makes every leased delivery due now (its attempt stays counted); returns how many. Only
    /// for a store no other process delivers from: the embedded store under its server lock.
    async fn release_all_leases(&self) -> anyhow::Result<usize>;
    /// Releases the lease of attempt `attempt` with its outcome; false (nothing written) when the
    /// delivery is no longer pending at that attempt.
    async fn record(&self, seq: i64, attempt: u32, outcome: Outcome) -> anyhow::Result<bool>;
    async fn dead_letters(&self, tenant: Option<&str>, limit: usize) -> anyhow::Result<Vec<Delivery>>;
    async fn delivery(&self, delivery_id: &str) -> anyhow::Result<Option<Delivery>>;
    /// Makes matching dead letters pending again, moved to `to_tenant` when given; attempts go
    /// on counting and the retry schedule starts again. Returns how many.
    async fn replay(&self, filter: DeadLetterFilter, to_tenant: Option<&str>) -> anyhow::Result<usize>;
    /// Deletes dead letters matching `filter` that died before `before_ms`; returns how many.
    async fn purge_dead_letters(&self, filter: DeadLetterFilter, before_ms: i64) -> anyhow::Result<usize>;
    /// Deletes what is older than `before` says, in small batches; returns the events deleted.
    async fn purge(&self, before: PurgeBefore) -> anyhow::Result<usize>;
    async fn stats(&self) -> anyhow::Result<OutboxStats>;
    /// Pending deliveries per tenant (tenants with none left out), in tenant order.
    async fn backlog_by_tenant(&self) -> anyhow::Result<Vec<TenantBacklog>>;
    /// Dead letters per tenant (tenants with none left out), in tenant order.
    async fn dead_letters_by_tenant(&self) -> anyhow::Result<Vec<TenantDeadLetters>>;
    /// A round trip through the writer that writes (a few KiB, as an event would) and commits.
    async fn health(&self) -> anyhow::Result<StoreHealth>;
    /// How long ago the writer last committed (or found nothing to do), if it ever has.
    fn last_commit_age(&self) -> Option<Duration>;
    /// Notified when another process may have made work due (PostgreSQL: `LISTEN/NOTIFY`), so
    /// dispatchers need not wait for their next poll; `None` for a store one process owns.
    fn due_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
    /// Deployed adapter versions shared by every process of the store (PostgreSQL); `None` for
    /// a store one process owns, whose versions stay in the local `[deployments]` folder.
    fn shared_deployments(&self) -> Option<&dyn SharedDeployments> {
        None
    }

    async fn kv_get(&self, tenant: &str, key: &str) -> anyhow::Result<Option<Vec<u8>>>;
    /// Stores `value` under `key` unless the tenant's keys and values would then take more
    /// than `quota` bytes.
    async fn kv_set(&self, tenant: &str, key: &str, value: Vec<u8>, quota: u64) -> anyhow::Result<KvWrite>;
    async fn kv_delete(&self, tenant: &str, key: &str) -> anyhow::Result<()>;
    /// What is remembered of `owner`'s `ticket`; `None` when the owner has not seen it (or it was
    /// forgotten after `delivery.ticket_retention_ms`).
    async fn ticket(&self, owner: &str, ticket: &str) -> anyhow::Result<Option<TicketInfo>>;
    /// Whether `contact_id` is the contact of one of the tickets remembered for `owner`.
    async fn is_contact_of_owner(&self, owner: &str, contact_id: &str) -> anyhow::Result<bool>;
    /// Writes `replica`'s row of the replica directory (its `stale` is ignored), and deletes the
    /// rows of replicas not seen for [`FORGET_AFTER`].
    async fn heartbeat(&self, replica: &ReplicaStatus) -> anyhow::Result<()>;
    /// Every replica of the directory, by id, each marked `stale` when not seen for
    /// [`STALE_AFTER`].
    async fn replicas(&self) -> anyhow::Result<Vec<ReplicaStatus>>;
}

/// The lock file that keeps a second server off a store: `{store}.lock`.
pub fn lock_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}
