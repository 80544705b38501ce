//! A real coturn relay for tests, started as a child process for one test run.
//!
//! Video visits send media through coturn with `use-auth-secret`: Haven hands the browser
//! a time-limited username and an HMAC password ([`haven_crypto::turn`]) and coturn checks
//! them against the secret the two share. Only the real relay can say whether the
//! credentials Haven mints are ones it accepts, so tests start Debian's `/usr/bin/turnserver`
//! (`cargo xtask test` installs it) rather than a stand-in.
//!
//! Each [`Coturn`] is an instance of its own: a fresh random secret, a free port on
//! 127.0.0.1 (UDP and TCP), a small relay port range on 127.0.0.1 found free, and no
//! configuration from `/etc`, so tests running in parallel never meet each other's relay
//! or the system one. It allows loopback peers, which coturn refuses by default, because
//! in tests both ends of a call are on this machine. It is killed when dropped.

use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use haven_crypto::turn::{TurnCredential, turn_credential};
use rand::{Rng, RngCore};

/// Where Debian's coturn package puts the server.
pub const TURNSERVER: &str = "/usr/bin/turnserver";
/// The realm every test relay serves.
pub const REALM: &str = "haven.test";

/// Random bytes in the shared secret (given to coturn as hex).
const SECRET_BYTES: usize = 32;
/// Relay ports per instance, small enough to find free in one piece. A browser allocates
/// one per TURN URL (UDP and TCP) per network interface it gathers on, for each peer
/// connection: four per connection in the browser tests, so a call of four people (twelve
/// connections) takes 48, more while an ICE restart gathers again; with 32, a
/// three-person call under `?relay=only` ran out.
const RELAY_PORT_COUNT: u16 = 128;
/// Relay ranges are drawn from here up to the kernel's ephemeral range, which the OS hands
/// out to port-0 binds and outgoing connections and so could take relay ports from under us.
const RELAY_PORT_FLOOR: u16 = 10_000;
/// Used when `/proc/sys/net/ipv4/ip_local_port_range` cannot be read: Linux's default.
const EPHEMERAL_PORT_FLOOR_DEFAULT: u16 = 32_768;
const FREE_PORT_TRIES_MAX: u32 = 200;
/// Fresh ports are tried again when another process turns out to hold the listening port.
const START_ATTEMPTS_MAX: u32 = 5;
/// How long a started turnserver may take to bind and answer a STUN binding request.
const START_TIMEOUT_MILLIS: u64 = 15_000;
const START_POLL_INTERVAL_MILLIS: u64 = 50;
const STUN_REPLY_TIMEOUT_MILLIS: u64 = 200;
/// How much of the log an error message quotes.
const LOG_TAIL_LINES_MAX: usize = 60;

/// STUN (RFC 8489): a Binding request, the success response, and the magic cookie.
const STUN_BINDING_REQUEST: u16 = 0x0001;
const STUN_BINDING_SUCCESS: u16 = 0x0101;
const STUN_MAGIC_COOKIE: u32 = 0x2112_A442;
const STUN_HEADER_BYTES: usize = 20;

/// A running turnserver, killed on drop.
#[derive(Debug)]
pub struct Coturn {
    child: Child,
    port: u16,
    relay_ports: RangeInclusive<u16>,
    secret: String,
    dir: tempfile::TempDir,
}

impl Coturn {
    /// Starts a relay and waits until it answers a STUN binding request on its port. Blocks
    /// for as long as that takes (well under a second when the machine is idle); panics,
    /// quoting coturn's log, if it does not start.
    pub fn start() -> Self {
        assert!(
            Path::new(TURNSERVER).is_file(),
            "{TURNSERVER} is missing: `cargo xtask test` installs Debian's coturn \
             (apt-get install coturn)"
        );
        let mut secret_bytes = [0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut secret_bytes);
        let secret: String = secret_bytes.iter().map(|b| format!("{b:02x}")).collect();
        let dir = tempfile::tempdir().expect("a temporary directory for coturn");
        for _ in 0..START_ATTEMPTS_MAX {
            match Self::launch(&dir, &secret) {
                Ok((child, port, relay_ports)) => {
                    return Self {
                        child,
                        port,
                        relay_ports,
                        secret,
                        dir,
                    };
                }
                Err(Launch::PortTaken) => continue,
                Err(Launch::Failed(error)) => panic!(
                    "coturn did not start: {error:#}\n--- {}\n{}",
                    dir.path().join(LOG_FILE).display(),
                    log_tail(dir.path())
                ),
            }
        }
        panic!(
            "coturn did not start: another process took its port {START_ATTEMPTS_MAX} times \
             in a row\n{}",
            log_tail(dir.path())
        );
    }

