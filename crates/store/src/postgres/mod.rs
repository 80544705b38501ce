//! The PostgreSQL engine, for deployments that run several stateless `haven` instances.
//!
//! Each write is one transaction on a pooled connection; PostgreSQL's own WAL flushing
//! groups concurrent commits, and `synchronous_commit` stays at its durable default, so an
//! acknowledged write has been flushed. Tests give each store its own schema (set with
//! [`PostgresStore::connect_in_schema`]) so suites can run in parallel on one database.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use haven_audit::{AuditEvent, StoredAuditEvent};
use haven_domain::{InvitationId, OrganisationId, PatientId, SessionId, TokenId, UserId};

use crate::identity::{
    NewUser, Redeemed, SessionRecord, StoredInvitation, StoredOrganisation, StoredSession,
    StoredUser,
};

mod care;
mod fhir;
mod identity;
mod messaging;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, QueryBuilder, Row, Transaction};
use uuid::Uuid;

use crate::{
    AuditBind, AuditLeaf, AuditQuery, NewPatient, PatientQuery, PatientUpdate, SearchToken, Store,
    StoreError, StoreResult, StoredCheckpoint, StoredPatient, StoredSubjectKey, StoredSystemKey,
    StoredToken, TreeLeaf, TreeNode, UpdateOutcome, limits,
};
use haven_audit::merkle::{Hash, NodeId};

/// The advisory lock that serialises audit appends (an arbitrary, fixed number).
const AUDIT_APPEND_LOCK: i64 = 0x6861_7665_6e41;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Pooled connections per instance; several instances share one server's connection budget.
const CONNECTIONS_MAX: u32 = 16;
const ACQUIRE_TIMEOUT_SECS: u64 = 10;
/// The longest any one statement may run before PostgreSQL cancels it.
const STATEMENT_TIMEOUT_MS: u32 = 30_000;

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    audit_writer: mpsc::Sender<AuditJob>,
}

/// Audit entries waiting for the audit writer, and who to tell once they are committed.
#[derive(Debug)]
struct AuditJob {
    events: Vec<AuditEvent>,
    reply: oneshot::Sender<StoreResult<()>>,
}

