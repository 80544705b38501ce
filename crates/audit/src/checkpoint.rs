//! Signed checkpoints in the C2SP `tlog-checkpoint` format, as a C2SP `signed-note`.
//!
//! A checkpoint commits to the log's size and root hash:
//!
//! ```text
//! haven.example.org/audit
//! 1024
//! <base64 root hash>
//!
//! — haven.example.org/audit <base64(key hash ‖ Ed25519 signature)>
//! ```
//!
//! Anyone holding the public key (as a C2SP verifier key, [`CheckpointVerifier::vkey`]) can
//! check a checkpoint without access to Haven, and with a consistency proof between two
//! checkpoints can prove that nothing before the first was changed, removed or reordered.
//! The audit signing key is separate from every data key.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The signature algorithm byte of an Ed25519 key in C2SP signed notes.
const ALGORITHM_ED25519: u8 = 0x01;
/// The longest note Haven will parse; checkpoints are a few hundred bytes.
const NOTE_BYTES_MAX: usize = 16 * 1024;

/// The log's state at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Names the log, e.g. `haven.example.org/audit`.
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The signed text: origin, size and base64 root, each on its own line.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    #[error("no signature by this log's key")]
    NoSignature,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("invalid key or key name: {0}")]
    InvalidKey(&'static str),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('+')
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn key_hash(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ALGORITHM_ED25519]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Signs checkpoints with the log's Ed25519 key.
pub struct CheckpointSigner {
    name: String,
    key: SigningKey,
}

impl fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointSigner({}, <redacted>)", self.name)
    }
}

impl CheckpointSigner {
    /// A fresh signing key for the log called `name`.
    pub fn generate(name: &str) -> Result<Self, CheckpointError> {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        Self::from_seed(name, seed)
    }

    /// Restores a signer from its stored 32-byte seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, CheckpointError> {
        if !valid_name(name) {
            return Err(CheckpointError::InvalidKey(
                "name must be non-empty, without spaces or '+'",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The seed to store (secret).
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    pub fn verifier(&self) -> CheckpointVerifier {
        CheckpointVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// The checkpoint as a signed note.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        let body = checkpoint.body();
        let signature = self.key.sign(body.as_bytes());
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&key_hash(&self.name, &self.key.verifying_key()));
        blob.extend_from_slice(&signature.to_bytes());
        format!("{body}\n\u{2014} {} {}\n", self.name, STANDARD.encode(blob))
    }
}

/// Checks checkpoints against the log's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointVerifier {
    name: String,
    key: VerifyingKey,
}

impl CheckpointVerifier {
    /// The C2SP verifier key: `name+hex(key hash)+base64(0x01 ‖ public key)`.
    pub fn vkey(&self) -> String {
        let mut encoded = vec![ALGORITHM_ED25519];
        encoded.extend_from_slice(self.key.as_bytes());
        let hash: String = key_hash(&self.name, &self.key)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}+{hash}+{}", self.name, STANDARD.encode(encoded))
    }

    pub fn parse_vkey(text: &str) -> Result<Self, CheckpointError> {
        // The key is base64, which may itself contain '+': split off two fields only.
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CheckpointError::InvalidKey("expected name+hash+key"));
        };
        if !valid_name(name) {
            return Err(CheckpointError::InvalidKey("bad name"));
        }
        let bytes = STANDARD
            .decode(key)
            .map_err(|_| CheckpointError::InvalidKey("key is not base64"))?;
        let Some((&algorithm, public)) = bytes.split_first() else {
            return Err(CheckpointError::InvalidKey("key too short"));
        };
        if algorithm != ALGORITHM_ED25519 {
            return Err(CheckpointError::InvalidKey("not an Ed25519 key"));
        }
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| CheckpointError::InvalidKey("Ed25519 keys are 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| CheckpointError::InvalidKey("not a valid Ed25519 point"))?;
        let expected: String = key_hash(name, &key)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if expected != hash {
            return Err(CheckpointError::InvalidKey("key hash does not match"));
        }
        Ok(Self {
            name: name.to_owned(),
            key,
        })
    }

    /// Verifies a signed checkpoint note and returns what it commits to.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        if note.len() > NOTE_BYTES_MAX {
            return Err(CheckpointError::Malformed("note too long"));
        }
        let split = note.find("\n\n").ok_or(CheckpointError::Malformed(
            "no blank line before the signatures",
        ))?;
        let (body, signatures) = note.split_at(split + 1);
        let signatures = &signatures[1..];
        let wanted_hash = key_hash(&self.name, &self.key);
        let mut found = false;
        for line in signatures.lines() {
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                return Err(CheckpointError::Malformed(
                    "signature line must start with an em dash",
                ));
            };
            let Some((name, blob)) = rest.split_once(' ') else {
                return Err(CheckpointError::Malformed(
                    "signature line needs a name and a signature",
                ));
            };
            if name != self.name {
                continue;
            }
            let blob = STANDARD
                .decode(blob)
                .map_err(|_| CheckpointError::Malformed("signature is not base64"))?;
            if blob.len() != 4 + 64 || blob[..4] != wanted_hash {
                continue;
            }
            found = true;
            let signature = Signature::from_slice(&blob[4..])
                .map_err(|_| CheckpointError::Malformed("signature length"))?;
            self.key
                .verify(body.as_bytes(), &signature)
                .map_err(|_| CheckpointError::BadSignature)?;
        }
        if !found {
            return Err(CheckpointError::NoSignature);
        }
        parse_body(body)
    }
}

