//! Care relationships, break-the-glass grants and notifications on PostgreSQL: each write
//! one statement (or one transaction) on the pool.

use haven_domain::{BreakGlassId, DelegationId, NotificationId, OrganisationId, PatientId, UserId};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::care::{
    BreakGlassQuery, BreakGlassReview, CareTeamMember, Relations, ReviewState, StoredBreakGlass,
    StoredDelegation, StoredNotification,
};
use crate::{StoreError, StoreResult, limits};

pub(super) async fn care_team(
    pool: &PgPool,
    patient: PatientId,
) -> StoreResult<Vec<CareTeamMember>> {
    let rows = sqlx::query(
        "SELECT user_id, added_by, added_at_ms FROM care_team_members
         WHERE patient_id = $1 ORDER BY added_at_ms, user_id LIMIT $2",
    )
    .bind(patient.as_uuid())
    .bind(i64::from(limits::CARE_TEAM_MEMBERS_MAX))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(CareTeamMember {
                patient,
                user: UserId::from_uuid(row.try_get("user_id")?),
                added_by: row.try_get("added_by")?,
                added_at_ms: row.try_get("added_at_ms")?,
            })
        })
        .collect()
}

pub(super) async fn add_care_team_member(
    pool: &PgPool,
    member: CareTeamMember,
) -> StoreResult<bool> {
    // The count and the insert race with another instance adding to the same team; a
    // transaction-scoped advisory lock on the patient orders them, so the bound holds.
    let mut transaction = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7))")
        .bind(member.patient.as_uuid())
        .execute(&mut *transaction)
        .await?;
    let added = sqlx::query(
        "INSERT INTO care_team_members (patient_id, user_id, added_by, added_at_ms)
         SELECT $1, $2, $3, $4
         WHERE (SELECT count(*) FROM care_team_members WHERE patient_id = $1) < $5
         ON CONFLICT DO NOTHING",
    )
    .bind(member.patient.as_uuid())
    .bind(member.user.as_uuid())
    .bind(&member.added_by)
    .bind(member.added_at_ms)
    .bind(i64::from(limits::CARE_TEAM_MEMBERS_MAX))
    .execute(&mut *transaction)
    .await?
    .rows_affected()
        > 0;
    transaction.commit().await?;
    Ok(added)
}

pub(super) async fn remove_care_team_member(
    pool: &PgPool,
    patient: PatientId,
    user: UserId,
) -> StoreResult<bool> {
    Ok(
        sqlx::query("DELETE FROM care_team_members WHERE patient_id = $1 AND user_id = $2")
            .bind(patient.as_uuid())
            .bind(user.as_uuid())
            .execute(pool)
            .await?
            .rows_affected()
            > 0,
    )
}

pub(super) async fn relations(
    pool: &PgPool,
    user: UserId,
    patients: &[PatientId],
    now_ms: i64,
) -> StoreResult<Vec<Relations>> {
    crate::care::check_lookup(patients)?;
    if patients.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = patients.iter().map(|p| p.as_uuid()).collect();
    // One index look-up per patient asked about, by `(user, patient)`. Written as
    // `patient_id = ANY($2)`, the statement got PostgreSQL's generic plan once it had run a
    // few times (sqlx prepares it), and that plan looked up the user alone and filtered by
    // patient: a clinician on 1,000 care teams read 1,000 rows for every access checked.
    let rows = sqlx::query(
        "SELECT patient_id, bool_or(care_team) AS care_team, bool_or(break_glass) AS break_glass,
             max(scopes) AS scopes
         FROM unnest($2::uuid[]) AS asked (patient_id)
         CROSS JOIN LATERAL (
             SELECT TRUE AS care_team, FALSE AS break_glass, NULL::text AS scopes
             FROM care_team_members c
             WHERE c.user_id = $1 AND c.patient_id = asked.patient_id
             UNION ALL
             SELECT FALSE, TRUE, NULL FROM break_glass_grants g
             WHERE g.user_id = $1 AND g.patient_id = asked.patient_id AND g.expires_at_ms > $3
             UNION ALL
             SELECT FALSE, FALSE, d.scopes FROM delegations d
             WHERE d.proxy_user_id = $1 AND d.patient_id = asked.patient_id
               AND d.revoked_at_ms IS NULL AND d.expires_at_ms > $3
         ) facts GROUP BY patient_id",
    )
    .bind(user.as_uuid())
    .bind(&ids)
    .bind(now_ms)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Relations {
                patient: PatientId::from_uuid(row.try_get("patient_id")?),
                care_team: row.try_get("care_team")?,
                break_glass: row.try_get("break_glass")?,
                proxy_scopes: row.try_get("scopes")?,
            })
        })
        .collect()
}

