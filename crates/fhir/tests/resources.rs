//! Every resource type Haven serves: a realistic example of each parses and comes back
//! whole, lands in the right compartment and offers only the search values its type
//! declares; invalid ones are refused at the offending element.

#![recursion_limit = "256"]

use haven_fhir::{Compartment, RESOURCE_TYPES, SearchValue, parse, search_params};
use serde_json::{Value, json};

use haven_fhir::examples::*;

fn expected_compartment(resource_type: &str) -> Compartment<'static> {
    match resource_type {
        "Patient" => Compartment::Itself,
        "AllergyIntolerance" | "Consent" => Compartment::Patient {
            element: "patient",
            id: PATIENT,
        },
        "Appointment" => Compartment::Patient {
            element: "participant.actor",
            id: PATIENT,
        },
        "Task" => Compartment::Patient {
            element: "for",
            id: PATIENT,
        },
        "Practitioner" | "PractitionerRole" | "Organization" | "Questionnaire" => Compartment::None,
        _ => Compartment::Patient {
            element: "subject",
            id: PATIENT,
        },
    }
}

/// `value` with the element at `pointer` replaced, added, or (for `null`) removed.
fn with(value: Value, pointer: &str, replacement: Value) -> Value {
    haven_fhir::examples::with(value, pointer, replacement)
        .unwrap_or_else(|| panic!("{pointer} is not in the example"))
}

