//! `QuestionnaireResponse`: a patient's answers to a questionnaire, such as an intake form
//! filled in before a visit (FHIR R4 §10.2).

use serde::{Deserialize, Serialize};

use crate::codes::code_enum;
use crate::datatypes::{Attachment, Coding, Identifier, Quantity, Reference};
use crate::primitives::{Date, DateTime, Decimal, FhirString, List, Uri};
use crate::resources::{AUTHORS, patient_compartment, reference_to};
use crate::search::{ParamKind, SearchIndex, SearchParam};
use crate::{Compartment, Invalid, ResourceModel, one_of, patient_reference};

code_enum! {
    pub enum QuestionnaireResponseStatus {
        InProgress = "in-progress",
        Completed = "completed",
        Amended = "amended",
        EnteredInError = "entered-in-error",
        Stopped = "stopped",
    }
}

/// One answer to a question: exactly one `value[x]`, and the items nested under it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QuestionnaireResponseAnswer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_boolean: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_decimal: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_integer: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_date: Option<Date>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_date_time: Option<DateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_string: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_uri: Option<Uri>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_attachment: Option<Attachment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_coding: Option<Coding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_quantity: Option<Quantity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_reference: Option<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<List<QuestionnaireResponseItem>>,
}

/// A group or question of the questionnaire, with its answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QuestionnaireResponseItem {
    pub link_id: FhirString,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<Uri>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<List<QuestionnaireResponseAnswer>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<List<QuestionnaireResponseItem>>,
}

impl QuestionnaireResponseItem {
    /// Checks this item at `path` (`QuestionnaireResponse.item[0]`) and everything under it;
    /// the depth is bounded by the JSON depth limit.
    fn check(&self, path: &str) -> Result<(), Invalid> {
        if self.answer.is_some() && self.item.is_some() {
            return Err(Invalid::new(
                path,
                "nested items go under the answer or the item, not both (qrs-1)",
            ));
        }
        for (i, answer) in self.answer.iter().flat_map(|a| a.iter()).enumerate() {
            let path = format!("{path}.answer[{i}]");
            let forms = [
                answer.value_boolean.is_some(),
                answer.value_decimal.is_some(),
                answer.value_integer.is_some(),
                answer.value_date.is_some(),
                answer.value_date_time.is_some(),
                answer.value_string.is_some(),
                answer.value_uri.is_some(),
                answer.value_attachment.is_some(),
                answer.value_coding.is_some(),
                answer.value_quantity.is_some(),
                answer.value_reference.is_some(),
            ];
            let value_path = format!("{path}.value[x]");
            one_of(&value_path, &forms)?;
            if !forms.contains(&true) {
                return Err(Invalid::new(value_path, "required: an answer has a value"));
            }
            check_items(&path, answer.item.as_ref())?;
        }
        check_items(path, self.item.as_ref())
    }
}

fn check_items(path: &str, items: Option<&List<QuestionnaireResponseItem>>) -> Result<(), Invalid> {
    for (i, item) in items.iter().flat_map(|items| items.iter()).enumerate() {
        item.check(&format!("{path}.item[{i}]"))?;
    }
    Ok(())
}

resource! {
    /// A patient's answers to a questionnaire.
    pub struct QuestionnaireResponse {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub identifier: Option<Identifier>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub based_on: Option<List<Reference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub part_of: Option<List<Reference>>,
        /// The canonical URL of the questionnaire answered.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub questionnaire: Option<Uri>,
        pub status: QuestionnaireResponseStatus,
        pub subject: Reference,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub encounter: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub authored: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub author: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub source: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub item: Option<List<QuestionnaireResponseItem>>,
    }
}

impl ResourceModel for QuestionnaireResponse {
    const TYPE: &'static str = "QuestionnaireResponse";
    const SEARCH_PARAMS: &'static [SearchParam] = &[
        SearchParam {
            name: "patient",
            kind: ParamKind::Reference,
            documentation: "The patient the answers are about",
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
            name: "questionnaire",
            kind: ParamKind::Token,
            documentation: "The canonical URL of the questionnaire answered",
        },
        SearchParam {
            name: "authored",
            kind: ParamKind::Date,
            documentation: "When the answers were given",
        },
    ];

    fn check(&self) -> Result<(), Invalid> {
        patient_reference(Self::TYPE, "subject", Some(&self.subject))?;
        reference_to(
            "QuestionnaireResponse.encounter",
            self.encounter.as_ref(),
            &["Encounter"],
        )?;
        reference_to(
            "QuestionnaireResponse.author",
            self.author.as_ref(),
            &[
                "Device",
                "Practitioner",
                "PractitionerRole",
                "Patient",
                "RelatedPerson",
                "Organization",
            ],
        )?;
        reference_to(
            "QuestionnaireResponse.source",
            self.source.as_ref(),
            AUTHORS,
        )?;
        check_items("QuestionnaireResponse", self.item.as_ref())
    }

    fn compartment(&self) -> Compartment<'_> {
        patient_compartment("subject", &self.subject)
    }

    fn index<'a>(&'a self, index: &mut SearchIndex<'a>) {
        index.reference("patient", Some(&self.subject));
        index.reference("subject", Some(&self.subject));
        index.token("status", None, self.status.as_str());
        if let Some(url) = &self.questionnaire {
            index.token("questionnaire", None, url.as_str());
        }
        if let Some(at) = &self.authored {
            index.date("authored", at.range());
        }
    }
}
