//! FHIR R4 resources: create, read, version read, update, delete and history, each through
//! the access gate, sealed under the key of the patient whose compartment holds them.
//!
//! Every resource other than `Patient` is kept as its validated JSON (with the server's id,
//! version and time) sealed with a fresh data key wrapped by the patient's key, bound to
//! (`fhir_resources`, `Type/id`, version), so a sealed version cannot be moved to another
//! row or another version. Every version is kept; a deletion is a version without content.
//! `Patient` is the demographic record Haven already keeps (`patients`), mapped to and from
//! FHIR by [`patient`].
//!
//! The order is always the gate's: find which patient a resource belongs to (a plaintext
//! column, never the content), decide and audit, then open. A resource that does not exist
//! is decided as if it belonged to a stranger, so a refusal never reveals whether it exists.

pub mod amendment;
pub mod bundle;
mod patient;
pub mod search;

use haven_crypto::{RecordBinding, Sealed, SubjectKey};
use haven_domain::{Action, ChartPart, PatientId};
use haven_fhir::{AnyResource, Compartment, Id, RESOURCE_TYPES, SearchValue};
use haven_store::fhir::{HistoryQuery, Precondition, ResourceToken, ResourceWrite, StoredResource};
use zeroize::Zeroizing;

use std::collections::HashMap;

use crate::gate::{AuditedResource, ChartAccess, Grant};
use crate::{App, AppError, AppResult, RequestContext};

/// The table named in every seal's binding.
const SEAL_TABLE: &str = "fhir_resources";

/// The most versions one history page returns.
pub const HISTORY_PAGE_MAX: u32 = 100;
/// The history page size when the caller does not say.
pub const HISTORY_PAGE_DEFAULT: u32 = 20;

/// The resource types Haven serves: Patient, those in a patient's compartment, and the
/// shared directory.
pub fn served_types() -> impl Iterator<Item = &'static str> {
    RESOURCE_TYPES
        .iter()
        .copied()
        .filter(|t| *t == "Patient" || chart_part(t).is_some() || is_directory(t))
}

/// Whether a type belongs to the shared directory (no patient's compartment): who works
/// here and which forms exist. Sealed under the directory's own key.
pub fn is_directory(resource_type: &str) -> bool {
    matches!(
        resource_type,
        "Practitioner" | "PractitionerRole" | "Organization" | "Questionnaire"
    )
}

/// The subject whose key seals the shared directory: a fixed id no patient is ever given
/// (patients' ids are UUIDv7; this one is version 8).
pub fn directory_subject() -> PatientId {
    PatientId::from_uuid(uuid::Uuid::from_u128(
        0x4841_5645_4e00_8000_8000_0000_d1ec_0001,
    ))
}

/// Which part of the chart a type is, or `None` for a type outside any patient's chart.
pub fn chart_part(resource_type: &str) -> Option<ChartPart> {
    match resource_type {
        "Appointment" => Some(ChartPart::Scheduling),
        "QuestionnaireResponse" | "Communication" | "Task" => Some(ChartPart::PatientAuthored),
        "Observation" | "Condition" | "AllergyIntolerance" | "MedicationRequest" | "Encounter"
        | "DiagnosticReport" | "ImagingStudy" | "DocumentReference" | "Consent" => {
            Some(ChartPart::Clinical)
        }
        _ => None,
    }
}

/// Whether a resource is a laboratory result, which an organisation may hold back from the
/// patient until a clinician has reviewed it: a DiagnosticReport, or an Observation in the
/// `laboratory` category.
pub fn is_lab_result(resource: &AnyResource) -> bool {
    match resource {
        AnyResource::DiagnosticReport(_) => true,
        AnyResource::Observation(observation) => observation
            .category
            .iter()
            .flat_map(|c| c.iter())
            .flat_map(|c| c.codings())
            .any(|coding| {
                coding
                    .code
                    .as_ref()
                    .is_some_and(|c| c.as_str() == "laboratory")
            }),
        _ => false,
    }
}

/// Whether the caller sees only released results: a patient, or a proxy acting for one.
fn sees_released_only(context: &RequestContext) -> bool {
    context.actor.role == haven_domain::Role::Patient
}

/// An id from a URL, checked before anything is decided or audited: one that is no FHIR id
/// names nothing, and its text (which could be anything) never reaches the audit log.
pub(crate) fn known_id(id: &str) -> AppResult<&str> {
    Id::parse(id).map(|_| id).map_err(|_| AppError::NotFound)
}

/// The `'static` name of a served type, or why it is not served.
pub fn served_type(resource_type: &str) -> AppResult<&'static str> {
    served_types().find(|t| *t == resource_type).ok_or_else(|| {
        AppError::NotSupported(format!(
            "`{}` is not a resource type this server keeps",
            resource_type.chars().take(64).collect::<String>()
        ))
    })
}

/// One version of a resource as answered.
#[derive(Debug, Clone)]
pub struct ResourceView {
    pub resource_type: &'static str,
    pub id: String,
    pub version: i64,
    pub updated_at_ms: i64,
    /// `None` for a deletion (in a history).
    pub resource: Option<AnyResource>,
}

