//! Bundles a client sends: `transaction` and `batch` (FHIR R4 §3.1.0.11), read into their
//! entries' requests. Each entry's resource stays JSON until the server has resolved the
//! `urn:uuid:` references between entries; then it is parsed like any other resource.

use serde_json::Value;

use crate::{Invalid, limits};

/// The most entries one Bundle may carry.
pub const ENTRIES_MAX: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    /// All entries succeed together or none is applied.
    Transaction,
    /// Each entry on its own.
    Batch,
}

impl BundleKind {
    pub fn response_type(self) -> &'static str {
        match self {
            BundleKind::Transaction => "transaction-response",
            BundleKind::Batch => "batch-response",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    /// FHIR's processing order within a transaction (§3.1.0.11.2).
    pub fn order(self) -> u8 {
        match self {
            Method::Delete => 0,
            Method::Post => 1,
            Method::Put => 2,
            Method::Get => 3,
        }
    }
}

/// One entry's request.
#[derive(Debug, Clone)]
pub struct EntryRequest {
    pub full_url: Option<String>,
    pub method: Method,
    /// Relative to the base: `Observation`, `Observation/123`, `Observation?code=…`.
    pub url: String,
    pub if_match: Option<String>,
    pub if_none_exist: Option<String>,
    pub resource: Option<Value>,
}

/// A transaction or batch, entry by entry.
#[derive(Debug, Clone)]
pub struct BundleRequest {
    pub kind: BundleKind,
    pub entries: Vec<EntryRequest>,
}

fn string_at<'a>(
    object: &'a serde_json::Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, Invalid> {
    match object.get(key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(Invalid::new(format!("{path}.{key}"), "must be a string")),
    }
}

/// Reads a Bundle of type `transaction` or `batch`.
pub fn parse_request(value: Value) -> Result<BundleRequest, Invalid> {
    let Value::Object(mut bundle) = value else {
        return Err(Invalid::new("", "a Bundle is a JSON object"));
    };
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(Invalid::new(
            "resourceType",
            "this endpoint takes a Bundle of type transaction or batch",
        ));
    }
    let kind = match bundle.get("type").and_then(Value::as_str) {
        Some("transaction") => BundleKind::Transaction,
        Some("batch") => BundleKind::Batch,
        _ => return Err(Invalid::new("Bundle.type", "must be transaction or batch")),
    };
    for key in bundle.keys() {
        if !["resourceType", "type", "entry", "id", "meta"].contains(&key.as_str()) {
            return Err(Invalid::new(
                format!("Bundle.{key}"),
                "unknown or unsupported element",
            ));
        }
    }
    let entries = match bundle.remove("entry") {
        None => Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(Invalid::new("Bundle.entry", "must be an array")),
    };
    if entries.len() > ENTRIES_MAX {
        return Err(Invalid::new(
            "Bundle.entry",
            format!("at most {ENTRIES_MAX} entries"),
        ));
    }
    let mut requests = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let path = format!("Bundle.entry[{i}]");
        let Value::Object(mut entry) = entry else {
            return Err(Invalid::new(path, "an entry is an object"));
        };
        for key in entry.keys() {
            if !["fullUrl", "resource", "request"].contains(&key.as_str()) {
                return Err(Invalid::new(
                    format!("{path}.{key}"),
                    "unknown or unsupported element",
                ));
            }
        }
        let full_url = string_at(&entry, "fullUrl", &path)?.map(str::to_owned);
        let Some(Value::Object(request)) = entry.get("request") else {
            return Err(Invalid::new(
                format!("{path}.request"),
                "required: method and url",
            ));
        };
        let request_path = format!("{path}.request");
        for key in request.keys() {
            if !["method", "url", "ifMatch", "ifNoneExist"].contains(&key.as_str()) {
                return Err(Invalid::new(
                    format!("{request_path}.{key}"),
                    "unknown or unsupported element",
                ));
            }
        }
        let method = match string_at(request, "method", &request_path)? {
            Some("GET") => Method::Get,
            Some("POST") => Method::Post,
            Some("PUT") => Method::Put,
            Some("DELETE") => Method::Delete,
            _ => {
                return Err(Invalid::new(
                    format!("{request_path}.method"),
                    "must be GET, POST, PUT or DELETE",
                ));
            }
        };
        let url = string_at(request, "url", &request_path)?
            .filter(|u| !u.is_empty() && u.len() <= limits::URI_CHARS_MAX)
            .ok_or_else(|| Invalid::new(format!("{request_path}.url"), "required"))?
            .to_owned();
        let if_match = string_at(request, "ifMatch", &request_path)?.map(str::to_owned);
        let if_none_exist = string_at(request, "ifNoneExist", &request_path)?.map(str::to_owned);
        let resource = entry.remove("resource");
        let needs_resource = matches!(method, Method::Post | Method::Put);
        if needs_resource != resource.is_some() {
            return Err(Invalid::new(
                format!("{path}.resource"),
                if needs_resource {
                    "required for POST and PUT"
                } else {
                    "only POST and PUT carry a resource"
                },
            ));
        }
        requests.push(EntryRequest {
            full_url,
            method,
            url,
            if_match,
            if_none_exist,
            resource,
        });
    }
    Ok(BundleRequest {
        kind,
        entries: requests,
    })
}

/// Replaces every `reference` that `resolve` knows (a `urn:uuid:` of another entry) with
/// the server's `Type/id`.
pub fn resolve_references(value: &mut Value, resolve: &dyn Fn(&str) -> Option<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "reference"
                    && let Value::String(text) = child
                    && let Some(resolved) = resolve(text)
                {
                    *text = resolved;
                } else {
                    resolve_references(child, resolve);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                resolve_references(item, resolve);
            }
        }
        _ => {}
    }
}
