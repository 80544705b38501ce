//! FHIR resources on the embedded engine: a batch of writes as one job for the
//! group-commit writer (applied whole or not at all inside its savepoint), reads inline.

use haven_domain::PatientId;
use rusqlite::{OptionalExtension, Row, params, params_from_iter};
use sqlx::SqliteConnection;

use super::WriteOutcome;
use super::readers::{Readers, uuid_from};
use crate::fhir::{
    HistoryQuery, RESOURCE_COLUMNS, ResourceBind, ResourceQuery, ResourceWrite, StoredResource,
    precondition_fails,
};
use crate::{StoreResult, StoredSubjectKey};

/// Checks every precondition first, so that a conflict leaves nothing written, then writes.
/// The writer is the only one writing, so nothing can change between the check and the
/// write.
pub(super) async fn apply_resource_writes(
    connection: &mut SqliteConnection,
    writes: &[ResourceWrite],
) -> StoreResult<WriteOutcome> {
    let mut seen = std::collections::HashSet::new();
    for (index, write) in writes.iter().enumerate() {
        let current: Option<(i64, i64)> = sqlx::query_as(
            "SELECT version, deleted FROM fhir_current WHERE resource_type = ? AND id = ?",
        )
        .bind(&write.resource_type)
        .bind(&write.id)
        .fetch_optional(&mut *connection)
        .await?;
        let fresh = seen.insert((write.resource_type.as_str(), write.id.as_str()));
        if let Some(conflict) = precondition_fails(index, write, current, fresh) {
            return Ok(WriteOutcome::Resources(Err(conflict)));
        }
    }
    let mut seqs = Vec::with_capacity(writes.len());
    for write in writes {
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO fhir_resources (resource_type, id, version, subject_id, patient_id,
                 sealed, updated_at_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq",
        )
        .bind(&write.resource_type)
        .bind(&write.id)
        .bind(write.version)
        .bind(write.subject.as_uuid())
        .bind(write.patient.map(|p| p.as_uuid()))
        .bind(&write.sealed)
        .bind(write.now_ms)
        .fetch_one(&mut *connection)
        .await?;
        sqlx::query(
            "INSERT INTO fhir_current (resource_type, id, version, seq, patient_id, deleted)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (resource_type, id) DO UPDATE SET version = excluded.version,
                 seq = excluded.seq, patient_id = excluded.patient_id, deleted = excluded.deleted",
        )
        .bind(&write.resource_type)
        .bind(&write.id)
        .bind(write.version)
        .bind(seq)
        .bind(write.patient.map(|p| p.as_uuid()))
        .bind(i64::from(write.sealed.is_none()))
        .execute(&mut *connection)
        .await?;
        if write.version > 1 {
            sqlx::query("DELETE FROM fhir_search WHERE resource_type = ? AND id = ?")
                .bind(&write.resource_type)
                .bind(&write.id)
                .execute(&mut *connection)
                .await?;
        }
        if write.sealed.is_some() {
            // One statement per chunk of tokens: a resource carries a dozen or more.
            for chunk in write.search.chunks(100) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO fhir_search (resource_type, param, token, id) ",
                );
                insert.push_values(chunk, |mut row, token| {
                    row.push_bind(&write.resource_type)
                        .push_bind(&token.param)
                        .push_bind(&token.token)
                        .push_bind(&write.id);
                });
                insert.push(" ON CONFLICT DO NOTHING");
                insert.build().execute(&mut *connection).await?;
            }
        }
        seqs.push(seq);
    }
    Ok(WriteOutcome::Resources(Ok(seqs)))
}

fn resource(row: &Row<'_>) -> rusqlite::Result<StoredResource> {
    let patient: Option<Vec<u8>> = row.get(4)?;
    let subject: Option<Vec<u8>> = row.get(7)?;
    let subject_key = match subject {
        Some(subject) => Some(StoredSubjectKey {
            subject: PatientId::from_uuid(uuid_from(subject)?),
            key_id: row.get(8)?,
            root_key_id: row.get(9)?,
            wrapped: row.get(10)?,
        }),
        None => None,
    };
    Ok(StoredResource {
        resource_type: row.get(0)?,
        id: row.get(1)?,
        version: row.get(2)?,
        seq: row.get(3)?,
        patient: patient
            .map(|p| uuid_from(p).map(PatientId::from_uuid))
            .transpose()?,
        sealed: row.get(5)?,
        subject_key,
        updated_at_ms: row.get(6)?,
    })
}

fn sqlite_values(binds: Vec<ResourceBind>) -> Vec<rusqlite::types::Value> {
    binds
        .into_iter()
        .map(|bind| match bind {
            ResourceBind::Text(text) => text.into(),
            ResourceBind::Blob(bytes) => bytes.into(),
            ResourceBind::Uuid(uuid) => uuid.as_bytes().to_vec().into(),
            ResourceBind::Int(value) => value.into(),
        })
        .collect()
}

impl Readers {
    pub(super) fn resource(
        &self,
        resource_type: &str,
        id: &str,
    ) -> StoreResult<Option<StoredResource>> {
        self.with(|c| {
            c.prepare_cached(&format!(
                "SELECT {RESOURCE_COLUMNS} FROM fhir_current c
                 JOIN fhir_resources r ON r.seq = c.seq
                 LEFT JOIN subject_keys k ON k.subject_id = r.subject_id
                 WHERE c.resource_type = ?1 AND c.id = ?2"
            ))?
            .query_row(params![resource_type, id], resource)
            .optional()
        })
    }

    pub(super) fn resource_version(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> StoreResult<Option<StoredResource>> {
        self.with(|c| {
            c.prepare_cached(&format!(
                "SELECT {RESOURCE_COLUMNS} FROM fhir_resources r
                 LEFT JOIN subject_keys k ON k.subject_id = r.subject_id
                 WHERE r.resource_type = ?1 AND r.id = ?2 AND r.version = ?3"
            ))?
            .query_row(params![resource_type, id, version], resource)
            .optional()
        })
    }

    pub(super) fn search_resources(
        &self,
        query: &ResourceQuery,
    ) -> StoreResult<Vec<StoredResource>> {
        let (sql, binds) = query.sql(|n| format!("?{n}"));
        self.with(|c| {
            c.prepare_cached(&sql)?
                .query_map(params_from_iter(sqlite_values(binds)), resource)?
                .collect()
        })
    }

    pub(super) fn resource_history(
        &self,
        query: &HistoryQuery,
    ) -> StoreResult<Vec<StoredResource>> {
        let (sql, binds) = query.sql(|n| format!("?{n}"));
        self.with(|c| {
            c.prepare_cached(&sql)?
                .query_map(params_from_iter(sqlite_values(binds)), resource)?
                .collect()
        })
    }
}
