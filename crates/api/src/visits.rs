//! Video visits over a WebSocket: the waiting room and the signaling between the call's
//! browsers.
//!
//! - `GET /api/v1/visits/{appointment}`: where the visit stands for the caller (their role,
//!   open or not yet, over, ended), for the page to say so before it connects.
//! - `GET /api/v1/visits/{appointment}/signal?device=…`: the visit's signaling socket. The
//!   handshake enters the visit (policy, time window, audit) before it is upgraded, so a
//!   refusal is an ordinary HTTP answer (`403`, `404`, `409 visit_ended`, …).
//! - `GET /api/v1/visits/{appointment}/devices`: the devices of the call's members, with
//!   proofs (and guests' devices, which have none), for a member of the call.
//! - `POST`/`GET /api/v1/visits/{appointment}/guests`: a host invites a guest (an
//!   interpreter, a relative: the invitation's secret is shown once) and lists them.
//! - `POST /api/v1/visits/guest-sessions`: a guest opens their invitation, once; the answer
//!   sets the `__Host-haven_guest` cookie, good for that visit's socket and devices only.
//!
//! The protocol ([`pump`]) is generic over the socket's `Stream` and `Sink`, so it runs the
//! same over a real socket and over in-memory channels. Client frames are JSON text:
//! `admit` / `decline` `{member}`, `signal {to, kind, payload}`, `leave`, `end`, and for
//! recording `ask_to_record`, `consent {granted}`, `start_recording`, `stop_recording`. The
//! server's are `welcome` (with the relay's credentials), `admitted`, `declined`, `lobby`,
//! `joined`, `left`, `presence`, `signal {from, kind, payload}`, `recording {phase, by,
//! consented, ended, declined_by}`, `ended`, `replaced`, and `error {code, message}` for a
//! frame the server refused, which changes nothing.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade, close_code};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use haven_app::visits::{GuestDevice, IceServers, VisitCommand, VisitConnection, VisitPass};
use haven_app::{App, AppError};
use haven_domain::visit::{MemberId, MemberView, Notice, Person, SignalKind};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::extract::{Caller, GUEST_COOKIE, JsonBody, VisitCaller, parse_query};
use crate::{ApiError, ApiState};

/// The largest frame a client may send: a relayed payload
/// ([`haven_app::visits::SIGNAL_PAYLOAD_BYTES_MAX`]) with its envelope.
pub const SIGNAL_FRAME_BYTES_MAX: usize = haven_app::visits::SIGNAL_PAYLOAD_BYTES_MAX + 1024;
/// Frames a client may send per second on average, and in a burst: a call's setup sends a
/// few dozen candidates at once, a settled call next to nothing.
pub const SIGNAL_FRAMES_PER_SEC: u32 = 50;
pub const SIGNAL_FRAMES_BURST: u32 = 200;
/// The read buffer each socket reserves. Tungstenite's default (128 KiB) made an idle
/// session cost about 150 KiB; frames larger than this still arrive, the buffer grows for them.
const SIGNAL_READ_BUFFER_BYTES: usize = 8 * 1024;
/// Writes queued on a socket that cannot take them, at most: then the connection fails.
const SIGNAL_WRITE_BUFFER_BYTES_MAX: usize = 4 * SIGNAL_FRAME_BYTES_MAX;
/// How often the socket pings, and checks that its session is still live.
const SIGNAL_CHECK_SECS: u64 = 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalQuery {
    /// A person's registered device.
    device: Option<String>,
    /// A guest's device keys, made for this visit (base64url, no padding).
    hpke: Option<String>,
    signing: Option<String>,
    signature: Option<String>,
}

fn key32(field: &'static str, text: &str) -> Result<[u8; 32], ApiError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("{field}: 32 bytes in base64url"))
        })
}

/// A guest's device from the handshake's query, its self-signature checked.
fn guest_device(query: &SignalQuery) -> Result<Option<GuestDevice>, ApiError> {
    match (&query.hpke, &query.signing, &query.signature) {
        (None, None, None) => Ok(None),
        (Some(hpke), Some(signing), Some(signature)) => {
            let signature = URL_SAFE_NO_PAD
                .decode(signature)
                .map_err(|_| ApiError::bad_request("invalid_query", "signature: base64url"))?;
            Ok(Some(GuestDevice::new(
                key32("hpke", hpke)?,
                key32("signing", signing)?,
                signature,
            )?))
        }
        _ => Err(ApiError::bad_request(
            "invalid_query",
            "a guest's device needs hpke, signing and signature together",
        )),
    }
}

