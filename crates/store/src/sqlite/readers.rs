//! Reads for the embedded engine, run inline on the calling task.
//!
//! Reads are indexed look-ups in a local file, usually served from SQLite's page cache in
//! microseconds. Running them through sqlx's per-connection worker thread cost two thread
//! hand-offs per query and measurably more in context switches than in SQLite itself, so
//! reads use plain `rusqlite` connections, taken from a small idle list and run where the
//! caller is. Writes stay with the group-commit writer. WAL mode lets these readers proceed
//! while the writer commits; each read sees the last committed state.
//!
//! Each connection attaches the audit file as schema `audit`. The records' file holds no
//! audit tables, so unqualified audit table names resolve there; a statement opens a read
//! transaction only on the files it touches, and each file has its own page cache, so a
//! commit to the audit log leaves the cached pages of records valid.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use haven_audit::StoredAuditEvent;
use haven_domain::{PatientId, TokenId};
use rusqlite::{
    Connection, DatabaseName, OpenFlags, OptionalExtension, Row, params, params_from_iter,
};
use uuid::Uuid;

use haven_audit::merkle::{Hash, NodeId};

use crate::{
    AuditBind, AuditLeaf, AuditQuery, PatientQuery, StoreError, StoreResult, StoredCheckpoint,
    StoredPatient, StoredSubjectKey, StoredSystemKey, StoredToken, TreeLeaf, limits,
};

/// Idle read connections kept open; more are opened when all are busy and closed after.
const IDLE_READ_CONNECTIONS_MAX: usize = 4;
const BUSY_TIMEOUT_SECS: u64 = 5;
/// Prepared statements cached per connection.
const STATEMENT_CACHE_CAPACITY: usize = 32;
/// Each read connection's page cache, in KiB (SQLite's negative `cache_size`). Reads are
/// look-ups spread over the whole file; with SQLite's default 2 MiB even the B-trees'
/// interior pages did not stay cached, and a FHIR read took about twenty `pread`s, a sixth
/// of its CPU time. 16 MiB holds the interior pages of a file of several GiB. A commit by
/// another connection empties the cache (WAL mode), so this pays off between writes. The
/// audit file keeps SQLite's default: it is mostly scanned in order (verification, exports),
/// which a larger cache only made slower (a tenth, measured on an 823,191-entry log).
const READER_CACHE_KIB: i64 = 16 * 1024;

#[derive(Debug)]
pub(super) struct Readers {
    path: PathBuf,
    audit_path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

pub(super) fn uuid_from(bytes: Vec<u8>) -> rusqlite::Result<Uuid> {
    Uuid::from_slice(&bytes).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })
}

const PATIENT_COLUMNS: &str = "SELECT p.id, p.version, p.sealed, p.created_at_ms, p.updated_at_ms,
        k.key_id, k.root_key_id, k.wrapped
     FROM patients p LEFT JOIN subject_keys k ON k.subject_id = p.id";

fn patient(row: &Row<'_>) -> rusqlite::Result<StoredPatient> {
    let id = PatientId::from_uuid(uuid_from(row.get(0)?)?);
    let key_id: Option<Vec<u8>> = row.get(5)?;
    let subject_key = match key_id {
        Some(key_id) => Some(StoredSubjectKey {
            subject: id,
            key_id,
            root_key_id: row.get(6)?,
            wrapped: row.get(7)?,
        }),
        None => None,
    };
    Ok(StoredPatient {
        id,
        version: row.get(1)?,
        sealed: row.get(2)?,
        subject_key,
        created_at_ms: row.get(3)?,
        updated_at_ms: row.get(4)?,
    })
}

fn checkpoint(row: &Row<'_>) -> rusqlite::Result<StoredCheckpoint> {
    let size: i64 = row.get(0)?;
    Ok(StoredCheckpoint {
        size: u64::try_from(size).unwrap_or(0),
        root: row.get(1)?,
        note: row.get(2)?,
        created_at_ms: row.get(3)?,
    })
}

fn system_key(row: &Row<'_>) -> rusqlite::Result<StoredSystemKey> {
    Ok(StoredSystemKey {
        name: row.get(0)?,
        root_key_id: row.get(1)?,
        wrapped: row.get(2)?,
    })
}

impl Readers {
    pub(super) fn new(path: &Path, audit_path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            audit_path: audit_path.to_owned(),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(Duration::from_secs(BUSY_TIMEOUT_SECS))?;
        // Attached with the connection's own flags, so read-only as well.
        connection.execute(
            "ATTACH DATABASE ?1 AS audit",
            params![self.audit_path.to_string_lossy()],
        )?;
        connection.pragma_update(Some(DatabaseName::Main), "cache_size", -READER_CACHE_KIB)?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        Ok(connection)
    }

