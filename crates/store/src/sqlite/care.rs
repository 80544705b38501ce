//! Care relationships, break-the-glass grants and notifications on the embedded engine:
//! writes as jobs for the group-commit writer ([`CareOp`]), reads inline.

use haven_domain::{BreakGlassId, DelegationId, NotificationId, OrganisationId, PatientId, UserId};
use rusqlite::{OptionalExtension, Row, params, params_from_iter};
use sqlx::SqliteConnection;

use super::readers::{Readers, uuid_from};
use super::{SqliteStore, WriteOp, WriteOutcome, unexpected};
use crate::care::{
    BreakGlassQuery, BreakGlassReview, CareTeamMember, Relations, ReviewState, StoredBreakGlass,
    StoredDelegation, StoredNotification,
};
use crate::{StoreResult, limits};

/// A write of this module, applied by the writer in its own savepoint.
#[derive(Debug)]
pub(super) enum CareOp {
    AddMember(CareTeamMember),
    RemoveMember {
        patient: PatientId,
        user: UserId,
    },
    InsertBreakGlass(StoredBreakGlass),
    Review(BreakGlassReview),
    InsertNotifications(Vec<StoredNotification>),
    MarkRead {
        user: UserId,
        id: NotificationId,
        now_ms: i64,
    },
    Resolve {
        subject: uuid::Uuid,
        now_ms: i64,
    },
    InsertDelegation(StoredDelegation),
    AcceptDelegation {
        id: DelegationId,
        proxy: UserId,
        now_ms: i64,
    },
    RevokeDelegation {
        patient: PatientId,
        id: DelegationId,
        now_ms: i64,
    },
}

fn changed(result: sqlx::sqlite::SqliteQueryResult) -> WriteOutcome {
    WriteOutcome::Changed(result.rows_affected() > 0)
}

