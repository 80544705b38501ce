//! The credentials Haven mints, held against the real relay: coturn's own test client,
//! `turnutils_uclient`, allocates with them and relays between two allocations, and a
//! credential under another secret or past its expiry gets no allocation.
//!
//! `turnutils_uclient -y` runs two clients that each allocate a relay address and send to
//! the other's, so every packet it counts as received went through the relay. It exits
//! with 0 and prints `tot_recv_msgs=N` when it relayed, and exits non-zero after
//! "Cannot complete Allocation" when the relay refused (it prints no error code, so the
//! refusal's 401 is read from coturn's log, where each request's user and outcome appear).

#![allow(clippy::expect_used)]

use std::fs::File;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use haven_crypto::turn::{TurnCredential, turn_credential};
use haven_test_support::coturn::Coturn;

const UCLIENT: &str = "/usr/bin/turnutils_uclient";
/// Messages each of the two clients sends.
const MESSAGES: u32 = 10;
const MESSAGE_BYTES: u32 = 64;
/// A run sends for well under a second, then waits for stragglers for a few.
const UCLIENT_TIMEOUT_SECS: u64 = 30;
const POLL_INTERVAL_MILLIS: u64 = 50;
/// coturn writes its log from its own threads; a line may land just after the client exits.
const LOG_WAIT_MILLIS: u64 = 5_000;
const CREDENTIAL_TTL_SECS: u32 = 600;

#[derive(Debug, Clone, Copy)]
enum Transport {
    Udp,
    Tcp,
}

/// What `turnutils_uclient` did.
#[derive(Debug)]
struct Run {
    status: ExitStatus,
    /// stdout and stderr together.
    output: String,
}

impl Run {
    /// The totals it prints once it has finished: (sent, received) messages.
    fn totals(&self) -> Option<(u64, u64)> {
        let line = self
            .output
            .lines()
            .find(|line| line.contains("start_mclient: tot_send_msgs="))?;
        let number_after = |key: &str| -> Option<u64> {
            let rest = &line[line.find(key)? + key.len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        Some((
            number_after("tot_send_msgs=")?,
            number_after("tot_recv_msgs=")?,
        ))
    }
}

/// Runs two clients against `coturn` with `credential` and waits, at most
/// `UCLIENT_TIMEOUT_SECS`, for them to finish.
fn uclient(coturn: &Coturn, credential: &TurnCredential, transport: Transport) -> Run {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let output_path = dir.path().join("uclient.out");
    let output = File::create(&output_path).expect("an output file");
    let mut command = Command::new(UCLIENT);
    if let Transport::Tcp = transport {
        command.arg("-t");
    }
    command
        // Two clients that relay to each other; no second (RTCP) allocation each.
        .args(["-y", "-c"])
        .args([
            "-n",
            &MESSAGES.to_string(),
            "-l",
            &MESSAGE_BYTES.to_string(),
        ])
        .args(["-u", &credential.username, "-w", &credential.password])
        .args(["-p", &coturn.port().to_string()])
        .args(["-e", "127.0.0.1", "127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(output.try_clone().expect("a second handle"))
        .stderr(output);
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("{UCLIENT} must be installed (coturn): {error}"));
    let deadline = Instant::now() + Duration::from_secs(UCLIENT_TIMEOUT_SECS);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for turnutils_uclient") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "turnutils_uclient did not finish within {UCLIENT_TIMEOUT_SECS} s:\n{}",
                std::fs::read_to_string(&output_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MILLIS));
    };
    Run {
        status,
        output: std::fs::read_to_string(&output_path).expect("turnutils_uclient's output"),
    }
}

/// Waits, at most `LOG_WAIT_MILLIS`, for coturn's log to hold `needle`; returns the log.
fn log_showing(coturn: &Coturn, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_millis(LOG_WAIT_MILLIS);
    loop {
        let log = coturn.log();
        if log.contains(needle) || Instant::now() >= deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MILLIS));
    }
}

