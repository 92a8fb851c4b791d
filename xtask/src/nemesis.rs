//! `cargo xtask nemesis --minutes N --seed S`: the nemesis test of the end-to-end suite
//! (`tests/e2e/nemesis.rs`) run for as long as asked, on a PostgreSQL server of its own that
//! the harness restarts, with the checker's table printed (`--nocapture`). The test fails, and
//! so does this command, when the checker's verdict is a failure.

use anyhow::Result;

use crate::{BRIDGE_PACKAGE, TESTS_PACKAGE, bridge_binary, build_plugins, cargo_cmd, postgres, run};

/// How long the faults go on, in minutes (read by the test).
const MINUTES_ENV: &str = "DOLPHIN_BRIDGE_NEMESIS_MINUTES";
/// The schedule's seed (read by the test; its own fixed seed otherwise).
const SEED_ENV: &str = "DOLPHIN_BRIDGE_NEMESIS_SEED";

/// Builds the echo adapter and the bridge, starts the server, runs the test.
pub fn run_nemesis(minutes: u64, seed: Option<&str>) -> Result<()> {
    build_plugins(&["echo".into()])?;
    run(cargo_cmd().args(["build", "--package", BRIDGE_PACKAGE]))?;
    let server = postgres::TestServer::start_for_nemesis()?;
    let mut cmd = cargo_cmd();
    cmd.args(["test", "--package", TESTS_PACKAGE, "--test", "e2e", "--"])
        .args(["--exact", "nemesis::replicas_keep_the_delivery_promise_under_a_nemesis"])
        .args(["--nocapture", "--test-threads", "1"])
        .env("DOLPHIN_BRIDGE_BIN", bridge_binary())
        .env(MINUTES_ENV, minutes.to_string())
        .env(postgres::URL_ENV, server.url())
        .envs(server.nemesis_env());
    if let Some(seed) = seed {
        cmd.env(SEED_ENV, seed);
    }
    run(&mut cmd)
}
