//! What the browser test of the status page needs: Chromium from the distribution's packages
//! and the Playwright driver of `tests/browser` (pinned in its package-lock.json).
//!
//! Both are set up before the tests run; when either cannot be, the setup fails and says why,
//! so the browser test is never silently left out.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{run, workspace_root};

/// The environment variable naming the Chromium binary the browser test drives.
pub const CHROMIUM_ENV: &str = "DOLPHIN_BRIDGE_CHROMIUM";
/// The environment variable that makes the browser test save its screenshot at a path
/// (relative to the workspace root).
pub const SCREENSHOT_ENV: &str = "DOLPHIN_BRIDGE_SCREENSHOT";
/// Where `cargo xtask screenshot` puts the status page's screenshot.
pub const SCREENSHOT: &str = "docs/status-page.png";
/// Where Debian's and Ubuntu's `chromium` package puts the browser.
const DISTRIBUTION_CHROMIUM: &str = "/usr/bin/chromium";

/// Makes sure Chromium and the script's packages are installed; returns Chromium's path.
pub fn setup() -> Result<PathBuf> {
    let chromium = ensure_chromium()?;
    ensure_script_packages()?;
    Ok(chromium)
}

/// `$DOLPHIN_BRIDGE_CHROMIUM` when set, else the distribution's Chromium, installed with
/// apt-get when missing (as root, or through sudo).
fn ensure_chromium() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(CHROMIUM_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{CHROMIUM_ENV} names {}, which is not a file", path.display());
        }
        return Ok(path);
    }
    let path = PathBuf::from(DISTRIBUTION_CHROMIUM);
    if path.is_file() {
        return Ok(path);
    }
    crate::apt::install(
        "chromium",
        &format!("the status page's browser test needs Chromium (or {CHROMIUM_ENV} naming a Chromium binary)"),
    )?;
    if !path.is_file() {
        bail!("the `chromium` package is installed but {} is missing", path.display());
    }
    Ok(path)
}

/// `npm ci` in `tests/browser`, unless its node_modules already matches package-lock.json.
fn ensure_script_packages() -> Result<()> {
    let dir = workspace_root().join("tests").join("browser");
    let installed = dir.join("node_modules").join(".package-lock.json");
    if newer_than(&installed, &[&dir.join("package-lock.json"), &dir.join("package.json")]) {
        return Ok(());
    }
    run(Command::new("npm")
        .current_dir(&dir)
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]))
    .context("installing the browser test's packages (needs node and npm)")
}

/// Whether `file` exists and was modified after every one of `than`.
fn newer_than(file: &Path, than: &[&Path]) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match modified(file) {
        Some(at) => than.iter().all(|other| modified(other).is_some_and(|o| o <= at)),
        None => false,
    }
}
