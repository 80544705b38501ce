//! The load generator behind `cargo xtask bench`: a fixed number of keep-alive HTTP/1.1
//! connections, each sending one request after another until the phase's deadline.
//!
//! Five phases run one after the other: `create` posts new patients and records their ids,
//! `read` fetches random recorded ids as an administrator, `care-team read` fetches them as
//! a signed-in clinician on those patients' care teams (so every read first looks up the
//! clinician's relationship to the patient), `search` lists pages of 20 patients, each of
//! which appends 20 durable audit entries (one per patient listed), and `access-log` reads
//! random patients' access logs as an auditor, each entry with its Merkle inclusion proof.
//! Every connection, request and recorded sample is bounded, so a bench ends within its
//! duration plus one request timeout.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::cpu::{CpuMeter, PhaseCpu};

/// Applies to connecting as well as to a whole request, body included.
const REQUEST_TIMEOUT_SECS: u64 = 10;
/// After a failed connect, so a dead server does not turn into a busy loop of errors.
const RECONNECT_DELAY_MILLIS: u64 = 100;
/// Responses are small JSON documents; anything bigger is cut off as an error.
const RESPONSE_BODY_BYTES_MAX: usize = 1024 * 1024;
/// How much of an unexpected response body the report shows.
const ERROR_BODY_CHARS_MAX: usize = 300;
/// Memory bounds for the whole phase, shared out between the connections.
const LATENCY_SAMPLES_MAX: usize = 4_000_000;
const RECORDED_IDS_MAX: usize = 1_000_000;

const PATIENTS_PATH: &str = "/api/v1/patients";

#[derive(Debug)]
pub struct LoadPlan {
    pub address: SocketAddr,
    /// An administrator's token, for the create, read and search phases.
    pub token: String,
    /// An auditor's token, for the access-log phase.
    pub auditor_token: String,
    pub connections: usize,
    pub duration: Duration,
    /// The server's process, whose CPU time each phase reports (None: not reported).
    pub server_pid: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Create,
    Read,
    CareTeamRead,
    Search,
    AccessLog,
    /// Transaction Bundles of whole synthetic charts (`fhir_load`).
    FhirImport,
    /// `POST /fhir/Observation`, one vital sign each.
    FhirCreate,
    /// `GET /fhir/Observation/{id}`.
    FhirRead,
    /// A patient's vital signs since a date, newest first.
    FhirSearch,
}

/// Patients the bench clinician is put on the care team of (one request each).
pub const CARE_TEAM_PATIENTS_MAX: usize = 2000;

/// Entries per access-log page, each with its inclusion proof.
const ACCESS_LOG_PAGE_ENTRIES: u64 = 10;
/// Access-log responses kept per connection, for checking their proofs after the load.
const PROOF_SAMPLES_PER_CONNECTION_MAX: usize = 16;

/// Patients per search page: each search audits every patient it lists, one durable
/// entry each, so the search phase measures durable audit appends.
const SEARCH_PAGE_PATIENTS: u64 = 20;

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Create => "create",
            Phase::Read => "read",
            Phase::CareTeamRead => "care-team read",
            Phase::Search => "search",
            Phase::AccessLog => "access-log",
            Phase::FhirImport => "fhir import (transactions)",
            Phase::FhirCreate => "fhir create",
            Phase::FhirRead => "fhir read",
            Phase::FhirSearch => "fhir search",
        }
    }
}

/// What one phase did, as the bench prints it.
#[derive(Debug)]
pub struct PhaseReport {
    pub(crate) phase: Phase,
    connections: usize,
    elapsed: Duration,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    /// Successful requests only, in microseconds, sorted.
    latencies_micros: Vec<u32>,
    latency_samples_dropped: u64,
    /// For an import: resources written, to report resources per second.
    pub(crate) resources: Option<u64>,
    /// CPU time the server and the bench used over the phase, when it could be read.
    pub(crate) cpu: Option<PhaseCpu>,
}

impl PhaseReport {
    pub(crate) fn successes(&self) -> u64 {
        self.requests - self.errors
    }

