//! Identity: organisations, users, invitations, sign-in with a password and a second
//! factor, and sessions with idle and absolute time-outs.
//!
//! - **Enrolment** is by invitation only: an administrator (or `haven admin bootstrap`,
//!   for the first one) creates a single-use, expiring link for a role (and, for a patient,
//!   their record); whoever opens it chooses a login and a password.
//! - **Sign-in** checks the password (Argon2id, [`passwords`]) and, for staff always and for
//!   patients where the organisation asks, a TOTP code ([`totp`]) or a one-time recovery
//!   code. Until the second factor is given, or set up by a staff member who has none yet,
//!   the session can do nothing else ([`SessionState::MfaRequired`],
//!   [`SessionState::MfaSetupRequired`]).
//! - **No account enumeration**: an unknown login costs a full hash against a decoy and
//!   gets the same answer as a wrong password; a locked account answers the same too (its
//!   owner is told out of band).
//! - **Throttling**: per source address in memory ([`throttle`]), per account in the store
//!   (lock after [`LOCKOUT_FAILURES`] failures, doubling up to [`LOCKOUT_SECS_MAX`]).
//! - **Sessions** are random 256-bit tokens stored as SHA-256, carried as a `__Host-` cookie
//!   (browsers, with a CSRF token for writes) or a bearer token (API clients). Every request
//!   checks the idle and the absolute time-out of the user's organisation.
//!
//! Every sign-in, failure, lock, factor change and sign-out is audited.

pub mod lanes;
pub mod passkeys;
pub mod passwords;
pub mod throttle;
pub mod totp;

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use haven_audit::AuditSink;
use haven_audit::{AuditAction, AuditEvent, Outcome, RequestOrigin};
use haven_crypto::{RecordBinding, Sealed, Secret};
use haven_domain::{
    Actor, InvitationId, OrganisationId, PatientId, Principal, Role, SessionId, UserId,
    ValidationError,
};
use haven_store::{
    NewUser, Redeemed, Store, StoredInvitation, StoredOrganisation, StoredSession, StoredUser,
};
use rand::RngCore;

/// An organisation and its policies, as use cases return it.
pub use haven_store::StoredOrganisation as Organisation;
use sha2::{Digest, Sha256};

use crate::{App, AppError, AppResult};

/// Failed sign-ins in a row before an account is locked.
pub const LOCKOUT_FAILURES: i64 = 5;
/// The same policy, as the store applies it when guesses are claimed before they are
/// checked (second factor, step-up, password change).
const GUESS_LOCK: haven_store::GuessLock = haven_store::GuessLock {
    after_failures: LOCKOUT_FAILURES,
    first_ms: LOCKOUT_SECS_FIRST * 1000,
    max_ms: LOCKOUT_SECS_MAX * 1000,
};
/// The first lock; each further failure doubles it, up to [`LOCKOUT_SECS_MAX`].
pub const LOCKOUT_SECS_FIRST: i64 = 60;
pub const LOCKOUT_SECS_MAX: i64 = 3600;
/// Session defaults for a new organisation (NIST SP 800-63B AAL2 allows 30 min idle, 12 h).
pub const IDLE_TIMEOUT_SECS_DEFAULT: i64 = 15 * 60;
pub const ABSOLUTE_TIMEOUT_SECS_DEFAULT: i64 = 12 * 3600;
/// Bounds an organisation may set its time-outs within.
pub const IDLE_TIMEOUT_SECS_RANGE: (i64, i64) = (60, 60 * 60);
pub const ABSOLUTE_TIMEOUT_SECS_RANGE: (i64, i64) = (15 * 60, 24 * 3600);
/// Activity is written to the store at most this often per session: the idle time-out is
/// exact to within this much, and a busy session does not write on every request.
pub const SESSION_TOUCH_INTERVAL_MS: i64 = 60_000;

/// How often a session's activity is written, for its idle time-out: at most every
/// [`SESSION_TOUCH_INTERVAL_MS`], and four times per time-out when that is short, or a
/// session in use could lapse between two writes. The time-out may strike this much early;
/// a client that warns before it counts this much sooner.
pub fn activity_interval_ms(idle_timeout_ms: i64) -> i64 {
    SESSION_TOUCH_INTERVAL_MS.min(idle_timeout_ms / 4)
}
/// A step-up (re-authentication) is fresh for this long.
pub const STEP_UP_FRESH_SECS: i64 = 5 * 60;
pub const INVITATION_TTL_HOURS_DEFAULT: u32 = 72;
pub const INVITATION_TTL_HOURS_MAX: u32 = 14 * 24;
pub const LOGIN_CHARS_MAX: usize = 254;
pub const RECOVERY_CODES: usize = 10;
/// Recovery codes: 10 characters of a 32-letter alphabet without look-alikes (50 bits).
const RECOVERY_CODE_CHARS: usize = 10;
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
/// Random bytes at or above this are drawn again, so every character is equally likely.
const RECOVERY_BYTE_LIMIT: u8 = 248; // 8 × 31

const SESSION_PREFIX: &str = "hvs_";
const INVITATION_PREFIX: &str = "hvi_";
const SECRET_BYTES: usize = 32;
/// `hvs_`/`hvi_` + 43 base64url characters.
const SECRET_TOKEN_CHARS: usize = 4 + 43;

/// Where a session stands with its second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Fully signed in.
    Complete,
    /// The password was right; a TOTP or recovery code must follow.
    MfaRequired,
    /// A staff member without a second factor: they must set one up first.
    MfaSetupRequired,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Complete => "complete",
            SessionState::MfaRequired => "mfa_required",
            SessionState::MfaSetupRequired => "mfa_setup_required",
        }
    }
}

/// A session just opened: the secret is shown once.
#[derive(Debug)]
pub struct OpenedSession {
    pub id: SessionId,
    pub token: Secret<String>,
    pub csrf_token: String,
    pub state: SessionState,
    pub expires_at_ms: i64,
    pub idle_timeout_secs: i64,
}

/// A session resolved from a request.
#[derive(Debug, Clone)]
pub struct SessionCaller {
    pub actor: Actor,
    pub session: SessionId,
    pub state: SessionState,
    pub authenticated_at_ms: i64,
    /// The idle time-out in force for this session (the stricter of the session's own and
    /// the organisation's), so a client can warn before it strikes.
    pub idle_timeout_secs: i64,
}

/// A new invitation: the secret is shown once (as a link).
#[derive(Debug)]
pub struct IssuedInvitation {
    pub id: InvitationId,
    pub token: Secret<String>,
    pub expires_at_ms: i64,
}

/// A user as an administrator sees them.
#[derive(Debug, Clone)]
pub struct UserSummary {
    pub id: UserId,
    pub login: String,
    pub role: String,
    pub patient: Option<PatientId>,
    pub second_factor: bool,
    pub locked: bool,
    pub disabled: bool,
    pub created_at_ms: i64,
}

/// One of my sessions, for "where am I signed in".
#[derive(Debug, Clone)]
pub struct SessionSummary {
    pub id: SessionId,
    pub created_at_ms: i64,
    pub last_seen_ms: i64,
    pub expires_at_ms: i64,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub current: bool,
}

pub(crate) fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub(crate) fn secret_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The CSRF token of a session: derived from its secret, so it needs no storage, proves
/// knowledge of the session to the server, and reveals nothing about the secret.
pub fn csrf_token(session_token: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"haven/csrf/v1\0");
    hasher.update(session_token.as_bytes());
    URL_SAFE_NO_PAD.encode(hasher.finalize())
}

