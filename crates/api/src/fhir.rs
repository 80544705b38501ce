//! The FHIR R4 REST surface at `/fhir` (FHIR R4 §3.1.0, "RESTful API").
//!
//! Interactions: `read`, `vread`, `update` (with `If-Match`), `delete`, `history` (instance
//! and type), `create` (and conditional create with `If-None-Exist`), `search`, and
//! `transaction`/`batch` Bundles at the base. Bodies are `application/fhir+json`; every
//! answer, an error included, is FHIR JSON: errors are an `OperationOutcome` whose issue
//! names the offending element (`expression`). `GET /fhir/metadata` is the
//! `CapabilityStatement`, generated from the same tables that drive validation and search,
//! so it cannot promise what the server does not do.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use haven_app::AppError;
use haven_app::fhir::amendment::AmendmentDecision;
use haven_app::fhir::bundle::{BundleOutcome, EntryOutcome, parse_if_match};
use haven_app::fhir::search::{SearchPage, SearchRequest};
use haven_app::fhir::{HISTORY_PAGE_DEFAULT, HistoryPage, ResourceView, served_types};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};

use crate::extract::Caller;
use crate::{ApiError, ApiState};

/// The media type of every answer.
const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
/// The longest query string a search accepts.
const QUERY_BYTES_MAX: usize = 2048;

/// A failure, answered as an `OperationOutcome`.
#[derive(Debug)]
pub struct FhirError {
    status: StatusCode,
    /// The FHIR issue type (`invalid`, `not-found`, `forbidden`, …).
    code: &'static str,
    diagnostics: String,
    expression: Option<String>,
    retry_after_secs: Option<u64>,
}

impl FhirError {
    fn new(status: StatusCode, code: &'static str, diagnostics: impl Into<String>) -> Self {
        FhirError {
            status,
            code,
            diagnostics: diagnostics.into(),
            expression: None,
            retry_after_secs: None,
        }
    }

    fn invalid(expression: &str, diagnostics: impl Into<String>) -> Self {
        FhirError {
            expression: Some(expression.to_owned()),
            ..FhirError::new(StatusCode::BAD_REQUEST, "invalid", diagnostics)
        }
    }

    fn outcome(&self) -> Value {
        let mut issue = json!({
            "severity": "error",
            "code": self.code,
            "diagnostics": self.diagnostics,
        });
        if let Some(expression) = &self.expression {
            issue["expression"] = json!([expression]);
        }
        json!({"resourceType": "OperationOutcome", "issue": [issue]})
    }
}

impl From<ApiError> for FhirError {
    fn from(error: ApiError) -> Self {
        let code = match error.status {
            StatusCode::UNAUTHORIZED => "login",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::URI_TOO_LONG => "too-long",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "not-supported",
            StatusCode::CONFLICT => "conflict",
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => "transient",
            s if s.is_server_error() => "exception",
            _ => "invalid",
        };
        FhirError {
            retry_after_secs: error.retry_after_secs,
            ..FhirError::new(error.status, code, error.message)
        }
    }
}

impl From<AppError> for FhirError {
    fn from(error: AppError) -> Self {
        match error {
            AppError::InvalidResource { path, message } => FhirError::invalid(&path, message),
            AppError::Gone { version } => FhirError::new(
                StatusCode::GONE,
                "deleted",
                format!("this resource was deleted (version {version}); its history remains"),
            ),
            AppError::PreconditionFailed { current } if current > 0 => FhirError::new(
                StatusCode::PRECONDITION_FAILED,
                "conflict",
                format!(
                    "the resource is at version {current}, not the one If-Match named; read it and apply your change again"
                ),
            ),
            AppError::PreconditionFailed { .. } => FhirError::new(
                StatusCode::PRECONDITION_FAILED,
                "duplicate",
                "the condition matched more than one resource",
            ),
            AppError::NotSupported(message) => {
                FhirError::new(StatusCode::BAD_REQUEST, "not-supported", message)
            }
            AppError::TooCostly(message) => {
                FhirError::new(StatusCode::BAD_REQUEST, "too-costly", message)
            }
            AppError::NotFound => {
                FhirError::new(StatusCode::NOT_FOUND, "not-found", "no such resource")
            }
            AppError::BundleEntry { index, source } => {
                let mut inner = FhirError::from(*source);
                let at = format!("Bundle.entry[{index}]");
                inner.expression = Some(match inner.expression {
                    Some(path) if !path.is_empty() => format!("{at}.{path}"),
                    _ => at,
                });
                inner.diagnostics = format!(
                    "entry {index}: {}; nothing of the transaction was applied",
                    inner.diagnostics
                );
                inner
            }
            other => FhirError::from(ApiError::from(other)),
        }
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let mut response = (self.status, fhir_json(&self.outcome())).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

type FhirResult = Result<Response, FhirError>;

fn fhir_json(value: &Value) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))],
        body,
    )
        .into_response()
}