pub(super) async fn apply_care(
    connection: &mut SqliteConnection,
    op: &CareOp,
) -> StoreResult<WriteOutcome> {
    Ok(match op {
        CareOp::AddMember(member) => changed(
            sqlx::query(
                "INSERT INTO care_team_members (patient_id, user_id, added_by, added_at_ms)
                 SELECT ?1, ?2, ?3, ?4
                 WHERE (SELECT count(*) FROM care_team_members WHERE patient_id = ?1) < ?5
                 ON CONFLICT DO NOTHING",
            )
            .bind(member.patient.as_uuid())
            .bind(member.user.as_uuid())
            .bind(&member.added_by)
            .bind(member.added_at_ms)
            .bind(i64::from(limits::CARE_TEAM_MEMBERS_MAX))
            .execute(&mut *connection)
            .await?,
        ),
        CareOp::RemoveMember { patient, user } => changed(
            sqlx::query("DELETE FROM care_team_members WHERE patient_id = ? AND user_id = ?")
                .bind(patient.as_uuid())
                .bind(user.as_uuid())
                .execute(&mut *connection)
                .await?,
        ),
        CareOp::InsertBreakGlass(grant) => {
            sqlx::query(
                "INSERT INTO break_glass_grants (id, organisation_id, user_id, patient_id,
                     reason_sealed, created_at_ms, expires_at_ms, review_state)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(grant.id.as_uuid())
            .bind(grant.organisation.as_uuid())
            .bind(grant.user.as_uuid())
            .bind(grant.patient.as_uuid())
            .bind(&grant.reason_sealed)
            .bind(grant.created_at_ms)
            .bind(grant.expires_at_ms)
            .bind(grant.review_state.as_str())
            .execute(&mut *connection)
            .await?;
            WriteOutcome::Done
        }
        CareOp::Review(review) => changed(
            sqlx::query(
                "UPDATE break_glass_grants SET review_state = ?, reviewed_by = ?,
                     reviewed_at_ms = ?, review_note_sealed = ?
                 WHERE id = ? AND review_state = 'pending'",
            )
            .bind(review.state.as_str())
            .bind(review.reviewer.as_uuid())
            .bind(review.now_ms)
            .bind(&review.note_sealed)
            .bind(review.id.as_uuid())
            .execute(&mut *connection)
            .await?,
        ),
        CareOp::InsertNotifications(notifications) => {
            for n in notifications {
                sqlx::query(
                    "INSERT INTO notifications (id, user_id, kind, subject_id, created_at_ms,
                         read_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(n.id.as_uuid())
                .bind(n.user.as_uuid())
                .bind(&n.kind)
                .bind(n.subject)
                .bind(n.created_at_ms)
                .bind(n.read_at_ms)
                .execute(&mut *connection)
                .await?;
            }
            WriteOutcome::Done
        }
        CareOp::MarkRead { user, id, now_ms } => changed(
            sqlx::query(
                "UPDATE notifications SET read_at_ms = ?
                 WHERE id = ? AND user_id = ? AND read_at_ms IS NULL",
            )
            .bind(now_ms)
            .bind(id.as_uuid())
            .bind(user.as_uuid())
            .execute(&mut *connection)
            .await?,
        ),
        CareOp::Resolve { subject, now_ms } => changed(
            sqlx::query(
                "UPDATE notifications SET read_at_ms = ?
                 WHERE subject_id = ? AND read_at_ms IS NULL",
            )
            .bind(now_ms)
            .bind(subject)
            .execute(&mut *connection)
            .await?,
        ),
        CareOp::InsertDelegation(d) => {
            sqlx::query(
                "INSERT INTO delegations (id, patient_id, proxy_user_id, offer_hash, relationship,
                     scopes, created_by, created_at_ms, offer_expires_at_ms, expires_at_ms,
                     accepted_at_ms, revoked_at_ms)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            .execute(&mut *connection)
            .await?;
            WriteOutcome::Done
        }
        CareOp::AcceptDelegation { id, proxy, now_ms } => changed(
            sqlx::query(
                "UPDATE delegations SET proxy_user_id = ?, accepted_at_ms = ?
                 WHERE id = ? AND proxy_user_id IS NULL AND revoked_at_ms IS NULL
                   AND offer_expires_at_ms > ? AND expires_at_ms > ?",
            )
            .bind(proxy.as_uuid())
            .bind(now_ms)
            .bind(id.as_uuid())
            .bind(now_ms)
            .bind(now_ms)
            .execute(&mut *connection)
            .await?,
        ),
        CareOp::RevokeDelegation {
            patient,
            id,
            now_ms,
        } => changed(
            sqlx::query(
                "UPDATE delegations SET revoked_at_ms = ?
                 WHERE id = ? AND patient_id = ? AND revoked_at_ms IS NULL",
            )
            .bind(now_ms)
            .bind(id.as_uuid())
            .bind(patient.as_uuid())
            .execute(&mut *connection)
            .await?,
        ),
    })
}

impl SqliteStore {
    pub(super) async fn care_changed(&self, op: CareOp) -> StoreResult<bool> {
        match self.write(WriteOp::Care(Box::new(op))).await? {
            WriteOutcome::Changed(changed) => Ok(changed),
            other => Err(unexpected(other)),
        }
    }

    pub(super) async fn care_done(&self, op: CareOp) -> StoreResult<()> {
        match self.write(WriteOp::Care(Box::new(op))).await? {
            WriteOutcome::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

fn bytes(uuid: uuid::Uuid) -> Vec<u8> {
    uuid.as_bytes().to_vec()
}

const BREAK_GLASS_COLUMNS: &str = "SELECT id, organisation_id, user_id, patient_id,
        reason_sealed, created_at_ms, expires_at_ms, review_state, reviewed_by, reviewed_at_ms,
        review_note_sealed FROM break_glass_grants";

fn break_glass(row: &Row<'_>) -> rusqlite::Result<StoredBreakGlass> {
    let state: String = row.get(7)?;
    let reviewed_by: Option<Vec<u8>> = row.get(8)?;
    Ok(StoredBreakGlass {
        id: BreakGlassId::from_uuid(uuid_from(row.get(0)?)?),
        organisation: OrganisationId::from_uuid(uuid_from(row.get(1)?)?),
        user: UserId::from_uuid(uuid_from(row.get(2)?)?),
        patient: PatientId::from_uuid(uuid_from(row.get(3)?)?),
        reason_sealed: row.get(4)?,
        created_at_ms: row.get(5)?,
        expires_at_ms: row.get(6)?,
        review_state: ReviewState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                7,
                rusqlite::types::Type::Text,
                format!("unknown review state `{state}`").into(),
            )
        })?,
        reviewed_by: reviewed_by
            .map(|b| uuid_from(b).map(UserId::from_uuid))
            .transpose()?,
        reviewed_at_ms: row.get(9)?,
        review_note_sealed: row.get(10)?,
    })
}

fn notification(row: &Row<'_>) -> rusqlite::Result<StoredNotification> {
    let subject: Option<Vec<u8>> = row.get(3)?;
    Ok(StoredNotification {
        id: NotificationId::from_uuid(uuid_from(row.get(0)?)?),
        user: UserId::from_uuid(uuid_from(row.get(1)?)?),
        kind: row.get(2)?,
        subject: subject.map(uuid_from).transpose()?,
        created_at_ms: row.get(4)?,
        read_at_ms: row.get(5)?,
    })
}

impl Readers {
    pub(super) fn care_team(&self, patient: PatientId) -> StoreResult<Vec<CareTeamMember>> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT user_id, added_by, added_at_ms FROM care_team_members
                 WHERE patient_id = ?1 ORDER BY added_at_ms, user_id LIMIT ?2",
            )?
            .query_map(
                params![
                    bytes(patient.as_uuid()),
                    i64::from(limits::CARE_TEAM_MEMBERS_MAX)
                ],
                |row| {
                    Ok(CareTeamMember {
                        patient,
                        user: UserId::from_uuid(uuid_from(row.get(0)?)?),
                        added_by: row.get(1)?,
                        added_at_ms: row.get(2)?,
                    })
                },
            )?
            .collect()
        })
    }

    pub(super) fn related_patients(
        &self,
        user: UserId,
        now_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<PatientId>> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT patient_id FROM care_team_members WHERE user_id = ?1
                 UNION SELECT patient_id FROM break_glass_grants
                     WHERE user_id = ?1 AND expires_at_ms > ?2
                 UNION SELECT patient_id FROM delegations
                     WHERE proxy_user_id = ?1 AND accepted_at_ms IS NOT NULL
                       AND revoked_at_ms IS NULL AND expires_at_ms > ?2
                       AND scopes LIKE '%record%'
                 LIMIT ?3",
            )?
            .query_map(
                params![bytes(user.as_uuid()), now_ms, i64::from(limit)],
                |row| Ok(PatientId::from_uuid(uuid_from(row.get(0)?)?)),
            )?
            .collect()
        })
    }

    pub(super) fn relations(
        &self,
        user: UserId,
        patients: &[PatientId],
        now_ms: i64,
    ) -> StoreResult<Vec<Relations>> {
        crate::care::check_lookup(patients)?;
        match patients {
            [] => return Ok(Vec::new()),
            [patient] => return self.relations_with_one(user, *patient, now_ms),
            _ => {}
        }
        // Numbered explicitly: a bare `?` would take its number from the order SQLite parses
        // the statement in, which is not the order of the values below.
        let numbered = |first: usize| {
            (first..first + patients.len())
                .map(|n| format!("?{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (team_marks, glass_marks, proxy_marks) = (
            numbered(3),
            numbered(3 + patients.len()),
            numbered(3 + 2 * patients.len()),
        );
        // One statement, every fact: membership, a grant that has not yet expired, and a
        // live delegation's scopes.
        let sql = format!(
            "SELECT patient_id, max(care_team), max(break_glass), max(scopes) FROM (
                 SELECT patient_id, 1 AS care_team, 0 AS break_glass, NULL AS scopes
                 FROM care_team_members
                 WHERE user_id = ?1 AND patient_id IN ({team_marks})
                 UNION ALL
                 SELECT patient_id, 0, 1, NULL FROM break_glass_grants
                 WHERE user_id = ?1 AND expires_at_ms > ?2 AND patient_id IN ({glass_marks})
                 UNION ALL
                 SELECT patient_id, 0, 0, scopes FROM delegations
                 WHERE proxy_user_id = ?1 AND revoked_at_ms IS NULL AND expires_at_ms > ?2
                   AND patient_id IN ({proxy_marks})
             ) GROUP BY patient_id"
        );
        let mut values: Vec<rusqlite::types::Value> = vec![
            rusqlite::types::Value::Blob(bytes(user.as_uuid())),
            rusqlite::types::Value::Integer(now_ms),
        ];
        // The three lists bind the same ids.
        for _ in 0..3 {
            values.extend(
                patients
                    .iter()
                    .map(|p| rusqlite::types::Value::Blob(bytes(p.as_uuid()))),
            );
        }
        self.with(|c| {
            // Lists (a search page) vary in length and would only churn the statement
            // cache.
            c.prepare(&sql)?
                .query_map(params_from_iter(values), |row| {
                    let care_team: i64 = row.get(1)?;
                    let break_glass: i64 = row.get(2)?;
                    Ok(Relations {
                        patient: PatientId::from_uuid(uuid_from(row.get(0)?)?),
                        care_team: care_team == 1,
                        break_glass: break_glass == 1,
                        proxy_scopes: row.get(3)?,
                    })
                })?
                .collect()
        })
    }

    /// [`Self::relations`] for one patient, as every read of a record asks: three indexed
    /// look-ups in one row, without the union and grouping (a temporary b-tree per read)
    /// that a list of patients needs.
    fn relations_with_one(
        &self,
        user: UserId,
        patient: PatientId,
        now_ms: i64,
    ) -> StoreResult<Vec<Relations>> {
        let facts = self.with(|c| {
            c.prepare_cached(
                "SELECT
                     EXISTS (SELECT 1 FROM care_team_members
                             WHERE user_id = ?1 AND patient_id = ?3),
                     EXISTS (SELECT 1 FROM break_glass_grants
                             WHERE user_id = ?1 AND patient_id = ?3 AND expires_at_ms > ?2),
                     (SELECT max(scopes) FROM delegations
                      WHERE proxy_user_id = ?1 AND patient_id = ?3
                        AND revoked_at_ms IS NULL AND expires_at_ms > ?2)",
            )?
            .query_row(
                params![bytes(user.as_uuid()), now_ms, bytes(patient.as_uuid())],
                |row| {
                    Ok((
                        row.get::<_, bool>(0)?,
                        row.get::<_, bool>(1)?,
                        row.get::<_, Option<String>>(2)?,
                    ))
                },
            )
        })?;
        // Like the grouped query: no row for a patient the user has no relationship with.
        Ok(match facts {
            (false, false, None) => Vec::new(),
            (care_team, break_glass, proxy_scopes) => vec![Relations {
                patient,
                care_team,
                break_glass,
                proxy_scopes,
            }],
        })
    }

    pub(super) fn break_glass(&self, id: BreakGlassId) -> StoreResult<Option<StoredBreakGlass>> {
        self.with(|c| {
            c.prepare_cached(&format!("{BREAK_GLASS_COLUMNS} WHERE id = ?1"))?
                .query_row([bytes(id.as_uuid())], break_glass)
                .optional()
        })
    }

    pub(super) fn break_glass_grants(
        &self,
        query: &BreakGlassQuery,
    ) -> StoreResult<Vec<StoredBreakGlass>> {
        let (before_ms, before_id) = query.before.map_or((i64::MAX, vec![0xff; 16]), |(ms, id)| {
            (ms, bytes(id.as_uuid()))
        });
        self.with(|c| {
            c.prepare_cached(&format!(
                "{BREAK_GLASS_COLUMNS}
                 WHERE organisation_id = ?1 AND (?2 = 0 OR review_state = 'pending')
                   AND (created_at_ms < ?3 OR (created_at_ms = ?3 AND id < ?4))
                 ORDER BY created_at_ms DESC, id DESC LIMIT ?5"
            ))?
            .query_map(
                params![
                    bytes(query.organisation.as_uuid()),
                    query.pending_only,
                    before_ms,
                    before_id,
                    i64::from(query.limit.min(limits::PAGE_ROWS_MAX)),
                ],
                break_glass,
            )?
            .collect()
        })
    }

    pub(super) fn notifications(&self, user: UserId) -> StoreResult<Vec<StoredNotification>> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT id, user_id, kind, subject_id, created_at_ms, read_at_ms
                 FROM notifications WHERE user_id = ?1
                 ORDER BY created_at_ms DESC, id DESC LIMIT ?2",
            )?
            .query_map(
                params![
                    bytes(user.as_uuid()),
                    i64::from(limits::NOTIFICATIONS_LISTED_MAX)
                ],
                notification,
            )?
            .collect()
        })
    }
}

