//! §7.1: what a registration must prove, and each way it can fail.

use ciborium::Value;
use coset::{CborSerializable, CoseKeyBuilder, iana};
use haven_webauthn::limits::{
    ATTESTATION_OBJECT_BYTES_MAX, CLIENT_DATA_BYTES_MAX, CREDENTIAL_ID_BYTES_MAX,
};
use haven_webauthn::{
    Challenge, CoseAlgorithm, RegisteredCredential, RegistrationResponse, WebauthnError,
};
use serde_json::json;

use crate::authenticator::*;

/// Runs a registration whose parts `bend` has changed, requiring user verification.
fn register_bent(
    algorithm: Algorithm,
    bend: impl FnOnce(&mut RegistrationParts),
) -> Result<RegisteredCredential, WebauthnError> {
    register_bent_response(algorithm, bend, |_| {}, true)
}

fn register_bent_response(
    algorithm: Algorithm,
    bend: impl FnOnce(&mut RegistrationParts),
    bend_response: impl FnOnce(&mut RegistrationResponse),
    user_verification_required: bool,
) -> Result<RegisteredCredential, WebauthnError> {
    let rp = relying_party();
    let passkey = SoftPasskey::new(algorithm);
    let (challenge, options) = creation_options(&rp, &passkey);
    let mut parts = passkey.create(&options);
    bend(&mut parts);
    let mut response = parts.response();
    bend_response(&mut response);
    rp.finish_registration(&response, &challenge, user_verification_required)
}

#[test]
fn registers_passkeys_of_every_offered_algorithm() {
    for algorithm in ALL_ALGORITHMS {
        let rp = relying_party();
        let passkey = SoftPasskey::new(algorithm);
        let (registered, _) = register(&rp, &passkey);
        assert_eq!(registered.id, passkey.credential_id, "{algorithm:?}");
        assert_eq!(registered.public_key_cose, passkey.key.cose());
        assert_eq!(registered.algorithm.cose_id(), passkey.key.cose_alg());
        assert_eq!(registered.sign_count, 0);
        assert!(registered.user_verified && registered.backup_eligible && registered.backed_up);
        assert_eq!(registered.aaguid, [0; 16]);
        assert_eq!(registered.transports, ["hybrid", "internal"]);
    }
}

#[test]
fn a_device_bound_credential_with_a_counter_registers() {
    let registered = register_bent(Algorithm::Es256, |parts| {
        parts.flags = UP | UV;
        parts.sign_count = 41;
        parts.aaguid = [7; 16];
    })
    .unwrap();
    assert!(!registered.backup_eligible && !registered.backed_up);
    assert_eq!(registered.sign_count, 41);
    assert_eq!(registered.aaguid, [7; 16]);
    assert_eq!(registered.algorithm, CoseAlgorithm::Es256);
}

#[test]
fn refuses_a_response_to_another_challenge() {
    let result = register_bent(Algorithm::Es256, |parts| {
        parts.client_data["challenge"] = json!(Challenge::generate().to_base64url());
    });
    assert_eq!(result, Err(WebauthnError::ChallengeMismatch));
}

#[test]
fn refuses_another_origin_including_another_port_or_scheme() {
    for origin in [
        "http://localhost:8081",
        "http://localhost",
        "https://localhost:8080",
        "http://evil.example:8080",
    ] {
        let result = register_bent(Algorithm::Es256, |parts| {
            parts.client_data["origin"] = json!(origin);
        });
        assert_eq!(result, Err(WebauthnError::OriginMismatch), "{origin}");
    }
}

#[test]
fn refuses_a_sign_in_response_offered_as_a_registration() {
    let result = register_bent(Algorithm::Es256, |parts| {
        parts.client_data["type"] = json!("webauthn.get");
    });
    assert_eq!(result, Err(WebauthnError::CeremonyTypeMismatch));
}

#[test]
fn refuses_a_ceremony_in_a_cross_origin_frame() {
    let result = register_bent(Algorithm::Es256, |parts| {
        parts.client_data["crossOrigin"] = json!(true);
        parts.client_data["topOrigin"] = json!("https://evil.example");
    });
    assert_eq!(result, Err(WebauthnError::CrossOrigin));
}

#[test]
fn refuses_authenticator_data_made_for_another_rp_id() {
    let result = register_bent(Algorithm::Es256, |parts| {
        parts.rp_id = "evil.example".to_owned();
    });
    assert_eq!(result, Err(WebauthnError::RpIdMismatch));
}

#[test]
fn refuses_a_registration_without_user_presence() {
    let result = register_bent(Algorithm::Es256, |parts| parts.flags = UV | BE | BS);
    assert_eq!(result, Err(WebauthnError::UserPresenceMissing));
}

#[test]
fn user_verification_is_refused_missing_only_when_required() {
    let no_uv = |parts: &mut RegistrationParts| parts.flags = UP | BE | BS;
    assert_eq!(
        register_bent_response(Algorithm::EdDsa, no_uv, |_| {}, true),
        Err(WebauthnError::UserVerificationMissing)
    );
    let registered = register_bent_response(Algorithm::EdDsa, no_uv, |_| {}, false).unwrap();
    assert!(!registered.user_verified);
}