pub(crate) fn invalid(field: &str, message: impl Into<String>) -> AppError {
    AppError::Invalid(ValidationError {
        field: field.into(),
        message: message.into(),
    })
}

/// An organisation's settable policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrganisationPolicy {
    pub idle_timeout_secs: i64,
    pub absolute_timeout_secs: i64,
    pub patient_mfa_required: bool,
    /// `None` keeps the current setting.
    pub break_glass_secs: Option<i64>,
    /// Whether laboratory results wait for a clinician's review before the patient sees
    /// them; `None` keeps the current setting.
    pub results_after_review: Option<bool>,
    /// Days secure messages are kept (0: until a period is set); `None` keeps the current
    /// setting.
    pub message_retention_days: Option<i64>,
}

/// A login name, normalised: an e-mail address, compared case-insensitively.
fn normalise_login(login: &str) -> AppResult<String> {
    let login = haven_crypto::blind::normalise(login);
    let plausible = login.chars().count() <= LOGIN_CHARS_MAX
        && !login.contains(' ')
        && !login.chars().any(char::is_control)
        && login
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if !plausible {
        return Err(invalid(
            "login",
            format!("an e-mail address of at most {LOGIN_CHARS_MAX} characters"),
        ));
    }
    Ok(login)
}

fn staff(role: Role) -> bool {
    role != Role::Patient
}

fn lock_after_failure(failures_before: i64, now_ms: i64) -> i64 {
    let failures = failures_before + 1;
    if failures < LOCKOUT_FAILURES {
        return 0;
    }
    let doublings = u32::try_from(failures - LOCKOUT_FAILURES)
        .unwrap_or(u32::MAX)
        .min(12);
    let secs = (LOCKOUT_SECS_FIRST << doublings).min(LOCKOUT_SECS_MAX);
    now_ms + secs * 1000
}

impl App {
    fn login_index(&self, normalised: &str) -> Vec<u8> {
        self.blind.token("login", normalised).as_bytes().to_vec()
    }

    fn identity_event(
        &self,
        action: AuditAction,
        user: Option<&StoredUser>,
        session: Option<SessionId>,
        outcome: Outcome,
        reason: &str,
        origin: &RequestOrigin,
    ) -> AuditEvent {
        AuditEvent {
            at_ms: self.clock.now_ms(),
            actor: user.map(|u| u.id.to_string()),
            role: user.map(|u| u.role.clone()),
            organisation: user.map(|u| u.organisation.to_string()),
            session: session.map(|s| s.to_string()),
            client_app: None,
            action,
            patient: None,
            resource_type: Some("User".to_owned()),
            resource_id: user.map(|u| u.id.to_string()),
            outcome,
            reason: reason.to_owned(),
            purpose_of_use: None,
            origin: origin.clone(),
        }
    }

    async fn audit_identity(&self, event: AuditEvent) -> AppResult<()> {
        self.gate.record_system(event).await
    }

    /// Leaves the account's owner a notice that it was locked, when it just was.
    async fn notify_locked(&self, user: UserId, locked: bool, now_ms: i64) -> AppResult<()> {
        if !locked {
            return Ok(());
        }
        crate::notifications::notify(
            &*self.store,
            &[user],
            crate::notifications::KIND_ACCOUNT_LOCKED,
            None,
            now_ms,
        )
        .await
    }

    // --- Organisations and invitations -----------------------------------------------------

    /// Creates an invitation; see [`issue_invitation`].
    pub async fn invite(
        &self,
        organisation: OrganisationId,
        role: Role,
        patient: Option<PatientId>,
        ttl_hours: u32,
        invited_by: Option<UserId>,
    ) -> AppResult<IssuedInvitation> {
        issue_invitation(
            &*self.store,
            self.gate.audit_sink(),
            organisation,
            role,
            patient,
            ttl_hours,
            invited_by,
            self.clock.now_ms(),
        )
        .await
    }

    /// An administrator's invitation into their own organisation.
    pub async fn invite_as(
        &self,
        context: &crate::RequestContext,
        role: Role,
        patient: Option<PatientId>,
        ttl_hours: u32,
    ) -> AppResult<IssuedInvitation> {
        self.authorize_sensitive_administration(context, haven_domain::Action::Create)
            .await?;
        // Reviewers oversee administrators: an administrator cannot make one (nor redeem
        // such an invitation themself); reviewer accounts come from the console.
        if matches!(role, Role::Auditor | Role::PrivacyOfficer) {
            return Err(AppError::Forbidden {
                reason: "reviewer_roles_by_console",
            });
        }
        let (organisation, invited_by) = match context.actor.principal {
            Principal::User { user, .. } => (context.actor.organisation, Some(user)),
            // An operator's API token: the deployment's first organisation.
            Principal::ApiToken(_) => (
                self.store.organisations().await?.first().map(|o| o.id),
                None,
            ),
        };
        let organisation = organisation.ok_or_else(|| {
            invalid(
                "organisation",
                "no organisation yet: run `haven admin bootstrap` first",
            )
        })?;
        self.invite(organisation, role, patient, ttl_hours, invited_by)
            .await
    }

    /// Enrols from an invitation: creates the user with `login` and `password` and opens
    /// their first session (staff must then set up a second factor).
    ///
    /// A login already in use is refused, which tells the invitee that it exists: each such
    /// answer, like each unusable invitation, counts against the address as a failed
    /// sign-in does, so probing for logins is throttled like guessing passwords, and is
    /// audited.
    pub async fn enrol(
        &self,
        invitation_token: &str,
        login: &str,
        password: &Secret<String>,
        origin: &RequestOrigin,
    ) -> AppResult<OpenedSession> {
        let now_ms = self.clock.now_ms();
        let ip: Option<IpAddr> = origin.source_ip.as_deref().and_then(|ip| ip.parse().ok());
        self.refuse_throttled(ip, origin, now_ms).await?;
        let invitation = if invitation_token.len() == SECRET_TOKEN_CHARS
            && invitation_token.starts_with(INVITATION_PREFIX)
        {
            self.store
                .invitation_by_hash(&secret_hash(invitation_token))
                .await?
                .filter(|i| i.used_at_ms.is_none() && i.expires_at_ms > now_ms)
        } else {
            None
        };
        let Some(invitation) = invitation else {
            return Err(self
                .enrolment_refused("invitation_invalid", ip, origin)
                .await);
        };
        let normalised = normalise_login(login)?;
        if self
            .store
            .user_by_login(&self.login_index(&normalised))
            .await?
            .is_some()
        {
            return Err(self.enrolment_refused("login_taken", ip, origin).await);
        }
        passwords::check_new_password(password.expose_secret(), &[&normalised])
            .map_err(|weak| invalid("password", weak.0))?;
        let role: Role = invitation
            .role
            .parse()
            .map_err(|e| AppError::Unexpected(format!("a stored invitation role: {e}")))?;
        let organisation = self
            .store
            .organisation(invitation.organisation)
            .await?
            .ok_or_else(|| AppError::Unexpected("an invitation's organisation is gone".into()))?;

        let id = UserId::generate();
        let (key, stored_key) = self.gate.new_user_key(id)?;
        let id_text = id.to_string();
        let login_sealed = Sealed::<String>::seal(
            &key,
            &RecordBinding {
                table: "users.login",
                record_id: &id_text,
                version: 1,
            },
            normalised.as_bytes(),
        );
        let user = StoredUser {
            id,
            organisation: organisation.id,
            login_index: self.login_index(&normalised),
            login_sealed: login_sealed.into_bytes(),
            role: role.as_str().to_owned(),
            patient: invitation.patient,
            password_hash: self.passwords.hash(password).await?,
            password_changed_at_ms: now_ms,
            totp_sealed: None,
            totp_enabled: false,
            totp_last_step: 0,
            failed_logins: 0,
            locked_until_ms: 0,
            created_at_ms: now_ms,
            disabled_at_ms: None,
            subject_key: Some(stored_key.clone()),
        };
        let mut event = self.identity_event(
            AuditAction::PrivilegeChange,
            Some(&user),
            None,
            Outcome::Allowed,
            "enrolled",
            origin,
        );
        event.patient = user.patient;
        self.audit_identity(event).await?;
        match self
            .store
            .redeem_invitation(
                invitation.id,
                now_ms,
                NewUser {
                    user: user.clone(),
                    subject_key: stored_key,
                },
            )
            .await?
        {
            Redeemed::Created => {}
            // Another enrolment won a race for the invitation or the login: the entry
            // above is followed by the refusal, so the trail says what happened.
            Redeemed::Spent => {
                return Err(self
                    .enrolment_refused("invitation_invalid", ip, origin)
                    .await);
            }
            Redeemed::LoginTaken => {
                return Err(self.enrolment_refused("login_taken", ip, origin).await);
            }
        }
        self.open_session(&user, &organisation, false, "signed_in", origin)
            .await
    }

