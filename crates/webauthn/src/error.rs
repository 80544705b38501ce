//! What can go wrong, with stable codes for the API.

/// Why a registration or authentication response was refused.
///
/// Each variant has a stable machine-readable [`code`](WebauthnError::code). Messages name
/// the part of the response at fault, never its content: no challenge, signature, key or
/// user handle appears in them, and no text chosen by the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebauthnError {
    /// A field is over its limit in [`crate::limits`] (bytes, or entries for a list); it
    /// was not decoded.
    #[error("{field} is over its limit of {limit}")]
    TooLarge { field: &'static str, limit: usize },
    /// A field cannot be decoded or does not have the shape the specification gives it.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    /// clientDataJSON's `type` is not the one of this ceremony (a `webauthn.get` response
    /// offered for registration, or the reverse).
    #[error("the client data type is not the one this ceremony expects")]
    CeremonyTypeMismatch,
    /// The response answers another challenge than the one issued for this ceremony.
    #[error("the challenge does not match the one issued for this ceremony")]
    ChallengeMismatch,
    /// The ceremony ran on an origin that is not one of the relying party's.
    #[error("the origin is not one of the relying party's origins")]
    OriginMismatch,
    /// The ceremony ran in a frame embedded in another origin.
    #[error("the ceremony ran in a cross-origin frame")]
    CrossOrigin,
    /// The authenticator data was made for another relying party id.
    #[error("the authenticator data is for another relying party id")]
    RpIdMismatch,
    /// The authenticator did not report that a person was present.
    #[error("the authenticator did not report user presence")]
    UserPresenceMissing,
    /// User verification (PIN, biometrics) is required and was not performed.
    #[error("the authenticator did not report user verification, which is required")]
    UserVerificationMissing,
    /// The backup-state flag is set on a credential that is not backup eligible.
    #[error("the authenticator reports a backed-up credential that is not backup eligible")]
    BackupStateInvalid,
    /// The backup-eligible flag differs from the one recorded at registration; it is fixed
    /// for the life of a credential.
    #[error("the credential's backup eligibility differs from the registered one")]
    BackupEligibilityChanged,
    /// An attestation format other than "none". Haven asks for no attestation and does
    /// not rely on it, so it verifies none.
    #[error("attestation formats other than \"none\" are not accepted")]
    UnsupportedAttestationFormat,
    /// The credential's COSE algorithm is not one Haven offers.
    #[error("COSE algorithm {cose_alg} is not supported")]
    UnsupportedAlgorithm { cose_alg: i64 },
    /// The credential public key is malformed or too weak for its algorithm.
    #[error("invalid credential public key: {0}")]
    InvalidPublicKey(&'static str),
    /// The credential id in the response differs from its other copies or from the
    /// stored credential.
    #[error("the credential id does not match")]
    CredentialIdMismatch,
    /// The user handle returned by the authenticator is not the credential's user.
    #[error("the user handle does not belong to the credential's user")]
    UserHandleMismatch,
    /// The assertion signature does not verify with the stored public key.
    #[error("the signature does not verify")]
    BadSignature,
    /// The signature counter did not increase: the authenticator may have been cloned,
    /// or the response replayed.
    #[error("the signature counter did not increase (stored {stored}, received {received})")]
    CounterRegressed { stored: u32, received: u32 },
    /// The stored credential given by the caller cannot be used (its key does not decode).
    /// This is the server's data, not the client's input.
    #[error("the stored credential is unusable: {0}")]
    StoredCredentialInvalid(&'static str),
}

impl WebauthnError {
    /// A stable, machine-readable code for API responses and audit entries.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "input_too_large",
            Self::Malformed(_) => "malformed",
            Self::CeremonyTypeMismatch => "client_data_type_mismatch",
            Self::ChallengeMismatch => "challenge_mismatch",
            Self::OriginMismatch => "origin_mismatch",
            Self::CrossOrigin => "cross_origin",
            Self::RpIdMismatch => "rp_id_mismatch",
            Self::UserPresenceMissing => "user_presence_missing",
            Self::UserVerificationMissing => "user_verification_missing",
            Self::BackupStateInvalid => "backup_state_invalid",
            Self::BackupEligibilityChanged => "backup_eligibility_changed",
            Self::UnsupportedAttestationFormat => "unsupported_attestation_format",
            Self::UnsupportedAlgorithm { .. } => "unsupported_algorithm",
            Self::InvalidPublicKey(_) => "invalid_public_key",
            Self::CredentialIdMismatch => "credential_id_mismatch",
            Self::UserHandleMismatch => "user_handle_mismatch",
            Self::BadSignature => "bad_signature",
            Self::CounterRegressed { .. } => "counter_regressed",
            Self::StoredCredentialInvalid(_) => "stored_credential_invalid",
        }
    }
}

/// Why a [`crate::RelyingParty`] could not be configured. Raised at start-up, from
/// configuration the operator wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid relying party id: {0}")]
    RpId(&'static str),
    #[error("invalid relying party name: {0}")]
    Name(&'static str),
    #[error("invalid origin {origin:?}: {reason}")]
    Origin {
        origin: String,
        reason: &'static str,
    },
    #[error("invalid origins: {0}")]
    Origins(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn every_variant() -> Vec<WebauthnError> {
        vec![
            WebauthnError::TooLarge {
                field: "x",
                limit: 1,
            },
            WebauthnError::Malformed("x"),
            WebauthnError::CeremonyTypeMismatch,
            WebauthnError::ChallengeMismatch,
            WebauthnError::OriginMismatch,
            WebauthnError::CrossOrigin,
            WebauthnError::RpIdMismatch,
            WebauthnError::UserPresenceMissing,
            WebauthnError::UserVerificationMissing,
            WebauthnError::BackupStateInvalid,
            WebauthnError::BackupEligibilityChanged,
            WebauthnError::UnsupportedAttestationFormat,
            WebauthnError::UnsupportedAlgorithm { cose_alg: -35 },
            WebauthnError::InvalidPublicKey("x"),
            WebauthnError::CredentialIdMismatch,
            WebauthnError::UserHandleMismatch,
            WebauthnError::BadSignature,
            WebauthnError::CounterRegressed {
                stored: 2,
                received: 1,
            },
            WebauthnError::StoredCredentialInvalid("x"),
        ]
    }

    #[test]
    fn every_error_has_its_own_snake_case_code() {
        let variants = every_variant();
        let codes: HashSet<&str> = variants.iter().map(WebauthnError::code).collect();
        assert_eq!(codes.len(), variants.len(), "two variants share a code");
        for code in codes {
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code} is not snake_case"
            );
        }
    }

    #[test]
    fn codes_api_clients_rely_on_are_stable() {
        assert_eq!(
            WebauthnError::ChallengeMismatch.code(),
            "challenge_mismatch"
        );
        assert_eq!(WebauthnError::OriginMismatch.code(), "origin_mismatch");
        assert_eq!(WebauthnError::BadSignature.code(), "bad_signature");
        assert_eq!(
            WebauthnError::CounterRegressed {
                stored: 1,
                received: 1
            }
            .code(),
            "counter_regressed"
        );
        assert_eq!(
            WebauthnError::UserVerificationMissing.code(),
            "user_verification_missing"
        );
        assert_eq!(
            WebauthnError::UnsupportedAlgorithm { cose_alg: -35 }.code(),
            "unsupported_algorithm"
        );
        assert_eq!(WebauthnError::Malformed("x").code(), "malformed");
    }
}
