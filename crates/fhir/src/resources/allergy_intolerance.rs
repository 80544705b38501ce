//! `AllergyIntolerance`: a risk of a harmful reaction to a substance (FHIR R4 §9.1).

use serde::{Deserialize, Serialize};

use crate::codes::code_enum;
use crate::datatypes::{Annotation, CodeableConcept, Identifier, Reference};
use crate::primitives::{DateTime, FhirString, List};
use crate::resources::{AUTHORS, patient_compartment, reference_to, required_concept};
use crate::search::{ParamKind, SearchIndex, SearchParam};
use crate::{Compartment, Invalid, ResourceModel, one_of, patient_reference};

/// The code system of `clinicalStatus`.
pub const CLINICAL_STATUS_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
/// The code system of `verificationStatus`.
pub const VERIFICATION_STATUS_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";

code_enum! {
    pub enum AllergyIntoleranceClinicalStatus {
        Active = "active",
        Inactive = "inactive",
        Resolved = "resolved",
    }
}

code_enum! {
    pub enum AllergyIntoleranceVerificationStatus {
        Unconfirmed = "unconfirmed",
        Confirmed = "confirmed",
        Refuted = "refuted",
        EnteredInError = "entered-in-error",
    }
}

code_enum! {
    pub enum AllergyIntoleranceType {
        Allergy = "allergy",
        Intolerance = "intolerance",
    }
}

code_enum! {
    pub enum AllergyIntoleranceCategory {
        Food = "food",
        Medication = "medication",
        Environment = "environment",
        Biologic = "biologic",
    }
}

code_enum! {
    pub enum AllergyIntoleranceCriticality {
        Low = "low",
        High = "high",
        UnableToAssess = "unable-to-assess",
    }
}

code_enum! {
    pub enum AllergyIntoleranceSeverity {
        Mild = "mild",
        Moderate = "moderate",
        Severe = "severe",
    }
}

/// One adverse reaction the patient had.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AllergyIntoleranceReaction {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub substance: Option<CodeableConcept>,
    pub manifestation: List<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onset: Option<DateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<AllergyIntoleranceSeverity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposure_route: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<List<Annotation>>,
}

resource! {
    /// An allergy or intolerance of a patient.
    pub struct AllergyIntolerance {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub identifier: Option<List<Identifier>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub clinical_status: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub verification_status: Option<CodeableConcept>,
        #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
        pub type_: Option<AllergyIntoleranceType>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub category: Option<List<AllergyIntoleranceCategory>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub criticality: Option<AllergyIntoleranceCriticality>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub code: Option<CodeableConcept>,
        pub patient: Reference,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub encounter: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub onset_date_time: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub onset_string: Option<FhirString>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub recorded_date: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub recorder: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub asserter: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub last_occurrence: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub note: Option<List<Annotation>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reaction: Option<List<AllergyIntoleranceReaction>>,
    }
}

impl ResourceModel for AllergyIntolerance {
    const TYPE: &'static str = "AllergyIntolerance";
    const SEARCH_PARAMS: &'static [SearchParam] = &[
        SearchParam {
            name: "patient",
            kind: ParamKind::Reference,
            documentation: "The patient who has the allergy or intolerance",
        },
        SearchParam {
            name: "code",
            kind: ParamKind::Token,
            documentation: "The substance (code or reaction.substance)",
        },
        SearchParam {
            name: "clinical-status",
            kind: ParamKind::Token,
            documentation: "active, inactive, resolved",
        },
        SearchParam {
            name: "criticality",
            kind: ParamKind::Token,
            documentation: "low, high, unable-to-assess",
        },
        SearchParam {
            name: "date",
            kind: ParamKind::Date,
            documentation: "When the allergy was recorded (recordedDate)",
        },
    ];

    fn check(&self) -> Result<(), Invalid> {
        patient_reference(Self::TYPE, "patient", Some(&self.patient))?;
        reference_to(
            "AllergyIntolerance.encounter",
            self.encounter.as_ref(),
            &["Encounter"],
        )?;
        reference_to(
            "AllergyIntolerance.recorder",
            self.recorder.as_ref(),
            AUTHORS,
        )?;
        reference_to(
            "AllergyIntolerance.asserter",
            self.asserter.as_ref(),
            AUTHORS,
        )?;
        one_of(
            "AllergyIntolerance.onset[x]",
            &[self.onset_date_time.is_some(), self.onset_string.is_some()],
        )?;
        let clinical = match &self.clinical_status {
            Some(concept) => Some(required_concept(
                "AllergyIntolerance.clinicalStatus",
                concept,
                CLINICAL_STATUS_SYSTEM,
                AllergyIntoleranceClinicalStatus::CODES,
            )?),
            None => None,
        };
        let verification = match &self.verification_status {
            Some(concept) => Some(required_concept(
                "AllergyIntolerance.verificationStatus",
                concept,
                VERIFICATION_STATUS_SYSTEM,
                AllergyIntoleranceVerificationStatus::CODES,
            )?),
            None => None,
        };
        let in_error = verification == Some("entered-in-error");
        if in_error && clinical.is_some() {
            return Err(Invalid::new(
                "AllergyIntolerance.clinicalStatus",
                "must be absent when verificationStatus is entered-in-error (ait-2)",
            ));
        }
        if !in_error && clinical.is_none() {
            return Err(Invalid::new(
                "AllergyIntolerance.clinicalStatus",
                "required unless verificationStatus is entered-in-error (ait-1)",
            ));
        }
        Ok(())
    }

    fn compartment(&self) -> Compartment<'_> {
        patient_compartment("patient", &self.patient)
    }

    fn index<'a>(&'a self, index: &mut SearchIndex<'a>) {
        index.reference("patient", Some(&self.patient));
        index.concept("code", self.code.as_ref());
        for reaction in self.reaction.iter().flat_map(|r| r.iter()) {
            index.concept("code", reaction.substance.as_ref());
        }
        index.concept("clinical-status", self.clinical_status.as_ref());
        if let Some(criticality) = self.criticality {
            index.token("criticality", None, criticality.as_str());
        }
        if let Some(date) = &self.recorded_date {
            index.date("date", date.range());
        }
    }
}