const DELEGATION_COLUMNS: &str = "SELECT id, patient_id, proxy_user_id, offer_hash,
        relationship, scopes, created_by, created_at_ms, offer_expires_at_ms, expires_at_ms,
        accepted_at_ms, revoked_at_ms FROM delegations";

/// Whether a delegation is live at `?2`: SQL shared by both listings.
const DELEGATION_LIVE: &str = "(revoked_at_ms IS NULL AND expires_at_ms > ?2
        AND (accepted_at_ms IS NOT NULL OR offer_expires_at_ms > ?2))";

fn delegation(row: &Row<'_>) -> rusqlite::Result<StoredDelegation> {
    let proxy: Option<Vec<u8>> = row.get(2)?;
    Ok(StoredDelegation {
        id: DelegationId::from_uuid(uuid_from(row.get(0)?)?),
        patient: PatientId::from_uuid(uuid_from(row.get(1)?)?),
        proxy: proxy
            .map(|b| uuid_from(b).map(UserId::from_uuid))
            .transpose()?,
        offer_hash: row.get(3)?,
        relationship: row.get(4)?,
        scopes: row.get(5)?,
        created_by: row.get(6)?,
        created_at_ms: row.get(7)?,
        offer_expires_at_ms: row.get(8)?,
        expires_at_ms: row.get(9)?,
        accepted_at_ms: row.get(10)?,
        revoked_at_ms: row.get(11)?,
    })
}

