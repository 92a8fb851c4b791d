//! What several replicas sharing one PostgreSQL store do beside serving: each names itself and
//! writes a heartbeat with the adapter versions it serves ([`heartbeat`]), and each follows the
//! deployments made on the others ([`deployment_follower`]) and judges the running canaries on
//! every replica's figures ([`canary_watch`]). These use both the store and the registry, so
//! they sit above both; with the embedded store most have little or nothing to do.

pub mod canary_watch;
pub mod deployment_follower;
pub mod heartbeat;

pub use heartbeat::ReplicaId;
