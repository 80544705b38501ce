//! What the browser sends back: the JSON of `credential.toJSON()`
//! (`RegistrationResponseJSON` and `AuthenticationResponseJSON`, WebAuthn Level 3
//! §5.1.8), binary members as base64url text.
//!
//! Members are kept as text here and decoded by the ceremonies, each against its limit in
//! [`crate::limits`], so an oversize member is refused before it is decoded. The whole body
//! is bounded by the HTTP layer. Unknown members are refused: the shapes are fixed by the
//! specification, and its optional members are listed.

use serde::{Deserialize, Serialize};

use crate::limits::{CREDENTIAL_ID_BYTES_MAX, USER_HANDLE_BYTES_MAX};
use crate::options::PublicKeyCredentialType;
use crate::{UserHandle, WebauthnError, base64url};

/// The result of `navigator.credentials.create()`, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistrationResponse {
    /// base64url credential id (the same bytes as `raw_id`).
    pub id: String,
    pub raw_id: String,
    #[serde(rename = "type")]
    pub credential_type: PublicKeyCredentialType,
    pub response: AttestationResponse,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticator_attachment: Option<String>,
    /// Haven requests no extensions; whatever is here is ignored.
    #[serde(default)]
    pub client_extension_results: serde_json::Map<String, serde_json::Value>,
}

/// `AuthenticatorAttestationResponseJSON`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttestationResponse {
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: String,
    pub attestation_object: String,
    /// A copy of the authenticator data inside `attestation_object`; if present it must
    /// be identical.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticator_data: Option<String>,
    #[serde(default)]
    pub transports: Vec<String>,
    /// The key as SubjectPublicKeyInfo, for relying parties that cannot read COSE. Ignored:
    /// the COSE key in the authenticator data is the one verified and stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// If present it must name the COSE key's algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_algorithm: Option<i64>,
}

/// The result of `navigator.credentials.get()`, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthenticationResponse {
    /// base64url credential id (the same bytes as `raw_id`).
    pub id: String,
    pub raw_id: String,
    #[serde(rename = "type")]
    pub credential_type: PublicKeyCredentialType,
    pub response: AssertionResponse,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticator_attachment: Option<String>,
    /// Haven requests no extensions; whatever is here is ignored.
    #[serde(default)]
    pub client_extension_results: serde_json::Map<String, serde_json::Value>,
}

/// `AuthenticatorAssertionResponseJSON`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssertionResponse {
    #[serde(rename = "clientDataJSON")]
    pub client_data_json: String,
    pub authenticator_data: String,
    pub signature: String,
    /// The account the passkey belongs to; passkeys always return it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_handle: Option<String>,
    /// Only for attestation during authentication, which Haven does not request; ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_object: Option<String>,
}

impl AuthenticationResponse {
    /// The credential id, to look up the stored credential before
    /// [`crate::RelyingParty::finish_authentication`]. Nothing is verified yet.
    pub fn credential_id(&self) -> Result<Vec<u8>, WebauthnError> {
        base64url::decode_bounded("rawId", &self.raw_id, CREDENTIAL_ID_BYTES_MAX)
    }

    /// The user handle the authenticator returned, if any (an empty one counts as none).
    /// Nothing is verified yet, and the signature does not cover it.
    pub fn user_handle(&self) -> Result<Option<UserHandle>, WebauthnError> {
        let Some(text) = self.response.user_handle.as_deref() else {
            return Ok(None);
        };
        let bytes = base64url::decode_bounded("userHandle", text, USER_HANDLE_BYTES_MAX)?;
        if bytes.is_empty() {
            return Ok(None);
        }
        UserHandle::from_bytes(&bytes).map(Some)
    }
}