    // --- Sign-in ---------------------------------------------------------------------------

    /// Signs in with a login and a password. Wrong password, unknown login and locked
    /// account all answer `invalid_credentials`, after the same amount of work.
    pub async fn sign_in(
        &self,
        login: &str,
        password: &Secret<String>,
        origin: &RequestOrigin,
    ) -> AppResult<OpenedSession> {
        let now_ms = self.clock.now_ms();
        let ip: Option<IpAddr> = origin.source_ip.as_deref().and_then(|ip| ip.parse().ok());
        self.refuse_throttled(ip, origin, now_ms).await?;
        let normalised = normalise_login(login).ok();
        // Guesses at one login take turns, so each sees the failures before it (see
        // `lanes`); a malformed login gets a lane of its own text, and no account.
        let lane_key = match &normalised {
            Some(normalised) => self.login_index(normalised),
            None => self.login_index(login),
        };
        let _turn = self.login_lanes.enter(lane_key.clone()).await;
        let now_ms = self.clock.now_ms();
        let user = match normalised {
            Some(_) => self.store.user_by_login(&lane_key).await?,
            None => None,
        };
        let usable = user
            .as_ref()
            .filter(|u| u.disabled_at_ms.is_none() && u.locked_until_ms <= now_ms);
        let matches = match self
            .passwords
            .verify(password, usable.map(|u| u.password_hash.as_str()))
            .await
        {
            // An address that keeps the hashers busy is flooding: count it, so its
            // attempts are soon turned away before they cost anything.
            Err(AppError::Busy) => {
                if let Some(ip) = ip {
                    self.throttle.record(ip, now_ms);
                }
                return Err(AppError::Busy);
            }
            other => other?,
        };
        let Some(user) = user else {
            self.sign_in_failed(None, "unknown_login", ip, origin)
                .await?;
            return Err(AppError::Unauthenticated {
                reason: "invalid_credentials",
            });
        };
        if user.disabled_at_ms.is_some() {
            self.sign_in_failed(Some(&user), "account_disabled", ip, origin)
                .await?;
            return Err(AppError::Unauthenticated {
                reason: "invalid_credentials",
            });
        }
        if user.locked_until_ms > now_ms {
            self.sign_in_failed(Some(&user), "account_locked", ip, origin)
                .await?;
            return Err(AppError::Unauthenticated {
                reason: "invalid_credentials",
            });
        }
        if !matches {
            let locked_until_ms = lock_after_failure(user.failed_logins, now_ms);
            let reason = if locked_until_ms > 0 {
                // The owner is told (a notice waiting for them, see `notifications`); the
                // caller hears nothing different.
                tracing::warn!(user = %user.id, "account locked after repeated failed sign-ins");
                "account_locked_now"
            } else {
                "wrong_password"
            };
            // All durable before the answer, written together: an unknown login writes
            // only its audit entry, and writes in a row would make a wrong password
            // measurably slower, telling a prober the account exists.
            let (counted, audited, noticed) = tokio::join!(
                self.store.record_login_failure(user.id, locked_until_ms),
                self.sign_in_failed(Some(&user), reason, ip, origin),
                self.notify_locked(user.id, locked_until_ms > 0, now_ms)
            );
            counted?;
            audited?;
            noticed?;
            return Err(AppError::Unauthenticated {
                reason: "invalid_credentials",
            });
        }
        let organisation = self
            .store
            .organisation(user.organisation)
            .await?
            .ok_or_else(|| AppError::Unexpected("a user's organisation is gone".into()))?;
        // Failures are forgiven only when signing in is complete: a right password with a
        // second factor still owed must not reset the count that bounds guesses at it.
        let complete = Self::state_of(&user, &organisation, false)? == SessionState::Complete;
        if complete && user.failed_logins > 0 {
            self.store.reset_login_failures(user.id).await?;
        }
        self.open_session(&user, &organisation, false, "signed_in", origin)
            .await
    }

    /// Refuses an enrolment: counted against the address, audited, and answered.
    async fn enrolment_refused(
        &self,
        reason: &'static str,
        ip: Option<IpAddr>,
        origin: &RequestOrigin,
    ) -> AppError {
        if let Err(error) = self.sign_in_failed(None, reason, ip, origin).await {
            return error;
        }
        match reason {
            "login_taken" => AppError::Conflict {
                code: "login_taken",
                message: "this login is already in use; choose another".into(),
            },
            _ => AppError::Unauthenticated {
                reason: "invitation_invalid",
            },
        }
    }

    /// Turns away an address that failed too often lately, audited.
    async fn refuse_throttled(
        &self,
        ip: Option<IpAddr>,
        origin: &RequestOrigin,
        now_ms: i64,
    ) -> AppResult<()> {
        let Some(ip) = ip else {
            return Ok(());
        };
        let Err(retry_after_secs) = self.throttle.check(ip, now_ms) else {
            return Ok(());
        };
        let event = self.identity_event(
            AuditAction::FailedLogin,
            None,
            None,
            Outcome::Denied,
            "throttled_address",
            origin,
        );
        self.audit_identity(event).await?;
        Err(AppError::Throttled { retry_after_secs })
    }

    async fn sign_in_failed(
        &self,
        user: Option<&StoredUser>,
        reason: &str,
        ip: Option<IpAddr>,
        origin: &RequestOrigin,
    ) -> AppResult<()> {
        if let Some(ip) = ip {
            self.throttle.record(ip, self.clock.now_ms());
        }
        let event = self.identity_event(
            AuditAction::FailedLogin,
            user,
            None,
            Outcome::Denied,
            reason,
            origin,
        );
        self.audit_identity(event).await
    }