/// The base URL clients used, for `fullUrl`s and links.
fn base_url(headers: &HeaderMap, state: &ApiState) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && h.len() <= 255 && !h.contains(['/', ' ']))
        .unwrap_or("localhost");
    let scheme = if state.https { "https" } else { "http" };
    format!("{scheme}://{host}/fhir")
}

fn http_date(ms: i64) -> Option<HeaderValue> {
    let at = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).ok()?;
    // RFC 9110 IMF-fixdate is RFC 2822 with "GMT".
    let text = at.format(&Rfc2822).ok()?.replace("+0000", "GMT");
    HeaderValue::from_str(&text).ok()
}

fn instant(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// One resource with its ETag, Last-Modified and, for a create, Location.
fn resource_response(status: StatusCode, view: &ResourceView) -> Response {
    resource_response_as(status, view, false)
}

/// As [`resource_response`]; with `minimal`, the headers only.
fn resource_response_as(status: StatusCode, view: &ResourceView, minimal: bool) -> Response {
    let mut response = if minimal {
        status.into_response()
    } else {
        let body = view
            .resource
            .as_ref()
            .map(|r| r.to_value())
            .unwrap_or(Value::Null);
        (status, fhir_json(&body)).into_response()
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{}\"", view.version)) {
        headers.insert(header::ETAG, etag);
    }
    if let Some(date) = http_date(view.updated_at_ms) {
        headers.insert(header::LAST_MODIFIED, date);
    }
    if status == StatusCode::CREATED
        && let Ok(location) = HeaderValue::from_str(&format!(
            "/fhir/{}/{}/_history/{}",
            view.resource_type, view.id, view.version
        ))
    {
        headers.insert(header::LOCATION, location);
    }
    response
}

/// The resource in a request body, with its type checked against the URL's.
fn body_resource(
    headers: &HeaderMap,
    body: &Bytes,
    resource_type: &str,
) -> Result<haven_fhir::AnyResource, FhirError> {
    check_content_type(headers)?;
    let value = json_body(body)?;
    // The type first: a resource of another type is refused as such, not by its elements.
    if value.get("resourceType").and_then(Value::as_str) != Some(resource_type) {
        return Err(FhirError::invalid(
            "resourceType",
            format!("must be {resource_type}, the type in the URL"),
        ));
    }
    Ok(haven_fhir::from_value(value).map_err(AppError::from)?)
}

fn check_content_type(headers: &HeaderMap) -> Result<(), FhirError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/fhir+json")
                || mime.eq_ignore_ascii_case("application/json")
        });
    if is_json {
        Ok(())
    } else {
        Err(FhirError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            "send FHIR JSON with Content-Type: application/fhir+json",
        ))
    }
}

/// A body, or the FHIR answer to one that is too large or unreadable.
fn read_body(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, FhirError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            FhirError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-long",
                "the request body is larger than this server accepts",
            )
        } else {
            FhirError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                "the request body could not be read",
            )
        }
    })
}

fn if_match(headers: &HeaderMap) -> Result<Option<i64>, FhirError> {
    match headers.get(header::IF_MATCH) {
        None => Ok(None),
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| FhirError::invalid("If-Match", "an ETag, W/\"version\""))?;
            Ok(Some(parse_if_match(text)?))
        }
    }
}

fn search_params(query: Option<&str>) -> Result<Vec<(String, String)>, FhirError> {
    let query = query.unwrap_or_default();
    if query.len() > QUERY_BYTES_MAX {
        return Err(FhirError::new(
            StatusCode::URI_TOO_LONG,
            "too-long",
            format!("the search is longer than {QUERY_BYTES_MAX} bytes"),
        ));
    }
    Ok(form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(name, _)| name != "_format")
        .collect())
}

fn entry_of(base: &str, view: &ResourceView, mode: Option<&str>) -> Value {
    let mut entry = json!({
        "fullUrl": format!("{base}/{}/{}", view.resource_type, view.id),
    });
    if let Some(resource) = &view.resource {
        entry["resource"] = resource.to_value();
    }
    if let Some(mode) = mode {
        entry["search"] = json!({"mode": mode});
    }
    entry
}

