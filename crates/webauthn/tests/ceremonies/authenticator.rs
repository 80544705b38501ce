//! A software authenticator and browser: ring key pairs, authenticator data, COSE keys
//! (coset), attestation objects (ciborium) and clientDataJSON, with every part public so
//! a test can bend it before the response is assembled.
//!
//! `fixtures/rs256-test-key.pk8` is a 2048-bit RSA key made once for these tests (ring
//! cannot generate RSA keys), with Python's `cryptography`:
//! `rsa.generate_private_key(65537, 2048).private_bytes(DER, PKCS8, NoEncryption())`.
//! It protects nothing.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ciborium::Value;
use coset::{CborSerializable, CoseKeyBuilder, iana};
use haven_webauthn::options::PublicKeyCredentialType;
use haven_webauthn::{
    AssertionResponse, AttestationResponse, AuthenticationResponse, Challenge, CreationOptions,
    RegisteredCredential, RegistrationResponse, RelyingParty, RequestOptions, StoredCredential,
    UserHandle,
};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::json;
use sha2::{Digest, Sha256};

pub const RP_ID: &str = "localhost";
pub const ORIGIN: &str = "http://localhost:8080";

pub const UP: u8 = 0x01;
pub const UV: u8 = 0x04;
pub const BE: u8 = 0x08;
pub const BS: u8 = 0x10;
pub const AT: u8 = 0x40;
pub const ED: u8 = 0x80;

/// What a synced passkey reports: present, verified, backup eligible and backed up.
pub const PASSKEY_FLAGS: u8 = UP | UV | BE | BS;

const RSA_TEST_KEY_PKCS8: &[u8] = include_bytes!("fixtures/rs256-test-key.pk8");

pub fn relying_party() -> RelyingParty {
    RelyingParty::new(RP_ID, "Haven", &[ORIGIN]).unwrap()
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}

pub fn cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).unwrap();
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Es256,
    /// Ed25519 labelled -8, as authenticators do today.
    EdDsa,
    /// Ed25519 labelled -19.
    Ed25519,
    Rs256,
}

pub const ALL_ALGORITHMS: [Algorithm; 4] = [
    Algorithm::Es256,
    Algorithm::EdDsa,
    Algorithm::Ed25519,
    Algorithm::Rs256,
];

enum Pair {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

pub struct SoftKey {
    algorithm: Algorithm,
    pair: Pair,
}

impl SoftKey {
    pub fn generate(algorithm: Algorithm) -> Self {
        let rng = SystemRandom::new();
        let pair = match algorithm {
            Algorithm::Es256 => {
                let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
                Pair::Ecdsa(EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap())
            }
            Algorithm::EdDsa | Algorithm::Ed25519 => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
                Pair::Ed25519(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
            }
            Algorithm::Rs256 => Pair::Rsa(RsaKeyPair::from_pkcs8(RSA_TEST_KEY_PKCS8).unwrap()),
        };
        Self { algorithm, pair }
    }

    pub fn cose_alg(&self) -> i64 {
        match self.algorithm {
            Algorithm::Es256 => -7,
            Algorithm::EdDsa => -8,
            Algorithm::Ed25519 => -19,
            Algorithm::Rs256 => -257,
        }
    }

    /// The credential public key as an authenticator encodes it.
    pub fn cose(&self) -> Vec<u8> {
        let key = match &self.pair {
            Pair::Ecdsa(pair) => {
                let point = pair.public_key().as_ref();
                CoseKeyBuilder::new_ec2_pub_key(
                    iana::EllipticCurve::P_256,
                    point[1..33].to_vec(),
                    point[33..65].to_vec(),
                )
                .algorithm(iana::Algorithm::ES256)
            }
            Pair::Ed25519(pair) => CoseKeyBuilder::new_okp_key()
                .param(
                    iana::OkpKeyParameter::Crv as i64,
                    Value::from(iana::EllipticCurve::Ed25519 as i64),
                )
                .param(
                    iana::OkpKeyParameter::X as i64,
                    Value::Bytes(pair.public_key().as_ref().to_vec()),
                )
                .algorithm(if self.algorithm == Algorithm::EdDsa {
                    iana::Algorithm::EdDSA
                } else {
                    iana::Algorithm::Ed25519
                }),
            Pair::Rsa(pair) => {
                let public = signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
                CoseKeyBuilder::new()
                    .key_type(iana::KeyType::RSA)
                    .param(iana::RsaKeyParameter::N as i64, Value::Bytes(public.n))
                    .param(iana::RsaKeyParameter::E as i64, Value::Bytes(public.e))
                    .algorithm(iana::Algorithm::RS256)
            }
        };
        key.build().to_vec().unwrap()
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Ecdsa(pair) => pair.sign(&rng, message).unwrap().as_ref().to_vec(),
            Pair::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
            Pair::Rsa(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .unwrap();
                signature
            }
        }
    }
}