/// A page of versions, newest first.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub items: Vec<ResourceView>,
    /// The cursor (a position in the log of versions) for the next page, if there may be one.
    pub next: Option<i64>,
}

fn binding<'a>(record_id: &'a str, version: i64) -> AppResult<RecordBinding<'a>> {
    Ok(RecordBinding {
        table: SEAL_TABLE,
        record_id,
        version: u64::try_from(version)
            .map_err(|_| AppError::Unexpected("negative resource version".into()))?,
    })
}

fn parse_patient_id(element: &str, id: &str, resource_type: &str) -> AppResult<PatientId> {
    id.parse::<PatientId>()
        .map_err(|_| AppError::InvalidResource {
            path: format!("{resource_type}.{element}.reference"),
            message: "refers to no patient of this server".into(),
        })
}

impl App {
    /// Whether results written now by this caller wait for review: their organisation's
    /// policy (a token, deployment-wide, writes released results).
    async fn holds_results(&self, context: &RequestContext) -> AppResult<bool> {
        Ok(match context.actor.organisation {
            Some(organisation) => self
                .store
                .organisation(organisation)
                .await?
                .is_some_and(|o| o.results_after_review),
            None => false,
        })
    }

    /// Releases a held laboratory result to the patient (a change to the chart, by the
    /// care team); releasing one that is not held changes nothing.
    pub async fn fhir_release(
        &self,
        context: &RequestContext,
        resource_type: &str,
        id: &str,
    ) -> AppResult<()> {
        let resource_type = served_type(resource_type)?;
        let id = known_id(id)?;
        let stored = self.store.resource(resource_type, id).await?;
        self.authorize_stored(context, Action::Update, resource_type, id, stored.as_ref())
            .await?;
        self.store.release_resource(resource_type, id).await?;
        Ok(())
    }

    /// The patient whose compartment holds `resource`, checked to be one this server keeps.
    fn compartment_of(&self, resource: &AnyResource) -> AppResult<PatientId> {
        match resource.compartment() {
            Compartment::Patient { element, id } => {
                parse_patient_id(element, id, resource.resource_type())
            }
            Compartment::Itself | Compartment::None => Err(AppError::NotSupported(format!(
                "{} resources are not kept yet",
                resource.resource_type()
            ))),
        }
    }

    /// Blind-index tokens of a resource's search values (see [`search`]); a resource with
    /// more than the store keeps is refused rather than left partly unsearchable.
    fn resource_tokens(&self, resource: &AnyResource) -> AppResult<Vec<ResourceToken>> {
        let resource_type = resource.resource_type();
        let index = resource.index();
        let mut tokens = Vec::new();
        for (param, value) in &index.values {
            match value {
                // The compartment column answers `patient`/`subject`; other references are
                // blind like everything else.
                SearchValue::Reference {
                    resource_type: target,
                    ..
                } if *target == "Patient" && matches!(*param, "patient" | "subject") => {}
                _ => search::tokens_of(&self.blind, resource_type, param, value, &mut tokens),
            }
        }
        tokens.sort_by(|a, b| (&a.param, &a.token).cmp(&(&b.param, &b.token)));
        tokens.dedup();
        if tokens.len() > haven_store::limits::RESOURCE_TOKENS_MAX {
            return Err(AppError::InvalidResource {
                path: resource_type.to_owned(),
                message: format!(
                    "too many searchable values (codes, dates, references): at most {} index entries",
                    haven_store::limits::RESOURCE_TOKENS_MAX
                ),
            });
        }
        Ok(tokens)
    }

    /// Seals `resource` (with its server fields set) as `version`.
    fn seal_resource(
        &self,
        key: &SubjectKey,
        resource: &AnyResource,
        id: &str,
        version: i64,
    ) -> AppResult<Vec<u8>> {
        let record_id = format!("{}/{id}", resource.resource_type());
        let plaintext = Zeroizing::new(
            resource
                .to_stored()
                .map_err(|e| AppError::Unexpected(format!("encoding a resource: {e}")))?,
        );
        Ok(
            Sealed::<AnyResource>::seal(key, &binding(&record_id, version)?, &plaintext)
                .into_bytes(),
        )
    }

    /// Opens one stored version under `grant`.
    fn open_resource(&self, grant: &Grant, stored: &StoredResource) -> AppResult<ResourceView> {
        self.open_resource_cached(grant, stored, &mut HashMap::new())
    }

