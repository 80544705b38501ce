//! Rows of FHIR resources: every version sealed, the current one indexed by blind tokens.
//!
//! The store sees a resource as its type, id, version, the subject whose key sealed it, the
//! patient whose compartment holds it, sealed bytes, and opaque search tokens; it never
//! sees a code, a date or a name. A batch of writes ([`ResourceWrite`]) is applied whole or
//! not at all, which is what a FHIR `transaction` Bundle needs.

use std::fmt;

use haven_domain::PatientId;

use crate::StoredSubjectKey;

/// A blind-index token of one search parameter (`code`, `date:month`, …).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResourceToken {
    pub param: String,
    pub token: Vec<u8>,
}

impl fmt::Debug for ResourceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ResourceToken({}, {} bytes)",
            self.param,
            self.token.len()
        )
    }
}

/// What must hold for a write to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// A create: the id must be new.
    Absent,
    /// An update or delete of whatever version is current; the resource must exist.
    Exists,
    /// An update or delete only if `version` is still current (`If-Match`).
    Version(i64),
}

/// One write of a batch: a new version with content, or a deletion (`sealed: None`).
#[derive(Debug, Clone)]
pub struct ResourceWrite {
    pub resource_type: String,
    pub id: String,
    pub precondition: Precondition,
    /// The version this write creates. The caller sealed the content bound to it, so the
    /// store only checks that it follows the current one.
    pub version: i64,
    /// Whose key sealed it: the patient, or the directory subject.
    pub subject: PatientId,
    /// The compartment, if any.
    pub patient: Option<PatientId>,
    pub sealed: Option<Vec<u8>>,
    /// Tokens of this version; they replace the previous version's.
    pub search: Vec<ResourceToken>,
    /// A laboratory result waiting for a clinician to release it to the patient.
    pub held: bool,
    pub now_ms: i64,
}

/// Why a batch was not applied: the first write whose precondition failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteConflict {
    /// Its position in the batch.
    pub index: usize,
    /// The version that is current, if the resource exists (deleted ones count).
    pub current: Option<i64>,
    /// Whether the current version is a deletion.
    pub deleted: bool,
}

/// One version of a resource, with the key that opens it (`None` once shredded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResource {
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    pub seq: i64,
    pub patient: Option<PatientId>,
    /// `None` for a deletion.
    pub sealed: Option<Vec<u8>>,
    pub subject_key: Option<StoredSubjectKey>,
    pub updated_at_ms: i64,
    /// Whether the resource (its current version) is a result not yet released to the
    /// patient.
    pub held: bool,
}

/// Current resources of one type: every filter must match (AND), each filter any of its
/// tokens (OR); ordered by id, after `after`.
#[derive(Debug, Clone, Default)]
pub struct ResourceQuery {
    pub resource_type: String,
    pub patient: Option<PatientId>,
    /// Only these patients' resources (those a caller is related to); ignored with
    /// `patient`.
    pub patients: Option<Vec<PatientId>>,
    pub ids: Option<Vec<String>>,
    pub filters: Vec<Vec<ResourceToken>>,
    pub after: Option<String>,
    pub limit: u32,
}

/// Versions of one resource, or of every resource of a type, newest first, before `before`
/// (a `seq`).
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub resource_type: String,
    pub id: Option<String>,
    pub patient: Option<PatientId>,
    pub before: Option<i64>,
    pub limit: u32,
}

pub(crate) const RESOURCE_COLUMNS: &str = "r.resource_type, r.id, r.version, r.seq, r.patient_id, \
     r.sealed, r.updated_at_ms, k.subject_id, k.key_id, k.root_key_id, k.wrapped, h.held";

/// A value bound to a resource query, mapped to each engine's types.
#[derive(Debug, Clone)]
pub(crate) enum ResourceBind {
    Text(String),
    Blob(Vec<u8>),
    Uuid(uuid::Uuid),
    Int(i64),
}