fn appointment_id(text: &str) -> Result<String, ApiError> {
    // A FHIR logical id: 1 to 64 of [A-Za-z0-9-.].
    let valid = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(ApiError::bad_request(
            "invalid_id",
            "appointment: not a valid id",
        ))
    }
}

/// Where a visit stands for the caller: their role, whether it is open, and when.
pub(crate) async fn status(
    State(state): State<ApiState>,
    Path(appointment): Path<String>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let appointment = appointment_id(&appointment)?;
    state.app.visit_caller(&context).await?;
    let status = state.app.visit_status(&context, &appointment).await?;
    Ok(axum::Json(json!({
        "appointment": appointment,
        "patient": status.patient.to_string(),
        "role": status.role.as_str(),
        "state": status.state.as_str(),
        "appointment_status": status.status,
        "starts_at": crate::patients::timestamp(status.starts_at_ms),
        "ends_at": crate::patients::timestamp(status.ends_at_ms),
        "opens_at": crate::patients::timestamp(status.opens_at_ms),
    }))
    .into_response())
}

/// The visit's signaling socket.
pub(crate) async fn signal(
    State(state): State<ApiState>,
    Path(appointment): Path<String>,
    RawQuery(query): RawQuery,
    caller: VisitCaller,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let appointment = appointment_id(&appointment)?;
    let query: SignalQuery = parse_query(query.as_deref().unwrap_or(""))?;
    let upgrade_required = || {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            "a visit's signaling is a WebSocket: send the upgrade handshake",
        )
    };
    let (pass, live): (VisitPass, Liveness) = match caller {
        VisitCaller::Person(caller) => {
            let device = query
                .device
                .as_deref()
                .map(|text| {
                    text.parse::<Uuid>()
                        .map_err(|_| ApiError::bad_request("invalid_id", "device: not a valid id"))
                })
                .transpose()?;
            state.app.visit_caller(&caller.context).await?;
            upgrade.as_ref().map_err(|_| upgrade_required())?;
            let Some(session_token) = caller.session_token else {
                return Err(ApiError::unauthenticated(
                    "unauthenticated",
                    "a visit is for signed-in people",
                ));
            };
            let pass = state
                .app
                .enter_visit(&caller.context, &appointment, device)
                .await?;
            (
                pass,
                Liveness::Session {
                    token: session_token,
                    origin: caller.context.origin.clone(),
                },
            )
        }
        VisitCaller::Guest { session, origin } => {
            let device = guest_device(&query)?;
            upgrade.as_ref().map_err(|_| upgrade_required())?;
            let pass = state
                .app
                .enter_visit_as_guest(session.expose_secret(), &appointment, device, &origin)
                .await?;
            (
                pass,
                Liveness::Guest {
                    session,
                    appointment: appointment.clone(),
                },
            )
        }
    };
    let upgrade = upgrade.map_err(|_| upgrade_required())?;
    Ok(upgrade
        .max_message_size(SIGNAL_FRAME_BYTES_MAX)
        .max_frame_size(SIGNAL_FRAME_BYTES_MAX)
        .read_buffer_size(SIGNAL_READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(SIGNAL_WRITE_BUFFER_BYTES_MAX)
        .on_upgrade(move |socket| async move {
            let (sink, stream) = socket.split();
            let app = state.app.clone();
            let check = move || {
                let app = app.clone();
                let live = live.clone();
                async move { live.check(&app).await }
            };
            pump(&state.app, pass, stream, sink, check).await;
        }))
}

/// What keeps a visit's socket open: a person's session, or a guest's.
#[derive(Clone)]
enum Liveness {
    Session {
        token: haven_app::Secret<String>,
        origin: haven_audit::RequestOrigin,
    },
    Guest {
        session: haven_app::Secret<String>,
        appointment: String,
    },
}

