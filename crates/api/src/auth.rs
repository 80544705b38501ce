//! `/api/v1/auth/…` and `/api/v1/invitations`: enrolment, sign-in with a second factor,
//! sessions, sign-out, password change.
//!
//! A session reaches the client one of two ways, chosen at sign-in with `transport`:
//! `cookie` (browsers; the default) sets `__Host-haven_session` (`Secure; HttpOnly;
//! SameSite=Strict; Path=/`) and returns only the CSRF token, which every cookie-borne write
//! must echo in `X-CSRF-Token`; `bearer` (API clients) returns the token in the body, to be
//! sent as `Authorization: Bearer …`. The token never appears in a URL or a log.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use haven_app::Secret;
use haven_app::identity::{OpenedSession, SessionState};
use haven_audit::RequestOrigin;
use haven_domain::{PatientId, Role, SessionId};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};

use crate::extract::{Caller, JsonBody, SESSION_COOKIE, SessionCaller, origin};
use crate::{ApiError, ApiState};

/// Where the request came from, for endpoints used before anyone is signed in.
#[derive(Debug, Clone)]
pub(crate) struct Origin(pub RequestOrigin);

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Origin(origin(parts)))
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Transport {
    #[default]
    Cookie,
    Bearer,
}

/// A secret as it arrives (a password, an invitation, a one-time code): never printed.
#[derive(Deserialize)]
#[serde(transparent)]
pub(crate) struct PasswordInput(pub(crate) String);

impl std::fmt::Debug for PasswordInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordInput(…)")
    }
}

/// A one-time secret other than a password (an invitation, a TOTP or recovery code).
pub(crate) type SecretInput = PasswordInput;

