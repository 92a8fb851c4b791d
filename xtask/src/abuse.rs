//! `cargo xtask abuse --seconds N`: the abuse test of the end-to-end suite
//! (`tests/e2e/abuse.rs`: one partner attacking the bridge through its deploy token, its
//! webhooks and its adapter while a healthy tenant serves traffic) with its attacks run for N
//! seconds in all, its figures printed (`--nocapture`). The test fails, and so does this
//! command, when a bound does not hold.

use anyhow::Result;

use crate::{BRIDGE_PACKAGE, TESTS_PACKAGE, bridge_binary, build_plugins, cargo_cmd, run};

/// The test's name, as `--exact` takes it.
pub const TEST: &str = "abuse::a_partner_cannot_take_the_bridge_down";

/// How long the attacks go on in all, in seconds (read by the test).
const SECONDS_ENV: &str = "DOLPHIN_BRIDGE_ABUSE_SECONDS";

/// Builds the adapters the test loads and the bridge, then runs the test.
pub fn run_abuse(seconds: u64) -> Result<()> {
    build_plugins(&["echo".into(), "hostile".into(), "wasi-command".into()])?;
    run(cargo_cmd().args(["build", "--package", BRIDGE_PACKAGE]))?;
    let mut cmd = cargo_cmd();
    cmd.args(["test", "--package", TESTS_PACKAGE, "--test", "e2e", "--"])
        .args(["--exact", TEST])
        .args(["--nocapture", "--test-threads", "1"])
        .env("DOLPHIN_BRIDGE_BIN", bridge_binary())
        .env(SECONDS_ENV, seconds.to_string());
    run(&mut cmd)
}
