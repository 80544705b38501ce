//! Video visits over their signaling socket, with a client written here: the patient waits
//! until a clinician of the visit admits them and learns nothing of the call before; the
//! call relays what its members send each other; nobody enters another patient's visit, a
//! visit outside its time, a cancelled or an ended one; a dropped connection takes its
//! place back within the grace and leaves after it; bad frames are refused and change
//! nothing; every join, admission, departure and ending is in the audit log. On SQLite and
//! on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use haven_audit::AuditAction;
use haven_domain::{PatientId, Role};
use haven_test_support::{Backend, TestServer, TestUser};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

haven_test_support::on_every_backend!(
    a_patient_waits_until_a_clinician_admits_them,
    nobody_enters_a_visit_that_is_not_theirs_or_not_open,
    a_dropped_connection_takes_its_place_back_within_the_grace,
    the_socket_refuses_bad_frames_and_keeps_its_limits,
    the_calls_devices_are_shown_to_its_members_only,
    recording_needs_everyones_consent_and_is_audited,
    a_guest_enters_by_an_invitation_used_once_and_waits_to_be_admitted,
    the_visit_routes_refuse_bad_bodies_and_ended_sessions,
);

/// How long a test waits for a frame that must come.
const FRAME_WAIT_SECS: u64 = 10;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Clinic {
    patient: PatientId,
    patient_user: TestUser,
    clinician: TestUser,
    nurse: TestUser,
}

async fn clinic(server: &TestServer) -> Clinic {
    let patient = server.create_patient("Lovelace").await;
    let patient_user = server.user(Role::Patient, Some(patient)).await;
    let clinician = server.user(Role::Clinician, None).await;
    let nurse = server.user(Role::Nurse, None).await;
    server.add_to_care_team(patient, clinician.id).await;
    server.add_to_care_team(patient, nurse.id).await;
    Clinic {
        patient,
        patient_user,
        clinician,
        nurse,
    }
}

fn rfc3339(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Books a visit for `patient` starting `starts_in_ms` from Haven's now, for 20 minutes.
async fn book(
    server: &TestServer,
    by: &TestUser,
    patient: PatientId,
    status: &str,
    starts_in_ms: i64,
) -> String {
    let start = server.app().clock().now_ms() + starts_in_ms;
    let appointment = json!({
        "resourceType": "Appointment",
        "status": status,
        "start": rfc3339(start),
        "end": rfc3339(start + 20 * 60 * 1000),
        "participant": [{"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"}],
    });
    let created = server
        .client
        .post(server.endpoint("/fhir/Appointment"))
        .bearer_auth(&by.token)
        .header("content-type", "application/fhir+json")
        .body(appointment.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let body: Value = created.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

/// Opens the visit's socket as `token`, or the HTTP refusal (status and error code).
async fn enter(
    server: &TestServer,
    token: &str,
    appointment: &str,
) -> Result<Socket, (StatusCode, String)> {
    let url = server
        .endpoint(&format!("/api/v1/visits/{appointment}/signal"))
        .replacen("http", "ws", 1);
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    handshake(request).await
}

/// Opens a socket, or the HTTP refusal: its status and the policy's reason, or else the
/// error's code.
async fn handshake(
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Result<Socket, (StatusCode, String)> {
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
            let body: Value = response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            let code = body["error"]["reason"]
                .as_str()
                .or(body["error"]["code"].as_str())
                .unwrap_or_default()
                .to_owned();
            Err((status, code))
        }
        Err(other) => panic!("the handshake failed: {other}"),
    }
}

/// The next JSON frame; a close frame comes back as `{"type": "closed", "reason": …}`.
async fn next(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(FRAME_WAIT_SECS), socket.next())
            .await
            .expect("a frame in time");
        match frame {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(Message::Close(close))) => {
                let reason = close.map(|c| c.reason.to_string()).unwrap_or_default();
                return json!({ "type": "closed", "reason": reason });
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            None | Some(Err(_)) => return json!({ "type": "closed", "reason": "" }),
            Some(Ok(other)) => panic!("unexpected frame {other:?}"),
        }
    }
}

/// The next frame, which must be of `kind`.
async fn expect(socket: &mut Socket, kind: &str) -> Value {
    let frame = next(socket).await;
    assert_eq!(frame["type"], kind, "{frame}");
    frame
}

/// Nothing arrives for a moment.
async fn quiet(socket: &mut Socket) {
    match tokio::time::timeout(Duration::from_millis(300), socket.next()).await {
        Err(_) => {}
        Ok(Some(Ok(Message::Ping(_)))) => {}
        Ok(other) => panic!("expected nothing, got {other:?}"),
    }
}

