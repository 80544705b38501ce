//! Identity over HTTP: enrolment by invitation, passwords, TOTP and recovery codes,
//! sessions with idle and absolute time-outs, cookies with CSRF tokens, sign-out, password
//! change and lockout. On SQLite and on PostgreSQL, with a clock the tests move.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use haven_app::identity::totp::code_at_base32;
use haven_domain::Role;
use haven_test_support::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

haven_test_support::on_every_backend!(
    staff_enrol_set_up_totp_and_sign_in_with_it,
    codes_from_an_independent_totp_implementation_are_accepted_once,
    recovery_codes_work_once,
    wrong_passwords_and_unknown_logins_look_alike_and_lock_the_account,
    sessions_end_after_idle_and_absolute_time_outs,
    cookie_sessions_need_the_csrf_token_to_change_anything,
    sign_out_everywhere_and_a_new_password_end_other_sessions,
    invitations_are_single_use_expiring_and_for_administrators,
    a_patient_signs_in_and_sees_only_their_own_record,
    sensitive_actions_need_a_fresh_proof_and_stricter_policies_apply_at_once,
    administrators_list_disable_and_enable_users,
    guessing_the_second_factor_locks_the_account_and_ends_the_pending_session,
    anonymous_passkey_ceremonies_are_throttled_per_address,
    concurrent_wrong_passwords_lock_the_account_after_exactly_five,
    a_patient_who_sets_up_totp_is_asked_for_it,
    key_status_is_for_administrators_in_a_live_session,
);

const PASSWORD: &str = "wandering violet lighthouse";

async fn code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Enrols from a fresh invitation with a bearer session; returns (session token, state).
async fn enrol(server: &TestServer, role: Role, login: &str) -> (String, String) {
    let invitation = server.invite(role, None).await;
    enrol_with(server, &invitation, login).await
}

async fn enrol_with(server: &TestServer, invitation: &str, login: &str) -> (String, String) {
    let enrolled = server.post_as(None,
        "/api/v1/auth/enrol",
        json!({ "invitation": invitation, "login": login, "password": PASSWORD, "transport": "bearer" }),
    )
    .await;
    assert_eq!(enrolled.status(), StatusCode::CREATED);
    let body: Value = enrolled.json().await.unwrap();
    (
        body["token"].as_str().unwrap().to_owned(),
        body["state"].as_str().unwrap().to_owned(),
    )
}

async fn sign_in(server: &TestServer, login: &str, password: &str) -> reqwest::Response {
    server
        .post_as(
            None,
            "/api/v1/auth/sign-in",
            json!({ "login": login, "password": password, "transport": "bearer" }),
        )
        .await
}

fn now_secs(server: &TestServer) -> u64 {
    use haven_app::Clock;
    u64::try_from(server.clock.now_ms() / 1000).unwrap()
}

