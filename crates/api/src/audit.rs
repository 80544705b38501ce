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
use haven_app::audit_log::{AuditQuery, AuditSortField, StoredCheckpoint};
use haven_audit::StoredAuditEvent;
use http::{HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};

use crate::extract::{Caller, parse_query};
use crate::{ApiError, ApiState};

/// Checkpoints per page when the caller does not say, and at most.
const PAGE_SIZE_DEFAULT: u32 = 100;
const PAGE_SIZE_MAX: u32 = 1000;

#[derive(Debug, Serialize)]
pub(crate) struct CheckpointOutput {
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

// ------------------------------------------------------------------------------------------
// Reports: GET /api/v1/audit/events
// ------------------------------------------------------------------------------------------

/// Entries per report page when the caller does not say.
const REPORT_PAGE_SIZE_DEFAULT: u32 = 100;
/// The longest filter value accepted (actor ids are UUIDs or `system:…` names).
const FILTER_CHARS_MAX: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportParams {
    from: Option<String>,
    to: Option<String>,
    actor: Option<String>,
    patient: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    sort: Option<String>,
    limit: Option<u32>,
    offset: Option<u64>,
    format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReportFormat {
    Json,
    Csv,
    Fhir,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

fn instant_ms(field: &str, text: &str) -> Result<i64, ApiError> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            invalid(format!(
                "{field} must be an RFC 3339 time such as 2026-11-23T08:00:00Z"
            ))
        })?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| invalid(format!("{field} is out of range")))
}

fn parse_report(params: ReportParams) -> Result<(AuditQuery, ReportFormat), ApiError> {
    let mut query = AuditQuery {
        limit: params.limit.unwrap_or(REPORT_PAGE_SIZE_DEFAULT),
        offset: params.offset.unwrap_or(0),
        ..AuditQuery::default()
    };
    if query.limit == 0 || query.limit > PAGE_SIZE_MAX {
        return Err(invalid(format!(
            "limit must be between 1 and {PAGE_SIZE_MAX}"
        )));
    }
    if query.offset > haven_app::audit_log::AUDIT_REPORT_OFFSET_MAX {
        return Err(invalid(format!(
            "offset must be at most {}; narrow the time range instead",
            haven_app::audit_log::AUDIT_REPORT_OFFSET_MAX
        )));
    }
    query.from_ms = params
        .from
        .as_deref()
        .map(|t| instant_ms("from", t))
        .transpose()?;
    query.to_ms = params
        .to
        .as_deref()
        .map(|t| instant_ms("to", t))
        .transpose()?;
    if let Some(actor) = params.actor {
        if actor.is_empty() || actor.chars().count() > FILTER_CHARS_MAX {
            return Err(invalid(format!(
                "actor must be 1 to {FILTER_CHARS_MAX} characters"
            )));
        }
        query.actor = Some(actor);
    }
    query.patient = params
        .patient
        .as_deref()
        .map(|p| {
            p.parse()
                .map_err(|_| invalid("patient must be a patient id"))
        })
        .transpose()?;
    query.action = params
        .action
        .as_deref()
        .map(|a| {
            a.parse()
                .map_err(|_| invalid(format!("unknown action `{a}`")))
        })
        .transpose()?;
    query.outcome = params
        .outcome
        .as_deref()
        .map(|o| {
            o.parse()
                .map_err(|_| invalid("outcome must be allowed or denied"))
        })
        .transpose()?;
    if let Some(sort) = params.sort.as_deref() {
        let (descending, name) = match sort.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, sort),
        };
        query.descending = descending;
        query.sort = AuditSortField::ALL
            .into_iter()
            .find(|field| field.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = AuditSortField::ALL.iter().map(|f| f.name()).collect();
                invalid(format!(
                    "sort must be one of {} (prefix - for descending)",
                    names.join(", ")
                ))
            })?;
    }
    let format = match params.format.as_deref().unwrap_or("json") {
        "json" => ReportFormat::Json,
        "csv" => ReportFormat::Csv,
        "fhir" => ReportFormat::Fhir,
        other => {
            return Err(invalid(format!(
                "format `{other}` is not json, csv or fhir"
            )));
        }
    };
    Ok((query, format))
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[derive(Debug, Serialize)]
pub(crate) struct EntryOutput {
    seq: i64,
    at: String,
    /// The same instant in milliseconds, as hashed into the entry's Merkle leaf.
    at_ms: i64,
    actor: Option<String>,
    role: Option<String>,
    organisation: Option<String>,
    session: Option<String>,
    client_app: Option<String>,
    action: &'static str,
    patient: Option<String>,
    resource_type: Option<String>,
    resource_id: Option<String>,
    outcome: &'static str,
    reason: String,
    purpose_of_use: Option<String>,
    request_id: Option<String>,
    source_ip: Option<String>,
    user_agent: Option<String>,
}

