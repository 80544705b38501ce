//! The SIEM export against a real syslog-over-TLS collector started in the test: a TLS
//! listener (certificates from a test CA made with `rcgen`) that requires a client
//! certificate, as an IHE ATNA audit record repository does, and records every RFC 5425
//! frame it reads, per connection. Haven runs with the export pointed at it, on SQLite and
//! on PostgreSQL.
//!
//! What a SIEM operator would notice: every entry arrives, in log order, with the right
//! fields and framing; nothing is lost while the collector is down or across a restart of
//! Haven; a collector that cannot prove who it is, or that refuses Haven, gets nothing and
//! costs nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use haven_app::siem::{SYSLOG_MESSAGE_BYTES_MAX, SyslogHostname, syslog_message};
use haven_audit::StoredAuditEvent;
use haven_domain::Role;
use haven_test_support::{Backend, TestServer};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use reqwest::StatusCode;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

haven_test_support::on_every_backend!(
    every_entry_reaches_the_collector_once_in_order_with_its_fields,
    entries_made_while_the_collector_is_down_arrive_when_it_comes_up,
    a_restart_of_haven_neither_skips_nor_resends_entries,
    a_collector_with_an_untrusted_certificate_is_sent_nothing,
    a_collector_that_refuses_the_client_certificate_loses_nothing,
);

/// The syslog HOSTNAME Haven is configured with.
const HOSTNAME: &str = "haven-test";
/// Long enough for a loaded machine and a few reconnect backoffs; polling ends as soon as
/// the condition holds.
const DEADLINE_SECS: u64 = 120;
const POLL_MS: u64 = 50;
/// A family name that must never appear at the collector: the export carries ids and
/// codes, not health data.
const FAMILY_MARKER: &str = "Siemcanary";

// ------------------------------------------------------------------------------------------
// Certificates
// ------------------------------------------------------------------------------------------

/// A certificate authority.
struct Ca {
    certificate: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        Self {
            certificate,
            issuer: Issuer::new(params, key),
        }
    }

    fn issue(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> (rcgen::Certificate, KeyPair) {
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        (params.signed_by(&key, &self.issuer).unwrap(), key)
    }
}

/// The deployment's PKI: one CA for the collector and for Haven's client certificate, and
/// the files Haven is configured with.
struct Pki {
    ca: Ca,
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let ca = Ca::new("Haven test CA");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.certificate.pem()).unwrap();
        let (client, key) = ca.issue("haven-test", ExtendedKeyUsagePurpose::ClientAuth);
        std::fs::write(dir.path().join("client.pem"), client.pem()).unwrap();
        std::fs::write(dir.path().join("client.key"), key.serialize_pem()).unwrap();
        Self { ca, dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Haven's settings for a collector on this port, verified as `localhost`.
    fn haven_settings(&self, port: u16) -> Vec<(String, String)> {
        [
            ("HAVEN_SIEM_COLLECTOR", format!("127.0.0.1:{port}")),
            ("HAVEN_SIEM_SERVER_NAME", "localhost".to_owned()),
            ("HAVEN_SIEM_HOSTNAME", HOSTNAME.to_owned()),
            (
                "HAVEN_SIEM_CA_CERT",
                self.file("ca.pem").display().to_string(),
            ),
            (
                "HAVEN_SIEM_CLIENT_CERT",
                self.file("client.pem").display().to_string(),
            ),
            (
                "HAVEN_SIEM_CLIENT_KEY",
                self.file("client.key").display().to_string(),
            ),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
    }
}

/// A collector's TLS configuration: a `localhost` certificate from `server_ca`, and client
/// certificates required, from `client_ca`.
fn collector_tls(server_ca: &Ca, client_ca: &Ca) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca.certificate.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let (certificate, key) = server_ca.issue("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from(certificate.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    Arc::new(config)
}

// ------------------------------------------------------------------------------------------
// The collector
// ------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Received {
    /// The messages of each TLS connection, in the order connections were accepted.
    sessions: Vec<Vec<String>>,
    /// Connections whose TLS handshake failed.
    failed_handshakes: usize,
    /// Anything that broke RFC 5425 framing.
    framing_errors: Vec<String>,
}

