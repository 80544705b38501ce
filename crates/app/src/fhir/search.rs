//! FHIR search over sealed resources, through blind indexes.
//!
//! The store holds, per search parameter of the current version of each resource, keyed
//! HMAC tokens, never values:
//!
//! - a token (`code`, `status`, …) as `s:system|code` (with its system), `n:code` (without
//!   one) and `a:code` (any system), matching FHIR's `system|code`, `|code` and `code`;
//! - a string (a name) whole, after NFKC and lower-casing (`:exact` compares the opened
//!   value as written);
//! - a reference as `Type/id`;
//! - a date as calendar buckets ([`date_tokens`]): the months, years, decades and centuries
//!   it touches, so that a range query becomes a short list of buckets ([`date_cover`]).
//!
//! The tokens only narrow the candidates. Each candidate is then opened (under a grant) and
//! matched exactly against the parameters (prefix semantics for dates, case and system for
//! tokens), so a bucket or a lower-cased token can widen the candidates but never the
//! answer. A search that would have to open more than [`CANDIDATES_MAX`] resources is
//! refused as too costly, with what to add to narrow it, instead of running long.

use haven_crypto::BlindIndexKey;
use haven_domain::{Action, PatientId, Role};
use haven_fhir::{AnyResource, ParamKind, SearchValue, TimeRange};
use haven_store::fhir::{ResourceQuery, ResourceToken, StoredResource};
use time::OffsetDateTime;

use super::{ResourceView, chart_part, served_type};
use crate::gate::Grant;
use crate::{App, AppError, AppResult, RequestContext};

/// The most resources one search opens to find its matches (its cost limit).
pub const CANDIDATES_MAX: u32 = 1000;
/// The most matches on one page.
pub const PAGE_MAX: u32 = 100;
/// The page size when the caller does not say (`_count`).
pub const PAGE_DEFAULT: u32 = 20;
/// The most parameters one search combines.
pub const PARAMS_MAX: usize = 8;
/// The most values one parameter ORs together (`code=a,b,c`).
pub const VALUES_MAX: usize = 20;
/// A date bucket level holds at most this many buckets for one value before the value is
/// indexed only at a coarser level.
const BUCKETS_PER_LEVEL_MAX: i64 = 24;

/// A search as received: parameter names (with any modifier) and values, decoded.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub params: Vec<(String, String)>,
}

