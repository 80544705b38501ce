//! Patient demographics: create, read, update and search, sealed at rest.
//!
//! Each record is sealed with the patient's own subject key, bound to (`patients`, id,
//! version). Searchable fields are stored only as blind-index tokens.

use haven_crypto::{RecordBinding, Sealed};
use haven_domain::{Action, Mask, PatientId, PatientRecord};
use haven_store::{
    NewPatient, PatientQuery, PatientUpdate, SearchKind, SearchToken, StoredPatient, UpdateOutcome,
    limits,
};
use time::Date;

use crate::codec::{decode_patient, encode_patient, format_date};
use crate::gate::Grant;
use crate::{App, AppError, AppResult, RequestContext};

const TABLE: &str = "patients";

/// A patient as answered to an authorised caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientView {
    pub id: PatientId,
    pub version: i64,
    /// The record, masked as the access allows.
    pub record: PatientRecord,
    /// What was left out, if anything (minimum necessary).
    pub mask: Mask,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Exact-match search on blind-indexed fields; all given criteria must match.
#[derive(Debug, Clone, Default)]
pub struct PatientSearch {
    pub family: Option<String>,
    pub birth_date: Option<Date>,
    /// `(system, value)`.
    pub identifier: Option<(String, String)>,
    /// Only the caller's own patients: those whose care team they are on.
    pub mine: bool,
    pub after: Option<PatientId>,
    pub limit: u32,
}

/// One page of results; `next` is the cursor for the following page, if there may be one.
#[derive(Debug, Clone)]
pub struct PatientPage {
    pub items: Vec<PatientView>,
    pub next: Option<PatientId>,
}

/// The largest page a caller may ask for.
pub const PAGE_SIZE_MAX: u32 = limits::PAGE_ROWS_MAX;
/// The page size when the caller does not say.
pub const PAGE_SIZE_DEFAULT: u32 = 20;

impl App {
    fn family_token(&self, family: &str) -> SearchToken {
        SearchToken {
            kind: SearchKind::Family,
            token: self
                .blind
                .token("patient.family", family)
                .as_bytes()
                .to_vec(),
        }
    }

    fn birth_date_token(&self, date: Date) -> SearchToken {
        SearchToken {
            kind: SearchKind::BirthDate,
            token: self
                .blind
                .token("patient.birth_date", &format_date(date))
                .as_bytes()
                .to_vec(),
        }
    }

    fn identifier_token(&self, system: &str, value: &str) -> SearchToken {
        // The separator cannot occur in the system after normalisation trims it; length
        // prefixing is unnecessary because systems are URIs without a bare "|".
        SearchToken {
            kind: SearchKind::Identifier,
            token: self
                .blind
                .token("patient.identifier", &format!("{system}|{value}"))
                .as_bytes()
                .to_vec(),
        }
    }

    fn search_tokens(&self, record: &PatientRecord) -> Vec<SearchToken> {
        let mut tokens = vec![
            self.family_token(&record.name().family),
            self.birth_date_token(record.birth_date()),
        ];
        tokens.extend(
            record
                .identifiers()
                .iter()
                .map(|i| self.identifier_token(&i.system, &i.value)),
        );
        tokens
    }

    /// Registers a new patient: a fresh subject key, the record sealed under it.
    pub async fn create_patient(
        &self,
        context: &RequestContext,
        record: PatientRecord,
    ) -> AppResult<PatientView> {
        let id = PatientId::generate();
        let grant = self.gate.authorize(context, Action::Create, id).await?;
        let (key, stored_key) = self.gate.new_subject_key(&grant)?;
        let record_id = id.to_string();
        let binding = RecordBinding {
            table: TABLE,
            record_id: &record_id,
            version: 1,
        };
        let plaintext = encode_patient(&record)?;
        let sealed = Sealed::<PatientRecord>::seal(&key, &binding, &plaintext);
        let now_ms = self.clock.now_ms();
        self.store
            .insert_patient(NewPatient {
                id,
                sealed: sealed.into_bytes(),
                subject_key: stored_key,
                search: self.search_tokens(&record),
                now_ms,
            })
            .await?;
        Ok(PatientView {
            id,
            version: 1,
            record,
            mask: Mask::None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        })
    }

    /// Reads one patient.
    pub async fn get_patient(
        &self,
        context: &RequestContext,
        id: PatientId,
    ) -> AppResult<PatientView> {
        let grant = self.gate.authorize(context, Action::Read, id).await?;
        let stored = self
            .store
            .get_patient(id)
            .await?
            .ok_or(AppError::NotFound)?;
        self.open_patient(&grant, stored)
    }

