//! Test harness for dolphin-bridge: the real binary between mock servers.
//!
//! - [`bridge::Bridge`] runs `dolphin-bridge serve` with a generated config in a temp dir, and
//!   reads delivery states through the admin endpoints; [`bridge_config::BridgeConfig`] builds
//!   that config.
//! - [`three_dolphins::MockThreeDolphins`] is the 3Dolphins side (events, Contact and history APIs).
//! - [`mock_chatwoot::MockChatwoot`] is a stateful Chatwoot (the `chatwoot` adapter's vendor).
//! - [`vendor::MockVendor`] is a generic recording vendor (the `echo` adapter's target).
//! - [`client::HttpClient`] sends requests; [`events::Event`] builds Incoming events.
//! - [`adapters`] finds the bridge binary and the built adapters (`cargo xtask build-plugins`).
//! - [`wait`] waits for conditions instead of sleeping.
//! - [`nemesis`] injects faults into replicas on PostgreSQL and checks the delivery promise.
//! - [`process_stats`], [`disk_usage`], [`cpu_time`]: a process's descriptors and memory, a
//!   folder's disk use, CPU time; [`postgres_waits`]: what a database's connections wait on;
//!   [`slow_dns`], [`slow_upload`], [`request_loop`]: a name server that answers late, uploads
//!   that never finish, requests in a loop (the abuse test's measures and attacks).
//! - [`background_work`]: spinning threads and a real build sharing the machine with a bridge
//!   under measure.
//! - [`paced_load`], [`round_robin_load`]: Incoming events over keep-alive connections, closed or
//!   open loop (`accept-bench`), round-robin over replicas (`replica-bench`).
//! - [`bench_options`] parses the bench binaries' option values; [`bench_target`] prints a benchmark's figure against its target (`cargo xtask bench`).

pub mod adapters;
pub mod arrival_vendor;
pub mod background_work;
pub mod bench_options;
pub mod bench_target;
pub mod bridge;
pub mod bridge_config;
pub mod client;
pub mod copy_dir;
pub mod corpus_support;
pub mod cpu_time;
pub mod crash_support;
pub mod disk_usage;
pub mod events;
pub mod mock_chatwoot;
pub mod mock_http;
pub mod mock_rocketchat;
pub mod mock_sunshine;
pub mod nemesis;
pub mod paced_load;
pub mod postgres_waits;
pub mod process_stats;
pub mod reload_support;
pub mod replica_support;
pub mod request_loop;
pub mod round_robin_load;
pub mod signing;
pub mod slow_dns;
pub mod slow_upload;
pub mod three_dolphins;
pub mod vendor;
pub mod wait;

pub use bridge::{Bridge, BridgeConfig, Tenant};
pub use client::{HttpClient, HttpResponse};
pub use events::{Event, example_event};
pub use three_dolphins::MockThreeDolphins;
pub use vendor::MockVendor;
pub use wait::{WAIT, wait_for, wait_until};
