//! The two implementations of Haven's end-to-end formats held to the same bytes: the Rust
//! side (`haven_crypto::e2e`, the `hpke` crate) and the browser's (`web/src/e2e`,
//! `@hpke/core` on Chromium's WebCrypto), run in Debian's Chromium by
//! `tests/browser/e2e-interop.mjs`.
//!
//! - RFC 9180's vectors for Haven's suite pass in the browser (the Rust side runs the same
//!   file in `crates/crypto/tests/rfc9180.rs`);
//! - a message sealed here opens there;
//! - a message sealed there, by a device whose keys are non-extractable, opens here, and
//!   that device's self-signature checks here.
//!
//! And SFrame (RFC 9605), the media encryption of video visits (`web/src/visit/sframe.ts`),
//! held to every test vector of the RFC's Appendix C in Chromium, with a call in one page
//! sealed and opened through its frame transform worker (`tests/browser/sframe-vectors.mjs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use haven_crypto::e2e::{DeviceKeys, DevicePublicKeys, MessageRef, SealedKey, seal_message};
use serde_json::{Value, json};
use uuid::Uuid;

/// Bundling the library and starting Chromium on a loaded machine.
const SCRIPT_TIMEOUT_SECS: u64 = 180;

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn bytes(value: &Value) -> Vec<u8> {
    STANDARD
        .decode(value.as_str().expect("a base64 string"))
        .expect("base64")
}

fn key(value: &Value) -> [u8; 32] {
    bytes(value).try_into().expect("32 bytes")
}

#[tokio::test]
async fn rust_and_the_browser_seal_and_open_each_others_messages() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let browser = tests.join("browser");
    assert!(
        browser.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {}: run `cargo xtask test`",
        browser.display()
    );
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crypto/tests/vectors/rfc9180-x25519-sha256-aes128gcm.json")
        .canonicalize()
        .unwrap();

    // Rust seals to a device whose key pair the browser derives from the same 32 bytes.
    // Random key material (each v4 id carries 122 random bits).
    let mut seed = [0u8; 64];
    for (chunk, id) in seed
        .chunks_mut(16)
        .zip(std::iter::repeat_with(Uuid::new_v4))
    {
        chunk.copy_from_slice(id.as_bytes());
    }
    let browser_recipient = DeviceKeys::from_seed(&seed);
    let rust_sender = DeviceKeys::generate();
    let (thread, message) = (Uuid::new_v4(), Uuid::new_v4());
    let text_to_browser = "Your results are ready — café, 日本語, emoji 🩺";
    let body = json!({ "v": 1, "text": text_to_browser, "attachments": [] }).to_string();
    let sealed = seal_message(
        thread,
        message,
        body.as_bytes(),
        &[browser_recipient.public()],
        &rust_sender,
    )
    .unwrap();

    // The browser seals to this Rust device.
    let rust_recipient = DeviceKeys::generate();
    let (back_thread, back_message) = (Uuid::new_v4(), Uuid::new_v4());
    let text_to_rust = "Thank you, doctor — see you Tuesday.";

    let input = json!({
        "vectors_file": vectors,
        "rust_sealed": {
            "recipient_ikm": b64(&seed[..32]),
            "thread_id": thread.to_string(),
            "message_id": message.to_string(),
            "ciphertext": b64(&sealed.ciphertext),
            "enc": b64(&sealed.keys[0].enc),
            "sealed_key": b64(&sealed.keys[0].sealed_key),
            "signature": b64(&sealed.signature),
            "sender_signing_public_key": b64(&rust_sender.public().signing),
        },
        "browser_seal": {
            "thread_id": back_thread.to_string(),
            "message_id": back_message.to_string(),
            "text": text_to_rust,
            "recipient_hpke_public_key": b64(&rust_recipient.public().hpke),
        },
    });
    let dir = tempfile::tempdir().unwrap();
    let (input_path, output_path) = (dir.path().join("in.json"), dir.path().join("out.json"));
    std::fs::write(&input_path, input.to_string()).unwrap();
    let mut command = tokio::process::Command::new("node");
    command
        .arg(browser.join("e2e-interop.mjs"))
        .arg(&input_path)
        .arg(&output_path)
        .current_dir(&browser)
        .kill_on_drop(true);
    let run = tokio::time::timeout(Duration::from_secs(SCRIPT_TIMEOUT_SECS), command.output())
        .await
        .expect("the interop script finished in time")
        .expect("node runs");
    assert!(
        run.status.success(),
        "e2e-interop.mjs failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let output: Value = serde_json::from_slice(&std::fs::read(&output_path).unwrap()).unwrap();
    assert_eq!(output["errors"], json!({}), "{output}");

    // RFC 9180 in the browser: every vector of the file, all four modes.
    let vectors_run = output["vectors"]["run"].as_u64().unwrap();
    assert_eq!(vectors_run, 4, "{output}");
    assert_eq!(output["vectors"]["passed"], vectors_run, "{output}");
    // The browser's own checks (tampering refused, keys non-extractable, proofs).
    assert_eq!(
        output["self_checks"]["passed"], output["self_checks"]["run"],
        "{output}"
    );

    // Rust → browser.
    assert_eq!(output["rust_sealed_text"], text_to_browser);

    // Browser → Rust: the device proves its keys, signed the message, and sealed it to us.
    let sealed_back = &output["browser_sealed"];
    let browser_device = DevicePublicKeys {
        hpke: key(&sealed_back["hpke_public_key"]),
        signing: key(&sealed_back["sender_signing_public_key"]),
    };
    browser_device
        .verify_self_signature(&bytes(&sealed_back["self_signature"]))
        .expect("the browser device's self-signature checks in Rust");
    let ciphertext = bytes(&sealed_back["ciphertext"]);
    let signature = bytes(&sealed_back["signature"]);
    let opened = rust_recipient
        .open_message(
            &MessageRef {
                thread_id: back_thread,
                message_id: back_message,
                ciphertext: &ciphertext,
                signature: &signature,
            },
            &SealedKey {
                enc: key(&sealed_back["enc"]),
                sealed_key: bytes(&sealed_back["sealed_key"]),
            },
            &browser_device,
        )
        .expect("Rust opens what the browser sealed");
    let body: Value = serde_json::from_slice(&opened).unwrap();
    assert_eq!(body["text"], text_to_rust);
    assert_eq!(body["v"], 1);

    // Opened under another thread id, it must not: the ids are bound in.
    assert!(
        rust_recipient
            .open_message(
                &MessageRef {
                    thread_id: Uuid::new_v4(),
                    message_id: back_message,
                    ciphertext: &ciphertext,
                    signature: &signature,
                },
                &SealedKey {
                    enc: key(&sealed_back["enc"]),
                    sealed_key: bytes(&sealed_back["sealed_key"]),
                },
                &browser_device,
            )
            .is_err()
    );
}