    /// Whether signing in takes a second factor: always for staff, for patients when their
    /// organisation says so, and for anyone who has set one up: a factor a patient chose
    /// to add and was never asked for would protect nothing.
    fn mfa_required(user: &StoredUser, organisation: &StoredOrganisation) -> AppResult<bool> {
        let role: Role = user
            .role
            .parse()
            .map_err(|e| AppError::Unexpected(format!("a stored user role: {e}")))?;
        Ok(user.totp_enabled || staff(role) || organisation.patient_mfa_required)
    }

    fn state_of(
        user: &StoredUser,
        organisation: &StoredOrganisation,
        mfa: bool,
    ) -> AppResult<SessionState> {
        Ok(if mfa || !Self::mfa_required(user, organisation)? {
            SessionState::Complete
        } else if user.totp_enabled {
            SessionState::MfaRequired
        } else {
            SessionState::MfaSetupRequired
        })
    }

    /// Opens a session; `how` is the audit reason when it is complete at once
    /// (`signed_in`, `signed_in_passkey`).
    async fn open_session(
        &self,
        user: &StoredUser,
        organisation: &StoredOrganisation,
        mfa: bool,
        how: &str,
        origin: &RequestOrigin,
    ) -> AppResult<OpenedSession> {
        let now_ms = self.clock.now_ms();
        let token = random_token(SESSION_PREFIX);
        let session = StoredSession {
            id: SessionId::generate(),
            token_hash: secret_hash(&token),
            user: user.id,
            created_at_ms: now_ms,
            last_seen_ms: now_ms,
            idle_timeout_ms: organisation.idle_timeout_secs * 1000,
            expires_at_ms: now_ms + organisation.absolute_timeout_secs * 1000,
            authenticated_at_ms: now_ms,
            mfa,
            source_ip: origin.source_ip.clone(),
            user_agent: origin.user_agent.clone(),
            revoked_at_ms: None,
            revoked_reason: None,
        };
        let state = Self::state_of(user, organisation, mfa)?;
        let event = self.identity_event(
            AuditAction::Login,
            Some(user),
            Some(session.id),
            Outcome::Allowed,
            match state {
                SessionState::Complete => how,
                SessionState::MfaRequired => "password_ok_mfa_pending",
                SessionState::MfaSetupRequired => "password_ok_mfa_setup_pending",
            },
            origin,
        );
        self.audit_identity(event).await?;
        self.store.insert_session(session.clone()).await?;
        Ok(OpenedSession {
            id: session.id,
            csrf_token: csrf_token(&token),
            token: Secret::new(token),
            state,
            expires_at_ms: session.expires_at_ms,
            idle_timeout_secs: organisation.idle_timeout_secs,
        })
    }

    /// Resolves a session token, enforcing revocation and both time-outs, and records the
    /// activity. Failures are answered `401` and are not audited one by one (an expired
    /// cookie is routine); a token that never existed is audited like an unknown API token.
    pub async fn authenticate_session(
        &self,
        token: &str,
        origin: &RequestOrigin,
    ) -> AppResult<SessionCaller> {
        self.resolve_session(token, origin, true).await
    }

    /// Whether a session is still live, without counting this as activity: for a
    /// long-lived connection (the event stream) that must end with its session but must
    /// not keep an idle one alive.
    pub async fn session_is_live(&self, token: &str, origin: &RequestOrigin) -> bool {
        self.resolve_session(token, origin, false).await.is_ok()
    }

    async fn resolve_session(
        &self,
        token: &str,
        origin: &RequestOrigin,
        record_activity: bool,
    ) -> AppResult<SessionCaller> {
        let unknown = || AppError::Unauthenticated {
            reason: "unknown_session",
        };
        if token.len() != SECRET_TOKEN_CHARS || !token.starts_with(SESSION_PREFIX) {
            return Err(unknown());
        }
        let now_ms = self.clock.now_ms();
        // The session, its user and their organisation come in one look-up: every
        // authenticated request makes it.
        let Some(record) = self.store.session_by_hash(&secret_hash(token)).await? else {
            let event = self.identity_event(
                AuditAction::FailedLogin,
                None,
                None,
                Outcome::Denied,
                "unknown_session",
                origin,
            );
            self.audit_identity(event).await?;
            return Err(unknown());
        };
        let session = record.session;
        if session.revoked_at_ms.is_some() {
            return Err(AppError::Unauthenticated {
                reason: "session_revoked",
            });
        }
        let user = record.user.ok_or_else(unknown)?;
        let organisation = record
            .organisation
            .ok_or_else(|| AppError::Unexpected("a user's organisation is gone".into()))?;
        // A session keeps the time-outs it began with, unless the organisation has since
        // made them stricter: tightening takes effect at once.
        let expires_at_ms = session
            .expires_at_ms
            .min(session.created_at_ms + organisation.absolute_timeout_secs * 1000);
        let idle_timeout_ms = session
            .idle_timeout_ms
            .min(organisation.idle_timeout_secs * 1000);
        if now_ms >= expires_at_ms {
            return Err(AppError::Unauthenticated {
                reason: "session_expired",
            });
        }
        if now_ms - session.last_seen_ms >= idle_timeout_ms {
            let event = self.identity_event(
                AuditAction::Logout,
                Some(&user),
                Some(session.id),
                Outcome::Allowed,
                "idle_timeout",
                origin,
            );
            self.audit_identity(event).await?;
            self.store
                .revoke_session(session.id, now_ms, "idle_timeout")
                .await?;
            return Err(AppError::Unauthenticated {
                reason: "session_idle_timeout",
            });
        }
        if user.disabled_at_ms.is_some() {
            return Err(AppError::Unauthenticated {
                reason: "session_revoked",
            });
        }
        if record_activity && now_ms - session.last_seen_ms >= activity_interval_ms(idle_timeout_ms)
        {
            self.store.touch_session(session.id, now_ms).await?;
        }
        let role: Role = user
            .role
            .parse()
            .map_err(|e| AppError::Unexpected(format!("a stored user role: {e}")))?;
        Ok(SessionCaller {
            actor: Actor {
                principal: Principal::User {
                    user: user.id,
                    session: session.id,
                },
                role,
                organisation: Some(organisation.id),
                patient: user.patient,
            },
            session: session.id,
            state: Self::state_of(&user, &organisation, session.mfa)?,
            authenticated_at_ms: session.authenticated_at_ms,
            idle_timeout_secs: idle_timeout_ms / 1000,
        })
    }

    async fn session_user(&self, caller: &SessionCaller) -> AppResult<StoredUser> {
        let Principal::User { user, .. } = caller.actor.principal else {
            return Err(AppError::Unexpected(
                "a session caller that is not a user".into(),
            ));
        };
        self.store
            .user(user)
            .await?
            .ok_or(AppError::Unauthenticated {
                reason: "session_revoked",
            })
    }

    fn open_totp_secret(&self, user: &StoredUser) -> AppResult<Option<Secret<Vec<u8>>>> {
        let (Some(sealed), Some(key)) = (&user.totp_sealed, &user.subject_key) else {
            return Ok(None);
        };
        let key = self.gate.open_user_key(user.id, key)?;
        let id = user.id.to_string();
        let sealed = Sealed::<Vec<u8>>::from_bytes(sealed.clone())?;
        Ok(Some(sealed.open(
            &key,
            &RecordBinding {
                table: "users.totp",
                record_id: &id,
                version: 1,
            },
        )?))
    }

