//! API tests against a real server, each run on the embedded SQLite store and on
//! PostgreSQL. They check what a client would notice: status codes, error codes, headers,
//! that bad input changes nothing, that every access is audited, and that nothing readable
//! reaches the database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use haven_domain::Role;
use haven_test_support::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

haven_test_support::on_every_backend!(
    creates_reads_updates_and_searches_patients,
    bad_input_gets_a_clear_error_and_changes_nothing,
    oversized_bodies_are_refused,
    callers_must_be_authenticated_and_permitted,
    unknown_and_malformed_ids_are_told_apart,
    concurrent_edits_are_never_silently_lost,
    every_access_is_audited_before_data_is_returned,
    access_is_refused_when_the_audit_log_cannot_record_it,
    planted_markers_never_reach_the_database,
    shredded_patients_can_never_be_read_again,
    responses_carry_security_headers_and_json_errors,
);

fn ada(marker: &str) -> Value {
    json!({
        "name": { "family": format!("Lovelace{marker}"), "given": ["Ada"] },
        "birth_date": "1990-12-10",
        "identifiers": [{ "system": "urn:haven:mrn", "value": format!("MRN-{marker}") }],
        "contacts": [{ "kind": "email", "value": "ada@example.org" }]
    })
}

async fn post(server: &TestServer, token: &str, body: &Value) -> reqwest::Response {
    server
        .client
        .post(server.endpoint("/api/v1/patients"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn patient_count(server: &TestServer) -> usize {
    let response = server
        .get_as(&server.admin_token, "/api/v1/patients?limit=100")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["items"].as_array().unwrap().len()
}

async fn creates_reads_updates_and_searches_patients(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = &server.admin_token;

    let created = post(&server, token, &ada("A")).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["etag"], "\"1\"");
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = created.json().await.unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/v1/patients/{id}"));
    assert_eq!(body["version"], 1);

    let read: Value = server.get_as(token, &location).await.json().await.unwrap();
    assert_eq!(read["name"]["family"], "LovelaceA");
    assert_eq!(read["birth_date"], "1990-12-10");
    assert_eq!(read["identifiers"][0]["value"], "MRN-A");
    assert_eq!(read["contacts"][0]["value"], "ada@example.org");

    let mut changed = ada("A");
    changed["name"]["family"] = json!("Byron");
    let updated = server
        .client
        .put(server.endpoint(&location))
        .bearer_auth(token)
        .header("if-match", "\"1\"")
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), StatusCode::OK);
    assert_eq!(updated.headers()["etag"], "\"2\"");
    let read: Value = server.get_as(token, &location).await.json().await.unwrap();
    assert_eq!(read["name"]["family"], "Byron");
    assert_eq!(read["version"], 2);

    // Search goes through blind indexes: normalised exact matches on the current version.
    post(&server, token, &ada("B")).await;
    let found: Value = server
        .get_as(token, "/api/v1/patients?family=%20%20BYRON%20")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
    assert_eq!(found["items"][0]["id"], id.as_str());
    let stale: Value = server
        .get_as(token, "/api/v1/patients?family=LovelaceA")
        .await
        .json()
        .await
        .unwrap();
    assert!(stale["items"].as_array().unwrap().is_empty());
    let by_identifier: Value = server
        .get_as(
            token,
            "/api/v1/patients?identifier=urn:haven:mrn%7CMRN-B&birth_date=1990-12-10",
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_identifier["items"].as_array().unwrap().len(), 1);
    assert_eq!(by_identifier["items"][0]["name"]["family"], "LovelaceB");

    // Paging: two patients, one per page, then no further page.
    let first: Value = server
        .get_as(token, "/api/v1/patients?limit=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    let next = first["next"].as_str().unwrap().to_owned();
    let second: Value = server.get_as(token, &next).await.json().await.unwrap();
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_ne!(first["items"][0]["id"], second["items"][0]["id"]);
    let last = second["next"].as_str().unwrap().to_owned();
    let third: Value = server.get_as(token, &last).await.json().await.unwrap();
    assert!(third["items"].as_array().unwrap().is_empty());
    assert!(third["next"].is_null());
    server.stop().await;
}

async fn bad_input_gets_a_clear_error_and_changes_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = &server.admin_token;
    let cases: Vec<(&str, Option<&str>, String, StatusCode, &str)> = vec![
        (
            "malformed JSON",
            Some("application/json"),
            "{\"name\": ".into(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "trailing garbage",
            Some("application/json"),
            format!("{} x", ada("X")),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "unknown field",
            Some("application/json"),
            {
                let mut body = ada("X");
                body["favourite_colour"] = json!("blue");
                body.to_string()
            },
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            "nested unknown field",
            Some("application/json"),
            {
                let mut body = ada("X");
                body["name"]["middle"] = json!("M");
                body.to_string()
            },
            StatusCode::BAD_REQUEST,
            "unknown_field",
        ),
        (
            "wrong type",
            Some("application/json"),
            {
                let mut body = ada("X");
                body["name"]["given"] = json!("Ada");
                body.to_string()
            },
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "missing field",
            Some("application/json"),
            json!({"name": {"family": "X"}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "not JSON",
            Some("text/plain"),
            ada("X").to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "no content type",
            None,
            ada("X").to_string(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "future birth date",
            Some("application/json"),
            {
                let mut body = ada("X");
                body["birth_date"] = json!("2999-01-01");
                body.to_string()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "impossible date",
            Some("application/json"),
            {
                let mut body = ada("X");
                body["birth_date"] = json!("1990-02-30");
                body.to_string()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            "bad e-mail",
            Some("application/json"),
            {
                let mut body = ada("X");
                body["contacts"][0]["value"] = json!("nobody");
                body.to_string()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
    ];
    for (what, content_type, body, status, code) in cases {
        let mut request = server
            .client
            .post(server.endpoint("/api/v1/patients"))
            .bearer_auth(token)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{what}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{what}: {body}");
        assert!(
            !body["error"]["message"].as_str().unwrap().is_empty(),
            "{what}"
        );
    }

    // The same for an update: a bad body leaves the record as it was.
    let created: Value = post(&server, token, &ada("Keep"))
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/api/v1/patients/{}", created["id"].as_str().unwrap());
    let response = server
        .client
        .put(server.endpoint(&path))
        .bearer_auth(token)
        .header("if-match", "\"1\"")
        .header("content-type", "application/json")
        .body("{\"name\": {\"family\": 42}}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let read: Value = server.get_as(token, &path).await.json().await.unwrap();
    assert_eq!(read["version"], 1);
    assert_eq!(read["name"]["family"], "LovelaceKeep");

    // Bad search parameters are refused rather than ignored.
    for query in [
        "limit=0",
        "limit=1000",
        "birth_date=yesterday",
        "identifier=novalue",
        "colour=blue",
        "after=abc",
    ] {
        let response = server
            .get_as(token, &format!("/api/v1/patients?{query}"))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
    }
    assert_eq!(patient_count(&server).await, 1);
    server.stop().await;
}

async fn oversized_bodies_are_refused(backend: Backend) {
    let server = TestServer::start_with(backend, &[("HAVEN_BODY_BYTES_MAX", "2048")]).await;
    let mut body = ada("Big");
    body["name"]["given"] = json!(["x".repeat(4096)]);
    let response = post(&server, &server.admin_token, &body).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(response).await, "body_too_large");
    // Far over the limit, still being sent when Haven refuses it: the client hears the
    // refusal every time, never a reset connection.
    for _ in 0..10 {
        let huge = server
            .client
            .post(server.endpoint("/api/v1/patients"))
            .bearer_auth(&server.admin_token)
            .header("content-type", "application/json")
            .body(vec![b' '; 4 * 1024 * 1024])
            .send()
            .await
            .expect("an answer, not a reset connection");
        assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    // Just under the limit is accepted by the HTTP layer (and then judged on its content).
    let mut body = ada("Fits");
    body["name"]["given"] = json!(["y".repeat(50)]);
    assert_eq!(
        post(&server, &server.admin_token, &body).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(patient_count(&server).await, 1);
    server.stop().await;
}

async fn callers_must_be_authenticated_and_permitted(backend: Backend) {
    let server = TestServer::start(backend).await;
    let created: Value = post(&server, &server.admin_token, &ada("Auth"))
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/api/v1/patients/{}", created["id"].as_str().unwrap());

    let anonymous = server
        .client
        .get(server.endpoint(&path))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert_eq!(error_code(anonymous).await, "unauthenticated");

    let forged = server
        .get_as("hvn_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &path)
        .await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let garbage = server.get_as("not-a-token", &path).await;
    assert_eq!(garbage.status(), StatusCode::UNAUTHORIZED);

    // An expired session: the token outlives nothing past its time-to-live.
    let short = server.token(Role::Administrator, 1).await;
    assert_eq!(server.get_as(&short, &path).await.status(), StatusCode::OK);
    server.clock.advance(Duration::from_secs(2 * 3600));
    let expired = server.get_as(&short, &path).await;
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(expired).await, "token_expired");
    let expired_write = post(&server, &short, &ada("Late")).await;
    assert_eq!(expired_write.status(), StatusCode::UNAUTHORIZED);
    let expired_list = server.get_as(&short, "/api/v1/patients").await;
    assert_eq!(expired_list.status(), StatusCode::UNAUTHORIZED);
    let put_as = |token: String| {
        server
            .client
            .put(server.endpoint(&path))
            .bearer_auth(token)
            .header("if-match", "\"1\"")
            .json(&ada("Changed"))
            .send()
    };
    assert_eq!(
        put_as(short.clone()).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // The wrong user: an auditor has no business in the chart; a nurse may read, not register.
    let auditor = server.token(Role::Auditor, 1).await;
    let denied = server.get_as(&auditor, &path).await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(denied).await, "forbidden");
    assert_eq!(
        server.get_as(&auditor, "/api/v1/patients").await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&server, &auditor, &ada("No")).await.status(),
        StatusCode::FORBIDDEN
    );
    // Clinical staff open only the records of patients they care for: a token is on no
    // care team, and a nurse who is on this patient's may read but not register.
    let nurse_token = server.token(Role::Nurse, 1).await;
    assert_eq!(
        server.get_as(&nurse_token, &path).await.status(),
        StatusCode::FORBIDDEN
    );
    let nurse_user = server.user(Role::Nurse, None).await;
    server
        .add_to_care_team(
            path.rsplit('/').next().unwrap().parse().unwrap(),
            nurse_user.id,
        )
        .await;
    let nurse = nurse_user.token;
    assert_eq!(server.get_as(&nurse, &path).await.status(), StatusCode::OK);
    assert_eq!(
        post(&server, &nurse, &ada("No")).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        put_as(auditor.clone()).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        put_as(nurse.clone()).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(patient_count(&server).await, 1);
    let unchanged: Value = server
        .get_as(&server.admin_token, &path)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        unchanged["version"], 1,
        "denied and expired updates changed nothing"
    );

    // Denials and failed authentications are in the audit trail too.
    let events = server.app().store().audit_events(0, 1000).await.unwrap();
    assert!(events.iter().any(|e| e.event.action.as_str() == "failed_login" && e.event.reason == "token_expired"));
    assert!(events.iter().any(|e| e.event.outcome.as_str() == "denied"
        && e.event.role.as_deref() == Some("auditor")
        && e.event.reason == "role_not_permitted"));
    server.stop().await;
}

async fn unknown_and_malformed_ids_are_told_apart(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = &server.admin_token;
    post(&server, token, &ada("Mine")).await;
    let other_patient = haven_domain::PatientId::generate();
    let missing = server
        .get_as(token, &format!("/api/v1/patients/{other_patient}"))
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(missing).await, "not_found");
    let update = server
        .client
        .put(server.endpoint(&format!("/api/v1/patients/{other_patient}")))
        .bearer_auth(token)
        .header("if-match", "\"1\"")
        .json(&ada("Ghost"))
        .send()
        .await
        .unwrap();
    assert_eq!(update.status(), StatusCode::NOT_FOUND);
    for bad in ["42", "not-a-uuid", "01a209b437a17072bf8cf4e2b6da83cc"] {
        let response = server
            .get_as(token, &format!("/api/v1/patients/{bad}"))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error_code(response).await, "invalid_id");
    }
    assert_eq!(patient_count(&server).await, 1);
    server.stop().await;
}

async fn concurrent_edits_are_never_silently_lost(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = &server.admin_token;
    let created: Value = post(&server, token, &ada("Edit"))
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/api/v1/patients/{}", created["id"].as_str().unwrap());
    let put = |if_match: Option<&'static str>, family: &'static str| {
        let mut body = ada("Edit");
        body["name"]["family"] = json!(family);
        let mut request = server
            .client
            .put(server.endpoint(&path))
            .bearer_auth(token)
            .json(&body);
        if let Some(if_match) = if_match {
            request = request.header("if-match", if_match);
        }
        request.send()
    };
    let missing = put(None, "First").await.unwrap();
    assert_eq!(missing.status(), StatusCode::PRECONDITION_REQUIRED);
    assert_eq!(error_code(missing).await, "precondition_required");
    assert_eq!(
        put(Some("\"1\""), "First").await.unwrap().status(),
        StatusCode::OK
    );
    let stale = put(Some("\"1\""), "Second").await.unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(error_code(stale).await, "version_mismatch");
    let garbled = put(Some("yesterday"), "Third").await.unwrap();
    assert_eq!(garbled.status(), StatusCode::BAD_REQUEST);
    let read: Value = server.get_as(token, &path).await.json().await.unwrap();
    assert_eq!(read["name"]["family"], "First");
    assert_eq!(read["version"], 2);
    server.stop().await;
}

async fn every_access_is_audited_before_data_is_returned(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = &server.admin_token;
    let created = post(&server, token, &ada("Audit")).await;
    let request_id = created.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    server
        .get_as(token, &format!("/api/v1/patients/{id}"))
        .await;
    server
        .get_as(token, "/api/v1/patients?family=LovelaceAudit")
        .await;

    let events = server.app().store().audit_events(0, 1000).await.unwrap();
    let for_patient: Vec<_> = events
        .iter()
        .filter(|e| e.event.patient.map(|p| p.to_string()).as_deref() == Some(id.as_str()))
        .collect();
    let actions: Vec<&str> = for_patient
        .iter()
        .map(|e| e.event.action.as_str())
        .collect();
    assert_eq!(actions, ["create", "read", "search"]);
    assert!(
        for_patient
            .iter()
            .all(|e| e.event.outcome.as_str() == "allowed"
                && e.event.role.as_deref() == Some("administrator")
                && e.event.origin.source_ip.as_deref() == Some("127.0.0.1"))
    );
    assert_eq!(
        for_patient[0].event.origin.request_id.as_deref(),
        Some(request_id.as_str())
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    server.stop().await;
}

/// Makes every further audit append fail, as a full disk or a broken log would.
async fn break_the_audit_log(server: &TestServer) {
    let statements: &[&str] = match server.backend {
        Backend::Sqlite => &[
            // In the audit log's own file, which `execute_raw` attaches as `audit`.
            "CREATE TRIGGER audit.audit_broken BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk full'); END",
        ],
        Backend::Postgres => &[
            "CREATE FUNCTION audit_broken() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk full'; END; $$ LANGUAGE plpgsql",
            "CREATE TRIGGER audit_broken BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_broken()",
        ],
    };
    server.execute_raw(statements).await;
}

async fn access_is_refused_when_the_audit_log_cannot_record_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = &server.admin_token;
    let created: Value = post(&server, token, &ada("Closed"))
        .await
        .json()
        .await
        .unwrap();
    let path = format!("/api/v1/patients/{}", created["id"].as_str().unwrap());
    break_the_audit_log(&server).await;

    let read = server.get_as(token, &path).await;
    assert_eq!(read.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = read.text().await.unwrap();
    assert!(text.contains("audit_unavailable"), "{text}");
    assert!(
        !text.contains("Lovelace"),
        "no health data without an audit entry"
    );
    let search = server
        .get_as(token, "/api/v1/patients?family=LovelaceClosed")
        .await;
    assert_eq!(search.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!search.text().await.unwrap().contains("Lovelace"));
    assert_eq!(
        post(&server, token, &ada("New")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    server.stop().await;
}

async fn planted_markers_never_reach_the_database(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = &server.admin_token;
    let marker = "Zqxj7Marker";
    let body = json!({
        "name": { "family": format!("{marker}Family"), "given": [format!("{marker}Given")] },
        "birth_date": "1977-07-17",
        "identifiers": [{ "system": format!("urn:{marker}:system"), "value": format!("{marker}Ident") }],
        "contacts": [
            { "kind": "email", "value": format!("{marker}@example.org") },
            { "kind": "phone", "value": "+1 555 867 5309" }
        ]
    });
    let mut ids = Vec::new();
    for _ in 0..20 {
        let created: Value = post(&server, token, &body).await.json().await.unwrap();
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    // The control: the marker is really there for an authorised reader.
    let read = server
        .get_as(token, &format!("/api/v1/patients/{}", ids[0]))
        .await
        .text()
        .await
        .unwrap();
    assert!(read.contains(marker));

    let needles = [
        marker.to_owned(),
        marker.to_lowercase(),
        "867 5309".to_owned(),
        "1977-07-17".to_owned(),
    ];
    let haystack = server.raw_database_bytes().await;
    if backend == Backend::Postgres {
        assert!(
            String::from_utf8_lossy(&haystack).contains(&ids[0]),
            "the dump holds the rows"
        );
    }
    let text = String::from_utf8_lossy(&haystack);
    for needle in needles {
        assert!(
            !text.contains(&needle),
            "found `{needle}` in the raw database"
        );
    }
    server.stop().await;
}

async fn shredded_patients_can_never_be_read_again(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = &server.admin_token;
    let kept: Value = post(&server, token, &ada("Kept"))
        .await
        .json()
        .await
        .unwrap();
    let gone: Value = post(&server, token, &ada("Gone"))
        .await
        .json()
        .await
        .unwrap();
    let gone_id: haven_domain::PatientId = gone["id"].as_str().unwrap().parse().unwrap();
    let store = server.app().store().clone();
    let audit = haven_store::TableAuditSink(store.clone());
    let destroyed = haven_app::keys::shred_patient(&*store, &audit, gone_id, 0)
        .await
        .unwrap();
    assert!(destroyed);

    let read = server
        .get_as(token, &format!("/api/v1/patients/{gone_id}"))
        .await;
    assert_eq!(read.status(), StatusCode::GONE);
    assert_eq!(error_code(read).await, "erased");
    let search: Value = server
        .get_as(token, "/api/v1/patients?family=LovelaceGone")
        .await
        .json()
        .await
        .unwrap();
    assert!(search["items"].as_array().unwrap().is_empty());
    let listing: Value = server
        .get_as(token, "/api/v1/patients")
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [kept["id"].as_str().unwrap()]);
    let update = server
        .client
        .put(server.endpoint(&format!("/api/v1/patients/{gone_id}")))
        .bearer_auth(token)
        .header("if-match", "\"1\"")
        .json(&ada("Back"))
        .send()
        .await
        .unwrap();
    assert_eq!(update.status(), StatusCode::GONE);
    server.stop().await;
}

async fn responses_carry_security_headers_and_json_errors(backend: Backend) {
    let server = TestServer::start(backend).await;
    let health = server
        .client
        .get(server.endpoint("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let headers = health.headers();
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers.contains_key("x-request-id"));
    assert!(
        !headers.contains_key("strict-transport-security"),
        "no HSTS over plain HTTP"
    );

    let ready = server
        .client
        .get(server.endpoint("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    // Unknown paths are JSON 404s; the web app's own pages are in
    // `the_web_app_is_served_under_its_policy`.
    for path in ["/api/v1/no/such/thing", "/api", "/fhir/", "/no/such/thing"] {
        let missing = server
            .client
            .get(server.endpoint(path))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(error_code(missing).await, "not_found", "{path}");
    }
    let wrong_method = server
        .client
        .delete(server.endpoint("/api/v1/patients"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(wrong_method).await, "method_not_allowed");
    server.stop().await;
}

/// The web app's page and files: the page for any app path, under the same policy as the
/// API and never cached; the hashed files cached for good; nothing else served as a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_app_is_served_under_its_policy() {
    let server = TestServer::start(Backend::Sqlite).await;
    let get = |path: &str| server.client.get(server.endpoint(path)).send();

    let mut script = None;
    for path in ["/", "/sign-in", "/portal/record", "/portal/forms/intake.v2"] {
        let page = get(path).await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{path}: is web/dist built?");
        let headers = page.headers().clone();
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert_eq!(headers["cache-control"], "no-store");
        let policy = headers["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "object-src 'none'",
            "require-trusted-types-for 'script'",
        ] {
            assert!(policy.contains(directive), "{directive} in {policy}");
        }
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        let html = page.text().await.unwrap();
        assert!(html.contains(r#"<div id="app">"#), "{html}");
        assert!(!html.contains("<script>"), "no inline script: {html}");
        script = html
            .split(r#"src=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(str::to_owned);
    }
    let script = script.expect("the page loads a script");
    assert!(script.starts_with("/assets/"), "{script}");
    let code = get(&script).await.unwrap();
    assert_eq!(code.status(), StatusCode::OK);
    assert_eq!(
        code.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        code.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(code.headers().contains_key("content-security-policy"));
    // The first load's script, as a browser receives it: well under the 200 KB budget.
    let compressed = server
        .client
        .get(server.endpoint(&script))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(compressed.headers()["content-encoding"], "gzip");
    let script_bytes = compressed.bytes().await.unwrap().len();
    assert!(
        script_bytes < 200 * 1024,
        "{script_bytes} bytes of compressed script"
    );

    let icon = get("/favicon.svg").await.unwrap();
    assert_eq!(icon.status(), StatusCode::OK);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");

    // A missing file is a 404, never the page in its place; nothing outside the app's
    // folder is reachable, however the path is spelled.
    for path in [
        "/assets/index-missing.js",
        "/missing.js",
        "/assets/..%2f..%2f..%2fCargo.toml",
        "/assets/..%2findex.html",
        "/..%2fCargo.toml",
    ] {
        let missing = get(path).await.unwrap();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // Pages are read, never written.
    let posted = server
        .client
        .post(server.endpoint("/portal"))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}
