//! `/api/v1/patients`: the wire format of patient demographics and its handlers.
//!
//! The DTOs here are the JSON contract; they convert to and from `domain` types, which are
//! never serialised directly.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use haven_app::patients::{PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, PatientSearch, PatientView};
use haven_domain::patient::ContactKind;
use haven_domain::{ContactPoint, HumanName, Identifier, Mask, PatientId, PatientRecord};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::extract::{Caller, JsonBody, parse_query};
use crate::{ApiError, ApiState};

const DATE_FORMAT: &[time::format_description::FormatItem<'static>] =
    format_description!("[year]-[month]-[day]");
/// The longest query string a search accepts.
const QUERY_BYTES_MAX: usize = 2048;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NameDto {
    pub family: String,
    #[serde(default)]
    pub given: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifierDto {
    pub system: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactKindDto {
    Phone,
    Email,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContactDto {
    pub kind: ContactKindDto,
    pub value: String,
}

/// What a client sends to create or replace a patient.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientInput {
    pub name: NameDto,
    pub birth_date: String,
    #[serde(default)]
    pub identifiers: Vec<IdentifierDto>,
    #[serde(default)]
    pub contacts: Vec<ContactDto>,
}

/// What Haven answers. An access that may show only what identifies the patient
/// (minimum necessary) leaves the other fields out and lists them in `masked`.
#[derive(Debug, Serialize)]
pub struct PatientOutput {
    pub id: String,
    pub version: i64,
    pub name: NameDto,
    pub birth_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifiers: Option<Vec<IdentifierDto>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contacts: Option<Vec<ContactDto>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<&'static str>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize)]
pub struct PatientPageOutput {
    pub items: Vec<PatientOutput>,
    /// The URL of the next page, if there may be one.
    pub next: Option<String>,
}

fn parse_date(field: &str, text: &str) -> Result<Date, ApiError> {
    Date::parse(text, DATE_FORMAT).map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("{field}: expected a date as YYYY-MM-DD"),
        )
    })
}

pub(crate) fn parse_id(text: &str) -> Result<PatientId, ApiError> {
    text.parse()
        .map_err(|e| ApiError::bad_request("invalid_id", format!("{e}")))
}

impl PatientInput {
    fn into_record(self, today: Date) -> Result<PatientRecord, ApiError> {
        let birth_date = parse_date("birth_date", &self.birth_date)?;
        let record = PatientRecord::new(
            HumanName {
                family: self.name.family,
                given: self.name.given,
            },
            birth_date,
            self.identifiers
                .into_iter()
                .map(|i| Identifier {
                    system: i.system,
                    value: i.value,
                })
                .collect(),
            self.contacts
                .into_iter()
                .map(|c| ContactPoint {
                    kind: match c.kind {
                        ContactKindDto::Phone => ContactKind::Phone,
                        ContactKindDto::Email => ContactKind::Email,
                    },
                    value: c.value,
                })
                .collect(),
            today,
        )
        .map_err(haven_app::AppError::from)?;
        Ok(record)
    }
}

pub(crate) fn timestamp(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

impl From<PatientView> for PatientOutput {
    fn from(view: PatientView) -> Self {
        let record = &view.record;
        let full = view.mask == Mask::None;
        PatientOutput {
            id: view.id.to_string(),
            version: view.version,
            name: NameDto {
                family: record.name().family.clone(),
                given: record.name().given.clone(),
            },
            birth_date: record.birth_date().format(DATE_FORMAT).unwrap_or_default(),
            identifiers: full.then(|| {
                record
                    .identifiers()
                    .iter()
                    .map(|i| IdentifierDto {
                        system: i.system.clone(),
                        value: i.value.clone(),
                    })
                    .collect()
            }),
            contacts: full.then(|| {
                record
                    .contacts()
                    .iter()
                    .map(|c| ContactDto {
                        kind: match c.kind {
                            ContactKind::Phone => ContactKindDto::Phone,
                            ContactKind::Email => ContactKindDto::Email,
                        },
                        value: c.value.clone(),
                    })
                    .collect()
            }),
            masked: if full {
                Vec::new()
            } else {
                vec!["identifiers", "contacts"]
            },
            created_at: timestamp(view.created_at_ms),
            updated_at: timestamp(view.updated_at_ms),
        }
    }
}

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

fn patient_response(status: StatusCode, view: PatientView) -> Response {
    let id = view.id;
    let version = view.version;
    let mut response = (status, Json(PatientOutput::from(view))).into_response();
    response.headers_mut().insert(header::ETAG, etag(version));
    if status == StatusCode::CREATED
        && let Ok(location) = HeaderValue::from_str(&format!("/api/v1/patients/{id}"))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

pub(crate) async fn create(
    State(state): State<ApiState>,
    Caller(context): Caller,
    JsonBody(input): JsonBody<PatientInput>,
) -> Result<Response, ApiError> {
    let record = input.into_record(state.app.clock().today())?;
    let view = state.app.create_patient(&context, record).await?;
    Ok(patient_response(StatusCode::CREATED, view))
}

pub(crate) async fn read(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Caller(context): Caller,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let view = state.app.get_patient(&context, id).await?;
    Ok(patient_response(StatusCode::OK, view))
}

/// Replaces a patient. `If-Match` with the version the client read is required, so a
/// concurrent change is never silently overwritten.
pub(crate) async fn update(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Caller(context): Caller,
    JsonBody(input): JsonBody<PatientInput>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let if_match = headers.get(header::IF_MATCH).ok_or_else(|| {
        ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition_required",
            "send If-Match with the ETag of the version you are changing",
        )
    })?;
    let expected = if_match
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v > 0)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_if_match",
                "If-Match must be the ETag Haven sent, such as \"3\"",
            )
        })?;
    let record = input.into_record(state.app.clock().today())?;
    let view = state
        .app
        .update_patient(&context, id, expected, record)
        .await?;
    Ok(patient_response(StatusCode::OK, view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    family: Option<String>,
    birth_date: Option<String>,
    /// `system|value`.
    identifier: Option<String>,
    /// `me`: only the caller's own patients (whose care team they are on).
    care_team: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

pub(crate) async fn list(
    State(state): State<ApiState>,
    Caller(context): Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = query.unwrap_or_default();
    if query.len() > QUERY_BYTES_MAX {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "query_too_long",
            format!("the query string is longer than {QUERY_BYTES_MAX} bytes"),
        ));
    }
    let params: ListParams = parse_query(&query)?;
    let limit = params.limit.unwrap_or(PAGE_SIZE_DEFAULT);
    if limit == 0 || limit > PAGE_SIZE_MAX {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("limit must be between 1 and {PAGE_SIZE_MAX}"),
        ));
    }
    let identifier = match params.identifier.as_deref() {
        Some(text) => {
            let (system, value) = text.split_once('|').ok_or_else(|| {
                ApiError::bad_request("invalid_query", "identifier must be `system|value`")
            })?;
            Some((system.to_owned(), value.to_owned()))
        }
        None => None,
    };
    let search = PatientSearch {
        family: params.family.filter(|f| !f.trim().is_empty()),
        birth_date: params
            .birth_date
            .as_deref()
            .map(|d| {
                parse_date("birth_date", d).map_err(|_| {
                    ApiError::bad_request(
                        "invalid_query",
                        "birth_date must be a date as YYYY-MM-DD",
                    )
                })
            })
            .transpose()?,
        identifier,
        mine: match params.care_team.as_deref() {
            None => false,
            Some("me") => true,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "care_team must be `me` (your own patients)",
                ));
            }
        },
        after: params.after.as_deref().map(parse_id).transpose()?,
        limit,
    };
    let page = state.app.search_patients(&context, &search).await?;
    let next = page.next.map(|after| {
        let mut pairs = query
            .split('&')
            .filter(|pair| !pair.is_empty() && !pair.starts_with("after="))
            .map(str::to_owned)
            .collect::<Vec<_>>();
        pairs.push(format!("after={after}"));
        format!("/api/v1/patients?{}", pairs.join("&"))
    });
    Ok(Json(PatientPageOutput {
        items: page.items.into_iter().map(PatientOutput::from).collect(),
        next,
    })
    .into_response())
}
