//! `haven`: the telemedicine server and its operator commands.
//!
//! - `haven serve`: serve the API (zero configuration: `./haven-data`, 127.0.0.1:8080).
//! - `haven admin token`: mint an API token, printed once.
//! - `haven keys rotate`: new root key, every stored key re-wrapped, old root destroyed.
//! - `haven keys shred-patient`: destroy one patient's key (crypto-shredding).

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use haven_app::{Clock, SystemClock};
use haven_audit::AuditSink;
use haven_crypto::LocalKeyring;
use haven_domain::{PatientId, Role};
use haven_server::config::{self, ConfigError, Flags, LogFormat};
use haven_server::{Application, Config, DataDirLock, TableAuditSinkExt};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of the C library's allocator: under load a request allocates many
/// short-lived buffers from several threads at once, and glibc's malloc spent a fifth of
/// the server's time in its own bookkeeping (arena locks, consolidation) on reads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "haven",
    version,
    about = "Haven: private-by-design telemedicine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve(ServeArgs),
    /// Administrative tasks.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Key management.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Load FHIR data written elsewhere into a running Haven: Bundles (`.json`: transaction,
    /// batch, collection) and resources one per line (`.ndjson`). Every resource gets a new
    /// id and references between them follow. The token (of the `integration` role, from
    /// `haven admin token --role integration`) is read from HAVEN_TOKEN or --token-file.
    /// Exits 1 if anything was not imported, after saying what and why.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// The files to import.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The running server.
    #[arg(long, default_value = "http://127.0.0.1:8080", value_name = "URL")]
    url: String,
    /// A file holding the token (instead of HAVEN_TOKEN).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The server's certificate (PEM) to trust, for an https:// URL.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the audit log's Merkle tree from storage and check every signed
    /// checkpoint; exits 1 naming where the log was altered.
    Verify {
        #[command(flatten)]
        common: CommonArgs,
        /// Check signatures with this verifier key (from `haven audit vkey`, kept
        /// elsewhere) instead of the key stored with the log.
        #[arg(long, value_name = "VKEY")]
        vkey: Option<String>,
    },
    /// Print the public key that verifies audit checkpoints (C2SP verifier key).
    Vkey {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Write every audit entry as a JSON line, for verification elsewhere. Audited as an
    /// export before anything is written.
    Export {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Verify exported entries against a signed checkpoint with the public key alone: no
    /// database, no data directory, no secret key.
    VerifyExport {
        /// The JSON lines written by `haven audit export`.
        #[arg(long, value_name = "FILE")]
        entries: PathBuf,
        /// A signed checkpoint note (from `haven audit checkpoints` or a witness).
        #[arg(long, value_name = "FILE")]
        checkpoint: PathBuf,
        /// The log's verifier key (`haven audit vkey`).
        #[arg(long, value_name = "VKEY")]
        vkey: String,
    },
    /// Print signed checkpoints as JSON lines (`size`, `note`), for a witness to keep.
    Checkpoints {
        #[command(flatten)]
        common: CommonArgs,
        /// Only checkpoints covering more than this many entries.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Keep watching and print each new checkpoint as it is signed.
        #[arg(long)]
        follow: bool,
    },
}

/// Settings shared by every command.
#[derive(Debug, Args)]
struct CommonArgs {
    /// A TOML configuration file (also HAVEN_CONFIG).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The data directory: database, keyring (also HAVEN_DATA_DIR; default ./haven-data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Address to listen on (also HAVEN_LISTEN; default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// PEM certificate chain for HTTPS (also HAVEN_TLS_CERT).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<String>,
    /// PEM private key for HTTPS (also HAVEN_TLS_KEY).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<String>,
    /// A TLS-terminating proxy sits in front (also HAVEN_BEHIND_TLS_PROXY=true).
    #[arg(long)]
    behind_tls_proxy: bool,
}

/// Entries whose inclusion proofs `haven audit verify` builds and checks from the stored
/// tree after the full check.
const PROOF_SAMPLES: u64 = 1000;

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create the organisation (on first use) and an invitation for an administrator;
    /// print the invitation once. Whoever redeems it at `POST /api/v1/auth/enrol` chooses
    /// a login and a password, then sets up a second factor.
    Bootstrap {
        #[command(flatten)]
        common: CommonArgs,
        /// The organisation's name, used only when none exists yet.
        #[arg(long, default_value = "Haven")]
        organisation: String,
        /// The role to invite: `administrator`, or a reviewer (`auditor`,
        /// `privacy_officer`), whom administrators cannot invite themselves.
        #[arg(long, default_value = "administrator")]
        role: String,
        /// Hours until the invitation expires.
        #[arg(long, default_value_t = haven_app::identity::INVITATION_TTL_HOURS_DEFAULT)]
        ttl_hours: u32,
    },
    /// Mint an API token and print it once.
    Token {
        #[command(flatten)]
        common: CommonArgs,
        /// The role the token acts with.
        #[arg(long, default_value = "administrator")]
        role: String,
        /// For `--role patient`: the id of the patient the token stands for.
        #[arg(long)]
        patient: Option<String>,
        /// A note saying what the token is for.
        #[arg(long, default_value = "cli")]
        label: String,
        /// Hours until the token expires.
        #[arg(long, default_value_t = haven_app::tokens::TOKEN_TTL_HOURS_DEFAULT)]
        ttl_hours: u32,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a new root key, re-wrap every stored key with it and destroy the old one.
    /// Stop `haven serve` first.
    Rotate {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Destroy one patient's key: their records become permanently unreadable in this
    /// database and its replicas. Backups taken earlier still hold the wrapped key until the
    /// root key that wraps it is gone: run `haven keys rotate` afterwards to cut them off.
    /// Stop `haven serve` first.
    ShredPatient {
        #[command(flatten)]
        common: CommonArgs,
        /// The patient's id.
        patient: String,
        /// Confirm that the patient's data is to be destroyed for ever.
        #[arg(long)]
        yes: bool,
    },
}

fn environment() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("HAVEN_"))
        .collect()
}

