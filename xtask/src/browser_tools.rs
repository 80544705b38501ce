//! What the browser and video-visit tests need: Debian's Chromium and coturn (apt), and
//! `playwright-core` (npm, pinned by `crates/server/tests/browser/package-lock.json`) to
//! drive Chromium. Installed when missing; the tests fail, not skip, without them.
//!
//! coturn is the relay video visits send media through. The tests start their own
//! `turnserver` on free loopback ports (`haven_test_support::coturn`), so the system
//! service is never wanted: where systemd would start it on installation, it is stopped
//! and disabled again.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::workspace::{Workspace, on_path, run_checked};

/// A program the tests run, at the path Debian installs it, and the package that does.
struct DebianProgram {
    path: &'static str,
    package: &'static str,
}

const PROGRAMS: [DebianProgram; 3] = [
    // Where the browser scripts expect Chromium.
    DebianProgram {
        path: "/usr/bin/chromium",
        package: "chromium",
    },
    // The relay the tests start, and the client that proves its credentials work.
    DebianProgram {
        path: "/usr/bin/turnserver",
        package: "coturn",
    },
    DebianProgram {
        path: "/usr/bin/turnutils_uclient",
        package: "coturn",
    },
];
/// The browser scripts and their npm dependencies.
const BROWSER_DIR: &str = "crates/server/tests/browser";

pub fn ensure(workspace: &Workspace) -> Result<()> {
    ensure_debian_programs()?;
    crate::npm::ci_if_stale(&workspace.root().join(BROWSER_DIR), "the browser tests")
}

fn ensure_debian_programs() -> Result<()> {
    let missing = missing_programs();
    if missing.is_empty() {
        return Ok(());
    }
    let paths: Vec<&str> = missing.iter().map(|program| program.path).collect();
    let mut packages: Vec<&str> = Vec::new();
    for program in &missing {
        if !packages.contains(&program.package) {
            packages.push(program.package);
        }
    }
    println!(
        "{} missing; installing Debian's {}",
        paths.join(", "),
        packages.join(" ")
    );
    if !on_path("apt-get") {
        bail!(
            "{} not found and apt-get is unavailable; install {} there",
            paths.join(", "),
            packages.join(" ")
        );
    }
    run_checked(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("apt-get update (are you root?)")?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| {
        format!(
            "installing {} with apt-get (are you root?)",
            packages.join(" ")
        )
    })?;
    let still_missing: Vec<&str> = missing_programs()
        .iter()
        .map(|program| program.path)
        .collect();
    if !still_missing.is_empty() {
        bail!(
            "still missing after installing {}: {}",
            packages.join(" "),
            still_missing.join(", ")
        );
    }
    if packages.contains(&"coturn") {
        stop_system_coturn()?;
    }
    Ok(())
}

fn missing_programs() -> Vec<&'static DebianProgram> {
    PROGRAMS
        .iter()
        .filter(|program| !Path::new(program.path).is_file())
        .collect()
}

/// Debian's coturn package enables its service, and under systemd starts it on 0.0.0.0:3478
/// (`/etc/default/coturn` only governs the SysV script). The tests start their own relay,
/// so the one this step just installed is stopped and disabled rather than left listening.
/// Without systemd (containers, CI) `invoke-rc.d` did not start it and there is nothing to do.
fn stop_system_coturn() -> Result<()> {
    if !Path::new("/run/systemd/system").is_dir() || !on_path("systemctl") {
        return Ok(());
    }
    run_checked(Command::new("systemctl").args(["disable", "--now", "coturn"]))
        .context("stopping the coturn service the package started (are you root?)")
}
