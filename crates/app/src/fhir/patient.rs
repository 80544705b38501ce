//! FHIR `Patient` as a view of the demographic record Haven keeps (`patients`).
//!
//! The record holds a name, a birth date, identifiers and phone or e-mail contacts; a
//! FHIR Patient is mapped onto exactly that. An element the record does not keep (an
//! address, a gender) is refused with its path rather than dropped, so nothing a client
//! sends is silently lost. A masked view (a clinician finding a stranger) carries the
//! `REDACTED` security label.

use haven_domain::patient::ContactKind;
use haven_domain::{ContactPoint, HumanName, Identifier, Mask, PatientId, PatientRecord};
use haven_fhir::datatypes::{
    Coding, ContactPoint as FhirContact, ContactPointSystem, HumanName as FhirName,
    Identifier as FhirIdentifier, Meta,
};
use haven_fhir::primitives::{Code, FhirString, List, Uri};
use haven_fhir::resources::Patient;
use haven_fhir::{AnyResource, Id};

use super::ResourceView;
use super::search::{SearchPage, SearchRequest};
use crate::patients::{PatientSearch, PatientView};
use crate::{App, AppError, AppResult, RequestContext};

fn refuse(path: &str, message: &str) -> AppError {
    AppError::InvalidResource {
        path: format!("Patient.{path}"),
        message: message.to_owned(),
    }
}

/// The record a FHIR Patient describes, or the first element the record cannot keep.
fn to_record(patient: &Patient, today: time::Date) -> AppResult<PatientRecord> {
    const NOT_KEPT: &str = "not kept by this server's patient record";
    if patient.text.is_some() {
        return Err(refuse("text", NOT_KEPT));
    }
    for (present, path) in [
        (patient.active.is_some(), "active"),
        (patient.gender.is_some(), "gender"),
        (patient.deceased_boolean.is_some(), "deceasedBoolean"),
        (patient.deceased_date_time.is_some(), "deceasedDateTime"),
        (patient.address.is_some(), "address"),
        (patient.marital_status.is_some(), "maritalStatus"),
        (patient.communication.is_some(), "communication"),
        (
            patient.general_practitioner.is_some(),
            "generalPractitioner",
        ),
        (
            patient.managing_organization.is_some(),
            "managingOrganization",
        ),
        (patient.language.is_some(), "language"),
    ] {
        if present {
            return Err(refuse(path, NOT_KEPT));
        }
    }
    let names = patient.name.as_ref().map(List::as_slice).unwrap_or(&[]);
    if names.len() > 1 {
        return Err(refuse("name[1]", "one name is kept"));
    }
    let name = names.first().ok_or_else(|| refuse("name", "required"))?;
    for (present, path) in [
        (name.use_.is_some(), "name[0].use"),
        (name.text.is_some(), "name[0].text"),
        (name.prefix.is_some(), "name[0].prefix"),
        (name.suffix.is_some(), "name[0].suffix"),
        (name.period.is_some(), "name[0].period"),
    ] {
        if present {
            return Err(refuse(path, NOT_KEPT));
        }
    }
    let family = name
        .family
        .as_ref()
        .ok_or_else(|| refuse("name[0].family", "required"))?;
    let given = name
        .given
        .iter()
        .flat_map(|g| g.iter())
        .map(|g| g.as_str().to_owned())
        .collect();
    let birth_date = patient
        .birth_date
        .as_ref()
        .and_then(|d| d.to_calendar_date())
        .ok_or_else(|| refuse("birthDate", "required, to the day"))?;
    let mut identifiers = Vec::new();
    for (i, identifier) in patient.identifier.iter().flat_map(|l| l.iter()).enumerate() {
        let (Some(system), Some(value)) = (&identifier.system, &identifier.value) else {
            return Err(refuse(
                &format!("identifier[{i}]"),
                "an identifier needs a system and a value",
            ));
        };
        if identifier.use_.is_some()
            || identifier.type_.is_some()
            || identifier.period.is_some()
            || identifier.assigner.is_some()
        {
            return Err(refuse(
                &format!("identifier[{i}]"),
                "only system and value of an identifier are kept",
            ));
        }
        identifiers.push(Identifier {
            system: system.as_str().to_owned(),
            value: value.as_str().to_owned(),
        });
    }
    let mut contacts = Vec::new();
    for (i, contact) in patient.telecom.iter().flat_map(|l| l.iter()).enumerate() {
        let kind = match contact.system {
            Some(ContactPointSystem::Phone) => ContactKind::Phone,
            Some(ContactPointSystem::Email) => ContactKind::Email,
            _ => {
                return Err(refuse(
                    &format!("telecom[{i}].system"),
                    "phone or email contacts are kept",
                ));
            }
        };
        let value = contact
            .value
            .as_ref()
            .ok_or_else(|| refuse(&format!("telecom[{i}].value"), "required"))?;
        if contact.use_.is_some() || contact.rank.is_some() || contact.period.is_some() {
            return Err(refuse(
                &format!("telecom[{i}]"),
                "only system and value of a contact are kept",
            ));
        }
        contacts.push(ContactPoint {
            kind,
            value: value.as_str().to_owned(),
        });
    }
    PatientRecord::new(
        HumanName {
            family: family.as_str().to_owned(),
            given,
        },
        birth_date,
        identifiers,
        contacts,
        today,
    )
    .map_err(|e| AppError::InvalidResource {
        path: format!("Patient.{}", fhir_path_of(&e.field)),
        message: e.message,
    })
}

