//! End-to-end messaging over HTTP, with a client written here on Haven's Rust side of the
//! formats: devices register their keys, which the audit log publishes with proofs; a
//! patient and their care team exchange sealed messages that every recipient device
//! opens and Haven cannot; a stale recipient list, an outsider's device and a removed
//! participant get nothing; a device written into the database behind Haven's back has no
//! proof; bad requests change nothing; the event stream nudges who is concerned. On SQLite
//! and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt, StreamExt};
use haven_audit::merkle::verify_inclusion;
use haven_audit::{AuditAction, ENTRY_FIELD_NAMES, leaf_hash_of_fields};
use haven_crypto::e2e::{DeviceKeys, DevicePublicKeys, MessageRef, SealedKey, seal_message};
use haven_domain::{PatientId, Role};
use haven_test_support::{Backend, TestServer, TestUser};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

haven_test_support::on_every_backend!(
    a_patient_and_their_care_team_exchange_sealed_messages,
    every_device_comes_with_a_proof_from_the_audit_log,
    a_device_written_behind_havens_back_has_no_proof,
    a_stale_or_foreign_recipient_list_is_refused,
    a_removed_participant_receives_nothing_more,
    sealed_attachments_reach_participants_only,
    messaging_refuses_bad_requests_and_changes_nothing,
    messaging_refuses_ended_sessions,
    the_event_stream_nudges_those_concerned,
    retention_deletes_old_messages_and_files_for_real,
);

/// A device of a person, as a client holds it.
struct Device {
    id: String,
    keys: DeviceKeys,
}

