//! The alert rules shipped in `deploy/prometheus`: `promtool check rules` on the rules file and
//! `promtool test rules` on its unit tests, run by `cargo xtask test` (the distribution's
//! `prometheus` package, installed when `promtool` is missing).

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;

use crate::{run, workspace_root};

/// The rules file and its unit tests, relative to the workspace root.
pub const RULES: &str = "deploy/prometheus/dolphin-bridge-rules.yml";
const RULE_TESTS: &str = "deploy/prometheus/dolphin-bridge-rules.test.yml";

/// Checks the rules' syntax and queries, then runs their unit tests.
pub fn check() -> Result<()> {
    let promtool = promtool()?;
    let root = workspace_root();
    run(Command::new(&promtool).args(["check", "rules"]).arg(root.join(RULES)))?;
    run(Command::new(&promtool)
        .args(["test", "rules"])
        .arg(root.join(RULE_TESTS)))
}

/// `promtool` on the PATH, else from the distribution's `prometheus` package.
fn promtool() -> Result<PathBuf> {
    let found = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("promtool"))
                .find(|path| path.is_file())
        })
    };
    if let Some(path) = found() {
        return Ok(path);
    }
    crate::apt::install("prometheus", "the alert rules' check needs promtool")?;
    found().ok_or_else(|| anyhow::anyhow!("the `prometheus` package is installed but promtool is not on the PATH"))
}
