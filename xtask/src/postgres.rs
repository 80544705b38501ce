//! PostgreSQL for the test suite: installed, running on 127.0.0.1:5432 and holding a
//! database `test` that the `postgres` role can reach without a password.
//!
//! The store contract suite runs against PostgreSQL as well as SQLite, and backup tests call
//! `pg_dump`, so a machine without PostgreSQL cannot run the tests. This step makes a fresh
//! Debian machine ready (apt-get install, start the cluster) and otherwise fails loudly.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::workspace::{describe, is_ci, on_path, run_checked};

/// The variable the tests read the PostgreSQL connection URL from.
pub const URL_VAR: &str = "HAVEN_TEST_POSTGRES_URL";

const HOST: &str = "127.0.0.1";
const PORT: u16 = 5432;
const TEST_DATABASE: &str = "test";
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Programs the step and the tests use; all come with Debian's `postgresql` packages.
const REQUIRED_PROGRAMS: [&str; 5] = [
    "pg_isready",
    "psql",
    "pg_dump",
    "pg_lsclusters",
    "pg_ctlcluster",
];
const PACKAGES: [&str; 2] = ["postgresql", "postgresql-client"];

/// How long a started cluster may take to accept connections.
const START_WAIT_SECS_MAX: u64 = 30;
const START_POLL_INTERVAL_MILLIS: u64 = 500;
/// Passed to libpq so no client call can hang on an unreachable server.
const CONNECT_TIMEOUT_SECS: &str = "5";

/// The pg_hba.conf rule that lets the tests' password-less URL in, and the comment marking it.
const TRUST_RULE: &str = "host all postgres 127.0.0.1/32 trust";
const TRUST_RULE_COMMENT: &str =
    "# Added by `cargo xtask test`: the tests connect as postgres@127.0.0.1 without a password.";

