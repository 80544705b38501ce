//! Proofs over HTTP, checked the way an outside client checks them: with the log's public
//! key, recomputing each leaf from the entry's fields, never trusting the server's hashes.
//! On SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use haven_app::audit_log::{LogAltered, verify_log};
use haven_audit::checkpoint::CheckpointVerifier;
use haven_audit::merkle::{Hash, verify_consistency, verify_inclusion};
use haven_domain::Role;
use haven_test_support::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

haven_test_support::on_every_backend!(
    a_patient_sees_who_accessed_their_record_with_proofs,
    the_access_log_refuses_others_and_bad_requests,
    reviewers_get_inclusion_proofs_for_any_entry,
    witnesses_get_consistency_proofs_between_checkpoints,
    an_altered_entry_fails_the_clients_check_and_is_named_under_a_sparse_checkpoint,
    a_tree_write_that_fails_leaves_nothing_signed_that_was_not_stored,
);

/// The log's key as a client gets it, over the API.
async fn client_verifier(server: &TestServer, token: &str) -> CheckpointVerifier {
    let vkey = server.get_as(token, "/api/v1/audit/vkey").await;
    assert_eq!(vkey.status(), StatusCode::OK);
    CheckpointVerifier::parse_vkey(vkey.text().await.unwrap().trim()).unwrap()
}