async fn error_code(response: reqwest::Response) -> String {
    let body: Value = response.json().await.unwrap();
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn register(server: &TestServer, user: &TestUser, label: &str) -> Device {
    let keys = DeviceKeys::generate();
    let public = keys.public();
    let response = server
        .post_as(
            Some(&user.token),
            "/api/v1/devices",
            json!({
                "label": label,
                "hpke_public_key": STANDARD.encode(public.hpke),
                "signing_public_key": STANDARD.encode(public.signing),
                "self_signature": STANDARD.encode(keys.self_signature()),
            }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["fingerprint"], public.fingerprint());
    Device {
        id: body["id"].as_str().unwrap().to_owned(),
        keys,
    }
}

fn public_keys(device: &Value) -> DevicePublicKeys {
    let key = |field: &str| -> [u8; 32] {
        STANDARD
            .decode(device[field].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap()
    };
    DevicePublicKeys {
        hpke: key("hpke_public_key"),
        signing: key("signing_public_key"),
    }
}

/// The conversation's current devices, as the client fetches them before sealing.
async fn thread_devices(server: &TestServer, user: &TestUser, thread: &str) -> Value {
    let response = server
        .get_as(&user.token, &format!("/api/v1/threads/{thread}/devices"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Seals `text` for `recipients` (device id and public keys) as `sender` and posts it.
async fn send(
    server: &TestServer,
    user: &TestUser,
    thread: &str,
    sender: &Device,
    recipients: &[(String, DevicePublicKeys)],
    withheld: &[String],
    text: &str,
) -> reqwest::Response {
    let message_id = Uuid::new_v4();
    let thread_id: Uuid = thread.parse().unwrap();
    let public: Vec<DevicePublicKeys> = recipients.iter().map(|(_, keys)| *keys).collect();
    let body = json!({ "v": 1, "text": text, "attachments": [] }).to_string();
    let sealed = seal_message(
        thread_id,
        message_id,
        body.as_bytes(),
        &public,
        &sender.keys,
    )
    .unwrap();
    let keys: Vec<Value> = recipients
        .iter()
        .zip(&sealed.keys)
        .map(|((device, _), key)| {
            json!({
                "device": device,
                "enc": STANDARD.encode(key.enc),
                "sealed_key": STANDARD.encode(&key.sealed_key),
            })
        })
        .collect();
    server
        .post_as(
            Some(&user.token),
            &format!("/api/v1/threads/{thread}/messages"),
            json!({
                "id": message_id.to_string(),
                "sender_device": sender.id,
                "ciphertext": STANDARD.encode(&sealed.ciphertext),
                "signature": STANDARD.encode(sealed.signature),
                "keys": keys,
                "withheld_devices": withheld,
            }),
        )
        .await
}

/// Every current device of the conversation, with the keys the server lists.
fn all_recipients(devices: &Value) -> Vec<(String, DevicePublicKeys)> {
    devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_str().unwrap().to_owned(), public_keys(d)))
        .collect()
}

/// The texts of a conversation's messages as `device` opens them, checking each sender's
/// signature against the sender's published keys.
async fn read_texts(
    server: &TestServer,
    user: &TestUser,
    thread: &str,
    device: &Device,
    senders: &Value,
) -> Vec<String> {
    let page = server
        .get_json(
            &user.token,
            &format!("/api/v1/threads/{thread}/messages?device={}", device.id),
        )
        .await;
    let mut texts = Vec::new();
    for message in page["items"].as_array().unwrap() {
        let sender = senders["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == message["sender_device"])
            .expect("the sender's device is among the conversation's");
        let key = &message["key"];
        let sealed = SealedKey {
            enc: STANDARD
                .decode(key["enc"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap(),
            sealed_key: STANDARD
                .decode(key["sealed_key"].as_str().unwrap())
                .unwrap(),
        };
        let ciphertext = STANDARD
            .decode(message["ciphertext"].as_str().unwrap())
            .unwrap();
        let signature = STANDARD
            .decode(message["signature"].as_str().unwrap())
            .unwrap();
        let opened = device
            .keys
            .open_message(
                &MessageRef {
                    thread_id: thread.parse().unwrap(),
                    message_id: message["id"].as_str().unwrap().parse().unwrap(),
                    ciphertext: &ciphertext,
                    signature: &signature,
                },
                &sealed,
                &public_keys(sender),
            )
            .unwrap();
        let body: Value = serde_json::from_slice(&opened).unwrap();
        texts.push(body["text"].as_str().unwrap().to_owned());
    }
    texts
}

/// A patient with a signed-in patient user, and two clinicians on their care team.
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

async fn start_thread(
    server: &TestServer,
    by: &TestUser,
    patient: PatientId,
    with: &[&TestUser],
) -> String {
    let response = server
        .post_as(
            Some(&by.token),
            "/api/v1/threads",
            json!({
                "patient": patient.to_string(),
                "participants": with.iter().map(|u| u.id.to_string()).collect::<Vec<_>>(),
            }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

async fn a_patient_and_their_care_team_exchange_sealed_messages(backend: Backend) {
    let server = TestServer::start(backend).await;
    let clinic = clinic(&server).await;
    let phone = register(&server, &clinic.patient_user, "Phone").await;
    let desk = register(&server, &clinic.clinician, "Clinic desktop").await;
    let laptop = register(&server, &clinic.clinician, "Laptop").await;
    let thread = start_thread(
        &server,
        &clinic.patient_user,
        clinic.patient,
        &[&clinic.clinician],
    )
    .await;

    let devices = thread_devices(&server, &clinic.patient_user, &thread).await;
    assert_eq!(devices["devices"].as_array().unwrap().len(), 3);
    let marker = format!("MARKER-{}", Uuid::new_v4().simple());
    let question = format!("My rash is spreading {marker}");
    let sent = send(
        &server,
        &clinic.patient_user,
        &thread,
        &phone,
        &all_recipients(&devices),
        &[],
        &question,
    )
    .await;
    assert_eq!(sent.status(), StatusCode::CREATED);

    // Both of the clinician's devices open it, and so does the patient's own.
    for device in [&desk, &laptop] {
        assert_eq!(
            read_texts(&server, &clinic.clinician, &thread, device, &devices).await,
            std::slice::from_ref(&question)
        );
    }
    assert_eq!(
        read_texts(&server, &clinic.patient_user, &thread, &phone, &devices).await,
        std::slice::from_ref(&question)
    );

    // The clinician was not connected: a notice says a message waits, and nothing more.
    let notices = server
        .get_json(&clinic.clinician.token, "/api/v1/notifications")
        .await;
    let waiting: Vec<&Value> = notices["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "new_message")
        .collect();
    assert_eq!(waiting.len(), 1, "{notices}");
    assert_eq!(waiting[0]["subject"], thread);
    assert!(!notices.to_string().contains(&marker));

    // The clinician sees it unread, reads it, and the patient sees the receipt.
    let inbox = server
        .get_json(&clinic.clinician.token, "/api/v1/threads")
        .await;
    assert_eq!(inbox["unread"], 1);
    assert_eq!(inbox["items"][0]["id"], thread);
    let seq = inbox["items"][0]["last_message_seq"].as_i64().unwrap();
    let read = server
        .post_as(
            Some(&clinic.clinician.token),
            &format!("/api/v1/threads/{thread}/read"),
            json!({ "seq": seq }),
        )
        .await;
    assert_eq!(read.status(), StatusCode::NO_CONTENT);
    let inbox = server
        .get_json(&clinic.clinician.token, "/api/v1/threads")
        .await;
    assert_eq!(inbox["unread"], 0);
    let notices = server
        .get_json(&clinic.clinician.token, "/api/v1/notifications")
        .await;
    assert_eq!(
        notices["unread"], 0,
        "reading the conversation deals with its notice"
    );
    let view = server
        .get_json(
            &clinic.patient_user.token,
            &format!("/api/v1/threads/{thread}"),
        )
        .await;
    let clinician_place = view["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["user"] == clinic.clinician.id.to_string())
        .unwrap();
    assert_eq!(clinician_place["read_seq"], seq);

    // The answer goes back the same way.
    let answer = format!("Please send a photo {marker}");
    let sent = send(
        &server,
        &clinic.clinician,
        &thread,
        &laptop,
        &all_recipients(&devices),
        &[],
        &answer,
    )
    .await;
    assert_eq!(sent.status(), StatusCode::CREATED);
    assert_eq!(
        read_texts(&server, &clinic.patient_user, &thread, &phone, &devices).await,
        [question, answer]
    );
    let inbox = server
        .get_json(&clinic.patient_user.token, "/api/v1/threads")
        .await;
    assert_eq!(
        inbox["unread"], 1,
        "the patient's own message is not unread"
    );

    // Haven stored and relayed ciphertext only: the marker is nowhere in its database or
    // its audit log.
    let raw = server.raw_database_bytes().await;
    assert!(
        !raw.windows(marker.len()).any(|w| w == marker.as_bytes()),
        "a message's text reached the database"
    );
    for entry in server.audit_entries().await {
        assert!(!format!("{:?}", entry.event).contains(&marker));
    }
    // Sending and reading were audited, about the patient.
    let entries = server.audit_entries().await;
    let sends = entries
        .iter()
        .filter(|e| {
            e.event.action == AuditAction::Create
                && e.event.resource_type.as_deref() == Some("Message")
                && e.event.patient == Some(clinic.patient)
        })
        .count();
    assert_eq!(sends, 2);
    let _ = clinic.nurse;
}

async fn every_device_comes_with_a_proof_from_the_audit_log(backend: Backend) {
    let server = TestServer::start(backend).await;
    let clinic = clinic(&server).await;
    let _phone = register(&server, &clinic.patient_user, "Phone").await;
    let _desk = register(&server, &clinic.clinician, "Desk").await;
    let thread = start_thread(
        &server,
        &clinic.patient_user,
        clinic.patient,
        &[&clinic.clinician],
    )
    .await;
    let list = thread_devices(&server, &clinic.patient_user, &thread).await;
    let checkpoint = &list["checkpoint"];
    let size = checkpoint["size"].as_u64().unwrap();
    let root: [u8; 32] = STANDARD
        .decode(checkpoint["root"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    for device in list["devices"].as_array().unwrap() {
        let entry = &device["log_entry"];
        // The entry names the owner and the fingerprint of exactly these keys...
        assert_eq!(entry["action"], "device_add");
        assert_eq!(entry["actor"], device["user"]);
        assert_eq!(entry["resource_type"], "Device");
        assert_eq!(entry["resource_id"], public_keys(device).fingerprint());
        // ...and carries nothing a correspondent should not see.
        assert!(entry["source_ip"].is_null() && entry["user_agent"].is_null());
        assert!(entry["session"].is_null());
        // The client recomputes the leaf from the fields and checks the path to the root.
        let fields: Vec<Option<String>> = ENTRY_FIELD_NAMES
            .iter()
            .map(|name| entry[*name].as_str().map(str::to_owned))
            .collect();
        let fields: [Option<&str>; 15] = std::array::from_fn(|i| fields[i].as_deref());
        let leaf = leaf_hash_of_fields(
            entry["seq"].as_u64().unwrap(),
            entry["at_ms"].as_i64().unwrap(),
            &fields,
        );
        let proof = &entry["proof"];
        assert_eq!(STANDARD.encode(leaf), proof["leaf_hash"]);
        let path: Vec<[u8; 32]> = proof["path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                STANDARD
                    .decode(h.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap()
            })
            .collect();
        assert!(verify_inclusion(
            &leaf,
            proof["leaf_index"].as_u64().unwrap(),
            size,
            &path,
            &root
        ));
    }
}

async fn a_device_written_behind_havens_back_has_no_proof(backend: Backend) {
    let server = TestServer::start(backend).await;
    let clinic = clinic(&server).await;
    let phone = register(&server, &clinic.patient_user, "Phone").await;
    let desk = register(&server, &clinic.clinician, "Desk").await;
    let thread = start_thread(
        &server,
        &clinic.patient_user,
        clinic.patient,
        &[&clinic.clinician],
    )
    .await;

    // Someone with database access adds a device to the clinician, to read along.
    let spy_id = server
        .insert_unpublished_device(clinic.clinician.id, "Desk 2")
        .await;

    let list = thread_devices(&server, &clinic.patient_user, &thread).await;
    let devices = list["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 3, "the server lists the inserted device");
    for device in devices {
        if device["id"] == spy_id.as_str() {
            assert!(device["log_entry"].is_null(), "no entry publishes it");
        } else {
            assert!(device["log_entry"]["proof"].is_object());
        }
    }
    // A client that withholds the unproven device can still write to the others.
    let honest: Vec<(String, DevicePublicKeys)> = all_recipients(&list)
        .into_iter()
        .filter(|(id, _)| *id != spy_id)
        .collect();
    let sent = send(
        &server,
        &clinic.patient_user,
        &thread,
        &phone,
        &honest,
        std::slice::from_ref(&spy_id),
        "Only my care team",
    )
    .await;
    assert_eq!(sent.status(), StatusCode::CREATED);
    assert_eq!(
        read_texts(&server, &clinic.clinician, &thread, &desk, &list).await,
        ["Only my care team"]
    );
}

async fn a_stale_or_foreign_recipient_list_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let clinic = clinic(&server).await;
    let phone = register(&server, &clinic.patient_user, "Phone").await;
    let _desk = register(&server, &clinic.clinician, "Desk").await;
    let thread = start_thread(
        &server,
        &clinic.patient_user,
        clinic.patient,
        &[&clinic.clinician],
    )
    .await;
    let before = thread_devices(&server, &clinic.patient_user, &thread).await;

    // The clinician adds a device after the patient fetched the list: the patient's
    // client is told, instead of silently leaving the new device out.
    let _laptop = register(&server, &clinic.clinician, "Laptop").await;
    let stale = send(
        &server,
        &clinic.patient_user,
        &thread,
        &phone,
        &all_recipients(&before),
        &[],
        "Stale",
    )
    .await;
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(stale).await, "recipients_changed");

    // A device of someone outside the conversation is never a recipient.
    let outsider = server.user(Role::Clinician, None).await;
    let outsider_device = register(&server, &outsider, "Elsewhere").await;
    let mut foreign = all_recipients(&thread_devices(&server, &clinic.patient_user, &thread).await);
    foreign.push((outsider_device.id.clone(), outsider_device.keys.public()));
    let refused = send(
        &server,
        &clinic.patient_user,
        &thread,
        &phone,
        &foreign,
        &[],
        "Leak",
    )
    .await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);

    // Nothing of either attempt was stored.
    let inbox = server
        .get_json(&clinic.clinician.token, "/api/v1/threads")
        .await;
    assert_eq!(inbox["items"][0]["last_message_seq"], 0);
}

async fn a_removed_participant_receives_nothing_more(backend: Backend) {
    let server = TestServer::start(backend).await;
    let clinic = clinic(&server).await;
    let desk = register(&server, &clinic.clinician, "Desk").await;
    let station = register(&server, &clinic.nurse, "Ward station").await;
    let _phone = register(&server, &clinic.patient_user, "Phone").await;
    let thread = start_thread(
        &server,
        &clinic.clinician,
        clinic.patient,
        &[&clinic.patient_user, &clinic.nurse],
    )
    .await;
    let with_nurse = thread_devices(&server, &clinic.clinician, &thread).await;
    let sent = send(
        &server,
        &clinic.clinician,
        &thread,
        &desk,
        &all_recipients(&with_nurse),
        &[],
        "Before",
    )
    .await;
    assert_eq!(sent.status(), StatusCode::CREATED);
    assert_eq!(
        read_texts(&server, &clinic.nurse, &thread, &station, &with_nurse).await,
        ["Before"]
    );

    // The patient may not remove the nurse; the clinician may.
    let refused = server
        .delete_as(
            &clinic.patient_user.token,
            &format!("/api/v1/threads/{thread}/participants/{}", clinic.nurse.id),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let removed = server
        .delete_as(
            &clinic.clinician.token,
            &format!("/api/v1/threads/{thread}/participants/{}", clinic.nurse.id),
        )
        .await;
    assert_eq!(removed.status(), StatusCode::OK);

    // A client that still seals to the nurse's device is refused; the current list no
    // longer has it.
    let stale = send(
        &server,
        &clinic.clinician,
        &thread,
        &desk,
        &all_recipients(&with_nurse),
        &[],
        "After",
    )
    .await;
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    let without = thread_devices(&server, &clinic.clinician, &thread).await;
    assert!(
        without["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["id"] != station.id.as_str())
    );
    let sent = send(
        &server,
        &clinic.clinician,
        &thread,
        &desk,
        &all_recipients(&without),
        &[],
        "After",
    )
    .await;
    assert_eq!(sent.status(), StatusCode::CREATED);

    // The nurse can read nothing of the conversation now, and no longer lists it.
    let gone = server
        .get_as(
            &clinic.nurse.token,
            &format!("/api/v1/threads/{thread}/messages?device={}", station.id),
        )
        .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let inbox = server
        .get_json(&clinic.nurse.token, "/api/v1/threads")
        .await;
    assert_eq!(inbox["items"].as_array().unwrap().len(), 0);
}

async fn sealed_attachments_reach_participants_only(backend: Backend) {
    let server = TestServer::start(backend).await;
    let clinic = clinic(&server).await;
    let thread = start_thread(
        &server,
        &clinic.patient_user,
        clinic.patient,
        &[&clinic.clinician],
    )
    .await;
    let attachment = Uuid::new_v4();
    let photo = b"\x89PNG rash photo, 3 days";
    let (file_key, blob) = haven_crypto::e2e::seal_attachment(attachment, photo).unwrap();
    let path = format!("/api/v1/threads/{thread}/attachments/{attachment}");
    let put = |token: String, body: Vec<u8>, content_type: &'static str| {
        let request = server
            .client
            .put(server.endpoint(&path))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body);
        async move { request.send().await.unwrap() }
    };
    let wrong_type = put(clinic.patient_user.token.clone(), blob.clone(), "image/png").await;
    assert_eq!(wrong_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let uploaded = put(
        clinic.patient_user.token.clone(),
        blob.clone(),
        "application/octet-stream",
    )
    .await;
    assert_eq!(uploaded.status(), StatusCode::CREATED);
    let again = put(
        clinic.patient_user.token.clone(),
        blob.clone(),
        "application/octet-stream",
    )
    .await;
    assert_eq!(again.status(), StatusCode::CONFLICT);

    let downloaded = server.get_as(&clinic.clinician.token, &path).await;
    assert_eq!(downloaded.status(), StatusCode::OK);
    let bytes = downloaded.bytes().await.unwrap();
    assert_eq!(
        haven_crypto::e2e::open_attachment(attachment, file_key.as_ref(), &bytes).unwrap(),
        photo
    );
    // As a browser asks for it, compressed: the body still arrives whole (the compression
    // layer polls the stream once more after its end, which must not break it).
    let compressed = server
        .client
        .get(server.endpoint(&path))
        .bearer_auth(&clinic.clinician.token)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(compressed.status(), StatusCode::OK);
    assert!(!compressed.bytes().await.expect("the whole body").is_empty());
    // Someone outside the conversation is told there is no such thing.
    let outsider = server.user(Role::Clinician, None).await;
    assert_eq!(
        server.get_as(&outsider.token, &path).await.status(),
        StatusCode::NOT_FOUND
    );
    let theirs = put(outsider.token.clone(), blob, "application/octet-stream").await;
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    // Larger than the limit, sent without a length (as a stream is): refused once the
    // limit is passed, and nothing is kept.
    let big = Uuid::new_v4();
    let chunks = (0..26).map(|_| Ok::<_, std::io::Error>(vec![0u8; 1024 * 1024]));
    let too_big = server
        .client
        .put(server.endpoint(&format!("/api/v1/threads/{thread}/attachments/{big}")))
        .bearer_auth(&clinic.patient_user.token)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Declared too large: refused before a byte of it is read (the client hears the
    // answer at once, without sending the body).
    let declared = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = server.url.trim_start_matches("http://").to_owned();
        let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
        let request = format!(
            "PUT /api/v1/threads/{thread}/attachments/{} HTTP/1.1\r\nHost: {address}\r\n\
             Authorization: Bearer {}\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {}\r\n\r\n",
            Uuid::new_v4(),
            clinic.patient_user.token,
            26 * 1024 * 1024
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut answer))
            .await
            .expect("an answer before the body")
            .unwrap();
        String::from_utf8_lossy(&answer[..read]).into_owned()
    };
    assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
    assert_eq!(
        server
            .get_as(
                &clinic.clinician.token,
                &format!("/api/v1/threads/{thread}/attachments/{big}")
            )
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

async fn messaging_refuses_bad_requests_and_changes_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let clinic = clinic(&server).await;
    let phone = register(&server, &clinic.patient_user, "Phone").await;
    let _desk = register(&server, &clinic.clinician, "Desk").await;
    let entries_before = server.audit_entries().await.len();

    // A device whose signature is not over its own keys.
    let keys = DeviceKeys::generate();
    let other = DeviceKeys::generate();
    let forged = server
        .post_as(
            Some(&clinic.patient_user.token),
            "/api/v1/devices",
            json!({
                "label": "Forged",
                "hpke_public_key": STANDARD.encode(keys.public().hpke),
                "signing_public_key": STANDARD.encode(keys.public().signing),
                "self_signature": STANDARD.encode(other.self_signature()),
            }),
        )
        .await;
    assert_eq!(forged.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Malformed bodies: unknown fields, wrong types, not base64.
    for body in [
        json!({ "label": "x" }),
        json!({ "label": "x", "hpke_public_key": 1, "signing_public_key": "", "self_signature": "" }),
        json!({ "label": "x", "hpke_public_key": "%%", "signing_public_key": "AAAA", "self_signature": "AAAA" }),
        json!({ "label": "x", "hpke_public_key": "AAAA", "signing_public_key": "AAAA", "self_signature": "AAAA", "admin": true }),
    ] {
        let response = server
            .post_as(
                Some(&clinic.patient_user.token),
                "/api/v1/devices",
                body.clone(),
            )
            .await;
        assert!(response.status().is_client_error(), "{body}");
    }
    assert_eq!(
        server
            .get_json(&clinic.patient_user.token, "/api/v1/devices")
            .await["devices"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Another patient's conversation cannot be started by a patient...
    let stranger = server.create_patient("Stranger").await;
    let refused = server
        .post_as(
            Some(&clinic.patient_user.token),
            "/api/v1/threads",
            json!({ "patient": stranger.to_string(), "participants": [clinic.clinician.id.to_string()] }),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(refused).await, "forbidden");
    // ...nor by a clinician who does not care for them, nor include someone the policy
    // would not let read it (a clinician of no care team, the front desk).
    let unrelated = server.user(Role::Clinician, None).await;
    let refused = server
        .post_as(
            Some(&unrelated.token),
            "/api/v1/threads",
            json!({ "patient": clinic.patient.to_string(), "participants": [clinic.patient_user.id.to_string()] }),
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let desk = server.user(Role::FrontDesk, None).await;
    for outsider in [&unrelated, &desk] {
        let refused = server
            .post_as(
                Some(&clinic.patient_user.token),
                "/api/v1/threads",
                json!({ "patient": clinic.patient.to_string(), "participants": [outsider.id.to_string()] }),
            )
            .await;
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_eq!(
        server
            .get_json(&clinic.patient_user.token, "/api/v1/threads")
            .await["items"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "no conversation was started"
    );

    // The wrong user: someone outside a conversation learns nothing of it.
    let thread = start_thread(
        &server,
        &clinic.patient_user,
        clinic.patient,
        &[&clinic.clinician],
    )
    .await;
    for path in [
        format!("/api/v1/threads/{thread}"),
        format!("/api/v1/threads/{thread}/devices"),
        format!("/api/v1/threads/{thread}/messages?device={}", phone.id),
    ] {
        assert_eq!(
            server.get_as(&unrelated.token, &path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // Reading with a device that is not the caller's.
    assert_eq!(
        server
            .get_as(
                &clinic.clinician.token,
                &format!("/api/v1/threads/{thread}/messages?device={}", phone.id),
            )
            .await
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // A message with a malformed sealed key, and one too large for the body limit.
    let malformed = server
        .post_as(
            Some(&clinic.patient_user.token),
            &format!("/api/v1/threads/{thread}/messages"),
            json!({
                "id": Uuid::new_v4().to_string(),
                "sender_device": phone.id,
                "ciphertext": STANDARD.encode([0u8; 40]),
                "signature": STANDARD.encode([0u8; 64]),
                "keys": [{ "device": phone.id, "enc": "AAAA", "sealed_key": "AAAA" }],
            }),
        )
        .await;
    assert_eq!(malformed.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let oversized = server
        .post_as(
            Some(&clinic.patient_user.token),
            &format!("/api/v1/threads/{thread}/messages"),
            json!({
                "id": Uuid::new_v4().to_string(),
                "sender_device": phone.id,
                "ciphertext": STANDARD.encode(vec![0u8; 2 * 1024 * 1024]),
                "signature": STANDARD.encode([0u8; 64]),
                "keys": [],
            }),
        )
        .await;
    assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let view = server
        .get_json(
            &clinic.patient_user.token,
            &format!("/api/v1/threads/{thread}"),
        )
        .await;
    assert_eq!(view["last_message_seq"], 0, "no bad message was stored");
    assert!(server.audit_entries().await.len() > entries_before);
}

async fn messaging_refuses_ended_sessions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let clinic = clinic(&server).await;
    let phone = register(&server, &clinic.patient_user, "Phone").await;
    let thread = start_thread(
        &server,
        &clinic.patient_user,
        clinic.patient,
        &[&clinic.clinician],
    )
    .await;
    // Past the idle time-out (15 minutes by default): every session has ended.
    server.clock.advance(Duration::from_secs(16 * 60));
    for path in [
        "/api/v1/devices".to_owned(),
        "/api/v1/threads".to_owned(),
        format!("/api/v1/threads/{thread}"),
        format!("/api/v1/threads/{thread}/devices"),
        format!("/api/v1/threads/{thread}/messages?device={}", phone.id),
        "/api/v1/events".to_owned(),
    ] {
        let response = server.get_as(&clinic.patient_user.token, &path).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let response = server
        .post_as(
            Some(&clinic.patient_user.token),
            &format!("/api/v1/threads/{thread}/read"),
            json!({ "seq": 1 }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

async fn the_event_stream_nudges_those_concerned(backend: Backend) {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = TestServer::start(backend).await;
    let clinic = clinic(&server).await;
    let phone = register(&server, &clinic.patient_user, "Phone").await;
    let _desk = register(&server, &clinic.clinician, "Desk").await;
    let thread = start_thread(
        &server,
        &clinic.patient_user,
        clinic.patient,
        &[&clinic.clinician],
    )
    .await;

    let connect = |token: String| {
        let url = server.endpoint("/api/v1/events").replacen("http", "ws", 1);
        async move {
            let mut request = url.into_client_request().unwrap();
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            tokio_tungstenite::connect_async(request).await.unwrap().0
        }
    };
    let mut clinician_stream = connect(clinic.clinician.token.clone()).await;
    let mut outsider_stream = connect(server.user(Role::Clinician, None).await.token).await;

    let devices = thread_devices(&server, &clinic.patient_user, &thread).await;
    let sent = send(
        &server,
        &clinic.patient_user,
        &thread,
        &phone,
        &all_recipients(&devices),
        &[],
        "Hello",
    )
    .await;
    assert_eq!(sent.status(), StatusCode::CREATED);
    let sent: Value = sent.json().await.unwrap();

    let event = loop {
        match tokio::time::timeout(Duration::from_secs(10), clinician_stream.next())
            .await
            .expect("an event within ten seconds")
            .expect("the stream is open")
            .unwrap()
        {
            Message::Text(text) => break serde_json::from_str::<Value>(&text).unwrap(),
            _ => continue,
        }
    };
    assert_eq!(
        event,
        json!({ "type": "message", "thread": thread, "seq": sent["seq"] })
    );
    // No content rides on the event, and nobody outside the conversation is nudged.
    let quiet = tokio::time::timeout(Duration::from_millis(300), outsider_stream.next()).await;
    assert!(
        quiet.is_err(),
        "an outsider was told of the message: {quiet:?}"
    );
    // The client has nothing to say on the stream: text from it closes the stream.
    clinician_stream
        .send(Message::Text("hello".into()))
        .await
        .unwrap();
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), clinician_stream.next())
            .await
            .expect("an answer within ten seconds")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(closed.unwrap().reason.as_str(), "unexpected_message");
}

async fn retention_deletes_old_messages_and_files_for_real(backend: Backend) {
    let server = TestServer::start(backend).await;
    let clinic = clinic(&server).await;
    let phone = register(&server, &clinic.patient_user, "Phone").await;
    let _desk = register(&server, &clinic.clinician, "Desk").await;
    let thread = start_thread(
        &server,
        &clinic.patient_user,
        clinic.patient,
        &[&clinic.clinician],
    )
    .await;
    let devices = thread_devices(&server, &clinic.patient_user, &thread).await;
    let sent = send(
        &server,
        &clinic.patient_user,
        &thread,
        &phone,
        &all_recipients(&devices),
        &[],
        "Old news",
    )
    .await;
    assert_eq!(sent.status(), StatusCode::CREATED);
    let page = server
        .get_json(
            &clinic.patient_user.token,
            &format!("/api/v1/threads/{thread}/messages?device={}", phone.id),
        )
        .await;
    let ciphertext = STANDARD
        .decode(page["items"][0]["ciphertext"].as_str().unwrap())
        .unwrap();
    let attachment = Uuid::new_v4();
    let (_, blob) = haven_crypto::e2e::seal_attachment(attachment, b"an old scan").unwrap();
    let uploaded = server
        .client
        .put(server.endpoint(&format!(
            "/api/v1/threads/{thread}/attachments/{attachment}"
        )))
        .bearer_auth(&clinic.patient_user.token)
        .header("content-type", "application/octet-stream")
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), StatusCode::CREATED);
    // Raw bytes in SQLite's files; hex in a PostgreSQL dump (how it prints bytea).
    let contains = |raw: &[u8], needle: &[u8]| {
        let hex: String = needle.iter().map(|b| format!("{b:02x}")).collect();
        raw.windows(needle.len()).any(|w| w == needle)
            || raw.windows(hex.len()).any(|w| w == hex.as_bytes())
    };

    // A period outside the allowed range is refused; 30 days is taken.
    let policy = |days: i64| {
        json!({
            "idle_timeout_secs": 900,
            "absolute_timeout_secs": 43200,
            "patient_mfa_required": false,
            "message_retention_days": days,
        })
    };
    let put = |body: Value| {
        let request = server
            .client
            .put(server.endpoint("/api/v1/organisation"))
            .bearer_auth(&server.admin_token)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    assert_eq!(
        put(policy(5)).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let set = put(policy(30)).await;
    assert_eq!(set.status(), StatusCode::OK);
    assert_eq!(
        set.json::<Value>().await.unwrap()["message_retention_days"],
        30
    );

    // Within the period nothing goes.
    let swept = server.app().sweep_message_retention().await.unwrap();
    assert_eq!(swept.messages, 0);
    let raw = server.raw_database_bytes().await;
    assert!(contains(&raw, &ciphertext) && contains(&raw, &blob));

    // Past it, the message, its keys and the file are gone from storage, not just hidden.
    server.clock.advance(Duration::from_secs(31 * 24 * 60 * 60));
    let swept = server.app().sweep_message_retention().await.unwrap();
    assert_eq!((swept.messages, swept.attachments), (1, 1));
    let raw = server.raw_database_bytes().await;
    assert!(
        !contains(&raw, &ciphertext),
        "the deleted ciphertext is still in storage"
    );
    assert!(
        !contains(&raw, &blob),
        "the deleted file is still in storage"
    );
    let recorded = server.audit_entries().await.into_iter().any(|e| {
        e.event.actor.as_deref() == Some("system:retention")
            && e.event.action == AuditAction::Delete
    });
    assert!(recorded, "the sweep is in the audit log");
}
