//! The resource types Haven serves, one module each, and [`AnyResource`], which dispatches
//! on `resourceType`.
//!
//! A resource module declares its struct with [`resource!`] (which adds the elements every
//! resource has: `id`, `meta`, `language`, `text`), its search parameters, and its
//! [`ResourceModel`] impl: the compartment, the checks serde cannot make, the search values.

use serde_json::{Map, Value};

use crate::datatypes::{CodeableConcept, Reference};
use crate::search::{SearchIndex, SearchParam};
use crate::{Compartment, Id, Invalid, ResourceModel};

/// Declares a resource struct with the elements common to every resource, refusing
/// unknown elements, with the server-managed `id` and `meta` settable by the engine.
macro_rules! resource {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        pub struct $name {
            #[serde(skip_serializing_if = "Option::is_none")]
            pub id: Option<$crate::primitives::Id>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub meta: Option<$crate::datatypes::Meta>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub language: Option<$crate::primitives::Code>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub text: Option<$crate::datatypes::Narrative>,
            $( $(#[$field_meta])* pub $field : $ty, )*
        }

        impl $crate::resources::ServerFields for $name {
            fn id(&self) -> Option<&$crate::primitives::Id> {
                self.id.as_ref()
            }

            fn set_server_fields(
                &mut self,
                id: $crate::primitives::Id,
                version: i64,
                last_updated_ms: i64,
            ) {
                self.id = Some(id);
                let mut meta = self.meta.take().unwrap_or_default();
                meta.version_id = $crate::primitives::Id::parse(version.to_string()).ok();
                meta.last_updated = Some($crate::primitives::Instant::from_unix_ms(last_updated_ms));
                self.meta = Some(meta);
            }
        }
    };
}

/// The server-managed elements, implemented by [`resource!`].
pub trait ServerFields {
    fn id(&self) -> Option<&Id>;
    fn set_server_fields(&mut self, id: Id, version: i64, last_updated_ms: i64);
}

/// The compartment of a resource whose `element` must reference the patient (checked by
/// [`crate::patient_reference`]).
pub(crate) fn patient_compartment<'a>(
    element: &'static str,
    reference: &'a Reference,
) -> Compartment<'a> {
    match reference.target() {
        Some(("Patient", id)) => Compartment::Patient { element, id },
        _ => Compartment::None,
    }
}

/// A literal reference, when given, must point at one of `types` (as `Type/{id}`); a
/// reference by identifier or display alone is accepted.
pub(crate) fn reference_to(
    path: &str,
    reference: Option<&Reference>,
    types: &[&str],
) -> Result<(), Invalid> {
    let Some(reference) = reference else {
        return Ok(());
    };
    if reference.reference.is_none() {
        return Ok(());
    }
    match reference.target() {
        Some((kind, _)) if types.contains(&kind) => Ok(()),
        _ => Err(Invalid::new(
            format!("{path}.reference"),
            format!(
                "must be a reference to {}, as Type/{{id}}",
                types.join(" or ")
            ),
        )),
    }
}

/// [`reference_to`] for each reference of a list, with its index in the path.
pub(crate) fn references_to(
    path: &str,
    references: Option<&crate::primitives::List<Reference>>,
    types: &[&str],
) -> Result<(), Invalid> {
    for (i, reference) in references.iter().flat_map(|r| r.iter()).enumerate() {
        reference_to(&format!("{path}[{i}]"), Some(reference), types)?;
    }
    Ok(())
}

/// A `CodeableConcept` bound to a required value set: it must carry a coding from
/// `system`, and every coding from `system` must have one of `codes`. Returns the code.
pub(crate) fn required_concept<'a>(
    path: &str,
    concept: &'a CodeableConcept,
    system: &str,
    codes: &[&str],
) -> Result<&'a str, Invalid> {
    let mut found = None;
    for (i, coding) in concept.codings().enumerate() {
        if coding.system.as_ref().map(|s| s.as_str()) != Some(system) {
            continue;
        }
        let code = coding.code.as_ref().map(|c| c.as_str()).unwrap_or_default();
        if !codes.contains(&code) {
            return Err(Invalid::new(
                format!("{path}.coding[{i}].code"),
                format!(
                    "`{}` is not an allowed code; use one of: {}",
                    code.chars().take(64).collect::<String>(),
                    codes.join(", ")
                ),
            ));
        }
        found.get_or_insert(code);
    }
    found.ok_or_else(|| {
        Invalid::new(
            path,
            format!("needs a coding from {system}, one of: {}", codes.join(", ")),
        )
    })
}

/// Who may author or assert clinical information (R4's usual targets).
pub(crate) const AUTHORS: &[&str] = &[
    "Practitioner",
    "PractitionerRole",
    "Patient",
    "RelatedPerson",
];
/// Who may act for the clinic.
pub(crate) const CLINICIANS: &[&str] = &["Practitioner", "PractitionerRole", "Organization"];