/// Sets up TOTP for a fresh session; returns the base32 secret and the recovery codes.
async fn set_up_totp(server: &TestServer, token: &str) -> (String, Vec<String>) {
    let setup = server
        .post_as(Some(token), "/api/v1/auth/totp/setup", json!({}))
        .await;
    assert_eq!(setup.status(), StatusCode::OK);
    let setup: Value = setup.json().await.unwrap();
    let secret = setup["secret"].as_str().unwrap().to_owned();
    assert!(
        setup["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/Haven:"),
        "{setup}"
    );
    let wrong = server
        .post_as(
            Some(token),
            "/api/v1/auth/totp/confirm",
            json!({ "code": "000000" }),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let code = code_at_base32(&secret, now_secs(server)).unwrap();
    let confirmed = server
        .post_as(
            Some(token),
            "/api/v1/auth/totp/confirm",
            json!({ "code": code }),
        )
        .await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let confirmed: Value = confirmed.json().await.unwrap();
    let codes = confirmed["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (secret, codes)
}

async fn staff_enrol_set_up_totp_and_sign_in_with_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (token, state) = enrol(&server, Role::Clinician, "grace@north.example").await;
    assert_eq!(state, "mfa_setup_required");
    // Until a second factor is set up the session opens nothing.
    let early = server.get_as(&token, "/api/v1/patients").await;
    assert_eq!(early.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(code(early).await, "mfa_setup_required");

    // Until then it says only where it stands.
    let pending: Value = server
        .get_as(&token, "/api/v1/auth/session")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending["state"], "mfa_setup_required");
    assert!(
        pending.get("role").is_none() && pending.get("user").is_none(),
        "{pending}"
    );

    let (secret, codes) = set_up_totp(&server, &token).await;
    assert_eq!(codes.len(), 10);
    let list = server.get_as(&token, "/api/v1/patients").await;
    assert_eq!(list.status(), StatusCode::OK);
    let me: Value = server
        .get_as(&token, "/api/v1/auth/session")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["state"].as_str(), me["role"].as_str()),
        (Some("complete"), Some("clinician"))
    );

    let out = server
        .post_as(Some(&token), "/api/v1/auth/sign-out", json!({}))
        .await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        server.get_as(&token, "/api/v1/patients").await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Sign in again: the password, then a code; the code used at set-up is spent.
    let signed = sign_in(&server, "Grace@North.Example", PASSWORD).await;
    assert_eq!(signed.status(), StatusCode::OK);
    let signed: Value = signed.json().await.unwrap();
    assert_eq!(signed["state"], "mfa_required");
    let pending = signed["token"].as_str().unwrap().to_owned();
    assert_eq!(
        server.get_as(&pending, "/api/v1/patients").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let replay = code_at_base32(&secret, now_secs(&server)).unwrap();
    let replayed = server
        .post_as(
            Some(&pending),
            "/api/v1/auth/second-factor",
            json!({ "code": replay }),
        )
        .await;
    assert_eq!(
        replayed.status(),
        StatusCode::UNAUTHORIZED,
        "a used code is refused"
    );
    server.clock.advance(Duration::from_secs(30));
    let fresh = code_at_base32(&secret, now_secs(&server)).unwrap();
    let accepted = server
        .post_as(
            Some(&pending),
            "/api/v1/auth/second-factor",
            json!({ "code": fresh }),
        )
        .await;
    assert_eq!(accepted.status(), StatusCode::OK);
    assert_eq!(
        server.get_as(&pending, "/api/v1/patients").await.status(),
        StatusCode::OK
    );
    let again = server
        .post_as(
            Some(&pending),
            "/api/v1/auth/second-factor",
            json!({ "code": fresh }),
        )
        .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);

    // A second set-up is refused; the factor stays.
    let resetup = server
        .post_as(Some(&pending), "/api/v1/auth/totp/setup", json!({}))
        .await;
    assert_eq!(resetup.status(), StatusCode::CONFLICT);

    // Every step is in the audit trail.
    let events = server.app().store().audit_events(0, 1000).await.unwrap();
    let reasons: Vec<&str> = events.iter().map(|e| e.event.reason.as_str()).collect();
    for expected in [
        "invitation_issued",
        "enrolled",
        "password_ok_mfa_setup_pending",
        "totp_code_wrong",
        "totp_enabled",
        "signed_out",
        "password_ok_mfa_pending",
        "second_factor_wrong",
        "signed_in_totp",
    ] {
        assert!(
            reasons.contains(&expected),
            "{expected} missing from {reasons:?}"
        );
    }
    let session_reads = events
        .iter()
        .filter(|e| e.event.action == haven_audit::AuditAction::Search)
        .filter(|e| e.event.session.is_some() && e.event.organisation.is_some())
        .count();
    assert!(
        session_reads >= 1,
        "searches name the session and organisation"
    );
}