    /// A report of work done outside `run_phase` (the FHIR import).
    pub(crate) fn of(
        phase: Phase,
        connections: usize,
        elapsed: Duration,
        mut latencies_micros: Vec<u32>,
        errors: u64,
        first_error: Option<String>,
        resources: u64,
    ) -> PhaseReport {
        latencies_micros.sort_unstable();
        PhaseReport {
            phase,
            connections,
            elapsed,
            requests: latencies_micros.len() as u64 + errors,
            errors,
            first_error,
            latencies_micros,
            latency_samples_dropped: 0,
            resources: Some(resources),
            cpu: None,
        }
    }
}

/// What the load did: a report per phase, and sample access-log responses whose proofs the
/// bench checks (and times) afterwards.
#[derive(Debug)]
pub struct LoadOutcome {
    pub reports: Vec<PhaseReport>,
    pub access_log_samples: Vec<String>,
}

/// Runs the phases in order and reports each.
pub fn run(plan: &LoadPlan) -> Result<LoadOutcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        let (create, ids) = run_phase(plan, Phase::Create, Arc::new(Vec::new()), &plan.token).await;
        if create.successes() == 0 {
            anyhow::bail!("no patient was created, so there is nothing to read\n{create}");
        }
        let ids = Arc::new(ids);
        let (read, _) = run_phase(plan, Phase::Read, ids.clone(), &plan.token).await;
        if read.successes() == 0 {
            anyhow::bail!("no read succeeded\n{create}\n{read}");
        }
        let (clinician, team) = crate::clinician::prepare(plan.address, &plan.token, &ids)
            .await
            .context("signing in a clinician and building their care team")?;
        let (care_team_read, _) = run_phase(
            plan,
            Phase::CareTeamRead,
            Arc::new(team.clone()),
            &clinician,
        )
        .await;
        if care_team_read.successes() == 0 {
            anyhow::bail!("no care-team read succeeded\n{care_team_read}");
        }
        let fhir = crate::fhir_load::run(plan, &clinician, &team).await?;
        let (search, _) = run_phase(plan, Phase::Search, ids.clone(), &plan.token).await;
        if search.successes() == 0 {
            anyhow::bail!("no search succeeded\n{search}");
        }
        let (access_log, samples) =
            run_phase(plan, Phase::AccessLog, ids, &plan.auditor_token).await;
        if access_log.successes() == 0 {
            anyhow::bail!("no access log was read\n{access_log}");
        }
        Ok(LoadOutcome {
            reports: [create, read, care_team_read, search, access_log]
                .into_iter()
                .chain(fhir)
                .collect(),
            access_log_samples: samples,
        })
    })
}

/// What every connection of a phase shares.
#[derive(Debug)]
struct PhaseSetup {
    phase: Phase,
    address: SocketAddr,
    host: String,
    authorization: String,
    deadline: Instant,
    /// Makes identifiers unique across runs against the same data directory.
    run_tag: String,
    ids: Arc<Vec<String>>,
    latency_samples_per_connection_max: usize,
    ids_per_connection_max: usize,
}

/// What one connection did.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    errors: u64,
    first_error: Option<(Instant, String)>,
    latencies_micros: Vec<u32>,
    latency_samples_dropped: u64,
    ids: Vec<String>,
}

impl Tally {
    fn error(&mut self, description: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some((Instant::now(), description()));
        }
    }
}

