//! Haven's use cases. Handlers in `api` call these; these call the store traits.
//!
//! Every use case that touches health data follows one path: authorize (the policy function
//! in `domain`) → audit (append, durably, before anything is opened) → load sealed → open
//! with a grant → answer. The [`gate`] is the only code that holds the key provider, so it
//! is the only way to open a sealed record.
//!
//! This crate knows nothing of HTTP.

#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;

use haven_audit::{AuditSink, RequestOrigin};
use haven_crypto::{BlindIndexKey, KeyProvider};
use haven_domain::{Actor, ValidationError};
use haven_store::{Store, StoreError};

pub mod attachments;
pub mod audit_log;
pub mod care;
pub mod clock;
mod codec;
pub mod fhir;
pub mod gate;
pub mod identity;
pub mod keys;
pub mod messaging;
pub mod notifications;
pub mod patients;
pub mod proxies;
pub mod relay;
pub mod siem;
pub mod tokens;
pub mod transparency;
pub mod visits;

pub use clock::{Clock, SystemClock};
pub use gate::AccessGate;
pub use haven_crypto::Secret;

/// Who is acting and from where: everything the gate needs to decide and to audit.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub actor: Actor,
    pub origin: RequestOrigin,
    /// For a signed-in user: when they last proved who they are (sign-in or step-up), for
    /// sensitive actions that need a fresh proof. `None` for API tokens, which are
    /// operators' machine credentials and carry no session to step up.
    pub authenticated_at_ms: Option<i64>,
}

