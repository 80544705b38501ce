//! The embedded engine: two SQLite files in the data directory, the records (`haven.db`)
//! and the audit log beside it (`haven-audit.db`, see [`SqliteStore::audit_path`]).
//!
//! The audit log has its own file because every access appends to it. In WAL mode a commit
//! by any connection makes every other connection drop its whole page cache for that file;
//! with the log in the records' file, the stream of audit commits made each read of a
//! record start from a cold cache. Apart, audit commits leave the records' readers warm, and
//! each file has its own writer, so an audit append never queues behind a record write.
//! Nothing needs a transaction spanning both: an entry is durable before the access it
//! records is granted, and nothing else joins them.
//!
//! Durability and throughput come from group commit. Every write goes to the writer task
//! of its file, which owns that file's only write connection; it takes whatever writes have
//! queued up (at most [`limits::GROUP_COMMIT_WRITES_MAX`]), applies each inside its own
//! savepoint, commits them together and only then answers each caller. With
//! `journal_mode=WAL` and `synchronous=FULL`, that commit fsyncs the WAL: one fsync
//! acknowledges a whole batch, and nothing is acknowledged before it is on disk.
//!
//! Reads run inline on plain read-only connections ([`readers`]), which WAL lets proceed
//! while the writer commits. `secure_delete` is on so that destroyed keys are overwritten,
//! not left in free pages, and a checkpoint after crypto-shredding pushes them out of the
//! WAL too.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use haven_audit::merkle::{Hash, NodeId};
use haven_audit::{AuditEvent, StoredAuditEvent};
use haven_domain::PatientId;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row};
use tokio::sync::{mpsc, oneshot};

use haven_domain::{InvitationId, OrganisationId, SessionId, UserId};
use identity::IdentityOp;

use crate::identity::{
    NewUser, Redeemed, SessionRecord, StoredInvitation, StoredOrganisation, StoredSession,
    StoredUser,
};
use crate::{
    AuditLeaf, AuditQuery, NewPatient, PatientQuery, PatientUpdate, SearchToken, Store, StoreError,
    StoreResult, StoredCheckpoint, StoredPatient, StoredSubjectKey, StoredSystemKey, StoredToken,
    TreeLeaf, TreeNode, UpdateOutcome, limits,
};

mod care;
mod fhir;
mod identity;
mod messaging;
mod readers;
mod visits;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static AUDIT_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite-audit");

/// The audit log's tables, which the records' file held up to its migration 0012 and which
/// [`move_audit_log`] moves to the audit file.
/// `audit_events` is moved by [`copy_audit_events`], which adds each entry's stored bytes.
const AUDIT_TABLES: [(&str, &str); 5] = [
    ("audit_events", ""),
    ("audit_checkpoints", "size, root, note, created_at_ms"),
    ("audit_tree_leaves", "idx, seq, hash"),
    ("audit_tree_nodes", "level, idx, hash"),
    ("siem_cursors", "name, after_seq, updated_at_ms"),
];

/// How long a connection waits for a lock held by another process (e.g. a CLI command).
const BUSY_TIMEOUT_SECS: u64 = 5;

/// The records' writer's page cache, in KiB (SQLite's negative `cache_size`). Its cache
/// stays valid between commits (no other connection writes its file), and inserts into the
/// search indexes land on pages all over them: with SQLite's default 2 MiB, most of those
/// pages were read back from the file for every batch.
const WRITER_CACHE_KIB: i64 = 64 * 1024;
/// The audit writer's page cache, in KiB. Its inserts append to the table, and only the
/// patient index takes them all over. It is kept small because SQLite scans a writer's whole
/// cache at the end of every commit whose B-tree balancing moved a page (it renumbers pages
/// through a temporary number past the end of the file, and the commit then drops every
/// cached page past the end). The audit writer commits hundreds of times a second under
/// load: with 64 MiB that scan took 3% of the server's CPU on a load of FHIR reads (a fifth
/// of the audit writer's thread); with 8 MiB it no longer shows in the profile. A patient
/// index larger than the cache costs a `pread` from the kernel's page cache per entry.
const AUDIT_WRITER_CACHE_KIB: i64 = 8 * 1024;

/// The embedded SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    path: PathBuf,
    readers: Arc<readers::Readers>,
    writer: mpsc::Sender<WriteJob>,
    audit_writer: mpsc::Sender<WriteJob>,
}

impl SqliteStore {
    /// Where the audit log of the records' file at `path` lives: beside it, `haven.db` →
    /// `haven-audit.db`.
    pub fn audit_path(path: &Path) -> PathBuf {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        match path.extension() {
            Some(extension) => {
                path.with_file_name(format!("{stem}-audit.{}", extension.to_string_lossy()))
            }
            None => path.with_file_name(format!("{stem}-audit")),
        }
    }

    /// Opens (creating if needed) the database at `path` and its audit file beside it
    /// ([`Self::audit_path`]), and applies pending migrations to both.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let audit = Self::audit_path(path);
        let mut audit_connection =
            SqliteConnection::connect_with(&write_options(&audit, AUDIT_WRITER_CACHE_KIB)).await?;
        // `run_direct`, not `run`: `run` goes through `Acquire` for `&mut SqliteConnection`,
        // which makes this future fail rustc's `Send` check wherever it is spawned.
        AUDIT_MIGRATOR.run_direct(&mut audit_connection).await?;
        let mut write_connection =
            SqliteConnection::connect_with(&write_options(path, WRITER_CACHE_KIB)).await?;
        MIGRATOR.run_direct(&mut write_connection).await?;
        move_audit_log(&mut write_connection, &audit).await?;

        let readers = Arc::new(readers::Readers::new(path, &audit));