pub(crate) async fn run_phase(
    plan: &LoadPlan,
    phase: Phase,
    ids: Arc<Vec<String>>,
    bearer: &str,
) -> (PhaseReport, Vec<String>) {
    let connections = plan.connections.max(1);
    let started = Instant::now();
    let setup = Arc::new(PhaseSetup {
        phase,
        address: plan.address,
        host: plan.address.to_string(),
        authorization: format!("Bearer {bearer}"),
        deadline: started + plan.duration,
        run_tag: format!("bench-{}", clock_nanos()),
        ids,
        latency_samples_per_connection_max: LATENCY_SAMPLES_MAX / connections,
        ids_per_connection_max: if phase == Phase::AccessLog {
            PROOF_SAMPLES_PER_CONNECTION_MAX
        } else {
            RECORDED_IDS_MAX / connections
        },
    });

    let cpu = CpuMeter::start(plan.server_pid);
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..connections {
        tasks.spawn(connection_loop(Arc::clone(&setup), index));
    }
    let mut tallies = Vec::with_capacity(connections);
    let mut lost_tasks = 0_u64;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(tally) => tallies.push(tally),
            // A panicking connection task is a bug in the bench; count it, don't hide it.
            Err(_) => lost_tasks += 1,
        }
    }
    let elapsed = started.elapsed();

    let mut report = PhaseReport {
        phase,
        connections,
        elapsed,
        requests: lost_tasks,
        errors: lost_tasks,
        first_error: (lost_tasks > 0).then(|| format!("{lost_tasks} connection tasks panicked")),
        latencies_micros: Vec::new(),
        latency_samples_dropped: 0,
        resources: None,
        cpu: cpu.finish(),
    };
    let mut first_error_at: Option<Instant> = None;
    let mut ids = Vec::new();
    for tally in tallies {
        report.requests += tally.requests;
        report.errors += tally.errors;
        report.latencies_micros.extend(tally.latencies_micros);
        report.latency_samples_dropped += tally.latency_samples_dropped;
        ids.extend(tally.ids);
        if let Some((at, description)) = tally.first_error {
            let earliest = match first_error_at {
                Some(first) => at < first,
                None => report.first_error.is_none(),
            };
            if earliest {
                first_error_at = Some(at);
                report.first_error = Some(description);
            }
        }
    }
    report.latencies_micros.sort_unstable();
    (report, ids)
}

async fn connection_loop(setup: Arc<PhaseSetup>, index: usize) -> Tally {
    let mut tally = Tally::default();
    let mut random = XorShift::seeded(index);
    let mut sender: Option<http1::SendRequest<Full<Bytes>>> = None;
    let request_timeout = Duration::from_secs(REQUEST_TIMEOUT_SECS);
    let mut sequence: u64 = 0;

    while Instant::now() < setup.deadline {
        let mut connection = match sender.take() {
            Some(open) if !open.is_closed() => open,
            _ => match tokio::time::timeout(request_timeout, connect(setup.address)).await {
                Ok(Ok(open)) => open,
                Ok(Err(error)) => {
                    tally.error(|| format!("connect: {error}"));
                    pause_before_reconnect(setup.deadline).await;
                    continue;
                }
                Err(_) => {
                    tally.error(|| format!("connect: timed out after {REQUEST_TIMEOUT_SECS}s"));
                    continue;
                }
            },
        };

        sequence += 1;
        let request = match build_request(&setup, index, sequence, &mut random) {
            Ok(request) => request,
            Err(error) => {
                // Only a bad token or id can get here, and every request would fail alike.
                tally.requests += 1;
                tally.error(|| format!("building the request: {error:#}"));
                break;
            }
        };

        tally.requests += 1;
        let started = Instant::now();
        let exchanged =
            tokio::time::timeout(request_timeout, exchange(&mut connection, request)).await;
        let latency = started.elapsed();
        match exchanged {
            Err(_) => {
                // The connection is in an unknown state; it is dropped.
                tally.error(|| format!("timed out after {REQUEST_TIMEOUT_SECS}s"));
                continue;
            }
            Ok(Err(error)) => {
                tally.error(|| error);
                continue;
            }
            Ok(Ok((status, body))) => {
                match check_response(setup.phase, status, &body) {
                    Ok(id) => {
                        record_latency(
                            &mut tally,
                            latency,
                            setup.latency_samples_per_connection_max,
                        );
                        if let Some(id) = id
                            && tally.ids.len() < setup.ids_per_connection_max
                        {
                            tally.ids.push(id);
                        }
                    }
                    Err(description) => tally.error(|| description),
                }
                sender = Some(connection);
            }
        }
    }
    tally
}

pub(crate) async fn connect(
    address: SocketAddr,
) -> Result<http1::SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|error| error.to_string())?;
    stream
        .set_nodelay(true)
        .map_err(|error| error.to_string())?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| error.to_string())?;
    // Drives the connection until the sender is dropped or the server closes it; its errors
    // surface through the sender.
    tokio::spawn(connection);
    Ok(sender)
}

async fn pause_before_reconnect(deadline: Instant) {
    let resume = Instant::now() + Duration::from_millis(RECONNECT_DELAY_MILLIS);
    tokio::time::sleep_until(resume.min(deadline).into()).await;
}

