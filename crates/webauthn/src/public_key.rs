//! Credential public keys: COSE keys (RFC 9052/9053, RFC 8230) validated for the three
//! algorithms Haven offers, and signature verification with `ring`.

use ciborium::Value;
use coset::{AsCborValue, CoseKey, KeyType, Label, iana};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

use crate::WebauthnError;
use crate::cbor;
use crate::limits::{RSA_MODULUS_BITS_MAX, RSA_MODULUS_BITS_MIN};

/// A signature algorithm Haven accepts for passkeys, by its COSE identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoseAlgorithm {
    /// ECDSA with P-256 and SHA-256 (-7): what most passkey providers create.
    Es256,
    /// EdDSA (-8), which in WebAuthn means Ed25519.
    EdDsa,
    /// Ed25519 (-19), the fully specified name of the same algorithm (RFC 9864). Not
    /// offered, but accepted, since it is the key -8 describes.
    Ed25519,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (-257), for Windows Hello and older security keys.
    Rs256,
}

impl CoseAlgorithm {
    /// The algorithms the creation options offer, most preferred first.
    pub const OFFERED: [Self; 3] = [Self::EdDsa, Self::Es256, Self::Rs256];

    pub const fn cose_id(self) -> i64 {
        match self {
            Self::Es256 => -7,
            Self::EdDsa => -8,
            Self::Ed25519 => -19,
            Self::Rs256 => -257,
        }
    }

    pub const fn from_cose_id(id: i64) -> Option<Self> {
        match id {
            -7 => Some(Self::Es256),
            -8 => Some(Self::EdDsa),
            -19 => Some(Self::Ed25519),
            -257 => Some(Self::Rs256),
            _ => None,
        }
    }
}

/// A validated credential public key, ready to verify assertions.
#[derive(Debug, Clone)]
pub(crate) enum CredentialPublicKey {
    Es256 {
        /// SEC1 uncompressed: 0x04 ‖ x ‖ y, the form `ring` takes.
        point: [u8; 65],
    },
    Ed25519 {
        algorithm: CoseAlgorithm,
        x: [u8; 32],
    },
    Rs256 {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

fn invalid(reason: &'static str) -> WebauthnError {
    WebauthnError::InvalidPublicKey(reason)
}

impl CredentialPublicKey {
    /// Decodes and validates a COSE key: the algorithm first (so an unsupported one is
    /// named as such), then the key type, curve and sizes that algorithm requires.
    pub(crate) fn from_cose(bytes: &[u8]) -> Result<Self, WebauthnError> {
        let value = cbor::read_whole(bytes).map_err(|_| invalid("not one CBOR item"))?;
        let algorithm = algorithm_of(&value)?;
        let key = CoseKey::from_cbor_value(value).map_err(|_| invalid("not a COSE key"))?;
        // Label -4 is the private part (d) for EC2, OKP and RSA alike.
        if param(&key, -4).is_some() {
            return Err(invalid("holds private key material"));
        }
        match algorithm {
            CoseAlgorithm::Es256 => {
                expect_key_type(&key, iana::KeyType::EC2)?;
                expect_curve(&key, iana::EllipticCurve::P_256)?;
                let x = fixed_byte_string::<32>(&key, iana::Ec2KeyParameter::X as i64)?;
                let y = fixed_byte_string::<32>(&key, iana::Ec2KeyParameter::Y as i64)?;
                let mut point = [0x04; 65];
                point[1..33].copy_from_slice(&x);
                point[33..].copy_from_slice(&y);
                Ok(Self::Es256 { point })
            }
            CoseAlgorithm::EdDsa | CoseAlgorithm::Ed25519 => {
                expect_key_type(&key, iana::KeyType::OKP)?;
                expect_curve(&key, iana::EllipticCurve::Ed25519)?;
                let x = fixed_byte_string::<32>(&key, iana::OkpKeyParameter::X as i64)?;
                Ok(Self::Ed25519 { algorithm, x })
            }
            CoseAlgorithm::Rs256 => {
                expect_key_type(&key, iana::KeyType::RSA)?;
                let n = byte_string(&key, iana::RsaKeyParameter::N as i64)?;
                let e = byte_string(&key, iana::RsaKeyParameter::E as i64)?;
                check_rsa_modulus(n)?;
                check_rsa_exponent(e)?;
                Ok(Self::Rs256 {
                    n: n.to_vec(),
                    e: e.to_vec(),
                })
            }
        }
    }

    pub(crate) fn algorithm(&self) -> CoseAlgorithm {
        match self {
            Self::Es256 { .. } => CoseAlgorithm::Es256,
            Self::Ed25519 { algorithm, .. } => *algorithm,
            Self::Rs256 { .. } => CoseAlgorithm::Rs256,
        }
    }

    /// Verifies `signature` over `message`. ES256 signatures in WebAuthn are ASN.1 DER;
    /// `ring` also checks here that the point lies on the curve.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), WebauthnError> {
        let verified = match self {
            Self::Es256 { point } => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, point)
                    .verify(message, signature)
            }
            Self::Ed25519 { x, .. } => {
                UnparsedPublicKey::new(&signature::ED25519, x).verify(message, signature)
            }
            Self::Rs256 { n, e } => RsaPublicKeyComponents {
                n: n.as_slice(),
                e: e.as_slice(),
            }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature),
        };
        verified.map_err(|_| WebauthnError::BadSignature)
    }
}

