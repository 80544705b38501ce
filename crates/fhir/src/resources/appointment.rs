//! `Appointment`: a booked visit, in person or by video (FHIR R4 §11.8).
//!
//! Haven files an appointment in the record of its one patient participant, so exactly one
//! participant's actor must be a Patient.

use serde::{Deserialize, Serialize};

use crate::codes::code_enum;
use crate::datatypes::{CodeableConcept, Identifier, Period, Reference};
use crate::primitives::{DateTime, FhirString, Instant, List, PositiveInt, UnsignedInt};
use crate::resources::reference_to;
use crate::search::{ParamKind, SearchIndex, SearchParam};
use crate::{Compartment, Invalid, ResourceModel};

code_enum! {
    pub enum AppointmentStatus {
        Proposed = "proposed",
        Pending = "pending",
        Booked = "booked",
        Arrived = "arrived",
        Fulfilled = "fulfilled",
        Cancelled = "cancelled",
        Noshow = "noshow",
        EnteredInError = "entered-in-error",
        CheckedIn = "checked-in",
        Waitlist = "waitlist",
    }
}

code_enum! {
    pub enum ParticipantRequired {
        Required = "required",
        Optional = "optional",
        InformationOnly = "information-only",
    }
}

code_enum! {
    pub enum ParticipationStatus {
        Accepted = "accepted",
        Declined = "declined",
        Tentative = "tentative",
        NeedsAction = "needs-action",
    }
}

/// Who takes part in the appointment: the patient, the clinician, a room or a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AppointmentParticipant {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<List<CodeableConcept>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required: Option<ParticipantRequired>,
    pub status: ParticipationStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

/// What an appointment participant may be.
const ACTORS: &[&str] = &[
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "RelatedPerson",
    "Device",
    "HealthcareService",
    "Location",
];

resource! {
    /// A booking of a healthcare event for a patient and practitioners.
    pub struct Appointment {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub identifier: Option<List<Identifier>>,
        pub status: AppointmentStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub cancelation_reason: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub service_type: Option<List<CodeableConcept>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub appointment_type: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reason_code: Option<List<CodeableConcept>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub priority: Option<UnsignedInt>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub description: Option<FhirString>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub start: Option<Instant>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub end: Option<Instant>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub minutes_duration: Option<PositiveInt>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub created: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub comment: Option<FhirString>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub patient_instruction: Option<FhirString>,
        pub participant: List<AppointmentParticipant>,
    }
}

impl Appointment {
    /// The patient participant's reference (the first, when a check has not yet run).
    pub fn patient(&self) -> Option<&Reference> {
        self.participant
            .iter()
            .filter_map(|p| p.actor.as_ref())
            .find(|actor| matches!(actor.target(), Some(("Patient", _))))
    }

    /// From start to end, when both are given.
    pub fn span(&self) -> Option<crate::TimeRange> {
        match (&self.start, &self.end) {
            (Some(start), Some(end)) => Some(start.range().union(&end.range())),
            (Some(start), None) => Some(start.range()),
            _ => None,
        }
    }
}

impl ResourceModel for Appointment {
    const TYPE: &'static str = "Appointment";
    const SEARCH_PARAMS: &'static [SearchParam] = &[
        SearchParam {
            name: "patient",
            kind: ParamKind::Reference,
            documentation: "The patient the appointment is for",
        },
        SearchParam {
            name: "actor",
            kind: ParamKind::Reference,
            documentation: "Any participant (patient, practitioner, …)",
        },
        SearchParam {
            name: "status",
            kind: ParamKind::Token,
            documentation: "booked, fulfilled, cancelled, …",
        },
        SearchParam {
            name: "date",
            kind: ParamKind::Date,
            documentation: "When the appointment takes place (start to end)",
        },
    ];

    fn check(&self) -> Result<(), Invalid> {
        let mut patients = 0;
        for (i, participant) in self.participant.iter().enumerate() {
            let path = format!("Appointment.participant[{i}]");
            if participant.type_.is_none() && participant.actor.is_none() {
                return Err(Invalid::new(path, "needs a type or an actor (app-1)"));
            }
            reference_to(&format!("{path}.actor"), participant.actor.as_ref(), ACTORS)?;
            if matches!(
                participant.actor.as_ref().and_then(Reference::target),
                Some(("Patient", _))
            ) {
                patients += 1;
            }
        }
        if patients != 1 {
            return Err(Invalid::new(
                "Appointment.participant",
                format!(
                    "exactly one participant must be a Patient (found {patients}): \
                     Haven files the appointment in that patient's record"
                ),
            ));
        }
        match (&self.start, &self.end) {
            (Some(start), Some(end)) => {
                if end.range().start_ms <= start.range().start_ms {
                    return Err(Invalid::new("Appointment.end", "must be after start"));
                }
            }
            (Some(_), None) => {
                return Err(Invalid::new(
                    "Appointment.end",
                    "required when start is given (app-2)",
                ));
            }
            (None, Some(_)) => {
                return Err(Invalid::new(
                    "Appointment.start",
                    "required when end is given (app-2)",
                ));
            }
            (None, None) => {
                if !matches!(
                    self.status,
                    AppointmentStatus::Proposed
                        | AppointmentStatus::Cancelled
                        | AppointmentStatus::Waitlist
                ) {
                    return Err(Invalid::new(
                        "Appointment.start",
                        "required unless the status is proposed, cancelled or waitlist (app-3)",
                    ));
                }
            }
        }
        if self.cancelation_reason.is_some()
            && !matches!(
                self.status,
                AppointmentStatus::Cancelled | AppointmentStatus::Noshow
            )
        {
            return Err(Invalid::new(
                "Appointment.cancelationReason",
                "only for a cancelled or noshow appointment (app-4)",
            ));
        }
        Ok(())
    }

    fn compartment(&self) -> Compartment<'_> {
        match self.patient().and_then(Reference::target) {
            Some(("Patient", id)) => Compartment::Patient {
                element: "participant.actor",
                id,
            },
            _ => Compartment::None,
        }
    }

    fn index<'a>(&'a self, index: &mut SearchIndex<'a>) {
        index.reference("patient", self.patient());
        for participant in &self.participant {
            index.reference("actor", participant.actor.as_ref());
        }
        index.token("status", None, self.status.as_str());
        if let Some(range) = self.span() {
            index.date("date", range);
        }
    }
}
