//! `Task`: a piece of work asked of someone about a record (FHIR R4 §12.14). Haven keeps
//! the patient's request to correct their record (an amendment, ONC 170.315(d)(4)) as a
//! Task whose `focus` is the record, whose `for` is the patient, and whose `status` follows
//! the care team's decision.

use serde::{Deserialize, Serialize};

use crate::codes::code_enum;
use crate::datatypes::{Annotation, Attachment, CodeableConcept, Identifier, Period, Reference};
use crate::primitives::{Code, DateTime, FhirString, List, Markdown};
use crate::resources::medication_request::RequestPriority;
use crate::resources::{AUTHORS, CLINICIANS, patient_compartment, reference_to, references_to};
use crate::search::{ParamKind, SearchIndex, SearchParam};
use crate::{Compartment, Invalid, ResourceModel, one_of, patient_reference};

/// The code system of the kinds of task FHIR defines (`change`: change the focal resource).
pub const TASK_CODE_SYSTEM: &str = "http://hl7.org/fhir/CodeSystem/task-code";

code_enum! {
    pub enum TaskStatus {
        Draft = "draft",
        Requested = "requested",
        Received = "received",
        Accepted = "accepted",
        Rejected = "rejected",
        Ready = "ready",
        Cancelled = "cancelled",
        InProgress = "in-progress",
        OnHold = "on-hold",
        Failed = "failed",
        Completed = "completed",
        EnteredInError = "entered-in-error",
    }
}

code_enum! {
    pub enum TaskIntent {
        Unknown = "unknown",
        Proposal = "proposal",
        Plan = "plan",
        Order = "order",
        OriginalOrder = "original-order",
        ReflexOrder = "reflex-order",
        FillerOrder = "filler-order",
        InstanceOrder = "instance-order",
        Option = "option",
    }
}

/// One input or output of a task: a named value. Haven accepts the forms a correction
/// needs (text, a code, a flag, a reference, a file); other `value[x]` forms are refused
/// as unknown elements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TaskParameter {
    #[serde(rename = "type")]
    pub type_: CodeableConcept,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_string: Option<FhirString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_markdown: Option<Markdown>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_code: Option<Code>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_boolean: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_reference: Option<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_attachment: Option<Attachment>,
}

impl TaskParameter {
    fn check(&self, path: &str) -> Result<(), Invalid> {
        let forms = [
            self.value_string.is_some(),
            self.value_markdown.is_some(),
            self.value_code.is_some(),
            self.value_boolean.is_some(),
            self.value_reference.is_some(),
            self.value_attachment.is_some(),
        ];
        let value = format!("{path}.value[x]");
        one_of(&value, &forms)?;
        if !forms.contains(&true) {
            return Err(Invalid::new(value, "required: a value"));
        }
        Ok(())
    }
}

resource! {
    /// Work asked of someone about a record, such as a patient's request to correct it.
    pub struct Task {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub identifier: Option<List<Identifier>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub based_on: Option<List<Reference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub part_of: Option<List<Reference>>,
        pub status: TaskStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub status_reason: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub business_status: Option<CodeableConcept>,
        pub intent: TaskIntent,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub priority: Option<RequestPriority>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub code: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub description: Option<FhirString>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub focus: Option<Reference>,
        #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
        pub for_: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub encounter: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub execution_period: Option<Period>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub authored_on: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub last_modified: Option<DateTime>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub requester: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub owner: Option<Reference>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reason_code: Option<CodeableConcept>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub note: Option<List<Annotation>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub input: Option<List<TaskParameter>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub output: Option<List<TaskParameter>>,
    }
}

impl Task {
    /// Whether this task asks for its focus to be changed: an amendment request.
    pub fn is_change_request(&self) -> bool {
        self.code.as_ref().is_some_and(|code| {
            code.codings().any(|c| {
                c.system.as_ref().map(|s| s.as_str()) == Some(TASK_CODE_SYSTEM)
                    && c.code.as_ref().map(|c| c.as_str()) == Some("change")
            })
        })
    }
}

impl ResourceModel for Task {
    const TYPE: &'static str = "Task";
    const SEARCH_PARAMS: &'static [SearchParam] = &[
        SearchParam {
            name: "patient",
            kind: ParamKind::Reference,
            documentation: "The patient the task is for",
        },
        SearchParam {
            name: "subject",
            kind: ParamKind::Reference,
            documentation: "The patient the task is for (Task.for)",
        },
        SearchParam {
            name: "focus",
            kind: ParamKind::Reference,
            documentation: "The record the task is about, e.g. the one to correct",
        },
        SearchParam {
            name: "status",
            kind: ParamKind::Token,
            documentation: "requested, completed, rejected, …",
        },
        SearchParam {
            name: "code",
            kind: ParamKind::Token,
            documentation: "The kind of task (task-code: change for an amendment)",
        },
        SearchParam {
            name: "authored-on",
            kind: ParamKind::Date,
            documentation: "When the task was asked for",
        },
        SearchParam {
            name: "requester",
            kind: ParamKind::Reference,
            documentation: "Who asked for it",
        },
    ];

    fn check(&self) -> Result<(), Invalid> {
        patient_reference(Self::TYPE, "for", self.for_.as_ref())?;
        reference_to("Task.encounter", self.encounter.as_ref(), &["Encounter"])?;
        references_to("Task.partOf", self.part_of.as_ref(), &["Task"])?;
        reference_to("Task.requester", self.requester.as_ref(), AUTHORS)?;
        let mut owners = CLINICIANS.to_vec();
        owners.extend(["Patient", "RelatedPerson", "CareTeam"]);
        reference_to("Task.owner", self.owner.as_ref(), &owners)?;
        if let Some(focus) = &self.focus
            && focus.reference.is_some()
            && focus.target().is_none()
        {
            return Err(Invalid::new(
                "Task.focus.reference",
                "must be a reference to the record, as Type/{id}",
            ));
        }
        for (i, input) in self.input.iter().flat_map(|p| p.iter()).enumerate() {
            input.check(&format!("Task.input[{i}]"))?;
        }
        for (i, output) in self.output.iter().flat_map(|p| p.iter()).enumerate() {
            output.check(&format!("Task.output[{i}]"))?;
        }
        // inv-1: the last modification cannot come before the task was asked for.
        if let (Some(authored), Some(modified)) = (&self.authored_on, &self.last_modified)
            && modified.range().end_ms <= authored.range().start_ms
        {
            return Err(Invalid::new(
                "Task.lastModified",
                "cannot be before Task.authoredOn (inv-1)",
            ));
        }
        Ok(())
    }

    fn compartment(&self) -> Compartment<'_> {
        match &self.for_ {
            Some(patient) => patient_compartment("for", patient),
            None => Compartment::None,
        }
    }

    fn index<'a>(&'a self, index: &mut SearchIndex<'a>) {
        index.reference("patient", self.for_.as_ref());
        index.reference("subject", self.for_.as_ref());
        index.reference("focus", self.focus.as_ref());
        index.token("status", None, self.status.as_str());
        index.concept("code", self.code.as_ref());
        if let Some(at) = &self.authored_on {
            index.date("authored-on", at.range());
        }
        index.reference("requester", self.requester.as_ref());
    }
}
