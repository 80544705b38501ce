//! Security advisories: `Cargo.lock` against an offline copy of the RustSec database.
//!
//! The database is a plain directory at `../shared/advisory-db` (relative to the workspace
//! root), so the check never touches the network. An advisory we accept must be listed in
//! `.cargo/audit.toml` with a comment saying why; any other advisory fails the step, as do
//! `unmaintained` and `unsound` notices.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::workspace::{Workspace, describe, on_path, run_checked};

/// Where the offline RustSec database lives, relative to the workspace root.
const ADVISORY_DB_RELATIVE: &str = "../shared/advisory-db";
/// Where cargo-audit reads its configuration, relative to its working directory.
const AUDIT_CONFIG_RELATIVE: &str = ".cargo/audit.toml";

pub fn check(workspace: &Workspace) -> Result<()> {
    ensure_cargo_audit(workspace)?;

    let config = workspace.root().join(AUDIT_CONFIG_RELATIVE);
    if config.is_file() {
        let text = std::fs::read_to_string(&config)
            .with_context(|| format!("reading {}", config.display()))?;
        let unjustified = unjustified_ignores(&text);
        if !unjustified.is_empty() {
            bail!(
                "{AUDIT_CONFIG_RELATIVE} ignores {} without a comment saying why",
                unjustified.join(", ")
            );
        }
    }

    let database = advisory_database(workspace)?;

    // An empty or unreadable database would make every lock file look clean, so first make
    // sure cargo-audit reads it: the JSON report says how many advisories it loaded.
    let mut probe = audit_command(workspace, &database);
    probe.args(["--format", "json"]);
    let output = probe
        .output()
        .with_context(|| format!("could not run `{}`", describe(&probe)))?;
    match advisories_loaded(&output.stdout) {
        Some(0) => bail!("the advisory database at {} is empty", database.display()),
        Some(count) => println!(
            "{count} advisories in {}\n  {}",
            database.display(),
            snapshot(&database)
        ),
        None => bail!(
            "cargo audit did not load the advisory database at {}: {}",
            database.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }

    // The verdict, in cargo-audit's own words.
    run_checked(audit_command(workspace, &database).args(["--color", "never"])).context(
        "cargo audit found advisories affecting Cargo.lock; upgrade the crate, or add the \
         advisory id to .cargo/audit.toml with a comment saying why it does not affect Haven",
    )
}

/// `cargo audit` against the offline database, failing on vulnerabilities and on
/// `unmaintained` and `unsound` notices.
fn audit_command(workspace: &Workspace, database: &Path) -> Command {
    let mut command = workspace.cargo();
    command
        .arg("audit")
        .arg("--db")
        .arg(database)
        // Offline: read the directory as it is, and don't complain that it is not fresh.
        // Yanked crates are still reported, from Cargo's local index cache.
        .args(["--no-fetch", "--stale"])
        .args(["--deny", "unmaintained", "--deny", "unsound"]);
    command
}

fn ensure_cargo_audit(workspace: &Workspace) -> Result<()> {
    if on_path("cargo-audit") {
        return Ok(());
    }
    println!("cargo-audit is not installed; installing it");
    run_checked(
        workspace
            .cargo()
            .args(["install", "cargo-audit", "--locked"]),
    )
}

fn advisory_database(workspace: &Workspace) -> Result<PathBuf> {
    let path = workspace.root().join(ADVISORY_DB_RELATIVE);
    let database = path.canonicalize().with_context(|| {
        format!(
            "the offline RustSec advisory database is missing at {}",
            path.display()
        )
    })?;
    if !database.join("crates").is_dir() {
        bail!(
            "{} is not a RustSec advisory database (it has no crates/ folder)",
            database.display()
        );
    }
    Ok(database)
}

/// The first line of the database's SNAPSHOT file, which names the upstream commit.
fn snapshot(database: &Path) -> String {
    std::fs::read_to_string(database.join("SNAPSHOT"))
        .ok()
        .and_then(|text| text.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "no SNAPSHOT file".to_owned())
}

/// `database.advisory-count` from cargo-audit's JSON report.
fn advisories_loaded(json_report: &[u8]) -> Option<u64> {
    let report: serde_json::Value = serde_json::from_slice(json_report).ok()?;
    report.get("database")?.get("advisory-count")?.as_u64()
}

/// Advisory ids in the `ignore` list of an audit.toml that have no comment, either on their
/// own line or on the comment lines just above them.
fn unjustified_ignores(audit_toml: &str) -> Vec<String> {
    let mut unjustified = Vec::new();
    let mut in_ignore_list = false;
    let mut comment_above = false;
    for line in audit_toml.lines() {
        let (code, comment) = match line.split_once('#') {
            Some((code, comment)) => (code, comment.trim()),
            None => (line, ""),
        };
        let mut code = code.trim();
        if !in_ignore_list {
            let Some(list) = code
                .strip_prefix("ignore")
                .and_then(|rest| rest.trim_start().strip_prefix('='))
                .and_then(|rest| rest.trim_start().strip_prefix('['))
            else {
                comment_above = code.is_empty() && !comment.is_empty();
                continue;
            };
            in_ignore_list = true;
            // A comment above the key is about the whole list, not about one advisory.
            comment_above = false;
            code = list;
        }
        let ids = quoted_strings(code);
        if ids.is_empty() {
            if code.is_empty() {
                comment_above = comment_above || !comment.is_empty();
            }
        } else {
            if comment.is_empty() && !comment_above {
                unjustified.extend(ids);
            }
            comment_above = false;
        }
        if code.contains(']') {
            in_ignore_list = false;
        }
    }
    unjustified
}

fn quoted_strings(code: &str) -> Vec<String> {
    code.split('"')
        .skip(1)
        .step_by(2)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advisory_count_is_read_from_the_json_report() {
        let report = br#"{"database":{"advisory-count":1225,"last-commit":null},
            "lockfile":{"dependency-count":281},"vulnerabilities":{"found":true,"count":1}}"#;
        assert_eq!(advisories_loaded(report), Some(1225));
        assert_eq!(advisories_loaded(b"error: couldn't open database"), None);
    }

    #[test]
    fn an_empty_ignore_list_is_justified() {
        assert!(unjustified_ignores("[advisories]\nignore = []\n").is_empty());
    }

    #[test]
    fn ignores_need_a_comment_beside_or_above() {
        let audit_toml = r#"
[advisories]
ignore = [
    # rsa is only in Cargo.lock through sqlx-mysql, which Haven never builds.
    "RUSTSEC-2023-0071",
    "RUSTSEC-2024-0001", # only reachable on Windows
    "RUSTSEC-2024-0002",

    # A comment for the next one.

    "RUSTSEC-2024-0003",
]
"#;
        assert_eq!(unjustified_ignores(audit_toml), vec!["RUSTSEC-2024-0002"]);
    }

    #[test]
    fn a_one_line_list_needs_its_comment_too() {
        assert_eq!(
            unjustified_ignores("[advisories]\nignore = [\"RUSTSEC-2023-0071\"]\n"),
            vec!["RUSTSEC-2023-0071"]
        );
        assert!(
            unjustified_ignores("ignore = [\"RUSTSEC-2023-0071\"] # not built on Linux\n")
                .is_empty()
        );
    }

    #[test]
    fn a_comment_before_the_ignore_key_does_not_justify_everything() {
        let audit_toml = "# Advisories we accept.\nignore = [\n  \"RUSTSEC-2024-0002\",\n]\n";
        assert_eq!(unjustified_ignores(audit_toml), vec!["RUSTSEC-2024-0002"]);
    }
}
