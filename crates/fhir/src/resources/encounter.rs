//! `Encounter`: a visit, in person or by video (FHIR R4 §11.1).

use serde::{Deserialize, Serialize};

use crate::codes::code_enum;
use crate::datatypes::{CodeableConcept, Coding, Identifier, Period, Reference};
use crate::primitives::List;
use crate::resources::observation::period_range;
use crate::resources::{patient_compartment, reference_to, references_to};
use crate::search::{ParamKind, SearchIndex, SearchParam};
use crate::{Compartment, Invalid, ResourceModel, patient_reference};

code_enum! {
    pub enum EncounterStatus {
        Planned = "planned",
        Arrived = "arrived",
        Triaged = "triaged",
        InProgress = "in-progress",
        Onleave = "onleave",
        Finished = "finished",
        Cancelled = "cancelled",
        EnteredInError = "entered-in-error",
        Unknown = "unknown",
    }
}

/// Someone who took part in the encounter, such as the attending clinician.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EncounterParticipant {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<List<CodeableConcept>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub individual: Option<Reference>,
}

resource! {
    /// An interaction between a patient and the clinic's practitioners.
    pub struct Encounter {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub identifier: Option<List<Identifier>>,
        pub status: EncounterStatus,
        /// `AMB`, `VR` (virtual), … from the v3 ActCode system.
        #[serde(rename = "class")]
        pub class_: Coding,
        #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
        pub type_: Option<List<CodeableConcept>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub service_type: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub priority: Option<CodeableConcept>,
        pub subject: Reference,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub participant: Option<List<EncounterParticipant>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub appointment: Option<List<Reference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub period: Option<Period>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reason_code: Option<List<CodeableConcept>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reason_reference: Option<List<Reference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub service_provider: Option<Reference>,
    }
}

impl ResourceModel for Encounter {
    const TYPE: &'static str = "Encounter";
    const SEARCH_PARAMS: &'static [SearchParam] = &[
        SearchParam {
            name: "patient",
            kind: ParamKind::Reference,
            documentation: "The patient present at the encounter",
        },
        SearchParam {
            name: "subject",
            kind: ParamKind::Reference,
            documentation: "The subject (a patient)",
        },
        SearchParam {
            name: "status",
            kind: ParamKind::Token,
            documentation: "planned, in-progress, finished, …",
        },
        SearchParam {
            name: "class",
            kind: ParamKind::Token,
            documentation: "The class of encounter (AMB, VR, …)",
        },
        SearchParam {
            name: "type",
            kind: ParamKind::Token,
            documentation: "The specific type of encounter",
        },
        SearchParam {
            name: "date",
            kind: ParamKind::Date,
            documentation: "When the encounter took place (period)",
        },
    ];

    fn check(&self) -> Result<(), Invalid> {
        patient_reference(Self::TYPE, "subject", Some(&self.subject))?;
        for (i, participant) in self.participant.iter().flat_map(|p| p.iter()).enumerate() {
            reference_to(
                &format!("Encounter.participant[{i}].individual"),
                participant.individual.as_ref(),
                &["Practitioner", "PractitionerRole", "RelatedPerson"],
            )?;
        }
        references_to(
            "Encounter.appointment",
            self.appointment.as_ref(),
            &["Appointment"],
        )?;
        references_to(
            "Encounter.reasonReference",
            self.reason_reference.as_ref(),
            &[
                "Condition",
                "Procedure",
                "Observation",
                "ImmunizationRecommendation",
            ],
        )?;
        reference_to(
            "Encounter.serviceProvider",
            self.service_provider.as_ref(),
            &["Organization"],
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
        index.coding("class", &self.class_);
        index.concepts("type", self.type_.iter().flat_map(|t| t.iter()));
        if let Some(range) = self.period.as_ref().and_then(period_range) {
            index.date("date", range);
        }
    }
}