impl PasswordInput {
    fn secret(self) -> Secret<String> {
        Secret::new(self.0)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignInInput {
    login: String,
    password: PasswordInput,
    #[serde(default)]
    transport: Transport,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnrolInput {
    invitation: SecretInput,
    login: String,
    password: PasswordInput,
    #[serde(default)]
    transport: Transport,
}

#[derive(Debug, Serialize)]
struct SessionOutput {
    session_id: String,
    /// `complete`, `mfa_required` or `mfa_setup_required`.
    state: &'static str,
    expires_at_ms: i64,
    idle_timeout_secs: i64,
    csrf_token: String,
    /// Only with `transport: bearer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

fn session_response(
    status: StatusCode,
    opened: OpenedSession,
    transport: Transport,
) -> Result<Response, ApiError> {
    let output = SessionOutput {
        session_id: opened.id.to_string(),
        state: opened.state.as_str(),
        expires_at_ms: opened.expires_at_ms,
        idle_timeout_secs: opened.idle_timeout_secs,
        csrf_token: opened.csrf_token.clone(),
        token: (transport == Transport::Bearer).then(|| opened.token.expose_secret().clone()),
    };
    let mut response = (status, Json(output)).into_response();
    if transport == Transport::Cookie {
        let cookie = format!(
            "{SESSION_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict",
            opened.token.expose_secret()
        );
        response.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie).map_err(|_| ApiError::internal())?,
        );
    }
    Ok(response)
}

fn clear_cookie(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-haven_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

pub(crate) async fn sign_in(
    State(state): State<ApiState>,
    Origin(origin): Origin,
    JsonBody(input): JsonBody<SignInInput>,
) -> Result<Response, ApiError> {
    let opened = state
        .app
        .sign_in(&input.login, &input.password.secret(), &origin)
        .await?;
    session_response(StatusCode::OK, opened, input.transport)
}

pub(crate) async fn enrol(
    State(state): State<ApiState>,
    Origin(origin): Origin,
    JsonBody(input): JsonBody<EnrolInput>,
) -> Result<Response, ApiError> {
    let opened = state
        .app
        .enrol(
            &input.invitation.0,
            &input.login,
            &input.password.secret(),
            &origin,
        )
        .await?;
    session_response(StatusCode::CREATED, opened, input.transport)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeInput {
    code: SecretInput,
}

/// The second step of signing in: a TOTP code or a recovery code.
pub(crate) async fn second_factor(
    State(state): State<ApiState>,
    caller: SessionCaller,
    JsonBody(input): JsonBody<CodeInput>,
) -> Result<Response, ApiError> {
    state
        .app
        .sign_in_second_factor(&caller.session, &input.code.0, &caller.origin)
        .await?;
    Ok(Json(serde_json::json!({ "state": SessionState::Complete.as_str() })).into_response())
}

pub(crate) async fn totp_setup(
    State(state): State<ApiState>,
    caller: SessionCaller,
) -> Result<Response, ApiError> {
    let (secret, uri) = state
        .app
        .totp_setup(&caller.session, &caller.origin)
        .await?;
    Ok(Json(serde_json::json!({ "secret": secret, "otpauth_uri": uri })).into_response())
}

pub(crate) async fn totp_confirm(
    State(state): State<ApiState>,
    caller: SessionCaller,
    JsonBody(input): JsonBody<CodeInput>,
) -> Result<Response, ApiError> {
    let codes = state
        .app
        .totp_confirm(&caller.session, &input.code.0, &caller.origin)
        .await?;
    Ok(Json(serde_json::json!({
        "state": SessionState::Complete.as_str(),
        "recovery_codes": codes.iter().map(|c| c.expose_secret().clone()).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// The current session: its state, its idle time-out and its CSRF token (so the web app,
/// which keeps the token in memory only, can act again after a reload).
pub(crate) async fn current(caller: SessionCaller) -> Response {
    // Until the second factor is given, the session says only where it stands.
    if caller.session.state != SessionState::Complete {
        return Json(serde_json::json!({
            "session_id": caller.session.session.to_string(),
            "state": caller.session.state.as_str(),
            "csrf_token": caller.csrf_token,
        }))
        .into_response();
    }
    let actor = &caller.session.actor;
    Json(serde_json::json!({
        "session_id": caller.session.session.to_string(),
        "state": caller.session.state.as_str(),
        "user": actor.principal.actor_id(),
        "role": actor.role.as_str(),
        "organisation": actor.organisation.map(|o| o.to_string()),
        "patient": actor.patient.map(|p| p.to_string()),
        "idle_timeout_secs": caller.session.idle_timeout_secs,
        // Activity is recorded this often, so the time-out can strike this much early.
        "activity_interval_secs":
            haven_app::identity::activity_interval_ms(caller.session.idle_timeout_secs * 1000) / 1000,
        "csrf_token": caller.csrf_token,
    }))
    .into_response()
}

pub(crate) async fn sign_out(
    State(state): State<ApiState>,
    caller: SessionCaller,
) -> Result<Response, ApiError> {
    state.app.sign_out(&caller.session, &caller.origin).await?;
    Ok(clear_cookie(StatusCode::NO_CONTENT.into_response()))
}

fn complete(caller: &SessionCaller) -> Result<(), ApiError> {
    if caller.session.state == SessionState::Complete {
        Ok(())
    } else {
        Err(ApiError::unauthenticated(
            caller.session.state.as_str(),
            "finish signing in with your second factor first",
        ))
    }
}

pub(crate) async fn sign_out_everywhere(
    State(state): State<ApiState>,
    caller: SessionCaller,
) -> Result<Response, ApiError> {
    complete(&caller)?;
    let ended = state
        .app
        .sign_out_everywhere(&caller.session, &caller.origin)
        .await?;
    Ok(clear_cookie(
        Json(serde_json::json!({ "sessions_ended": ended })).into_response(),
    ))
}

pub(crate) async fn sessions(
    State(state): State<ApiState>,
    caller: SessionCaller,
) -> Result<Response, ApiError> {
    complete(&caller)?;
    let sessions = state.app.my_sessions(&caller.session).await?;
    let items: Vec<serde_json::Value> = sessions
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id.to_string(),
                "current": s.current,
                "created_at_ms": s.created_at_ms,
                "last_seen_ms": s.last_seen_ms,
                "expires_at_ms": s.expires_at_ms,
                "source_ip": s.source_ip,
                "user_agent": s.user_agent,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "items": items })).into_response())
}

pub(crate) async fn end_session(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    caller: SessionCaller,
) -> Result<Response, ApiError> {
    complete(&caller)?;
    let id: SessionId = id
        .parse()
        .map_err(|e| ApiError::bad_request("invalid_id", format!("{e}")))?;
    state
        .app
        .end_my_session(&caller.session, id, &caller.origin)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChangeInput {
    current_password: PasswordInput,
    new_password: PasswordInput,
}

pub(crate) async fn change_password(
    State(state): State<ApiState>,
    caller: SessionCaller,
    JsonBody(input): JsonBody<PasswordChangeInput>,
) -> Result<Response, ApiError> {
    complete(&caller)?;
    let ended = state
        .app
        .change_password(
            &caller.session,
            &input.current_password.secret(),
            &input.new_password.secret(),
            &caller.origin,
        )
        .await?;
    Ok(Json(serde_json::json!({ "other_sessions_ended": ended })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InvitationInput {
    role: String,
    patient: Option<String>,
    ttl_hours: Option<u32>,
}

/// An administrator invites someone: the answer holds the secret once.
pub(crate) async fn invite(
    State(state): State<ApiState>,
    Caller(context): Caller,
    JsonBody(input): JsonBody<InvitationInput>,
) -> Result<Response, ApiError> {
    let role: Role = input.role.parse().map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("role: {e}"),
        )
    })?;
    let patient: Option<PatientId> = input.patient.map(|p| p.parse()).transpose().map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("patient: {e}"),
        )
    })?;
    let issued = state
        .app
        .invite_as(
            &context,
            role,
            patient,
            input
                .ttl_hours
                .unwrap_or(haven_app::identity::INVITATION_TTL_HOURS_DEFAULT),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "id": issued.id.to_string(),
            "invitation": issued.token.expose_secret(),
            "expires_at_ms": issued.expires_at_ms,
        })),
    )
        .into_response())
}