    /// Runs `read` on an idle connection (opening one if none is idle).
    pub(super) fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> StoreResult<T> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => self.open()?,
        };
        let result = read(&connection);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_READ_CONNECTIONS_MAX {
            idle.push(connection);
        }
        Ok(result?)
    }

    pub(super) fn visit_ending(
        &self,
        appointment: &str,
    ) -> StoreResult<Option<crate::visits::VisitEnding>> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT appointment_id, organisation_id, patient_id, ended_by, ended_at_ms
                 FROM visit_endings WHERE appointment_id = ?1",
            )?
            .query_row([appointment], |row| {
                Ok(crate::visits::VisitEnding {
                    appointment: row.get(0)?,
                    organisation: haven_domain::OrganisationId::from_uuid(uuid_from(row.get(1)?)?),
                    patient: PatientId::from_uuid(uuid_from(row.get(2)?)?),
                    ended_by: row.get(3)?,
                    ended_at_ms: row.get(4)?,
                })
            })
            .optional()
        })
    }

    pub(super) fn ping(&self) -> StoreResult<()> {
        self.with(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }

    pub(super) fn get_patient(&self, id: PatientId) -> StoreResult<Option<StoredPatient>> {
        self.with(|c| {
            c.prepare_cached(&format!("{PATIENT_COLUMNS} WHERE p.id = ?1"))?
                .query_row([id.as_uuid().as_bytes().as_slice()], patient)
                .optional()
        })
    }

    pub(super) fn list_patients(&self, query: &PatientQuery) -> StoreResult<Vec<StoredPatient>> {
        let mut sql = format!("{PATIENT_COLUMNS} WHERE 1 = 1");
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        for filter in query.filters.iter().take(limits::FILTERS_MAX) {
            sql.push_str(
                " AND p.id IN (SELECT patient_id FROM patient_search WHERE kind = ? AND token = ?)",
            );
            values.push(filter.kind.as_str().to_owned().into());
            values.push(filter.token.clone().into());
        }
        if let Some(user) = query.cared_for_by {
            sql.push_str(
                " AND p.id IN (SELECT patient_id FROM care_team_members WHERE user_id = ?)",
            );
            values.push(user.as_uuid().as_bytes().to_vec().into());
        }
        if let Some(after) = query.after {
            sql.push_str(" AND p.id > ?");
            values.push(after.as_uuid().as_bytes().to_vec().into());
        }
        sql.push_str(" ORDER BY p.id LIMIT ?");
        values.push(i64::from(query.limit.min(limits::PAGE_ROWS_MAX)).into());
        self.with(|c| {
            c.prepare_cached(&sql)?
                .query_map(params_from_iter(values), patient)?
                .collect()
        })
    }

    pub(super) fn subject_keys_not_under(
        &self,
        root_key_id: &[u8],
        limit: u32,
    ) -> StoreResult<Vec<StoredSubjectKey>> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT subject_id, key_id, root_key_id, wrapped FROM subject_keys
                 WHERE root_key_id <> ?1 ORDER BY subject_id LIMIT ?2",
            )?
            .query_map(
                params![
                    root_key_id,
                    i64::from(limit.min(limits::REWRAP_BATCH_ROWS_MAX))
                ],
                |row| {
                    Ok(StoredSubjectKey {
                        subject: PatientId::from_uuid(uuid_from(row.get(0)?)?),
                        key_id: row.get(1)?,
                        root_key_id: row.get(2)?,
                        wrapped: row.get(3)?,
                    })
                },
            )?
            .collect()
        })
    }

    pub(super) fn count_keys_not_under(&self, root_key_id: &[u8]) -> StoreResult<u64> {
        let count: i64 = self.with(|c| {
            c.query_row(
                "SELECT (SELECT COUNT(*) FROM subject_keys WHERE root_key_id <> ?1)
                      + (SELECT COUNT(*) FROM system_keys WHERE root_key_id <> ?1)",
                [root_key_id],
                |row| row.get(0),
            )
        })?;
        u64::try_from(count).map_err(|_| StoreError::Corrupt {
            table: "subject_keys",
            detail: "negative count".into(),
        })
    }

    pub(super) fn root_keys_in_use(&self) -> StoreResult<Vec<Vec<u8>>> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT root_key_id FROM subject_keys UNION SELECT root_key_id FROM system_keys",
            )?
            .query_map([], |row| row.get(0))?
            .collect()
        })
    }

    pub(super) fn system_key(&self, name: &str) -> StoreResult<Option<StoredSystemKey>> {
        self.with(|c| {
            c.prepare_cached("SELECT name, root_key_id, wrapped FROM system_keys WHERE name = ?1")?
                .query_row([name], system_key)
                .optional()
        })
    }

    pub(super) fn system_keys(&self) -> StoreResult<Vec<StoredSystemKey>> {
        self.with(|c| {
            c.prepare_cached("SELECT name, root_key_id, wrapped FROM system_keys ORDER BY name")?
                .query_map([], system_key)?
                .collect()
        })
    }

    pub(super) fn token_by_hash(&self, token_hash: &[u8]) -> StoreResult<Option<StoredToken>> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT id, token_hash, role, label, created_at_ms, expires_at_ms, revoked_at_ms,
                        patient_id
                 FROM api_tokens WHERE token_hash = ?1",
            )?
            .query_row([token_hash], |row| {
                Ok(StoredToken {
                    id: TokenId::from_uuid(uuid_from(row.get(0)?)?),
                    token_hash: row.get(1)?,
                    role: row.get(2)?,
                    label: row.get(3)?,
                    created_at_ms: row.get(4)?,
                    expires_at_ms: row.get(5)?,
                    revoked_at_ms: row.get(6)?,
                    patient: row
                        .get::<_, Option<Vec<u8>>>(7)?
                        .map(uuid_from)
                        .transpose()?
                        .map(PatientId::from_uuid),
                })
            })
            .optional()
        })
    }

    pub(super) fn audit_events(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredAuditEvent>> {
        self.audit_rows(
            &format!(
                "SELECT {} FROM audit_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                crate::AUDIT_ENTRY_COLUMNS
            ),
            vec![
                after_seq.into(),
                i64::from(limit.min(limits::AUDIT_PAGE_ROWS_MAX)).into(),
            ],
        )
    }

    /// Leaf hashes straight from each row's borrowed entry bytes, with its search keys
    /// checked against them: one value hashed per entry, no owned event and no allocation
    /// per row, which is most of what verifying a long log costs.
    pub(super) fn audit_leaves(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<AuditLeaf>> {
        self.with(|c| {
            let mut statement = c.prepare_cached(&format!(
                "SELECT {} FROM audit_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                crate::AUDIT_LEAF_COLUMNS
            ))?;
            let mut rows = statement.query(params![
                after_seq,
                i64::from(limit.min(limits::AUDIT_PAGE_ROWS_MAX))
            ])?;
            let mut leaves = Vec::with_capacity(limit as usize);
            while let Some(row) = rows.next()? {
                let seq = row.get_ref(0)?.as_i64()?;
                let keys = crate::AuditKeys {
                    at_ms: row.get_ref(2)?.as_i64()?,
                    actor: row.get_ref(3)?.as_bytes_or_null()?,
                    action: row.get_ref(4)?.as_bytes_or_null()?,
                    // A key that is not a UUID cannot match the entry's patient.
                    patient: row
                        .get_ref(5)?
                        .as_blob_or_null()?
                        .map(|blob| Uuid::from_slice(blob).unwrap_or(Uuid::max())),
                    outcome: row.get_ref(6)?.as_bytes_or_null()?,
                };
                leaves.push(crate::audit_leaf(seq, row.get_ref(1)?.as_bytes()?, &keys));
            }
            Ok(leaves)
        })
    }

    pub(super) fn query_audit(&self, query: &AuditQuery) -> StoreResult<Vec<StoredAuditEvent>> {
        let (sql, binds) = query.sql(|n| format!("?{n}"));
        let values = binds
            .into_iter()
            .map(|bind| match bind {
                AuditBind::Integer(i) => i.into(),
                AuditBind::Text(t) => t.into(),
                AuditBind::Uuid(u) => u.as_bytes().to_vec().into(),
            })
            .collect();
        self.audit_rows(&sql, values)
    }

    fn audit_rows(
        &self,
        sql: &str,
        values: Vec<rusqlite::types::Value>,
    ) -> StoreResult<Vec<StoredAuditEvent>> {
        self.with(|c| {
            let mut statement = c.prepare_cached(sql)?;
            let mut rows = statement.query(params_from_iter(values))?;
            let mut events = Vec::new();
            while let Some(row) = rows.next()? {
                events.push(crate::audit_entry(
                    row.get_ref(0)?.as_i64()?,
                    row.get_ref(1)?.as_bytes()?,
                ));
            }
            Ok(events)
        })?
        .into_iter()
        .collect()
    }

    pub(super) fn checkpoints(
        &self,
        after_size: u64,
        limit: u32,
    ) -> StoreResult<Vec<StoredCheckpoint>> {
        let after = i64::try_from(after_size).unwrap_or(i64::MAX);
        self.with(|c| {
            c.prepare_cached(
                "SELECT size, root, note, created_at_ms FROM audit_checkpoints
                 WHERE size > ?1 ORDER BY size LIMIT ?2",
            )?
            .query_map(
                params![
                    after,
                    i64::from(limit.min(limits::CHECKPOINT_PAGE_ROWS_MAX))
                ],
                checkpoint,
            )?
            .collect()
        })
    }

    pub(super) fn siem_cursor(&self, name: &str) -> StoreResult<Option<i64>> {
        self.with(|c| {
            c.prepare_cached("SELECT after_seq FROM siem_cursors WHERE name = ?1")?
                .query_row([name], |row| row.get(0))
                .optional()
        })
    }

    pub(super) fn latest_checkpoint(&self) -> StoreResult<Option<StoredCheckpoint>> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT size, root, note, created_at_ms FROM audit_checkpoints
                 ORDER BY size DESC LIMIT 1",
            )?
            .query_row([], checkpoint)
            .optional()
        })
    }

    pub(super) fn checkpoint_at(&self, size: u64) -> StoreResult<Option<StoredCheckpoint>> {
        let Ok(size) = i64::try_from(size) else {
            return Ok(None);
        };
        self.with(|c| {
            c.prepare_cached(
                "SELECT size, root, note, created_at_ms FROM audit_checkpoints WHERE size = ?1",
            )?
            .query_row([size], checkpoint)
            .optional()
        })
    }

    pub(super) fn tree_size(&self) -> StoreResult<u64> {
        let next: i64 = self.with(|c| {
            c.prepare_cached("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_tree_leaves")?
                .query_row([], |row| row.get(0))
        })?;
        u64::try_from(next).map_err(|_| StoreError::Corrupt {
            table: "audit_tree_leaves",
            detail: "negative position".into(),
        })
    }

    pub(super) fn tree_leaf_by_seq(&self, seq: i64) -> StoreResult<Option<TreeLeaf>> {
        let row: Option<(i64, i64, Vec<u8>)> = self.with(|c| {
            c.prepare_cached("SELECT idx, seq, hash FROM audit_tree_leaves WHERE seq = ?1")?
                .query_row([seq], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .optional()
        })?;
        row.map(tree_leaf).transpose()
    }

    pub(super) fn tree_leaves(&self, from_index: u64, limit: u32) -> StoreResult<Vec<TreeLeaf>> {
        let from = i64::try_from(from_index).unwrap_or(i64::MAX);
        let rows: Vec<(i64, i64, Vec<u8>)> = self.with(|c| {
            c.prepare_cached(
                "SELECT idx, seq, hash FROM audit_tree_leaves WHERE idx >= ?1 ORDER BY idx LIMIT ?2",
            )?
            .query_map(
                params![from, i64::from(limit.min(limits::AUDIT_PAGE_ROWS_MAX))],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )?
            .collect()
        })?;
        rows.into_iter().map(tree_leaf).collect()
    }

    pub(super) fn tree_nodes(&self, ids: &[NodeId]) -> StoreResult<Vec<Option<Hash>>> {
        let found: Vec<Option<Vec<u8>>> = self.with(|c| {
            ids.iter()
                .map(|id| {
                    let index = i64::try_from(id.index).unwrap_or(i64::MAX);
                    if id.level == 0 {
                        c.prepare_cached("SELECT hash FROM audit_tree_leaves WHERE idx = ?1")?
                            .query_row([index], |row| row.get(0))
                            .optional()
                    } else {
                        c.prepare_cached(
                            "SELECT hash FROM audit_tree_nodes WHERE level = ?1 AND idx = ?2",
                        )?
                        .query_row(params![i64::from(id.level), index], |row| row.get(0))
                        .optional()
                    }
                })
                .collect()
        })?;
        found
            .into_iter()
            .map(|hash| {
                hash.map(|h| crate::tree_hash("audit_tree_nodes", &h))
                    .transpose()
            })
            .collect()
    }
}