impl Liveness {
    async fn check(&self, app: &App) -> bool {
        match self {
            Liveness::Session { token, origin } => {
                app.session_is_live(token.expose_secret(), origin).await
            }
            Liveness::Guest {
                session,
                appointment,
            } => {
                app.guest_session_is_live(session.expose_secret(), appointment)
                    .await
            }
        }
    }
}

/// Runs one member's connection: hands the room's notices to the client and the client's
/// frames to the room, until either side ends it. Generic over the socket so tests can run
/// it over channels.
pub async fn pump<S, K, L, F>(app: &App, pass: VisitPass, mut incoming: S, mut outgoing: K, live: L)
where
    S: Stream<Item = Result<Message, axum::Error>> + Unpin,
    K: Sink<Message> + Unpin,
    L: Fn() -> F,
    F: std::future::Future<Output = bool>,
{
    let mut connection = match app.connect_visit(&pass) {
        Ok(connection) => connection,
        Err(error) => {
            let (code, message) = refusal(&error);
            let _ = outgoing.send(error_frame(code, &message)).await;
            let _ = outgoing.send(close(code)).await;
            return;
        }
    };
    let ice = app.ice_servers(&pass);
    let mut budget = FrameBudget::new();
    let mut check = tokio::time::interval(Duration::from_secs(SIGNAL_CHECK_SECS));
    check.tick().await;
    let close_reason: Option<&'static str> = loop {
        tokio::select! {
            notice = connection.notices.recv() => {
                let Some(notice) = notice else {
                    // Dropped as too slow: the client reconnects and takes its place back.
                    break Some("too_slow");
                };
                let ends = match &notice {
                    Notice::Declined => Some("declined"),
                    Notice::Ended => Some("ended"),
                    Notice::Replaced => Some("replaced"),
                    _ => None,
                };
                let frame = Message::Text(notice_frame(&notice, &ice).to_string().into());
                if outgoing.send(frame).await.is_err() {
                    break None;
                }
                if let Some(reason) = ends {
                    // This connection no longer speaks for a member: nothing to mark away.
                    let _ = outgoing.send(close(reason)).await;
                    return;
                }
            }
            _ = check.tick() => {
                if !live().await {
                    break Some("session_ended");
                }
                if outgoing.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break None;
                }
            }
            received = incoming.next() => match received {
                Some(Ok(Message::Text(text))) => {
                    let answer = if budget.take() {
                        match parse_command(text.as_str()) {
                            Ok(command) => {
                                let leaving = command == VisitCommand::Leave;
                                match app.visit_command(&pass, connection.member, command).await {
                                    Ok(()) if leaving => {
                                        let _ = outgoing.send(close("left")).await;
                                        return;
                                    }
                                    Ok(()) => None,
                                    Err(error) => Some(refusal(&error)),
                                }
                            }
                            Err(refused) => Some(refused),
                        }
                    } else {
                        Some(("too_fast", format!(
                            "at most {SIGNAL_FRAMES_PER_SEC} frames a second; this one was dropped"
                        )))
                    };
                    if let Some((code, message)) = answer
                        && outgoing.send(error_frame(code, &message)).await.is_err()
                    {
                        break None;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let frame = error_frame("invalid_frame", "frames are JSON text");
                    if outgoing.send(frame).await.is_err() {
                        break None;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => break None,
                // Includes a frame over SIGNAL_FRAME_BYTES_MAX: the socket is unusable.
                Some(Err(_)) => break Some("frame_too_large"),
            },
        }
    };
    app.visit_disconnected(&pass, &connection);
    drain(&mut connection);
    if let Some(reason) = close_reason {
        let _ = outgoing.send(close(reason)).await;
    }
}

/// Drops what was queued for a connection that is gone.
fn drain(connection: &mut VisitConnection) {
    connection.notices.close();
    while connection.notices.try_recv().is_ok() {}
}

/// A token bucket of frames: [`SIGNAL_FRAMES_BURST`] at once, refilled at
/// [`SIGNAL_FRAMES_PER_SEC`].
struct FrameBudget {
    tokens: f64,
    at: tokio::time::Instant,
}

impl FrameBudget {
    fn new() -> Self {
        Self {
            tokens: f64::from(SIGNAL_FRAMES_BURST),
            at: tokio::time::Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * f64::from(SIGNAL_FRAMES_PER_SEC);
        self.tokens = (self.tokens + refill).min(f64::from(SIGNAL_FRAMES_BURST));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn close(reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: close_code::POLICY,
        reason: reason.into(),
    }))
}

fn error_frame(code: &str, message: &str) -> Message {
    Message::Text(
        json!({ "type": "error", "code": code, "message": message })
            .to_string()
            .into(),
    )
}

/// What the member is told about a refused frame; an unexpected failure is logged, not
/// described.
fn refusal(error: &AppError) -> (&'static str, String) {
    match error {
        AppError::Conflict { code, message } => (code, message.clone()),
        AppError::Forbidden { reason } => (reason, "you may not do that in this visit".into()),
        AppError::TooLarge { limit_bytes } => (
            "payload_too_large",
            format!("a payload holds at most {limit_bytes} bytes"),
        ),
        AppError::AuditUnavailable => (
            "audit_unavailable",
            "the audit log is unavailable, so nothing was done".into(),
        ),
        other => {
            tracing::error!(error = %other, "visit command failed");
            (
                "internal_error",
                "something went wrong; nothing was done".into(),
            )
        }
    }
}

/// A client frame, strictly: unknown fields and types are refused.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum CommandInput {
    Admit {
        member: u32,
    },
    Decline {
        member: u32,
    },
    Signal {
        to: u32,
        kind: String,
        payload: String,
    },
    Leave,
    End,
    /// Recording: a host asks, everyone answers, a host starts and stops.
    AskToRecord,
    Consent {
        granted: bool,
    },
    StartRecording,
    StopRecording,
}

