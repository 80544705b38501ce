//! Tests of the `haven` binary as an operator runs it: start-up with zero configuration,
//! refusals with clear messages, graceful shutdown, durability under `kill -9`, TLS, and
//! the key commands.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use haven_test_support::{Backend, fresh_postgres_schema};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const HAVEN: &str = env!("CARGO_BIN_EXE_haven");
/// How long a server gets to print its address.
const START_TIMEOUT_SECS: u64 = 30;

fn haven(dir: &Path) -> Command {
    let mut command = Command::new(HAVEN);
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HAVEN_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// A running `haven serve` and the URL it printed.
struct Running {
    child: Child,
    url: String,
}

async fn serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut command = haven(dir);
    command
        .arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(START_TIMEOUT_SECS), lines.next_line())
        .await
        .expect("the server printed its address in time")
        .unwrap()
        .expect("the server printed its address");
    let url = line
        .strip_prefix("listening on ")
        .expect("listening line")
        .to_owned();
    Running { child, url }
}

async fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap()
}

async fn admin_token(dir: &Path, env: &[(&str, &str)]) -> String {
    token_for(dir, env, "administrator").await
}

async fn token_for(dir: &Path, env: &[(&str, &str)], role: &str) -> String {
    let mut command = haven(dir);
    command.args(["admin", "token", "--label", "test", "--role", role]);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned()
}

fn patient(n: usize) -> Value {
    json!({
        "name": { "family": format!("Durable{n}"), "given": ["Test"] },
        "birth_date": "1985-05-05",
        "identifiers": [{ "system": "urn:haven:test", "value": format!("N-{n}") }]
    })
}

/// Creates patient `n` and returns its id.
async fn create(client: &reqwest::Client, url: &str, token: &str, n: usize) -> String {
    let response = client
        .post(format!("{url}/api/v1/patients"))
        .bearer_auth(token)
        .json(&patient(n))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

/// A data directory where a server minted a token, registered `patients` patients and
/// stopped cleanly (so a final checkpoint covers every audit entry).
async fn populated_data_dir(patients: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let env = [("HAVEN_LISTEN", "127.0.0.1:0")];
    let token = admin_token(dir.path(), &env).await;
    let mut server = serve(dir.path(), &[], &env).await;
    let client = reqwest::Client::new();
    for n in 0..patients {
        create(&client, &server.url, &token, n).await;
    }
    assert!(terminate(&mut server.child).await.success());
    dir
}

#[tokio::test]
async fn zero_configuration_creates_a_private_data_directory_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[], &[("HAVEN_LISTEN", "127.0.0.1:0")]).await;
    assert!(server.url.starts_with("http://127.0.0.1:"));
    let health = reqwest::get(format!("{}/healthz", server.url))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = reqwest::get(format!("{}/readyz", server.url))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    let data = dir.path().join("haven-data");
    assert!(data.join("haven.db").exists());
    assert!(data.join("haven-audit.db").exists());
    let keyring = data.join("keyring");
    let root_keys: Vec<PathBuf> = std::fs::read_dir(&keyring)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "key"))
        .collect();
    assert_eq!(root_keys.len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root_keys[0]), 0o600);
        assert_eq!(mode(&keyring), 0o700);
        assert_eq!(mode(&data), 0o700);
    }

    // A second server on the same data directory is refused, not allowed to corrupt it.
    let second = haven(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("another haven process"));

    assert!(
        terminate(&mut server.child).await.success(),
        "SIGTERM exits 0"
    );
}

#[tokio::test]
async fn refuses_plain_http_on_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let output = haven(dir.path())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--listen") && stderr.contains("without TLS"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("haven-data").exists(),
        "nothing was created"
    );
}

#[tokio::test]
async fn malformed_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let output = haven(dir.path())
        .arg("serve")
        .env("HAVEN_LISTEN", "localhost-ish")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid setting HAVEN_LISTEN"));

    let file = dir.path().join("haven.toml");
    std::fs::write(&file, "request_timeout_secs = \"soon\"\n").unwrap();
    let output = haven(dir.path())
        .args(["serve", "--config", file.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("request_timeout_secs in") && stderr.contains("haven.toml"),
        "{stderr}"
    );

    let output = haven(dir.path())
        .arg("serve")
        .env("HAVEN_DATABASE_URL", "mysql://nope")
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("HAVEN_DATABASE_URL"));
}

