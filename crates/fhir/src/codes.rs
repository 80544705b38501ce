//! Required value sets as Rust enums: a code outside the set is refused with the list of
//! codes that are allowed.

/// Declares an enum over a required FHIR value set, with `as_str` and serde by code.
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $($variant:ident = $code:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every allowed code.
            pub const CODES: &'static [&'static str] = &[$($code),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }

            pub fn parse(code: &str) -> Option<$name> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let code = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
                $name::parse(&code).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "`{}` is not an allowed code; use one of: {}",
                        code.chars().take(64).collect::<String>(),
                        $name::CODES.join(", ")
                    ))
                })
            }
        }
    };
}
pub(crate) use code_enum;
