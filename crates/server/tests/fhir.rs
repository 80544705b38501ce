//! The FHIR R4 REST API as a client sees it: CRUD with versions and ETags, conflicts (409,
//! 412), history, search with prefixes, sorting, paging and `_include`, transactions that
//! apply whole or not at all, batches, validation answered by an `OperationOutcome` naming
//! the element, the chart's access policy, and no plaintext of any resource type in the
//! database. On SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use haven_domain::{PatientId, Role};
use haven_test_support::{Backend, TestServer, TestUser};
use reqwest::StatusCode;
use serde_json::{Value, json};

haven_test_support::on_every_backend!(
    resources_are_created_read_versioned_and_deleted,
    invalid_resources_are_refused_at_the_element_and_nothing_is_stored,
    search_narrows_by_code_date_and_status_and_pages,
    a_transaction_applies_whole_or_not_at_all,
    a_batch_answers_each_entry_on_its_own,
    the_chart_is_open_to_its_care_team_and_its_patient_only,
    the_patient_resource_is_the_demographic_record,
    everything_is_the_whole_chart_audited_as_one_export,
    attachments_stream_in_and_out_sealed_in_chunks,
    attachments_kept_as_files_stay_sealed,
    unfinished_uploads_are_swept_wherever_chunks_are_kept,
    the_directory_is_kept_by_administrators_and_read_by_everyone,
    reviewers_read_the_audit_log_as_audit_events,
    lab_results_wait_for_review_when_the_organisation_asks,
    a_patient_asks_for_a_correction_and_the_care_team_answers,
    planted_markers_in_every_resource_type_never_reach_the_database,
);

const FHIR: &str = "application/fhir+json";

/// A clinician on `patient`'s care team.
async fn clinician_for(server: &TestServer, patient: PatientId) -> TestUser {
    let clinician = server.user(Role::Clinician, None).await;
    server.add_to_care_team(patient, clinician.id).await;
    clinician
}

