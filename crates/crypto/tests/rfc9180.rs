//! RFC 9180 Appendix A.1 (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM) run
//! through the `hpke` crate exactly as Haven's message keys use it, in all four modes.
//!
//! The vectors file is shared with the browser's interop test, which runs the same
//! vectors through `@hpke/core` in Chromium. The sender's ephemeral key comes from the
//! vector's `ikmE`, fed through the generator the crate draws it from (DeriveKeyPair of
//! 32 drawn bytes), so `enc` and every ciphertext must come out exactly as printed.

use hpke::aead::AesGcm128;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Kem, OpModeR, OpModeS, PskBundle, Serializable};
use serde_json::Value;

/// Hands out fixed bytes: the vector's `ikmE`, where the crate draws its ephemeral key.
struct FixedBytes(Vec<u8>);

impl rand::RngCore for FixedBytes {
    fn next_u32(&mut self) -> u32 {
        unreachable!("HPKE draws key material with fill_bytes")
    }
    fn next_u64(&mut self) -> u64 {
        unreachable!("HPKE draws key material with fill_bytes")
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        assert!(
            dest.len() <= self.0.len(),
            "more bytes drawn than the vector gives"
        );
        let rest = self.0.split_off(dest.len());
        dest.copy_from_slice(&self.0);
        self.0 = rest;
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand::CryptoRng for FixedBytes {}

fn bytes(vector: &Value, field: &str) -> Vec<u8> {
    hex::decode(
        vector[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} missing")),
    )
    .unwrap_or_else(|_| panic!("{field} is not hex"))
}

#[test]
fn rfc9180_vectors_for_havens_suite_pass() {
    let text = include_str!("vectors/rfc9180-x25519-sha256-aes128gcm.json");
    let file: Value = serde_json::from_str(text).unwrap();
    let vectors = file["vectors"].as_array().unwrap();
    let mut modes_seen = Vec::new();
    for vector in vectors {
        let mode = vector["mode"].as_u64().unwrap();
        modes_seen.push(mode);
        let info = bytes(vector, "info");
        let (sk_r, pk_r) = X25519HkdfSha256::derive_keypair(&bytes(vector, "ikmR"));
        assert_eq!(
            pk_r.to_bytes().to_vec(),
            bytes(vector, "pkRm"),
            "mode {mode}: pkRm"
        );

        let sender_keys =
            (mode >= 2).then(|| X25519HkdfSha256::derive_keypair(&bytes(vector, "ikmS")));
        let (psk, psk_id) = if mode == 1 || mode == 3 {
            (bytes(vector, "psk"), bytes(vector, "psk_id"))
        } else {
            (Vec::new(), Vec::new())
        };
        let bundle = PskBundle {
            psk: &psk,
            psk_id: &psk_id,
        };
        let mode_s = match (mode, &sender_keys) {
            (0, _) => OpModeS::Base,
            (1, _) => OpModeS::Psk(bundle),
            (2, Some(keys)) => OpModeS::Auth(keys.clone()),
            (3, Some(keys)) => OpModeS::AuthPsk(keys.clone(), bundle),
            _ => panic!("unknown mode {mode}"),
        };
        let mode_r = match (mode, &sender_keys) {
            (0, _) => OpModeR::Base,
            (1, _) => OpModeR::Psk(bundle),
            (2, Some(keys)) => OpModeR::Auth(keys.1.clone()),
            (3, Some(keys)) => OpModeR::AuthPsk(keys.1.clone(), bundle),
            _ => panic!("unknown mode {mode}"),
        };

        let mut ephemeral = FixedBytes(bytes(vector, "ikmE"));
        let (enc, mut sender) = hpke::setup_sender::<AesGcm128, HkdfSha256, X25519HkdfSha256, _>(
            &mode_s,
            &pk_r,
            &info,
            &mut ephemeral,
        )
        .unwrap();
        assert_eq!(
            enc.to_bytes().to_vec(),
            bytes(vector, "enc"),
            "mode {mode}: enc"
        );
        let mut receiver = hpke::setup_receiver::<AesGcm128, HkdfSha256, X25519HkdfSha256>(
            &mode_r, &sk_r, &enc, &info,
        )
        .unwrap();

        let mut next_seq = 0;
        for encryption in vector["encryptions"].as_array().unwrap() {
            let seq = encryption["seq"].as_u64().unwrap();
            let aad = bytes(encryption, "aad");
            let pt = bytes(encryption, "pt");
            // The RFC prints sequence numbers 0, 1, 2, 4, 255, 256: seal and open the ones
            // in between so both contexts' counters reach the printed one.
            while next_seq < seq {
                let filler = sender.seal(b"", b"").unwrap();
                receiver.open(&filler, b"").unwrap();
                next_seq += 1;
            }
            let ct = sender.seal(&pt, &aad).unwrap();
            assert_eq!(ct, bytes(encryption, "ct"), "mode {mode}: ct at seq {seq}");
            assert_eq!(
                receiver.open(&ct, &aad).unwrap(),
                pt,
                "mode {mode}: open at seq {seq}"
            );
            next_seq += 1;
        }

        for export in vector["exports"].as_array().unwrap() {
            let length = usize::try_from(export["L"].as_u64().unwrap()).unwrap();
            let mut out = vec![0u8; length];
            sender
                .export(&bytes(export, "exporter_context"), &mut out)
                .unwrap();
            assert_eq!(out, bytes(export, "exported_value"), "mode {mode}: export");
        }
    }
    modes_seen.sort_unstable();
    assert_eq!(
        modes_seen,
        [0, 1, 2, 3],
        "every mode of Appendix A.1 is in the file"
    );
}
