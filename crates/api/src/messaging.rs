//! End-to-end messaging over HTTP and a WebSocket. Binary values travel as standard
//! base64; Haven never sees a key that opens them.
//!
//! - `GET /api/v1/devices`, `POST /api/v1/devices`, `DELETE /api/v1/devices/{id}`: the
//!   caller's devices, each with the audit entry that published it and its inclusion proof.
//! - `GET`/`POST /api/v1/threads`: the inbox (with unread counts) and a new conversation.
//! - `GET /api/v1/threads/{id}`; `POST /api/v1/threads/{id}/participants`,
//!   `DELETE /api/v1/threads/{id}/participants/{user}`.
//! - `GET /api/v1/threads/{id}/devices`: every participant's devices with proofs: the
//!   recipients of the next message.
//! - `GET`/`POST /api/v1/threads/{id}/messages` (`?device=…&after=…&limit=…`): messages with
//!   the key sealed to that device; `POST /api/v1/threads/{id}/read`: a read receipt.
//! - `PUT`/`GET /api/v1/threads/{id}/attachments/{attachment}`: sealed files, streamed.
//! - `GET /api/v1/events`: the WebSocket of nudges (`message`, `read`, `participants`,
//!   `devices`), which carry ids and positions, never content.

use std::time::Duration;

use axum::Json;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use haven_app::messaging::{
    DeviceList, MessageKey, NewDevice, OutgoingMessage, Participant, ProvenDevice, StoredMessage,
    ThreadSummary, ThreadView, safety_number,
};
use haven_app::relay::Event;
use haven_domain::{PatientId, UserId};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audit::{CheckpointOutput, EntryOutput};
use crate::extract::{Caller, EventCaller, JsonBody, parse_query};
use crate::patients::timestamp;
use crate::transparency::{ProofOutput, ProvenEntryOutput};
use crate::{ApiError, ApiState};

/// Messages per page when the client does not say.
const MESSAGES_PAGE_DEFAULT: u32 = 50;
/// How often the event stream pings, and checks that its session is still live.
const EVENT_STREAM_CHECK_SECS: u64 = 20;
/// The largest frame a client may send on the event stream (it has nothing to say but
/// pongs).
const EVENT_STREAM_FRAME_BYTES_MAX: usize = 1024;

fn id<T: std::str::FromStr>(what: &'static str, text: &str) -> Result<T, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request("invalid_id", format!("{what}: not a valid id")))
}

fn bytes(field: &'static str, text: &str) -> Result<Vec<u8>, ApiError> {
    STANDARD
        .decode(text)
        .map_err(|_| ApiError::bad_request("invalid_body", format!("{field}: not base64")))
}

fn device_output(proven: &ProvenDevice) -> Value {
    let device = &proven.device;
    json!({
        "id": device.id.to_string(),
        "user": device.user.to_string(),
        "label": device.label,
        "hpke_public_key": STANDARD.encode(&device.hpke_public_key),
        "signing_public_key": STANDARD.encode(&device.signing_public_key),
        "self_signature": STANDARD.encode(&device.self_signature),
        "fingerprint": device.fingerprint,
        "safety_number": safety_number(&device.fingerprint),
        "added_at": timestamp(device.added_at_ms),
        // The audit entry that published this device, with its proof: `null` when the log
        // has none (clients must not write to such a device).
        "log_entry": proven.entry.as_ref().map(|e| ProvenEntryOutput {
            entry: EntryOutput::from(&e.entry),
            proof: e.proof.as_ref().map(ProofOutput::from),
        }),
    })
}

