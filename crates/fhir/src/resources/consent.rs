//! `Consent`: a patient's consent to treatment by video, to sharing their record, or to
//! research (FHIR R4 §6.2 Consent).

use serde::{Deserialize, Serialize};

use crate::codes::code_enum;
use crate::datatypes::{Attachment, CodeableConcept, Coding, Identifier, Period, Reference};
use crate::primitives::{DateTime, List};
use crate::resources::{patient_compartment, references_to};
use crate::search::{ParamKind, SearchIndex, SearchParam};
use crate::{Compartment, Invalid, ResourceModel, patient_reference};

code_enum! {
    pub enum ConsentState {
        Draft = "draft",
        Proposed = "proposed",
        Active = "active",
        Rejected = "rejected",
        Inactive = "inactive",
        EnteredInError = "entered-in-error",
    }
}

code_enum! {
    pub enum ConsentProvisionType {
        Deny = "deny",
        Permit = "permit",
    }
}

/// Who the rule applies to, in which role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsentActor {
    pub role: CodeableConcept,
    pub reference: Reference,
}

/// A rule of the consent: permit or deny, with exceptions nested under it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsentProvision {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ConsentProvisionType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<List<ConsentActor>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<List<CodeableConcept>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<List<Coding>>,
    #[serde(rename = "class", skip_serializing_if = "Option::is_none")]
    pub class_: Option<List<Coding>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<List<CodeableConcept>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_period: Option<Period>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provision: Option<List<ConsentProvision>>,
}

resource! {
    /// A patient's choice about their care or their data.
    pub struct Consent {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub identifier: Option<List<Identifier>>,
        pub status: ConsentState,
        pub scope: CodeableConcept,
        pub category: List<CodeableConcept>,
        pub patient: Reference,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub date_time: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub performer: Option<List<Reference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub organization: Option<List<Reference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub source_attachment: Option<Attachment>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub policy_rule: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub provision: Option<ConsentProvision>,
    }
}

impl ResourceModel for Consent {
    const TYPE: &'static str = "Consent";
    const SEARCH_PARAMS: &'static [SearchParam] = &[
        SearchParam {
            name: "patient",
            kind: ParamKind::Reference,
            documentation: "The patient who consents",
        },
        SearchParam {
            name: "status",
            kind: ParamKind::Token,
            documentation: "draft, active, rejected, …",
        },
        SearchParam {
            name: "category",
            kind: ParamKind::Token,
            documentation: "The kind of consent",
        },
        SearchParam {
            name: "scope",
            kind: ParamKind::Token,
            documentation: "patient-privacy, research, adr, treatment",
        },
        SearchParam {
            name: "date",
            kind: ParamKind::Date,
            documentation: "When the consent was given (dateTime)",
        },
    ];

    fn check(&self) -> Result<(), Invalid> {
        patient_reference(Self::TYPE, "patient", Some(&self.patient))?;
        references_to(
            "Consent.performer",
            self.performer.as_ref(),
            &[
                "Organization",
                "Patient",
                "Practitioner",
                "RelatedPerson",
                "PractitionerRole",
            ],
        )?;
        references_to(
            "Consent.organization",
            self.organization.as_ref(),
            &["Organization"],
        )?;
        // ppc-1 asks for a policy or a policyRule; Haven keeps policyRule only.
        if self.policy_rule.is_none() {
            return Err(Invalid::new(
                "Consent.policyRule",
                "required: the policy the consent is given under (ppc-1)",
            ));
        }
        Ok(())
    }

    fn compartment(&self) -> Compartment<'_> {
        patient_compartment("patient", &self.patient)
    }

    fn index<'a>(&'a self, index: &mut SearchIndex<'a>) {
        index.reference("patient", Some(&self.patient));
        index.token("status", None, self.status.as_str());
        index.concepts("category", self.category.iter());
        index.concept("scope", Some(&self.scope));
        if let Some(at) = &self.date_time {
            index.date("date", at.range());
        }
    }
}