    /// Picks free ports, starts turnserver on them and waits until it answers.
    fn launch(
        dir: &tempfile::TempDir,
        secret: &str,
    ) -> Result<(Child, u16, RangeInclusive<u16>), Launch> {
        let port = free_listening_port().map_err(Launch::Failed)?;
        let relay_ports = free_relay_ports().map_err(Launch::Failed)?;
        for stale in [LOG_FILE, OUTPUT_FILE, PID_FILE] {
            let _ = std::fs::remove_file(dir.path().join(stale));
        }
        let output = File::create(dir.path().join(OUTPUT_FILE))
            .context("create coturn's output file")
            .map_err(Launch::Failed)?;
        let output_too = output
            .try_clone()
            .context("share coturn's output file")
            .map_err(Launch::Failed)?;
        let mut child = Command::new(TURNSERVER)
            .args(arguments(dir.path(), port, &relay_ports, secret))
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(output_too)
            .spawn()
            .with_context(|| format!("could not run {TURNSERVER}"))
            .map_err(Launch::Failed)?;
        match wait_until_answering(&mut child, port) {
            Ok(()) => Ok((child, port, relay_ports)),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(error)
            }
        }
    }

    /// The port it listens on, for UDP and TCP, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The ports it relays from, on 127.0.0.1.
    pub fn relay_ports(&self) -> RangeInclusive<u16> {
        self.relay_ports.clone()
    }

    /// The shared secret (hex text; coturn keys the HMAC with these characters).
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// TURN URIs (RFC 7065) for a browser's `iceServers`: UDP, then TCP.
    pub fn urls(&self) -> Vec<String> {
        ["udp", "tcp"]
            .iter()
            .map(|transport| format!("turn:127.0.0.1:{}?transport={transport}", self.port))
            .collect()
    }

    /// A credential for the opaque `name`, valid for `ttl_secs` from now by the real clock,
    /// which is the one coturn checks expiry against.
    pub fn credential(&self, name: &str, ttl_secs: u32) -> TurnCredential {
        turn_credential(
            self.secret.as_bytes(),
            name,
            unix_now_secs() + i64::from(ttl_secs),
        )
    }

    /// coturn's log, verbose: one line per request it processed, with its user and outcome.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    /// The log as written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A test failing while the relay ran (a call that never connected, say) shows what
        // the relay refused: the log goes with the temporary directory.
        if std::thread::panicking() {
            let log = self.log();
            let refusals: Vec<&str> = log
                .lines()
                .filter(|line| line.to_ascii_lowercase().contains("error"))
                .take(LOG_TAIL_LINES_MAX)
                .collect();
            eprintln!(
                "coturn refused {} request(s) while the test ran{}\n{}",
                refusals.len(),
                if refusals.is_empty() { "" } else { ":" },
                refusals.join("\n")
            );
        }
    }
}

const LOG_FILE: &str = "turnserver.log";
/// What turnserver writes to stdout and stderr outside its log.
const OUTPUT_FILE: &str = "turnserver.out";
const PID_FILE: &str = "turnserver.pid";
const USER_DB_FILE: &str = "turndb";

