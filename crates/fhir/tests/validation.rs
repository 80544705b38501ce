//! Invalid resources are refused with the path of the offending element; valid ones come
//! back whole.

use haven_fhir::{Invalid, parse};
use serde_json::{Value, json};

fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": "Patient/0190c2a4-9d7e-7c3a-8f1e-123456789abc"},
        "effectiveDateTime": "2024-03-15T10:30:00+01:00",
        "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "name": [{"family": "Rivera", "given": ["Ana"]}],
        "birthDate": "1984-07-02",
        "gender": "female",
        "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN-1"}]
    })
}

fn refused(value: Value) -> Invalid {
    match parse(value.to_string().as_bytes()) {
        Ok(resource) => panic!("accepted: {resource:?}"),
        Err(invalid) => invalid,
    }
}

fn with(value: Value, pointer: &str, replacement: Value) -> Value {
    haven_fhir::examples::with(value, pointer, replacement)
        .unwrap_or_else(|| panic!("{pointer} is not in the example"))
}

#[test]
fn valid_resources_round_trip_unchanged() {
    for value in [observation(), patient()] {
        let resource = parse(value.to_string().as_bytes()).unwrap();
        assert_eq!(resource.to_value(), value);
    }
}

#[test]
fn invalid_resources_name_the_element() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            with(observation(), "/status", json!("done")),
            "Observation.status",
            "not an allowed code",
        ),
        (
            with(observation(), "/status", Value::Null),
            "Observation.status",
            "required",
        ),
        (
            with(observation(), "/code", Value::Null),
            "Observation.code",
            "required",
        ),
        (
            with(observation(), "/colour", json!("red")),
            "Observation.colour",
            "unknown",
        ),
        (
            with(observation(), "/code/coding/0/sytem", json!("x")),
            "Observation.code.coding[0].sytem",
            "unknown",
        ),
        (
            with(
                observation(),
                "/code/coding/0/system",
                json!("http://lo inc.org"),
            ),
            "Observation.code.coding[0].system",
            "uri",
        ),
        (
            with(observation(), "/code/coding", json!([])),
            "Observation.code.coding",
            "empty array",
        ),
        (
            with(observation(), "/effectiveDateTime", json!("2024-02-30")),
            "Observation.effectiveDateTime",
            "dateTime",
        ),
        (
            with(
                observation(),
                "/effectiveDateTime",
                json!("2024-03-15T10:30:00"),
            ),
            "Observation.effectiveDateTime",
            "time zone",
        ),
        (
            with(observation(), "/effectivePeriod", json!({"start": "2024"})),
            "Observation.effective[x]",
            "only one",
        ),
        (
            with(observation(), "/valueString", json!("72")),
            "Observation.value[x]",
            "only one",
        ),
        (
            with(observation(), "/valueQuantity/value", json!("72")),
            "Observation.valueQuantity.value",
            "invalid type",
        ),
        (
            with(observation(), "/valueQuantity/comparator", json!("~")),
            "Observation.valueQuantity.comparator",
            "unknown variant",
        ),
        (
            with(observation(), "/subject", Value::Null),
            "Observation.subject",
            "required",
        ),
        (
            with(observation(), "/subject/reference", json!("Practitioner/1")),
            "Observation.subject.reference",
            "Patient",
        ),
        (
            with(observation(), "/subject/reference", json!("Patient/../1")),
            "Observation.subject.reference",
            "Patient",
        ),
        (
            with(observation(), "/extension", json!([{"url": "x"}])),
            "Observation.extension",
            "unknown",
        ),
        (
            with(observation(), "/modifierExtension", json!([{"url": "x"}])),
            "Observation.modifierExtension",
            "unknown",
        ),
        (
            with(observation(), "/id", json!("has space")),
            "Observation.id",
            "id",
        ),
        (
            with(observation(), "/dataAbsentReason", json!({"text": "lost"})),
            "Observation.dataAbsentReason",
            "no value",
        ),
        (
            with(observation(), "/note", json!([{"text": "   "}])),
            "Observation.note[0].text",
            "empty",
        ),
        (
            with(patient(), "/birthDate", json!("1984-07")),
            "Patient.birthDate",
            "to the day",
        ),
        (
            with(patient(), "/birthDate", json!("07/02/1984")),
            "Patient.birthDate",
            "date",
        ),
        (
            with(patient(), "/gender", json!("F")),
            "Patient.gender",
            "male, female, other, unknown",
        ),
        (
            with(patient(), "/name", json!([{"given": ["Ana"]}])),
            "Patient.name",
            "family",
        ),
        (
            with(
                with(patient(), "/deceasedDateTime", json!("2020")),
                "/deceasedBoolean",
                json!(true),
            ),
            "Patient.deceased[x]",
            "only one",
        ),
        (
            with(observation(), "/effectivePeriod", json!(["2024", "2025"])),
            "Observation.effectivePeriod",
            "form",
        ),
        (
            with(
                with(observation(), "/effectiveDateTime", Value::Null),
                "/effectivePeriod",
                json!(["2024"]),
            ),
            "Observation.effectivePeriod",
            "form",
        ),
        (
            with(observation(), "/code", json!([[{"code": "x"}], "text"])),
            "Observation.code",
            "form",
        ),
        (
            with(patient(), "/resourceType", json!("Patience")),
            "resourceType",
            "not a resource type",
        ),
    ];
    let mut failures = Vec::new();
    for (value, path, fragment) in cases {
        let invalid = refused(value.clone());
        if invalid.path != path || !invalid.message.contains(fragment) {
            failures.push(format!(
                "{value}\n  expected {path}: …{fragment}…\n  got {invalid}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn deeply_nested_or_non_object_input_is_refused() {
    let mut deep = json!("x");
    for _ in 0..100 {
        deep = json!([deep]);
    }
    assert!(
        refused(with(observation(), "/note", deep))
            .message
            .contains("nested")
    );
    assert_eq!(
        parse(b"[1]").unwrap_err().message,
        "a resource is a JSON object"
    );
    assert!(parse(b"{").unwrap_err().message.contains("not valid JSON"));
    assert_eq!(refused(json!({"status": "final"})).path, "resourceType");
}