/// One page of matches, with the patients included by `_include`.
#[derive(Debug, Clone)]
pub struct SearchPage {
    pub matches: Vec<ResourceView>,
    pub included: Vec<ResourceView>,
    /// The number of matches, when the search counted them all.
    pub total: Option<u64>,
    /// The `_page` value of the next page, if there is one.
    pub next: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
enum Wanted {
    Token {
        system: Option<Option<String>>,
        code: String,
    },
    /// A whole name; with `exact` (`:exact`), equal as written, case and accents included.
    String {
        text: String,
        exact: bool,
    },
    Reference {
        resource_type: String,
        id: String,
    },
    Date {
        prefix: Prefix,
        range: TimeRange,
    },
}

/// One parameter: any of its values may match.
#[derive(Debug, Clone)]
struct Filter {
    param: &'static str,
    values: Vec<Wanted>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sort {
    Id,
    Date {
        param: &'static str,
        descending: bool,
    },
    LastUpdated {
        descending: bool,
    },
}

#[derive(Debug)]
struct Parsed {
    patient: Option<PatientId>,
    ids: Option<Vec<String>>,
    filters: Vec<Filter>,
    sort: Sort,
    count: u32,
    include_patient: bool,
    page: Page,
    /// `_summary=count`: the number of matches only.
    count_only: bool,
}

#[derive(Debug, Clone)]
enum Page {
    First,
    After(String),
    Offset(u32),
}

fn invalid(message: impl Into<String>) -> AppError {
    AppError::InvalidResource {
        path: "search".into(),
        message: message.into(),
    }
}

fn parse_prefix(value: &str) -> (Prefix, &str) {
    for (text, prefix) in [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
    ] {
        if let Some(rest) = value.strip_prefix(text) {
            return (prefix, rest);
        }
    }
    (Prefix::Eq, value)
}

fn parse_value(name: &str, kind: ParamKind, value: &str, exact: bool) -> AppResult<Wanted> {
    if exact && kind != ParamKind::String {
        return Err(AppError::NotSupported(format!(
            "`{name}:exact`: the modifier applies to names (string parameters) only"
        )));
    }
    match kind {
        ParamKind::Token => match value.split_once('|') {
            Some((_, "")) => Err(AppError::NotSupported(format!(
                "`{name}`: a system without a code is not supported; give system|code"
            ))),
            Some(("", code)) => Ok(Wanted::Token {
                system: Some(None),
                code: code.to_owned(),
            }),
            Some((system, code)) => Ok(Wanted::Token {
                system: Some(Some(system.to_owned())),
                code: code.to_owned(),
            }),
            None => Ok(Wanted::Token {
                system: None,
                code: value.to_owned(),
            }),
        },
        ParamKind::String => {
            if value.trim().is_empty() {
                return Err(invalid(format!("`{name}` needs a value")));
            }
            Ok(Wanted::String {
                text: value.to_owned(),
                exact,
            })
        }
        ParamKind::Reference => {
            let (resource_type, id) = value.split_once('/').unwrap_or(("", value));
            if id.is_empty() || id.contains('/') {
                return Err(invalid(format!(
                    "`{name}`: a reference is Type/id or an id"
                )));
            }
            Ok(Wanted::Reference {
                resource_type: resource_type.to_owned(),
                id: id.to_owned(),
            })
        }
        ParamKind::Date => {
            if ["sa", "eb", "ap"].iter().any(|p| value.starts_with(p)) {
                return Err(AppError::NotSupported(format!(
                    "`{name}`: the prefixes sa, eb and ap are not supported; use gt, lt, ge, le, eq or ne"
                )));
            }
            let (prefix, text) = parse_prefix(value);
            let range = haven_fhir::DateTime::parse(text)
                .map_err(|why| invalid(format!("`{name}`: {why}")))?
                .range();
            Ok(Wanted::Date { prefix, range })
        }
    }
}

fn parse_request(
    resource_type: &'static str,
    request: &SearchRequest,
    actor_patient: Option<PatientId>,
) -> AppResult<Parsed> {
    let declared = haven_fhir::search_params(resource_type).unwrap_or(&[]);
    let mut parsed = Parsed {
        patient: None,
        ids: None,
        filters: Vec::new(),
        sort: Sort::Id,
        count: PAGE_DEFAULT,
        include_patient: false,
        page: Page::First,
        count_only: false,
    };
    if request.params.len() > PARAMS_MAX * 2 {
        return Err(invalid(format!("at most {PARAMS_MAX} search parameters")));
    }
    for (name, value) in &request.params {
        let exact = name.ends_with(":exact");
        let name = name.strip_suffix(":exact").unwrap_or(name);
        match name {
            "_count" => {
                parsed.count = value
                    .parse::<u32>()
                    .ok()
                    .filter(|c| (1..=PAGE_MAX).contains(c))
                    .ok_or_else(|| invalid(format!("`_count` is 1 to {PAGE_MAX}")))?;
            }
            "_page" => {
                parsed.page = if let Some(after) = value.strip_prefix("a.") {
                    Page::After(after.to_owned())
                } else if let Some(offset) = value.strip_prefix("o.") {
                    Page::Offset(
                        offset
                            .parse()
                            .ok()
                            .filter(|o| *o < CANDIDATES_MAX)
                            .ok_or_else(|| invalid("`_page` is not a page of this search"))?,
                    )
                } else {
                    return Err(invalid("`_page` is not a page of this search"));
                };
            }
            "_sort" => {
                let descending = value.starts_with('-');
                let field = value.trim_start_matches('-');
                parsed.sort = match field {
                    "_lastUpdated" => Sort::LastUpdated { descending },
                    "_id" => Sort::Id,
                    other => match declared
                        .iter()
                        .find(|p| p.name == other && p.kind == ParamKind::Date)
                    {
                        Some(param) => Sort::Date {
                            param: param.name,
                            descending,
                        },
                        None => {
                            return Err(AppError::NotSupported(format!(
                                "`_sort` by `{}` is not supported; sort by a date parameter or _lastUpdated",
                                other.chars().take(64).collect::<String>()
                            )));
                        }
                    },
                };
            }
            // The total is always exact when it is given: every way of asking is accepted.
            "_total" if ["none", "estimate", "accurate"].contains(&value.as_str()) => {}
            "_summary" if value == "count" => parsed.count_only = true,
            "_summary" => {
                return Err(AppError::NotSupported(
                    "`_summary` supports count only".into(),
                ));
            }
            "_include" => {
                let wanted_patient = [
                    format!("{resource_type}:patient"),
                    format!("{resource_type}:subject"),
                ];
                if !wanted_patient.contains(value) {
                    return Err(AppError::NotSupported(format!(
                        "`_include` supports {resource_type}:patient (or :subject)"
                    )));
                }
                parsed.include_patient = true;
            }
            "_id" => {
                let ids: Vec<String> = value
                    .split(',')
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned)
                    .collect();
                if ids.is_empty() || ids.len() > VALUES_MAX {
                    return Err(invalid(format!("`_id` takes 1 to {VALUES_MAX} ids")));
                }
                parsed.ids = Some(ids);
            }
            "patient" | "subject"
                if declared
                    .iter()
                    .any(|p| p.name == name && p.kind == ParamKind::Reference) =>
            {
                let id = value.strip_prefix("Patient/").unwrap_or(value);
                let patient = id
                    .parse::<PatientId>()
                    .map_err(|_| invalid(format!("`{name}` is Patient/id or a patient's id")))?;
                if parsed.patient.is_some_and(|p| p != patient) {
                    return Err(invalid("one patient per search"));
                }
                parsed.patient = Some(patient);
            }
            other => {
                let Some(param) = declared.iter().find(|p| p.name == other) else {
                    let known: Vec<&str> = declared.iter().map(|p| p.name).collect();
                    return Err(AppError::NotSupported(format!(
                        "`{}` is not a search parameter of {resource_type}; use one of: _id, _count, _sort, _include, {}",
                        other.chars().take(64).collect::<String>(),
                        known.join(", ")
                    )));
                };
                let values = value
                    .split(',')
                    .map(|v| parse_value(param.name, param.kind, v, exact))
                    .collect::<AppResult<Vec<_>>>()?;
                if values.is_empty() || values.len() > VALUES_MAX {
                    return Err(invalid(format!(
                        "`{}` takes 1 to {VALUES_MAX} values",
                        param.name
                    )));
                }
                parsed.filters.push(Filter {
                    param: param.name,
                    values,
                });
            }
        }
    }
    if parsed.filters.len() > haven_store::limits::RESOURCE_FILTERS_MAX {
        return Err(invalid(format!(
            "at most {} filtering parameters",
            haven_store::limits::RESOURCE_FILTERS_MAX
        )));
    }
    if parsed.patient.is_none() {
        parsed.patient = actor_patient;
    }
    Ok(parsed)
}

// ------------------------------------------------------------------------------------------
// Tokens
// ------------------------------------------------------------------------------------------

fn blind(key: &BlindIndexKey, resource_type: &str, param: &str, value: &str) -> ResourceToken {
    ResourceToken {
        param: param.to_owned(),
        token: key
            .token(&format!("fhir.{resource_type}.{param}"), value)
            .as_bytes()
            .to_vec(),
    }
}

/// The tokens under which `value` of `param` is stored.
pub(crate) fn tokens_of(
    key: &BlindIndexKey,
    resource_type: &str,
    param: &str,
    value: &SearchValue<'_>,
    out: &mut Vec<ResourceToken>,
) {
    match value {
        SearchValue::Token { system, code } => {
            match system {
                Some(system) => out.push(blind(
                    key,
                    resource_type,
                    param,
                    &format!("s:{system}|{code}"),
                )),
                None => out.push(blind(key, resource_type, param, &format!("n:{code}"))),
            }
            out.push(blind(key, resource_type, param, &format!("a:{code}")));
        }
        SearchValue::String(text) => out.push(blind(key, resource_type, param, text)),
        SearchValue::Reference {
            resource_type: target,
            id,
        } => {
            out.push(blind(key, resource_type, param, &format!("{target}/{id}")));
        }
        SearchValue::Date(range) => {
            for bucket in date_tokens(*range) {
                out.push(blind(key, resource_type, param, &bucket));
            }
        }
    }
}

/// The tokens a query for one wanted value looks for (any of them).
fn wanted_tokens(
    key: &BlindIndexKey,
    resource_type: &str,
    param: &str,
    wanted: &Wanted,
) -> Option<Vec<ResourceToken>> {
    Some(match wanted {
        Wanted::Token { system, code } => vec![blind(
            key,
            resource_type,
            param,
            &match system {
                Some(Some(system)) => format!("s:{system}|{code}"),
                Some(None) => format!("n:{code}"),
                None => format!("a:{code}"),
            },
        )],
        Wanted::String { text, .. } => vec![blind(key, resource_type, param, text)],
        Wanted::Reference {
            resource_type: target,
            id,
        } => {
            let target = if target.is_empty() { "Patient" } else { target };
            vec![blind(key, resource_type, param, &format!("{target}/{id}"))]
        }
        Wanted::Date { prefix, range } => {
            let span = match prefix {
                // Anything but one span: every candidate must be looked at.
                Prefix::Ne => return None,
                Prefix::Eq => *range,
                Prefix::Gt | Prefix::Ge => TimeRange {
                    start_ms: range.start_ms,
                    end_ms: CALENDAR_END_MS,
                },
                Prefix::Lt | Prefix::Le => TimeRange {
                    start_ms: CALENDAR_START_MS,
                    end_ms: range.end_ms,
                },
            };
            date_cover(span)
                .into_iter()
                .map(|bucket| blind(key, resource_type, param, &bucket))
                .collect()
        }
    })
}

// ------------------------------------------------------------------------------------------
// Date buckets
// ------------------------------------------------------------------------------------------

/// 0001-01-01 and 10000-01-01: the calendar FHIR dates can name.
const CALENDAR_START_MS: i64 = -62_135_596_800_000;
const CALENDAR_END_MS: i64 = 253_402_300_800_000;

/// Bucket levels, finest first, each in months.
const LEVELS: [(char, i64); 4] = [('m', 1), ('y', 12), ('d', 120), ('c', 1200)];

/// Months since year 0 of the month holding `ms`.
fn month_index(ms: i64) -> i64 {
    let clamped = ms.clamp(CALENDAR_START_MS, CALENDAR_END_MS - 1);
    let at = OffsetDateTime::from_unix_timestamp(clamped.div_euclid(1000))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    i64::from(at.year()) * 12 + i64::from(u8::from(at.month())) - 1
}

fn bucket(level: char, size: i64, index: i64) -> String {
    format!("{level}:{}", index.div_euclid(size))
}

/// The buckets a value touching `range` is stored under. At its finest level with at most
/// [`BUCKETS_PER_LEVEL_MAX`] buckets it is stored plain and starred (`*`, "no finer
/// tokens"), and plain at every coarser level; a value longer than every level allows is
/// stored as `long`, which every range query includes.
pub(crate) fn date_tokens(range: TimeRange) -> Vec<String> {
    let first = month_index(range.start_ms);
    let last = month_index(range.end_ms.saturating_sub(1).max(range.start_ms));
    let mut tokens = Vec::new();
    let mut finest = None;
    for (level, size) in LEVELS {
        let (a, b) = (first.div_euclid(size), last.div_euclid(size));
        if b - a + 1 > BUCKETS_PER_LEVEL_MAX {
            continue;
        }
        if finest.is_none() {
            finest = Some(level);
            tokens.extend((a..=b).map(|i| format!("{level}*:{i}")));
        }
        tokens.extend((a..=b).map(|i| format!("{level}:{i}")));
    }
    if finest.is_none() {
        tokens.push("long".to_owned());
    }
    tokens
}

/// The buckets a query for values touching `range` looks for: a cover of the range by the
/// coarsest whole buckets that fit, each with the starred buckets above it (values stored
/// only at a coarser level), and `long`.
pub(crate) fn date_cover(range: TimeRange) -> Vec<String> {
    let first = month_index(range.start_ms);
    let end = month_index(range.end_ms.saturating_sub(1).max(range.start_ms)) + 1;
    let mut tokens = vec!["long".to_owned()];
    let mut cursor = first;
    while cursor < end {
        let (level_at, size) = LEVELS
            .iter()
            .rev()
            .copied()
            .find(|(_, size)| cursor.rem_euclid(*size) == 0 && cursor + size <= end)
            .unwrap_or(LEVELS[0]);
        tokens.push(bucket(level_at, size, cursor));
        for (coarser, coarser_size) in LEVELS.iter().copied().filter(|(_, s)| *s > size) {
            tokens.push(format!("{coarser}*:{}", cursor.div_euclid(coarser_size)));
        }
        cursor += size;
    }
    tokens.sort();
    tokens.dedup();
    tokens
}

// ------------------------------------------------------------------------------------------
// Exact matching
// ------------------------------------------------------------------------------------------

fn date_matches(prefix: Prefix, wanted: TimeRange, target: TimeRange) -> bool {
    let contains = wanted.start_ms <= target.start_ms && target.end_ms <= wanted.end_ms;
    match prefix {
        Prefix::Eq => contains,
        Prefix::Ne => !contains,
        Prefix::Gt => target.end_ms > wanted.end_ms,
        Prefix::Lt => target.start_ms < wanted.start_ms,
        Prefix::Ge => target.end_ms > wanted.end_ms || contains,
        Prefix::Le => target.start_ms < wanted.start_ms || contains,
    }
}

fn value_matches(wanted: &Wanted, value: &SearchValue<'_>) -> bool {
    match (wanted, value) {
        (Wanted::Token { system, code }, SearchValue::Token { system: s, code: c }) => {
            *c == code
                && match system {
                    None => true,
                    Some(None) => s.is_none(),
                    Some(Some(wanted)) => *s == Some(wanted.as_str()),
                }
        }
        (Wanted::String { text, exact: true }, SearchValue::String(s)) => text == s,
        (Wanted::String { text, exact: false }, SearchValue::String(s)) => {
            haven_crypto::blind::normalise(text) == haven_crypto::blind::normalise(s)
        }
        (
            Wanted::Reference { resource_type, id },
            SearchValue::Reference {
                resource_type: t,
                id: i,
            },
        ) => *i == id && (resource_type.is_empty() || *t == resource_type),
        (Wanted::Date { prefix, range }, SearchValue::Date(target)) => {
            date_matches(*prefix, *range, *target)
        }
        _ => false,
    }
}

fn matches(resource: &AnyResource, filters: &[Filter]) -> bool {
    let index = resource.index();
    filters.iter().all(|filter| {
        index
            .values
            .iter()
            .filter(|(param, _)| *param == filter.param)
            .any(|(_, value)| filter.values.iter().any(|w| value_matches(w, value)))
    })
}

/// The first value of a date parameter, for sorting.
fn sort_key(resource: &AnyResource, param: &str) -> Option<i64> {
    resource
        .index()
        .values
        .iter()
        .find_map(|(p, value)| match value {
            SearchValue::Date(range) if *p == param => Some(range.start_ms),
            _ => None,
        })
}

// ------------------------------------------------------------------------------------------
// Running a search
// ------------------------------------------------------------------------------------------

impl App {
    /// Searches one resource type. Staff may search across patients (each patient whose
    /// resources are opened gets an audit entry, and those the policy refuses are left
    /// out); a patient searches their own record unless they name another they act for.
    pub async fn fhir_search(
        &self,
        context: &RequestContext,
        resource_type: &str,
        request: &SearchRequest,
    ) -> AppResult<SearchPage> {
        let resource_type = served_type(resource_type)?;
        if resource_type == "Patient" {
            return self.fhir_search_patients(context, request).await;
        }
        let directory = super::is_directory(resource_type);
        let part = match chart_part(resource_type) {
            Some(part) => part,
            None if directory => haven_domain::ChartPart::Clinical,
            None => {
                return Err(AppError::NotSupported(format!(
                    "{resource_type} is not kept yet"
                )));
            }
        };
        let own = (context.actor.role == Role::Patient && !directory)
            .then_some(context.actor.patient)
            .flatten();
        let parsed = parse_request(resource_type, request, own)?;
        if context.actor.role == Role::Patient && parsed.patient.is_none() && !directory {
            return Err(invalid(
                "name the patient (patient=Patient/id): this account has no record of its own",
            ));
        }
        // Decided before anything is looked up. A search across patients covers every
        // patient only for those the policy lets see every patient's part of the chart;
        // anyone else searches only the patients they are related to, so that nothing of
        // the others (not even in the paging or a count) enters the answer.
        let mut related = None;
        if parsed.patient.is_none()
            && !directory
            && self
                .gate
                .chart_scope(context, Action::Search, part, resource_type)
                .await?
                == crate::gate::ChartScope::Related
        {
            let patients = match context.actor.principal {
                haven_domain::Principal::User { user, .. } => {
                    self.store
                        .related_patients(
                            user,
                            self.clock.now_ms(),
                            haven_store::limits::RELATED_PATIENTS_MAX + 1,
                        )
                        .await?
                }
                // A token is related to no one.
                haven_domain::Principal::ApiToken(_) => Vec::new(),
            };
            if patients.len() > haven_store::limits::RELATED_PATIENTS_MAX as usize {
                return Err(AppError::TooCostly(format!(
                    "you are related to more than {} patients: name the patient (patient=Patient/id)",
                    haven_store::limits::RELATED_PATIENTS_MAX
                )));
            }
            related = Some(patients);
        }
        let mut filters = Vec::new();
        for filter in &parsed.filters {
            let mut tokens = Vec::new();
            let mut unbounded = false;
            for wanted in &filter.values {
                match wanted_tokens(&self.blind, resource_type, filter.param, wanted) {
                    Some(more) => tokens.extend(more),
                    None => unbounded = true,
                }
            }
            if !unbounded {
                tokens.sort_by(|a, b| a.token.cmp(&b.token));
                tokens.dedup();
                if tokens.len() > haven_store::limits::FILTER_TOKENS_MAX {
                    return Err(AppError::TooCostly(format!(
                        "`{}` covers too much; narrow it",
                        filter.param
                    )));
                }
                filters.push(tokens);
            }
        }
        // With a sort, or a filter the tokens cannot decide, every candidate is opened;
        // otherwise pages follow the id order and only a page is opened.
        let counted = parsed.count_only
            || parsed.sort != Sort::Id
            || parsed
                .filters
                .iter()
                .any(|f| f.values.iter().any(|w| matches!(w, Wanted::Date { .. })));
        let (after, limit) = match (&parsed.page, counted) {
            (Page::After(after), false) => (Some(after.clone()), parsed.count + 1),
            (Page::First, false) => (None, parsed.count + 1),
            (Page::First | Page::Offset(_), true) => (None, CANDIDATES_MAX + 1),
            _ => return Err(invalid("`_page` is not a page of this search")),
        };
        let single_patient_grant = match parsed.patient {
            // The directory has one key and one decision for every entry.
            _ if directory => Some(
                self.gate
                    .authorize_directory(
                        context,
                        Action::Search,
                        super::directory_subject(),
                        resource_type,
                        None,
                    )
                    .await?,
            ),
            Some(patient) => Some(
                self.gate
                    .authorize_resource(
                        context,
                        Action::Search,
                        crate::gate::AuditedResource {
                            resource: haven_domain::Resource::Chart(patient, part),
                            patient: None,
                            resource_type,
                            resource_id: None,
                        },
                        false,
                    )
                    .await?
                    .ok_or_else(|| {
                        AppError::Unexpected("an allowed search without a grant".into())
                    })?,
            ),
            None => None,
        };
        let rows = self
            .store
            .search_resources(&ResourceQuery {
                resource_type: resource_type.to_owned(),
                patient: parsed.patient,
                patients: related,
                ids: parsed.ids.clone(),
                filters,
                after,
                limit,
            })
            .await?;
        if counted && rows.len() > CANDIDATES_MAX as usize {
            return Err(AppError::TooCostly(format!(
                "more than {CANDIDATES_MAX} {resource_type} resources would have to be opened; name the patient or narrow the dates"
            )));
        }
        let has_more = !counted && rows.len() > parsed.count as usize;
        let rows = if counted {
            &rows[..]
        } else {
            &rows[..rows.len().min(parsed.count as usize)]
        };
        let grants = match single_patient_grant {
            Some(grant) => vec![grant],
            None => {
                let mut patients: Vec<PatientId> = rows.iter().filter_map(|r| r.patient).collect();
                patients.sort();
                patients.dedup();
                self.gate
                    .grant_chart(context, Action::Search, part, resource_type, &patients)
                    .await?
            }
        };
        let mut found = self.open_matching(
            &grants,
            rows,
            &parsed.filters,
            context.actor.role == Role::Patient,
        )?;
        let (matches, total, next) = if counted {
            match parsed.sort {
                Sort::Date { param, descending } => {
                    found.sort_by_cached_key(|view| {
                        view.resource.as_ref().and_then(|r| sort_key(r, param))
                    });
                    if descending {
                        found.reverse();
                    }
                }
                Sort::LastUpdated { descending } => {
                    found.sort_by_key(|view| view.updated_at_ms);
                    if descending {
                        found.reverse();
                    }
                }
                Sort::Id => {}
            }
            let total = found.len();
            let offset = match parsed.page {
                Page::Offset(offset) => offset as usize,
                _ => 0,
            };
            let shown = if parsed.count_only {
                0
            } else {
                parsed.count as usize
            };
            let end = (offset + shown).min(total);
            let page: Vec<ResourceView> = found.drain(offset.min(total)..end).collect();
            let next = (!parsed.count_only && end < total).then(|| format!("o.{end}"));
            (page, Some(total as u64), next)
        } else {
            let next = has_more
                .then(|| rows.last().map(|r| format!("a.{}", r.id)))
                .flatten();
            (found, None, next)
        };
        let included = if parsed.include_patient {
            self.include_patients(context, &matches).await?
        } else {
            Vec::new()
        };
        Ok(SearchPage {
            matches,
            included,
            total,
            next,
        })
    }

