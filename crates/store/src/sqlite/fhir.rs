//! FHIR resources on the embedded engine: a batch of writes as one job for the
//! group-commit writer (applied whole or not at all inside its savepoint), reads inline.

use haven_domain::PatientId;
use rusqlite::{OptionalExtension, Row, params, params_from_iter};
use sqlx::SqliteConnection;

use super::WriteOutcome;
use super::readers::{Readers, uuid_from};
use crate::fhir::StoredAttachment;
use crate::fhir::{
    HistoryQuery, Precondition, RESOURCE_COLUMNS, ROWS_PER_STATEMENT, ResourceBind, ResourceQuery,
    ResourceWrite, StoredResource, WriteConflict, precondition_fails, statements,
};
use crate::{StoreError, StoreResult, StoredSubjectKey};

/// Checks every precondition first, so that a conflict leaves nothing written, then writes
/// the batch in a few multi-row statements. The writer is the only one writing, so nothing
/// can change between the check and the write; the guarded upsert of the current pointers
/// would still catch it (and the whole job is rolled back).
pub(super) async fn apply_resource_writes(
    connection: &mut SqliteConnection,
    writes: &[ResourceWrite],
) -> StoreResult<WriteOutcome> {
    let mut seen = std::collections::HashSet::new();
    for (index, write) in writes.iter().enumerate() {
        let fresh = seen.insert((write.resource_type.as_str(), write.id.as_str()));
        // A create's id is new (UUIDv7); the unique version key refuses a reused one.
        let current: Option<(i64, i64)> = if write.precondition == Precondition::Absent {
            None
        } else {
            sqlx::query_as(
                "SELECT version, deleted FROM fhir_current WHERE resource_type = ? AND id = ?",
            )
            .bind(&write.resource_type)
            .bind(&write.id)
            .fetch_optional(&mut *connection)
            .await?
        };
        if let Some(conflict) = precondition_fails(index, write, current, fresh) {
            return Ok(WriteOutcome::Resources(Err(conflict)));
        }
    }
    let mut seqs = std::collections::HashMap::with_capacity(writes.len());
    // Anonymous placeholders, bound in order: the driver looks a numbered one up by name,
    // which for hundreds of values per statement showed in profiles.
    for chunk in writes.chunks(ROWS_PER_STATEMENT) {
        let sql = statements::versions(chunk.len(), &|_| "?".to_owned());
        let mut query = sqlx::query_as::<_, (String, String, i64)>(&sql);
        for write in chunk {
            query = query
                .bind(&write.resource_type)
                .bind(&write.id)
                .bind(write.version)
                .bind(write.subject.as_uuid())
                .bind(write.patient.map(|p| p.as_uuid()))
                .bind(&write.sealed)
                .bind(write.now_ms);
        }
        // A version that already exists (an id reused by a create) fails the statement, and
        // the writer rolls the whole job back.
        let rows = match query.fetch_all(&mut *connection).await {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                return Err(StoreError::ResourceConflict(WriteConflict {
                    index: 0,
                    current: None,
                    deleted: false,
                }));
            }
            Err(other) => return Err(other.into()),
        };
        for (resource_type, id, seq) in rows {
            seqs.insert((resource_type, id), seq);
        }
    }
    for (offset, chunk) in writes.chunks(ROWS_PER_STATEMENT).enumerate() {
        let sql = statements::current(chunk.len(), &|_| "?".to_owned());
        let mut query = sqlx::query(&sql);
        for write in chunk {
            let seq = seqs
                .get(&(write.resource_type.clone(), write.id.clone()))
                .copied()
                .unwrap_or(-1);
            query = query
                .bind(&write.resource_type)
                .bind(&write.id)
                .bind(write.version)
                .bind(seq)
                .bind(write.patient.map(|p| p.as_uuid()))
                .bind(i64::from(write.sealed.is_none()))
                .bind(i64::from(write.held));
        }
        let moved = query.execute(&mut *connection).await?.rows_affected();
        if moved != chunk.len() as u64 {
            return Err(StoreError::ResourceConflict(WriteConflict {
                index: offset * ROWS_PER_STATEMENT,
                current: None,
                deleted: false,
            }));
        }
    }
    for write in writes.iter().filter(|w| w.version > 1) {
        sqlx::query("DELETE FROM fhir_search WHERE resource_type = ? AND id = ?")
            .bind(&write.resource_type)
            .bind(&write.id)
            .execute(&mut *connection)
            .await?;
    }
    let tokens: Vec<(&ResourceWrite, &crate::fhir::ResourceToken)> = writes
        .iter()
        .filter(|w| w.sealed.is_some())
        .flat_map(|w| w.search.iter().map(move |t| (w, t)))
        .collect();
    for chunk in tokens.chunks(ROWS_PER_STATEMENT) {
        let sql = statements::tokens(chunk.len(), &|_| "?".to_owned());
        let mut query = sqlx::query(&sql);
        for (write, token) in chunk {
            query = query
                .bind(&write.resource_type)
                .bind(&token.param)
                .bind(&token.token)
                .bind(&write.id);
        }
        query.execute(&mut *connection).await?;
    }
    Ok(WriteOutcome::Resources(Ok(writes
        .iter()
        .map(|w| {
            seqs.get(&(w.resource_type.clone(), w.id.clone()))
                .copied()
                .unwrap_or(-1)
        })
        .collect())))
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
        held: row.get::<_, Option<i64>>(11)?.unwrap_or(0) != 0,
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
    pub(super) fn attachment_chunk(
        &self,
        attachment: uuid::Uuid,
        index: u32,
    ) -> StoreResult<Option<Vec<u8>>> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT sealed FROM attachment_chunks WHERE attachment_id = ?1 AND idx = ?2",
            )?
            .query_row(
                params![attachment.as_bytes().as_slice(), i64::from(index)],
                |row| row.get(0),
            )
            .optional()
        })
    }

    pub(super) fn chunked_attachments(
        &self,
        after: Option<uuid::Uuid>,
        before: uuid::Uuid,
        limit: u32,
    ) -> StoreResult<Vec<uuid::Uuid>> {
        let after = after.map(|a| a.as_bytes().to_vec()).unwrap_or_default();
        self.with(|c| {
            c.prepare_cached(
                "SELECT DISTINCT attachment_id FROM attachment_chunks
                 WHERE attachment_id > ?1 AND attachment_id < ?2
                 ORDER BY attachment_id LIMIT ?3",
            )?
            .query_map(
                params![after, before.as_bytes().as_slice(), i64::from(limit)],
                |row| uuid_from(row.get(0)?),
            )?
            .collect()
        })
    }

    pub(super) fn attachment(&self, id: uuid::Uuid) -> StoreResult<Option<StoredAttachment>> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT a.id, a.patient_id, a.content_type, a.size_bytes, a.chunks, a.created_by,
                        a.created_at_ms, k.key_id, k.root_key_id, k.wrapped
                 FROM attachments a LEFT JOIN subject_keys k ON k.subject_id = a.patient_id
                 WHERE a.id = ?1",
            )?
            .query_row([id.as_bytes().as_slice()], |row| {
                let patient = PatientId::from_uuid(uuid_from(row.get(1)?)?);
                let key_id: Option<Vec<u8>> = row.get(7)?;
                Ok(StoredAttachment {
                    id: uuid_from(row.get(0)?)?,
                    patient,
                    content_type: row.get(2)?,
                    size_bytes: row.get(3)?,
                    chunks: row.get(4)?,
                    created_by: row.get(5)?,
                    created_at_ms: row.get(6)?,
                    subject_key: match key_id {
                        Some(key_id) => Some(StoredSubjectKey {
                            subject: patient,
                            key_id,
                            root_key_id: row.get(8)?,
                            wrapped: row.get(9)?,
                        }),
                        None => None,
                    },
                })
            })
            .optional()
        })
    }

    pub(super) fn resource(
        &self,
        resource_type: &str,
        id: &str,
    ) -> StoreResult<Option<StoredResource>> {
        self.with(|c| {
            c.prepare_cached(&format!(
                // The current row is `h` itself (its `held` is the one the columns read):
                // no second look-up of it.
                "SELECT {RESOURCE_COLUMNS} FROM fhir_current h
                 JOIN fhir_resources r ON r.seq = h.seq
                 LEFT JOIN subject_keys k ON k.subject_id = r.subject_id
                 WHERE h.resource_type = ?1 AND h.id = ?2"
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
             LEFT JOIN fhir_current h ON h.resource_type = r.resource_type AND h.id = r.id
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
        let (sql, binds) = query.sql(crate::fhir::Dialect::Sqlite, |n| format!("?{n}"));
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