fn heart_rate(patient: PatientId, bpm: i64, at: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": at,
        "valueQuantity": {"value": bpm, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

async fn send(
    server: &TestServer,
    method: reqwest::Method,
    token: &str,
    path: &str,
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = server
        .client
        .request(method, server.endpoint(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request
            .header("content-type", FHIR)
            .body(serde_json::to_vec(body).unwrap());
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn post(server: &TestServer, token: &str, path: &str, body: &Value) -> reqwest::Response {
    send(server, reqwest::Method::POST, token, path, Some(body), &[]).await
}

async fn get(server: &TestServer, token: &str, path: &str) -> reqwest::Response {
    send(server, reqwest::Method::GET, token, path, None, &[]).await
}

async fn json_of(response: reqwest::Response) -> Value {
    assert!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(FHIR)),
        "FHIR answers are application/fhir+json"
    );
    response.json().await.unwrap()
}

/// The issue of an OperationOutcome: (code, expression, diagnostics).
async fn issue(response: reqwest::Response) -> (String, String, String) {
    let body = json_of(response).await;
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    let issue = &body["issue"][0];
    (
        issue["code"].as_str().unwrap_or_default().to_owned(),
        issue["expression"][0]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        issue["diagnostics"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn ids_found(server: &TestServer, token: &str, path: &str) -> Vec<String> {
    let response = get(server, token, path).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let bundle = json_of(response).await;
    assert_eq!(bundle["type"], "searchset");
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "match")
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every resource id a search finds, following its `next` links to the end, and each
/// page's `total`.
async fn every_page(server: &TestServer, token: &str, first: &str) -> (Vec<String>, Vec<Value>) {
    let mut ids = Vec::new();
    let mut totals = Vec::new();
    let mut next = Some(first.to_owned());
    while let Some(path) = next {
        let bundle = json_of(get(server, token, &path).await).await;
        totals.push(bundle["total"].clone());
        ids.extend(
            bundle["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned()),
        );
        next = bundle["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| {
                format!(
                    "/fhir{}",
                    l["url"].as_str().unwrap().split_once("/fhir").unwrap().1
                )
            });
    }
    (ids, totals)
}

async fn resources_are_created_read_versioned_and_deleted(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let doctor = clinician_for(&server, ada).await;

    let created = post(
        &server,
        &doctor.token,
        "/fhir/Observation",
        &heart_rate(ada, 72, "2024-03-15T10:30:00Z"),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["etag"], "W/\"1\"");
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let body = json_of(created).await;
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/fhir/Observation/{id}/_history/1"));
    assert_eq!(body["meta"]["versionId"], "1");
    assert_eq!(body["valueQuantity"]["value"], 72);

    let path = format!("/fhir/Observation/{id}");
    let read = get(&server, &doctor.token, &path).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert!(read.headers().contains_key("last-modified"));
    assert_eq!(json_of(read).await, body, "a read answers what was created");

    // Update with the current ETag; a second update with the same, now stale, ETag fails.
    let mut changed = body.clone();
    changed["valueQuantity"]["value"] = json!(75);
    let updated = send(
        &server,
        reqwest::Method::PUT,
        &doctor.token,
        &path,
        Some(&changed),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(updated.status(), StatusCode::OK);
    assert_eq!(updated.headers()["etag"], "W/\"2\"");
    let stale = send(
        &server,
        reqwest::Method::PUT,
        &doctor.token,
        &path,
        Some(&changed),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(issue(stale).await.0, "conflict");

    // An update without If-Match applies to whatever is current.
    changed["valueQuantity"]["value"] = json!(77);
    let blind = send(
        &server,
        reqwest::Method::PUT,
        &doctor.token,
        &path,
        Some(&changed),
        &[],
    )
    .await;
    assert_eq!(blind.status(), StatusCode::OK);
    assert_eq!(json_of(blind).await["meta"]["versionId"], "3");

    let first = json_of(get(&server, &doctor.token, &format!("{path}/_history/1")).await).await;
    assert_eq!(
        first["valueQuantity"]["value"], 72,
        "vread answers the old version"
    );
    assert_eq!(
        get(&server, &doctor.token, &format!("{path}/_history/9"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    let deleted = send(
        &server,
        reqwest::Method::DELETE,
        &doctor.token,
        &path,
        None,
        &[],
    )
    .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = get(&server, &doctor.token, &path).await;
    assert_eq!(gone.status(), StatusCode::GONE);
    assert_eq!(issue(gone).await.0, "deleted");
    let again = send(
        &server,
        reqwest::Method::DELETE,
        &doctor.token,
        &path,
        None,
        &[],
    )
    .await;
    assert_eq!(
        again.status(),
        StatusCode::NO_CONTENT,
        "deleting twice changes nothing"
    );

    let history = json_of(get(&server, &doctor.token, &format!("{path}/_history")).await).await;
    assert_eq!(history["type"], "history");
    let methods: Vec<&str> = history["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["request"]["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["DELETE", "PUT", "PUT", "POST"], "newest first");
    let paged =
        json_of(get(&server, &doctor.token, &format!("{path}/_history?_count=2")).await).await;
    assert_eq!(paged["entry"].as_array().unwrap().len(), 2);
    let next = paged["link"][1]["url"].as_str().unwrap();
    let rest = next.split_once("/fhir").unwrap().1;
    let second = json_of(get(&server, &doctor.token, &format!("/fhir{rest}")).await).await;
    assert_eq!(second["entry"].as_array().unwrap().len(), 2);
    assert_eq!(second["entry"][1]["request"]["method"], "POST");

    // A patient's type history lists the versions of every Observation of their chart; a
    // clinician's would have to span patients, and is refused (their care team would show
    // in its paging).
    let ada_self = server.user(Role::Patient, Some(ada)).await;
    let type_history =
        json_of(get(&server, &ada_self.token, "/fhir/Observation/_history").await).await;
    assert_eq!(type_history["entry"].as_array().unwrap().len(), 4);
    assert_eq!(
        get(&server, &doctor.token, "/fhir/Observation/_history")
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );

    // Every step was audited with the resource named.
    let entries = server.audit_entries().await;
    let about: Vec<_> = entries
        .iter()
        .filter(|e| e.event.resource_id.as_deref() == Some(id.as_str()))
        .collect();
    assert!(
        about.len() >= 8,
        "create, reads, updates, deletes: {}",
        about.len()
    );
    assert!(about.iter().all(|e| e.event.patient == Some(ada)));
    server.stop().await;
}

async fn invalid_resources_are_refused_at_the_element_and_nothing_is_stored(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let doctor = clinician_for(&server, ada).await;
    let good = heart_rate(ada, 72, "2024-03-15T10:30:00Z");
    let with = |pointer: &str, value: Value| {
        let mut bad = good.clone();
        *bad.pointer_mut(pointer).unwrap() = value;
        bad
    };
    let mut unknown = good.clone();
    unknown["colour"] = json!("red");
    let cases = [
        (with("/status", json!("done")), "Observation.status"),
        (
            with("/effectiveDateTime", json!("2024-02-30")),
            "Observation.effectiveDateTime",
        ),
        (
            with("/code/coding/0/system", json!("http://lo inc.org")),
            "Observation.code.coding[0].system",
        ),
        (unknown, "Observation.colour"),
        (
            with("/subject/reference", json!("Patient/not-a-patient")),
            "Observation.subject.reference",
        ),
        (with("/resourceType", json!("Condition")), "resourceType"),
    ];
    for (body, expression) in cases {
        let response = post(&server, &doctor.token, "/fhir/Observation", &body).await;
        let status = response.status();
        let (code, at, diagnostics) = issue(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {diagnostics}");
        assert_eq!(
            (code.as_str(), at.as_str()),
            ("invalid", expression),
            "{diagnostics}"
        );
    }
    // A patient who does not exist is refused like a stranger: nothing tells it apart.
    let nobody = with(
        "/subject/reference",
        json!(format!("Patient/{}", PatientId::generate())),
    );
    let refused = post(&server, &doctor.token, "/fhir/Observation", &nobody).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    // Not JSON, the wrong media type, and too large.
    let garbled = server
        .client
        .post(server.endpoint("/fhir/Observation"))
        .bearer_auth(&doctor.token)
        .header("content-type", FHIR)
        .body("{\"resourceType\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(garbled.status(), StatusCode::BAD_REQUEST);
    let plain = server
        .client
        .post(server.endpoint("/fhir/Observation"))
        .bearer_auth(&doctor.token)
        .header("content-type", "text/plain")
        .body(good.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Too large: on a server with a small limit, so the whole body is sent before the
    // answer (a large body cut off mid-send can reset the connection instead).
    let small = TestServer::start_with(backend, &[("HAVEN_BODY_BYTES_MAX", "2048")]).await;
    let small_patient = small.create_patient("Small").await;
    let small_doctor = clinician_for(&small, small_patient).await;
    let mut huge = heart_rate(small_patient, 72, "2024-03-15");
    huge["note"] = json!([{"text": "x".repeat(4096)}]);
    let too_large = post(&small, &small_doctor.token, "/fhir/Observation", &huge).await;
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(issue(too_large).await.0, "too-long");
    small.stop().await;

    assert!(
        ids_found(
            &server,
            &doctor.token,
            &format!("/fhir/Observation?patient={ada}")
        )
        .await
        .is_empty(),
        "nothing was stored"
    );
    server.stop().await;
}

async fn search_narrows_by_code_date_and_status_and_pages(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let bob = server.create_patient("Babbage").await;
    let doctor = clinician_for(&server, ada).await;
    server.add_to_care_team(bob, doctor.id).await;
    let mut ids = Vec::new();
    for (i, at) in [
        "2023-12-31T23:00:00Z",
        "2024-01-15",
        "2024-02-10T08:00:00+02:00",
        "2024-03-01",
        "2024-03-20",
        "2025-06",
    ]
    .iter()
    .enumerate()
    {
        let body = heart_rate(ada, 60 + i as i64, at);
        let created = json_of(post(&server, &doctor.token, "/fhir/Observation", &body).await).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let mut weight = heart_rate(ada, 70, "2024-03-05");
    weight["code"] = json!({"coding": [{"system": "http://loinc.org", "code": "29463-7"}]});
    weight["status"] = json!("preliminary");
    let weight_id = json_of(post(&server, &doctor.token, "/fhir/Observation", &weight).await).await
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();
    post(
        &server,
        &doctor.token,
        "/fhir/Observation",
        &heart_rate(bob, 90, "2024-03-02"),
    )
    .await;

    let search = |query: &str| format!("/fhir/Observation?patient=Patient/{ada}&{query}");
    let found = ids_found(
        &server,
        &doctor.token,
        &search("code=http://loinc.org|8867-4&_count=100"),
    )
    .await;
    assert_eq!(found.len(), 6);
    assert!(!found.contains(&weight_id));
    assert_eq!(
        ids_found(&server, &doctor.token, &search("code=29463-7")).await,
        vec![weight_id.clone()]
    );
    assert!(
        ids_found(
            &server,
            &doctor.token,
            &search("code=http://snomed.info/sct|29463-7")
        )
        .await
        .is_empty()
    );
    assert_eq!(
        ids_found(&server, &doctor.token, &search("status=preliminary")).await,
        vec![weight_id.clone()]
    );

    // Date prefixes, at the precision given.
    let mut march = ids_found(&server, &doctor.token, &search("date=2024-03")).await;
    march.sort();
    let mut expected = vec![ids[3].clone(), ids[4].clone(), weight_id.clone()];
    expected.sort();
    assert_eq!(march, expected);
    let january = ids_found(
        &server,
        &doctor.token,
        &search("date=ge2024-01-01&date=lt2024-02"),
    )
    .await;
    assert_eq!(
        january,
        [ids[1].clone()],
        "23:00 UTC on 31 December is not January"
    );
    let sorted = ids_found(
        &server,
        &doctor.token,
        &search("code=8867-4&date=ge2024-02-10&_sort=-date"),
    )
    .await;
    assert_eq!(
        sorted,
        [
            ids[5].clone(),
            ids[4].clone(),
            ids[3].clone(),
            ids[2].clone()
        ]
    );
    let before = ids_found(
        &server,
        &doctor.token,
        &search("date=le2024-01-15&_sort=date"),
    )
    .await;
    assert_eq!(before, [ids[0].clone(), ids[1].clone()]);

    // Paging follows the next link until it ends, without repeats: counted (sorted) and by
    // keyset (the id order).
    let (seen, totals) = every_page(&server, &doctor.token, &search("_count=3&_sort=date")).await;
    assert!(totals.iter().all(|t| *t == json!(7)), "{totals:?}");
    assert_eq!(seen.len(), 7);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 7);
    let (keyset, _) = every_page(&server, &doctor.token, &search("_count=4")).await;
    assert_eq!(keyset.len(), 7);

    // Across patients: only those the clinician is related to, and nothing of the others,
    // not even in the paging.
    let carl = server.create_patient("Carl").await;
    let carls_doctor = clinician_for(&server, carl).await;
    post(
        &server,
        &carls_doctor.token,
        "/fhir/Observation",
        &heart_rate(carl, 88, "2024-03-02"),
    )
    .await;
    let across = ids_found(&server, &doctor.token, "/fhir/Observation?date=2024-03-02").await;
    assert_eq!(across.len(), 1, "Bob's, not Carl's");
    let first = json_of(
        get(
            &server,
            &doctor.token,
            "/fhir/Observation?date=2024-03-02&_count=1",
        )
        .await,
    )
    .await;
    assert!(
        !first["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["relation"] == "next"),
        "no next page: Carl's result is not counted"
    );
    let everything_of_bob = ids_found(
        &server,
        &doctor.token,
        "/fhir/Observation?code=8867-4&_count=100",
    )
    .await;
    assert_eq!(everything_of_bob.len(), 7, "Ada's six and Bob's one");

    // _include brings the patient along, once.
    let bundle = json_of(
        get(
            &server,
            &doctor.token,
            &search("date=2024-03&_include=Observation:patient"),
        )
        .await,
    )
    .await;
    let included: Vec<&Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["search"]["mode"] == "include")
        .collect();
    assert_eq!(included.len(), 1);
    assert_eq!(included[0]["resource"]["resourceType"], "Patient");
    assert_eq!(included[0]["resource"]["id"], ada.to_string());

    // Counting only, and the ways of asking for a total.
    let counted = json_of(
        get(
            &server,
            &doctor.token,
            &search("code=8867-4&_summary=count"),
        )
        .await,
    )
    .await;
    assert_eq!(counted["total"], 6);
    assert!(counted["entry"].as_array().unwrap().is_empty());
    assert!(
        !counted["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["relation"] == "next")
    );
    assert_eq!(
        ids_found(
            &server,
            &doctor.token,
            &search("code=8867-4&_total=accurate&_count=100")
        )
        .await
        .len(),
        6
    );

    // Bad searches are answered clearly.
    for (query, code) in [
        ("colour=red", "not-supported"),
        ("date=sa2024", "not-supported"),
        ("date=2024-13", "invalid"),
        ("_count=1000", "invalid"),
        ("_sort=status", "not-supported"),
    ] {
        let response = get(&server, &doctor.token, &search(query)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(issue(response).await.0, code, "{query}");
    }
    server.stop().await;
}

async fn a_transaction_applies_whole_or_not_at_all(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let doctor = clinician_for(&server, ada).await;
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:6f1c2d7e-0000-4000-8000-000000000001",
                "resource": heart_rate(ada, 71, "2024-05-01T09:00:00Z"),
                "request": {"method": "POST", "url": "Observation"}
            },
            {
                "fullUrl": "urn:uuid:6f1c2d7e-0000-4000-8000-000000000002",
                "resource": {
                    "resourceType": "DiagnosticReport",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
                    "subject": {"reference": format!("Patient/{ada}")},
                    "effectiveDateTime": "2024-05-01",
                    "result": [{"reference": "urn:uuid:6f1c2d7e-0000-4000-8000-000000000001"}]
                },
                "request": {"method": "POST", "url": "DiagnosticReport"}
            }
        ]
    });
    let answer = post(&server, &doctor.token, "/fhir", &bundle).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let answer = json_of(answer).await;
    assert_eq!(answer["type"], "transaction-response");
    assert_eq!(answer["entry"][0]["response"]["status"], "201 Created");
    let observation = answer["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let report = json_of(
        get(
            &server,
            &doctor.token,
            &format!(
                "/fhir/DiagnosticReport/{}",
                answer["entry"][1]["resource"]["id"].as_str().unwrap()
            ),
        )
        .await,
    )
    .await;
    assert_eq!(
        report["result"][0]["reference"],
        format!("Observation/{observation}"),
        "urn:uuid references resolved"
    );

    // One stale entry: nothing of the transaction is applied.
    let current = json_of(
        get(
            &server,
            &doctor.token,
            &format!("/fhir/Observation/{observation}"),
        )
        .await,
    )
    .await;
    let before = ids_found(
        &server,
        &doctor.token,
        &format!("/fhir/Observation?patient={ada}"),
    )
    .await;
    let failing = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": heart_rate(ada, 99, "2024-05-02"), "request": {"method": "POST", "url": "Observation"}},
            {"resource": current, "request": {"method": "PUT", "url": format!("Observation/{observation}"), "ifMatch": "W/\"7\""}},
        ]
    });
    let refused = post(&server, &doctor.token, "/fhir", &failing).await;
    assert_eq!(refused.status(), StatusCode::PRECONDITION_FAILED);
    let (_, at, diagnostics) = issue(refused).await;
    assert_eq!(at, "Bundle.entry[1]");
    assert!(diagnostics.contains("nothing of the transaction was applied"));
    // One invalid entry: the same.
    let invalid = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": heart_rate(ada, 99, "2024-05-02"), "request": {"method": "POST", "url": "Observation"}},
            {"resource": heart_rate(ada, 98, "2024-05-32"), "request": {"method": "POST", "url": "Observation"}},
        ]
    });
    let refused = post(&server, &doctor.token, "/fhir", &invalid).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        issue(refused).await.1,
        "Bundle.entry[1].Observation.effectiveDateTime"
    );
    let after = ids_found(
        &server,
        &doctor.token,
        &format!("/fhir/Observation?patient={ada}"),
    )
    .await;
    assert_eq!(before, after, "no entry of a failed transaction was stored");
    let unchanged = json_of(
        get(
            &server,
            &doctor.token,
            &format!("/fhir/Observation/{observation}"),
        )
        .await,
    )
    .await;
    assert_eq!(unchanged["meta"]["versionId"], "1");

    // A transaction only writes.
    let reading = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": format!("Patient/{ada}")}}
    ]});
    assert_eq!(
        post(&server, &doctor.token, "/fhir", &reading)
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    // A reference to an entry whose condition matched leads to the resource it matched.
    let visit = json_of(post(&server, &doctor.token, "/fhir/Encounter", &json!({
        "resourceType": "Encounter", "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"},
        "subject": {"reference": format!("Patient/{ada}")}
    })).await).await;
    let conditional = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:3c1e6f0a-0000-4000-8000-00000000000e",
         "resource": {"resourceType": "Encounter", "status": "in-progress",
                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"},
                      "subject": {"reference": format!("Patient/{ada}")}},
         "request": {"method": "POST", "url": "Encounter", "ifNoneExist": format!("patient={ada}&status=in-progress")}},
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                      "subject": {"reference": format!("Patient/{ada}")},
                      "encounter": {"reference": "urn:uuid:3c1e6f0a-0000-4000-8000-00000000000e"},
                      "valueQuantity": {"value": 61}},
         "request": {"method": "POST", "url": "Observation"}}
    ]});
    let answer = json_of(post(&server, &doctor.token, "/fhir", &conditional).await).await;
    assert_eq!(
        answer["entry"][0]["response"]["status"], "200 OK",
        "{answer}"
    );
    assert_eq!(
        answer["entry"][1]["resource"]["encounter"]["reference"],
        format!("Encounter/{}", visit["id"].as_str().unwrap())
    );

    // A whole synthetic chart (about a hundred resources, references between them) at once.
    let chart = haven_fhir::synthetic::chart(&ada.to_string(), 1, 2026);
    let count = chart["entry"].as_array().unwrap().len();
    let loaded = post(&server, &doctor.token, "/fhir", &chart).await;
    assert_eq!(loaded.status(), StatusCode::OK);
    let loaded = json_of(loaded).await;
    let created = loaded["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["response"]["status"] == "201 Created")
        .count();
    assert_eq!(created, count);
    let before = ids_found(
        &server,
        &doctor.token,
        &format!("/fhir/Observation?patient={ada}&_count=100"),
    )
    .await;

    // A stranger's entry refuses the whole transaction too.
    let bob = server.create_patient("Babbage").await;
    let mixed = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": heart_rate(ada, 99, "2024-05-02"), "request": {"method": "POST", "url": "Observation"}},
            {"resource": heart_rate(bob, 99, "2024-05-02"), "request": {"method": "POST", "url": "Observation"}},
        ]
    });
    assert_eq!(
        post(&server, &doctor.token, "/fhir", &mixed).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        ids_found(
            &server,
            &doctor.token,
            &format!("/fhir/Observation?patient={ada}&_count=100")
        )
        .await,
        before
    );
    server.stop().await;
}