impl From<&StoredAuditEvent> for EntryOutput {
    fn from(stored: &StoredAuditEvent) -> Self {
        let event = &stored.event;
        Self {
            seq: stored.seq,
            at: rfc3339(event.at_ms),
            at_ms: event.at_ms,
            actor: event.actor.clone(),
            role: event.role.clone(),
            organisation: event.organisation.clone(),
            session: event.session.clone(),
            client_app: event.client_app.clone(),
            action: event.action.as_str(),
            patient: event.patient.map(|p| p.to_string()),
            resource_type: event.resource_type.clone(),
            resource_id: event.resource_id.clone(),
            outcome: event.outcome.as_str(),
            reason: event.reason.clone(),
            purpose_of_use: event.purpose_of_use.clone(),
            request_id: event.origin.request_id.clone(),
            source_ip: event.origin.source_ip.clone(),
            user_agent: event.origin.user_agent.clone(),
        }
    }
}

const CSV_COLUMNS: [&str; 17] = [
    "seq",
    "at",
    "actor",
    "role",
    "organisation",
    "session",
    "client_app",
    "action",
    "patient",
    "resource_type",
    "resource_id",
    "outcome",
    "reason",
    "purpose_of_use",
    "request_id",
    "source_ip",
    "user_agent",
];

/// One CSV field (RFC 4180), neutralised against formula injection: a spreadsheet must not
/// execute a client-supplied user agent such as `=HYPERLINK(…)`.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

fn csv(entries: &[StoredAuditEvent]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push_str("\r\n");
    for stored in entries {
        let entry = EntryOutput::from(stored);
        let seq = entry.seq.to_string();
        let fields: [&str; 17] = [
            &seq,
            &entry.at,
            entry.actor.as_deref().unwrap_or(""),
            entry.role.as_deref().unwrap_or(""),
            entry.organisation.as_deref().unwrap_or(""),
            entry.session.as_deref().unwrap_or(""),
            entry.client_app.as_deref().unwrap_or(""),
            entry.action,
            entry.patient.as_deref().unwrap_or(""),
            entry.resource_type.as_deref().unwrap_or(""),
            entry.resource_id.as_deref().unwrap_or(""),
            entry.outcome,
            &entry.reason,
            entry.purpose_of_use.as_deref().unwrap_or(""),
            entry.request_id.as_deref().unwrap_or(""),
            entry.source_ip.as_deref().unwrap_or(""),
            entry.user_agent.as_deref().unwrap_or(""),
        ];
        let row: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

/// An entry as a FHIR R4 `AuditEvent`.
pub(crate) fn fhir_audit_event(stored: &StoredAuditEvent) -> serde_json::Value {
    use haven_audit::{AuditAction, Outcome};
    let event = &stored.event;
    let action = match event.action {
        AuditAction::Create => "C",
        AuditAction::Read | AuditAction::Search | AuditAction::AuditQuery => "R",
        AuditAction::Update => "U",
        AuditAction::Delete | AuditAction::CryptoShred => "D",
        _ => "E",
    };
    let event_type = match event.action {
        AuditAction::Login | AuditAction::Logout | AuditAction::FailedLogin => serde_json::json!({
            "system": "http://dicom.nema.org/resources/ontology/DCM",
            "code": "110114",
            "display": "User Authentication"
        }),
        AuditAction::Read
        | AuditAction::Search
        | AuditAction::Create
        | AuditAction::Update
        | AuditAction::Delete => serde_json::json!({
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation"
        }),
        _ => serde_json::json!({
            "system": "http://dicom.nema.org/resources/ontology/DCM",
            "code": "110113",
            "display": "Security Alert"
        }),
    };
    let mut agent = serde_json::json!({
        "requestor": true,
        "who": { "identifier": { "value": event.actor.clone().unwrap_or_else(|| "system".into()) } }
    });
    if let Some(role) = &event.role {
        agent["role"] = serde_json::json!([{ "text": role }]);
    }
    if let Some(ip) = &event.origin.source_ip {
        agent["network"] = serde_json::json!({ "address": ip, "type": "2" });
    }
    if let Some(session) = &event.session {
        agent["altId"] = serde_json::json!(session);
    }
    let mut agents = vec![agent];
    if let Some(app) = &event.client_app {
        agents.push(serde_json::json!({
            "requestor": false,
            "who": { "identifier": { "system": "urn:haven:client-app", "value": app } }
        }));
    }
    let mut resource = serde_json::json!({
        "resourceType": "AuditEvent",
        "id": stored.seq.to_string(),
        "type": event_type,
        "subtype": [{ "system": "urn:haven:audit-action", "code": event.action.as_str() }],
        "action": action,
        "recorded": rfc3339(event.at_ms),
        "outcome": if event.outcome == Outcome::Allowed { "0" } else { "4" },
        "outcomeDesc": event.reason,
        "agent": agents,
        "source": { "observer": { "display": "Haven" } }
    });
    if let Some(organisation) = &event.organisation {
        resource["source"]["site"] = serde_json::json!(organisation);
    }
    if let Some(purpose) = &event.purpose_of_use {
        resource["purposeOfEvent"] = serde_json::json!([{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
            "code": purpose
        }] }]);
    }
    let mut entities = Vec::new();
    if let Some(patient) = event.patient {
        entities.push(serde_json::json!({ "what": { "reference": format!("Patient/{patient}") } }));
    }
    if let (Some(kind), Some(id)) = (&event.resource_type, &event.resource_id)
        && event.patient.map(|p| p.to_string()).as_deref() != Some(id.as_str())
    {
        entities.push(serde_json::json!({ "what": { "identifier": { "system": format!("urn:haven:{kind}"), "value": id } } }));
    }
    if !entities.is_empty() {
        resource["entity"] = serde_json::Value::Array(entities);
    }
    resource
}