fn build_request(
    setup: &PhaseSetup,
    index: usize,
    sequence: u64,
    random: &mut XorShift,
) -> Result<Request<Full<Bytes>>> {
    let builder = Request::builder()
        .header(HOST, &setup.host)
        .header(AUTHORIZATION, &setup.authorization);
    let request = match setup.phase {
        Phase::Search => builder
            .method(Method::GET)
            .uri(format!("{PATIENTS_PATH}?limit={SEARCH_PAGE_PATIENTS}"))
            .body(Full::new(Bytes::new()))?,
        Phase::Create => {
            let patient = serde_json::json!({
                "name": { "family": "Bench", "given": ["Load"] },
                "birth_date": "1980-01-01",
                "identifiers": [{
                    "system": "urn:haven:bench",
                    "value": format!("{}-{index}-{sequence}", setup.run_tag),
                }],
                "contacts": [{ "kind": "phone", "value": "+1 555 0100" }],
            });
            builder
                .method(Method::POST)
                .uri(PATIENTS_PATH)
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(patient.to_string())))?
        }
        Phase::FhirImport => anyhow::bail!("the import is run by fhir_load, not by run_phase"),
        Phase::FhirCreate | Phase::FhirRead | Phase::FhirSearch => {
            let id = pick(setup, random)?;
            let (method, uri, body) = crate::fhir_load::request(setup.phase, id, sequence);
            let builder = builder.method(method).uri(uri);
            match body {
                Some(body) => builder
                    .header(CONTENT_TYPE, "application/fhir+json")
                    .body(Full::new(Bytes::from(body)))?,
                None => builder.body(Full::new(Bytes::new()))?,
            }
        }
        Phase::Read | Phase::CareTeamRead | Phase::AccessLog => {
            let count = setup.ids.len();
            let pick = usize::try_from(random.next() % u64::try_from(count.max(1))?)?;
            let id = setup
                .ids
                .get(pick)
                .context("no recorded patient ids to read")?;
            let uri = if setup.phase != Phase::AccessLog {
                format!("{PATIENTS_PATH}/{id}")
            } else {
                format!("{PATIENTS_PATH}/{id}/access-log?limit={ACCESS_LOG_PAGE_ENTRIES}")
            };
            builder
                .method(Method::GET)
                .uri(uri)
                .body(Full::new(Bytes::new()))?
        }
    };
    Ok(request)
}

/// A random recorded id.
fn pick<'a>(setup: &'a PhaseSetup, random: &mut XorShift) -> Result<&'a str> {
    let count = setup.ids.len();
    let at = usize::try_from(random.next() % u64::try_from(count.max(1))?)?;
    setup
        .ids
        .get(at)
        .map(String::as_str)
        .context("no recorded ids to use")
}

pub(crate) async fn exchange(
    connection: &mut http1::SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), String> {
    connection
        .ready()
        .await
        .map_err(|error| format!("connection: {error}"))?;
    let response = connection
        .send_request(request)
        .await
        .map_err(|error| format!("request: {error}"))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), RESPONSE_BODY_BYTES_MAX)
        .collect()
        .await
        .map_err(|error| format!("response body: {error}"))?
        .to_bytes();
    Ok((status, body))
}

