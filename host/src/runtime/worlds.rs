//! The WIT worlds this host serves at once. The current world's types are the host's one model
//! of a call; a component built for an earlier world is linked to that world's interfaces, and
//! its calls and host imports pass through a thin conversion (`world_0_1`), as Spin serves
//! several versions of its worlds in one host.

use std::fmt;

use wasmtime::component::{InstancePre, Linker};

use super::CallState;
use super::bindings::{self, dolphin::bridge::types as wt};
use super::world_0_1 as v1;

/// A world a component can be built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum World {
    /// `dolphin:bridge@0.1.x`: no dedupe keys, no retry hints, no `crypto`.
    V0_1,
    /// `dolphin:bridge@0.2.x`, the current world.
    V0_2,
}

impl World {
    /// Every world this host serves, oldest first.
    pub const SERVED: [World; 2] = [World::V0_1, World::V0_2];

    /// The world of a component that imports `dolphin:bridge` interfaces at `version`: the same
    /// 0.minor (0.x releases break at each minor), whatever the patch.
    pub fn for_version(version: &str) -> Option<World> {
        let mut parts = version.split(['.', '-', '+']);
        let major: u64 = parts.next()?.parse().ok()?;
        let minor: u64 = parts.next()?.parse().ok()?;
        match (major, minor) {
            (0, 1) => Some(World::V0_1),
            (0, 2) => Some(World::V0_2),
            _ => None,
        }
    }

    /// The version this host implements for the world, e.g. `0.2.0`.
    pub fn version(self) -> &'static str {
        match self {
            World::V0_1 => "0.1.0",
            World::V0_2 => "0.2.0",
        }
    }

    /// The series, as error messages name it: `0.1.x`.
    fn series(self) -> &'static str {
        match self {
            World::V0_1 => "0.1.x",
            World::V0_2 => "0.2.x",
        }
    }

    /// The served series, for error messages: `0.1.x, 0.2.x`.
    pub fn served_series() -> String {
        World::SERVED.map(World::series).join(", ")
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", super::WIT_PACKAGE, self.version())
    }
}

/// Adds every served world's host interfaces to `linker` (their names carry their versions, so
/// they sit side by side).
pub(super) fn add_to_linker(linker: &mut Linker<CallState>) -> anyhow::Result<()> {
    use wasmtime::component::HasSelf;
    bindings::v0_2::Adapter::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)
        .map_err(anyhow::Error::from)?;
    bindings::v0_1::Adapter::add_to_linker::<CallState, HasSelf<CallState>>(linker, |s| s)
        .map_err(anyhow::Error::from)?;
    Ok(())
}

/// A component's instance template, typed by its world.
#[derive(Clone)]
pub(super) enum AdapterPre {
    V0_1(bindings::v0_1::AdapterPre<CallState>),
    V0_2(bindings::v0_2::AdapterPre<CallState>),
}

impl AdapterPre {
    /// Checks that `pre`'s component exports `world`'s functions with its types.
    pub(super) fn new(world: World, pre: InstancePre<CallState>) -> wasmtime::Result<AdapterPre> {
        Ok(match world {
            World::V0_1 => AdapterPre::V0_1(bindings::v0_1::AdapterPre::new(pre)?),
            World::V0_2 => AdapterPre::V0_2(bindings::v0_2::AdapterPre::new(pre)?),
        })
    }

    /// The compiled component.
    pub(super) fn component(&self) -> &wasmtime::component::Component {
        match self {
            AdapterPre::V0_1(pre) => pre.instance_pre().component(),
            AdapterPre::V0_2(pre) => pre.instance_pre().component(),
        }
    }

    /// A new instance in `store`.
    pub(super) async fn instantiate_async(&self, store: &mut wasmtime::Store<CallState>) -> wasmtime::Result<Adapter> {
        Ok(match self {
            AdapterPre::V0_1(pre) => Adapter::V0_1(pre.instantiate_async(store).await?),
            AdapterPre::V0_2(pre) => Adapter::V0_2(pre.instantiate_async(store).await?),
        })
    }
}

/// An instantiated adapter, called in the current world's terms whatever its own.
pub(super) enum Adapter {
    V0_1(bindings::v0_1::Adapter),
    V0_2(bindings::v0_2::Adapter),
}

impl Adapter {
    /// `on-incoming`.
    pub(super) async fn call_on_incoming(
        &self,
        store: &mut wasmtime::Store<CallState>,
        ctx: &wt::CallContext,
        event: &wt::IncomingEvent,
    ) -> wasmtime::Result<Result<(), wt::AdapterError>> {
        match self {
            Adapter::V0_2(adapter) => adapter.call_on_incoming(store, ctx, event).await,
            Adapter::V0_1(adapter) => {
                let result = adapter
                    .call_on_incoming(store, &v1::call_context(ctx), &v1::incoming_event(event))
                    .await?;
                Ok(result.map_err(v1::adapter_error))
            }
        }
    }

    /// `on-vendor-webhook`.
    pub(super) async fn call_on_vendor_webhook(
        &self,
        store: &mut wasmtime::Store<CallState>,
        ctx: &wt::CallContext,
        request: &wt::WebhookRequest,
    ) -> wasmtime::Result<Result<wt::WebhookOutcome, wt::AdapterError>> {
        match self {
            Adapter::V0_2(adapter) => adapter.call_on_vendor_webhook(store, ctx, request).await,
            Adapter::V0_1(adapter) => {
                let result = adapter
                    .call_on_vendor_webhook(store, &v1::call_context(ctx), &v1::webhook_request(request))
                    .await?;
                Ok(result.map(v1::webhook_outcome).map_err(v1::adapter_error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_picks_the_world_of_its_minor_release() {
        assert_eq!(World::for_version("0.1.0"), Some(World::V0_1));
        assert_eq!(World::for_version("0.1.7"), Some(World::V0_1));
        assert_eq!(World::for_version("0.2.0"), Some(World::V0_2));
        assert_eq!(World::for_version("0.2.3-rc.1"), Some(World::V0_2));
        assert_eq!(World::for_version("0.3.0"), None);
        assert_eq!(World::for_version("1.0.0"), None);
        assert_eq!(World::for_version(""), None);
        assert_eq!(World::served_series(), "0.1.x, 0.2.x");
        assert_eq!(World::V0_1.to_string(), "dolphin:bridge@0.1.0");
    }
}
