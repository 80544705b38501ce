//! Browser tests: Debian's Chromium, driven by playwright-core scripts in `tests/browser/`
//! (`cargo xtask test` installs both), against a real Haven serving the built web app.
//!
//! The patient portal: a patient enrols from an invitation, sets up TOTP, signs in, reads a
//! result and sees the clinician's access in "who accessed my record"; the idle time-out
//! then signs the browser out and no health data remains in the DOM or any browser storage.
//! No page breaks the Content Security Policy or reaches another origin. Screenshots of each
//! page, at phone and desktop sizes, go to `target/screenshots/` for a reviewer.
//!
//! The clinician workspace: a clinician adds a passkey and signs in with it alone, opens a
//! chart in their care and writes a note, breaks the glass on a stranger's chart; the
//! privacy officer finds that in the review queue and marks it justified.
//!
//! A proxy: a parent with no record of their own enters the front desk's code and sees their
//! child's record, and only what the delegation allows.
//!
//! Administration: with a sign-in older than the step-up window, an administrator is asked
//! to prove who they are before an invitation; then changes a policy and disables a user.
//!
//! Passkeys: a clinician registers one with Chromium's virtual authenticator and signs in
//! with it, no login typed; the session that comes back is complete, a replayed response is
//! refused, and both ceremonies are in the audit trail.
//!
//! Secure messages: a patient and their clinician, signed in in two browsers (two devices),
//! exchange end-to-end encrypted messages and a file, live over the event stream, with read
//! receipts; the clinician files a message to the chart. A device then written into the
//! database behind Haven's back is named in a warning and withheld by the patient's browser.
//! Haven's database and audit log hold none of what was written.
//!
//! Video visits: a patient waits in the waiting room, seeing nothing of the call, until
//! their clinician admits them; both then decode each other's video, every frame leaving
//! either browser is sealed under its SFrame key, each names the other's device as checked
//! against the transparency log, and a chat line reaches the patient without ever being
//! stored; the clinician ends the visit for everyone. Three people through a real coturn,
//! relayed only: when the nurse leaves, the two others rotate their keys and carry on.
//! Nobody enters without admission: another patient's visit, one not open yet, one declined
//! or ended.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use haven_app::identity::totp::code_at_base32;
use haven_domain::Role;
use haven_test_support::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

haven_test_support::on_every_backend!(
    a_passkey_registers_and_signs_in_from_chromium,
    a_patient_enrols_reads_a_result_and_sees_who_accessed_it,
    a_clinician_signs_in_with_a_passkey_writes_a_note_and_breaks_the_glass,
    an_administrator_steps_up_to_invite_change_a_policy_and_disable_a_user,
    a_parent_sees_their_childs_record_within_the_delegation,
    sealed_messaging_between_a_patient_and_two_browsers_of_their_clinician,
    a_video_visit_from_the_waiting_room_to_the_end,
    a_three_person_video_visit_through_the_relay,
    nobody_enters_a_video_visit_without_admission,
    a_guest_joins_by_link_and_everyone_agrees_to_a_recording,
);

/// Browser scripts get long enough to start Chromium on a loaded machine.
const SCRIPT_TIMEOUT_SECS: u64 = 120;
/// The patient's journey includes waiting out the shortest idle time-out an organisation
/// may set (60 s).
const JOURNEY_TIMEOUT_SECS: u64 = 300;