#[test]
fn refuses_backed_up_without_backup_eligibility() {
    let result = register_bent(Algorithm::Es256, |parts| parts.flags = UP | UV | BS);
    assert_eq!(result, Err(WebauthnError::BackupStateInvalid));
}

#[test]
fn refuses_algorithms_that_were_not_offered() {
    let es384 =
        CoseKeyBuilder::new_ec2_pub_key(iana::EllipticCurve::P_384, vec![1; 48], vec![2; 48])
            .algorithm(iana::Algorithm::ES384)
            .build()
            .to_vec()
            .unwrap();
    let result = register_bent(Algorithm::Es256, |parts| parts.cose_key = es384);
    assert_eq!(
        result,
        Err(WebauthnError::UnsupportedAlgorithm { cose_alg: -35 })
    );
}

#[test]
fn refuses_weak_or_inconsistent_keys() {
    let mut n = vec![0xc5; 128];
    n[127] = 1;
    let rsa_1024 = CoseKeyBuilder::new()
        .key_type(iana::KeyType::RSA)
        .param(iana::RsaKeyParameter::N as i64, Value::Bytes(n))
        .param(iana::RsaKeyParameter::E as i64, Value::Bytes(vec![1, 0, 1]))
        .algorithm(iana::Algorithm::RS256)
        .build()
        .to_vec()
        .unwrap();
    let result = register_bent(Algorithm::Rs256, |parts| parts.cose_key = rsa_1024);
    assert!(
        matches!(result, Err(WebauthnError::InvalidPublicKey(_))),
        "{result:?}"
    );

    let okp_labelled_es256 = CoseKeyBuilder::new_okp_key()
        .param(iana::OkpKeyParameter::Crv as i64, Value::from(6))
        .param(iana::OkpKeyParameter::X as i64, Value::Bytes(vec![1; 32]))
        .algorithm(iana::Algorithm::ES256)
        .build()
        .to_vec()
        .unwrap();
    let result = register_bent(Algorithm::Es256, |parts| {
        parts.cose_key = okp_labelled_es256
    });
    assert!(
        matches!(result, Err(WebauthnError::InvalidPublicKey(_))),
        "{result:?}"
    );
}

#[test]
fn refuses_attestation_formats_other_than_none() {
    let result = register_bent(Algorithm::Es256, |parts| {
        parts.fmt = "packed".to_owned();
        parts.att_stmt = vec![
            (Value::from("alg"), Value::from(-7)),
            (Value::from("sig"), Value::Bytes(vec![0x30; 70])),
        ];
    });
    assert_eq!(result, Err(WebauthnError::UnsupportedAttestationFormat));
    assert_eq!(result.unwrap_err().code(), "unsupported_attestation_format");
}

#[test]
fn refuses_a_none_attestation_with_a_statement() {
    let result = register_bent(Algorithm::Es256, |parts| {
        parts.att_stmt = vec![(Value::from("sig"), Value::Bytes(vec![1]))];
    });
    assert!(
        matches!(result, Err(WebauthnError::Malformed(_))),
        "{result:?}"
    );
}

#[test]
fn refuses_trailing_bytes_after_the_authenticator_data_or_the_attestation_object() {
    let result = register_bent(Algorithm::Es256, |parts| parts.auth_data_tail = vec![0]);
    assert!(
        matches!(result, Err(WebauthnError::Malformed(_))),
        "{result:?}"
    );
    let result = register_bent(Algorithm::Es256, |parts| parts.attestation_tail = vec![0]);
    assert!(
        matches!(result, Err(WebauthnError::Malformed(_))),
        "{result:?}"
    );
}

#[test]
fn extension_outputs_are_accepted_only_when_flagged() {
    let cred_protect = crate::authenticator::cbor(&Value::Map(vec![(
        Value::from("credProtect"),
        Value::from(2),
    )]));
    let flagged = cred_protect.clone();
    assert!(
        register_bent(Algorithm::Es256, |parts| {
            parts.flags |= ED;
            parts.auth_data_tail = flagged;
        })
        .is_ok()
    );
    let result = register_bent(Algorithm::Es256, |parts| {
        parts.auth_data_tail = cred_protect
    });
    assert!(
        matches!(result, Err(WebauthnError::Malformed(_))),
        "{result:?}"
    );
}