/// One passkey held by the software authenticator.
pub struct SoftPasskey {
    pub key: SoftKey,
    pub credential_id: Vec<u8>,
    pub user_handle: UserHandle,
    pub sign_count: u32,
}

impl SoftPasskey {
    pub fn new(algorithm: Algorithm) -> Self {
        Self {
            key: SoftKey::generate(algorithm),
            credential_id: Challenge::generate().as_bytes()[..20].to_vec(),
            user_handle: UserHandle::generate(),
            sign_count: 0,
        }
    }

    /// `navigator.credentials.create()` as the browser would answer `options`, before
    /// assembly.
    pub fn create(&self, options: &CreationOptions) -> RegistrationParts {
        RegistrationParts {
            client_data: json!({
                "type": "webauthn.create",
                "challenge": options.challenge,
                "origin": ORIGIN,
                "crossOrigin": false,
            }),
            rp_id: options.rp.id.clone(),
            flags: PASSKEY_FLAGS,
            sign_count: self.sign_count,
            aaguid: [0; 16],
            credential_id: self.credential_id.clone(),
            cose_key: self.key.cose(),
            auth_data_tail: Vec::new(),
            fmt: "none".to_owned(),
            att_stmt: Vec::new(),
            attestation_tail: Vec::new(),
            id: self.credential_id.clone(),
            raw_id: self.credential_id.clone(),
            transports: vec!["hybrid".to_owned(), "internal".to_owned()],
        }
    }

    /// `navigator.credentials.get()` as the browser would answer `options`: the counter
    /// moves on by one, as a hardware authenticator's does.
    pub fn get(&mut self, options: &RequestOptions) -> AssertionParts {
        self.sign_count += 1;
        AssertionParts {
            client_data: json!({
                "type": "webauthn.get",
                "challenge": options.challenge,
                "origin": ORIGIN,
                "crossOrigin": false,
            }),
            rp_id: options.rp_id.clone(),
            flags: PASSKEY_FLAGS,
            sign_count: self.sign_count,
            auth_data_tail: Vec::new(),
            id: self.credential_id.clone(),
            raw_id: self.credential_id.clone(),
            user_handle: Some(self.user_handle.as_bytes().to_vec()),
        }
    }
}

pub struct RegistrationParts {
    pub client_data: serde_json::Value,
    /// Hashed into the authenticator data.
    pub rp_id: String,
    pub flags: u8,
    pub sign_count: u32,
    pub aaguid: [u8; 16],
    pub credential_id: Vec<u8>,
    pub cose_key: Vec<u8>,
    /// Bytes after the COSE key: extension outputs, or junk.
    pub auth_data_tail: Vec<u8>,
    pub fmt: String,
    pub att_stmt: Vec<(Value, Value)>,
    /// Bytes after the attestation object's CBOR.
    pub attestation_tail: Vec<u8>,
    pub id: Vec<u8>,
    pub raw_id: Vec<u8>,
    pub transports: Vec<String>,
}