pub(super) async fn insert_break_glass(pool: &PgPool, grant: StoredBreakGlass) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO break_glass_grants (id, organisation_id, user_id, patient_id,
             reason_sealed, created_at_ms, expires_at_ms, review_state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(grant.id.as_uuid())
    .bind(grant.organisation.as_uuid())
    .bind(grant.user.as_uuid())
    .bind(grant.patient.as_uuid())
    .bind(&grant.reason_sealed)
    .bind(grant.created_at_ms)
    .bind(grant.expires_at_ms)
    .bind(grant.review_state.as_str())
    .execute(pool)
    .await?;
    Ok(())
}

const BREAK_GLASS_COLUMNS: &str = "SELECT id, organisation_id, user_id, patient_id,
        reason_sealed, created_at_ms, expires_at_ms, review_state, reviewed_by, reviewed_at_ms,
        review_note_sealed FROM break_glass_grants";

fn break_glass_from_row(row: &PgRow) -> StoreResult<StoredBreakGlass> {
    let state: String = row.try_get("review_state")?;
    let reviewed_by: Option<Uuid> = row.try_get("reviewed_by")?;
    Ok(StoredBreakGlass {
        id: BreakGlassId::from_uuid(row.try_get("id")?),
        organisation: OrganisationId::from_uuid(row.try_get("organisation_id")?),
        user: UserId::from_uuid(row.try_get("user_id")?),
        patient: PatientId::from_uuid(row.try_get("patient_id")?),
        reason_sealed: row.try_get("reason_sealed")?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        review_state: ReviewState::parse(&state)
            .ok_or(StoreError::Invalid("unknown break-the-glass review state"))?,
        reviewed_by: reviewed_by.map(UserId::from_uuid),
        reviewed_at_ms: row.try_get("reviewed_at_ms")?,
        review_note_sealed: row.try_get("review_note_sealed")?,
    })
}

pub(super) async fn break_glass(
    pool: &PgPool,
    id: BreakGlassId,
) -> StoreResult<Option<StoredBreakGlass>> {
    let row = sqlx::query(&format!("{BREAK_GLASS_COLUMNS} WHERE id = $1"))
        .bind(id.as_uuid())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(break_glass_from_row).transpose()
}

pub(super) async fn break_glass_grants(
    pool: &PgPool,
    query: &BreakGlassQuery,
) -> StoreResult<Vec<StoredBreakGlass>> {
    let (before_ms, before_id) = query
        .before
        .map_or((i64::MAX, Uuid::max()), |(ms, id)| (ms, id.as_uuid()));
    let rows = sqlx::query(&format!(
        "{BREAK_GLASS_COLUMNS}
         WHERE organisation_id = $1 AND (NOT $2 OR review_state = 'pending')
           AND (created_at_ms, id) < ($3, $4)
         ORDER BY created_at_ms DESC, id DESC LIMIT $5"
    ))
    .bind(query.organisation.as_uuid())
    .bind(query.pending_only)
    .bind(before_ms)
    .bind(before_id)
    .bind(i64::from(query.limit.min(limits::PAGE_ROWS_MAX)))
    .fetch_all(pool)
    .await?;
    rows.iter().map(break_glass_from_row).collect()
}

