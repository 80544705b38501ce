//! The registration ceremony, WebAuthn §7.1 "Registering a New Credential".

use crate::authenticator_data::AuthenticatorData;
use crate::client_data::{self, Ceremony};
use crate::limits::{
    ATTESTATION_OBJECT_BYTES_MAX, AUTHENTICATOR_DATA_BYTES_MAX, CLIENT_DATA_BYTES_MAX,
    CREDENTIAL_ID_BYTES_MAX, TRANSPORT_BYTES_MAX, TRANSPORTS_MAX,
};
use crate::public_key::CredentialPublicKey;
use crate::{
    Challenge, CoseAlgorithm, RegistrationResponse, RelyingParty, StoredCredential, UserHandle,
    WebauthnError, attestation, base64url,
};

/// A verified new credential, for the caller to store with the account it was registered
/// for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredCredential {
    pub id: Vec<u8>,
    /// The COSE key exactly as the authenticator encoded it; pass it back unchanged in
    /// [`StoredCredential::public_key_cose`].
    pub public_key_cose: Vec<u8>,
    pub algorithm: CoseAlgorithm,
    pub sign_count: u32,
    /// Whether the credential can be synced to other devices (a synced passkey). Fixed for
    /// the credential's life.
    pub backup_eligible: bool,
    /// Whether it is synced now.
    pub backed_up: bool,
    pub user_verified: bool,
    /// The authenticator's model (zero when the browser hides it, as it may under
    /// attestation "none"). Unattested: a hint for display, not proof of anything.
    pub aaguid: [u8; 16],
    /// How the browser can reach the authenticator (`internal`, `hybrid`, `usb`, …), to
    /// send back in `allowCredentials` and `excludeCredentials`.
    pub transports: Vec<String>,
}

impl RegisteredCredential {
    /// What [`RelyingParty::finish_authentication`] needs, once stored.
    pub fn to_stored(&self, user_handle: UserHandle) -> StoredCredential {
        StoredCredential {
            id: self.id.clone(),
            public_key_cose: self.public_key_cose.clone(),
            sign_count: self.sign_count,
            backup_eligible: self.backup_eligible,
            user_handle,
        }
    }
}

impl RelyingParty {
    /// Verifies the browser's answer to [`RelyingParty::creation_options`] (§7.1, with
    /// attestation "none").
    ///
    /// `expected_challenge` is the one issued with those options; the caller must have
    /// taken it out of its store so it cannot be used again. The caller must also check
    /// that the credential id is not registered yet, to any account, before storing it.
    pub fn finish_registration(
        &self,
        response: &RegistrationResponse,
        expected_challenge: &Challenge,
        user_verification_required: bool,
    ) -> Result<RegisteredCredential, WebauthnError> {
        let raw_id = base64url::decode_bounded("rawId", &response.raw_id, CREDENTIAL_ID_BYTES_MAX)?;
        let id = base64url::decode_bounded("id", &response.id, CREDENTIAL_ID_BYTES_MAX)?;
        if id != raw_id {
            return Err(WebauthnError::CredentialIdMismatch);
        }
        let client_data_json = base64url::decode_bounded(
            "clientDataJSON",
            &response.response.client_data_json,
            CLIENT_DATA_BYTES_MAX,
        )?;
        let attestation_object = base64url::decode_bounded(
            "attestationObject",
            &response.response.attestation_object,
            ATTESTATION_OBJECT_BYTES_MAX,
        )?;
        let transports = checked_transports(&response.response.transports)?;

        // What the browser says: type, challenge, origin, not cross-origin.
        client_data::verify(
            &client_data_json,
            Ceremony::Registration,
            expected_challenge,
            self.origins(),
        )?;

        // The attestation object, in the one format Haven accepts.
        let auth_data_bytes = attestation::none_attestation_auth_data(&attestation_object)?;
        if let Some(copy) = &response.response.authenticator_data {
            let copy =
                base64url::decode_bounded("authenticatorData", copy, AUTHENTICATOR_DATA_BYTES_MAX)?;
            if copy != auth_data_bytes {
                return Err(WebauthnError::Malformed(
                    "authenticatorData differs from the one in attestationObject",
                ));
            }
        }
        let auth_data = AuthenticatorData::parse(&auth_data_bytes)?;

        // What the authenticator says: relying party, presence, verification, backup.
        if &auth_data.rp_id_hash != self.rp_id_hash() {
            return Err(WebauthnError::RpIdMismatch);
        }
        auth_data.flags.verify(user_verification_required)?;
        let credential = auth_data
            .attested_credential
            .ok_or(WebauthnError::Malformed(
                "authenticator data has no attested credential data",
            ))?;
        // Every algorithm a valid key can have is one of those offered
        // (Ed25519, -19, being EdDSA's other name).
        let public_key = CredentialPublicKey::from_cose(credential.public_key_cose)?;
        if response
            .response
            .public_key_algorithm
            .is_some_and(|alg| alg != public_key.algorithm().cose_id())
        {
            return Err(WebauthnError::Malformed(
                "publicKeyAlgorithm differs from the credential key's",
            ));
        }
        // The parser bounded the id's length; the response must name the credential made.
        if credential.credential_id != raw_id {
            return Err(WebauthnError::CredentialIdMismatch);
        }

        Ok(RegisteredCredential {
            id: raw_id,
            public_key_cose: credential.public_key_cose.to_vec(),
            algorithm: public_key.algorithm(),
            sign_count: auth_data.sign_count,
            backup_eligible: auth_data.flags.backup_eligible(),
            backed_up: auth_data.flags.backed_up(),
            user_verified: auth_data.flags.user_verified(),
            aaguid: credential.aaguid,
            transports,
        })
    }
}

/// Transport names are hints stored and sent back later; unknown names are kept, as the
/// specification asks, but only short lower-case tokens.
fn checked_transports(transports: &[String]) -> Result<Vec<String>, WebauthnError> {
    if transports.len() > TRANSPORTS_MAX {
        return Err(WebauthnError::TooLarge {
            field: "transports",
            limit: TRANSPORTS_MAX,
        });
    }
    for transport in transports {
        let token = !transport.is_empty()
            && transport
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if transport.len() > TRANSPORT_BYTES_MAX {
            return Err(WebauthnError::TooLarge {
                field: "transport",
                limit: TRANSPORT_BYTES_MAX,
            });
        }
        if !token {
            return Err(WebauthnError::Malformed(
                "a transport is not a lower-case token",
            ));
        }
    }
    Ok(transports.to_vec())
}
