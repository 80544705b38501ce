//! `/api/v1/audit/checkpoints`: the audit log's signed checkpoints, for witnesses.
//!
//! A witness outside Haven fetches checkpoints regularly and keeps them; any later
//! checkpoint must then be consistent with what it kept, so history cannot be rewritten
//! unnoticed. The notes verify with the log's public key alone (`haven audit vkey`).

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use haven_app::audit_log::StoredCheckpoint;
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};

use crate::extract::{Caller, parse_query};
use crate::{ApiError, ApiState};

/// Checkpoints per page when the caller does not say, and at most.
const PAGE_SIZE_DEFAULT: u32 = 100;
const PAGE_SIZE_MAX: u32 = 1000;

#[derive(Debug, Serialize)]
struct CheckpointOutput {
    size: u64,
    /// Base64 of the SHA-256 tree root.
    root: String,
    /// The C2SP signed note.
    note: String,
    created_at_ms: i64,
}

#[derive(Debug, Serialize)]
struct CheckpointPage {
    items: Vec<CheckpointOutput>,
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointParams {
    after: Option<u64>,
    limit: Option<u32>,
}

impl From<StoredCheckpoint> for CheckpointOutput {
    fn from(checkpoint: StoredCheckpoint) -> Self {
        Self {
            size: checkpoint.size,
            root: STANDARD.encode(&checkpoint.root),
            note: checkpoint.note,
            created_at_ms: checkpoint.created_at_ms,
        }
    }
}

/// The latest signed checkpoint as a plain-text note.
pub(crate) async fn latest(
    State(state): State<ApiState>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let latest = state.app.latest_audit_checkpoint(&context).await?;
    let checkpoint = latest.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_checkpoint",
            "the audit log has no signed checkpoint yet",
        )
    })?;
    let mut response = checkpoint.note.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

/// Checkpoints after a size, smallest first.
pub(crate) async fn list(
    State(state): State<ApiState>,
    Caller(context): Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params: CheckpointParams = parse_query(query.as_deref().unwrap_or_default())?;
    let limit = params.limit.unwrap_or(PAGE_SIZE_DEFAULT);
    if limit == 0 || limit > PAGE_SIZE_MAX {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {PAGE_SIZE_MAX}"),
        ));
    }
    let items = state
        .app
        .audit_checkpoints(&context, params.after.unwrap_or(0), limit)
        .await?;
    let next = (items.len() == limit as usize)
        .then(|| {
            items
                .last()
                .map(|c| format!("/api/v1/audit/checkpoints?after={}&limit={limit}", c.size))
        })
        .flatten();
    Ok(Json(CheckpointPage {
        items: items.into_iter().map(CheckpointOutput::from).collect(),
        next,
    })
    .into_response())
}