    fn open_login(&self, user: &StoredUser) -> AppResult<String> {
        let key = user
            .subject_key
            .as_ref()
            .ok_or_else(|| AppError::Unexpected("a user without a key".into()))?;
        let key = self.gate.open_user_key(user.id, key)?;
        let id = user.id.to_string();
        let opened = Sealed::<String>::from_bytes(user.login_sealed.clone())?.open(
            &key,
            &RecordBinding {
                table: "users.login",
                record_id: &id,
                version: 1,
            },
        )?;
        String::from_utf8(opened.expose_secret().clone())
            .map_err(|_| AppError::Unexpected("a sealed login that is not text".into()))
    }

    /// Starts TOTP set-up: a new secret, pending until a code from it is confirmed.
    pub async fn totp_setup(
        &self,
        caller: &SessionCaller,
        origin: &RequestOrigin,
    ) -> AppResult<(String, String)> {
        let user = self.session_user(caller).await?;
        // An enabled factor stays as it is: replacing one is a separate, step-up-guarded
        // change, not a side door through set-up.
        if user.totp_enabled {
            return Err(AppError::Conflict {
                code: "totp_already_enabled",
                message: "a second factor is already set up".into(),
            });
        }
        let key = user
            .subject_key
            .as_ref()
            .ok_or_else(|| AppError::Unexpected("a user without a key".into()))?;
        let key = self.gate.open_user_key(user.id, key)?;
        let secret = totp::generate_secret();
        let id = user.id.to_string();
        let sealed = Sealed::<Vec<u8>>::seal(
            &key,
            &RecordBinding {
                table: "users.totp",
                record_id: &id,
                version: 1,
            },
            &secret,
        );
        let event = self.identity_event(
            AuditAction::MfaChange,
            Some(&user),
            Some(caller.session),
            Outcome::Allowed,
            "totp_setup_started",
            origin,
        );
        self.audit_identity(event).await?;
        if !self
            .store
            .start_totp_setup(user.id, sealed.into_bytes())
            .await?
        {
            return Err(AppError::Conflict {
                code: "totp_already_enabled",
                message: "a second factor is already set up".into(),
            });
        }
        totp::provisioning(&secret, &self.open_login(&user)?)
    }

    /// Confirms TOTP set-up with a code from the new secret: the factor is on, this session
    /// counts as signed in with it, and fresh recovery codes are returned (shown once).
    pub async fn totp_confirm(
        &self,
        caller: &SessionCaller,
        code: &str,
        origin: &RequestOrigin,
    ) -> AppResult<Vec<Secret<String>>> {
        let user = self.session_user(caller).await?;
        if user.totp_enabled {
            return Err(AppError::Conflict {
                code: "totp_already_enabled",
                message: "a second factor is already set up".into(),
            });
        }
        let secret = self
            .open_totp_secret(&user)?
            .ok_or_else(|| invalid("code", "start the set-up first"))?;
        let now_secs = u64::try_from(self.clock.now_ms() / 1000).unwrap_or(0);
        let step = totp::matching_step(secret.expose_secret(), code.trim(), now_secs)?;
        let accepted = match step {
            Some(step) => {
                self.store
                    .advance_totp_step(user.id, i64::try_from(step).unwrap_or(i64::MAX))
                    .await?
            }
            None => false,
        };
        if !accepted {
            let event = self.identity_event(
                AuditAction::MfaChange,
                Some(&user),
                Some(caller.session),
                Outcome::Denied,
                "totp_code_wrong",
                origin,
            );
            self.audit_identity(event).await?;
            return Err(invalid("code", "that code is not right; try the next one"));
        }
        let event = self.identity_event(
            AuditAction::MfaChange,
            Some(&user),
            Some(caller.session),
            Outcome::Allowed,
            "totp_enabled",
            origin,
        );
        self.audit_identity(event).await?;
        let codes = self.new_recovery_codes(&user).await?;
        self.store
            .set_totp(user.id, user.totp_sealed.clone(), true)
            .await?;
        self.store
            .reauthenticate_session(caller.session, self.clock.now_ms(), true)
            .await?;
        Ok(codes)
    }

    /// A recovery code as stored: keyed (HMAC with the deployment's blind-index key), so a
    /// copy of the database alone cannot be searched for codes offline.
    fn recovery_code_hash(&self, user: UserId, code: &str) -> Vec<u8> {
        self.blind
            .token("recovery_code", &format!("{user}:{code}"))
            .as_bytes()
            .to_vec()
    }

    async fn new_recovery_codes(&self, user: &StoredUser) -> AppResult<Vec<Secret<String>>> {
        let mut codes = Vec::with_capacity(RECOVERY_CODES);
        for _ in 0..RECOVERY_CODES {
            let mut code = String::with_capacity(RECOVERY_CODE_CHARS);
            while code.len() < RECOVERY_CODE_CHARS {
                let mut byte = [0u8; 1];
                rand::rngs::OsRng.fill_bytes(&mut byte);
                if byte[0] < RECOVERY_BYTE_LIMIT {
                    code.push(
                        RECOVERY_ALPHABET[usize::from(byte[0]) % RECOVERY_ALPHABET.len()] as char,
                    );
                }
            }
            codes.push(code);
        }
        self.store
            .replace_recovery_codes(
                user.id,
                codes
                    .iter()
                    .map(|c| self.recovery_code_hash(user.id, c))
                    .collect(),
            )
            .await?;
        Ok(codes.into_iter().map(Secret::new).collect())
    }

    /// The second step of signing in: a TOTP code, or one of the recovery codes.
    pub async fn sign_in_second_factor(
        &self,
        caller: &SessionCaller,
        code: &str,
        origin: &RequestOrigin,
    ) -> AppResult<()> {
        if caller.state != SessionState::MfaRequired {
            return Err(AppError::Conflict {
                code: "no_second_factor_pending",
                message: "this session is not waiting for a second factor".into(),
            });
        }
        let user = self.session_user(caller).await?;
        let now_ms = self.clock.now_ms();
        let ip: Option<IpAddr> = origin.source_ip.as_deref().and_then(|ip| ip.parse().ok());
        if let Some(ip) = ip
            && let Err(retry_after_secs) = self.throttle.check(ip, now_ms)
        {
            return Err(AppError::Throttled { retry_after_secs });
        }
        // Each guess is claimed (counted) before it is checked, atomically, so no burst of
        // concurrent guesses slips past the lock; a locked account takes none, and the
        // pending session that ran into the lock ends.
        if !self.store.claim_guess(user.id, now_ms, GUESS_LOCK).await? {
            self.sign_in_failed(Some(&user), "account_locked", ip, origin)
                .await?;
            self.store
                .revoke_session(caller.session, now_ms, "account_locked")
                .await?;
            return Err(AppError::Unauthenticated {
                reason: "invalid_credentials",
            });
        }
        let code = code.trim();
        let accepted = if code.len() == totp::TOTP_DIGITS {
            let secret = self
                .open_totp_secret(&user)?
                .ok_or_else(|| AppError::Unexpected("a pending factor without a secret".into()))?;
            let now_secs = u64::try_from(self.clock.now_ms() / 1000).unwrap_or(0);
            match totp::matching_step(secret.expose_secret(), code, now_secs)? {
                Some(step) => {
                    self.store
                        .advance_totp_step(user.id, i64::try_from(step).unwrap_or(i64::MAX))
                        .await?
                }
                None => false,
            }
        } else {
            let normalised: String = code.to_lowercase().chars().filter(|c| *c != '-').collect();
            self.store
                .use_recovery_code(
                    user.id,
                    &self.recovery_code_hash(user.id, &normalised),
                    self.clock.now_ms(),
                )
                .await?
        };
        if !accepted {
            self.sign_in_failed(Some(&user), "second_factor_wrong", ip, origin)
                .await?;
            let locked = self
                .store
                .user(user.id)
                .await?
                .is_some_and(|u| u.locked_until_ms > now_ms);
            if locked {
                // That guess locked the account: the pending session ends with it, and the
                // owner is told.
                self.store
                    .revoke_session(caller.session, now_ms, "account_locked")
                    .await?;
                self.notify_locked(user.id, true, now_ms).await?;
            }
            return Err(AppError::Unauthenticated {
                reason: "invalid_credentials",
            });
        }
        let event = self.identity_event(
            AuditAction::Login,
            Some(&user),
            Some(caller.session),
            Outcome::Allowed,
            if code.len() == totp::TOTP_DIGITS {
                "signed_in_totp"
            } else {
                "signed_in_recovery_code"
            },
            origin,
        );
        self.audit_identity(event).await?;
        self.store.reset_login_failures(user.id).await?;
        self.store
            .reauthenticate_session(caller.session, now_ms, true)
            .await
            .map_err(AppError::from)
    }

