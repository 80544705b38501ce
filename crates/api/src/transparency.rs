//! Proofs from the audit log, over HTTP.
//!
//! - `GET /api/v1/patients/{id}/access-log`: who accessed a patient's record, when, what
//!   and why, newest first, each entry with its inclusion proof in the latest signed
//!   checkpoint. The patient reads their own; reviewers read anyone's; every read is
//!   itself recorded.
//! - `GET /api/v1/audit/proofs/inclusion?seq=…[&size=…]`: one entry's proof, for reviewers.
//! - `GET /api/v1/audit/proofs/consistency?first=…[&second=…]`: the proof a witness asks for.
//! - `GET /api/v1/audit/vkey`: the log's public key (C2SP verifier key), for clients that
//!   check proofs and checkpoints themselves.
//!
//! Hashes travel as standard base64. A client recomputes an entry's leaf from its fields
//! (the canonical encoding in `haven_audit`), checks the path to the checkpoint's root,
//! and checks the checkpoint's signature with the public key.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use haven_app::transparency::{ACCESS_LOG_PAGE_ROWS_DEFAULT, InclusionProof, ProvenEntries};
use http::{HeaderValue, header};
use serde::{Deserialize, Serialize};

use crate::audit::{CheckpointOutput, EntryOutput};
use crate::extract::{Caller, parse_query};
use crate::patients::parse_id;
use crate::{ApiError, ApiState};

#[derive(Debug, Serialize)]
pub(crate) struct ProofOutput {
    /// The entry's position in the tree, from 0.
    leaf_index: u64,
    leaf_hash: String,
    /// The audit path from the leaf up (RFC 9162 §2.1.3).
    path: Vec<String>,
}

impl From<&InclusionProof> for ProofOutput {
    fn from(proof: &InclusionProof) -> Self {
        Self {
            leaf_index: proof.index,
            leaf_hash: STANDARD.encode(proof.leaf_hash),
            path: proof.path.iter().map(|h| STANDARD.encode(h)).collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct ProvenEntryOutput {
    #[serde(flatten)]
    pub(crate) entry: EntryOutput,
    /// `null` while the entry is newer than the checkpoint.
    pub(crate) proof: Option<ProofOutput>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessLogParams {
    limit: Option<u32>,
    /// Entries older than this `seq` (the last one of the previous page).
    before: Option<i64>,
}

fn proven_entries_output(proven: &ProvenEntries, next: Option<String>) -> serde_json::Value {
    let items: Vec<ProvenEntryOutput> = proven
        .entries
        .iter()
        .map(|e| ProvenEntryOutput {
            entry: EntryOutput::from(&e.entry),
            proof: e.proof.as_ref().map(ProofOutput::from),
        })
        .collect();
    serde_json::json!({
        "checkpoint": proven.checkpoint.clone().map(CheckpointOutput::from),
        "items": items,
        "next": next,
    })
}

/// A patient's access log with inclusion proofs.
pub(crate) async fn access_log(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Caller(context): Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let patient = parse_id(&id)?;
    let params: AccessLogParams = parse_query(raw.as_deref().unwrap_or_default())?;
    let limit = params.limit.unwrap_or(ACCESS_LOG_PAGE_ROWS_DEFAULT);
    let proven = state
        .app
        .patient_access_log(&context, patient, limit, params.before)
        .await?;
    let next = (proven.entries.len() == limit as usize)
        .then(|| proven.entries.last())
        .flatten()
        .map(|last| {
            format!(
                "/api/v1/patients/{patient}/access-log?limit={limit}&before={}",
                last.entry.seq
            )
        });
    Ok(Json(proven_entries_output(&proven, next)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionParams {
    seq: i64,
    size: Option<u64>,
}

/// One entry's inclusion proof, for reviewers.
pub(crate) async fn inclusion(
    State(state): State<ApiState>,
    Caller(context): Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params: InclusionParams = parse_query(raw.as_deref().unwrap_or_default())?;
    let (checkpoint, proof) = state
        .app
        .audit_inclusion_proof(&context, params.seq, params.size)
        .await?;
    Ok(Json(serde_json::json!({
        "seq": params.seq,
        "checkpoint": CheckpointOutput::from(checkpoint),
        "proof": ProofOutput::from(&proof),
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyParams {
    first: u64,
    second: Option<u64>,
}

/// The proof that the log of `first` entries is a prefix of a later checkpoint.
pub(crate) async fn consistency(
    State(state): State<ApiState>,
    Caller(context): Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params: ConsistencyParams = parse_query(raw.as_deref().unwrap_or_default())?;
    let proof = state
        .app
        .audit_consistency_proof(&context, params.first, params.second)
        .await?;
    Ok(Json(serde_json::json!({
        "first": proof.first,
        "second": CheckpointOutput::from(proof.second),
        "path": proof.path.iter().map(|h| STANDARD.encode(h)).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// The log's public key as a C2SP verifier key. Public by nature, but served only to
/// signed-in callers like every other route: clients should pin it from a trusted channel.
pub(crate) async fn vkey(
    State(state): State<ApiState>,
    Caller(_context): Caller,
) -> Result<Response, ApiError> {
    let mut response = state.app.audit_verifier().vkey().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

#[derive(Debug, Serialize)]
struct MeOutput {
    /// The user id, or the API token id.
    actor: String,
    role: &'static str,
    /// For a patient: the record they are the subject of.
    patient: Option<String>,
    /// For a proxy: the patients they act for, and what they may see of each.
    acting_for: Vec<serde_json::Value>,
}

/// Who the caller is: their role, for a patient their record's id, and for a proxy whom
/// they act for.
pub(crate) async fn me(
    State(state): State<ApiState>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let acting_for = state
        .app
        .acting_for(&context)
        .await?
        .iter()
        .map(crate::care::delegation_output)
        .collect();
    Ok(Json(MeOutput {
        actor: context.actor.principal.actor_id(),
        role: context.actor.role.as_str(),
        patient: context.actor.patient.map(|p| p.to_string()),
        acting_for,
    })
    .into_response())
}
