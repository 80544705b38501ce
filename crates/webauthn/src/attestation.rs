//! The attestation object (WebAuthn §6.5): `{fmt, attStmt, authData}` in CBOR.
//!
//! Haven asks for attestation "none" and verifies no other format: knowing the make of a
//! user's authenticator is not something it relies on, and every other format brings
//! certificate chains and vendor roots to keep current.

use ciborium::Value;

use crate::WebauthnError;
use crate::cbor;

/// Returns the authenticator data of a "none" attestation object, after checking that the
/// object is a map of exactly the three members, `fmt` is "none" and `attStmt` is empty.
pub(crate) fn none_attestation_auth_data(bytes: &[u8]) -> Result<Vec<u8>, WebauthnError> {
    let value = cbor::read_whole(bytes)
        .map_err(|_| WebauthnError::Malformed("attestationObject is not one CBOR item"))?;
    let Value::Map(entries) = value else {
        return Err(WebauthnError::Malformed("attestationObject is not a map"));
    };
    let mut fmt = None;
    let mut att_stmt = None;
    let mut auth_data = None;
    for (key, value) in entries {
        let slot = match key.as_text() {
            Some("fmt") => &mut fmt,
            Some("attStmt") => &mut att_stmt,
            Some("authData") => &mut auth_data,
            _ => {
                return Err(WebauthnError::Malformed(
                    "attestationObject has an unknown member",
                ));
            }
        };
        if slot.replace(value).is_some() {
            return Err(WebauthnError::Malformed(
                "attestationObject repeats a member",
            ));
        }
    }
    let missing = WebauthnError::Malformed("attestationObject lacks a member");
    match fmt.ok_or(missing.clone())? {
        Value::Text(fmt) if fmt == "none" => {}
        Value::Text(_) => return Err(WebauthnError::UnsupportedAttestationFormat),
        _ => return Err(WebauthnError::Malformed("fmt is not text")),
    }
    match att_stmt.ok_or(missing.clone())? {
        Value::Map(statement) if statement.is_empty() => {}
        _ => {
            return Err(WebauthnError::Malformed(
                "attStmt of format \"none\" is not an empty map",
            ));
        }
    }
    match auth_data.ok_or(missing)? {
        Value::Bytes(auth_data) => Ok(auth_data),
        _ => Err(WebauthnError::Malformed("authData is not a byte string")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(entries: Vec<(&str, Value)>) -> Vec<u8> {
        let map = Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect(),
        );
        let mut out = Vec::new();
        ciborium::into_writer(&map, &mut out).unwrap();
        out
    }

    fn none(auth_data: &[u8]) -> Vec<(&'static str, Value)> {
        vec![
            ("fmt", Value::from("none")),
            ("attStmt", Value::Map(vec![])),
            ("authData", Value::Bytes(auth_data.to_vec())),
        ]
    }

    #[test]
    fn returns_the_auth_data_of_a_none_attestation() {
        let bytes = encode(none(b"data"));
        assert_eq!(none_attestation_auth_data(&bytes).unwrap(), b"data");
    }

    #[test]
    fn other_formats_are_unsupported() {
        let mut entries = none(b"data");
        entries[0].1 = Value::from("packed");
        entries[1].1 = Value::Map(vec![(Value::from("alg"), Value::from(-7))]);
        assert_eq!(
            none_attestation_auth_data(&encode(entries)),
            Err(WebauthnError::UnsupportedAttestationFormat)
        );
    }

    #[test]
    fn shape_errors_are_malformed() {
        let mut statement = none(b"data");
        statement[1].1 = Value::Map(vec![(Value::from("sig"), Value::Bytes(vec![1]))]);
        let mut repeated = none(b"data");
        repeated.push(("fmt", Value::from("none")));
        let mut unknown = none(b"data");
        unknown.push(("extra", Value::Null));
        let mut missing = none(b"data");
        missing.pop();
        let mut trailing = encode(none(b"data"));
        trailing.push(0);
        for bytes in [
            encode(statement),
            encode(repeated),
            encode(unknown),
            encode(missing),
            trailing,
            vec![0x80],
            vec![],
        ] {
            assert!(
                matches!(
                    none_attestation_auth_data(&bytes),
                    Err(WebauthnError::Malformed(_))
                ),
                "{bytes:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn random_bytes_are_refused_without_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            // A valid object needs the three exact member names; random bytes cannot
            // realistically spell them.
            prop_assert!(none_attestation_auth_data(&bytes).is_err());
        }

        #[test]
        fn every_truncation_is_refused(cut in 0usize..1000) {
            let bytes = encode(none(&[0x5a; 200]));
            let cut = cut % bytes.len();
            prop_assert!(none_attestation_auth_data(&bytes[..cut]).is_err());
        }
    }
}
