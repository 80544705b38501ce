//! `haven import` as an operator runs it: the binary, against a running server, with an
//! integration token. Bundles and NDJSON files load with their references followed to the
//! new ids; a bad resource is reported with its file and line and costs only itself; a
//! token that may not import stops the run at once, having changed nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;

use haven_domain::Role;
use haven_test_support::{Backend, TestServer};
use serde_json::{Value, json};

haven_test_support::on_every_backend!(
    bundles_and_ndjson_load_with_their_references_followed,
    a_token_that_may_not_import_stops_the_run_and_changes_nothing,
);

const HAVEN: &str = env!("CARGO_BIN_EXE_haven");

async fn run_import(server: &TestServer, token: &str, files: &[&Path]) -> Output {
    let mut command = tokio::process::Command::new(HAVEN);
    command
        .env_clear()
        .env("HAVEN_TOKEN", token)
        .arg("import")
        .arg("--url")
        .arg(server.endpoint(""));
    for file in files {
        command.arg(file);
    }
    command.output().await.unwrap()
}

fn heart_rate(subject: &str, bpm: usize) -> Value {
    json!({
        "resourceType": "Observation",
        "id": format!("src-obs-{bpm}"),
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": "2024-03-15",
        "valueQuantity": {"value": bpm, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

/// The patient with `identifier`, as the front desk finds them.
async fn patient_with(server: &TestServer, token: &str, identifier: &str) -> String {
    let found: Value = server
        .client
        .get(server.endpoint(&format!(
            "/fhir/Patient?identifier=urn:oid:1.2.3%7C{identifier}"
        )))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = found["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{found}");
    entries[0]["resource"]["id"].as_str().unwrap().to_owned()
}

async fn search(server: &TestServer, token: &str, path: &str) -> Value {
    let response = server
        .client
        .get(server.endpoint(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

async fn bundles_and_ndjson_load_with_their_references_followed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let integration = server.token(Role::Integration, 1).await;
    let dir = tempfile::tempdir().unwrap();

    // A collection Bundle: references by urn:uuid, by Type/id, and a report gathering a result.
    let clinic = dir.path().join("clinic.json");
    let mut in_visit = heart_rate("Patient/src-ada", 72);
    in_visit["encounter"] = json!({"reference": "Encounter/src-visit"});
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:7f0b6c1e-0000-4000-8000-000000000001", "resource": {
                "resourceType": "DiagnosticReport",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
                "subject": {"reference": "Patient/src-ada"},
                "result": [{"reference": "Observation/src-obs-72"}]
            }},
            {"fullUrl": "urn:uuid:7f0b6c1e-0000-4000-8000-000000000002", "resource": {
                "resourceType": "Encounter",
                "id": "src-visit",
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"},
                "subject": {"reference": "urn:uuid:7f0b6c1e-0000-4000-8000-000000000003"}
            }},
            {"fullUrl": "urn:uuid:7f0b6c1e-0000-4000-8000-000000000003", "resource": {
                "resourceType": "Patient",
                "id": "src-ada",
                "identifier": [{"system": "urn:oid:1.2.3", "value": "IMPORT-ADA"}],
                "name": [{"family": "Lovelace", "given": ["Ada"]}],
                "birthDate": "1984-12-10"
            }},
            {"resource": in_visit}
        ]
    });
    std::fs::write(&clinic, bundle.to_string()).unwrap();

    // NDJSON, observations named before their patient, 450 of them (three transactions),
    // with two bad lines among them.
    let observations = dir.path().join("Observation.ndjson");
    let mut lines: Vec<String> = (100..550)
        .map(|bpm| heart_rate("Patient/src-bob", bpm).to_string())
        .collect();
    lines.insert(10, "{not json".to_owned());
    let mut bad = heart_rate("Patient/src-bob", 99);
    bad["status"] = json!("bogus");
    lines.insert(300, bad.to_string());
    std::fs::write(&observations, lines.join("\n") + "\n").unwrap();
    let patients = dir.path().join("Patient.ndjson");
    std::fs::write(
        &patients,
        json!({
            "resourceType": "Patient",
            "id": "src-bob",
            "identifier": [{"system": "urn:oid:1.2.3", "value": "IMPORT-BOB"}],
            "name": [{"family": "Babbage", "given": ["Charles"]}],
            "birthDate": "1971-12-26"
        })
        .to_string()
            + "\n",
    )
    .unwrap();

    let output = run_import(&server, &integration, &[&observations, &clinic, &patients]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "two resources failed\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("Imported 455 resources from 3 file(s)"),
        "{stdout}"
    );
    for (kind, count) in [
        ("Patient", 2),
        ("Observation", 451),
        ("Encounter", 1),
        ("DiagnosticReport", 1),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [kind, &count.to_string()]),
            "{kind} {count}\n{stdout}"
        );
    }
    assert!(
        stdout.contains("2 resource(s) were not imported"),
        "{stdout}"
    );
    let name = observations.display().to_string();
    assert!(
        stdout.contains(&format!("{name}:11: not valid JSON")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(&format!("{name}:301:")) && l.contains("status")),
        "{stdout}"
    );
    assert!(
        stderr.contains("2 resource(s) were not imported"),
        "{stderr}"
    );

    // The records are where they belong, their references pointing at the new ids.
    let front_desk = server.user(Role::FrontDesk, None).await;
    let ada = patient_with(&server, &front_desk.token, "IMPORT-ADA").await;
    let bob = patient_with(&server, &front_desk.token, "IMPORT-BOB").await;
    let doctor = server.user(Role::Clinician, None).await;
    for patient in [&ada, &bob] {
        server
            .add_to_care_team(patient.parse().unwrap(), doctor.id)
            .await;
    }
    let counted = search(
        &server,
        &doctor.token,
        &format!("/fhir/Observation?patient={bob}&_summary=count"),
    )
    .await;
    assert_eq!(counted["total"], 450);
    let reports = search(
        &server,
        &doctor.token,
        &format!("/fhir/DiagnosticReport?patient={ada}"),
    )
    .await;
    let report = &reports["entry"][0]["resource"];
    assert_eq!(report["subject"]["reference"], format!("Patient/{ada}"));
    let result = report["result"][0]["reference"].as_str().unwrap();
    let observation = search(&server, &doctor.token, &format!("/fhir/{result}")).await;
    assert_eq!(observation["valueQuantity"]["value"], 72);
    let visit = observation["encounter"]["reference"].as_str().unwrap();
    let encounter = search(&server, &doctor.token, &format!("/fhir/{visit}")).await;
    assert_eq!(encounter["subject"]["reference"], format!("Patient/{ada}"));
    assert_ne!(
        encounter["id"], "src-visit",
        "every resource gets a server id"
    );
    server.stop().await;
}

async fn a_token_that_may_not_import_stops_the_run_and_changes_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let patients = dir.path().join("Patient.ndjson");
    std::fs::write(
        &patients,
        json!({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.3", "value": "IMPORT-NONE"}], "name": [{"family": "Nobody"}], "birthDate": "1990-01-01"}).to_string(),
    )
    .unwrap();
    let clinician_token = server.token(Role::Clinician, 1).await;
    let refused = run_import(&server, &clinician_token, &[&patients]).await;
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert!(stderr.contains("integration role"), "{stderr}\n{stdout}");
    let unknown = run_import(&server, "hvt_not-a-token", &[&patients]).await;
    assert_eq!(unknown.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("token was refused"), "{stderr}");
    let front_desk = server.user(Role::FrontDesk, None).await;
    let found = search(
        &server,
        &front_desk.token,
        "/fhir/Patient?identifier=urn:oid:1.2.3%7CIMPORT-NONE",
    )
    .await;
    assert!(
        found["entry"].as_array().is_none_or(|e| e.is_empty()),
        "{found}"
    );
    server.stop().await;
}
