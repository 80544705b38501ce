//! FHIR resources on PostgreSQL: a batch of writes in one transaction, rolled back whole
//! when any precondition fails, including one lost to a concurrent writer.

use haven_domain::PatientId;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::fhir::{
    HistoryQuery, Precondition, ROWS_PER_STATEMENT, ResourceBind, ResourceQuery, ResourceWrite,
    StoredResource, WriteConflict, precondition_fails, statements,
};
use crate::{StoreResult, StoredSubjectKey};

pub(super) async fn write_resources(
    pool: &PgPool,
    writes: &[ResourceWrite],
) -> StoreResult<Result<Vec<i64>, WriteConflict>> {
    match write_batch(pool, writes).await {
        // A deadlock or serialization failure with a concurrent batch: nothing of this one
        // was kept, and the caller may try again.
        Err(crate::StoreError::Database(sqlx::Error::Database(error)))
            if matches!(error.code().as_deref(), Some("40P01" | "40001")) =>
        {
            Ok(Err(WriteConflict {
                index: 0,
                current: None,
                deleted: false,
            }))
        }
        other => other,
    }
}

async fn write_batch(
    pool: &PgPool,
    writes: &[ResourceWrite],
) -> StoreResult<Result<Vec<i64>, WriteConflict>> {
    let mut transaction = pool.begin().await?;
    let mut seen = std::collections::HashSet::new();
    // Rows are locked in one order (type, then id) whatever the batch's order, so two
    // batches touching the same resources cannot deadlock.
    let mut order: Vec<usize> = (0..writes.len()).collect();
    order.sort_by(|&a, &b| {
        (&writes[a].resource_type, &writes[a].id).cmp(&(&writes[b].resource_type, &writes[b].id))
    });
    for index in order {
        let write = &writes[index];
        let fresh = seen.insert((write.resource_type.as_str(), write.id.as_str()));
        // A create's id is new (UUIDv7); the guarded upsert below catches a reused one.
        let current: Option<(i64, i64)> = if write.precondition == Precondition::Absent {
            None
        } else {
            sqlx::query_as(
                "SELECT version, deleted FROM fhir_current
                 WHERE resource_type = $1 AND id = $2 FOR UPDATE",
            )
            .bind(&write.resource_type)
            .bind(&write.id)
            .fetch_optional(&mut *transaction)
            .await?
        };
        if let Some(conflict) = precondition_fails(index, write, current, fresh) {
            transaction.rollback().await?;
            return Ok(Err(conflict));
        }
    }
    let mut seqs = std::collections::HashMap::with_capacity(writes.len());
    for chunk in writes.chunks(ROWS_PER_STATEMENT) {
        let sql = statements::versions(chunk.len(), &|n| format!("${n}"));
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
        // A version that already exists (a write that lost a race) fails the statement and
        // with it the transaction.
        let rows = match query.fetch_all(&mut *transaction).await {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                transaction.rollback().await?;
                return Ok(Err(WriteConflict {
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
        let sql = statements::current(chunk.len(), &|n| format!("${n}"));
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
        let moved = query.execute(&mut *transaction).await?.rows_affected();
        if moved != chunk.len() as u64 {
            transaction.rollback().await?;
            return Ok(Err(WriteConflict {
                index: offset * ROWS_PER_STATEMENT,
                current: None,
                deleted: false,
            }));
        }
    }
    for write in writes.iter().filter(|w| w.version > 1) {
        sqlx::query("DELETE FROM fhir_search WHERE resource_type = $1 AND id = $2")
            .bind(&write.resource_type)
            .bind(&write.id)
            .execute(&mut *transaction)
            .await?;
    }
    let tokens: Vec<(&ResourceWrite, &crate::fhir::ResourceToken)> = writes
        .iter()
        .filter(|w| w.sealed.is_some())
        .flat_map(|w| w.search.iter().map(move |t| (w, t)))
        .collect();
    for chunk in tokens.chunks(ROWS_PER_STATEMENT) {
        let sql = statements::tokens(chunk.len(), &|n| format!("${n}"));
        let mut query = sqlx::query(&sql);
        for (write, token) in chunk {
            query = query
                .bind(&write.resource_type)
                .bind(&token.param)
                .bind(&token.token)
                .bind(&write.id);
        }
        query.execute(&mut *transaction).await?;
    }
    transaction.commit().await?;
    Ok(Ok(writes
        .iter()
        .map(|w| {
            seqs.get(&(w.resource_type.clone(), w.id.clone()))
                .copied()
                .unwrap_or(-1)
        })
        .collect()))
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
        held: row.try_get::<Option<i64>, _>("held")?.unwrap_or(0) != 0,
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
        // The current row is `h` itself (its `held` is the one the columns read): no
        // second look-up of it.
        "SELECT {} FROM fhir_current h
         JOIN fhir_resources r ON r.seq = h.seq
         LEFT JOIN subject_keys k ON k.subject_id = r.subject_id
         WHERE h.resource_type = $1 AND h.id = $2",
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
             LEFT JOIN fhir_current h ON h.resource_type = r.resource_type AND h.id = r.id
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
    let (sql, binds) = query.sql(crate::fhir::Dialect::Postgres, |n| format!("${n}"));
    fetch(pool, &sql, binds).await
}

pub(super) async fn resource_history(
    pool: &PgPool,
    query: &HistoryQuery,
) -> StoreResult<Vec<StoredResource>> {
    let (sql, binds) = query.sql(|n| format!("${n}"));
    fetch(pool, &sql, binds).await
}
