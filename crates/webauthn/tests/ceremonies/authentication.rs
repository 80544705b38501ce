//! §7.2: what a sign-in must prove, and each way it can fail.

use haven_webauthn::limits::{AUTHENTICATOR_DATA_BYTES_MAX, SIGNATURE_BYTES_MAX};
use haven_webauthn::{
    Authenticated, AuthenticationResponse, Challenge, StoredCredential, UserHandle, WebauthnError,
};
use serde_json::json;

use crate::authenticator::*;

/// A registered passkey and the server's record of it.
struct Account {
    passkey: SoftPasskey,
    stored: StoredCredential,
}

impl Account {
    fn new(algorithm: Algorithm) -> Self {
        let passkey = SoftPasskey::new(algorithm);
        let (_, stored) = register(&relying_party(), &passkey);
        Self { passkey, stored }
    }

    /// One sign-in whose parts `bend` has changed, requiring user verification.
    fn sign_in_bent(
        &mut self,
        bend: impl FnOnce(&mut AssertionParts),
    ) -> Result<Authenticated, WebauthnError> {
        self.sign_in_with(bend, |_| {}, true)
    }

    fn sign_in_with(
        &mut self,
        bend: impl FnOnce(&mut AssertionParts),
        bend_response: impl FnOnce(&mut AuthenticationResponse),
        user_verification_required: bool,
    ) -> Result<Authenticated, WebauthnError> {
        let rp = relying_party();
        let (challenge, options) = request_options(&rp, &self.stored);
        let mut parts = self.passkey.get(&options);
        bend(&mut parts);
        let mut response = parts.response(&self.passkey.key);
        bend_response(&mut response);
        let result = rp.finish_authentication(
            &response,
            &challenge,
            &self.stored,
            user_verification_required,
        );
        if let Ok(authenticated) = &result {
            self.stored.sign_count = authenticated.new_sign_count;
        }
        result
    }
}

#[test]
fn signs_in_with_every_algorithm_and_the_counter_moves_on() {
    for algorithm in ALL_ALGORITHMS {
        let mut account = Account::new(algorithm);
        for expected_count in 1..=2 {
            let authenticated = account.sign_in_bent(|_| {}).unwrap();
            assert_eq!(
                authenticated.new_sign_count, expected_count,
                "{algorithm:?}"
            );
            assert!(authenticated.user_verified && authenticated.backed_up);
            assert_eq!(
                authenticated.user_handle.as_ref(),
                Some(&account.passkey.user_handle)
            );
        }
    }
}

#[test]
fn authenticators_without_a_counter_always_send_zero() {
    let mut account = Account::new(Algorithm::Es256);
    for _ in 0..2 {
        let authenticated = account.sign_in_bent(|parts| parts.sign_count = 0).unwrap();
        assert_eq!(authenticated.new_sign_count, 0);
    }
}

#[test]
fn refuses_a_replayed_assertion() {
    let rp = relying_party();
    let mut account = Account::new(Algorithm::EdDsa);
    let (challenge, options) = request_options(&rp, &account.stored);
    let response = account.passkey.get(&options).response(&account.passkey.key);
    let first = rp
        .finish_authentication(&response, &challenge, &account.stored, true)
        .unwrap();
    account.stored.sign_count = first.new_sign_count;
    // Even if the caller failed to retire the challenge, the counter catches the replay.
    assert_eq!(
        rp.finish_authentication(&response, &challenge, &account.stored, true),
        Err(WebauthnError::CounterRegressed {
            stored: 1,
            received: 1
        })
    );
}

#[test]
fn refuses_a_counter_that_went_backwards_or_back_to_zero() {
    let mut account = Account::new(Algorithm::Es256);
    account.stored.sign_count = 10;
    let result = account.sign_in_bent(|parts| parts.sign_count = 9);
    assert_eq!(
        result,
        Err(WebauthnError::CounterRegressed {
            stored: 10,
            received: 9
        })
    );
    let result = account.sign_in_bent(|parts| parts.sign_count = 0);
    assert_eq!(result.unwrap_err().code(), "counter_regressed");
    assert_eq!(
        account
            .sign_in_bent(|parts| parts.sign_count = 11)
            .unwrap()
            .new_sign_count,
        11
    );
}

#[test]
fn refuses_a_response_to_another_challenge() {
    let mut account = Account::new(Algorithm::Es256);
    let result = account.sign_in_bent(|parts| {
        parts.client_data["challenge"] = json!(Challenge::generate().to_base64url());
    });
    assert_eq!(result, Err(WebauthnError::ChallengeMismatch));
}

#[test]
fn refuses_another_origin_including_another_port() {
    let mut account = Account::new(Algorithm::Es256);
    for origin in [
        "http://localhost:9090",
        "https://localhost:8080",
        "http://attacker.example:8080",
    ] {
        let result = account.sign_in_bent(|parts| parts.client_data["origin"] = json!(origin));
        assert_eq!(result, Err(WebauthnError::OriginMismatch), "{origin}");
    }
}

