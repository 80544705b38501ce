//! `Patient`: the person whose record it is (FHIR R4 §8.1).
//!
//! Haven requires what it needs to find a patient again: a family name and a birth date.

use serde::{Deserialize, Serialize};

use crate::codes::code_enum;
use crate::datatypes::{Address, CodeableConcept, ContactPoint, HumanName, Identifier, Reference};
use crate::primitives::{Date, DateTime, List};
use crate::search::{ParamKind, SearchIndex, SearchParam};
use crate::{Compartment, Invalid, ResourceModel, one_of};

code_enum! {
    pub enum AdministrativeGender {
        Male = "male",
        Female = "female",
        Other = "other",
        Unknown = "unknown",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatientCommunication {
    pub language: CodeableConcept,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred: Option<bool>,
}

resource! {
    /// Demographics and administrative information about a person receiving care.
    pub struct Patient {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub identifier: Option<List<Identifier>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub active: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub name: Option<List<HumanName>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub telecom: Option<List<ContactPoint>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub gender: Option<AdministrativeGender>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub birth_date: Option<Date>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub deceased_boolean: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub deceased_date_time: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub address: Option<List<Address>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub marital_status: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub communication: Option<List<PatientCommunication>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub general_practitioner: Option<List<Reference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub managing_organization: Option<Reference>,
    }
}

impl ResourceModel for Patient {
    const TYPE: &'static str = "Patient";
    const SEARCH_PARAMS: &'static [SearchParam] = &[
        SearchParam {
            name: "identifier",
            kind: ParamKind::Token,
            documentation: "An identifier of the patient (system|value)",
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
        SearchParam {
            name: "birthdate",
            kind: ParamKind::Date,
            documentation: "The date of birth",
        },
        SearchParam {
            name: "gender",
            kind: ParamKind::Token,
            documentation: "male, female, other, unknown",
        },
    ];

    fn check(&self) -> Result<(), Invalid> {
        let has_family = self
            .name
            .iter()
            .flat_map(|n| n.iter())
            .any(|n| n.family.is_some());
        if !has_family {
            return Err(Invalid::new(
                "Patient.name",
                "required: a name with a family name, so the patient can be found again",
            ));
        }
        if self
            .birth_date
            .as_ref()
            .and_then(Date::to_calendar_date)
            .is_none()
        {
            return Err(Invalid::new(
                "Patient.birthDate",
                "required, to the day (YYYY-MM-DD)",
            ));
        }
        one_of(
            "Patient.deceased[x]",
            &[
                self.deceased_boolean.is_some(),
                self.deceased_date_time.is_some(),
            ],
        )
    }

    fn compartment(&self) -> Compartment<'_> {
        Compartment::Itself
    }

    fn index<'a>(&'a self, index: &mut SearchIndex<'a>) {
        for identifier in self.identifier.iter().flat_map(|i| i.iter()) {
            index.identifier("identifier", identifier);
        }
        for name in self.name.iter().flat_map(|n| n.iter()) {
            index.name(name);
        }
        if let Some(date) = &self.birth_date {
            index.date("birthdate", date.range());
        }
        if let Some(gender) = self.gender {
            index.token("gender", None, gender.as_str());
        }
    }
}