/// A syslog-over-TLS collector on 127.0.0.1.
struct Collector {
    port: u16,
    received: Arc<Mutex<Received>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Collector {
    async fn start(tls: Arc<rustls::ServerConfig>) -> Self {
        Self::start_on(0, tls).await
    }

    /// Listens on `port` (0: any free port).
    async fn start_on(port: u16, tls: Arc<rustls::ServerConfig>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Received::default()));
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let accept = {
            let received = received.clone();
            let tasks = tasks.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
                    let acceptor = acceptor.clone();
                    let received = received.clone();
                    let connection = tokio::spawn(async move {
                        let stream = match acceptor.accept(tcp).await {
                            Ok(stream) => stream,
                            Err(_) => {
                                received.lock().unwrap().failed_handshakes += 1;
                                return;
                            }
                        };
                        let session = {
                            let mut received = received.lock().unwrap();
                            received.sessions.push(Vec::new());
                            received.sessions.len() - 1
                        };
                        let mut reader = BufReader::new(stream);
                        loop {
                            match read_frame(&mut reader).await {
                                Ok(Some(message)) => {
                                    received.lock().unwrap().sessions[session].push(message);
                                }
                                Ok(None) => return,
                                Err(error) => {
                                    received.lock().unwrap().framing_errors.push(error);
                                    return;
                                }
                            }
                        }
                    });
                    tasks.lock().unwrap().push(connection);
                }
            })
        };
        tasks.lock().unwrap().push(accept);
        Self {
            port,
            received,
            tasks,
        }
    }

    /// Goes down as a crashed collector does: the listener and every connection close.
    async fn stop(self) {
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.tasks.lock().unwrap());
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }

    fn snapshot<T>(&self, look: impl FnOnce(&Received) -> T) -> T {
        look(&self.received.lock().unwrap())
    }

    /// Every message, connection after connection.
    fn messages(&self) -> Vec<String> {
        self.snapshot(|r| r.sessions.concat())
    }
}

/// Reads one `MSG-LEN SP SYSLOG-MSG` frame; `None` at a clean end between frames.
async fn read_frame(reader: &mut (impl AsyncBufRead + Unpin)) -> Result<Option<String>, String> {
    let mut digits = String::new();
    loop {
        let byte = match reader.read_u8().await {
            Ok(byte) => byte,
            // The end of the connection, between frames: Haven closed (or went away).
            Err(_) if digits.is_empty() => return Ok(None),
            Err(error) => return Err(format!("connection ended inside MSG-LEN: {error}")),
        };
        match byte {
            b' ' => break,
            b'0'..=b'9' if digits.len() < 10 => digits.push(char::from(byte)),
            other => return Err(format!("byte {other:#04x} in MSG-LEN after {digits:?}")),
        }
    }
    // MSG-LEN = NONZERO-DIGIT 0*9DIGIT
    if digits.is_empty() || digits.starts_with('0') {
        return Err(format!(
            "MSG-LEN {digits:?} does not start with a nonzero digit"
        ));
    }
    let length: usize = digits.parse().unwrap();
    if length > SYSLOG_MESSAGE_BYTES_MAX {
        return Err(format!("a {length}-byte message exceeds the limit"));
    }
    let mut message = vec![0; length];
    reader
        .read_exact(&mut message)
        .await
        .map_err(|error| format!("connection ended inside a {length}-byte message: {error}"))?;
    String::from_utf8(message)
        .map(Some)
        .map_err(|error| error.to_string())
}

/// A port nothing listens on, for a collector that is not up yet.
async fn free_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    listener.local_addr().unwrap().port()
}

// ------------------------------------------------------------------------------------------
// Messages
// ------------------------------------------------------------------------------------------

/// An RFC 5424 message taken apart independently of Haven's formatter.
#[derive(Debug)]
struct Parsed {
    pri: u16,
    version: String,
    hostname: String,
    app_name: String,
    procid: String,
    msgid: String,
    sd_id: String,
    params: BTreeMap<String, String>,
    msg: String,
}

fn parse(message: &str) -> Parsed {
    let mut header = message.splitn(7, ' ');
    let mut field = || header.next().unwrap().to_owned();
    let pri_version = field();
    let (pri, version) = pri_version
        .strip_prefix('<')
        .and_then(|rest| rest.split_once('>'))
        .unwrap();
    let _timestamp = field();
    let hostname = field();
    let app_name = field();
    let procid = field();
    let msgid = field();
    let rest = field();

    let rest = rest.strip_prefix('[').unwrap();
    let (sd_id, mut rest) = rest.split_at(rest.find([' ', ']']).unwrap());
    let mut params = BTreeMap::new();
    loop {
        if let Some(after) = rest.strip_prefix(']') {
            rest = after;
            break;
        }
        rest = rest.strip_prefix(' ').unwrap();
        let (name, after) = rest.split_once("=\"").unwrap();
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (index, c) = chars.next().unwrap();
            match c {
                '\\' => value.push(chars.next().unwrap().1),
                '"' => break index + 1,
                c => value.push(c),
            }
        };
        assert!(
            params.insert(name.to_owned(), value).is_none(),
            "{name} twice"
        );
        rest = &after[end..];
    }
    Parsed {
        pri: pri.parse().unwrap(),
        version: version.to_owned(),
        hostname,
        app_name,
        procid,
        msgid,
        sd_id: sd_id.to_owned(),
        params,
        msg: rest.strip_prefix(' ').unwrap().to_owned(),
    }
}