    /// Step-up re-authentication: the password again, and the TOTP code when the user has
    /// one, for sensitive actions (inviting, changing policies). Fresh for
    /// [`STEP_UP_FRESH_SECS`].
    pub async fn step_up(
        &self,
        caller: &SessionCaller,
        password: &Secret<String>,
        code: Option<&str>,
        origin: &RequestOrigin,
    ) -> AppResult<()> {
        let user = self.session_user(caller).await?;
        let now_ms = self.clock.now_ms();
        // Step-up guesses are claimed like second-factor guesses: a session left open must
        // not become a way to try passwords without limit.
        let mut proven = self.store.claim_guess(user.id, now_ms, GUESS_LOCK).await?
            && self
                .passwords
                .verify(password, Some(&user.password_hash))
                .await?;
        if proven && user.totp_enabled {
            let secret = self
                .open_totp_secret(&user)?
                .ok_or_else(|| AppError::Unexpected("an enabled factor without a secret".into()))?;
            let now_secs = u64::try_from(self.clock.now_ms() / 1000).unwrap_or(0);
            proven = match totp::matching_step(
                secret.expose_secret(),
                code.unwrap_or("").trim(),
                now_secs,
            )? {
                Some(step) => {
                    self.store
                        .advance_totp_step(user.id, i64::try_from(step).unwrap_or(i64::MAX))
                        .await?
                }
                None => false,
            };
        }
        let event = self.identity_event(
            AuditAction::Login,
            Some(&user),
            Some(caller.session),
            if proven {
                Outcome::Allowed
            } else {
                Outcome::Denied
            },
            if proven { "step_up" } else { "step_up_failed" },
            origin,
        );
        self.audit_identity(event).await?;
        if !proven {
            return Err(AppError::Unauthenticated {
                reason: "invalid_credentials",
            });
        }
        self.store.reset_login_failures(user.id).await?;
        self.store
            .reauthenticate_session(caller.session, now_ms, user.totp_enabled)
            .await?;
        Ok(())
    }

    /// The caller's organisation and its policies.
    pub async fn my_organisation(
        &self,
        context: &crate::RequestContext,
    ) -> AppResult<StoredOrganisation> {
        let id = match context.actor.organisation {
            Some(id) => id,
            None => self
                .store
                .organisations()
                .await?
                .first()
                .map(|o| o.id)
                .ok_or(AppError::NotFound)?,
        };
        self.store.organisation(id).await?.ok_or(AppError::NotFound)
    }

    /// Changes the organisation's session time-outs, whether patients need a second factor
    /// and how long a break-the-glass grant lasts. Administrators only, freshly
    /// re-authenticated when signed in; audited as a configuration change. Stricter
    /// time-outs apply to open sessions at once.
    pub async fn update_organisation_policy(
        &self,
        context: &crate::RequestContext,
        policy: OrganisationPolicy,
    ) -> AppResult<StoredOrganisation> {
        let OrganisationPolicy {
            idle_timeout_secs,
            absolute_timeout_secs,
            patient_mfa_required,
            break_glass_secs,
            results_after_review,
            message_retention_days,
        } = policy;
        self.authorize_sensitive_administration(context, haven_domain::Action::Update)
            .await?;
        let (idle_min, idle_max) = IDLE_TIMEOUT_SECS_RANGE;
        if !(idle_min..=idle_max).contains(&idle_timeout_secs) {
            return Err(invalid(
                "idle_timeout_secs",
                format!("between {idle_min} and {idle_max} seconds"),
            ));
        }
        let (absolute_min, absolute_max) = ABSOLUTE_TIMEOUT_SECS_RANGE;
        if !(absolute_min..=absolute_max).contains(&absolute_timeout_secs)
            || absolute_timeout_secs < idle_timeout_secs
        {
            return Err(invalid(
                "absolute_timeout_secs",
                format!(
                    "between {absolute_min} and {absolute_max} seconds, and not shorter than the idle time-out"
                ),
            ));
        }
        let (glass_min, glass_max) = crate::care::BREAK_GLASS_SECS_RANGE;
        if break_glass_secs.is_some_and(|secs| !(glass_min..=glass_max).contains(&secs)) {
            return Err(invalid(
                "break_glass_secs",
                format!("between {glass_min} and {glass_max} seconds"),
            ));
        }
        let (retention_min, retention_max) = crate::messaging::MESSAGE_RETENTION_DAYS_RANGE;
        if message_retention_days
            .is_some_and(|days| days != 0 && !(retention_min..=retention_max).contains(&days))
        {
            return Err(invalid(
                "message_retention_days",
                format!("0 (keep), or between {retention_min} and {retention_max} days"),
            ));
        }
        let current = self.my_organisation(context).await?;
        let message_retention_days =
            message_retention_days.unwrap_or(current.message_retention_days);
        let break_glass_secs = break_glass_secs.unwrap_or(current.break_glass_secs);
        let results_after_review = results_after_review.unwrap_or(current.results_after_review);
        let updated = StoredOrganisation {
            idle_timeout_secs,
            absolute_timeout_secs,
            patient_mfa_required,
            break_glass_secs,
            results_after_review,
            message_retention_days,
            ..current
        };
        let mut event = crate::keys::system_event(
            self.clock.now_ms(),
            AuditAction::ConfigurationChange,
            None,
            "organisation_policy_changed",
        );
        context_into_event(context, &mut event);
        event.organisation = Some(updated.id.to_string());
        event.resource_type = Some("Organization".to_owned());
        event.resource_id = Some(updated.id.to_string());
        self.audit_identity(event).await?;
        self.store.update_organisation(updated.clone()).await?;
        Ok(updated)
    }