pub(crate) fn device_list_output(list: &DeviceList) -> Value {
    json!({
        "checkpoint": list.checkpoint.clone().map(CheckpointOutput::from),
        "devices": list.devices.iter().map(device_output).collect::<Vec<_>>(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceInput {
    label: String,
    hpke_public_key: String,
    signing_public_key: String,
    self_signature: String,
}

pub(crate) async fn my_devices(
    State(state): State<ApiState>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let list = state.app.my_devices(&context).await?;
    Ok(Json(device_list_output(&list)).into_response())
}

pub(crate) async fn register_device(
    State(state): State<ApiState>,
    Caller(context): Caller,
    JsonBody(input): JsonBody<DeviceInput>,
) -> Result<Response, ApiError> {
    let device = NewDevice {
        label: input.label,
        hpke_public_key: bytes("hpke_public_key", &input.hpke_public_key)?,
        signing_public_key: bytes("signing_public_key", &input.signing_public_key)?,
        self_signature: bytes("self_signature", &input.self_signature)?,
    };
    let proven = state.app.register_device(&context, device).await?;
    Ok((StatusCode::CREATED, Json(device_output(&proven))).into_response())
}

pub(crate) async fn remove_device(
    State(state): State<ApiState>,
    Path(device): Path<String>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let device: Uuid = id("device", &device)?;
    state.app.remove_device(&context, device).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn participant_output(participant: &Participant) -> Value {
    json!({
        "user": participant.user.to_string(),
        "added_at": timestamp(participant.added_at_ms),
        "removed_at": participant.removed_at_ms.map(timestamp),
        "read_seq": participant.read_seq,
        "read_at": participant.read_at_ms.map(timestamp),
    })
}

fn thread_output(view: &ThreadView) -> Value {
    json!({
        "id": view.thread.id.to_string(),
        "patient": view.thread.patient.map(|p| p.to_string()),
        "created_by": view.thread.created_by.to_string(),
        "created_at": timestamp(view.thread.created_at_ms),
        "last_message_seq": view.thread.last_message_seq,
        "last_message_at": view.thread.last_message_at_ms.map(timestamp),
        "participants": view.participants.iter().map(participant_output).collect::<Vec<_>>(),
    })
}

fn summary_output(summary: &ThreadSummary) -> Value {
    json!({
        "id": summary.thread.id.to_string(),
        "patient": summary.thread.patient.map(|p| p.to_string()),
        "created_at": timestamp(summary.thread.created_at_ms),
        "last_message_seq": summary.thread.last_message_seq,
        "last_message_at": summary.thread.last_message_at_ms.map(timestamp),
        "unread": summary.unread,
    })
}

pub(crate) async fn threads(
    State(state): State<ApiState>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let threads = state.app.threads(&context).await?;
    let unread: u64 = threads.iter().map(|t| t.unread).sum();
    Ok(Json(json!({
        "unread": unread,
        "items": threads.iter().map(summary_output).collect::<Vec<_>>(),
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ThreadInput {
    /// The patient the conversation is about; absent for one within the clinical staff.
    patient: Option<String>,
    participants: Vec<String>,
}

pub(crate) async fn start_thread(
    State(state): State<ApiState>,
    Caller(context): Caller,
    JsonBody(input): JsonBody<ThreadInput>,
) -> Result<Response, ApiError> {
    let patient: Option<PatientId> = input
        .patient
        .as_deref()
        .map(|p| id("patient", p))
        .transpose()?;
    if input.participants.len() > haven_app::messaging::PARTICIPANTS_LISTED_MAX {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!(
                "participants: at most {}",
                haven_app::messaging::PARTICIPANTS_LISTED_MAX
            ),
        ));
    }
    let others = input
        .participants
        .iter()
        .map(|p| id::<UserId>("participant", p))
        .collect::<Result<Vec<_>, _>>()?;
    let view = state.app.start_thread(&context, patient, others).await?;
    Ok((StatusCode::CREATED, Json(thread_output(&view))).into_response())
}

pub(crate) async fn thread(
    State(state): State<ApiState>,
    Path(thread): Path<String>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let thread: Uuid = id("thread", &thread)?;
    let view = state.app.thread(&context, thread).await?;
    Ok(Json(thread_output(&view)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ParticipantInput {
    user: String,
}

pub(crate) async fn add_participant(
    State(state): State<ApiState>,
    Path(thread): Path<String>,
    Caller(context): Caller,
    JsonBody(input): JsonBody<ParticipantInput>,
) -> Result<Response, ApiError> {
    let thread: Uuid = id("thread", &thread)?;
    let user: UserId = id("user", &input.user)?;
    let view = state.app.add_participant(&context, thread, user).await?;
    Ok((StatusCode::CREATED, Json(thread_output(&view))).into_response())
}

pub(crate) async fn remove_participant(
    State(state): State<ApiState>,
    Path((thread, user)): Path<(String, String)>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let thread: Uuid = id("thread", &thread)?;
    let user: UserId = id("user", &user)?;
    let view = state.app.remove_participant(&context, thread, user).await?;
    Ok(Json(thread_output(&view)).into_response())
}

pub(crate) async fn thread_devices(
    State(state): State<ApiState>,
    Path(thread): Path<String>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let thread: Uuid = id("thread", &thread)?;
    let list = state.app.thread_devices(&context, thread).await?;
    Ok(Json(device_list_output(&list)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyInput {
    device: String,
    enc: String,
    sealed_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessageInput {
    id: String,
    sender_device: String,
    ciphertext: String,
    signature: String,
    keys: Vec<KeyInput>,
    #[serde(default)]
    withheld_devices: Vec<String>,
}

pub(crate) async fn send_message(
    State(state): State<ApiState>,
    Path(thread): Path<String>,
    Caller(context): Caller,
    JsonBody(input): JsonBody<MessageInput>,
) -> Result<Response, ApiError> {
    let thread: Uuid = id("thread", &thread)?;
    let message_id: Uuid = id("id", &input.id)?;
    let keys = input
        .keys
        .iter()
        .map(|k| {
            Ok(MessageKey {
                device: id("device", &k.device)?,
                enc: bytes("enc", &k.enc)?,
                sealed_key: bytes("sealed_key", &k.sealed_key)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let withheld = input
        .withheld_devices
        .iter()
        .map(|d| id("withheld_devices", d))
        .collect::<Result<Vec<Uuid>, _>>()?;
    let seq = state
        .app
        .send_message(
            &context,
            thread,
            OutgoingMessage {
                id: message_id,
                sender_device: id("sender_device", &input.sender_device)?,
                ciphertext: bytes("ciphertext", &input.ciphertext)?,
                signature: bytes("signature", &input.signature)?,
                keys,
                withheld,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": message_id.to_string(), "seq": seq })),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesParams {
    device: String,
    after: Option<i64>,
    limit: Option<u32>,
}

fn message_output(message: &StoredMessage) -> Value {
    json!({
        "seq": message.seq,
        "id": message.id.to_string(),
        "sender": message.sender_user.to_string(),
        "sender_device": message.sender_device.to_string(),
        "sent_at": timestamp(message.sent_at_ms),
        "ciphertext": STANDARD.encode(&message.ciphertext),
        "signature": STANDARD.encode(&message.signature),
        // `null` when this device was not a recipient (it was added later).
        "key": message.key.as_ref().map(|k| json!({
            "enc": STANDARD.encode(&k.enc),
            "sealed_key": STANDARD.encode(&k.sealed_key),
        })),
    })
}

pub(crate) async fn messages(
    State(state): State<ApiState>,
    Path(thread): Path<String>,
    Caller(context): Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let thread: Uuid = id("thread", &thread)?;
    let params: MessagesParams = parse_query(raw.as_deref().unwrap_or_default())?;
    let device: Uuid = id("device", &params.device)?;
    let limit = params.limit.unwrap_or(MESSAGES_PAGE_DEFAULT);
    let after = params.after.unwrap_or(0);
    let page = state
        .app
        .messages(&context, thread, device, after, limit)
        .await?;
    let next = (page.len() == limit as usize)
        .then(|| page.last())
        .flatten()
        .map(|last| {
            format!(
                "/api/v1/threads/{thread}/messages?device={device}&after={}&limit={limit}",
                last.seq
            )
        });
    Ok(Json(json!({
        "items": page.iter().map(message_output).collect::<Vec<_>>(),
        "next": next,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadInput {
    seq: i64,
}

pub(crate) async fn mark_read(
    State(state): State<ApiState>,
    Path(thread): Path<String>,
    Caller(context): Caller,
    JsonBody(input): JsonBody<ReadInput>,
) -> Result<Response, ApiError> {
    let thread: Uuid = id("thread", &thread)?;
    state.app.mark_read(&context, thread, input.seq).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Stores a sealed attachment, streamed: `PUT` with the client's id, because the id is
/// bound into the ciphertext before it is sent.
pub(crate) async fn upload_attachment(
    State(state): State<ApiState>,
    Path((thread, attachment)): Path<(String, String)>,
    caller: Result<Caller, ApiError>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    use http_body_util::BodyExt;
    let Caller(context) = caller?;
    let thread: Uuid = id("thread", &thread)?;
    let attachment: Uuid = id("attachment", &attachment)?;
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|t| t != "application/octet-stream")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "a sealed attachment is sent as application/octet-stream",
        ));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut writer = state
        .app
        .begin_message_attachment(&context, thread, attachment, declared)
        .await?;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| {
            ApiError::bad_request("upload_interrupted", "the upload was interrupted")
        })?;
        if let Ok(data) = frame.into_data() {
            writer.write(&data).await?;
        }
    }
    let stored = writer.finish().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": stored.id.to_string(),
            "size_bytes": stored.size_bytes,
            "created_at": timestamp(stored.created_at_ms),
        })),
    )
        .into_response())
}

pub(crate) async fn download_attachment(
    State(state): State<ApiState>,
    Path((thread, attachment)): Path<(String, String)>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let thread: Uuid = id("thread", &thread)?;
    let attachment: Uuid = id("attachment", &attachment)?;
    let reader = state
        .app
        .read_message_attachment(&context, thread, attachment)
        .await?;
    let size = reader.size_bytes();
    // Fused: the compression layer polls once more after the end (a browser asks for gzip),
    // which a bare `unfold` answers with a panic.
    let stream = futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        match reader.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok::<_, std::io::Error>(chunk), Some(reader))),
            Ok(None) => None,
            Err(error) => {
                tracing::error!(%error, "reading a sealed attachment failed");
                Some((Err(std::io::Error::other("attachment unreadable")), None))
            }
        }
    });
    let stream = futures_util::StreamExt::fuse(stream);
    let mut response = axum::body::Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    Ok(response)
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum EventOutput {
    Message {
        thread: String,
        seq: i64,
    },
    Read {
        thread: String,
        user: String,
        seq: i64,
    },
    Participants {
        thread: String,
    },
    Devices {
        user: String,
    },
}

impl From<&Event> for EventOutput {
    fn from(event: &Event) -> Self {
        match event {
            Event::Message { thread, seq } => EventOutput::Message {
                thread: thread.to_string(),
                seq: *seq,
            },
            Event::Read { thread, user, seq } => EventOutput::Read {
                thread: thread.to_string(),
                user: user.to_string(),
                seq: *seq,
            },
            Event::Participants { thread } => EventOutput::Participants {
                thread: thread.to_string(),
            },
            Event::Devices { user } => EventOutput::Devices {
                user: user.to_string(),
            },
        }
    }
}

/// The event stream: a WebSocket of nudges for the signed-in person.
pub(crate) async fn events(
    State(state): State<ApiState>,
    caller: EventCaller,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let user = state.app.event_stream_user(&caller.context).await?;
    let Some(session_token) = caller.session_token else {
        return Err(ApiError::unauthenticated(
            "unauthenticated",
            "the event stream is for signed-in people",
        ));
    };
    let upgrade = upgrade.map_err(|_| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            "the event stream is a WebSocket: send the upgrade handshake",
        )
    })?;
    let Some(subscription) = state.app.relay().subscribe(user) else {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            "too many open connections for this person; close a tab",
        ));
    };
    let origin = caller.context.origin.clone();
    Ok(upgrade
        .max_message_size(EVENT_STREAM_FRAME_BYTES_MAX)
        .max_frame_size(EVENT_STREAM_FRAME_BYTES_MAX)
        // The client sends nothing but pongs: a small read buffer (tungstenite reserves
        // 128 KiB by default, per connection).
        .read_buffer_size(EVENT_STREAM_FRAME_BYTES_MAX * 4)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            stream_events(state, socket, subscription, session_token, origin).await;
        }))
}

async fn stream_events(
    state: ApiState,
    mut socket: WebSocket,
    mut subscription: haven_app::relay::Subscription,
    session_token: haven_app::Secret<String>,
    origin: haven_audit::RequestOrigin,
) {
    let mut check = tokio::time::interval(Duration::from_secs(EVENT_STREAM_CHECK_SECS));
    check.tick().await;
    let close_reason = loop {
        tokio::select! {
            event = subscription.events.recv() => {
                let Some(event) = event else {
                    // Dropped as too slow: the client reconnects and catches up.
                    break "too_slow";
                };
                let Ok(text) = serde_json::to_string(&EventOutput::from(&event)) else {
                    break "internal_error";
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break "gone";
                }
            }
            _ = check.tick() => {
                if !state.app.session_is_live(session_token.expose_secret(), &origin).await {
                    break "session_ended";
                }
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break "gone";
                }
            }
            received = socket.recv() => match received {
                Some(Ok(Message::Pong(_) | Message::Ping(_))) => {}
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break "gone",
                // The client has nothing to say on this stream.
                Some(Ok(_)) => break "unexpected_message",
            },
        }
    };
    state.app.relay().unsubscribe(&subscription);
    if close_reason != "gone" {
        let _ = socket
            .send(Message::Close(Some(CloseFrame {
                code: axum::extract::ws::close_code::POLICY,
                reason: close_reason.into(),
            })))
            .await;
    }
}
