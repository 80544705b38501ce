//! `PractitionerRole`: what a practitioner does for an organization (FHIR R4 §8.5).

use crate::datatypes::{CodeableConcept, ContactPoint, Identifier, Period, Reference};
use crate::primitives::List;
use crate::resources::reference_to;
use crate::search::{ParamKind, SearchIndex, SearchParam};
use crate::{Compartment, Invalid, ResourceModel};

resource! {
    /// A role of a practitioner at an organization, with its specialties.
    pub struct PractitionerRole {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub identifier: Option<List<Identifier>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub active: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub period: Option<Period>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub practitioner: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub organization: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub code: Option<List<CodeableConcept>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub specialty: Option<List<CodeableConcept>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub telecom: Option<List<ContactPoint>>,
    }
}

impl ResourceModel for PractitionerRole {
    const TYPE: &'static str = "PractitionerRole";
    const SEARCH_PARAMS: &'static [SearchParam] = &[
        SearchParam {
            name: "practitioner",
            kind: ParamKind::Reference,
            documentation: "The practitioner in the role",
        },
        SearchParam {
            name: "organization",
            kind: ParamKind::Reference,
            documentation: "The organization the role is at",
        },
        SearchParam {
            name: "role",
            kind: ParamKind::Token,
            documentation: "The role (code)",
        },
        SearchParam {
            name: "specialty",
            kind: ParamKind::Token,
            documentation: "A specialty of the practitioner in the role",
        },
    ];

    fn check(&self) -> Result<(), Invalid> {
        reference_to(
            "PractitionerRole.practitioner",
            self.practitioner.as_ref(),
            &["Practitioner"],
        )?;
        reference_to(
            "PractitionerRole.organization",
            self.organization.as_ref(),
            &["Organization"],
        )
    }

    fn compartment(&self) -> Compartment<'_> {
        Compartment::None
    }

    fn index<'a>(&'a self, index: &mut SearchIndex<'a>) {
        index.reference("practitioner", self.practitioner.as_ref());
        index.reference("organization", self.organization.as_ref());
        index.concepts("role", self.code.iter().flat_map(|c| c.iter()));
        index.concepts("specialty", self.specialty.iter().flat_map(|s| s.iter()));
    }
}