    /// Replaces a patient's record if it is still at `expected_version` (optimistic
    /// concurrency: two clerks editing at once cannot silently overwrite each other).
    pub async fn update_patient(
        &self,
        context: &RequestContext,
        id: PatientId,
        expected_version: i64,
        record: PatientRecord,
    ) -> AppResult<PatientView> {
        let grant = self.gate.authorize(context, Action::Update, id).await?;
        let stored = self
            .store
            .get_patient(id)
            .await?
            .ok_or(AppError::NotFound)?;
        if stored.version != expected_version {
            return Err(AppError::VersionMismatch {
                current: stored.version,
            });
        }
        let stored_key = stored.subject_key.as_ref().ok_or(AppError::Erased)?;
        let key = self.gate.open_subject_key(&grant, stored_key)?;
        let version = expected_version + 1;
        let record_id = id.to_string();
        let binding = RecordBinding {
            table: TABLE,
            record_id: &record_id,
            version: u64::try_from(version)
                .map_err(|_| AppError::Unexpected("negative version".into()))?,
        };
        let plaintext = encode_patient(&record)?;
        let sealed = Sealed::<PatientRecord>::seal(&key, &binding, &plaintext);
        let now_ms = self.clock.now_ms();
        let outcome = self
            .store
            .update_patient(PatientUpdate {
                id,
                expected_version,
                sealed: sealed.into_bytes(),
                search: self.search_tokens(&record),
                now_ms,
            })
            .await?;
        match outcome {
            UpdateOutcome::Updated { version } => Ok(PatientView {
                id,
                version,
                record,
                mask: Mask::None,
                created_at_ms: stored.created_at_ms,
                updated_at_ms: now_ms,
            }),
            UpdateOutcome::VersionMismatch { current } => {
                Err(AppError::VersionMismatch { current })
            }
            UpdateOutcome::NotFound => Err(AppError::NotFound),
        }
    }

    /// Lists patients, optionally filtered by exact matches on blind-indexed fields.
    pub async fn search_patients(
        &self,
        context: &RequestContext,
        search: &PatientSearch,
    ) -> AppResult<PatientPage> {
        self.gate.authorize_search(context).await?;
        let mut filters = Vec::new();
        if let Some(family) = &search.family {
            filters.push(self.family_token(family));
        }
        if let Some(date) = search.birth_date {
            filters.push(self.birth_date_token(date));
        }
        if let Some((system, value)) = &search.identifier {
            filters.push(self.identifier_token(system.trim(), value.trim()));
        }
        let limit = search.limit.clamp(1, PAGE_SIZE_MAX);
        let cared_for_by = if search.mine {
            match context.actor.principal {
                haven_domain::Principal::User { user, .. } => Some(user),
                haven_domain::Principal::ApiToken(_) => {
                    return Err(AppError::Invalid(haven_domain::ValidationError {
                        field: "care_team".into(),
                        message:
                            "an API token has no care team; `care_team=me` is for signed-in people"
                                .into(),
                    }));
                }
            }
        } else {
            None
        };
        let rows = self
            .store
            .list_patients(&PatientQuery {
                filters,
                cared_for_by,
                after: search.after,
                limit,
            })
            .await?;
        let found: Vec<PatientId> = rows.iter().map(|row| row.id).collect();
        let grants = self.gate.grant_found(context, &found).await?;
        let next = (rows.len() == limit as usize)
            .then(|| rows.last().map(|row| row.id))
            .flatten();
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(grant) = grants.iter().find(|g| g.patient() == row.id) else {
                continue;
            };
            // An erased patient can still turn up in a listing (its search tokens are gone,
            // but an unfiltered listing walks every row); it has nothing left to show.
            match self.open_patient(grant, row) {
                Ok(view) => items.push(view),
                Err(AppError::Erased) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(PatientPage { items, next })
    }

    fn open_patient(&self, grant: &Grant, stored: StoredPatient) -> AppResult<PatientView> {
        let stored_key = stored.subject_key.as_ref().ok_or(AppError::Erased)?;
        let key = self.gate.open_subject_key(grant, stored_key)?;
        let record_id = stored.id.to_string();
        let binding = RecordBinding {
            table: TABLE,
            record_id: &record_id,
            version: u64::try_from(stored.version)
                .map_err(|_| AppError::Unexpected("negative version".into()))?,
        };
        let sealed = Sealed::<PatientRecord>::from_bytes(stored.sealed)?;
        let plaintext = sealed.open(&key, &binding)?;
        let record = decode_patient(plaintext.expose_secret(), self.clock.today())?;
        Ok(PatientView {
            id: stored.id,
            version: stored.version,
            record: record.masked(grant.mask()),
            mask: grant.mask(),
            created_at_ms: stored.created_at_ms,
            updated_at_ms: stored.updated_at_ms,
        })
    }
}