fn searchset(base: &str, path: &str, params: &[(String, String)], page: &SearchPage) -> Value {
    let url_with = |extra: Option<&str>| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in params.iter().filter(|(n, _)| n != "_page") {
            query.append_pair(name, value);
        }
        if let Some(page) = extra {
            query.append_pair("_page", page);
        }
        let query = query.finish();
        if query.is_empty() {
            format!("{base}/{path}")
        } else {
            format!("{base}/{path}?{query}")
        }
    };
    let current = params
        .iter()
        .find(|(n, _)| n == "_page")
        .map(|(_, v)| v.as_str());
    let mut links = vec![json!({"relation": "self", "url": url_with(current)})];
    if let Some(next) = &page.next {
        links.push(json!({"relation": "next", "url": url_with(Some(next))}));
    }
    let entries: Vec<Value> = page
        .matches
        .iter()
        .map(|v| entry_of(base, v, Some("match")))
        .chain(
            page.included
                .iter()
                .map(|v| entry_of(base, v, Some("include"))),
        )
        .collect();
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": entries,
    });
    if let Some(total) = page.total {
        bundle["total"] = json!(total);
    }
    bundle
}

fn history_bundle(base: &str, path: &str, page: &HistoryPage) -> Value {
    let entries: Vec<Value> = page
        .items
        .iter()
        .map(|view| {
            let mut entry = entry_of(base, view, None);
            let (method, status) = match (&view.resource, view.version) {
                (None, _) => ("DELETE", "204 No Content"),
                (Some(_), 1) => ("POST", "201 Created"),
                (Some(_), _) => ("PUT", "200 OK"),
            };
            entry["request"] = json!({
                "method": method,
                "url": if method == "POST" {
                    view.resource_type.to_owned()
                } else {
                    format!("{}/{}", view.resource_type, view.id)
                },
            });
            entry["response"] = json!({
                "status": status,
                "etag": format!("W/\"{}\"", view.version),
                "lastModified": instant(view.updated_at_ms),
            });
            entry
        })
        .collect();
    let mut links = vec![json!({"relation": "self", "url": format!("{base}/{path}")})];
    if let Some(next) = page.next {
        links.push(json!({"relation": "next", "url": format!("{base}/{path}?_page={next}")}));
    }
    json!({
        "resourceType": "Bundle",
        "type": "history",
        "link": links,
        "entry": entries,
    })
}

fn history_params(query: Option<&str>) -> Result<(Option<i64>, u32), FhirError> {
    let mut before = None;
    let mut count = HISTORY_PAGE_DEFAULT;
    for (name, value) in search_params(query)? {
        match name.as_str() {
            "_page" => {
                before = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| FhirError::invalid("_page", "not a page of this history"))?,
                );
            }
            "_count" => {
                count = value
                    .parse::<u32>()
                    .ok()
                    .filter(|c| (1..=haven_app::fhir::HISTORY_PAGE_MAX).contains(c))
                    .ok_or_else(|| {
                        FhirError::invalid(
                            "_count",
                            format!("1 to {}", haven_app::fhir::HISTORY_PAGE_MAX),
                        )
                    })?;
            }
            other => {
                return Err(FhirError::new(
                    StatusCode::BAD_REQUEST,
                    "not-supported",
                    format!(
                        "`{}` is not a parameter of a history; use _count",
                        other.chars().take(64).collect::<String>()
                    ),
                ));
            }
        }
    }
    Ok((before, count))
}

// ------------------------------------------------------------------------------------------
// Handlers
// ------------------------------------------------------------------------------------------

