//! `Organization`: the clinic, a laboratory, a pharmacy, an insurer (FHIR R4 §8.2).

use crate::datatypes::{
    Address, AddressUse, CodeableConcept, ContactPoint, ContactPointUse, Identifier, Reference,
};
use crate::primitives::{FhirString, List};
use crate::resources::reference_to;
use crate::search::{ParamKind, SearchIndex, SearchParam, SearchValue};
use crate::{Compartment, Invalid, ResourceModel};

resource! {
    /// A formally recognised group of people or organizations.
    pub struct Organization {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub identifier: Option<List<Identifier>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub active: Option<bool>,
        #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
        pub type_: Option<List<CodeableConcept>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub name: Option<FhirString>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub alias: Option<List<FhirString>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub telecom: Option<List<ContactPoint>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub address: Option<List<Address>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub part_of: Option<Reference>,
    }
}

impl ResourceModel for Organization {
    const TYPE: &'static str = "Organization";
    const SEARCH_PARAMS: &'static [SearchParam] = &[
        SearchParam {
            name: "identifier",
            kind: ParamKind::Token,
            documentation: "An identifier of the organization",
        },
        SearchParam {
            name: "name",
            kind: ParamKind::String,
            documentation: "The name or an alias, whole, ignoring case and accents",
        },
        SearchParam {
            name: "type",
            kind: ParamKind::Token,
            documentation: "The kind of organization",
        },
    ];

    fn check(&self) -> Result<(), Invalid> {
        if self.identifier.is_none() && self.name.is_none() {
            return Err(Invalid::new(
                "Organization",
                "needs at least an identifier or a name (org-1)",
            ));
        }
        for (i, telecom) in self.telecom.iter().flat_map(|t| t.iter()).enumerate() {
            if telecom.use_ == Some(ContactPointUse::Home) {
                return Err(Invalid::new(
                    format!("Organization.telecom[{i}].use"),
                    "an organization's telecom cannot be home (org-3)",
                ));
            }
        }
        for (i, address) in self.address.iter().flat_map(|a| a.iter()).enumerate() {
            if address.use_ == Some(AddressUse::Home) {
                return Err(Invalid::new(
                    format!("Organization.address[{i}].use"),
                    "an organization's address cannot be home (org-2)",
                ));
            }
        }
        reference_to(
            "Organization.partOf",
            self.part_of.as_ref(),
            &["Organization"],
        )
    }

    fn compartment(&self) -> Compartment<'_> {
        Compartment::None
    }

    fn index<'a>(&'a self, index: &mut SearchIndex<'a>) {
        for identifier in self.identifier.iter().flat_map(|i| i.iter()) {
            index.identifier("identifier", identifier);
        }
        let names = self
            .name
            .iter()
            .chain(self.alias.iter().flat_map(|a| a.iter()));
        for name in names {
            index
                .values
                .push(("name", SearchValue::String(name.as_str())));
        }
        index.concepts("type", self.type_.iter().flat_map(|t| t.iter()));
    }
}
