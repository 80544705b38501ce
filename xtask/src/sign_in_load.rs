//! The sign-in part of `cargo xtask bench`: what a flood of wrong passwords does to everyone
//! else, and whether an unknown login can be told from a wrong password by its timing.
//!
//! - **Flood**: [`FLOOD_ATTEMPTERS`] connections, each from its own loopback address
//!   (127.0.1.x, so the per-address throttle does not simply turn them away), send wrong
//!   passwords as fast as they are answered while a normal reader fetches one patient over
//!   and over. The reader's latency is measured alone first, then under the flood.
//! - **Enumeration**: sign-ins for a login that exists (wrong password) and for one that
//!   does not, interleaved, each from a fresh address; the two latency distributions are
//!   printed side by side. Nothing is asserted: the figures are for the reader.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;

/// Concurrent wrong-password senders.
pub const FLOOD_ATTEMPTERS: usize = 200;
/// Sign-ins of each kind timed for the enumeration comparison.
const ENUMERATION_SAMPLES: usize = 60;
const RESPONSE_BODY_BYTES_MAX: usize = 64 * 1024;
const REQUEST_TIMEOUT_SECS: u64 = 30;

#[derive(Debug)]
pub struct SignInPlan {
    pub address: SocketAddr,
    /// An administrator's token: creates the patient the reader reads, and reads it.
    pub reader_token: String,
    /// An invitation to enrol the user whose login the flood attacks.
    pub invitation: String,
    pub duration: Duration,
}

/// The account the flood attacks.
const LOGIN: &str = "bench-user@haven.invalid";
const PASSWORD: &str = "quiet harbour lanterns at dawn";

/// What the runs need set up: a user with a password, a patient to read.
struct Prepared {
    patient: String,
}

async fn prepare(plan: &SignInPlan) -> Result<Prepared> {
    let mut sender = connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), plan.address).await?;
    let enrol = serde_json::json!({
        "invitation": plan.invitation, "login": LOGIN, "password": PASSWORD, "transport": "bearer"
    });
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/auth/enrol")
        .header(HOST, plan.address.to_string())
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(enrol.to_string())))?;
    let (status, _) = send_reading(&mut sender, request).await?;
    if status != StatusCode::CREATED {
        bail!("enrolling the bench user answered {status}");
    }
    let patient = serde_json::json!({ "name": { "family": "Flood" }, "birth_date": "1980-01-01" });
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/patients")
        .header(HOST, plan.address.to_string())
        .header(CONTENT_TYPE, "application/json")
        .header(AUTHORIZATION, format!("Bearer {}", plan.reader_token))
        .body(Full::new(Bytes::from(patient.to_string())))?;
    let (status, body) = send_reading(&mut sender, request).await?;
    if status != StatusCode::CREATED {
        bail!("creating the patient to read answered {status}");
    }
    let id = serde_json::from_slice::<serde_json::Value>(&body)?["id"]
        .as_str()
        .context("a created patient without an id")?
        .to_owned();
    Ok(Prepared { patient: id })
}

/// Connects from `source` (any loopback address) to the server.
async fn connect_from(
    source: IpAddr,
    address: SocketAddr,
) -> Result<http1::SendRequest<Full<Bytes>>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let stream = socket.connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn send_reading(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes)> {
    sender.ready().await?;
    let response = tokio::time::timeout(
        Duration::from_secs(REQUEST_TIMEOUT_SECS),
        sender.send_request(request),
    )
    .await
    .context("timed out")??;
    let status = response.status();
    let body = Limited::new(response.into_body(), RESPONSE_BODY_BYTES_MAX)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("response body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

async fn send(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<StatusCode> {
    Ok(send_reading(sender, request).await?.0)
}

fn sign_in_request(
    address: SocketAddr,
    login: &str,
    password: &str,
) -> Result<Request<Full<Bytes>>> {
    let body = serde_json::json!({ "login": login, "password": password, "transport": "bearer" });
    Ok(Request::builder()
        .method(Method::POST)
        .uri("/api/v1/auth/sign-in")
        .header(HOST, address.to_string())
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))?)
}

/// Reads the patient over and over until `stop`, returning latencies in microseconds.
async fn read_loop(
    plan: Arc<SignInPlan>,
    patient: Arc<str>,
    stop: Arc<AtomicBool>,
) -> Result<Vec<u32>> {
    let mut sender = connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), plan.address).await?;
    let mut latencies = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let request = Request::builder()
            .method(Method::GET)
            .uri(format!("/api/v1/patients/{patient}"))
            .header(HOST, plan.address.to_string())
            .header(AUTHORIZATION, format!("Bearer {}", plan.reader_token))
            .body(Full::new(Bytes::new()))?;
        let started = Instant::now();
        let status = send(&mut sender, request).await?;
        if status != StatusCode::OK {
            bail!("a read answered {status}");
        }
        latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    latencies.sort_unstable();
    Ok(latencies)
}