/// Parses a client frame into a command, or says what is wrong with it.
pub fn parse_command(text: &str) -> Result<VisitCommand, (&'static str, String)> {
    if text.len() > SIGNAL_FRAME_BYTES_MAX {
        return Err((
            "frame_too_large",
            format!("a frame holds at most {SIGNAL_FRAME_BYTES_MAX} bytes"),
        ));
    }
    let input: CommandInput = serde_json::from_str(text)
        .map_err(|error| ("invalid_frame", format!("not a visit command: {error}")))?;
    Ok(match input {
        CommandInput::Admit { member } => VisitCommand::Admit(MemberId(member)),
        CommandInput::Decline { member } => VisitCommand::Decline(MemberId(member)),
        CommandInput::Signal { to, kind, payload } => VisitCommand::Relay {
            to: MemberId(to),
            kind: SignalKind::parse(&kind).ok_or_else(|| {
                (
                    "invalid_frame",
                    format!(
                        "kind: one of {}",
                        SignalKind::ALL.map(|k| k.as_str()).join(", ")
                    ),
                )
            })?,
            payload,
        },
        CommandInput::Leave => VisitCommand::Leave,
        CommandInput::End => VisitCommand::End,
        CommandInput::AskToRecord => VisitCommand::AskToRecord,
        CommandInput::Consent { granted } => VisitCommand::ConsentToRecord(granted),
        CommandInput::StartRecording => VisitCommand::StartRecording,
        CommandInput::StopRecording => VisitCommand::StopRecording,
    })
}

fn member_output(view: &MemberView) -> Value {
    let (user, guest) = match view.person {
        Person::User(user) => (Some(user.to_string()), None),
        Person::Guest(guest) => (None, Some(guest.to_string())),
    };
    json!({
        "id": view.id.0,
        "user": user,
        "guest": guest,
        "role": view.role.as_str(),
        "admission": view.admission.as_str(),
        "connected": view.connected,
        "device": view.device,
    })
}

fn members_output(views: &[MemberView]) -> Vec<Value> {
    views.iter().map(member_output).collect()
}

fn ice_output(ice: &IceServers) -> Value {
    if ice.urls.is_empty() {
        return json!([]);
    }
    match &ice.credential {
        Some(credential) => json!([{
            "urls": ice.urls,
            "username": credential.username,
            "credential": credential.password,
        }]),
        None => json!([{ "urls": ice.urls }]),
    }
}