    /// The users of the administrator's organisation, with their logins (opened for this
    /// listing, which is audited: for a patient, being a user is health data).
    pub async fn list_users(&self, context: &crate::RequestContext) -> AppResult<Vec<UserSummary>> {
        self.gate
            .authorize_administration(
                context,
                haven_domain::Action::Read,
                haven_domain::Resource::Users,
            )
            .await?;
        let organisation = self.my_organisation(context).await?;
        let mut event =
            crate::keys::system_event(self.clock.now_ms(), AuditAction::Read, None, "users_listed");
        context_into_event(context, &mut event);
        event.organisation = Some(organisation.id.to_string());
        event.resource_type = Some("User".to_owned());
        event.purpose_of_use = Some(
            haven_domain::PurposeOfUse::SystemAdministration
                .code()
                .to_owned(),
        );
        self.audit_identity(event).await?;
        self.store
            .organisation_users(organisation.id)
            .await?
            .iter()
            .map(|user| {
                Ok(UserSummary {
                    id: user.id,
                    login: self.open_login(user)?,
                    role: user.role.clone(),
                    patient: user.patient,
                    second_factor: user.totp_enabled,
                    locked: user.locked_until_ms > self.clock.now_ms(),
                    disabled: user.disabled_at_ms.is_some(),
                    created_at_ms: user.created_at_ms,
                })
            })
            .collect()
    }

    /// Disables a user of the administrator's organisation (their sessions end and they can
    /// no longer sign in), or enables them again (with a clean slate of failed sign-ins).
    /// Needs a fresh proof; an administrator cannot change their own account this way.
    pub async fn set_user_enabled(
        &self,
        context: &crate::RequestContext,
        target: UserId,
        enabled: bool,
    ) -> AppResult<()> {
        self.authorize_sensitive_administration(context, haven_domain::Action::Update)
            .await?;
        if matches!(context.actor.principal, Principal::User { user, .. } if user == target) {
            return Err(AppError::Conflict {
                code: if enabled {
                    "cannot_enable_self"
                } else {
                    "cannot_disable_self"
                },
                message: "another administrator must do this".into(),
            });
        }
        let organisation = self.my_organisation(context).await?;
        let user = self
            .store
            .user(target)
            .await?
            .filter(|u| u.organisation == organisation.id)
            .ok_or(AppError::NotFound)?;
        let now_ms = self.clock.now_ms();
        let mut event = crate::keys::system_event(
            now_ms,
            AuditAction::PrivilegeChange,
            user.patient,
            if enabled {
                "user_enabled"
            } else {
                "user_disabled"
            },
        );
        context_into_event(context, &mut event);
        event.organisation = Some(organisation.id.to_string());
        event.resource_type = Some("User".to_owned());
        event.resource_id = Some(user.id.to_string());
        self.audit_identity(event).await?;
        if enabled {
            self.store.set_user_disabled(user.id, None).await?;
            self.store.reset_login_failures(user.id).await?;
        } else {
            self.store.set_user_disabled(user.id, Some(now_ms)).await?;
            self.store
                .revoke_user_sessions(user.id, None, now_ms, "user_disabled")
                .await?;
        }
        Ok(())
    }

    /// An administrator's change to accounts or policy: allowed by the policy (a refusal is
    /// audited) and, for a signed-in administrator, freshly re-authenticated.
    async fn authorize_sensitive_administration(
        &self,
        context: &crate::RequestContext,
        action: haven_domain::Action,
    ) -> AppResult<()> {
        self.gate
            .authorize_administration(context, action, haven_domain::Resource::Users)
            .await?;
        self.require_fresh_context(context)
    }

    /// Whether a signed-in caller proved who they are within [`STEP_UP_FRESH_SECS`], for a
    /// sensitive action; API tokens are not asked (see [`crate::RequestContext`]).
    pub fn require_fresh_context(&self, context: &crate::RequestContext) -> AppResult<()> {
        match context.authenticated_at_ms {
            Some(at_ms) if self.clock.now_ms() - at_ms > STEP_UP_FRESH_SECS * 1000 => {
                Err(AppError::Unauthenticated {
                    reason: "step_up_required",
                })
            }
            _ => Ok(()),
        }
    }

    /// Signs out this session.
    pub async fn sign_out(&self, caller: &SessionCaller, origin: &RequestOrigin) -> AppResult<()> {
        let user = self.session_user(caller).await?;
        let event = self.identity_event(
            AuditAction::Logout,
            Some(&user),
            Some(caller.session),
            Outcome::Allowed,
            "signed_out",
            origin,
        );
        self.audit_identity(event).await?;
        self.store
            .revoke_session(caller.session, self.clock.now_ms(), "signed_out")
            .await?;
        Ok(())
    }

    /// Signs out every session of the caller, this one included. Returns how many ended.
    pub async fn sign_out_everywhere(
        &self,
        caller: &SessionCaller,
        origin: &RequestOrigin,
    ) -> AppResult<u64> {
        let user = self.session_user(caller).await?;
        let event = self.identity_event(
            AuditAction::Logout,
            Some(&user),
            Some(caller.session),
            Outcome::Allowed,
            "signed_out_everywhere",
            origin,
        );
        self.audit_identity(event).await?;
        Ok(self
            .store
            .revoke_user_sessions(user.id, None, self.clock.now_ms(), "signed_out_everywhere")
            .await?)
    }

    /// The caller's open sessions.
    pub async fn my_sessions(&self, caller: &SessionCaller) -> AppResult<Vec<SessionSummary>> {
        let user = self.session_user(caller).await?;
        let now_ms = self.clock.now_ms();
        Ok(self
            .store
            .user_sessions(user.id, now_ms)
            .await?
            .into_iter()
            .filter(|s| now_ms - s.last_seen_ms < s.idle_timeout_ms)
            .map(|s| SessionSummary {
                current: s.id == caller.session,
                id: s.id,
                created_at_ms: s.created_at_ms,
                last_seen_ms: s.last_seen_ms,
                expires_at_ms: s.expires_at_ms,
                source_ip: s.source_ip,
                user_agent: s.user_agent,
            })
            .collect())
    }

    /// Ends one of the caller's own sessions; another user's session id is "not found".
    pub async fn end_my_session(
        &self,
        caller: &SessionCaller,
        session: SessionId,
        origin: &RequestOrigin,
    ) -> AppResult<()> {
        let user = self.session_user(caller).await?;
        let mine = self
            .store
            .user_sessions(user.id, self.clock.now_ms())
            .await?
            .iter()
            .any(|s| s.id == session);
        if !mine {
            return Err(AppError::NotFound);
        }
        let event = self.identity_event(
            AuditAction::Logout,
            Some(&user),
            Some(session),
            Outcome::Allowed,
            "session_ended_by_user",
            origin,
        );
        self.audit_identity(event).await?;
        self.store
            .revoke_session(session, self.clock.now_ms(), "ended_by_user")
            .await?;
        Ok(())
    }

