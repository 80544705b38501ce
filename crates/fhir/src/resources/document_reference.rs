//! `DocumentReference`: a document in the record, such as a referral letter or a scanned
//! form (FHIR R4 §3.3 Documents, DocumentReference).

use serde::{Deserialize, Serialize};

use crate::codes::code_enum;
use crate::datatypes::{Attachment, CodeableConcept, Coding, Identifier, Period, Reference};
use crate::primitives::{FhirString, Instant, List};
use crate::resources::{patient_compartment, reference_to, references_to};
use crate::search::{ParamKind, SearchIndex, SearchParam};
use crate::{Compartment, Invalid, ResourceModel, patient_reference};

code_enum! {
    pub enum DocumentReferenceStatus {
        Current = "current",
        Superseded = "superseded",
        EnteredInError = "entered-in-error",
    }
}

code_enum! {
    pub enum CompositionStatus {
        Preliminary = "preliminary",
        Final = "final",
        Amended = "amended",
        EnteredInError = "entered-in-error",
    }
}

/// The document itself, by URL or inline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DocumentReferenceContent {
    pub attachment: Attachment,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Coding>,
}

/// The clinical context the document belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DocumentReferenceContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter: Option<List<Reference>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

resource! {
    /// A reference to a document about a patient.
    pub struct DocumentReference {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub identifier: Option<List<Identifier>>,
        pub status: DocumentReferenceStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub doc_status: Option<CompositionStatus>,
        #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
        pub type_: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub category: Option<List<CodeableConcept>>,
        pub subject: Reference,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub date: Option<Instant>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub author: Option<List<Reference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub authenticator: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub custodian: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub description: Option<FhirString>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub security_label: Option<List<CodeableConcept>>,
        pub content: List<DocumentReferenceContent>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub context: Option<DocumentReferenceContext>,
    }
}

impl ResourceModel for DocumentReference {
    const TYPE: &'static str = "DocumentReference";
    const SEARCH_PARAMS: &'static [SearchParam] = &[
        SearchParam {
            name: "patient",
            kind: ParamKind::Reference,
            documentation: "The patient the document is about",
        },
        SearchParam {
            name: "subject",
            kind: ParamKind::Reference,
            documentation: "The subject (a patient)",
        },
        SearchParam {
            name: "type",
            kind: ParamKind::Token,
            documentation: "The kind of document (e.g. LOINC)",
        },
        SearchParam {
            name: "category",
            kind: ParamKind::Token,
            documentation: "The categorization of the document",
        },
        SearchParam {
            name: "status",
            kind: ParamKind::Token,
            documentation: "current, superseded, entered-in-error",
        },
        SearchParam {
            name: "date",
            kind: ParamKind::Date,
            documentation: "When the reference was created",
        },
    ];

    fn check(&self) -> Result<(), Invalid> {
        patient_reference(Self::TYPE, "subject", Some(&self.subject))?;
        references_to(
            "DocumentReference.author",
            self.author.as_ref(),
            &[
                "Practitioner",
                "PractitionerRole",
                "Organization",
                "Device",
                "Patient",
                "RelatedPerson",
            ],
        )?;
        reference_to(
            "DocumentReference.authenticator",
            self.authenticator.as_ref(),
            &["Practitioner", "PractitionerRole", "Organization"],
        )?;
        reference_to(
            "DocumentReference.custodian",
            self.custodian.as_ref(),
            &["Organization"],
        )?;
        if let Some(context) = &self.context {
            references_to(
                "DocumentReference.context.encounter",
                context.encounter.as_ref(),
                &["Encounter", "EpisodeOfCare"],
            )?;
        }
        Ok(())
    }

    fn compartment(&self) -> Compartment<'_> {
        patient_compartment("subject", &self.subject)
    }

    fn index<'a>(&'a self, index: &mut SearchIndex<'a>) {
        index.reference("patient", Some(&self.subject));
        index.reference("subject", Some(&self.subject));
        index.concept("type", self.type_.as_ref());
        index.concepts("category", self.category.iter().flat_map(|c| c.iter()));
        index.token("status", None, self.status.as_str());
        if let Some(date) = &self.date {
            index.date("date", date.range());
        }
    }
}
