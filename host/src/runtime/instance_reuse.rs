//! Opt-in reuse of a tenant's adapter instances between calls (`[tenants.instance_reuse]`).
//!
//! By default every call instantiates the adapter afresh, so nothing one call leaves in the
//! guest's memory reaches the next. For an interpreter (Python, JavaScript) a fresh instance is
//! most of a call's cost. A tenant that opts in keeps up to `idle` instances of its current
//! adapter version between calls, each for at most `max_calls` calls. Only calls of the same
//! tenant and the same version share an instance, and a call that ends any other way than with
//! the adapter's own answer (a trap, a limit, a timeout) takes its instance with it.
//!
//! What the guest holds in the host outside its memory is bounded too: an instance holding more
//! WASI resources after a call than after its first one (handles it opened and forgot) is not
//! kept, and a kept instance that waits `idle_ms` for a call is dropped, freeing its pool slot.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::CallState;
use super::worlds::Adapter;
use crate::config::InstanceReuseConfig;

/// An instantiated adapter with the instance-pool slot it holds.
pub(super) struct LiveInstance {
    pub store: wasmtime::Store<CallState>,
    pub adapter: Adapter,
    /// Calls it has served.
    pub calls: u32,
    /// The WASI resources it held after its first call: more after a later one means the guest
    /// leaks them, and it is not kept.
    pub resources_after_first: Option<usize>,
    /// Declared last, so dropped after the store: the slot is free only once the instance is.
    pub _slot: OwnedSemaphorePermit,
}

/// An idle instance, with its share of the runtime's parking places and since when it waits.
struct Parked {
    instance: LiveInstance,
    _place: OwnedSemaphorePermit,
    since: Instant,
}

/// The instances one tenant's adapter version keeps between calls.
pub struct InstanceReuse {
    idle: usize,
    max_calls: u32,
    idle_for: Duration,
    /// Instances waiting for a call, the most recently used last.
    parked: Mutex<Vec<Parked>>,
}

impl InstanceReuse {
    /// Keeps what `config` allows (nothing when `idle` is 0). When it keeps instances and a
    /// tokio runtime is at hand, a task drops those idle for `idle_ms` until this is dropped.
    pub fn new(config: &InstanceReuseConfig) -> Arc<InstanceReuse> {
        let reuse = Arc::new(InstanceReuse {
            idle: config.idle,
            max_calls: config.max_calls,
            idle_for: Duration::from_millis(config.idle_ms),
            parked: Mutex::default(),
        });
        if reuse.idle > 0
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(expire_idle(Arc::downgrade(&reuse), reuse.idle_for));
        }
        reuse
    }

    /// The most recently used idle instance (its memory the likeliest to be in cache), if any
    /// has not waited too long.
    pub(super) fn take(&self) -> Option<LiveInstance> {
        drop(self.expire());
        let parked = self.parked.lock().expect("parked instances lock").pop()?;
        Some(parked.instance)
    }

    /// Keeps `instance` for a later call if it may serve more, holds no more WASI resources than
    /// after its first call, there is room for it here, and the runtime has a parking place
    /// left (`places`: idle instances hold pool slots, and tenants' idle instances together
    /// must leave slots for everyone's fresh ones). Otherwise it is dropped, and its slot freed.
    pub(super) fn give_back(&self, mut instance: LiveInstance, places: &Arc<Semaphore>) {
        if instance.calls >= self.max_calls {
            return;
        }
        let held = instance.store.data_mut().resources_held();
        match instance.resources_after_first {
            None => instance.resources_after_first = Some(held),
            Some(first) if held > first => return,
            Some(_) => {}
        }
        let mut parked = self.parked.lock().expect("parked instances lock");
        if parked.len() >= self.idle {
            return;
        }
        if let Ok(place) = places.clone().try_acquire_owned() {
            parked.push(Parked {
                instance,
                _place: place,
                since: Instant::now(),
            });
        }
    }

    /// Takes out the instances that waited `idle_ms` or more, for the caller to drop once the
    /// lock is released.
    fn expire(&self) -> Vec<Parked> {
        let mut parked = self.parked.lock().expect("parked instances lock");
        let now = Instant::now();
        // Parked in order of use: the expired ones are first.
        let fresh = parked
            .iter()
            .position(|p| now.duration_since(p.since) < self.idle_for)
            .unwrap_or(parked.len());
        parked.drain(..fresh).collect()
    }
}

/// Drops `reuse`'s instances idle for `idle_for`, checking a few times per `idle_for`, until
/// `reuse` is gone.
async fn expire_idle(reuse: Weak<InstanceReuse>, idle_for: Duration) {
    let every = (idle_for / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    loop {
        tokio::time::sleep(every).await;
        let Some(reuse) = reuse.upgrade() else {
            return;
        };
        let expired = reuse.expire();
        drop(reuse);
        if !expired.is_empty() {
            // Dropping a store resets its memories: not on a thread serving requests.
            drop(tokio::task::spawn_blocking(move || drop(expired)));
        }
    }
}