fn seq_of(message: &str) -> i64 {
    parse(message).params["seq"].parse().unwrap()
}

/// Checks a message against the stored entry it says it is, field by field.
fn assert_matches(message: &str, entry: &StoredAuditEvent) {
    let parsed = parse(message);
    let event = &entry.event;
    let allowed = event.outcome.as_str() == "allowed";
    assert_eq!(parsed.pri, if allowed { 85 } else { 84 }, "{message}");
    assert_eq!(
        (
            parsed.version.as_str(),
            parsed.hostname.as_str(),
            parsed.app_name.as_str(),
            parsed.procid.as_str()
        ),
        ("1", HOSTNAME, "haven", "-")
    );
    assert_eq!(parsed.msgid, event.action.as_str());
    assert_eq!(parsed.sd_id, "haven@32473");
    let expected: BTreeMap<String, String> = [
        ("seq", Some(entry.seq.to_string())),
        ("actor", event.actor.clone()),
        ("role", event.role.clone()),
        ("organisation", event.organisation.clone()),
        ("session", event.session.clone()),
        ("client_app", event.client_app.clone()),
        ("action", Some(event.action.as_str().to_owned())),
        ("patient", event.patient.map(|p| p.to_string())),
        ("resource_type", event.resource_type.clone()),
        ("resource_id", event.resource_id.clone()),
        ("outcome", Some(event.outcome.as_str().to_owned())),
        ("reason", Some(event.reason.clone())),
        ("purpose_of_use", event.purpose_of_use.clone()),
        ("request_id", event.origin.request_id.clone()),
        ("source_ip", event.origin.source_ip.clone()),
        ("user_agent", event.origin.user_agent.clone()),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|value| (name.to_owned(), value)))
    .collect();
    assert_eq!(parsed.params, expected, "{message}");
    assert_eq!(
        parsed.msg,
        format!("audit {} {}", event.action.as_str(), event.outcome.as_str())
    );
    // And byte for byte what the formatter makes of it (the timestamp included).
    assert_eq!(
        message,
        syslog_message(entry, &SyslogHostname::parse(HOSTNAME).unwrap())
    );
}

/// Checks at-least-once, in-order delivery of `entries` (the whole log) to a collector
/// that should hold everything after the first `already_delivered` entries: within a
/// connection, each entry is the one after the previous in the log; a new connection may
/// resend from an earlier entry (what was not yet counted as delivered) but never starts
/// past the next one; and in the end the last entry arrived. Every message must match its
/// stored entry. Returns how many messages were resends.
fn assert_every_entry_in_order(
    collector: &Collector,
    entries: &[StoredAuditEvent],
    already_delivered: usize,
) -> usize {
    let (sessions, errors) = collector.snapshot(|r| (r.sessions.clone(), r.framing_errors.clone()));
    assert_eq!(errors, Vec::<String>::new(), "framing errors");
    // Positions in the log, not seq arithmetic: PostgreSQL sequences may leave gaps.
    let position: BTreeMap<i64, usize> = entries
        .iter()
        .enumerate()
        .map(|(index, entry)| (entry.seq, index + 1))
        .collect();
    let mut highest = already_delivered;
    let mut resends = 0;
    for session in &sessions {
        let mut previous: Option<usize> = None;
        for message in session {
            let seq = seq_of(message);
            let at = *position
                .get(&seq)
                .unwrap_or_else(|| panic!("seq {seq} is not in the log"));
            match previous {
                Some(previous) => assert_eq!(at, previous + 1, "a gap or reordering at {seq}"),
                None => assert!(
                    at <= highest + 1,
                    "a new connection started at entry {at}, after {highest}: entries skipped"
                ),
            }
            if at <= highest {
                resends += 1;
            }
            highest = highest.max(at);
            previous = Some(at);
            assert_matches(message, &entries[at - 1]);
            assert!(!message.contains(FAMILY_MARKER), "health data in {message}");
            assert!(!message.contains("1970-01-0"), "a birth date in {message}");
        }
    }
    assert_eq!(highest, entries.len(), "entries missing");
    resends
}

// ------------------------------------------------------------------------------------------
// Haven
// ------------------------------------------------------------------------------------------

