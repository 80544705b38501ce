//! Video visits on SQLite: endings and guests. Writes run on the writer's connection (sqlx),
//! reads on the readers' (`rusqlite`).

use rusqlite::{OptionalExtension, Row};
use sqlx::SqliteConnection;

use super::readers::{Readers, uuid_from};
use crate::StoreResult;
use crate::visits::StoredGuest;

const GUEST_COLUMNS: &str = "SELECT id, appointment_id, organisation_id, patient_id, kind,
        invitation_hash, session_hash, invited_by, created_at_ms, expires_at_ms,
        redeemed_at_ms FROM visit_guests";

pub(super) async fn insert_guest(
    connection: &mut SqliteConnection,
    guest: &StoredGuest,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO visit_guests (id, appointment_id, organisation_id, patient_id, kind,
             invitation_hash, session_hash, invited_by, created_at_ms, expires_at_ms,
             redeemed_at_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(guest.id.as_uuid())
    .bind(&guest.appointment)
    .bind(guest.organisation.as_uuid())
    .bind(guest.patient.as_uuid())
    .bind(&guest.kind)
    .bind(&guest.invitation_hash)
    .bind(&guest.session_hash)
    .bind(&guest.invited_by)
    .bind(guest.created_at_ms)
    .bind(guest.expires_at_ms)
    .bind(guest.redeemed_at_ms)
    .execute(connection)
    .await?;
    Ok(())
}

/// Redeems an unexpired, unredeemed invitation once; `None` for any other.
pub(super) async fn redeem_guest(
    connection: &mut SqliteConnection,
    invitation_hash: &[u8],
    session_hash: &[u8],
    now_ms: i64,
) -> StoreResult<Option<uuid::Uuid>> {
    use sqlx::Row;
    let row = sqlx::query(
        "UPDATE visit_guests SET session_hash = ?, redeemed_at_ms = ?
         WHERE invitation_hash = ? AND redeemed_at_ms IS NULL AND expires_at_ms > ?
         RETURNING id",
    )
    .bind(session_hash)
    .bind(now_ms)
    .bind(invitation_hash)
    .bind(now_ms)
    .fetch_optional(connection)
    .await?;
    Ok(match row {
        Some(row) => Some(row.try_get("id")?),
        None => None,
    })
}

fn guest(row: &Row<'_>) -> rusqlite::Result<StoredGuest> {
    Ok(StoredGuest {
        id: haven_domain::GuestId::from_uuid(uuid_from(row.get(0)?)?),
        appointment: row.get(1)?,
        organisation: haven_domain::OrganisationId::from_uuid(uuid_from(row.get(2)?)?),
        patient: haven_domain::PatientId::from_uuid(uuid_from(row.get(3)?)?),
        kind: row.get(4)?,
        invitation_hash: row.get(5)?,
        session_hash: row.get(6)?,
        invited_by: row.get(7)?,
        created_at_ms: row.get(8)?,
        expires_at_ms: row.get(9)?,
        redeemed_at_ms: row.get(10)?,
    })
}

impl Readers {
    pub(super) fn visit_guest(&self, id: uuid::Uuid) -> StoreResult<Option<StoredGuest>> {
        let sql = format!("{GUEST_COLUMNS} WHERE id = ?1");
        self.with(|c| {
            c.prepare_cached(&sql)?
                .query_row([id.as_bytes().as_slice()], guest)
                .optional()
        })
    }

    pub(super) fn visit_guest_by_session(
        &self,
        session_hash: &[u8],
    ) -> StoreResult<Option<StoredGuest>> {
        let sql = format!("{GUEST_COLUMNS} WHERE session_hash = ?1");
        self.with(|c| {
            c.prepare_cached(&sql)?
                .query_row([session_hash], guest)
                .optional()
        })
    }

    pub(super) fn visit_guests(&self, appointment: &str) -> StoreResult<Vec<StoredGuest>> {
        let sql = format!(
            "{GUEST_COLUMNS} WHERE appointment_id = ?1 ORDER BY created_at_ms, id LIMIT ?2"
        );
        self.with(|c| {
            c.prepare_cached(&sql)?
                .query_map(
                    rusqlite::params![appointment, crate::limits::VISIT_GUESTS_LISTED_MAX],
                    guest,
                )?
                .collect()
        })
    }
}
