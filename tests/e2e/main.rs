//! End-to-end tests: the real `dolphin-bridge` binary between mock 3Dolphins and vendor servers.
//!
//! Needs the bridge binary and the adapters built first; `cargo xtask test` does both.

mod common;

mod abuse;
mod accepted;
mod auth;
mod auth_throttle;
mod browser;
mod canary;
mod chatwoot;
mod cli;
mod corpus;
mod delivery;
mod demo;
mod deploy_abuse;
mod deployments;
mod disk_full;
mod durability;
mod instance_reuse;
mod isolation;
mod languages;
mod lookups;
mod nemesis;
mod outbox;
mod plugin_new;
mod plugin_run;
mod plugin_test;
mod redaction;
mod refused;
mod reload;
mod replica_directory;
mod replicas;
mod rocketchat;
mod routing;
mod sandbox_limits;
mod shared_tampering;
mod slo_metrics;
mod soak;
mod standard_http;
mod start_failures;
mod status_page;
mod sunshine;
mod traces;
mod webhooks;
mod worlds;
