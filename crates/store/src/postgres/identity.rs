//! Identity rows on PostgreSQL: each write one statement or one transaction on the pool.

use haven_domain::{InvitationId, OrganisationId, PatientId, SessionId, UserId};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::identity::{
    NewUser, Redeemed, SESSION_RECORD_SELECT, SESSION_RECORD_USER_AND_ORGANISATION_AT,
    SessionRecord, StoredChallenge, StoredInvitation, StoredOrganisation, StoredPasskey,
    StoredSession, StoredUser,
};
use crate::{StoreError, StoreResult, StoredSubjectKey, limits};

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

pub(super) async fn insert_organisation(pool: &PgPool, o: StoredOrganisation) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO organisations (id, name, idle_timeout_secs, absolute_timeout_secs,
             patient_mfa_required, created_at_ms, break_glass_secs, result_release,
             message_retention_days)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(o.id.as_uuid())
    .bind(&o.name)
    .bind(o.idle_timeout_secs)
    .bind(o.absolute_timeout_secs)
    .bind(o.patient_mfa_required)
    .bind(o.created_at_ms)
    .bind(o.break_glass_secs)
    .bind(crate::identity::result_release_text(o.results_after_review))
    .bind(o.message_retention_days)
    .execute(pool)
    .await?;
    Ok(())
}

const ORGANISATION_COLUMNS: &str = "SELECT id, name, idle_timeout_secs, absolute_timeout_secs,
        patient_mfa_required, created_at_ms, break_glass_secs, result_release,
        message_retention_days FROM organisations";

fn organisation_from_row(row: &PgRow) -> StoreResult<StoredOrganisation> {
    organisation_at(row, 0)
}

/// A row's [`ORGANISATION_COLUMNS`] from column `at` on.
fn organisation_at(row: &PgRow, at: usize) -> StoreResult<StoredOrganisation> {
    Ok(StoredOrganisation {
        id: OrganisationId::from_uuid(row.try_get(at)?),
        name: row.try_get(at + 1)?,
        idle_timeout_secs: row.try_get(at + 2)?,
        absolute_timeout_secs: row.try_get(at + 3)?,
        patient_mfa_required: row.try_get(at + 4)?,
        created_at_ms: row.try_get(at + 5)?,
        break_glass_secs: row.try_get(at + 6)?,
        results_after_review: row.try_get::<String, _>(at + 7)? == "after_review",
        message_retention_days: row.try_get(at + 8)?,
    })
}

pub(super) async fn organisation(
    pool: &PgPool,
    id: OrganisationId,
) -> StoreResult<Option<StoredOrganisation>> {
    let row = sqlx::query(&format!("{ORGANISATION_COLUMNS} WHERE id = $1"))
        .bind(id.as_uuid())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(organisation_from_row).transpose()
}

pub(super) async fn organisations(pool: &PgPool) -> StoreResult<Vec<StoredOrganisation>> {
    let rows = sqlx::query(&format!(
        "{ORGANISATION_COLUMNS} ORDER BY created_at_ms, id LIMIT $1"
    ))
    .bind(i64::from(limits::ORGANISATIONS_LISTED_MAX))
    .fetch_all(pool)
    .await?;
    rows.iter().map(organisation_from_row).collect()
}