pub(crate) async fn metadata(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let base = base_url(&headers, &state);
    let resources: Vec<Value> = served_types()
        .map(|resource_type| {
            let params = haven_fhir::search_params(resource_type).unwrap_or(&[]);
            let mut search: Vec<Value> = vec![json!({
                "name": "_id", "type": "token", "documentation": "The resource's id"
            })];
            search.extend(params.iter().map(|p| {
                json!({
                    "name": p.name,
                    "type": p.kind.fhir_name(),
                    "documentation": p.documentation,
                })
            }));
            let is_patient = resource_type == "Patient";
            let interactions: Vec<Value> = if is_patient {
                ["read", "vread", "update", "create", "search-type", "history-instance"]
                    .iter()
                    .map(|code| json!({"code": code}))
                    .collect()
            } else {
                [
                    "read",
                    "vread",
                    "update",
                    "delete",
                    "history-instance",
                    "history-type",
                    "create",
                    "search-type",
                ]
                .iter()
                // An amendment request changes only through $accept and $deny.
                .filter(|code| {
                    resource_type != "Task" || !matches!(**code, "update" | "delete")
                })
                .map(|code| json!({"code": code}))
                .collect()
            };
            let mut resource = json!({
                "type": resource_type,
                "interaction": interactions,
                "versioning": "versioned-update",
                "readHistory": !is_patient,
                "updateCreate": false,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "searchInclude": if is_patient { json!([]) } else { json!([format!("{resource_type}:patient")]) },
                "searchParam": search,
            });
            let operations = operations_of(resource_type);
            if !operations.is_empty() {
                resource["operation"] = json!(operations);
            }
            resource
        })
        .chain(std::iter::once(json!({
            "type": "AuditEvent",
            "documentation": "The audit log, read-only, for auditors and privacy officers; each search is itself audited.",
            "interaction": [{"code": "search-type"}],
            "searchParam": [
                {"name": "date", "type": "date"},
                {"name": "patient", "type": "reference"},
                {"name": "agent", "type": "token"},
                {"name": "subtype", "type": "token"},
                {"name": "outcome", "type": "token"}
            ],
        })))
        .collect();
    fhir_json(&json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-26",
        "kind": "instance",
        "software": {"name": "Haven", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Haven telemedicine server", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": "Every resource is sealed at rest and every access is audited. Sessions and API tokens are bearer credentials (Authorization: Bearer).",
            "security": {
                "cors": false,
                "description": "Bearer tokens: a session from /api/v1/auth or an operator's API token."
            },
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
        }],
    }))
}

/// The operations a type offers, for the CapabilityStatement. Haven's own operations are
/// named by a URN of Haven's, as no published OperationDefinition describes them.
fn operations_of(resource_type: &str) -> Vec<Value> {
    let operation = |name: &str, definition: &str, documentation: &str| json!({"name": name, "definition": definition, "documentation": documentation});
    match resource_type {
        "Patient" => vec![
            operation(
                "everything",
                "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                "GET: the patient and their whole chart as a Bundle (at most 10,000 resources), audited as one export",
            ),
            operation(
                "export",
                "urn:haven:operation:Patient-export",
                "GET: the patient and their whole chart as NDJSON, streamed at any size (the right of access), audited as one export",
            ),
        ],
        "Task" => vec![
            operation(
                "accept",
                "urn:haven:operation:Task-accept",
                "POST the corrected record: it becomes the record's next version and the amendment request is completed, linking it",
            ),
            operation(
                "deny",
                "urn:haven:operation:Task-deny",
                "POST a Parameters with a `reason`: the request is rejected with that reason, kept with the record",
            ),
        ],
        "Observation" | "DiagnosticReport" => vec![operation(
            "release",
            "urn:haven:operation:release",
            "POST: releases a laboratory result held for review to the patient",
        )],
        _ => Vec::new(),
    }
}

