//! `Condition`: a problem, diagnosis or other clinical concern (FHIR R4 §9.2).

use crate::codes::code_enum;
use crate::datatypes::{Annotation, CodeableConcept, Identifier, Period, Reference};
use crate::primitives::{DateTime, FhirString, List};
use crate::resources::observation::period_range;
use crate::resources::{AUTHORS, patient_compartment, reference_to, required_concept};
use crate::search::{ParamKind, SearchIndex, SearchParam};
use crate::{Compartment, Invalid, ResourceModel, one_of, patient_reference};

/// The code system of `clinicalStatus`.
pub const CLINICAL_STATUS_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
/// The code system of `verificationStatus`.
pub const VERIFICATION_STATUS_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/condition-ver-status";

code_enum! {
    pub enum ConditionClinicalStatus {
        Active = "active",
        Recurrence = "recurrence",
        Relapse = "relapse",
        Inactive = "inactive",
        Remission = "remission",
        Resolved = "resolved",
    }
}

code_enum! {
    pub enum ConditionVerificationStatus {
        Unconfirmed = "unconfirmed",
        Provisional = "provisional",
        Differential = "differential",
        Confirmed = "confirmed",
        Refuted = "refuted",
        EnteredInError = "entered-in-error",
    }
}

resource! {
    /// A clinical condition, problem or diagnosis of a patient.
    pub struct Condition {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub identifier: Option<List<Identifier>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub clinical_status: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub verification_status: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub category: Option<List<CodeableConcept>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub severity: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub code: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub body_site: Option<List<CodeableConcept>>,
        pub subject: Reference,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub encounter: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub onset_date_time: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub onset_period: Option<Period>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub onset_string: Option<FhirString>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub abatement_date_time: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub abatement_period: Option<Period>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub abatement_string: Option<FhirString>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub recorded_date: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub recorder: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub asserter: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub note: Option<List<Annotation>>,
    }
}

impl Condition {
    /// When the condition began: `onsetDateTime` or `onsetPeriod`, as a span.
    pub fn onset(&self) -> Option<crate::TimeRange> {
        if let Some(at) = &self.onset_date_time {
            return Some(at.range());
        }
        self.onset_period.as_ref().and_then(period_range)
    }
}

impl ResourceModel for Condition {
    const TYPE: &'static str = "Condition";
    const SEARCH_PARAMS: &'static [SearchParam] = &[
        SearchParam {
            name: "patient",
            kind: ParamKind::Reference,
            documentation: "The patient who has the condition",
        },
        SearchParam {
            name: "subject",
            kind: ParamKind::Reference,
            documentation: "The subject (a patient)",
        },
        SearchParam {
            name: "code",
            kind: ParamKind::Token,
            documentation: "The code of the condition (e.g. SNOMED CT, ICD-10)",
        },
        SearchParam {
            name: "category",
            kind: ParamKind::Token,
            documentation: "problem-list-item, encounter-diagnosis, …",
        },
        SearchParam {
            name: "clinical-status",
            kind: ParamKind::Token,
            documentation: "active, inactive, resolved, …",
        },
        SearchParam {
            name: "onset-date",
            kind: ParamKind::Date,
            documentation: "When the condition began (onsetDateTime or onsetPeriod)",
        },
    ];

    fn check(&self) -> Result<(), Invalid> {
        patient_reference(Self::TYPE, "subject", Some(&self.subject))?;
        reference_to(
            "Condition.encounter",
            self.encounter.as_ref(),
            &["Encounter"],
        )?;
        reference_to("Condition.recorder", self.recorder.as_ref(), AUTHORS)?;
        reference_to("Condition.asserter", self.asserter.as_ref(), AUTHORS)?;
        one_of(
            "Condition.onset[x]",
            &[
                self.onset_date_time.is_some(),
                self.onset_period.is_some(),
                self.onset_string.is_some(),
            ],
        )?;
        one_of(
            "Condition.abatement[x]",
            &[
                self.abatement_date_time.is_some(),
                self.abatement_period.is_some(),
                self.abatement_string.is_some(),
            ],
        )?;
        let clinical = match &self.clinical_status {
            Some(concept) => Some(required_concept(
                "Condition.clinicalStatus",
                concept,
                CLINICAL_STATUS_SYSTEM,
                ConditionClinicalStatus::CODES,
            )?),
            None => None,
        };
        let verification = match &self.verification_status {
            Some(concept) => Some(required_concept(
                "Condition.verificationStatus",
                concept,
                VERIFICATION_STATUS_SYSTEM,
                ConditionVerificationStatus::CODES,
            )?),
            None => None,
        };
        let abated = self.abatement_date_time.is_some()
            || self.abatement_period.is_some()
            || self.abatement_string.is_some();
        let ended = matches!(clinical, Some("inactive" | "resolved" | "remission"));
        if abated && !ended {
            return Err(Invalid::new(
                "Condition.abatement[x]",
                "only when clinicalStatus is inactive, resolved or remission (con-4)",
            ));
        }
        if verification == Some("entered-in-error") && clinical.is_some() {
            return Err(Invalid::new(
                "Condition.clinicalStatus",
                "must be absent when verificationStatus is entered-in-error (con-5)",
            ));
        }
        Ok(())
    }

    fn compartment(&self) -> Compartment<'_> {
        patient_compartment("subject", &self.subject)
    }

    fn index<'a>(&'a self, index: &mut SearchIndex<'a>) {
        index.reference("patient", Some(&self.subject));
        index.reference("subject", Some(&self.subject));
        index.concept("code", self.code.as_ref());
        index.concepts("category", self.category.iter().flat_map(|c| c.iter()));
        index.concept("clinical-status", self.clinical_status.as_ref());
        if let Some(range) = self.onset() {
            index.date("onset-date", range);
        }
    }
}
