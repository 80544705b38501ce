//! The `haven` binary's library half: configuration, start-up and the HTTP(S) listener.
//!
//! [`Application::build`] opens the data directory, the keyring and the database and binds
//! the listener; [`Application::run_until_stopped`] serves until the shutdown future
//! completes, then lets in-flight requests finish. Tests build the same application on
//! port 0. Only this crate reads the environment or files at start-up.

#![forbid(unsafe_code)]

use std::fs;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use haven_app::{App, Clock, SystemClock};
use haven_audit::AuditSink;
use haven_crypto::LocalKeyring;
use haven_store::{PostgresStore, SqliteStore, Store, TableAuditSink};
use tokio::net::TcpListener;

pub mod config;
pub mod import;
mod listener;
mod siem_transport;

pub use config::Config;

/// The SQLite file inside the data directory.
pub const DATABASE_FILE: &str = "haven.db";
/// The keyring directory inside the data directory.
pub const KEYRING_DIR: &str = "keyring";
const LOCK_FILE: &str = "haven.lock";

/// An exclusive hold on a data directory: one `haven serve` (or key operation) at a time,
/// so key rotation can never race a server that still wraps keys with the old root.
#[derive(Debug)]
pub struct DataDirLock {
    _file: fs::File,
}

impl DataDirLock {
    pub fn acquire(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(fs::TryLockError::WouldBlock) => anyhow::bail!(
                "another haven process is using {}; stop it first",
                data_dir.display()
            ),
            Err(fs::TryLockError::Error(error)) => {
                Err(error).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

/// Creates the data directory, readable only by the service user, if it does not exist.
pub fn prepare_data_dir(data_dir: &Path) -> anyhow::Result<()> {
    if data_dir.exists() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))
}

/// Opens the configured store: PostgreSQL if a URL is set, else the embedded SQLite file.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match &config.database_url {
        Some(url) => Arc::new(
            PostgresStore::connect(url)
                .await
                .context("cannot connect to PostgreSQL (HAVEN_DATABASE_URL)")?,
        ),
        None => {
            let path = config.data_dir.join(DATABASE_FILE);
            Arc::new(
                SqliteStore::open(&path)
                    .await
                    .with_context(|| format!("cannot open the database {}", path.display()))?,
            )
        }
    })
}

pub fn keyring_dir(config: &Config) -> PathBuf {
    config.data_dir.join(KEYRING_DIR)
}

/// The WebAuthn relying party: the configured public URL, or on a loopback address
/// `http(s)://localhost:PORT` (browsers refuse passkeys on an IP address). `None` when
/// neither is known: passkeys are then unavailable, and say so.
fn passkey_relying_party(
    config: &Config,
    local_addr: SocketAddr,
    tls: bool,
) -> anyhow::Result<Option<haven_webauthn::RelyingParty>> {
    let origin = match &config.public_url {
        Some(url) => url.clone(),
        None if local_addr.ip().is_loopback() => format!(
            "{}://localhost:{}",
            if tls { "https" } else { "http" },
            local_addr.port()
        ),
        None => return Ok(None),
    };
    let host = origin
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(&origin);
    let rp_id = host.rsplit_once(':').map_or(host, |(name, _)| name);
    haven_webauthn::RelyingParty::new(rp_id, "Haven", &[origin.as_str()])
        .map(Some)
        .map_err(|e| anyhow::anyhow!("invalid setting public_url: {e}"))
}

