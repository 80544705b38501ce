//! Browser tests: Debian's Chromium, driven by playwright-core scripts in `tests/browser/`
//! (`cargo xtask test` installs both), against a real Haven.
//!
//! Passkeys: a clinician registers one with Chromium's virtual authenticator and signs in
//! with it, no login typed; the session that comes back is complete, a replayed response is
//! refused, and both ceremonies are in the audit trail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use haven_app::identity::totp::code_at_base32;
use haven_domain::Role;
use haven_test_support::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

haven_test_support::on_every_backend!(a_passkey_registers_and_signs_in_from_chromium);

/// Browser scripts get long enough to start Chromium on a loaded machine.
const SCRIPT_TIMEOUT_SECS: u64 = 120;

async fn run_script(script: &str, env: &[(&str, &str)]) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {}: run `cargo xtask test`",
        dir.display()
    );
    let mut command = tokio::process::Command::new("node");
    command
        .arg(dir.join(script))
        .current_dir(&dir)
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(SCRIPT_TIMEOUT_SECS), command.output())
        .await
        .expect("the browser script finished in time")
        .expect("node runs");
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

async fn a_passkey_registers_and_signs_in_from_chromium(backend: Backend) {
    let server = TestServer::start(backend).await;
    // A clinician, fully signed in (password and TOTP), registers the passkey.
    let invitation = server.invite(Role::Clinician, None).await;
    let enrolled: Value = server
        .post_as(
            None,
            "/api/v1/auth/enrol",
            json!({ "invitation": invitation, "login": "joan@north.example",
                "password": "marble kettle on the hill", "transport": "bearer" }),
        )
        .await
        .json()
        .await
        .unwrap();
    let token = enrolled["token"].as_str().unwrap().to_owned();
    let setup: Value = server
        .post_as(Some(&token), "/api/v1/auth/totp/setup", json!({}))
        .await
        .json()
        .await
        .unwrap();
    use haven_app::Clock;
    let now = u64::try_from(server.clock.now_ms() / 1000).unwrap();
    let code = code_at_base32(setup["secret"].as_str().unwrap(), now).unwrap();
    let confirmed = server
        .post_as(
            Some(&token),
            "/api/v1/auth/totp/confirm",
            json!({ "code": code }),
        )
        .await;
    assert_eq!(confirmed.status(), StatusCode::OK);

    // Passkeys are bound to localhost (browsers refuse them on an IP address).
    let url = server.url.replace("127.0.0.1", "localhost");
    let result = run_script(
        "passkey.mjs",
        &[("HAVEN_URL", &url), ("HAVEN_TOKEN", &token)],
    )
    .await;
    assert_eq!(result["creationOptions"], 200, "{result}");
    assert_eq!(result["registered"], 201, "{result}");
    assert_eq!(result["requestOptions"], 200, "{result}");
    assert_eq!(result["signIn"], 200, "{result}");
    assert_eq!(
        result["state"], "complete",
        "a passkey is both factors: {result}"
    );
    assert_eq!(result["replay"], 401, "a spent ceremony: {result}");
    assert_eq!(result["authenticatorCredentials"], 1, "{result}");

    // The passkey's session is the clinician's, and works.
    let passkey_token = result["token"].as_str().unwrap();
    let session: Value = server
        .client
        .get(server.endpoint("/api/v1/auth/session"))
        .bearer_auth(passkey_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (session["role"].as_str(), session["state"].as_str()),
        (Some("clinician"), Some("complete"))
    );
    let list = server
        .client
        .get(server.endpoint("/api/v1/auth/passkeys"))
        .bearer_auth(passkey_token)
        .send()
        .await
        .unwrap();
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["items"][0]["name"], "test laptop");

    // Its owner removes it; a made-up id is simply not found.
    let id = list["items"][0]["id"].as_str().unwrap().to_owned();
    let remove = |id: String| {
        let server = &server;
        async move {
            server
                .client
                .delete(server.endpoint(&format!("/api/v1/auth/passkeys/{id}")))
                .bearer_auth(passkey_token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(remove("AAAA".into()).await, StatusCode::NOT_FOUND);
    assert_eq!(remove("not base64!".into()).await, StatusCode::BAD_REQUEST);
    assert_eq!(remove(id.clone()).await, StatusCode::NO_CONTENT);
    assert_eq!(remove(id).await, StatusCode::NOT_FOUND);
    let empty: Value = server
        .client
        .get(server.endpoint("/api/v1/auth/passkeys"))
        .bearer_auth(passkey_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(empty["items"].as_array().unwrap().len(), 0);

    let reasons: Vec<String> = server
        .app()
        .store()
        .audit_events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.reason)
        .collect();
    assert!(reasons.iter().any(|r| r == "passkey_added"), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r == "signed_in_passkey"),
        "{reasons:?}"
    );
}
