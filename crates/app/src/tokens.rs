//! API tokens: minted by `haven admin token`, presented as `Authorization: Bearer …`.
//!
//! A token is `hvn_` followed by 256 random bits (base64url). Only its SHA-256 is stored:
//! a slow password hash buys nothing for a secret with that much entropy, and a fast hash
//! keeps every request's authentication cheap. The secret is shown once, at issue.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use haven_audit::{AuditAction, AuditEvent, AuditSink, Outcome, RequestOrigin};
use haven_crypto::Secret;
use haven_domain::{Actor, PatientId, Principal, Role, TokenId};
use haven_store::{Store, StoredToken};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::keys::system_event;
use crate::{App, AppError, AppResult};

const TOKEN_PREFIX: &str = "hvn_";
const TOKEN_SECRET_BYTES: usize = 32;
/// `hvn_` + 43 base64url characters.
const TOKEN_CHARS: usize = 4 + 43;
pub const TOKEN_TTL_HOURS_DEFAULT: u32 = 24;
pub const TOKEN_TTL_HOURS_MAX: u32 = 24 * 90;
pub const TOKEN_LABEL_CHARS_MAX: usize = 100;

/// A freshly issued token; `secret` is shown to the operator once and never stored.
#[derive(Debug)]
pub struct IssuedToken {
    pub id: TokenId,
    pub secret: Secret<String>,
    pub expires_at_ms: i64,
}

/// Why a presented token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Not a token Haven issued (or malformed).
    Unknown,
    Expired,
    Revoked,
}

impl AuthFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Unknown => "unknown_token",
            AuthFailure::Expired => "token_expired",
            AuthFailure::Revoked => "token_revoked",
        }
    }
}

/// How long a verified token is trusted without asking the database again. This bounds how
/// long a revocation takes to reach every instance; it saves a query on every request.
pub const TOKEN_CACHE_TTL_MS: i64 = 5_000;
/// The most verified tokens kept; when full, the cache starts over.
pub const TOKEN_CACHE_ENTRIES_MAX: usize = 10_000;

#[derive(Debug, Clone)]
struct CachedToken {
    actor: Actor,
    expires_at_ms: i64,
    verified_at_ms: i64,
}

/// Tokens recently verified against the store, keyed by their hash (never the secret).
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<Vec<u8>, CachedToken>>,
}