// --- Passkeys ------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasskeyRegistrationInput {
    ceremony: uuid::Uuid,
    credential: haven_webauthn::RegistrationResponse,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasskeySignInInput {
    ceremony: uuid::Uuid,
    credential: haven_webauthn::AuthenticationResponse,
    #[serde(default)]
    transport: Transport,
}

/// Options for `navigator.credentials.create` (pass `publicKey` through
/// `PublicKeyCredential.parseCreationOptionsFromJSON`).
pub(crate) async fn passkey_registration_options(
    State(state): State<ApiState>,
    caller: SessionCaller,
) -> Result<Response, ApiError> {
    complete(&caller)?;
    let ceremony = state
        .app
        .passkey_registration_options(&caller.session)
        .await?;
    Ok(
        Json(serde_json::json!({ "ceremony": ceremony.id, "publicKey": ceremony.options }))
            .into_response(),
    )
}

pub(crate) async fn passkey_register(
    State(state): State<ApiState>,
    caller: SessionCaller,
    JsonBody(input): JsonBody<PasskeyRegistrationInput>,
) -> Result<Response, ApiError> {
    complete(&caller)?;
    state
        .app
        .passkey_register(
            &caller.session,
            input.ceremony,
            &input.credential,
            &input.name,
            &caller.origin,
        )
        .await?;
    Ok(StatusCode::CREATED.into_response())
}

pub(crate) async fn passkeys(
    State(state): State<ApiState>,
    caller: SessionCaller,
) -> Result<Response, ApiError> {
    complete(&caller)?;
    let items: Vec<serde_json::Value> = state
        .app
        .my_passkeys(&caller.session)
        .await?
        .into_iter()
        .map(|p| {
            serde_json::json!({
                "id": URL_SAFE_NO_PAD.encode(&p.credential_id),
                "name": p.name,
                "created_at_ms": p.created_at_ms,
                "last_used_ms": p.last_used_ms,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "items": items })).into_response())
}

/// Options for `navigator.credentials.get`: no login needed, the passkey names its user.
pub(crate) async fn passkey_sign_in_options(
    State(state): State<ApiState>,
    Origin(origin): Origin,
) -> Result<Response, ApiError> {
    let ceremony = state.app.passkey_sign_in_options(&origin).await?;
    Ok(
        Json(serde_json::json!({ "ceremony": ceremony.id, "publicKey": ceremony.options }))
            .into_response(),
    )
}

pub(crate) async fn passkey_sign_in(
    State(state): State<ApiState>,
    Origin(origin): Origin,
    JsonBody(input): JsonBody<PasskeySignInInput>,
) -> Result<Response, ApiError> {
    let opened = state
        .app
        .passkey_sign_in(input.ceremony, &input.credential, &origin)
        .await?;
    session_response(StatusCode::OK, opened, input.transport)
}

// --- Step-up and organisation policy ---------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StepUpInput {
    password: PasswordInput,
    code: Option<SecretInput>,
}