/// `AuditEvent` searches: the audit log seen as FHIR, for those who review it. Each search
/// is itself audited as an audit query.
async fn audit_events(
    state: &ApiState,
    context: &haven_app::RequestContext,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> FhirResult {
    let mut query = haven_app::audit_log::AuditQuery {
        limit: 20,
        descending: true,
        ..haven_app::audit_log::AuditQuery::default()
    };
    for (name, value) in params {
        match name.as_str() {
            "date" => {
                let (prefix, text) = match value.get(..2) {
                    Some(p @ ("ge" | "gt" | "le" | "lt" | "eq")) => (p, &value[2..]),
                    _ => ("eq", value.as_str()),
                };
                let range = haven_fhir::DateTime::parse(text)
                    .map_err(|why| FhirError::invalid("search", format!("`date`: {why}")))?
                    .range();
                match prefix {
                    "ge" => query.from_ms = Some(range.start_ms),
                    "gt" => query.from_ms = Some(range.end_ms),
                    "le" => query.to_ms = Some(range.end_ms),
                    "lt" => query.to_ms = Some(range.start_ms),
                    _ => {
                        query.from_ms = Some(range.start_ms);
                        query.to_ms = Some(range.end_ms);
                    }
                }
            }
            "patient" => {
                let id = value.strip_prefix("Patient/").unwrap_or(value);
                query.patient = Some(id.parse().map_err(|_| {
                    FhirError::invalid("search", "`patient` is Patient/id or a patient's id")
                })?);
            }
            "agent" => query.actor = Some(value.chars().take(200).collect()),
            "subtype" => {
                query.action = Some(value.parse().map_err(|_| {
                    FhirError::invalid("search", format!("`subtype`: unknown action `{value}`"))
                })?);
            }
            "outcome" => {
                query.outcome = Some(match value.as_str() {
                    "0" => haven_audit::Outcome::Allowed,
                    "4" => haven_audit::Outcome::Denied,
                    _ => return Err(FhirError::invalid("search", "`outcome` is 0 or 4")),
                });
            }
            "_count" => {
                query.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|c| (1..=100).contains(c))
                    .ok_or_else(|| FhirError::invalid("search", "`_count` is 1 to 100"))?;
            }
            "_page" => {
                query.offset = value
                    .strip_prefix("o.")
                    .and_then(|o| o.parse().ok())
                    .filter(|o| *o <= haven_app::audit_log::AUDIT_REPORT_OFFSET_MAX)
                    .ok_or_else(|| {
                        FhirError::invalid("search", "`_page` is not a page of this search")
                    })?;
            }
            other => {
                return Err(FhirError::new(
                    StatusCode::BAD_REQUEST,
                    "not-supported",
                    format!(
                        "`{}` is not a search parameter of AuditEvent; use date, patient, agent, subtype, outcome, _count",
                        other.chars().take(64).collect::<String>()
                    ),
                ));
            }
        }
    }
    let entries = state.app.audit_report(context, &query).await?;
    let base = base_url(headers, state);
    let next = (entries.len() == query.limit as usize).then(|| {
        let mut url = form_urlencoded::Serializer::new(String::new());
        for (name, value) in params.iter().filter(|(n, _)| n != "_page") {
            url.append_pair(name, value);
        }
        url.append_pair(
            "_page",
            &format!("o.{}", query.offset + u64::from(query.limit)),
        );
        format!("{base}/AuditEvent?{}", url.finish())
    });
    let mut links = vec![json!({"relation": "self", "url": format!("{base}/AuditEvent")})];
    if let Some(next) = next {
        links.push(json!({"relation": "next", "url": next}));
    }
    let entries: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "fullUrl": format!("{base}/AuditEvent/{}", e.seq),
                "resource": crate::audit::fhir_audit_event(e),
                "search": {"mode": "match"},
            })
        })
        .collect();
    Ok(fhir_json(&json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": entries,
    })))
}

pub(crate) async fn search(
    State(state): State<ApiState>,
    caller: Result<Caller, ApiError>,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> FhirResult {
    let Caller(context) = caller?;
    let params = search_params(query.as_deref())?;
    if resource_type == "AuditEvent" {
        return audit_events(&state, &context, &headers, &params).await;
    }
    let page = state
        .app
        .fhir_search(
            &context,
            &resource_type,
            &SearchRequest {
                params: params.clone(),
            },
        )
        .await?;
    let base = base_url(&headers, &state);
    Ok(fhir_json(&searchset(&base, &resource_type, &params, &page)))
}

pub(crate) async fn create(
    State(state): State<ApiState>,
    caller: Result<Caller, ApiError>,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> FhirResult {
    let Caller(context) = caller?;
    let body = read_body(body)?;
    let resource = body_resource(&headers, &body, &resource_type)?;
    let if_none_exist = headers
        .get("if-none-exist")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, view) = state
        .app
        .fhir_create_conditional(&context, resource, if_none_exist.as_deref())
        .await?;
    let status = if status == 201 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(resource_response_as(status, &view, wants_minimal(&headers)))
}

pub(crate) async fn read(
    State(state): State<ApiState>,
    caller: Result<Caller, ApiError>,
    Path((resource_type, id)): Path<(String, String)>,
) -> FhirResult {
    let Caller(context) = caller?;
    let view = state.app.fhir_read(&context, &resource_type, &id).await?;
    Ok(resource_response(StatusCode::OK, &view))
}

pub(crate) async fn vread(
    State(state): State<ApiState>,
    caller: Result<Caller, ApiError>,
    Path((resource_type, id, version)): Path<(String, String, String)>,
) -> FhirResult {
    let Caller(context) = caller?;
    let version = version
        .parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| FhirError::new(StatusCode::NOT_FOUND, "not-found", "no such version"))?;
    let view = state
        .app
        .fhir_vread(&context, &resource_type, &id, version)
        .await?;
    Ok(resource_response(StatusCode::OK, &view))
}

