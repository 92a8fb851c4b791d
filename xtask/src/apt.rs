//! Installing the distribution's packages the test command needs (Chromium, PostgreSQL,
//! Prometheus's `promtool`): `apt-get install`, as root or through sudo, after an `apt-get
//! update` when a fresh machine has no package lists yet.

use std::process::Command;

use anyhow::{Context, Result};

use crate::run;

/// Installs the distribution's `package`; `why` says what needs it when it cannot be installed.
pub fn install(package: &str, why: &str) -> Result<()> {
    let install = || {
        run(apt_get()?
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if install().is_err() {
        run(apt_get()?.arg("update"))
            .and_then(|()| install())
            .with_context(|| format!("{why}: install the distribution's `{package}` package"))?;
    }
    Ok(())
}

/// `apt-get`, through sudo unless we are root.
fn apt_get() -> Result<Command> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|out| out.status.success() && out.stdout.trim_ascii() == b"0")
        .unwrap_or(false);
    Ok(if root {
        Command::new("apt-get")
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["--non-interactive", "apt-get"]);
        sudo
    })
}