fn hash(value: &Value) -> Hash {
    STANDARD
        .decode(value.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

/// The leaf hash recomputed from an entry's fields as served.
fn leaf_of(entry: &Value) -> Hash {
    let text = |name: &str| entry[name].as_str();
    haven_audit::leaf_hash_of_fields(
        entry["seq"].as_u64().unwrap(),
        entry["at_ms"].as_i64().unwrap(),
        &haven_audit::ENTRY_FIELD_NAMES.map(text),
    )
}

/// Checks an entry's proof against a checkpoint as a client would; returns whether it holds.
fn client_checks(verifier: &CheckpointVerifier, checkpoint: &Value, entry: &Value) -> bool {
    let signed = verifier
        .verify(checkpoint["note"].as_str().unwrap())
        .unwrap();
    let proof = &entry["proof"];
    let path: Vec<Hash> = proof["path"].as_array().unwrap().iter().map(hash).collect();
    verify_inclusion(
        &leaf_of(entry),
        proof["leaf_index"].as_u64().unwrap(),
        signed.size,
        &path,
        &signed.root,
    )
}

async fn a_patient_sees_who_accessed_their_record_with_proofs(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let bob = server.create_patient("Babbage").await;
    let clinician = server.user(Role::Clinician, None).await;
    for id in [ada, bob] {
        server.add_to_care_team(id, clinician.id).await;
    }
    let clinician = clinician.token;
    for id in [ada, bob] {
        let read = server
            .get_as(&clinician, &format!("/api/v1/patients/{id}"))
            .await;
        assert_eq!(read.status(), StatusCode::OK);
    }
    server.app().checkpoint_now().await.unwrap();

    let patient = server.patient_token(ada).await;
    let me: Value = server
        .get_as(&patient, "/api/v1/me")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "patient");
    assert_eq!(me["patient"], ada.to_string());

    // The patient reads their own record...
    let own = server
        .get_as(&patient, &format!("/api/v1/patients/{ada}"))
        .await;
    assert_eq!(own.status(), StatusCode::OK);
    // ...and their access log.
    let path = format!("/api/v1/patients/{ada}/access-log");
    let log = server.get_as(&patient, &path).await;
    assert_eq!(log.status(), StatusCode::OK);
    let log: Value = log.json().await.unwrap();
    let items = log["items"].as_array().unwrap();
    // Newest first: this very read of the log (recorded before it was answered), the
    // patient's read of their record, the issue of their token, the clinician's read, the
    // clinician joining the care team, the registration. The first three are newer than the
    // checkpoint and have no proof yet.
    let who: Vec<(&str, &str)> = items
        .iter()
        .map(|e| (e["role"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        who,
        [
            ("patient", "audit_query"),
            ("patient", "read"),
            ("patient", "privilege_change"),
            ("clinician", "read"),
            ("administrator", "update"),
            ("administrator", "create")
        ],
        "{log:#}"
    );
    assert!(items.iter().all(|e| e["patient"] == ada.to_string()));
    // And why, as HL7 purpose-of-use codes: the patient's own request, care, registration
    // (keeping the care team is patient administration too).
    let purposes: Vec<&str> = items
        .iter()
        .map(|e| e["purpose_of_use"].as_str().unwrap())
        .collect();
    assert_eq!(
        purposes,
        [
            "PATRQT",
            "PATRQT",
            "HSYSADMIN",
            "TREAT",
            "PATADMIN",
            "PATADMIN"
        ],
        "{log:#}"
    );
    assert!(items[..3].iter().all(|e| e["proof"].is_null()), "{log:#}");
    let verifier = client_verifier(&server, &patient).await;
    for entry in &items[3..] {
        assert!(
            client_checks(&verifier, &log["checkpoint"], entry),
            "{entry:#}"
        );
    }

    // After the next checkpoint every earlier entry carries a proof.
    server.app().checkpoint_now().await.unwrap();
    let log: Value = server.get_as(&patient, &path).await.json().await.unwrap();
    let items = log["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 7);
    assert!(items[0]["proof"].is_null());
    assert!(
        items[1..]
            .iter()
            .all(|e| client_checks(&verifier, &log["checkpoint"], e))
    );

    // Pages continue where the last one ended, however much the log grew meanwhile.
    let first: Value = server
        .get_as(&patient, &format!("{path}?limit=2"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["items"][1]["seq"], items[0]["seq"]);
    let next = first["next"].as_str().unwrap();
    let second: Value = server.get_as(&patient, next).await.json().await.unwrap();
    let seqs = |page: &Value| -> Vec<i64> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(
        seqs(&second),
        [
            items[1]["seq"].as_i64().unwrap(),
            items[2]["seq"].as_i64().unwrap()
        ]
    );
}

async fn the_access_log_refuses_others_and_bad_requests(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let bob = server.create_patient("Babbage").await;
    let patient = server.patient_token(ada).await;
    let denied_before = denied_count(&server).await;

    // Another patient's log, or their record: refused and recorded as denied.
    for path in [
        format!("/api/v1/patients/{bob}/access-log"),
        format!("/api/v1/patients/{bob}"),
    ] {
        let refused = server.get_as(&patient, &path).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path}");
        let body: Value = refused.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not_their_record"),
            "{body}"
        );
    }
    // Staff who are not reviewers do not read a patient's access log.
    for role in [Role::Clinician, Role::FrontDesk, Role::Administrator] {
        let token = server.token(role, 1).await;
        let refused = server
            .get_as(&token, &format!("/api/v1/patients/{ada}/access-log"))
            .await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{role}");
    }
    assert_eq!(denied_count(&server).await, denied_before + 5);
    // A reviewer may.
    let auditor = server.token(Role::Auditor, 1).await;
    let allowed = server
        .get_as(&auditor, &format!("/api/v1/patients/{ada}/access-log"))
        .await;
    assert_eq!(allowed.status(), StatusCode::OK);

    // Malformed id, bad paging, unknown parameters, no or expired credentials.
    for (path, status) in [
        (
            "/api/v1/patients/not-an-id/access-log".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/v1/patients/{ada}/access-log?limit=0"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("/api/v1/patients/{ada}/access-log?limit=101"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("/api/v1/patients/{ada}/access-log?before=0"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("/api/v1/patients/{ada}/access-log?offset=10"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/v1/patients/{ada}/access-log?limit=ten"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/v1/patients/{ada}/access-log?sort=at"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let answer = server.get_as(&patient, &path).await;
        assert_eq!(answer.status(), status, "{path}");
    }
    let anonymous = server
        .client
        .get(server.endpoint(&format!("/api/v1/patients/{ada}/access-log")))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    server.clock.advance(Duration::from_secs(25 * 3600));
    let expired = server
        .get_as(&patient, &format!("/api/v1/patients/{ada}/access-log"))
        .await;
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
}

async fn denied_count(server: &TestServer) -> usize {
    server
        .app()
        .store()
        .audit_events(0, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event.outcome == haven_audit::Outcome::Denied)
        .count()
}

/// Every entry under the checkpoint of `size` (at least `at_least` of them), each with the
/// inclusion proof a reviewer gets for it, checked as a client checks it. Answers the log's
/// key as the client got it, and each entry with its proof in place and the checkpoint it
/// holds against.
async fn proofs_of_covered_entries(
    server: &TestServer,
    auditor: &str,
    size: u64,
    at_least: usize,
) -> (CheckpointVerifier, Vec<(Value, Value)>) {
    let verifier = client_verifier(server, auditor).await;
    let report: Value = server
        .get_as(auditor, "/api/v1/audit/events?limit=1000")
        .await
        .json()
        .await
        .unwrap();
    let covered: Vec<Value> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .take(size as usize)
        .cloned()
        .collect();
    assert!(
        covered.len() >= at_least,
        "{} entries covered",
        covered.len()
    );
    let mut proven = Vec::with_capacity(covered.len());
    for mut entry in covered {
        let seq = entry["seq"].as_i64().unwrap();
        let answer = server
            .get_as(
                auditor,
                &format!("/api/v1/audit/proofs/inclusion?seq={seq}&size={size}"),
            )
            .await;
        assert_eq!(answer.status(), StatusCode::OK, "the proof of entry {seq}");
        let answer: Value = answer.json().await.unwrap();
        entry["proof"] = answer["proof"].clone();
        assert!(
            client_checks(&verifier, &answer["checkpoint"], &entry),
            "{answer:#}"
        );
        proven.push((entry, answer["checkpoint"].clone()));
    }
    (verifier, proven)
}

async fn reviewers_get_inclusion_proofs_for_any_entry(backend: Backend) {
    let server = TestServer::start(backend).await;
    for n in 0..5 {
        server.create_patient(&format!("Proof{n}")).await;
    }
    server.app().checkpoint_now().await.unwrap();
    let auditor = server.token(Role::Auditor, 1).await;
    let checkpoint = server
        .app()
        .store()
        .latest_checkpoint()
        .await
        .unwrap()
        .unwrap();
    let (verifier, proven) = proofs_of_covered_entries(&server, &auditor, checkpoint.size, 6).await;
    for (mut entry, checkpoint) in proven {
        // The proof is for this entry and no other.
        entry["reason"] = json!("something else");
        assert!(!client_checks(&verifier, &checkpoint, &entry));
    }

    // Entries not yet under the checkpoint, unknown entries, unknown checkpoints.
    let newest = server.app().store().audit_events(0, 1000).await.unwrap();
    let newest = newest.last().unwrap().seq;
    for (query, status) in [
        (
            format!("seq={newest}&size={}", checkpoint.size),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("seq=999999".to_owned(), StatusCode::NOT_FOUND),
        ("seq=1&size=999999".to_owned(), StatusCode::NOT_FOUND),
        ("seq=x".to_owned(), StatusCode::BAD_REQUEST),
        (String::new(), StatusCode::BAD_REQUEST),
    ] {
        let answer = server
            .get_as(&auditor, &format!("/api/v1/audit/proofs/inclusion?{query}"))
            .await;
        assert_eq!(answer.status(), status, "{query}");
    }
    // Only reviewers, and each request is recorded.
    for role in [Role::Clinician, Role::Administrator] {
        let token = server.token(role, 1).await;
        let refused = server
            .get_as(&token, "/api/v1/audit/proofs/inclusion?seq=1")
            .await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }
    let patient = server
        .patient_token(server.create_patient("Nosy").await)
        .await;
    let refused = server
        .get_as(&patient, "/api/v1/audit/proofs/inclusion?seq=1")
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

async fn witnesses_get_consistency_proofs_between_checkpoints(backend: Backend) {
    let server = TestServer::start(backend).await;
    for n in 0..7 {
        server.create_patient(&format!("Witness{n}")).await;
        server.app().checkpoint_now().await.unwrap();
    }
    let witness = server.token(Role::Auditor, 1).await;
    let verifier = client_verifier(&server, &witness).await;
    let page: Value = server
        .get_as(&witness, "/api/v1/audit/checkpoints")
        .await
        .json()
        .await
        .unwrap();
    let kept: Vec<(u64, Hash)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let signed = verifier.verify(c["note"].as_str().unwrap()).unwrap();
            (signed.size, signed.root)
        })
        .collect();
    assert!(kept.len() >= 7);
    for (i, &(first, first_root)) in kept.iter().enumerate() {
        for &(second, second_root) in &kept[i..] {
            let answer = server
                .get_as(
                    &witness,
                    &format!("/api/v1/audit/proofs/consistency?first={first}&second={second}"),
                )
                .await;
            assert_eq!(answer.status(), StatusCode::OK);
            let answer: Value = answer.json().await.unwrap();
            let path: Vec<Hash> = answer["path"]
                .as_array()
                .unwrap()
                .iter()
                .map(hash)
                .collect();
            assert!(
                verify_consistency(first, second, &first_root, &second_root, &path),
                "{first} → {second}"
            );
        }
    }
    // The latest checkpoint is the default second tree.
    let (last, last_root) = *kept.last().unwrap();
    let answer: Value = server
        .get_as(&witness, "/api/v1/audit/proofs/consistency?first=1")
        .await
        .json()
        .await
        .unwrap();
    // The checkpointer may have signed a newer one since the list was read: the answer
    // names its second tree, signed, and the proof leads there.
    let second = verifier
        .verify(answer["second"]["note"].as_str().unwrap())
        .unwrap();
    assert!(second.size >= last, "{} < {last}", second.size);
    if second.size == last {
        assert_eq!(second.root, last_root);
    }
    let path: Vec<Hash> = answer["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(hash)
        .collect();
    assert!(verify_consistency(1, second.size, &kept[0].1, &second.root, &path) || kept[0].0 != 1);

    for (query, status) in [
        ("first=0".to_owned(), StatusCode::UNPROCESSABLE_ENTITY),
        (
            format!("first={}", last + 1),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("first=1&second=999999".to_owned(), StatusCode::NOT_FOUND),
        ("first=-1".to_owned(), StatusCode::BAD_REQUEST),
        ("first=1&extra=1".to_owned(), StatusCode::BAD_REQUEST),
    ] {
        let answer = server
            .get_as(
                &witness,
                &format!("/api/v1/audit/proofs/consistency?{query}"),
            )
            .await;
        assert_eq!(answer.status(), status, "{query}");
    }
    let clinician = server.token(Role::Clinician, 1).await;
    let refused = server
        .get_as(&clinician, "/api/v1/audit/proofs/consistency?first=1")
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

/// Many entries under one checkpoint: an altered entry's proof fails on the client, and
/// verification names the one entry rather than the whole range.
async fn an_altered_entry_fails_the_clients_check_and_is_named_under_a_sparse_checkpoint(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let clinician = server.user(Role::Clinician, None).await;
    server.add_to_care_team(ada, clinician.id).await;
    let clinician = clinician.token;
    for _ in 0..30 {
        let read = server
            .get_as(&clinician, &format!("/api/v1/patients/{ada}"))
            .await;
        assert_eq!(read.status(), StatusCode::OK);
    }
    server.app().checkpoint_now().await.unwrap();
    let size = server
        .app()
        .store()
        .latest_checkpoint()
        .await
        .unwrap()
        .unwrap()
        .size;
    assert!(size > 30);

    // Someone with database access makes one of the clinician's reads look like a
    // front-desk one.
    let entries = server.app().store().audit_events(0, 1000).await.unwrap();
    let target = &entries[20];
    let unguard: &[&str] = match server.backend {
        Backend::Sqlite => &["DROP TRIGGER audit_events_no_update"],
        Backend::Postgres => &["DROP TRIGGER audit_events_no_change ON audit_events"],
    };
    assert_eq!(target.event.role.as_deref(), Some("clinician"));
    let change = server.rewrite_audit_entry_sql(target.seq, "clinician", "front_desk");
    server
        .execute_raw(&[unguard, &[change.as_str()]].concat())
        .await;

    let patient = server.patient_token(ada).await;
    let verifier = client_verifier(&server, &patient).await;
    let log: Value = server
        .get_as(
            &patient,
            &format!("/api/v1/patients/{ada}/access-log?limit=100"),
        )
        .await
        .json()
        .await
        .unwrap();
    for entry in log["items"].as_array().unwrap() {
        if entry["proof"].is_null() {
            continue;
        }
        let holds = client_checks(&verifier, &log["checkpoint"], entry);
        assert_eq!(holds, entry["seq"] != target.seq, "{entry:#}");
    }

    let result = verify_log(
        &**server.app().store(),
        server.app().audit_verifier(),
        &mut |_| {},
    )
    .await
    .unwrap();
    // Named by its position and seq, under the first checkpoint that covers it: the one
    // signed at the end, or one the background checkpointer signed while the reads ran.
    match result {
        Err(LogAltered::EntryAltered {
            position: 21,
            seq,
            size: under,
        }) if seq == target.seq => assert!(under > 21 && under <= size, "{under} of {size}"),
        other => panic!("the altered entry was not named: {other:?}"),
    }
}

/// The checkpointer stores the tree's new leaves and nodes before it signs over them. When
/// that write fails (here: its table is taken away for a while), nothing is signed, and
/// the next checkpoint covers every entry with a proof that holds: the failed write left
/// no gap between the tree the checkpointer signs and the tree the proofs are read from.
async fn a_tree_write_that_fails_leaves_nothing_signed_that_was_not_stored(backend: Backend) {
    let server = TestServer::start(backend).await;
    for n in 0..3 {
        server.create_patient(&format!("Before{n}")).await;
    }
    server.app().checkpoint_now().await.unwrap();

    server
        .execute_raw(&["ALTER TABLE audit_tree_nodes RENAME TO audit_tree_nodes_away"])
        .await;
    for n in 0..5 {
        server.create_patient(&format!("During{n}")).await;
    }
    assert!(server.app().checkpoint_now().await.is_err());
    server
        .execute_raw(&["ALTER TABLE audit_tree_nodes_away RENAME TO audit_tree_nodes"])
        .await;
    for n in 0..3 {
        server.create_patient(&format!("After{n}")).await;
    }
    // Ours, or the background checkpointer's if it came first: either covers everything.
    server.app().checkpoint_now().await.unwrap();
    let checkpoint = server
        .app()
        .store()
        .latest_checkpoint()
        .await
        .unwrap()
        .unwrap();

    let auditor = server.token(Role::Auditor, 1).await;
    proofs_of_covered_entries(&server, &auditor, checkpoint.size, 12).await;
    let verified = verify_log(
        &**server.app().store(),
        server.app().audit_verifier(),
        &mut |_| {},
    )
    .await
    .unwrap();
    assert!(verified.is_ok(), "{verified:?}");
}
