//! The audit log is tamper-evident: changing, removing, inserting or reordering a single
//! stored entry, or changing a search key that reports filter on, makes verification fail
//! and name it, on SQLite and on PostgreSQL; an untouched log verifies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use haven_app::audit_log::{LogAltered, verify_log};
use haven_test_support::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

haven_test_support::on_every_backend!(
    an_untouched_log_verifies,
    a_changed_entry_is_named,
    a_changed_search_key_is_named,
    reports_show_the_signed_entry_whatever_its_sort_columns_say,
    a_removed_entry_is_named,
    an_inserted_entry_is_named,
    reordered_entries_are_named,
    a_removed_tail_is_detected,
    a_forged_checkpoint_is_rejected,
    witnesses_fetch_checkpoints_that_verify_elsewhere,
    reviewers_report_on_the_log_in_json_csv_and_fhir,
    reviewers_verify_the_whole_log_inside_haven,
);

/// Creates patients and reads them, signing a checkpoint after every request so that
/// verification can name single entries. Returns the log's size.
async fn busy_log(server: &TestServer) -> u64 {
    server.app().checkpoint_now().await.unwrap();
    for n in 0..4 {
        let created = server
            .client
            .post(server.endpoint("/api/v1/patients"))
            .bearer_auth(&server.admin_token)
            .json(&json!({
                "name": { "family": format!("Audit{n}") },
                "birth_date": "1970-01-01"
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        server.app().checkpoint_now().await.unwrap();
        let id = created.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let read = server
            .client
            .get(server.endpoint(&format!("/api/v1/patients/{id}")))
            .bearer_auth(&server.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), StatusCode::OK);
        server.app().checkpoint_now().await.unwrap();
    }
    server
        .app()
        .store()
        .audit_events(0, 1000)
        .await
        .unwrap()
        .len() as u64
}

async fn verify(server: &TestServer) -> Result<haven_app::audit_log::Verified, LogAltered> {
    verify_log(
        &**server.app().store(),
        server.app().audit_verifier(),
        &mut |_| {},
    )
    .await
    .unwrap()
}

/// Runs SQL directly on the database, as an attacker with file or DBA access would, after
/// removing the append-only triggers that would otherwise stop them.
async fn tamper(server: &TestServer, statements: &[&str]) {
    let unguard: &[&str] = match server.backend {
        Backend::Sqlite => &[
            "DROP TRIGGER audit_events_no_update",
            "DROP TRIGGER audit_events_no_delete",
        ],
        Backend::Postgres => &["DROP TRIGGER audit_events_no_change ON audit_events"],
    };
    server.execute_raw(&[unguard, statements].concat()).await;
}

fn assert_names(result: Result<haven_app::audit_log::Verified, LogAltered>, position: u64) {
    match result {
        Err(LogAltered::EntryAltered {
            position: named, ..
        }) => {
            assert_eq!(named, position, "names exactly entry {position}");
        }
        other => panic!("expected entry {position} to be named, got {other:?}"),
    }
}

async fn an_untouched_log_verifies(backend: Backend) {
    let server = TestServer::start(backend).await;
    let size = busy_log(&server).await;
    let verified = verify(&server).await.unwrap();
    assert_eq!(verified.entries, size);
    assert!(verified.checkpoints >= 8, "{verified:?}");
    // Signed checkpoints can be checked with the public key alone.
    let latest = server
        .app()
        .store()
        .latest_checkpoint()
        .await
        .unwrap()
        .unwrap();
    let vkey = server.app().audit_verifier().vkey();
    let outsider = haven_audit::checkpoint::CheckpointVerifier::parse_vkey(&vkey).unwrap();
    assert_eq!(outsider.verify(&latest.note).unwrap().size, size);
}

/// The stored reason of entry `seq`.
async fn reason_of(server: &TestServer, seq: i64) -> String {
    let events = server.app().store().audit_events(seq - 1, 1).await.unwrap();
    events[0].event.reason.clone()
}

async fn a_changed_entry_is_named(backend: Backend) {
    let server = TestServer::start(backend).await;
    busy_log(&server).await;
    let reason = reason_of(&server, 4).await;
    let change = server.rewrite_audit_entry_sql(4, &reason, "nothing_to_see");
    tamper(&server, &[&change]).await;
    assert_eq!(reason_of(&server, 4).await, "nothing_to_see");
    assert_names(verify(&server).await, 4);
}

async fn a_changed_search_key_is_named(backend: Backend) {
    let server = TestServer::start(backend).await;
    busy_log(&server).await;
    // The entry still hashes as signed, but a report by actor would no longer find it.
    tamper(
        &server,
        &["UPDATE audit_events SET actor = 'someone-else' WHERE seq = 4"],
    )
    .await;
    assert_eq!(
        verify(&server).await,
        Err(LogAltered::SearchKeysAltered {
            position: 4,
            seq: 4
        })
    );
}

async fn reports_show_the_signed_entry_whatever_its_sort_columns_say(backend: Backend) {
    let server = TestServer::start(backend).await;
    busy_log(&server).await;
    let reason = reason_of(&server, 4).await;
    // A column reports only sort on: the entry shown is still the signed one, and the
    // log still verifies.
    tamper(
        &server,
        &["UPDATE audit_events SET reason = 'nothing_to_see' WHERE seq = 4"],
    )
    .await;
    assert_eq!(reason_of(&server, 4).await, reason);
    verify(&server).await.unwrap();
}

async fn a_removed_entry_is_named(backend: Backend) {
    let server = TestServer::start(backend).await;
    busy_log(&server).await;
    tamper(&server, &["DELETE FROM audit_events WHERE seq = 5"]).await;
    assert_names(verify(&server).await, 5);
}

async fn an_inserted_entry_is_named(backend: Backend) {
    let server = TestServer::start(backend).await;
    busy_log(&server).await;
    // Make room after entry 3 and slip a forged entry in.
    tamper(
        &server,
        &[
            "UPDATE audit_events SET seq = seq + 1000 WHERE seq > 3",
            "UPDATE audit_events SET seq = seq - 999 WHERE seq > 1000",
            // A copy of entry 2, search keys and all.
            "INSERT INTO audit_events (seq, at_ms, actor, action, patient_id, outcome, reason, entry)
             SELECT 4, at_ms, actor, action, patient_id, outcome, reason, entry
             FROM audit_events WHERE seq = 2",
        ],
    )
    .await;
    assert_names(verify(&server).await, 4);
}

async fn reordered_entries_are_named(backend: Backend) {
    let server = TestServer::start(backend).await;
    busy_log(&server).await;
    tamper(
        &server,
        &[
            "UPDATE audit_events SET seq = -1 WHERE seq = 6",
            "UPDATE audit_events SET seq = 6 WHERE seq = 7",
            "UPDATE audit_events SET seq = 7 WHERE seq = -1",
        ],
    )
    .await;
    assert_names(verify(&server).await, 6);
}

async fn a_removed_tail_is_detected(backend: Backend) {
    let server = TestServer::start(backend).await;
    let size = busy_log(&server).await;
    tamper(
        &server,
        &[&format!("DELETE FROM audit_events WHERE seq = {size}")],
    )
    .await;
    assert_eq!(
        verify(&server).await,
        Err(LogAltered::Truncated {
            size,
            entries: size - 1
        })
    );
}

async fn a_forged_checkpoint_is_rejected(backend: Backend) {
    let server = TestServer::start(backend).await;
    busy_log(&server).await;
    // A checkpoint signed by another key, inserted as the next one.
    let impostor = haven_audit::checkpoint::CheckpointSigner::generate("haven/audit").unwrap();
    let size = server
        .app()
        .store()
        .audit_events(0, 1000)
        .await
        .unwrap()
        .len() as u64;
    server
        .client
        .get(server.endpoint("/api/v1/patients"))
        .bearer_auth(&server.admin_token)
        .send()
        .await
        .unwrap();
    let tree_root = [0u8; 32];
    let note = impostor.sign(&haven_audit::checkpoint::Checkpoint {
        origin: "haven/audit".into(),
        size: size + 1,
        root: tree_root,
    });
    server
        .app()
        .store()
        .insert_checkpoint(haven_store::StoredCheckpoint {
            size: size + 1,
            root: tree_root.to_vec(),
            note,
            created_at_ms: 0,
        })
        .await
        .unwrap();
    assert_eq!(
        verify(&server).await,
        Err(LogAltered::BadSignature { size: size + 1 })
    );
}

async fn witnesses_fetch_checkpoints_that_verify_elsewhere(backend: Backend) {
    let server = TestServer::start(backend).await;
    let size = busy_log(&server).await;

    let auditor = server.token(haven_domain::Role::Auditor, 1).await;
    let entries = server
        .app()
        .store()
        .audit_events(0, 1000)
        .await
        .unwrap()
        .len();
    let latest = server
        .client
        .get(server.endpoint("/api/v1/audit/checkpoints/latest"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(latest.status(), StatusCode::OK);
    assert!(
        latest.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let note = latest.text().await.unwrap();
    let outsider = haven_audit::checkpoint::CheckpointVerifier::parse_vkey(
        &server.app().audit_verifier().vkey(),
    )
    .unwrap();
    let signed = outsider.verify(&note).unwrap();
    assert!(signed.size >= size, "{} < {size}", signed.size);

    // Paging through every checkpoint; each one verifies with the public key alone.
    let mut url = server.endpoint("/api/v1/audit/checkpoints?limit=3");
    let mut sizes = Vec::new();
    loop {
        let page: Value = server
            .client
            .get(&url)
            .bearer_auth(&auditor)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for item in page["items"].as_array().unwrap() {
            let checkpoint = outsider.verify(item["note"].as_str().unwrap()).unwrap();
            assert_eq!(item["size"], checkpoint.size);
            sizes.push(checkpoint.size);
        }
        match page["next"].as_str() {
            Some(next) => url = server.endpoint(next),
            None => break,
        }
    }
    assert!(sizes.len() >= 8, "{sizes:?}");
    assert!(sizes.windows(2).all(|w| w[0] < w[1]));

    // Fetching checkpoints adds nothing to the log (no feedback loop with the checkpointer).
    let fetched = server
        .app()
        .store()
        .audit_events(0, 1000)
        .await
        .unwrap()
        .len();
    assert_eq!(fetched, entries);

    // Clinical staff have no business here; the refusal is audited.
    let nurse = server.token(haven_domain::Role::Nurse, 1).await;
    let refused = server
        .client
        .get(server.endpoint("/api/v1/audit/checkpoints"))
        .bearer_auth(&nurse)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let after = server.app().store().audit_events(0, 1000).await.unwrap();
    assert_eq!(
        after.len(),
        entries + 2,
        "the nurse's token issue and the denial"
    );
    assert_eq!(after.last().unwrap().event.action.as_str(), "audit_query");
    assert_eq!(after.last().unwrap().event.outcome.as_str(), "denied");

    for bad in [
        "limit=0",
        "limit=5000",
        "after=-1",
        "after=x",
        "colour=blue",
    ] {
        let response = server
            .client
            .get(server.endpoint(&format!("/api/v1/audit/checkpoints?{bad}")))
            .bearer_auth(&auditor)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let anonymous = server
        .client
        .get(server.endpoint("/api/v1/audit/checkpoints/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

async fn reviewers_report_on_the_log_in_json_csv_and_fhir(backend: Backend) {
    let server = TestServer::start(backend).await;
    busy_log(&server).await;
    let patients: Value = server
        .client
        .get(server.endpoint("/api/v1/patients?family=Audit2"))
        .bearer_auth(&server.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let patient = patients["items"][0]["id"].as_str().unwrap().to_owned();
    let auditor = server.token(haven_domain::Role::Auditor, 1).await;
    let report = |query: String, token: String| {
        let client = server.client.clone();
        let url = server.endpoint(&format!("/api/v1/audit/events?{query}"));
        async move { client.get(url).bearer_auth(token).send().await.unwrap() }
    };

    // Who touched this patient: create, read and the search that found them.
    let json: Value = report(format!("patient={patient}&sort=-seq"), auditor.clone())
        .await
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["search", "read", "create"]);
    assert!(
        json["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["patient"] == patient.as_str())
    );

    // Denials only, oldest first, paged one at a time.
    let nurse = server.token(haven_domain::Role::Nurse, 1).await;
    let refused = report(String::new(), nurse.clone()).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let admin_refused = report(String::new(), server.admin_token.clone()).await;
    assert_eq!(
        admin_refused.status(),
        StatusCode::FORBIDDEN,
        "administrators do not audit"
    );
    let first: Value = report("outcome=denied&limit=1".into(), auditor.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["items"][0]["action"], "audit_query");
    assert_eq!(first["items"][0]["role"], "nurse");
    let second: Value = report(
        first["next"]
            .as_str()
            .unwrap()
            .trim_start_matches("/api/v1/audit/events?")
            .to_owned(),
        auditor.clone(),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(second["items"][0]["role"], "administrator");

    // Every report is itself in the log, before its answer.
    let queries: Value = report("action=audit_query&outcome=allowed".into(), auditor.clone())
        .await
        .json()
        .await
        .unwrap();
    assert!(queries["items"].as_array().unwrap().len() >= 3, "{queries}");

    // CSV: a header and one row per entry.
    let csv = report(format!("patient={patient}&format=csv"), auditor.clone()).await;
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("seq,at,actor,role,organisation,session,client_app,action,patient,")
    );
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[1].contains(",create,") && lines[1].contains(&patient));

    // FHIR: a searchset Bundle of AuditEvents pointing at the patient.
    let fhir = report(format!("patient={patient}&format=fhir"), auditor.clone()).await;
    assert_eq!(fhir.headers()["content-type"], "application/fhir+json");
    let bundle: Value = fhir.json().await.unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    let events = bundle["entry"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    let created = &events[0]["resource"];
    assert_eq!(created["resourceType"], "AuditEvent");
    assert_eq!(created["action"], "C");
    assert_eq!(created["outcome"], "0");
    assert_eq!(
        created["entity"][0]["what"]["reference"],
        format!("Patient/{patient}")
    );
    assert_eq!(created["agent"][0]["requestor"], true);
    // Why: registration is patient administration (HL7 v3 PurposeOfUse).
    assert_eq!(
        created["purposeOfEvent"][0]["coding"][0]["code"],
        "PATADMIN"
    );

    for bad in [
        "sort=shoe_size",
        "from=yesterday",
        "action=peek",
        "outcome=maybe",
        "patient=42",
        "limit=0",
        "format=xml",
        "offset=99999999",
        "colour=blue",
    ] {
        let response = report(bad.to_owned(), auditor.clone()).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let too_long = report(format!("actor={}", "a".repeat(3000)), auditor.clone()).await;
    assert_eq!(too_long.status(), StatusCode::URI_TOO_LONG);

    // An expired session is refused on every audit endpoint.
    server
        .clock
        .advance(std::time::Duration::from_secs(2 * 3600));
    for path in [
        "/api/v1/audit/events",
        "/api/v1/audit/checkpoints",
        "/api/v1/audit/checkpoints/latest",
    ] {
        let expired = server
            .client
            .get(server.endpoint(path))
            .bearer_auth(&auditor)
            .send()
            .await
            .unwrap();
        assert_eq!(expired.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let anonymous = server
        .client
        .get(server.endpoint("/api/v1/audit/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

/// A reviewer asks Haven to verify the whole log: the answer, and the last verification
/// read later, say whether it held; after tampering, the next verification says what broke.
async fn reviewers_verify_the_whole_log_inside_haven(backend: Backend) {
    use haven_domain::Role;
    let server = TestServer::start(backend).await;
    let size = busy_log(&server).await;
    let officer = server.user(Role::PrivacyOfficer, None).await;
    let clinician = server.user(Role::Clinician, None).await;
    let path = "/api/v1/audit/verification";

    let never: Value = server.get_json(&officer.token, path).await;
    assert_eq!(never["last"], Value::Null, "{never}");
    let refused = server
        .post_as(Some(&clinician.token), path, json!({}))
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    server.app().checkpoint_now().await.unwrap();
    let verified = server.post_as(Some(&officer.token), path, json!({})).await;
    assert_eq!(verified.status(), StatusCode::OK);
    let verified: Value = verified.json().await.unwrap();
    assert_eq!(verified["verified"], true, "{verified}");
    assert!(
        verified["detail"]
            .as_str()
            .unwrap()
            .ends_with("checkpoints verified"),
        "{verified}"
    );
    assert!(size > 0);
    let last: Value = server.get_json(&officer.token, path).await;
    assert_eq!(last["last"]["verified"], true, "{last}");
    assert_eq!(last["last"]["at"], verified["at"]);

    // Someone with access to the files changes an entry: the next verification names it.
    let reason = reason_of(&server, 4).await;
    let change = server.rewrite_audit_entry_sql(4, &reason, "nothing_to_see");
    tamper(&server, &[&change]).await;
    let broken: Value = server
        .post_as(Some(&officer.token), path, json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(broken["verified"], false, "{broken}");
    assert!(
        broken["detail"].as_str().unwrap().contains("entry 4"),
        "{broken}"
    );
    let last: Value = server.get_json(&officer.token, path).await;
    assert_eq!(last["last"]["verified"], false, "{last}");

    // A session that has timed out reaches neither.
    server
        .clock
        .advance(std::time::Duration::from_secs(16 * 60));
    assert_eq!(
        server.get_as(&officer.token, path).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        server
            .post_as(Some(&officer.token), path, json!({}))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    server.stop().await;
}