/// The number of vectors in each section of RFC 9605's Appendix C: C.1 header encodings,
/// C.2 AES-CTR + HMAC encryptions, C.3 SFrame encryptions. The file must hold them all.
const RFC9605_VECTORS: [(&str, usize); 3] = [("header", 289), ("aead", 3), ("sframe", 5)];

#[tokio::test]
async fn sframe_matches_rfc9605_test_vectors_in_chromium() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let browser = tests.join("browser");
    assert!(
        browser.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {}: run `cargo xtask test`",
        browser.display()
    );
    let vectors_file = tests.join("vectors/rfc9605-sframe.json");
    let vectors: Value = serde_json::from_slice(&std::fs::read(&vectors_file).unwrap()).unwrap();
    // Counted here, not taken from the script, so that a file or a script that lost vectors
    // cannot pass with fewer.
    let mut vectors_total = 0;
    for (section, wanted) in RFC9605_VECTORS {
        let held = vectors[section].as_array().map_or(0, Vec::len);
        assert_eq!(
            held,
            wanted,
            "{section} vectors in {}",
            vectors_file.display()
        );
        vectors_total += held;
    }

    let dir = tempfile::tempdir().unwrap();
    let (input_path, output_path) = (dir.path().join("in.json"), dir.path().join("out.json"));
    std::fs::write(
        &input_path,
        json!({ "vectors_file": vectors_file }).to_string(),
    )
    .unwrap();
    let mut command = tokio::process::Command::new("node");
    command
        .arg(browser.join("sframe-vectors.mjs"))
        .arg(&input_path)
        .arg(&output_path)
        .current_dir(&browser)
        .kill_on_drop(true);
    let run = tokio::time::timeout(Duration::from_secs(SCRIPT_TIMEOUT_SECS), command.output())
        .await
        .expect("the SFrame script finished in time")
        .expect("node runs");
    assert!(
        run.status.success(),
        "sframe-vectors.mjs failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let output: Value = serde_json::from_slice(&std::fs::read(&output_path).unwrap()).unwrap();

    // Every vector ran in Chromium's WebCrypto, and every one passed.
    assert_eq!(output["failures"], json!([]), "{output}");
    assert_eq!(output["run"], json!(vectors_total), "{output}");
    assert_eq!(output["passed"], json!(vectors_total), "{output}");
    for (section, wanted) in RFC9605_VECTORS {
        assert_eq!(
            output["by_section"][section]["run"],
            json!(wanted),
            "{output}"
        );
        assert_eq!(
            output["by_section"][section]["passed"],
            json!(wanted),
            "{output}"
        );
    }

    // The library's own behaviour: media framing, tampering, keys, the counter, the limits.
    assert_eq!(output["self_checks"]["failures"], json!([]), "{output}");
    assert!(
        output["self_checks"]["run"].as_u64().unwrap() >= 7,
        "{output}"
    );
    assert_eq!(
        output["self_checks"]["passed"], output["self_checks"]["run"],
        "{output}"
    );

    // The call: sealed frames out, opened and decoded in, a rotation, nothing without keys,
    // the worker created under Haven's CSP through the `haven-worker` Trusted Types policy.
    assert_eq!(output["call"]["failures"], json!([]), "{output}");
    assert!(output["call"]["run"].as_u64().unwrap() >= 6, "{output}");
    assert_eq!(output["call"]["passed"], output["call"]["run"], "{output}");
}