#[test]
fn refuses_oversize_inputs_before_parsing() {
    let result = register_bent(Algorithm::Es256, |parts| {
        parts.client_data["padding"] = json!("x".repeat(CLIENT_DATA_BYTES_MAX));
    });
    assert_eq!(
        result,
        Err(WebauthnError::TooLarge {
            field: "clientDataJSON",
            limit: CLIENT_DATA_BYTES_MAX
        })
    );

    let result = register_bent(Algorithm::Es256, |parts| {
        parts.attestation_tail = vec![0; ATTESTATION_OBJECT_BYTES_MAX];
    });
    assert!(
        matches!(
            result,
            Err(WebauthnError::TooLarge {
                field: "attestationObject",
                ..
            })
        ),
        "{result:?}"
    );

    let long_id = vec![9; CREDENTIAL_ID_BYTES_MAX + 1];
    let result = register_bent(Algorithm::Es256, |parts| {
        parts.id = long_id.clone();
        parts.raw_id = long_id.clone();
        parts.credential_id = long_id;
    });
    assert!(
        matches!(result, Err(WebauthnError::TooLarge { field: "rawId", .. })),
        "{result:?}"
    );

    // Inside the authenticator data, the id's length is checked before the id is read.
    let result = register_bent(Algorithm::Es256, |parts| {
        parts.credential_id = vec![9; CREDENTIAL_ID_BYTES_MAX + 1];
    });
    assert!(
        matches!(
            result,
            Err(WebauthnError::TooLarge {
                field: "credentialId",
                ..
            })
        ),
        "{result:?}"
    );

    let result = register_bent(Algorithm::Es256, |parts| {
        parts.transports = vec!["usb".to_owned(); 9];
    });
    assert!(
        matches!(
            result,
            Err(WebauthnError::TooLarge {
                field: "transports",
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn a_1023_byte_credential_id_is_accepted() {
    let id = vec![3; CREDENTIAL_ID_BYTES_MAX];
    let registered = register_bent(Algorithm::Es256, |parts| {
        parts.id = id.clone();
        parts.raw_id = id.clone();
        parts.credential_id = id.clone();
    })
    .unwrap();
    assert_eq!(registered.id, id);
}

#[test]
fn refuses_credential_ids_that_disagree() {
    let result = register_bent(Algorithm::Es256, |parts| parts.id = b"another".to_vec());
    assert_eq!(result, Err(WebauthnError::CredentialIdMismatch));
    let result = register_bent(Algorithm::Es256, |parts| {
        parts.id = b"another".to_vec();
        parts.raw_id = b"another".to_vec();
    });
    assert_eq!(result, Err(WebauthnError::CredentialIdMismatch));
}

#[test]
fn the_authenticator_data_copy_and_algorithm_hint_must_agree() {
    let result = register_bent_response(
        Algorithm::Es256,
        |_| {},
        |response| response.response.authenticator_data = Some(b64(&[0; 37])),
        true,
    );
    assert!(
        matches!(result, Err(WebauthnError::Malformed(_))),
        "{result:?}"
    );
    let result = register_bent_response(
        Algorithm::Es256,
        |_| {},
        |response| response.response.public_key_algorithm = Some(-257),
        true,
    );
    assert!(
        matches!(result, Err(WebauthnError::Malformed(_))),
        "{result:?}"
    );
    let result = register_bent_response(
        Algorithm::Es256,
        |_| {},
        |response| {
            response.response.authenticator_data = None;
            response.response.public_key_algorithm = Some(-7);
        },
        true,
    );
    assert!(result.is_ok(), "{result:?}");
}

#[test]
fn browser_json_with_every_optional_member_deserializes_and_verifies() {
    let rp = relying_party();
    let passkey = SoftPasskey::new(Algorithm::Es256);
    let (challenge, options) = creation_options(&rp, &passkey);
    let parts = passkey.create(&options);
    // The shape Chromium's toJSON() produces.
    let json = json!({
        "id": b64(&parts.id),
        "rawId": b64(&parts.raw_id),
        "type": "public-key",
        "authenticatorAttachment": "cross-platform",
        "clientExtensionResults": {"credProps": {"rk": true}},
        "response": {
            "clientDataJSON": b64(&parts.client_data_json()),
            "attestationObject": b64(&parts.attestation_object()),
            "authenticatorData": b64(&parts.auth_data()),
            "transports": ["hybrid", "internal"],
            "publicKey": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
            "publicKeyAlgorithm": -7,
        },
    });
    let response: RegistrationResponse = serde_json::from_value(json.clone()).unwrap();
    assert!(rp.finish_registration(&response, &challenge, true).is_ok());

    let mut unknown = json.clone();
    unknown["response"]["extra"] = json!(1);
    assert!(serde_json::from_value::<RegistrationResponse>(unknown).is_err());
    let mut unknown = json.clone();
    unknown["extra"] = json!(1);
    assert!(serde_json::from_value::<RegistrationResponse>(unknown).is_err());
    let mut wrong_type = json;
    wrong_type["type"] = json!("password");
    assert!(serde_json::from_value::<RegistrationResponse>(wrong_type).is_err());
}

#[test]
fn a_challenge_is_bound_to_its_own_ceremony() {
    // Two ceremonies in flight: each response verifies only against its own challenge.
    let rp = relying_party();
    let passkey = SoftPasskey::new(Algorithm::Es256);
    let (first, first_options) = creation_options(&rp, &passkey);
    let (second, _) = creation_options(&rp, &passkey);
    let response = passkey.create(&first_options).response();
    assert_eq!(
        rp.finish_registration(&response, &second, true),
        Err(WebauthnError::ChallengeMismatch)
    );
    assert!(rp.finish_registration(&response, &first, true).is_ok());
}