impl RegistrationParts {
    pub fn client_data_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.client_data).unwrap()
    }

    pub fn auth_data(&self) -> Vec<u8> {
        let mut bytes = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        bytes.push(self.flags | AT);
        bytes.extend(self.sign_count.to_be_bytes());
        bytes.extend(self.aaguid);
        bytes.extend(
            u16::try_from(self.credential_id.len())
                .unwrap()
                .to_be_bytes(),
        );
        bytes.extend(&self.credential_id);
        bytes.extend(&self.cose_key);
        bytes.extend(&self.auth_data_tail);
        bytes
    }

    pub fn attestation_object(&self) -> Vec<u8> {
        let mut bytes = cbor(&Value::Map(vec![
            (Value::from("fmt"), Value::from(self.fmt.as_str())),
            (Value::from("attStmt"), Value::Map(self.att_stmt.clone())),
            (Value::from("authData"), Value::Bytes(self.auth_data())),
        ]));
        bytes.extend(&self.attestation_tail);
        bytes
    }

    /// What `credential.toJSON()` gives, with the optional members Chromium includes.
    pub fn response(&self) -> RegistrationResponse {
        RegistrationResponse {
            id: b64(&self.id),
            raw_id: b64(&self.raw_id),
            credential_type: PublicKeyCredentialType::PublicKey,
            response: AttestationResponse {
                client_data_json: b64(&self.client_data_json()),
                attestation_object: b64(&self.attestation_object()),
                authenticator_data: Some(b64(&self.auth_data())),
                transports: self.transports.clone(),
                public_key: None,
                public_key_algorithm: None,
            },
            authenticator_attachment: Some("platform".to_owned()),
            client_extension_results: serde_json::Map::new(),
        }
    }
}

pub struct AssertionParts {
    pub client_data: serde_json::Value,
    pub rp_id: String,
    pub flags: u8,
    pub sign_count: u32,
    pub auth_data_tail: Vec<u8>,
    pub id: Vec<u8>,
    pub raw_id: Vec<u8>,
    pub user_handle: Option<Vec<u8>>,
}

impl AssertionParts {
    pub fn client_data_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.client_data).unwrap()
    }

    pub fn auth_data(&self) -> Vec<u8> {
        let mut bytes = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        bytes.push(self.flags);
        bytes.extend(self.sign_count.to_be_bytes());
        bytes.extend(&self.auth_data_tail);
        bytes
    }

    /// Signs authenticatorData ‖ SHA-256(clientDataJSON) with `key`, and assembles.
    pub fn response(&self, key: &SoftKey) -> AuthenticationResponse {
        let client_data_json = self.client_data_json();
        let auth_data = self.auth_data();
        let mut signed = auth_data.clone();
        signed.extend(Sha256::digest(&client_data_json));
        AuthenticationResponse {
            id: b64(&self.id),
            raw_id: b64(&self.raw_id),
            credential_type: PublicKeyCredentialType::PublicKey,
            response: AssertionResponse {
                client_data_json: b64(&client_data_json),
                authenticator_data: b64(&auth_data),
                signature: b64(&key.sign(&signed)),
                user_handle: self.user_handle.as_deref().map(b64),
                attestation_object: None,
            },
            authenticator_attachment: Some("platform".to_owned()),
            client_extension_results: serde_json::Map::new(),
        }
    }
}

/// Issues creation options for `passkey`'s user, as the server would.
pub fn creation_options(rp: &RelyingParty, passkey: &SoftPasskey) -> (Challenge, CreationOptions) {
    let challenge = Challenge::generate();
    let options = rp.creation_options(
        &challenge,
        &passkey.user_handle,
        "alice@example.org",
        "Alice",
        Vec::new(),
    );
    (challenge, options)
}

/// Registers `passkey` through the whole ceremony and returns what the server stores.
pub fn register(
    rp: &RelyingParty,
    passkey: &SoftPasskey,
) -> (RegisteredCredential, StoredCredential) {
    let (challenge, options) = creation_options(rp, passkey);
    let response = passkey.create(&options).response();
    let registered = rp.finish_registration(&response, &challenge, true).unwrap();
    let stored = registered.to_stored(passkey.user_handle.clone());
    (registered, stored)
}

/// Issues request options naming `stored`, as the server would.
pub fn request_options(
    rp: &RelyingParty,
    stored: &StoredCredential,
) -> (Challenge, RequestOptions) {
    let challenge = Challenge::generate();
    let options = rp.request_options(
        &challenge,
        vec![haven_webauthn::CredentialDescriptor::new(&stored.id, &[])],
    );
    (challenge, options)
}
