//! Care teams, break-the-glass and notifications over HTTP:
//!
//! - `GET /api/v1/patients/{id}/care-team`, `PUT`/`DELETE .../care-team/{user}`
//! - `POST /api/v1/patients/{id}/break-glass` with the stated reason
//! - `GET /api/v1/break-glass` (the review queue), `POST /api/v1/break-glass/{id}/review`
//! - `GET /api/v1/notifications`, `POST /api/v1/notifications/{id}/read`
//! - `GET`/`POST /api/v1/patients/{id}/delegations`, `DELETE .../delegations/{delegation}`,
//!   `POST /api/v1/delegations/accept`: proxies

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use haven_app::care::{BreakGlassView, QUEUE_PAGE_ROWS_MAX, ReviewState};
use haven_app::proxies::DelegationView;
use haven_domain::{BreakGlassId, DelegationId, NotificationId, UserId};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::extract::{Caller, JsonBody, parse_query};
use crate::patients::{parse_id, timestamp};
use crate::{ApiError, ApiState};

/// The page size of the review queue when the caller does not say.
const QUEUE_PAGE_ROWS_DEFAULT: u32 = 20;

fn parse<T: std::str::FromStr>(what: &'static str, text: &str) -> Result<T, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request("invalid_id", format!("{what}: not a valid id")))
}

pub(crate) async fn care_team(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let patient = parse_id(&id)?;
    let members: Vec<Value> = state
        .app
        .care_team(&context, patient)
        .await?
        .into_iter()
        .map(|m| {
            json!({
                "user": m.user.to_string(),
                "role": m.role,
                "added_at": timestamp(m.added_at_ms),
            })
        })
        .collect();
    Ok(Json(json!({ "patient": patient.to_string(), "members": members })).into_response())
}

/// Adds a member: 201 when added, 200 when they already were one (PUT is idempotent).
pub(crate) async fn add_member(
    State(state): State<ApiState>,
    Path((id, user)): Path<(String, String)>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let patient = parse_id(&id)?;
    let user: UserId = parse("user", &user)?;
    let added = state
        .app
        .add_care_team_member(&context, patient, user)
        .await?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "patient": patient.to_string(), "user": user.to_string() })),
    )
        .into_response())
}

pub(crate) async fn remove_member(
    State(state): State<ApiState>,
    Path((id, user)): Path<(String, String)>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let patient = parse_id(&id)?;
    let user: UserId = parse("user", &user)?;
    state
        .app
        .remove_care_team_member(&context, patient, user)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BreakGlassInput {
    reason: String,
}

pub(crate) async fn break_glass(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Caller(context): Caller,
    JsonBody(input): JsonBody<BreakGlassInput>,
) -> Result<Response, ApiError> {
    let patient = parse_id(&id)?;
    let issued = state
        .app
        .break_glass(&context, patient, &input.reason)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": issued.id.to_string(),
            "patient": issued.patient.to_string(),
            "expires_at": timestamp(issued.expires_at_ms),
        })),
    )
        .into_response())
}