async fn send(socket: &mut Socket, frame: Value) {
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// The visit entries of the audit log about `appointment` (or its admissions).
async fn visit_entries(
    server: &TestServer,
    appointment: &str,
) -> Vec<(AuditAction, String, String)> {
    server
        .audit_entries()
        .await
        .into_iter()
        .filter(|e| {
            e.event.resource_type.as_deref() == Some("Visit")
                && e.event
                    .resource_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with(appointment))
        })
        .map(|e| {
            (
                e.event.action,
                e.event.actor.unwrap_or_default(),
                e.event.outcome.as_str().to_owned(),
            )
        })
        .collect()
}

async fn a_patient_waits_until_a_clinician_admits_them(backend: Backend) {
    let server = TestServer::start(backend).await;
    let clinic = clinic(&server).await;
    let visit = book(
        &server,
        &clinic.clinician,
        clinic.patient,
        "booked",
        10 * 60 * 1000,
    )
    .await;

    // The patient arrives first and waits, seeing nobody.
    let mut patient = enter(&server, &clinic.patient_user.token, &visit)
        .await
        .unwrap();
    let welcome = expect(&mut patient, "welcome").await;
    assert_eq!(welcome["admission"], "waiting");
    assert_eq!(welcome["role"], "patient");
    assert_eq!(welcome["members"], json!([]));
    let patient_member = welcome["you"].as_u64().unwrap();

    // The clinician enters the call at once and sees them waiting.
    let mut clinician = enter(&server, &clinic.clinician.token, &visit)
        .await
        .unwrap();
    let welcome = expect(&mut clinician, "welcome").await;
    assert_eq!(welcome["admission"], "admitted");
    assert_eq!(welcome["role"], "host");
    let clinician_member = welcome["you"].as_u64().unwrap();
    let lobby = expect(&mut clinician, "lobby").await;
    assert_eq!(lobby["waiting"][0]["id"], patient_member);
    assert_eq!(
        lobby["waiting"][0]["user"],
        clinic.patient_user.id.to_string()
    );

    // Before admission the patient can send nothing into the call, and nothing reaches them.
    send(
        &mut patient,
        json!({"type": "signal", "to": clinician_member, "kind": "description", "payload": "offer"}),
    )
    .await;
    assert_eq!(expect(&mut patient, "error").await["code"], "not_admitted");
    send(
        &mut clinician,
        json!({"type": "signal", "to": patient_member, "kind": "key", "payload": "sealed"}),
    )
    .await;
    assert_eq!(
        expect(&mut clinician, "error").await["code"],
        "unknown_member"
    );
    // Nor can they let themselves in.
    send(
        &mut patient,
        json!({"type": "admit", "member": patient_member}),
    )
    .await;
    assert_eq!(expect(&mut patient, "error").await["code"], "not_admitted");
    quiet(&mut patient).await;

    send(
        &mut clinician,
        json!({"type": "admit", "member": patient_member}),
    )
    .await;
    let admitted = expect(&mut patient, "admitted").await;
    assert_eq!(admitted["members"].as_array().unwrap().len(), 2);
    let joined = expect(&mut clinician, "joined").await;
    assert_eq!(joined["member"]["id"], patient_member);
    assert_eq!(expect(&mut clinician, "lobby").await["waiting"], json!([]));

    // Now the call relays both ways, to the one addressed.
    send(
        &mut patient,
        json!({"type": "signal", "to": clinician_member, "kind": "description", "payload": "v=0 offer"}),
    )
    .await;
    let relayed = expect(&mut clinician, "signal").await;
    assert_eq!(relayed["from"], patient_member);
    assert_eq!(relayed["kind"], "description");
    assert_eq!(relayed["payload"], "v=0 offer");
    send(
        &mut clinician,
        json!({"type": "signal", "to": patient_member, "kind": "candidate", "payload": "c1"}),
    )
    .await;
    assert_eq!(expect(&mut patient, "signal").await["payload"], "c1");

    // A nurse of the care team comes in as a host too: a three-person call.
    let mut nurse = enter(&server, &clinic.nurse.token, &visit).await.unwrap();
    let welcome = expect(&mut nurse, "welcome").await;
    assert_eq!(welcome["members"].as_array().unwrap().len(), 3);
    assert_eq!(
        expect(&mut patient, "joined").await["member"]["role"],
        "host"
    );

    // The patient cannot end the visit; the clinician does, for everyone.
    send(&mut patient, json!({"type": "end"})).await;
    assert_eq!(expect(&mut patient, "error").await["code"], "not_host");
    expect(&mut clinician, "joined").await;
    send(&mut clinician, json!({"type": "end"})).await;
    for socket in [&mut patient, &mut clinician, &mut nurse] {
        loop {
            let frame = next(socket).await;
            if frame["type"] == "ended" {
                break;
            }
        }
        assert_eq!(expect(socket, "closed").await["reason"], "ended");
    }

    // An ended visit stays ended, also after a restart.
    let refused = enter(&server, &clinic.patient_user.token, &visit)
        .await
        .err();
    assert_eq!(refused, Some((StatusCode::CONFLICT, "visit_ended".into())));
    let mut server = server;
    server.restart().await;
    let refused = enter(&server, &clinic.clinician.token, &visit).await.err();
    assert_eq!(refused, Some((StatusCode::CONFLICT, "visit_ended".into())));

    let patient_id = clinic.patient_user.id.to_string();
    let clinician_id = clinic.clinician.id.to_string();
    let entries = visit_entries(&server, &visit).await;
    let allowed = |action, actor: &str| {
        entries
            .iter()
            .filter(|(a, who, outcome)| *a == action && who == actor && outcome == "allowed")
            .count()
    };
    assert_eq!(
        allowed(AuditAction::VisitJoin, &patient_id),
        1,
        "{entries:?}"
    );
    assert_eq!(
        allowed(AuditAction::VisitJoin, &clinician_id),
        1,
        "{entries:?}"
    );
    assert_eq!(
        allowed(AuditAction::VisitAdmit, &clinician_id),
        1,
        "{entries:?}"
    );
    assert_eq!(
        allowed(AuditAction::VisitEnd, &clinician_id),
        1,
        "{entries:?}"
    );
    // The refused attempts to enter after the end were never joins.
    assert_eq!(
        entries
            .iter()
            .filter(|(a, _, _)| *a == AuditAction::VisitJoin)
            .count(),
        3
    );
    // The admission names whom it let in.
    let admission = server
        .audit_entries()
        .await
        .into_iter()
        .find(|e| e.event.action == AuditAction::VisitAdmit)
        .unwrap();
    assert_eq!(
        admission.event.resource_id.unwrap(),
        format!("{visit}/{patient_id}")
    );
    assert_eq!(admission.event.patient, Some(clinic.patient));
}

