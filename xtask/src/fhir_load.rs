//! The FHIR phases of `cargo xtask bench`, run as a clinician on the care team of
//! [`PATIENTS`] patients:
//!
//! - `fhir import`: each patient's synthetic chart (about a hundred resources, from
//!   `haven_fhir::synthetic`) as one `transaction` Bundle, [`IMPORT_CONNECTIONS`] at a time:
//!   durable resources per second;
//! - `fhir create`: one vital sign per request (`POST /fhir/Observation`);
//! - `fhir read`: a random imported Observation by id;
//! - `fhir search`: a patient's vital signs of the last two years, newest first, 20 a page;
//!   once with every connection (throughput), once with [`SEARCH_LATENCY_CONNECTIONS`] (the
//!   latency of a search on a server that is not saturated).
//!
//! Every request is authorized, audited (durably, before anything is opened) and sealed or
//! opened by the server, as in production.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};

use crate::load::{LoadPlan, Phase, PhaseReport, body_excerpt, connect, exchange, run_phase};

/// Patients whose charts are imported and used by the other phases.
pub const PATIENTS: usize = 1000;
/// Connections of the second search phase, which measures latency rather than throughput.
const SEARCH_LATENCY_CONNECTIONS: usize = 4;
/// Transactions in flight during the import.
const IMPORT_CONNECTIONS: usize = 8;
const REQUEST_TIMEOUT_SECS: u64 = 60;

fn year_now() -> i32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0);
    // Average Gregorian year; exact enough to anchor synthetic dates.
    1970 + i32::try_from(secs / 31_556_952).unwrap_or(56)
}

fn heart_rate(patient: &str, sequence: u64) -> String {
    serde_json::json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": format!("{}-06-01T10:00:00Z", year_now()),
        "valueQuantity": {"value": 60 + sequence % 40, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
    .to_string()
}

/// The request of a timed FHIR phase for a patient or resource `id`.
pub(crate) fn request(phase: Phase, id: &str, sequence: u64) -> (Method, String, Option<String>) {
    match phase {
        Phase::FhirCreate => (
            Method::POST,
            "/fhir/Observation".to_owned(),
            Some(heart_rate(id, sequence)),
        ),
        Phase::FhirSearch => (
            Method::GET,
            format!(
                "/fhir/Observation?patient={id}&category=vital-signs&date=ge{}-01-01&_sort=-date&_count=20",
                year_now() - 2
            ),
            None,
        ),
        _ => (Method::GET, format!("/fhir/Observation/{id}"), None),
    }
}

/// Ok with a new resource's id for a create, Ok(None) otherwise; Err describes anything
/// unexpected.
pub(crate) fn check(
    phase: Phase,
    status: StatusCode,
    body: &[u8],
) -> Result<Option<String>, String> {
    let expected = if phase == Phase::FhirCreate {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    if status != expected {
        return Err(format!(
            "status {status} (expected {expected}): {}",
            body_excerpt(body)
        ));
    }
    let document: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| format!("not JSON: {}", body_excerpt(body)))?;
    match phase {
        Phase::FhirCreate => document["id"]
            .as_str()
            .map(|id| Some(id.to_owned()))
            .ok_or_else(|| format!("a created resource without an id: {}", body_excerpt(body))),
        Phase::FhirSearch => {
            let found = document["entry"].as_array().map_or(0, Vec::len);
            if document["type"] == "searchset" && found > 0 {
                Ok(None)
            } else {
                Err(format!("a search found nothing: {}", body_excerpt(body)))
            }
        }
        _ if document["resourceType"] == "Observation" => Ok(None),
        _ => Err(format!("not an Observation: {}", body_excerpt(body))),
    }
}

/// What one import connection did.
#[derive(Default)]
struct Imported {
    latencies_micros: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    resources: u64,
    observations: Vec<String>,
}

async fn import_loop(
    plan: Arc<(std::net::SocketAddr, String, Vec<String>)>,
    next: Arc<AtomicUsize>,
) -> Imported {
    let (address, authorization, patients) = &*plan;
    let mut done = Imported::default();
    let fail = |done: &mut Imported, why: String| {
        done.errors += 1;
        done.first_error.get_or_insert(why);
    };
    let mut connection = None;
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(patient) = patients.get(index) else {
            return done;
        };
        let mut sender = match connection.take() {
            Some(open) => open,
            None => match connect(*address).await {
                Ok(open) => open,
                Err(error) => {
                    fail(&mut done, format!("connect: {error}"));
                    continue;
                }
            },
        };
        let bundle = haven_fhir::synthetic::chart(patient, index as u64, year_now());
        let request = Request::builder()
            .method(Method::POST)
            .uri("/fhir")
            .header(HOST, address.to_string())
            .header(AUTHORIZATION, authorization)
            .header(CONTENT_TYPE, "application/fhir+json")
            // Ids and locations are enough: the import does not read its resources back.
            .header("prefer", "return=minimal")
            .body(Full::new(Bytes::from(bundle.to_string())));
        let Ok(request) = request else {
            fail(&mut done, "building a request".to_owned());
            continue;
        };
        let started = Instant::now();
        let answered = tokio::time::timeout(
            Duration::from_secs(REQUEST_TIMEOUT_SECS),
            exchange(&mut sender, request),
        )
        .await;
        let latency = started.elapsed();
        let (status, body) = match answered {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                fail(&mut done, error);
                continue;
            }
            Err(_) => {
                fail(
                    &mut done,
                    format!("timed out after {REQUEST_TIMEOUT_SECS}s"),
                );
                continue;
            }
        };
        connection = Some(sender);
        if status != StatusCode::OK {
            fail(
                &mut done,
                format!("status {status}: {}", body_excerpt(&body)),
            );
            continue;
        }
        let Ok(answer) = serde_json::from_slice::<serde_json::Value>(&body) else {
            fail(
                &mut done,
                "a transaction answer that is not JSON".to_owned(),
            );
            continue;
        };
        for entry in answer["entry"].as_array().into_iter().flatten() {
            if entry["response"]["status"] == "201 Created" {
                done.resources += 1;
                if let Some(id) = entry["response"]["location"]
                    .as_str()
                    .and_then(|l| l.strip_prefix("Observation/"))
                    .and_then(|l| l.split('/').next())
                {
                    done.observations.push(id.to_owned());
                }
            }
        }
        done.latencies_micros
            .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
    }
}