/// Ok with the new patient's id for `create`, Ok(None) for `read`, Err with a description
/// of anything unexpected.
fn check_response(phase: Phase, status: StatusCode, body: &[u8]) -> Result<Option<String>, String> {
    if matches!(
        phase,
        Phase::FhirImport | Phase::FhirCreate | Phase::FhirRead | Phase::FhirSearch
    ) {
        return crate::fhir_load::check(phase, status, body);
    }
    let expected = match phase {
        Phase::Create => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    if status != expected {
        return Err(format!(
            "status {status} (expected {expected}): {}",
            body_excerpt(body)
        ));
    }
    if phase == Phase::Search {
        let listed = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|document| document.get("items")?.as_array().map(Vec::len));
        return match listed {
            Some(n) if n as u64 == SEARCH_PAGE_PATIENTS => Ok(None),
            other => Err(format!(
                "a search listed {other:?} patients, not {SEARCH_PAGE_PATIENTS}: {}",
                body_excerpt(body)
            )),
        };
    }
    if phase == Phase::Read {
        return Ok(None);
    }
    if phase == Phase::CareTeamRead {
        // A member of the care team sees the whole record; a masked one means the
        // relationship was not found.
        return match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(document) if document.get("masked").is_none() => Ok(None),
            _ => Err(format!(
                "a care-team read was masked or unreadable: {}",
                body_excerpt(body)
            )),
        };
    }
    if phase == Phase::AccessLog {
        // Every patient's registration was signed into a checkpoint long before: a page
        // that reaches it (no `next`) must carry a proof. A patient read so often that a
        // whole page is newer than the latest checkpoint (the checkpointer trails a heavy
        // search load) has nothing provable yet, and is not a sample.
        let page = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|document| {
                let items = document.get("items")?.as_array()?;
                let proven = items.iter().filter(|item| !item["proof"].is_null()).count();
                Some((proven, document.get("next").is_some_and(|n| !n.is_null())))
            });
        return match page {
            Some((proven, _)) if proven > 0 => Ok(Some(String::from_utf8_lossy(body).into_owned())),
            Some((0, true)) => Ok(None),
            _ => Err(format!(
                "an access log without a proven entry: {}",
                body_excerpt(body)
            )),
        };
    }
    let id = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|document| {
            document
                .get("id")
                .and_then(|id| id.as_str())
                .map(str::to_owned)
        })
        .ok_or_else(|| format!("201 without a string \"id\": {}", body_excerpt(body)))?;
    // The id goes into a URL path as it is.
    let url_safe = !id.is_empty()
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~'));
    if !url_safe {
        return Err(format!("201 with an id that is not URL-safe: {id:?}"));
    }
    Ok(Some(id))
}

fn record_latency(tally: &mut Tally, latency: Duration, samples_max: usize) {
    if tally.latencies_micros.len() < samples_max {
        tally
            .latencies_micros
            .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
    } else {
        tally.latency_samples_dropped += 1;
    }
}

pub(crate) fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    match text.char_indices().nth(ERROR_BODY_CHARS_MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u32], fraction: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a rank between 1 and the sample count"
    )]
    let rank = (fraction * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

fn micros_to_millis(micros: Option<u32>) -> String {
    micros.map_or_else(
        || "-".to_owned(),
        |micros| format!("{:.2}", f64::from(micros) / 1000.0),
    )
}

impl fmt::Display for PhaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        #[allow(clippy::cast_precision_loss, reason = "request counts far below 2^52")]
        let throughput = if secs > 0.0 {
            self.successes() as f64 / secs
        } else {
            0.0
        };
        writeln!(
            f,
            "{}: {} connections for {secs:.1}s",
            self.phase.name(),
            self.connections
        )?;
        writeln!(
            f,
            "  requests    {} ({} ok, {} errors)",
            self.requests,
            self.successes(),
            self.errors
        )?;
        if let Some(first_error) = &self.first_error {
            writeln!(f, "  first error {first_error}")?;
        }
        writeln!(f, "  throughput  {throughput:.1} ok req/s")?;
        if let Some(resources) = self.resources {
            #[allow(clippy::cast_precision_loss, reason = "resource counts far below 2^52")]
            let per_second = if secs > 0.0 {
                resources as f64 / secs
            } else {
                0.0
            };
            writeln!(
                f,
                "  resources   {resources} written, {per_second:.0} resources/s durable"
            )?;
        }
        if self.phase == Phase::Search {
            #[allow(clippy::cast_precision_loss, reason = "a small constant")]
            let appends = throughput * SEARCH_PAGE_PATIENTS as f64;
            writeln!(
                f,
                "  audit       {appends:.0} durable appends/s (each search audits the {SEARCH_PAGE_PATIENTS} patients it lists)"
            )?;
        }
        if let Some(cpu) = self.cpu {
            #[allow(clippy::cast_precision_loss, reason = "request counts far below 2^52")]
            let per_request = match self.successes() {
                0 => "-".to_owned(),
                ok => format!("{:.0}", cpu.server.as_secs_f64() * 1e6 / ok as f64),
            };
            writeln!(
                f,
                "  cpu         server {:.2} CPU-s ({per_request} µs per ok request), bench {:.2} CPU-s",
                cpu.server.as_secs_f64(),
                cpu.bench.as_secs_f64()
            )?;
        }
        let latencies = &self.latencies_micros;
        writeln!(
            f,
            "  latency ms  p50 {}  p90 {}  p99 {}  max {}  (ok requests)",
            micros_to_millis(percentile(latencies, 0.50)),
            micros_to_millis(percentile(latencies, 0.90)),
            micros_to_millis(percentile(latencies, 0.99)),
            micros_to_millis(latencies.last().copied()),
        )?;
        if self.latency_samples_dropped > 0 {
            writeln!(
                f,
                "  (latency from the first {} ok requests; {} more were not sampled)",
                latencies.len(),
                self.latency_samples_dropped
            )?;
        }
        Ok(())
    }
}