/// Proves again who the caller is, for sensitive actions in the next few minutes.
pub(crate) async fn step_up(
    State(state): State<ApiState>,
    caller: SessionCaller,
    JsonBody(input): JsonBody<StepUpInput>,
) -> Result<Response, ApiError> {
    complete(&caller)?;
    state
        .app
        .step_up(
            &caller.session,
            &input.password.secret(),
            input.code.as_ref().map(|c| c.0.as_str()),
            &caller.origin,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn organisation_output(organisation: &haven_app::identity::Organisation) -> serde_json::Value {
    serde_json::json!({
        "id": organisation.id.to_string(),
        "name": organisation.name,
        "idle_timeout_secs": organisation.idle_timeout_secs,
        "absolute_timeout_secs": organisation.absolute_timeout_secs,
        "patient_mfa_required": organisation.patient_mfa_required,
        "break_glass_secs": organisation.break_glass_secs,
        "result_release": if organisation.results_after_review { "after_review" } else { "immediate" },
        "message_retention_days": organisation.message_retention_days,
    })
}

pub(crate) async fn organisation(
    State(state): State<ApiState>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let organisation = state.app.my_organisation(&context).await?;
    Ok(Json(organisation_output(&organisation)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrganisationPolicyInput {
    idle_timeout_secs: i64,
    absolute_timeout_secs: i64,
    patient_mfa_required: bool,
    /// Left out: unchanged.
    #[serde(default)]
    break_glass_secs: Option<i64>,
    /// `immediate` or `after_review`; left out: unchanged.
    #[serde(default)]
    result_release: Option<ResultRelease>,
    /// Days secure messages are kept, 0 until a period is set; left out: unchanged.
    #[serde(default)]
    message_retention_days: Option<i64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ResultRelease {
    Immediate,
    AfterReview,
}

pub(crate) async fn update_organisation(
    State(state): State<ApiState>,
    Caller(context): Caller,
    JsonBody(input): JsonBody<OrganisationPolicyInput>,
) -> Result<Response, ApiError> {
    let organisation = state
        .app
        .update_organisation_policy(
            &context,
            haven_app::identity::OrganisationPolicy {
                idle_timeout_secs: input.idle_timeout_secs,
                absolute_timeout_secs: input.absolute_timeout_secs,
                patient_mfa_required: input.patient_mfa_required,
                break_glass_secs: input.break_glass_secs,
                results_after_review: input
                    .result_release
                    .map(|r| matches!(r, ResultRelease::AfterReview)),
                message_retention_days: input.message_retention_days,
            },
        )
        .await?;
    Ok(Json(organisation_output(&organisation)).into_response())
}

// --- Users ---------------------------------------------------------------------------------

pub(crate) async fn users(
    State(state): State<ApiState>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let items: Vec<serde_json::Value> = state
        .app
        .list_users(&context)
        .await?
        .into_iter()
        .map(|u| {
            serde_json::json!({
                "id": u.id.to_string(),
                "login": u.login,
                "role": u.role,
                "patient": u.patient.map(|p| p.to_string()),
                "second_factor": u.second_factor,
                "locked": u.locked,
                "disabled": u.disabled,
                "created_at_ms": u.created_at_ms,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "items": items })).into_response())
}

pub(crate) async fn disable_user(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    set_user_enabled(&state, &id, &context, false).await
}

pub(crate) async fn enable_user(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    set_user_enabled(&state, &id, &context, true).await
}

async fn set_user_enabled(
    state: &ApiState,
    id: &str,
    context: &haven_app::RequestContext,
    enabled: bool,
) -> Result<Response, ApiError> {
    let id: haven_domain::UserId = id
        .parse()
        .map_err(|e| ApiError::bad_request("invalid_id", format!("{e}")))?;
    state.app.set_user_enabled(context, id, enabled).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn remove_passkey(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    caller: SessionCaller,
) -> Result<Response, ApiError> {
    complete(&caller)?;
    let credential_id = URL_SAFE_NO_PAD
        .decode(id.as_bytes())
        .ok()
        .filter(|bytes| !bytes.is_empty() && bytes.len() <= 1023)
        .ok_or_else(|| ApiError::bad_request("invalid_id", "a passkey id is base64url"))?;
    state
        .app
        .remove_passkey(&caller.session, &credential_id, &caller.origin)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/v1/keys/status`: where key rotation stands (administrators).
pub(crate) async fn key_status(
    State(state): State<ApiState>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let status = state.app.key_status(&context).await?;
    Ok(Json(serde_json::json!({
        "active_root_key_id": status.active_root.to_string(),
        "keys_under_older_roots": status.keys_under_older_roots,
        "last_rotation_at_ms": status.last_rotation_ms,
    }))
    .into_response())
}
