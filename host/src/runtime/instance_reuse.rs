//! Opt-in reuse of a tenant's adapter instances between calls (`[tenants.instance_reuse]`).
//!
//! By default every call instantiates the adapter afresh, so nothing one call leaves in the
//! guest's memory reaches the next. For an interpreter (Python, JavaScript) a fresh instance is
//! most of a call's cost. A tenant that opts in keeps up to `idle` instances of its current
//! adapter version between calls, each for at most `max_calls` calls. Only calls of the same
//! tenant and the same version share an instance, and a call that ends any other way than with
//! the adapter's own answer (a trap, a limit, a timeout) takes its instance with it.

use std::sync::{Arc, Mutex};

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
    /// Declared last, so dropped after the store: the slot is free only once the instance is.
    pub _slot: OwnedSemaphorePermit,
}

/// The instances one tenant's adapter version keeps between calls.
pub struct InstanceReuse {
    idle: usize,
    max_calls: u32,
    /// Instances waiting for a call, each with its share of the runtime's parking places.
    parked: Mutex<Vec<(LiveInstance, OwnedSemaphorePermit)>>,
}

impl InstanceReuse {
    /// Keeps what `config` allows (nothing when `idle` is 0).
    pub fn new(config: &InstanceReuseConfig) -> InstanceReuse {
        InstanceReuse {
            idle: config.idle,
            max_calls: config.max_calls,
            parked: Mutex::default(),
        }
    }

    /// The most recently used idle instance (its memory the likeliest to be in cache), if any.
    pub(super) fn take(&self) -> Option<LiveInstance> {
        let (instance, _place) = self.parked.lock().expect("parked instances lock").pop()?;
        Some(instance)
    }

    /// Keeps `instance` for a later call if it may serve more, there is room for it here, and
    /// the runtime has a parking place left (`places`: idle instances hold pool slots, and
    /// tenants' idle instances together must leave slots for everyone's fresh ones). Otherwise
    /// it is dropped, and its slot freed.
    pub(super) fn give_back(&self, instance: LiveInstance, places: &Arc<Semaphore>) {
        if instance.calls >= self.max_calls {
            return;
        }
        let mut parked = self.parked.lock().expect("parked instances lock");
        if parked.len() >= self.idle {
            return;
        }
        if let Ok(place) = places.clone().try_acquire_owned() {
            parked.push((instance, place));
        }
    }
}