#[test]
fn refuses_a_registration_response_offered_as_a_sign_in() {
    let mut account = Account::new(Algorithm::Es256);
    let result = account.sign_in_bent(|parts| parts.client_data["type"] = json!("webauthn.create"));
    assert_eq!(result, Err(WebauthnError::CeremonyTypeMismatch));
    let result = account.sign_in_bent(|parts| parts.client_data["type"] = json!("payment.get"));
    assert_eq!(result, Err(WebauthnError::CeremonyTypeMismatch));
}

#[test]
fn refuses_a_ceremony_in_a_cross_origin_frame() {
    let mut account = Account::new(Algorithm::Es256);
    let result = account.sign_in_bent(|parts| parts.client_data["crossOrigin"] = json!(true));
    assert_eq!(result, Err(WebauthnError::CrossOrigin));
}

#[test]
fn refuses_authenticator_data_made_for_another_rp_id() {
    let mut account = Account::new(Algorithm::Es256);
    let result = account.sign_in_bent(|parts| parts.rp_id = "example.com".to_owned());
    assert_eq!(result, Err(WebauthnError::RpIdMismatch));
}

#[test]
fn refuses_a_sign_in_without_user_presence() {
    let mut account = Account::new(Algorithm::Es256);
    let result = account.sign_in_bent(|parts| parts.flags = UV | BE | BS);
    assert_eq!(result, Err(WebauthnError::UserPresenceMissing));
}

#[test]
fn user_verification_is_refused_missing_only_when_required() {
    let mut account = Account::new(Algorithm::Es256);
    let result = account.sign_in_bent(|parts| parts.flags = UP | BE | BS);
    assert_eq!(result, Err(WebauthnError::UserVerificationMissing));
    let authenticated = account
        .sign_in_with(|parts| parts.flags = UP | BE | BS, |_| {}, false)
        .unwrap();
    assert!(!authenticated.user_verified);
}

#[test]
fn refuses_a_tampered_signature() {
    let mut account = Account::new(Algorithm::Es256);
    let result = account.sign_in_with(
        |_| {},
        |response| {
            let mut signature = unb64(&response.response.signature);
            let last = signature.len() - 1;
            signature[last] ^= 0x01;
            response.response.signature = b64(&signature);
        },
        true,
    );
    assert_eq!(result, Err(WebauthnError::BadSignature));
}

#[test]
fn refuses_a_signature_by_another_key() {
    for algorithm in ALL_ALGORITHMS {
        let mut account = Account::new(algorithm);
        let other = SoftKey::generate(Algorithm::Es256);
        let result = account.sign_in_with(
            |_| {},
            |response| {
                // The same bytes, signed with the wrong key.
                let auth_data = unb64(&response.response.authenticator_data);
                let client_data = unb64(&response.response.client_data_json);
                let mut signed = auth_data;
                signed.extend(<sha2::Sha256 as sha2::Digest>::digest(&client_data));
                response.response.signature = b64(&other.sign(&signed));
            },
            true,
        );
        assert_eq!(result, Err(WebauthnError::BadSignature), "{algorithm:?}");
    }
}

#[test]
fn refuses_authenticator_data_or_client_data_changed_after_signing() {
    let mut account = Account::new(Algorithm::Rs256);
    let result = account.sign_in_with(
        |_| {},
        |response| {
            let mut auth_data = unb64(&response.response.authenticator_data);
            auth_data[36] = auth_data[36].wrapping_add(5); // the counter's low byte
            response.response.authenticator_data = b64(&auth_data);
        },
        true,
    );
    assert_eq!(result, Err(WebauthnError::BadSignature));

    let result = account.sign_in_with(
        |_| {},
        |response| {
            let mut client_data: serde_json::Value =
                serde_json::from_slice(&unb64(&response.response.client_data_json)).unwrap();
            client_data["note"] = json!("added after signing");
            response.response.client_data_json = b64(&serde_json::to_vec(&client_data).unwrap());
        },
        true,
    );
    assert_eq!(result, Err(WebauthnError::BadSignature));
}

#[test]
fn refuses_a_response_for_another_credential() {
    let mut account = Account::new(Algorithm::Es256);
    let result = account.sign_in_bent(|parts| {
        parts.id = b"another credential".to_vec();
        parts.raw_id = b"another credential".to_vec();
    });
    assert_eq!(result, Err(WebauthnError::CredentialIdMismatch));
    let result = account.sign_in_bent(|parts| parts.id = b"another credential".to_vec());
    assert_eq!(result, Err(WebauthnError::CredentialIdMismatch));
}

#[test]
fn refuses_a_user_handle_of_another_account_and_accepts_none() {
    let mut account = Account::new(Algorithm::Es256);
    let result = account.sign_in_bent(|parts| {
        parts.user_handle = Some(UserHandle::generate().as_bytes().to_vec());
    });
    assert_eq!(result, Err(WebauthnError::UserHandleMismatch));
    let authenticated = account
        .sign_in_bent(|parts| parts.user_handle = None)
        .unwrap();
    assert_eq!(authenticated.user_handle, None);
    let authenticated = account
        .sign_in_bent(|parts| parts.user_handle = Some(Vec::new()))
        .unwrap();
    assert_eq!(authenticated.user_handle, None);
}

