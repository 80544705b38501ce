//! Amendments (ONC 170.315(d)(4)): a patient asks for a specific record to be corrected,
//! and the care team accepts (the record gets a new version, linked from the request) or
//! denies with a reason. Either way the request and its answer stay attached to the record
//! and visible to the patient.
//!
//! A request is a FHIR `Task` with code `task-code|change`, `focus` on the record and `for`
//! on the patient, kept sealed in the patient's chart like any other resource. It changes
//! only through `$accept` and `$deny`, never by an update or a delete, so nobody can rewrite
//! or remove what the patient asked or what they were told.

use haven_domain::{Action, PatientId};
use haven_fhir::datatypes::{CodeableConcept, Reference};
use haven_fhir::primitives::{DateTime, FhirString, Instant, List};
use haven_fhir::resources::task::{Task, TaskParameter, TaskStatus};
use haven_fhir::{AnyResource, Id};
use haven_store::fhir::{Precondition, ResourceWrite};

use super::{ResourceView, chart_part, known_id, sees_released_only};
use crate::{App, AppError, AppResult, RequestContext};

/// The longest reason a denial may give (a FHIR `string`).
pub const DENIAL_REASON_CHARS_MAX: usize = haven_fhir::limits::STRING_CHARS_MAX;

/// The care team's answer to an amendment request.
#[derive(Debug)]
pub enum AmendmentDecision {
    /// The record as corrected: it becomes the record's next version.
    Accept(Box<AnyResource>),
    /// Why the record stays as it is, for the patient to read.
    Deny(String),
}

/// Amendment requests are kept as asked and answered.
pub(crate) fn refuse_direct_change(resource_type: &str) -> AppResult<()> {
    if resource_type == "Task" {
        return Err(AppError::Conflict {
            code: "amendment_kept",
            message: "an amendment request is answered with Task/{id}/$accept or $deny; it is never changed or deleted otherwise".into(),
        });
    }
    Ok(())
}

fn now_date_time(now_ms: i64) -> AppResult<DateTime> {
    DateTime::parse(Instant::from_unix_ms(now_ms).as_str())
        .map_err(|e| AppError::Unexpected(format!("a server time: {e}")))
}

fn invalid(path: &str, message: impl Into<String>) -> AppError {
    AppError::InvalidResource {
        path: path.to_owned(),
        message: message.into(),
    }
}

impl App {
    /// Checks a new amendment request once its create is allowed, and fills in what the
    /// server knows: when it was asked and, for a patient, by whom. The record it names must
    /// be in the same patient's chart and, for a patient, one they can see.
    pub(crate) async fn check_amendment_request(
        &self,
        context: &RequestContext,
        task: &mut Task,
        patient: PatientId,
        now_ms: i64,
    ) -> AppResult<()> {
        if !task.is_change_request() {
            return Err(invalid(
                "Task.code",
                "Haven keeps a Task only as an amendment request: code http://hl7.org/fhir/CodeSystem/task-code|change",
            ));
        }
        if task.status != TaskStatus::Requested {
            return Err(invalid(
                "Task.status",
                "a new amendment request is `requested`; the care team answers it",
            ));
        }
        if task.output.is_some() || task.status_reason.is_some() {
            return Err(invalid(
                "Task.output",
                "a new amendment request carries no answer (output, statusReason)",
            ));
        }
        let Some((focus_type, focus_id)) = task.focus.as_ref().and_then(Reference::target) else {
            return Err(invalid(
                "Task.focus",
                "required: the record to correct, as Type/{id}",
            ));
        };
        let Some(focus_type) = super::served_types()
            .find(|t| *t == focus_type && *t != "Task" && chart_part(t).is_some())
        else {
            return Err(invalid(
                "Task.focus.reference",
                "must be a record of the patient's chart (demographics are corrected at the front desk)",
            ));
        };
        let focus = self.store.resource(focus_type, focus_id).await?;
        let visible = focus.as_ref().is_some_and(|f| {
            f.patient == Some(patient)
                && f.sealed.is_some()
                && !(f.held && sees_released_only(context))
        });
        if !visible {
            return Err(invalid(
                "Task.focus.reference",
                "refers to no record in this patient's chart",
            ));
        }
        if task.authored_on.is_none() {
            task.authored_on = Some(now_date_time(now_ms)?);
        }
        if context.actor.role == haven_domain::Role::Patient && task.requester.is_none() {
            task.requester = Some(Reference::to("Patient", &patient.to_string()));
        }
        Ok(())
    }