async fn a_batch_answers_each_entry_on_its_own(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let doctor = clinician_for(&server, ada).await;
    let batch = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": heart_rate(ada, 70, "2024-05-01"), "request": {"method": "POST", "url": "Observation"}},
            {"resource": heart_rate(ada, 70, "2024-05-45"), "request": {"method": "POST", "url": "Observation"}},
            {"request": {"method": "GET", "url": format!("Observation?patient={ada}")}},
            {"request": {"method": "GET", "url": format!("Patient/{ada}")}},
        ]
    });
    let answer = json_of(post(&server, &doctor.token, "/fhir", &batch).await).await;
    assert_eq!(answer["type"], "batch-response");
    assert_eq!(answer["entry"][0]["response"]["status"], "201 Created");
    assert!(
        answer["entry"][1]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("400")
    );
    assert_eq!(
        answer["entry"][1]["response"]["outcome"]["issue"][0]["expression"][0],
        "Observation.effectiveDateTime"
    );
    assert_eq!(answer["entry"][2]["resource"]["type"], "searchset");
    assert_eq!(
        answer["entry"][2]["resource"]["entry"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(answer["entry"][3]["resource"]["resourceType"], "Patient");

    // `Prefer: return=minimal`: headers and locations, no resource bodies.
    let quiet = send(
        &server,
        reqwest::Method::POST,
        &doctor.token,
        "/fhir/Observation",
        Some(&heart_rate(ada, 64, "2024-05-03")),
        &[("prefer", "return=minimal")],
    )
    .await;
    assert_eq!(quiet.status(), StatusCode::CREATED);
    assert!(quiet.headers().contains_key("location"));
    assert!(quiet.bytes().await.unwrap().is_empty());
    let quiet_bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": heart_rate(ada, 65, "2024-05-04"), "request": {"method": "POST", "url": "Observation"}}
    ]});
    let answer = json_of(
        send(
            &server,
            reqwest::Method::POST,
            &doctor.token,
            "/fhir",
            Some(&quiet_bundle),
            &[("prefer", "return=minimal")],
        )
        .await,
    )
    .await;
    assert!(answer["entry"][0].get("resource").is_none());
    assert!(
        answer["entry"][0]["response"]["location"]
            .as_str()
            .unwrap()
            .starts_with("Observation/")
    );

    // Reads in a batch are bounded: each search may open many resources.
    let reads: Vec<Value> = (0..21)
        .map(|_| json!({"request": {"method": "GET", "url": format!("Observation?patient={ada}")}}))
        .collect();
    let many = json!({"resourceType": "Bundle", "type": "batch", "entry": reads});
    let refused = post(&server, &doctor.token, "/fhir", &many).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(issue(refused).await.0, "too-costly");

    // Conditional create: the second time, the existing resource is answered.
    let mut tagged = heart_rate(ada, 66, "2024-06-01");
    tagged["identifier"] = json!([{"system": "urn:example:device", "value": "reading-42"}]);
    let first = send(
        &server,
        reqwest::Method::POST,
        &doctor.token,
        "/fhir/Observation",
        Some(&tagged),
        &[],
    )
    .await;
    assert_eq!(first.status(), StatusCode::CREATED);
    server.stop().await;
}