fn tree_leaf((index, seq, hash): (i64, i64, Vec<u8>)) -> StoreResult<TreeLeaf> {
    Ok(TreeLeaf {
        index: u64::try_from(index).map_err(|_| StoreError::Corrupt {
            table: "audit_tree_leaves",
            detail: "negative position".into(),
        })?,
        seq,
        hash: crate::tree_hash("audit_tree_leaves", &hash)?,
    })
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    /// The bundled SQLite must be built as `.cargo/config.toml` says (`LIBSQLITE3_FLAGS`):
    /// a build without those flags (another target directory, a flag dropped) would pool
    /// every connection's page cache again, and readers would fetch their B-trees' root
    /// pages from the file on every read.
    #[test]
    fn sqlite_is_built_with_a_page_cache_per_connection_and_no_memory_statistics() {
        let connection = Connection::open_in_memory().expect("an in-memory database");
        let mut statement = connection
            .prepare("PRAGMA compile_options")
            .expect("the compile options");
        let options: Vec<String> = statement
            .query_map([], |row| row.get(0))
            .expect("the compile options")
            .collect::<Result<_, _>>()
            .expect("the compile options");
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "SQLite pools the page caches of all connections: {options:?}"
        );
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "SQLite keeps memory statistics: {options:?}"
        );
    }
}
