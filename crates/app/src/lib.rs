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

pub mod clock;
mod codec;
pub mod gate;
pub mod keys;
pub mod patients;
pub mod tokens;

pub use clock::{Clock, SystemClock};
pub use gate::AccessGate;

/// Who is acting and from where: everything the gate needs to decide and to audit.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub actor: Actor,
    pub origin: RequestOrigin,
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
    /// The audit log could not record the access, so the access was refused (fail closed).
    #[error("the audit log is unavailable; access refused")]
    AuditUnavailable,
    #[error("unexpected: {0}")]
    Unexpected(String),
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
    gate: Arc<AccessGate>,
    blind: Arc<BlindIndexKey>,
    clock: Arc<dyn Clock>,
    token_cache: Arc<tokens::TokenCache>,
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
        Ok(Self {
            store,
            gate: Arc::new(AccessGate::new(keys, audit, clock.clone())),
            blind: Arc::new(blind),
            clock,
            token_cache: Arc::default(),
        })
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