#[test]
fn refuses_backup_flags_that_contradict_the_credential() {
    let mut account = Account::new(Algorithm::Es256);
    let result = account.sign_in_bent(|parts| parts.flags = UP | UV);
    assert_eq!(result, Err(WebauthnError::BackupEligibilityChanged));
    let result = account.sign_in_bent(|parts| parts.flags = UP | UV | BS);
    assert_eq!(result, Err(WebauthnError::BackupStateInvalid));
    // Backed up or not can change between sign-ins.
    let authenticated = account
        .sign_in_bent(|parts| parts.flags = UP | UV | BE)
        .unwrap();
    assert!(!authenticated.backed_up);
}

#[test]
fn refuses_trailing_bytes_and_attested_data_in_an_assertion() {
    let mut account = Account::new(Algorithm::Es256);
    let result = account.sign_in_bent(|parts| parts.auth_data_tail = vec![0]);
    assert!(
        matches!(result, Err(WebauthnError::Malformed(_))),
        "{result:?}"
    );
    let result = account.sign_in_bent(|parts| {
        parts.flags |= AT;
        let mut attested = vec![0; 16];
        attested.extend(1u16.to_be_bytes());
        attested.push(7);
        attested.extend(account_key_cose());
        parts.auth_data_tail = attested;
    });
    assert!(
        matches!(result, Err(WebauthnError::Malformed(_))),
        "{result:?}"
    );
}

fn account_key_cose() -> Vec<u8> {
    SoftKey::generate(Algorithm::EdDsa).cose()
}

#[test]
fn refuses_oversize_inputs_before_parsing() {
    let mut account = Account::new(Algorithm::Es256);
    let result = account.sign_in_with(
        |_| {},
        |response| response.response.signature = b64(&vec![0x30; SIGNATURE_BYTES_MAX + 1]),
        true,
    );
    assert!(
        matches!(
            result,
            Err(WebauthnError::TooLarge {
                field: "signature",
                ..
            })
        ),
        "{result:?}"
    );
    let result = account.sign_in_bent(|parts| {
        parts.auth_data_tail = vec![0; AUTHENTICATOR_DATA_BYTES_MAX];
    });
    assert!(
        matches!(
            result,
            Err(WebauthnError::TooLarge {
                field: "authenticatorData",
                ..
            })
        ),
        "{result:?}"
    );
    let result = account.sign_in_bent(|parts| {
        parts.client_data["padding"] = json!("x".repeat(5000));
    });
    assert!(
        matches!(
            result,
            Err(WebauthnError::TooLarge {
                field: "clientDataJSON",
                ..
            })
        ),
        "{result:?}"
    );
    let result = account.sign_in_bent(|parts| parts.user_handle = Some(vec![1; 65]));
    assert!(
        matches!(
            result,
            Err(WebauthnError::TooLarge {
                field: "userHandle",
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn a_corrupt_stored_key_is_the_servers_problem_not_a_bad_signature() {
    let mut account = Account::new(Algorithm::Es256);
    account.stored.public_key_cose.truncate(10);
    let result = account.sign_in_bent(|_| {});
    assert!(
        matches!(result, Err(WebauthnError::StoredCredentialInvalid(_))),
        "{result:?}"
    );
}

#[test]
fn a_key_registered_under_one_algorithm_does_not_verify_another() {
    // A stored Ed25519 key must not accept an ES256 signature of the same bytes.
    let mut account = Account::new(Algorithm::EdDsa);
    account.passkey.key = SoftKey::generate(Algorithm::Es256);
    assert_eq!(
        account.sign_in_bent(|_| {}),
        Err(WebauthnError::BadSignature)
    );
}

#[test]
fn browser_json_deserializes_and_unknown_members_are_refused() {
    let rp = relying_party();
    let mut account = Account::new(Algorithm::Es256);
    let (challenge, options) = request_options(&rp, &account.stored);
    let parts = account.passkey.get(&options);
    let mut json = serde_json::to_value(parts.response(&account.passkey.key)).unwrap();
    json["clientExtensionResults"] = json!({});
    json["authenticatorAttachment"] = json!("platform");
    let response: AuthenticationResponse = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(response.credential_id().unwrap(), account.stored.id);
    assert_eq!(
        response.user_handle().unwrap().as_ref(),
        Some(&account.stored.user_handle)
    );
    assert!(
        rp.finish_authentication(&response, &challenge, &account.stored, true)
            .is_ok()
    );

    json["response"]["unexpected"] = json!(true);
    assert!(serde_json::from_value::<AuthenticationResponse>(json).is_err());
}

#[test]
fn error_messages_carry_no_response_content() {
    let mut account = Account::new(Algorithm::Es256);
    let challenge = Challenge::generate().to_base64url();
    let planted = challenge.clone();
    let error = account
        .sign_in_bent(|parts| parts.client_data["challenge"] = json!(planted))
        .unwrap_err();
    assert!(!error.to_string().contains(&challenge));
    let error = account
        .sign_in_bent(|parts| parts.client_data["origin"] = json!("https://marker.example"))
        .unwrap_err();
    assert!(!error.to_string().contains("marker"));
}
