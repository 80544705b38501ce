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
    ensure_node_modules(&workspace.root().join(BROWSER_DIR))
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

fn ensure_node_modules(dir: &Path) -> Result<()> {
    let installed = dir.join("node_modules").join(".package-lock.json");
    let lock = dir.join("package-lock.json");
    let fresh = match (installed.metadata(), lock.metadata()) {
        (Ok(installed), Ok(lock)) => match (installed.modified(), lock.modified()) {
            (Ok(installed), Ok(lock)) => installed >= lock,
            _ => false,
        },
        _ => false,
    };
    if fresh {
        return Ok(());
    }
    if !on_path("npm") {
        bail!("npm is needed for the browser tests (Debian: apt-get install npm)");
    }
    println!(
        "installing the browser tests' npm packages in {}",
        dir.display()
    );
    run_checked(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            // playwright-core drives the system's Chromium; it downloads no browser.
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .current_dir(dir),
    )
    .context("npm ci for the browser tests")
}