fn parse_body(body: &str) -> Result<Checkpoint, CheckpointError> {
    let mut lines = body.lines();
    let origin = lines
        .next()
        .filter(|o| !o.is_empty())
        .ok_or(CheckpointError::Malformed("missing origin"))?;
    let size = lines
        .next()
        .filter(|s| s == &"0" || (!s.starts_with('0') && s.chars().all(|c| c.is_ascii_digit())))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or(CheckpointError::Malformed("size must be a decimal number"))?;
    let root: Hash = lines
        .next()
        .and_then(|r| STANDARD.decode(r).ok())
        .and_then(|r| r.try_into().ok())
        .ok_or(CheckpointError::Malformed(
            "root must be a base64 SHA-256 hash",
        ))?;
    Ok(Checkpoint {
        origin: origin.to_owned(),
        size,
        root,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const LOG: &str = "haven.test/audit";

    fn checkpoint(size: u64, root: Hash) -> Checkpoint {
        Checkpoint {
            origin: LOG.into(),
            size,
            root,
        }
    }

    #[test]
    fn the_note_has_the_c2sp_shape() {
        let signer = CheckpointSigner::from_seed(LOG, [7; 32]).unwrap();
        let note = signer.sign(&checkpoint(3, [1; 32]));
        let lines: Vec<&str> = note.lines().collect();
        assert_eq!(lines[0], LOG);
        assert_eq!(lines[1], "3");
        assert_eq!(lines[2], STANDARD.encode([1u8; 32]));
        assert_eq!(lines[3], "");
        assert!(lines[4].starts_with("\u{2014} haven.test/audit "));
        assert!(note.ends_with('\n'));
        let vkey = signer.verifier().vkey();
        assert!(vkey.starts_with("haven.test/audit+"));
        assert_eq!(
            CheckpointVerifier::parse_vkey(&vkey).unwrap(),
            signer.verifier()
        );
    }

    #[test]
    fn malformed_notes_are_refused() {
        let signer = CheckpointSigner::generate(LOG).unwrap();
        let verifier = signer.verifier();
        let note = signer.sign(&checkpoint(10, [2; 32]));
        assert!(verifier.verify(&note.replace("\n\n", "\n")).is_err());
        assert!(verifier.verify(&note.replace('\u{2014}', "-")).is_err());
        assert_eq!(
            verifier.verify(&note.replacen("\n10\n", "\n11\n", 1)),
            Err(CheckpointError::BadSignature)
        );
        assert!(CheckpointVerifier::parse_vkey("name+00000000+AAAA").is_err());
        assert!(CheckpointSigner::generate("has space").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn verifier_keys_round_trip(seed in any::<[u8; 32]>()) {
            let verifier = CheckpointSigner::from_seed(LOG, seed).unwrap().verifier();
            prop_assert_eq!(CheckpointVerifier::parse_vkey(&verifier.vkey()), Ok(verifier));
        }

        #[test]
        fn signed_checkpoints_round_trip(size in any::<u64>(), root in any::<[u8; 32]>()) {
            let signer = CheckpointSigner::generate(LOG).unwrap();
            let note = signer.sign(&checkpoint(size, root));
            prop_assert_eq!(signer.verifier().verify(&note), Ok(checkpoint(size, root)));
        }

        #[test]
        fn checkpoints_from_a_different_key_are_rejected(size in any::<u64>(), root in any::<[u8; 32]>()) {
            let ours = CheckpointSigner::generate(LOG).unwrap();
            let impostor = CheckpointSigner::generate(LOG).unwrap();
            let forged = impostor.sign(&checkpoint(size, root));
            prop_assert_eq!(ours.verifier().verify(&forged), Err(CheckpointError::NoSignature));
            // Even with our key hash pasted in front of the impostor's signature.
            let ours_note = ours.sign(&checkpoint(size, root));
            let our_line = ours_note.lines().last().unwrap();
            let their_line = forged.lines().last().unwrap();
            let our_blob = STANDARD.decode(our_line.rsplit(' ').next().unwrap()).unwrap();
            let their_blob = STANDARD.decode(their_line.rsplit(' ').next().unwrap()).unwrap();
            let mut spliced = our_blob[..4].to_vec();
            spliced.extend_from_slice(&their_blob[4..]);
            let spliced_note = format!(
                "{}\n\u{2014} {LOG} {}\n",
                checkpoint(size, root).body(),
                STANDARD.encode(spliced)
            );
            prop_assert_eq!(ours.verifier().verify(&spliced_note), Err(CheckpointError::BadSignature));
        }
    }
}
