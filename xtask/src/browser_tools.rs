//! What the browser tests need: Debian's Chromium (apt) and `playwright-core` (npm, pinned
//! by `crates/server/tests/browser/package-lock.json`) to drive it. Installed when missing;
//! the tests fail, not skip, without them.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::workspace::{Workspace, on_path, run_checked};

/// Where Debian puts Chromium, and where the browser scripts expect it.
const CHROMIUM: &str = "/usr/bin/chromium";
/// The browser scripts and their npm dependencies.
const BROWSER_DIR: &str = "crates/server/tests/browser";

pub fn ensure(workspace: &Workspace) -> Result<()> {
    ensure_chromium()?;
    crate::npm::ci_if_stale(&workspace.root().join(BROWSER_DIR), "the browser tests")
}

fn ensure_chromium() -> Result<()> {
    if Path::new(CHROMIUM).is_file() {
        return Ok(());
    }
    println!("{CHROMIUM} is missing; installing Debian's chromium");
    if !on_path("apt-get") {
        bail!("{CHROMIUM} not found and apt-get is unavailable; install Chromium there");
    }
    run_checked(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("apt-get update (are you root?)")?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("installing chromium with apt-get (are you root?)")?;
    if !Path::new(CHROMIUM).is_file() {
        bail!("{CHROMIUM} is still missing after installing chromium");
    }
    Ok(())
}