fn clock_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or(0)
}

/// xorshift64*: plenty for picking which id to read, and no dependency.
#[derive(Debug)]
struct XorShift(u64);

impl XorShift {
    fn seeded(stream: usize) -> Self {
        #[allow(clippy::cast_possible_truncation, reason = "only the low bits seed")]
        let clock = clock_nanos() as u64;
        let stream = u64::try_from(stream).unwrap_or(0);
        // The state must never be zero.
        Self((clock ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&samples, 0.50), Some(50));
        assert_eq!(percentile(&samples, 0.99), Some(99));
        assert_eq!(percentile(&samples, 1.0), Some(100));
        assert_eq!(percentile(&[7], 0.5), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn a_created_patient_must_come_back_with_a_usable_id() {
        let created = br#"{"id":"0190a4c2-7b1e-7c3d-9a41-1f0e2d3c4b5a","name":{}}"#;
        assert_eq!(
            check_response(Phase::Create, StatusCode::CREATED, created),
            Ok(Some("0190a4c2-7b1e-7c3d-9a41-1f0e2d3c4b5a".to_owned()))
        );
        assert!(check_response(Phase::Create, StatusCode::OK, created).is_err());
        assert!(check_response(Phase::Create, StatusCode::CREATED, br#"{"id":7}"#).is_err());
        assert!(check_response(Phase::Create, StatusCode::CREATED, br#"{"id":"a/b"}"#).is_err());
        assert!(check_response(Phase::Create, StatusCode::CREATED, b"not json").is_err());
    }

    #[test]
    fn an_unexpected_status_reports_the_body() {
        let Err(description) = check_response(
            Phase::Read,
            StatusCode::NOT_FOUND,
            br#"{"code":"not_found"}"#,
        ) else {
            panic!("404 accepted for a read");
        };
        assert!(description.contains("404"));
        assert!(description.contains("not_found"));
        assert_eq!(check_response(Phase::Read, StatusCode::OK, b"{}"), Ok(None));
    }

    #[test]
    fn an_access_log_must_prove_what_a_checkpoint_covers() {
        let proven = br#"{"items":[{"proof":null},{"proof":{"leaf_index":3}}],"next":null}"#;
        assert!(matches!(
            check_response(Phase::AccessLog, StatusCode::OK, proven),
            Ok(Some(_))
        ));
        // A whole page newer than the checkpoint, with older entries beyond it: no sample.
        let hot = br#"{"items":[{"proof":null}],"next":"/api/v1/patients/x/access-log?before=9"}"#;
        assert_eq!(
            check_response(Phase::AccessLog, StatusCode::OK, hot),
            Ok(None)
        );
        // The registration is on the page, and still nothing is proven: a server fault.
        let unproven = br#"{"items":[{"proof":null}],"next":null}"#;
        assert!(check_response(Phase::AccessLog, StatusCode::OK, unproven).is_err());
    }

    #[test]
    fn a_care_team_read_is_never_masked() {
        assert_eq!(
            check_response(Phase::CareTeamRead, StatusCode::OK, b"{}"),
            Ok(None)
        );
        let masked = br#"{"masked":["identifiers","contacts"]}"#;
        assert!(check_response(Phase::CareTeamRead, StatusCode::OK, masked).is_err());
    }

    #[test]
    fn long_error_bodies_are_cut() {
        let long = "x".repeat(ERROR_BODY_CHARS_MAX + 50);
        assert_eq!(
            body_excerpt(long.as_bytes()).chars().count(),
            ERROR_BODY_CHARS_MAX + 1
        );
        assert_eq!(body_excerpt(b"  "), "(empty body)");
    }

    #[test]
    fn the_random_stream_moves() {
        let mut random = XorShift::seeded(3);
        let first = random.next();
        assert_ne!(first, random.next());
    }
}
