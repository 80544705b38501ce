//! `cargo xtask bench`: load the patient API of a release build and report what it did.
//!
//! The server runs on a throwaway data directory and a port the OS picks, bound to
//! 127.0.0.1 only. The contract with `haven` is:
//!
//! - `haven admin token --data-dir DIR --role administrator --label bench` prints a bearer
//!   token as the last non-empty line of its stdout;
//! - `haven serve --data-dir DIR --listen 127.0.0.1:0` prints
//!   `listening on http://127.0.0.1:PORT` on stdout once it accepts connections, logs to
//!   stderr, and exits on SIGTERM;
//! - `POST /api/v1/patients` answers 201 with a JSON object holding a string `id`, and
//!   `GET /api/v1/patients/{id}` answers 200;
//! - `haven audit vkey --data-dir DIR` prints the audit log's verifier key, with which the
//!   bench checks the checkpoints and inclusion proofs of the sampled access logs as a
//!   client would;
//! - the messaging phases use the messaging API as the web app does (`/api/v1/devices`,
//!   `/api/v1/threads…`, and the event stream `GET /api/v1/events`, a WebSocket that says
//!   `{"type":"message","thread":…,"seq":…}` when a message arrives); see `messaging_load`.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::load::{self, LoadPlan};
use crate::workspace::{Profile, Workspace, run_checked};

const SECONDS_DEFAULT: u64 = 10;
const SECONDS_MAX: u64 = 3_600;
const CONNECTIONS_DEFAULT: usize = 64;
const CONNECTIONS_MAX: usize = 1_024;

/// How long the server may take to print its listening line.
const STARTUP_WAIT_SECS_MAX: u64 = 60;
/// How long the server may take to exit after SIGTERM before it is killed.
const SHUTDOWN_WAIT_SECS_MAX: u64 = 30;
const SHUTDOWN_POLL_INTERVAL_MILLIS: u64 = 100;
/// How much of the server log to show when it fails to start.
const LOG_TAIL_LINES: usize = 30;

const LISTENING_PREFIX: &str = "listening on http://";
/// The database the PostgreSQL part of the bench creates afresh each run.
const BENCH_DATABASE: &str = "haven_bench";

#[derive(Debug)]
pub struct Options {
    seconds: u64,
    connections: usize,
    /// Only the FHIR phases, on SQLite: for working on the FHIR paths.
    fhir_only: bool,
    /// Only the messaging phases, on SQLite and on PostgreSQL.
    messaging_only: bool,
    /// Only the video-visit signaling phase, on SQLite.
    visits_only: bool,
    /// Keep the data directories and server logs afterwards, for a look at what the load
    /// left (profiling `haven audit verify`, say).
    keep: bool,
    /// `--engine`: with `--fhir-only` or `--messaging-only`, the one engine to run them on
    /// (by default the FHIR phases run on SQLite, the messaging phases on both).
    engine: Option<Engine>,
}

/// A storage engine the bench can run the server on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Sqlite,
    Postgres,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut options = Self {
            seconds: SECONDS_DEFAULT,
            connections: CONNECTIONS_DEFAULT,
            fhir_only: false,
            messaging_only: false,
            visits_only: false,
            keep: false,
            engine: None,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .with_context(|| format!("{name} needs a number"))
                    .cloned()
            };
            match arg.as_str() {
                "--seconds" => {
                    let raw = value("--seconds")?;
                    options.seconds = raw
                        .parse()
                        .ok()
                        .filter(|seconds| (1..=SECONDS_MAX).contains(seconds))
                        .with_context(|| {
                            format!("--seconds must be between 1 and {SECONDS_MAX}, not {raw}")
                        })?;
                }
                "--connections" => {
                    let raw = value("--connections")?;
                    options.connections = raw
                        .parse()
                        .ok()
                        .filter(|connections| (1..=CONNECTIONS_MAX).contains(connections))
                        .with_context(|| {
                            format!(
                                "--connections must be between 1 and {CONNECTIONS_MAX}, not {raw}"
                            )
                        })?;
                }
                "--fhir-only" => options.fhir_only = true,
                "--messaging-only" => options.messaging_only = true,
                "--visits-only" => options.visits_only = true,
                "--keep" => options.keep = true,
                "--engine" => {
                    let raw = args.next().context("--engine needs sqlite or postgres")?;
                    options.engine = Some(match raw.as_str() {
                        "sqlite" => Engine::Sqlite,
                        "postgres" => Engine::Postgres,
                        _ => bail!("--engine must be sqlite or postgres, not {raw}"),
                    });
                }
                other => bail!("unexpected argument `{other}` to `cargo xtask bench`"),
            }
        }
        let only = [
            options.fhir_only,
            options.messaging_only,
            options.visits_only,
        ];
        if only.iter().filter(|o| **o).count() > 1 {
            bail!("--fhir-only, --messaging-only and --visits-only exclude each other");
        }
        if options.engine.is_some() && !(options.fhir_only || options.messaging_only) {
            bail!("--engine goes with --fhir-only or --messaging-only");
        }
        Ok(options)
    }
}

