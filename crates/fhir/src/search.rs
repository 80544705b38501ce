//! Search parameters (FHIR §3.1.1.5): which ones each resource type supports, and the
//! values a resource offers to each.
//!
//! The values are plaintext and stay in memory: `app` turns tokens and strings into
//! blind-index tokens and dates into coarse calendar buckets before anything is stored,
//! then checks the exact match on the opened resource.

use crate::datatypes::{CodeableConcept, Coding, HumanName, Identifier, Reference};
use crate::primitives::{Code, TimeRange};

/// The kinds of search parameter Haven supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// `[system]|[code]` or `[code]`, matched exactly.
    Token,
    /// A name, matched whole, ignoring case and accents.
    String,
    /// A date with an optional prefix (`eq`, `ne`, `lt`, `le`, `gt`, `ge`).
    Date,
    /// `Patient/{id}` or a bare id.
    Reference,
}

impl ParamKind {
    /// The FHIR name of the kind, for the CapabilityStatement.
    pub fn fhir_name(self) -> &'static str {
        match self {
            ParamKind::Token => "token",
            ParamKind::String => "string",
            ParamKind::Date => "date",
            ParamKind::Reference => "reference",
        }
    }
}

/// A search parameter a resource type supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchParam {
    pub name: &'static str,
    pub kind: ParamKind,
    pub documentation: &'static str,
}

/// One value a resource is found by.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchValue<'a> {
    Token {
        system: Option<&'a str>,
        code: &'a str,
    },
    String(&'a str),
    Date(TimeRange),
    Reference {
        resource_type: &'a str,
        id: &'a str,
    },
}

/// The values of one resource, by parameter name.
#[derive(Debug, Default)]
pub struct SearchIndex<'a> {
    pub values: Vec<(&'static str, SearchValue<'a>)>,
}

impl<'a> SearchIndex<'a> {
    pub fn token(&mut self, param: &'static str, system: Option<&'a str>, code: &'a str) {
        self.values
            .push((param, SearchValue::Token { system, code }));
    }

    pub fn code(&mut self, param: &'static str, code: &'a Code) {
        self.token(param, None, code.as_str());
    }

    pub fn coding(&mut self, param: &'static str, coding: &'a Coding) {
        if let Some(code) = &coding.code {
            self.token(
                param,
                coding.system.as_ref().map(|s| s.as_str()),
                code.as_str(),
            );
        }
    }

    pub fn concept(&mut self, param: &'static str, concept: Option<&'a CodeableConcept>) {
        for coding in concept.into_iter().flat_map(|c| c.codings()) {
            self.coding(param, coding);
        }
    }

    pub fn concepts<I>(&mut self, param: &'static str, concepts: I)
    where
        I: IntoIterator<Item = &'a CodeableConcept>,
    {
        for concept in concepts {
            self.concept(param, Some(concept));
        }
    }

    pub fn identifier(&mut self, param: &'static str, identifier: &'a Identifier) {
        if let Some(value) = &identifier.value {
            self.token(
                param,
                identifier.system.as_ref().map(|s| s.as_str()),
                value.as_str(),
            );
        }
    }

    pub fn date(&mut self, param: &'static str, range: TimeRange) {
        self.values.push((param, SearchValue::Date(range)));
    }

    pub fn reference(&mut self, param: &'static str, reference: Option<&'a Reference>) {
        if let Some((resource_type, id)) = reference.and_then(Reference::target) {
            self.values
                .push((param, SearchValue::Reference { resource_type, id }));
        }
    }

    pub fn name(&mut self, name: &'a HumanName) {
        if let Some(family) = &name.family {
            self.values
                .push(("family", SearchValue::String(family.as_str())));
            self.values
                .push(("name", SearchValue::String(family.as_str())));
        }
        for given in name.given.iter().flat_map(|g| g.iter()) {
            self.values
                .push(("given", SearchValue::String(given.as_str())));
            self.values
                .push(("name", SearchValue::String(given.as_str())));
        }
    }
}
