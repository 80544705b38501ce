//! What the store keeps for identity: organisations, users, sessions, invitations and
//! recovery codes, as rows. Secrets arrive already hashed (sessions, invitations, recovery
//! codes: SHA-256; passwords: Argon2id PHC strings) and a login name only as a blind index
//! and a sealed copy, so nothing here can be replayed or read from a stolen database.

use haven_domain::{InvitationId, OrganisationId, PatientId, SessionId, UserId};

use crate::StoredSubjectKey;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrganisation {
    pub id: OrganisationId,
    pub name: String,
    pub idle_timeout_secs: i64,
    pub absolute_timeout_secs: i64,
    /// Whether patients, too, must use a second factor (staff always must).
    pub patient_mfa_required: bool,
    /// How long a break-the-glass grant lasts.
    pub break_glass_secs: i64,
    /// Whether laboratory results wait for a clinician's review before the patient sees
    /// them (`result_release = 'after_review'`), rather than being released at once.
    pub results_after_review: bool,
    /// How many days secure messages are kept; 0 keeps them until a period is set.
    pub message_retention_days: i64,
    pub created_at_ms: i64,
}

/// A user as stored. `Debug` leaves out the password hash and the sealed secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredUser {
    pub id: UserId,
    pub organisation: OrganisationId,
    pub login_index: Vec<u8>,
    pub login_sealed: Vec<u8>,
    pub role: String,
    pub patient: Option<PatientId>,
    pub password_hash: String,
    pub password_changed_at_ms: i64,
    pub totp_sealed: Option<Vec<u8>>,
    pub totp_enabled: bool,
    /// The last TOTP time step accepted: a code is never accepted twice.
    pub totp_last_step: i64,
    pub failed_logins: i64,
    pub locked_until_ms: i64,
    pub created_at_ms: i64,
    pub disabled_at_ms: Option<i64>,
    /// The user's own key (their login name is sealed with it).
    pub subject_key: Option<StoredSubjectKey>,
}

impl std::fmt::Debug for StoredUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredUser")
            .field("id", &self.id)
            .field("organisation", &self.organisation)
            .field("role", &self.role)
            .field("patient", &self.patient)
            .field("totp_enabled", &self.totp_enabled)
            .field("failed_logins", &self.failed_logins)
            .field("locked_until_ms", &self.locked_until_ms)
            .field("disabled_at_ms", &self.disabled_at_ms)
            .finish_non_exhaustive()
    }
}

/// A user to create, with their subject key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub user: StoredUser,
    pub subject_key: StoredSubjectKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub id: SessionId,
    pub token_hash: Vec<u8>,
    pub user: UserId,
    pub created_at_ms: i64,
    pub last_seen_ms: i64,
    pub idle_timeout_ms: i64,
    /// The absolute time-out: the session ends then, however active.
    pub expires_at_ms: i64,
    /// When the user last proved who they are (sign-in or step-up).
    pub authenticated_at_ms: i64,
    /// Whether a second factor was part of that proof.
    pub mfa: bool,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub revoked_at_ms: Option<i64>,
    pub revoked_reason: Option<String>,
}

/// A session with the user it belongs to and that user's organisation, read together: every
/// authenticated request needs all three, and one look-up costs a third of three (one read
/// transaction on SQLite, one round trip on PostgreSQL). `None` where a row is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub session: StoredSession,
    pub user: Option<StoredUser>,
    pub organisation: Option<StoredOrganisation>,
}

/// The query of a [`SessionRecord`] on either engine, up to its parameter (`?1` or `$1`):
/// a session's columns, then its user's (with the user's subject key), then the
/// organisation's, each group in the order of that engine's `SESSION_COLUMNS`,
/// `USER_COLUMNS` and `ORGANISATION_COLUMNS`, so their row readers apply at an offset.
pub(crate) const SESSION_RECORD_SELECT: &str =
    "SELECT s.id, s.token_hash, s.user_id, s.created_at_ms, s.last_seen_ms,
        s.idle_timeout_ms, s.expires_at_ms, s.authenticated_at_ms, s.mfa,
        s.source_ip, s.user_agent, s.revoked_at_ms, s.revoked_reason,
        u.id, u.organisation_id, u.login_index, u.login_sealed, u.role,
        u.patient_id, u.password_hash, u.password_changed_at_ms, u.totp_sealed,
        u.totp_enabled, u.totp_last_step, u.failed_logins, u.locked_until_ms,
        u.created_at_ms, u.disabled_at_ms, k.key_id, k.root_key_id, k.wrapped,
        o.id, o.name, o.idle_timeout_secs, o.absolute_timeout_secs,
        o.patient_mfa_required, o.created_at_ms, o.break_glass_secs,
        o.result_release, o.message_retention_days
     FROM sessions s
     LEFT JOIN users u ON u.id = s.user_id
     LEFT JOIN subject_keys k ON k.subject_id = u.id
     LEFT JOIN organisations o ON o.id = u.organisation_id
     WHERE s.token_hash =";

/// Where the user's and the organisation's columns start in [`SESSION_RECORD_SELECT`]:
/// after the session's 13, then after the user's 18.
pub(crate) const SESSION_RECORD_USER_AND_ORGANISATION_AT: (usize, usize) = (13, 13 + 18);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInvitation {
    pub id: InvitationId,
    pub token_hash: Vec<u8>,
    pub organisation: OrganisationId,
    pub role: String,
    pub patient: Option<PatientId>,
    /// Who invited: a user id or `system:cli`.
    pub created_by: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub used_at_ms: Option<i64>,
    pub used_by: Option<UserId>,
}

/// What became of an attempt to redeem an invitation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// The user was created and the invitation marked used, together.
    Created,
    /// The invitation was already used, or has expired: nothing was created.
    Spent,
    /// The login name is taken: nothing was created, the invitation is still unused.
    LoginTaken,
}

/// A passkey: its credential id and public key, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPasskey {
    pub credential_id: Vec<u8>,
    pub user: UserId,
    pub public_key_cose: Vec<u8>,
    pub sign_count: i64,
    pub backup_eligible: bool,
    pub name: String,
    pub created_at_ms: i64,
    pub last_used_ms: Option<i64>,
}

/// A WebAuthn ceremony in progress: its challenge, used once, until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChallenge {
    /// Named by a random id the client sends back (ids are UUIDv7, unguessable).
    pub id: uuid::Uuid,
    pub challenge: Vec<u8>,
    /// The user registering a passkey; `None` for a sign-in (the passkey names its user).
    pub user: Option<UserId>,
    /// `register` or `sign_in`.
    pub purpose: String,
    pub expires_at_ms: i64,
}

/// The stored form of an organisation's result-release policy.
pub(crate) fn result_release_text(after_review: bool) -> &'static str {
    if after_review {
        "after_review"
    } else {
        "immediate"
    }
}