fn load_config(
    common: &CommonArgs,
    extra: &[(&'static str, Option<String>)],
) -> Result<Config, ConfigError> {
    let mut flags = Flags {
        config: common.config.clone(),
        ..Flags::default()
    };
    if let Some(dir) = &common.data_dir {
        flags.values.insert("data_dir", dir.clone());
    }
    for (key, value) in extra {
        if let Some(value) = value {
            flags.values.insert(key, value.clone());
        }
    }
    config::load(&flags, &environment())
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("HAVEN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server and the importer run many requests at once, on every core. Verifying the
    // audit log is one loop that reads the log page by page: on one thread, a page that
    // arrives from PostgreSQL is read by the thread that waited for it, where a pool of
    // threads spent a third of the verifier's CPU handing the socket's wake-ups between
    // threads (profiled).
    let sequential = matches!(cli.command, Command::Audit(AuditCommand::Verify { .. }));
    let mut builder = if sequential {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if let Some(config_error) = error.downcast_ref::<ConfigError>() {
                eprintln!("error: {config_error}");
                return ExitCode::from(2);
            }
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = load_config(
                &args.common,
                &[
                    ("listen", args.listen.clone()),
                    ("tls_cert", args.tls_cert.clone()),
                    ("tls_key", args.tls_key.clone()),
                    (
                        "behind_tls_proxy",
                        args.behind_tls_proxy.then(|| "true".to_owned()),
                    ),
                ],
            )?;
            init_logging(config.log_format);
            tracing::info!(?config, "starting haven");
            let application = Application::build(config).await?;
            // The one line on stdout: tools and tests read the address from it.
            let mut stdout = std::io::stdout();
            writeln!(stdout, "listening on {}", application.url())?;
            stdout.flush()?;
            application
                .run_until_stopped(haven_server::shutdown_signal())
                .await?;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Admin(AdminCommand::Bootstrap {
            common,
            organisation,
            role,
            ttl_hours,
        }) => {
            let config = load_config(&common, &[])?;
            let role: Role = role.parse()?;
            if !matches!(
                role,
                Role::Administrator | Role::Auditor | Role::PrivacyOfficer
            ) {
                anyhow::bail!(
                    "--role: the console invites administrators and reviewers; administrators invite everyone else"
                );
            }
            haven_server::prepare_data_dir(&config.data_dir)?;
            let store = haven_server::open_store(&config).await?;
            let audit = store.audit_sink();
            let now_ms = SystemClock.now_ms();
            let organisation = haven_app::identity::bootstrap_organisation(
                &*store,
                &*audit,
                &organisation,
                now_ms,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let issued = haven_app::identity::issue_invitation(
                &*store,
                &*audit,
                organisation.id,
                role,
                None,
                ttl_hours,
                None,
                now_ms,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "Invited a {role} of {} (invitation {}), valid for {ttl_hours} hours. \
                 Redeem it at POST /api/v1/auth/enrol; it is shown only once:",
                organisation.name, issued.id
            );
            writeln!(std::io::stdout(), "{}", issued.token.expose_secret())?;
            Ok(())
        }
        Command::Admin(AdminCommand::Token {
            common,
            role,
            patient,
            label,
            ttl_hours,
        }) => {
            let config = load_config(&common, &[])?;
            let role: Role = role.parse()?;
            let patient = patient
                .map(|id| id.parse::<haven_domain::PatientId>())
                .transpose()
                .map_err(|e| anyhow::anyhow!("--patient: {e}"))?;
            haven_server::prepare_data_dir(&config.data_dir)?;
            let store = haven_server::open_store(&config).await?;
            let audit = store.audit_sink();
            let issued = haven_app::tokens::issue_token(
                &*store,
                &*audit,
                role,
                patient,
                &label,
                ttl_hours,
                SystemClock.now_ms(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "Issued a {role} token (id {}), valid for {ttl_hours} hours. It is shown only once; store it safely:",
                issued.id
            );
            let mut stdout = std::io::stdout();
            writeln!(stdout, "{}", issued.secret.expose_secret())?;
            Ok(())
        }
        Command::Audit(AuditCommand::Checkpoints {
            common,
            after,
            follow,
        }) => {
            let config = load_config(&common, &[])?;
            let store = haven_server::open_store(&config).await?;
            let mut after = after;
            let mut stdout = std::io::stdout();
            loop {
                let page = store
                    .checkpoints(after, haven_store::limits::CHECKPOINT_PAGE_ROWS_MAX)
                    .await?;
                for checkpoint in &page {
                    let line = serde_json::json!({
                        "size": checkpoint.size,
                        "note": checkpoint.note,
                        "created_at_ms": checkpoint.created_at_ms,
                    });
                    writeln!(stdout, "{line}")?;
                    after = checkpoint.size;
                }
                stdout.flush()?;
                if page.len() == haven_store::limits::CHECKPOINT_PAGE_ROWS_MAX as usize {
                    continue;
                }
                if !follow {
                    return Ok(());
                }
                tokio::select! {
                    () = tokio::time::sleep(std::time::Duration::from_millis(
                        haven_app::audit_log::CHECKPOINT_INTERVAL_MS,
                    )) => {}
                    () = haven_server::shutdown_signal() => return Ok(()),
                }
            }
        }
        Command::Audit(AuditCommand::Export { common }) => {
            let config = load_config(&common, &[])?;
            let store = haven_server::open_store(&config).await?;
            haven_app::audit_log::export_log(
                &*store,
                SystemClock.now_ms(),
                &mut std::io::stdout().lock(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(())
        }
        Command::Audit(AuditCommand::VerifyExport {
            entries,
            checkpoint,
            vkey,
        }) => {
            let verifier = haven_audit::checkpoint::CheckpointVerifier::parse_vkey(&vkey)
                .map_err(|e| anyhow::anyhow!("--vkey: {e}"))?;
            let note = std::fs::read_to_string(&checkpoint)
                .with_context(|| format!("cannot read {}", checkpoint.display()))?;
            let file = std::fs::File::open(&entries)
                .with_context(|| format!("cannot read {}", entries.display()))?;
            let verified = haven_app::audit_log::verify_export(
                std::io::BufReader::new(file),
                &note,
                &verifier,
            )
            .map_err(|e| anyhow::anyhow!("export verification FAILED: {e}"))?;
            writeln!(
                std::io::stdout(),
                "export verified: its first {verified} entries match the signed checkpoint"
            )?;
            Ok(())
        }
        Command::Audit(AuditCommand::Vkey { common }) => {
            let config = load_config(&common, &[])?;
            let verifier = stored_audit_verifier(&config).await?;
            writeln!(std::io::stdout(), "{}", verifier.vkey())?;
            Ok(())
        }
        Command::Audit(AuditCommand::Verify { common, vkey }) => {
            let config = load_config(&common, &[])?;
            let verifier = match vkey {
                Some(text) => haven_audit::checkpoint::CheckpointVerifier::parse_vkey(&text)
                    .map_err(|e| anyhow::anyhow!("--vkey: {e}"))?,
                None => stored_audit_verifier(&config).await?,
            };
            let store = haven_server::open_store(&config).await?;
            let started = std::time::Instant::now();
            let cpu_started = process_cpu_seconds();
            let mut reported = 0u64;
            let mut progress = |done: u64| {
                if done >= reported + 100_000 {
                    reported = done;
                    eprintln!("hashed {done} entries");
                }
            };
            let outcome = haven_app::audit_log::verify_log(&*store, &verifier, &mut progress)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            match outcome {
                Ok(verified) => {
                    // Per CPU-second as well as per wall-clock second: the rate one core
                    // sustains, unaffected by whatever else the machine is running.
                    let cpu_seconds = (process_cpu_seconds() - cpu_started).max(1e-9);
                    writeln!(
                        std::io::stdout(),
                        "audit log verified: {} entries, {} signed checkpoints, in {:.2?} \
                         ({:.0} entries/s; {:.0} entries per CPU-second over {:.2} CPU-s)",
                        verified.entries,
                        verified.checkpoints,
                        started.elapsed(),
                        verified.entries as f64 / started.elapsed().as_secs_f64().max(1e-9),
                        verified.entries as f64 / cpu_seconds,
                        cpu_seconds,
                    )?;
                    let sample =
                        haven_app::transparency::sample_inclusion_proofs(&*store, PROOF_SAMPLES)
                            .await
                            .map_err(|e| anyhow::anyhow!("audit log verification FAILED: {e}"))?;
                    if let Some(sample) = sample {
                        writeln!(
                            std::io::stdout(),
                            "inclusion proofs: {} built from the stored tree and checked against the checkpoint at size {} \
                             (paths of up to {} hashes): built in p50 {:.1} µs, p99 {:.1} µs; checked in {:.2} µs each",
                            sample.proofs,
                            sample.size,
                            sample.path_hashes_max,
                            sample.generate_p50_micros,
                            sample.generate_p99_micros,
                            sample.verify_mean_micros,
                        )?;
                    }
                    Ok(())
                }
                Err(altered) => anyhow::bail!("audit log verification FAILED: {altered}"),
            }
        }
        Command::Import(args) => import(args).await,
        Command::Keys(KeysCommand::Rotate { common }) => {
            let config = load_config(&common, &[])?;
            let _lock = DataDirLock::acquire(&config.data_dir)?;
            let mut keyring = LocalKeyring::open_or_create(&haven_server::keyring_dir(&config))?;
            let store = haven_server::open_store(&config).await?;
            let audit: Arc<dyn AuditSink> = store.audit_sink();
            let mut progress =
                |done: u64, total: u64| eprintln!("re-wrapped {done} of {total} keys");
            let report = haven_app::keys::rotate_local_root(
                &*store,
                &*audit,
                &mut keyring,
                SystemClock.now_ms(),
                &mut progress,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "Rotated: new root key {}; {} keys re-wrapped; {} old root key(s) destroyed.",
                report.new_root,
                report.rewrapped,
                report.retired.len()
            );
            Ok(())
        }
        Command::Keys(KeysCommand::ShredPatient {
            common,
            patient,
            yes,
        }) => {
            let config = load_config(&common, &[])?;
            let patient: PatientId = patient
                .parse()
                .with_context(|| format!("`{patient}` is not a patient id"))?;
            anyhow::ensure!(
                yes,
                "this permanently destroys every record of patient {patient}; run again with --yes to confirm"
            );
            let _lock = DataDirLock::acquire(&config.data_dir)?;
            let store = haven_server::open_store(&config).await?;
            let audit = store.audit_sink();
            let destroyed =
                haven_app::keys::shred_patient(&*store, &*audit, patient, SystemClock.now_ms())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            if destroyed {
                eprintln!(
                    "Patient {patient}'s key was destroyed; their records can no longer be read. \
                     Run `haven keys rotate` next so that older backups cannot be opened either."
                );
            } else {
                eprintln!(
                    "Patient {patient} has no key (unknown, or already erased); nothing changed."
                );
            }
            Ok(())
        }
    }
}

/// The verifier of the audit log's own signing key, unwrapped with the local keyring.
async fn stored_audit_verifier(
    config: &Config,
) -> anyhow::Result<haven_audit::checkpoint::CheckpointVerifier> {
    let keyring = LocalKeyring::open_or_create(&haven_server::keyring_dir(config))?;
    let store = haven_server::open_store(config).await?;
    let signer =
        haven_app::audit_log::load_or_create_signer(&*store, &keyring, SystemClock.now_ms())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(signer.verifier())
}

/// `haven import`: the files into the server at `--url`, with a progress bar on a
/// terminal and a summary on stdout.
async fn import(args: ImportArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let token = match &args.token_file {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("--token-file {}", file.display()))?,
        None => std::env::var("HAVEN_TOKEN").map_err(|_| {
            anyhow::anyhow!(
                "no token: set HAVEN_TOKEN or pass --token-file (mint one with `haven admin token --role integration`)"
            )
        })?,
    };
    let ca_pem = args
        .ca_file
        .as_ref()
        .map(|file| std::fs::read(file).with_context(|| format!("--ca-file {}", file.display())))
        .transpose()?;
    let mut total_bytes = 0;
    for file in &args.files {
        total_bytes += std::fs::metadata(file)
            .with_context(|| format!("{}", file.display()))?
            .len();
    }
    let bar = indicatif::ProgressBar::new(total_bytes);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let shown = bar.clone();
    let mut importer = haven_server::import::Importer::new(
        haven_server::import::Target {
            url: args.url.clone(),
            token,
            ca_pem,
        },
        Box::new(move |bytes, resources| {
            shown.set_position(bytes);
            shown.set_message(format!("{resources} resources read"));
        }),
    )?;
    let outcome = importer.import(&args.files).await;
    bar.finish_and_clear();
    let mut stdout = std::io::stdout();
    write!(stdout, "{}", importer.summary.render())?;
    outcome?;
    if importer.summary.failed > 0 {
        anyhow::bail!(
            "{} resource(s) were not imported (listed above)",
            importer.summary.failed
        );
    }
    Ok(())
}

/// CPU time this process has used so far, on every thread, in seconds.
fn process_cpu_seconds() -> f64 {
    let spent = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    spent.tv_sec as f64 + spent.tv_nsec as f64 / 1e9
}