impl TokenCache {
    fn get(&self, hash: &[u8], now_ms: i64) -> Option<Result<Actor, AuthFailure>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let cached = entries.get(hash)?;
        if now_ms - cached.verified_at_ms >= TOKEN_CACHE_TTL_MS || now_ms < cached.verified_at_ms {
            return None;
        }
        // Expiry is checked on every request, cached or not.
        Some(if cached.expires_at_ms <= now_ms {
            Err(AuthFailure::Expired)
        } else {
            Ok(cached.actor.clone())
        })
    }

    fn put(&self, hash: Vec<u8>, token: CachedToken) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= TOKEN_CACHE_ENTRIES_MAX {
            entries.clear();
        }
        entries.insert(hash, token);
    }
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Mints a token for `role`, valid for `ttl_hours`. Audited as a privilege change.
///
/// A patient-role token stands for one existing patient (`patient`), and only a
/// patient-role token may: staff reach patients through the policy, not through a link.
pub async fn issue_token(
    store: &dyn Store,
    audit: &dyn AuditSink,
    role: Role,
    patient: Option<PatientId>,
    label: &str,
    ttl_hours: u32,
    now_ms: i64,
) -> AppResult<IssuedToken> {
    match (role, patient) {
        (Role::Patient, None) => {
            return Err(AppError::Invalid(haven_domain::ValidationError {
                field: "patient".into(),
                message: "a patient token must name the patient it stands for".into(),
            }));
        }
        (Role::Patient, Some(id)) => {
            if store.get_patient(id).await?.is_none() {
                return Err(AppError::Invalid(haven_domain::ValidationError {
                    field: "patient".into(),
                    message: "no patient has this id".into(),
                }));
            }
        }
        (_, Some(_)) => {
            return Err(AppError::Invalid(haven_domain::ValidationError {
                field: "patient".into(),
                message: "only a patient token stands for a patient".into(),
            }));
        }
        (_, None) => {}
    }
    let label = label.trim();
    if label.chars().count() > TOKEN_LABEL_CHARS_MAX || label.chars().any(char::is_control) {
        return Err(AppError::Invalid(haven_domain::ValidationError {
            field: "label".into(),
            message: format!("at most {TOKEN_LABEL_CHARS_MAX} printable characters"),
        }));
    }
    if ttl_hours == 0 || ttl_hours > TOKEN_TTL_HOURS_MAX {
        return Err(AppError::Invalid(haven_domain::ValidationError {
            field: "ttl_hours".into(),
            message: format!("between 1 and {TOKEN_TTL_HOURS_MAX} hours"),
        }));
    }
    let mut bytes = [0u8; TOKEN_SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let id = TokenId::generate();
    let expires_at_ms = now_ms + i64::from(ttl_hours) * 3_600_000;

    let mut event = system_event(
        now_ms,
        AuditAction::PrivilegeChange,
        None,
        "api_token_issued",
    );
    event.resource_type = Some("ApiToken".into());
    event.resource_id = Some(id.to_string());
    event.role = Some(role.as_str().into());
    event.patient = patient;
    audit
        .append(vec![event])
        .await
        .map_err(|_| AppError::AuditUnavailable)?;

    store
        .insert_token(StoredToken {
            id,
            token_hash: hash(&secret),
            role: role.as_str().to_owned(),
            label: label.to_owned(),
            created_at_ms: now_ms,
            expires_at_ms,
            revoked_at_ms: None,
            patient,
        })
        .await?;
    Ok(IssuedToken {
        id,
        secret: Secret::new(secret),
        expires_at_ms,
    })
}

impl App {
    /// Resolves a presented bearer token to the actor it stands for. A failure is audited
    /// (`failed_login`) before it is answered.
    pub async fn authenticate(
        &self,
        presented: &str,
        origin: &RequestOrigin,
    ) -> AppResult<Result<Actor, AuthFailure>> {
        let outcome = self.check_token(presented).await?;
        if let Err(failure) = outcome {
            let event = AuditEvent {
                at_ms: self.clock.now_ms(),
                actor: None,
                role: None,
                organisation: None,
                session: None,
                client_app: None,
                action: AuditAction::FailedLogin,
                patient: None,
                resource_type: None,
                resource_id: None,
                outcome: Outcome::Denied,
                reason: failure.as_str().to_owned(),
                purpose_of_use: None,
                origin: origin.clone(),
            };
            self.gate.record_system(event).await?;
        }
        Ok(outcome)
    }

    async fn check_token(&self, presented: &str) -> AppResult<Result<Actor, AuthFailure>> {
        if presented.len() != TOKEN_CHARS || !presented.starts_with(TOKEN_PREFIX) {
            return Ok(Err(AuthFailure::Unknown));
        }
        let hash = hash(presented);
        let now_ms = self.clock.now_ms();
        if let Some(cached) = self.token_cache.get(&hash, now_ms) {
            return Ok(cached);
        }
        let Some(stored) = self.store.token_by_hash(&hash).await? else {
            return Ok(Err(AuthFailure::Unknown));
        };
        if stored.revoked_at_ms.is_some() {
            return Ok(Err(AuthFailure::Revoked));
        }
        if stored.expires_at_ms <= now_ms {
            return Ok(Err(AuthFailure::Expired));
        }
        let role = stored
            .role
            .parse::<Role>()
            .map_err(|e| AppError::Unexpected(format!("stored token role: {e}")))?;
        let actor = Actor {
            principal: Principal::ApiToken(stored.id),
            role,
            organisation: None,
            patient: stored.patient,
        };
        self.token_cache.put(
            hash,
            CachedToken {
                actor: actor.clone(),
                expires_at_ms: stored.expires_at_ms,
                verified_at_ms: now_ms,
            },
        );
        Ok(Ok(actor))
    }
}