/// The FHIR path of a `PatientRecord` field name.
fn fhir_path_of(field: &str) -> String {
    field
        .replace("name.", "name[0].")
        .replace("birth_date", "birthDate")
        .replace("identifiers", "identifier")
        .replace("contacts", "telecom")
}

fn text(value: &str) -> AppResult<FhirString> {
    FhirString::parse(value).map_err(|e| AppError::Unexpected(format!("a stored name: {e}")))
}

/// The FHIR Patient of a record as shown to the caller.
fn to_fhir(view: &PatientView) -> AppResult<AnyResource> {
    let record = &view.record;
    let given = record
        .name()
        .given
        .iter()
        .map(|g| text(g))
        .collect::<AppResult<Vec<_>>>()?;
    let name = FhirName {
        use_: None,
        text: None,
        family: Some(text(&record.name().family)?),
        given: List::from_vec(given),
        prefix: None,
        suffix: None,
        period: None,
    };
    let identifiers = record
        .identifiers()
        .iter()
        .map(|i| {
            Ok(FhirIdentifier {
                use_: None,
                type_: None,
                system: Some(
                    Uri::parse(i.system.as_str())
                        .map_err(|e| AppError::Unexpected(format!("a stored system: {e}")))?,
                ),
                value: Some(text(&i.value)?),
                period: None,
                assigner: None,
            })
        })
        .collect::<AppResult<Vec<_>>>()?;
    let telecom = record
        .contacts()
        .iter()
        .map(|c| {
            Ok(FhirContact {
                system: Some(match c.kind {
                    ContactKind::Phone => ContactPointSystem::Phone,
                    ContactKind::Email => ContactPointSystem::Email,
                }),
                value: Some(text(&c.value)?),
                use_: None,
                rank: None,
                period: None,
            })
        })
        .collect::<AppResult<Vec<_>>>()?;
    let security = match view.mask {
        Mask::None => None,
        // HL7 v3 ObservationValue: the resource was redacted for this reader.
        Mask::Identification => List::from_vec(vec![Coding {
            system: Uri::parse("http://terminology.hl7.org/CodeSystem/v3-ObservationValue").ok(),
            version: None,
            code: Code::parse("REDACTED").ok(),
            display: None,
            user_selected: None,
        }]),
    };
    let mut patient = Patient {
        id: None,
        meta: Some(Meta {
            security,
            ..Meta::default()
        }),
        language: None,
        text: None,
        identifier: List::from_vec(identifiers),
        active: None,
        name: List::from_vec(vec![name]),
        telecom: List::from_vec(telecom),
        gender: None,
        birth_date: Some(haven_fhir::Date::from_calendar_date(record.birth_date())),
        deceased_boolean: None,
        deceased_date_time: None,
        address: None,
        marital_status: None,
        communication: None,
        general_practitioner: None,
        managing_organization: None,
    };
    let id = Id::parse(view.id.to_string())
        .map_err(|e| AppError::Unexpected(format!("a patient id: {e}")))?;
    haven_fhir::ServerFields::set_server_fields(&mut patient, id, view.version, view.updated_at_ms);
    Ok(AnyResource::Patient(patient))
}

fn resource_view(view: &PatientView) -> AppResult<ResourceView> {
    Ok(ResourceView {
        resource_type: "Patient",
        id: view.id.to_string(),
        version: view.version,
        updated_at_ms: view.updated_at_ms,
        resource: Some(to_fhir(view)?),
    })
}

fn patient_of(resource: AnyResource) -> AppResult<Patient> {
    match resource {
        AnyResource::Patient(patient) => Ok(patient),
        other => Err(AppError::Unexpected(format!(
            "a {} where a Patient was expected",
            other.resource_type()
        ))),
    }
}