pub mod allergy_intolerance;
pub mod appointment;
pub mod communication;
pub mod condition;
pub mod consent;
pub mod diagnostic_report;
pub mod document_reference;
pub mod encounter;
pub mod imaging_study;
pub mod medication_request;
pub mod observation;
pub mod organization;
pub mod patient;
pub mod practitioner;
pub mod practitioner_role;
pub mod questionnaire;
pub mod questionnaire_response;
pub mod task;

pub use allergy_intolerance::AllergyIntolerance;
pub use appointment::Appointment;
pub use communication::Communication;
pub use condition::Condition;
pub use consent::Consent;
pub use diagnostic_report::DiagnosticReport;
pub use document_reference::DocumentReference;
pub use encounter::Encounter;
pub use imaging_study::ImagingStudy;
pub use medication_request::MedicationRequest;
pub use observation::Observation;
pub use organization::Organization;
pub use patient::Patient;
pub use practitioner::Practitioner;
pub use practitioner_role::PractitionerRole;
pub use questionnaire::Questionnaire;
pub use questionnaire_response::QuestionnaireResponse;
pub use task::Task;

/// Declares [`AnyResource`] over every supported type.
macro_rules! any_resource {
    ($($variant:ident),* $(,)?) => {
        /// A resource of any type Haven serves.
        #[derive(Debug, Clone, PartialEq)]
        pub enum AnyResource {
            $($variant($variant),)*
        }

        /// Every `resourceType` Haven serves, for the CapabilityStatement.
        pub const RESOURCE_TYPES: &[&str] = &[$($variant::TYPE,)*];

        impl AnyResource {
            pub(crate) fn from_object(resource_type: &str, object: Map<String, Value>) -> Result<AnyResource, Invalid> {
                match resource_type {
                    $(t if t == $variant::TYPE => crate::typed::<$variant>(object).map(AnyResource::$variant),)*
                    other => Err(Invalid::new(
                        "resourceType",
                        format!("`{}` is not a resource type this server keeps", other.chars().take(64).collect::<String>()),
                    )),
                }
            }

            pub fn resource_type(&self) -> &'static str {
                match self { $(AnyResource::$variant(_) => $variant::TYPE,)* }
            }

            /// The resource as Haven stores it inside a seal: its JSON without
            /// `resourceType`, which the row names.
            pub fn to_stored(&self) -> Result<Vec<u8>, serde_json::Error> {
                match self { $(AnyResource::$variant(r) => serde_json::to_vec(r),)* }
            }

            /// Reads what [`AnyResource::to_stored`] wrote. It was validated when it was
            /// written and is authenticated by its seal, so it is read straight into its
            /// type without checking it again; JSON that does not fit is still an error.
            pub fn from_stored(resource_type: &str, bytes: &[u8]) -> Result<AnyResource, Invalid> {
                let refused = |e: serde_json::Error| Invalid::new(resource_type, format!("stored JSON does not fit: {e}"));
                match resource_type {
                    $(t if t == $variant::TYPE => serde_json::from_slice::<$variant>(bytes).map(AnyResource::$variant).map_err(refused),)*
                    other => Err(Invalid::new("resourceType", format!("`{other}` is not a resource type this server keeps"))),
                }
            }

            pub fn compartment(&self) -> Compartment<'_> {
                match self { $(AnyResource::$variant(r) => r.compartment(),)* }
            }

            pub fn index(&self) -> SearchIndex<'_> {
                let mut index = SearchIndex::default();
                match self { $(AnyResource::$variant(r) => r.index(&mut index),)* }
                index
            }

            pub fn id(&self) -> Option<&Id> {
                match self { $(AnyResource::$variant(r) => ServerFields::id(r),)* }
            }

            pub fn set_server_fields(&mut self, id: Id, version: i64, last_updated_ms: i64) {
                match self { $(AnyResource::$variant(r) => ServerFields::set_server_fields(r, id, version, last_updated_ms),)* }
            }

            pub fn to_value(&self) -> Value {
                match self { $(AnyResource::$variant(r) => crate::to_value(r),)* }
            }
        }

        /// The search parameters of `resource_type`, or `None` for a type Haven does not serve.
        pub fn search_params(resource_type: &str) -> Option<&'static [SearchParam]> {
            match resource_type {
                $(t if t == $variant::TYPE => Some($variant::SEARCH_PARAMS),)*
                _ => None,
            }
        }
    };
}

any_resource!(
    Patient,
    Observation,
    Condition,
    AllergyIntolerance,
    MedicationRequest,
    Encounter,
    Appointment,
    DiagnosticReport,
    ImagingStudy,
    DocumentReference,
    QuestionnaireResponse,
    Consent,
    Communication,
    Task,
    Practitioner,
    PractitionerRole,
    Organization,
    Questionnaire,
);
