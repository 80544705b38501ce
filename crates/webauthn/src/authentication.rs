//! The authentication ceremony, WebAuthn §7.2 "Verifying an Authentication Assertion".

use sha2::{Digest, Sha256};

use crate::authenticator_data::AuthenticatorData;
use crate::client_data::{self, Ceremony};
use crate::limits::{
    AUTHENTICATOR_DATA_BYTES_MAX, CLIENT_DATA_BYTES_MAX, CREDENTIAL_ID_BYTES_MAX,
    SIGNATURE_BYTES_MAX,
};
use crate::public_key::CredentialPublicKey;
use crate::{
    AuthenticationResponse, Challenge, RelyingParty, UserHandle, WebauthnError, base64url,
};

/// What the caller stored from a [`crate::RegisteredCredential`], and keeps up to date
/// after each sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredential {
    pub id: Vec<u8>,
    pub public_key_cose: Vec<u8>,
    /// The last counter accepted: [`Authenticated::new_sign_count`] replaces it.
    pub sign_count: u32,
    pub backup_eligible: bool,
    /// The handle of the account the credential was registered for.
    pub user_handle: UserHandle,
}

/// A verified sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// Store this as the credential's [`StoredCredential::sign_count`], so a replayed or
    /// cloned assertion is refused next time.
    pub new_sign_count: u32,
    pub user_verified: bool,
    /// Whether the passkey is synced now; it may change from one sign-in to the next.
    pub backed_up: bool,
    /// The handle the authenticator returned, already checked to be the stored one.
    pub user_handle: Option<UserHandle>,
}

impl RelyingParty {
    /// Verifies the browser's answer to [`RelyingParty::request_options`] (§7.2) against
    /// the credential it names.
    ///
    /// The caller looks `stored` up by [`AuthenticationResponse::credential_id`] (and, if
    /// the options named credentials, checks the id was among them), takes
    /// `expected_challenge` out of its store so it cannot be used again, and on success
    /// saves [`Authenticated::new_sign_count`] before treating the user as signed in.
    pub fn finish_authentication(
        &self,
        response: &AuthenticationResponse,
        expected_challenge: &Challenge,
        stored: &StoredCredential,
        user_verification_required: bool,
    ) -> Result<Authenticated, WebauthnError> {
        // The response is for this credential, and from its user.
        let raw_id = response.credential_id()?;
        let id = base64url::decode_bounded("id", &response.id, CREDENTIAL_ID_BYTES_MAX)?;
        if id != raw_id || raw_id != stored.id {
            return Err(WebauthnError::CredentialIdMismatch);
        }
        let user_handle = response.user_handle()?;
        if user_handle
            .as_ref()
            .is_some_and(|handle| *handle != stored.user_handle)
        {
            return Err(WebauthnError::UserHandleMismatch);
        }

        let assertion = &response.response;
        let client_data_json = base64url::decode_bounded(
            "clientDataJSON",
            &assertion.client_data_json,
            CLIENT_DATA_BYTES_MAX,
        )?;
        let auth_data_bytes = base64url::decode_bounded(
            "authenticatorData",
            &assertion.authenticator_data,
            AUTHENTICATOR_DATA_BYTES_MAX,
        )?;
        let signature =
            base64url::decode_bounded("signature", &assertion.signature, SIGNATURE_BYTES_MAX)?;

        // What the browser says: type, challenge, origin, not cross-origin.
        client_data::verify(
            &client_data_json,
            Ceremony::Authentication,
            expected_challenge,
            self.origins(),
        )?;

        // What the authenticator says: relying party, presence, verification, backup.
        let auth_data = AuthenticatorData::parse(&auth_data_bytes)?;
        if auth_data.attested_credential.is_some() {
            return Err(WebauthnError::Malformed(
                "an assertion carries attested credential data",
            ));
        }
        if &auth_data.rp_id_hash != self.rp_id_hash() {
            return Err(WebauthnError::RpIdMismatch);
        }
        auth_data.flags.verify(user_verification_required)?;
        if auth_data.flags.backup_eligible() != stored.backup_eligible {
            return Err(WebauthnError::BackupEligibilityChanged);
        }

        // The signature over authenticatorData ‖ SHA-256(clientDataJSON).
        let public_key = CredentialPublicKey::from_cose(&stored.public_key_cose).map_err(|_| {
            WebauthnError::StoredCredentialInvalid("its public key does not decode")
        })?;
        let mut signed = auth_data_bytes.clone();
        signed.extend_from_slice(&Sha256::digest(&client_data_json));
        public_key.verify(&signed, &signature)?;

        // The counter, after the signature so that only the authenticator can move it: when
        // either counter is in use, it must have gone up, or two authenticators hold the
        // same key (or this assertion was seen before).
        let received = auth_data.sign_count;
        if (received != 0 || stored.sign_count != 0) && received <= stored.sign_count {
            return Err(WebauthnError::CounterRegressed {
                stored: stored.sign_count,
                received,
            });
        }

        Ok(Authenticated {
            new_sign_count: received,
            user_verified: auth_data.flags.user_verified(),
            backed_up: auth_data.flags.backed_up(),
            user_handle,
        })
    }
}
