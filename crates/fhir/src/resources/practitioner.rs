//! `Practitioner`: a clinician of the clinic (FHIR R4 §8.4).

use serde::{Deserialize, Serialize};

use crate::datatypes::{
    Address, CodeableConcept, ContactPoint, HumanName, Identifier, Period, Reference,
};
use crate::primitives::{Date, List};
use crate::resources::patient::AdministrativeGender;
use crate::resources::reference_to;
use crate::search::{ParamKind, SearchIndex, SearchParam};
use crate::{Compartment, Invalid, ResourceModel};

/// A qualification, such as a licence to practise medicine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PractitionerQualification {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<List<Identifier>>,
    pub code: CodeableConcept,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<Reference>,
}

resource! {
    /// A person who provides care: a physician, a nurse, a therapist.
    pub struct Practitioner {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub identifier: Option<List<Identifier>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub active: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub name: Option<List<HumanName>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub telecom: Option<List<ContactPoint>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub address: Option<List<Address>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub gender: Option<AdministrativeGender>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub birth_date: Option<Date>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub qualification: Option<List<PractitionerQualification>>,
    }
}

impl ResourceModel for Practitioner {
    const TYPE: &'static str = "Practitioner";
    const SEARCH_PARAMS: &'static [SearchParam] = &[
        SearchParam {
            name: "identifier",
            kind: ParamKind::Token,
            documentation: "An identifier of the practitioner (e.g. a licence number)",
        },
        SearchParam {
            name: "family",
            kind: ParamKind::String,
            documentation: "The family name, whole, ignoring case and accents",
        },
        SearchParam {
            name: "given",
            kind: ParamKind::String,
            documentation: "A given name, whole, ignoring case and accents",
        },
        SearchParam {
            name: "name",
            kind: ParamKind::String,
            documentation: "A family or given name, whole, ignoring case and accents",
        },
    ];

    fn check(&self) -> Result<(), Invalid> {
        for (i, qualification) in self.qualification.iter().flat_map(|q| q.iter()).enumerate() {
            reference_to(
                &format!("Practitioner.qualification[{i}].issuer"),
                qualification.issuer.as_ref(),
                &["Organization"],
            )?;
        }
        Ok(())
    }

    fn compartment(&self) -> Compartment<'_> {
        Compartment::None
    }

    fn index<'a>(&'a self, index: &mut SearchIndex<'a>) {
        for identifier in self.identifier.iter().flat_map(|i| i.iter()) {
            index.identifier("identifier", identifier);
        }
        for name in self.name.iter().flat_map(|n| n.iter()) {
            index.name(name);
        }
    }
}