/// How an engine is told to check a value against a list without seeking the index once
/// per item of the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl ResourceQuery {
    /// The SQL of the query (with the engine's placeholders) and its values, in order.
    pub(crate) fn sql(
        &self,
        dialect: Dialect,
        placeholder: impl Fn(usize) -> String,
    ) -> (String, Vec<ResourceBind>) {
        let mut binds = Vec::new();
        let next = |value: ResourceBind, binds: &mut Vec<ResourceBind>| {
            binds.push(value);
            placeholder(binds.len())
        };
        let kind = next(ResourceBind::Text(self.resource_type.clone()), &mut binds);
        let mut sql = match self.patient {
            // One patient's resources are few: gather them first, through the patient
            // index, then filter. Left to themselves, both planners preferred walking every
            // resource of the type in id order (the primary key) to find that patient's.
            Some(patient) => {
                let p = next(ResourceBind::Uuid(patient.as_uuid()), &mut binds);
                format!(
                    "WITH c AS MATERIALIZED (
                         SELECT resource_type, id, seq FROM fhir_current
                         WHERE patient_id = {p} AND resource_type = {kind} AND deleted = 0)
                     SELECT {RESOURCE_COLUMNS} FROM c
                     JOIN fhir_resources r ON r.seq = c.seq
                     LEFT JOIN subject_keys k ON k.subject_id = r.subject_id
             LEFT JOIN fhir_current h ON h.resource_type = r.resource_type AND h.id = r.id
                     WHERE 1 = 1"
                )
            }
            None => format!(
                "SELECT {RESOURCE_COLUMNS} FROM fhir_current c
                 JOIN fhir_resources r ON r.seq = c.seq
                 LEFT JOIN subject_keys k ON k.subject_id = r.subject_id
             LEFT JOIN fhir_current h ON h.resource_type = r.resource_type AND h.id = r.id
                 WHERE c.resource_type = {kind} AND c.deleted = 0"
            ),
        };
        if self.patient.is_none()
            && let Some(patients) = &self.patients
        {
            let list: Vec<String> = patients
                .iter()
                .take(crate::limits::RELATED_PATIENTS_MAX as usize)
                .map(|p| next(ResourceBind::Uuid(p.as_uuid()), &mut binds))
                .collect();
            if list.is_empty() {
                sql.push_str(" AND 1 = 0");
            } else {
                sql.push_str(&format!(" AND c.patient_id IN ({})", list.join(", ")));
            }
        }
        if let Some(ids) = &self.ids {
            let list: Vec<String> = ids
                .iter()
                .take(crate::limits::FILTER_TOKENS_MAX)
                .map(|id| next(ResourceBind::Text(id.clone()), &mut binds))
                .collect();
            if list.is_empty() {
                sql.push_str(" AND 1 = 0");
            } else {
                sql.push_str(&format!(" AND c.id IN ({})", list.join(", ")));
            }
        }
        for filter in self
            .filters
            .iter()
            .take(crate::limits::RESOURCE_FILTERS_MAX)
        {
            let Some(first) = filter.first() else {
                sql.push_str(" AND 1 = 0");
                continue;
            };
            let param = next(ResourceBind::Text(first.param.clone()), &mut binds);
            let tokens: Vec<String> = filter
                .iter()
                .take(crate::limits::FILTER_TOKENS_MAX)
                .map(|t| next(ResourceBind::Blob(t.token.clone()), &mut binds))
                .collect();
            if self.patient.is_some() {
                // One patient's resources are few: check each against the index, rather
                // than gather every resource of every patient that has the token. A
                // resource has a handful of tokens per parameter while a date range's list
                // can have a hundred buckets: SQLite is told (`+`, no index for this term)
                // to read the resource's few tokens and look each up in the list, rather
                // than seek the index once per bucket for every candidate.
                let token = match dialect {
                    Dialect::Sqlite => "+s.token",
                    Dialect::Postgres => "s.token",
                };
                sql.push_str(&format!(
                    " AND EXISTS (SELECT 1 FROM fhir_search s WHERE s.resource_type = c.resource_type
                       AND s.id = c.id AND s.param = {param} AND {token} IN ({}))",
                    tokens.join(", ")
                ));
            } else {
                let kind = next(ResourceBind::Text(self.resource_type.clone()), &mut binds);
                sql.push_str(&format!(
                    " AND c.id IN (SELECT s.id FROM fhir_search s WHERE s.resource_type = {kind}
                       AND s.param = {param} AND s.token IN ({}))",
                    tokens.join(", ")
                ));
            }
        }
        if let Some(after) = &self.after {
            let a = next(ResourceBind::Text(after.clone()), &mut binds);
            sql.push_str(&format!(" AND c.id > {a}"));
        }
        let limit = next(
            ResourceBind::Int(i64::from(self.limit.min(crate::limits::RESOURCE_ROWS_MAX))),
            &mut binds,
        );
        sql.push_str(&format!(" ORDER BY c.id LIMIT {limit}"));
        (sql, binds)
    }
}

impl HistoryQuery {
    /// The SQL of the query (with the engine's placeholders) and its values, in order.
    pub(crate) fn sql(&self, placeholder: impl Fn(usize) -> String) -> (String, Vec<ResourceBind>) {
        let mut binds = vec![ResourceBind::Text(self.resource_type.clone())];
        let mut sql = format!(
            "SELECT {RESOURCE_COLUMNS} FROM fhir_resources r
             LEFT JOIN subject_keys k ON k.subject_id = r.subject_id
             LEFT JOIN fhir_current h ON h.resource_type = r.resource_type AND h.id = r.id
             WHERE r.resource_type = {}",
            placeholder(1)
        );
        if let Some(id) = &self.id {
            binds.push(ResourceBind::Text(id.clone()));
            sql.push_str(&format!(" AND r.id = {}", placeholder(binds.len())));
        }
        if let Some(patient) = self.patient {
            binds.push(ResourceBind::Uuid(patient.as_uuid()));
            sql.push_str(&format!(" AND r.patient_id = {}", placeholder(binds.len())));
        }
        if let Some(before) = self.before {
            binds.push(ResourceBind::Int(before));
            sql.push_str(&format!(" AND r.seq < {}", placeholder(binds.len())));
        }
        binds.push(ResourceBind::Int(i64::from(
            self.limit.min(crate::limits::RESOURCE_ROWS_MAX),
        )));
        sql.push_str(&format!(
            " ORDER BY r.seq DESC LIMIT {}",
            placeholder(binds.len())
        ));
        (sql, binds)
    }
}

