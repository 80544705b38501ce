//! `ImagingStudy`: a DICOM study, such as photographs or scans shared for a consultation
//! (FHIR R4 §13.1).

use serde::{Deserialize, Serialize};

use crate::codes::code_enum;
use crate::datatypes::{Annotation, CodeableConcept, Coding, Identifier, Reference};
use crate::primitives::{DateTime, FhirString, List, UnsignedInt};
use crate::resources::{patient_compartment, reference_to, references_to};
use crate::search::{ParamKind, SearchIndex, SearchParam};
use crate::{Compartment, Invalid, ResourceModel, patient_reference};

code_enum! {
    pub enum ImagingStudyStatus {
        Registered = "registered",
        Available = "available",
        Cancelled = "cancelled",
        EnteredInError = "entered-in-error",
        Unknown = "unknown",
    }
}

/// One image (SOP instance) of a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImagingStudyInstance {
    /// The DICOM SOP Instance UID.
    pub uid: FhirString,
    pub sop_class: Coding,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<UnsignedInt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<FhirString>,
}

/// One series of the study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImagingStudySeries {
    /// The DICOM Series Instance UID.
    pub uid: FhirString,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<UnsignedInt>,
    pub modality: Coding,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_of_instances: Option<UnsignedInt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_site: Option<Coding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<DateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<List<ImagingStudyInstance>>,
}

resource! {
    /// The content of a DICOM imaging study of a patient.
    pub struct ImagingStudy {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub identifier: Option<List<Identifier>>,
        pub status: ImagingStudyStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub modality: Option<List<Coding>>,
        pub subject: Reference,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub encounter: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub started: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub based_on: Option<List<Reference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub referrer: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub number_of_series: Option<UnsignedInt>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub number_of_instances: Option<UnsignedInt>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub procedure_code: Option<List<CodeableConcept>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reason_code: Option<List<CodeableConcept>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub note: Option<List<Annotation>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub description: Option<FhirString>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub series: Option<List<ImagingStudySeries>>,
    }
}

impl ResourceModel for ImagingStudy {
    const TYPE: &'static str = "ImagingStudy";
    const SEARCH_PARAMS: &'static [SearchParam] = &[
        SearchParam {
            name: "patient",
            kind: ParamKind::Reference,
            documentation: "The patient the study is of",
        },
        SearchParam {
            name: "subject",
            kind: ParamKind::Reference,
            documentation: "The subject (a patient)",
        },
        SearchParam {
            name: "status",
            kind: ParamKind::Token,
            documentation: "registered, available, …",
        },
        SearchParam {
            name: "modality",
            kind: ParamKind::Token,
            documentation: "The modality of the study or a series (DICOM code)",
        },
        SearchParam {
            name: "started",
            kind: ParamKind::Date,
            documentation: "When the study started",
        },
    ];

    fn check(&self) -> Result<(), Invalid> {
        patient_reference(Self::TYPE, "subject", Some(&self.subject))?;
        reference_to(
            "ImagingStudy.encounter",
            self.encounter.as_ref(),
            &["Encounter"],
        )?;
        reference_to(
            "ImagingStudy.referrer",
            self.referrer.as_ref(),
            &["Practitioner", "PractitionerRole"],
        )?;
        references_to(
            "ImagingStudy.basedOn",
            self.based_on.as_ref(),
            &[
                "CarePlan",
                "ServiceRequest",
                "Appointment",
                "AppointmentResponse",
                "Task",
            ],
        )?;
        Ok(())
    }

    fn compartment(&self) -> Compartment<'_> {
        patient_compartment("subject", &self.subject)
    }

    fn index<'a>(&'a self, index: &mut SearchIndex<'a>) {
        index.reference("patient", Some(&self.subject));
        index.reference("subject", Some(&self.subject));
        index.token("status", None, self.status.as_str());
        for modality in self.modality.iter().flat_map(|m| m.iter()) {
            index.coding("modality", modality);
        }
        for series in self.series.iter().flat_map(|s| s.iter()) {
            index.coding("modality", &series.modality);
        }
        if let Some(started) = &self.started {
            index.date("started", started.range());
        }
    }
}