    /// Changes the caller's password (the current one is required); every other session
    /// of theirs ends.
    pub async fn change_password(
        &self,
        caller: &SessionCaller,
        current: &Secret<String>,
        new: &Secret<String>,
        origin: &RequestOrigin,
    ) -> AppResult<u64> {
        let user = self.session_user(caller).await?;
        // Claimed like any other guess at the password (see `step_up`).
        let claimed = self
            .store
            .claim_guess(user.id, self.clock.now_ms(), GUESS_LOCK)
            .await?;
        if !claimed
            || !self
                .passwords
                .verify(current, Some(&user.password_hash))
                .await?
        {
            let event = self.identity_event(
                AuditAction::PrivilegeChange,
                Some(&user),
                Some(caller.session),
                Outcome::Denied,
                "password_change_wrong_current",
                origin,
            );
            self.audit_identity(event).await?;
            return Err(invalid(
                "current_password",
                "the current password is not right",
            ));
        }
        self.store.reset_login_failures(user.id).await?;
        let login = self.open_login(&user)?;
        passwords::check_new_password(new.expose_secret(), &[&login])
            .map_err(|weak| invalid("new_password", weak.0))?;
        let hash = self.passwords.hash(new).await?;
        let event = self.identity_event(
            AuditAction::PrivilegeChange,
            Some(&user),
            Some(caller.session),
            Outcome::Allowed,
            "password_changed",
            origin,
        );
        self.audit_identity(event).await?;
        let now_ms = self.clock.now_ms();
        self.store.set_password(user.id, &hash, now_ms).await?;
        Ok(self
            .store
            .revoke_user_sessions(user.id, Some(caller.session), now_ms, "password_changed")
            .await?)
    }
}

/// Fills in who did it and from where, for an entry of an administrative action.
pub(crate) fn context_into_event(context: &crate::RequestContext, event: &mut AuditEvent) {
    event.actor = Some(context.actor.principal.actor_id());
    event.role = Some(context.actor.role.as_str().to_owned());
    event.session = context.actor.principal.session().map(|s| s.to_string());
    event.origin = context.origin.clone();
}

/// The first organisation, created on first use with `name` (`haven admin bootstrap`).
pub async fn bootstrap_organisation(
    store: &dyn Store,
    audit: &dyn AuditSink,
    name: &str,
    now_ms: i64,
) -> AppResult<StoredOrganisation> {
    if let Some(existing) = store.organisations().await?.into_iter().next() {
        return Ok(existing);
    }
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(invalid(
            "organisation",
            "a name of 1 to 200 printable characters",
        ));
    }
    let organisation = StoredOrganisation {
        id: OrganisationId::generate(),
        name: name.to_owned(),
        idle_timeout_secs: IDLE_TIMEOUT_SECS_DEFAULT,
        absolute_timeout_secs: ABSOLUTE_TIMEOUT_SECS_DEFAULT,
        patient_mfa_required: false,
        break_glass_secs: crate::care::BREAK_GLASS_SECS_DEFAULT,
        results_after_review: false,
        message_retention_days: 0,
        created_at_ms: now_ms,
    };
    let mut event = crate::keys::system_event(
        now_ms,
        AuditAction::ConfigurationChange,
        None,
        "organisation_created",
    );
    event.resource_type = Some("Organization".to_owned());
    event.resource_id = Some(organisation.id.to_string());
    audit
        .append(vec![event])
        .await
        .map_err(|_| AppError::AuditUnavailable)?;
    store.insert_organisation(organisation.clone()).await?;
    Ok(organisation)
}

/// Creates an invitation for `role` (a patient's names their record, unless it is for a
/// proxy who has none): a single-use secret,
/// expiring after `ttl_hours`. `invited_by` is the inviting user, or `None` for the
/// console. Audited as a privilege change before it exists.
#[allow(clippy::too_many_arguments)]
pub async fn issue_invitation(
    store: &dyn Store,
    audit: &dyn AuditSink,
    organisation: OrganisationId,
    role: Role,
    patient: Option<PatientId>,
    ttl_hours: u32,
    invited_by: Option<UserId>,
    now_ms: i64,
) -> AppResult<IssuedInvitation> {
    if role == Role::Integration {
        return Err(invalid(
            "role",
            "an integration is a system, not a person: mint it a token (haven admin token --role integration)",
        ));
    }
    if ttl_hours == 0 || ttl_hours > INVITATION_TTL_HOURS_MAX {
        return Err(invalid(
            "ttl_hours",
            format!("between 1 and {INVITATION_TTL_HOURS_MAX} hours"),
        ));
    }
    match (role, patient) {
        // A patient-role account without a record of its own is a proxy's: a parent or
        // caregiver who sees only what delegations grant them.
        (Role::Patient, None) => {}
        (Role::Patient, Some(id)) if store.get_patient(id).await?.is_none() => {
            return Err(invalid("patient", "no patient has this id"));
        }
        (Role::Patient, Some(id))
            if store
                .organisation_users(organisation)
                .await?
                .iter()
                .any(|u| u.patient == Some(id)) =>
        {
            return Err(invalid("patient", "this patient already has an account"));
        }
        (Role::Patient, Some(_)) | (_, None) => {}
        (_, Some(_)) => return Err(invalid("patient", "only a patient is linked to a record")),
    }
    if store.organisation(organisation).await?.is_none() {
        return Err(invalid("organisation", "no such organisation"));
    }
    let token = random_token(INVITATION_PREFIX);
    let invitation = StoredInvitation {
        id: InvitationId::generate(),
        token_hash: secret_hash(&token),
        organisation,
        role: role.as_str().to_owned(),
        patient,
        created_by: invited_by.map_or_else(|| "system:cli".to_owned(), |u| u.to_string()),
        created_at_ms: now_ms,
        expires_at_ms: now_ms + i64::from(ttl_hours) * 3_600_000,
        used_at_ms: None,
        used_by: None,
    };
    let mut event = crate::keys::system_event(
        now_ms,
        AuditAction::PrivilegeChange,
        patient,
        "invitation_issued",
    );
    event.actor = Some(invitation.created_by.clone());
    event.role = Some(role.as_str().to_owned());
    event.organisation = Some(organisation.to_string());
    event.resource_type = Some("Invitation".to_owned());
    event.resource_id = Some(invitation.id.to_string());
    audit
        .append(vec![event])
        .await
        .map_err(|_| AppError::AuditUnavailable)?;
    store.insert_invitation(invitation.clone()).await?;
    Ok(IssuedInvitation {
        id: invitation.id,
        token: Secret::new(token),
        expires_at_ms: invitation.expires_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_start_after_five_failures_and_double_to_an_hour() {
        let now = 1_000_000;
        assert_eq!(lock_after_failure(0, now), 0);
        assert_eq!(lock_after_failure(3, now), 0);
        assert_eq!(lock_after_failure(4, now), now + 60_000);
        assert_eq!(lock_after_failure(5, now), now + 120_000);
        assert_eq!(lock_after_failure(9, now), now + 1_920_000);
        assert_eq!(lock_after_failure(10, now), now + 3_600_000);
        assert_eq!(lock_after_failure(1000, now), now + 3_600_000);
    }

    #[test]
    fn logins_are_e_mail_addresses_compared_without_case() {
        assert_eq!(
            normalise_login("  Ada@North.Example ").unwrap(),
            "ada@north.example"
        );
        for bad in [
            "ada",
            "@north.example",
            "ada@north",
            "a da@north.example",
            "",
        ] {
            assert!(normalise_login(bad).is_err(), "{bad}");
        }
        assert!(normalise_login(&format!("{}@x.org", "a".repeat(260))).is_err());
    }

    #[test]
    fn the_csrf_token_is_stable_per_session_and_differs_between_sessions() {
        let a = random_token(SESSION_PREFIX);
        let b = random_token(SESSION_PREFIX);
        assert_eq!(csrf_token(&a), csrf_token(&a));
        assert_ne!(csrf_token(&a), csrf_token(&b));
        assert!(!csrf_token(&a).contains(&a[4..]));
        assert_eq!(a.len(), SECRET_TOKEN_CHARS);
    }
}
