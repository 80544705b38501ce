//! Care relationships over HTTP: the care team opens a patient's record to its members, a
//! directory search shows strangers only enough to identify them, break-the-glass opens a
//! stranger's record for a limited time with the privacy officer alerted and reviewing,
//! a locked account leaves its owner a notice, and a proxy (parent, guardian, caregiver)
//! sees what a delegation grants until it ends. On SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use haven_audit::{AuditAction, Outcome};
use haven_domain::{PatientId, Role};
use haven_test_support::{Backend, TEST_PASSWORD, TestServer, TestUser};
use reqwest::StatusCode;
use serde_json::{Value, json};

haven_test_support::on_every_backend!(
    the_care_team_opens_the_record_and_leaving_it_closes_it,
    a_directory_search_shows_strangers_only_their_name_and_birth_date,
    a_clinician_lists_their_own_patients,
    break_the_glass_opens_a_strangers_record_for_a_while_and_is_reviewed,
    break_the_glass_refuses_bad_requests_and_changes_nothing,
    care_endpoints_refuse_ended_sessions,
    a_locked_account_leaves_its_owner_a_notice,
    a_proxy_sees_what_the_delegation_allows_until_it_is_revoked,
    delegation_offers_refuse_bad_requests_and_lapse,
);

async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn the_care_team_opens_the_record_and_leaving_it_closes_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let record = format!("/api/v1/patients/{ada}");
    let team = format!("/api/v1/patients/{ada}/care-team");
    let desk = server.user(Role::FrontDesk, None).await;
    let nurse = server.user(Role::Nurse, None).await;

    let refused = server.get_as(&nurse.token, &record).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("no_care_relationship"),
        "the refusal says why, so the client can offer break-the-glass"
    );

    // The front desk keeps the team; the nurse may not add themself.
    let member = format!("{team}/{}", nurse.id);
    assert_eq!(
        server.put_as(&nurse.token, &member).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        server.put_as(&desk.token, &member).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        server.put_as(&desk.token, &member).await.status(),
        StatusCode::OK,
        "adding a member again changes nothing"
    );
    assert_eq!(
        server.get_as(&nurse.token, &record).await.status(),
        StatusCode::OK
    );
    let listed: Value = server
        .get_as(&nurse.token, &team)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["members"][0]["user"], nurse.id.to_string());
    assert_eq!(listed["members"][0]["role"], "nurse");

    // The patient sees who is on their team; another patient does not.
    let patient = server.user(Role::Patient, Some(ada)).await;
    let own: Value = server
        .get_as(&patient.token, &team)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(own["members"].as_array().unwrap().len(), 1);
    let bob = server.create_patient("Babbage").await;
    let stranger = server.user(Role::Patient, Some(bob)).await;
    assert_eq!(
        server.get_as(&stranger.token, &team).await.status(),
        StatusCode::FORBIDDEN
    );

    // Only clinicians and nurses of the organisation join; ids must be ids.
    for (who, status) in [
        (desk.id.to_string(), StatusCode::UNPROCESSABLE_ENTITY),
        (
            PatientId::generate().to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("not-an-id".to_owned(), StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(
            server
                .put_as(&desk.token, &format!("{team}/{who}"))
                .await
                .status(),
            status,
            "{who}"
        );
    }
    assert_eq!(
        server
            .put_as(
                &desk.token,
                &format!(
                    "/api/v1/patients/{}/care-team/{}",
                    PatientId::generate(),
                    nurse.id
                )
            )
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.app().store().care_team(ada).await.unwrap().len(),
        1,
        "refused changes changed nothing"
    );

    // Leaving the team closes the record at once.
    assert_eq!(
        server.delete_as(&desk.token, &member).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server.delete_as(&desk.token, &member).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.get_as(&nurse.token, &record).await.status(),
        StatusCode::FORBIDDEN
    );

    // Every change to the team is in the patient's audit trail, by whom.
    let changes: Vec<(String, String)> = server
        .audit_entries()
        .await
        .into_iter()
        .filter(|e| {
            e.event.resource_type.as_deref() == Some("CareTeam")
                && e.event.outcome == Outcome::Allowed
                && e.event.action != AuditAction::Read
        })
        .map(|e| (e.event.action.as_str().to_owned(), e.event.actor.unwrap()))
        .collect();
    assert_eq!(
        changes,
        [
            ("update".to_owned(), desk.id.to_string()),
            ("update".to_owned(), desk.id.to_string()),
            ("update".to_owned(), desk.id.to_string()),
            ("update".to_owned(), desk.id.to_string()),
            ("delete".to_owned(), desk.id.to_string()),
            ("delete".to_owned(), desk.id.to_string()),
        ],
        "each attempt the policy allowed is recorded, including those then refused as invalid"
    );
}

async fn a_directory_search_shows_strangers_only_their_name_and_birth_date(backend: Backend) {
    let server = TestServer::start(backend).await;
    for phone in ["+33 1 11 11 11 11", "+33 2 22 22 22 22"] {
        let created = server
            .post_as(
                Some(&server.admin_token),
                "/api/v1/patients",
                json!({
                    "name": { "family": "Curie", "given": ["Marie"] },
                    "birth_date": "1967-11-07",
                    "identifiers": [{ "system": "urn:mrn", "value": format!("MRN-{}", PatientId::generate()) }],
                    "contacts": [{ "kind": "phone", "value": phone }],
                }),
            )
            .await;
        assert_eq!(created.status(), StatusCode::CREATED);
    }
    let found: Value = server
        .get_as(&server.admin_token, "/api/v1/patients?family=Curie")
        .await
        .json()
        .await
        .unwrap();
    let ours: PatientId = found["items"][0]["id"].as_str().unwrap().parse().unwrap();
    let ours_phone = found["items"][0]["contacts"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let strangers_phone = found["items"][1]["contacts"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let clinician = server.user(Role::Clinician, None).await;
    server.add_to_care_team(ours, clinician.id).await;

    let seen: Value = server
        .get_as(&clinician.token, "/api/v1/patients?family=Curie")
        .await
        .json()
        .await
        .unwrap();
    let items = seen["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{seen:#}");
    for item in items {
        assert_eq!(item["name"]["family"], "Curie");
        assert_eq!(item["birth_date"], "1967-11-07");
        if item["id"] == ours.to_string() {
            assert_eq!(item["contacts"][0]["value"], ours_phone.as_str());
            assert!(item.get("masked").is_none(), "{item:#}");
        } else {
            assert!(item.get("contacts").is_none(), "{item:#}");
            assert!(item.get("identifiers").is_none(), "{item:#}");
            assert_eq!(item["masked"], json!(["identifiers", "contacts"]));
        }
    }
    assert!(
        !seen.to_string().contains(&strangers_phone),
        "the stranger's telephone number is nowhere in the answer"
    );
    // The search is audited per patient, each with the rule that let it show what it did.
    let rules: Vec<String> = server
        .audit_entries()
        .await
        .into_iter()
        .filter(|e| {
            e.event.actor.as_deref() == Some(&clinician.id.to_string())
                && e.event.action == AuditAction::Search
        })
        .map(|e| e.event.reason)
        .collect();
    let mut sorted = rules.clone();
    sorted.sort();
    assert_eq!(sorted, ["care_team", "patient_lookup"], "{rules:?}");
}

/// Proves the user again (password and TOTP), as a sensitive action needs.
async fn step_up(server: &TestServer, user: &TestUser) {
    let stepped = server
        .post_as(
            Some(&user.token),
            "/api/v1/auth/step-up",
            json!({ "password": TEST_PASSWORD, "code": server.totp_code(user) }),
        )
        .await;
    assert_eq!(stepped.status(), StatusCode::NO_CONTENT);
}

async fn break_the_glass_opens_a_strangers_record_for_a_while_and_is_reviewed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let record = format!("/api/v1/patients/{ada}");
    let clinician = server.user(Role::Clinician, None).await;
    let officer = server.user(Role::PrivacyOfficer, None).await;
    let auditor = server.user(Role::Auditor, None).await;
    let admin = server.user(Role::Administrator, None).await;
    // A short grant, so that its end comes within one session.
    let policy = server
        .client
        .put(server.endpoint("/api/v1/organisation"))
        .bearer_auth(&admin.token)
        .json(&json!({
            "idle_timeout_secs": 900,
            "absolute_timeout_secs": 43200,
            "patient_mfa_required": false,
            "break_glass_secs": 600,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(policy.status(), StatusCode::OK);
    assert_eq!(
        policy.json::<Value>().await.unwrap()["break_glass_secs"],
        600
    );

    let refused = server.get_as(&clinician.token, &record).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    // The refusal names the policy's reason, so a client can offer break-the-glass.
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["reason"], "no_care_relationship");

    // Minutes after signing in, the clinician must prove who they are again.
    server.clock.advance(Duration::from_secs(6 * 60));
    let reason = "Found unconscious in the emergency department; need allergies";
    let glass_path = format!("/api/v1/patients/{ada}/break-glass");
    let stale = server
        .post_as(
            Some(&clinician.token),
            &glass_path,
            json!({ "reason": reason }),
        )
        .await;
    assert_eq!(stale.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(stale).await, "step_up_required");
    step_up(&server, &clinician).await;
    let broken = server
        .post_as(
            Some(&clinician.token),
            &glass_path,
            json!({ "reason": reason }),
        )
        .await;
    assert_eq!(broken.status(), StatusCode::CREATED);
    let broken: Value = broken.json().await.unwrap();
    let glass = broken["id"].as_str().unwrap().to_owned();

    // The record is open, as emergency treatment.
    let read = server.get_as(&clinician.token, &record).await;
    assert_eq!(read.status(), StatusCode::OK);
    let entries = server.audit_entries().await;
    let mine: Vec<_> = entries
        .iter()
        .filter(|e| e.event.actor.as_deref() == Some(&clinician.id.to_string()))
        .filter(|e| e.event.patient == Some(ada))
        .map(|e| {
            (
                e.event.action,
                e.event.outcome,
                e.event.reason.clone(),
                e.event.purpose_of_use.clone(),
            )
        })
        .collect();
    assert_eq!(
        mine,
        [
            (
                AuditAction::Read,
                Outcome::Denied,
                "no_care_relationship".to_owned(),
                None
            ),
            (
                AuditAction::BreakGlass,
                Outcome::Allowed,
                "break_glass".to_owned(),
                Some("ETREAT".to_owned())
            ),
            (
                AuditAction::Read,
                Outcome::Allowed,
                "break_glass".to_owned(),
                Some("ETREAT".to_owned())
            ),
        ]
    );
    assert!(
        entries
            .iter()
            .all(|e| !format!("{:?}", e.event).contains("unconscious")),
        "the reason is sealed, never in the audit trail"
    );

    // The patient sees the emergency access in their access log.
    let patient = server.user(Role::Patient, Some(ada)).await;
    let log: Value = server
        .get_as(
            &patient.token,
            &format!("/api/v1/patients/{ada}/access-log"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "break_glass" && e["purpose_of_use"] == "ETREAT"),
        "{log:#}"
    );

    // The privacy officer was alerted and finds it in the queue, with the reason.
    let notices: Value = server
        .get_as(&officer.token, "/api/v1/notifications")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(notices["unread"], 1);
    assert_eq!(notices["items"][0]["kind"], "break_glass_review");
    assert_eq!(notices["items"][0]["subject"], glass);
    let clinicians_notices: Value = server
        .get_as(&clinician.token, "/api/v1/notifications")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(clinicians_notices["unread"], 0);
    for reviewer in [&officer, &auditor] {
        let queue: Value = server
            .get_as(&reviewer.token, "/api/v1/break-glass")
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(queue["items"][0]["id"], glass, "{queue:#}");
        assert_eq!(queue["items"][0]["reason"], reason);
        assert_eq!(queue["items"][0]["user"], clinician.id.to_string());
        assert_eq!(queue["items"][0]["review_state"], "pending");
    }
    let review_path = format!("/api/v1/break-glass/{glass}/review");
    let verdict =
        json!({ "outcome": "unjustified", "note": "Patient was not in the emergency department" });
    for outsider in [&auditor, &clinician] {
        assert_eq!(
            server
                .post_as(Some(&outsider.token), &review_path, verdict.clone())
                .await
                .status(),
            StatusCode::FORBIDDEN
        );
    }
    let bad = server
        .post_as(
            Some(&officer.token),
            &review_path,
            json!({ "outcome": "pending" }),
        )
        .await;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let reviewed = server
        .post_as(Some(&officer.token), &review_path, verdict.clone())
        .await;
    assert_eq!(reviewed.status(), StatusCode::OK);
    let reviewed: Value = reviewed.json().await.unwrap();
    assert_eq!(reviewed["review_state"], "unjustified");
    assert_eq!(reviewed["reviewed_by"], officer.id.to_string());
    assert_eq!(
        reviewed["review_note"],
        "Patient was not in the emergency department"
    );
    let again = server
        .post_as(
            Some(&officer.token),
            &review_path,
            json!({ "outcome": "justified" }),
        )
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let pending: Value = server
        .get_as(&officer.token, "/api/v1/break-glass")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        pending["items"].as_array().unwrap().is_empty(),
        "{pending:#}"
    );
    let all: Value = server
        .get_as(&officer.token, "/api/v1/break-glass?state=all")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["items"][0]["review_state"], "unjustified");
    let notices: Value = server
        .get_as(&officer.token, "/api/v1/notifications")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        notices["unread"], 0,
        "a reviewed access needs nobody any more"
    );

    // When the grant ends, the record closes again.
    server.clock.advance(Duration::from_secs(5 * 60));
    assert_eq!(
        server.get_as(&clinician.token, &record).await.status(),
        StatusCode::OK
    );
    server.clock.advance(Duration::from_secs(5 * 60));
    let closed = server.get_as(&clinician.token, &record).await;
    assert_eq!(closed.status(), StatusCode::FORBIDDEN);
}

async fn break_the_glass_refuses_bad_requests_and_changes_nothing(backend: Backend) {
    let server = TestServer::start_with(backend, &[("HAVEN_BODY_BYTES_MAX", "4096")]).await;
    let ada = server.create_patient("Lovelace").await;
    let glass_path = format!("/api/v1/patients/{ada}/break-glass");
    let clinician = server.user(Role::Clinician, None).await;
    let patient = server.user(Role::Patient, Some(ada)).await;
    let front_desk = server.user(Role::FrontDesk, None).await;
    let reason = json!({ "reason": "Cardiac arrest in the car park" });

    for (body, status) in [
        (json!({ "reason": "ER" }), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({ "reason": "x".repeat(1001) }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "reason": "Bell\u{7} character in it" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({}), StatusCode::BAD_REQUEST),
        (json!({ "reason": 7 }), StatusCode::BAD_REQUEST),
        (
            json!({ "reason": "Cardiac arrest in the car park", "extra": true }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "reason": "y".repeat(5000) }),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let answer = server
            .post_as(Some(&clinician.token), &glass_path, body.clone())
            .await;
        assert_eq!(answer.status(), status, "{body}");
    }
    let not_json = server
        .client
        .post(server.endpoint(&glass_path))
        .bearer_auth(&clinician.token)
        .header("content-type", "application/json")
        .body("{ reason: ")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    // Not theirs to break: a patient (even for their own record), the front desk, a token.
    let token = server.token(Role::Clinician, 1).await;
    for caller in [&patient.token, &front_desk.token, &token] {
        assert_eq!(
            server
                .post_as(Some(caller), &glass_path, reason.clone())
                .await
                .status(),
            StatusCode::FORBIDDEN
        );
    }
    // An unknown patient, and a malformed id.
    assert_eq!(
        server
            .post_as(
                Some(&clinician.token),
                &format!("/api/v1/patients/{}/break-glass", PatientId::generate()),
                reason.clone()
            )
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server
            .post_as(
                Some(&clinician.token),
                "/api/v1/patients/nope/break-glass",
                reason
            )
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert!(
        server
            .app()
            .store()
            .relations(clinician.id, &[ada], i64::MAX - 1)
            .await
            .unwrap()
            .is_empty()
            && server
                .audit_entries()
                .await
                .iter()
                .all(|e| !(e.event.action == AuditAction::BreakGlass
                    && e.event.outcome == Outcome::Allowed)),
        "nothing was granted"
    );
    let queue_refused = server
        .get_as(&clinician.token, "/api/v1/break-glass?state=maybe")
        .await;
    assert_eq!(queue_refused.status(), StatusCode::BAD_REQUEST);
}

async fn care_endpoints_refuse_ended_sessions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let clinician = server.user(Role::Clinician, None).await;
    let officer = server.user(Role::PrivacyOfficer, None).await;
    // Past the idle time-out (15 minutes by default): every session has ended.
    server.clock.advance(Duration::from_secs(16 * 60));
    let requests = [
        (
            clinician.token.clone(),
            "GET",
            format!("/api/v1/patients/{ada}/care-team"),
        ),
        (
            clinician.token.clone(),
            "PUT",
            format!("/api/v1/patients/{ada}/care-team/{}", clinician.id),
        ),
        (
            clinician.token.clone(),
            "DELETE",
            format!("/api/v1/patients/{ada}/care-team/{}", clinician.id),
        ),
        (
            clinician.token.clone(),
            "POST",
            format!("/api/v1/patients/{ada}/break-glass"),
        ),
        (
            officer.token.clone(),
            "GET",
            "/api/v1/break-glass".to_owned(),
        ),
        (
            officer.token.clone(),
            "POST",
            format!("/api/v1/break-glass/{}/review", PatientId::generate()),
        ),
        (
            officer.token.clone(),
            "GET",
            "/api/v1/notifications".to_owned(),
        ),
        (
            officer.token.clone(),
            "POST",
            format!("/api/v1/notifications/{}/read", PatientId::generate()),
        ),
    ];
    for (token, method, path) in requests {
        let answer = server
            .client
            .request(method.parse().unwrap(), server.endpoint(&path))
            .bearer_auth(&token)
            .json(&json!({ "reason": "Cardiac arrest in the car park", "outcome": "justified" }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
}

async fn a_locked_account_leaves_its_owner_a_notice(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let patient = server.user(Role::Patient, Some(ada)).await;
    for _ in 0..haven_app::identity::LOCKOUT_FAILURES {
        let wrong = server
            .post_as(
                None,
                "/api/v1/auth/sign-in",
                json!({ "login": patient.login, "password": "not the password at all", "transport": "bearer" }),
            )
            .await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    let notices: Value = server
        .get_as(&patient.token, "/api/v1/notifications")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(notices["unread"], 1, "{notices:#}");
    assert_eq!(notices["items"][0]["kind"], "account_locked");
    let id = notices["items"][0]["id"].as_str().unwrap().to_owned();
    let read_path = format!("/api/v1/notifications/{id}/read");
    // Someone else cannot mark it; its owner can, once.
    let other = server
        .user(Role::Patient, Some(server.create_patient("Babbage").await))
        .await;
    assert_eq!(
        server
            .post_as(Some(&other.token), &read_path, json!({}))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server
            .post_as(Some(&patient.token), &read_path, json!({}))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server
            .post_as(Some(&patient.token), &read_path, json!({}))
            .await
            .status(),
        StatusCode::NO_CONTENT,
        "marking a read notice read again is harmless"
    );
    let notices: Value = server
        .get_as(&patient.token, "/api/v1/notifications")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(notices["unread"], 0);
    assert_eq!(
        server
            .post_as(
                Some(&patient.token),
                "/api/v1/notifications/nope/read",
                json!({})
            )
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
}

async fn offer(
    server: &TestServer,
    token: &str,
    patient: PatientId,
    body: Value,
) -> reqwest::Response {
    server
        .post_as(
            Some(token),
            &format!("/api/v1/patients/{patient}/delegations"),
            body,
        )
        .await
}

async fn a_proxy_sees_what_the_delegation_allows_until_it_is_revoked(backend: Backend) {
    let server = TestServer::start(backend).await;
    let child = server.create_patient("Lovelace").await;
    let record = format!("/api/v1/patients/{child}");
    let log = format!("/api/v1/patients/{child}/access-log");
    let desk = server.user(Role::FrontDesk, None).await;
    let teen = server.user(Role::Patient, Some(child)).await;
    // The parent has an account of their own, with no record: a proxy's.
    let parent = server.user(Role::Patient, None).await;
    assert_eq!(
        server.get_as(&parent.token, &record).await.status(),
        StatusCode::FORBIDDEN
    );

    // The front desk, having seen the parent's papers, offers them the record, not the log.
    let offered = offer(
        &server,
        &desk.token,
        child,
        json!({ "relationship": "parent", "scopes": ["record"], "days": 30 }),
    )
    .await;
    assert_eq!(offered.status(), StatusCode::CREATED);
    let offered: Value = offered.json().await.unwrap();
    let link = offered["offer"].as_str().unwrap().to_owned();
    assert!(link.starts_with("hvp_"));
    let stored = server
        .app()
        .store()
        .patient_delegations(child, i64::MAX - 1)
        .await
        .unwrap();
    assert!(
        stored.iter().all(|d| d.offer_hash != link.as_bytes()),
        "only the link's hash is kept"
    );

    // The patient cannot take their own offer; the parent can, once.
    let accept = |token: String| {
        let server = &server;
        let link = link.clone();
        async move {
            server
                .post_as(
                    Some(&token),
                    "/api/v1/delegations/accept",
                    json!({ "offer": link }),
                )
                .await
        }
    };
    assert_eq!(
        accept(teen.token.clone()).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let accepted = accept(parent.token.clone()).await;
    assert_eq!(accepted.status(), StatusCode::OK);
    let accepted: Value = accepted.json().await.unwrap();
    assert_eq!(accepted["state"], "active");
    assert_eq!(accepted["proxy"], parent.id.to_string());
    let other = server.user(Role::Patient, None).await;
    assert_eq!(
        accept(other.token.clone()).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // The parent sees the record, as the child's proxy, and not the access log.
    let me: Value = server
        .get_as(&parent.token, "/api/v1/me")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["acting_for"][0]["patient"], child.to_string());
    assert_eq!(me["acting_for"][0]["scopes"], json!(["record"]));
    assert_eq!(
        server.get_as(&parent.token, &record).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        server.get_as(&parent.token, &log).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        server.get_as(&other.token, &record).await.status(),
        StatusCode::FORBIDDEN,
        "someone who used a spent link has nothing"
    );
    // A proxy cannot pass the access on.
    assert_eq!(
        offer(
            &server,
            &parent.token,
            child,
            json!({ "relationship": "caregiver", "scopes": ["record"] })
        )
        .await
        .status(),
        StatusCode::FORBIDDEN
    );

    // The patient sees the proxy's read in their access log, as a family request.
    let entries: Value = server.get_as(&teen.token, &log).await.json().await.unwrap();
    assert!(
        entries["items"].as_array().unwrap().iter().any(|e| {
            e["actor"] == parent.id.to_string()
                && e["action"] == "read"
                && e["purpose_of_use"] == "FAMRQT"
        }),
        "{entries:#}"
    );
    let listed: Value = server
        .get_as(
            &teen.token,
            &format!("/api/v1/patients/{child}/delegations"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["state"], "active");
    let id = listed["items"][0]["id"].as_str().unwrap().to_owned();

    // The patient revokes it: the next request is refused.
    let revoke = format!("/api/v1/patients/{child}/delegations/{id}");
    let bob = server.create_patient("Babbage").await;
    assert_eq!(
        server
            .client
            .delete(server.endpoint(&format!("/api/v1/patients/{bob}/delegations/{id}")))
            .bearer_auth(&desk.token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND,
        "a delegation is revoked through its own patient only"
    );
    assert_eq!(
        server.delete_as(&teen.token, &revoke).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server.delete_as(&teen.token, &revoke).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.get_as(&parent.token, &record).await.status(),
        StatusCode::FORBIDDEN
    );
    let me: Value = server
        .get_as(&parent.token, "/api/v1/me")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["acting_for"], json!([]));

    // A new delegation that names the access log opens that too.
    let offered: Value = offer(
        &server,
        &teen.token,
        child,
        json!({ "relationship": "parent", "scopes": ["record", "access_log"] }),
    )
    .await
    .json()
    .await
    .unwrap();
    let accepted = server
        .post_as(
            Some(&parent.token),
            "/api/v1/delegations/accept",
            json!({ "offer": offered["offer"] }),
        )
        .await;
    assert_eq!(accepted.status(), StatusCode::OK);
    let seen = server.get_as(&parent.token, &log).await;
    assert_eq!(seen.status(), StatusCode::OK);
    let seen: Value = seen.json().await.unwrap();
    assert_eq!(seen["items"][0]["actor"], parent.id.to_string(), "{seen:#}");
    assert_eq!(seen["items"][0]["purpose_of_use"], "FAMRQT");
}

async fn delegation_offers_refuse_bad_requests_and_lapse(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let bob = server.create_patient("Babbage").await;
    let patient = server.user(Role::Patient, Some(ada)).await;
    let clinician = server.user(Role::Clinician, None).await;
    server.add_to_care_team(ada, clinician.id).await;
    let good =
        json!({ "relationship": "caregiver", "scopes": ["record", "access_log"], "days": 7 });

    for (body, status) in [
        (
            json!({ "relationship": "neighbour", "scopes": ["record"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "relationship": "parent", "scopes": ["records"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "relationship": "parent", "scopes": [] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "relationship": "parent", "scopes": ["record"], "days": 0 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "relationship": "parent", "scopes": ["record"], "days": 4000 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "relationship": "parent", "scopes": vec!["record"; 9] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({ "relationship": "parent" }), StatusCode::BAD_REQUEST),
        (
            json!({ "relationship": "parent", "scopes": "record" }),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        assert_eq!(
            offer(&server, &patient.token, ada, body.clone())
                .await
                .status(),
            status,
            "{body}"
        );
    }
    // Not theirs to give: another patient's record, or a clinician's.
    assert_eq!(
        offer(&server, &patient.token, bob, good.clone())
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        offer(&server, &clinician.token, ada, good.clone())
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert!(
        server
            .app()
            .store()
            .patient_delegations(ada, 0)
            .await
            .unwrap()
            .is_empty(),
        "refused offers left nothing"
    );

    // An offer lapses after three days unaccepted.
    let offered: Value = offer(&server, &patient.token, ada, good.clone())
        .await
        .json()
        .await
        .unwrap();
    let link = offered["offer"].as_str().unwrap().to_owned();
    server
        .clock
        .advance(std::time::Duration::from_secs(73 * 3600));
    // Sessions ended meanwhile: the carer enrols now.
    let carer = server.user(Role::Patient, None).await.token;
    let lapsed = server
        .post_as(
            Some(&carer),
            "/api/v1/delegations/accept",
            json!({ "offer": link }),
        )
        .await;
    assert_eq!(lapsed.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Malformed offers are refused alike; an API token cannot accept one.
    for body in [json!({ "offer": "" }), json!({ "offer": "x".repeat(47) })] {
        assert_eq!(
            server
                .post_as(Some(&carer), "/api/v1/delegations/accept", body)
                .await
                .status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
    let token = server.patient_token(bob).await;
    assert_eq!(
        server
            .post_as(
                Some(&token),
                "/api/v1/delegations/accept",
                json!({ "offer": link })
            )
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
}

/// "My patients": `care_team=me` lists exactly the patients whose care team the caller is
/// on; anything else in that parameter, or a caller without a care team, is refused.
async fn a_clinician_lists_their_own_patients(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ada = server.create_patient("Lovelace").await;
    let bob = server.create_patient("Babbage").await;
    let clinician = server.user(Role::Clinician, None).await;
    let other = server.user(Role::Clinician, None).await;
    server.add_to_care_team(ada, clinician.id).await;
    server.add_to_care_team(bob, other.id).await;

    let mine: Value = server
        .get_as(&clinician.token, "/api/v1/patients?care_team=me")
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![ada.to_string()]);
    assert!(
        mine["items"][0].get("masked").is_none(),
        "their own patient, in full: {mine}"
    );
    let theirs: Value = server
        .get_as(
            &other.token,
            "/api/v1/patients?care_team=me&family=Lovelace",
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["items"], json!([]), "filters combine: {theirs}");

    let wrong = server
        .get_as(&clinician.token, "/api/v1/patients?care_team=you")
        .await;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    let token = server
        .get_as(&server.admin_token, "/api/v1/patients?care_team=me")
        .await;
    assert_eq!(token.status(), StatusCode::UNPROCESSABLE_ENTITY);
    server.stop().await;
}