pub(crate) async fn update(
    State(state): State<ApiState>,
    caller: Result<Caller, ApiError>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> FhirResult {
    let Caller(context) = caller?;
    let body = read_body(body)?;
    let resource = body_resource(&headers, &body, &resource_type)?;
    let if_match = if_match(&headers)?;
    let view = state
        .app
        .fhir_update(&context, &id, resource, if_match)
        .await?;
    Ok(resource_response_as(
        StatusCode::OK,
        &view,
        wants_minimal(&headers),
    ))
}

pub(crate) async fn remove(
    State(state): State<ApiState>,
    caller: Result<Caller, ApiError>,
    Path((resource_type, id)): Path<(String, String)>,
) -> FhirResult {
    let Caller(context) = caller?;
    state.app.fhir_delete(&context, &resource_type, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn instance_history(
    State(state): State<ApiState>,
    caller: Result<Caller, ApiError>,
    Path((resource_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> FhirResult {
    let Caller(context) = caller?;
    let (before, count) = history_params(query.as_deref())?;
    let page = state
        .app
        .fhir_history(&context, &resource_type, &id, before, count)
        .await?;
    let base = base_url(&headers, &state);
    Ok(fhir_json(&history_bundle(
        &base,
        &format!("{resource_type}/{id}/_history"),
        &page,
    )))
}

pub(crate) async fn type_history(
    State(state): State<ApiState>,
    caller: Result<Caller, ApiError>,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> FhirResult {
    let Caller(context) = caller?;
    let (before, count) = history_params(query.as_deref())?;
    let page = state
        .app
        .fhir_type_history(&context, &resource_type, before, count)
        .await?;
    let base = base_url(&headers, &state);
    Ok(fhir_json(&history_bundle(
        &base,
        &format!("{resource_type}/_history"),
        &page,
    )))
}

/// `POST /fhir/Binary`: the file itself as the body (its media type in `Content-Type`), the
/// patient it belongs to in `X-Security-Context: Patient/{id}` (FHIR R4 §3.1.0.1.9), read
/// and sealed chunk by chunk as it arrives.
pub(crate) async fn upload_binary(
    State(state): State<ApiState>,
    caller: Result<Caller, ApiError>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> FhirResult {
    use http_body_util::BodyExt;
    let Caller(context) = caller?;
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let patient = text("x-security-context").ok_or_else(|| {
        FhirError::invalid(
            "X-Security-Context",
            "required: the patient the file belongs to, as Patient/{id}",
        )
    })?;
    let content_type = text("content-type").unwrap_or_default();
    let mut writer = state
        .app
        .begin_attachment(&context, &patient, &content_type)
        .await?;
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| {
            FhirError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                "the upload was interrupted",
            )
        })?;
        if let Ok(data) = frame.into_data() {
            writer.write(&data).await?;
        }
    }
    let view = writer.finish().await?;
    let binary = json!({
        "resourceType": "Binary",
        "id": view.id.to_string(),
        "meta": {"versionId": "1", "lastUpdated": instant(view.created_at_ms)},
        "contentType": view.content_type,
        "securityContext": {"reference": format!("Patient/{}", view.patient)},
    });
    let mut response = (StatusCode::CREATED, fhir_json(&binary)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/fhir/Binary/{}", view.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /fhir/Binary/{id}`: the file as it was uploaded, streamed, opened chunk by chunk.
pub(crate) async fn download_binary(
    State(state): State<ApiState>,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> FhirResult {
    let Caller(context) = caller?;
    let (view, reader) = state.app.read_attachment(&context, &id).await?;
    // Fused: a body wrapper (compression) may poll once more after the end, which a bare
    // `unfold` answers with a panic.
    let stream = futures_util::stream::unfold(reader, |mut reader| async move {
        match reader.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(Bytes::from(chunk.to_vec())), reader)),
            Ok(None) => None,
            Err(error) => {
                tracing::error!(%error, "an attachment could not be read to the end");
                Some((Err(std::io::Error::other("attachment unreadable")), reader))
            }
        }
    })
    .fuse();
    let mut response = axum::body::Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    if let Ok(kind) = HeaderValue::from_str(&view.content_type) {
        headers.insert(header::CONTENT_TYPE, kind);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(view.size_bytes));
    // Downloaded, never shown inside Haven's own origin.
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment"),
    );
    headers.insert(header::ETAG, HeaderValue::from_static("W/\"1\""));
    Ok(response)
}

/// `GET /fhir/{type}/{id}/{operation}`: `Patient/{id}/$everything` and `Patient/{id}/$export`.
pub(crate) async fn operation(
    State(state): State<ApiState>,
    caller: Result<Caller, ApiError>,
    Path((resource_type, id, operation)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> FhirResult {
    let Caller(context) = caller?;
    if resource_type == "Patient" && operation == "$export" {
        return export(&state, &context, &id).await;
    }
    if resource_type != "Patient" || operation != "$everything" {
        return Err(FhirError::new(
            StatusCode::NOT_FOUND,
            "not-supported",
            OPERATIONS_OFFERED,
        ));
    }
    let everything = state.app.fhir_everything(&context, &id).await?;
    let base = base_url(&headers, &state);
    let entries: Vec<Value> = everything
        .iter()
        .map(|view| entry_of(&base, view, Some("match")))
        .collect();
    Ok(fhir_json(&json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": entries.len(),
        "link": [{"relation": "self", "url": format!("{base}/Patient/{id}/$everything")}],
        "entry": entries,
    })))
}

/// `GET /fhir/Patient/{id}/$export`: the whole chart as NDJSON (`application/fhir+ndjson`,
/// one resource per line, the Patient first), streamed page by page whatever its size: the
/// patient's right of access, audited as one export before the first byte.
async fn export(state: &ApiState, context: &haven_app::RequestContext, id: &str) -> FhirResult {
    let export = state.app.fhir_export(context, id).await?;
    // Fused, as the attachment's stream is.
    let stream = futures_util::stream::unfold(Some(export), |export| async move {
        let mut export = export?;
        match export.next_page().await {
            Ok(Some(page)) => {
                let mut lines = Vec::new();
                for view in &page {
                    if let Some(resource) = &view.resource {
                        // A `Value` always serialises.
                        if serde_json::to_writer(&mut lines, &resource.to_value()).is_ok() {
                            lines.push(b'\n');
                        }
                    }
                }
                Some((Ok::<_, std::io::Error>(Bytes::from(lines)), Some(export)))
            }
            Ok(None) => None,
            Err(error) => {
                // The status was sent with the first line: the stream is cut short, so the
                // client sees an incomplete download rather than a complete-looking one.
                tracing::error!(%error, "a chart export could not be read to the end");
                Some((Err(std::io::Error::other("export unreadable")), None))
            }
        }
    })
    .fuse();
    let mut response = axum::body::Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+ndjson"),
    );
    if let Ok(disposition) = HeaderValue::from_str(&format!(
        "attachment; filename=\"haven-chart-{}.ndjson\"",
        id.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>()
    )) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}

/// `POST /fhir/{type}/{id}/{operation}`: `$release`, which releases a laboratory result
/// held for review to the patient; `Task/{id}/$accept` (the body is the corrected record)
/// and `Task/{id}/$deny` (a `Parameters` with a `reason`), which answer an amendment request.
pub(crate) async fn post_operation(
    State(state): State<ApiState>,
    caller: Result<Caller, ApiError>,
    Path((resource_type, id, operation)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> FhirResult {
    let Caller(context) = caller?;
    match (resource_type.as_str(), operation.as_str()) {
        (_, "$release") => {
            state
                .app
                .fhir_release(&context, &resource_type, &id)
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ("Task", "$accept") => {
            let body = read_body(body)?;
            check_content_type(&headers)?;
            let value = json_body(&body)?;
            let corrected = haven_fhir::from_value(value).map_err(AppError::from)?;
            let view = state
                .app
                .fhir_decide_amendment(
                    &context,
                    &id,
                    AmendmentDecision::Accept(Box::new(corrected)),
                )
                .await?;
            Ok(resource_response(StatusCode::OK, &view))
        }
        ("Task", "$deny") => {
            let body = read_body(body)?;
            check_content_type(&headers)?;
            let reason = denial_reason(json_body(&body)?)?;
            let view = state
                .app
                .fhir_decide_amendment(&context, &id, AmendmentDecision::Deny(reason))
                .await?;
            Ok(resource_response(StatusCode::OK, &view))
        }
        _ => Err(FhirError::new(
            StatusCode::NOT_FOUND,
            "not-supported",
            OPERATIONS_OFFERED,
        )),
    }
}

/// What an unknown operation's error lists.
const OPERATIONS_OFFERED: &str = "the operations offered are GET Patient/{id}/$everything, GET Patient/{id}/$export, POST {type}/{id}/$release, POST Task/{id}/$accept and POST Task/{id}/$deny";

/// A request body as JSON, or an error naming where it stops being JSON.
fn json_body(body: &Bytes) -> Result<Value, FhirError> {
    serde_json::from_slice(body).map_err(|e| {
        FhirError::invalid(
            "",
            format!("not valid JSON (line {}, column {})", e.line(), e.column()),
        )
    })
}

/// The `reason` of a `$deny`: a `Parameters` resource with one `reason` string and nothing
/// else, read as strictly as every other resource.
fn denial_reason(value: Value) -> Result<String, FhirError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Parameters {
        resource_type: String,
        parameter: Vec<Parameter>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct Parameter {
        name: String,
        value_string: String,
    }
    let parameters: Parameters = serde_json::from_value(value).map_err(|e| {
        FhirError::invalid(
            "Parameters",
            format!("expected {{\"resourceType\": \"Parameters\", \"parameter\": [{{\"name\": \"reason\", \"valueString\": …}}]}} ({e})"),
        )
    })?;
    if parameters.resource_type != "Parameters" {
        return Err(FhirError::invalid("resourceType", "must be Parameters"));
    }
    match parameters.parameter.as_slice() {
        [only] if only.name == "reason" => {
            if only.value_string.chars().count()
                > haven_app::fhir::amendment::DENIAL_REASON_CHARS_MAX
            {
                return Err(FhirError::invalid(
                    "Parameters.parameter[0].valueString",
                    format!(
                        "at most {} characters",
                        haven_app::fhir::amendment::DENIAL_REASON_CHARS_MAX
                    ),
                ));
            }
            Ok(only.value_string.clone())
        }
        _ => Err(FhirError::invalid(
            "Parameters.parameter",
            "exactly one parameter, `reason` (valueString)",
        )),
    }
}

pub(crate) async fn bundle(
    State(state): State<ApiState>,
    caller: Result<Caller, ApiError>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> FhirResult {
    let Caller(context) = caller?;
    let body = read_body(body)?;
    check_content_type(&headers)?;
    let value = json_body(&body)?;
    let request = haven_fhir::bundle::parse_request(value).map_err(AppError::from)?;
    let outcome = state.app.fhir_bundle(&context, request).await?;
    let base = base_url(&headers, &state);
    Ok(fhir_json(&bundle_response(
        &base,
        outcome,
        wants_minimal(&headers),
    )))
}

/// Whether the client asked for no resource bodies in the answer (`Prefer: return=minimal`,
/// FHIR R4 §3.1.0.1.8): ids, versions and locations only.
fn wants_minimal(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|p| p.trim().eq_ignore_ascii_case("return=minimal"))
}

fn bundle_response(base: &str, outcome: BundleOutcome, minimal: bool) -> Value {
    let entries: Vec<Value> = outcome
        .entries
        .into_iter()
        .map(|entry| match entry {
            EntryOutcome::Resource { status, view } => {
                let mut entry = if view.resource.is_some() && !minimal {
                    entry_of(base, &view, None)
                } else {
                    json!({})
                };
                let reason = match status {
                    201 => "201 Created",
                    204 => "204 No Content",
                    _ => "200 OK",
                };
                let mut response = json!({"status": reason});
                if view.resource.is_some() {
                    response["location"] =
                        json!(format!("{}/{}/_history/{}", view.resource_type, view.id, view.version));
                    response["etag"] = json!(format!("W/\"{}\"", view.version));
                    response["lastModified"] = json!(instant(view.updated_at_ms));
                }
                entry["response"] = response;
                entry
            }
            EntryOutcome::Search(page) => json!({
                "resource": searchset(base, "", &[], &page),
                "response": {"status": "200 OK"},
            }),
            EntryOutcome::Failed(error) => {
                let error = FhirError::from(error);
                json!({
                    "response": {
                        "status": format!("{} {}", error.status.as_u16(), error.status.canonical_reason().unwrap_or("")),
                        "outcome": error.outcome(),
                    }
                })
            }
        })
        .collect();
    json!({
        "resourceType": "Bundle",
        "type": outcome.kind.response_type(),
        "entry": entries,
    })
}