/// What a use case can answer besides success. Expected outcomes are distinct from
/// [`AppError::Unexpected`], whose detail is for the log only.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid input: {0}")]
    Invalid(#[from] ValidationError),
    #[error("not found")]
    NotFound,
    /// The record's key was destroyed (crypto-shredding); it can never be read again.
    #[error("the record was permanently erased")]
    Erased,
    #[error("access denied: {reason}")]
    Forbidden { reason: &'static str },
    #[error("the record is at version {current}")]
    VersionMismatch { current: i64 },
    /// The request clashes with the current state (a login taken, a factor already set up).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The audit log could not record the access, so the access was refused (fail closed).
    #[error("the audit log is unavailable; access refused")]
    AuditUnavailable,
    /// Too much work of this kind is queued (a sign-in flood); retry shortly.
    #[error("busy; retry shortly")]
    Busy,
    /// Too many attempts from this address or for this account; retry after the delay.
    #[error("too many attempts; retry in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    /// Not signed in, or the session ended: sign in again.
    #[error("authentication required ({reason})")]
    Unauthenticated { reason: &'static str },
    /// A FHIR resource failed validation: the FHIRPath of the element and why.
    #[error("invalid resource at {path}: {message}")]
    InvalidResource { path: String, message: String },
    /// The resource was deleted; its history remains.
    #[error("deleted at version {version}")]
    Gone { version: i64 },
    /// `If-Match` named a version that is no longer current.
    #[error("the resource is at version {current}, not the one named")]
    PreconditionFailed { current: i64 },
    /// The interaction or parameter is not one Haven offers.
    #[error("not supported: {0}")]
    NotSupported(String),
    /// A search would look at more than its cost limit allows: narrow it.
    #[error("too costly: {0}")]
    TooCostly(String),
    /// The content is larger than `limit_bytes` allows.
    #[error("larger than {limit_bytes} bytes")]
    TooLarge { limit_bytes: u64 },
    /// A media type Haven does not keep.
    #[error("unsupported media type: {0}")]
    UnsupportedMedia(String),
    /// One entry of a Bundle failed; in a transaction, nothing of it was applied.
    #[error("Bundle entry {index}: {source}")]
    BundleEntry { index: usize, source: Box<AppError> },
    #[error("unexpected: {0}")]
    Unexpected(String),
}

impl From<haven_fhir::Invalid> for AppError {
    fn from(invalid: haven_fhir::Invalid) -> Self {
        AppError::InvalidResource {
            path: invalid.path,
            message: invalid.message,
        }
    }
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        AppError::Unexpected(error.to_string())
    }
}

impl From<haven_crypto::CryptoError> for AppError {
    fn from(error: haven_crypto::CryptoError) -> Self {
        AppError::Unexpected(error.to_string())
    }
}

pub type AppResult<T> = Result<T, AppError>;

/// The application: the store, the access gate, the blind-index key and the clock.
#[derive(Clone)]
pub struct App {
    store: Arc<dyn Store>,
    /// Where attachments' sealed chunks live (the database unless configured otherwise).
    blobs: Arc<dyn haven_store::blobs::BlobStore>,
    gate: Arc<AccessGate>,
    blind: Arc<BlindIndexKey>,
    clock: Arc<dyn Clock>,
    token_cache: Arc<tokens::TokenCache>,
    passwords: identity::passwords::PasswordHasherPool,
    throttle: Arc<identity::throttle::Throttle>,
    /// One password check at a time per login.
    login_lanes: Arc<identity::lanes::LoginLanes>,
    /// Anonymous passkey ceremonies begun, per address.
    ceremonies: Arc<identity::throttle::Throttle>,
    /// The WebAuthn relying party, once the server knows its public address.
    passkeys: Arc<std::sync::OnceLock<haven_webauthn::RelyingParty>>,
    checkpointer: Arc<tokio::sync::Mutex<audit_log::Checkpointer>>,
    audit_verifier: haven_audit::checkpoint::CheckpointVerifier,
    /// Held while a reviewer's full verification of the log runs: one at a time.
    verifying: Arc<tokio::sync::Mutex<()>>,
    /// The connected clients to nudge when something of theirs changes.
    relay: Arc<relay::Relay>,
    /// The video visits' rooms on this instance.
    rooms: Arc<visits::Rooms>,
    /// The media relay browsers are given, when the deployment has one.
    turn: Option<Arc<visits::TurnSettings>>,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Builds the application, creating the deployment's blind-index key on first start.
    pub async fn new(
        store: Arc<dyn Store>,
        audit: Arc<dyn AuditSink>,
        keys: Arc<dyn KeyProvider>,
        clock: Arc<dyn Clock>,
    ) -> AppResult<Self> {
        let blind = keys::load_or_create_blind_index_key(&*store, &*keys, clock.now_ms()).await?;
        let signer = audit_log::load_or_create_signer(&*store, &*keys, clock.now_ms()).await?;
        let checkpointer = audit_log::Checkpointer::start(&*store, signer).await?;
        let audit_verifier = checkpointer.verifier();
        let gate = Arc::new(AccessGate::new(keys, audit, clock.clone(), store.clone()));
        Ok(Self {
            blobs: Arc::new(haven_store::blobs::DatabaseBlobs::new(store.clone())),
            store,
            gate,
            blind: Arc::new(blind),
            clock,
            token_cache: Arc::default(),
            passwords: identity::passwords::PasswordHasherPool::new()?,
            throttle: Arc::default(),
            login_lanes: Arc::default(),
            ceremonies: Arc::new(identity::throttle::Throttle::with_limit(
                identity::throttle::CEREMONIES_PER_WINDOW_MAX,
            )),
            passkeys: Arc::default(),
            checkpointer: Arc::new(tokio::sync::Mutex::new(checkpointer)),
            audit_verifier,
            verifying: Arc::default(),
            relay: Arc::default(),
            rooms: Arc::default(),
            turn: None,
        })
    }

    /// The connected clients of this instance, for the event stream.
    pub fn relay(&self) -> &relay::Relay {
        &self.relay
    }

    /// Keeps attachments' chunks in `blobs` instead of the database.
    pub fn with_blobs(mut self, blobs: Arc<dyn haven_store::blobs::BlobStore>) -> Self {
        self.blobs = blobs;
        self
    }

    /// The public key that verifies this deployment's audit checkpoints.
    pub fn audit_verifier(&self) -> &haven_audit::checkpoint::CheckpointVerifier {
        &self.audit_verifier
    }

    /// Signs and stores a checkpoint if the audit log grew since the last one.
    pub async fn checkpoint_now(&self) -> AppResult<Option<haven_store::StoredCheckpoint>> {
        let mut checkpointer = self.checkpointer.lock().await;
        checkpointer
            .checkpoint(&*self.store, self.clock.now_ms())
            .await
    }

    /// Checkpoints the audit log every [`audit_log::CHECKPOINT_INTERVAL_MS`] until `stop`
    /// completes, then once more, so the last entries are covered before shutdown.
    pub async fn run_checkpointer(&self, stop: impl std::future::Future<Output = ()>) {
        let period = std::time::Duration::from_millis(audit_log::CHECKPOINT_INTERVAL_MS);
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    if let Err(error) = self.checkpoint_now().await {
                        tracing::error!(%error, "audit checkpoint failed");
                    }
                }
                () = &mut stop => break,
            }
        }
        if let Err(error) = self.checkpoint_now().await {
            tracing::error!(%error, "final audit checkpoint failed");
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Readiness: the database answers and the key provider can wrap and unwrap.
    pub async fn check_ready(&self) -> Result<(), String> {
        self.store
            .ping()
            .await
            .map_err(|e| format!("database: {e}"))?;
        self.gate.check_keys().map_err(|e| format!("keyring: {e}"))
    }
}