impl App {
    pub(super) async fn fhir_create_patient(
        &self,
        context: &RequestContext,
        resource: AnyResource,
    ) -> AppResult<ResourceView> {
        let record = to_record(&patient_of(resource)?, self.clock.today())?;
        resource_view(&self.create_patient(context, record).await?)
    }

    pub(crate) async fn fhir_read_patient(
        &self,
        context: &RequestContext,
        id: &str,
    ) -> AppResult<ResourceView> {
        let Ok(id) = id.parse::<PatientId>() else {
            // Not an id Haven issues: it names no one, and nothing is looked at.
            return Err(AppError::NotFound);
        };
        resource_view(&self.get_patient(context, id).await?)
    }

    pub(super) async fn fhir_update_patient(
        &self,
        context: &RequestContext,
        id: &str,
        resource: AnyResource,
        if_match: Option<i64>,
    ) -> AppResult<ResourceView> {
        let patient = patient_of(resource)?;
        if patient.id.as_ref().map(Id::as_str) != Some(id) {
            return Err(refuse(
                "id",
                "required in an update, and the same as in the URL",
            ));
        }
        let record = to_record(&patient, self.clock.today())?;
        let Ok(patient_id) = id.parse::<PatientId>() else {
            return Err(AppError::NotFound);
        };
        let expected = match if_match {
            Some(version) => version,
            None => self.get_patient(context, patient_id).await?.version,
        };
        match self
            .update_patient(context, patient_id, expected, record)
            .await
        {
            Err(AppError::VersionMismatch { current }) if if_match.is_some() => {
                Err(AppError::PreconditionFailed { current })
            }
            Err(AppError::VersionMismatch { current }) => Err(AppError::Conflict {
                code: "version_conflict",
                message: format!(
                    "the patient changed while this request was handled (now at version {current}); read it and try again"
                ),
            }),
            other => resource_view(&other?),
        }
    }

    pub(super) async fn fhir_search_patients(
        &self,
        context: &RequestContext,
        request: &SearchRequest,
    ) -> AppResult<SearchPage> {
        let mut search = PatientSearch {
            limit: super::search::PAGE_DEFAULT,
            ..PatientSearch::default()
        };
        // `:exact` is checked on the opened records: the index folds case and accents.
        let mut exact_family = None;
        for (name, value) in &request.params {
            match name.as_str() {
                "family" => search.family = Some(value.clone()),
                "family:exact" => {
                    search.family = Some(value.clone());
                    exact_family = Some(value.clone());
                }
                "birthdate" => {
                    let date = haven_fhir::Date::parse(value.strip_prefix("eq").unwrap_or(value))
                        .ok()
                        .and_then(|d| d.to_calendar_date())
                        .ok_or_else(|| AppError::InvalidResource {
                            path: "search".into(),
                            message: "`birthdate` is a day (YYYY-MM-DD); ranges are not supported for patients".into(),
                        })?;
                    search.birth_date = Some(date);
                }
                "identifier" => {
                    let (system, value) =
                        value
                            .split_once('|')
                            .ok_or_else(|| AppError::InvalidResource {
                                path: "search".into(),
                                message: "`identifier` is system|value".into(),
                            })?;
                    search.identifier = Some((system.to_owned(), value.to_owned()));
                }
                "_count" => {
                    search.limit = value
                        .parse::<u32>()
                        .ok()
                        .filter(|c| (1..=super::search::PAGE_MAX).contains(c))
                        .ok_or_else(|| AppError::InvalidResource {
                            path: "search".into(),
                            message: format!("`_count` is 1 to {}", super::search::PAGE_MAX),
                        })?;
                }
                "_page" => {
                    search.after = Some(
                        value
                            .strip_prefix("a.")
                            .and_then(|id| id.parse().ok())
                            .ok_or_else(|| AppError::InvalidResource {
                                path: "search".into(),
                                message: "`_page` is not a page of this search".into(),
                            })?,
                    );
                }
                other => {
                    return Err(AppError::NotSupported(format!(
                        "`{}` is not a search parameter of Patient; use family, birthdate, identifier, _count",
                        other.chars().take(64).collect::<String>()
                    )));
                }
            }
        }
        let page = self.search_patients(context, &search).await?;
        Ok(SearchPage {
            matches: page
                .items
                .iter()
                .filter(|view| {
                    exact_family
                        .as_ref()
                        .is_none_or(|family| view.record.name().family == *family)
                })
                .map(resource_view)
                .collect::<AppResult<Vec<_>>>()?,
            included: Vec::new(),
            total: None,
            next: page.next.map(|id| format!("a.{id}")),
        })
    }
}