/// turnserver's command line; every setting is here, none comes from a file.
fn arguments(
    dir: &Path,
    port: u16,
    relay_ports: &RangeInclusive<u16>,
    secret: &str,
) -> Vec<String> {
    let in_dir = |name: &str| dir.join(name).display().to_string();
    vec![
        // No configuration file: /etc/turnserver.conf is the system relay's.
        "-n".into(),
        // Listen on loopback only, UDP and TCP on one port.
        "--listening-ip=127.0.0.1".into(),
        format!("--listening-port={port}"),
        // Relay from loopback too, within ports found free.
        "--relay-ip=127.0.0.1".into(),
        format!("--min-port={}", relay_ports.start()),
        format!("--max-port={}", relay_ports.end()),
        // Both ends of a test call are on this machine; coturn refuses loopback peers unless told.
        "--allow-loopback-peers".into(),
        // Haven's time-limited credentials: HMAC-SHA1 of "<expiry>:<name>" under the secret.
        "--use-auth-secret".into(),
        format!("--static-auth-secret={secret}"),
        format!("--realm={REALM}"),
        // Browsers reach the relay over plain UDP and TCP here: no certificates, no TLS or
        // DTLS listeners, and no telnet CLI on port 5766.
        "--no-tls".into(),
        "--no-dtls".into(),
        "--no-cli".into(),
        // One log file under this name (no date or pid appended), not also on stdout, with
        // a line per request so tests can see what the relay decided and why.
        format!("--log-file={}", in_dir(LOG_FILE)),
        "--simple-log".into(),
        "--no-stdout-log".into(),
        "--verbose".into(),
        // Kept out of /var: the pid file, and the SQLite user database coturn opens even
        // when the static secret is the only credential.
        format!("--pidfile={}", in_dir(PID_FILE)),
        format!("--userdb={}", in_dir(USER_DB_FILE)),
    ]
}

/// Why a launch did not give a running relay.
enum Launch {
    /// Another process holds a socket on the listening port. coturn binds with
    /// `SO_REUSEPORT`, so a second turnserver on the same port starts quietly and the
    /// kernel splits packets between the two; the launch is retried on fresh ports.
    PortTaken,
    Failed(anyhow::Error),
}

fn wait_until_answering(child: &mut Child, port: u16) -> Result<(), Launch> {
    let deadline = Instant::now() + Duration::from_millis(START_TIMEOUT_MILLIS);
    loop {
        if let Some(status) = child
            .try_wait()
            .context("check on turnserver")
            .map_err(Launch::Failed)?
        {
            return Err(Launch::Failed(anyhow!("turnserver exited ({status})")));
        }
        let listening = sockets_on_port(port).map_err(Launch::Failed)?;
        let ours = socket_inodes_of(child.id()).map_err(Launch::Failed)?;
        if listening.iter().any(|socket| !ours.contains(&socket.inode)) {
            return Err(Launch::PortTaken);
        }
        let bound_udp = listening.iter().any(|socket| socket.udp);
        let bound_tcp = listening
            .iter()
            .any(|socket| !socket.udp && socket.listening);
        if bound_udp && bound_tcp && answers_stun_binding(port).map_err(Launch::Failed)? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Launch::Failed(anyhow!(
                "turnserver did not answer a STUN binding request on 127.0.0.1:{port} \
                 within {START_TIMEOUT_MILLIS} ms"
            )));
        }
        std::thread::sleep(Duration::from_millis(START_POLL_INTERVAL_MILLIS));
    }
}

/// Sends a STUN binding request over UDP; true if a binding success response for it came back.
fn answers_stun_binding(port: u16) -> Result<bool> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).context("a UDP socket")?;
    socket
        .set_read_timeout(Some(Duration::from_millis(STUN_REPLY_TIMEOUT_MILLIS)))
        .context("a UDP read time-out")?;
    let mut transaction_id = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut transaction_id);
    let mut request = Vec::with_capacity(STUN_HEADER_BYTES);
    request.extend(STUN_BINDING_REQUEST.to_be_bytes());
    request.extend(0u16.to_be_bytes()); // no attributes
    request.extend(STUN_MAGIC_COOKIE.to_be_bytes());
    request.extend(transaction_id);
    socket
        .send_to(&request, (Ipv4Addr::LOCALHOST, port))
        .context("send a STUN binding request")?;
    let mut response = [0u8; 1500];
    let length = match socket.recv(&mut response) {
        Ok(length) => length,
        // Not listening yet (ICMP port unreachable) or no answer in time: ask again later.
        Err(_) => return Ok(false),
    };
    Ok(length >= STUN_HEADER_BYTES
        && response[0..2] == STUN_BINDING_SUCCESS.to_be_bytes()
        && response[4..8] == STUN_MAGIC_COOKIE.to_be_bytes()
        && response[8..20] == transaction_id)
}

/// A socket the kernel lists with a given local port.
struct PortSocket {
    inode: u64,
    udp: bool,
    /// A TCP socket in the LISTEN state.
    listening: bool,
}

