//! The resource types Haven serves, one module each, and [`AnyResource`], which dispatches
//! on `resourceType`.
//!
//! A resource module declares its struct with [`resource!`] (which adds the elements every
//! resource has: `id`, `meta`, `language`, `text`), its search parameters, and its
//! [`ResourceModel`] impl: the compartment, the checks serde cannot make, the search values.

use serde_json::{Map, Value};

use crate::search::{SearchIndex, SearchParam};
use crate::{Compartment, Id, Invalid, ResourceModel};

/// Declares a resource struct with the elements common to every resource, refusing
/// unknown elements, with the server-managed `id` and `meta` settable by the engine.
macro_rules! resource {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        pub struct $name {
            #[serde(skip_serializing_if = "Option::is_none")]
            pub id: Option<$crate::primitives::Id>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub meta: Option<$crate::datatypes::Meta>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub language: Option<$crate::primitives::Code>,
            #[serde(skip_serializing_if = "Option::is_none")]
            pub text: Option<$crate::datatypes::Narrative>,
            $( $(#[$field_meta])* pub $field : $ty, )*
        }

        impl $crate::resources::ServerFields for $name {
            fn id(&self) -> Option<&$crate::primitives::Id> {
                self.id.as_ref()
            }

            fn set_server_fields(
                &mut self,
                id: $crate::primitives::Id,
                version: i64,
                last_updated_ms: i64,
            ) {
                self.id = Some(id);
                let mut meta = self.meta.take().unwrap_or_default();
                meta.version_id = $crate::primitives::Id::parse(version.to_string()).ok();
                meta.last_updated = Some($crate::primitives::Instant::from_unix_ms(last_updated_ms));
                self.meta = Some(meta);
            }
        }
    };
}

/// The server-managed elements, implemented by [`resource!`].
pub trait ServerFields {
    fn id(&self) -> Option<&Id>;
    fn set_server_fields(&mut self, id: Id, version: i64, last_updated_ms: i64);
}

pub mod observation;
pub mod patient;

pub use observation::Observation;
pub use patient::Patient;

/// Declares [`AnyResource`] over every supported type.
macro_rules! any_resource {
    ($($variant:ident),* $(,)?) => {
        /// A resource of any type Haven serves.
        #[derive(Debug, Clone, PartialEq)]
        pub enum AnyResource {
            $($variant($variant),)*
        }

        /// Every `resourceType` Haven serves, for the CapabilityStatement.
        pub const RESOURCE_TYPES: &[&str] = &[$($variant::TYPE,)*];

        impl AnyResource {
            pub(crate) fn from_object(resource_type: &str, object: Map<String, Value>) -> Result<AnyResource, Invalid> {
                match resource_type {
                    $(t if t == $variant::TYPE => crate::typed::<$variant>(object).map(AnyResource::$variant),)*
                    other => Err(Invalid::new(
                        "resourceType",
                        format!("`{}` is not a resource type this server keeps", other.chars().take(64).collect::<String>()),
                    )),
                }
            }

            pub fn resource_type(&self) -> &'static str {
                match self { $(AnyResource::$variant(_) => $variant::TYPE,)* }
            }

            pub fn compartment(&self) -> Compartment<'_> {
                match self { $(AnyResource::$variant(r) => r.compartment(),)* }
            }

            pub fn index(&self) -> SearchIndex<'_> {
                let mut index = SearchIndex::default();
                match self { $(AnyResource::$variant(r) => r.index(&mut index),)* }
                index
            }

            pub fn id(&self) -> Option<&Id> {
                match self { $(AnyResource::$variant(r) => ServerFields::id(r),)* }
            }

            pub fn set_server_fields(&mut self, id: Id, version: i64, last_updated_ms: i64) {
                match self { $(AnyResource::$variant(r) => ServerFields::set_server_fields(r, id, version, last_updated_ms),)* }
            }

            pub fn to_value(&self) -> Value {
                match self { $(AnyResource::$variant(r) => crate::to_value(r),)* }
            }
        }

        /// The search parameters of `resource_type`, or `None` for a type Haven does not serve.
        pub fn search_params(resource_type: &str) -> Option<&'static [SearchParam]> {
            match resource_type {
                $(t if t == $variant::TYPE => Some($variant::SEARCH_PARAMS),)*
                _ => None,
            }
        }
    };
}

any_resource!(Patient, Observation);