    fn open_matching(
        &self,
        grants: &[Grant],
        rows: &[StoredResource],
        filters: &[Filter],
        released_only: bool,
    ) -> AppResult<Vec<ResourceView>> {
        let mut found = Vec::with_capacity(rows.len());
        let mut keys = std::collections::HashMap::new();
        for row in rows {
            // A result not yet released to the patient is not theirs to see yet.
            if released_only && row.held {
                continue;
            }
            let owner = row.patient.unwrap_or_else(super::directory_subject);
            let Some(grant) = grants.iter().find(|g| g.patient() == owner) else {
                continue;
            };
            let view = match self.open_resource_cached(grant, row, &mut keys) {
                Ok(view) => view,
                Err(AppError::Erased) => continue,
                Err(other) => return Err(other),
            };
            if view.resource.as_ref().is_some_and(|r| matches(r, filters)) {
                found.push(view);
            }
        }
        Ok(found)
    }

    /// The patients of a page of matches, each read (and audited) as the caller.
    async fn include_patients(
        &self,
        context: &RequestContext,
        matches: &[ResourceView],
    ) -> AppResult<Vec<ResourceView>> {
        let mut patients: Vec<String> = matches
            .iter()
            .filter_map(|view| match view.resource.as_ref()?.compartment() {
                haven_fhir::Compartment::Patient { id, .. } => Some(id.to_owned()),
                _ => None,
            })
            .collect();
        patients.sort();
        patients.dedup();
        let mut included = Vec::with_capacity(patients.len());
        for id in patients {
            match self.fhir_read_patient(context, &id).await {
                Ok(view) => included.push(view),
                Err(AppError::Forbidden { .. } | AppError::NotFound | AppError::Erased) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(included)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(from: &str, to: &str) -> TimeRange {
        let a = haven_fhir::DateTime::parse(from).unwrap().range();
        let b = haven_fhir::DateTime::parse(to).unwrap().range();
        a.union(&b)
    }

    /// Whatever the value and the query, a value that touches the queried range shares a
    /// token with the query: the buckets may widen the candidates, never lose one.
    #[test]
    fn date_buckets_never_lose_a_value() {
        let values = [
            range("2024-03-15", "2024-03-15"),
            range("2024-03-31T23:59:59Z", "2024-04-01T00:00:01Z"),
            range("2019-12", "2024-02"),
            range("1990", "2024"),
            range("1800", "2024"),
            range("0500", "2024"),
            range("2030-01-01", "2030-01-01"),
        ];
        let queries = [
            range("2024-03-15", "2024-03-15"),
            range("2024-03-10", "2024-04-20"),
            range("2020", "2020"),
            range("1995-06", "2001-02"),
            range("2024-02-29", "2024-03-01"),
            TimeRange {
                start_ms: CALENDAR_START_MS,
                end_ms: range("2000", "2000").end_ms,
            },
            TimeRange {
                start_ms: range("2021-07-04", "2021-07-04").start_ms,
                end_ms: CALENDAR_END_MS,
            },
        ];
        for value in values {
            let stored = date_tokens(value);
            for query in queries {
                let cover = date_cover(query);
                let shares = cover.iter().any(|t| stored.contains(t));
                if value.overlaps(&query) {
                    assert!(shares, "{value:?} overlaps {query:?} but shares no bucket");
                }
                assert!(cover.len() <= haven_store::limits::FILTER_TOKENS_MAX);
            }
        }
    }

    proptest::proptest! {
        /// The same, for any spans from a millisecond to three centuries.
        #[test]
        fn no_overlapping_value_is_ever_missed(
            value_start in -5_000_000_000_000i64..8_000_000_000_000,
            value_len in 1i64..10_000_000_000_000,
            query_start in -5_000_000_000_000i64..8_000_000_000_000,
            query_len in 1i64..10_000_000_000_000,
        ) {
            let value = TimeRange { start_ms: value_start, end_ms: value_start + value_len };
            let query = TimeRange { start_ms: query_start, end_ms: query_start + query_len };
            let stored = date_tokens(value);
            let cover = date_cover(query);
            proptest::prop_assert!(cover.len() <= haven_store::limits::FILTER_TOKENS_MAX);
            if value.overlaps(&query) {
                proptest::prop_assert!(cover.iter().any(|t| stored.contains(t)));
            }
        }
    }

    #[test]
    fn a_day_query_does_not_match_every_value_of_its_year() {
        let query = date_cover(range("2024-03-15", "2024-03-15"));
        let elsewhere = date_tokens(range("2024-07-01", "2024-07-01"));
        assert!(!query.iter().any(|t| elsewhere.contains(t)));
    }

    #[test]
    fn prefixes_follow_the_specification() {
        let march = range("2024-03", "2024-03");
        let day = range("2024-03-15", "2024-03-15");
        let april = range("2024-04-02", "2024-04-02");
        assert!(date_matches(Prefix::Eq, march, day));
        assert!(!date_matches(Prefix::Eq, day, march));
        assert!(date_matches(Prefix::Ne, march, april));
        assert!(date_matches(Prefix::Gt, march, april));
        assert!(!date_matches(Prefix::Gt, march, day));
        assert!(date_matches(Prefix::Ge, march, day));
        assert!(date_matches(Prefix::Lt, april, day));
        assert!(date_matches(Prefix::Le, day, day));
        assert!(!date_matches(Prefix::Lt, day, april));
    }
}