pub(super) async fn review_break_glass(
    pool: &PgPool,
    review: BreakGlassReview,
) -> StoreResult<bool> {
    Ok(sqlx::query(
        "UPDATE break_glass_grants SET review_state = $1, reviewed_by = $2,
             reviewed_at_ms = $3, review_note_sealed = $4
         WHERE id = $5 AND review_state = 'pending'",
    )
    .bind(review.state.as_str())
    .bind(review.reviewer.as_uuid())
    .bind(review.now_ms)
    .bind(&review.note_sealed)
    .bind(review.id.as_uuid())
    .execute(pool)
    .await?
    .rows_affected()
        > 0)
}

pub(super) async fn insert_notifications(
    pool: &PgPool,
    notifications: Vec<StoredNotification>,
) -> StoreResult<()> {
    let mut transaction = pool.begin().await?;
    for n in notifications {
        sqlx::query(
            "INSERT INTO notifications (id, user_id, kind, subject_id, created_at_ms, read_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(n.id.as_uuid())
        .bind(n.user.as_uuid())
        .bind(&n.kind)
        .bind(n.subject)
        .bind(n.created_at_ms)
        .bind(n.read_at_ms)
        .execute(&mut *transaction)
        .await?;
    }
    transaction.commit().await?;
    Ok(())
}

pub(super) async fn notifications(
    pool: &PgPool,
    user: UserId,
) -> StoreResult<Vec<StoredNotification>> {
    let rows = sqlx::query(
        "SELECT id, user_id, kind, subject_id, created_at_ms, read_at_ms FROM notifications
         WHERE user_id = $1 ORDER BY created_at_ms DESC, id DESC LIMIT $2",
    )
    .bind(user.as_uuid())
    .bind(i64::from(limits::NOTIFICATIONS_LISTED_MAX))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StoredNotification {
                id: NotificationId::from_uuid(row.try_get("id")?),
                user: UserId::from_uuid(row.try_get("user_id")?),
                kind: row.try_get("kind")?,
                subject: row.try_get("subject_id")?,
                created_at_ms: row.try_get("created_at_ms")?,
                read_at_ms: row.try_get("read_at_ms")?,
            })
        })
        .collect()
}

pub(super) async fn mark_notification_read(
    pool: &PgPool,
    user: UserId,
    id: NotificationId,
    now_ms: i64,
) -> StoreResult<bool> {
    Ok(sqlx::query(
        "UPDATE notifications SET read_at_ms = $1
         WHERE id = $2 AND user_id = $3 AND read_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(id.as_uuid())
    .bind(user.as_uuid())
    .execute(pool)
    .await?
    .rows_affected()
        > 0)
}

pub(super) async fn resolve_notifications(
    pool: &PgPool,
    subject: Uuid,
    now_ms: i64,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE notifications SET read_at_ms = $1 WHERE subject_id = $2 AND read_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(subject)
    .execute(pool)
    .await?;
    Ok(())
}

const DELEGATION_COLUMNS: &str = "SELECT id, patient_id, proxy_user_id, offer_hash,
        relationship, scopes, created_by, created_at_ms, offer_expires_at_ms, expires_at_ms,
        accepted_at_ms, revoked_at_ms FROM delegations";

/// Whether a delegation is live at `$2`: SQL shared by both listings.
const DELEGATION_LIVE: &str = "(revoked_at_ms IS NULL AND expires_at_ms > $2
        AND (accepted_at_ms IS NOT NULL OR offer_expires_at_ms > $2))";

