//! What the server sends to start a ceremony: JSON that the browser's
//! `PublicKeyCredential.parseCreationOptionsFromJSON` and `parseRequestOptionsFromJSON`
//! accept (WebAuthn Level 3 §5.1.9, §5.1.10), binary members as base64url.

use serde::{Deserialize, Serialize};

use crate::base64url;

/// The one credential type WebAuthn defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublicKeyCredentialType {
    #[serde(rename = "public-key")]
    PublicKey,
}

/// Haven always asks for a discoverable credential, a passkey, so that sign-in needs no
/// user name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResidentKeyRequirement {
    Required,
}

/// Haven always asks for user verification (PIN or biometrics): a passkey replaces both
/// factors only if it verifies the user. Whether its absence is fatal is the `bool` given
/// to `finish_registration` and `finish_authentication`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserVerificationRequirement {
    Required,
}

/// Haven asks for no attestation; see [`crate::WebauthnError::UnsupportedAttestationFormat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttestationConveyance {
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelyingPartyEntity {
    pub id: String,
    pub name: String,
}

/// `id` is the base64url [`crate::UserHandle`]; `name` and `displayName` are shown by the
/// authenticator's account picker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserEntity {
    pub id: String,
    pub name: String,
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialParameters {
    #[serde(rename = "type")]
    pub credential_type: PublicKeyCredentialType,
    pub alg: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticatorSelection {
    pub resident_key: ResidentKeyRequirement,
    /// The Level 1 spelling of `residentKey: "required"`, for older browsers.
    pub require_resident_key: bool,
    pub user_verification: UserVerificationRequirement,
}

/// A credential the user already has: in `excludeCredentials` so an authenticator does
/// not register twice, in `allowCredentials` to name the ones that may sign in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CredentialDescriptor {
    #[serde(rename = "type")]
    pub credential_type: PublicKeyCredentialType,
    /// base64url credential id.
    pub id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transports: Vec<String>,
}

impl CredentialDescriptor {
    pub fn new(credential_id: &[u8], transports: &[String]) -> Self {
        Self {
            credential_type: PublicKeyCredentialType::PublicKey,
            id: base64url::encode(credential_id),
            transports: transports.to_vec(),
        }
    }
}

/// `PublicKeyCredentialCreationOptionsJSON`, made by
/// [`crate::RelyingParty::creation_options`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreationOptions {
    pub rp: RelyingPartyEntity,
    pub user: UserEntity,
    /// base64url [`crate::Challenge`].
    pub challenge: String,
    pub pub_key_cred_params: Vec<CredentialParameters>,
    /// Milliseconds.
    pub timeout: u32,
    pub attestation: AttestationConveyance,
    pub authenticator_selection: AuthenticatorSelection,
    pub exclude_credentials: Vec<CredentialDescriptor>,
}

/// `PublicKeyCredentialRequestOptionsJSON`, made by
/// [`crate::RelyingParty::request_options`]. An empty `allowCredentials` lets the user
/// pick any of their passkeys for this relying party (sign-in without a user name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestOptions {
    /// base64url [`crate::Challenge`].
    pub challenge: String,
    pub rp_id: String,
    pub allow_credentials: Vec<CredentialDescriptor>,
    pub user_verification: UserVerificationRequirement,
    /// Milliseconds.
    pub timeout: u32,
}