/// An audit report in JSON, CSV or as a FHIR `Bundle` of `AuditEvent`s.
pub(crate) async fn events(
    State(state): State<ApiState>,
    Caller(context): Caller,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let raw = raw.unwrap_or_default();
    if raw.len() > 2048 {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "query_too_long",
            "the query string is longer than 2048 bytes",
        ));
    }
    let (query, format) = parse_report(parse_query(&raw)?)?;
    let entries = state.app.audit_report(&context, &query).await?;
    let next = (entries.len() == query.limit as usize).then(|| {
        let mut pairs: Vec<String> = raw
            .split('&')
            .filter(|pair| !pair.is_empty() && !pair.starts_with("offset="))
            .map(str::to_owned)
            .collect();
        pairs.push(format!("offset={}", query.offset + u64::from(query.limit)));
        format!("/api/v1/audit/events?{}", pairs.join("&"))
    });
    Ok(match format {
        ReportFormat::Json => Json(serde_json::json!({
            "items": entries.iter().map(EntryOutput::from).collect::<Vec<_>>(),
            "next": next,
        }))
        .into_response(),
        ReportFormat::Csv => {
            let mut response = csv(&entries).into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            headers.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"haven-audit.csv\""),
            );
            response
        }
        ReportFormat::Fhir => {
            let mut bundle = serde_json::json!({
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": entries.iter().map(|e| serde_json::json!({ "resource": fhir_audit_event(e) })).collect::<Vec<_>>(),
            });
            if let Some(next) = &next {
                bundle["link"] = serde_json::json!([{ "relation": "next", "url": next }]);
            }
            let mut response = Json(bundle).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/fhir+json"),
            );
            response
        }
    })
}

fn verification_output(verification: &haven_app::audit_log::LogVerification) -> serde_json::Value {
    serde_json::json!({
        "at": crate::audit::rfc3339(verification.at_ms),
        "verified": verification.verified,
        "detail": verification.detail,
    })
}

/// `POST /api/v1/audit/verification`: verifies the whole log now (reviewers), and records
/// the result in the log.
pub(crate) async fn verify_now(
    State(state): State<ApiState>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let verification = state.app.verify_audit_log(&context).await?;
    Ok(Json(verification_output(&verification)).into_response())
}

/// `GET /api/v1/audit/verification`: the last verification run inside Haven, or `null`.
pub(crate) async fn last_verification(
    State(state): State<ApiState>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let last = state.app.last_audit_verification(&context).await?;
    Ok(Json(serde_json::json!({
        "last": last.as_ref().map(verification_output),
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
    }
}