/// The URL the tests use: the caller's own `HAVEN_TEST_POSTGRES_URL`, or the local default.
pub fn configured_url() -> String {
    std::env::var(URL_VAR)
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// Makes PostgreSQL ready for the tests and returns the URL to give them.
pub fn ensure() -> Result<String> {
    let installed_now = install_if_missing()?;

    if let Ok(url) = std::env::var(URL_VAR)
        && !url.is_empty()
    {
        // The caller chose their own server; check it answers but leave it alone.
        println!("using {URL_VAR} from the environment");
        if !pg_isready(&["-d", &url])? {
            bail!("the PostgreSQL server named by {URL_VAR} does not accept connections");
        }
        return Ok(url);
    }

    if pg_isready(&["-h", HOST, "-p", &PORT.to_string()])? {
        println!("PostgreSQL answers at {HOST}:{PORT}");
    } else {
        start_cluster()?;
        wait_until_ready()?;
    }
    ensure_passwordless_login(installed_now)?;
    ensure_test_database()?;
    println!("database `{TEST_DATABASE}` is ready: {DEFAULT_URL}");
    Ok(DEFAULT_URL.to_owned())
}

/// Installs the PostgreSQL packages if any program is missing; true if it installed them.
fn install_if_missing() -> Result<bool> {
    let missing: Vec<&str> = REQUIRED_PROGRAMS
        .into_iter()
        .filter(|program| !on_path(program))
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    println!(
        "missing {}; installing {}",
        missing.join(", "),
        PACKAGES.join(" ")
    );
    if !on_path("apt-get") {
        bail!(
            "{} not found and apt-get is unavailable; install PostgreSQL and its client \
             programs, or point {URL_VAR} at a server (pg_dump is still needed)",
            missing.join(", ")
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
            .args(PACKAGES)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("installing PostgreSQL with apt-get (are you root?)")?;
    let still_missing: Vec<&str> = REQUIRED_PROGRAMS
        .into_iter()
        .filter(|program| !on_path(program))
        .collect();
    if !still_missing.is_empty() {
        bail!(
            "still missing after installing PostgreSQL: {}",
            still_missing.join(", ")
        );
    }
    Ok(true)
}

/// `pg_isready ARGS`: true if the server accepts connections.
fn pg_isready(args: &[&str]) -> Result<bool> {
    let mut command = Command::new("pg_isready");
    command.args(args).args(["-t", CONNECT_TIMEOUT_SECS]);
    let output = capture(&mut command)?;
    // 0 accepting, 1 rejecting (starting up), 2 no response, 3 bad parameters.
    match output.status.code() {
        Some(0) => Ok(true),
        Some(1 | 2) => Ok(false),
        // The arguments are left out of the message: they may hold a URL with a password.
        _ => bail!(
            "pg_isready failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}

/// A cluster as `pg_lsclusters` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cluster {
    version: String,
    name: String,
    port: u16,
}

impl Cluster {
    fn hba_file(&self) -> PathBuf {
        PathBuf::from("/etc/postgresql")
            .join(&self.version)
            .join(&self.name)
            .join("pg_hba.conf")
    }

    fn ctl(&self, action: &str) -> Command {
        let mut command = Command::new("pg_ctlcluster");
        // Without systemd (containers, CI) the redirect to systemctl would fail.
        command.args([
            "--skip-systemctl-redirect",
            &self.version,
            &self.name,
            action,
        ]);
        command
    }
}

/// Parses `pg_lsclusters --no-header` output: `VERSION NAME PORT STATUS OWNER DATADIR LOG`.
fn parse_clusters(listing: &str) -> Vec<Cluster> {
    listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let version = fields.next()?.to_owned();
            let name = fields.next()?.to_owned();
            let port = fields.next()?.parse().ok()?;
            Some(Cluster {
                version,
                name,
                port,
            })
        })
        .collect()
}

/// The cluster configured for port 5432; the newest version wins if there are several.
fn cluster_on_port() -> Result<Cluster> {
    let output = capture(Command::new("pg_lsclusters").arg("--no-header"))?;
    if !output.status.success() {
        bail!(
            "pg_lsclusters failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let mut clusters: Vec<Cluster> = parse_clusters(&String::from_utf8_lossy(&output.stdout))
        .into_iter()
        .filter(|cluster| cluster.port == PORT)
        .collect();
    clusters.sort_by_key(|cluster| version_number(&cluster.version));
    clusters.pop().with_context(|| {
        format!(
            "no PostgreSQL cluster is configured for port {PORT} (see `pg_lsclusters`); \
             create one with `pg_createcluster <version> main`"
        )
    })
}

fn version_number(version: &str) -> u32 {
    version
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .unwrap_or(0)
}

fn start_cluster() -> Result<()> {
    let cluster = cluster_on_port()?;
    println!(
        "PostgreSQL does not answer at {HOST}:{PORT}; starting cluster {} {}",
        cluster.version, cluster.name
    );
    run_checked(&mut cluster.ctl("start"))
}

fn wait_until_ready() -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(START_WAIT_SECS_MAX);
    loop {
        if pg_isready(&["-h", HOST, "-p", &PORT.to_string()])? {
            println!("PostgreSQL answers at {HOST}:{PORT}");
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "PostgreSQL was started but did not accept connections at {HOST}:{PORT} \
                 within {START_WAIT_SECS_MAX}s; see /var/log/postgresql/"
            );
        }
        std::thread::sleep(Duration::from_millis(START_POLL_INTERVAL_MILLIS));
    }
}

/// `psql` as `postgres` over TCP, never prompting for a password.
fn psql(database: &str, sql: &str) -> Command {
    let mut command = Command::new("psql");
    command
        .args(["--no-password", "--no-psqlrc", "-v", "ON_ERROR_STOP=1"])
        .args([
            "-h",
            HOST,
            "-p",
            &PORT.to_string(),
            "-U",
            "postgres",
            "-d",
            database,
        ])
        .args(["-tAc", sql])
        .env("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECS);
    command
}

/// The tests connect as `postgres` without a password. Debian's default pg_hba.conf asks
/// TCP clients for one, so a PostgreSQL this step installed, or any under CI, gets a trust
/// rule for exactly that role and address. A developer's own server is never changed.
fn ensure_passwordless_login(installed_now: bool) -> Result<()> {
    let output = capture(&mut psql("postgres", "select 1"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if !stderr.contains("password") {
        bail!("cannot connect to PostgreSQL as postgres@{HOST}:{PORT}: {stderr}");
    }
    if !(installed_now || is_ci()) {
        bail!(
            "PostgreSQL at {HOST}:{PORT} wants a password for the `postgres` role ({stderr}); \
             either add `{TRUST_RULE}` at the top of pg_hba.conf and reload, or set \
             {URL_VAR} to a URL with credentials"
        );
    }
    let cluster = cluster_on_port()?;
    let hba_file = cluster.hba_file();
    let original = std::fs::read_to_string(&hba_file)
        .with_context(|| format!("reading {}", hba_file.display()))?;
    let Some(updated) = with_trust_rule(&original) else {
        bail!(
            "{} already trusts postgres@{HOST}, yet the login failed: {stderr}",
            hba_file.display()
        );
    };
    std::fs::write(&hba_file, updated)
        .with_context(|| format!("writing {}", hba_file.display()))?;
    println!("added `{TRUST_RULE}` to {}", hba_file.display());
    run_checked(&mut cluster.ctl("reload"))?;

    let retry = capture(&mut psql("postgres", "select 1"))?;
    if !retry.status.success() {
        bail!(
            "still cannot connect as postgres@{HOST}:{PORT}: {}",
            String::from_utf8_lossy(&retry.stderr).trim()
        );
    }
    Ok(())
}

/// pg_hba.conf with the trust rule first (the first matching rule wins), or None if the
/// rule is already there.
fn with_trust_rule(hba: &str) -> Option<String> {
    let present = hba
        .lines()
        .any(|line| line.split_whitespace().eq(TRUST_RULE.split_whitespace()));
    if present {
        return None;
    }
    Some(format!("{TRUST_RULE_COMMENT}\n{TRUST_RULE}\n\n{hba}"))
}

/// A new, empty database `name` on the local server (an existing one of that name is
/// dropped first), for the bench; its URL.
pub fn fresh_database(name: &str) -> Result<String> {
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        bail!("a database name of lower-case letters and underscores, not {name:?}");
    }
    ensure()?;
    for sql in [
        format!("drop database if exists {name} with (force)"),
        format!("create database {name}"),
    ] {
        let output = capture(&mut psql("postgres", &sql))?;
        if !output.status.success() {
            bail!(
                "`{sql}` failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }
    Ok(format!("postgres://postgres@{HOST}:{PORT}/{name}"))
}

fn ensure_test_database() -> Result<()> {
    if test_database_exists()? {
        return Ok(());
    }
    println!("creating database `{TEST_DATABASE}`");
    let output = capture(&mut psql(
        "postgres",
        &format!("create database {TEST_DATABASE}"),
    ))?;
    // Another run may have created it in the meantime; only its absence is an error.
    if !output.status.success() && !test_database_exists()? {
        bail!(
            "could not create database `{TEST_DATABASE}`: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn test_database_exists() -> Result<bool> {
    let sql = format!("select 1 from pg_database where datname = '{TEST_DATABASE}'");
    let mut command = psql("postgres", &sql);
    let output = capture(&mut command)?;
    if !output.status.success() {
        bail!(
            "`{}` failed: {}",
            describe(&command),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "1")
}

fn capture(command: &mut Command) -> Result<Output> {
    command
        .output()
        .with_context(|| format!("could not run `{}`", describe(command)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusters_are_read_from_pg_lsclusters() {
        let listing = "15  main    5432 online postgres /var/lib/postgresql/15/main \
                       /var/log/postgresql/postgresql-15-main.log\n\
                       16  spare   5433 down   postgres /var/lib/postgresql/16/spare \
                       /var/log/postgresql/postgresql-16-spare.log\n";
        assert_eq!(
            parse_clusters(listing),
            vec![
                Cluster {
                    version: "15".into(),
                    name: "main".into(),
                    port: 5432
                },
                Cluster {
                    version: "16".into(),
                    name: "spare".into(),
                    port: 5433
                },
            ]
        );
    }

    #[test]
    fn trust_rule_goes_first_and_only_once() {
        let debian_default = "local all postgres peer\nhost all all 127.0.0.1/32 scram-sha-256\n";
        let Some(updated) = with_trust_rule(debian_default) else {
            panic!("the default pg_hba.conf has no trust rule");
        };
        let rules: Vec<&str> = updated
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .collect();
        assert_eq!(rules.first(), Some(&TRUST_RULE));
        assert!(updated.ends_with(debian_default));
        assert_eq!(with_trust_rule(&updated), None);
    }

    #[test]
    fn trust_rule_is_recognised_whatever_the_spacing() {
        assert_eq!(
            with_trust_rule("host  all  postgres  127.0.0.1/32   trust\n"),
            None
        );
    }
}