        let (writer, queue) = mpsc::channel(limits::WRITE_QUEUE_DEPTH_MAX);
        tokio::spawn(run_writer(write_connection, queue));
        let (audit_writer, audit_queue) = mpsc::channel(limits::WRITE_QUEUE_DEPTH_MAX);
        tokio::spawn(run_writer(audit_connection, audit_queue));
        Ok(Self {
            path: path.to_owned(),
            readers,
            writer,
            audit_writer,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn write(&self, op: WriteOp) -> StoreResult<WriteOutcome> {
        let (reply, answer) = oneshot::channel();
        let writer = if op.is_audit() {
            &self.audit_writer
        } else {
            &self.writer
        };
        writer
            .send(WriteJob { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// One write, as queued for the writer task.
#[derive(Debug)]
enum WriteOp {
    InsertPatient(NewPatient),
    UpdatePatient(PatientUpdate),
    ShredSubject {
        subject: PatientId,
        now_ms: i64,
    },
    RewrapSubjectKey {
        previous: StoredSubjectKey,
        root_key_id: Vec<u8>,
        wrapped: Vec<u8>,
    },
    PutSystemKeyIfAbsent {
        key: StoredSystemKey,
        now_ms: i64,
    },
    RewrapSystemKey {
        previous: StoredSystemKey,
        root_key_id: Vec<u8>,
        wrapped: Vec<u8>,
    },
    InsertToken(StoredToken),
    AppendAudit(Vec<AuditEvent>),
    InsertCheckpoint(StoredCheckpoint),
    AppendTree {
        leaves: Vec<TreeLeaf>,
        nodes: Vec<TreeNode>,
    },
    SetSiemCursor {
        name: String,
        after_seq: i64,
        now_ms: i64,
    },
    Identity(Box<identity::IdentityOp>),
    Care(Box<care::CareOp>),
    Messaging(Box<messaging::MessagingOp>),
    Resources(Vec<crate::fhir::ResourceWrite>),
    PutChunk {
        attachment: uuid::Uuid,
        index: u32,
        sealed: Vec<u8>,
    },
    InsertAttachment(crate::fhir::StoredAttachment),
    DeleteOrphanChunks(uuid::Uuid),
    PutSubjectKeyIfAbsent {
        key: StoredSubjectKey,
        now_ms: i64,
    },
    ReleaseResource {
        resource_type: String,
        id: String,
    },
    EndVisit(crate::visits::VisitEnding),
    InsertGuest(Box<crate::visits::StoredGuest>),
    RedeemGuest {
        invitation_hash: Vec<u8>,
        session_hash: Vec<u8>,
        now_ms: i64,
    },
}

impl WriteOp {
    /// The message this write stores, if it is one.
    fn new_message(&self) -> Option<&crate::messaging::NewMessage> {
        match self {
            WriteOp::Messaging(op) => op.new_message(),
            _ => None,
        }
    }

    /// Whether the write goes to the audit file rather than the records' file.
    fn is_audit(&self) -> bool {
        matches!(
            self,
            WriteOp::AppendAudit(_)
                | WriteOp::InsertCheckpoint(_)
                | WriteOp::AppendTree { .. }
                | WriteOp::SetSiemCursor { .. }
        )
    }
}

/// How each file's write connection is opened.
fn write_options(path: &Path, cache_kib: i64) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(BUSY_TIMEOUT_SECS))
        .foreign_keys(true)
        .pragma("secure_delete", "ON")
        // Each write of a batch runs in its own savepoint; what a savepoint would need to
        // roll back is kept in memory rather than in a temporary file. Durability is the
        // WAL's, not the savepoints'.
        .pragma("temp_store", "MEMORY")
        .pragma("cache_size", (-cache_kib).to_string())
}

/// Moves an audit log kept in the records' file (migrations 0001–0012 put it there) to the
/// audit file, in two steps that are each atomic and may be repeated: copy every row not
/// yet copied and commit the audit file, then drop the tables from the records' file. A
/// crash between the two leaves both copies, and the next start finishes the move. A
/// fresh database goes through the same steps with empty tables.
async fn move_audit_log(connection: &mut SqliteConnection, audit: &Path) -> StoreResult<()> {
    let present: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM main.sqlite_master WHERE type = 'table' AND name = 'audit_events'",
    )
    .fetch_one(&mut *connection)
    .await?;
    if present == 0 {
        return Ok(());
    }
    sqlx::query("ATTACH DATABASE ? AS audit_file")
        .bind(audit.to_string_lossy().into_owned())
        .execute(&mut *connection)
        .await?;
    let moved = copy_audit_tables(connection).await;
    sqlx::query("DETACH DATABASE audit_file")
        .execute(&mut *connection)
        .await?;
    moved?;
    let mut transaction = connection.begin().await?;
    for (table, _) in AUDIT_TABLES.iter().rev() {
        sqlx::query(&format!("DROP TABLE main.{table}"))
            .execute(&mut *transaction)
            .await?;
    }
    transaction.commit().await?;
    Ok(())
}

/// The copying step of [`move_audit_log`]: one transaction that writes only the audit file.
async fn copy_audit_tables(connection: &mut SqliteConnection) -> StoreResult<()> {
    sqlx::query("PRAGMA audit_file.synchronous = FULL")
        .execute(&mut *connection)
        .await?;
    let mut transaction = connection.begin().await?;
    copy_audit_events(&mut transaction).await?;
    for (table, columns) in AUDIT_TABLES.into_iter().skip(1) {
        sqlx::query(&format!(
            "INSERT OR IGNORE INTO audit_file.{table} ({columns}) SELECT {columns} FROM main.{table}"
        ))
        .execute(&mut *transaction)
        .await?;
    }
    transaction.commit().await?;
    Ok(())
}

/// Copies the entries of a records' file from before migration 0013, which held no stored
/// entry bytes, computing each entry's bytes from its columns, page by page.
async fn copy_audit_events(connection: &mut SqliteConnection) -> StoreResult<()> {
    let mut after_seq = 0i64;
    loop {
        let rows = sqlx::query(
            "SELECT seq, at_ms, actor, role, organisation, session_id, client_app, action,
                    patient_id, resource_type, resource_id, outcome, reason, purpose_of_use,
                    request_id, source_ip, user_agent
             FROM main.audit_events WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after_seq)
        .bind(i64::from(limits::AUDIT_PAGE_ROWS_MAX))
        .fetch_all(&mut *connection)
        .await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after_seq = last.try_get("seq")?;
        let corrupt = |detail: String| StoreError::Corrupt {
            table: "audit_events",
            detail,
        };
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let action: String = row.try_get("action")?;
            let outcome: String = row.try_get("outcome")?;
            let patient: Option<uuid::Uuid> = row.try_get("patient_id")?;
            let event = AuditEvent {
                at_ms: row.try_get("at_ms")?,
                actor: row.try_get("actor")?,
                role: row.try_get("role")?,
                organisation: row.try_get("organisation")?,
                session: row.try_get("session_id")?,
                client_app: row.try_get("client_app")?,
                action: action.parse().map_err(|e| corrupt(format!("{e}")))?,
                patient: patient.map(PatientId::from_uuid),
                resource_type: row.try_get("resource_type")?,
                resource_id: row.try_get("resource_id")?,
                outcome: outcome.parse().map_err(|e| corrupt(format!("{e}")))?,
                reason: row.try_get("reason")?,
                purpose_of_use: row.try_get("purpose_of_use")?,
                origin: haven_audit::RequestOrigin {
                    request_id: row.try_get("request_id")?,
                    source_ip: row.try_get("source_ip")?,
                    user_agent: row.try_get("user_agent")?,
                },
            };
            entries.push((row.try_get::<i64, _>("seq")?, event));
        }
        for chunk in entries.chunks(AUDIT_ROWS_PER_STATEMENT) {
            let mut sql = QueryBuilder::<sqlx::Sqlite>::new(format!(
                "INSERT OR IGNORE INTO audit_file.audit_events (seq, {}) ",
                crate::AUDIT_INSERT_COLUMNS
            ));
            sql.push_values(chunk, |mut row, (seq, event)| {
                row.push_bind(*seq);
                crate::push_audit_values(&mut row, event);
            });
            sql.build().execute(&mut *connection).await?;
        }
    }
}

#[derive(Debug)]
enum WriteOutcome {
    Done,
    Updated(UpdateOutcome),
    Changed(bool),
    Count(u64),
    SystemKey(StoredSystemKey),
    Redeemed(crate::Redeemed),
    Challenge(Option<crate::StoredChallenge>),
    Resources(Result<Vec<i64>, crate::fhir::WriteConflict>),
    SubjectKey(StoredSubjectKey),
    MessagesDeleted(crate::messaging::MessagesDeleted),
    GuestRedeemed(Option<uuid::Uuid>),
}

#[derive(Debug)]
struct WriteJob {
    op: WriteOp,
    reply: oneshot::Sender<StoreResult<WriteOutcome>>,
}

/// The group-commit loop; ends when every `SqliteStore` clone has been dropped.
async fn run_writer(mut connection: SqliteConnection, mut queue: mpsc::Receiver<WriteJob>) {
    let mut batch: Vec<WriteJob> = Vec::with_capacity(limits::GROUP_COMMIT_WRITES_MAX);
    while let Some(first) = queue.recv().await {
        batch.push(first);
        while batch.len() < limits::GROUP_COMMIT_WRITES_MAX {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Destroyed keys and messages deleted by retention must leave the WAL as well.
        let purged = batch.iter().any(|job| match &job.op {
            WriteOp::ShredSubject { .. } => true,
            WriteOp::Messaging(op) => op.purges(),
            // Chunks of a deleted message attachment (and of unfinished uploads).
            WriteOp::DeleteOrphanChunks(_) => true,
            _ => false,
        });
        match commit(&mut connection, &mut batch).await {
            Ok(results) => {
                for (job, result) in batch.drain(..).zip(results) {
                    // A caller that gave up (its request was cancelled) no longer listens.
                    let _ = job.reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, writes = batch.len(), "group commit failed");
                let message = error.to_string();
                for job in batch.drain(..) {
                    let _ = job
                        .reply
                        .send(Err(StoreError::Database(sqlx::Error::Protocol(format!(
                            "group commit failed: {message}"
                        )))));
                }
            }
        }
        if purged {
            // Push the overwritten pages out of the WAL so what was destroyed is gone from
            // every file, not just from the main database.
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut connection)
                .await
            {
                tracing::warn!(%error, "checkpoint after a purge failed");
            }
        }
    }
}

/// Commits a batch: one made only of messages as a transaction of their own
/// ([`messaging::insert_messages`], two round trips to sqlx's worker thread: messages are
/// the records' writer's hot path), anything else (or messages whose batch failed) with
/// [`commit_batch`].
async fn commit(
    connection: &mut SqliteConnection,
    batch: &mut [WriteJob],
) -> StoreResult<Vec<StoreResult<WriteOutcome>>> {
    let messages: Vec<&crate::messaging::NewMessage> = batch
        .iter()
        .filter_map(|job| job.op.new_message())
        .collect();
    if messages.len() == batch.len() {
        match messaging::insert_messages(connection, &messages, messaging::Framing::Transaction)
            .await?
        {
            messaging::StoredTogether::Answered(results) => return Ok(results),
            messaging::StoredTogether::RolledBack(error) => {
                tracing::warn!(%error, "a batch of messages failed; retrying one by one");
            }
        }
    }
    commit_batch(connection, batch).await
}

/// Applies every job in its own savepoint, so one failing write does not undo the others,
/// then commits once. Returns one result per job, in order.
///
/// Audit appends come first and together: every read appends an entry, so they dominate the
/// queue, and writing them as a few multi-row INSERTs costs one statement per
/// [`AUDIT_ROWS_PER_STATEMENT`] entries instead of three (savepoint, insert, release) per
/// entry. Should that fail, each append is retried alone so only the faulty one fails.
/// Messages are stored together the same way ([`messaging::insert_messages`]). Writes of
/// one batch are concurrent (none was acknowledged before the others were queued), so
/// applying these groups ahead of the batch's other writes is an order they could have
/// arrived in.
async fn commit_batch(
    connection: &mut SqliteConnection,
    batch: &mut [WriteJob],
) -> StoreResult<Vec<StoreResult<WriteOutcome>>> {
    let mut transaction = connection.begin().await?;
    let mut results: Vec<Option<StoreResult<WriteOutcome>>> = batch.iter().map(|_| None).collect();

    let audit_jobs: Vec<usize> = batch
        .iter()
        .enumerate()
        .filter(|(_, job)| matches!(job.op, WriteOp::AppendAudit(_)))
        .map(|(index, _)| index)
        .collect();
    if audit_jobs.len() > 1 {
        let events: Vec<&AuditEvent> = audit_jobs
            .iter()
            .filter_map(|&index| match &batch[index].op {
                WriteOp::AppendAudit(events) => Some(events.iter()),
                _ => None,
            })
            .flatten()
            .collect();
        let mut savepoint = (*transaction).begin().await?;
        match insert_audit_rows(&mut savepoint, &events).await {
            Ok(()) => {
                savepoint.commit().await?;
                for index in audit_jobs {
                    results[index] = Some(Ok(WriteOutcome::Done));
                }
            }
            Err(error) => {
                tracing::warn!(%error, "batched audit append failed; retrying one by one");
                savepoint.rollback().await?;
            }
        }
    }

    // Messages next, also together (`messaging::insert_messages`): sending is the hot path
    // of the records' writer. Should that fail, each is retried alone below.
    let message_jobs: Vec<usize> = batch
        .iter()
        .enumerate()
        .filter(|(_, job)| job.op.new_message().is_some())
        .map(|(index, _)| index)
        .collect();
    if message_jobs.len() > 1 {
        let messages: Vec<&crate::messaging::NewMessage> = message_jobs
            .iter()
            .filter_map(|&index| batch[index].op.new_message())
            .collect();
        // Its own savepoint, folded into its commands; an `Err` here means that savepoint
        // could not be rolled back, and the whole batch fails.
        match messaging::insert_messages(&mut transaction, &messages, messaging::Framing::Savepoint)
            .await?
        {
            messaging::StoredTogether::Answered(outcomes) => {
                for (index, outcome) in message_jobs.into_iter().zip(outcomes) {
                    results[index] = Some(outcome);
                }
            }
            messaging::StoredTogether::RolledBack(error) => {
                tracing::warn!(%error, "batched message insert failed; retrying one by one");
            }
        }
    }

    for (job, result) in batch.iter().zip(results.iter_mut()) {
        if result.is_some() {
            continue;
        }
        let mut savepoint = (*transaction).begin().await?;
        let outcome = apply(&mut savepoint, &job.op).await;
        if outcome.is_ok() {
            savepoint.commit().await?;
        } else {
            savepoint.rollback().await?;
        }
        *result = Some(outcome);
    }
    transaction.commit().await?;
    Ok(results
        .into_iter()
        .map(|result| result.unwrap_or(Err(StoreError::Closed)))
        .collect())
}

/// Rows per multi-row audit INSERT: 17 parameters each stays far below SQLite's limit of
/// 32,766 bound parameters per statement.
const AUDIT_ROWS_PER_STATEMENT: usize = 256;
/// Audit-tree rows per multi-row insert (three bound parameters each).
const TREE_INSERT_ROWS_PER_STATEMENT: usize = 1000;

async fn insert_audit_rows(
    connection: &mut SqliteConnection,
    events: &[&AuditEvent],
) -> StoreResult<()> {
    for chunk in events.chunks(AUDIT_ROWS_PER_STATEMENT) {
        let mut sql = QueryBuilder::<sqlx::Sqlite>::new(format!(
            "INSERT INTO audit_events ({}) ",
            crate::AUDIT_INSERT_COLUMNS
        ));
        sql.push_values(chunk, |mut row, event| {
            crate::push_audit_values(&mut row, event)
        });
        sql.build().execute(&mut *connection).await?;
    }
    Ok(())
}

async fn apply(connection: &mut SqliteConnection, op: &WriteOp) -> StoreResult<WriteOutcome> {
    match op {
        WriteOp::InsertPatient(patient) => {
            // The patient row first: after crypto-shredding the subject key is gone but the
            // id stays taken, and reusing it must be `AlreadyExists` too.
            let inserted = sqlx::query(
                "INSERT INTO patients (id, version, sealed, created_at_ms, updated_at_ms)
                 VALUES (?, 1, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            )
            .bind(patient.id.as_uuid())
            .bind(&patient.sealed)
            .bind(patient.now_ms)
            .bind(patient.now_ms)
            .execute(&mut *connection)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(StoreError::AlreadyExists);
            }
            let key = &patient.subject_key;
            let inserted = sqlx::query(
                "INSERT INTO subject_keys (subject_id, key_id, root_key_id, wrapped, created_at_ms)
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(patient.id.as_uuid())
            .bind(&key.key_id)
            .bind(&key.root_key_id)
            .bind(&key.wrapped)
            .bind(patient.now_ms)
            .execute(&mut *connection)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(StoreError::AlreadyExists);
            }
            insert_search(connection, patient.id, &patient.search).await?;
            Ok(WriteOutcome::Done)
        }
        WriteOp::UpdatePatient(update) => {
            let changed = sqlx::query(
                "UPDATE patients SET version = version + 1, sealed = ?, updated_at_ms = ?
                 WHERE id = ? AND version = ?",
            )
            .bind(&update.sealed)
            .bind(update.now_ms)
            .bind(update.id.as_uuid())
            .bind(update.expected_version)
            .execute(&mut *connection)
            .await?;
            if changed.rows_affected() == 0 {
                let current: Option<i64> =
                    sqlx::query_scalar("SELECT version FROM patients WHERE id = ?")
                        .bind(update.id.as_uuid())
                        .fetch_optional(&mut *connection)
                        .await?;
                return Ok(WriteOutcome::Updated(match current {
                    Some(current) => UpdateOutcome::VersionMismatch { current },
                    None => UpdateOutcome::NotFound,
                }));
            }
            sqlx::query("DELETE FROM patient_search WHERE patient_id = ?")
                .bind(update.id.as_uuid())
                .execute(&mut *connection)
                .await?;
            insert_search(connection, update.id, &update.search).await?;
            Ok(WriteOutcome::Updated(UpdateOutcome::Updated {
                version: update.expected_version + 1,
            }))
        }
        WriteOp::ShredSubject { subject, now_ms } => {
            let deleted = sqlx::query("DELETE FROM subject_keys WHERE subject_id = ?")
                .bind(subject.as_uuid())
                .execute(&mut *connection)
                .await?;
            sqlx::query("DELETE FROM patient_search WHERE patient_id = ?")
                .bind(subject.as_uuid())
                .execute(&mut *connection)
                .await?;
            sqlx::query(
                "DELETE FROM fhir_search WHERE (resource_type, id) IN
                     (SELECT resource_type, id FROM fhir_current WHERE patient_id = ?)",
            )
            .bind(subject.as_uuid())
            .execute(&mut *connection)
            .await?;
            sqlx::query(
                "INSERT INTO shredded_subjects (subject_id, shredded_at_ms) VALUES (?, ?)
                 ON CONFLICT DO NOTHING",
            )
            .bind(subject.as_uuid())
            .bind(now_ms)
            .execute(&mut *connection)
            .await?;
            Ok(WriteOutcome::Changed(deleted.rows_affected() > 0))
        }
        WriteOp::RewrapSubjectKey {
            previous,
            root_key_id,
            wrapped,
        } => {
            let changed = sqlx::query(
                "UPDATE subject_keys SET root_key_id = ?, wrapped = ?
                 WHERE subject_id = ? AND key_id = ? AND wrapped = ?",
            )
            .bind(root_key_id)
            .bind(wrapped)
            .bind(previous.subject.as_uuid())
            .bind(&previous.key_id)
            .bind(&previous.wrapped)
            .execute(&mut *connection)
            .await?;
            Ok(WriteOutcome::Changed(changed.rows_affected() == 1))
        }
        WriteOp::PutSystemKeyIfAbsent { key, now_ms } => {
            sqlx::query(
                "INSERT INTO system_keys (name, root_key_id, wrapped, created_at_ms)
                 VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
            )
            .bind(&key.name)
            .bind(&key.root_key_id)
            .bind(&key.wrapped)
            .bind(now_ms)
            .execute(&mut *connection)
            .await?;
            let row =
                sqlx::query("SELECT name, root_key_id, wrapped FROM system_keys WHERE name = ?")
                    .bind(&key.name)
                    .fetch_one(&mut *connection)
                    .await?;
            Ok(WriteOutcome::SystemKey(system_key_from_row(&row)?))
        }
        WriteOp::RewrapSystemKey {
            previous,
            root_key_id,
            wrapped,
        } => {
            let changed = sqlx::query(
                "UPDATE system_keys SET root_key_id = ?, wrapped = ? WHERE name = ? AND wrapped = ?",
            )
            .bind(root_key_id)
            .bind(wrapped)
            .bind(&previous.name)
            .bind(&previous.wrapped)
            .execute(&mut *connection)
            .await?;
            Ok(WriteOutcome::Changed(changed.rows_affected() == 1))
        }
        WriteOp::InsertToken(token) => {
            sqlx::query(
                "INSERT INTO api_tokens (id, token_hash, role, label, created_at_ms, expires_at_ms,
                                         revoked_at_ms, patient_id)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(token.id.as_uuid())
            .bind(&token.token_hash)
            .bind(&token.role)
            .bind(&token.label)
            .bind(token.created_at_ms)
            .bind(token.expires_at_ms)
            .bind(token.revoked_at_ms)
            .bind(token.patient.map(|p| p.as_uuid()))
            .execute(&mut *connection)
            .await?;
            Ok(WriteOutcome::Done)
        }
        WriteOp::InsertCheckpoint(checkpoint) => {
            sqlx::query(
                "INSERT INTO audit_checkpoints (size, root, note, created_at_ms) VALUES (?, ?, ?, ?)
                 ON CONFLICT (size) DO NOTHING",
            )
            .bind(i64::try_from(checkpoint.size).map_err(|_| StoreError::Corrupt {
                table: "audit_checkpoints",
                detail: "size beyond i64".into(),
            })?)
            .bind(&checkpoint.root)
            .bind(&checkpoint.note)
            .bind(checkpoint.created_at_ms)
            .execute(&mut *connection)
            .await?;
            Ok(WriteOutcome::Done)
        }
        WriteOp::AppendTree { leaves, nodes } => {
            // Multi-row inserts, in chunks that stay well under SQLite's bound-parameter limit.
            for chunk in leaves.chunks(TREE_INSERT_ROWS_PER_STATEMENT) {
                let mut insert =
                    QueryBuilder::new("INSERT INTO audit_tree_leaves (idx, seq, hash) ");
                insert.push_values(chunk, |mut row, leaf| {
                    row.push_bind(i64::try_from(leaf.index).unwrap_or(i64::MAX))
                        .push_bind(leaf.seq)
                        .push_bind(leaf.hash.to_vec());
                });
                insert.push(" ON CONFLICT DO NOTHING");
                insert.build().execute(&mut *connection).await?;
            }
            for chunk in nodes.chunks(TREE_INSERT_ROWS_PER_STATEMENT) {
                let mut insert =
                    QueryBuilder::new("INSERT INTO audit_tree_nodes (level, idx, hash) ");
                insert.push_values(chunk, |mut row, node| {
                    row.push_bind(i64::from(node.id.level))
                        .push_bind(i64::try_from(node.id.index).unwrap_or(i64::MAX))
                        .push_bind(node.hash.to_vec());
                });
                insert.push(" ON CONFLICT DO NOTHING");
                insert.build().execute(&mut *connection).await?;
            }
            Ok(WriteOutcome::Done)
        }
        WriteOp::AppendAudit(events) => {
            let events: Vec<&AuditEvent> = events.iter().collect();
            insert_audit_rows(connection, &events).await?;
            Ok(WriteOutcome::Done)
        }
        WriteOp::Identity(op) => identity::apply_identity(connection, op).await,
        WriteOp::Care(op) => care::apply_care(connection, op).await,
        WriteOp::Messaging(op) => messaging::apply_messaging(connection, op).await,
        WriteOp::Resources(writes) => fhir::apply_resource_writes(connection, writes).await,
        WriteOp::DeleteOrphanChunks(attachment) => {
            let deleted = sqlx::query(
                "DELETE FROM attachment_chunks WHERE attachment_id = ?1
                 AND NOT EXISTS (SELECT 1 FROM attachments WHERE id = ?1)
                 AND NOT EXISTS (SELECT 1 FROM message_attachments WHERE id = ?1)",
            )
            .bind(attachment)
            .execute(&mut *connection)
            .await?
            .rows_affected();
            Ok(WriteOutcome::Count(deleted))
        }
        WriteOp::PutChunk {
            attachment,
            index,
            sealed,
        } => {
            sqlx::query(
                "INSERT INTO attachment_chunks (attachment_id, idx, sealed) VALUES (?, ?, ?)",
            )
            .bind(attachment)
            .bind(i64::from(*index))
            .bind(sealed)
            .execute(&mut *connection)
            .await?;
            Ok(WriteOutcome::Done)
        }
        WriteOp::ReleaseResource { resource_type, id } => Ok(WriteOutcome::Changed(
            sqlx::query(
                "UPDATE fhir_current SET held = 0 WHERE resource_type = ? AND id = ? AND held = 1",
            )
            .bind(resource_type)
            .bind(id)
            .execute(&mut *connection)
            .await?
            .rows_affected()
                > 0,
        )),
        WriteOp::EndVisit(ending) => Ok(WriteOutcome::Changed(
            sqlx::query(
                "INSERT INTO visit_endings (appointment_id, organisation_id, patient_id,
                     ended_by, ended_at_ms)
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (appointment_id) DO NOTHING",
            )
            .bind(&ending.appointment)
            .bind(ending.organisation.as_uuid().as_bytes().to_vec())
            .bind(ending.patient.as_uuid().as_bytes().to_vec())
            .bind(&ending.ended_by)
            .bind(ending.ended_at_ms)
            .execute(&mut *connection)
            .await?
            .rows_affected()
                > 0,
        )),
        WriteOp::InsertGuest(guest) => {
            visits::insert_guest(&mut *connection, guest).await?;
            Ok(WriteOutcome::Done)
        }
        WriteOp::RedeemGuest {
            invitation_hash,
            session_hash,
            now_ms,
        } => Ok(WriteOutcome::GuestRedeemed(
            visits::redeem_guest(&mut *connection, invitation_hash, session_hash, *now_ms).await?,
        )),
        WriteOp::PutSubjectKeyIfAbsent { key, now_ms } => {
            sqlx::query(
                "INSERT INTO subject_keys (subject_id, key_id, root_key_id, wrapped, created_at_ms)
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (subject_id) DO NOTHING",
            )
            .bind(key.subject.as_uuid())
            .bind(&key.key_id)
            .bind(&key.root_key_id)
            .bind(&key.wrapped)
            .bind(now_ms)
            .execute(&mut *connection)
            .await?;
            let row = sqlx::query(
                "SELECT key_id, root_key_id, wrapped FROM subject_keys WHERE subject_id = ?",
            )
            .bind(key.subject.as_uuid())
            .fetch_one(&mut *connection)
            .await?;
            Ok(WriteOutcome::SubjectKey(StoredSubjectKey {
                subject: key.subject,
                key_id: row.try_get("key_id")?,
                root_key_id: row.try_get("root_key_id")?,
                wrapped: row.try_get("wrapped")?,
            }))
        }
        WriteOp::InsertAttachment(attachment) => {
            sqlx::query(
                "INSERT INTO attachments (id, patient_id, content_type, size_bytes, chunks,
                     created_by, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(attachment.id)
            .bind(attachment.patient.as_uuid())
            .bind(&attachment.content_type)
            .bind(attachment.size_bytes)
            .bind(attachment.chunks)
            .bind(&attachment.created_by)
            .bind(attachment.created_at_ms)
            .execute(&mut *connection)
            .await?;
            Ok(WriteOutcome::Done)
        }
        WriteOp::SetSiemCursor {
            name,
            after_seq,
            now_ms,
        } => {
            sqlx::query(crate::SET_SIEM_CURSOR_SQL)
                .bind(name)
                .bind(after_seq)
                .bind(now_ms)
                .execute(&mut *connection)
                .await?;
            Ok(WriteOutcome::Done)
        }
    }
}

async fn insert_search(
    connection: &mut SqliteConnection,
    patient: PatientId,
    tokens: &[SearchToken],
) -> StoreResult<()> {
    for token in tokens {
        sqlx::query(
            "INSERT INTO patient_search (kind, token, patient_id) VALUES (?, ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(token.kind.as_str())
        .bind(&token.token)
        .bind(patient.as_uuid())
        .execute(&mut *connection)
        .await?;
    }
    Ok(())
}

fn system_key_from_row(row: &SqliteRow) -> StoreResult<StoredSystemKey> {
    Ok(StoredSystemKey {
        name: row.try_get("name")?,
        root_key_id: row.try_get("root_key_id")?,
        wrapped: row.try_get("wrapped")?,
    })
}

fn unexpected(outcome: WriteOutcome) -> StoreError {
    StoreError::Corrupt {
        table: "(writer)",
        detail: format!("unexpected write outcome {outcome:?}"),
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        self.readers.ping()?;
        if self.writer.is_closed() {
            return Err(StoreError::Closed);
        }
        Ok(())
    }

    async fn insert_patient(&self, patient: NewPatient) -> StoreResult<()> {
        match self.write(WriteOp::InsertPatient(patient)).await? {
            WriteOutcome::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn update_patient(&self, update: PatientUpdate) -> StoreResult<UpdateOutcome> {
        match self.write(WriteOp::UpdatePatient(update)).await? {
            WriteOutcome::Updated(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    async fn get_patient(&self, id: PatientId) -> StoreResult<Option<StoredPatient>> {
        self.readers.get_patient(id)
    }

    async fn list_patients(&self, query: &PatientQuery) -> StoreResult<Vec<StoredPatient>> {
        self.readers.list_patients(query)
    }

    async fn shred_subject(&self, subject: PatientId, now_ms: i64) -> StoreResult<bool> {
        match self
            .write(WriteOp::ShredSubject { subject, now_ms })
            .await?
        {
            WriteOutcome::Changed(changed) => Ok(changed),
            other => Err(unexpected(other)),
        }
    }

    async fn subject_keys_not_under(
        &self,
        root_key_id: &[u8],
        limit: u32,
    ) -> StoreResult<Vec<StoredSubjectKey>> {
        self.readers.subject_keys_not_under(root_key_id, limit)
    }

    async fn rewrap_subject_key(
        &self,
        previous: &StoredSubjectKey,
        root_key_id: &[u8],
        wrapped: &[u8],
    ) -> StoreResult<bool> {
        let op = WriteOp::RewrapSubjectKey {
            previous: previous.clone(),
            root_key_id: root_key_id.to_vec(),
            wrapped: wrapped.to_vec(),
        };
        match self.write(op).await? {
            WriteOutcome::Changed(changed) => Ok(changed),
            other => Err(unexpected(other)),
        }
    }

    async fn count_keys_not_under(&self, root_key_id: &[u8]) -> StoreResult<u64> {
        self.readers.count_keys_not_under(root_key_id)
    }

    async fn root_keys_in_use(&self) -> StoreResult<Vec<Vec<u8>>> {
        self.readers.root_keys_in_use()
    }

    async fn system_key(&self, name: &str) -> StoreResult<Option<StoredSystemKey>> {
        self.readers.system_key(name)
    }

    async fn put_system_key_if_absent(
        &self,
        key: StoredSystemKey,
        now_ms: i64,
    ) -> StoreResult<StoredSystemKey> {
        match self
            .write(WriteOp::PutSystemKeyIfAbsent { key, now_ms })
            .await?
        {
            WriteOutcome::SystemKey(key) => Ok(key),
            other => Err(unexpected(other)),
        }
    }

    async fn system_keys(&self) -> StoreResult<Vec<StoredSystemKey>> {
        self.readers.system_keys()
    }

    async fn rewrap_system_key(
        &self,
        previous: &StoredSystemKey,
        root_key_id: &[u8],
        wrapped: &[u8],
    ) -> StoreResult<bool> {
        let op = WriteOp::RewrapSystemKey {
            previous: previous.clone(),
            root_key_id: root_key_id.to_vec(),
            wrapped: wrapped.to_vec(),
        };
        match self.write(op).await? {
            WriteOutcome::Changed(changed) => Ok(changed),
            other => Err(unexpected(other)),
        }
    }

    async fn insert_token(&self, token: StoredToken) -> StoreResult<()> {
        match self.write(WriteOp::InsertToken(token)).await? {
            WriteOutcome::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn token_by_hash(&self, token_hash: &[u8]) -> StoreResult<Option<StoredToken>> {
        self.readers.token_by_hash(token_hash)
    }

    async fn append_audit(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        match self.write(WriteOp::AppendAudit(events)).await? {
            WriteOutcome::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn audit_events(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<StoredAuditEvent>> {
        self.readers.audit_events(after_seq, limit)
    }

    async fn query_audit(&self, query: &AuditQuery) -> StoreResult<Vec<StoredAuditEvent>> {
        self.readers.query_audit(query)
    }

    async fn audit_leaves(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<AuditLeaf>> {
        self.readers.audit_leaves(after_seq, limit)
    }

    async fn insert_checkpoint(&self, checkpoint: StoredCheckpoint) -> StoreResult<()> {
        match self.write(WriteOp::InsertCheckpoint(checkpoint)).await? {
            WriteOutcome::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn checkpoints(&self, after_size: u64, limit: u32) -> StoreResult<Vec<StoredCheckpoint>> {
        self.readers.checkpoints(after_size, limit)
    }

    async fn latest_checkpoint(&self) -> StoreResult<Option<StoredCheckpoint>> {
        self.readers.latest_checkpoint()
    }

    async fn checkpoint_at(&self, size: u64) -> StoreResult<Option<StoredCheckpoint>> {
        self.readers.checkpoint_at(size)
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
        match self.write(WriteOp::AppendTree { leaves, nodes }).await? {
            WriteOutcome::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn tree_size(&self) -> StoreResult<u64> {
        self.readers.tree_size()
    }

    async fn tree_leaf_by_seq(&self, seq: i64) -> StoreResult<Option<TreeLeaf>> {
        self.readers.tree_leaf_by_seq(seq)
    }

    async fn tree_leaves(&self, from_index: u64, limit: u32) -> StoreResult<Vec<TreeLeaf>> {
        self.readers.tree_leaves(from_index, limit)
    }

    async fn tree_nodes(&self, ids: &[NodeId]) -> StoreResult<Vec<Option<Hash>>> {
        crate::check_rows_max(
            "audit tree hashes read at once",
            ids.len(),
            limits::TREE_NODES_READ_MAX,
        )?;
        self.readers.tree_nodes(ids)
    }

    async fn siem_cursor(&self, name: &str) -> StoreResult<Option<i64>> {
        self.readers.siem_cursor(name)
    }

    async fn set_siem_cursor(&self, name: &str, after_seq: i64, now_ms: i64) -> StoreResult<()> {
        crate::check_siem_cursor(after_seq)?;
        let op = WriteOp::SetSiemCursor {
            name: name.to_owned(),
            after_seq,
            now_ms,
        };
        match self.write(op).await? {
            WriteOutcome::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn insert_organisation(&self, organisation: StoredOrganisation) -> StoreResult<()> {
        self.identity_done(IdentityOp::InsertOrganisation(organisation))
            .await
    }

    async fn organisation(&self, id: OrganisationId) -> StoreResult<Option<StoredOrganisation>> {
        self.readers.organisation(id)
    }

    async fn organisations(&self) -> StoreResult<Vec<StoredOrganisation>> {
        self.readers.organisations()
    }

    async fn update_organisation(&self, organisation: StoredOrganisation) -> StoreResult<bool> {
        self.identity_changed(IdentityOp::UpdateOrganisation(organisation))
            .await
    }

    async fn insert_user(&self, user: NewUser) -> StoreResult<()> {
        self.identity_done(IdentityOp::InsertUser(user)).await
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<StoredUser>> {
        self.readers.user(id)
    }

    async fn user_by_login(&self, login_index: &[u8]) -> StoreResult<Option<StoredUser>> {
        self.readers.user_by_login(login_index)
    }

    async fn organisation_users(
        &self,
        organisation: OrganisationId,
    ) -> StoreResult<Vec<StoredUser>> {
        self.readers.organisation_users(organisation)
    }

    async fn set_user_disabled(
        &self,
        user: UserId,
        disabled_at_ms: Option<i64>,
    ) -> StoreResult<bool> {
        self.identity_changed(IdentityOp::SetUserDisabled {
            user,
            disabled_at_ms,
        })
        .await
    }

    async fn set_password(
        &self,
        user: UserId,
        password_hash: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.identity_changed(IdentityOp::SetPassword {
            user,
            password_hash: password_hash.to_owned(),
            now_ms,
        })
        .await
        .map(drop)
    }

    async fn set_totp(
        &self,
        user: UserId,
        totp_sealed: Option<Vec<u8>>,
        enabled: bool,
    ) -> StoreResult<()> {
        self.identity_changed(IdentityOp::SetTotp {
            user,
            totp_sealed,
            enabled,
        })
        .await
        .map(drop)
    }

    async fn start_totp_setup(&self, user: UserId, totp_sealed: Vec<u8>) -> StoreResult<bool> {
        self.identity_changed(IdentityOp::StartTotpSetup { user, totp_sealed })
            .await
    }

    async fn advance_totp_step(&self, user: UserId, step: i64) -> StoreResult<bool> {
        self.identity_changed(IdentityOp::AdvanceTotpStep { user, step })
            .await
    }

    async fn record_login_failure(&self, user: UserId, locked_until_ms: i64) -> StoreResult<()> {
        self.identity_changed(IdentityOp::RecordLoginFailure {
            user,
            locked_until_ms,
        })
        .await
        .map(drop)
    }

    async fn claim_guess(
        &self,
        user: UserId,
        now_ms: i64,
        lock: crate::GuessLock,
    ) -> StoreResult<bool> {
        self.identity_changed(IdentityOp::ClaimGuess { user, now_ms, lock })
            .await
    }

    async fn reset_login_failures(&self, user: UserId) -> StoreResult<()> {
        self.identity_changed(IdentityOp::ResetLoginFailures(user))
            .await
            .map(drop)
    }

    async fn insert_session(&self, session: StoredSession) -> StoreResult<()> {
        self.identity_done(IdentityOp::InsertSession(session)).await
    }

    async fn session_by_hash(&self, token_hash: &[u8]) -> StoreResult<Option<SessionRecord>> {
        self.readers.session_by_hash(token_hash)
    }

    async fn touch_session(&self, id: SessionId, now_ms: i64) -> StoreResult<()> {
        self.identity_changed(IdentityOp::TouchSession { id, now_ms })
            .await
            .map(drop)
    }

    async fn reauthenticate_session(
        &self,
        id: SessionId,
        now_ms: i64,
        mfa: bool,
    ) -> StoreResult<()> {
        self.identity_changed(IdentityOp::ReauthenticateSession { id, now_ms, mfa })
            .await
            .map(drop)
    }

    async fn revoke_session(&self, id: SessionId, now_ms: i64, reason: &str) -> StoreResult<bool> {
        self.identity_changed(IdentityOp::RevokeSession {
            id,
            now_ms,
            reason: reason.to_owned(),
        })
        .await
    }

    async fn revoke_user_sessions(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        now_ms: i64,
        reason: &str,
    ) -> StoreResult<u64> {
        let op = IdentityOp::RevokeUserSessions {
            user,
            keep,
            now_ms,
            reason: reason.to_owned(),
        };
        match self.write(WriteOp::Identity(Box::new(op))).await? {
            WriteOutcome::Count(count) => Ok(count),
            other => Err(unexpected(other)),
        }
    }

    async fn user_sessions(&self, user: UserId, now_ms: i64) -> StoreResult<Vec<StoredSession>> {
        self.readers.user_sessions(user, now_ms)
    }

    async fn insert_invitation(&self, invitation: StoredInvitation) -> StoreResult<()> {
        self.identity_done(IdentityOp::InsertInvitation(invitation))
            .await
    }

    async fn invitation_by_hash(&self, token_hash: &[u8]) -> StoreResult<Option<StoredInvitation>> {
        self.readers.invitation_by_hash(token_hash)
    }

    async fn redeem_invitation(
        &self,
        invitation: InvitationId,
        now_ms: i64,
        user: NewUser,
    ) -> StoreResult<Redeemed> {
        let op = IdentityOp::RedeemInvitation {
            invitation,
            now_ms,
            user,
        };
        match self.write(WriteOp::Identity(Box::new(op))).await {
            Ok(WriteOutcome::Redeemed(redeemed)) => Ok(redeemed),
            Err(StoreError::AlreadyExists) => Ok(Redeemed::LoginTaken),
            Ok(other) => Err(unexpected(other)),
            Err(error) => Err(error),
        }
    }

    async fn replace_recovery_codes(
        &self,
        user: UserId,
        code_hashes: Vec<Vec<u8>>,
    ) -> StoreResult<()> {
        crate::check_rows_max(
            "recovery codes",
            code_hashes.len(),
            limits::RECOVERY_CODES_MAX,
        )?;
        self.identity_done(IdentityOp::ReplaceRecoveryCodes { user, code_hashes })
            .await
    }

    async fn use_recovery_code(
        &self,
        user: UserId,
        code_hash: &[u8],
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.identity_changed(IdentityOp::UseRecoveryCode {
            user,
            code_hash: code_hash.to_vec(),
            now_ms,
        })
        .await
    }

    async fn recovery_codes_left(&self, user: UserId) -> StoreResult<u64> {
        self.readers.recovery_codes_left(user)
    }

    async fn insert_passkey(&self, passkey: crate::StoredPasskey) -> StoreResult<()> {
        self.identity_done(IdentityOp::InsertPasskey(passkey)).await
    }

    async fn passkey(&self, credential_id: &[u8]) -> StoreResult<Option<crate::StoredPasskey>> {
        self.readers.passkey(credential_id)
    }

    async fn user_passkeys(&self, user: UserId) -> StoreResult<Vec<crate::StoredPasskey>> {
        self.readers.user_passkeys(user)
    }

    async fn record_passkey_use(
        &self,
        credential_id: &[u8],
        previous_sign_count: i64,
        new_sign_count: i64,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.identity_changed(IdentityOp::RecordPasskeyUse {
            credential_id: credential_id.to_vec(),
            previous_sign_count,
            new_sign_count,
            now_ms,
        })
        .await
    }

    async fn delete_passkey(&self, user: UserId, credential_id: &[u8]) -> StoreResult<bool> {
        self.identity_changed(IdentityOp::DeletePasskey {
            user,
            credential_id: credential_id.to_vec(),
        })
        .await
    }

    async fn insert_challenge(&self, challenge: crate::StoredChallenge) -> StoreResult<()> {
        self.identity_done(IdentityOp::InsertChallenge(challenge))
            .await
    }

    async fn take_challenge(
        &self,
        id: uuid::Uuid,
        now_ms: i64,
    ) -> StoreResult<Option<crate::StoredChallenge>> {
        match self
            .write(WriteOp::Identity(Box::new(IdentityOp::TakeChallenge {
                id,
                now_ms,
            })))
            .await?
        {
            WriteOutcome::Challenge(taken) => Ok(taken),
            other => Err(unexpected(other)),
        }
    }
    async fn care_team(&self, patient: PatientId) -> StoreResult<Vec<crate::care::CareTeamMember>> {
        self.readers.care_team(patient)
    }

    async fn add_care_team_member(&self, member: crate::care::CareTeamMember) -> StoreResult<bool> {
        self.care_changed(care::CareOp::AddMember(member)).await
    }

    async fn remove_care_team_member(&self, patient: PatientId, user: UserId) -> StoreResult<bool> {
        self.care_changed(care::CareOp::RemoveMember { patient, user })
            .await
    }

    async fn relations(
        &self,
        user: UserId,
        patients: &[PatientId],
        now_ms: i64,
    ) -> StoreResult<Vec<crate::care::Relations>> {
        self.readers.relations(user, patients, now_ms)
    }

    async fn insert_break_glass(&self, grant: crate::care::StoredBreakGlass) -> StoreResult<()> {
        self.care_done(care::CareOp::InsertBreakGlass(grant)).await
    }

    async fn break_glass(
        &self,
        id: haven_domain::BreakGlassId,
    ) -> StoreResult<Option<crate::care::StoredBreakGlass>> {
        self.readers.break_glass(id)
    }

    async fn break_glass_grants(
        &self,
        query: &crate::care::BreakGlassQuery,
    ) -> StoreResult<Vec<crate::care::StoredBreakGlass>> {
        self.readers.break_glass_grants(query)
    }

    async fn review_break_glass(&self, review: crate::care::BreakGlassReview) -> StoreResult<bool> {
        self.care_changed(care::CareOp::Review(review)).await
    }

    async fn insert_notifications(
        &self,
        notifications: Vec<crate::care::StoredNotification>,
    ) -> StoreResult<()> {
        self.care_done(care::CareOp::InsertNotifications(notifications))
            .await
    }

    async fn notifications(
        &self,
        user: UserId,
    ) -> StoreResult<Vec<crate::care::StoredNotification>> {
        self.readers.notifications(user)
    }

    async fn mark_notification_read(
        &self,
        user: UserId,
        id: haven_domain::NotificationId,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.care_changed(care::CareOp::MarkRead { user, id, now_ms })
            .await
    }

    async fn resolve_notifications(&self, subject: uuid::Uuid, now_ms: i64) -> StoreResult<()> {
        self.care_changed(care::CareOp::Resolve { subject, now_ms })
            .await
            .map(drop)
    }

    async fn insert_delegation(
        &self,
        delegation: crate::care::StoredDelegation,
    ) -> StoreResult<()> {
        self.care_done(care::CareOp::InsertDelegation(delegation))
            .await
    }

    async fn patient_delegations(
        &self,
        patient: PatientId,
        now_ms: i64,
    ) -> StoreResult<Vec<crate::care::StoredDelegation>> {
        self.readers.patient_delegations(patient, now_ms)
    }

    async fn delegation_by_offer(
        &self,
        offer_hash: &[u8],
    ) -> StoreResult<Option<crate::care::StoredDelegation>> {
        self.readers.delegation_by_offer(offer_hash)
    }

    async fn accept_delegation(
        &self,
        id: haven_domain::DelegationId,
        proxy: UserId,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.care_changed(care::CareOp::AcceptDelegation { id, proxy, now_ms })
            .await
    }

    async fn revoke_delegation(
        &self,
        patient: PatientId,
        id: haven_domain::DelegationId,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.care_changed(care::CareOp::RevokeDelegation {
            patient,
            id,
            now_ms,
        })
        .await
    }

    async fn proxy_delegations(
        &self,
        proxy: UserId,
        now_ms: i64,
    ) -> StoreResult<Vec<crate::care::StoredDelegation>> {
        self.readers.proxy_delegations(proxy, now_ms)
    }

    async fn end_visit(&self, ending: crate::visits::VisitEnding) -> StoreResult<bool> {
        match self.write(WriteOp::EndVisit(ending)).await? {
            WriteOutcome::Changed(changed) => Ok(changed),
            other => Err(unexpected(other)),
        }
    }

    async fn visit_ending(
        &self,
        appointment: &str,
    ) -> StoreResult<Option<crate::visits::VisitEnding>> {
        self.readers.visit_ending(appointment)
    }

    async fn insert_visit_guest(&self, guest: crate::visits::StoredGuest) -> StoreResult<()> {
        match self.write(WriteOp::InsertGuest(Box::new(guest))).await? {
            WriteOutcome::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn redeem_visit_guest(
        &self,
        invitation_hash: &[u8],
        session_hash: &[u8],
        now_ms: i64,
    ) -> StoreResult<Option<crate::visits::StoredGuest>> {
        let redeemed = self
            .write(WriteOp::RedeemGuest {
                invitation_hash: invitation_hash.to_vec(),
                session_hash: session_hash.to_vec(),
                now_ms,
            })
            .await?;
        match redeemed {
            WriteOutcome::GuestRedeemed(Some(id)) => self.readers.visit_guest(id),
            WriteOutcome::GuestRedeemed(None) => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    async fn visit_guest_by_session(
        &self,
        session_hash: &[u8],
    ) -> StoreResult<Option<crate::visits::StoredGuest>> {
        self.readers.visit_guest_by_session(session_hash)
    }

    async fn visit_guests(
        &self,
        appointment: &str,
    ) -> StoreResult<Vec<crate::visits::StoredGuest>> {
        self.readers.visit_guests(appointment)
    }

    async fn insert_device(&self, device: crate::messaging::StoredDevice) -> StoreResult<bool> {
        self.messaging_changed(messaging::MessagingOp::InsertDevice(device))
            .await
    }

    async fn remove_device(
        &self,
        user: UserId,
        device: uuid::Uuid,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.messaging_changed(messaging::MessagingOp::RemoveDevice {
            user,
            device,
            now_ms,
        })
        .await
    }

    async fn devices_of(
        &self,
        users: &[UserId],
    ) -> StoreResult<Vec<crate::messaging::StoredDevice>> {
        self.readers.devices_of(users)
    }

    async fn device(&self, id: uuid::Uuid) -> StoreResult<Option<crate::messaging::StoredDevice>> {
        self.readers.device(id)
    }

    async fn insert_thread(
        &self,
        thread: crate::messaging::StoredThread,
        participants: Vec<crate::messaging::Participant>,
    ) -> StoreResult<()> {
        if participants.len() > limits::THREAD_PARTICIPANTS_MAX as usize {
            return Err(StoreError::LimitExceeded {
                what: "participants of a conversation",
                max: limits::THREAD_PARTICIPANTS_MAX as usize,
            });
        }
        self.messaging_done(messaging::MessagingOp::InsertThread(thread, participants))
            .await
    }

    async fn thread(&self, id: uuid::Uuid) -> StoreResult<Option<crate::messaging::StoredThread>> {
        self.readers.thread(id)
    }

    async fn thread_participants(
        &self,
        id: uuid::Uuid,
    ) -> StoreResult<Vec<crate::messaging::Participant>> {
        self.readers.thread_participants(id)
    }

    async fn conversation_devices(
        &self,
        id: uuid::Uuid,
    ) -> StoreResult<Option<crate::messaging::ConversationDevices>> {
        self.readers.conversation_devices(id)
    }

    async fn add_participant(
        &self,
        participant: crate::messaging::Participant,
    ) -> StoreResult<bool> {
        self.messaging_changed(messaging::MessagingOp::AddParticipant(participant))
            .await
    }

    async fn remove_participant(
        &self,
        thread: uuid::Uuid,
        user: UserId,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.messaging_changed(messaging::MessagingOp::RemoveParticipant {
            thread,
            user,
            now_ms,
        })
        .await
    }

    async fn user_threads(
        &self,
        user: UserId,
    ) -> StoreResult<Vec<crate::messaging::ThreadSummary>> {
        self.readers.user_threads(user)
    }

    async fn insert_message(
        &self,
        message: crate::messaging::NewMessage,
    ) -> StoreResult<crate::messaging::SendOutcome> {
        self.send_message(message).await
    }

    async fn thread_messages(
        &self,
        thread: uuid::Uuid,
        device: uuid::Uuid,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<crate::messaging::StoredMessage>> {
        self.readers
            .thread_messages(thread, device, after_seq, limit)
    }

    async fn mark_read(
        &self,
        thread: uuid::Uuid,
        user: UserId,
        seq: i64,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.messaging_changed(messaging::MessagingOp::MarkRead {
            thread,
            user,
            seq,
            now_ms,
        })
        .await
    }

    async fn insert_message_attachment(
        &self,
        attachment: crate::messaging::StoredMessageAttachment,
    ) -> StoreResult<()> {
        self.messaging_done(messaging::MessagingOp::InsertAttachment(attachment))
            .await
    }

    async fn message_attachment(
        &self,
        id: uuid::Uuid,
    ) -> StoreResult<Option<crate::messaging::StoredMessageAttachment>> {
        self.readers.message_attachment(id)
    }

    async fn delete_messages_before(
        &self,
        organisation: OrganisationId,
        before_ms: i64,
        limit: u32,
    ) -> StoreResult<crate::messaging::MessagesDeleted> {
        self.delete_messages(organisation, before_ms, limit).await
    }

    async fn write_resources(
        &self,
        writes: Vec<crate::fhir::ResourceWrite>,
    ) -> StoreResult<Result<Vec<i64>, crate::fhir::WriteConflict>> {
        crate::fhir::check_writes(&writes)?;
        match self.write(WriteOp::Resources(writes)).await {
            Ok(WriteOutcome::Resources(outcome)) => Ok(outcome),
            Ok(other) => Err(unexpected(other)),
            // Rolled back whole by the writer.
            Err(StoreError::ResourceConflict(conflict)) => Ok(Err(conflict)),
            Err(error) => Err(error),
        }
    }

    async fn resource(
        &self,
        resource_type: &str,
        id: &str,
    ) -> StoreResult<Option<crate::fhir::StoredResource>> {
        self.readers.resource(resource_type, id)
    }

    async fn release_resource(&self, resource_type: &str, id: &str) -> StoreResult<bool> {
        match self
            .write(WriteOp::ReleaseResource {
                resource_type: resource_type.to_owned(),
                id: id.to_owned(),
            })
            .await?
        {
            WriteOutcome::Changed(changed) => Ok(changed),
            other => Err(unexpected(other)),
        }
    }

    async fn related_patients(
        &self,
        user: UserId,
        now_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<PatientId>> {
        self.readers.related_patients(user, now_ms, limit)
    }

    async fn put_subject_key_if_absent(
        &self,
        key: StoredSubjectKey,
        now_ms: i64,
    ) -> StoreResult<StoredSubjectKey> {
        match self
            .write(WriteOp::PutSubjectKeyIfAbsent { key, now_ms })
            .await?
        {
            WriteOutcome::SubjectKey(key) => Ok(key),
            other => Err(unexpected(other)),
        }
    }

    async fn put_attachment_chunk(
        &self,
        attachment: uuid::Uuid,
        index: u32,
        sealed: Vec<u8>,
    ) -> StoreResult<()> {
        match self
            .write(WriteOp::PutChunk {
                attachment,
                index,
                sealed,
            })
            .await?
        {
            WriteOutcome::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn attachment_chunk(
        &self,
        attachment: uuid::Uuid,
        index: u32,
    ) -> StoreResult<Option<Vec<u8>>> {
        self.readers.attachment_chunk(attachment, index)
    }

    async fn chunked_attachments(
        &self,
        after: Option<uuid::Uuid>,
        before: uuid::Uuid,
        limit: u32,
    ) -> StoreResult<Vec<uuid::Uuid>> {
        self.readers.chunked_attachments(after, before, limit)
    }

    async fn delete_orphan_chunks(&self, attachment: uuid::Uuid) -> StoreResult<u64> {
        match self.write(WriteOp::DeleteOrphanChunks(attachment)).await? {
            WriteOutcome::Count(deleted) => Ok(deleted),
            other => Err(unexpected(other)),
        }
    }

    async fn insert_attachment(
        &self,
        attachment: crate::fhir::StoredAttachment,
    ) -> StoreResult<()> {
        match self.write(WriteOp::InsertAttachment(attachment)).await? {
            WriteOutcome::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn attachment(
        &self,
        id: uuid::Uuid,
    ) -> StoreResult<Option<crate::fhir::StoredAttachment>> {
        self.readers.attachment(id)
    }

    async fn resource_version(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> StoreResult<Option<crate::fhir::StoredResource>> {
        self.readers.resource_version(resource_type, id, version)
    }

    async fn search_resources(
        &self,
        query: &crate::fhir::ResourceQuery,
    ) -> StoreResult<Vec<crate::fhir::StoredResource>> {
        self.readers.search_resources(query)
    }

    async fn resource_history(
        &self,
        query: &crate::fhir::HistoryQuery,
    ) -> StoreResult<Vec<crate::fhir::StoredResource>> {
        self.readers.resource_history(query)
    }
}

impl SqliteStore {
    async fn identity_done(&self, op: IdentityOp) -> StoreResult<()> {
        match self.write(WriteOp::Identity(Box::new(op))).await? {
            WriteOutcome::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn identity_changed(&self, op: IdentityOp) -> StoreResult<bool> {
        match self.write(WriteOp::Identity(Box::new(op))).await? {
            WriteOutcome::Changed(changed) => Ok(changed),
            other => Err(unexpected(other)),
        }
    }
}

/// Parses a `sqlite://path` or `sqlite:path` URL into a file path.
pub fn path_from_url(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty())
        .then(|| PathBuf::from_str(path).ok())
        .flatten()
}