impl Readers {
    pub(super) fn patient_delegations(
        &self,
        patient: PatientId,
        now_ms: i64,
    ) -> StoreResult<Vec<StoredDelegation>> {
        self.with(|c| {
            c.prepare_cached(&format!(
                "{DELEGATION_COLUMNS} WHERE patient_id = ?1
                 ORDER BY {DELEGATION_LIVE} DESC, created_at_ms DESC, id DESC LIMIT ?3"
            ))?
            .query_map(
                params![
                    bytes(patient.as_uuid()),
                    now_ms,
                    2 * i64::from(limits::DELEGATIONS_PER_PATIENT_MAX)
                ],
                delegation,
            )?
            .collect()
        })
    }

    pub(super) fn delegation_by_offer(
        &self,
        offer_hash: &[u8],
    ) -> StoreResult<Option<StoredDelegation>> {
        self.with(|c| {
            c.prepare_cached(&format!("{DELEGATION_COLUMNS} WHERE offer_hash = ?1"))?
                .query_row([offer_hash], delegation)
                .optional()
        })
    }

    pub(super) fn proxy_delegations(
        &self,
        proxy: UserId,
        now_ms: i64,
    ) -> StoreResult<Vec<StoredDelegation>> {
        self.with(|c| {
            c.prepare_cached(&format!(
                "{DELEGATION_COLUMNS} WHERE proxy_user_id = ?1 AND {DELEGATION_LIVE}
                 ORDER BY created_at_ms DESC, id DESC LIMIT ?3"
            ))?
            .query_map(
                params![
                    bytes(proxy.as_uuid()),
                    now_ms,
                    i64::from(limits::PAGE_ROWS_MAX)
                ],
                delegation,
            )?
            .collect()
        })
    }
}
