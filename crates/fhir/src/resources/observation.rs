//! `Observation`: vital signs, laboratory results and other measurements (FHIR R4 §14.20).

use serde::{Deserialize, Serialize};

use crate::codes::code_enum;
use crate::datatypes::{
    Annotation, CodeableConcept, Identifier, Period, Quantity, Range, Ratio, Reference,
};
use crate::primitives::{DateTime, FhirString, Instant, List};
use crate::search::{ParamKind, SearchIndex, SearchParam};
use crate::{Compartment, Invalid, ResourceModel, one_of, patient_reference};

code_enum! {
    pub enum ObservationStatus {
        Registered = "registered",
        Preliminary = "preliminary",
        Final = "final",
        Amended = "amended",
        Corrected = "corrected",
        Cancelled = "cancelled",
        EnteredInError = "entered-in-error",
        Unknown = "unknown",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReferenceRange {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low: Option<Quantity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high: Option<Quantity>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applies_to: Option<List<CodeableConcept>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age: Option<Range>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<FhirString>,
}

/// The forms of `value[x]` Haven keeps (SampledData, time and Period are not served).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservationValue {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_quantity: Option<Quantity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_codeable_concept: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_string: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_boolean: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_integer: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_range: Option<Range>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_ratio: Option<Ratio>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_date_time: Option<DateTime>,
}

impl ObservationValue {
    fn check(&self, path: &str) -> Result<(), Invalid> {
        one_of(
            path,
            &[
                self.value_quantity.is_some(),
                self.value_codeable_concept.is_some(),
                self.value_string.is_some(),
                self.value_boolean.is_some(),
                self.value_integer.is_some(),
                self.value_range.is_some(),
                self.value_ratio.is_some(),
                self.value_date_time.is_some(),
            ],
        )
    }
}

/// One part of a multi-part observation, such as the systolic value of a blood pressure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ObservationComponent {
    pub code: CodeableConcept,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_quantity: Option<Quantity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_codeable_concept: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_string: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_boolean: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_integer: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_absent_reason: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpretation: Option<List<CodeableConcept>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_range: Option<List<ReferenceRange>>,
}

resource! {
    /// A measurement or assertion about a patient.
    pub struct Observation {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub identifier: Option<List<Identifier>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub based_on: Option<List<Reference>>,
        pub status: ObservationStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub category: Option<List<CodeableConcept>>,
        pub code: CodeableConcept,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub subject: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub encounter: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub effective_date_time: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub effective_period: Option<Period>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub effective_instant: Option<Instant>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub issued: Option<Instant>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub performer: Option<List<Reference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub value_quantity: Option<Quantity>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub value_codeable_concept: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub value_string: Option<FhirString>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub value_boolean: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub value_integer: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub value_range: Option<Range>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub value_ratio: Option<Ratio>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub value_date_time: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub data_absent_reason: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub interpretation: Option<List<CodeableConcept>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub note: Option<List<Annotation>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub body_site: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub method: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reference_range: Option<List<ReferenceRange>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub has_member: Option<List<Reference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub derived_from: Option<List<Reference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub component: Option<List<ObservationComponent>>,
    }
}

impl Observation {
    /// When the observation was made: the one `effective[x]` given, as a span.
    pub fn effective(&self) -> Option<crate::TimeRange> {
        if let Some(at) = &self.effective_date_time {
            return Some(at.range());
        }
        if let Some(at) = &self.effective_instant {
            return Some(at.range());
        }
        self.effective_period.as_ref().and_then(period_range)
    }
}

/// The span of a period; an open end is taken as far as its other end reaches.
pub(crate) fn period_range(period: &Period) -> Option<crate::TimeRange> {
    match (&period.start, &period.end) {
        (Some(start), Some(end)) => Some(start.range().union(&end.range())),
        (Some(start), None) => Some(start.range()),
        (None, Some(end)) => Some(end.range()),
        (None, None) => None,
    }
}

impl ResourceModel for Observation {
    const TYPE: &'static str = "Observation";
    const SEARCH_PARAMS: &'static [SearchParam] = &[
        SearchParam {
            name: "patient",
            kind: ParamKind::Reference,
            documentation: "The patient the observation is about",
        },
        SearchParam {
            name: "subject",
            kind: ParamKind::Reference,
            documentation: "The subject (a patient)",
        },
        SearchParam {
            name: "code",
            kind: ParamKind::Token,
            documentation: "The code of the observation (e.g. LOINC)",
        },
        SearchParam {
            name: "category",
            kind: ParamKind::Token,
            documentation: "vital-signs, laboratory, …",
        },
        SearchParam {
            name: "status",
            kind: ParamKind::Token,
            documentation: "The status of the observation",
        },
        SearchParam {
            name: "date",
            kind: ParamKind::Date,
            documentation: "When the observation was made (effective[x])",
        },
    ];

    fn check(&self) -> Result<(), Invalid> {
        patient_reference(Self::TYPE, "subject", self.subject.as_ref())?;
        one_of(
            "Observation.effective[x]",
            &[
                self.effective_date_time.is_some(),
                self.effective_period.is_some(),
                self.effective_instant.is_some(),
            ],
        )?;
        let value = ObservationValue {
            value_quantity: self.value_quantity.clone(),
            value_codeable_concept: self.value_codeable_concept.clone(),
            value_string: self.value_string.clone(),
            value_boolean: self.value_boolean,
            value_integer: self.value_integer,
            value_range: self.value_range.clone(),
            value_ratio: self.value_ratio.clone(),
            value_date_time: self.value_date_time.clone(),
        };
        value.check("Observation.value[x]")?;
        let has_value = value != ObservationValue::default();
        if has_value && self.data_absent_reason.is_some() {
            return Err(Invalid::new(
                "Observation.dataAbsentReason",
                "only when there is no value (obs-6)",
            ));
        }
        for (i, component) in self.component.iter().flat_map(|c| c.iter()).enumerate() {
            one_of(
                &format!("Observation.component[{i}].value[x]"),
                &[
                    component.value_quantity.is_some(),
                    component.value_codeable_concept.is_some(),
                    component.value_string.is_some(),
                    component.value_boolean.is_some(),
                    component.value_integer.is_some(),
                ],
            )?;
        }
        Ok(())
    }

    fn compartment(&self) -> Compartment<'_> {
        match self.subject.as_ref().and_then(|s| s.target()) {
            Some(("Patient", id)) => Compartment::Patient {
                element: "subject",
                id,
            },
            _ => Compartment::None,
        }
    }

    fn index<'a>(&'a self, index: &mut SearchIndex<'a>) {
        index.reference("patient", self.subject.as_ref());
        index.reference("subject", self.subject.as_ref());
        index.concept("code", Some(&self.code));
        index.concepts("category", self.category.iter().flat_map(|c| c.iter()));
        index.token("status", None, self.status.as_str());
        if let Some(range) = self.effective() {
            index.date("date", range);
        }
    }
}