fn delegation_from_row(row: &PgRow) -> StoreResult<StoredDelegation> {
    let proxy: Option<Uuid> = row.try_get("proxy_user_id")?;
    Ok(StoredDelegation {
        id: DelegationId::from_uuid(row.try_get("id")?),
        patient: PatientId::from_uuid(row.try_get("patient_id")?),
        proxy: proxy.map(UserId::from_uuid),
        offer_hash: row.try_get("offer_hash")?,
        relationship: row.try_get("relationship")?,
        scopes: row.try_get("scopes")?,
        created_by: row.try_get("created_by")?,
        created_at_ms: row.try_get("created_at_ms")?,
        offer_expires_at_ms: row.try_get("offer_expires_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        accepted_at_ms: row.try_get("accepted_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
    })
}

pub(super) async fn insert_delegation(pool: &PgPool, d: StoredDelegation) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO delegations (id, patient_id, proxy_user_id, offer_hash, relationship,
             scopes, created_by, created_at_ms, offer_expires_at_ms, expires_at_ms,
             accepted_at_ms, revoked_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(d.id.as_uuid())
    .bind(d.patient.as_uuid())
    .bind(d.proxy.map(|p| p.as_uuid()))
    .bind(&d.offer_hash)
    .bind(&d.relationship)
    .bind(&d.scopes)
    .bind(&d.created_by)
    .bind(d.created_at_ms)
    .bind(d.offer_expires_at_ms)
    .bind(d.expires_at_ms)
    .bind(d.accepted_at_ms)
    .bind(d.revoked_at_ms)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn patient_delegations(
    pool: &PgPool,
    patient: PatientId,
    now_ms: i64,
) -> StoreResult<Vec<StoredDelegation>> {
    let rows = sqlx::query(&format!(
        "{DELEGATION_COLUMNS} WHERE patient_id = $1
         ORDER BY {DELEGATION_LIVE} DESC, created_at_ms DESC, id DESC LIMIT $3"
    ))
    .bind(patient.as_uuid())
    .bind(now_ms)
    .bind(2 * i64::from(limits::DELEGATIONS_PER_PATIENT_MAX))
    .fetch_all(pool)
    .await?;
    rows.iter().map(delegation_from_row).collect()
}

pub(super) async fn delegation_by_offer(
    pool: &PgPool,
    offer_hash: &[u8],
) -> StoreResult<Option<StoredDelegation>> {
    let row = sqlx::query(&format!("{DELEGATION_COLUMNS} WHERE offer_hash = $1"))
        .bind(offer_hash)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(delegation_from_row).transpose()
}

pub(super) async fn accept_delegation(
    pool: &PgPool,
    id: DelegationId,
    proxy: UserId,
    now_ms: i64,
) -> StoreResult<bool> {
    Ok(sqlx::query(
        "UPDATE delegations SET proxy_user_id = $1, accepted_at_ms = $2
         WHERE id = $3 AND proxy_user_id IS NULL AND revoked_at_ms IS NULL
           AND offer_expires_at_ms > $2 AND expires_at_ms > $2",
    )
    .bind(proxy.as_uuid())
    .bind(now_ms)
    .bind(id.as_uuid())
    .execute(pool)
    .await?
    .rows_affected()
        > 0)
}

pub(super) async fn revoke_delegation(
    pool: &PgPool,
    patient: PatientId,
    id: DelegationId,
    now_ms: i64,
) -> StoreResult<bool> {
    Ok(sqlx::query(
        "UPDATE delegations SET revoked_at_ms = $1
         WHERE id = $2 AND patient_id = $3 AND revoked_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(id.as_uuid())
    .bind(patient.as_uuid())
    .execute(pool)
    .await?
    .rows_affected()
        > 0)
}

pub(super) async fn proxy_delegations(
    pool: &PgPool,
    proxy: UserId,
    now_ms: i64,
) -> StoreResult<Vec<StoredDelegation>> {
    let rows = sqlx::query(&format!(
        "{DELEGATION_COLUMNS} WHERE proxy_user_id = $1 AND {DELEGATION_LIVE}
         ORDER BY created_at_ms DESC, id DESC LIMIT $3"
    ))
    .bind(proxy.as_uuid())
    .bind(now_ms)
    .bind(i64::from(limits::PAGE_ROWS_MAX))
    .fetch_all(pool)
    .await?;
    rows.iter().map(delegation_from_row).collect()
}