async fn insert_user_on(connection: &mut PgConnection, new: &NewUser) -> StoreResult<()> {
    let user = &new.user;
    let inserted = sqlx::query(
        "INSERT INTO users (id, organisation_id, login_index, login_sealed, role, patient_id,
             password_hash, password_changed_at_ms, totp_sealed, totp_enabled, totp_last_step,
             failed_logins, locked_until_ms, created_at_ms, disabled_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
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
         VALUES ($1, $2, $3, $4, $5)",
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

pub(super) async fn insert_user(pool: &PgPool, new: NewUser) -> StoreResult<()> {
    let mut transaction = pool.begin().await?;
    insert_user_on(&mut transaction, &new).await?;
    transaction.commit().await?;
    Ok(())
}

const USER_COLUMNS: &str = "SELECT u.id, u.organisation_id, u.login_index, u.login_sealed,
        u.role, u.patient_id, u.password_hash, u.password_changed_at_ms, u.totp_sealed,
        u.totp_enabled, u.totp_last_step, u.failed_logins, u.locked_until_ms, u.created_at_ms,
        u.disabled_at_ms, k.key_id, k.root_key_id, k.wrapped
     FROM users u LEFT JOIN subject_keys k ON k.subject_id = u.id";

fn user_from_row(row: &PgRow) -> StoreResult<StoredUser> {
    user_at(row, 0)
}

/// A row's [`USER_COLUMNS`] from column `at` on.
fn user_at(row: &PgRow, at: usize) -> StoreResult<StoredUser> {
    let id: Uuid = row.try_get(at)?;
    let key_id: Option<Vec<u8>> = row.try_get(at + 15)?;
    Ok(StoredUser {
        id: UserId::from_uuid(id),
        organisation: OrganisationId::from_uuid(row.try_get(at + 1)?),
        login_index: row.try_get(at + 2)?,
        login_sealed: row.try_get(at + 3)?,
        role: row.try_get(at + 4)?,
        patient: row
            .try_get::<Option<Uuid>, _>(at + 5)?
            .map(PatientId::from_uuid),
        password_hash: row.try_get(at + 6)?,
        password_changed_at_ms: row.try_get(at + 7)?,
        totp_sealed: row.try_get(at + 8)?,
        totp_enabled: row.try_get(at + 9)?,
        totp_last_step: row.try_get(at + 10)?,
        failed_logins: row.try_get(at + 11)?,
        locked_until_ms: row.try_get(at + 12)?,
        created_at_ms: row.try_get(at + 13)?,
        disabled_at_ms: row.try_get(at + 14)?,
        subject_key: match key_id {
            Some(key_id) => Some(StoredSubjectKey {
                subject: PatientId::from_uuid(id),
                key_id,
                root_key_id: row.try_get(at + 16)?,
                wrapped: row.try_get(at + 17)?,
            }),
            None => None,
        },
    })
}

pub(super) async fn user(pool: &PgPool, id: UserId) -> StoreResult<Option<StoredUser>> {
    let row = sqlx::query(&format!("{USER_COLUMNS} WHERE u.id = $1"))
        .bind(id.as_uuid())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(user_from_row).transpose()
}

pub(super) async fn user_by_login(
    pool: &PgPool,
    login_index: &[u8],
) -> StoreResult<Option<StoredUser>> {
    let row = sqlx::query(&format!("{USER_COLUMNS} WHERE u.login_index = $1"))
        .bind(login_index)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(user_from_row).transpose()
}

/// Runs one UPDATE and says whether it changed a row.
async fn changed(
    query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    pool: &PgPool,
) -> StoreResult<bool> {
    Ok(query.execute(pool).await?.rows_affected() > 0)
}

pub(super) async fn set_password(
    pool: &PgPool,
    user: UserId,
    password_hash: &str,
    now_ms: i64,
) -> StoreResult<()> {
    changed(
        sqlx::query(
            "UPDATE users SET password_hash = $1, password_changed_at_ms = $2,
                 failed_logins = 0, locked_until_ms = 0 WHERE id = $3",
        )
        .bind(password_hash)
        .bind(now_ms)
        .bind(user.as_uuid()),
        pool,
    )
    .await
    .map(drop)
}

pub(super) async fn set_totp(
    pool: &PgPool,
    user: UserId,
    totp_sealed: Option<Vec<u8>>,
    enabled: bool,
) -> StoreResult<()> {
    changed(
        sqlx::query("UPDATE users SET totp_sealed = $1, totp_enabled = $2 WHERE id = $3")
            .bind(totp_sealed)
            .bind(enabled)
            .bind(user.as_uuid()),
        pool,
    )
    .await
    .map(drop)
}

pub(super) async fn advance_totp_step(pool: &PgPool, user: UserId, step: i64) -> StoreResult<bool> {
    changed(
        sqlx::query("UPDATE users SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1")
            .bind(step)
            .bind(user.as_uuid()),
        pool,
    )
    .await
}

pub(super) async fn record_login_failure(
    pool: &PgPool,
    user: UserId,
    locked_until_ms: i64,
) -> StoreResult<()> {
    changed(
        sqlx::query(
            "UPDATE users SET failed_logins = failed_logins + 1,
                 locked_until_ms = GREATEST(locked_until_ms, $1) WHERE id = $2",
        )
        .bind(locked_until_ms)
        .bind(user.as_uuid()),
        pool,
    )
    .await
    .map(drop)
}

pub(super) async fn reset_login_failures(pool: &PgPool, user: UserId) -> StoreResult<()> {
    changed(
        sqlx::query("UPDATE users SET failed_logins = 0, locked_until_ms = 0 WHERE id = $1")
            .bind(user.as_uuid()),
        pool,
    )
    .await
    .map(drop)
}

pub(super) async fn insert_session(pool: &PgPool, s: StoredSession) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO sessions (id, token_hash, user_id, created_at_ms, last_seen_ms,
             idle_timeout_ms, expires_at_ms, authenticated_at_ms, mfa, source_ip, user_agent,
             revoked_at_ms, revoked_reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
    .execute(pool)
    .await?;
    Ok(())
}

const SESSION_COLUMNS: &str = "SELECT id, token_hash, user_id, created_at_ms, last_seen_ms,
        idle_timeout_ms, expires_at_ms, authenticated_at_ms, mfa, source_ip, user_agent,
        revoked_at_ms, revoked_reason FROM sessions";

fn session_from_row(row: &PgRow) -> StoreResult<StoredSession> {
    session_at(row, 0)
}

/// A row's [`SESSION_COLUMNS`] from column `at` on.
fn session_at(row: &PgRow, at: usize) -> StoreResult<StoredSession> {
    Ok(StoredSession {
        id: SessionId::from_uuid(row.try_get(at)?),
        token_hash: row.try_get(at + 1)?,
        user: UserId::from_uuid(row.try_get(at + 2)?),
        created_at_ms: row.try_get(at + 3)?,
        last_seen_ms: row.try_get(at + 4)?,
        idle_timeout_ms: row.try_get(at + 5)?,
        expires_at_ms: row.try_get(at + 6)?,
        authenticated_at_ms: row.try_get(at + 7)?,
        mfa: row.try_get(at + 8)?,
        source_ip: row.try_get(at + 9)?,
        user_agent: row.try_get(at + 10)?,
        revoked_at_ms: row.try_get(at + 11)?,
        revoked_reason: row.try_get(at + 12)?,
    })
}

/// One round trip for the three rows every authenticated request needs.
pub(super) async fn session_by_hash(
    pool: &PgPool,
    token_hash: &[u8],
) -> StoreResult<Option<SessionRecord>> {
    let row = sqlx::query(&format!("{SESSION_RECORD_SELECT} $1"))
        .bind(token_hash)
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (user_column, organisation_column) = SESSION_RECORD_USER_AND_ORGANISATION_AT;
    let present =
        |at: usize| -> StoreResult<bool> { Ok(row.try_get::<Option<Uuid>, _>(at)?.is_some()) };
    Ok(Some(SessionRecord {
        session: session_at(&row, 0)?,
        user: present(user_column)?
            .then(|| user_at(&row, user_column))
            .transpose()?,
        organisation: present(organisation_column)?
            .then(|| organisation_at(&row, organisation_column))
            .transpose()?,
    }))
}

pub(super) async fn touch_session(pool: &PgPool, id: SessionId, now_ms: i64) -> StoreResult<()> {
    changed(
        sqlx::query("UPDATE sessions SET last_seen_ms = GREATEST(last_seen_ms, $1) WHERE id = $2")
            .bind(now_ms)
            .bind(id.as_uuid()),
        pool,
    )
    .await
    .map(drop)
}

pub(super) async fn reauthenticate_session(
    pool: &PgPool,
    id: SessionId,
    now_ms: i64,
    mfa: bool,
) -> StoreResult<()> {
    changed(
        sqlx::query(
            "UPDATE sessions SET authenticated_at_ms = $1, mfa = $2, last_seen_ms = $1
             WHERE id = $3 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(mfa)
        .bind(id.as_uuid()),
        pool,
    )
    .await
    .map(drop)
}

pub(super) async fn revoke_session(
    pool: &PgPool,
    id: SessionId,
    now_ms: i64,
    reason: &str,
) -> StoreResult<bool> {
    changed(
        sqlx::query(
            "UPDATE sessions SET revoked_at_ms = $1, revoked_reason = $2
             WHERE id = $3 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(reason)
        .bind(id.as_uuid()),
        pool,
    )
    .await
}

pub(super) async fn revoke_user_sessions(
    pool: &PgPool,
    user: UserId,
    keep: Option<SessionId>,
    now_ms: i64,
    reason: &str,
) -> StoreResult<u64> {
    let result = sqlx::query(
        "UPDATE sessions SET revoked_at_ms = $1, revoked_reason = $2
         WHERE user_id = $3 AND revoked_at_ms IS NULL AND id IS DISTINCT FROM $4",
    )
    .bind(now_ms)
    .bind(reason)
    .bind(user.as_uuid())
    .bind(keep.map(|k| k.as_uuid()))
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

pub(super) async fn user_sessions(
    pool: &PgPool,
    user: UserId,
    now_ms: i64,
) -> StoreResult<Vec<StoredSession>> {
    let rows = sqlx::query(&format!(
        "{SESSION_COLUMNS} WHERE user_id = $1 AND revoked_at_ms IS NULL AND expires_at_ms > $2
         ORDER BY created_at_ms DESC, id DESC LIMIT $3"
    ))
    .bind(user.as_uuid())
    .bind(now_ms)
    .bind(i64::from(limits::USER_SESSIONS_LISTED_MAX))
    .fetch_all(pool)
    .await?;
    rows.iter().map(session_from_row).collect()
}

pub(super) async fn insert_invitation(pool: &PgPool, i: StoredInvitation) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO invitations (id, token_hash, organisation_id, role, patient_id,
             created_by, created_at_ms, expires_at_ms, used_at_ms, used_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
    .execute(pool)
    .await?;
    Ok(())
}

fn invitation_from_row(row: &PgRow) -> StoreResult<StoredInvitation> {
    Ok(StoredInvitation {
        id: InvitationId::from_uuid(row.try_get("id")?),
        token_hash: row.try_get("token_hash")?,
        organisation: OrganisationId::from_uuid(row.try_get("organisation_id")?),
        role: row.try_get("role")?,
        patient: row
            .try_get::<Option<Uuid>, _>("patient_id")?
            .map(PatientId::from_uuid),
        created_by: row.try_get("created_by")?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        used_at_ms: row.try_get("used_at_ms")?,
        used_by: row
            .try_get::<Option<Uuid>, _>("used_by")?
            .map(UserId::from_uuid),
    })
}

pub(super) async fn invitation_by_hash(
    pool: &PgPool,
    token_hash: &[u8],
) -> StoreResult<Option<StoredInvitation>> {
    let row = sqlx::query(
        "SELECT id, token_hash, organisation_id, role, patient_id, created_by, created_at_ms,
             expires_at_ms, used_at_ms, used_by FROM invitations WHERE token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(invitation_from_row).transpose()
}

pub(super) async fn redeem_invitation(
    pool: &PgPool,
    invitation: InvitationId,
    now_ms: i64,
    user: NewUser,
) -> StoreResult<Redeemed> {
    let mut transaction = pool.begin().await?;
    let marked = sqlx::query(
        "UPDATE invitations SET used_at_ms = $1, used_by = $2
         WHERE id = $3 AND used_at_ms IS NULL AND expires_at_ms > $1",
    )
    .bind(now_ms)
    .bind(user.user.id.as_uuid())
    .bind(invitation.as_uuid())
    .execute(&mut *transaction)
    .await?;
    if marked.rows_affected() == 0 {
        return Ok(Redeemed::Spent);
    }
    match insert_user_on(&mut transaction, &user).await {
        // Dropping the transaction rolls back the mark: the invitation stays unused.
        Err(StoreError::AlreadyExists) => return Ok(Redeemed::LoginTaken),
        other => other?,
    }
    transaction.commit().await?;
    Ok(Redeemed::Created)
}

pub(super) async fn replace_recovery_codes(
    pool: &PgPool,
    user: UserId,
    code_hashes: Vec<Vec<u8>>,
) -> StoreResult<()> {
    crate::check_rows_max(
        "recovery codes",
        code_hashes.len(),
        limits::RECOVERY_CODES_MAX,
    )?;
    let mut transaction = pool.begin().await?;
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user.as_uuid())
        .execute(&mut *transaction)
        .await?;
    sqlx::query(
        "INSERT INTO recovery_codes (user_id, code_hash) SELECT $1, * FROM UNNEST($2::BYTEA[])",
    )
    .bind(user.as_uuid())
    .bind(&code_hashes)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(())
}

pub(super) async fn use_recovery_code(
    pool: &PgPool,
    user: UserId,
    code_hash: &[u8],
    now_ms: i64,
) -> StoreResult<bool> {
    changed(
        sqlx::query(
            "UPDATE recovery_codes SET used_at_ms = $1
             WHERE user_id = $2 AND code_hash = $3 AND used_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(user.as_uuid())
        .bind(code_hash),
        pool,
    )
    .await
}

pub(super) async fn recovery_codes_left(pool: &PgPool, user: UserId) -> StoreResult<u64> {
    let left: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at_ms IS NULL",
    )
    .bind(user.as_uuid())
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(left).unwrap_or(0))
}

pub(super) async fn insert_passkey(pool: &PgPool, p: StoredPasskey) -> StoreResult<()> {
    let inserted = sqlx::query(
        "INSERT INTO passkeys (credential_id, user_id, public_key_cose, sign_count,
             backup_eligible, name, created_at_ms, last_used_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&p.credential_id)
    .bind(p.user.as_uuid())
    .bind(&p.public_key_cose)
    .bind(p.sign_count)
    .bind(p.backup_eligible)
    .bind(&p.name)
    .bind(p.created_at_ms)
    .bind(p.last_used_ms)
    .execute(pool)
    .await;
    match inserted {
        Err(error) if is_unique_violation(&error) => Err(StoreError::AlreadyExists),
        other => other.map(drop).map_err(StoreError::from),
    }
}

const PASSKEY_COLUMNS: &str = "SELECT credential_id, user_id, public_key_cose, sign_count,
        backup_eligible, name, created_at_ms, last_used_ms FROM passkeys";

fn passkey_from_row(row: &PgRow) -> StoreResult<StoredPasskey> {
    Ok(StoredPasskey {
        credential_id: row.try_get("credential_id")?,
        user: UserId::from_uuid(row.try_get("user_id")?),
        public_key_cose: row.try_get("public_key_cose")?,
        sign_count: row.try_get("sign_count")?,
        backup_eligible: row.try_get("backup_eligible")?,
        name: row.try_get("name")?,
        created_at_ms: row.try_get("created_at_ms")?,
        last_used_ms: row.try_get("last_used_ms")?,
    })
}

pub(super) async fn passkey(
    pool: &PgPool,
    credential_id: &[u8],
) -> StoreResult<Option<StoredPasskey>> {
    let row = sqlx::query(&format!("{PASSKEY_COLUMNS} WHERE credential_id = $1"))
        .bind(credential_id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(passkey_from_row).transpose()
}

pub(super) async fn user_passkeys(pool: &PgPool, user: UserId) -> StoreResult<Vec<StoredPasskey>> {
    let rows = sqlx::query(&format!(
        "{PASSKEY_COLUMNS} WHERE user_id = $1 ORDER BY created_at_ms, credential_id LIMIT $2"
    ))
    .bind(user.as_uuid())
    .bind(i64::from(limits::PASSKEYS_PER_USER_MAX))
    .fetch_all(pool)
    .await?;
    rows.iter().map(passkey_from_row).collect()
}

pub(super) async fn record_passkey_use(
    pool: &PgPool,
    credential_id: &[u8],
    previous_sign_count: i64,
    new_sign_count: i64,
    now_ms: i64,
) -> StoreResult<bool> {
    changed(
        sqlx::query(
            "UPDATE passkeys SET sign_count = $1, last_used_ms = $2
             WHERE credential_id = $3 AND sign_count = $4",
        )
        .bind(new_sign_count)
        .bind(now_ms)
        .bind(credential_id)
        .bind(previous_sign_count),
        pool,
    )
    .await
}

pub(super) async fn insert_challenge(pool: &PgPool, c: StoredChallenge) -> StoreResult<()> {
    let mut transaction = pool.begin().await?;
    // Expired challenges go as new ones come, so the table never grows unbounded.
    sqlx::query("DELETE FROM webauthn_challenges WHERE expires_at_ms <= $1")
        .bind(c.expires_at_ms - limits::CHALLENGE_TTL_MS)
        .execute(&mut *transaction)
        .await?;
    sqlx::query(
        "INSERT INTO webauthn_challenges (id, challenge, user_id, purpose, expires_at_ms)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(c.id)
    .bind(&c.challenge)
    .bind(c.user.map(|u| u.as_uuid()))
    .bind(&c.purpose)
    .bind(c.expires_at_ms)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(())
}

pub(super) async fn take_challenge(
    pool: &PgPool,
    id: Uuid,
    now_ms: i64,
) -> StoreResult<Option<StoredChallenge>> {
    let row = sqlx::query(
        "DELETE FROM webauthn_challenges WHERE id = $1
         RETURNING challenge, user_id, purpose, expires_at_ms",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let expires_at_ms: i64 = row.try_get("expires_at_ms")?;
    if expires_at_ms <= now_ms {
        return Ok(None);
    }
    Ok(Some(StoredChallenge {
        id,
        challenge: row.try_get("challenge")?,
        user: row
            .try_get::<Option<Uuid>, _>("user_id")?
            .map(UserId::from_uuid),
        purpose: row.try_get("purpose")?,
        expires_at_ms,
    }))
}

pub(super) async fn update_organisation(pool: &PgPool, o: StoredOrganisation) -> StoreResult<bool> {
    changed(
        sqlx::query(
            "UPDATE organisations SET name = $1, idle_timeout_secs = $2,
                 absolute_timeout_secs = $3, patient_mfa_required = $4, break_glass_secs = $5,
                 result_release = $7, message_retention_days = $8
             WHERE id = $6",
        )
        .bind(o.name.clone())
        .bind(o.idle_timeout_secs)
        .bind(o.absolute_timeout_secs)
        .bind(o.patient_mfa_required)
        .bind(o.break_glass_secs)
        .bind(o.id.as_uuid())
        .bind(crate::identity::result_release_text(o.results_after_review))
        .bind(o.message_retention_days),
        pool,
    )
    .await
}

pub(super) async fn organisation_users(
    pool: &PgPool,
    organisation: OrganisationId,
) -> StoreResult<Vec<StoredUser>> {
    let rows = sqlx::query(&format!(
        "{USER_COLUMNS} WHERE u.organisation_id = $1 ORDER BY u.created_at_ms, u.id LIMIT $2"
    ))
    .bind(organisation.as_uuid())
    .bind(i64::from(limits::USERS_LISTED_MAX))
    .fetch_all(pool)
    .await?;
    rows.iter().map(user_from_row).collect()
}

pub(super) async fn set_user_disabled(
    pool: &PgPool,
    user: UserId,
    disabled_at_ms: Option<i64>,
) -> StoreResult<bool> {
    changed(
        sqlx::query("UPDATE users SET disabled_at_ms = $1 WHERE id = $2")
            .bind(disabled_at_ms)
            .bind(user.as_uuid()),
        pool,
    )
    .await
}

pub(super) async fn claim_guess(
    pool: &PgPool,
    user: UserId,
    now_ms: i64,
    lock: crate::GuessLock,
) -> StoreResult<bool> {
    // PostgreSQL spells MIN of two values LEAST; otherwise the statement is shared.
    let sql = crate::CLAIM_GUESS_SQL.replace("MIN(", "LEAST(");
    Ok(sqlx::query(&sql)
        .bind(lock.after_failures)
        .bind(now_ms)
        .bind(lock.first_ms)
        .bind(lock.max_ms)
        .bind(user.as_uuid())
        .execute(pool)
        .await?
        .rows_affected()
        > 0)
}

pub(super) async fn delete_passkey(
    pool: &PgPool,
    user: UserId,
    credential_id: &[u8],
) -> StoreResult<bool> {
    changed(
        sqlx::query("DELETE FROM passkeys WHERE user_id = $1 AND credential_id = $2")
            .bind(user.as_uuid())
            .bind(credential_id),
        pool,
    )
    .await
}

pub(super) async fn start_totp_setup(
    pool: &PgPool,
    user: UserId,
    totp_sealed: Vec<u8>,
) -> StoreResult<bool> {
    changed(
        sqlx::query(
            "UPDATE users SET totp_sealed = $1, totp_enabled = FALSE
             WHERE id = $2 AND totp_enabled = FALSE",
        )
        .bind(totp_sealed)
        .bind(user.as_uuid()),
        pool,
    )
    .await
}