    /// Answers an amendment request: accepting writes the corrected record and the answered
    /// request together (one atomic batch); denying records the reason. Whoever answers
    /// must be allowed to change the record itself, and both decisions are audited.
    pub async fn fhir_decide_amendment(
        &self,
        context: &RequestContext,
        task_id: &str,
        decision: AmendmentDecision,
    ) -> AppResult<ResourceView> {
        let id = known_id(task_id)?;
        let stored = self.store.resource("Task", id).await?;
        let grant = self
            .authorize_stored(context, Action::Update, "Task", id, stored.as_ref())
            .await?;
        let stored = stored.ok_or(AppError::NotFound)?;
        let view = self.open_resource(&grant, &stored)?;
        let Some(AnyResource::Task(mut task)) = view.resource else {
            return Err(AppError::Gone {
                version: stored.version,
            });
        };
        if task.status != TaskStatus::Requested {
            return Err(AppError::Conflict {
                code: "amendment_answered",
                message: format!(
                    "this request was already answered (status {})",
                    task.status.as_str()
                ),
            });
        }
        let (focus_type, focus_id) = task
            .focus
            .as_ref()
            .and_then(Reference::target)
            .and_then(|(t, i)| Some((super::served_type(t).ok()?, i.to_owned())))
            .ok_or_else(|| {
                AppError::Unexpected("an amendment request without its record".into())
            })?;
        let now_ms = self.clock.now_ms();
        let mut writes = Vec::with_capacity(2);
        match decision {
            AmendmentDecision::Accept(corrected) => {
                if corrected.resource_type() != focus_type {
                    return Err(invalid(
                        "resourceType",
                        format!("must be {focus_type}, the type of the record to correct"),
                    ));
                }
                if corrected.id().map(Id::as_str) != Some(focus_id.as_str()) {
                    return Err(invalid(
                        &format!("{focus_type}.id"),
                        format!("must be {focus_id}, the record the request is about"),
                    ));
                }
                let prepared = self
                    .prepare_update(context, &focus_id, *corrected, None)
                    .await?;
                let mut write = prepared.write.ok_or_else(|| {
                    AppError::Unexpected("a prepared update without its write".into())
                })?;
                // The clinician answering the request has reviewed the record: an amended
                // result is not held back again.
                write.held = false;
                task.status = TaskStatus::Completed;
                let amended = format!("{focus_type}/{focus_id}/_history/{}", write.version);
                let output = TaskParameter {
                    type_: CodeableConcept {
                        coding: None,
                        text: FhirString::parse("Amended record").ok(),
                    },
                    value_string: None,
                    value_markdown: None,
                    value_code: None,
                    value_boolean: None,
                    value_reference: Some(Reference {
                        reference: Some(FhirString::parse(amended).map_err(|e| {
                            AppError::Unexpected(format!("an amended reference: {e}"))
                        })?),
                        type_: None,
                        identifier: None,
                        display: None,
                    }),
                    value_attachment: None,
                };
                task.output = List::from_vec(vec![output]);
                writes.push(write);
            }
            AmendmentDecision::Deny(reason) => {
                let reason = reason.trim();
                if reason.is_empty() {
                    return Err(invalid(
                        "Parameters.parameter.where(name='reason')",
                        "required: why the record stays as it is, for the patient to read",
                    ));
                }
                let reason = FhirString::parse(reason.to_owned()).map_err(|e| {
                    invalid("Parameters.parameter.where(name='reason').valueString", e)
                })?;
                let focus = self.store.resource(focus_type, &focus_id).await?;
                self.authorize_stored(
                    context,
                    Action::Update,
                    focus_type,
                    &focus_id,
                    focus.as_ref(),
                )
                .await?;
                task.status = TaskStatus::Rejected;
                task.status_reason = Some(CodeableConcept {
                    coding: None,
                    text: Some(reason),
                });
            }
        }
        task.last_modified = Some(now_date_time(now_ms)?);
        let patient = stored
            .patient
            .ok_or_else(|| AppError::Unexpected("an amendment request without a patient".into()))?;
        let key = self
            .gate
            .open_subject_key(&grant, stored.subject_key.as_ref().ok_or(AppError::Erased)?)?;
        let version = stored.version + 1;
        let mut resource = AnyResource::Task(task);
        let server_id =
            Id::parse(id.to_owned()).map_err(|e| AppError::Unexpected(format!("id: {e}")))?;
        resource.set_server_fields(server_id, version, now_ms);
        writes.push(ResourceWrite {
            resource_type: "Task".to_owned(),
            id: id.to_owned(),
            // Two answers racing: the second finds the request changed and is refused.
            precondition: Precondition::Version(stored.version),
            version,
            subject: patient,
            patient: Some(patient),
            sealed: Some(self.seal_resource(&key, &resource, id, version)?),
            search: self.resource_tokens(&resource)?,
            held: false,
            now_ms,
        });
        self.apply_writes(writes)
            .await
            .map_err(|error| match error {
                AppError::PreconditionFailed { .. } => AppError::Conflict {
                    code: "amendment_answered",
                    message: "this request was answered while yours was handled; read it again"
                        .into(),
                },
                other => other,
            })?;
        Ok(ResourceView {
            resource_type: "Task",
            id: id.to_owned(),
            version,
            updated_at_ms: now_ms,
            resource: Some(resource),
        })
    }
}
