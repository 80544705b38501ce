//! `MedicationRequest`: a prescription (FHIR R4 §12.1 Medications, MedicationRequest).

use serde::{Deserialize, Serialize};

use crate::codes::code_enum;
use crate::datatypes::{
    Annotation, CodeableConcept, Dosage, Identifier, Period, Quantity, Reference,
};
use crate::primitives::{DateTime, List, UnsignedInt};
use crate::resources::{patient_compartment, reference_to, references_to};
use crate::search::{ParamKind, SearchIndex, SearchParam};
use crate::{Compartment, Invalid, ResourceModel, one_of, patient_reference};

code_enum! {
    pub enum MedicationRequestStatus {
        Active = "active",
        OnHold = "on-hold",
        Cancelled = "cancelled",
        Completed = "completed",
        EnteredInError = "entered-in-error",
        Stopped = "stopped",
        Draft = "draft",
        Unknown = "unknown",
    }
}

code_enum! {
    pub enum MedicationRequestIntent {
        Proposal = "proposal",
        Plan = "plan",
        Order = "order",
        OriginalOrder = "original-order",
        ReflexOrder = "reflex-order",
        FillerOrder = "filler-order",
        InstanceOrder = "instance-order",
        Option = "option",
    }
}

code_enum! {
    /// How quickly a request should be acted on (shared by requests and communications).
    pub enum RequestPriority {
        Routine = "routine",
        Urgent = "urgent",
        Asap = "asap",
        Stat = "stat",
    }
}

/// What the pharmacy may dispense.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DispenseRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validity_period: Option<Period>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number_of_repeats_allowed: Option<UnsignedInt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<Quantity>,
    /// A `Duration`: a quantity of time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_supply_duration: Option<Quantity>,
}

/// Whether a generic may be given instead (`allowed[x]` 1..1, kept as a boolean).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Substitution {
    pub allowed_boolean: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<CodeableConcept>,
}

resource! {
    /// An order for a medication for a patient.
    pub struct MedicationRequest {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub identifier: Option<List<Identifier>>,
        pub status: MedicationRequestStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub status_reason: Option<CodeableConcept>,
        pub intent: MedicationRequestIntent,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub category: Option<List<CodeableConcept>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub priority: Option<RequestPriority>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub medication_codeable_concept: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub medication_reference: Option<Reference>,
        pub subject: Reference,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub encounter: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub authored_on: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub requester: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reason_code: Option<List<CodeableConcept>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reason_reference: Option<List<Reference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub note: Option<List<Annotation>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub dosage_instruction: Option<List<Dosage>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub dispense_request: Option<DispenseRequest>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub substitution: Option<Substitution>,
    }
}

impl ResourceModel for MedicationRequest {
    const TYPE: &'static str = "MedicationRequest";
    const SEARCH_PARAMS: &'static [SearchParam] = &[
        SearchParam {
            name: "patient",
            kind: ParamKind::Reference,
            documentation: "The patient the prescription is for",
        },
        SearchParam {
            name: "subject",
            kind: ParamKind::Reference,
            documentation: "The subject (a patient)",
        },
        SearchParam {
            name: "code",
            kind: ParamKind::Token,
            documentation: "The medication code (medicationCodeableConcept)",
        },
        SearchParam {
            name: "status",
            kind: ParamKind::Token,
            documentation: "active, completed, stopped, …",
        },
        SearchParam {
            name: "intent",
            kind: ParamKind::Token,
            documentation: "proposal, plan, order, …",
        },
        SearchParam {
            name: "authoredon",
            kind: ParamKind::Date,
            documentation: "When the prescription was written",
        },
    ];

    fn check(&self) -> Result<(), Invalid> {
        patient_reference(Self::TYPE, "subject", Some(&self.subject))?;
        let forms = [
            self.medication_codeable_concept.is_some(),
            self.medication_reference.is_some(),
        ];
        one_of("MedicationRequest.medication[x]", &forms)?;
        if !forms.contains(&true) {
            return Err(Invalid::new(
                "MedicationRequest.medication[x]",
                "required: medicationCodeableConcept or medicationReference",
            ));
        }
        reference_to(
            "MedicationRequest.medicationReference",
            self.medication_reference.as_ref(),
            &["Medication"],
        )?;
        reference_to(
            "MedicationRequest.encounter",
            self.encounter.as_ref(),
            &["Encounter"],
        )?;
        reference_to(
            "MedicationRequest.requester",
            self.requester.as_ref(),
            &[
                "Practitioner",
                "PractitionerRole",
                "Organization",
                "Patient",
                "RelatedPerson",
                "Device",
            ],
        )?;
        references_to(
            "MedicationRequest.reasonReference",
            self.reason_reference.as_ref(),
            &["Condition", "Observation"],
        )?;
        Ok(())
    }

    fn compartment(&self) -> Compartment<'_> {
        patient_compartment("subject", &self.subject)
    }

    fn index<'a>(&'a self, index: &mut SearchIndex<'a>) {
        index.reference("patient", Some(&self.subject));
        index.reference("subject", Some(&self.subject));
        index.concept("code", self.medication_codeable_concept.as_ref());
        index.token("status", None, self.status.as_str());
        index.token("intent", None, self.intent.as_str());
        if let Some(at) = &self.authored_on {
            index.date("authoredon", at.range());
        }
    }
}