fn break_glass_output(view: &BreakGlassView) -> Value {
    json!({
        "id": view.id.to_string(),
        "user": view.user.to_string(),
        "patient": view.patient.to_string(),
        "reason": view.reason,
        "created_at": timestamp(view.created_at_ms),
        "expires_at": timestamp(view.expires_at_ms),
        "review_state": view.review_state.as_str(),
        "reviewed_by": view.reviewed_by.map(|u| u.to_string()),
        "reviewed_at": view.reviewed_at_ms.map(timestamp),
        "review_note": view.review_note,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueParams {
    /// `pending` (the default) or `all`.
    state: Option<String>,
    before: Option<String>,
    limit: Option<u32>,
}

pub(crate) async fn queue(
    State(state): State<ApiState>,
    Caller(context): Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params: QueueParams = parse_query(raw.as_deref().unwrap_or_default())?;
    let pending_only = match params.state.as_deref() {
        None | Some("pending") => true,
        Some("all") => false,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "state must be `pending` or `all`",
            ));
        }
    };
    let limit = params.limit.unwrap_or(QUEUE_PAGE_ROWS_DEFAULT);
    if limit == 0 || limit > QUEUE_PAGE_ROWS_MAX {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {QUEUE_PAGE_ROWS_MAX}"),
        ));
    }
    let before: Option<BreakGlassId> = params
        .before
        .as_deref()
        .map(|b| parse("before", b))
        .transpose()?;
    let page = state
        .app
        .break_glass_queue(&context, pending_only, before, limit)
        .await?;
    let next = page.next.map(|last| {
        format!(
            "/api/v1/break-glass?state={}&limit={limit}&before={last}",
            if pending_only { "pending" } else { "all" }
        )
    });
    Ok(Json(json!({
        "items": page.items.iter().map(break_glass_output).collect::<Vec<_>>(),
        "next": next,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReviewInput {
    /// `justified` or `unjustified`.
    outcome: String,
    #[serde(default)]
    note: Option<String>,
}

pub(crate) async fn review(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Caller(context): Caller,
    JsonBody(input): JsonBody<ReviewInput>,
) -> Result<Response, ApiError> {
    let id: BreakGlassId = parse("id", &id)?;
    let outcome = match ReviewState::parse(&input.outcome) {
        Some(state @ (ReviewState::Justified | ReviewState::Unjustified)) => state,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "outcome: `justified` or `unjustified`",
            ));
        }
    };
    let view = state
        .app
        .review_break_glass(&context, id, outcome, input.note.as_deref())
        .await?;
    Ok(Json(break_glass_output(&view)).into_response())
}

pub(crate) async fn notifications(
    State(state): State<ApiState>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let items: Vec<Value> = state
        .app
        .my_notifications(&context)
        .await?
        .into_iter()
        .map(|n| {
            json!({
                "id": n.id.to_string(),
                "kind": n.kind,
                "subject": n.subject.map(|s| s.to_string()),
                "created_at": timestamp(n.created_at_ms),
                "read": n.read,
            })
        })
        .collect();
    let unread = items.iter().filter(|n| n["read"] == false).count();
    Ok(Json(json!({ "items": items, "unread": unread })).into_response())
}

pub(crate) async fn notification_read(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let id: NotificationId = parse("id", &id)?;
    state.app.mark_notification_read(&context, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) fn delegation_output(view: &DelegationView) -> Value {
    json!({
        "id": view.id.to_string(),
        "patient": view.patient.to_string(),
        "proxy": view.proxy.map(|p| p.to_string()),
        "relationship": view.relationship,
        "scopes": view.scopes.names(),
        "state": view.state.as_str(),
        "created_at": timestamp(view.created_at_ms),
        "expires_at": timestamp(view.expires_at_ms),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DelegationInput {
    /// `parent`, `guardian` or `caregiver`.
    relationship: String,
    /// Any of `record`, `access_log`.
    scopes: Vec<String>,
    /// How long it lasts once accepted; a year when left out.
    #[serde(default)]
    days: Option<u32>,
}

/// The scope names one request may list: each known name once, at most.
const SCOPES_LISTED_MAX: usize = 8;

pub(crate) async fn offer_delegation(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Caller(context): Caller,
    JsonBody(input): JsonBody<DelegationInput>,
) -> Result<Response, ApiError> {
    let patient = parse_id(&id)?;
    if input.scopes.len() > SCOPES_LISTED_MAX {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("scopes: at most {SCOPES_LISTED_MAX} names"),
        ));
    }
    let offered = state
        .app
        .offer_delegation(
            &context,
            patient,
            &input.relationship,
            &input.scopes,
            input.days,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": offered.id.to_string(),
            "offer": offered.offer.expose_secret(),
            "offer_expires_at": timestamp(offered.offer_expires_at_ms),
            "expires_at": timestamp(offered.expires_at_ms),
        })),
    )
        .into_response())
}

pub(crate) async fn delegations(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let patient = parse_id(&id)?;
    let items: Vec<Value> = state
        .app
        .delegations(&context, patient)
        .await?
        .iter()
        .map(delegation_output)
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

pub(crate) async fn revoke_delegation(
    State(state): State<ApiState>,
    Path((id, delegation)): Path<(String, String)>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let patient = parse_id(&id)?;
    let delegation: DelegationId = parse("delegation", &delegation)?;
    state
        .app
        .revoke_delegation(&context, patient, delegation)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AcceptInput {
    offer: crate::auth::SecretInput,
}

pub(crate) async fn accept_delegation(
    State(state): State<ApiState>,
    Caller(context): Caller,
    JsonBody(input): JsonBody<AcceptInput>,
) -> Result<Response, ApiError> {
    let accepted = state
        .app
        .accept_delegation(&context, input.offer.0.as_str())
        .await?;
    Ok(Json(delegation_output(&accepted)).into_response())
}