/// Group commit for the audit trail. Appends must become visible in `seq` order (a
/// sequence number is taken at insert but shows at commit, so without order the
/// checkpointer could see seq 11 before seq 10 commits and build a tree that skips it);
/// each commit therefore holds an advisory lock shared by every instance. One writer per
/// instance takes whatever appends have queued, so one lock and one commit serve a batch
/// instead of one each.
async fn run_audit_writer(pool: PgPool, mut queue: mpsc::Receiver<AuditJob>) {
    let mut batch: Vec<AuditJob> = Vec::with_capacity(limits::GROUP_COMMIT_WRITES_MAX);
    while let Some(first) = queue.recv().await {
        batch.push(first);
        while batch.len() < limits::GROUP_COMMIT_WRITES_MAX {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let events: Vec<&AuditEvent> = batch.iter().flat_map(|job| job.events.iter()).collect();
        match append_locked(&pool, &events).await {
            Ok(()) => {
                for job in batch.drain(..) {
                    let _ = job.reply.send(Ok(()));
                }
            }
            Err(error) => {
                // Retry each append alone, so one faulty append fails only its caller.
                tracing::warn!(%error, "batched audit append failed; retrying one by one");
                for job in batch.drain(..) {
                    let events: Vec<&AuditEvent> = job.events.iter().collect();
                    let _ = job.reply.send(append_locked(&pool, &events).await);
                }
            }
        }
    }
}

/// Rows per INSERT: 17 parameters each (and the lock's) stays under PostgreSQL's 65,535
/// bound parameters.
const AUDIT_ROWS_PER_STATEMENT: usize = 1000;

/// Appends `events` under [`AUDIT_APPEND_LOCK`], so entries commit in `seq` order: a
/// reader never sees a later entry before an earlier one, which the tree would then miss.
/// A batch that fits one statement is that one statement, a transaction of its own: one
/// round trip instead of four (begin, lock, insert, commit) on the audit writer, which
/// every access waits for. A larger batch is several such statements in one transaction
/// (the lock is re-entrant), so it commits whole or not at all.
async fn append_locked(pool: &PgPool, events: &[&AuditEvent]) -> StoreResult<()> {
    if events.len() <= AUDIT_ROWS_PER_STATEMENT {
        locked_insert(events).build().execute(pool).await?;
        return Ok(());
    }
    let mut transaction = pool.begin().await?;
    for chunk in events.chunks(AUDIT_ROWS_PER_STATEMENT) {
        locked_insert(chunk)
            .build()
            .execute(&mut *transaction)
            .await?;
    }
    transaction.commit().await?;
    Ok(())
}

/// `INSERT … SELECT` of `events` that first takes the append lock. Rows reach the insert only
/// through the join with `append_lock`, so the lock is held before the first row draws its
/// `seq`, whichever side the planner evaluates first; a volatile CTE is never inlined.
fn locked_insert<'a>(events: &'a [&'a AuditEvent]) -> QueryBuilder<'a, Postgres> {
    let mut sql =
        QueryBuilder::<Postgres>::new("WITH append_lock AS (SELECT pg_advisory_xact_lock(");
    sql.push_bind(AUDIT_APPEND_LOCK);
    sql.push(format!(
        ")) INSERT INTO audit_events ({}) SELECT entries.* FROM append_lock CROSS JOIN (",
        crate::AUDIT_INSERT_COLUMNS
    ));
    sql.push_values(events, |mut row, event| {
        crate::push_audit_values(&mut row, event)
    });
    sql.push(") AS entries");
    sql
}

impl PostgresStore {
    /// Connects to `url` and applies pending migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url.parse::<PgConnectOptions>()?).await
    }

    /// Connects with every table in `schema` (created if missing). Used to isolate tests and
    /// to host several deployments in one database.
    pub async fn connect_in_schema(url: &str, schema: &str) -> StoreResult<Self> {
        let options: PgConnectOptions = url.parse()?;
        let quoted = format!("\"{}\"", schema.replace('"', "\"\""));
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {quoted}"))
            .execute(&pool)
            .await?;
        pool.close().await;
        Self::connect_with(options.options([("search_path", schema)])).await
    }

    async fn connect_with(options: PgConnectOptions) -> StoreResult<Self> {
        // Acknowledged means durable: never inherit a server-wide `synchronous_commit = off`.
        let options = options.options([
            ("statement_timeout", STATEMENT_TIMEOUT_MS.to_string()),
            ("synchronous_commit", "on".to_owned()),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS_MAX)
            .acquire_timeout(Duration::from_secs(ACQUIRE_TIMEOUT_SECS))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        let (audit_writer, queue) = mpsc::channel(limits::WRITE_QUEUE_DEPTH_MAX);
        tokio::spawn(run_audit_writer(pool.clone(), queue));
        Ok(Self { pool, audit_writer })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

async fn insert_search(
    transaction: &mut Transaction<'_, Postgres>,
    patient: PatientId,
    tokens: &[SearchToken],
) -> StoreResult<()> {
    for token in tokens {
        sqlx::query(
            "INSERT INTO patient_search (kind, token, patient_id) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(token.kind.as_str())
        .bind(&token.token)
        .bind(patient.as_uuid())
        .execute(&mut **transaction)
        .await?;
    }
    Ok(())
}

const PATIENT_COLUMNS: &str = "SELECT p.id, p.version, p.sealed, p.created_at_ms, p.updated_at_ms,
        k.key_id, k.root_key_id, k.wrapped
     FROM patients p LEFT JOIN subject_keys k ON k.subject_id = p.id";

fn patient_from_row(row: &PgRow) -> StoreResult<StoredPatient> {
    let id = PatientId::from_uuid(row.try_get::<Uuid, _>("id")?);
    let key_id: Option<Vec<u8>> = row.try_get("key_id")?;
    let subject_key = match key_id {
        Some(key_id) => Some(StoredSubjectKey {
            subject: id,
            key_id,
            root_key_id: row.try_get("root_key_id")?,
            wrapped: row.try_get("wrapped")?,
        }),
        None => None,
    };
    Ok(StoredPatient {
        id,
        version: row.try_get("version")?,
        sealed: row.try_get("sealed")?,
        subject_key,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn subject_key_from_row(row: &PgRow) -> StoreResult<StoredSubjectKey> {
    Ok(StoredSubjectKey {
        subject: PatientId::from_uuid(row.try_get::<Uuid, _>("subject_id")?),
        key_id: row.try_get("key_id")?,
        root_key_id: row.try_get("root_key_id")?,
        wrapped: row.try_get("wrapped")?,
    })
}

fn system_key_from_row(row: &PgRow) -> StoreResult<StoredSystemKey> {
    Ok(StoredSystemKey {
        name: row.try_get("name")?,
        root_key_id: row.try_get("root_key_id")?,
        wrapped: row.try_get("wrapped")?,
    })
}

fn token_from_row(row: &PgRow) -> StoreResult<StoredToken> {
    Ok(StoredToken {
        id: TokenId::from_uuid(row.try_get::<Uuid, _>("id")?),
        token_hash: row.try_get("token_hash")?,
        role: row.try_get("role")?,
        label: row.try_get("label")?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        revoked_at_ms: row.try_get("revoked_at_ms")?,
        patient: row
            .try_get::<Option<Uuid>, _>("patient_id")?
            .map(PatientId::from_uuid),
    })
}

fn checkpoint_from_row(row: &PgRow) -> StoreResult<StoredCheckpoint> {
    let size: i64 = row.try_get("size")?;
    Ok(StoredCheckpoint {
        size: u64::try_from(size).map_err(|_| StoreError::Corrupt {
            table: "audit_checkpoints",
            detail: "negative size".into(),
        })?,
        root: row.try_get("root")?,
        note: row.try_get("note")?,
        created_at_ms: row.try_get("created_at_ms")?,
    })
}

fn audit_from_row(row: &PgRow) -> StoreResult<StoredAuditEvent> {
    let entry: &[u8] = row.try_get("entry")?;
    crate::audit_entry(row.try_get("seq")?, entry)
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn insert_patient(&self, patient: NewPatient) -> StoreResult<()> {
        let mut transaction = self.pool.begin().await?;
        // The patient row first: after crypto-shredding the subject key is gone but the id
        // stays taken, and reusing it must be `AlreadyExists` too.
        let inserted = sqlx::query(
            "INSERT INTO patients (id, version, sealed, created_at_ms, updated_at_ms)
             VALUES ($1, 1, $2, $3, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(patient.id.as_uuid())
        .bind(&patient.sealed)
        .bind(patient.now_ms)
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists);
        }
        let key = &patient.subject_key;
        let inserted = sqlx::query(
            "INSERT INTO subject_keys (subject_id, key_id, root_key_id, wrapped, created_at_ms)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(patient.id.as_uuid())
        .bind(&key.key_id)
        .bind(&key.root_key_id)
        .bind(&key.wrapped)
        .bind(patient.now_ms)
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists);
        }
        insert_search(&mut transaction, patient.id, &patient.search).await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn update_patient(&self, update: PatientUpdate) -> StoreResult<UpdateOutcome> {
        let mut transaction = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE patients SET version = version + 1, sealed = $1, updated_at_ms = $2
             WHERE id = $3 AND version = $4",
        )
        .bind(&update.sealed)
        .bind(update.now_ms)
        .bind(update.id.as_uuid())
        .bind(update.expected_version)
        .execute(&mut *transaction)
        .await?;
        if changed.rows_affected() == 0 {
            let current: Option<i64> =
                sqlx::query_scalar("SELECT version FROM patients WHERE id = $1")
                    .bind(update.id.as_uuid())
                    .fetch_optional(&mut *transaction)
                    .await?;
            return Ok(match current {
                Some(current) => UpdateOutcome::VersionMismatch { current },
                None => UpdateOutcome::NotFound,
            });
        }
        sqlx::query("DELETE FROM patient_search WHERE patient_id = $1")
            .bind(update.id.as_uuid())
            .execute(&mut *transaction)
            .await?;
        insert_search(&mut transaction, update.id, &update.search).await?;
        transaction.commit().await?;
        Ok(UpdateOutcome::Updated {
            version: update.expected_version + 1,
        })
    }

    async fn get_patient(&self, id: PatientId) -> StoreResult<Option<StoredPatient>> {
        let row = sqlx::query(&format!("{PATIENT_COLUMNS} WHERE p.id = $1"))
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(patient_from_row).transpose()
    }

    async fn list_patients(&self, query: &PatientQuery) -> StoreResult<Vec<StoredPatient>> {
        let mut sql = QueryBuilder::new(PATIENT_COLUMNS);
        sql.push(" WHERE TRUE");
        for filter in query.filters.iter().take(limits::FILTERS_MAX) {
            sql.push(" AND p.id IN (SELECT patient_id FROM patient_search WHERE kind = ")
                .push_bind(filter.kind.as_str())
                .push(" AND token = ")
                .push_bind(filter.token.clone())
                .push(")");
        }
        if let Some(user) = query.cared_for_by {
            sql.push(" AND p.id IN (SELECT patient_id FROM care_team_members WHERE user_id = ")
                .push_bind(user.as_uuid())
                .push(")");
        }
        if let Some(after) = query.after {
            sql.push(" AND p.id > ").push_bind(after.as_uuid());
        }
        sql.push(" ORDER BY p.id LIMIT ")
            .push_bind(i64::from(query.limit.min(limits::PAGE_ROWS_MAX)));
        let rows = sql.build().fetch_all(&self.pool).await?;
        rows.iter().map(patient_from_row).collect()
    }

    async fn shred_subject(&self, subject: PatientId, now_ms: i64) -> StoreResult<bool> {
        let mut transaction = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM subject_keys WHERE subject_id = $1")
            .bind(subject.as_uuid())
            .execute(&mut *transaction)
            .await?;
        sqlx::query("DELETE FROM patient_search WHERE patient_id = $1")
            .bind(subject.as_uuid())
            .execute(&mut *transaction)
            .await?;
        sqlx::query(
            "DELETE FROM fhir_search WHERE (resource_type, id) IN
                 (SELECT resource_type, id FROM fhir_current WHERE patient_id = $1)",
        )
        .bind(subject.as_uuid())
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "INSERT INTO shredded_subjects (subject_id, shredded_at_ms) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(subject.as_uuid())
        .bind(now_ms)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        // Reclaim the dead tuple that still holds the wrapped key, so it does not linger in
        // the table file until autovacuum gets to it.
        if let Err(error) = sqlx::query("VACUUM subject_keys").execute(&self.pool).await {
            tracing::warn!(%error, "vacuum after crypto-shredding failed");
        }
        Ok(deleted.rows_affected() > 0)
    }

    async fn subject_keys_not_under(
        &self,
        root_key_id: &[u8],
        limit: u32,
    ) -> StoreResult<Vec<StoredSubjectKey>> {
        let rows = sqlx::query(
            "SELECT subject_id, key_id, root_key_id, wrapped FROM subject_keys
             WHERE root_key_id <> $1 ORDER BY subject_id LIMIT $2",
        )
        .bind(root_key_id)
        .bind(i64::from(limit.min(limits::REWRAP_BATCH_ROWS_MAX)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(subject_key_from_row).collect()
    }

    async fn rewrap_subject_key(
        &self,
        previous: &StoredSubjectKey,
        root_key_id: &[u8],
        wrapped: &[u8],
    ) -> StoreResult<bool> {
        let changed = sqlx::query(
            "UPDATE subject_keys SET root_key_id = $1, wrapped = $2
             WHERE subject_id = $3 AND key_id = $4 AND wrapped = $5",
        )
        .bind(root_key_id)
        .bind(wrapped)
        .bind(previous.subject.as_uuid())
        .bind(&previous.key_id)
        .bind(&previous.wrapped)
        .execute(&self.pool)
        .await?;
        Ok(changed.rows_affected() == 1)
    }

    async fn count_keys_not_under(&self, root_key_id: &[u8]) -> StoreResult<u64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM subject_keys WHERE root_key_id <> $1)
                  + (SELECT COUNT(*) FROM system_keys WHERE root_key_id <> $1)",
        )
        .bind(root_key_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn root_keys_in_use(&self) -> StoreResult<Vec<Vec<u8>>> {
        Ok(sqlx::query_scalar(
            "SELECT root_key_id FROM subject_keys UNION SELECT root_key_id FROM system_keys",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn system_key(&self, name: &str) -> StoreResult<Option<StoredSystemKey>> {
        let row = sqlx::query("SELECT name, root_key_id, wrapped FROM system_keys WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(system_key_from_row).transpose()
    }

    async fn put_system_key_if_absent(
        &self,
        key: StoredSystemKey,
        now_ms: i64,
    ) -> StoreResult<StoredSystemKey> {
        sqlx::query(
            "INSERT INTO system_keys (name, root_key_id, wrapped, created_at_ms)
             VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&key.name)
        .bind(&key.root_key_id)
        .bind(&key.wrapped)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        self.system_key(&key.name)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                table: "system_keys",
                detail: format!("{} vanished right after insertion", key.name),
            })
    }

    async fn system_keys(&self) -> StoreResult<Vec<StoredSystemKey>> {
        let rows = sqlx::query("SELECT name, root_key_id, wrapped FROM system_keys ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(system_key_from_row).collect()
    }

    async fn rewrap_system_key(
        &self,
        previous: &StoredSystemKey,
        root_key_id: &[u8],
        wrapped: &[u8],
    ) -> StoreResult<bool> {
        let changed = sqlx::query(
            "UPDATE system_keys SET root_key_id = $1, wrapped = $2 WHERE name = $3 AND wrapped = $4",
        )
        .bind(root_key_id)
        .bind(wrapped)
        .bind(&previous.name)
        .bind(&previous.wrapped)
        .execute(&self.pool)
        .await?;
        Ok(changed.rows_affected() == 1)
    }

    async fn insert_token(&self, token: StoredToken) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, role, label, created_at_ms, expires_at_ms,
                                     revoked_at_ms, patient_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(token.id.as_uuid())
        .bind(&token.token_hash)
        .bind(&token.role)
        .bind(&token.label)
        .bind(token.created_at_ms)
        .bind(token.expires_at_ms)
        .bind(token.revoked_at_ms)
        .bind(token.patient.map(|p| p.as_uuid()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn token_by_hash(&self, token_hash: &[u8]) -> StoreResult<Option<StoredToken>> {
        let row = sqlx::query(
            "SELECT id, token_hash, role, label, created_at_ms, expires_at_ms, revoked_at_ms,
                    patient_id
             FROM api_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let (reply, answer) = oneshot::channel();
        self.audit_writer
            .send(AuditJob { events, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn audit_events(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<StoredAuditEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
            crate::AUDIT_ENTRY_COLUMNS
        ))
        .bind(after_seq)
        .bind(i64::from(limit.min(limits::AUDIT_PAGE_ROWS_MAX)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn audit_leaves(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<AuditLeaf>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
            crate::AUDIT_LEAF_COLUMNS
        ))
        .bind(after_seq)
        .bind(i64::from(limit.min(limits::AUDIT_PAGE_ROWS_MAX)))
        .fetch_all(&self.pool)
        .await?;
        // Columns by position (`AUDIT_LEAF_COLUMNS`): verification reads every row of the
        // log, and a look-up by name hashes the name for every column of every row.
        rows.iter()
            .map(|row| {
                let entry: &[u8] = row.try_get(1)?;
                let actor: Option<&str> = row.try_get(3)?;
                let action: Option<&str> = row.try_get(4)?;
                let outcome: Option<&str> = row.try_get(6)?;
                let keys = crate::AuditKeys {
                    at_ms: row.try_get(2)?,
                    actor: actor.map(str::as_bytes),
                    action: action.map(str::as_bytes),
                    patient: row.try_get(5)?,
                    outcome: outcome.map(str::as_bytes),
                };
                Ok(crate::audit_leaf(row.try_get(0)?, entry, &keys))
            })
            .collect()
    }

    async fn query_audit(&self, query: &AuditQuery) -> StoreResult<Vec<StoredAuditEvent>> {
        let (sql, binds) = query.sql(|n| format!("${n}"));
        let mut statement = sqlx::query(&sql);
        for bind in binds {
            statement = match bind {
                AuditBind::Integer(i) => statement.bind(i),
                AuditBind::Text(t) => statement.bind(t),
                AuditBind::Uuid(u) => statement.bind(u),
            };
        }
        let rows = statement.fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn insert_checkpoint(&self, checkpoint: StoredCheckpoint) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (size, root, note, created_at_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (size) DO NOTHING",
        )
        .bind(i64::try_from(checkpoint.size).map_err(|_| StoreError::Corrupt {
            table: "audit_checkpoints",
            detail: "size beyond i64".into(),
        })?)
        .bind(&checkpoint.root)
        .bind(&checkpoint.note)
        .bind(checkpoint.created_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn checkpoints(&self, after_size: u64, limit: u32) -> StoreResult<Vec<StoredCheckpoint>> {
        let rows = sqlx::query(
            "SELECT size, root, note, created_at_ms FROM audit_checkpoints
             WHERE size > $1 ORDER BY size LIMIT $2",
        )
        .bind(i64::try_from(after_size).unwrap_or(i64::MAX))
        .bind(i64::from(limit.min(limits::CHECKPOINT_PAGE_ROWS_MAX)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    async fn latest_checkpoint(&self) -> StoreResult<Option<StoredCheckpoint>> {
        let row = sqlx::query(
            "SELECT size, root, note, created_at_ms FROM audit_checkpoints ORDER BY size DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(checkpoint_from_row).transpose()
    }

    async fn checkpoint_at(&self, size: u64) -> StoreResult<Option<StoredCheckpoint>> {
        let Ok(size) = i64::try_from(size) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT size, root, note, created_at_ms FROM audit_checkpoints WHERE size = $1",
        )
        .bind(size)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(checkpoint_from_row).transpose()
    }

    async fn append_tree(&self, leaves: Vec<TreeLeaf>, nodes: Vec<TreeNode>) -> StoreResult<()> {
        crate::check_rows_max(
            "audit tree rows written at once",
            leaves.len() + nodes.len(),
            limits::TREE_WRITE_ROWS_MAX,
        )?;
        if leaves.is_empty() && nodes.is_empty() {
            return Ok(());
        }
        let position = |index: u64| {
            i64::try_from(index).map_err(|_| StoreError::Corrupt {
                table: "audit_tree_leaves",
                detail: "position beyond i64".into(),
            })
        };
        let leaf_indexes = leaves
            .iter()
            .map(|l| position(l.index))
            .collect::<StoreResult<Vec<_>>>()?;
        let leaf_seqs: Vec<i64> = leaves.iter().map(|l| l.seq).collect();
        let leaf_hashes: Vec<Vec<u8>> = leaves.iter().map(|l| l.hash.to_vec()).collect();
        let node_levels: Vec<i32> = nodes
            .iter()
            .map(|n| i32::try_from(n.id.level).unwrap_or(i32::MAX))
            .collect();
        let node_indexes = nodes
            .iter()
            .map(|n| position(n.id.index))
            .collect::<StoreResult<Vec<_>>>()?;
        let node_hashes: Vec<Vec<u8>> = nodes.iter().map(|n| n.hash.to_vec()).collect();
        // One transaction, one statement per table: arrays unnested server-side.
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO audit_tree_leaves (idx, seq, hash)
             SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BYTEA[])
             ON CONFLICT DO NOTHING",
        )
        .bind(&leaf_indexes)
        .bind(&leaf_seqs)
        .bind(&leaf_hashes)
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "INSERT INTO audit_tree_nodes (level, idx, hash)
             SELECT * FROM UNNEST($1::INTEGER[], $2::BIGINT[], $3::BYTEA[])
             ON CONFLICT DO NOTHING",
        )
        .bind(&node_levels)
        .bind(&node_indexes)
        .bind(&node_hashes)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn tree_size(&self) -> StoreResult<u64> {
        let next: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_tree_leaves")
                .fetch_one(&self.pool)
                .await?;
        u64::try_from(next).map_err(|_| StoreError::Corrupt {
            table: "audit_tree_leaves",
            detail: "negative position".into(),
        })
    }

    async fn tree_leaf_by_seq(&self, seq: i64) -> StoreResult<Option<TreeLeaf>> {
        let row = sqlx::query("SELECT idx, seq, hash FROM audit_tree_leaves WHERE seq = $1")
            .bind(seq)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(tree_leaf_from_row).transpose()
    }

    async fn tree_leaves(&self, from_index: u64, limit: u32) -> StoreResult<Vec<TreeLeaf>> {
        let rows = sqlx::query(
            "SELECT idx, seq, hash FROM audit_tree_leaves WHERE idx >= $1 ORDER BY idx LIMIT $2",
        )
        .bind(i64::try_from(from_index).unwrap_or(i64::MAX))
        .bind(i64::from(limit.min(limits::AUDIT_PAGE_ROWS_MAX)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(tree_leaf_from_row).collect()
    }

    async fn tree_nodes(&self, ids: &[NodeId]) -> StoreResult<Vec<Option<Hash>>> {
        crate::check_rows_max(
            "audit tree hashes read at once",
            ids.len(),
            limits::TREE_NODES_READ_MAX,
        )?;
        let levels: Vec<i32> = ids
            .iter()
            .map(|id| i32::try_from(id.level).unwrap_or(i32::MAX))
            .collect();
        let indexes: Vec<i64> = ids
            .iter()
            .map(|id| i64::try_from(id.index).unwrap_or(i64::MAX))
            .collect();
        // Level 0 lives in the leaves table; both are looked up in one round trip.
        let rows = sqlx::query(
            "SELECT q.ord, COALESCE(l.hash, n.hash) AS hash
             FROM UNNEST($1::INTEGER[], $2::BIGINT[]) WITH ORDINALITY AS q(level, idx, ord)
             LEFT JOIN audit_tree_leaves l ON q.level = 0 AND l.idx = q.idx
             LEFT JOIN audit_tree_nodes n ON q.level > 0 AND n.level = q.level AND n.idx = q.idx",
        )
        .bind(&levels)
        .bind(&indexes)
        .fetch_all(&self.pool)
        .await?;
        let mut out = vec![None; ids.len()];
        for row in &rows {
            let ordinal: i64 = row.try_get("ord")?;
            let hash: Option<Vec<u8>> = row.try_get("hash")?;
            let slot = usize::try_from(ordinal - 1)
                .ok()
                .and_then(|at| out.get_mut(at))
                .ok_or_else(|| StoreError::Corrupt {
                    table: "audit_tree_nodes",
                    detail: "an answer for a node not asked for".into(),
                })?;
            *slot = hash
                .map(|h| crate::tree_hash("audit_tree_nodes", &h))
                .transpose()?;
        }
        Ok(out)
    }

    async fn siem_cursor(&self, name: &str) -> StoreResult<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT after_seq FROM siem_cursors WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn set_siem_cursor(&self, name: &str, after_seq: i64, now_ms: i64) -> StoreResult<()> {
        crate::check_siem_cursor(after_seq)?;
        sqlx::query(crate::SET_SIEM_CURSOR_SQL)
            .bind(name)
            .bind(after_seq)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_organisation(&self, organisation: StoredOrganisation) -> StoreResult<()> {
        identity::insert_organisation(&self.pool, organisation).await
    }
    async fn organisation(&self, id: OrganisationId) -> StoreResult<Option<StoredOrganisation>> {
        identity::organisation(&self.pool, id).await
    }
    async fn organisations(&self) -> StoreResult<Vec<StoredOrganisation>> {
        identity::organisations(&self.pool).await
    }
    async fn update_organisation(&self, organisation: StoredOrganisation) -> StoreResult<bool> {
        identity::update_organisation(&self.pool, organisation).await
    }
    async fn insert_user(&self, user: NewUser) -> StoreResult<()> {
        identity::insert_user(&self.pool, user).await
    }
    async fn user(&self, id: UserId) -> StoreResult<Option<StoredUser>> {
        identity::user(&self.pool, id).await
    }
    async fn user_by_login(&self, login_index: &[u8]) -> StoreResult<Option<StoredUser>> {
        identity::user_by_login(&self.pool, login_index).await
    }
    async fn organisation_users(
        &self,
        organisation: OrganisationId,
    ) -> StoreResult<Vec<StoredUser>> {
        identity::organisation_users(&self.pool, organisation).await
    }
    async fn set_user_disabled(
        &self,
        user: UserId,
        disabled_at_ms: Option<i64>,
    ) -> StoreResult<bool> {
        identity::set_user_disabled(&self.pool, user, disabled_at_ms).await
    }
    async fn set_password(
        &self,
        user: UserId,
        password_hash: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        identity::set_password(&self.pool, user, password_hash, now_ms).await
    }
    async fn set_totp(
        &self,
        user: UserId,
        totp_sealed: Option<Vec<u8>>,
        enabled: bool,
    ) -> StoreResult<()> {
        identity::set_totp(&self.pool, user, totp_sealed, enabled).await
    }
    async fn start_totp_setup(&self, user: UserId, totp_sealed: Vec<u8>) -> StoreResult<bool> {
        identity::start_totp_setup(&self.pool, user, totp_sealed).await
    }
    async fn advance_totp_step(&self, user: UserId, step: i64) -> StoreResult<bool> {
        identity::advance_totp_step(&self.pool, user, step).await
    }
    async fn record_login_failure(&self, user: UserId, locked_until_ms: i64) -> StoreResult<()> {
        identity::record_login_failure(&self.pool, user, locked_until_ms).await
    }
    async fn claim_guess(
        &self,
        user: UserId,
        now_ms: i64,
        lock: crate::GuessLock,
    ) -> StoreResult<bool> {
        identity::claim_guess(&self.pool, user, now_ms, lock).await
    }
    async fn reset_login_failures(&self, user: UserId) -> StoreResult<()> {
        identity::reset_login_failures(&self.pool, user).await
    }
    async fn insert_session(&self, session: StoredSession) -> StoreResult<()> {
        identity::insert_session(&self.pool, session).await
    }
    async fn session_by_hash(&self, token_hash: &[u8]) -> StoreResult<Option<SessionRecord>> {
        identity::session_by_hash(&self.pool, token_hash).await
    }
    async fn touch_session(&self, id: SessionId, now_ms: i64) -> StoreResult<()> {
        identity::touch_session(&self.pool, id, now_ms).await
    }
    async fn reauthenticate_session(
        &self,
        id: SessionId,
        now_ms: i64,
        mfa: bool,
    ) -> StoreResult<()> {
        identity::reauthenticate_session(&self.pool, id, now_ms, mfa).await
    }
    async fn revoke_session(&self, id: SessionId, now_ms: i64, reason: &str) -> StoreResult<bool> {
        identity::revoke_session(&self.pool, id, now_ms, reason).await
    }
    async fn revoke_user_sessions(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        now_ms: i64,
        reason: &str,
    ) -> StoreResult<u64> {
        identity::revoke_user_sessions(&self.pool, user, keep, now_ms, reason).await
    }
    async fn user_sessions(&self, user: UserId, now_ms: i64) -> StoreResult<Vec<StoredSession>> {
        identity::user_sessions(&self.pool, user, now_ms).await
    }
    async fn insert_invitation(&self, invitation: StoredInvitation) -> StoreResult<()> {
        identity::insert_invitation(&self.pool, invitation).await
    }
    async fn invitation_by_hash(&self, token_hash: &[u8]) -> StoreResult<Option<StoredInvitation>> {
        identity::invitation_by_hash(&self.pool, token_hash).await
    }
    async fn redeem_invitation(
        &self,
        invitation: InvitationId,
        now_ms: i64,
        user: NewUser,
    ) -> StoreResult<Redeemed> {
        identity::redeem_invitation(&self.pool, invitation, now_ms, user).await
    }
    async fn replace_recovery_codes(
        &self,
        user: UserId,
        code_hashes: Vec<Vec<u8>>,
    ) -> StoreResult<()> {
        identity::replace_recovery_codes(&self.pool, user, code_hashes).await
    }
    async fn use_recovery_code(
        &self,
        user: UserId,
        code_hash: &[u8],
        now_ms: i64,
    ) -> StoreResult<bool> {
        identity::use_recovery_code(&self.pool, user, code_hash, now_ms).await
    }
    async fn recovery_codes_left(&self, user: UserId) -> StoreResult<u64> {
        identity::recovery_codes_left(&self.pool, user).await
    }
    async fn insert_passkey(&self, passkey: crate::StoredPasskey) -> StoreResult<()> {
        identity::insert_passkey(&self.pool, passkey).await
    }
    async fn passkey(&self, credential_id: &[u8]) -> StoreResult<Option<crate::StoredPasskey>> {
        identity::passkey(&self.pool, credential_id).await
    }
    async fn user_passkeys(&self, user: UserId) -> StoreResult<Vec<crate::StoredPasskey>> {
        identity::user_passkeys(&self.pool, user).await
    }
    async fn record_passkey_use(
        &self,
        credential_id: &[u8],
        previous_sign_count: i64,
        new_sign_count: i64,
        now_ms: i64,
    ) -> StoreResult<bool> {
        identity::record_passkey_use(
            &self.pool,
            credential_id,
            previous_sign_count,
            new_sign_count,
            now_ms,
        )
        .await
    }
    async fn delete_passkey(&self, user: UserId, credential_id: &[u8]) -> StoreResult<bool> {
        identity::delete_passkey(&self.pool, user, credential_id).await
    }
    async fn insert_challenge(&self, challenge: crate::StoredChallenge) -> StoreResult<()> {
        identity::insert_challenge(&self.pool, challenge).await
    }
    async fn take_challenge(
        &self,
        id: Uuid,
        now_ms: i64,
    ) -> StoreResult<Option<crate::StoredChallenge>> {
        identity::take_challenge(&self.pool, id, now_ms).await
    }
    async fn care_team(&self, patient: PatientId) -> StoreResult<Vec<crate::care::CareTeamMember>> {
        care::care_team(&self.pool, patient).await
    }
    async fn end_visit(&self, ending: crate::visits::VisitEnding) -> StoreResult<bool> {
        Ok(sqlx::query(
            "INSERT INTO visit_endings (appointment_id, organisation_id, patient_id, ended_by,
                 ended_at_ms)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (appointment_id) DO NOTHING",
        )
        .bind(&ending.appointment)
        .bind(ending.organisation.as_uuid())
        .bind(ending.patient.as_uuid())
        .bind(&ending.ended_by)
        .bind(ending.ended_at_ms)
        .execute(&self.pool)
        .await?
        .rows_affected()
            > 0)
    }
    async fn visit_ending(
        &self,
        appointment: &str,
    ) -> StoreResult<Option<crate::visits::VisitEnding>> {
        let row = sqlx::query(
            "SELECT appointment_id, organisation_id, patient_id, ended_by, ended_at_ms
             FROM visit_endings WHERE appointment_id = $1",
        )
        .bind(appointment)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(crate::visits::VisitEnding {
                appointment: row.try_get("appointment_id")?,
                organisation: haven_domain::OrganisationId::from_uuid(
                    row.try_get("organisation_id")?,
                ),
                patient: PatientId::from_uuid(row.try_get("patient_id")?),
                ended_by: row.try_get("ended_by")?,
                ended_at_ms: row.try_get("ended_at_ms")?,
            })
        })
        .transpose()
    }
    async fn insert_visit_guest(&self, guest: crate::visits::StoredGuest) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO visit_guests (id, appointment_id, organisation_id, patient_id, kind,
                 invitation_hash, session_hash, invited_by, created_at_ms, expires_at_ms,
                 redeemed_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }
    async fn redeem_visit_guest(
        &self,
        invitation_hash: &[u8],
        session_hash: &[u8],
        now_ms: i64,
    ) -> StoreResult<Option<crate::visits::StoredGuest>> {
        let row = sqlx::query(&format!(
            "UPDATE visit_guests SET session_hash = $1, redeemed_at_ms = $2
             WHERE invitation_hash = $3 AND redeemed_at_ms IS NULL AND expires_at_ms > $2
             RETURNING {GUEST_COLUMNS}"
        ))
        .bind(session_hash)
        .bind(now_ms)
        .bind(invitation_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(guest_row).transpose()
    }
    async fn visit_guest_by_session(
        &self,
        session_hash: &[u8],
    ) -> StoreResult<Option<crate::visits::StoredGuest>> {
        let row = sqlx::query(&format!(
            "SELECT {GUEST_COLUMNS} FROM visit_guests WHERE session_hash = $1"
        ))
        .bind(session_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(guest_row).transpose()
    }
    async fn visit_guests(
        &self,
        appointment: &str,
    ) -> StoreResult<Vec<crate::visits::StoredGuest>> {
        let rows = sqlx::query(&format!(
            "SELECT {GUEST_COLUMNS} FROM visit_guests WHERE appointment_id = $1
             ORDER BY created_at_ms, id LIMIT $2"
        ))
        .bind(appointment)
        .bind(i64::from(crate::limits::VISIT_GUESTS_LISTED_MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(guest_row).collect()
    }
    async fn insert_device(&self, device: crate::messaging::StoredDevice) -> StoreResult<bool> {
        messaging::insert_device(&self.pool, device).await
    }
    async fn remove_device(
        &self,
        user: UserId,
        device: uuid::Uuid,
        now_ms: i64,
    ) -> StoreResult<bool> {
        messaging::remove_device(&self.pool, user, device, now_ms).await
    }
    async fn devices_of(
        &self,
        users: &[UserId],
    ) -> StoreResult<Vec<crate::messaging::StoredDevice>> {
        messaging::devices_of(&self.pool, users).await
    }
    async fn device(&self, id: uuid::Uuid) -> StoreResult<Option<crate::messaging::StoredDevice>> {
        messaging::device_by_id(&self.pool, id).await
    }
    async fn insert_thread(
        &self,
        thread: crate::messaging::StoredThread,
        participants: Vec<crate::messaging::Participant>,
    ) -> StoreResult<()> {
        messaging::insert_thread(&self.pool, thread, participants).await
    }
    async fn thread(&self, id: uuid::Uuid) -> StoreResult<Option<crate::messaging::StoredThread>> {
        messaging::thread_by_id(&self.pool, id).await
    }
    async fn thread_participants(
        &self,
        id: uuid::Uuid,
    ) -> StoreResult<Vec<crate::messaging::Participant>> {
        messaging::thread_participants(&self.pool, id).await
    }
    async fn conversation_devices(
        &self,
        id: uuid::Uuid,
    ) -> StoreResult<Option<crate::messaging::ConversationDevices>> {
        messaging::conversation_devices(&self.pool, id).await
    }
    async fn add_participant(
        &self,
        participant: crate::messaging::Participant,
    ) -> StoreResult<bool> {
        messaging::add_participant(&self.pool, participant).await
    }
    async fn remove_participant(
        &self,
        thread: uuid::Uuid,
        user: UserId,
        now_ms: i64,
    ) -> StoreResult<bool> {
        messaging::remove_participant(&self.pool, thread, user, now_ms).await
    }
    async fn user_threads(
        &self,
        user: UserId,
    ) -> StoreResult<Vec<crate::messaging::ThreadSummary>> {
        messaging::user_threads(&self.pool, user).await
    }
    async fn insert_message(
        &self,
        message: crate::messaging::NewMessage,
    ) -> StoreResult<crate::messaging::SendOutcome> {
        messaging::insert_message(&self.pool, message).await
    }
    async fn thread_messages(
        &self,
        thread: uuid::Uuid,
        device: uuid::Uuid,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<crate::messaging::StoredMessage>> {
        messaging::thread_messages(&self.pool, thread, device, after_seq, limit).await
    }
    async fn mark_read(
        &self,
        thread: uuid::Uuid,
        user: UserId,
        seq: i64,
        now_ms: i64,
    ) -> StoreResult<bool> {
        messaging::mark_read(&self.pool, thread, user, seq, now_ms).await
    }
    async fn insert_message_attachment(
        &self,
        attachment: crate::messaging::StoredMessageAttachment,
    ) -> StoreResult<()> {
        messaging::insert_message_attachment(&self.pool, attachment).await
    }
    async fn message_attachment(
        &self,
        id: uuid::Uuid,
    ) -> StoreResult<Option<crate::messaging::StoredMessageAttachment>> {
        messaging::message_attachment(&self.pool, id).await
    }
    async fn delete_messages_before(
        &self,
        organisation: OrganisationId,
        before_ms: i64,
        limit: u32,
    ) -> StoreResult<crate::messaging::MessagesDeleted> {
        messaging::delete_messages_before(&self.pool, organisation, before_ms, limit).await
    }
    async fn add_care_team_member(&self, member: crate::care::CareTeamMember) -> StoreResult<bool> {
        care::add_care_team_member(&self.pool, member).await
    }
    async fn remove_care_team_member(&self, patient: PatientId, user: UserId) -> StoreResult<bool> {
        care::remove_care_team_member(&self.pool, patient, user).await
    }
    async fn relations(
        &self,
        user: UserId,
        patients: &[PatientId],
        now_ms: i64,
    ) -> StoreResult<Vec<crate::care::Relations>> {
        care::relations(&self.pool, user, patients, now_ms).await
    }
    async fn insert_break_glass(&self, grant: crate::care::StoredBreakGlass) -> StoreResult<()> {
        care::insert_break_glass(&self.pool, grant).await
    }
    async fn break_glass(
        &self,
        id: haven_domain::BreakGlassId,
    ) -> StoreResult<Option<crate::care::StoredBreakGlass>> {
        care::break_glass(&self.pool, id).await
    }
    async fn break_glass_grants(
        &self,
        query: &crate::care::BreakGlassQuery,
    ) -> StoreResult<Vec<crate::care::StoredBreakGlass>> {
        care::break_glass_grants(&self.pool, query).await
    }
    async fn review_break_glass(&self, review: crate::care::BreakGlassReview) -> StoreResult<bool> {
        care::review_break_glass(&self.pool, review).await
    }
    async fn insert_notifications(
        &self,
        notifications: Vec<crate::care::StoredNotification>,
    ) -> StoreResult<()> {
        care::insert_notifications(&self.pool, notifications).await
    }
    async fn notifications(
        &self,
        user: UserId,
    ) -> StoreResult<Vec<crate::care::StoredNotification>> {
        care::notifications(&self.pool, user).await
    }
    async fn mark_notification_read(
        &self,
        user: UserId,
        id: haven_domain::NotificationId,
        now_ms: i64,
    ) -> StoreResult<bool> {
        care::mark_notification_read(&self.pool, user, id, now_ms).await
    }
    async fn resolve_notifications(&self, subject: uuid::Uuid, now_ms: i64) -> StoreResult<()> {
        care::resolve_notifications(&self.pool, subject, now_ms).await
    }
    async fn insert_delegation(
        &self,
        delegation: crate::care::StoredDelegation,
    ) -> StoreResult<()> {
        care::insert_delegation(&self.pool, delegation).await
    }
    async fn patient_delegations(
        &self,
        patient: PatientId,
        now_ms: i64,
    ) -> StoreResult<Vec<crate::care::StoredDelegation>> {
        care::patient_delegations(&self.pool, patient, now_ms).await
    }
    async fn delegation_by_offer(
        &self,
        offer_hash: &[u8],
    ) -> StoreResult<Option<crate::care::StoredDelegation>> {
        care::delegation_by_offer(&self.pool, offer_hash).await
    }
    async fn accept_delegation(
        &self,
        id: haven_domain::DelegationId,
        proxy: UserId,
        now_ms: i64,
    ) -> StoreResult<bool> {
        care::accept_delegation(&self.pool, id, proxy, now_ms).await
    }
    async fn revoke_delegation(
        &self,
        patient: PatientId,
        id: haven_domain::DelegationId,
        now_ms: i64,
    ) -> StoreResult<bool> {
        care::revoke_delegation(&self.pool, patient, id, now_ms).await
    }
    async fn proxy_delegations(
        &self,
        proxy: UserId,
        now_ms: i64,
    ) -> StoreResult<Vec<crate::care::StoredDelegation>> {
        care::proxy_delegations(&self.pool, proxy, now_ms).await
    }

    async fn write_resources(
        &self,
        writes: Vec<crate::fhir::ResourceWrite>,
    ) -> StoreResult<Result<Vec<i64>, crate::fhir::WriteConflict>> {
        crate::fhir::check_writes(&writes)?;
        fhir::write_resources(&self.pool, &writes).await
    }

    async fn resource(
        &self,
        resource_type: &str,
        id: &str,
    ) -> StoreResult<Option<crate::fhir::StoredResource>> {
        fhir::resource(&self.pool, resource_type, id).await
    }

    async fn release_resource(&self, resource_type: &str, id: &str) -> StoreResult<bool> {
        let changed = sqlx::query(
            "UPDATE fhir_current SET held = 0 WHERE resource_type = $1 AND id = $2 AND held = 1",
        )
        .bind(resource_type)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(changed.rows_affected() > 0)
    }

    async fn related_patients(
        &self,
        user: UserId,
        now_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<PatientId>> {
        let rows: Vec<Uuid> = sqlx::query_scalar(
            "SELECT patient_id FROM care_team_members WHERE user_id = $1
                 UNION SELECT patient_id FROM break_glass_grants
                     WHERE user_id = $1 AND expires_at_ms > $2
                 UNION SELECT patient_id FROM delegations
                     WHERE proxy_user_id = $1 AND accepted_at_ms IS NOT NULL
                       AND revoked_at_ms IS NULL AND expires_at_ms > $2
                       AND scopes LIKE '%record%'
                 LIMIT $3",
        )
        .bind(user.as_uuid())
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(PatientId::from_uuid).collect())
    }

    async fn put_subject_key_if_absent(
        &self,
        key: StoredSubjectKey,
        now_ms: i64,
    ) -> StoreResult<StoredSubjectKey> {
        sqlx::query(
            "INSERT INTO subject_keys (subject_id, key_id, root_key_id, wrapped, created_at_ms)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subject_id) DO NOTHING",
        )
        .bind(key.subject.as_uuid())
        .bind(&key.key_id)
        .bind(&key.root_key_id)
        .bind(&key.wrapped)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(
            "SELECT subject_id, key_id, root_key_id, wrapped FROM subject_keys WHERE subject_id = $1",
        )
        .bind(key.subject.as_uuid())
        .fetch_one(&self.pool)
        .await?;
        subject_key_from_row(&row)
    }

    async fn put_attachment_chunk(
        &self,
        attachment: uuid::Uuid,
        index: u32,
        sealed: Vec<u8>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO attachment_chunks (attachment_id, idx, sealed) VALUES ($1, $2, $3)",
        )
        .bind(attachment)
        .bind(i64::from(index))
        .bind(sealed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn attachment_chunk(
        &self,
        attachment: uuid::Uuid,
        index: u32,
    ) -> StoreResult<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar(
            "SELECT sealed FROM attachment_chunks WHERE attachment_id = $1 AND idx = $2",
        )
        .bind(attachment)
        .bind(i64::from(index))
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn chunked_attachments(
        &self,
        after: Option<uuid::Uuid>,
        before: uuid::Uuid,
        limit: u32,
    ) -> StoreResult<Vec<uuid::Uuid>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT attachment_id FROM attachment_chunks
             WHERE attachment_id > $1 AND attachment_id < $2
             ORDER BY attachment_id LIMIT $3",
        )
        .bind(after.unwrap_or(uuid::Uuid::nil()))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn delete_orphan_chunks(&self, attachment: uuid::Uuid) -> StoreResult<u64> {
        Ok(sqlx::query(
            "DELETE FROM attachment_chunks WHERE attachment_id = $1
             AND NOT EXISTS (SELECT 1 FROM attachments WHERE id = $1)
             AND NOT EXISTS (SELECT 1 FROM message_attachments WHERE id = $1)",
        )
        .bind(attachment)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn insert_attachment(
        &self,
        attachment: crate::fhir::StoredAttachment,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO attachments (id, patient_id, content_type, size_bytes, chunks,
                 created_by, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(attachment.id)
        .bind(attachment.patient.as_uuid())
        .bind(&attachment.content_type)
        .bind(attachment.size_bytes)
        .bind(attachment.chunks)
        .bind(&attachment.created_by)
        .bind(attachment.created_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn attachment(
        &self,
        id: uuid::Uuid,
    ) -> StoreResult<Option<crate::fhir::StoredAttachment>> {
        let row = sqlx::query(
            "SELECT a.id, a.patient_id, a.content_type, a.size_bytes, a.chunks, a.created_by,
                    a.created_at_ms, k.key_id, k.root_key_id, k.wrapped
             FROM attachments a LEFT JOIN subject_keys k ON k.subject_id = a.patient_id
             WHERE a.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let patient = PatientId::from_uuid(row.try_get::<Uuid, _>("patient_id")?);
        let key_id: Option<Vec<u8>> = row.try_get("key_id")?;
        Ok(Some(crate::fhir::StoredAttachment {
            id: row.try_get("id")?,
            patient,
            content_type: row.try_get("content_type")?,
            size_bytes: row.try_get("size_bytes")?,
            chunks: row.try_get("chunks")?,
            created_by: row.try_get("created_by")?,
            created_at_ms: row.try_get("created_at_ms")?,
            subject_key: match key_id {
                Some(key_id) => Some(StoredSubjectKey {
                    subject: patient,
                    key_id,
                    root_key_id: row.try_get("root_key_id")?,
                    wrapped: row.try_get("wrapped")?,
                }),
                None => None,
            },
        }))
    }

    async fn resource_version(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> StoreResult<Option<crate::fhir::StoredResource>> {
        fhir::resource_version(&self.pool, resource_type, id, version).await
    }

    async fn search_resources(
        &self,
        query: &crate::fhir::ResourceQuery,
    ) -> StoreResult<Vec<crate::fhir::StoredResource>> {
        fhir::search_resources(&self.pool, query).await
    }

    async fn resource_history(
        &self,
        query: &crate::fhir::HistoryQuery,
    ) -> StoreResult<Vec<crate::fhir::StoredResource>> {
        fhir::resource_history(&self.pool, query).await
    }
}

fn tree_leaf_from_row(row: &PgRow) -> StoreResult<TreeLeaf> {
    let index: i64 = row.try_get("idx")?;
    let hash: Vec<u8> = row.try_get("hash")?;
    Ok(TreeLeaf {
        index: u64::try_from(index).map_err(|_| StoreError::Corrupt {
            table: "audit_tree_leaves",
            detail: "negative position".into(),
        })?,
        seq: row.try_get("seq")?,
        hash: crate::tree_hash("audit_tree_leaves", &hash)?,
    })
}

const GUEST_COLUMNS: &str =
    "id, appointment_id, organisation_id, patient_id, kind, invitation_hash,
        session_hash, invited_by, created_at_ms, expires_at_ms, redeemed_at_ms";

fn guest_row(row: &sqlx::postgres::PgRow) -> StoreResult<crate::visits::StoredGuest> {
    Ok(crate::visits::StoredGuest {
        id: haven_domain::GuestId::from_uuid(row.try_get("id")?),
        appointment: row.try_get("appointment_id")?,
        organisation: haven_domain::OrganisationId::from_uuid(row.try_get("organisation_id")?),
        patient: PatientId::from_uuid(row.try_get("patient_id")?),
        kind: row.try_get("kind")?,
        invitation_hash: row.try_get("invitation_hash")?,
        session_hash: row.try_get("session_hash")?,
        invited_by: row.try_get("invited_by")?,
        created_at_ms: row.try_get("created_at_ms")?,
        expires_at_ms: row.try_get("expires_at_ms")?,
        redeemed_at_ms: row.try_get("redeemed_at_ms")?,
    })
}