async fn start_haven(backend: Backend, settings: &[(String, String)]) -> TestServer {
    let settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    TestServer::start_with(backend, &settings).await
}

/// What a clinic does in a minute: register and read a patient, search, a nurse trying
/// to register someone (denied), a stale token (refused). Each leaves audit entries.
async fn clinic_activity(server: &TestServer, round: u32) {
    let token = &server.admin_token;
    let created = server
        .client
        .post(server.endpoint("/api/v1/patients"))
        .bearer_auth(token)
        .json(&json!({
            "name": { "family": format!("{FAMILY_MARKER}{round}"), "given": ["Ada"] },
            "birth_date": format!("1970-01-0{}", round % 9 + 1),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = server
        .client
        .get(server.endpoint(&format!("/api/v1/patients/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let search = server
        .client
        .get(server.endpoint(&format!("/api/v1/patients?family={FAMILY_MARKER}{round}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(search.status(), StatusCode::OK);
    let nurse = server.token(Role::Nurse, 1).await;
    let denied = server
        .client
        .post(server.endpoint("/api/v1/patients"))
        .bearer_auth(&nurse)
        .header("user-agent", "ward-tablet/2.1 \"night shift\" [beta]")
        .json(&json!({
            "name": { "family": format!("{FAMILY_MARKER}Denied") },
            "birth_date": "1970-01-01",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let refused = server
        .client
        .get(server.endpoint("/api/v1/patients"))
        .bearer_auth("hvn_thisisnotatokenthisisnotatokenthisisnota")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

/// Polls until `done` holds, failing with `what` after a generous deadline.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(DEADLINE_SECS);
    while !done().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}

/// Waits until the collector holds every entry now in the log.
async fn until_delivered(server: &TestServer, collector: &Collector) -> Vec<StoredAuditEvent> {
    let entries = server.audit_entries().await;
    let last = entries.last().unwrap().seq;
    eventually("every entry at the collector", async || {
        collector
            .messages()
            .last()
            .is_some_and(|message| seq_of(message) >= last)
    })
    .await;
    entries
}

fn cursor_name(collector_port: u16) -> String {
    format!("127.0.0.1:{collector_port}")
}

// ------------------------------------------------------------------------------------------
// Scenarios
// ------------------------------------------------------------------------------------------

async fn every_entry_reaches_the_collector_once_in_order_with_its_fields(backend: Backend) {
    let pki = Pki::new();
    let collector = Collector::start(collector_tls(&pki.ca, &pki.ca)).await;
    let server = start_haven(backend, &pki.haven_settings(collector.port)).await;
    for round in 0..3 {
        clinic_activity(&server, round).await;
    }
    let entries = until_delivered(&server, &collector).await;
    assert!(entries.len() >= 15, "{} entries", entries.len());
    assert!(entries.iter().any(|e| e.event.outcome.as_str() == "denied"));
    assert!(
        entries.iter().any(|e| e.event.origin.user_agent.as_deref()
            == Some("ward-tablet/2.1 \"night shift\" [beta]")),
        "the escaped user agent is exercised"
    );

    // One connection, each entry exactly once, in order.
    let resends = assert_every_entry_in_order(&collector, &entries, 0);
    assert_eq!(resends, 0);
    assert_eq!(collector.snapshot(|r| r.sessions.len()), 1);
    assert_eq!(collector.messages().len(), entries.len());

    // The cursor catches up once the connection has stayed open a moment.
    let last = entries.last().unwrap().seq;
    let store = server.app().store().clone();
    let name = cursor_name(collector.port);
    eventually("the cursor records the last entry", async || {
        store.siem_cursor(&name).await.unwrap() == Some(last)
    })
    .await;
    server.stop().await;
    collector.stop().await;
}

async fn entries_made_while_the_collector_is_down_arrive_when_it_comes_up(backend: Backend) {
    let pki = Pki::new();
    let port = free_port().await;
    let server = start_haven(backend, &pki.haven_settings(port)).await;
    // Requests are answered as usual while the collector is unreachable.
    for round in 0..2 {
        clinic_activity(&server, round).await;
    }
    assert_eq!(
        server
            .app()
            .store()
            .siem_cursor(&cursor_name(port))
            .await
            .unwrap(),
        None
    );

    let collector = Collector::start_on(port, collector_tls(&pki.ca, &pki.ca)).await;
    clinic_activity(&server, 2).await;
    let entries = until_delivered(&server, &collector).await;
    let resends = assert_every_entry_in_order(&collector, &entries, 0);
    assert_eq!(resends, 0, "nothing was sent before, so nothing is resent");
    assert_eq!(collector.messages().len(), entries.len());
    server.stop().await;
    collector.stop().await;
}

async fn a_restart_of_haven_neither_skips_nor_resends_entries(backend: Backend) {
    let pki = Pki::new();
    let tls = collector_tls(&pki.ca, &pki.ca);
    let collector = Collector::start(tls.clone()).await;
    let port = collector.port;
    let mut server = start_haven(backend, &pki.haven_settings(port)).await;
    clinic_activity(&server, 0).await;
    let before = until_delivered(&server, &collector).await;

    // A clean restart: Haven closes the connection, the collector answers, and the
    // stored cursor is exact, so the new process starts right after the last entry.
    server.restart().await;
    clinic_activity(&server, 1).await;
    let entries = until_delivered(&server, &collector).await;
    let sessions = collector.snapshot(|r| r.sessions.clone());
    assert_eq!(sessions.len(), 2, "one connection per Haven process");
    assert_eq!(
        seq_of(&sessions[1][0]),
        entries[before.len()].seq,
        "the restarted Haven resumed right after what was sent"
    );
    assert_eq!(assert_every_entry_in_order(&collector, &entries, 0), 0);
    let delivered_before_outage = entries.len();

    // Now the collector goes down; entries pile up; Haven restarts without having reached
    // it; then it comes back. Everything arrives. What the stopped collector had read but
    // Haven had not yet counted as delivered may come again; nothing from before the
    // clean restart does.
    collector.stop().await;
    clinic_activity(&server, 2).await;
    server.restart().await;
    clinic_activity(&server, 3).await;
    let collector = Collector::start_on(port, tls).await;
    let entries = until_delivered(&server, &collector).await;
    assert_every_entry_in_order(&collector, &entries, delivered_before_outage);
    let first_after_outage = seq_of(&collector.messages()[0]);
    assert!(
        first_after_outage > before.last().unwrap().seq,
        "entry {first_after_outage} was resent although a clean shutdown had recorded it"
    );
    server.stop().await;
    collector.stop().await;
}

async fn a_collector_with_an_untrusted_certificate_is_sent_nothing(backend: Backend) {
    let pki = Pki::new();
    // An impostor: a certificate for the right name, from a CA Haven does not trust; it
    // would accept Haven's client certificate.
    let impostor_ca = Ca::new("Impostor CA");
    let collector = Collector::start(collector_tls(&impostor_ca, &pki.ca)).await;
    let server = start_haven(backend, &pki.haven_settings(collector.port)).await;
    clinic_activity(&server, 0).await;

    // Haven keeps trying (with backoff), and each time refuses to finish the handshake.
    eventually("Haven tried the impostor twice", async || {
        collector.snapshot(|r| r.failed_handshakes) >= 2
    })
    .await;
    clinic_activity(&server, 1).await;
    assert_eq!(collector.snapshot(|r| r.sessions.len()), 0);
    assert_eq!(collector.messages(), Vec::<String>::new());
    assert_eq!(
        server
            .app()
            .store()
            .siem_cursor(&cursor_name(collector.port))
            .await
            .unwrap(),
        None,
        "nothing counts as sent"
    );
    server.stop().await;
    collector.stop().await;
}

async fn a_collector_that_refuses_the_client_certificate_loses_nothing(backend: Backend) {
    let pki = Pki::new();
    // The collector is genuine but trusts only clients of another CA. With TLS 1.3 Haven
    // learns of the refusal only after its side of the handshake is done and a page may
    // already be on its way: that page must not count as delivered.
    let other_clients = Ca::new("Other clients CA");
    let refusing = Collector::start(collector_tls(&pki.ca, &other_clients)).await;
    let port = refusing.port;
    let server = start_haven(backend, &pki.haven_settings(port)).await;
    clinic_activity(&server, 0).await;
    eventually("Haven tried the refusing collector twice", async || {
        refusing.snapshot(|r| r.failed_handshakes) >= 2
    })
    .await;
    assert_eq!(refusing.messages(), Vec::<String>::new());
    assert_eq!(
        server
            .app()
            .store()
            .siem_cursor(&cursor_name(port))
            .await
            .unwrap(),
        None,
        "pages written into the refused connection do not count"
    );

    // The collector's administrator fixes its trust store: everything arrives, from the
    // first entry.
    refusing.stop().await;
    let collector = Collector::start_on(port, collector_tls(&pki.ca, &pki.ca)).await;
    clinic_activity(&server, 1).await;
    let entries = until_delivered(&server, &collector).await;
    assert_eq!(seq_of(&collector.messages()[0]), entries[0].seq);
    assert_eq!(assert_every_entry_in_order(&collector, &entries, 0), 0);
    server.stop().await;
    collector.stop().await;
}