/// `kill -9` during 32 concurrent creates: every create answered 201 is there after restart.
async fn kill_9_loses_no_acknowledged_create(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut env: Vec<(&str, String)> = vec![("HAVEN_LISTEN", "127.0.0.1:0".into())];
    if backend == Backend::Postgres {
        env.push(("HAVEN_DATABASE_URL", fresh_postgres_schema("kill").await.1));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let token = admin_token(dir.path(), &env).await;
    let mut server = serve(dir.path(), &[], &env).await;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..32 {
        let client = client.clone();
        let url = format!("{}/api/v1/patients", server.url);
        let token = token.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut n = worker * 1_000_000;
            // Bounded: stops at the kill, or after 2,000 creates per worker at most.
            while !stop.load(Ordering::Relaxed) && acknowledged.len() < 2_000 {
                n += 1;
                let Ok(response) = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&patient(n))
                    .send()
                    .await
                else {
                    break;
                };
                if response.status() != StatusCode::CREATED {
                    break;
                }
                let Ok(body) = response.json::<Value>().await else {
                    break;
                };
                acknowledged.push((body["id"].as_str().unwrap().to_owned(), n));
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.child.start_kill().unwrap(); // SIGKILL: no shutdown, no flush
    server.child.wait().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for worker in workers {
        acknowledged.extend(worker.await.unwrap());
    }
    assert!(
        acknowledged.len() >= 32,
        "the server acknowledged creates before the kill"
    );

    let restarted = serve(dir.path(), &[], &env).await;
    for (id, n) in &acknowledged {
        let response = client
            .get(format!("{}/api/v1/patients/{id}", restarted.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "acknowledged create {id} was lost"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["name"]["family"], format!("Durable{n}"));
    }
    eprintln!(
        "{} acknowledged creates all survived kill -9",
        acknowledged.len()
    );

    // Every acknowledged create has its audit entry...
    let auditor = token_for(dir.path(), &env, "auditor").await;
    let mut audited = std::collections::HashSet::new();
    let mut offset = 0;
    loop {
        let page: Value = client
            .get(format!(
                "{}/api/v1/audit/events?action=create&limit=1000&offset={offset}",
                restarted.url
            ))
            .bearer_auth(&auditor)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = page["items"].as_array().unwrap();
        audited.extend(
            items
                .iter()
                .map(|e| e["patient"].as_str().unwrap().to_owned()),
        );
        if items.len() < 1000 {
            break;
        }
        offset += 1000;
    }
    for (id, _) in &acknowledged {
        assert!(
            audited.contains(id),
            "acknowledged create {id} has no audit entry"
        );
    }

    // ...and the log verifies.
    let mut verify = haven(dir.path());
    verify.args(["audit", "verify"]);
    for (key, value) in &env {
        verify.env(key, value);
    }
    let verified = verify.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(stdout.contains("audit log verified"), "{stdout}");
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_create_on_sqlite() {
    kill_9_loses_no_acknowledged_create(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_create_on_postgres() {
    kill_9_loses_no_acknowledged_create(Backend::Postgres).await;
}

#[tokio::test]
async fn serves_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();

    // With TLS, a non-loopback address is allowed.
    let mut server = serve(
        dir.path(),
        &[
            "--listen",
            "0.0.0.0:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(server.url.starts_with("https://"));
    let port = server.url.rsplit(':').next().unwrap().to_owned();
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .resolve(
            "localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], port.parse().unwrap())),
        )
        .build()
        .unwrap();
    let response = client
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age=")
    );

    // Plain HTTP to the TLS port gets nothing.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    assert!(terminate(&mut server.child).await.success());

    // A key that does not match the certificate is refused at start-up.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(&key, other.signing_key.serialize_pem()).unwrap();
    let output = haven(dir.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("TLS"));
}

fn root_key_files(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("keyring"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".key"))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_rewraps_everything_and_destroys_the_old_root() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("HAVEN_LISTEN", "127.0.0.1:0")];
    let token = admin_token(dir.path(), &env).await;
    let mut server = serve(dir.path(), &[], &env).await;
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(create(&client, &server.url, &token, n).await);
    }
    let key_status = |url: String| {
        let client = client.clone();
        let token = token.clone();
        async move {
            let response = client
                .get(format!("{url}/api/v1/keys/status"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        }
    };
    let before_rotation = key_status(server.url.clone()).await;
    assert_eq!(before_rotation["keys_under_older_roots"], 0);
    assert_eq!(before_rotation["last_rotation_at_ms"], Value::Null);

    // Rotation waits for the server to stop: it must not race a server wrapping new keys.
    let refused = haven(dir.path())
        .args(["keys", "rotate"])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("stop it first"));
    assert!(terminate(&mut server.child).await.success());

    let data = dir.path().join("haven-data");
    let before = root_key_files(&data);
    let rotated = haven(dir.path())
        .args(["keys", "rotate"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&rotated.stderr);
    assert!(rotated.status.success(), "{stderr}");
    assert!(
        stderr.contains("7 keys re-wrapped"),
        "5 patient keys, the blind-index key and the audit signing key: {stderr}"
    );
    let after = root_key_files(&data);
    assert_eq!(after.len(), 1);
    assert_ne!(before, after, "the old root key file is gone");

    let server = serve(dir.path(), &[], &env).await;
    // The status shows the new root, nothing left under the old one, and when it happened.
    let after_rotation = key_status(server.url.clone()).await;
    assert_ne!(
        after_rotation["active_root_key_id"],
        before_rotation["active_root_key_id"]
    );
    assert!(
        after[0].contains(after_rotation["active_root_key_id"].as_str().unwrap()),
        "{after:?} {after_rotation}"
    );
    assert_eq!(after_rotation["keys_under_older_roots"], 0);
    assert!(
        after_rotation["last_rotation_at_ms"].is_i64(),
        "{after_rotation}"
    );
    for id in &ids {
        let response = client
            .get(format!("{}/api/v1/patients/{id}", server.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    // Search still works: the blind-index key survived rotation.
    let found: Value = client
        .get(format!("{}/api/v1/patients?family=Durable3", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["items"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shredding_a_patient_makes_their_record_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("HAVEN_LISTEN", "127.0.0.1:0")];
    let token = admin_token(dir.path(), &env).await;
    let mut server = serve(dir.path(), &[], &env).await;
    let client = reqwest::Client::new();
    let id = create(&client, &server.url, &token, 1).await;
    assert!(terminate(&mut server.child).await.success());

    let unconfirmed = haven(dir.path())
        .args(["keys", "shred-patient", &id])
        .output()
        .await
        .unwrap();
    assert!(!unconfirmed.status.success());
    assert!(String::from_utf8_lossy(&unconfirmed.stderr).contains("--yes"));
    let shredded = haven(dir.path())
        .args(["keys", "shred-patient", &id, "--yes"])
        .output()
        .await
        .unwrap();
    assert!(
        shredded.status.success(),
        "{}",
        String::from_utf8_lossy(&shredded.stderr)
    );

    let server = serve(dir.path(), &[], &env).await;
    let response = client
        .get(format!("{}/api/v1/patients/{id}", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GONE);
}

/// SIGTERM while a request is half sent: the server stops accepting, lets that request
/// finish (201), and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let env = [("HAVEN_LISTEN", "127.0.0.1:0")];
    let token = admin_token(dir.path(), &env).await;
    let mut server = serve(dir.path(), &[], &env).await;
    let address = server.url.trim_start_matches("http://").to_owned();

    let body = patient(7).to_string();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /api/v1/patients HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = server.child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New connections are refused once shutdown has begun.
    assert!(tokio::net::TcpStream::connect(&address).await.is_err());

    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    let status = tokio::time::timeout(Duration::from_secs(30), server.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}

/// Even at debug level, the logs never hold health data or the bearer token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_health_data_or_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("HAVEN_LISTEN", "127.0.0.1:0")];
    let token = admin_token(dir.path(), &env).await;
    let log = dir.path().join("haven.log");
    let mut command = haven(dir.path());
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("HAVEN_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(START_TIMEOUT_SECS), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = line.strip_prefix("listening on ").unwrap().to_owned();

    let client = reqwest::Client::new();
    let marker = "Qwv9LogMarker";
    let response = client
        .post(format!("{url}/api/v1/patients"))
        .bearer_auth(&token)
        .json(&json!({
            "name": { "family": marker, "given": [marker] },
            "birth_date": "1966-06-16",
            "identifiers": [{ "system": "urn:haven:test", "value": marker }]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = client
        .get(format!("{url}/api/v1/patients/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(read.text().await.unwrap().contains(marker));
    let search = client
        .get(format!("{url}/api/v1/patients?family={marker}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(search.status(), StatusCode::OK);
    // A failing request with a body that does not parse, too.
    client
        .post(format!("{url}/api/v1/patients"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!("{{\"name\": \"{marker}\""))
        .send()
        .await
        .unwrap();
    assert!(terminate(&mut child).await.success());

    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("request"), "debug logs were written");
    assert!(!logs.contains(marker), "health data in the logs");
    assert!(!logs.contains("1966-06-16"), "birth date in the logs");
    assert!(!logs.contains(&token), "token in the logs");
}

/// `haven audit verify` passes on an untouched log and, after one entry is changed behind
/// Haven's back, fails naming it; the server then refuses to sign over the altered log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_names_an_altered_entry_and_the_server_refuses_to_sign_over_it() {
    use sqlx::Connection;
    let dir = populated_data_dir(3).await;

    let verified = haven(dir.path())
        .args(["audit", "verify"])
        .output()
        .await
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(stdout.contains("audit log verified: 4 entries"), "{stdout}");
    let vkey = haven(dir.path())
        .args(["audit", "vkey"])
        .output()
        .await
        .unwrap();
    let vkey = String::from_utf8(vkey.stdout).unwrap().trim().to_owned();
    assert!(vkey.starts_with("haven/audit+"));
    // A witness's copy: every checkpoint as a JSON line, each verifying with the vkey.
    let exported = haven(dir.path())
        .args(["audit", "checkpoints"])
        .output()
        .await
        .unwrap();
    assert!(exported.status.success());
    let verifier = haven_audit::checkpoint::CheckpointVerifier::parse_vkey(&vkey).unwrap();
    let exported = String::from_utf8(exported.stdout).unwrap();
    let sizes: Vec<u64> = exported
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).unwrap();
            verifier
                .verify(line["note"].as_str().unwrap())
                .unwrap()
                .size
        })
        .collect();
    assert_eq!(sizes.last(), Some(&4), "{exported}");

    let path = dir.path().join("haven-data").join("haven-audit.db");
    let mut connection = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    for statement in [
        "DROP TRIGGER audit_events_no_update",
        "UPDATE audit_events SET actor = 'someone-else' WHERE seq = 3",
    ] {
        sqlx::query(statement)
            .execute(&mut connection)
            .await
            .unwrap();
    }
    connection.close().await.unwrap();

    let failed = haven(dir.path())
        .args(["audit", "verify", "--vkey", &vkey])
        .output()
        .await
        .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("verification FAILED") && stderr.contains("entry 3 (seq 3) was altered"),
        "{stderr}"
    );

    let refused = haven(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("refusing to sign over it"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// An auditor verifies exported entries elsewhere, with a checkpoint and the public key
/// alone; an altered or truncated export, or another log's key, fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_entries_verify_elsewhere_with_the_public_key_alone() {
    let dir = populated_data_dir(3).await;

    let vkey = haven(dir.path())
        .args(["audit", "vkey"])
        .output()
        .await
        .unwrap();
    let vkey = String::from_utf8(vkey.stdout).unwrap().trim().to_owned();
    let checkpoints = haven(dir.path())
        .args(["audit", "checkpoints"])
        .output()
        .await
        .unwrap();
    let last: Value = serde_json::from_str(
        String::from_utf8(checkpoints.stdout)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    let export = haven(dir.path())
        .args(["audit", "export"])
        .output()
        .await
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let exported = String::from_utf8(export.stdout).unwrap();
    // Four entries under the checkpoint, and the export's own entry after it.
    assert_eq!(exported.lines().count(), 5, "{exported}");
    assert!(
        exported
            .lines()
            .last()
            .unwrap()
            .contains("\"action\":\"export\"")
    );

    // Elsewhere: an empty directory, no data, no keyring.
    let elsewhere = tempfile::tempdir().unwrap();
    let note = elsewhere.path().join("checkpoint.txt");
    std::fs::write(&note, last["note"].as_str().unwrap()).unwrap();
    let verify = |entries: String, key: String| {
        let entries_file = elsewhere.path().join("entries.jsonl");
        std::fs::write(&entries_file, entries).unwrap();
        let note = note.clone();
        let dir = elsewhere.path().to_owned();
        async move {
            haven(&dir)
                .args(["audit", "verify-export", "--vkey", &key, "--entries"])
                .arg(&entries_file)
                .arg("--checkpoint")
                .arg(&note)
                .output()
                .await
                .unwrap()
        }
    };
    let good = verify(exported.clone(), vkey.clone()).await;
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stdout).contains("first 4 entries match"));
    assert!(
        !elsewhere.path().join("haven-data").exists(),
        "nothing was created elsewhere"
    );

    let altered = exported.replacen("\"action\":\"create\"", "\"action\":\"read\"", 1);
    let failed = verify(altered, vkey.clone()).await;
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("do not hash to the checkpoint's root")
    );

    let truncated: String = exported.lines().take(2).map(|l| format!("{l}\n")).collect();
    let failed = verify(truncated, vkey.clone()).await;
    assert!(String::from_utf8_lossy(&failed.stderr).contains("holds 2 entries"));

    let stranger = haven_audit::checkpoint::CheckpointSigner::generate("haven/audit")
        .unwrap()
        .verifier()
        .vkey();
    let failed = verify(exported, stranger).await;
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("checkpoint"));
}

/// Enrols a person of `role` (a patient's invitation names `patient`) through the running
/// binary's API, with TOTP for staff; returns their id and bearer session token.
async fn enrol_person(
    client: &reqwest::Client,
    url: &str,
    admin: &str,
    role: &str,
    patient: Option<&str>,
    login: &str,
) -> (String, String) {
    let invitation: Value = client
        .post(format!("{url}/api/v1/invitations"))
        .bearer_auth(admin)
        .json(&json!({ "role": role, "patient": patient }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let enrolled: Value = client
        .post(format!("{url}/api/v1/auth/enrol"))
        .json(&json!({
            "invitation": invitation["invitation"],
            "login": login,
            "password": "wandering violet lighthouse",
            "transport": "bearer",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = enrolled["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{invitation} {enrolled}"))
        .to_owned();
    if enrolled["state"] != "complete" {
        let setup: Value = client
            .post(format!("{url}/api/v1/auth/totp/setup"))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let code =
            haven_app::identity::totp::code_at_base32(setup["secret"].as_str().unwrap(), now)
                .unwrap();
        let confirmed = client
            .post(format!("{url}/api/v1/auth/totp/confirm"))
            .bearer_auth(&token)
            .json(&json!({ "code": code }))
            .send()
            .await
            .unwrap();
        assert_eq!(confirmed.status(), StatusCode::OK);
    }
    let me: Value = client
        .get(format!("{url}/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (me["actor"].as_str().unwrap().to_owned(), token)
}

/// Registers a device with fresh keys; returns its id and keys.
async fn register_device(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> (String, haven_crypto::e2e::DeviceKeys) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let keys = haven_crypto::e2e::DeviceKeys::generate();
    let registered: Value = client
        .post(format!("{url}/api/v1/devices"))
        .bearer_auth(token)
        .json(&json!({
            "label": "Test device",
            "hpke_public_key": b64.encode(keys.public().hpke),
            "signing_public_key": b64.encode(keys.public().signing),
            "self_signature": b64.encode(keys.self_signature()),
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (registered["id"].as_str().unwrap().to_owned(), keys)
}

/// Every file under `dir`, concatenated.
fn all_file_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            bytes.extend(all_file_bytes(&path));
        } else {
            bytes.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    bytes
}

#[tokio::test]
async fn a_message_leaves_no_plaintext_in_any_file_or_log() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let dir = tempfile::tempdir().unwrap();
    let env = [("HAVEN_LISTEN", "127.0.0.1:0")];
    let admin = admin_token(dir.path(), &env).await;
    // The organisation people are invited into.
    let bootstrapped = haven(dir.path())
        .args(["admin", "bootstrap"])
        .env("HAVEN_LISTEN", "127.0.0.1:0")
        .output()
        .await
        .unwrap();
    assert!(
        bootstrapped.status.success(),
        "{}",
        String::from_utf8_lossy(&bootstrapped.stderr)
    );
    // As verbose as an operator would run it, every line kept.
    let mut command = haven(dir.path());
    command
        .arg("serve")
        .env("HAVEN_LISTEN", "127.0.0.1:0")
        .env("HAVEN_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut all = Vec::new();
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push(line);
        }
        all.join("\n")
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(START_TIMEOUT_SECS), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    let client = reqwest::Client::new();

    let patient = create(&client, &url, &admin, 1).await;
    let (_, patient_token) = enrol_person(
        &client,
        &url,
        &admin,
        "patient",
        Some(&patient),
        "ada@example.org",
    )
    .await;
    let (clinician, clinician_token) = enrol_person(
        &client,
        &url,
        &admin,
        "clinician",
        None,
        "grace@clinic.example",
    )
    .await;
    let added = client
        .put(format!(
            "{url}/api/v1/patients/{patient}/care-team/{clinician}"
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert!(added.status().is_success());
    let (phone, phone_keys) = register_device(&client, &url, &patient_token).await;
    let (desk, desk_keys) = register_device(&client, &url, &clinician_token).await;
    let thread: Value = client
        .post(format!("{url}/api/v1/threads"))
        .bearer_auth(&patient_token)
        .json(&json!({ "patient": patient, "participants": [clinician] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let thread = thread["id"].as_str().unwrap().to_owned();

    let marker = format!("PLANTED-{}", uuid::Uuid::new_v4().simple());
    let message_id = uuid::Uuid::new_v4();
    let body = json!({ "v": 1, "text": format!("Chest pain since {marker}"), "attachments": [] })
        .to_string();
    let sealed = haven_crypto::e2e::seal_message(
        thread.parse().unwrap(),
        message_id,
        body.as_bytes(),
        &[phone_keys.public(), desk_keys.public()],
        &phone_keys,
    )
    .unwrap();
    let sent = client
        .post(format!("{url}/api/v1/threads/{thread}/messages"))
        .bearer_auth(&patient_token)
        .json(&json!({
            "id": message_id.to_string(),
            "sender_device": phone,
            "ciphertext": b64.encode(&sealed.ciphertext),
            "signature": b64.encode(sealed.signature),
            "keys": [
                { "device": phone, "enc": b64.encode(sealed.keys[0].enc), "sealed_key": b64.encode(&sealed.keys[0].sealed_key) },
                { "device": desk, "enc": b64.encode(sealed.keys[1].enc), "sealed_key": b64.encode(&sealed.keys[1].sealed_key) },
            ],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::CREATED);

    // Control: the clinician's device reads the marker through the API.
    let page: Value = client
        .get(format!(
            "{url}/api/v1/threads/{thread}/messages?device={desk}"
        ))
        .bearer_auth(&clinician_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let message = &page["items"][0];
    let opened = desk_keys
        .open_message(
            &haven_crypto::e2e::MessageRef {
                thread_id: thread.parse().unwrap(),
                message_id,
                ciphertext: &b64.decode(message["ciphertext"].as_str().unwrap()).unwrap(),
                signature: &b64.decode(message["signature"].as_str().unwrap()).unwrap(),
            },
            &haven_crypto::e2e::SealedKey {
                enc: b64
                    .decode(message["key"]["enc"].as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap(),
                sealed_key: b64
                    .decode(message["key"]["sealed_key"].as_str().unwrap())
                    .unwrap(),
            },
            &phone_keys.public(),
        )
        .unwrap();
    assert!(String::from_utf8(opened).unwrap().contains(&marker));

    assert!(terminate(&mut child).await.success());
    let logs = logs.await.unwrap();
    assert!(
        logs.contains("request"),
        "the server logged at debug level: {logs:.400}"
    );
    assert!(!logs.contains(&marker), "a message's text reached the logs");
    let files = all_file_bytes(dir.path());
    assert!(
        !files.windows(marker.len()).any(|w| w == marker.as_bytes()),
        "a message's text reached a file of the data directory"
    );
}