/// A notice as the client reads it.
pub fn notice_frame(notice: &Notice, ice: &IceServers) -> Value {
    match notice {
        Notice::Welcome {
            you,
            role,
            admission,
            members,
        } => json!({
            "type": "welcome",
            "you": you.0,
            "role": role.as_str(),
            "admission": admission.as_str(),
            "members": members_output(members),
            "ice_servers": ice_output(ice),
        }),
        Notice::Admitted { members } => {
            json!({ "type": "admitted", "members": members_output(members) })
        }
        Notice::Declined => json!({ "type": "declined" }),
        Notice::Lobby { waiting } => json!({ "type": "lobby", "waiting": members_output(waiting) }),
        Notice::Joined(view) => json!({ "type": "joined", "member": member_output(view) }),
        Notice::Left(member) => json!({ "type": "left", "member": member.0 }),
        Notice::Presence { member, connected } => {
            json!({ "type": "presence", "member": member.0, "connected": connected })
        }
        Notice::Relay {
            from,
            kind,
            payload,
        } => json!({
            "type": "signal",
            "from": from.0,
            "kind": kind.as_str(),
            "payload": payload,
        }),
        Notice::Ended => json!({ "type": "ended" }),
        Notice::Replaced => json!({ "type": "replaced" }),
        Notice::Recording {
            phase,
            by,
            consented,
            ended,
        } => {
            let declined_by = match ended {
                Some(haven_domain::visit::RecordingEnd::Declined(member)) => Some(member.0),
                _ => None,
            };
            json!({
                "type": "recording",
                "phase": phase.as_str(),
                "by": by.map(|m| m.0),
                "consented": consented.iter().map(|m| m.0).collect::<Vec<_>>(),
                "ended": ended.map(|e| e.as_str()),
                "declined_by": declined_by,
            })
        }
    }
}

/// The devices of the call's members: published ones with proofs, and guests'.
pub(crate) async fn devices(
    State(state): State<ApiState>,
    Path(appointment): Path<String>,
    caller: VisitCaller,
) -> Result<Response, ApiError> {
    let appointment = appointment_id(&appointment)?;
    let devices = match caller {
        VisitCaller::Person(caller) => {
            state
                .app
                .visit_devices(&caller.context, &appointment)
                .await?
        }
        VisitCaller::Guest { session, .. } => {
            state
                .app
                .guest_visit_devices(session.expose_secret(), &appointment)
                .await?
        }
    };
    let mut output = crate::messaging::device_list_output(&devices.published);
    // The log's public key, for a guest, who has no account to fetch and pin it with (a
    // person's browser checks against the key it pinned).
    output["log_vkey"] = state.app.audit_verifier().vkey().to_string().into();
    output["guest_devices"] = devices
        .guests
        .iter()
        .map(|(guest, device)| {
            json!({
                "guest": guest.to_string(),
                "hpke_public_key": STANDARD.encode(device.hpke_public_key),
                "signing_public_key": STANDARD.encode(device.signing_public_key),
                "self_signature": STANDARD.encode(&device.self_signature),
                "fingerprint": device.fingerprint,
                "safety_number": haven_app::messaging::safety_number(&device.fingerprint),
            })
        })
        .collect::<Vec<_>>()
        .into();
    Ok(axum::Json(output).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InviteInput {
    kind: String,
}

/// A clinician of the visit invites a guest; the invitation's secret is shown once.
pub(crate) async fn invite_guest(
    State(state): State<ApiState>,
    Path(appointment): Path<String>,
    Caller(context): Caller,
    JsonBody(input): JsonBody<InviteInput>,
) -> Result<Response, ApiError> {
    let appointment = appointment_id(&appointment)?;
    let invited = state
        .app
        .invite_guest(&context, &appointment, &input.kind)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "id": invited.guest.to_string(),
            "kind": invited.kind,
            "invitation": invited.secret.expose_secret(),
            "expires_at": crate::patients::timestamp(invited.expires_at_ms),
        })),
    )
        .into_response())
}

