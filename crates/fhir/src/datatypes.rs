//! FHIR R4 general-purpose data types (§2.24) that Haven's resources use.
//!
//! Each is a struct that refuses unknown elements, so a misspelt or unsupported element is
//! an error at its path instead of data silently dropped. Extensions are not accepted: Haven
//! would have to keep data it cannot validate or show, and `modifierExtension` must be
//! refused by any server that does not understand it.

use serde::{Deserialize, Serialize};

use crate::primitives::{
    Base64Binary, Code, DateTime, Decimal, FhirString, Id, Instant, List, Markdown, PositiveInt,
    UnsignedInt, Uri,
};

/// Resource metadata. `versionId` and `lastUpdated` are the server's: whatever a client
/// sends there is replaced.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Meta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<Instant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Uri>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<List<Uri>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security: Option<List<Coding>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<List<Coding>>,
}

/// Human-readable XHTML. Kept as text inside the seal; clients must not render it as
/// markup without sanitising it (the web app shows it as text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Narrative {
    pub status: NarrativeStatus,
    pub div: Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NarrativeStatus {
    Generated,
    Extensions,
    Additional,
    Empty,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Coding {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<Uri>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_selected: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeableConcept {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coding: Option<List<Coding>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<FhirString>,
}

impl CodeableConcept {
    pub fn codings(&self) -> impl Iterator<Item = &Coding> {
        self.coding.iter().flat_map(|list| list.iter())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentifierUse {
    Usual,
    Official,
    Temp,
    Secondary,
    Old,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Identifier {
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<IdentifierUse>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<Uri>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigner: Option<Box<Reference>>,
}

/// A link to another resource. Haven accepts relative literal references (`Type/id`) and,
/// inside a transaction, `urn:uuid:` references to entries of the same Bundle, which are
/// rewritten to `Type/id` before the resource is checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Reference {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<FhirString>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<Uri>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<FhirString>,
}

impl Reference {
    /// `(type, id)` of a relative literal reference such as `Patient/123`.
    pub fn target(&self) -> Option<(&str, &str)> {
        let text = self.reference.as_ref()?.as_str();
        let (kind, id) = text.split_once('/')?;
        if kind.is_empty() || id.is_empty() || id.contains('/') {
            return None;
        }
        Id::parse(id).ok()?;
        Some((kind, id))
    }

    /// A reference to `resource_type/id`.
    pub fn to(resource_type: &str, id: &str) -> Reference {
        Reference {
            reference: FhirString::parse(format!("{resource_type}/{id}")).ok(),
            type_: None,
            identifier: None,
            display: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuantityComparator {
    #[serde(rename = "<")]
    Less,
    #[serde(rename = "<=")]
    LessOrEqual,
    #[serde(rename = ">=")]
    GreaterOrEqual,
    #[serde(rename = ">")]
    Greater,
}

/// A measured amount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparator: Option<QuantityComparator>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<Uri>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low: Option<Quantity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high: Option<Quantity>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ratio {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numerator: Option<Quantity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denominator: Option<Quantity>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NameUse {
    Usual,
    Official,
    Temp,
    Nickname,
    Anonymous,
    Old,
    Maiden,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HumanName {
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<NameUse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given: Option<List<FhirString>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<List<FhirString>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suffix: Option<List<FhirString>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContactPointSystem {
    Phone,
    Fax,
    Email,
    Pager,
    Url,
    Sms,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContactPointUse {
    Home,
    Work,
    Temp,
    Old,
    Mobile,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactPoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<ContactPointSystem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<FhirString>,
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<ContactPointUse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<PositiveInt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressUse {
    Home,
    Work,
    Temp,
    Old,
    Billing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressType {
    Postal,
    Physical,
    Both,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Address {
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<AddressUse>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<AddressType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<List<FhirString>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub district: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

/// Content inline (`data`, bounded by `BASE64_CHARS_MAX`) or by `url`. Large files are
/// uploaded as Haven attachments and referenced by URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Attachment {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<Code>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<Code>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Base64Binary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Uri>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<UnsignedInt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<Base64Binary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creation: Option<DateTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Annotation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author_reference: Option<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author_string: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime>,
    pub text: Markdown,
}

/// A dosage instruction, reduced to what a prescription in a telemedicine visit carries:
/// the instruction text, its timing as text or code, the route and the dose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Dosage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_instruction: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_needed_boolean: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dose_and_rate: Option<List<DoseAndRate>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DoseAndRate {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dose_quantity: Option<Quantity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dose_range: Option<Range>,
}
