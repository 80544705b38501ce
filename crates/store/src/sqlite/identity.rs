//! Identity rows on the embedded engine: writes as one more kind of job for the
//! group-commit writer ([`IdentityOp`]), reads inline like every other read.

use haven_domain::{InvitationId, OrganisationId, PatientId, SessionId, UserId};
use rusqlite::{OptionalExtension, Row, params};
use sqlx::SqliteConnection;

use super::WriteOutcome;
use super::readers::{Readers, uuid_from};
use crate::identity::{
    NewUser, Redeemed, SESSION_RECORD_SELECT, SESSION_RECORD_USER_AND_ORGANISATION_AT,
    SessionRecord, StoredChallenge, StoredInvitation, StoredOrganisation, StoredPasskey,
    StoredSession, StoredUser,
};
use crate::{StoreError, StoreResult, StoredSubjectKey, limits};

/// An identity write, applied by the writer in its own savepoint.
#[derive(Debug)]
pub(super) enum IdentityOp {
    InsertOrganisation(StoredOrganisation),
    UpdateOrganisation(StoredOrganisation),
    InsertUser(NewUser),
    SetPassword {
        user: UserId,
        password_hash: String,
        now_ms: i64,
    },
    SetTotp {
        user: UserId,
        totp_sealed: Option<Vec<u8>>,
        enabled: bool,
    },
    StartTotpSetup {
        user: UserId,
        totp_sealed: Vec<u8>,
    },
    AdvanceTotpStep {
        user: UserId,
        step: i64,
    },
    RecordLoginFailure {
        user: UserId,
        locked_until_ms: i64,
    },
    ResetLoginFailures(UserId),
    ClaimGuess {
        user: UserId,
        now_ms: i64,
        lock: crate::GuessLock,
    },
    SetUserDisabled {
        user: UserId,
        disabled_at_ms: Option<i64>,
    },
    InsertSession(StoredSession),
    TouchSession {
        id: SessionId,
        now_ms: i64,
    },
    ReauthenticateSession {
        id: SessionId,
        now_ms: i64,
        mfa: bool,
    },
    RevokeSession {
        id: SessionId,
        now_ms: i64,
        reason: String,
    },
    RevokeUserSessions {
        user: UserId,
        keep: Option<SessionId>,
        now_ms: i64,
        reason: String,
    },
    InsertInvitation(StoredInvitation),
    RedeemInvitation {
        invitation: InvitationId,
        now_ms: i64,
        user: NewUser,
    },
    ReplaceRecoveryCodes {
        user: UserId,
        code_hashes: Vec<Vec<u8>>,
    },
    UseRecoveryCode {
        user: UserId,
        code_hash: Vec<u8>,
        now_ms: i64,
    },
    InsertPasskey(StoredPasskey),
    RecordPasskeyUse {
        credential_id: Vec<u8>,
        previous_sign_count: i64,
        new_sign_count: i64,
        now_ms: i64,
    },
    DeletePasskey {
        user: UserId,
        credential_id: Vec<u8>,
    },
    InsertChallenge(StoredChallenge),
    TakeChallenge {
        id: uuid::Uuid,
        now_ms: i64,
    },
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

async fn insert_user(connection: &mut SqliteConnection, new: &NewUser) -> StoreResult<()> {
    let user = &new.user;
    let inserted = sqlx::query(
        "INSERT INTO users (id, organisation_id, login_index, login_sealed, role, patient_id,
             password_hash, password_changed_at_ms, totp_sealed, totp_enabled, totp_last_step,
             failed_logins, locked_until_ms, created_at_ms, disabled_at_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(user.id.as_uuid())
    .bind(user.organisation.as_uuid())
    .bind(&user.login_index)
    .bind(&user.login_sealed)
    .bind(&user.role)
    .bind(user.patient.map(|p| p.as_uuid()))
    .bind(&user.password_hash)
    .bind(user.password_changed_at_ms)
    .bind(&user.totp_sealed)
    .bind(user.totp_enabled)
    .bind(user.totp_last_step)
    .bind(user.failed_logins)
    .bind(user.locked_until_ms)
    .bind(user.created_at_ms)
    .bind(user.disabled_at_ms)
    .execute(&mut *connection)
    .await;
    match inserted {
        Err(error) if is_unique_violation(&error) => return Err(StoreError::AlreadyExists),
        other => other?,
    };
    let key = &new.subject_key;
    sqlx::query(
        "INSERT INTO subject_keys (subject_id, key_id, root_key_id, wrapped, created_at_ms)
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(key.subject.as_uuid())
    .bind(&key.key_id)
    .bind(&key.root_key_id)
    .bind(&key.wrapped)
    .bind(user.created_at_ms)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

fn changed(result: sqlx::sqlite::SqliteQueryResult) -> WriteOutcome {
    WriteOutcome::Changed(result.rows_affected() > 0)
}

pub(super) async fn apply_identity(
    connection: &mut SqliteConnection,
    op: &IdentityOp,
) -> StoreResult<WriteOutcome> {
    Ok(match op {
        IdentityOp::InsertOrganisation(o) => {
            sqlx::query(
                "INSERT INTO organisations (id, name, idle_timeout_secs, absolute_timeout_secs,
                     patient_mfa_required, break_glass_secs, created_at_ms, result_release,
                     message_retention_days)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(o.id.as_uuid())
            .bind(&o.name)
            .bind(o.idle_timeout_secs)
            .bind(o.absolute_timeout_secs)
            .bind(o.patient_mfa_required)
            .bind(o.break_glass_secs)
            .bind(o.created_at_ms)
            .bind(crate::identity::result_release_text(o.results_after_review))
            .bind(o.message_retention_days)
            .execute(&mut *connection)
            .await?;
            WriteOutcome::Done
        }
        IdentityOp::UpdateOrganisation(o) => changed(
            sqlx::query(
                "UPDATE organisations SET name = ?, idle_timeout_secs = ?,
                     absolute_timeout_secs = ?, patient_mfa_required = ?, break_glass_secs = ?,
                     result_release = ?, message_retention_days = ?
                 WHERE id = ?",
            )
            .bind(&o.name)
            .bind(o.idle_timeout_secs)
            .bind(o.absolute_timeout_secs)
            .bind(o.patient_mfa_required)
            .bind(o.break_glass_secs)
            .bind(crate::identity::result_release_text(o.results_after_review))
            .bind(o.message_retention_days)
            .bind(o.id.as_uuid())
            .execute(&mut *connection)
            .await?,
        ),
        IdentityOp::InsertUser(new) => {
            insert_user(connection, new).await?;
            WriteOutcome::Done
        }
        IdentityOp::SetPassword {
            user,
            password_hash,
            now_ms,
        } => changed(
            sqlx::query(
                "UPDATE users SET password_hash = ?, password_changed_at_ms = ?,
                     failed_logins = 0, locked_until_ms = 0 WHERE id = ?",
            )
            .bind(password_hash)
            .bind(now_ms)
            .bind(user.as_uuid())
            .execute(&mut *connection)
            .await?,
        ),
        IdentityOp::SetTotp {
            user,
            totp_sealed,
            enabled,
        } => changed(
            sqlx::query("UPDATE users SET totp_sealed = ?, totp_enabled = ? WHERE id = ?")
                .bind(totp_sealed)
                .bind(enabled)
                .bind(user.as_uuid())
                .execute(&mut *connection)
                .await?,
        ),
        IdentityOp::StartTotpSetup { user, totp_sealed } => changed(
            sqlx::query(
                "UPDATE users SET totp_sealed = ?, totp_enabled = 0
                 WHERE id = ? AND totp_enabled = 0",
            )
            .bind(totp_sealed)
            .bind(user.as_uuid())
            .execute(&mut *connection)
            .await?,
        ),
        IdentityOp::AdvanceTotpStep { user, step } => changed(
            sqlx::query("UPDATE users SET totp_last_step = ? WHERE id = ? AND totp_last_step < ?")
                .bind(step)
                .bind(user.as_uuid())
                .bind(step)
                .execute(&mut *connection)
                .await?,
        ),
        IdentityOp::RecordLoginFailure {
            user,
            locked_until_ms,
        } => changed(
            sqlx::query(
                "UPDATE users SET failed_logins = failed_logins + 1,
                     locked_until_ms = MAX(locked_until_ms, ?) WHERE id = ?",
            )
            .bind(locked_until_ms)
            .bind(user.as_uuid())
            .execute(&mut *connection)
            .await?,
        ),
        IdentityOp::SetUserDisabled {
            user,
            disabled_at_ms,
        } => changed(
            sqlx::query("UPDATE users SET disabled_at_ms = ? WHERE id = ?")
                .bind(disabled_at_ms)
                .bind(user.as_uuid())
                .execute(&mut *connection)
                .await?,
        ),
        IdentityOp::ClaimGuess { user, now_ms, lock } => changed(
            sqlx::query(crate::CLAIM_GUESS_SQL)
                .bind(lock.after_failures)
                .bind(now_ms)
                .bind(lock.first_ms)
                .bind(lock.max_ms)
                .bind(user.as_uuid())
                .execute(&mut *connection)
                .await?,
        ),
        IdentityOp::ResetLoginFailures(user) => changed(
            sqlx::query("UPDATE users SET failed_logins = 0, locked_until_ms = 0 WHERE id = ?")
                .bind(user.as_uuid())
                .execute(&mut *connection)
                .await?,
        ),
        IdentityOp::InsertSession(s) => {
            sqlx::query(
                "INSERT INTO sessions (id, token_hash, user_id, created_at_ms, last_seen_ms,
                     idle_timeout_ms, expires_at_ms, authenticated_at_ms, mfa, source_ip,
                     user_agent, revoked_at_ms, revoked_reason)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(s.id.as_uuid())
            .bind(&s.token_hash)
            .bind(s.user.as_uuid())
            .bind(s.created_at_ms)
            .bind(s.last_seen_ms)
            .bind(s.idle_timeout_ms)
            .bind(s.expires_at_ms)
            .bind(s.authenticated_at_ms)
            .bind(s.mfa)
            .bind(&s.source_ip)
            .bind(&s.user_agent)
            .bind(s.revoked_at_ms)
            .bind(&s.revoked_reason)
            .execute(&mut *connection)
            .await?;
            WriteOutcome::Done
        }
        IdentityOp::TouchSession { id, now_ms } => changed(
            sqlx::query("UPDATE sessions SET last_seen_ms = MAX(last_seen_ms, ?) WHERE id = ?")
                .bind(now_ms)
                .bind(id.as_uuid())
                .execute(&mut *connection)
                .await?,
        ),
        IdentityOp::ReauthenticateSession { id, now_ms, mfa } => changed(
            sqlx::query(
                "UPDATE sessions SET authenticated_at_ms = ?, mfa = ?, last_seen_ms = ?
                 WHERE id = ? AND revoked_at_ms IS NULL",
            )
            .bind(now_ms)
            .bind(mfa)
            .bind(now_ms)
            .bind(id.as_uuid())
            .execute(&mut *connection)
            .await?,
        ),
        IdentityOp::RevokeSession { id, now_ms, reason } => changed(
            sqlx::query(
                "UPDATE sessions SET revoked_at_ms = ?, revoked_reason = ?
                 WHERE id = ? AND revoked_at_ms IS NULL",
            )
            .bind(now_ms)
            .bind(reason)
            .bind(id.as_uuid())
            .execute(&mut *connection)
            .await?,
        ),
        IdentityOp::RevokeUserSessions {
            user,
            keep,
            now_ms,
            reason,
        } => {
            let result = sqlx::query(
                "UPDATE sessions SET revoked_at_ms = ?, revoked_reason = ?
                 WHERE user_id = ? AND revoked_at_ms IS NULL AND id IS NOT ?",
            )
            .bind(now_ms)
            .bind(reason)
            .bind(user.as_uuid())
            .bind(keep.map(|k| k.as_uuid()))
            .execute(&mut *connection)
            .await?;
            WriteOutcome::Count(result.rows_affected())
        }
        IdentityOp::InsertInvitation(i) => {
            sqlx::query(
                "INSERT INTO invitations (id, token_hash, organisation_id, role, patient_id,
                     created_by, created_at_ms, expires_at_ms, used_at_ms, used_by)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(i.id.as_uuid())
            .bind(&i.token_hash)
            .bind(i.organisation.as_uuid())
            .bind(&i.role)
            .bind(i.patient.map(|p| p.as_uuid()))
            .bind(&i.created_by)
            .bind(i.created_at_ms)
            .bind(i.expires_at_ms)
            .bind(i.used_at_ms)
            .bind(i.used_by.map(|u| u.as_uuid()))
            .execute(&mut *connection)
            .await?;
            WriteOutcome::Done
        }
        IdentityOp::RedeemInvitation {
            invitation,
            now_ms,
            user,
        } => {
            let marked = sqlx::query(
                "UPDATE invitations SET used_at_ms = ?, used_by = ?
                 WHERE id = ? AND used_at_ms IS NULL AND expires_at_ms > ?",
            )
            .bind(now_ms)
            .bind(user.user.id.as_uuid())
            .bind(invitation.as_uuid())
            .bind(now_ms)
            .execute(&mut *connection)
            .await?;
            if marked.rows_affected() == 0 {
                return Ok(WriteOutcome::Redeemed(Redeemed::Spent));
            }
            match insert_user(connection, user).await {
                // The savepoint is rolled back by the caller on error; a taken login must
                // leave the invitation unused, so it is reported as an error here.
                Err(StoreError::AlreadyExists) => return Err(StoreError::AlreadyExists),
                other => other?,
            }
            WriteOutcome::Redeemed(Redeemed::Created)
        }
        IdentityOp::ReplaceRecoveryCodes { user, code_hashes } => {
            sqlx::query("DELETE FROM recovery_codes WHERE user_id = ?")
                .bind(user.as_uuid())
                .execute(&mut *connection)
                .await?;
            for hash in code_hashes {
                sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES (?, ?)")
                    .bind(user.as_uuid())
                    .bind(hash)
                    .execute(&mut *connection)
                    .await?;
            }
            WriteOutcome::Done
        }
        IdentityOp::InsertPasskey(p) => {
            let inserted = sqlx::query(
                "INSERT INTO passkeys (credential_id, user_id, public_key_cose, sign_count,
                     backup_eligible, name, created_at_ms, last_used_ms)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&p.credential_id)
            .bind(p.user.as_uuid())
            .bind(&p.public_key_cose)
            .bind(p.sign_count)
            .bind(p.backup_eligible)
            .bind(&p.name)
            .bind(p.created_at_ms)
            .bind(p.last_used_ms)
            .execute(&mut *connection)
            .await;
            match inserted {
                Err(error) if is_unique_violation(&error) => return Err(StoreError::AlreadyExists),
                other => other?,
            };
            WriteOutcome::Done
        }
        IdentityOp::RecordPasskeyUse {
            credential_id,
            previous_sign_count,
            new_sign_count,
            now_ms,
        } => changed(
            sqlx::query(
                "UPDATE passkeys SET sign_count = ?, last_used_ms = ?
                 WHERE credential_id = ? AND sign_count = ?",
            )
            .bind(new_sign_count)
            .bind(now_ms)
            .bind(credential_id)
            .bind(previous_sign_count)
            .execute(&mut *connection)
            .await?,
        ),
        IdentityOp::DeletePasskey {
            user,
            credential_id,
        } => changed(
            sqlx::query("DELETE FROM passkeys WHERE user_id = ? AND credential_id = ?")
                .bind(user.as_uuid())
                .bind(credential_id)
                .execute(&mut *connection)
                .await?,
        ),
        IdentityOp::InsertChallenge(c) => {
            // Expired challenges go as new ones come, so the table never grows unbounded.
            sqlx::query("DELETE FROM webauthn_challenges WHERE expires_at_ms <= ?")
                .bind(c.expires_at_ms - limits::CHALLENGE_TTL_MS)
                .execute(&mut *connection)
                .await?;
            sqlx::query(
                "INSERT INTO webauthn_challenges (id, challenge, user_id, purpose, expires_at_ms)
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(c.id)
            .bind(&c.challenge)
            .bind(c.user.map(|u| u.as_uuid()))
            .bind(&c.purpose)
            .bind(c.expires_at_ms)
            .execute(&mut *connection)
            .await?;
            WriteOutcome::Done
        }
        IdentityOp::TakeChallenge { id, now_ms } => {
            let row = sqlx::query(
                "DELETE FROM webauthn_challenges WHERE id = ?
                 RETURNING challenge, user_id, purpose, expires_at_ms",
            )
            .bind(id)
            .fetch_optional(&mut *connection)
            .await?;
            let taken = match row {
                Some(row) => {
                    use sqlx::Row;
                    let expires_at_ms: i64 = row.try_get("expires_at_ms")?;
                    let user: Option<uuid::Uuid> = row.try_get("user_id")?;
                    if expires_at_ms > *now_ms {
                        Some(StoredChallenge {
                            id: *id,
                            challenge: row.try_get("challenge")?,
                            user: user.map(UserId::from_uuid),
                            purpose: row.try_get("purpose")?,
                            expires_at_ms,
                        })
                    } else {
                        None
                    }
                }
                None => None,
            };
            WriteOutcome::Challenge(taken)
        }
        IdentityOp::UseRecoveryCode {
            user,
            code_hash,
            now_ms,
        } => changed(
            sqlx::query(
                "UPDATE recovery_codes SET used_at_ms = ?
                 WHERE user_id = ? AND code_hash = ? AND used_at_ms IS NULL",
            )
            .bind(now_ms)
            .bind(user.as_uuid())
            .bind(code_hash)
            .execute(&mut *connection)
            .await?,
        ),
    })
}

const USER_COLUMNS: &str = "SELECT u.id, u.organisation_id, u.login_index, u.login_sealed,
        u.role, u.patient_id, u.password_hash, u.password_changed_at_ms, u.totp_sealed,
        u.totp_enabled, u.totp_last_step, u.failed_logins, u.locked_until_ms, u.created_at_ms,
        u.disabled_at_ms, k.key_id, k.root_key_id, k.wrapped
     FROM users u LEFT JOIN subject_keys k ON k.subject_id = u.id";

fn user(row: &Row<'_>) -> rusqlite::Result<StoredUser> {
    user_at(row, 0)
}

/// A user from the [`USER_COLUMNS`] that start at column `at` of `row`.
fn user_at(row: &Row<'_>, at: usize) -> rusqlite::Result<StoredUser> {
    let id = UserId::from_uuid(uuid_from(row.get(at)?)?);
    let key_id: Option<Vec<u8>> = row.get(at + 15)?;
    Ok(StoredUser {
        id,
        organisation: OrganisationId::from_uuid(uuid_from(row.get(at + 1)?)?),
        login_index: row.get(at + 2)?,
        login_sealed: row.get(at + 3)?,
        role: row.get(at + 4)?,
        patient: row
            .get::<_, Option<Vec<u8>>>(at + 5)?
            .map(uuid_from)
            .transpose()?
            .map(PatientId::from_uuid),
        password_hash: row.get(at + 6)?,
        password_changed_at_ms: row.get(at + 7)?,
        totp_sealed: row.get(at + 8)?,
        totp_enabled: row.get(at + 9)?,
        totp_last_step: row.get(at + 10)?,
        failed_logins: row.get(at + 11)?,
        locked_until_ms: row.get(at + 12)?,
        created_at_ms: row.get(at + 13)?,
        disabled_at_ms: row.get(at + 14)?,
        subject_key: match key_id {
            Some(key_id) => Some(StoredSubjectKey {
                subject: PatientId::from_uuid(id.as_uuid()),
                key_id,
                root_key_id: row.get(at + 16)?,
                wrapped: row.get(at + 17)?,
            }),
            None => None,
        },
    })
}

const SESSION_COLUMNS: &str = "SELECT id, token_hash, user_id, created_at_ms, last_seen_ms,
        idle_timeout_ms, expires_at_ms, authenticated_at_ms, mfa, source_ip, user_agent,
        revoked_at_ms, revoked_reason FROM sessions";

fn session(row: &Row<'_>) -> rusqlite::Result<StoredSession> {
    session_at(row, 0)
}

/// A session from the [`SESSION_COLUMNS`] that start at column `at` of `row`.
fn session_at(row: &Row<'_>, at: usize) -> rusqlite::Result<StoredSession> {
    Ok(StoredSession {
        id: SessionId::from_uuid(uuid_from(row.get(at)?)?),
        token_hash: row.get(at + 1)?,
        user: UserId::from_uuid(uuid_from(row.get(at + 2)?)?),
        created_at_ms: row.get(at + 3)?,
        last_seen_ms: row.get(at + 4)?,
        idle_timeout_ms: row.get(at + 5)?,
        expires_at_ms: row.get(at + 6)?,
        authenticated_at_ms: row.get(at + 7)?,
        mfa: row.get(at + 8)?,
        source_ip: row.get(at + 9)?,
        user_agent: row.get(at + 10)?,
        revoked_at_ms: row.get(at + 11)?,
        revoked_reason: row.get(at + 12)?,
    })
}

const ORGANISATION_COLUMNS: &str = "SELECT id, name, idle_timeout_secs, absolute_timeout_secs,
        patient_mfa_required, created_at_ms, break_glass_secs, result_release,
        message_retention_days FROM organisations";

fn organisation(row: &Row<'_>) -> rusqlite::Result<StoredOrganisation> {
    organisation_at(row, 0)
}

/// An organisation from the [`ORGANISATION_COLUMNS`] that start at column `at` of `row`.
fn organisation_at(row: &Row<'_>, at: usize) -> rusqlite::Result<StoredOrganisation> {
    let release: String = row.get(at + 7)?;
    Ok(StoredOrganisation {
        id: OrganisationId::from_uuid(uuid_from(row.get(at)?)?),
        name: row.get(at + 1)?,
        idle_timeout_secs: row.get(at + 2)?,
        absolute_timeout_secs: row.get(at + 3)?,
        patient_mfa_required: row.get(at + 4)?,
        created_at_ms: row.get(at + 5)?,
        break_glass_secs: row.get(at + 6)?,
        results_after_review: release == "after_review",
        message_retention_days: row.get(at + 8)?,
    })
}

const INVITATION_COLUMNS: &str = "SELECT id, token_hash, organisation_id, role, patient_id,
        created_by, created_at_ms, expires_at_ms, used_at_ms, used_by FROM invitations";

fn invitation(row: &Row<'_>) -> rusqlite::Result<StoredInvitation> {
    Ok(StoredInvitation {
        id: InvitationId::from_uuid(uuid_from(row.get(0)?)?),
        token_hash: row.get(1)?,
        organisation: OrganisationId::from_uuid(uuid_from(row.get(2)?)?),
        role: row.get(3)?,
        patient: row
            .get::<_, Option<Vec<u8>>>(4)?
            .map(uuid_from)
            .transpose()?
            .map(PatientId::from_uuid),
        created_by: row.get(5)?,
        created_at_ms: row.get(6)?,
        expires_at_ms: row.get(7)?,
        used_at_ms: row.get(8)?,
        used_by: row
            .get::<_, Option<Vec<u8>>>(9)?
            .map(uuid_from)
            .transpose()?
            .map(UserId::from_uuid),
    })
}

fn uuid_bytes(uuid: uuid::Uuid) -> Vec<u8> {
    uuid.as_bytes().to_vec()
}

impl Readers {
    pub(super) fn organisation(
        &self,
        id: OrganisationId,
    ) -> StoreResult<Option<StoredOrganisation>> {
        self.with(|c| {
            c.prepare_cached(&format!("{ORGANISATION_COLUMNS} WHERE id = ?1"))?
                .query_row([uuid_bytes(id.as_uuid())], organisation)
                .optional()
        })
    }

    pub(super) fn organisations(&self) -> StoreResult<Vec<StoredOrganisation>> {
        self.with(|c| {
            c.prepare_cached(&format!(
                "{ORGANISATION_COLUMNS} ORDER BY created_at_ms, id LIMIT ?1"
            ))?
            .query_map([i64::from(limits::ORGANISATIONS_LISTED_MAX)], organisation)?
            .collect()
        })
    }

    pub(super) fn user(&self, id: UserId) -> StoreResult<Option<StoredUser>> {
        self.with(|c| {
            c.prepare_cached(&format!("{USER_COLUMNS} WHERE u.id = ?1"))?
                .query_row([uuid_bytes(id.as_uuid())], user)
                .optional()
        })
    }

    pub(super) fn organisation_users(
        &self,
        organisation: OrganisationId,
    ) -> StoreResult<Vec<StoredUser>> {
        self.with(|c| {
            c.prepare_cached(&format!(
                "{USER_COLUMNS} WHERE u.organisation_id = ?1 ORDER BY u.created_at_ms, u.id LIMIT ?2"
            ))?
            .query_map(
                params![
                    uuid_bytes(organisation.as_uuid()),
                    i64::from(limits::USERS_LISTED_MAX)
                ],
                user,
            )?
            .collect()
        })
    }

    pub(super) fn user_by_login(&self, login_index: &[u8]) -> StoreResult<Option<StoredUser>> {
        self.with(|c| {
            c.prepare_cached(&format!("{USER_COLUMNS} WHERE u.login_index = ?1"))?
                .query_row([login_index], user)
                .optional()
        })
    }

    /// One statement for the three rows every authenticated request needs.
    pub(super) fn session_by_hash(&self, token_hash: &[u8]) -> StoreResult<Option<SessionRecord>> {
        self.with(|c| {
            c.prepare_cached(&format!("{SESSION_RECORD_SELECT} ?1"))?
                .query_row([token_hash], |row| {
                    let (user_column, organisation_column) =
                        SESSION_RECORD_USER_AND_ORGANISATION_AT;
                    Ok(SessionRecord {
                        session: session_at(row, 0)?,
                        user: match row.get_ref(user_column)? {
                            rusqlite::types::ValueRef::Null => None,
                            _ => Some(user_at(row, user_column)?),
                        },
                        organisation: match row.get_ref(organisation_column)? {
                            rusqlite::types::ValueRef::Null => None,
                            _ => Some(organisation_at(row, organisation_column)?),
                        },
                    })
                })
                .optional()
        })
    }

    pub(super) fn user_sessions(
        &self,
        user: UserId,
        now_ms: i64,
    ) -> StoreResult<Vec<StoredSession>> {
        self.with(|c| {
            c.prepare_cached(&format!(
                "{SESSION_COLUMNS} WHERE user_id = ?1 AND revoked_at_ms IS NULL
                     AND expires_at_ms > ?2
                 ORDER BY created_at_ms DESC, id DESC LIMIT ?3"
            ))?
            .query_map(
                params![
                    uuid_bytes(user.as_uuid()),
                    now_ms,
                    i64::from(limits::USER_SESSIONS_LISTED_MAX)
                ],
                session,
            )?
            .collect()
        })
    }

    pub(super) fn invitation_by_hash(
        &self,
        token_hash: &[u8],
    ) -> StoreResult<Option<StoredInvitation>> {
        self.with(|c| {
            c.prepare_cached(&format!("{INVITATION_COLUMNS} WHERE token_hash = ?1"))?
                .query_row([token_hash], invitation)
                .optional()
        })
    }

    pub(super) fn recovery_codes_left(&self, user: UserId) -> StoreResult<u64> {
        let left: i64 = self.with(|c| {
            c.prepare_cached(
                "SELECT COUNT(*) FROM recovery_codes WHERE user_id = ?1 AND used_at_ms IS NULL",
            )?
            .query_row([uuid_bytes(user.as_uuid())], |row| row.get(0))
        })?;
        Ok(u64::try_from(left).unwrap_or(0))
    }
}

const PASSKEY_COLUMNS: &str = "SELECT credential_id, user_id, public_key_cose, sign_count,
        backup_eligible, name, created_at_ms, last_used_ms FROM passkeys";

fn passkey(row: &Row<'_>) -> rusqlite::Result<StoredPasskey> {
    Ok(StoredPasskey {
        credential_id: row.get(0)?,
        user: UserId::from_uuid(uuid_from(row.get(1)?)?),
        public_key_cose: row.get(2)?,
        sign_count: row.get(3)?,
        backup_eligible: row.get(4)?,
        name: row.get(5)?,
        created_at_ms: row.get(6)?,
        last_used_ms: row.get(7)?,
    })
}

impl Readers {
    pub(super) fn passkey(&self, credential_id: &[u8]) -> StoreResult<Option<StoredPasskey>> {
        self.with(|c| {
            c.prepare_cached(&format!("{PASSKEY_COLUMNS} WHERE credential_id = ?1"))?
                .query_row([credential_id], passkey)
                .optional()
        })
    }

    pub(super) fn user_passkeys(&self, user: UserId) -> StoreResult<Vec<StoredPasskey>> {
        self.with(|c| {
            c.prepare_cached(&format!(
                "{PASSKEY_COLUMNS} WHERE user_id = ?1 ORDER BY created_at_ms, credential_id LIMIT ?2"
            ))?
            .query_map(
                params![
                    uuid_bytes(user.as_uuid()),
                    i64::from(limits::PASSKEYS_PER_USER_MAX)
                ],
                passkey,
            )?
            .collect()
        })
    }
}
