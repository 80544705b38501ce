//! Property tests: whatever bytes arrive, the verifier answers with an error, never a
//! panic, and no change to a signed response gets through.

use haven_webauthn::{
    AuthenticationResponse, Challenge, RegistrationResponse, RelyingParty, StoredCredential,
};
use proptest::prelude::*;

use crate::authenticator::*;

struct SignedAssertion {
    rp: RelyingParty,
    challenge: Challenge,
    stored: StoredCredential,
    response: AuthenticationResponse,
}

/// One valid sign-in, made once: signing inside every case would only slow the search.
fn signed_assertion() -> SignedAssertion {
    let rp = relying_party();
    let mut passkey = SoftPasskey::new(Algorithm::Es256);
    let (_, stored) = register(&rp, &passkey);
    let (challenge, options) = request_options(&rp, &stored);
    let response = passkey.get(&options).response(&passkey.key);
    assert!(
        rp.finish_authentication(&response, &challenge, &stored, true)
            .is_ok()
    );
    SignedAssertion {
        rp,
        challenge,
        stored,
        response,
    }
}

fn valid_registration() -> (
    RelyingParty,
    Challenge,
    RegistrationResponse,
    RegistrationParts,
) {
    let rp = relying_party();
    let passkey = SoftPasskey::new(Algorithm::EdDsa);
    let (challenge, options) = creation_options(&rp, &passkey);
    let parts = passkey.create(&options);
    let response = parts.response();
    assert!(rp.finish_registration(&response, &challenge, true).is_ok());
    (rp, challenge, response, parts)
}

proptest! {
    #[test]
    fn random_authenticator_data_is_refused(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut case = signed_assertion();
        case.response.response.authenticator_data = b64(&bytes);
        prop_assert!(case.rp.finish_authentication(&case.response, &case.challenge, &case.stored, true).is_err());
    }

    #[test]
    fn any_change_to_signed_authenticator_data_is_refused(index in 0usize..37, flip in 1u8..=255) {
        let mut case = signed_assertion();
        let mut auth_data = unb64(&case.response.response.authenticator_data);
        auth_data[index] ^= flip;
        case.response.response.authenticator_data = b64(&auth_data);
        prop_assert!(case.rp.finish_authentication(&case.response, &case.challenge, &case.stored, true).is_err());
    }

    #[test]
    fn any_change_to_signed_client_data_is_refused(index in 0usize..1000, flip in 1u8..=255) {
        let mut case = signed_assertion();
        let mut client_data = unb64(&case.response.response.client_data_json);
        let index = index % client_data.len();
        client_data[index] ^= flip;
        case.response.response.client_data_json = b64(&client_data);
        prop_assert!(case.rp.finish_authentication(&case.response, &case.challenge, &case.stored, true).is_err());
    }

    #[test]
    fn random_attestation_objects_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let (rp, challenge, mut response, _) = valid_registration();
        response.response.attestation_object = b64(&bytes);
        response.response.authenticator_data = None;
        prop_assert!(rp.finish_registration(&response, &challenge, true).is_err());
    }

    #[test]
    fn random_cose_keys_in_valid_authenticator_data_are_refused(
        key in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let (rp, challenge, _, mut parts) = valid_registration();
        parts.cose_key = key;
        prop_assert!(rp.finish_registration(&parts.response(), &challenge, true).is_err());
    }

    #[test]
    fn every_truncation_of_the_attestation_object_is_refused(cut in 0usize..10_000) {
        let (rp, challenge, mut response, _) = valid_registration();
        let object = unb64(&response.response.attestation_object);
        let cut = cut % object.len();
        response.response.attestation_object = b64(&object[..cut]);
        response.response.authenticator_data = None;
        prop_assert!(rp.finish_registration(&response, &challenge, true).is_err());
    }
}