#[test]
fn every_type_has_an_example_that_round_trips_unchanged() {
    let examples = examples();
    let types: Vec<&str> = examples
        .iter()
        .map(|e| e["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types, RESOURCE_TYPES,
        "one example per served type, in order"
    );
    for value in examples {
        let resource = parse(value.to_string().as_bytes())
            .unwrap_or_else(|invalid| panic!("{} refused: {invalid}", value["resourceType"]));
        assert_eq!(resource.to_value(), value);
        assert_eq!(
            resource.compartment(),
            expected_compartment(resource.resource_type()),
            "{}",
            resource.resource_type()
        );
    }
}

#[test]
fn every_search_value_uses_a_declared_parameter_of_its_kind() {
    for value in examples() {
        let resource = parse(value.to_string().as_bytes()).unwrap();
        let kind = resource.resource_type();
        let params = search_params(kind).unwrap();
        let index = resource.index();
        for (name, value) in &index.values {
            let param = params
                .iter()
                .find(|p| p.name == *name)
                .unwrap_or_else(|| panic!("{kind}: `{name}` is indexed but not declared"));
            let matches = match value {
                SearchValue::Token { .. } => param.kind == haven_fhir::ParamKind::Token,
                SearchValue::String(_) => param.kind == haven_fhir::ParamKind::String,
                SearchValue::Date(_) => param.kind == haven_fhir::ParamKind::Date,
                SearchValue::Reference { .. } => param.kind == haven_fhir::ParamKind::Reference,
            };
            assert!(
                matches,
                "{kind}: `{name}` is declared {:?} but indexed as {value:?}",
                param.kind
            );
        }
        // The examples are rich enough to exercise every declared parameter.
        for param in params {
            assert!(
                index.values.iter().any(|(name, _)| *name == param.name),
                "{kind}: the example offers no value for `{}`",
                param.name
            );
            assert!(
                param
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{kind}: `{}` is not a FHIR parameter name",
                param.name
            );
        }
    }
}

#[test]
fn patient_compartment_references_are_searchable_as_patient() {
    for value in examples() {
        let resource = parse(value.to_string().as_bytes()).unwrap();
        if let Compartment::Patient { id, .. } = resource.compartment() {
            let index = resource.index();
            let found = index.values.iter().any(|(name, value)| {
                *name == "patient"
                    && *value
                        == SearchValue::Reference {
                            resource_type: "Patient",
                            id,
                        }
            });
            assert!(
                found,
                "{}: not found by patient={id}",
                resource.resource_type()
            );
        }
    }
}

#[test]
fn invalid_resources_name_the_element() {
    let cases: Vec<(Value, &str, &str)> = vec![
        // Condition
        (
            with(
                condition(),
                "/clinicalStatus/coding/0/code",
                json!("healed"),
            ),
            "Condition.clinicalStatus.coding[0].code",
            "not an allowed code",
        ),
        (
            with(
                condition(),
                "/clinicalStatus/coding/0/system",
                json!("http://snomed.info/sct"),
            ),
            "Condition.clinicalStatus",
            "needs a coding from",
        ),
        (
            with(
                condition(),
                "/clinicalStatus/coding/0/code",
                json!("active"),
            ),
            "Condition.abatement[x]",
            "con-4",
        ),
        (
            with(
                condition(),
                "/verificationStatus/coding/0/code",
                json!("entered-in-error"),
            ),
            "Condition.clinicalStatus",
            "con-5",
        ),
        (
            with(condition(), "/onsetString", json!("Last week")),
            "Condition.onset[x]",
            "only one",
        ),
        (
            with(condition(), "/subject", Value::Null),
            "Condition.subject",
            "required",
        ),
        (
            with(
                condition(),
                "/subject/reference",
                json!("Practitioner/dr-lopez"),
            ),
            "Condition.subject.reference",
            "Patient",
        ),
        (
            with(condition(), "/encounter/reference", json!("Patient/x")),
            "Condition.encounter.reference",
            "Encounter",
        ),
        (
            with(condition(), "/recordedDate", json!("2024-03-15 10:40")),
            "Condition.recordedDate",
            "dateTime",
        ),
        (
            with(condition(), "/stage", json!([{"summary": {"text": "I"}}])),
            "Condition.stage",
            "unknown",
        ),
        // AllergyIntolerance
        (
            with(allergy_intolerance(), "/category/0", json!("pollen")),
            "AllergyIntolerance.category[0]",
            "not an allowed code",
        ),
        (
            with(allergy_intolerance(), "/criticality", json!("severe")),
            "AllergyIntolerance.criticality",
            "low, high, unable-to-assess",
        ),
        (
            with(
                allergy_intolerance(),
                "/reaction/0/manifestation",
                Value::Null,
            ),
            "AllergyIntolerance.reaction[0].manifestation",
            "required",
        ),
        (
            with(
                allergy_intolerance(),
                "/reaction/0/severity",
                json!("extreme"),
            ),
            "AllergyIntolerance.reaction[0].severity",
            "mild, moderate, severe",
        ),
        (
            with(allergy_intolerance(), "/clinicalStatus", Value::Null),
            "AllergyIntolerance.clinicalStatus",
            "ait-1",
        ),
        (
            with(allergy_intolerance(), "/onsetDateTime", json!("2000")),
            "AllergyIntolerance.onset[x]",
            "only one",
        ),
        (
            with(
                allergy_intolerance(),
                "/patient/reference",
                json!("Group/family-1"),
            ),
            "AllergyIntolerance.patient.reference",
            "Patient",
        ),
        // MedicationRequest
        (
            with(medication_request(), "/intent", json!("prescription")),
            "MedicationRequest.intent",
            "not an allowed code",
        ),
        (
            with(medication_request(), "/status", Value::Null),
            "MedicationRequest.status",
            "required",
        ),
        (
            with(
                medication_request(),
                "/medicationCodeableConcept",
                Value::Null,
            ),
            "MedicationRequest.medication[x]",
            "required",
        ),
        (
            with(
                medication_request(),
                "/medicationReference",
                json!({"reference": "Medication/amox"}),
            ),
            "MedicationRequest.medication[x]",
            "only one",
        ),
        (
            with(
                with(
                    medication_request(),
                    "/medicationCodeableConcept",
                    Value::Null,
                ),
                "/medicationReference",
                json!({"reference": "Substance/amox"}),
            ),
            "MedicationRequest.medicationReference.reference",
            "Medication",
        ),
        (
            with(
                medication_request(),
                "/substitution/allowedBoolean",
                Value::Null,
            ),
            "MedicationRequest.substitution.allowedBoolean",
            "required",
        ),
        (
            with(medication_request(), "/priority", json!("high")),
            "MedicationRequest.priority",
            "routine, urgent, asap, stat",
        ),
        (
            with(
                medication_request(),
                "/dispenseRequest/numberOfRepeatsAllowed",
                json!(-1),
            ),
            "MedicationRequest.dispenseRequest.numberOfRepeatsAllowed",
            "invalid value",
        ),
        // Encounter
        (
            with(encounter(), "/status", json!("done")),
            "Encounter.status",
            "not an allowed code",
        ),
        (
            with(encounter(), "/class", Value::Null),
            "Encounter.class",
            "required",
        ),
        (
            with(encounter(), "/class", json!({"coding": [{"code": "VR"}]})),
            "Encounter.class.coding",
            "unknown",
        ),
        (
            with(
                encounter(),
                "/participant/0/individual/reference",
                json!("Patient/x"),
            ),
            "Encounter.participant[0].individual.reference",
            "Practitioner",
        ),
        (
            with(encounter(), "/period/start", json!("2024-03-15T10:30")),
            "Encounter.period.start",
            "dateTime",
        ),
        // Appointment
        (
            with(appointment(), "/status", json!("confirmed")),
            "Appointment.status",
            "not an allowed code",
        ),
        (
            with(
                appointment(),
                "/participant/1/actor/reference",
                json!("Patient/other"),
            ),
            "Appointment.participant",
            "exactly one",
        ),
        (
            with(
                appointment(),
                "/participant/0/actor/reference",
                json!("RelatedPerson/mother"),
            ),
            "Appointment.participant",
            "exactly one",
        ),
        (
            with(appointment(), "/end", json!("2024-03-22T08:59:00+01:00")),
            "Appointment.end",
            "after start",
        ),
        (
            with(appointment(), "/end", json!("2024-03-22T07:59:00Z")),
            "Appointment.end",
            "after start",
        ),
        (
            with(appointment(), "/end", Value::Null),
            "Appointment.end",
            "app-2",
        ),
        (
            with(
                with(appointment(), "/end", Value::Null),
                "/start",
                Value::Null,
            ),
            "Appointment.start",
            "app-3",
        ),
        (
            with(
                appointment(),
                "/cancelationReason",
                json!({"text": "Patient ill"}),
            ),
            "Appointment.cancelationReason",
            "app-4",
        ),
        (
            with(appointment(), "/participant/0/status", Value::Null),
            "Appointment.participant[0].status",
            "required",
        ),
        (
            with(appointment(), "/participant/0/required", json!("mandatory")),
            "Appointment.participant[0].required",
            "not an allowed code",
        ),
        (
            with(
                appointment(),
                "/participant/1/actor/reference",
                json!("Organization/clinic"),
            ),
            "Appointment.participant[1].actor.reference",
            "Practitioner",
        ),
        (
            with(appointment(), "/minutesDuration", json!(0)),
            "Appointment.minutesDuration",
            "positiveInt",
        ),
        (
            with(appointment(), "/start", json!("2024-03-22")),
            "Appointment.start",
            "instant",
        ),
        (
            with(appointment(), "/participant", json!([])),
            "Appointment.participant",
            "empty array",
        ),
        // DiagnosticReport
        (
            with(diagnostic_report(), "/status", json!("done")),
            "DiagnosticReport.status",
            "not an allowed code",
        ),
        (
            with(diagnostic_report(), "/code", Value::Null),
            "DiagnosticReport.code",
            "required",
        ),
        (
            with(
                diagnostic_report(),
                "/effectivePeriod",
                json!({"start": "2024-03-14"}),
            ),
            "DiagnosticReport.effective[x]",
            "only one",
        ),
        (
            with(
                diagnostic_report(),
                "/result/1/reference",
                json!("DiagnosticReport/other"),
            ),
            "DiagnosticReport.result[1].reference",
            "Observation",
        ),
        (
            with(diagnostic_report(), "/issued", json!("2024-03-14")),
            "DiagnosticReport.issued",
            "instant",
        ),
        // ImagingStudy
        (
            with(imaging_study(), "/status", json!("complete")),
            "ImagingStudy.status",
            "not an allowed code",
        ),
        (
            with(imaging_study(), "/series/0/modality", Value::Null),
            "ImagingStudy.series[0].modality",
            "required",
        ),
        (
            with(
                imaging_study(),
                "/series/0/instance/1/sopClass",
                Value::Null,
            ),
            "ImagingStudy.series[0].instance[1].sopClass",
            "required",
        ),
        (
            with(imaging_study(), "/numberOfSeries", json!(-1)),
            "ImagingStudy.numberOfSeries",
            "invalid value",
        ),
        (
            with(
                imaging_study(),
                "/modality/0",
                json!({"coding": [{"code": "XC"}]}),
            ),
            "ImagingStudy.modality[0].coding",
            "unknown",
        ),
        (
            with(
                imaging_study(),
                "/subject/reference",
                json!("Device/camera"),
            ),
            "ImagingStudy.subject.reference",
            "Patient",
        ),
        // DocumentReference
        (
            with(document_reference(), "/status", json!("final")),
            "DocumentReference.status",
            "current, superseded, entered-in-error",
        ),
        (
            with(document_reference(), "/docStatus", json!("draft")),
            "DocumentReference.docStatus",
            "not an allowed code",
        ),
        (
            with(document_reference(), "/content", Value::Null),
            "DocumentReference.content",
            "required",
        ),
        (
            with(document_reference(), "/content/0/attachment", Value::Null),
            "DocumentReference.content[0].attachment",
            "required",
        ),
        (
            with(document_reference(), "/date", json!("2024-03-15")),
            "DocumentReference.date",
            "instant",
        ),
        (
            with(
                document_reference(),
                "/custodian/reference",
                json!("Practitioner/dr-lopez"),
            ),
            "DocumentReference.custodian.reference",
            "Organization",
        ),
        (
            with(
                document_reference(),
                "/content/0/attachment/data",
                json!("not base64!"),
            ),
            "DocumentReference.content[0].attachment.data",
            "base64",
        ),
        // QuestionnaireResponse
        (
            with(questionnaire_response(), "/status", json!("done")),
            "QuestionnaireResponse.status",
            "not an allowed code",
        ),
        (
            with(
                questionnaire_response(),
                "/item/0/answer/0/valueBoolean",
                json!(true),
            ),
            "QuestionnaireResponse.item[0].answer[0].value[x]",
            "only one",
        ),
        (
            with(questionnaire_response(), "/item/0/answer/0", json!({})),
            "QuestionnaireResponse.item[0].answer[0].value[x]",
            "required",
        ),
        (
            with(
                questionnaire_response(),
                "/item/1/item/0/answer/0/item/0/answer/0/valueString",
                json!("38.4"),
            ),
            "QuestionnaireResponse.item[1].item[0].answer[0].item[0].answer[0].value[x]",
            "only one",
        ),
        (
            with(
                questionnaire_response(),
                "/item/1/item/2/linkId",
                Value::Null,
            ),
            "QuestionnaireResponse.item[1].item[2].linkId",
            "required",
        ),
        (
            with(
                questionnaire_response(),
                "/item/1/item/2/answer/0/valueDate",
                json!("2024-03-10T08:00:00Z"),
            ),
            "QuestionnaireResponse.item[1].item[2].answer[0].valueDate",
            "date",
        ),
        (
            with(
                questionnaire_response(),
                "/item/0/item",
                json!([{"linkId": "x"}]),
            ),
            "QuestionnaireResponse.item[0]",
            "qrs-1",
        ),
        (
            with(questionnaire_response(), "/subject", Value::Null),
            "QuestionnaireResponse.subject",
            "required",
        ),
        (
            with(questionnaire_response(), "/identifier", json!("QR-314")),
            "QuestionnaireResponse.identifier",
            "invalid type",
        ),
        // Consent
        (
            with(consent(), "/status", json!("signed")),
            "Consent.status",
            "not an allowed code",
        ),
        (
            with(consent(), "/category", Value::Null),
            "Consent.category",
            "required",
        ),
        (
            with(consent(), "/scope", Value::Null),
            "Consent.scope",
            "required",
        ),
        (
            with(consent(), "/provision/type", json!("allow")),
            "Consent.provision.type",
            "deny, permit",
        ),
        (
            with(consent(), "/provision/provision/0/type", json!("allow")),
            "Consent.provision.provision[0].type",
            "deny, permit",
        ),
        (
            with(consent(), "/provision/actor/0/reference", Value::Null),
            "Consent.provision.actor[0].reference",
            "required",
        ),
        (
            with(consent(), "/policyRule", Value::Null),
            "Consent.policyRule",
            "ppc-1",
        ),
        (
            with(
                consent(),
                "/patient/reference",
                json!("Practitioner/dr-lopez"),
            ),
            "Consent.patient.reference",
            "Patient",
        ),
        // Communication
        (
            with(communication(), "/status", json!("sent")),
            "Communication.status",
            "not an allowed code",
        ),
        (
            with(
                communication(),
                "/payload/0/contentAttachment",
                json!({"url": "https://haven.example/a"}),
            ),
            "Communication.payload[0].content[x]",
            "only one",
        ),
        (
            with(communication(), "/payload/1", json!({})),
            "Communication.payload[1].content[x]",
            "required",
        ),
        (
            with(
                communication(),
                "/sender/reference",
                json!("Observation/obs-1"),
            ),
            "Communication.sender.reference",
            "Practitioner",
        ),
        (
            with(
                communication(),
                "/recipient/0/reference",
                json!("Encounter/enc-1"),
            ),
            "Communication.recipient[0].reference",
            "Patient",
        ),
        (
            with(communication(), "/sent", json!("16/03/2024")),
            "Communication.sent",
            "dateTime",
        ),
        // Task (an amendment request)
        (
            with(task(), "/status", json!("done")),
            "Task.status",
            "not an allowed code",
        ),
        (
            with(task(), "/for/reference", json!("Practitioner/dr-lopez")),
            "Task.for.reference",
            "Patient",
        ),
        (
            with(task(), "/input/0/valueCode", json!("amend")),
            "Task.input[0].value[x]",
            "only one",
        ),
        (
            with(task(), "/input/0/valueString", json!(null)),
            "Task.input[0].value[x]",
            "required",
        ),
        (
            with(task(), "/lastModified", json!("2024-03-19")),
            "Task.lastModified",
            "inv-1",
        ),
        (
            with(
                task(),
                "/focus/reference",
                json!("Observation/obs-1/_history/2"),
            ),
            "Task.focus.reference",
            "Type/{id}",
        ),
        // Practitioner
        (
            with(practitioner(), "/gender", json!("f")),
            "Practitioner.gender",
            "male, female, other, unknown",
        ),
        (
            with(practitioner(), "/qualification/0/code", Value::Null),
            "Practitioner.qualification[0].code",
            "required",
        ),
        (
            with(
                practitioner(),
                "/qualification/0/issuer/reference",
                json!("Practitioner/x"),
            ),
            "Practitioner.qualification[0].issuer.reference",
            "Organization",
        ),
        (
            with(practitioner(), "/birthDate", json!("1979-13-01")),
            "Practitioner.birthDate",
            "date",
        ),
        (
            with(practitioner(), "/photo", json!([{"url": "https://x"}])),
            "Practitioner.photo",
            "unknown",
        ),
        // PractitionerRole
        (
            with(
                practitioner_role(),
                "/practitioner/reference",
                json!("Patient/x"),
            ),
            "PractitionerRole.practitioner.reference",
            "Practitioner",
        ),
        (
            with(
                practitioner_role(),
                "/organization/reference",
                json!("Organization/"),
            ),
            "PractitionerRole.organization.reference",
            "Organization",
        ),
        (
            with(practitioner_role(), "/specialty", json!({"text": "GP"})),
            "PractitionerRole.specialty",
            "invalid type",
        ),
        (
            with(
                practitioner_role(),
                "/location",
                json!([{"reference": "Location/1"}]),
            ),
            "PractitionerRole.location",
            "unknown",
        ),
        // Organization
        (
            with(
                with(organization(), "/name", Value::Null),
                "/identifier",
                Value::Null,
            ),
            "Organization",
            "org-1",
        ),
        (
            with(organization(), "/telecom/0/use", json!("home")),
            "Organization.telecom[0].use",
            "org-3",
        ),
        (
            with(organization(), "/address/0/use", json!("home")),
            "Organization.address[0].use",
            "org-2",
        ),
        (
            with(organization(), "/partOf/reference", json!("Patient/x")),
            "Organization.partOf.reference",
            "Organization",
        ),
        (
            with(organization(), "/name", json!("  ")),
            "Organization.name",
            "empty",
        ),
        // Questionnaire
        (
            with(questionnaire(), "/status", Value::Null),
            "Questionnaire.status",
            "required",
        ),
        (
            with(questionnaire(), "/status", json!("published")),
            "Questionnaire.status",
            "draft, active, retired, unknown",
        ),
        (
            with(questionnaire(), "/item/1/item", Value::Null),
            "Questionnaire.item[1]",
            "group",
        ),
        (
            with(
                questionnaire(),
                "/item/1/item/4/item",
                json!([{"linkId": "x", "type": "string"}]),
            ),
            "Questionnaire.item[1].item[4]",
            "display",
        ),
        (
            with(questionnaire(), "/item/1/item/0/linkId", json!("notes")),
            "Questionnaire.item[1].item[0].linkId",
            "unique",
        ),
        (
            with(questionnaire(), "/item/0/type", json!("number")),
            "Questionnaire.item[0].type",
            "not an allowed code",
        ),
        (
            with(questionnaire(), "/item/0/linkId", Value::Null),
            "Questionnaire.item[0].linkId",
            "required",
        ),
        (
            with(
                questionnaire(),
                "/item/1/item/1/answerOption/0/valueString",
                json!("Sore throat"),
            ),
            "Questionnaire.item[1].item[1].answerOption[0].value[x]",
            "only one",
        ),
        (
            with(
                questionnaire(),
                "/item/1/item/1/answerOption/1",
                json!({"initialSelected": false}),
            ),
            "Questionnaire.item[1].item[1].answerOption[1].value[x]",
            "required",
        ),
        (
            with(
                questionnaire(),
                "/item/1/item/0/answerOption",
                json!([{"valueString": "yes"}]),
            ),
            "Questionnaire.item[1].item[0].answerOption",
            "que-5",
        ),
        (
            with(questionnaire(), "/item/1/item/4/required", json!(true)),
            "Questionnaire.item[1].item[4]",
            "que-6",
        ),
        (
            with(questionnaire(), "/item/1/item/3/maxLength", json!(10)),
            "Questionnaire.item[1].item[3].maxLength",
            "que-10",
        ),
    ];
    let mut failures = Vec::new();
    let mut per_type = std::collections::BTreeMap::<String, usize>::new();
    for (value, path, fragment) in cases {
        *per_type
            .entry(value["resourceType"].as_str().unwrap().to_owned())
            .or_default() += 1;
        match parse(value.to_string().as_bytes()) {
            Ok(_) => failures.push(format!("{path}: accepted\n  {value}")),
            Err(invalid) if invalid.path != path || !invalid.message.contains(fragment) => {
                failures.push(format!("expected {path}: …{fragment}…\n  got {invalid}"));
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for kind in RESOURCE_TYPES {
        if *kind != "Patient" && *kind != "Observation" {
            assert!(
                per_type.get(*kind).copied().unwrap_or(0) >= 2,
                "{kind}: fewer than two invalid cases"
            );
        }
    }
}