/// Bounds a batch before either engine sees it.
pub(crate) fn check_writes(writes: &[ResourceWrite]) -> crate::StoreResult<()> {
    crate::check_rows_max(
        "resource writes",
        writes.len(),
        crate::limits::RESOURCE_WRITES_MAX,
    )?;
    for write in writes {
        crate::check_rows_max(
            "search tokens",
            write.search.len(),
            crate::limits::RESOURCE_TOKENS_MAX,
        )?;
    }
    Ok(())
}

/// Why `write` cannot apply over `current` (`(version, deleted)`), if it cannot. `fresh` is
/// false when the batch already wrote the same resource.
pub(crate) fn precondition_fails(
    index: usize,
    write: &ResourceWrite,
    current: Option<(i64, i64)>,
    fresh: bool,
) -> Option<WriteConflict> {
    let conflict = WriteConflict {
        index,
        current: current.map(|(version, _)| version),
        deleted: current.is_some_and(|(_, deleted)| deleted != 0),
    };
    if !fresh {
        return Some(conflict);
    }
    let holds = match (write.precondition, current) {
        (Precondition::Absent, None) => write.version == 1,
        (Precondition::Absent, Some(_)) => false,
        (Precondition::Exists, Some((version, _))) => write.version == version + 1,
        (Precondition::Version(expected), Some((version, _))) => {
            version == expected && write.version == version + 1
        }
        (Precondition::Exists | Precondition::Version(_), None) => false,
    };
    (!holds).then_some(conflict)
}

/// Rows per multi-row `INSERT` of a batch: few statements for a large transaction, with
/// bind counts well under both engines' limits.
pub(crate) const ROWS_PER_STATEMENT: usize = 100;

/// The statements that apply a checked batch, with `placeholder(n)` the engine's n-th
/// parameter: the versions (returning their `seq`), the current pointers (guarded, so a
/// write that lost a race changes nothing and is counted), and the tokens.
pub(crate) mod statements {
    /// `INSERT` of `rows` versions, returning `resource_type, id, seq`.
    pub(crate) fn versions(rows: usize, placeholder: &dyn Fn(usize) -> String) -> String {
        let values: Vec<String> = (0..rows)
            .map(|row| {
                let cells: Vec<String> = (1..=7).map(|c| placeholder(row * 7 + c)).collect();
                format!("({})", cells.join(", "))
            })
            .collect();
        format!(
            "INSERT INTO fhir_resources (resource_type, id, version, subject_id, patient_id, \
             sealed, updated_at_ms) VALUES {} RETURNING resource_type, id, seq",
            values.join(", ")
        )
    }

    /// Upsert of `rows` current pointers; a row only replaces the version before it, and a
    /// create never replaces anything.
    pub(crate) fn current(rows: usize, placeholder: &dyn Fn(usize) -> String) -> String {
        let values: Vec<String> = (0..rows)
            .map(|row| {
                let cells: Vec<String> = (1..=7).map(|c| placeholder(row * 7 + c)).collect();
                format!("({})", cells.join(", "))
            })
            .collect();
        format!(
            "INSERT INTO fhir_current (resource_type, id, version, seq, patient_id, deleted, held) \
             VALUES {} ON CONFLICT (resource_type, id) DO UPDATE SET version = excluded.version, \
             seq = excluded.seq, patient_id = excluded.patient_id, deleted = excluded.deleted, \
             held = excluded.held \
             WHERE fhir_current.version = excluded.version - 1",
            values.join(", ")
        )
    }

    /// `INSERT` of `rows` search tokens.
    pub(crate) fn tokens(rows: usize, placeholder: &dyn Fn(usize) -> String) -> String {
        let values: Vec<String> = (0..rows)
            .map(|row| {
                let cells: Vec<String> = (1..=4).map(|c| placeholder(row * 4 + c)).collect();
                format!("({})", cells.join(", "))
            })
            .collect();
        format!(
            "INSERT INTO fhir_search (resource_type, param, token, id) VALUES {} \
             ON CONFLICT DO NOTHING",
            values.join(", ")
        )
    }
}

/// An attachment (FHIR `Binary`) whose chunks are all stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAttachment {
    pub id: uuid::Uuid,
    pub patient: PatientId,
    pub content_type: String,
    pub size_bytes: i64,
    pub chunks: i64,
    pub created_by: String,
    pub created_at_ms: i64,
    /// The patient's key, `None` once shredded (filled in by reads).
    pub subject_key: Option<StoredSubjectKey>,
}
