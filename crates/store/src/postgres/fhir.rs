//! FHIR resources on PostgreSQL: a batch of writes in one transaction, rolled back whole
//! when any precondition fails, including one lost to a concurrent writer.

use haven_domain::PatientId;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::fhir::precondition_fails;
use crate::fhir::{
    HistoryQuery, Precondition, ResourceBind, ResourceQuery, ResourceWrite, StoredResource,
    WriteConflict,
};
use crate::{StoreResult, StoredSubjectKey};

pub(super) async fn write_resources(
    pool: &PgPool,
    writes: &[ResourceWrite],
) -> StoreResult<Result<Vec<i64>, WriteConflict>> {
    let mut transaction = pool.begin().await?;
    let mut seen = std::collections::HashSet::new();
    for (index, write) in writes.iter().enumerate() {
        let current: Option<(i64, i64)> = sqlx::query_as(
            "SELECT version, deleted FROM fhir_current
             WHERE resource_type = $1 AND id = $2 FOR UPDATE",
        )
        .bind(&write.resource_type)
        .bind(&write.id)
        .fetch_optional(&mut *transaction)
        .await?;
        let fresh = seen.insert((write.resource_type.as_str(), write.id.as_str()));
        if let Some(conflict) = precondition_fails(index, write, current, fresh) {
            transaction.rollback().await?;
            return Ok(Err(conflict));
        }
    }
    let mut seqs = Vec::with_capacity(writes.len());
    for (index, write) in writes.iter().enumerate() {
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO fhir_resources (resource_type, id, version, subject_id, patient_id,
                 sealed, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING seq",
        )
        .bind(&write.resource_type)
        .bind(&write.id)
        .bind(write.version)
        .bind(write.subject.as_uuid())
        .bind(write.patient.map(|p| p.as_uuid()))
        .bind(&write.sealed)
        .bind(write.now_ms)
        .fetch_optional(&mut *transaction)
        .await?
        .unwrap_or(-1);
        // A create that lost a race to the same id, or an update that lost one to the
        // same version, changes nothing here: the whole batch goes back.
        let moved = if seq < 0 {
            0
        } else {
            let sql = if write.precondition == Precondition::Absent {
                "INSERT INTO fhir_current (resource_type, id, version, seq, patient_id, deleted)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
            } else {
                "INSERT INTO fhir_current (resource_type, id, version, seq, patient_id, deleted)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (resource_type, id) DO UPDATE SET version = excluded.version,
                     seq = excluded.seq, patient_id = excluded.patient_id,
                     deleted = excluded.deleted
                 WHERE fhir_current.version = excluded.version - 1"
            };
            sqlx::query(sql)
                .bind(&write.resource_type)
                .bind(&write.id)
                .bind(write.version)
                .bind(seq)
                .bind(write.patient.map(|p| p.as_uuid()))
                .bind(i64::from(write.sealed.is_none()))
                .execute(&mut *transaction)
                .await?
                .rows_affected()
        };
        if moved != 1 {
            transaction.rollback().await?;
            return Ok(Err(WriteConflict {
                index,
                current: None,
                deleted: false,
            }));
        }
        if write.version > 1 {
            sqlx::query("DELETE FROM fhir_search WHERE resource_type = $1 AND id = $2")
                .bind(&write.resource_type)
                .bind(&write.id)
                .execute(&mut *transaction)
                .await?;
        }
        if write.sealed.is_some() {
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
                insert.build().execute(&mut *transaction).await?;
            }
        }
        seqs.push(seq);
    }
    transaction.commit().await?;
    Ok(Ok(seqs))
}

fn resource_from_row(row: &PgRow) -> StoreResult<StoredResource> {
    let subject: Option<Uuid> = row.try_get("subject_id")?;
    let subject_key = match subject {
        Some(subject) => Some(StoredSubjectKey {
            subject: PatientId::from_uuid(subject),
            key_id: row.try_get("key_id")?,
            root_key_id: row.try_get("root_key_id")?,
            wrapped: row.try_get("wrapped")?,
        }),
        None => None,
    };
    Ok(StoredResource {
        resource_type: row.try_get("resource_type")?,
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        seq: row.try_get("seq")?,
        patient: row
            .try_get::<Option<Uuid>, _>("patient_id")?
            .map(PatientId::from_uuid),
        sealed: row.try_get("sealed")?,
        subject_key,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

async fn fetch(
    pool: &PgPool,
    sql: &str,
    binds: Vec<ResourceBind>,
) -> StoreResult<Vec<StoredResource>> {
    let mut query = sqlx::query(sql);
    for bind in binds {
        query = match bind {
            ResourceBind::Text(text) => query.bind(text),
            ResourceBind::Blob(bytes) => query.bind(bytes),
            ResourceBind::Uuid(uuid) => query.bind(uuid),
            ResourceBind::Int(value) => query.bind(value),
        };
    }
    let rows = query.fetch_all(pool).await?;
    rows.iter().map(resource_from_row).collect()
}

pub(super) async fn resource(
    pool: &PgPool,
    resource_type: &str,
    id: &str,
) -> StoreResult<Option<StoredResource>> {
    let sql = format!(
        "SELECT {} FROM fhir_current c
         JOIN fhir_resources r ON r.seq = c.seq
         LEFT JOIN subject_keys k ON k.subject_id = r.subject_id
         WHERE c.resource_type = $1 AND c.id = $2",
        crate::fhir::RESOURCE_COLUMNS
    );
    let rows = fetch(
        pool,
        &sql,
        vec![
            ResourceBind::Text(resource_type.to_owned()),
            ResourceBind::Text(id.to_owned()),
        ],
    )
    .await?;
    Ok(rows.into_iter().next())
}

pub(super) async fn resource_version(
    pool: &PgPool,
    resource_type: &str,
    id: &str,
    version: i64,
) -> StoreResult<Option<StoredResource>> {
    let sql = format!(
        "SELECT {} FROM fhir_resources r
         LEFT JOIN subject_keys k ON k.subject_id = r.subject_id
         WHERE r.resource_type = $1 AND r.id = $2 AND r.version = $3",
        crate::fhir::RESOURCE_COLUMNS
    );
    let rows = fetch(
        pool,
        &sql,
        vec![
            ResourceBind::Text(resource_type.to_owned()),
            ResourceBind::Text(id.to_owned()),
            ResourceBind::Int(version),
        ],
    )
    .await?;
    Ok(rows.into_iter().next())
}

pub(super) async fn search_resources(
    pool: &PgPool,
    query: &ResourceQuery,
) -> StoreResult<Vec<StoredResource>> {
    let (sql, binds) = query.sql(|n| format!("${n}"));
    fetch(pool, &sql, binds).await
}

pub(super) async fn resource_history(
    pool: &PgPool,
    query: &HistoryQuery,
) -> StoreResult<Vec<StoredResource>> {
    let (sql, binds) = query.sql(|n| format!("${n}"));
    fetch(pool, &sql, binds).await
}