/// A visit's guest invitations, for its hosts.
pub(crate) async fn guests(
    State(state): State<ApiState>,
    Path(appointment): Path<String>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let appointment = appointment_id(&appointment)?;
    let guests = state.app.visit_guests(&context, &appointment).await?;
    let listed: Vec<Value> = guests
        .iter()
        .map(|guest| {
            json!({
                "id": guest.id.to_string(),
                "kind": guest.kind,
                "created_at": crate::patients::timestamp(guest.created_at_ms),
                "expires_at": crate::patients::timestamp(guest.expires_at_ms),
                "redeemed_at": guest.redeemed_at_ms.map(crate::patients::timestamp),
            })
        })
        .collect();
    Ok(axum::Json(json!({ "guests": listed })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedeemInput {
    invitation: String,
}

/// A guest opens their invitation (once): the answer sets their visit's session cookie,
/// which lasts until the visit closes.
pub(crate) async fn redeem_guest(
    State(state): State<ApiState>,
    crate::auth::Origin(origin): crate::auth::Origin,
    JsonBody(input): JsonBody<RedeemInput>,
) -> Result<Response, ApiError> {
    let session = state
        .app
        .redeem_guest_invitation(&input.invitation, &origin)
        .await?;
    let max_age_secs = ((session.expires_at_ms - state.app.clock().now_ms()) / 1000).max(0);
    let cookie = format!(
        "{GUEST_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}",
        session.secret.expose_secret()
    );
    let mut response = (
        StatusCode::CREATED,
        axum::Json(json!({
            "guest": session.guest.to_string(),
            "appointment": session.appointment,
            "kind": session.kind,
            "expires_at": crate::patients::timestamp(session.expires_at_ms),
        })),
    )
        .into_response();
    response.headers_mut().insert(
        http::header::SET_COOKIE,
        http::HeaderValue::from_str(&cookie).map_err(|_| ApiError::internal())?,
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_strictly() {
        assert_eq!(
            parse_command(r#"{"type":"admit","member":2}"#),
            Ok(VisitCommand::Admit(MemberId(2)))
        );
        assert_eq!(
            parse_command(r#"{"type":"signal","to":3,"kind":"key","payload":"sealed"}"#),
            Ok(VisitCommand::Relay {
                to: MemberId(3),
                kind: SignalKind::Key,
                payload: "sealed".into()
            })
        );
        assert_eq!(parse_command(r#"{"type":"end"}"#), Ok(VisitCommand::End));
        assert_eq!(
            parse_command(r#"{"type":"consent","granted":false}"#),
            Ok(VisitCommand::ConsentToRecord(false))
        );
        assert_eq!(
            parse_command(r#"{"type":"start_recording"}"#),
            Ok(VisitCommand::StartRecording)
        );
        for malformed in [
            "",
            "not json",
            "[]",
            r#"{"type":"admit"}"#,
            r#"{"type":"admit","member":-1}"#,
            r#"{"type":"admit","member":"2"}"#,
            r#"{"type":"admit","member":2,"extra":true}"#,
            r#"{"type":"open_door"}"#,
            r#"{"type":"signal","to":3,"kind":"offer","payload":"x"}"#,
            r#"{"type":"signal","to":3,"kind":"key"}"#,
            r#"{"member":2}"#,
            r#"{"type":"consent"}"#,
            r#"{"type":"consent","granted":"yes"}"#,
        ] {
            let refused = parse_command(malformed).unwrap_err();
            assert_eq!(refused.0, "invalid_frame", "{malformed}");
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_before_it_is_parsed() {
        let payload = "x".repeat(SIGNAL_FRAME_BYTES_MAX);
        let frame = format!(r#"{{"type":"signal","to":1,"kind":"chat","payload":"{payload}"}}"#);
        assert_eq!(parse_command(&frame).unwrap_err().0, "frame_too_large");
    }

    #[test]
    fn a_waiting_welcome_carries_no_members_but_the_relay() {
        let ice = IceServers {
            urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
            credential: Some(haven_app::visits::TurnCredential {
                username: "10:n".into(),
                password: "p".into(),
            }),
        };
        let frame = notice_frame(
            &Notice::Welcome {
                you: MemberId(2),
                role: haven_domain::visit::VisitRole::Patient,
                admission: haven_domain::visit::Admission::Waiting,
                members: Vec::new(),
            },
            &ice,
        );
        assert_eq!(frame["type"], "welcome");
        assert_eq!(frame["admission"], "waiting");
        assert_eq!(frame["members"], json!([]));
        assert_eq!(frame["ice_servers"][0]["username"], "10:n");
    }

    #[tokio::test]
    async fn the_frame_budget_allows_a_burst_then_refuses() {
        let mut budget = FrameBudget::new();
        for _ in 0..SIGNAL_FRAMES_BURST {
            assert!(budget.take());
        }
        assert!(!budget.take());
    }
}
