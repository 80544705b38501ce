//! Haven's FHIR R4 models: what a valid resource is, which patient it belongs to, and the
//! values it is found by.
//!
//! Each resource type is a Rust struct that refuses unknown elements, bad codes and bad
//! dates while it is deserialised, so [`parse`] either returns a resource Haven can keep
//! whole, or an [`Invalid`] that names the element (`Observation.code.coding[0].system`)
//! for the `OperationOutcome`. Rules serde cannot express (one value of a choice type, the
//! target of a reference) are checked by [`ResourceModel::check`].
//!
//! Every clinical resource lives in exactly one patient's compartment ([`Compartment`]):
//! that patient's key seals it, and the access policy decides on that patient. The values a
//! resource is searched by ([`SearchIndex`]) are handed to `app`, which turns them into
//! blind-index tokens; this crate never sees a key, a table or a request.
#![recursion_limit = "256"]

pub mod bundle;
pub(crate) mod codes;
pub mod datatypes;
pub mod examples;
pub mod primitives;
pub mod resources;
pub mod search;
pub mod synthetic;

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use primitives::{Date, DateTime, Id, Instant, TimeRange};
pub use resources::{AnyResource, RESOURCE_TYPES, ServerFields, search_params};
pub use search::{ParamKind, SearchIndex, SearchParam, SearchValue};

/// Bounds on every value, named with their unit.
pub mod limits {
    /// The longest resource id (FHIR's own bound).
    pub const ID_CHARS_MAX: usize = 64;
    /// A `string` element; longer text belongs in `markdown` or an attachment.
    pub const STRING_CHARS_MAX: usize = 4096;
    /// A `markdown` element, e.g. the text of a clinical note.
    pub const MARKDOWN_CHARS_MAX: usize = 65_536;
    pub const CODE_CHARS_MAX: usize = 256;
    pub const URI_CHARS_MAX: usize = 2048;
    /// Inline `Attachment.data`: 256 KiB of base64 (192 KiB of content); larger files are
    /// uploaded as attachments.
    pub const BASE64_CHARS_MAX: usize = 262_144;
    /// Items in any one array.
    pub const ARRAY_ITEMS_MAX: usize = 100;
    /// Nesting depth of a resource's JSON (deeply nested input is refused before it is
    /// walked).
    pub const JSON_DEPTH_MAX: usize = 32;
}

/// Why a resource was refused: the FHIRPath of the element and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct Invalid {
    /// e.g. `Observation.code.coding[0].system`; the resource type alone for the whole.
    pub path: String,
    pub message: String,
}

impl Invalid {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The patient whose compartment holds a resource, or none for resources about no one
/// patient (practitioners, organisations, questionnaires).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compartment<'a> {
    /// The resource is the patient.
    Itself,
    /// The id of the patient named by the reference element `element`.
    Patient {
        element: &'static str,
        id: &'a str,
    },
    None,
}

/// What every resource model offers the engine.
pub trait ResourceModel:
    Serialize + DeserializeOwned + Clone + fmt::Debug + resources::ServerFields
{
    /// The `resourceType`.
    const TYPE: &'static str;

    /// The search parameters this type supports, besides `_id` and `_lastUpdated`.
    const SEARCH_PARAMS: &'static [SearchParam];

    /// Rules beyond the shape: one value per choice type, reference targets, Haven's own
    /// requirements. Paths start with the resource type.
    fn check(&self) -> Result<(), Invalid> {
        Ok(())
    }

    /// Which patient the resource belongs to.
    fn compartment(&self) -> Compartment<'_>;

    /// The values the resource is found by, per search parameter.
    fn index<'a>(&'a self, index: &mut SearchIndex<'a>);
}

/// How a reference element must point at the patient whose compartment holds a resource.
pub(crate) fn patient_reference<'a>(
    resource_type: &str,
    element: &'static str,
    reference: Option<&'a datatypes::Reference>,
) -> Result<&'a str, Invalid> {
    let path = format!("{resource_type}.{element}");
    let reference = reference.ok_or_else(|| {
        Invalid::new(
            &path,
            "required: Haven keeps every clinical resource in one patient's record",
        )
    })?;
    match reference.target() {
        Some(("Patient", id)) => Ok(id),
        _ => Err(Invalid::new(
            format!("{path}.reference"),
            "must be a reference to a Patient, as Patient/{id}",
        )),
    }
}