/// Every socket whose local port is `port`, whatever its address, from `/proc/net`.
fn sockets_on_port(port: u16) -> Result<Vec<PortSocket>> {
    const TCP_LISTEN: &str = "0A";
    let mut sockets = Vec::new();
    for (table, udp) in [
        ("tcp", false),
        ("tcp6", false),
        ("udp", true),
        ("udp6", true),
    ] {
        let path = format!("/proc/net/{table}");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            // Without IPv6 there are no v6 tables.
            Err(_) if table.ends_with('6') => continue,
            Err(error) => return Err(error).with_context(|| format!("read {path}")),
        };
        // "sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode"
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            let inode: u64 = inode.parse().unwrap_or(0);
            // Inode 0: a connection in TIME_WAIT, which holds the port for nobody.
            if local_port == Some(port) && inode != 0 {
                sockets.push(PortSocket {
                    inode,
                    udp,
                    listening: !udp && *state == TCP_LISTEN,
                });
            }
        }
    }
    Ok(sockets)
}

/// The inodes of the sockets process `pid` has open.
fn socket_inodes_of(pid: u32) -> Result<Vec<u64>> {
    let dir = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&dir).with_context(|| format!("read {dir}"))?;
    Ok(entries
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect())
}

/// A port the OS offers on 127.0.0.1 for TCP that is free for UDP too.
fn free_listening_port() -> Result<u16> {
    for _ in 0..FREE_PORT_TRIES_MAX {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .context("bind a TCP port on 127.0.0.1")?
            .port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port on 127.0.0.1 free for both UDP and TCP in {FREE_PORT_TRIES_MAX} tries")
}

/// `RELAY_PORT_COUNT` consecutive ports below the ephemeral range, each free for UDP and TCP.
fn free_relay_ports() -> Result<RangeInclusive<u16>> {
    let ceiling = ephemeral_port_floor();
    if ceiling < RELAY_PORT_FLOOR + RELAY_PORT_COUNT {
        bail!("the ephemeral port range starts at {ceiling}, leaving no room for relay ports");
    }
    let mut rng = rand::thread_rng();
    for _ in 0..FREE_PORT_TRIES_MAX {
        let first = rng.gen_range(RELAY_PORT_FLOOR..=ceiling - RELAY_PORT_COUNT);
        let ports = first..=first + (RELAY_PORT_COUNT - 1);
        let all_free = ports.clone().all(|port| {
            UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
                && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        });
        if all_free {
            return Ok(ports);
        }
    }
    bail!(
        "no {RELAY_PORT_COUNT} consecutive free ports between {RELAY_PORT_FLOOR} and {ceiling} \
         in {FREE_PORT_TRIES_MAX} tries"
    )
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_port_floor() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(EPHEMERAL_PORT_FLOOR_DEFAULT)
}

fn unix_now_secs() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970");
    i64::try_from(since_epoch.as_secs()).expect("seconds since 1970 fit in an i64")
}

/// The end of coturn's log and whatever it printed outside it, for error messages.
fn log_tail(dir: &Path) -> String {
    let read = |name: &str| {
        let mut text = String::new();
        if let Ok(mut file) = File::open(dir.join(name)) {
            let _ = file.read_to_string(&mut text);
        }
        text
    };
    let log = read(LOG_FILE);
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES_MAX)..].join("\n");
    format!(
        "{tail}\n--- {} (stdout and stderr)\n{}",
        dir.join(OUTPUT_FILE).display(),
        read(OUTPUT_FILE)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_another_process_holds_is_reported_taken_not_ready() {
        // Stands in for a turnserver whose port someone else already holds.
        let mut stand_in = Command::new("sleep").arg("30").spawn().expect("run sleep");
        let held = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("a UDP socket");
        let port = held.local_addr().expect("its address").port();

        let outcome = wait_until_answering(&mut stand_in, port);
        let _ = stand_in.kill();
        let _ = stand_in.wait();

        assert!(matches!(outcome, Err(Launch::PortTaken)));
    }

    #[test]
    fn the_sockets_on_a_port_are_found_with_their_owner() {
        let port = free_listening_port().expect("a free port");
        let _tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("a TCP listener");
        let _udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).expect("a UDP socket");

        let sockets = sockets_on_port(port).expect("the socket tables");
        let ours = socket_inodes_of(std::process::id()).expect("our sockets");

        assert!(sockets.iter().any(|socket| socket.udp));
        assert!(sockets.iter().any(|socket| socket.listening));
        assert!(sockets.iter().all(|socket| ours.contains(&socket.inode)));
    }
}