/// A built, bound, not yet serving Haven.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    config: Config,
    app: App,
    /// Sends the audit log to a SIEM collector, when configured.
    siem: Option<haven_app::siem::SiemFollower>,
    _lock: DataDirLock,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .field("config", &self.config)
            .field("siem", &self.siem.as_ref().map(|siem| siem.collector()))
            .finish_non_exhaustive()
    }
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// As [`Application::build`], with a clock of the caller's choosing (tests move time).
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        prepare_data_dir(&config.data_dir)?;
        let lock = DataDirLock::acquire(&config.data_dir)?;
        let keyring = LocalKeyring::open_or_create(&keyring_dir(&config))?;
        let store = open_store(&config).await?;
        let audit: Arc<dyn AuditSink> = Arc::new(TableAuditSink(store.clone()));
        let mut app = App::new(store, audit, Arc::new(keyring), clock)
            .await
            .context("cannot initialise the application")?;
        if let Some(dir) = &config.attachments_dir {
            let blobs = haven_store::blobs::FileBlobs::open(dir)
                .with_context(|| format!("cannot keep attachments in {}", dir.display()))?;
            app = app.with_blobs(Arc::new(blobs));
        }
        if let Some(turn) = &config.turn {
            app = app.with_turn(read_turn_secret(turn)?);
        }
        let tls = config
            .tls
            .as_ref()
            .map(listener::tls_acceptor)
            .transpose()?;
        // Built now, so an unreadable certificate stops start-up instead of the export.
        let siem = match &config.siem {
            Some(settings) => {
                let connector = siem_transport::TlsCollector::new(settings)?;
                Some(haven_app::siem::SiemFollower::new(
                    app.store().clone(),
                    Arc::new(connector),
                    app.clock().clone(),
                    siem_transport::syslog_hostname(settings),
                ))
            }
            None => None,
        };
        let router = haven_api::router(
            app.clone(),
            haven_api::HttpSettings {
                body_bytes_max: config.body_bytes_max,
                request_timeout_secs: config.request_timeout_secs,
                https: tls.is_some() || config.behind_tls_proxy,
            },
        );
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let local_addr = listener.local_addr()?;
        if let Some(relying_party) = passkey_relying_party(&config, local_addr, tls.is_some())? {
            app.configure_passkeys(relying_party);
        }
        Ok(Self {
            listener,
            local_addr,
            router,
            tls,
            config,
            app,
            siem,
            _lock: lock,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL clients use, e.g. `https://127.0.0.1:8443`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    pub fn app(&self) -> &App {
        &self.app
    }

    /// Serves until `shutdown` completes, then stops accepting and waits (at most the
    /// configured grace period) for in-flight requests to finish.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let (stop_checkpointer, checkpointer_stopped) = tokio::sync::oneshot::channel::<()>();
        let app = self.app.clone();
        let checkpointer = tokio::spawn(async move {
            app.run_checkpointer(async {
                let _ = checkpointer_stopped.await;
            })
            .await;
        });
        let (stop_sweeper, sweeper_stopped) = tokio::sync::oneshot::channel::<()>();
        let app = self.app.clone();
        let sweeper = tokio::spawn(async move {
            app.run_chunk_sweeper(async {
                let _ = sweeper_stopped.await;
            })
            .await;
        });
        let (stop_visits, visits_stopped) = tokio::sync::oneshot::channel::<()>();
        let app = self.app.clone();
        let visits = tokio::spawn(async move {
            app.run_visit_sweeper(async {
                let _ = visits_stopped.await;
            })
            .await;
        });
        let (stop_retention, retention_stopped) = tokio::sync::oneshot::channel::<()>();
        let app = self.app.clone();
        let retention = tokio::spawn(async move {
            app.run_retention_sweeper(async {
                let _ = retention_stopped.await;
            })
            .await;
        });
        // The SIEM export runs beside everything else and only reads the log, so a slow or
        // absent collector never holds up a request or an audit append.
        let (stop_siem, siem_stopped) = tokio::sync::oneshot::channel::<()>();
        let siem = self.siem.map(|follower| {
            tokio::spawn(follower.run(async {
                let _ = siem_stopped.await;
            }))
        });
        let served = listener::serve(
            self.listener,
            self.router,
            self.tls,
            listener::Limits {
                connections_max: self.config.connections_max,
                shutdown_grace_secs: self.config.shutdown_grace_secs,
            },
            shutdown,
        )
        .await;
        // In-flight requests are done: sign a last checkpoint covering their entries, and
        // send the collector what it can still take (bounded by SIEM_DRAIN_TIMEOUT_SECS).
        let _ = stop_checkpointer.send(());
        let _ = stop_siem.send(());
        let _ = stop_sweeper.send(());
        let _ = stop_retention.send(());
        let _ = stop_visits.send(());
        background_task_ended("the visit sweep", visits.await);
        background_task_ended("the message retention sweep", retention.await);
        background_task_ended("the sweep of unfinished uploads", sweeper.await);
        background_task_ended("the audit checkpointer", checkpointer.await);
        if let Some(siem) = siem {
            background_task_ended("the SIEM export", siem.await);
        }
        served
    }
}

/// Reports how a background task ended: a panic is an error; cancelled is what happens to
/// every task when the runtime itself shuts down (a process exiting mid-request), not news.
fn background_task_ended(task: &str, ended: Result<(), tokio::task::JoinError>) {
    match ended {
        Ok(()) => {}
        Err(error) if error.is_cancelled() => {
            tracing::debug!(task, "stopped with the runtime");
        }
        Err(error) => tracing::error!(task, %error, "a background task ended abnormally"),
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

/// The audit sink that belongs to a store (its append-only table, for now).
pub trait TableAuditSinkExt {
    fn audit_sink(&self) -> Arc<dyn AuditSink>;
}

impl TableAuditSinkExt for Arc<dyn Store> {
    fn audit_sink(&self) -> Arc<dyn AuditSink> {
        Arc::new(TableAuditSink(self.clone()))
    }
}

/// Reads coturn's shared secret from its file: trimmed, and long enough to be a secret.
fn read_turn_secret(turn: &config::TurnConfig) -> anyhow::Result<haven_app::visits::TurnSettings> {
    /// Shorter than this, the secret could be guessed from the credentials browsers hold.
    const TURN_SECRET_CHARS_MIN: usize = 16;
    let text = std::fs::read_to_string(&turn.secret_file).with_context(|| {
        format!(
            "cannot read the media relay's secret from {}",
            turn.secret_file.display()
        )
    })?;
    let secret = text.trim().to_owned();
    if secret.chars().count() < TURN_SECRET_CHARS_MIN {
        anyhow::bail!(
            "the media relay's secret in {} is shorter than {TURN_SECRET_CHARS_MIN} characters",
            turn.secret_file.display()
        );
    }
    Ok(haven_app::visits::TurnSettings {
        urls: turn.urls.clone(),
        secret: haven_app::Secret::new(secret),
    })
}
