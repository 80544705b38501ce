//! The FHIR API checked by an independent client: `fhir_client/check_fhir.py`, written from
//! the FHIR R4 specification with Python's `requests`, none of Haven's code. It covers
//! CRUD, version conflicts (409, 412), history, search with date prefixes and paging, and
//! transactions that roll back completely. `cargo xtask test` installs the pinned Python
//! environment and sets `HAVEN_TEST_PYTHON`; without it this fails rather than skips.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use haven_domain::Role;
use haven_test_support::{Backend, TestServer};

haven_test_support::on_every_backend!(an_independent_client_finds_the_api_as_specified);

async fn an_independent_client_finds_the_api_as_specified(backend: Backend) {
    let server = TestServer::start(backend).await;
    let patient = server.create_patient("Client").await;
    let clinician = server.user(Role::Clinician, None).await;
    server.add_to_care_team(patient, clinician.id).await;
    let python = std::env::var("HAVEN_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fhir_client/check_fhir.py");
    let base = server.endpoint("/fhir");
    let token = clinician.token.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .env("HAVEN_FHIR_BASE", base)
            .env("HAVEN_TOKEN", token)
            .env("HAVEN_PATIENT", patient.to_string())
            .output()
            .expect("run the Python checks (cargo xtask test installs the environment)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the independent FHIR client found a problem:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("4 checks passed"), "{stdout}");
    server.stop().await;
}