/// WebAuthn requires the `alg` member (label 3) and Haven only knows integer identifiers.
fn algorithm_of(value: &Value) -> Result<CoseAlgorithm, WebauthnError> {
    let Value::Map(entries) = value else {
        return Err(invalid("not a map"));
    };
    let alg = entries
        .iter()
        .find(|(label, _)| matches!(label, Value::Integer(i) if i128::from(*i) == 3))
        .map(|(_, alg)| alg)
        .ok_or(invalid("no alg"))?;
    let Value::Integer(alg) = alg else {
        return Err(invalid("alg is not an integer"));
    };
    let alg = i64::try_from(*alg).map_err(|_| invalid("alg out of range"))?;
    CoseAlgorithm::from_cose_id(alg).ok_or(WebauthnError::UnsupportedAlgorithm { cose_alg: alg })
}

fn param(key: &CoseKey, label: i64) -> Option<&Value> {
    key.params
        .iter()
        .find(|(l, _)| *l == Label::Int(label))
        .map(|(_, value)| value)
}

fn byte_string(key: &CoseKey, label: i64) -> Result<&[u8], WebauthnError> {
    match param(key, label) {
        Some(Value::Bytes(bytes)) => Ok(bytes),
        Some(Value::Bool(_)) => Err(invalid("compressed points are not allowed")),
        Some(_) => Err(invalid("a key parameter is not a byte string")),
        None => Err(invalid("a key parameter is missing")),
    }
}

fn fixed_byte_string<const N: usize>(key: &CoseKey, label: i64) -> Result<[u8; N], WebauthnError> {
    <[u8; N]>::try_from(byte_string(key, label)?)
        .map_err(|_| invalid("a coordinate has the wrong length"))
}

fn expect_key_type(key: &CoseKey, kty: iana::KeyType) -> Result<(), WebauthnError> {
    if key.kty == KeyType::Assigned(kty) {
        Ok(())
    } else {
        Err(invalid("key type does not match alg"))
    }
}

fn expect_curve(key: &CoseKey, curve: iana::EllipticCurve) -> Result<(), WebauthnError> {
    // crv is label -1 for both EC2 and OKP keys.
    match param(key, -1) {
        Some(Value::Integer(crv)) if i128::from(*crv) == curve as i128 => Ok(()),
        _ => Err(invalid("curve does not match alg")),
    }
}

