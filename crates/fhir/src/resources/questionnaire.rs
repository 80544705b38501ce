//! `Questionnaire`: a form the clinic asks patients to fill in, such as an intake or a
//! symptom checklist (FHIR R4 §10.1).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::codes::code_enum;
use crate::datatypes::{Coding, Identifier};
use crate::primitives::{Date, DateTime, FhirString, List, Markdown, Uri};
use crate::search::{ParamKind, SearchIndex, SearchParam, SearchValue};
use crate::{Compartment, Invalid, ResourceModel, one_of};

code_enum! {
    pub enum PublicationStatus {
        Draft = "draft",
        Active = "active",
        Retired = "retired",
        Unknown = "unknown",
    }
}

code_enum! {
    pub enum QuestionnaireItemType {
        Group = "group",
        Display = "display",
        Boolean = "boolean",
        Decimal = "decimal",
        Integer = "integer",
        Date = "date",
        DateTime = "dateTime",
        Time = "time",
        String = "string",
        Text = "text",
        Url = "url",
        Choice = "choice",
        OpenChoice = "open-choice",
        Attachment = "attachment",
        Reference = "reference",
        Quantity = "quantity",
    }
}

/// One permitted answer to a choice question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QuestionnaireAnswerOption {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_integer: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_date: Option<Date>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_string: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_coding: Option<Coding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_selected: Option<bool>,
}

/// A group, a question or a text to display.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QuestionnaireItem {
    pub link_id: FhirString,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<List<Coding>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<FhirString>,
    #[serde(rename = "type")]
    pub type_: QuestionnaireItemType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeats: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_option: Option<List<QuestionnaireAnswerOption>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<List<QuestionnaireItem>>,
}

impl QuestionnaireItem {
    /// Checks this item at `path` (`Questionnaire.item[0]`) and everything under it; the
    /// depth is bounded by the JSON depth limit.
    fn check<'a>(&'a self, path: &str, link_ids: &mut HashSet<&'a str>) -> Result<(), Invalid> {
        use QuestionnaireItemType as T;
        if !link_ids.insert(self.link_id.as_str()) {
            return Err(Invalid::new(
                format!("{path}.linkId"),
                "already used by another item; link ids are unique (que-2)",
            ));
        }
        match self.type_ {
            T::Group if self.item.is_none() => {
                return Err(Invalid::new(
                    path,
                    "a group item must have nested items (que-1)",
                ));
            }
            T::Display if self.item.is_some() => {
                return Err(Invalid::new(
                    path,
                    "a display item cannot have nested items (que-1)",
                ));
            }
            _ => {}
        }
        if self.type_ == T::Display {
            if self.code.is_some() {
                return Err(Invalid::new(
                    format!("{path}.code"),
                    "a display item cannot have a code (que-3)",
                ));
            }
            if self.required.is_some() || self.repeats.is_some() {
                return Err(Invalid::new(
                    path,
                    "required and repeats are not permitted on a display item (que-6)",
                ));
            }
            if self.read_only.is_some() {
                return Err(Invalid::new(
                    format!("{path}.readOnly"),
                    "not permitted on a display item (que-9)",
                ));
            }
        }
        let simple = matches!(
            self.type_,
            T::Boolean | T::Decimal | T::Integer | T::String | T::Text | T::Url | T::OpenChoice
        );
        if self.max_length.is_some() && !simple {
            return Err(Invalid::new(
                format!("{path}.maxLength"),
                "only for simple question types (que-10)",
            ));
        }
        if let Some(options) = &self.answer_option {
            if !matches!(self.type_, T::Choice | T::OpenChoice) {
                return Err(Invalid::new(
                    format!("{path}.answerOption"),
                    "only choice and open-choice items have answer options (que-5)",
                ));
            }
            for (j, option) in options.iter().enumerate() {
                let value_path = format!("{path}.answerOption[{j}].value[x]");
                let forms = [
                    option.value_integer.is_some(),
                    option.value_date.is_some(),
                    option.value_string.is_some(),
                    option.value_coding.is_some(),
                ];
                one_of(&value_path, &forms)?;
                if !forms.contains(&true) {
                    return Err(Invalid::new(
                        value_path,
                        "required: an answer option has a value",
                    ));
                }
            }
        }
        check_items(path, self.item.as_ref(), link_ids)
    }
}

fn check_items<'a>(
    path: &str,
    items: Option<&'a List<QuestionnaireItem>>,
    link_ids: &mut HashSet<&'a str>,
) -> Result<(), Invalid> {
    for (i, item) in items.iter().flat_map(|items| items.iter()).enumerate() {
        item.check(&format!("{path}.item[{i}]"), link_ids)?;
    }
    Ok(())
}

fn index_item_codes<'a>(items: Option<&'a List<QuestionnaireItem>>, index: &mut SearchIndex<'a>) {
    for item in items.iter().flat_map(|items| items.iter()) {
        for coding in item.code.iter().flat_map(|c| c.iter()) {
            index.coding("code", coding);
        }
        index_item_codes(item.item.as_ref(), index);
    }
}

resource! {
    /// A form: its groups, questions and permitted answers.
    pub struct Questionnaire {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub url: Option<Uri>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub identifier: Option<List<Identifier>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub version: Option<FhirString>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub name: Option<FhirString>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub title: Option<FhirString>,
        pub status: PublicationStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub date: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub publisher: Option<FhirString>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub description: Option<Markdown>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub code: Option<List<Coding>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub item: Option<List<QuestionnaireItem>>,
    }
}

impl ResourceModel for Questionnaire {
    const TYPE: &'static str = "Questionnaire";
    const SEARCH_PARAMS: &'static [SearchParam] = &[
        SearchParam {
            name: "url",
            kind: ParamKind::Token,
            documentation: "The canonical URL of the questionnaire",
        },
        SearchParam {
            name: "name",
            kind: ParamKind::String,
            documentation: "The computer-friendly name, whole",
        },
        SearchParam {
            name: "status",
            kind: ParamKind::Token,
            documentation: "draft, active, retired, unknown",
        },
        SearchParam {
            name: "code",
            kind: ParamKind::Token,
            documentation: "A code of the questionnaire or of one of its items",
        },
        SearchParam {
            name: "date",
            kind: ParamKind::Date,
            documentation: "When the questionnaire was published",
        },
    ];

    fn check(&self) -> Result<(), Invalid> {
        let mut link_ids = HashSet::new();
        check_items("Questionnaire", self.item.as_ref(), &mut link_ids)
    }

    fn compartment(&self) -> Compartment<'_> {
        Compartment::None
    }

    fn index<'a>(&'a self, index: &mut SearchIndex<'a>) {
        if let Some(url) = &self.url {
            index.token("url", None, url.as_str());
        }
        if let Some(name) = &self.name {
            index
                .values
                .push(("name", SearchValue::String(name.as_str())));
        }
        index.token("status", None, self.status.as_str());
        for coding in self.code.iter().flat_map(|c| c.iter()) {
            index.coding("code", coding);
        }
        index_item_codes(self.item.as_ref(), index);
        if let Some(date) = &self.date {
            index.date("date", date.range());
        }
    }
}
