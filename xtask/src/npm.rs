//! npm, as the project's JavaScript folders use it: `npm ci` from the committed lock file,
//! and only when `node_modules` is older than the lock (so a warm checkout pays nothing).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::workspace::{on_path, run_checked};

/// Whether `npm` can be run here.
pub fn available() -> bool {
    on_path("npm") && on_path("node")
}

/// Installs `dir`'s packages exactly as its `package-lock.json` pins them, unless they
/// already are. `purpose` names the folder in messages.
pub fn ci_if_stale(dir: &Path, purpose: &str) -> Result<()> {
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
    if !available() {
        bail!("Node.js and npm are needed for {purpose} (Node.js 20.19 or later)");
    }
    println!(
        "installing the npm packages of {purpose} in {}",
        dir.display()
    );
    run_checked(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            // playwright-core drives the system's Chromium; it downloads no browser.
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .current_dir(dir),
    )
    .with_context(|| format!("npm ci for {purpose}"))
}