async fn nobody_enters_a_visit_that_is_not_theirs_or_not_open(backend: Backend) {
    let server = TestServer::start(backend).await;
    let clinic = clinic(&server).await;
    let visit = book(&server, &clinic.clinician, clinic.patient, "booked", 0).await;

    // Another patient, with the link to this visit.
    let other_patient = server.create_patient("Byron").await;
    let other = server.user(Role::Patient, Some(other_patient)).await;
    let refused = enter(&server, &other.token, &visit).await.err().unwrap();
    assert_eq!(refused.0, StatusCode::FORBIDDEN);
    // A clinician who is not on the patient's care team.
    let stranger = server.user(Role::Clinician, None).await;
    let refused = enter(&server, &stranger.token, &visit).await.err().unwrap();
    assert_eq!(refused.0, StatusCode::FORBIDDEN);
    // The front desk books visits, and does not sit in on them.
    let desk = server.user(Role::FrontDesk, None).await;
    let refused = enter(&server, &desk.token, &visit).await.err().unwrap();
    assert_eq!(refused.0, StatusCode::FORBIDDEN);
    // An API token is no person.
    let token = server.token(Role::Clinician, 1).await;
    let refused = enter(&server, &token, &visit).await.err().unwrap();
    assert_eq!(
        refused,
        (StatusCode::FORBIDDEN, "personal_credential_required".into())
    );
    // No such visit: refused like someone else's, so a patient learns nothing of which
    // visits exist. A malformed id is a request error.
    let refused = enter(&server, &clinic.patient_user.token, "no-such-visit")
        .await
        .err()
        .unwrap();
    assert_eq!(refused.0, StatusCode::FORBIDDEN);
    let refused = enter(&server, &clinic.patient_user.token, "bad%20id")
        .await
        .err()
        .unwrap();
    assert_eq!(refused, (StatusCode::BAD_REQUEST, "invalid_id".into()));
    // Every refusal of someone not allowed is in the audit log as denied.
    let denied: Vec<String> = server
        .audit_entries()
        .await
        .into_iter()
        .filter(|e| e.event.outcome.as_str() == "denied")
        .filter_map(|e| e.event.actor)
        .collect();
    for who in [other.id, stranger.id, desk.id] {
        assert!(
            denied.contains(&who.to_string()),
            "{who} not denied in {denied:?}"
        );
    }

    // Too early: it opens half an hour before its start.
    let later = book(
        &server,
        &clinic.clinician,
        clinic.patient,
        "booked",
        40 * 60 * 1000,
    )
    .await;
    let refused = enter(&server, &clinic.patient_user.token, &later)
        .await
        .err();
    assert_eq!(
        refused,
        Some((StatusCode::CONFLICT, "visit_not_open_yet".into()))
    );
    server.clock.advance(Duration::from_secs(11 * 60));
    let mut socket = enter(&server, &clinic.patient_user.token, &later)
        .await
        .unwrap();
    expect(&mut socket, "welcome").await;
    drop(socket);
    // Too late: more than two hours after its end.
    let past = book(
        &server,
        &clinic.clinician,
        clinic.patient,
        "booked",
        -3 * 60 * 60 * 1000,
    )
    .await;
    let refused = enter(&server, &clinic.patient_user.token, &past)
        .await
        .err();
    assert_eq!(refused, Some((StatusCode::CONFLICT, "visit_over".into())));

    // A cancelled appointment holds no call.
    let cancelled = book(&server, &clinic.clinician, clinic.patient, "cancelled", 0).await;
    let refused = enter(&server, &clinic.clinician.token, &cancelled)
        .await
        .err();
    assert_eq!(
        refused,
        Some((StatusCode::CONFLICT, "visit_not_held".into()))
    );

    // A session that ended enters nothing.
    let response = server
        .post_as(
            Some(&clinic.patient_user.token),
            "/api/v1/auth/sign-out",
            json!({}),
        )
        .await;
    assert!(response.status().is_success());
    let refused = enter(&server, &clinic.patient_user.token, &visit)
        .await
        .err()
        .unwrap();
    assert_eq!(refused.0, StatusCode::UNAUTHORIZED);

    // A plain GET is no handshake.
    let response = server
        .get_as(
            &clinic.clinician.token,
            &format!("/api/v1/visits/{visit}/signal"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UPGRADE_REQUIRED);
}

async fn a_dropped_connection_takes_its_place_back_within_the_grace(backend: Backend) {
    let server = TestServer::start(backend).await;
    let clinic = clinic(&server).await;
    let visit = book(&server, &clinic.clinician, clinic.patient, "booked", 0).await;
    let mut clinician = enter(&server, &clinic.clinician.token, &visit)
        .await
        .unwrap();
    expect(&mut clinician, "welcome").await;
    expect(&mut clinician, "lobby").await;
    let mut patient = enter(&server, &clinic.patient_user.token, &visit)
        .await
        .unwrap();
    let member = expect(&mut patient, "welcome").await["you"].clone();
    expect(&mut clinician, "lobby").await;
    send(&mut clinician, json!({"type": "admit", "member": member})).await;
    expect(&mut patient, "admitted").await;
    expect(&mut clinician, "joined").await;
    expect(&mut clinician, "lobby").await;

    // The patient's network drops; the clinician sees them away, not gone.
    drop(patient);
    let away = expect(&mut clinician, "presence").await;
    assert_eq!(away["member"], member);
    assert_eq!(away["connected"], false);

    // They come back within the grace: still admitted, same member.
    let mut patient = enter(&server, &clinic.patient_user.token, &visit)
        .await
        .unwrap();
    let welcome = expect(&mut patient, "welcome").await;
    assert_eq!(welcome["admission"], "admitted");
    assert_eq!(welcome["you"], member);
    let back = expect(&mut clinician, "joined").await;
    assert_eq!(back["member"]["id"], member);
    assert_eq!(back["member"]["connected"], true);

    // A second tab of the same person takes over; the first is told and closed.
    let mut second = enter(&server, &clinic.patient_user.token, &visit)
        .await
        .unwrap();
    assert_eq!(expect(&mut second, "welcome").await["you"], member);
    expect(&mut patient, "replaced").await;
    assert_eq!(expect(&mut patient, "closed").await["reason"], "replaced");
    expect(&mut clinician, "joined").await;

    // Away past the grace, they leave; coming back means waiting again.
    drop(second);
    expect(&mut clinician, "presence").await;
    server.clock.advance(Duration::from_secs(31));
    let left = expect(&mut clinician, "left").await;
    assert_eq!(left["member"], member);
    let mut patient = enter(&server, &clinic.patient_user.token, &visit)
        .await
        .unwrap();
    let welcome = expect(&mut patient, "welcome").await;
    assert_eq!(welcome["admission"], "waiting");
    assert_ne!(welcome["you"], member);
    expect(&mut clinician, "lobby").await;

    let departures: Vec<_> = server
        .audit_entries()
        .await
        .into_iter()
        .filter(|e| e.event.action == AuditAction::VisitLeave)
        .collect();
    assert_eq!(departures.len(), 1);
    assert_eq!(departures[0].event.reason, "connection_lost");
    assert_eq!(
        departures[0].event.actor.as_deref(),
        Some(clinic.patient_user.id.to_string().as_str())
    );

    // Hanging up is a departure of one's own, recorded and final.
    send(&mut clinician, json!({"type": "leave"})).await;
    assert_eq!(expect(&mut clinician, "closed").await["reason"], "left");
    let departures = server
        .audit_entries()
        .await
        .into_iter()
        .filter(|e| {
            e.event.action == AuditAction::VisitLeave
                && e.event.actor.as_deref() == Some(clinic.clinician.id.to_string().as_str())
        })
        .count();
    assert_eq!(departures, 1);
}

async fn the_socket_refuses_bad_frames_and_keeps_its_limits(backend: Backend) {
    let server = TestServer::start(backend).await;
    let clinic = clinic(&server).await;
    let visit = book(&server, &clinic.clinician, clinic.patient, "booked", 0).await;
    let mut clinician = enter(&server, &clinic.clinician.token, &visit)
        .await
        .unwrap();
    let me = expect(&mut clinician, "welcome").await["you"].clone();
    expect(&mut clinician, "lobby").await;
    let before = server.audit_entries().await.len();

    // Malformed frames are answered and change nothing; the socket stays open.
    for frame in [
        "not json",
        r#"{"type":"open_the_door"}"#,
        r#"{"type":"admit","member":"one"}"#,
        r#"{"type":"admit","member":1,"also":true}"#,
        r#"{"type":"signal","to":1,"kind":"shout","payload":"x"}"#,
    ] {
        clinician.send(Message::Text(frame.into())).await.unwrap();
        assert_eq!(
            expect(&mut clinician, "error").await["code"],
            "invalid_frame",
            "{frame}"
        );
    }
    clinician
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(
        expect(&mut clinician, "error").await["code"],
        "invalid_frame"
    );
    // Out of order: admitting someone not waiting, relaying to nobody, to oneself.
    send(&mut clinician, json!({"type": "admit", "member": 77})).await;
    assert_eq!(
        expect(&mut clinician, "error").await["code"],
        "unknown_member"
    );
    send(
        &mut clinician,
        json!({"type": "signal", "to": me, "kind": "chat", "payload": "x"}),
    )
    .await;
    assert_eq!(
        expect(&mut clinician, "error").await["code"],
        "unknown_member"
    );
    // A payload over its limit, in a frame within the socket's.
    let payload = "x".repeat(haven_app::visits::SIGNAL_PAYLOAD_BYTES_MAX + 1);
    send(
        &mut clinician,
        json!({"type": "signal", "to": 2, "kind": "chat", "payload": payload}),
    )
    .await;
    assert_eq!(
        expect(&mut clinician, "error").await["code"],
        "payload_too_large"
    );
    assert_eq!(
        server.audit_entries().await.len(),
        before,
        "nothing recorded"
    );

    // A call holds four: a fifth host is refused, with the reason, and the socket closes.
    let mut others = Vec::new();
    for _ in 0..3 {
        let host = server.user(Role::Clinician, None).await;
        server.add_to_care_team(clinic.patient, host.id).await;
        let mut socket = enter(&server, &host.token, &visit).await.unwrap();
        assert_eq!(
            expect(&mut socket, "welcome").await["admission"],
            "admitted"
        );
        others.push(socket);
    }
    let fifth = server.user(Role::Clinician, None).await;
    server.add_to_care_team(clinic.patient, fifth.id).await;
    let mut socket = enter(&server, &fifth.token, &visit).await.unwrap();
    assert_eq!(expect(&mut socket, "error").await["code"], "visit_full");
    assert_eq!(expect(&mut socket, "closed").await["reason"], "visit_full");

    // A frame over the socket's limit ends the connection.
    let huge = "x".repeat(haven_api::visits::SIGNAL_FRAME_BYTES_MAX + 10);
    let _ = clinician.send(Message::Text(huge.into())).await;
    loop {
        let frame = next(&mut clinician).await;
        if frame["type"] == "closed" {
            break;
        }
    }
}

async fn the_calls_devices_are_shown_to_its_members_only(backend: Backend) {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use haven_crypto::e2e::DeviceKeys;
    let server = TestServer::start(backend).await;
    let clinic = clinic(&server).await;
    let visit = book(&server, &clinic.clinician, clinic.patient, "booked", 0).await;
    let register = |user: &TestUser| {
        let keys = DeviceKeys::generate();
        let public = keys.public();
        let body = json!({
            "label": "Laptop",
            "hpke_public_key": STANDARD.encode(public.hpke),
            "signing_public_key": STANDARD.encode(public.signing),
            "self_signature": STANDARD.encode(keys.self_signature()),
        });
        let token = user.token.clone();
        let server = &server;
        async move {
            let response = server.post_as(Some(&token), "/api/v1/devices", body).await;
            assert_eq!(response.status(), StatusCode::CREATED);
            let body: Value = response.json().await.unwrap();
            (
                body["id"].as_str().unwrap().to_owned(),
                body["fingerprint"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (clinician_device, clinician_fingerprint) = register(&clinic.clinician).await;
    let (patient_device, patient_fingerprint) = register(&clinic.patient_user).await;
    let (_, unused_fingerprint) = register(&clinic.clinician).await;

    let enter_with = |token: String, device: String| {
        let url = server
            .endpoint(&format!("/api/v1/visits/{visit}/signal?device={device}"))
            .replacen("http", "ws", 1);
        async move {
            let mut request = url.into_client_request().unwrap();
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            tokio_tungstenite::connect_async(request).await
        }
    };
    // Someone else's device is not one to enter with.
    let refused = enter_with(clinic.patient_user.token.clone(), clinician_device.clone()).await;
    assert!(refused.is_err());

    let (mut clinician, _) = enter_with(clinic.clinician.token.clone(), clinician_device)
        .await
        .unwrap();
    expect(&mut clinician, "welcome").await;
    expect(&mut clinician, "lobby").await;
    let (mut patient, _) = enter_with(clinic.patient_user.token.clone(), patient_device)
        .await
        .unwrap();
    let member = expect(&mut patient, "welcome").await["you"].clone();
    let lobby = expect(&mut clinician, "lobby").await;
    assert_eq!(lobby["waiting"][0]["device"], patient_fingerprint.as_str());

    // Waiting, the patient sees no device of the call.
    let path = format!("/api/v1/visits/{visit}/devices");
    let response = server.get_as(&clinic.patient_user.token, &path).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    send(&mut clinician, json!({"type": "admit", "member": member})).await;
    expect(&mut patient, "admitted").await;

    let listed = server.get_json(&clinic.patient_user.token, &path).await;
    let fingerprints: Vec<&str> = listed["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["fingerprint"].as_str().unwrap())
        .collect();
    assert!(fingerprints.contains(&clinician_fingerprint.as_str()));
    assert!(fingerprints.contains(&patient_fingerprint.as_str()));
    // Only the devices taking part: not the clinician's other one.
    assert!(!fingerprints.contains(&unused_fingerprint.as_str()));
    // Each with its proof from the audit log.
    assert!(
        listed["devices"][0]["log_entry"]["proof"].is_object(),
        "{listed}"
    );
    // Someone outside the call sees nothing.
    let response = server.get_as(&clinic.nurse.token, &path).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// The next `recording` frame, skipping other notices (joins, lobbies).
async fn recording(socket: &mut Socket) -> Value {
    loop {
        let frame = next(socket).await;
        assert_ne!(frame["type"], "closed", "the socket closed");
        if frame["type"] == "recording" || frame["type"] == "error" {
            return frame;
        }
    }
}

async fn recording_needs_everyones_consent_and_is_audited(backend: Backend) {
    let server = TestServer::start(backend).await;
    let clinic = clinic(&server).await;
    let visit = book(&server, &clinic.clinician, clinic.patient, "booked", 0).await;
    let mut clinician = enter(&server, &clinic.clinician.token, &visit)
        .await
        .unwrap();
    let host = expect(&mut clinician, "welcome").await["you"].clone();
    let mut patient = enter(&server, &clinic.patient_user.token, &visit)
        .await
        .unwrap();
    let member = expect(&mut patient, "welcome").await["you"].clone();
    // Waiting, the patient can neither be asked nor answer.
    send(&mut patient, json!({"type": "consent", "granted": true})).await;
    assert_eq!(expect(&mut patient, "error").await["code"], "not_admitted");
    send(&mut clinician, json!({"type": "admit", "member": member})).await;
    expect(&mut patient, "admitted").await;

    // Only a host asks; asking is agreeing.
    send(&mut patient, json!({"type": "ask_to_record"})).await;
    assert_eq!(expect(&mut patient, "error").await["code"], "not_host");
    send(&mut clinician, json!({"type": "ask_to_record"})).await;
    let asked = recording(&mut patient).await;
    assert_eq!(asked["phase"], "asking");
    assert_eq!(asked["by"], host);
    assert_eq!(asked["consented"], json!([host]));
    assert_eq!(recording(&mut clinician).await["phase"], "asking");

    // Not before the patient agrees.
    send(&mut clinician, json!({"type": "start_recording"})).await;
    assert_eq!(
        recording(&mut clinician).await["code"],
        "recording_consent_missing"
    );
    send(&mut patient, json!({"type": "consent", "granted": true})).await;
    assert_eq!(
        recording(&mut clinician).await["consented"],
        json!([host, member])
    );
    recording(&mut patient).await;
    send(&mut clinician, json!({"type": "start_recording"})).await;
    assert_eq!(recording(&mut patient).await["phase"], "on");
    assert_eq!(recording(&mut clinician).await["phase"], "on");
    send(&mut clinician, json!({"type": "stop_recording"})).await;
    let stopped = recording(&mut patient).await;
    assert_eq!(stopped["phase"], "off");
    assert_eq!(stopped["ended"], "stopped");
    recording(&mut clinician).await;

    // One refusal ends the ask for everyone.
    send(&mut clinician, json!({"type": "ask_to_record"})).await;
    recording(&mut patient).await;
    recording(&mut clinician).await;
    send(&mut patient, json!({"type": "consent", "granted": false})).await;
    let refused = recording(&mut clinician).await;
    assert_eq!(refused["phase"], "off");
    assert_eq!(refused["ended"], "declined");
    assert_eq!(refused["declined_by"], member);

    let patient_id = clinic.patient_user.id.to_string();
    let clinician_id = clinic.clinician.id.to_string();
    let entries = visit_entries(&server, &visit).await;
    let count = |action, actor: &str| {
        entries
            .iter()
            .filter(|(a, who, outcome)| *a == action && who == actor && outcome == "allowed")
            .count()
    };
    assert_eq!(
        count(AuditAction::RecordingConsent, &clinician_id),
        2,
        "{entries:?}"
    );
    assert_eq!(
        count(AuditAction::RecordingConsent, &patient_id),
        1,
        "{entries:?}"
    );
    assert_eq!(
        count(AuditAction::RecordingRefusal, &patient_id),
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
    // The refusal names who refused.
    let refusal = server
        .audit_entries()
        .await
        .into_iter()
        .find(|e| e.event.action == AuditAction::RecordingRefusal)
        .unwrap();
    assert_eq!(
        refusal.event.resource_id.unwrap(),
        format!("{visit}/{patient_id}")
    );
}

/// Opens the visit's socket as a guest: their session cookie, Haven's own origin, and the
/// device keys their browser made for the visit.
async fn enter_as_guest(
    server: &TestServer,
    cookie: &str,
    appointment: &str,
    origin: &str,
    keys: &haven_crypto::e2e::DeviceKeys,
) -> Result<Socket, (StatusCode, String)> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let public = keys.public();
    let url = server
        .endpoint(&format!(
            "/api/v1/visits/{appointment}/signal?hpke={}&signing={}&signature={}",
            URL_SAFE_NO_PAD.encode(public.hpke),
            URL_SAFE_NO_PAD.encode(public.signing),
            URL_SAFE_NO_PAD.encode(keys.self_signature()),
        ))
        .replacen("http", "ws", 1);
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    handshake(request).await
}

async fn a_guest_enters_by_an_invitation_used_once_and_waits_to_be_admitted(backend: Backend) {
    let server = TestServer::start(backend).await;
    let clinic = clinic(&server).await;
    let visit = book(&server, &clinic.clinician, clinic.patient, "booked", 0).await;
    let guests = format!("/api/v1/visits/{visit}/guests");

    // Only a host invites, and only a guest of a known kind.
    let response = server
        .post_as(
            Some(&clinic.patient_user.token),
            &guests,
            json!({"kind": "family"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = server
        .post_as(
            Some(&clinic.clinician.token),
            &guests,
            json!({"kind": "cousin"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let response = server
        .post_as(
            Some(&clinic.clinician.token),
            &guests,
            json!({"kind": "interpreter", "name": "x"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = server
        .post_as(
            Some(&clinic.clinician.token),
            &guests,
            json!({"kind": "interpreter"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let invited: Value = response.json().await.unwrap();
    let invitation = invited["invitation"].as_str().unwrap().to_owned();
    assert!(invitation.starts_with("hvgi_"));
    let listed = server.get_json(&clinic.clinician.token, &guests).await;
    assert_eq!(listed["guests"][0]["kind"], "interpreter");
    assert_eq!(listed["guests"][0]["redeemed_at"], Value::Null);
    assert!(
        !listed.to_string().contains(&invitation),
        "the secret is shown once"
    );

    // The guest opens the invitation, once.
    let redeem = || {
        server
            .client
            .post(server.endpoint("/api/v1/visits/guest-sessions"))
            .json(&json!({ "invitation": invitation }))
            .send()
    };
    let opened = redeem().await.unwrap();
    assert_eq!(opened.status(), StatusCode::CREATED);
    let cookie = opened.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-haven_guest=hvgs_"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let again = redeem().await.unwrap();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);

    // Only from Haven's own pages, and only for this visit.
    let origin = server.url.clone();
    let keys = haven_crypto::e2e::DeviceKeys::generate();
    let refused = enter_as_guest(&server, &cookie, &visit, "http://elsewhere.example", &keys)
        .await
        .err();
    assert_eq!(refused.map(|r| r.0), Some(StatusCode::FORBIDDEN));
    let other = book(&server, &clinic.clinician, clinic.patient, "booked", 0).await;
    let refused = enter_as_guest(&server, &cookie, &other, &origin, &keys)
        .await
        .err();
    assert_eq!(refused.map(|r| r.0), Some(StatusCode::NOT_FOUND));

    // In, they wait; the host sees what they are, and their device.
    let mut clinician = enter(&server, &clinic.clinician.token, &visit)
        .await
        .unwrap();
    expect(&mut clinician, "welcome").await;
    expect(&mut clinician, "lobby").await;
    let mut guest = enter_as_guest(&server, &cookie, &visit, &origin, &keys)
        .await
        .unwrap();
    let welcome = expect(&mut guest, "welcome").await;
    assert_eq!(welcome["role"], "guest");
    assert_eq!(welcome["admission"], "waiting");
    let member = welcome["you"].clone();
    let lobby = expect(&mut clinician, "lobby").await;
    let waiting = &lobby["waiting"][0];
    assert_eq!(waiting["role"], "guest");
    assert_eq!(waiting["user"], Value::Null);
    assert_eq!(waiting["device"], keys.public().fingerprint());
    // Waiting, they can do nothing in the call.
    send(&mut guest, json!({"type": "end"})).await;
    assert_eq!(expect(&mut guest, "error").await["code"], "not_admitted");
    send(&mut clinician, json!({"type": "admit", "member": member})).await;
    expect(&mut guest, "admitted").await;
    // Admitted, they still host nothing.
    send(&mut guest, json!({"type": "ask_to_record"})).await;
    assert_eq!(expect(&mut guest, "error").await["code"], "not_host");

    // The host sees the guest's device keys (published nowhere, so no proof).
    let devices = server
        .get_json(
            &clinic.clinician.token,
            &format!("/api/v1/visits/{visit}/devices"),
        )
        .await;
    assert_eq!(
        devices["guest_devices"][0]["fingerprint"],
        keys.public().fingerprint()
    );
    // The guest's cookie reads the call's devices too, from Haven's own origin.
    let seen = server
        .client
        .get(server.endpoint(&format!("/api/v1/visits/{visit}/devices")))
        .header("cookie", &cookie)
        .header("origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(seen.status(), StatusCode::OK);
    // With the log's key, which a guest has no other way to fetch.
    let seen: Value = seen.json().await.unwrap();
    assert_eq!(
        seen["log_vkey"].as_str(),
        Some(server.app().audit_verifier().vkey().as_str())
    );
    // But nothing else: the guest session is no account.
    let elsewhere = server
        .client
        .get(server.endpoint("/api/v1/threads"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::UNAUTHORIZED);

    // When the visit ends, so does the guest's way in.
    send(&mut clinician, json!({"type": "end"})).await;
    loop {
        if next(&mut guest).await["type"] == "ended" {
            break;
        }
    }
    let refused = enter_as_guest(&server, &cookie, &visit, &origin, &keys)
        .await
        .err();
    assert_eq!(refused, Some((StatusCode::CONFLICT, "visit_ended".into())));

    let actor = format!("guest:{}", invited["id"].as_str().unwrap());
    let entries = server.audit_entries().await;
    let by_guest: Vec<AuditAction> = entries
        .iter()
        .filter(|e| e.event.actor.as_deref() == Some(actor.as_str()))
        .map(|e| e.event.action)
        .collect();
    assert!(by_guest.contains(&AuditAction::Login), "{by_guest:?}");
    assert!(by_guest.contains(&AuditAction::VisitJoin), "{by_guest:?}");
    assert!(
        entries
            .iter()
            .any(|e| e.event.action == AuditAction::VisitInvite
                && e.event.actor.as_deref() == Some(clinic.clinician.id.to_string().as_str()))
    );
    // The second opening of the invitation was refused, and recorded.
    assert!(
        entries
            .iter()
            .any(|e| e.event.action == AuditAction::FailedLogin
                && e.event.reason == "guest_invitation_invalid")
    );
}

async fn the_visit_routes_refuse_bad_bodies_and_ended_sessions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let clinic = clinic(&server).await;
    let visit = book(&server, &clinic.clinician, clinic.patient, "booked", 0).await;
    let guests = format!("/api/v1/visits/{visit}/guests");
    let post_raw = |path: String, token: Option<String>, body: Vec<u8>| {
        let mut request = server
            .client
            .post(server.endpoint(&path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    // Oversized and malformed bodies are refused, and nothing is invited or opened.
    let huge = format!(r#"{{"kind":"{}"}}"#, "x".repeat(2 * 1024 * 1024)).into_bytes();
    let response = post_raw(
        guests.clone(),
        Some(clinic.clinician.token.clone()),
        huge.clone(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let response = post_raw(
        guests.clone(),
        Some(clinic.clinician.token.clone()),
        b"{".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = post_raw("/api/v1/visits/guest-sessions".into(), None, huge)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let response = post_raw("/api/v1/visits/guest-sessions".into(), None, b"[]".to_vec())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let listed = server.get_json(&clinic.clinician.token, &guests).await;
    assert_eq!(listed["guests"], json!([]));

    // Another patient's visit is not theirs to read.
    let other_patient = server.create_patient("Byron").await;
    let other = server.user(Role::Patient, Some(other_patient)).await;
    let response = server
        .get_as(&other.token, &format!("/api/v1/visits/{visit}"))
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // The patient reads their own; a patient invites nobody.
    let status = server
        .get_json(
            &clinic.patient_user.token,
            &format!("/api/v1/visits/{visit}"),
        )
        .await;
    assert_eq!(status["role"], "patient");
    assert_eq!(status["state"], "open");
    let response = server.get_as(&clinic.patient_user.token, &guests).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // An ended session reads and invites nothing.
    let response = server
        .post_as(
            Some(&clinic.clinician.token),
            "/api/v1/auth/sign-out",
            json!({}),
        )
        .await;
    assert!(response.status().is_success());
    for path in [
        format!("/api/v1/visits/{visit}"),
        guests.clone(),
        format!("/api/v1/visits/{visit}/devices"),
    ] {
        let response = server.get_as(&clinic.clinician.token, &path).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let response = server
        .post_as(
            Some(&clinic.clinician.token),
            &guests,
            json!({"kind": "family"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