/// A script in two phases: it prints one JSON line when the first is done and waits for a
/// line on its standard input, which `between` (given the first line) returns; then it
/// prints the second. Answers both lines.
async fn run_two_phase_script<F, Fut>(
    script: &str,
    env: &[(&str, &str)],
    between: F,
) -> (Value, Value)
where
    F: FnOnce(Value) -> Fut,
    Fut: std::future::Future<Output = String>,
{
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let mut command = node(script, env);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("node runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = child.stderr.take().unwrap();
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    async fn next_json(
        lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
        script: &str,
    ) -> Option<Value> {
        let line =
            tokio::time::timeout(Duration::from_secs(JOURNEY_TIMEOUT_SECS), lines.next_line())
                .await
                .expect("the browser script answered in time")
                .expect("its output is readable")?;
        Some(
            serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {line}")),
        )
    }
    let Some(first) = next_json(&mut lines, script).await else {
        panic!(
            "{script} failed in its first phase: {}",
            errors.await.unwrap()
        );
    };
    let answer = between(first.clone()).await;
    stdin
        .write_all(format!("{answer}\n").as_bytes())
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    let Some(second) = next_json(&mut lines, script).await else {
        panic!(
            "{script} failed in its second phase: {}",
            errors.await.unwrap()
        );
    };
    let status = tokio::time::timeout(Duration::from_secs(SCRIPT_TIMEOUT_SECS), child.wait())
        .await
        .expect("the browser script ended in time")
        .unwrap();
    assert!(
        status.success(),
        "{script} failed: {}",
        errors.await.unwrap()
    );
    (first, second)
}

async fn run_script(script: &str, env: &[(&str, &str)]) -> Value {
    run_script_for(script, env, SCRIPT_TIMEOUT_SECS).await
}

/// `node tests/browser/<script>` with `env`, killed if dropped.
fn node(script: &str, env: &[(&str, &str)]) -> tokio::process::Command {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {}: run `cargo xtask test`",
        dir.display()
    );
    let mut command = tokio::process::Command::new("node");
    command
        .arg(dir.join(script))
        .current_dir(&dir)
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

async fn run_script_for(script: &str, env: &[(&str, &str)], timeout_secs: u64) -> Value {
    let mut command = node(script, env);
    let output = tokio::time::timeout(Duration::from_secs(timeout_secs), command.output())
        .await
        .expect("the browser script finished in time")
        .expect("node runs");
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

async fn a_passkey_registers_and_signs_in_from_chromium(backend: Backend) {
    let server = TestServer::start(backend).await;
    // A clinician, fully signed in (password and TOTP), registers the passkey.
    let invitation = server.invite(Role::Clinician, None).await;
    let enrolled: Value = server
        .post_as(
            None,
            "/api/v1/auth/enrol",
            json!({ "invitation": invitation, "login": "joan@north.example",
                "password": "marble kettle on the hill", "transport": "bearer" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let token = enrolled["token"].as_str().unwrap().to_owned();
    let setup: Value = server
        .post_as(Some(&token), "/api/v1/auth/totp/setup", json!({}))
        .await
        .json()
        .await
        .unwrap();
    use haven_app::Clock;
    let now = u64::try_from(server.clock.now_ms() / 1000).unwrap();
    let code = code_at_base32(setup["secret"].as_str().unwrap(), now).unwrap();
    let confirmed = server
        .post_as(
            Some(&token),
            "/api/v1/auth/totp/confirm",
            json!({ "code": code }),
        )
        .await;
    assert_eq!(confirmed.status(), StatusCode::OK);

    // Passkeys are bound to localhost (browsers refuse them on an IP address).
    let url = server.url.replace("127.0.0.1", "localhost");
    let result = run_script(
        "passkey.mjs",
        &[("HAVEN_URL", &url), ("HAVEN_TOKEN", &token)],
    )
    .await;
    assert_eq!(result["creationOptions"], 200, "{result}");
    assert_eq!(result["registered"], 201, "{result}");
    assert_eq!(result["requestOptions"], 200, "{result}");
    assert_eq!(result["signIn"], 200, "{result}");
    assert_eq!(
        result["state"], "complete",
        "a passkey is both factors: {result}"
    );
    assert_eq!(result["replay"], 401, "a spent ceremony: {result}");
    assert_eq!(result["authenticatorCredentials"], 1, "{result}");

    // The passkey's session is the clinician's, and works.
    let passkey_token = result["token"].as_str().unwrap();
    let session: Value = server
        .client
        .get(server.endpoint("/api/v1/auth/session"))
        .bearer_auth(passkey_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (session["role"].as_str(), session["state"].as_str()),
        (Some("clinician"), Some("complete"))
    );
    let list = server
        .client
        .get(server.endpoint("/api/v1/auth/passkeys"))
        .bearer_auth(passkey_token)
        .send()
        .await
        .unwrap();
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["items"][0]["name"], "test laptop");

    // Its owner removes it; a made-up id is simply not found.
    let id = list["items"][0]["id"].as_str().unwrap().to_owned();
    let remove = |id: String| {
        let server = &server;
        async move {
            server
                .client
                .delete(server.endpoint(&format!("/api/v1/auth/passkeys/{id}")))
                .bearer_auth(passkey_token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(remove("AAAA".into()).await, StatusCode::NOT_FOUND);
    assert_eq!(remove("not base64!".into()).await, StatusCode::BAD_REQUEST);
    assert_eq!(remove(id.clone()).await, StatusCode::NO_CONTENT);
    assert_eq!(remove(id).await, StatusCode::NOT_FOUND);
    let empty: Value = server
        .client
        .get(server.endpoint("/api/v1/auth/passkeys"))
        .bearer_auth(passkey_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(empty["items"].as_array().unwrap().len(), 0);

    let reasons: Vec<String> = server
        .app()
        .store()
        .audit_events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.reason)
        .collect();
    assert!(reasons.iter().any(|r| r == "passkey_added"), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r == "signed_in_passkey"),
        "{reasons:?}"
    );
}

/// Creates a FHIR resource of `resource_type` as `token` and returns it as stored.
async fn create(server: &TestServer, token: &str, resource_type: &str, resource: Value) -> Value {
    let created = server
        .client
        .post(server.endpoint(&format!("/fhir/{resource_type}")))
        .bearer_auth(token)
        .header("content-type", "application/fhir+json")
        .body(resource.to_string())
        .send()
        .await
        .unwrap();
    let status = created.status();
    let body: Value = created.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// An intake form as a clinic would publish it.
fn intake_form() -> Value {
    json!({
        "resourceType": "Questionnaire",
        "url": "https://clinic.example/fhir/Questionnaire/intake",
        "version": "1.0",
        "name": "TelehealthIntake",
        "title": "Telehealth intake",
        "status": "active",
        "description": "Questions asked before a video visit.",
        "item": [
            {"linkId": "symptoms", "text": "Symptoms", "type": "group", "item": [
                {"linkId": "fever", "prefix": "1.", "text": "Do you have a fever?", "type": "boolean", "required": true},
                {"linkId": "symptom", "prefix": "2.", "text": "Main symptom", "type": "choice", "answerOption": [
                    {"valueCoding": {"system": "http://snomed.info/sct", "code": "267102003", "display": "Sore throat"}, "initialSelected": true},
                    {"valueCoding": {"system": "http://snomed.info/sct", "code": "49727002", "display": "Cough"}}
                ]},
                {"linkId": "onset", "text": "Since when?", "type": "date"},
                {"linkId": "emergency", "text": "In an emergency, call 911.", "type": "display"}
            ]},
            {"linkId": "notes", "text": "Anything else?", "type": "text", "maxLength": 2000}
        ]
    })
}

/// Where the browser tests put their screenshots: `target/screenshots/<backend>/`.
fn screenshot_dir(backend: Backend) -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("screenshots")
        .join(format!("{backend:?}").to_lowercase())
}

async fn a_patient_enrols_reads_a_result_and_sees_who_accessed_it(backend: Backend) {
    // The browser keeps real time (the idle time-out, the authenticator's codes), so Haven does.
    let server = TestServer::start_in_real_time(backend).await;
    let admin = server.user(Role::Administrator, None).await;
    let policy = server
        .client
        .put(server.endpoint("/api/v1/organisation"))
        .bearer_auth(&admin.token)
        .json(&json!({
            "idle_timeout_secs": 60,
            "absolute_timeout_secs": 43200,
            "patient_mfa_required": false,
            "result_release": "immediate",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(policy.status(), StatusCode::OK);

    // A result in the patient's chart, out of its range, read once by their clinician.
    let patient = server.create_patient("Lovelace").await;
    let clinician = server.user(Role::Clinician, None).await;
    server.add_to_care_team(patient, clinician.id).await;
    let marker = "Ferritin HVN-4417";
    let result = json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2276-4", "display": "Ferritin"}], "text": marker},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2026-11-20T09:00:00Z",
        "valueQuantity": {"value": 420, "unit": "ng/mL", "system": "http://unitsofmeasure.org", "code": "ng/mL"},
        "referenceRange": [{
            "low": {"value": 30, "unit": "ng/mL", "system": "http://unitsofmeasure.org", "code": "ng/mL"},
            "high": {"value": 400, "unit": "ng/mL", "system": "http://unitsofmeasure.org", "code": "ng/mL"}
        }]
    });
    let created = create(&server, &clinician.token, "Observation", result).await;
    let read = server
        .get_as(
            &clinician.token,
            &format!("/fhir/Observation/{}", created["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(read.status(), StatusCode::OK);

    // A video visit booked for next week.
    let visit_start = (time::OffsetDateTime::now_utc() + time::Duration::days(7))
        .replace_time(time::macros::time!(9:30))
        .replace_nanosecond(0)
        .unwrap();
    let rfc3339 = |at: time::OffsetDateTime| {
        at.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let (visit_at, visit_end) = (
        rfc3339(visit_start),
        rfc3339(visit_start + time::Duration::minutes(20)),
    );
    create(&server, &clinician.token, "Appointment", json!({
                "resourceType": "Appointment",
                "status": "booked",
                "description": "Video follow-up HVN-8842",
                "start": visit_at,
                "end": visit_end,
                "participant": [{"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"}]
            })).await;

    // The clinic's intake form.
    create(&server, &admin.token, "Questionnaire", intake_form()).await;

    let invitation = server.invite(Role::Patient, Some(patient)).await;
    let screenshots = screenshot_dir(backend);
    let form_answer = "Worse at night HVN-7730";
    let url = server.url.replace("127.0.0.1", "localhost");
    let out = run_script_for(
        "portal.mjs",
        &[
            ("HAVEN_URL", &url),
            ("HAVEN_INVITATION", &invitation),
            ("HAVEN_LOGIN", "ada@north.example"),
            ("HAVEN_PASSWORD", "marble kettle on the hill"),
            ("HAVEN_MARKER", marker),
            ("HAVEN_FORM_ANSWER", form_answer),
            ("HAVEN_SCREENSHOTS", &screenshots.display().to_string()),
        ],
        JOURNEY_TIMEOUT_SECS,
    )
    .await;

    assert_well_behaved(&out);

    // The form, answered: listed as completed, and in the record as the patient's answers.
    assert!(
        out["formsAfter"].as_str().unwrap().contains("Completed"),
        "{out}"
    );
    // The journey outlasted the organisation's 60 s idle time-out, for the clinician too.
    let clinician_token = server.sign_in_again(&clinician).await;
    let responses: Value = server
        .get_json(
            &clinician_token,
            &format!("/fhir/QuestionnaireResponse?patient={patient}"),
        )
        .await;
    assert_eq!(
        responses["entry"].as_array().map(Vec::len),
        Some(1),
        "{responses}"
    );
    let response = &responses["entry"][0]["resource"];
    assert_eq!(response["status"], "completed");
    assert_eq!(
        response["questionnaire"],
        "https://clinic.example/fhir/Questionnaire/intake|1.0"
    );
    let answers = response["item"].to_string();
    for expected in [
        r#""valueBoolean":true"#,
        r#""code":"49727002""#,
        r#""valueDate":"2026-11-20""#,
        form_answer,
    ] {
        assert!(answers.contains(expected), "{expected} in {answers}");
    }

    // Enrolment: the invitation's secret left the address bar; TOTP set up, codes shown.
    assert_eq!(out["invitationLeftInAddressBar"], false, "{out}");
    assert_eq!(out["qrCodeShown"], true, "{out}");
    assert_eq!(out["recoveryCodes"], 10, "{out}");
    assert_eq!(out["afterEnrolment"], "/portal", "{out}");

    // The result, with its range and its flag.
    let row = out["resultRow"].as_str().unwrap();
    for expected in [marker, "420 ng/mL", "High", "30–400 ng/mL"] {
        assert!(row.contains(expected), "{expected} in {row:?}");
    }
    assert!(out["homeText"].as_str().unwrap().contains(marker), "{out}");
    assert!(
        out["nextVisits"]
            .as_str()
            .unwrap()
            .contains("Video follow-up HVN-8842"),
        "{out}"
    );

    // A caregiver offered access, then revoked: the list, read again from Haven after the
    // revocation, says so.
    assert!(out["proxyOffer"].as_str().unwrap().len() > 20, "{out}");
    assert!(
        out["proxiesAfterRevoke"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{out}"
    );

    // The correction request names the result and waits for the care team.
    assert!(
        out["correctionFocus"].as_str().unwrap().contains(marker),
        "{out}"
    );
    assert!(
        out["corrections"]
            .as_str()
            .unwrap()
            .contains("Waiting for your care team"),
        "{out}"
    );
    // The download holds the whole chart: the patient first, then every record.
    let types: Vec<&str> = out["exportTypes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(types.first(), Some(&"Patient"), "{out}");
    for expected in ["Observation", "QuestionnaireResponse", "Task"] {
        assert!(types.contains(&expected), "{expected} in {types:?}");
    }
    assert_eq!(out["exportHasMarker"], true, "{out}");

    // The clinician's read is in the patient's access log.
    assert!(out["clinicianAccesses"].as_u64().unwrap() >= 1, "{out}");
    let access = out["clinicianAccess"].as_str().unwrap();
    assert!(access.contains("Clinician"), "{access:?}");

    // The idle time-out: a warning, then signed out, with nothing left behind.
    let warned = out["warningAfterSecs"].as_u64().unwrap();
    let signed_out = out["signedOutAfterSecs"].as_u64().unwrap();
    assert!(warned < signed_out, "{out}");
    let after = &out["afterIdle"];
    assert_eq!(after["path"], "/sign-in", "{out}");
    assert!(
        after["notice"]
            .as_str()
            .is_some_and(|n| n.contains("without activity")),
        "{out}"
    );
    assert_eq!(after["markerInDom"], false, "{out}");
    assert_eq!(after["localStorage"], 0, "{out}");
    assert_eq!(after["sessionStorage"], 0, "{out}");
    // IndexedDB holds this browser's keys for secure messages, which outlive a sign-out, and
    // what it trusts: CryptoKeys that cannot be read out, public keys and ids; no health data.
    assert_eq!(after["indexedDb"], json!(["haven-device"]), "{out}");
    assert_device_database_holds_keys_and_public_data(&after["deviceDatabase"]);
    assert_eq!(after["healthDataInDeviceDatabase"], false, "{out}");
    assert_eq!(out["afterBack"]["markerInDom"], false, "{out}");
    assert_eq!(out["afterBack"]["path"], "/sign-in", "{out}");

    // Haven ended the session too: the patient's last session closed with a logout.
    let events = server.audit_entries().await;
    let patient_user = events
        .iter()
        .rev()
        .find(|e| e.event.role.as_deref() == Some("patient") && e.event.action.as_str() == "login")
        .and_then(|e| e.event.actor.clone())
        .expect("the patient signed in");
    let logouts = events
        .iter()
        .filter(|e| {
            e.event.actor.as_deref() == Some(patient_user.as_str())
                && e.event.action.as_str() == "logout"
        })
        .count();
    assert_eq!(logouts, 2, "signed out by hand, then by the idle time-out");

    for file in out["screenshots"].as_array().unwrap() {
        let file = Path::new(file.as_str().unwrap());
        assert!(
            file.metadata().is_ok_and(|m| m.len() > 1000),
            "{} was written",
            file.display()
        );
    }
    server.stop().await;
}

/// Asserts that the `haven-device` database, as `describeDeviceDatabase` in portal.mjs
/// reads it, holds one device whose private keys are non-extractable CryptoKeys, and trust
/// records of the known kinds, whose every value is public: ids, fingerprints, base64 public
/// keys, the log's verifier key, times.
fn assert_device_database_holds_keys_and_public_data(database: &Value) {
    let stores = database
        .as_object()
        .expect("the haven-device database was read");
    assert_eq!(
        stores.keys().collect::<Vec<_>>(),
        ["devices", "trust"],
        "{database}"
    );
    let devices = database["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "one device, the patient's: {database}");
    let device = &devices[0];
    let mut fields: Vec<&str> = device
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["createdAtMs", "hpke", "signing", "userId"],
        "{device}"
    );
    for (pair, algorithm) in [("hpke", "X25519"), ("signing", "Ed25519")] {
        assert_eq!(
            device[pair]["privateKey"],
            json!({ "cryptoKey": "private", "algorithm": algorithm, "extractable": false }),
            "{device}"
        );
        assert_eq!(
            device[pair]["publicKey"],
            json!({ "cryptoKey": "public", "algorithm": algorithm, "extractable": true }),
            "{device}"
        );
    }
    let public_text = |text: &str| {
        let is_id = uuid::Uuid::try_parse(text).is_ok();
        let is_hex = text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit());
        let is_base64 = text.len() == 44 && text.ends_with('=');
        let is_vkey = text.splitn(3, '+').count() == 3;
        is_id || is_hex || is_base64 || is_vkey
    };
    for record in database["trust"].as_array().unwrap() {
        let key = record["key"].as_str().unwrap();
        match key.split_once(':').map_or(key, |(kind, _)| kind) {
            "audit-log-vkey" => assert!(public_text(record["vkey"].as_str().unwrap()), "{record}"),
            "registration" => {
                assert!(
                    public_text(record["deviceId"].as_str().unwrap()),
                    "{record}"
                );
                assert!(
                    public_text(record["fingerprint"].as_str().unwrap()),
                    "{record}"
                );
            }
            "known-devices" => {
                for (user, devices) in record["users"].as_object().unwrap() {
                    assert!(public_text(user), "{record}");
                    for (id, device) in devices.as_object().unwrap() {
                        assert!(public_text(id), "{record}");
                        assert!(
                            public_text(device["fingerprint"].as_str().unwrap()),
                            "{record}"
                        );
                        assert!(
                            public_text(device["signingPublicKey"].as_str().unwrap()),
                            "{record}"
                        );
                    }
                }
            }
            other => panic!("an unexpected trust record {other}: {record}"),
        }
    }
}

/// Asserts that a journey's pages kept to the policy: nothing from another origin, no
/// policy violation, every page under the policy, no server error, no app fault, no page
/// wider than a 360 px phone, and nothing a screen-reader user would trip over.
fn assert_well_behaved(out: &Value) {
    assert_eq!(out["accessibility"], json!([]), "{out}");
    assert_eq!(out["phoneOverflow"], json!([]), "{out}");
    assert_eq!(out["foreignRequests"], json!([]), "{out}");
    assert_eq!(out["serverErrors"], json!([]), "{out}");
    assert_eq!(out["cspViolations"], json!([]), "{out}");
    assert_eq!(out["documentsWithoutCsp"], json!([]), "{out}");
    assert_eq!(out["consoleErrors"], json!([]), "{out}");
}

async fn a_clinician_signs_in_with_a_passkey_writes_a_note_and_breaks_the_glass(backend: Backend) {
    use haven_app::Clock;
    let server = TestServer::start_in_real_time(backend).await;
    let cared = server.create_patient("Lovelace").await;
    let stranger = server.create_patient("Babbage").await;
    let clinician = server.user(Role::Clinician, None).await;
    let officer = server.user(Role::PrivacyOfficer, None).await;
    server.add_to_care_team(cared, clinician.id).await;
    // A result in the cared-for patient's chart, and their request to correct it.
    let result = create(&server, &clinician.token, "Observation", json!({
                "resourceType": "Observation",
                "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
                "subject": {"reference": format!("Patient/{cared}")},
                "effectiveDateTime": "2026-11-20T09:00:00Z",
                "valueQuantity": {"value": 130, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
            })).await;
    let result_ref = format!("Observation/{}", result["id"].as_str().unwrap());
    // A visit booked with the cared-for patient, for the clinician's schedule.
    let tomorrow = (time::OffsetDateTime::now_utc() + time::Duration::days(1))
        .replace_time(time::macros::time!(10:00));
    create(&server, &clinician.token, "Appointment", json!({
                "resourceType": "Appointment",
                "status": "booked",
                "description": "Video follow-up HVN-3391",
                "start": tomorrow.format(&time::format_description::well_known::Rfc3339).unwrap(),
                "end": (tomorrow + time::Duration::minutes(20))
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap(),
                "participant": [{"actor": {"reference": format!("Patient/{cared}")}, "status": "accepted"}]
            })).await;
    // An earlier reading, so the chart has a line to draw.
    create(&server, &clinician.token, "Observation", json!({
                "resourceType": "Observation",
                "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
                "subject": {"reference": format!("Patient/{cared}")},
                "effectiveDateTime": "2026-11-10T09:00:00Z",
                "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
            })).await;
    let patient_self = server.user(Role::Patient, Some(cared)).await;
    let correction = "Taken just after climbing the stairs HVN-6018";
    let request = create(&server, &patient_self.token, "Task", json!({
                "resourceType": "Task",
                "status": "requested",
                "intent": "proposal",
                "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "change"}]},
                "description": "The reading was not at rest.",
                "focus": {"reference": result_ref},
                "for": {"reference": format!("Patient/{cared}")},
                "input": [{"type": {"text": "Requested correction"}, "valueString": correction}]
            })).await;

    // Both set up TOTP with the current step's code; the browser uses a later one.
    let step_min = server.clock.now_ms() / 1000 / 30 + 1;

    let note = "Reviewed home readings HVN-5521; continue current dose.";
    let reason = "Unconscious in the emergency department, no records reachable";
    let screenshots = screenshot_dir(backend);
    // Passkeys are bound to localhost (browsers refuse them on an IP address).
    let url = server.url.replace("127.0.0.1", "localhost");
    let out = run_script_for(
        "workspace.mjs",
        &[
            ("HAVEN_URL", &url),
            ("HAVEN_PASSWORD", haven_test_support::TEST_PASSWORD),
            ("HAVEN_CLINICIAN_LOGIN", &clinician.login),
            (
                "HAVEN_CLINICIAN_TOTP",
                clinician.totp_secret.as_deref().unwrap(),
            ),
            ("HAVEN_OFFICER_LOGIN", &officer.login),
            (
                "HAVEN_OFFICER_TOTP",
                officer.totp_secret.as_deref().unwrap(),
            ),
            ("HAVEN_TOTP_STEP_MIN", &step_min.to_string()),
            ("HAVEN_CARED", "Lovelace"),
            ("HAVEN_STRANGER", "Babbage"),
            ("HAVEN_NOTE", note),
            ("HAVEN_CORRECTION", correction),
            ("HAVEN_REASON", reason),
            ("HAVEN_SCREENSHOTS", &screenshots.display().to_string()),
        ],
        JOURNEY_TIMEOUT_SECS,
    )
    .await;
    assert_well_behaved(&out);
    assert_eq!(out["passkeySignIn"], "/workspace", "{out}");
    let pending = out["pendingRequests"].as_str().unwrap();
    assert!(
        pending.contains("Lovelace") && pending.contains("The reading was not at rest."),
        "{pending:?}"
    );
    let schedule = out["schedule"].as_str().unwrap();
    assert!(
        schedule.contains("Lovelace") && schedule.contains("Video follow-up HVN-3391"),
        "{schedule:?}"
    );
    let my_patients = out["myPatients"].as_str().unwrap();
    assert!(
        my_patients.contains("Lovelace") && !my_patients.contains("Babbage"),
        "{my_patients:?}"
    );
    let listed = |key: &str| out[key].as_str().unwrap().to_owned();
    assert!(listed("caredListed").contains("in your care"), "{out}");
    assert!(
        listed("strangerListed").contains("not in your care"),
        "{out}"
    );
    assert_eq!(out["noteShown"], true, "{out}");
    // Window titles go into the browser's history: the chart's names no patient.
    assert_eq!(out["chartWindowTitle"], "Chart · Haven", "{out}");
    let chart = out["vitalsChart"].as_str().unwrap();
    assert!(
        chart.starts_with("Heart rate: 2 readings") && chart.contains("latest 130 /min"),
        "{chart:?}"
    );
    assert!(
        listed("breakGlassBanner").contains("Emergency access"),
        "{out}"
    );
    assert_eq!(out["queued"], 1, "{out}");
    assert!(
        listed("queuedText").contains(&stranger.to_string()),
        "{out}"
    );
    assert_eq!(out["reviewed"], true, "{out}");
    assert!(
        listed("checkpointStatus").contains("the signature is valid"),
        "{out}"
    );
    assert!(listed("lastVerification").contains("entries and"), "{out}");
    assert!(out["breakGlassRows"].as_u64().unwrap() >= 1, "{out}");
    assert!(listed("breakGlassRow").contains("break_glass"), "{out}");
    let csv = listed("csv");
    assert!(csv.starts_with("seq,"), "{csv}");
    assert!(
        csv.lines()
            .skip(1)
            .all(|line| line.contains(",break_glass,")),
        "only the selected action: {csv}"
    );
    assert!(csv.contains(&stranger.to_string()), "{csv}");

    // What Haven holds: the passkey sign-in, the note in the chart, the reviewed grant.
    let events = server.audit_entries().await;
    let clinician_id = clinician.id.to_string();
    assert!(
        events
            .iter()
            .any(|e| e.event.actor.as_deref() == Some(clinician_id.as_str())
                && e.event.action.as_str() == "login"
                && e.event.reason == "signed_in_passkey")
    );
    let notes: Value = server
        .get_json(
            &clinician.token,
            &format!("/fhir/DocumentReference?patient={cared}"),
        )
        .await;
    assert_eq!(notes["entry"].as_array().map(Vec::len), Some(1), "{notes}");
    let stored = &notes["entry"][0]["resource"];
    assert_eq!(stored["description"], "Follow-up");
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD
        .decode(stored["content"][0]["attachment"]["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(text).unwrap(), note);
    // The correction was accepted: the request is completed and the record carries it.
    assert_eq!(out["correctionAccepted"], true, "{out}");
    let answered: Value = server
        .get_as(
            &patient_self.token,
            &format!("/fhir/Task/{}", request["id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answered["status"], "completed", "{answered}");
    let corrected: Value = server
        .get_json(&patient_self.token, &format!("/fhir/{result_ref}"))
        .await;
    assert_eq!(corrected["meta"]["versionId"], "2", "{corrected}");
    assert!(
        corrected["note"].to_string().contains(correction),
        "{corrected}"
    );

    let grants: Value = server
        .get_json(&officer.token, "/api/v1/break-glass?state=all")
        .await;
    assert_eq!(
        grants["items"].as_array().map(Vec::len),
        Some(1),
        "{grants}"
    );
    assert_eq!(grants["items"][0]["patient"], stranger.to_string());
    assert_eq!(grants["items"][0]["reason"], reason);
    assert_eq!(grants["items"][0]["review_state"], "justified");
    server.stop().await;
}

async fn an_administrator_steps_up_to_invite_change_a_policy_and_disable_a_user(backend: Backend) {
    use haven_app::Clock;
    let server = TestServer::start_in_real_time(backend).await;
    let admin = server.user(Role::Administrator, None).await;
    let nurse = server.user(Role::Nurse, None).await;
    let step_min = server.clock.now_ms() / 1000 / 30 + 1;
    let state = server.data_dir.path().join("browser-state.json");
    let screenshots = screenshot_dir(backend);
    let url = server.url.replace("127.0.0.1", "localhost");
    let step_min = step_min.to_string();
    let run = |phase: &'static str, offset_secs: u64| {
        let offset = offset_secs.to_string();
        let state = state.display().to_string();
        let screenshots = screenshots.display().to_string();
        let url = url.clone();
        let admin = admin.clone();
        let step_min = step_min.clone();
        let nurse_login = nurse.login.clone();
        async move {
            run_script_for(
                "admin.mjs",
                &[
                    ("HAVEN_URL", &url),
                    ("HAVEN_PHASE", phase),
                    ("HAVEN_STATE", &state),
                    ("HAVEN_PASSWORD", haven_test_support::TEST_PASSWORD),
                    ("HAVEN_LOGIN", &admin.login),
                    ("HAVEN_TOTP", admin.totp_secret.as_deref().unwrap()),
                    ("HAVEN_TOTP_STEP_MIN", &step_min),
                    ("HAVEN_CLOCK_OFFSET_SECS", &offset),
                    ("HAVEN_DISABLE", &nurse_login),
                    ("HAVEN_SCREENSHOTS", &screenshots),
                ],
                SCRIPT_TIMEOUT_SECS,
            )
            .await
        }
    };
    let signed_in = run("sign-in", 0).await;
    assert_well_behaved(&signed_in);
    assert_eq!(signed_in["signedIn"], true, "{signed_in}");

    // Time passes: the sign-in is now older than a sensitive change allows.
    let waited = u64::try_from(haven_app::identity::STEP_UP_FRESH_SECS).unwrap() + 1;
    server.clock.advance(Duration::from_secs(waited));
    let out = run("manage", waited).await;
    assert_well_behaved(&out);
    assert_eq!(out["steppedUp"], true, "{out}");
    assert_eq!(out["inertUnderDialog"], true, "{out}");
    assert_eq!(out["inertAfterDialog"], false, "{out}");
    assert_eq!(out["policySaved"], true, "{out}");
    assert!(
        out["disabledRow"].as_str().unwrap().contains("Disabled"),
        "{out}"
    );
    let keys = out["keyStatus"].as_str().unwrap();
    assert!(
        keys.contains("Never") && keys.contains("None"),
        "a fresh deployment's keys: {keys:?}"
    );

    // The link enrols a nurse, once.
    let link = out["invitationLink"].as_str().unwrap();
    let invitation = link
        .strip_prefix(&format!("{url}/enrol#"))
        .unwrap_or_else(|| panic!("an enrolment link: {link}"));
    let enrol = |login: &'static str| {
        server.post_as(
            None,
            "/api/v1/auth/enrol",
            json!({ "invitation": invitation, "login": login,
                "password": "marble kettle on the hill", "transport": "bearer" }),
        )
    };
    let enrolled = enrol("sam@north.example").await;
    assert_eq!(enrolled.status(), StatusCode::CREATED);
    assert_eq!(
        enrol("kim@north.example").await.status(),
        StatusCode::UNAUTHORIZED,
        "a spent invitation"
    );

    // The policy and the disabled account, as Haven holds them.
    let organisation: Value = server.get_json(&admin.token, "/api/v1/organisation").await;
    assert_eq!(organisation["idle_timeout_secs"], 600, "{organisation}");
    assert_eq!(
        server.get_as(&nurse.token, "/api/v1/me").await.status(),
        StatusCode::UNAUTHORIZED,
        "a disabled user's session ends"
    );
    server.stop().await;
}

async fn a_parent_sees_their_childs_record_within_the_delegation(backend: Backend) {
    let server = TestServer::start_in_real_time(backend).await;
    let child = server.create_patient("Lovelace").await;
    let clinician = server.user(Role::Clinician, None).await;
    server.add_to_care_team(child, clinician.id).await;
    let marker = "Haemoglobin HVN-2264";
    create(&server, &clinician.token, "Observation", json!({
                "resourceType": "Observation",
                "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Haemoglobin"}], "text": marker},
                "subject": {"reference": format!("Patient/{child}")},
                "effectiveDateTime": "2026-11-18T09:00:00Z",
                "valueQuantity": {"value": 12.9, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}
            })).await;
    // The front desk, having seen the parent's papers, offers them the record (not its log).
    let desk = server.user(Role::FrontDesk, None).await;
    let offered = server
        .post_as(
            Some(&desk.token),
            &format!("/api/v1/patients/{child}/delegations"),
            json!({ "relationship": "parent", "scopes": ["record"], "days": 30 }),
        )
        .await;
    assert_eq!(offered.status(), StatusCode::CREATED);
    let offered: Value = offered.json().await.unwrap();
    // The parent has an account of their own, with no record.
    let parent = server.user(Role::Patient, None).await;

    let out = run_script(
        "proxy.mjs",
        &[
            ("HAVEN_URL", &server.url.replace("127.0.0.1", "localhost")),
            ("HAVEN_LOGIN", &parent.login),
            ("HAVEN_PASSWORD", haven_test_support::TEST_PASSWORD),
            ("HAVEN_OFFER", offered["offer"].as_str().unwrap()),
            ("HAVEN_MARKER", marker),
            (
                "HAVEN_SCREENSHOTS",
                &screenshot_dir(backend).display().to_string(),
            ),
        ],
    )
    .await;
    assert_well_behaved(&out);
    assert_eq!(out["noRecordAtFirst"], true, "{out}");
    assert!(out["homeText"].as_str().unwrap().contains(marker), "{out}");
    let navigation = out["navigation"].as_str().unwrap();
    assert!(navigation.contains("Record"), "{navigation:?}");
    assert!(
        !navigation.contains("Who accessed"),
        "the delegation does not cover the access log: {navigation:?}"
    );
    assert_eq!(
        out["correctionLinks"], 0,
        "corrections are the patient's own: {out}"
    );
    server.stop().await;
}

/// The file the messaging journey attaches, made the same way as in messaging.mjs: a PNG's
/// signature, a line with the marker, and 300 000 bytes of a fixed pattern.
fn journey_attachment(marker: &str) -> Vec<u8> {
    let mut file = vec![0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
    file.extend_from_slice(format!("rash photo, day 3 {marker}\n").as_bytes());
    file.extend((0..300_000u32).map(|i| u8::try_from(i * 7919 % 251).unwrap()));
    file
}

async fn sealed_messaging_between_a_patient_and_two_browsers_of_their_clinician(backend: Backend) {
    use haven_app::Clock;
    // The browser keeps real time (the authenticator's codes), so Haven does.
    let server = TestServer::start_in_real_time(backend).await;
    let patient = server.create_patient("Lovelace").await;
    let patient_user = server.user(Role::Patient, Some(patient)).await;
    let clinician = server.user(Role::Clinician, None).await;
    server.add_to_care_team(patient, clinician.id).await;
    let marker = format!("HVN-MSG-{}", uuid::Uuid::new_v4().simple());
    // The clinician set up TOTP with the current step's code; the browsers use later ones.
    let step_min = server.clock.now_ms() / 1000 / 30 + 1;
    let screenshots = screenshot_dir(backend);
    let url = server.url.replace("127.0.0.1", "localhost");
    let spy_label = "Desk 2";
    let spy = std::sync::Mutex::new(None::<String>);
    let clinician_id = clinician.id;
    let (first, out) = run_two_phase_script(
        "messaging.mjs",
        &[
            ("HAVEN_URL", &url),
            ("HAVEN_PASSWORD", haven_test_support::TEST_PASSWORD),
            ("HAVEN_PATIENT_LOGIN", &patient_user.login),
            ("HAVEN_CLINICIAN_LOGIN", &clinician.login),
            (
                "HAVEN_CLINICIAN_TOTP",
                clinician.totp_secret.as_deref().unwrap(),
            ),
            ("HAVEN_TOTP_STEP_MIN", &step_min.to_string()),
            ("HAVEN_MARKER", &marker),
            ("HAVEN_SCREENSHOTS", &screenshots.display().to_string()),
        ],
        |first| {
            let server = &server;
            let spy = &spy;
            async move {
                assert_eq!(first["phase"], "first", "{first}");
                let id = server
                    .insert_unpublished_device(clinician_id, spy_label)
                    .await;
                *spy.lock().unwrap() = Some(id.clone());
                json!({ "spy": id, "label": spy_label }).to_string()
            }
        },
    )
    .await;
    let spy = spy.into_inner().unwrap().expect("the device was written");
    assert_well_behaved(&out);
    let text = |key: &str| {
        out[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} in {out}"))
            .to_owned()
    };

    // Two devices of the clinician's, each with its own safety number.
    assert_eq!(out["clinicianDevices"], 2, "{out}");
    assert_ne!(out["deskSafetyNumber"], out["laptopSafetyNumber"], "{out}");
    // The message and its answer, opened in every browser; the events arrived live.
    let question = format!("My rash is spreading, photo attached {marker}");
    let answer = format!("Thank you, it looks like contact dermatitis {marker}");
    for key in ["patientSees", "laptopSees", "deskSees"] {
        assert!(text(key).contains(&question), "{key}: {out}");
    }
    let words = |key: &str| text(key).split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words("deskUnread").contains("1 unread"), "{out}");
    assert!(
        words("deskNavigation").contains("Messages 1 unread"),
        "{out}"
    );
    assert_eq!(
        out["liveWithoutReload"],
        json!({ "desk": "desk", "laptop": "laptop" }),
        "{out}"
    );
    let events = |browser: &str| -> Vec<String> {
        out["events"][browser]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap().to_owned())
            .collect()
    };
    for browser in ["desk", "laptop"] {
        let got = events(browser);
        assert!(
            got.iter().any(|e| e == "participants") && got.iter().any(|e| e == "message"),
            "{browser}: {got:?}"
        );
    }
    let got = events("patient");
    assert!(
        got.iter().any(|e| e == "read") && got.iter().any(|e| e == "message"),
        "{got:?}"
    );
    // The file, decrypted in both of the clinician's browsers: the bytes the patient sent.
    let file = journey_attachment(&marker);
    for key in ["deskDownload", "laptopDownload"] {
        assert_eq!(
            out[key],
            json!({ "name": "rash.png", "size": file.len(), "same": true }),
            "{key}: {out}"
        );
    }
    // The answer reached the patient, whose message shows it was seen.
    let seen_under = text("seenUnder");
    assert!(
        seen_under.starts_with("You")
            && seen_under.contains(&question)
            && seen_under.contains("Seen"),
        "{seen_under:?}"
    );
    let thread = text("patientThread");
    assert!(
        thread.contains(&answer) && thread.contains("Clinician (…"),
        "{thread:?}"
    );
    assert!(text("patientWith").contains("Clinician (…"), "{out}");
    // The safety numbers the patient can compare: their own device and both of the clinician's.
    let safety = text("safetyList");
    assert_eq!(
        safety.matches("Verified in the transparency log").count(),
        3,
        "{safety:?}"
    );
    for key in ["deskSafetyNumber", "laptopSafetyNumber"] {
        assert!(safety.contains(&text(key)), "{key} in {safety:?}");
    }
    assert_eq!(out["warningsBefore"], 0, "{out}");
    assert!(text("filed").starts_with("Filed to chart"), "{out}");

    // The device nobody published: named in a warning, withheld from the next message,
    // which still reached the clinician's desk, live.
    let warning = text("withheldWarning");
    for expected in ["Clinician (…", spy_label, "not in the transparency log"] {
        assert!(warning.contains(expected), "{expected} in {warning:?}");
    }
    assert_eq!(out["spyNamed"], true, "{out}");
    let sent = out["sentRequests"].as_array().unwrap();
    assert_eq!(sent.len(), 2, "{out}");
    assert_eq!(sent[1]["withheld"], json!([spy]), "still withheld: {out}");
    assert_eq!(
        sent[1]["keys"].as_array().unwrap().len(),
        3,
        "the laptop's new device: {out}"
    );
    assert_eq!(sent[0]["withheld"], json!([spy]), "{out}");
    let keys = sent[0]["keys"].as_array().unwrap();
    assert_eq!(
        keys.len(),
        3,
        "the patient's device and the clinician's two: {out}"
    );
    assert!(keys.iter().all(|k| *k != json!(spy)), "{out}");
    assert_eq!(out["deskSeesAfter"], true, "{out}");
    assert_eq!(out["deskLiveAfter"], "desk", "{out}");

    // The clinician's own list of devices flags the one they never added.
    let spy_row = text("accountSpyRow");
    assert!(
        spy_row.contains("Not verified: not in the transparency log"),
        "{spy_row:?}"
    );
    // The laptop, removed from the clinician's devices, said so and was set up again; the
    // patient was told of the new device, with the safety number the laptop shows.
    assert!(
        text("removedNotice").contains("removed from your devices"),
        "{out}"
    );
    let new_laptop = text("newLaptopSafetyNumber");
    assert_ne!(new_laptop, text("laptopSafetyNumber"), "new keys: {out}");
    let notice = text("newDeviceNotice");
    assert!(
        notice.contains("Clinician (…")
            && notice.contains("has a new device")
            && notice.contains(&new_laptop),
        "{notice:?}"
    );
    // Its new keys open what was sent since, and nothing sealed to the old ones.
    let laptop_after = text("laptopAfterSetUpAgain");
    assert!(
        laptop_after.contains(&format!("Thank you both {marker}")),
        "{laptop_after:?}"
    );
    assert!(!laptop_after.contains(&question), "{laptop_after:?}");
    assert!(
        laptop_after.contains("Sent before this browser was set up"),
        "{laptop_after:?}"
    );
    let _ = first;

    // Filed to the chart: a Communication with the message's text, from the patient, and
    // the file as a Binary of the chart, byte for byte.
    let filed: Value = server
        .get_json(
            &clinician.token,
            &format!("/fhir/Communication?patient={patient}"),
        )
        .await;
    assert_eq!(filed["entry"].as_array().map(Vec::len), Some(1), "{filed}");
    let communication = &filed["entry"][0]["resource"];
    assert_eq!(communication["status"], "completed", "{communication}");
    assert_eq!(
        communication["subject"]["reference"],
        format!("Patient/{patient}")
    );
    assert_eq!(
        communication["sender"]["reference"],
        format!("Patient/{patient}")
    );
    assert_eq!(communication["payload"][0]["contentString"], question);
    let binary = communication["payload"][1]["contentAttachment"]["url"]
        .as_str()
        .unwrap();
    assert!(binary.starts_with("Binary/"), "{communication}");
    let stored = server
        .get_as(&clinician.token, &format!("/fhir/{binary}"))
        .await;
    assert_eq!(stored.status(), StatusCode::OK);
    assert_eq!(stored.bytes().await.unwrap().as_ref(), file.as_slice());

    // Haven relayed and stored ciphertext only: the marker is nowhere in its database (the
    // filed copy is sealed under the patient's key like every record) or its audit log.
    let raw = server.raw_database_bytes().await;
    assert!(
        !raw.windows(marker.len()).any(|w| w == marker.as_bytes()),
        "a message's text reached the database"
    );
    for entry in server.audit_entries().await {
        assert!(!format!("{:?}", entry.event).contains(&marker), "{entry:?}");
    }
    for file in out["screenshots"].as_array().unwrap() {
        let file = Path::new(file.as_str().unwrap());
        assert!(
            file.metadata().is_ok_and(|m| m.len() > 1000),
            "{} was written",
            file.display()
        );
    }
    server.stop().await;
}

/// Who a visit journey signs in, and where: every visit script gets these.
struct VisitCast<'a> {
    server: &'a TestServer,
    backend: Backend,
    visit: &'a str,
    patient: &'a haven_test_support::TestUser,
    clinician: &'a haven_test_support::TestUser,
}

/// Runs `journey` of visit.mjs for `cast`, with the journey's own settings in `extra`, given
/// long enough for Chromium's fake camera to be encoded, sealed and decoded by every page.
async fn run_visit_script(journey: &str, cast: &VisitCast<'_>, extra: &[(&str, &str)]) -> Value {
    use haven_app::Clock;
    // The first TOTP step the script may use: one the enrolments did not.
    let step_min = (cast.server.clock.now_ms() / 1000 / 30 + 1).to_string();
    let url = cast.server.url.replace("127.0.0.1", "localhost");
    let screenshots = screenshot_dir(cast.backend).display().to_string();
    let mut env = vec![
        ("HAVEN_JOURNEY", journey),
        ("HAVEN_URL", url.as_str()),
        ("HAVEN_PASSWORD", haven_test_support::TEST_PASSWORD),
        ("HAVEN_VISIT", cast.visit),
        ("HAVEN_PATIENT_LOGIN", cast.patient.login.as_str()),
        ("HAVEN_CLINICIAN_LOGIN", cast.clinician.login.as_str()),
        (
            "HAVEN_CLINICIAN_TOTP",
            cast.clinician
                .totp_secret
                .as_deref()
                .expect("staff have TOTP"),
        ),
        ("HAVEN_TOTP_STEP_MIN", step_min.as_str()),
        ("HAVEN_SCREENSHOTS", screenshots.as_str()),
    ];
    env.extend_from_slice(extra);
    run_script_for("visit.mjs", &env, VISIT_SCRIPT_TIMEOUT_SECS).await
}

/// Sign-ins, TOTP steps, the call's set-up and up to a minute of waiting for video per page.
const VISIT_SCRIPT_TIMEOUT_SECS: u64 = 400;

/// Books a video visit with `patient`, starting `starts_in_ms` from Haven's now, for 20
/// minutes, as `by`; its Appointment id.
async fn book_visit(
    server: &TestServer,
    by: &haven_test_support::TestUser,
    patient: haven_domain::PatientId,
    starts_in_ms: i64,
) -> String {
    use haven_app::Clock;
    let rfc3339 = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let start = server.clock.now_ms() + starts_in_ms;
    let booked = create(
        server,
        &by.token,
        "Appointment",
        json!({
            "resourceType": "Appointment",
            "status": "booked",
            "start": rfc3339(start),
            "end": rfc3339(start + 20 * 60 * 1000),
            "participant": [{"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"}],
        }),
    )
    .await;
    booked["id"].as_str().unwrap().to_owned()
}

/// The visit entries of the audit log: action, actor and outcome.
async fn visit_audit(server: &TestServer) -> Vec<(haven_audit::AuditAction, String, String)> {
    server
        .audit_entries()
        .await
        .into_iter()
        .filter(|e| e.event.resource_type.as_deref() == Some("Visit"))
        .map(|e| {
            (
                e.event.action,
                e.event.actor.unwrap_or_default(),
                e.event.outcome.as_str().to_owned(),
            )
        })
        .collect()
}

/// What `probe(10)` must answer: ten frames, each sealed, each opening with the sender's
/// current key and none with a random one.
fn sealed_probe() -> Value {
    json!({ "frames": 10, "sealed": 10, "openWithKey": 10, "openWithoutKey": 0 })
}

/// A page's `sealing()`: it sent frames, and its frame encryption sealed every one of them.
fn assert_all_sealed(sealing: &Value) {
    let sent = sealing["framesSent"]
        .as_u64()
        .unwrap_or_else(|| panic!("{sealing}"));
    let sealed = sealing["framesSealed"].as_u64().unwrap();
    assert!(sent > 0, "nothing was sent: {sealing}");
    assert!(sealed >= sent, "frames left unsealed: {sealing}");
}

/// `stats()` of a page: the peer `member`'s entry.
fn peer_stats(stats: &Value, member: &Value) -> Value {
    stats
        .as_array()
        .unwrap_or_else(|| panic!("stats: {stats}"))
        .iter()
        .find(|p| p["member"] == *member)
        .unwrap_or_else(|| panic!("no peer {member} in {stats}"))
        .clone()
}

fn assert_screenshots_written(out: &Value) {
    for file in out["screenshots"].as_array().unwrap() {
        let file = Path::new(file.as_str().unwrap());
        assert!(
            file.metadata().is_ok_and(|m| m.len() > 1000),
            "{} was written",
            file.display()
        );
    }
}

async fn a_video_visit_from_the_waiting_room_to_the_end(backend: Backend) {
    use haven_audit::AuditAction;
    let started = std::time::Instant::now();
    // The browsers keep real time (the authenticator's codes, the visit's window), so Haven does.
    let server = TestServer::start_in_real_time(backend).await;
    let patient = server.create_patient("Lovelace").await;
    let patient_user = server.user(Role::Patient, Some(patient)).await;
    let clinician = server.user(Role::Clinician, None).await;
    server.add_to_care_team(patient, clinician.id).await;
    let visit = book_visit(&server, &clinician, patient, 5 * 60 * 1000).await;
    let marker = format!("HVN-VISIT-{}", uuid::Uuid::new_v4().simple());
    let cast = VisitCast {
        server: &server,
        backend,
        visit: &visit,
        patient: &patient_user,
        clinician: &clinician,
    };
    let out = run_visit_script("visit", &cast, &[("HAVEN_MARKER", &marker)]).await;
    assert_well_behaved(&out);
    let text = |key: &str| {
        out[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} in {out}"))
            .to_owned()
    };

    // Both found the visit from their home page.
    let path = format!("/visits/{visit}");
    assert_eq!(out["homeLink"], path.as_str(), "{out}");
    assert_eq!(out["scheduleLink"], path.as_str(), "{out}");
    // Waiting, the patient had no call on the page and no peer connection.
    assert!(
        text("waitingRoom").contains("Waiting for your clinician"),
        "{out}"
    );
    assert_eq!(out["callWhileWaiting"], 0, "{out}");
    assert_eq!(out["statsWhileWaiting"], json!([]), "{out}");
    assert!(text("lobby").contains("Patient"), "{out}");

    // Video both ways, decoded; what left each browser was sealed under its key.
    let members = &out["members"];
    assert_ne!(members["patient"], members["clinician"], "{out}");
    let from_clinician = peer_stats(&out["patientStats"], &members["clinician"]);
    let from_patient = peer_stats(&out["clinicianStats"], &members["patient"]);
    for peer in [&from_clinician, &from_patient] {
        assert!(peer["framesDecoded"].as_u64().unwrap() > 0, "{out}");
    }
    assert_eq!(out["patientProbe"], sealed_probe(), "{out}");
    assert_eq!(out["clinicianProbe"], sealed_probe(), "{out}");
    // Screen sharing: the patient decoded the clinician's screen (wider than the 640 px the
    // page asks of the camera) in place of the camera, sealed like the camera, then the
    // camera again.
    let share = &out["screenShare"];
    let width = |phase: &str| share[phase]["width"].as_u64().unwrap();
    assert!((1..=640).contains(&width("camera")), "{share}");
    assert!(width("sharing") > 640, "{share}");
    assert!((1..=640).contains(&width("after")), "{share}");
    assert!(
        share["after"]["framesDecoded"].as_u64() > share["camera"]["framesDecoded"].as_u64(),
        "{share}"
    );
    assert_eq!(share["probe"], sealed_probe(), "{share}");
    assert_all_sealed(&out["patientSealing"]);
    assert_all_sealed(&out["clinicianSealing"]);

    // Each holds the other's key from a device checked against the log: the one the other
    // shows as its own.
    let patient_keys = text("patientKeyHolders");
    assert!(
        patient_keys.contains("Clinician · device checked against the transparency log"),
        "{patient_keys:?}"
    );
    assert!(
        patient_keys.contains(&text("clinicianSafetyNumber")),
        "{patient_keys:?}"
    );
    let clinician_keys = text("clinicianKeyHolders");
    assert!(
        clinician_keys.contains("Patient · device checked against the transparency log"),
        "{clinician_keys:?}"
    );
    assert!(
        clinician_keys.contains(&text("patientSafetyNumber")),
        "{clinician_keys:?}"
    );
    assert_ne!(out["patientSafetyNumber"], out["clinicianSafetyNumber"]);
    assert_eq!(out["deviceWarnings"], 0, "{out}");

    // The chat line reached the patient, from the clinician.
    let line = format!("Please hold the rash up to the camera {marker}");
    assert!(
        text("patientChat").contains(&format!("Clinician: {line}")),
        "{out}"
    );
    assert!(
        text("clinicianChat").contains(&format!("You: {line}")),
        "{out}"
    );
    // It went through Haven's relay as a sealed `chat` signal: never in the clear.
    let kinds = out["relayedKinds"].as_array().unwrap();
    for kind in ["description", "candidate", "key", "chat"] {
        assert!(kinds.contains(&json!(kind)), "{kind} in {kinds:?}");
    }
    assert_eq!(out["markerOnTheWire"], 0, "{out}");

    // Ended for everyone, and ended it stays.
    for who in ["patient", "clinician"] {
        assert_eq!(out[format!("{who}Ended")]["phase"], "ended", "{out}");
        let reopened = &out[format!("{who}Reopened")];
        assert_eq!(reopened["state"], "ended", "{out}");
        assert_eq!(reopened["join"], 0, "{out}");
    }
    assert!(
        out["patientEnded"]["text"]
            .as_str()
            .unwrap()
            .contains("The visit has ended"),
        "{out}"
    );

    // Haven recorded who came, whom the clinician let in and the end.
    let entries = visit_audit(&server).await;
    let allowed = |action: AuditAction, actor: String| {
        entries
            .iter()
            .filter(|(a, who, outcome)| *a == action && *who == actor && outcome == "allowed")
            .count()
    };
    assert_eq!(
        allowed(AuditAction::VisitJoin, patient_user.id.to_string()),
        1,
        "{entries:?}"
    );
    assert_eq!(
        allowed(AuditAction::VisitJoin, clinician.id.to_string()),
        1,
        "{entries:?}"
    );
    assert_eq!(
        allowed(AuditAction::VisitAdmit, clinician.id.to_string()),
        1,
        "{entries:?}"
    );
    assert_eq!(
        allowed(AuditAction::VisitEnd, clinician.id.to_string()),
        1,
        "{entries:?}"
    );

    // Haven relayed the chat sealed: the marker is nowhere in its database or audit log.
    let raw = server.raw_database_bytes().await;
    assert!(
        !raw.windows(marker.len()).any(|w| w == marker.as_bytes()),
        "a chat line reached the database"
    );
    for entry in server.audit_entries().await {
        assert!(!format!("{:?}", entry.event).contains(&marker), "{entry:?}");
    }
    assert_screenshots_written(&out);
    eprintln!(
        "a_video_visit_from_the_waiting_room_to_the_end ({backend:?}): {:.1} s; in the script (ms): {}",
        started.elapsed().as_secs_f64(),
        out["timings"]
    );
    server.stop().await;
}

async fn a_three_person_video_visit_through_the_relay(backend: Backend) {
    use haven_audit::AuditAction;
    let started = std::time::Instant::now();
    // A real coturn, sharing its secret with Haven through a file as a deployment would.
    let relay = haven_test_support::coturn::Coturn::start();
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("turn-secret");
    std::fs::write(&secret_file, relay.secret()).unwrap();
    let urls = relay.urls().join(",");
    let secret_path = secret_file.display().to_string();
    let server = TestServer::start_in_real_time_with(
        backend,
        &[
            ("HAVEN_TURN_URLS", &urls),
            ("HAVEN_TURN_SECRET_FILE", &secret_path),
        ],
    )
    .await;
    let patient = server.create_patient("Lovelace").await;
    let patient_user = server.user(Role::Patient, Some(patient)).await;
    let clinician = server.user(Role::Clinician, None).await;
    let nurse = server.user(Role::Nurse, None).await;
    server.add_to_care_team(patient, clinician.id).await;
    server.add_to_care_team(patient, nurse.id).await;
    let visit = book_visit(&server, &clinician, patient, 5 * 60 * 1000).await;
    let cast = VisitCast {
        server: &server,
        backend,
        visit: &visit,
        patient: &patient_user,
        clinician: &clinician,
    };
    let out = run_visit_script(
        "relay",
        &cast,
        &[
            ("HAVEN_NURSE_LOGIN", &nurse.login),
            ("HAVEN_NURSE_TOTP", nurse.totp_secret.as_deref().unwrap()),
        ],
    )
    .await;
    assert_well_behaved(&out);
    let members = &out["members"];

    // Everyone decoded both others, every one of them through the relay.
    for (page, others) in [
        ("patient", ["clinician", "nurse"]),
        ("clinician", ["patient", "nurse"]),
        ("nurse", ["patient", "clinician"]),
    ] {
        let stats = &out["decoding"][page];
        assert_eq!(stats.as_array().unwrap().len(), 2, "{page}: {out}");
        for other in others {
            let peer = peer_stats(stats, &members[other]);
            assert!(
                peer["framesDecoded"].as_u64().unwrap() > 0,
                "{page} from {other}: {out}"
            );
            assert_eq!(peer["relayed"], true, "{page} from {other}: {out}");
        }
    }
    // With `?relay=only` the browsers offered each other relay candidates and nothing else.
    let candidates = out["candidateTypes"].as_array().unwrap();
    assert!(!candidates.is_empty(), "{out}");
    assert!(candidates.iter().all(|c| c == "relay"), "{candidates:?}");
    // Each host is named by the role their checked device was published under.
    let holders = out["patientKeyHolders"].as_str().unwrap();
    for expected in [
        "Clinician · device checked against the transparency log",
        "Nurse · device checked against the transparency log",
    ] {
        assert!(holders.contains(expected), "{expected} in {holders:?}");
    }
    assert_eq!(out["nurseProbe"], sealed_probe(), "{out}");
    for page in ["patient", "clinician", "nurse"] {
        assert_all_sealed(&out["sealing"][page]);
    }

    // The nurse left; the two others went on without them, under new keys.
    assert_eq!(out["nurseLeft"]["phase"], "left", "{out}");
    assert_eq!(
        out["peersAfterLeave"]["patient"],
        json!([members["clinician"]]),
        "{out}"
    );
    assert_eq!(
        out["peersAfterLeave"]["clinician"],
        json!([members["patient"]]),
        "{out}"
    );
    let after = &out["afterRotation"];
    let grew = |page: &str, other: &str| {
        let now = peer_stats(&after[page], &members[other])["framesDecoded"]
            .as_u64()
            .unwrap();
        let before = after["before"][page].as_u64().unwrap();
        assert!(now > before, "{page} from {other}: {before} then {now}");
        assert_eq!(
            peer_stats(&after[page], &members[other])["relayed"],
            true,
            "{out}"
        );
    };
    grew("patient", "clinician");
    grew("clinician", "patient");
    // Each had sealed its key to both others; after the nurse left, a new key, sealed to
    // the one who remains and never to the nurse.
    for (page, other) in [("patient", "clinician"), ("clinician", "patient")] {
        let sent = out["keysSent"][page].as_array().unwrap();
        let split = usize::try_from(out["keysBeforeLeave"][page].as_u64().unwrap()).unwrap();
        let (before, after) = sent.split_at(split);
        let to = |keys: &[Value], who: &str| -> Vec<String> {
            keys.iter()
                .filter(|k| k["to"] == members[who])
                .map(|k| k["id"].as_str().unwrap().to_owned())
                .collect()
        };
        let old_keys = to(before, other);
        assert!(!old_keys.is_empty(), "{page}: {sent:?}");
        assert!(!to(before, "nurse").is_empty(), "{page}: {sent:?}");
        let new_keys = to(after, other);
        assert!(!new_keys.is_empty(), "{page} rotated its key: {sent:?}");
        assert!(
            new_keys.iter().all(|id| !old_keys.contains(id)),
            "{page}: {sent:?}"
        );
        assert!(to(after, "nurse").is_empty(), "{page}: {sent:?}");
        assert_eq!(to(after, other).len(), after.len(), "{page}: {sent:?}");
    }
    assert_eq!(out["patientProbeAfter"], sealed_probe(), "{out}");
    assert_eq!(out["clinicianProbeAfter"], sealed_probe(), "{out}");
    for page in ["patient", "clinician"] {
        assert_all_sealed(&out["sealingAfter"][page]);
    }

    // The relay allocated for Haven's credentials; the nurse's departure is on record.
    assert!(
        relay.log().contains("ALLOCATE"),
        "coturn saw no allocation:\n{}",
        relay.log()
    );
    let left = visit_audit(&server)
        .await
        .into_iter()
        .filter(|(action, who, _)| {
            *action == AuditAction::VisitLeave && *who == nurse.id.to_string()
        })
        .count();
    assert_eq!(left, 1);
    assert_screenshots_written(&out);
    eprintln!(
        "a_three_person_video_visit_through_the_relay ({backend:?}): {:.1} s; in the script (ms): {}",
        started.elapsed().as_secs_f64(),
        out["timings"]
    );
    server.stop().await;
}

async fn nobody_enters_a_video_visit_without_admission(backend: Backend) {
    use haven_audit::AuditAction;
    let started = std::time::Instant::now();
    let server = TestServer::start_in_real_time(backend).await;
    let patient = server.create_patient("Lovelace").await;
    let patient_user = server.user(Role::Patient, Some(patient)).await;
    let clinician = server.user(Role::Clinician, None).await;
    server.add_to_care_team(patient, clinician.id).await;
    let other_patient = server.create_patient("Byron").await;
    let other = server.user(Role::Patient, Some(other_patient)).await;
    let visit = book_visit(&server, &clinician, patient, 5 * 60 * 1000).await;
    let later = book_visit(&server, &clinician, patient, 3 * 60 * 60 * 1000).await;
    let cast = VisitCast {
        server: &server,
        backend,
        visit: &visit,
        patient: &patient_user,
        clinician: &clinician,
    };
    let out = run_visit_script(
        "admission",
        &cast,
        &[
            ("HAVEN_LATER_VISIT", &later),
            ("HAVEN_OTHER_PATIENT_LOGIN", &other.login),
        ],
    )
    .await;
    assert_well_behaved(&out);

    // Another patient's visit: a refusal, nothing to press, and the socket refused.
    assert_eq!(out["strangerJoin"], 0, "{out}");
    assert!(
        out["strangerSees"]
            .as_str()
            .unwrap()
            .contains("You are not permitted"),
        "{out}"
    );
    assert_eq!(out["strangerSocket"]["opened"], false, "{out}");
    // Not open yet, hours ahead.
    assert_eq!(out["notOpenYet"]["state"], "not_open_yet", "{out}");
    assert_eq!(out["notOpenYet"]["join"], 0, "{out}");
    assert!(
        out["notOpenYet"]["text"]
            .as_str()
            .unwrap()
            .contains("half an hour before it starts"),
        "{out}"
    );
    // Declined: told so, never in the call.
    assert_eq!(out["declined"]["phase"], "declined", "{out}");
    assert_eq!(out["declined"]["call"], 0, "{out}");
    // Ended: told so, and no way back in.
    assert_eq!(out["ended"]["phase"], "ended", "{out}");
    assert_eq!(out["clinicianEnded"], "ended", "{out}");
    assert_eq!(out["afterEnd"]["state"], "ended", "{out}");
    assert_eq!(out["afterEnd"]["join"], 0, "{out}");
    assert_eq!(out["socketAfterEnd"]["opened"], false, "{out}");

    // The other patient's attempts (the visit's status, its socket) are on record as denied.
    let other_id = other.id.to_string();
    let denied: Vec<_> = server
        .audit_entries()
        .await
        .into_iter()
        .filter(|e| e.event.actor.as_deref() == Some(other_id.as_str()))
        .filter(|e| e.event.outcome.as_str() == "denied")
        .map(|e| (e.event.action, e.event.resource_type, e.event.resource_id))
        .collect();
    assert!(denied.len() >= 2, "{denied:?}");
    let entries = visit_audit(&server).await;
    let clinician_id = clinician.id.to_string();
    for action in [
        AuditAction::VisitDecline,
        AuditAction::VisitAdmit,
        AuditAction::VisitEnd,
    ] {
        assert!(
            entries.iter().any(|(a, who, outcome)| *a == action
                && *who == clinician_id
                && outcome == "allowed"),
            "{action:?}: {entries:?}"
        );
    }
    assert_screenshots_written(&out);
    eprintln!(
        "nobody_enters_a_video_visit_without_admission ({backend:?}): {:.1} s; in the script (ms): {}",
        started.elapsed().as_secs_f64(),
        out["timings"]
    );
    server.stop().await;
}

async fn a_guest_joins_by_link_and_everyone_agrees_to_a_recording(backend: Backend) {
    use haven_audit::AuditAction;
    let started = std::time::Instant::now();
    let server = TestServer::start_in_real_time(backend).await;
    let patient = server.create_patient("Lovelace").await;
    let patient_user = server.user(Role::Patient, Some(patient)).await;
    let clinician = server.user(Role::Clinician, None).await;
    server.add_to_care_team(patient, clinician.id).await;
    let visit = book_visit(&server, &clinician, patient, 5 * 60 * 1000).await;
    let cast = VisitCast {
        server: &server,
        backend,
        visit: &visit,
        patient: &patient_user,
        clinician: &clinician,
    };
    let out = run_visit_script("guest-recording", &cast, &[]).await;
    assert_well_behaved(&out);

    // The guest's link carried the invitation in its fragment, gone from the address bar.
    assert!(
        out["guestLinkShape"]
            .as_str()
            .unwrap()
            .ends_with("/visits/guest#…"),
        "{out}"
    );
    assert!(
        out["guestAddress"]
            .as_str()
            .unwrap()
            .ends_with("/visits/guest"),
        "{out}"
    );
    assert!(
        out["guestLobby"].as_str().unwrap().contains("Guest"),
        "{out}"
    );
    // Three people, each decoding both others; the guest's frames sealed like anyone's.
    let members = &out["members"];
    for (who, others) in [
        ("patient", ["clinician", "guest"]),
        ("clinician", ["patient", "guest"]),
        ("guest", ["patient", "clinician"]),
    ] {
        for other in others {
            let peer = peer_stats(&out["decoding"][who], &members[other]);
            assert!(
                peer["framesDecoded"].as_u64().unwrap() > 0,
                "{who} sees {other}: {out}"
            );
        }
    }
    assert_eq!(out["guestProbe"], sealed_probe(), "{out}");
    // The guest's device is named for what it is; the guest checks the others' devices
    // against the log like anyone.
    assert!(
        out["clinicianKeyHolders"]
            .as_str()
            .unwrap()
            .contains("Guest · a guest’s device"),
        "{out}"
    );
    assert!(
        out["guestKeyHolders"]
            .as_str()
            .unwrap()
            .contains("device checked against the transparency log"),
        "{out}"
    );

    // The recording could not start before everyone agreed.
    assert_eq!(out["startDisabledBeforeAnswers"], true, "{out}");
    assert_eq!(out["patientAfterRecording"], "off", "{out}");
    // Filed: the recording as a DocumentReference pointing at its Binary, and a Consent per
    // person who agreed.
    let documents = server
        .get_json(
            &clinician.token,
            &format!("/fhir/DocumentReference?patient={patient}"),
        )
        .await;
    let documents: Vec<&Value> = documents["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    let recording = documents
        .iter()
        .find(|d| d["type"]["text"] == "Video visit recording")
        .unwrap_or_else(|| panic!("no recording in {documents:?}"));
    assert_eq!(
        recording["content"][0]["attachment"]["contentType"],
        "video/webm"
    );
    let binary = recording["content"][0]["attachment"]["url"]
        .as_str()
        .unwrap();
    let file = server
        .get_as(&clinician.token, &format!("/fhir/{binary}"))
        .await;
    assert_eq!(file.status(), StatusCode::OK);
    let bytes = file.bytes().await.unwrap();
    assert!(bytes.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]), "a WebM file");
    let consents = server
        .get_json(
            &clinician.token,
            &format!("/fhir/Consent?patient={patient}"),
        )
        .await;
    assert_eq!(
        consents["entry"].as_array().map(Vec::len),
        Some(3),
        "{consents}"
    );
    // The note, in the visit's Encounter, which names the appointment.
    let note = documents
        .iter()
        .find(|d| d["type"]["text"] == "Visit note")
        .unwrap_or_else(|| panic!("no visit note in {documents:?}"));
    let encounter = note["context"]["encounter"][0]["reference"]
        .as_str()
        .unwrap();
    let encounter = server
        .get_json(&clinician.token, &format!("/fhir/{encounter}"))
        .await;
    assert_eq!(
        encounter["appointment"][0]["reference"],
        format!("Appointment/{visit}")
    );

    // Each agreement was recorded from its own person's session; the guest's under their
    // guest id; the invitation and the recording by the clinician.
    let entries = visit_audit(&server).await;
    let count = |action: AuditAction, actor: &str| {
        entries
            .iter()
            .filter(|(a, who, outcome)| *a == action && who == actor && outcome == "allowed")
            .count()
    };
    let clinician_id = clinician.id.to_string();
    let guest = entries
        .iter()
        .find(|(_, who, _)| who.starts_with("guest:"))
        .map(|(_, who, _)| who.clone())
        .expect("the guest's entries");
    assert_eq!(
        count(AuditAction::VisitInvite, &clinician_id),
        1,
        "{entries:?}"
    );
    assert_eq!(count(AuditAction::VisitJoin, &guest), 1, "{entries:?}");
    assert_eq!(
        count(AuditAction::RecordingConsent, &clinician_id),
        1,
        "{entries:?}"
    );
    assert_eq!(
        count(AuditAction::RecordingConsent, &patient_user.id.to_string()),
        1,
        "{entries:?}"
    );
    assert_eq!(
        count(AuditAction::RecordingConsent, &guest),
        1,
        "{entries:?}"
    );
    assert_eq!(
        count(AuditAction::RecordingStart, &clinician_id),
        1,
        "{entries:?}"
    );
    assert_eq!(
        count(AuditAction::RecordingStop, &clinician_id),
        1,
        "{entries:?}"
    );
    assert_screenshots_written(&out);
    eprintln!(
        "a_guest_joins_by_link_and_everyone_agrees_to_a_recording ({backend:?}): {:.1} s; in the script (ms): {}",
        started.elapsed().as_secs_f64(),
        out["timings"]
    );
    server.stop().await;
}