async fn the_chart_is_open_to_its_care_team_and_its_patient_only(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let bob = server.create_patient("Babbage").await;
    let doctor = clinician_for(&server, ada).await;
    let created = json_of(
        post(
            &server,
            &doctor.token,
            "/fhir/Observation",
            &heart_rate(ada, 72, "2024-03-15"),
        )
        .await,
    )
    .await;
    let path = format!("/fhir/Observation/{}", created["id"].as_str().unwrap());
    let missing = format!("/fhir/Observation/{}", uuid::Uuid::now_v7());

    let ada_self = server.user(Role::Patient, Some(ada)).await;
    let bob_self = server.user(Role::Patient, Some(bob)).await;
    let nurse = server.user(Role::Nurse, None).await;
    let desk = server.user(Role::FrontDesk, None).await;
    let auditor = server.user(Role::Auditor, None).await;

    assert_eq!(
        get(&server, &ada_self.token, &path).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        ids_found(&server, &ada_self.token, "/fhir/Observation")
            .await
            .len(),
        1,
        "a patient's search is their own record"
    );
    for (user, reason) in [
        (&bob_self, "not_their_record"),
        (&nurse, "no_care_relationship"),
        (&desk, "role_not_permitted"),
        (&auditor, "role_not_permitted"),
    ] {
        for target in [&path, &missing] {
            let refused = get(&server, &user.token, target).await;
            assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{target}");
            let (code, _, diagnostics) = issue(refused).await;
            assert_eq!(code, "forbidden");
            assert!(
                diagnostics.contains(reason),
                "{diagnostics}: whether it exists is not revealed"
            );
        }
    }
    // Bob cannot reach Ada's chart by naming her.
    assert_eq!(
        get(
            &server,
            &bob_self.token,
            &format!("/fhir/Observation?patient={ada}")
        )
        .await
        .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&server, &bob_self.token, &format!("{path}/_history"))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        get(&server, &bob_self.token, &format!("{path}/_history/1"))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert!(
        ids_found(&server, &bob_self.token, "/fhir/Observation?date=2024")
            .await
            .is_empty()
    );
    // Nor write into it, nor edit or delete what is there.
    assert_eq!(
        post(
            &server,
            &bob_self.token,
            "/fhir/Observation",
            &heart_rate(ada, 1, "2024")
        )
        .await
        .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(
            &server,
            reqwest::Method::DELETE,
            &nurse.token,
            &path,
            None,
            &[]
        )
        .await
        .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(
            &server,
            reqwest::Method::PUT,
            &bob_self.token,
            &path,
            Some(&created),
            &[]
        )
        .await
        .status(),
        StatusCode::FORBIDDEN
    );
    // A patient does not write clinical results, even their own; they fill in their forms.
    assert_eq!(
        post(
            &server,
            &ada_self.token,
            "/fhir/Observation",
            &heart_rate(ada, 1, "2024")
        )
        .await
        .status(),
        StatusCode::FORBIDDEN
    );
    let form = haven_fhir::examples::example("QuestionnaireResponse", &ada.to_string()).unwrap();
    // What a patient wrote stays as written; what they write is in their own name.
    let written = post(
        &server,
        &ada_self.token,
        "/fhir/QuestionnaireResponse",
        &form,
    )
    .await;
    assert_eq!(written.status(), StatusCode::CREATED);
    let written = json_of(written).await;
    let form_path = format!(
        "/fhir/QuestionnaireResponse/{}",
        written["id"].as_str().unwrap()
    );
    assert_eq!(
        send(
            &server,
            reqwest::Method::PUT,
            &ada_self.token,
            &form_path,
            Some(&written),
            &[]
        )
        .await
        .status(),
        StatusCode::FORBIDDEN
    );
    let mut impersonating =
        haven_fhir::examples::example("Communication", &ada.to_string()).unwrap();
    impersonating["sender"] = json!({"reference": "Practitioner/dr-lopez"});
    let refused = post(
        &server,
        &ada_self.token,
        "/fhir/Communication",
        &impersonating,
    )
    .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(issue(refused).await.1, "Communication.sender");
    // An id that is no FHIR id names nothing, and its text is not recorded.
    assert_eq!(
        get(&server, &doctor.token, "/fhir/Observation/secret%20text")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert!(!server.audit_entries().await.iter().any(|e| {
        e.event
            .resource_id
            .as_deref()
            .is_some_and(|id| id.contains("secret"))
    }));
    // The front desk books visits but reads no results.
    let visit = haven_fhir::examples::example("Appointment", &ada.to_string()).unwrap();
    assert_eq!(
        post(&server, &desk.token, "/fhir/Appointment", &visit)
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        get(
            &server,
            &desk.token,
            &format!("/fhir/Observation?patient={ada}")
        )
        .await
        .status(),
        StatusCode::FORBIDDEN
    );
    // Anonymous and ended sessions get 401 as an OperationOutcome.
    let anonymous = server
        .client
        .get(server.endpoint(&path))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(issue(anonymous).await.0, "login");
    let signed_out = server
        .post_as(Some(&nurse.token), "/api/v1/auth/sign-out", json!({}))
        .await;
    assert!(signed_out.status().is_success());
    assert_eq!(
        get(&server, &nurse.token, &path).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // The metadata is public.
    let metadata = server
        .client
        .get(server.endpoint("/fhir/metadata"))
        .send()
        .await
        .unwrap();
    assert_eq!(metadata.status(), StatusCode::OK);
    let capability = json_of(metadata).await;
    assert_eq!(capability["fhirVersion"], "4.0.1");
    let types: Vec<&str> = capability["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"Observation") && types.contains(&"Patient"));
    // Every refusal was audited.
    let denied = server
        .audit_entries()
        .await
        .into_iter()
        .filter(|e| {
            e.event.outcome == haven_audit::Outcome::Denied
                && e.event.resource_type.as_deref() == Some("Observation")
        })
        .count();
    assert!(denied >= 12, "{denied} denials audited");
    server.stop().await;
}

async fn the_patient_resource_is_the_demographic_record(backend: Backend) {
    let server = TestServer::start(backend).await;
    let desk = server.user(Role::FrontDesk, None).await;
    let patient = json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "MRN-77"}],
        "name": [{"family": "Hopper", "given": ["Grace", "Brewster"]}],
        "telecom": [{"system": "phone", "value": "+1 555 0100"}],
        "birthDate": "1906-12-09"
    });
    let created = post(&server, &desk.token, "/fhir/Patient", &patient).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = json_of(created).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], patient["name"]);
    // The same record through the demographic API.
    let plain: Value = server
        .get_as(&desk.token, &format!("/api/v1/patients/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(plain["name"]["family"], "Hopper");
    // Found by FHIR search.
    assert_eq!(
        ids_found(
            &server,
            &desk.token,
            "/fhir/Patient?family=hopper&birthdate=1906-12-09"
        )
        .await,
        vec![id.clone()]
    );
    assert_eq!(
        ids_found(
            &server,
            &desk.token,
            "/fhir/Patient?identifier=urn:oid:1.2.36.146.595.217.0.1|MRN-77"
        )
        .await,
        vec![id.clone()]
    );
    // What the record does not keep is refused, not dropped.
    let mut with_address = patient.clone();
    with_address["address"] = json!([{"city": "Arlington"}]);
    let refused = post(&server, &desk.token, "/fhir/Patient", &with_address).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(issue(refused).await.1, "Patient.address");
    // Updated with its ETag.
    let mut renamed = created.clone();
    renamed["name"][0]["family"] = json!("Hopper-Murray");
    let updated = send(
        &server,
        reqwest::Method::PUT,
        &desk.token,
        &format!("/fhir/Patient/{id}"),
        Some(&renamed),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(updated.status(), StatusCode::OK);
    let stale = send(
        &server,
        reqwest::Method::PUT,
        &desk.token,
        &format!("/fhir/Patient/{id}"),
        Some(&renamed),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    // A clinician who is not on the care team finds the patient, masked.
    let stranger = server.user(Role::Clinician, None).await;
    let found = json_of(
        get(
            &server,
            &stranger.token,
            "/fhir/Patient?family=Hopper-Murray",
        )
        .await,
    )
    .await;
    let masked = &found["entry"][0]["resource"];
    assert_eq!(masked["meta"]["security"][0]["code"], "REDACTED");
    assert!(masked.get("identifier").is_none() && masked.get("telecom").is_none());
    assert_eq!(
        get(&server, &stranger.token, &format!("/fhir/Patient/{id}"))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(
            &server,
            reqwest::Method::DELETE,
            &desk.token,
            &format!("/fhir/Patient/{id}"),
            None,
            &[]
        )
        .await
        .status(),
        StatusCode::BAD_REQUEST
    );
    server.stop().await;
}

async fn planted_markers_in_every_resource_type_never_reach_the_database(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let doctor = clinician_for(&server, ada).await;
    let marker = "Qv8Zmarker";
    let admin = server.user(Role::Administrator, None).await;
    let mut kept = Vec::new();
    let mut observation = None;
    for resource_type in haven_app::fhir::served_types().filter(|t| *t != "Patient") {
        let mut example = haven_fhir::examples::example(resource_type, &ada.to_string()).unwrap();
        if resource_type == "Task" {
            // An amendment request names a record of the chart.
            let focus: &String = observation.as_ref().expect("Observation comes first");
            example["focus"] = json!({ "reference": format!("Observation/{focus}") });
        }
        // The display of the patient reference and the narrative carry the marker.
        let mut text = example
            .to_string()
            .replace("Ana Rivera", &format!("{marker} Rivera"));
        text = text.replacen(
            '{',
            &format!(
                "{{\"text\": {{\"status\": \"generated\", \"div\": \"<div>{marker} note</div>\"}},"
            ),
            1,
        );
        let body: Value = serde_json::from_str(&text).unwrap();
        // The directory is kept by administrators; the chart by the care team.
        let writer = if haven_app::fhir::is_directory(resource_type) {
            &admin.token
        } else {
            &doctor.token
        };
        let created = post(&server, writer, &format!("/fhir/{resource_type}"), &body).await;
        let status = created.status();
        let created = created.text().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{resource_type}: {created}");
        if resource_type == "Observation" {
            let created: Value = serde_json::from_str(&created).unwrap();
            observation = created["id"].as_str().map(str::to_owned);
        }
        kept.push(resource_type);
    }
    assert!(kept.len() >= 11, "every chart type was stored: {kept:?}");
    // And in a file: a transcript as plain text, over more than one chunk.
    let transcript = format!("{marker} transcript of the visit. ").repeat(20_000);
    let uploaded = upload(
        &server,
        &doctor.token,
        &format!("Patient/{ada}"),
        "text/plain",
        transcript.into_bytes(),
    )
    .await;
    assert_eq!(uploaded.status(), StatusCode::CREATED);
    // The control: the marker is there for an authorised reader.
    let read = get(
        &server,
        &doctor.token,
        &format!("/fhir/Condition?patient={ada}"),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(read.contains(marker));
    let haystack = server.raw_database_bytes().await;
    let text = String::from_utf8_lossy(&haystack);
    for needle in [
        marker.to_owned(),
        marker.to_lowercase(),
        "8867-4".to_owned(),
        "Rivera".to_owned(),
        "transcript of the visit".to_owned(),
    ] {
        assert!(
            !text.contains(&needle),
            "found `{needle}` in the raw database"
        );
    }
    server.stop().await;
}

async fn everything_is_the_whole_chart_audited_as_one_export(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let doctor = clinician_for(&server, ada).await;
    let chart = haven_fhir::synthetic::chart(&ada.to_string(), 3, 2026);
    let count = chart["entry"].as_array().unwrap().len();
    assert_eq!(
        post(&server, &doctor.token, "/fhir", &chart).await.status(),
        StatusCode::OK
    );
    let ada_self = server.user(Role::Patient, Some(ada)).await;
    let path = format!("/fhir/Patient/{ada}/$everything");
    let everything = json_of(get(&server, &ada_self.token, &path).await).await;
    assert_eq!(everything["total"], count + 1);
    let entries = everything["entry"].as_array().unwrap();
    assert_eq!(entries[0]["resource"]["resourceType"], "Patient");
    let mut types: Vec<&str> = entries
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    types.sort();
    types.dedup();
    assert!(types.len() >= 10, "{types:?}");
    let exports = server
        .audit_entries()
        .await
        .into_iter()
        .filter(|e| {
            e.event.action == haven_audit::AuditAction::Export && e.event.patient == Some(ada)
        })
        .count();
    assert_eq!(exports, 1, "one export entry for the whole chart");
    assert_eq!(
        get(&server, &doctor.token, &path).await.status(),
        StatusCode::OK
    );

    // The same chart as a download: NDJSON, one resource per line, the Patient first.
    let download = format!("/fhir/Patient/{ada}/$export");
    let exported = get(&server, &ada_self.token, &download).await;
    assert_eq!(exported.status(), StatusCode::OK);
    assert_eq!(
        exported.headers()["content-type"],
        "application/fhir+ndjson"
    );
    assert!(
        exported.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let text = exported.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), count + 1);
    assert_eq!(lines[0]["resourceType"], "Patient");
    let mut exported_ids: Vec<&str> = lines.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let mut everything_ids: Vec<&str> = entries
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    exported_ids.sort();
    everything_ids.sort();
    assert_eq!(exported_ids, everything_ids);
    let exports_now = server
        .audit_entries()
        .await
        .into_iter()
        .filter(|e| {
            e.event.action == haven_audit::AuditAction::Export && e.event.patient == Some(ada)
        })
        .count();
    assert_eq!(
        exports_now, 3,
        "one more export entry for each of the doctor's and the download"
    );
    // As a browser asks for it, compressed: the stream ends cleanly, not with a reset.
    let compressed = server
        .client
        .get(server.endpoint(&download))
        .bearer_auth(&ada_self.token)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(compressed.status(), StatusCode::OK);
    assert_eq!(compressed.headers()["content-encoding"], "gzip");
    let body = compressed
        .bytes()
        .await
        .expect("the whole compressed chart");
    assert_eq!(&body[..2], &[0x1f, 0x8b], "a gzip stream");

    for role in [Role::FrontDesk, Role::Clinician, Role::Auditor] {
        let outsider = server.user(role, None).await;
        for path in [&path, &download] {
            assert_eq!(
                get(&server, &outsider.token, path).await.status(),
                StatusCode::FORBIDDEN,
                "{role} {path}"
            );
        }
    }
    let other = server.create_patient("Other").await;
    let other_self = server.user(Role::Patient, Some(other)).await;
    for path in [&path, &download] {
        assert_eq!(
            get(&server, &other_self.token, path).await.status(),
            StatusCode::FORBIDDEN
        );
    }
    let unknown = get(
        &server,
        &ada_self.token,
        &format!("/fhir/Patient/{ada}/$expunge"),
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

async fn upload(
    server: &TestServer,
    token: &str,
    patient: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    server
        .client
        .post(server.endpoint("/fhir/Binary"))
        .bearer_auth(token)
        .header("content-type", content_type)
        .header("x-security-context", patient)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn attachments_stream_in_and_out_sealed_in_chunks(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let doctor = clinician_for(&server, ada).await;
    // A "PDF" of a little under three chunks, every byte position distinct enough that a
    // chunk out of place would show.
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend((0..700_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let created = upload(
        &server,
        &doctor.token,
        &format!("Patient/{ada}"),
        "application/pdf",
        pdf.clone(),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let binary = json_of(created).await;
    assert_eq!(binary["resourceType"], "Binary");
    assert_eq!(
        binary["securityContext"]["reference"],
        format!("Patient/{ada}")
    );
    assert_eq!(
        location,
        format!("/fhir/Binary/{}", binary["id"].as_str().unwrap())
    );

    let read = get(&server, &doctor.token, &location).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.headers()["content-type"], "application/pdf");
    assert_eq!(read.headers()["content-disposition"], "attachment");
    assert_eq!(
        read.bytes().await.unwrap().to_vec(),
        pdf,
        "the file comes back byte for byte"
    );

    // The patient reads their own file; nobody else does, whether it exists or not.
    let ada_self = server.user(Role::Patient, Some(ada)).await;
    assert_eq!(
        get(&server, &ada_self.token, &location).await.status(),
        StatusCode::OK
    );
    let missing = format!("/fhir/Binary/{}", uuid::Uuid::now_v7());
    for role in [Role::FrontDesk, Role::Nurse, Role::Auditor] {
        let outsider = server.user(role, None).await;
        assert_eq!(
            get(&server, &outsider.token, &location).await.status(),
            StatusCode::FORBIDDEN,
            "{role}"
        );
        assert_eq!(
            get(&server, &outsider.token, &missing).await.status(),
            StatusCode::FORBIDDEN,
            "{role}"
        );
    }
    // A patient adds a photograph to their own chart, not to anyone else's.
    let photo = b"\x89PNG\r\n\x1a\nrest of the image".to_vec();
    assert_eq!(
        upload(
            &server,
            &ada_self.token,
            &format!("Patient/{ada}"),
            "image/png",
            photo.clone()
        )
        .await
        .status(),
        StatusCode::CREATED
    );
    let bob = server.create_patient("Babbage").await;
    assert_eq!(
        upload(
            &server,
            &ada_self.token,
            &format!("Patient/{bob}"),
            "image/png",
            photo
        )
        .await
        .status(),
        StatusCode::FORBIDDEN
    );

    // What is not a file Haven keeps, or not what it claims to be, is refused.
    let script = upload(
        &server,
        &doctor.token,
        &format!("Patient/{ada}"),
        "image/png",
        b"<script>alert(1)</script>".to_vec(),
    )
    .await;
    assert_eq!(script.status(), StatusCode::BAD_REQUEST);
    assert_eq!(issue(script).await.1, "Binary.contentType");
    let html = upload(
        &server,
        &doctor.token,
        &format!("Patient/{ada}"),
        "text/html",
        b"<p>hi</p>".to_vec(),
    )
    .await;
    assert_eq!(html.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let empty = upload(
        &server,
        &doctor.token,
        &format!("Patient/{ada}"),
        "text/plain",
        Vec::new(),
    )
    .await;
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    let nobody = server
        .client
        .post(server.endpoint("/fhir/Binary"))
        .bearer_auth(&doctor.token)
        .header("content-type", "text/plain")
        .body("no patient named")
        .send()
        .await
        .unwrap();
    assert_eq!(nobody.status(), StatusCode::BAD_REQUEST);
    assert_eq!(issue(nobody).await.1, "X-Security-Context");

    let audited = server
        .audit_entries()
        .await
        .into_iter()
        .filter(|e| {
            e.event.resource_type.as_deref() == Some("Binary") && e.event.patient == Some(ada)
        })
        .count();
    assert!(audited >= 4, "uploads and downloads are audited: {audited}");
    server.stop().await;
}

async fn the_directory_is_kept_by_administrators_and_read_by_everyone(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.user(Role::Administrator, None).await;
    let doctor = server.user(Role::Clinician, None).await;
    let ada = server.create_patient("Lovelace").await;
    let ada_self = server.user(Role::Patient, Some(ada)).await;
    let mut created = Vec::new();
    for resource_type in [
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "Questionnaire",
    ] {
        let example = haven_fhir::examples::example(resource_type, &ada.to_string()).unwrap();
        let path = format!("/fhir/{resource_type}");
        assert_eq!(
            post(&server, &doctor.token, &path, &example).await.status(),
            StatusCode::FORBIDDEN,
            "{resource_type}"
        );
        let response = post(&server, &admin.token, &path, &example).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{resource_type}");
        let body = json_of(response).await;
        created.push((resource_type, body["id"].as_str().unwrap().to_owned(), body));
    }
    for (resource_type, id, body) in &created {
        let path = format!("/fhir/{resource_type}/{id}");
        for reader in [&doctor, &ada_self, &admin] {
            let read = get(&server, &reader.token, &path).await;
            assert_eq!(read.status(), StatusCode::OK, "{resource_type}");
            assert_eq!(&json_of(read).await, body);
        }
        assert_eq!(
            ids_found(&server, &ada_self.token, &format!("/fhir/{resource_type}")).await,
            vec![id.clone()]
        );
    }
    // Found by name; kept by administrators only.
    let (_, practitioner, body) = &created[0];
    let family = body["name"][0]["family"].as_str().unwrap();
    assert_eq!(
        ids_found(
            &server,
            &doctor.token,
            &format!("/fhir/Practitioner?family={family}")
        )
        .await,
        vec![practitioner.clone()]
    );
    // `:exact` is equal as written, case included.
    let folded = family.to_lowercase();
    assert_ne!(folded, family);
    assert_eq!(
        ids_found(
            &server,
            &doctor.token,
            &format!("/fhir/Practitioner?family={folded}")
        )
        .await
        .len(),
        1
    );
    assert!(
        ids_found(
            &server,
            &doctor.token,
            &format!("/fhir/Practitioner?family:exact={folded}")
        )
        .await
        .is_empty()
    );
    assert_eq!(
        ids_found(
            &server,
            &doctor.token,
            &format!("/fhir/Practitioner?family:exact={family}")
        )
        .await
        .len(),
        1
    );
    let path = format!("/fhir/Practitioner/{practitioner}");
    assert_eq!(
        send(
            &server,
            reqwest::Method::PUT,
            &doctor.token,
            &path,
            Some(body),
            &[]
        )
        .await
        .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(
            &server,
            reqwest::Method::PUT,
            &admin.token,
            &path,
            Some(body),
            &[("if-match", "W/\"1\"")]
        )
        .await
        .status(),
        StatusCode::OK
    );
    assert_eq!(
        send(
            &server,
            reqwest::Method::DELETE,
            &admin.token,
            &path,
            None,
            &[]
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get(&server, &doctor.token, &path).await.status(),
        StatusCode::GONE
    );
    let history = json_of(get(&server, &doctor.token, &format!("{path}/_history")).await).await;
    assert_eq!(history["entry"].as_array().unwrap().len(), 3);
    // No patient's access log shows directory reads.
    let directory_entries_with_patient = server
        .audit_entries()
        .await
        .into_iter()
        .filter(|e| {
            e.event.resource_type.as_deref() == Some("Practitioner") && e.event.patient.is_some()
        })
        .count();
    assert_eq!(directory_entries_with_patient, 0);
    server.stop().await;
}

async fn reviewers_read_the_audit_log_as_audit_events(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let doctor = clinician_for(&server, ada).await;
    let created = json_of(
        post(
            &server,
            &doctor.token,
            "/fhir/Observation",
            &heart_rate(ada, 70, "2024-03-15"),
        )
        .await,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        get(&server, &doctor.token, &format!("/fhir/Observation/{id}")).await;
    }
    let auditor = server.user(Role::Auditor, None).await;
    let search = format!("/fhir/AuditEvent?patient=Patient/{ada}&subtype=read&date=ge2020-01-01");
    let bundle = json_of(get(&server, &auditor.token, &search).await).await;
    let events = bundle["entry"].as_array().unwrap();
    assert_eq!(events.len(), 3, "{bundle}");
    for event in events {
        let event = &event["resource"];
        assert_eq!(event["resourceType"], "AuditEvent");
        assert_eq!(event["subtype"][0]["code"], "read");
        assert_eq!(
            event["entity"][0]["what"]["reference"],
            format!("Patient/{ada}")
        );
        assert_eq!(
            event["agent"][0]["who"]["identifier"]["value"],
            doctor.id.to_string()
        );
    }
    // Paging and the other filters.
    let paged = json_of(
        get(
            &server,
            &auditor.token,
            &format!("/fhir/AuditEvent?patient={ada}&_count=2"),
        )
        .await,
    )
    .await;
    assert_eq!(paged["entry"].as_array().unwrap().len(), 2);
    assert!(
        paged["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["relation"] == "next")
    );
    let none = json_of(
        get(
            &server,
            &auditor.token,
            &format!("/fhir/AuditEvent?patient={ada}&date=lt2000"),
        )
        .await,
    )
    .await;
    assert!(none["entry"].as_array().unwrap().is_empty());
    let denied = json_of(
        get(
            &server,
            &auditor.token,
            &format!("/fhir/AuditEvent?patient={ada}&outcome=4"),
        )
        .await,
    )
    .await;
    assert!(denied["entry"].as_array().unwrap().is_empty());
    // The log is for reviewers only, and reading it is itself audited.
    assert_eq!(
        get(&server, &doctor.token, &search).await.status(),
        StatusCode::FORBIDDEN
    );
    let ada_self = server.user(Role::Patient, Some(ada)).await;
    assert_eq!(
        get(&server, &ada_self.token, &search).await.status(),
        StatusCode::FORBIDDEN
    );
    let queries = server
        .audit_entries()
        .await
        .into_iter()
        .filter(|e| e.event.action == haven_audit::AuditAction::AuditQuery)
        .count();
    assert!(queries >= 4, "{queries} audit queries recorded");
    assert_eq!(
        get(&server, &auditor.token, "/fhir/AuditEvent?flavour=x")
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    server.stop().await;
}

async fn lab_results_wait_for_review_when_the_organisation_asks(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.user(Role::Administrator, None).await;
    let policy = server
        .client
        .put(server.endpoint("/api/v1/organisation"))
        .bearer_auth(&admin.token)
        .json(&json!({
            "idle_timeout_secs": 900,
            "absolute_timeout_secs": 43200,
            "patient_mfa_required": false,
            "result_release": "after_review",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(policy.status(), StatusCode::OK);
    let policy: Value = policy.json().await.unwrap();
    assert_eq!(policy["result_release"], "after_review");

    let ada = server.create_patient("Lovelace").await;
    let doctor = clinician_for(&server, ada).await;
    let ada_self = server.user(Role::Patient, Some(ada)).await;
    let mut glucose = heart_rate(ada, 104, "2024-06-01");
    glucose["category"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]);
    glucose["code"] = json!({"coding": [{"system": "http://loinc.org", "code": "2345-7"}]});
    let lab = json_of(post(&server, &doctor.token, "/fhir/Observation", &glucose).await).await;
    let vital = json_of(
        post(
            &server,
            &doctor.token,
            "/fhir/Observation",
            &heart_rate(ada, 70, "2024-06-01"),
        )
        .await,
    )
    .await;
    let lab_path = format!("/fhir/Observation/{}", lab["id"].as_str().unwrap());

    // Held: the care team sees it, the patient does not yet.
    assert_eq!(
        get(&server, &doctor.token, &lab_path).await.status(),
        StatusCode::OK
    );
    let held = get(&server, &ada_self.token, &lab_path).await;
    assert_eq!(held.status(), StatusCode::FORBIDDEN);
    assert!(issue(held).await.2.contains("result_not_released"));
    // The refusal is what the audit log records: denied, and why.
    let entries = server.audit_entries().await;
    let refused = &entries.last().expect("an audit entry").event;
    assert_eq!(
        (
            refused.action,
            refused.outcome,
            refused.reason.as_str(),
            refused.resource_id.as_deref(),
            refused.patient,
        ),
        (
            haven_audit::AuditAction::Read,
            haven_audit::Outcome::Denied,
            "result_not_released",
            lab["id"].as_str(),
            Some(ada),
        )
    );
    assert_eq!(
        ids_found(&server, &ada_self.token, "/fhir/Observation").await,
        vec![vital["id"].as_str().unwrap().to_owned()]
    );
    let everything = json_of(
        get(
            &server,
            &ada_self.token,
            &format!("/fhir/Patient/{ada}/$everything"),
        )
        .await,
    )
    .await;
    assert_eq!(everything["total"], 2, "the patient and the vital sign");

    // Released by the care team, not by anyone else.
    let release = format!("{lab_path}/$release");
    let nurse = server.user(Role::Nurse, None).await;
    assert_eq!(
        send(
            &server,
            reqwest::Method::POST,
            &nurse.token,
            &release,
            None,
            &[]
        )
        .await
        .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(
            &server,
            reqwest::Method::POST,
            &ada_self.token,
            &release,
            None,
            &[]
        )
        .await
        .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(
            &server,
            reqwest::Method::POST,
            &doctor.token,
            &release,
            None,
            &[]
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        get(&server, &ada_self.token, &lab_path).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        ids_found(&server, &ada_self.token, "/fhir/Observation")
            .await
            .len(),
        2
    );
    // GET never releases.
    assert_eq!(
        get(&server, &doctor.token, &release).await.status(),
        StatusCode::NOT_FOUND
    );

    // A changed result is reviewed again.
    let current = json_of(get(&server, &doctor.token, &lab_path).await).await;
    assert_eq!(
        send(
            &server,
            reqwest::Method::PUT,
            &doctor.token,
            &lab_path,
            Some(&current),
            &[]
        )
        .await
        .status(),
        StatusCode::OK
    );
    assert_eq!(
        get(&server, &ada_self.token, &lab_path).await.status(),
        StatusCode::FORBIDDEN
    );
    server.stop().await;
}

/// A patient's request to correct `focus`, as the patient portal sends it.
fn amendment_request(patient: PatientId, focus: &str, wanted: &str) -> Value {
    let mut request = haven_fhir::examples::example("Task", &patient.to_string()).unwrap();
    request["focus"] = json!({"reference": focus});
    request["input"][0]["valueString"] = json!(wanted);
    request.as_object_mut().unwrap().remove("requester");
    request
}

fn denial(reason: &str) -> Value {
    json!({"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": reason}]})
}

async fn a_patient_asks_for_a_correction_and_the_care_team_answers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let bob = server.create_patient("Babbage").await;
    let doctor = clinician_for(&server, ada).await;
    let stranger = server.user(Role::Clinician, None).await;
    let ada_self = server.user(Role::Patient, Some(ada)).await;
    let bob_self = server.user(Role::Patient, Some(bob)).await;
    let pulse = json_of(
        post(
            &server,
            &doctor.token,
            "/fhir/Observation",
            &heart_rate(ada, 130, "2024-03-15"),
        )
        .await,
    )
    .await;
    let pulse_ref = format!("Observation/{}", pulse["id"].as_str().unwrap());
    let pulse_path = format!("/fhir/{pulse_ref}");

    // Ada asks; the server records when and by whom.
    let asked = post(
        &server,
        &ada_self.token,
        "/fhir/Task",
        &amendment_request(ada, &pulse_ref, "It was 80, not 130."),
    )
    .await;
    assert_eq!(asked.status(), StatusCode::CREATED);
    let request = json_of(asked).await;
    assert_eq!(request["status"], "requested");
    assert_eq!(request["requester"]["reference"], format!("Patient/{ada}"));
    assert!(request["authoredOn"].is_string());
    let task_path = format!("/fhir/Task/{}", request["id"].as_str().unwrap());

    // Requests that are not Ada's to make, or not about her record, change nothing.
    let bob_pulse = json_of(
        post(
            &server,
            &clinician_for(&server, bob).await.token,
            "/fhir/Observation",
            &heart_rate(bob, 60, "2024-03-15"),
        )
        .await,
    )
    .await;
    let bob_ref = format!("Observation/{}", bob_pulse["id"].as_str().unwrap());
    let not_hers = post(
        &server,
        &ada_self.token,
        "/fhir/Task",
        &amendment_request(ada, &bob_ref, "x"),
    )
    .await;
    assert_eq!(not_hers.status(), StatusCode::BAD_REQUEST);
    assert_eq!(issue(not_hers).await.1, "Task.focus.reference");
    let for_bob = post(
        &server,
        &ada_self.token,
        "/fhir/Task",
        &amendment_request(bob, &bob_ref, "x"),
    )
    .await;
    assert_eq!(for_bob.status(), StatusCode::FORBIDDEN);
    let mut answered = amendment_request(ada, &pulse_ref, "x");
    answered["status"] = json!("completed");
    let answered = post(&server, &ada_self.token, "/fhir/Task", &answered).await;
    assert_eq!(answered.status(), StatusCode::BAD_REQUEST);
    assert_eq!(issue(answered).await.1, "Task.status");
    let mut not_a_change = amendment_request(ada, &pulse_ref, "x");
    not_a_change["code"]["coding"][0]["code"] = json!("fulfill");
    let not_a_change = post(&server, &ada_self.token, "/fhir/Task", &not_a_change).await;
    assert_eq!(issue(not_a_change).await.1, "Task.code");
    let mut in_doctors_name = amendment_request(ada, &pulse_ref, "x");
    in_doctors_name["requester"] = json!({"reference": "Practitioner/dr-1"});
    let in_doctors_name = post(&server, &ada_self.token, "/fhir/Task", &in_doctors_name).await;
    assert_eq!(issue(in_doctors_name).await.1, "Task.requester");
    assert_eq!(
        ids_found(
            &server,
            &ada_self.token,
            &format!("/fhir/Task?patient={ada}")
        )
        .await,
        vec![request["id"].as_str().unwrap().to_owned()]
    );

    // Only someone who may change the record answers; the request is never edited or removed.
    let mut corrected = pulse.clone();
    corrected["valueQuantity"]["value"] = json!(80);
    let accept = format!("{task_path}/$accept");
    for (who, expected) in [
        (&ada_self, StatusCode::FORBIDDEN),
        (&bob_self, StatusCode::FORBIDDEN),
        (&stranger, StatusCode::FORBIDDEN),
    ] {
        assert_eq!(
            post(&server, &who.token, &accept, &corrected)
                .await
                .status(),
            expected
        );
    }
    let edited = send(
        &server,
        reqwest::Method::PUT,
        &doctor.token,
        &task_path,
        Some(&request),
        &[],
    )
    .await;
    assert_eq!(edited.status(), StatusCode::CONFLICT);
    let removed = send(
        &server,
        reqwest::Method::DELETE,
        &doctor.token,
        &task_path,
        None,
        &[],
    )
    .await;
    assert_eq!(removed.status(), StatusCode::CONFLICT);
    let mut elsewhere = corrected.clone();
    elsewhere["id"] = bob_pulse["id"].clone();
    let elsewhere = post(&server, &doctor.token, &accept, &elsewhere).await;
    assert_eq!(elsewhere.status(), StatusCode::BAD_REQUEST);
    assert_eq!(issue(elsewhere).await.1, "Observation.id");
    assert_eq!(
        json_of(get(&server, &doctor.token, &pulse_path).await).await["meta"]["versionId"],
        "1",
        "nothing was changed by the refused answers"
    );

    // Accepted: the record's next version, linked from the answered request.
    let accepted = post(&server, &doctor.token, &accept, &corrected).await;
    assert_eq!(accepted.status(), StatusCode::OK);
    let accepted = json_of(accepted).await;
    assert_eq!(accepted["status"], "completed");
    assert_eq!(
        accepted["output"][0]["valueReference"]["reference"],
        format!("{pulse_ref}/_history/2")
    );
    let amended = json_of(get(&server, &ada_self.token, &pulse_path).await).await;
    assert_eq!(amended["valueQuantity"]["value"], 80);
    assert_eq!(amended["meta"]["versionId"], "2");
    let again = post(&server, &doctor.token, &accept, &corrected).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);

    // Denied: the reason stays with the record, for Ada to read.
    let second = json_of(
        post(
            &server,
            &ada_self.token,
            "/fhir/Task",
            &amendment_request(ada, &pulse_ref, "The reading was taken at home."),
        )
        .await,
    )
    .await;
    let deny = format!("/fhir/Task/{}/$deny", second["id"].as_str().unwrap());
    let empty = post(&server, &doctor.token, &deny, &denial("  ")).await;
    assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
    let malformed = post(
        &server,
        &doctor.token,
        &deny,
        &json!({"resourceType": "Parameters", "parameter": [{"name": "why", "valueString": "x"}]}),
    )
    .await;
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        post(&server, &ada_self.token, &deny, &denial("no"))
            .await
            .status(),
        StatusCode::FORBIDDEN,
        "a patient does not answer their own request"
    );
    let denied = post(
        &server,
        &doctor.token,
        &deny,
        &denial("The reading was taken in clinic on our monitor."),
    )
    .await;
    assert_eq!(denied.status(), StatusCode::OK);
    let about_pulse = json_of(
        get(
            &server,
            &ada_self.token,
            &format!("/fhir/Task?focus={pulse_ref}&_sort=authored-on"),
        )
        .await,
    )
    .await;
    let answers: Vec<(&str, &str)> = about_pulse["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["resource"]["status"].as_str().unwrap(),
                e["resource"]["statusReason"]["text"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        answers,
        vec![
            ("completed", ""),
            (
                "rejected",
                "The reading was taken in clinic on our monitor."
            ),
        ]
    );
    // The request's history keeps what was asked as well as the answer.
    let history =
        json_of(get(&server, &ada_self.token, &format!("{task_path}/_history")).await).await;
    let statuses: Vec<&str> = history["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["completed", "requested"]);

    // Every answer was audited as a change to Ada's chart.
    let auditor = server.user(Role::Auditor, None).await;
    let updates = json_of(
        get(
            &server,
            &auditor.token,
            &format!(
                "/fhir/AuditEvent?patient=Patient/{ada}&subtype=update&outcome=0&agent={}",
                doctor.id
            ),
        )
        .await,
    )
    .await;
    let updated: Vec<String> = updates["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let what = &e["resource"]["entity"][1]["what"]["identifier"];
            format!(
                "{}/{}",
                what["system"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches("urn:haven:"),
                what["value"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(updated.iter().any(|r| r.starts_with("Task/")), "{updates}");
    assert!(updated.iter().any(|r| r == &pulse_ref), "{updates}");
    // The CapabilityStatement offers both answers.
    let metadata: Value = server
        .client
        .get(server.endpoint("/fhir/metadata"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task = metadata["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Task")
        .unwrap();
    let operations: Vec<&str> = task["operation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(operations, vec!["accept", "deny"]);
    let interactions: Vec<&str> = task["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert!(!interactions.contains(&"update") && !interactions.contains(&"delete"));

    // A body that is no JSON, or too large, and a session that has expired, change nothing.
    let third = json_of(
        post(
            &server,
            &ada_self.token,
            "/fhir/Task",
            &amendment_request(ada, &pulse_ref, "Please check the unit."),
        )
        .await,
    )
    .await;
    let third_path = format!("/fhir/Task/{}", third["id"].as_str().unwrap());
    for operation in ["$accept", "$deny"] {
        let path = format!("{third_path}/{operation}");
        let malformed = server
            .client
            .post(server.endpoint(&path))
            .bearer_auth(&doctor.token)
            .header("content-type", FHIR)
            .body("{\"resourceType\": ")
            .send()
            .await
            .unwrap();
        assert_eq!(malformed.status(), StatusCode::BAD_REQUEST, "{operation}");
        let oversized = server
            .client
            .post(server.endpoint(&path))
            .bearer_auth(&doctor.token)
            .header("content-type", FHIR)
            .body(vec![b' '; 2 * 1024 * 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(
            oversized.status(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "{operation}"
        );
    }
    server
        .clock
        .advance(std::time::Duration::from_secs(16 * 60));
    let expired = [
        post(
            &server,
            &doctor.token,
            &format!("{third_path}/$accept"),
            &corrected,
        )
        .await,
        post(
            &server,
            &doctor.token,
            &format!("{third_path}/$deny"),
            &denial("no"),
        )
        .await,
        get(
            &server,
            &ada_self.token,
            &format!("/fhir/Patient/{ada}/$export"),
        )
        .await,
    ];
    for response in expired {
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let ada_token = server.patient_token(ada).await;
    let unanswered = json_of(get(&server, &ada_token, &third_path).await).await;
    assert_eq!(unanswered["status"], "requested");
    assert_eq!(unanswered["meta"]["versionId"], "1");
    server.stop().await;
}

/// Sends the start of an upload of `declared` bytes, `sent` of them, then hangs up: what a
/// client that loses its connection leaves behind.
async fn interrupted_upload(server: &TestServer, token: &str, patient: PatientId, sent: usize) {
    use tokio::io::AsyncWriteExt;
    let address = server.endpoint("").trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(address.trim_end_matches('/'))
        .await
        .unwrap();
    let head = format!(
        "POST /fhir/Binary HTTP/1.1\r\nhost: haven\r\nauthorization: Bearer {token}\r\n\
         content-type: text/plain\r\nx-security-context: Patient/{patient}\r\n\
         content-length: {}\r\n\r\n",
        sent * 4
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b'a'; sent]).await.unwrap();
    stream.flush().await.unwrap();
    // Give the server time to take what was sent before the connection drops.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(stream);
}

/// Every file under `dir`, read whole.
fn files_under(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(std::fs::read(&path).unwrap());
        }
    }
    found
}

async fn attachments_kept_as_files_stay_sealed(backend: Backend) {
    let files = tempfile::tempdir().unwrap();
    let dir = files.path().join("attachments");
    let server =
        TestServer::start_with(backend, &[("HAVEN_ATTACHMENTS_DIR", dir.to_str().unwrap())]).await;
    let ada = server.create_patient("Lovelace").await;
    let doctor = clinician_for(&server, ada).await;
    let marker = "Zq7Wfilemarker";
    let transcript = format!("{marker} said the patient. ").repeat(40_000);
    let uploaded = upload(
        &server,
        &doctor.token,
        &format!("Patient/{ada}"),
        "text/plain",
        transcript.clone().into_bytes(),
    )
    .await;
    assert_eq!(uploaded.status(), StatusCode::CREATED);
    let id = json_of(uploaded).await["id"].as_str().unwrap().to_owned();
    let downloaded = get(&server, &doctor.token, &format!("/fhir/Binary/{id}")).await;
    assert_eq!(downloaded.status(), StatusCode::OK);
    assert_eq!(downloaded.bytes().await.unwrap(), transcript.as_bytes());
    // The chunks are files, sealed: the marker is in none of them, and none is in the
    // database.
    let chunks = files_under(&dir);
    assert!(chunks.len() >= 4, "{} chunk files", chunks.len());
    for chunk in &chunks {
        assert!(
            !chunk.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "plaintext in a chunk file"
        );
    }
    let in_database = server
        .app()
        .store()
        .chunked_attachments(None, uuid::Uuid::max(), 10)
        .await
        .unwrap();
    assert!(in_database.is_empty(), "{in_database:?}");
    // Another patient's file is as out of reach as ever.
    let stranger = server.user(Role::Clinician, None).await;
    assert_eq!(
        get(&server, &stranger.token, &format!("/fhir/Binary/{id}"))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    server.stop().await;
}

async fn unfinished_uploads_are_swept_wherever_chunks_are_kept(backend: Backend) {
    let files = tempfile::tempdir().unwrap();
    let dir = files.path().join("attachments");
    for settings in [
        vec![],
        vec![("HAVEN_ATTACHMENTS_DIR", dir.to_str().unwrap())],
    ] {
        let server = TestServer::start_with(backend, &settings).await;
        let ada = server.create_patient("Lovelace").await;
        let doctor = clinician_for(&server, ada).await;
        let whole = "kept ".repeat(100_000).into_bytes();
        let uploaded = upload(
            &server,
            &doctor.token,
            &format!("Patient/{ada}"),
            "text/plain",
            whole.clone(),
        )
        .await;
        assert_eq!(uploaded.status(), StatusCode::CREATED);
        let id = json_of(uploaded).await["id"].as_str().unwrap().to_owned();
        // More than one chunk's worth arrives, then the client is gone.
        interrupted_upload(&server, &doctor.token, ada, 600 * 1024).await;
        // A recent upload may still be under way: it is left alone.
        assert_eq!(
            server.app().sweep_orphan_chunks(&mut None).await.unwrap(),
            0
        );
        server
            .clock
            .advance(std::time::Duration::from_secs(25 * 3600));
        let mut removed = 0;
        for _ in 0..50 {
            removed = server.app().sweep_orphan_chunks(&mut None).await.unwrap();
            if removed > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(
            removed, 2,
            "the two whole chunks the interrupted upload stored"
        );
        // Nothing else was touched, and a second sweep finds nothing.
        assert_eq!(
            server.app().sweep_orphan_chunks(&mut None).await.unwrap(),
            0
        );
        // A day later the finished file is whole: Ada downloads it with a fresh token.
        let ada_token = server.patient_token(ada).await;
        let downloaded = get(&server, &ada_token, &format!("/fhir/Binary/{id}")).await;
        assert_eq!(downloaded.status(), StatusCode::OK);
        assert_eq!(downloaded.bytes().await.unwrap(), whole);
        server.stop().await;
    }
}