/// Runs the bench from a release build of xtask. The load generator shares the machine's
/// cores with the server it measures, and `cargo xtask` builds xtask unoptimised: that build
/// took twice the CPU per request of a release one (10.2 against 5.1 CPU-s over a FHIR
/// import), CPU the server then did not have.
pub fn hand_over_to_release(workspace: &Workspace, args: &[OsString]) -> Result<ExitCode> {
    run_checked(
        workspace
            .cargo()
            .args(["build", "--release", "-p", "xtask"]),
    )?;
    let xtask = workspace.binary(Profile::Release, "xtask");
    let status = Command::new(&xtask)
        .arg("bench")
        .args(args)
        .status()
        .with_context(|| format!("could not run {}", xtask.display()))?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn bench(workspace: &Workspace, options: &Options) -> Result<()> {
    run_checked(workspace.cargo().args([
        "build",
        "--release",
        "-p",
        "haven-server",
        "--bin",
        "haven",
    ]))?;
    let haven = workspace.binary(Profile::Release, "haven");

    let scratch = scratch_dir()?;
    let outcome = if options.fhir_only {
        match options.engine {
            None | Some(Engine::Sqlite) => bench_fhir(&haven, &scratch, options, None),
            Some(Engine::Postgres) => crate::postgres::fresh_database(BENCH_DATABASE)
                .and_then(|url| bench_fhir(&haven, &scratch, options, Some(&url))),
        }
    } else if options.messaging_only {
        match options.engine {
            None => bench_messaging_on_both(&haven, &scratch, options),
            Some(Engine::Sqlite) => bench_messaging(&haven, &scratch, options, None),
            Some(Engine::Postgres) => crate::postgres::fresh_database(BENCH_DATABASE)
                .and_then(|url| bench_messaging(&haven, &scratch, options, Some(&url))),
        }
    } else if options.visits_only {
        bench_visits(&haven, &scratch, options)
    } else {
        bench_in(&haven, &scratch, options)
            .and_then(|()| bench_messaging_on_both(&haven, &scratch, options))
            .and_then(|()| bench_visits(&haven, &scratch, options))
    };
    match outcome {
        Ok(()) if options.keep => {
            println!(
                "the data directories and server logs are kept in {}",
                scratch.display()
            );
            Ok(())
        }
        Ok(()) => {
            if let Err(error) = std::fs::remove_dir_all(&scratch) {
                eprintln!("warning: could not remove {}: {error}", scratch.display());
            }
            Ok(())
        }
        Err(error) => {
            // Kept so the server log can be read.
            eprintln!(
                "the data directory and server log are kept in {}",
                scratch.display()
            );
            Err(error)
        }
    }
}

fn bench_in(haven: &Path, scratch: &Path, options: &Options) -> Result<()> {
    let data_dir = scratch.join("data");
    std::fs::create_dir(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let token = mint_token(haven, &data_dir, "administrator")?;
    let auditor_token = mint_token(haven, &data_dir, "auditor")?;
    let invitation = last_line_of(haven, &data_dir, &["admin", "bootstrap"])?;

    let log_path = scratch.join("server.log");
    let mut server = Server::start(haven, &data_dir, &log_path)?;
    println!(
        "server (pid {}) listening on http://{}",
        server.pid, server.address
    );

    let plan = LoadPlan {
        address: server.address,
        token,
        auditor_token,
        connections: options.connections,
        duration: Duration::from_secs(options.seconds),
        server_pid: Some(server.pid),
    };
    let outcome = load::run(&plan);
    let sign_in = outcome.as_ref().ok().map(|_| {
        crate::sign_in_load::run(crate::sign_in_load::SignInPlan {
            address: server.address,
            reader_token: plan.token.clone(),
            invitation,
            duration: plan.duration,
        })
    });
    // Memory is read while the server still runs, whatever the load did.
    let memory = server.memory();
    let stopped = server.stop();

    let outcome = outcome?;
    for report in &outcome.reports {
        println!();
        print!("{report}");
    }
    println!();
    check_proofs(haven, &data_dir, &outcome.access_log_samples)?;
    if let Some(sign_in) = sign_in {
        sign_in?;
    }
    println!();
    match memory {
        Ok(memory) => println!(
            "server memory: peak RSS {:.1} MiB, current RSS {:.1} MiB",
            kib_to_mib(memory.peak_rss_kib),
            kib_to_mib(memory.current_rss_kib)
        ),
        Err(error) => println!("server memory: unavailable ({error:#})"),
    }
    stopped?;
    verify_audit_log(haven, &data_dir)?;
    println!();
    let url = crate::postgres::fresh_database(BENCH_DATABASE)?;
    bench_fhir(haven, scratch, options, Some(&url))
}

/// The FHIR phases on their own: with `database_url`, the server on PostgreSQL (a fresh
/// local database); without, on SQLite in a fresh data directory.
fn bench_fhir(
    haven: &Path,
    scratch: &Path,
    options: &Options,
    database_url: Option<&str>,
) -> Result<()> {
    let engine = if database_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!("FHIR on {engine}");
    let data_dir = scratch.join(format!("data-fhir-{}", engine.to_lowercase()));
    std::fs::create_dir(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let env: Vec<(&str, &str)> = database_url
        .map(|url| ("HAVEN_DATABASE_URL", url))
        .into_iter()
        .collect();
    let token = mint_token_with(haven, &data_dir, "administrator", &env)?;
    // The organisation the clinician is invited into.
    last_line_of_with(haven, &data_dir, &["admin", "bootstrap"], &env)?;
    let log_path = scratch.join(format!("server-fhir-{}.log", engine.to_lowercase()));
    let mut server = Server::start_with(haven, &data_dir, &log_path, &env)?;
    let plan = LoadPlan {
        address: server.address,
        token: token.clone(),
        auditor_token: String::new(),
        connections: options.connections,
        duration: Duration::from_secs(options.seconds),
        server_pid: Some(server.pid),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let reports = runtime.block_on(async {
        let patients =
            crate::fhir_load::register_patients(plan.address, &token, crate::fhir_load::PATIENTS)
                .await
                .context("registering the patients")?;
        let (clinician, team) = crate::clinician::prepare(plan.address, &token, &patients)
            .await
            .context("signing in a clinician and building their care team")?;
        crate::fhir_load::run(&plan, &clinician, &team).await
    });
    let memory = server.memory();
    let stopped = server.stop();
    for report in reports? {
        println!();
        print!("{report}");
    }
    if let Ok(memory) = memory {
        println!(
            "server memory ({engine}): peak RSS {:.1} MiB",
            kib_to_mib(memory.peak_rss_kib)
        );
    }
    stopped?;
    verify_audit_log_with(haven, &data_dir, &env)
}

/// Signaling sessions of video visits open at once in the visits phase.
const VISIT_SESSIONS: usize = 1_000;

/// The video-visit phase (`visits_load`) on a fresh server on SQLite: signaling touches the
/// database only to enter, admit and leave (the audit log), so the engine matters little.
fn bench_visits(haven: &Path, scratch: &Path, options: &Options) -> Result<()> {
    println!();
    let data_dir = scratch.join("data-visits");
    std::fs::create_dir(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    // Every session is a connection: room for all of them and the set-up's.
    let connections = (VISIT_SESSIONS * 2).to_string();
    let env = [("HAVEN_CONNECTIONS_MAX", connections.as_str())];
    let token = mint_token_with(haven, &data_dir, "administrator", &env)?;
    last_line_of_with(haven, &data_dir, &["admin", "bootstrap"], &env)?;
    let log_path = scratch.join("server-visits.log");
    let mut server = Server::start_with(haven, &data_dir, &log_path, &env)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let report = runtime.block_on(crate::visits_load::run(
        server.address,
        &token,
        "SQLite",
        VISIT_SESSIONS,
        Duration::from_secs(options.seconds),
        server.pid,
    ));
    let memory = server.memory();
    let stopped = server.stop();
    runtime.shutdown_timeout(Duration::from_secs(1));
    let report = report?;
    println!();
    print!("{report}");
    if report.delivered() == 0 {
        bail!("the visits phase relayed nothing");
    }
    if let Ok(memory) = memory {
        println!(
            "server memory (visits): peak RSS {:.1} MiB",
            kib_to_mib(memory.peak_rss_kib)
        );
    }
    stopped?;
    verify_audit_log_with(haven, &data_dir, &env)
}

/// The messaging phases on SQLite, then on PostgreSQL (a fresh local database).
fn bench_messaging_on_both(haven: &Path, scratch: &Path, options: &Options) -> Result<()> {
    println!();
    bench_messaging(haven, scratch, options, None)?;
    println!();
    let url = crate::postgres::fresh_database(BENCH_DATABASE)?;
    bench_messaging(haven, scratch, options, Some(&url))
}

/// The messaging phases (`messaging_load`) on a fresh server: with `database_url` on
/// PostgreSQL, without on SQLite.
fn bench_messaging(
    haven: &Path,
    scratch: &Path,
    options: &Options,
    database_url: Option<&str>,
) -> Result<()> {
    let engine = if database_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let data_dir = scratch.join(format!("data-messaging-{}", engine.to_lowercase()));
    std::fs::create_dir(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let env: Vec<(&str, &str)> = database_url
        .map(|url| ("HAVEN_DATABASE_URL", url))
        .into_iter()
        .collect();
    let token = mint_token_with(haven, &data_dir, "administrator", &env)?;
    // The organisation the patients and clinicians are invited into.
    last_line_of_with(haven, &data_dir, &["admin", "bootstrap"], &env)?;
    let log_path = scratch.join(format!("server-messaging-{}.log", engine.to_lowercase()));
    let mut server = Server::start_with(haven, &data_dir, &log_path, &env)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let reports = runtime.block_on(crate::messaging_load::run(
        server.address,
        &token,
        engine,
        options.connections,
        Duration::from_secs(options.seconds),
        server.pid,
    ));
    let memory = server.memory();
    let stopped = server.stop();
    // The sockets' tasks end with the runtime, before the next server starts.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let reports = reports?;
    for report in &reports {
        println!();
        print!("{report}");
    }
    if reports.iter().any(|r| r.acknowledged() == 0) {
        bail!("a messaging phase had no message acknowledged");
    }
    if let Ok(memory) = memory {
        println!(
            "server memory (messaging, {engine}): peak RSS {:.1} MiB",
            kib_to_mib(memory.peak_rss_kib)
        );
    }
    stopped?;
    verify_audit_log_with(haven, &data_dir, &env)
}

/// Verifies the audit log the load produced (every create and read appended an entry):
/// `haven audit verify` prints how many entries it hashed, checkpoints it checked, and how
/// fast.
fn verify_audit_log(haven: &Path, data_dir: &Path) -> Result<()> {
    verify_audit_log_with(haven, data_dir, &[])
}

/// [`verify_audit_log`] with extra environment (the database of a PostgreSQL run).
fn verify_audit_log_with(haven: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Result<()> {
    let output = Command::new(haven)
        .envs(env.iter().copied())
        .args(["audit", "verify", "--data-dir"])
        .arg(data_dir)
        .output()
        .context("could not run `haven audit verify`")?;
    if !output.status.success() {
        bail!(
            "`haven audit verify` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    println!("{}", String::from_utf8_lossy(&output.stdout).trim());
    Ok(())
}

/// One entry of a sampled access log: its recomputed leaf and its proof.
struct SampledProof {
    leaf: haven_audit::merkle::Hash,
    index: u64,
    size: u64,
    path: Vec<haven_audit::merkle::Hash>,
    root: haven_audit::merkle::Hash,
}

/// Checks every inclusion proof in the sampled access-log responses as a client would
/// (signature of the checkpoint with the log's public key, leaf recomputed from the
/// entry's fields, path to the signed root) and fails the bench if one does not hold.
/// (The time a proof takes to build and check is printed by `haven audit verify`, built
/// with optimisations like the server, unlike this tool.)
fn check_proofs(haven: &Path, data_dir: &Path, samples: &[String]) -> Result<()> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use haven_audit::merkle::{Hash, verify_inclusion};

    let output = Command::new(haven)
        .args(["audit", "vkey", "--data-dir"])
        .arg(data_dir)
        .output()
        .context("could not run `haven audit vkey`")?;
    if !output.status.success() {
        bail!("`haven audit vkey` failed ({})", output.status);
    }
    let verifier = haven_audit::checkpoint::CheckpointVerifier::parse_vkey(
        String::from_utf8_lossy(&output.stdout).trim(),
    )
    .context("parsing the audit log's verifier key")?;
    let hash = |value: &serde_json::Value| -> Result<Hash> {
        let bytes = STANDARD.decode(value.as_str().context("a hash that is not a string")?)?;
        Hash::try_from(bytes.as_slice()).context("a hash that is not 32 bytes")
    };

    let mut proofs = Vec::new();
    for sample in samples {
        let document: serde_json::Value = serde_json::from_str(sample)?;
        let signed = verifier
            .verify(document["checkpoint"]["note"].as_str().unwrap_or_default())
            .context("a sampled access log's checkpoint does not verify with the log's key")?;
        for entry in document["items"].as_array().into_iter().flatten() {
            let proof = &entry["proof"];
            if proof.is_null() {
                continue;
            }
            let text = |name: &str| entry[name].as_str();
            let leaf = haven_audit::leaf_hash_of_fields(
                entry["seq"].as_u64().context("an entry without a seq")?,
                entry["at_ms"].as_i64().context("an entry without at_ms")?,
                &haven_audit::ENTRY_FIELD_NAMES.map(text),
            );
            proofs.push(SampledProof {
                leaf,
                index: proof["leaf_index"]
                    .as_u64()
                    .context("a proof without leaf_index")?,
                size: signed.size,
                path: proof["path"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(hash)
                    .collect::<Result<_>>()?,
                root: signed.root,
            });
        }
    }
    if proofs.is_empty() {
        bail!("the access-log phase returned no inclusion proof to check");
    }
    for proof in &proofs {
        if !verify_inclusion(
            &proof.leaf,
            proof.index,
            proof.size,
            &proof.path,
            &proof.root,
        ) {
            bail!(
                "an inclusion proof served for leaf {} in a tree of {} does not verify",
                proof.index,
                proof.size
            );
        }
    }
    let size = proofs.iter().map(|p| p.size).max().unwrap_or(0);
    println!(
        "access-log proofs: all {} served inclusion proofs check out against signed checkpoints (tree of up to {size} entries)",
        proofs.len()
    );
    Ok(())
}

/// A fresh directory under the system temp dir, unique to this run.
fn scratch_dir() -> Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("haven-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Runs `haven ARGS --data-dir DIR` and returns the last line it printed (a secret).
fn last_line_of(haven: &Path, data_dir: &Path, args: &[&str]) -> Result<String> {
    last_line_of_with(haven, data_dir, args, &[])
}

pub(crate) fn last_line_of_with(
    haven: &Path,
    data_dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<String> {
    let output = Command::new(haven)
        .envs(env.iter().copied())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .with_context(|| format!("could not run `haven {}`", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "`haven {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .map(str::to_owned)
        .with_context(|| format!("`haven {}` printed nothing", args.join(" ")))
}

fn mint_token(haven: &Path, data_dir: &Path, role: &str) -> Result<String> {
    mint_token_with(haven, data_dir, role, &[])
}

pub(crate) fn mint_token_with(
    haven: &Path,
    data_dir: &Path,
    role: &str,
    env: &[(&str, &str)],
) -> Result<String> {
    let mut command = Command::new(haven);
    command
        .args(["admin", "token", "--data-dir"])
        .arg(data_dir)
        .args(["--role", role, "--label", "bench"])
        .envs(env.iter().copied());
    let output = command
        .output()
        .context("could not run `haven admin token`")?;
    if !output.status.success() {
        bail!(
            "`haven admin token` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let token = stdout
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .context("`haven admin token` printed no token")?;
    if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
        bail!("`haven admin token` printed something that is not a bearer token");
    }
    Ok(token.to_owned())
}

/// The running server; killed on drop if it was not stopped.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) address: SocketAddr,
}

#[derive(Debug)]
struct Memory {
    peak_rss_kib: u64,
    current_rss_kib: u64,
}

impl Server {
    fn start(haven: &Path, data_dir: &Path, log_path: &Path) -> Result<Self> {
        Self::start_with(haven, data_dir, log_path, &[])
    }

    pub(crate) fn start_with(
        haven: &Path,
        data_dir: &Path,
        log_path: &Path,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let log = std::fs::File::create(log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let mut child = Command::new(haven)
            .envs(env.iter().copied())
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("could not start `haven serve`")?;
        let pid = child.id();
        let stdout = child
            .stdout
            .take()
            .context("the server's stdout was not piped")?;

        // A thread reads stdout to its end, so the server never blocks on a full pipe; lines
        // go to the channel until the receiver is gone.
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // After startup nobody listens any more; keep draining.
                let _ = lines_tx.send(line);
            }
        });

        let mut server = Self {
            child,
            pid,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let deadline = Instant::now() + Duration::from_secs(STARTUP_WAIT_SECS_MAX);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => match listening_address(&line)? {
                    Some(address) => {
                        server.address = address;
                        return Ok(server);
                    }
                    None => println!("server: {line}"),
                },
                Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                    "the server printed no `{LISTENING_PREFIX}...` line within \
                     {STARTUP_WAIT_SECS_MAX}s\n{}",
                    log_tail(log_path)
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = server.child.wait().context("waiting for the server")?;
                    bail!(
                        "the server exited ({status}) before listening\n{}",
                        log_tail(log_path)
                    );
                }
            }
        }
    }

    fn memory(&self) -> Result<Memory> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        Ok(Memory {
            peak_rss_kib: status_kib(&status, "VmHWM").context("no VmHWM in /proc status")?,
            current_rss_kib: status_kib(&status, "VmRSS").context("no VmRSS in /proc status")?,
        })
    }

    /// SIGTERM, then a bounded wait; a server that does not stop in time is killed and the
    /// bench fails, because a stuck shutdown is a bug worth seeing.
    pub(crate) fn stop(&mut self) -> Result<()> {
        run_checked(Command::new("kill").args(["-TERM", &self.pid.to_string()]))?;
        let deadline = Instant::now() + Duration::from_secs(SHUTDOWN_WAIT_SECS_MAX);
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for the server")? {
                println!("server stopped ({status})");
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.child.kill().context("killing the server")?;
                self.child.wait().context("waiting for the killed server")?;
                bail!(
                    "the server did not stop within {SHUTDOWN_WAIT_SECS_MAX}s of SIGTERM; killed it"
                );
            }
            std::thread::sleep(Duration::from_millis(SHUTDOWN_POLL_INTERVAL_MILLIS));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The address in a `listening on http://127.0.0.1:PORT` line, refusing anything but
/// 127.0.0.1: the bench must never send its load elsewhere.
fn listening_address(line: &str) -> Result<Option<SocketAddr>> {
    let Some(at) = line.find(LISTENING_PREFIX) else {
        return Ok(None);
    };
    let rest = &line[at + LISTENING_PREFIX.len()..];
    let authority = rest
        .split(|c: char| c.is_whitespace() || c == '/')
        .next()
        .unwrap_or_default();
    let address: SocketAddr = authority
        .parse()
        .with_context(|| format!("cannot read an address from `{line}`"))?;
    if address.ip() != std::net::Ipv4Addr::LOCALHOST || address.port() == 0 {
        bail!("the server listens on {address}, not on a 127.0.0.1 port");
    }
    Ok(Some(address))
}

/// A `Key:   1234 kB` value from /proc/<pid>/status.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

fn kib_to_mib(kib: u64) -> f64 {
    // Exact for any RSS a process can have (below 2^53 KiB).
    kib as f64 / 1024.0
}

fn log_tail(log_path: &Path) -> String {
    let Ok(log) = std::fs::read_to_string(log_path) else {
        return format!("(no server log at {})", log_path.display());
    };
    let lines: Vec<&str> = log.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    format!("last lines of {}:\n{}", log_path.display(), tail.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn options_default_and_are_bounded() -> Result<()> {
        let defaults = Options::parse(&[])?;
        assert_eq!((defaults.seconds, defaults.connections), (10, 64));
        let chosen = Options::parse(&strings(&["--seconds", "3", "--connections", "8"]))?;
        assert_eq!((chosen.seconds, chosen.connections), (3, 8));
        assert!(Options::parse(&strings(&["--seconds", "0"])).is_err());
        assert!(Options::parse(&strings(&["--connections", "100000"])).is_err());
        assert!(Options::parse(&strings(&["--seconds"])).is_err());
        assert!(Options::parse(&strings(&["--rate", "5"])).is_err());
        Ok(())
    }

    #[test]
    fn an_engine_is_chosen_only_for_the_fhir_or_messaging_phases() -> Result<()> {
        let postgres = Options::parse(&strings(&["--fhir-only", "--engine", "postgres"]))?;
        assert_eq!(postgres.engine, Some(Engine::Postgres));
        let sqlite = Options::parse(&strings(&["--messaging-only", "--engine", "sqlite"]))?;
        assert_eq!(sqlite.engine, Some(Engine::Sqlite));
        assert_eq!(Options::parse(&strings(&["--fhir-only"]))?.engine, None);
        assert!(Options::parse(&strings(&["--fhir-only", "--engine", "mysql"])).is_err());
        assert!(Options::parse(&strings(&["--fhir-only", "--engine"])).is_err());
        // The whole bench and the visit phase have their engines fixed.
        assert!(Options::parse(&strings(&["--engine", "postgres"])).is_err());
        assert!(Options::parse(&strings(&["--visits-only", "--engine", "sqlite"])).is_err());
        Ok(())
    }

    #[test]
    fn the_listening_line_gives_a_loopback_address() -> Result<()> {
        assert_eq!(
            listening_address("listening on http://127.0.0.1:40123")?,
            Some(SocketAddr::from(([127, 0, 0, 1], 40123)))
        );
        assert_eq!(
            listening_address("haven 0.1.0 listening on http://127.0.0.1:8080/ (sqlite)")?,
            Some(SocketAddr::from(([127, 0, 0, 1], 8080)))
        );
        assert_eq!(listening_address("migrations applied")?, None);
        assert!(listening_address("listening on http://0.0.0.0:8080").is_err());
        assert!(listening_address("listening on http://127.0.0.1:0").is_err());
        Ok(())
    }

    #[test]
    fn memory_is_read_from_proc_status() {
        let status = "Name:\thaven\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(status_kib(status, "VmHWM"), Some(51_200));
        assert_eq!(status_kib(status, "VmRSS"), Some(40_960));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }
}
