//! How many deploy uploads run at once. A deploy holds its component in memory (up to
//! `[deployments] max_bytes`) from the first byte read until it is compiled, its fixtures ran
//! and it is swapped in or rejected; without a bound, parallel slow uploads pin gigabytes. A
//! slot is taken before the body is read and held to the end: at most `max_uploads` in all and
//! `max_uploads_per_tenant` per tenant; past either the request is refused at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why an upload was refused a slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadRefused {
    #[error(
        "tenant `{tenant}` already has {limit} upload(s) under way, the limit \
         [deployments] max_uploads_per_tenant; retry when it ends"
    )]
    TenantBusy { tenant: String, limit: usize },
    #[error("the bridge already takes {limit} upload(s) at once, the limit [deployments] max_uploads; retry later")]
    AllBusy { limit: usize },
}

/// The slots of uploads under way.
pub struct UploadSlots {
    all: Arc<Semaphore>,
    max: usize,
    per_tenant: usize,
    /// Only tenants with an upload under way have an entry.
    by_tenant: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// One upload's slot, given back when dropped.
pub struct UploadSlot {
    _tenant: OwnedSemaphorePermit,
    _all: OwnedSemaphorePermit,
}

impl UploadSlots {
    /// `max` uploads at once in all, `per_tenant` for one tenant (both at least 1).
    pub fn new(max: usize, per_tenant: usize) -> UploadSlots {
        UploadSlots {
            all: Arc::new(Semaphore::new(max)),
            max,
            per_tenant,
            by_tenant: Mutex::default(),
        }
    }

    /// A slot for an upload to `tenant`, or why there is none now.
    pub fn try_take(&self, tenant: &str) -> Result<UploadSlot, UploadRefused> {
        let tenant_slots = {
            let mut by_tenant = self.by_tenant.lock().expect("upload slots lock");
            // A permit holds its semaphore: one nobody else holds has no upload under way.
            by_tenant.retain(|_, slots| Arc::strong_count(slots) > 1);
            by_tenant
                .entry(tenant.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant)))
                .clone()
        };
        let tenant_slot = tenant_slots
            .try_acquire_owned()
            .map_err(|_| UploadRefused::TenantBusy {
                tenant: tenant.to_string(),
                limit: self.per_tenant,
            })?;
        let slot = self
            .all
            .clone()
            .try_acquire_owned()
            .map_err(|_| UploadRefused::AllBusy { limit: self.max })?;
        Ok(UploadSlot {
            _tenant: tenant_slot,
            _all: slot,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_has_its_own_slots_within_the_bridges() {
        let slots = UploadSlots::new(2, 1);
        let acme = slots.try_take("acme").unwrap();
        assert_eq!(
            slots.try_take("acme").err(),
            Some(UploadRefused::TenantBusy {
                tenant: "acme".into(),
                limit: 1
            })
        );
        let beta = slots.try_take("beta").unwrap();
        assert_eq!(slots.try_take("gamma").err(), Some(UploadRefused::AllBusy { limit: 2 }));
        drop(acme);
        let gamma = slots.try_take("gamma").unwrap();
        drop((beta, gamma));
        assert!(slots.try_take("acme").is_ok());
    }

    #[test]
    fn tenants_without_uploads_leave_no_entry() {
        let slots = UploadSlots::new(4, 2);
        for i in 0..100 {
            drop(slots.try_take(&format!("tenant-{i}")).unwrap());
        }
        let held = slots.try_take("last").unwrap();
        assert_eq!(slots.by_tenant.lock().unwrap().len(), 1);
        drop(held);
    }

    #[test]
    fn the_refusals_name_their_limit() {
        let tenant = UploadRefused::TenantBusy {
            tenant: "acme".into(),
            limit: 1,
        };
        assert!(tenant.to_string().contains("max_uploads_per_tenant"), "{tenant}");
        let all = UploadRefused::AllBusy { limit: 4 };
        assert!(all.to_string().contains("[deployments] max_uploads"), "{all}");
    }
}