/// Registers `count` patients with the administrator's token, [`IMPORT_CONNECTIONS`] at a
/// time; their ids.
pub async fn register_patients(
    address: std::net::SocketAddr,
    admin_token: &str,
    count: usize,
) -> Result<Vec<String>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IMPORT_CONNECTIONS {
        let next = Arc::clone(&next);
        let authorization = format!("Bearer {admin_token}");
        tasks.spawn(async move {
            let mut sender = connect(address).await.map_err(anyhow::Error::msg)?;
            let mut ids = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let body = serde_json::json!({
                    "resourceType": "Patient",
                    "name": [{"family": "Bench", "given": ["Chart"]}],
                    "birthDate": "1975-05-05"
                });
                let request = Request::builder()
                    .method(Method::POST)
                    .uri("/fhir/Patient")
                    .header(HOST, address.to_string())
                    .header(AUTHORIZATION, &authorization)
                    .header(CONTENT_TYPE, "application/fhir+json")
                    .body(Full::new(Bytes::from(body.to_string())))?;
                let (status, answer) = exchange(&mut sender, request)
                    .await
                    .map_err(anyhow::Error::msg)?;
                if status != StatusCode::CREATED {
                    bail!("registering a patient: {status} {}", body_excerpt(&answer));
                }
                let answer: serde_json::Value = serde_json::from_slice(&answer)?;
                let id = answer["id"].as_str().unwrap_or_default().to_owned();
                ids.push(id);
            }
            Ok::<_, anyhow::Error>(ids)
        });
    }
    let mut ids = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        ids.extend(joined??);
    }
    Ok(ids)
}

/// Imports a synthetic chart for each of `patients` as `clinician` (on their care teams),
/// [`IMPORT_CONNECTIONS`] transactions at a time; the report and the Observations' ids.
pub async fn import_charts(
    address: std::net::SocketAddr,
    server_pid: Option<u32>,
    clinician: &str,
    patients: &[String],
) -> Result<(PhaseReport, Vec<String>)> {
    let shared = Arc::new((address, format!("Bearer {clinician}"), patients.to_vec()));
    let next = Arc::new(AtomicUsize::new(0));
    let cpu = crate::cpu::CpuMeter::start(server_pid);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..IMPORT_CONNECTIONS {
        tasks.spawn(import_loop(Arc::clone(&shared), Arc::clone(&next)));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    let mut resources = 0;
    let mut observations = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let Ok(done) = joined else {
            errors += 1;
            continue;
        };
        latencies.extend(done.latencies_micros);
        errors += done.errors;
        first_error = first_error.or(done.first_error);
        resources += done.resources;
        observations.extend(done.observations);
    }
    let mut import = PhaseReport::of(
        Phase::FhirImport,
        IMPORT_CONNECTIONS,
        started.elapsed(),
        latencies,
        errors,
        first_error,
        resources,
    );
    import.cpu = cpu.finish();
    Ok((import, observations))
}

/// Imports a chart for each of `patients` (on `clinician`'s care team), then runs the
/// timed phases; the reports in order.
pub async fn run(
    plan: &LoadPlan,
    clinician: &str,
    patients: &[String],
) -> Result<Vec<PhaseReport>> {
    let patients: Vec<String> = patients.iter().take(PATIENTS).cloned().collect();
    if patients.len() < PATIENTS {
        bail!(
            "the FHIR phases need {PATIENTS} patients on the clinician's care team, not {}",
            patients.len()
        );
    }
    let (import, observations) =
        import_charts(plan.address, plan.server_pid, clinician, &patients).await?;
    if observations.is_empty() {
        bail!("the import stored no Observation\n{import}");
    }
    let patients = Arc::new(patients);
    let (create, _) = run_phase(plan, Phase::FhirCreate, Arc::clone(&patients), clinician).await;
    let (read, _) = run_phase(plan, Phase::FhirRead, Arc::new(observations), clinician).await;
    let (search, _) = run_phase(plan, Phase::FhirSearch, Arc::clone(&patients), clinician).await;
    // The latency a person waiting for a search sees, with the server not saturated.
    let few = LoadPlan {
        address: plan.address,
        token: plan.token.clone(),
        auditor_token: plan.auditor_token.clone(),
        connections: SEARCH_LATENCY_CONNECTIONS,
        duration: plan.duration,
        server_pid: plan.server_pid,
    };
    let (search_latency, _) = run_phase(&few, Phase::FhirSearch, patients, clinician).await;
    for report in [&create, &read, &search, &search_latency] {
        if report.successes() == 0 {
            bail!("a FHIR phase did nothing\n{report}");
        }
    }
    Ok(vec![import, create, read, search, search_latency])
}