/// The code pyotp (an RFC 6238 implementation that is not Haven's) computes for the
/// provisioning URI Haven gave, at `at_secs`. `cargo xtask test` installs pyotp and sets
/// `HAVEN_TEST_PYTHON`; without it this fails rather than skips.
fn pyotp_code(otpauth_uri: &str, at_secs: u64) -> String {
    let python = std::env::var("HAVEN_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = std::process::Command::new(&python)
        .args([
            "-c",
            "import sys, pyotp; print(pyotp.parse_uri(sys.argv[1]).at(int(sys.argv[2])))",
            otpauth_uri,
            &at_secs.to_string(),
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}; run `cargo xtask test`"));
    assert!(
        output.status.success(),
        "pyotp failed (run `cargo xtask test`, which installs it): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

async fn codes_from_an_independent_totp_implementation_are_accepted_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (token, _) = enrol(&server, Role::Clinician, "ines@north.example").await;
    let setup: Value = server
        .post_as(Some(&token), "/api/v1/auth/totp/setup", json!({}))
        .await
        .json()
        .await
        .unwrap();
    let uri = setup["otpauth_uri"].as_str().unwrap().to_owned();
    let code = pyotp_code(&uri, now_secs(&server));
    let confirmed = server
        .post_as(
            Some(&token),
            "/api/v1/auth/totp/confirm",
            json!({ "code": code }),
        )
        .await;
    assert_eq!(confirmed.status(), StatusCode::OK);

    server.clock.advance(Duration::from_secs(60));
    let signed: Value = sign_in(&server, "ines@north.example", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let pending = signed["token"].as_str().unwrap().to_owned();
    let code = pyotp_code(&uri, now_secs(&server));
    let accepted = server
        .post_as(
            Some(&pending),
            "/api/v1/auth/second-factor",
            json!({ "code": code }),
        )
        .await;
    assert_eq!(accepted.status(), StatusCode::OK);

    // The same code, replayed on a new sign-in within its 30 seconds, is refused.
    let again: Value = sign_in(&server, "ines@north.example", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let again = again["token"].as_str().unwrap().to_owned();
    let replayed = server
        .post_as(
            Some(&again),
            "/api/v1/auth/second-factor",
            json!({ "code": code }),
        )
        .await;
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED);
}

async fn recovery_codes_work_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (token, _) = enrol(&server, Role::Nurse, "mary@north.example").await;
    let (_, codes) = set_up_totp(&server, &token).await;
    for attempt in 0..2 {
        let signed: Value = sign_in(&server, "mary@north.example", PASSWORD)
            .await
            .json()
            .await
            .unwrap();
        let pending = signed["token"].as_str().unwrap().to_owned();
        let used = server
            .post_as(
                Some(&pending),
                "/api/v1/auth/second-factor",
                json!({ "code": codes[0] }),
            )
            .await;
        let expected = if attempt == 0 {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(used.status(), expected, "attempt {attempt}");
    }
}

/// A patient enrolled with a bearer session (patients need no second factor by default).
async fn enrol_patient(server: &TestServer, login: &str) -> (haven_domain::PatientId, String) {
    let patient = server.create_patient("Lovelace").await;
    let invitation = server.invite(Role::Patient, Some(patient)).await;
    let (token, state) = enrol_with(server, &invitation, login).await;
    assert_eq!(state, "complete");
    (patient, token)
}

async fn wrong_passwords_and_unknown_logins_look_alike_and_lock_the_account(backend: Backend) {
    let server = TestServer::start(backend).await;
    enrol_patient(&server, "ada@north.example").await;

    let unknown = sign_in(&server, "nobody@north.example", PASSWORD).await;
    let wrong = sign_in(&server, "ada@north.example", "not the password at all").await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let (unknown, wrong) = (unknown.text().await.unwrap(), wrong.text().await.unwrap());
    assert_eq!(unknown, wrong, "the same answer, byte for byte");

    // Four more wrong passwords lock the account: then even the right one is refused, with
    // the same answer.
    for _ in 0..4 {
        let refused = sign_in(&server, "ada@north.example", "not the password at all").await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    let locked = sign_in(&server, "ada@north.example", PASSWORD).await;
    assert_eq!(locked.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(locked.text().await.unwrap(), wrong);
    server.clock.advance(Duration::from_secs(61));
    let unlocked = sign_in(&server, "ada@north.example", PASSWORD).await;
    assert_eq!(unlocked.status(), StatusCode::OK);

    let reasons: Vec<String> = server
        .app()
        .store()
        .audit_events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.action == haven_audit::AuditAction::FailedLogin)
        .map(|e| e.event.reason)
        .collect();
    assert_eq!(
        reasons,
        [
            "unknown_login",
            "wrong_password",
            "wrong_password",
            "wrong_password",
            "wrong_password",
            "account_locked_now",
            "account_locked"
        ]
    );

    // Malformed bodies change nothing and say what is wrong.
    for (body, status) in [
        (
            json!({ "login": "ada@north.example" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "login": "ada@north.example", "password": PASSWORD, "extra": 1 }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "login": "ada@north.example", "password": PASSWORD, "transport": "carrier-pigeon" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({ "login": "not-an-address", "password": PASSWORD }),
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let answer = server
            .post_as(None, "/api/v1/auth/sign-in", body.clone())
            .await;
        assert_eq!(answer.status(), status, "{body}");
    }
    let oversized = server
        .post_as(
            None,
            "/api/v1/auth/sign-in",
            json!({ "login": "ada@north.example", "password": "x".repeat(2 * 1024 * 1024) }),
        )
        .await;
    assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

async fn sessions_end_after_idle_and_absolute_time_outs(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (patient, token) = enrol_patient(&server, "ada@north.example").await;
    let own = format!("/api/v1/patients/{patient}");
    // Active every 14 minutes: the 15-minute idle time-out never fires.
    for _ in 0..3 {
        server.clock.advance(Duration::from_secs(14 * 60));
        assert_eq!(server.get_as(&token, &own).await.status(), StatusCode::OK);
    }
    server.clock.advance(Duration::from_secs(16 * 60));
    let idle = server.get_as(&token, &own).await;
    assert_eq!(idle.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(code(idle).await, "session_idle_timeout");
    // And it stays ended.
    assert_eq!(
        code(server.get_as(&token, &own).await).await,
        "session_revoked"
    );

    // However active, a session ends 12 hours after sign-in.
    let signed: Value = sign_in(&server, "ada@north.example", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let token = signed["token"].as_str().unwrap().to_owned();
    for _ in 0..(12 * 60 / 10 - 1) {
        server.clock.advance(Duration::from_secs(10 * 60));
        assert_eq!(server.get_as(&token, &own).await.status(), StatusCode::OK);
    }
    server.clock.advance(Duration::from_secs(10 * 60));
    let expired = server.get_as(&token, &own).await;
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(code(expired).await, "session_expired");
}

async fn cookie_sessions_need_the_csrf_token_to_change_anything(backend: Backend) {
    let server = TestServer::start(backend).await;
    let patient = server.create_patient("Lovelace").await;
    let invitation = server.invite(Role::Patient, Some(patient)).await;
    let enrolled = server
        .post_as(
            None,
            "/api/v1/auth/enrol",
            json!({ "invitation": invitation, "login": "ada@north.example", "password": PASSWORD }),
        )
        .await;
    assert_eq!(enrolled.status(), StatusCode::CREATED);
    let set_cookie = enrolled.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        set_cookie.starts_with("__Host-haven_session=hvs_"),
        "{set_cookie}"
    );
    for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    let body: Value = enrolled.json().await.unwrap();
    assert!(
        body.get("token").is_none(),
        "the cookie's secret is not in the body"
    );
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    let read = server
        .client
        .get(server.endpoint(&format!("/api/v1/patients/{patient}")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);

    // After a reload the web app asks again: the current session gives back the same token
    // and the idle time-out to warn before; no CORS header lets another origin read it.
    let current = server
        .client
        .get(server.endpoint("/api/v1/auth/session"))
        .header("cookie", &cookie)
        .header("origin", "https://elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(current.status(), StatusCode::OK);
    assert!(
        !current
            .headers()
            .contains_key("access-control-allow-origin")
    );
    let current: Value = current.json().await.unwrap();
    assert_eq!(current["csrf_token"], csrf.as_str());
    assert_eq!(current["idle_timeout_secs"], 15 * 60);
    assert_eq!(current["activity_interval_secs"], 60);
    assert_eq!(current["role"], "patient");
    let csrf = current["csrf_token"].as_str().unwrap().to_owned();

    let sign_out = |csrf: Option<String>| {
        let mut request = server
            .client
            .post(server.endpoint("/api/v1/auth/sign-out"))
            .header("cookie", &cookie);
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.send()
    };
    let forged = sign_out(None).await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(code(forged).await, "csrf_token_missing");
    let wrong = sign_out(Some("not-the-token".into())).await.unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let done = sign_out(Some(csrf)).await.unwrap();
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    assert!(
        done.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = server
        .client
        .get(server.endpoint(&format!("/api/v1/patients/{patient}")))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}

async fn sign_out_everywhere_and_a_new_password_end_other_sessions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (patient, first) = enrol_patient(&server, "ada@north.example").await;
    let own = format!("/api/v1/patients/{patient}");
    let second: Value = sign_in(&server, "ada@north.example", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let second = second["token"].as_str().unwrap().to_owned();

    let listed: Value = server
        .get_as(&second, "/api/v1/auth/sessions")
        .await
        .json()
        .await
        .unwrap();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items.iter().filter(|s| s["current"] == true).count(), 1);

    // Another user's session id is simply not found.
    let (_, other) = enrol_patient(&server, "bob@north.example").await;
    let first_id = items.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let foreign = server
        .client
        .delete(server.endpoint(&format!("/api/v1/auth/sessions/{first_id}")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    assert_eq!(server.get_as(&first, &own).await.status(), StatusCode::OK);

    // Password change: the current one is required, the new one must be strong; then the
    // other session ends and this one goes on.
    for (body, status) in [
        (
            json!({ "current_password": "wrong wrong wrong", "new_password": "orchid tunnel saxophone" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "current_password": PASSWORD, "new_password": "password1234" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "current_password": PASSWORD, "new_password": "ada@north.example" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let answer = server
            .post_as(Some(&second), "/api/v1/auth/password", body.clone())
            .await;
        assert_eq!(answer.status(), status, "{body}");
    }
    assert_eq!(
        server.get_as(&first, &own).await.status(),
        StatusCode::OK,
        "nothing changed"
    );
    let changed = server
        .post_as(
            Some(&second),
            "/api/v1/auth/password",
            json!({ "current_password": PASSWORD, "new_password": "orchid tunnel saxophone" }),
        )
        .await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(
        server.get_as(&first, &own).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(server.get_as(&second, &own).await.status(), StatusCode::OK);
    assert_eq!(
        sign_in(&server, "ada@north.example", PASSWORD)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let third: Value = sign_in(&server, "ada@north.example", "orchid tunnel saxophone")
        .await
        .json()
        .await
        .unwrap();
    let third = third["token"].as_str().unwrap().to_owned();

    // Everywhere, this session included.
    let everywhere = server
        .post_as(Some(&third), "/api/v1/auth/sign-out-everywhere", json!({}))
        .await;
    assert_eq!(everywhere.status(), StatusCode::OK);
    assert_eq!(
        everywhere.json::<Value>().await.unwrap()["sessions_ended"],
        2
    );
    for token in [&second, &third] {
        assert_eq!(
            server.get_as(token, &own).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
}

async fn invitations_are_single_use_expiring_and_for_administrators(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.invite(Role::Administrator, None).await; // the organisation exists
    let clinician = server.token(Role::Clinician, 1).await;
    let refused = server
        .post_as(
            Some(&clinician),
            "/api/v1/invitations",
            json!({ "role": "nurse" }),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    for (body, status) in [
        (
            json!({ "role": "wizard" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            // A patient's invitation names an existing record (or none, for a proxy).
            json!({ "role": "patient", "patient": haven_domain::PatientId::generate().to_string() }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "role": "nurse", "ttl_hours": 0 }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "role": "nurse", "colour": "blue" }),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let answer = server
            .post_as(
                Some(&server.admin_token),
                "/api/v1/invitations",
                body.clone(),
            )
            .await;
        assert_eq!(answer.status(), status, "{body}");
    }
    // Reviewers oversee administrators: only the console makes them.
    for reviewer in ["auditor", "privacy_officer"] {
        let refused = server
            .post_as(
                Some(&server.admin_token),
                "/api/v1/invitations",
                json!({ "role": reviewer }),
            )
            .await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{reviewer}");
    }
    // One account per patient record.
    let (patient, _) = enrol_patient(&server, "ada@north.example").await;
    let second = server
        .post_as(
            Some(&server.admin_token),
            "/api/v1/invitations",
            json!({ "role": "patient", "patient": patient.to_string() }),
        )
        .await;
    assert_eq!(second.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let issued = server
        .post_as(
            Some(&server.admin_token),
            "/api/v1/invitations",
            json!({ "role": "nurse" }),
        )
        .await;
    assert_eq!(issued.status(), StatusCode::CREATED);
    let invitation = issued.json::<Value>().await.unwrap()["invitation"]
        .as_str()
        .unwrap()
        .to_owned();

    let attempt = |login: &'static str, password: &'static str| {
        server.post_as(None,
            "/api/v1/auth/enrol",
            json!({ "invitation": invitation.clone(), "login": login, "password": password, "transport": "bearer" }),
        )
    };
    // A weak password or a bad login: refused, the invitation still good.
    assert_eq!(
        attempt("mary@north.example", "password1234").await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        attempt("mary", PASSWORD).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        attempt("mary@north.example", PASSWORD).await.status(),
        StatusCode::CREATED
    );
    let spent = attempt("mary2@north.example", PASSWORD).await;
    assert_eq!(spent.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(code(spent).await, "invitation_invalid");

    // A login already taken.
    let other = server.invite(Role::Nurse, None).await;
    let taken = server
        .post_as(
            None,
            "/api/v1/auth/enrol",
            json!({ "invitation": other, "login": "MARY@north.example", "password": PASSWORD }),
        )
        .await;
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    assert_eq!(code(taken).await, "login_taken");

    // Probing for logins with an invitation is throttled like guessing passwords: each
    // refusal counts against the address, and each is audited.
    let mut statuses = Vec::new();
    for _ in 0..=haven_app::identity::throttle::ATTEMPTS_PER_WINDOW_MAX {
        let probe = server
            .post_as(
                None,
                "/api/v1/auth/enrol",
                json!({ "invitation": other, "login": "mary@north.example", "password": PASSWORD }),
            )
            .await;
        statuses.push(probe.status());
    }
    let throttled_from = statuses
        .iter()
        .position(|s| *s == StatusCode::TOO_MANY_REQUESTS)
        .expect("probing is throttled");
    assert!(
        statuses[..throttled_from]
            .iter()
            .all(|s| *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );
    assert!(
        statuses[throttled_from..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let refusals = server
        .app()
        .store()
        .audit_events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.action == haven_audit::AuditAction::FailedLogin)
        .filter(|e| e.event.reason == "login_taken")
        .count();
    assert_eq!(refusals, throttled_from + 1, "each taken login is audited");

    // An expired invitation.
    let late = server.invite(Role::Nurse, None).await;
    server.clock.advance(Duration::from_secs(25 * 3600));
    let expired = server
        .post_as(
            None,
            "/api/v1/auth/enrol",
            json!({ "invitation": late, "login": "late@north.example", "password": PASSWORD }),
        )
        .await;
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(code(expired).await, "invitation_invalid");
}

async fn a_patient_signs_in_and_sees_only_their_own_record(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (patient, token) = enrol_patient(&server, "ada@north.example").await;
    let stranger = server.create_patient("Babbage").await;
    assert_eq!(
        server
            .get_as(&token, &format!("/api/v1/patients/{patient}"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        server
            .get_as(&token, &format!("/api/v1/patients/{stranger}"))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        server.get_as(&token, "/api/v1/patients").await.status(),
        StatusCode::FORBIDDEN
    );
    let log = server
        .get_as(&token, &format!("/api/v1/patients/{patient}/access-log"))
        .await;
    assert_eq!(log.status(), StatusCode::OK);
    let log: Value = log.json().await.unwrap();
    // The patient's own read shows with their user id and session.
    let own_read = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "read" && e["role"] == "patient")
        .unwrap();
    assert!(
        own_read["session"].is_string() && own_read["organisation"].is_string(),
        "{own_read}"
    );
}

async fn sensitive_actions_need_a_fresh_proof_and_stricter_policies_apply_at_once(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let (patient, patient_token) = enrol_patient(&server, "ada@north.example").await;
    let _ = patient;
    let (admin, _) = enrol(&server, Role::Administrator, "root@north.example").await;
    let (secret, _) = set_up_totp(&server, &admin).await;
    let invite = || {
        server.post_as(
            Some(&admin),
            "/api/v1/invitations",
            json!({ "role": "nurse" }),
        )
    };
    assert_eq!(
        invite().await.status(),
        StatusCode::CREATED,
        "fresh from sign-in"
    );

    server.clock.advance(Duration::from_secs(6 * 60));
    let stale = invite().await;
    assert_eq!(stale.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(code(stale).await, "step_up_required");
    // Adding a passkey, which signs in on its own, needs a fresh proof too.
    let passkey = server
        .post_as(
            Some(&admin),
            "/api/v1/auth/passkeys/registration/options",
            json!({}),
        )
        .await;
    assert_eq!(passkey.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(code(passkey).await, "step_up_required");
    let wrong = server
        .post_as(
            Some(&admin),
            "/api/v1/auth/step-up",
            json!({ "password": PASSWORD, "code": "000000" }),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let no_code = server
        .post_as(
            Some(&admin),
            "/api/v1/auth/step-up",
            json!({ "password": PASSWORD }),
        )
        .await;
    assert_eq!(no_code.status(), StatusCode::UNAUTHORIZED);
    let code_now = code_at_base32(&secret, now_secs(&server)).unwrap();
    let stepped = server
        .post_as(
            Some(&admin),
            "/api/v1/auth/step-up",
            json!({ "password": PASSWORD, "code": code_now }),
        )
        .await;
    assert_eq!(stepped.status(), StatusCode::NO_CONTENT);
    assert_eq!(invite().await.status(), StatusCode::CREATED);

    // Organisation policy: bounds, administrators only, then stricter time-outs apply to
    // open sessions at once and patients need a second factor.
    let current: Value = server
        .get_as(&admin, "/api/v1/organisation")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(current["idle_timeout_secs"], 900);
    let put = |token: String, body: Value| {
        let server = &server;
        async move {
            server
                .client
                .put(server.endpoint("/api/v1/organisation"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    for body in [
        json!({ "idle_timeout_secs": 30, "absolute_timeout_secs": 3600, "patient_mfa_required": true }),
        json!({ "idle_timeout_secs": 600, "absolute_timeout_secs": 300, "patient_mfa_required": true }),
    ] {
        assert_eq!(
            put(admin.clone(), body.clone()).await.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
    }
    let clinician = server.token(Role::Clinician, 1).await;
    let strict = json!({ "idle_timeout_secs": 300, "absolute_timeout_secs": 3600, "patient_mfa_required": true });
    assert_eq!(
        put(clinician, strict.clone()).await.status(),
        StatusCode::FORBIDDEN
    );
    let changed = put(admin.clone(), strict).await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_eq!(
        changed.json::<Value>().await.unwrap()["patient_mfa_required"],
        true
    );

    server.clock.advance(Duration::from_secs(6 * 60));
    let idle = server.get_as(&patient_token, "/api/v1/auth/session").await;
    assert_eq!(
        idle.status(),
        StatusCode::UNAUTHORIZED,
        "the patient's session was idle 12 min > 5"
    );
    let again: Value = sign_in(&server, "ada@north.example", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        again["state"], "mfa_setup_required",
        "patients now need a second factor"
    );

    let reasons: Vec<String> = server
        .app()
        .store()
        .audit_events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.reason)
        .collect();
    for expected in ["step_up_failed", "step_up", "organisation_policy_changed"] {
        assert!(reasons.iter().any(|r| r == expected), "{expected} missing");
    }
}

async fn administrators_list_disable_and_enable_users(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (admin, _) = enrol(&server, Role::Administrator, "root@north.example").await;
    set_up_totp(&server, &admin).await;
    let (nurse, _) = enrol(&server, Role::Nurse, "mary@north.example").await;

    let listed: Value = server
        .get_as(&admin, "/api/v1/users")
        .await
        .json()
        .await
        .unwrap();
    let logins: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["login"].as_str().unwrap())
        .collect();
    assert_eq!(logins, ["root@north.example", "mary@north.example"]);
    let mary = listed["items"][1]["id"].as_str().unwrap().to_owned();
    let root = listed["items"][0]["id"].as_str().unwrap().to_owned();

    let clinician = server.token(Role::Clinician, 1).await;
    assert_eq!(
        server.get_as(&clinician, "/api/v1/users").await.status(),
        StatusCode::FORBIDDEN
    );
    let disable = |token: String, id: String| {
        let server = &server;
        async move {
            server
                .post_as(
                    Some(&token),
                    &format!("/api/v1/users/{id}/disable"),
                    json!({}),
                )
                .await
        }
    };
    assert_eq!(
        disable(clinician, mary.clone()).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        disable(admin.clone(), root).await.status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        disable(admin.clone(), haven_domain::UserId::generate().to_string())
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        disable(admin.clone(), "not-an-id".into()).await.status(),
        StatusCode::BAD_REQUEST
    );

    assert_eq!(
        disable(admin.clone(), mary).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        server.get_as(&nurse, "/api/v1/auth/session").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let refused = sign_in(&server, "mary@north.example", PASSWORD).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(code(refused).await, "invalid_credentials");
    let listed: Value = server
        .get_as(&admin, "/api/v1/users")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][1]["disabled"], true);

    // Enabled again, by an administrator only: the nurse signs in as before.
    let enable = |token: String, id: String| {
        let server = &server;
        async move {
            server
                .post_as(
                    Some(&token),
                    &format!("/api/v1/users/{id}/enable"),
                    json!({}),
                )
                .await
        }
    };
    let mary = listed["items"][1]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        enable(nurse.clone(), mary.clone()).await.status(),
        StatusCode::UNAUTHORIZED,
        "a disabled user's session ended"
    );
    let clinician = server.token(Role::Clinician, 1).await;
    assert_eq!(
        enable(clinician, mary.clone()).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        enable(admin.clone(), mary.clone()).await.status(),
        StatusCode::NO_CONTENT
    );
    let back = sign_in(&server, "mary@north.example", PASSWORD).await;
    assert_eq!(back.status(), StatusCode::OK);
    let listed: Value = server
        .get_as(&admin, "/api/v1/users")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][1]["disabled"], false);
    let changes: Vec<String> = server
        .app()
        .store()
        .audit_events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.resource_id.as_deref() == Some(mary.as_str()))
        .filter(|e| e.event.action == haven_audit::AuditAction::PrivilegeChange)
        .map(|e| e.event.reason)
        .collect();
    assert_eq!(changes, ["enrolled", "user_disabled", "user_enabled"]);
}

async fn guessing_the_second_factor_locks_the_account_and_ends_the_pending_session(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let (token, _) = enrol(&server, Role::Clinician, "guess@north.example").await;
    let (secret, _) = set_up_totp(&server, &token).await;
    let signed: Value = sign_in(&server, "guess@north.example", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let pending = signed["token"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        let wrong = server
            .post_as(
                Some(&pending),
                "/api/v1/auth/second-factor",
                json!({ "code": "000000" }),
            )
            .await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    // Locked: the pending session is gone, even with the right code now.
    server.clock.advance(Duration::from_secs(30));
    let right = code_at_base32(&secret, now_secs(&server)).unwrap();
    let late = server
        .post_as(
            Some(&pending),
            "/api/v1/auth/second-factor",
            json!({ "code": right }),
        )
        .await;
    assert_eq!(late.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(code(late).await, "session_revoked");
    assert_eq!(
        sign_in(&server, "guess@north.example", PASSWORD)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // After the lock, the right password and a fresh code sign in again.
    server.clock.advance(Duration::from_secs(61));
    let signed: Value = sign_in(&server, "guess@north.example", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let pending = signed["token"].as_str().unwrap().to_owned();
    let fresh = code_at_base32(&secret, now_secs(&server)).unwrap();
    let ok = server
        .post_as(
            Some(&pending),
            "/api/v1/auth/second-factor",
            json!({ "code": fresh }),
        )
        .await;
    assert_eq!(ok.status(), StatusCode::OK);

    // Step-up guesses count too: five wrong passwords lock the account.
    for _ in 0..5 {
        let wrong = server
            .post_as(
                Some(&pending),
                "/api/v1/auth/step-up",
                json!({ "password": "not it at all", "code": "000000" }),
            )
            .await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        sign_in(&server, "guess@north.example", PASSWORD)
            .await
            .status(),
        StatusCode::UNAUTHORIZED,
        "locked"
    );
}

/// Beginning a passkey sign-in needs no account, and each one stores a challenge: one
/// address may begin only so many a minute.
async fn anonymous_passkey_ceremonies_are_throttled_per_address(backend: Backend) {
    let server = TestServer::start(backend).await;
    let begin = || server.post_as(None, "/api/v1/auth/passkeys/sign-in/options", json!({}));
    for _ in 0..haven_app::identity::throttle::CEREMONIES_PER_WINDOW_MAX {
        assert_eq!(begin().await.status(), StatusCode::OK);
    }
    let refused = begin().await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    server.clock.advance(Duration::from_secs(61));
    assert_eq!(begin().await.status(), StatusCode::OK);
}

/// A burst of concurrent guesses at one account: exactly five are checked against the
/// password, then the account is locked and every other guess is refused unchecked.
async fn concurrent_wrong_passwords_lock_the_account_after_exactly_five(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, _) = enrol(&server, Role::Nurse, "burst@north.example").await;
    let mut guesses = tokio::task::JoinSet::new();
    for index in 0..12 {
        let client = server.client.clone();
        let url = server.endpoint("/api/v1/auth/sign-in");
        guesses.spawn(async move {
            client
                .post(url)
                .json(&json!({
                    "login": "burst@north.example",
                    "password": format!("guess number {index} wrong"),
                    "transport": "bearer",
                }))
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    let statuses = guesses.join_all().await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    let mut reasons: Vec<String> = server
        .app()
        .store()
        .audit_events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.action == haven_audit::AuditAction::FailedLogin)
        .map(|e| e.event.reason)
        .collect();
    reasons.sort();
    let count = |reason: &str| reasons.iter().filter(|r| *r == reason).count();
    assert_eq!(count("wrong_password"), 4, "{reasons:?}");
    assert_eq!(count("account_locked_now"), 1, "{reasons:?}");
    assert_eq!(count("account_locked"), 7, "{reasons:?}");
}

/// A patient's organisation does not require a second factor, but this patient chose to set
/// one up: from then on signing in asks for it, and a password alone opens nothing.
async fn a_patient_who_sets_up_totp_is_asked_for_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    let patient = server.create_patient("Lovelace").await;
    let invitation = server.invite(Role::Patient, Some(patient)).await;
    let (token, state) = enrol_with(&server, &invitation, "ada@north.example").await;
    assert_eq!(state, "complete", "patients need no second factor here");
    let (secret, _) = set_up_totp(&server, &token).await;

    let signed_in = sign_in(&server, "ada@north.example", PASSWORD).await;
    assert_eq!(signed_in.status(), StatusCode::OK);
    let signed_in: Value = signed_in.json().await.unwrap();
    assert_eq!(signed_in["state"], "mfa_required");
    let pending = signed_in["token"].as_str().unwrap().to_owned();
    let record = format!("/api/v1/patients/{patient}");
    assert_eq!(
        server.get_as(&pending, &record).await.status(),
        StatusCode::UNAUTHORIZED,
        "a password alone opens nothing"
    );
    server.clock.advance(std::time::Duration::from_secs(30));
    let code = code_at_base32(&secret, now_secs(&server)).unwrap();
    let second = server
        .post_as(
            Some(&pending),
            "/api/v1/auth/second-factor",
            json!({ "code": code }),
        )
        .await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(
        server.get_as(&pending, &record).await.status(),
        StatusCode::OK
    );
    server.stop().await;
}

/// The key rotation status: an administrator reads it (and the read is audited); anyone
/// else is refused; a timed-out session reaches nothing.
async fn key_status_is_for_administrators_in_a_live_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.user(Role::Administrator, None).await;
    let clinician = server.user(Role::Clinician, None).await;
    let path = "/api/v1/keys/status";
    let status = server.get_as(&admin.token, path).await;
    assert_eq!(status.status(), StatusCode::OK);
    let status: Value = status.json().await.unwrap();
    assert_eq!(
        status["active_root_key_id"].as_str().map(str::len),
        Some(32),
        "{status}"
    );
    assert_eq!(status["keys_under_older_roots"], 0);
    assert_eq!(status["last_rotation_at_ms"], Value::Null);
    let read = server.audit_entries().await.into_iter().any(|e| {
        e.event.reason == "key_status_read" && e.event.actor == Some(admin.id.to_string())
    });
    assert!(read, "the read is in the audit log");
    assert_eq!(
        server.get_as(&clinician.token, path).await.status(),
        StatusCode::FORBIDDEN
    );
    server
        .clock
        .advance(std::time::Duration::from_secs(16 * 60));
    assert_eq!(
        server.get_as(&admin.token, path).await.status(),
        StatusCode::UNAUTHORIZED
    );
    server.stop().await;
}