/// At most one of a choice type's forms (`value[x]`) may be present.
pub(crate) fn one_of(path: &str, present: &[bool]) -> Result<(), Invalid> {
    if present.iter().filter(|p| **p).count() > 1 {
        return Err(Invalid::new(
            path,
            "only one form of a choice element may be given",
        ));
    }
    Ok(())
}

/// Reads a resource of any supported type from JSON bytes.
pub fn parse(bytes: &[u8]) -> Result<AnyResource, Invalid> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        Invalid::new(
            "",
            format!("not valid JSON (line {}, column {})", e.line(), e.column()),
        )
    })?;
    from_value(value)
}

/// Reads a resource of any supported type from parsed JSON.
pub fn from_value(value: Value) -> Result<AnyResource, Invalid> {
    if depth(&value) > limits::JSON_DEPTH_MAX {
        return Err(Invalid::new(
            "",
            format!("nested deeper than {} levels", limits::JSON_DEPTH_MAX),
        ));
    }
    let Value::Object(mut object) = value else {
        return Err(Invalid::new("", "a resource is a JSON object"));
    };
    let resource_type = match object.remove("resourceType") {
        Some(Value::String(kind)) => kind,
        Some(_) => return Err(Invalid::new("resourceType", "must be a string")),
        None => return Err(Invalid::new("resourceType", "required")),
    };
    AnyResource::from_object(&resource_type, object)
}

/// Deserialises one resource type, naming the failing element by its FHIRPath.
pub(crate) fn typed<T: ResourceModel>(
    object: serde_json::Map<String, Value>,
) -> Result<T, Invalid> {
    let input = Value::Object(object);
    let resource: T = serde_path_to_error::deserialize(&input).map_err(|e| {
        let path = e.path().to_string();
        let base = if path == "." || path.is_empty() {
            T::TYPE.to_owned()
        } else {
            format!("{}.{path}", T::TYPE)
        };
        let message = e.inner().to_string();
        // serde lists every known element after an unknown one; the path already names it.
        if message.starts_with("unknown field `") {
            return Invalid::new(base, "unknown or unsupported element");
        }
        if let Some(rest) = message.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or_default();
            return Invalid::new(format!("{base}.{field}"), "required");
        }
        // An array where an object belongs reaches serde's sequence form of the struct.
        if message.starts_with("invalid length") && message.contains("expected struct") {
            return Invalid::new(base, FORM_MESSAGE);
        }
        Invalid::new(base, message)
    })?;
    // serde's derived structs also accept an array of field values in place of an object;
    // FHIR JSON never does. Whatever the shape, a resource Haven keeps must come back
    // exactly as it was sent, so any difference is an element in the wrong form.
    let output = serde_json::to_value(&resource)
        .map_err(|e| Invalid::new(T::TYPE, format!("cannot be represented: {e}")))?;
    if let Some(path) = first_difference(&input, &output, T::TYPE.to_owned()) {
        return Err(Invalid::new(path, FORM_MESSAGE));
    }
    resource.check()?;
    Ok(resource)
}

const FORM_MESSAGE: &str = "not in the form FHIR JSON gives this element";

/// The path of the first place where `output` differs from `input`, if any.
fn first_difference(input: &Value, output: &Value, path: String) -> Option<String> {
    match (input, output) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{path}.{key}");
                match b.get(key) {
                    Some(other) => {
                        if let Some(found) = first_difference(value, other, here) {
                            return Some(found);
                        }
                    }
                    None => return Some(here),
                }
            }
            b.keys()
                .find(|key| !a.contains_key(*key))
                .map(|key| format!("{path}.{key}"))
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Some(path);
            }
            a.iter()
                .zip(b)
                .enumerate()
                .find_map(|(i, (x, y))| first_difference(x, y, format!("{path}[{i}]")))
        }
        (a, b) => (a != b).then_some(path),
    }
}

fn depth(value: &Value) -> usize {
    // Iterative, so hostile nesting cannot overflow the stack before it is refused.
    let mut deepest = 0;
    let mut stack = vec![(value, 1usize)];
    while let Some((value, level)) = stack.pop() {
        deepest = deepest.max(level);
        if level > limits::JSON_DEPTH_MAX {
            break;
        }
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, level + 1))),
            Value::Object(map) => stack.extend(map.values().map(|v| (v, level + 1))),
            _ => {}
        }
    }
    deepest
}

/// The resource as JSON, with its `resourceType`.
pub fn to_value<T: ResourceModel>(resource: &T) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("resourceType".into(), Value::String(T::TYPE.into()));
    if let Ok(Value::Object(fields)) = serde_json::to_value(resource) {
        object.extend(fields);
    }
    Value::Object(object)
}