fn unix_now_secs() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970");
    i64::try_from(since_epoch.as_secs()).expect("seconds fit in an i64")
}

fn assert_relays(transport: Transport) {
    let coturn = Coturn::start();
    let credential = coturn.credential("visit-member-1", CREDENTIAL_TTL_SECS);
    let run = uclient(&coturn, &credential, transport);

    assert!(
        run.status.success(),
        "turnutils_uclient failed ({}):\n{}\n--- coturn's log:\n{}",
        run.status,
        run.output,
        coturn.log()
    );
    let (sent, received) = run
        .totals()
        .unwrap_or_else(|| panic!("no totals in turnutils_uclient's output:\n{}", run.output));
    assert_eq!(sent, u64::from(2 * MESSAGES), "{}", run.output);
    assert!(
        received > 0,
        "nothing came through the relay:\n{}",
        run.output
    );

    let allocated = format!(
        "user <{}>: incoming packet ALLOCATE processed, success",
        credential.username
    );
    let log = log_showing(&coturn, &allocated);
    assert!(log.contains(&allocated), "{log}");
    // The clients' peers are each other's relayed addresses, in this relay's range.
    let relayed_peer = coturn
        .relay_ports()
        .any(|port| log.contains(&format!("peer 127.0.0.1:{port} ")));
    assert!(
        relayed_peer,
        "no peer in {:?}:\n{log}",
        coturn.relay_ports()
    );
}

fn assert_refused(coturn: &Coturn, credential: &TurnCredential) {
    let run = uclient(coturn, credential, Transport::Udp);

    assert!(!run.status.success(), "allocated:\n{}", run.output);
    assert!(
        run.output.contains("Cannot complete Allocation"),
        "{}",
        run.output
    );
    assert_eq!(run.totals(), None, "{}", run.output);

    // The relay saw this very username and answered 401, not something else going wrong.
    let refused = format!(
        "user <{}>: incoming packet message processed, error 401: Unauthorized",
        credential.username
    );
    let log = log_showing(coturn, &refused);
    assert!(log.contains(&refused), "{log}");
    assert!(
        !log.contains(&format!(
            "user <{}>: incoming packet ALLOCATE processed, success",
            credential.username
        )),
        "{log}"
    );
}

#[test]
fn a_fresh_credential_allocates_and_relays_over_udp() {
    assert_relays(Transport::Udp);
}

#[test]
fn a_fresh_credential_allocates_and_relays_over_tcp() {
    assert_relays(Transport::Tcp);
}

#[test]
fn a_credential_under_another_secret_is_refused() {
    let coturn = Coturn::start();
    let expires_at_secs = unix_now_secs() + i64::from(CREDENTIAL_TTL_SECS);
    let genuine = turn_credential(
        coturn.secret().as_bytes(),
        "visit-member-1",
        expires_at_secs,
    );
    let forged = turn_credential(
        b"not the secret Haven shares with coturn",
        "visit-member-1",
        expires_at_secs,
    );
    assert_eq!(forged.username, genuine.username);
    assert_ne!(forged.password, genuine.password);

    assert_refused(&coturn, &forged);
}

#[test]
fn an_expired_credential_is_refused() {
    let coturn = Coturn::start();
    let expired = turn_credential(
        coturn.secret().as_bytes(),
        "visit-member-1",
        unix_now_secs() - 60,
    );

    assert_refused(&coturn, &expired);
}

#[test]
fn the_relay_holds_its_port_until_dropped_and_offers_udp_and_tcp() {
    let coturn = Coturn::start();
    let port = coturn.port();
    assert_eq!(
        coturn.urls(),
        [
            format!("turn:127.0.0.1:{port}?transport=udp"),
            format!("turn:127.0.0.1:{port}?transport=tcp"),
        ]
    );
    assert_eq!(coturn.secret().len(), 64);
    assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_err());
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_err());

    drop(coturn);

    assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok());
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
}