/// The modulus as RFC 8230 encodes it (unsigned, big-endian, no leading zero), odd, and
/// within the sizes `ring` verifies; 2048 bits is the floor NIST allows today.
fn check_rsa_modulus(n: &[u8]) -> Result<(), WebauthnError> {
    let Some((&first, _)) = n.split_first() else {
        return Err(invalid("empty RSA modulus"));
    };
    if first == 0 {
        return Err(invalid("RSA modulus has a leading zero"));
    }
    let bits = n.len() * 8 - first.leading_zeros() as usize;
    if bits < RSA_MODULUS_BITS_MIN {
        return Err(invalid("RSA modulus shorter than 2048 bits"));
    }
    if bits > RSA_MODULUS_BITS_MAX {
        return Err(invalid("RSA modulus longer than 8192 bits"));
    }
    if n.last().is_some_and(|last| last % 2 == 0) {
        return Err(invalid("RSA modulus is even"));
    }
    Ok(())
}

/// An odd public exponent from 3 to 2^33 − 1, the range `ring` accepts.
fn check_rsa_exponent(e: &[u8]) -> Result<(), WebauthnError> {
    if e.first() == Some(&0) || e.len() > 5 {
        return Err(invalid("RSA exponent out of range"));
    }
    let value = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    if !(3..1 << 33).contains(&value) || value % 2 == 0 {
        return Err(invalid("RSA exponent out of range"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use coset::{CborSerializable, CoseKeyBuilder};
    use proptest::prelude::*;

    fn ec2(alg: iana::Algorithm, crv: iana::EllipticCurve, x_len: usize) -> Vec<u8> {
        CoseKeyBuilder::new_ec2_pub_key(crv, vec![1; x_len], vec![2; 32])
            .algorithm(alg)
            .build()
            .to_vec()
            .unwrap()
    }

    fn okp(alg: iana::Algorithm, crv: i64) -> Vec<u8> {
        CoseKeyBuilder::new_okp_key()
            .param(iana::OkpKeyParameter::Crv as i64, Value::from(crv))
            .param(iana::OkpKeyParameter::X as i64, Value::Bytes(vec![3; 32]))
            .algorithm(alg)
            .build()
            .to_vec()
            .unwrap()
    }

    fn rsa(n: Vec<u8>, e: Vec<u8>) -> Vec<u8> {
        CoseKeyBuilder::new()
            .key_type(iana::KeyType::RSA)
            .param(iana::RsaKeyParameter::N as i64, Value::Bytes(n))
            .param(iana::RsaKeyParameter::E as i64, Value::Bytes(e))
            .algorithm(iana::Algorithm::RS256)
            .build()
            .to_vec()
            .unwrap()
    }

    fn modulus(bytes: usize) -> Vec<u8> {
        let mut n = vec![0xc5; bytes];
        n[bytes - 1] = 0x01;
        n
    }

    #[test]
    fn well_formed_keys_of_each_algorithm_are_accepted() {
        let es256 = ec2(iana::Algorithm::ES256, iana::EllipticCurve::P_256, 32);
        let key = CredentialPublicKey::from_cose(&es256).unwrap();
        assert_eq!(key.algorithm(), CoseAlgorithm::Es256);
        for (alg, expected) in [
            (iana::Algorithm::EdDSA, CoseAlgorithm::EdDsa),
            (iana::Algorithm::Ed25519, CoseAlgorithm::Ed25519),
        ] {
            let key = okp(alg, iana::EllipticCurve::Ed25519 as i64);
            assert_eq!(
                CredentialPublicKey::from_cose(&key).unwrap().algorithm(),
                expected
            );
        }
        let key = CredentialPublicKey::from_cose(&rsa(modulus(256), vec![1, 0, 1])).unwrap();
        assert_eq!(key.algorithm(), CoseAlgorithm::Rs256);
    }

    #[test]
    fn unsupported_algorithms_are_named() {
        let es384 = ec2(iana::Algorithm::ES384, iana::EllipticCurve::P_384, 32);
        assert_eq!(
            CredentialPublicKey::from_cose(&es384).unwrap_err(),
            WebauthnError::UnsupportedAlgorithm { cose_alg: -35 }
        );
        let unregistered = Value::Map(vec![
            (Value::from(1), Value::from(2)),
            (Value::from(3), Value::from(-99_999)),
        ]);
        assert_eq!(
            CredentialPublicKey::from_cose(&unregistered.to_vec().unwrap()).unwrap_err(),
            WebauthnError::UnsupportedAlgorithm { cose_alg: -99_999 }
        );
    }

    #[test]
    fn malformed_or_weak_keys_are_invalid() {
        let cases = [
            (
                "short x",
                ec2(iana::Algorithm::ES256, iana::EllipticCurve::P_256, 31),
            ),
            (
                "wrong curve",
                ec2(iana::Algorithm::ES256, iana::EllipticCurve::P_384, 32),
            ),
            ("OKP for ES256", okp(iana::Algorithm::ES256, 1)),
            (
                "X25519 for EdDSA",
                okp(iana::Algorithm::EdDSA, iana::EllipticCurve::X25519 as i64),
            ),
            ("RSA-1024", rsa(modulus(128), vec![1, 0, 1])),
            ("RSA-2040", rsa(modulus(255), vec![1, 0, 1])),
            (
                "leading zero",
                rsa([vec![0], modulus(256)].concat(), vec![1, 0, 1]),
            ),
            ("even e", rsa(modulus(256), vec![1, 0, 0])),
            ("e = 1", rsa(modulus(256), vec![1])),
            ("even n", rsa(vec![0xc4; 256], vec![1, 0, 1])),
            ("RSA-8200", rsa(modulus(1025), vec![1, 0, 1])),
            (
                "no alg",
                CoseKeyBuilder::new_ec2_pub_key(
                    iana::EllipticCurve::P_256,
                    vec![1; 32],
                    vec![2; 32],
                )
                .build()
                .to_vec()
                .unwrap(),
            ),
            (
                "compressed point",
                CoseKeyBuilder::new_ec2_pub_key_y_sign(
                    iana::EllipticCurve::P_256,
                    vec![1; 32],
                    true,
                )
                .algorithm(iana::Algorithm::ES256)
                .build()
                .to_vec()
                .unwrap(),
            ),
            (
                "private key",
                CoseKeyBuilder::new_ec2_priv_key(
                    iana::EllipticCurve::P_256,
                    vec![1; 32],
                    vec![2; 32],
                    vec![3; 32],
                )
                .algorithm(iana::Algorithm::ES256)
                .build()
                .to_vec()
                .unwrap(),
            ),
            ("not a map", vec![0x80]),
            (
                "trailing byte",
                [okp(iana::Algorithm::EdDSA, 6), vec![0]].concat(),
            ),
        ];
        for (name, bytes) in cases {
            assert!(
                matches!(
                    CredentialPublicKey::from_cose(&bytes),
                    Err(WebauthnError::InvalidPublicKey(_))
                ),
                "{name}: {:?}",
                CredentialPublicKey::from_cose(&bytes)
            );
        }
    }

    #[test]
    fn algorithm_ids_round_trip() {
        for alg in [
            CoseAlgorithm::Es256,
            CoseAlgorithm::EdDsa,
            CoseAlgorithm::Ed25519,
            CoseAlgorithm::Rs256,
        ] {
            assert_eq!(CoseAlgorithm::from_cose_id(alg.cose_id()), Some(alg));
        }
        assert_eq!(CoseAlgorithm::from_cose_id(-35), None);
    }

    proptest! {
        #[test]
        fn random_bytes_are_refused_without_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            prop_assert!(CredentialPublicKey::from_cose(&bytes).is_err());
        }
    }
}
