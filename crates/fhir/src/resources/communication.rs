//! `Communication`: a message between the clinic and a patient, such as a secure chat
//! message or a result notification (FHIR R4 §10.4).

use serde::{Deserialize, Serialize};

use crate::codes::code_enum;
use crate::datatypes::{Annotation, Attachment, CodeableConcept, Identifier, Reference};
use crate::primitives::{DateTime, FhirString, List};
use crate::resources::medication_request::RequestPriority;
use crate::resources::{patient_compartment, reference_to, references_to};
use crate::search::{ParamKind, SearchIndex, SearchParam};
use crate::{Compartment, Invalid, ResourceModel, one_of, patient_reference};

code_enum! {
    pub enum CommunicationStatus {
        Preparation = "preparation",
        InProgress = "in-progress",
        NotDone = "not-done",
        OnHold = "on-hold",
        Stopped = "stopped",
        Completed = "completed",
        EnteredInError = "entered-in-error",
        Unknown = "unknown",
    }
}

/// One part of the message: text, a file, or a resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CommunicationPayload {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_string: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_attachment: Option<Attachment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_reference: Option<Reference>,
}

/// Who may send or receive a message.
const PARTIES: &[&str] = &[
    "Device",
    "Organization",
    "Patient",
    "Practitioner",
    "PractitionerRole",
    "RelatedPerson",
    "Group",
    "CareTeam",
    "HealthcareService",
];

resource! {
    /// A message about a patient, sent or received.
    pub struct Communication {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub identifier: Option<List<Identifier>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub based_on: Option<List<Reference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub part_of: Option<List<Reference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub in_response_to: Option<List<Reference>>,
        pub status: CommunicationStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub category: Option<List<CodeableConcept>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub priority: Option<RequestPriority>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub medium: Option<List<CodeableConcept>>,
        pub subject: Reference,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub topic: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub encounter: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub sent: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub received: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub recipient: Option<List<Reference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub sender: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reason_code: Option<List<CodeableConcept>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub payload: Option<List<CommunicationPayload>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub note: Option<List<Annotation>>,
    }
}

impl ResourceModel for Communication {
    const TYPE: &'static str = "Communication";
    const SEARCH_PARAMS: &'static [SearchParam] = &[
        SearchParam {
            name: "patient",
            kind: ParamKind::Reference,
            documentation: "The patient the message is about",
        },
        SearchParam {
            name: "subject",
            kind: ParamKind::Reference,
            documentation: "The subject (a patient)",
        },
        SearchParam {
            name: "status",
            kind: ParamKind::Token,
            documentation: "in-progress, completed, …",
        },
        SearchParam {
            name: "category",
            kind: ParamKind::Token,
            documentation: "alert, notification, reminder, instruction, …",
        },
        SearchParam {
            name: "sent",
            kind: ParamKind::Date,
            documentation: "When the message was sent",
        },
        SearchParam {
            name: "recipient",
            kind: ParamKind::Reference,
            documentation: "Who the message is for",
        },
        SearchParam {
            name: "sender",
            kind: ParamKind::Reference,
            documentation: "Who sent the message",
        },
    ];

    fn check(&self) -> Result<(), Invalid> {
        patient_reference(Self::TYPE, "subject", Some(&self.subject))?;
        reference_to(
            "Communication.encounter",
            self.encounter.as_ref(),
            &["Encounter"],
        )?;
        references_to(
            "Communication.inResponseTo",
            self.in_response_to.as_ref(),
            &["Communication"],
        )?;
        references_to("Communication.recipient", self.recipient.as_ref(), PARTIES)?;
        reference_to("Communication.sender", self.sender.as_ref(), PARTIES)?;
        for (i, payload) in self.payload.iter().flat_map(|p| p.iter()).enumerate() {
            let path = format!("Communication.payload[{i}].content[x]");
            let forms = [
                payload.content_string.is_some(),
                payload.content_attachment.is_some(),
                payload.content_reference.is_some(),
            ];
            one_of(&path, &forms)?;
            if !forms.contains(&true) {
                return Err(Invalid::new(
                    path,
                    "required: contentString, contentAttachment or contentReference",
                ));
            }
        }
        Ok(())
    }

    fn compartment(&self) -> Compartment<'_> {
        patient_compartment("subject", &self.subject)
    }

    fn index<'a>(&'a self, index: &mut SearchIndex<'a>) {
        index.reference("patient", Some(&self.subject));
        index.reference("subject", Some(&self.subject));
        index.token("status", None, self.status.as_str());
        index.concepts("category", self.category.iter().flat_map(|c| c.iter()));
        if let Some(at) = &self.sent {
            index.date("sent", at.range());
        }
        for recipient in self.recipient.iter().flat_map(|r| r.iter()) {
            index.reference("recipient", Some(recipient));
        }
        index.reference("sender", self.sender.as_ref());
    }
}