    /// As [`App::open_resource`], unwrapping each patient's key once for many resources.
    pub(crate) fn open_resource_cached(
        &self,
        grant: &Grant,
        stored: &StoredResource,
        keys: &mut HashMap<PatientId, SubjectKey>,
    ) -> AppResult<ResourceView> {
        let resource_type = served_type(&stored.resource_type)?;
        let resource = match &stored.sealed {
            None => None,
            Some(sealed) => {
                let stored_key = stored.subject_key.as_ref().ok_or(AppError::Erased)?;
                let key = match keys.entry(stored_key.subject) {
                    std::collections::hash_map::Entry::Occupied(known) => known.into_mut(),
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(self.gate.open_subject_key(grant, stored_key)?)
                    }
                };
                let record_id = format!("{}/{}", stored.resource_type, stored.id);
                let sealed = Sealed::<AnyResource>::from_bytes(sealed.clone())?;
                let plaintext = sealed.open(key, &binding(&record_id, stored.version)?)?;
                let resource =
                    AnyResource::from_stored(resource_type, plaintext.expose_secret())
                        .map_err(|e| AppError::Unexpected(format!("a stored resource: {e}")))?;
                Some(resource)
            }
        };
        Ok(ResourceView {
            resource_type,
            id: stored.id.clone(),
            version: stored.version,
            updated_at_ms: stored.updated_at_ms,
            resource,
        })
    }

    /// A page of versions, newest first, and the cursor of the next page if there may be one.
    async fn history_rows(
        &self,
        query: HistoryQuery,
    ) -> AppResult<(Vec<StoredResource>, Option<i64>)> {
        let rows = self.store.resource_history(&query).await?;
        let next = (rows.len() == query.limit as usize)
            .then(|| rows.last().map(|r| r.seq))
            .flatten();
        Ok((rows, next))
    }

    /// Opens versions that one grant covers, each key unwrapped once.
    fn open_page(&self, grant: &Grant, rows: &[StoredResource]) -> AppResult<Vec<ResourceView>> {
        let mut keys = HashMap::new();
        rows.iter()
            .map(|row| self.open_resource_cached(grant, row, &mut keys))
            .collect()
    }

    /// Decides and audits `action` on a stored resource's patient, or, for a missing one,
    /// as if it were a stranger's (answering not found when that would be allowed).
    async fn authorize_stored(
        &self,
        context: &RequestContext,
        action: Action,
        resource_type: &'static str,
        id: &str,
        stored: Option<&StoredResource>,
    ) -> AppResult<Grant> {
        if is_directory(resource_type) {
            // The directory is no one's health data: whether an entry exists is no secret.
            // A missing entry's id is the caller's text: it is not recorded.
            let grant = self
                .gate
                .authorize_directory(
                    context,
                    action,
                    directory_subject(),
                    resource_type,
                    stored.map(|_| id.to_owned()),
                )
                .await?;
            return match stored {
                Some(_) => Ok(grant),
                None => Err(AppError::NotFound),
            };
        }
        let mut part = chart_part(resource_type)
            .ok_or_else(|| AppError::NotSupported(format!("{resource_type} is not served")))?;
        // A result the release policy holds back is decided (and audited) as such: the
        // patient's side is refused `result_not_released`, the care team reads it.
        if stored.is_some_and(|s| s.held) {
            part = ChartPart::HeldResult;
        }
        let Some(patient) = stored.and_then(|s| s.patient) else {
            // A missing resource's id is the caller's text: it is not recorded.
            self.gate
                .authorize_missing(context, action, part, resource_type, None)
                .await?;
            return Err(AppError::NotFound);
        };
        self.gate
            .authorize_resource(
                context,
                action,
                AuditedResource {
                    resource: haven_domain::Resource::Chart(patient, part),
                    patient: None,
                    resource_type,
                    resource_id: Some(id.to_owned()),
                },
                false,
            )
            .await?
            .ok_or_else(|| AppError::Unexpected("an allowed chart access without a grant".into()))
    }

    /// Creates a resource with a new server-assigned id.
    pub async fn fhir_create(
        &self,
        context: &RequestContext,
        resource: AnyResource,
    ) -> AppResult<ResourceView> {
        if resource.resource_type() == "Patient" {
            return self.fhir_create_patient(context, resource).await;
        }
        let mut prepared = self.prepare_create(context, resource).await?;
        let write = prepared
            .write
            .take()
            .ok_or_else(|| AppError::Unexpected("a prepared create without its write".into()))?;
        self.apply_writes(vec![write]).await?;
        Ok(prepared.view)
    }

    /// Reads the current version.
    pub async fn fhir_read(
        &self,
        context: &RequestContext,
        resource_type: &str,
        id: &str,
    ) -> AppResult<ResourceView> {
        let resource_type = served_type(resource_type)?;
        let id = known_id(id)?;
        if resource_type == "Patient" {
            return self.fhir_read_patient(context, id).await;
        }
        let stored = self.store.resource(resource_type, id).await?;
        let grant = self
            .authorize_stored(context, Action::Read, resource_type, id, stored.as_ref())
            .await?;
        let stored = stored.ok_or(AppError::NotFound)?;
        let view = self.open_resource(&grant, &stored)?;
        if view.resource.is_none() {
            return Err(AppError::Gone {
                version: view.version,
            });
        }
        Ok(view)
    }

    /// Reads one version.
    pub async fn fhir_vread(
        &self,
        context: &RequestContext,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> AppResult<ResourceView> {
        let resource_type = served_type(resource_type)?;
        let id = known_id(id)?;
        if resource_type == "Patient" {
            let view = self.fhir_read_patient(context, id).await?;
            // Earlier versions of a Patient are not kept: only the current one exists.
            return if view.version == version {
                Ok(view)
            } else {
                Err(AppError::NotFound)
            };
        }
        let current = self.store.resource(resource_type, id).await?;
        let grant = self
            .authorize_stored(context, Action::Read, resource_type, id, current.as_ref())
            .await?;
        let stored = self
            .store
            .resource_version(resource_type, id, version)
            .await?
            .ok_or(AppError::NotFound)?;
        let view = self.open_resource(&grant, &stored)?;
        if view.resource.is_none() {
            return Err(AppError::Gone { version });
        }
        Ok(view)
    }

    /// Replaces the current version; with `if_match`, only if that version is current.
    pub async fn fhir_update(
        &self,
        context: &RequestContext,
        id: &str,
        resource: AnyResource,
        if_match: Option<i64>,
    ) -> AppResult<ResourceView> {
        if resource.resource_type() == "Patient" {
            return self
                .fhir_update_patient(context, id, resource, if_match)
                .await;
        }
        let mut prepared = self.prepare_update(context, id, resource, if_match).await?;
        let write = prepared
            .write
            .take()
            .ok_or_else(|| AppError::Unexpected("a prepared update without its write".into()))?;
        self.apply_writes(vec![write]).await?;
        Ok(prepared.view)
    }

    /// Deletes a resource (a new version without content); deleting it again changes
    /// nothing.
    pub async fn fhir_delete(
        &self,
        context: &RequestContext,
        resource_type: &str,
        id: &str,
    ) -> AppResult<()> {
        let mut prepared = self.prepare_delete(context, resource_type, id).await?;
        if let Some(write) = prepared.write.take() {
            self.apply_writes(vec![write]).await?;
        }
        Ok(())
    }

    /// Versions of one resource, newest first.
    pub async fn fhir_history(
        &self,
        context: &RequestContext,
        resource_type: &str,
        id: &str,
        before: Option<i64>,
        count: u32,
    ) -> AppResult<HistoryPage> {
        let resource_type = served_type(resource_type)?;
        let id = known_id(id)?;
        if resource_type == "Patient" {
            let view = self.fhir_read_patient(context, id).await?;
            return Ok(HistoryPage {
                items: vec![view],
                next: None,
            });
        }
        let current = self.store.resource(resource_type, id).await?;
        let grant = self
            .authorize_stored(context, Action::Read, resource_type, id, current.as_ref())
            .await?;
        let limit = count.clamp(1, HISTORY_PAGE_MAX);
        let (rows, next) = self
            .history_rows(HistoryQuery {
                resource_type: resource_type.to_owned(),
                id: Some(id.to_owned()),
                patient: None,
                before,
                limit,
            })
            .await?;
        let items = self.open_page(&grant, &rows)?;
        Ok(HistoryPage { items, next })
    }

    /// Versions of every resource of a type that the caller may read, newest first: a
    /// patient's own, or, for staff, those of the patients the policy allows (one audit
    /// entry per patient on the page).
    pub async fn fhir_type_history(
        &self,
        context: &RequestContext,
        resource_type: &str,
        before: Option<i64>,
        count: u32,
    ) -> AppResult<HistoryPage> {
        let resource_type = served_type(resource_type)?;
        let limit = count.clamp(1, HISTORY_PAGE_MAX);
        if is_directory(resource_type) {
            let grant = self
                .gate
                .authorize_directory(
                    context,
                    Action::Read,
                    directory_subject(),
                    resource_type,
                    None,
                )
                .await?;
            let (rows, next) = self
                .history_rows(HistoryQuery {
                    resource_type: resource_type.to_owned(),
                    id: None,
                    patient: None,
                    before,
                    limit,
                })
                .await?;
            let items = self.open_page(&grant, &rows)?;
            return Ok(HistoryPage { items, next });
        }
        let part = chart_part(resource_type).ok_or_else(|| {
            AppError::NotSupported("the history of every Patient is not offered".into())
        })?;
        let own = (context.actor.role == haven_domain::Role::Patient)
            .then_some(context.actor.patient)
            .flatten();
        // As for searches: across patients only for those who may see every patient's.
        if own.is_none()
            && self
                .gate
                .chart_scope(context, Action::Read, part, resource_type)
                .await?
                == crate::gate::ChartScope::Related
        {
            return Err(AppError::InvalidResource {
                path: "history".into(),
                message: format!(
                    "for your role the history of {resource_type} is read resource by resource, or searched by patient"
                ),
            });
        }
        let (rows, next) = self
            .history_rows(HistoryQuery {
                resource_type: resource_type.to_owned(),
                id: None,
                patient: context
                    .actor
                    .patient
                    .filter(|_| context.actor.role == haven_domain::Role::Patient),
                before,
                limit,
            })
            .await?;
        let mut patients: Vec<PatientId> = rows.iter().filter_map(|r| r.patient).collect();
        patients.sort();
        patients.dedup();
        let grants = self
            .gate
            .grant_chart(context, Action::Read, part, resource_type, &patients)
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.held && sees_released_only(context) {
                continue;
            }
            let Some(grant) = grants.iter().find(|g| Some(g.patient()) == row.patient) else {
                continue;
            };
            match self.open_resource(grant, row) {
                Ok(view) => items.push(view),
                Err(AppError::Erased) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(HistoryPage { items, next })
    }

    /// Applies writes as one batch, mapping a lost race to a conflict.
    pub(crate) async fn apply_writes(&self, writes: Vec<ResourceWrite>) -> AppResult<Vec<i64>> {
        self.apply_writes_at(writes)
            .await
            .map_err(|(_, error)| error)
    }

    /// As [`App::apply_writes`], naming the position in the batch of a write in conflict.
    pub(crate) async fn apply_writes_at(
        &self,
        writes: Vec<ResourceWrite>,
    ) -> Result<Vec<i64>, (usize, AppError)> {
        let preconditions: Vec<Precondition> = writes.iter().map(|w| w.precondition).collect();
        match self
            .store
            .write_resources(writes)
            .await
            .map_err(|e| (0, e.into()))?
        {
            Ok(seqs) => Ok(seqs),
            Err(conflict) => {
                let current = conflict.current.unwrap_or(0);
                Err((
                    conflict.index,
                    match preconditions.get(conflict.index) {
                        Some(Precondition::Version(_)) => AppError::PreconditionFailed { current },
                        _ => AppError::Conflict {
                            code: "version_conflict",
                            message: format!(
                                "the resource changed while this request was handled (now at version {current}); read it and try again"
                            ),
                        },
                    },
                ))
            }
        }
    }
}

/// A write checked, authorized and sealed, ready to be applied alone or in a batch, with
/// the view to answer once it is.
#[derive(Debug)]
pub(crate) struct PreparedWrite {
    pub(crate) write: Option<ResourceWrite>,
    pub(crate) view: ResourceView,
}

impl App {
    /// Checks, authorizes and seals a create; nothing is written yet.
    pub(crate) async fn prepare_create(
        &self,
        context: &RequestContext,
        resource: AnyResource,
    ) -> AppResult<PreparedWrite> {
        self.prepare_create_with_id(context, resource, None).await
    }

    /// As [`App::prepare_create`], with the id chosen beforehand (a transaction resolves
    /// references to it before any entry is prepared).
    pub(crate) async fn prepare_create_with_id(
        &self,
        context: &RequestContext,
        resource: AnyResource,
        id: Option<String>,
    ) -> AppResult<PreparedWrite> {
        self.prepare_creates(context, vec![(resource, id)])
            .await
            .map_err(|(_, error)| error)?
            .pop()
            .ok_or_else(|| AppError::Unexpected("a prepared create went missing".into()))
    }

    /// Checks, authorizes and seals several creates at once (a transaction's): each
    /// patient is looked up once, every decision is audited in one durable append, and each
    /// patient's key is unwrapped once. The error names the position of the create at fault.
    pub(crate) async fn prepare_creates(
        &self,
        context: &RequestContext,
        creates: Vec<(AnyResource, Option<String>)>,
    ) -> Result<Vec<PreparedWrite>, (usize, AppError)> {
        if creates.iter().any(|(r, _)| is_directory(r.resource_type())) {
            let mut prepared = Vec::with_capacity(creates.len());
            for (at, (resource, id)) in creates.into_iter().enumerate() {
                let one = if is_directory(resource.resource_type()) {
                    self.prepare_directory_create(context, resource, id).await
                } else {
                    Box::pin(self.prepare_creates(context, vec![(resource, id)]))
                        .await
                        .map_err(|(_, e)| e)
                        .and_then(|mut v| {
                            v.pop().ok_or_else(|| {
                                AppError::Unexpected("a prepared create went missing".into())
                            })
                        })
                };
                prepared.push(one.map_err(|e| (at, e))?);
            }
            return Ok(prepared);
        }
        let mut planned = Vec::with_capacity(creates.len());
        let mut patients: HashMap<PatientId, Option<haven_store::StoredPatient>> = HashMap::new();
        for (at, (resource, id)) in creates.into_iter().enumerate() {
            let resource_type = served_type(resource.resource_type()).map_err(|e| (at, e))?;
            let part = chart_part(resource_type)
                .ok_or_else(|| AppError::NotSupported(format!("{resource_type} is not kept yet")))
                .map_err(|e| (at, e))?;
            let patient = self.compartment_of(&resource).map_err(|e| (at, e))?;
            if context.actor.role == haven_domain::Role::Patient {
                authored_by(&resource, patient).map_err(|e| (at, e))?;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = patients.entry(patient) {
                slot.insert(
                    self.store
                        .get_patient(patient)
                        .await
                        .map_err(|e| (at, e.into()))?,
                );
            }
            let id = id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            planned.push((resource, resource_type, part, patient, id));
        }
        let accesses: Vec<ChartAccess> = planned
            .iter()
            .map(|(_, resource_type, part, patient, id)| ChartAccess {
                action: Action::Create,
                // A patient who does not exist is decided as a stranger: an actor who may
                // not write there learns nothing.
                patient: patients.get(patient).and_then(|p| p.as_ref()).map(|p| p.id),
                part: *part,
                resource_type,
                resource_id: Some(id.clone()),
            })
            .collect();
        let decisions = self
            .gate
            .authorize_chart_batch(context, &accesses)
            .await
            .map_err(|e| (0, e))?;
        // The organisation's policy matters only when a laboratory result is written.
        let holds = if planned.iter().any(|(resource, ..)| is_lab_result(resource)) {
            self.holds_results(context).await.map_err(|e| (0, e))?
        } else {
            false
        };
        let now_ms = self.clock.now_ms();
        let mut keys: HashMap<PatientId, SubjectKey> = HashMap::new();
        let mut prepared = Vec::with_capacity(planned.len());
        for (at, ((mut resource, resource_type, _, patient, id), decision)) in
            planned.into_iter().zip(decisions).enumerate()
        {
            let grant = match decision {
                Ok(grant) => grant,
                Err(AppError::NotFound) => return Err((at, self.missing_patient(&resource))),
                Err(other) => return Err((at, other)),
            };
            if let std::collections::hash_map::Entry::Vacant(slot) = keys.entry(patient) {
                let stored_key = patients
                    .get(&patient)
                    .and_then(|p| p.as_ref())
                    .and_then(|p| p.subject_key.as_ref())
                    .ok_or((at, AppError::Erased))?;
                slot.insert(
                    self.gate
                        .open_subject_key(&grant, stored_key)
                        .map_err(|e| (at, e))?,
                );
            }
            let key = keys
                .get(&patient)
                .ok_or_else(|| (at, AppError::Unexpected("a key went missing".into())))?;
            if let AnyResource::Task(task) = &mut resource {
                self.check_amendment_request(context, task, patient, now_ms)
                    .await
                    .map_err(|e| (at, e))?;
            }
            let server_id = Id::parse(id.clone())
                .map_err(|e| (at, AppError::Unexpected(format!("new id: {e}"))))?;
            resource.set_server_fields(server_id, 1, now_ms);
            let sealed = self
                .seal_resource(key, &resource, &id, 1)
                .map_err(|e| (at, e))?;
            let search = self.resource_tokens(&resource).map_err(|e| (at, e))?;
            prepared.push(PreparedWrite {
                write: Some(ResourceWrite {
                    resource_type: resource_type.to_owned(),
                    id: id.clone(),
                    precondition: Precondition::Absent,
                    version: 1,
                    subject: patient,
                    patient: Some(patient),
                    sealed: Some(sealed),
                    search,
                    held: holds && is_lab_result(&resource),
                    now_ms,
                }),
                view: ResourceView {
                    resource_type,
                    id,
                    version: 1,
                    updated_at_ms: now_ms,
                    resource: Some(resource),
                },
            });
        }
        Ok(prepared)
    }

    fn missing_patient(&self, resource: &AnyResource) -> AppError {
        match resource.compartment() {
            Compartment::Patient { element, .. } => AppError::InvalidResource {
                path: format!("{}.{element}.reference", resource.resource_type()),
                message: "refers to no patient of this server".into(),
            },
            _ => AppError::NotFound,
        }
    }

    /// Checks, authorizes and seals an update; nothing is written yet.
    pub(crate) async fn prepare_update(
        &self,
        context: &RequestContext,
        id: &str,
        mut resource: AnyResource,
        if_match: Option<i64>,
    ) -> AppResult<PreparedWrite> {
        let resource_type = served_type(resource.resource_type())?;
        amendment::refuse_direct_change(resource_type)?;
        let id = known_id(id)?;
        match resource.id() {
            Some(given) if given.as_str() == id => {}
            Some(_) => {
                return Err(AppError::InvalidResource {
                    path: format!("{resource_type}.id"),
                    message: "must be the id in the URL".into(),
                });
            }
            None => {
                return Err(AppError::InvalidResource {
                    path: format!("{resource_type}.id"),
                    message: "required in an update, and the same as in the URL".into(),
                });
            }
        }
        let stored = self.store.resource(resource_type, id).await?;
        let grant = self
            .authorize_stored(context, Action::Update, resource_type, id, stored.as_ref())
            .await?;
        let stored = stored.ok_or(AppError::NotFound)?;
        let (subject, patient) = if is_directory(resource_type) {
            (directory_subject(), None)
        } else {
            let patient = self.compartment_of(&resource)?;
            (patient, Some(patient))
        };
        if patient != stored.patient {
            return Err(AppError::InvalidResource {
                path: format!("{resource_type}.{}", compartment_element(&resource)),
                message: "a resource cannot move to another patient's record; create a new one"
                    .into(),
            });
        }
        if let Some(expected) = if_match
            && expected != stored.version
        {
            return Err(AppError::PreconditionFailed {
                current: stored.version,
            });
        }
        let stored_key = stored.subject_key.as_ref().ok_or(AppError::Erased)?;
        let key = self.gate.open_subject_key(&grant, stored_key)?;
        let version = stored.version + 1;
        let now_ms = self.clock.now_ms();
        let server_id =
            Id::parse(id.to_owned()).map_err(|e| AppError::Unexpected(format!("id: {e}")))?;
        resource.set_server_fields(server_id, version, now_ms);
        let sealed = self.seal_resource(&key, &resource, id, version)?;
        let search = self.resource_tokens(&resource)?;
        // A changed result is reviewed again before the patient sees it.
        let held = is_lab_result(&resource) && self.holds_results(context).await?;
        Ok(PreparedWrite {
            write: Some(ResourceWrite {
                resource_type: resource_type.to_owned(),
                id: id.to_owned(),
                precondition: match if_match {
                    Some(expected) => Precondition::Version(expected),
                    None => Precondition::Exists,
                },
                version,
                subject,
                patient,
                sealed: Some(sealed),
                search,
                held,
                now_ms,
            }),
            view: ResourceView {
                resource_type,
                id: id.to_owned(),
                version,
                updated_at_ms: now_ms,
                resource: Some(resource),
            },
        })
    }

    /// Checks and authorizes a delete; `write` is `None` when it is already deleted.
    pub(crate) async fn prepare_delete(
        &self,
        context: &RequestContext,
        resource_type: &str,
        id: &str,
    ) -> AppResult<PreparedWrite> {
        let resource_type = served_type(resource_type)?;
        amendment::refuse_direct_change(resource_type)?;
        let id = known_id(id)?;
        if resource_type == "Patient" {
            return Err(AppError::NotSupported(
                "a Patient is not deleted: an operator erases a patient by crypto-shredding (haven keys shred)".into(),
            ));
        }
        let stored = self.store.resource(resource_type, id).await?;
        self.authorize_stored(context, Action::Delete, resource_type, id, stored.as_ref())
            .await?;
        let stored = stored.ok_or(AppError::NotFound)?;
        let now_ms = self.clock.now_ms();
        let view = ResourceView {
            resource_type,
            id: id.to_owned(),
            version: stored.version,
            updated_at_ms: stored.updated_at_ms,
            resource: None,
        };
        if stored.sealed.is_none() {
            return Ok(PreparedWrite { write: None, view });
        }
        let patient = stored.patient;
        let subject = match patient {
            Some(patient) => patient,
            None if is_directory(resource_type) => directory_subject(),
            None => {
                return Err(AppError::Unexpected(
                    "a chart resource without a patient".into(),
                ));
            }
        };
        Ok(PreparedWrite {
            write: Some(ResourceWrite {
                resource_type: resource_type.to_owned(),
                id: id.to_owned(),
                precondition: Precondition::Exists,
                version: stored.version + 1,
                subject,
                patient,
                sealed: None,
                search: Vec::new(),
                held: false,
                now_ms,
            }),
            view: ResourceView {
                version: stored.version + 1,
                updated_at_ms: now_ms,
                ..view
            },
        })
    }
}

fn compartment_element(resource: &AnyResource) -> &'static str {
    match resource.compartment() {
        Compartment::Patient { element, .. } => element,
        _ => "id",
    }
}

/// The most resources `Patient/$everything` answers at once; a larger chart is refused as
/// too costly (`Patient/{id}/$export` streams any size).
pub const EVERYTHING_RESOURCES_MAX: usize = 10_000;

/// A whole chart read page by page under one export grant: the patient first, then every
/// resource of every type the chart holds, as the caller may see them (a held result is
/// left out for a patient or proxy; a resource whose key was shredded is skipped). Both
/// `$everything` and the streamed `$export` read through it.
pub struct ChartExport {
    app: App,
    grant: Grant,
    patient: PatientId,
    released_only: bool,
    first: Option<ResourceView>,
    types: std::vec::IntoIter<&'static str>,
    current: Option<&'static str>,
    after: Option<String>,
    keys: HashMap<PatientId, SubjectKey>,
}

impl std::fmt::Debug for ChartExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChartExport")
            .field("patient", &self.patient)
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl ChartExport {
    /// The next page of the chart (at most the store's page of rows), or `None` at the end.
    pub async fn next_page(&mut self) -> AppResult<Option<Vec<ResourceView>>> {
        if let Some(patient) = self.first.take() {
            return Ok(Some(vec![patient]));
        }
        loop {
            let Some(resource_type) = self.current.or_else(|| self.types.next()) else {
                return Ok(None);
            };
            self.current = Some(resource_type);
            let rows = self
                .app
                .store
                .search_resources(&haven_store::fhir::ResourceQuery {
                    resource_type: resource_type.to_owned(),
                    patient: Some(self.patient),
                    patients: None,
                    ids: None,
                    filters: Vec::new(),
                    after: self.after.take(),
                    limit: haven_store::limits::RESOURCE_ROWS_MAX,
                })
                .await?;
            if rows.len() == haven_store::limits::RESOURCE_ROWS_MAX as usize {
                self.after = rows.last().map(|r| r.id.clone());
            } else {
                self.current = None;
            }
            let mut page = Vec::with_capacity(rows.len());
            for row in &rows {
                if row.held && self.released_only {
                    continue;
                }
                match self
                    .app
                    .open_resource_cached(&self.grant, row, &mut self.keys)
                {
                    Ok(view) if view.resource.is_some() => page.push(view),
                    Ok(_) | Err(AppError::Erased) => {}
                    Err(other) => return Err(other),
                }
            }
            if !page.is_empty() {
                return Ok(Some(page));
            }
        }
    }
}

impl App {
    /// `Patient/$everything`: the patient and every resource of their chart, for the
    /// patient's right of access or their care team, audited as one export of the chart.
    pub async fn fhir_everything(
        &self,
        context: &RequestContext,
        patient_id: &str,
    ) -> AppResult<Vec<ResourceView>> {
        let mut export = self.fhir_export(context, patient_id).await?;
        let mut everything = Vec::new();
        while let Some(page) = export.next_page().await? {
            if everything.len() + page.len() > EVERYTHING_RESOURCES_MAX + 1 {
                return Err(AppError::TooCostly(format!(
                    "the chart holds more than {EVERYTHING_RESOURCES_MAX} resources; download it whole with Patient/{patient_id}/$export"
                )));
            }
            everything.extend(page);
        }
        Ok(everything)
    }

    /// The patient's whole chart, page by page (see [`ChartExport`]): decided and audited
    /// as one export before anything is read, so someone who may not export it reads
    /// nothing of it.
    pub async fn fhir_export(
        &self,
        context: &RequestContext,
        patient_id: &str,
    ) -> AppResult<ChartExport> {
        let Ok(id) = patient_id.parse::<PatientId>() else {
            self.gate
                .authorize_missing(
                    context,
                    Action::Export,
                    ChartPart::Clinical,
                    "Patient",
                    None,
                )
                .await?;
            return Err(AppError::NotFound);
        };
        let grant = self
            .gate
            .authorize_resource(
                context,
                Action::Export,
                AuditedResource {
                    resource: haven_domain::Resource::Chart(id, ChartPart::Clinical),
                    patient: None,
                    resource_type: "Patient",
                    resource_id: Some(patient_id.to_owned()),
                },
                false,
            )
            .await?
            .ok_or_else(|| AppError::Unexpected("an allowed export without a grant".into()))?;
        let patient = self.fhir_read_patient(context, patient_id).await?;
        let types: Vec<&'static str> = served_types()
            .filter(|t| *t != "Patient" && chart_part(t).is_some())
            .collect();
        Ok(ChartExport {
            app: self.clone(),
            grant,
            patient: id,
            released_only: sees_released_only(context),
            first: Some(patient),
            types: types.into_iter(),
            current: None,
            after: None,
            keys: HashMap::new(),
        })
    }
}

impl App {
    /// Checks, authorizes and seals a create in the shared directory, under the directory's
    /// key (made on first use).
    async fn prepare_directory_create(
        &self,
        context: &RequestContext,
        mut resource: AnyResource,
        id: Option<String>,
    ) -> AppResult<PreparedWrite> {
        let resource_type = served_type(resource.resource_type())?;
        let id = id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let subject = directory_subject();
        let grant = self
            .gate
            .authorize_directory(
                context,
                Action::Create,
                subject,
                resource_type,
                Some(id.clone()),
            )
            .await?;
        let (fresh, stored_fresh) = self.gate.new_subject_key(&grant)?;
        let fresh_id = stored_fresh.key_id.clone();
        let stored = self
            .store
            .put_subject_key_if_absent(stored_fresh, self.clock.now_ms())
            .await?;
        let key = if stored.key_id == fresh_id {
            fresh
        } else {
            self.gate.open_subject_key(&grant, &stored)?
        };
        let now_ms = self.clock.now_ms();
        let server_id =
            Id::parse(id.clone()).map_err(|e| AppError::Unexpected(format!("new id: {e}")))?;
        resource.set_server_fields(server_id, 1, now_ms);
        let sealed = self.seal_resource(&key, &resource, &id, 1)?;
        let search = self.resource_tokens(&resource)?;
        Ok(PreparedWrite {
            write: Some(ResourceWrite {
                resource_type: resource_type.to_owned(),
                id: id.clone(),
                precondition: Precondition::Absent,
                version: 1,
                subject,
                patient: None,
                sealed: Some(sealed),
                search,
                held: false,
                now_ms,
            }),
            view: ResourceView {
                resource_type,
                id,
                version: 1,
                updated_at_ms: now_ms,
                resource: Some(resource),
            },
        })
    }
}

/// What a patient writes must say it is theirs: a message they send, a form they fill in,
/// never one in a clinician's name.
fn authored_by(resource: &AnyResource, patient: PatientId) -> AppResult<()> {
    let own = format!("Patient/{patient}");
    let check =
        |element: &str, reference: Option<&haven_fhir::datatypes::Reference>| match reference
            .and_then(|r| r.reference.as_ref())
        {
            Some(text) if text.as_str() != own => Err(AppError::InvalidResource {
                path: format!("{}.{element}", resource.resource_type()),
                message: "a patient writes in their own name: this must be their Patient".into(),
            }),
            _ => Ok(()),
        };
    match resource {
        AnyResource::Communication(message) => check("sender", message.sender.as_ref()),
        AnyResource::Task(request) => check("requester", request.requester.as_ref()),
        AnyResource::QuestionnaireResponse(form) => {
            check("author", form.author.as_ref())?;
            check("source", form.source.as_ref())
        }
        _ => Ok(()),
    }
}