fn p(sorted: &[u32], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a rank between 1 and the sample count"
    )]
    let rank = (fraction * sorted.len() as f64).ceil().max(1.0) as usize;
    f64::from(sorted[rank.min(sorted.len()) - 1]) / 1000.0
}

/// Runs the flood and the enumeration comparison and prints what they showed.
pub fn run(plan: SignInPlan) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(run_async(Arc::new(plan)))
}

async fn run_async(plan: Arc<SignInPlan>) -> Result<()> {
    let prepared = prepare(&plan).await?;
    let patient: Arc<str> = Arc::from(prepared.patient.as_str());
    // The reader alone.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(read_loop(plan.clone(), patient.clone(), stop.clone()));
    tokio::time::sleep(plan.duration).await;
    stop.store(true, Ordering::Relaxed);
    let alone = reader.await??;

    // The reader under a flood of wrong passwords from many addresses.
    let stop = Arc::new(AtomicBool::new(false));
    let answered: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let mut flood = Vec::with_capacity(FLOOD_ATTEMPTERS);
    for n in 0..FLOOD_ATTEMPTERS {
        let plan = plan.clone();
        let stop = stop.clone();
        let answered = answered.clone();
        flood.push(tokio::spawn(async move {
            let octets = u8::try_from(n % 250).unwrap_or(0) + 1;
            let source = IpAddr::V4(Ipv4Addr::new(127, 0, 1, octets));
            let Ok(mut sender) = connect_from(source, plan.address).await else {
                return;
            };
            while !stop.load(Ordering::Relaxed) {
                let Ok(request) = sign_in_request(plan.address, LOGIN, "not the right password")
                else {
                    return;
                };
                let slot = match send(&mut sender, request).await {
                    Ok(StatusCode::UNAUTHORIZED) => 0,
                    Ok(StatusCode::TOO_MANY_REQUESTS) => 1,
                    Ok(StatusCode::SERVICE_UNAVAILABLE) => 2,
                    _ => 3,
                };
                answered[slot].fetch_add(1, Ordering::Relaxed);
                if slot == 3 {
                    return;
                }
            }
        }));
    }
    let reader = tokio::spawn(read_loop(plan.clone(), patient.clone(), stop.clone()));
    tokio::time::sleep(plan.duration).await;
    stop.store(true, Ordering::Relaxed);
    let flooded = reader.await??;
    for task in flood {
        let _ = task.await;
    }
    let count = |i: usize| answered[i].load(Ordering::Relaxed);
    println!(
        "sign-in flood: {FLOOD_ATTEMPTERS} connections from {} addresses sending wrong passwords for {:.0}s",
        FLOOD_ATTEMPTERS.min(250),
        plan.duration.as_secs_f64()
    );
    println!(
        "  answered    {} invalid_credentials, {} throttled (429), {} busy (503), {} failed",
        count(0),
        count(1),
        count(2),
        count(3)
    );
    println!(
        "  a normal read alone        p50 {:.2} ms  p99 {:.2} ms  ({} reads)",
        p(&alone, 0.5),
        p(&alone, 0.99),
        alone.len()
    );
    println!(
        "  a normal read under flood  p50 {:.2} ms  p99 {:.2} ms  ({} reads)",
        p(&flooded, 0.5),
        p(&flooded, 0.99),
        flooded.len()
    );

    // Unknown login vs wrong password, interleaved, each from a fresh address.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut known = Vec::with_capacity(ENUMERATION_SAMPLES);
    let mut unknown = Vec::with_capacity(ENUMERATION_SAMPLES);
    for n in 0..ENUMERATION_SAMPLES * 2 {
        let octets = u8::try_from(n % 250).unwrap_or(0) + 1;
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 2, octets));
        let mut sender = connect_from(source, plan.address).await?;
        let login = if n % 2 == 0 {
            LOGIN.to_owned()
        } else {
            format!("nobody-{n}@bench.invalid")
        };
        let request = sign_in_request(plan.address, &login, "not the right password")?;
        let started = Instant::now();
        let status = send(&mut sender, request).await?;
        let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        if status != StatusCode::UNAUTHORIZED {
            bail!("an enumeration probe answered {status}");
        }
        if n % 2 == 0 {
            known.push(micros);
        } else {
            unknown.push(micros);
        }
    }
    known.sort_unstable();
    unknown.sort_unstable();
    println!(
        "sign-in timing, {ENUMERATION_SAMPLES} each: wrong password p50 {:.2} ms p90 {:.2} ms; unknown login p50 {:.2} ms p90 {:.2} ms",
        p(&known, 0.5),
        p(&known, 0.9),
        p(&unknown, 0.5),
        p(&unknown, 0.9)
    );
    Ok(())
}
