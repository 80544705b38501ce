//! `DiagnosticReport`: the findings of laboratory tests or imaging (FHIR R4 §9.6).

use crate::codes::code_enum;
use crate::datatypes::{Attachment, CodeableConcept, Identifier, Period, Reference};
use crate::primitives::{DateTime, FhirString, Instant, List};
use crate::resources::observation::period_range;
use crate::resources::{CLINICIANS, patient_compartment, reference_to, references_to};
use crate::search::{ParamKind, SearchIndex, SearchParam};
use crate::{Compartment, Invalid, ResourceModel, one_of, patient_reference};

code_enum! {
    pub enum DiagnosticReportStatus {
        Registered = "registered",
        Partial = "partial",
        Preliminary = "preliminary",
        Final = "final",
        Amended = "amended",
        Corrected = "corrected",
        Appended = "appended",
        Cancelled = "cancelled",
        EnteredInError = "entered-in-error",
        Unknown = "unknown",
    }
}

resource! {
    /// A report of diagnostic tests on a patient, with its results and conclusion.
    pub struct DiagnosticReport {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub identifier: Option<List<Identifier>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub based_on: Option<List<Reference>>,
        pub status: DiagnosticReportStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub category: Option<List<CodeableConcept>>,
        pub code: CodeableConcept,
        pub subject: Reference,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub encounter: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub effective_date_time: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub effective_period: Option<Period>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub issued: Option<Instant>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub performer: Option<List<Reference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub results_interpreter: Option<List<Reference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub result: Option<List<Reference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub conclusion: Option<FhirString>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub conclusion_code: Option<List<CodeableConcept>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub presented_form: Option<List<Attachment>>,
    }
}

impl DiagnosticReport {
    /// When the report is clinically relevant: the one `effective[x]` given, as a span.
    pub fn effective(&self) -> Option<crate::TimeRange> {
        if let Some(at) = &self.effective_date_time {
            return Some(at.range());
        }
        self.effective_period.as_ref().and_then(period_range)
    }
}

impl ResourceModel for DiagnosticReport {
    const TYPE: &'static str = "DiagnosticReport";
    const SEARCH_PARAMS: &'static [SearchParam] = &[
        SearchParam {
            name: "patient",
            kind: ParamKind::Reference,
            documentation: "The patient the report is about",
        },
        SearchParam {
            name: "subject",
            kind: ParamKind::Reference,
            documentation: "The subject (a patient)",
        },
        SearchParam {
            name: "code",
            kind: ParamKind::Token,
            documentation: "The code of the report (e.g. a LOINC panel)",
        },
        SearchParam {
            name: "category",
            kind: ParamKind::Token,
            documentation: "LAB, RAD, …",
        },
        SearchParam {
            name: "status",
            kind: ParamKind::Token,
            documentation: "The status of the report",
        },
        SearchParam {
            name: "date",
            kind: ParamKind::Date,
            documentation: "When the report is clinically relevant (effective[x])",
        },
        SearchParam {
            name: "result",
            kind: ParamKind::Reference,
            documentation: "An observation reported on",
        },
    ];

    fn check(&self) -> Result<(), Invalid> {
        patient_reference(Self::TYPE, "subject", Some(&self.subject))?;
        reference_to(
            "DiagnosticReport.encounter",
            self.encounter.as_ref(),
            &["Encounter"],
        )?;
        one_of(
            "DiagnosticReport.effective[x]",
            &[
                self.effective_date_time.is_some(),
                self.effective_period.is_some(),
            ],
        )?;
        references_to(
            "DiagnosticReport.performer",
            self.performer.as_ref(),
            CLINICIANS,
        )?;
        references_to(
            "DiagnosticReport.resultsInterpreter",
            self.results_interpreter.as_ref(),
            CLINICIANS,
        )?;
        references_to(
            "DiagnosticReport.result",
            self.result.as_ref(),
            &["Observation"],
        )?;
        Ok(())
    }

    fn compartment(&self) -> Compartment<'_> {
        patient_compartment("subject", &self.subject)
    }

    fn index<'a>(&'a self, index: &mut SearchIndex<'a>) {
        index.reference("patient", Some(&self.subject));
        index.reference("subject", Some(&self.subject));
        index.concept("code", Some(&self.code));
        index.concepts("category", self.category.iter().flat_map(|c| c.iter()));
        index.token("status", None, self.status.as_str());
        if let Some(range) = self.effective() {
            index.date("date", range);
        }
        for result in self.result.iter().flat_map(|r| r.iter()) {
            index.reference("result", Some(result));
        }
    }
}
