//! clientDataJSON (WebAuthn §5.8.1): what the browser says about the ceremony — its type,
//! the challenge it answers and the origin it ran on. The authenticator signs its hash.

use serde::Deserialize;

use crate::{Challenge, WebauthnError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ceremony {
    Registration,
    Authentication,
}

impl Ceremony {
    fn client_data_type(self) -> &'static str {
        match self {
            Self::Registration => "webauthn.create",
            Self::Authentication => "webauthn.get",
        }
    }
}

/// Browsers may add members (Chromium sometimes adds `other_keys_can_be_added_here`), so
/// unknown members are allowed; repeated ones are not (serde refuses duplicate fields).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CollectedClientData {
    #[serde(rename = "type")]
    ceremony_type: String,
    challenge: String,
    origin: String,
    #[serde(default)]
    cross_origin: Option<bool>,
    #[serde(default)]
    top_origin: Option<String>,
}

/// The client-data checks §7.1 and §7.2 share. The caller has already bounded the size.
pub(crate) fn verify(
    client_data_json: &[u8],
    ceremony: Ceremony,
    expected_challenge: &Challenge,
    origins: &[String],
) -> Result<(), WebauthnError> {
    let client_data: CollectedClientData = serde_json::from_slice(client_data_json)
        .map_err(|_| WebauthnError::Malformed("clientDataJSON"))?;
    if client_data.ceremony_type != ceremony.client_data_type() {
        return Err(WebauthnError::CeremonyTypeMismatch);
    }
    // The specification compares the base64url text, not decoded bytes: a client cannot
    // get a padded or otherwise re-encoded challenge accepted.
    if client_data.challenge != expected_challenge.to_base64url() {
        return Err(WebauthnError::ChallengeMismatch);
    }
    // Exact comparison: scheme, host and port must all be one of ours.
    if !origins.contains(&client_data.origin) {
        return Err(WebauthnError::OriginMismatch);
    }
    // Haven's pages are never embedded in another site.
    if client_data.cross_origin == Some(true) || client_data.top_origin.is_some() {
        return Err(WebauthnError::CrossOrigin);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORIGIN: &str = "https://clinic.example.org";

    fn check(value: serde_json::Value, challenge: &Challenge) -> Result<(), WebauthnError> {
        verify(
            value.to_string().as_bytes(),
            Ceremony::Authentication,
            challenge,
            &[ORIGIN.to_owned()],
        )
    }

    #[test]
    fn accepts_the_expected_data_with_extra_members() {
        let challenge = Challenge::generate();
        let value = json!({
            "type": "webauthn.get",
            "challenge": challenge.to_base64url(),
            "origin": ORIGIN,
            "crossOrigin": false,
            "other_keys_can_be_added_here": "do not compare clientDataJSON against a template",
        });
        assert_eq!(check(value, &challenge), Ok(()));
    }

    #[test]
    fn each_member_is_checked() {
        let challenge = Challenge::generate();
        let good = || json!({"type": "webauthn.get", "challenge": challenge.to_base64url(), "origin": ORIGIN});
        let with = |key: &str, value: serde_json::Value| {
            let mut data = good();
            data[key] = value;
            data
        };
        let cases = [
            (
                with("type", json!("webauthn.create")),
                WebauthnError::CeremonyTypeMismatch,
            ),
            (
                with("challenge", json!(Challenge::generate().to_base64url())),
                WebauthnError::ChallengeMismatch,
            ),
            (
                with("challenge", json!(format!("{}=", challenge.to_base64url()))),
                WebauthnError::ChallengeMismatch,
            ),
            (
                with("origin", json!("https://clinic.example.org:8443")),
                WebauthnError::OriginMismatch,
            ),
            (
                with("origin", json!("http://clinic.example.org")),
                WebauthnError::OriginMismatch,
            ),
            (
                with("origin", json!("https://evil.example.org")),
                WebauthnError::OriginMismatch,
            ),
            (with("crossOrigin", json!(true)), WebauthnError::CrossOrigin),
            (
                with("topOrigin", json!("https://evil.example")),
                WebauthnError::CrossOrigin,
            ),
            (
                with("type", json!(1)),
                WebauthnError::Malformed("clientDataJSON"),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(check(value.clone(), &challenge), Err(expected), "{value}");
        }
        let duplicated = format!(
            r#"{{"type":"webauthn.get","type":"webauthn.get","challenge":"{}","origin":"{ORIGIN}"}}"#,
            challenge.to_base64url()
        );
        assert_eq!(
            verify(
                duplicated.as_bytes(),
                Ceremony::Authentication,
                &challenge,
                &[ORIGIN.to_owned()]
            ),
            Err(WebauthnError::Malformed("clientDataJSON"))
        );
    }
}
