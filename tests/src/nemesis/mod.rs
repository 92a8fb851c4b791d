//! A nemesis for the replicas, in the manner of Jepsen's: several bridges on one PostgreSQL
//! database under clients' load, while faults hit them one at a time (pauses, kills, links to the
//! database dropped, blackholed or slowed, database restarts, clock offsets); then everything is
//! healed, the outbox drains, and a checker compares what the clients had acknowledged with what
//! the vendor and 3Dolphins received.
//!
//! - [`proxy`]: the TCP link between a replica and the database, which the test controls.
//! - [`database`]: the server, and restarting it with `pg_ctl`.
//! - [`recorder`]: the vendor and 3Dolphins, a listener per replica, recording every arrival.
//! - [`cluster`]: the replicas' processes.
//! - [`schedule`]: the faults drawn from a seed; [`faults`]: injecting them.
//! - [`workload`]: the clients.
//! - [`checker`]: the verdict, pure logic over the run's history.
//! - [`run`]: one run, end to end.

pub mod checker;
pub mod cluster;
pub mod database;
pub mod faults;
pub mod proxy;
pub mod recorder;
pub mod run;
pub mod schedule;
pub mod workload;
