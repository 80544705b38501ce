//! The video-visit phase of `cargo xtask bench`: many concurrent visits' signaling sockets
//! (`GET /api/v1/visits/{appointment}/signal`) held open on one server, and the latency of
//! what members relay to each other through it.
//!
//! Set-up, through the public API only: patients and clinicians enrolled from invitations
//! (clinicians with TOTP, each on one patient's care team), and [`VISITS_PER_PATIENT`]
//! appointments per patient booked by their clinician, starting soon. Each visit is then
//! entered as people do: the clinician's socket first (straight into the call), the
//! patient's next (into the waiting room), and the clinician admits the patient. So every
//! session went through the policy, the audit log and the waiting room; people take part
//! in several visits at once only so that the set-up does not spend minutes hashing
//! passwords.
//!
//! Measured:
//! - sessions established (handshake to admission) per second;
//! - the server's resident memory with every session open and idle, against before any
//!   was opened: memory per idle session;
//! - relay latency: for `seconds`, each patient sends candidate-sized signals to their
//!   clinician, paced to [`RELAY_SIGNALS_PER_SEC`] in all, each carrying the instant it
//!   left; timed to the instant the clinician's socket reads it (p50, p95, p99, max), and
//!   signals that never came.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use hyper::header::AUTHORIZATION;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::clinician::{Client, text};

/// Visits each patient (and their clinician) takes part in at once.
pub const VISITS_PER_PATIENT: usize = 10;
/// Signals a second over all visits in the relay phase: a settled call sends a few a second
/// (media state, chat); a call being set up sends a burst of candidates.
pub const RELAY_SIGNALS_PER_SEC: u64 = 2_000;
/// The payload of each signal: the size of an ICE candidate line.
const SIGNAL_PAYLOAD_BYTES: usize = 200;
/// Sockets opened at once while setting up.
const SETUP_CONNECTIONS: usize = 16;
/// How long a frame that must come may take during set-up.
const FRAME_WAIT_SECS: u64 = 20;
/// How long after the last signal the bench waits for those still on their way.
const DRAIN_WAIT_SECS: u64 = 3;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One visit in progress: both sockets and the patient's member number.
struct Visit {
    clinician: Socket,
    patient: Socket,
    clinician_member: u64,
}

/// What the phase measured.
#[derive(Debug)]
pub struct VisitsReport {
    engine: String,
    sessions: usize,
    establish_secs: f64,
    rss_before_kib: u64,
    rss_idle_kib: u64,
    sent: u64,
    delivered: u64,
    refused: u64,
    latencies_micros: Vec<u32>,
    seconds: f64,
}

impl VisitsReport {
    pub fn delivered(&self) -> u64 {
        self.delivered
    }
}

impl std::fmt::Display for VisitsReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut sorted = self.latencies_micros.clone();
        sorted.sort_unstable();
        #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
        let per_session_kib =
            self.rss_idle_kib.saturating_sub(self.rss_before_kib) as f64 / self.sessions as f64;
        #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
        let rate = self.sessions as f64 / self.establish_secs;
        writeln!(f, "visits ({}):", self.engine)?;
        writeln!(
            f,
            "  {} signaling sessions in {} visits, established (entered, admitted) in {:.1} s: {:.0} sessions/s",
            self.sessions,
            self.sessions / 2,
            self.establish_secs,
            rate
        )?;
        writeln!(
            f,
            "  server RSS {:.1} MiB before, {:.1} MiB with every session idle: {:.1} KiB per idle session",
            self.rss_before_kib as f64 / 1024.0,
            self.rss_idle_kib as f64 / 1024.0,
            per_session_kib
        )?;
        #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
        let relayed = self.delivered as f64 / self.seconds;
        writeln!(
            f,
            "  relay at {RELAY_SIGNALS_PER_SEC}/s for {:.0} s: {} sent, {} delivered ({relayed:.0}/s), {} refused, {} lost",
            self.seconds,
            self.sent,
            self.delivered,
            self.refused,
            self.sent.saturating_sub(self.delivered + self.refused)
        )?;
        writeln!(
            f,
            "  relay latency ms: p50 {}  p95 {}  p99 {}  max {}",
            crate::messaging_load::millis(&sorted, 0.50),
            crate::messaging_load::millis(&sorted, 0.95),
            crate::messaging_load::millis(&sorted, 0.99),
            crate::messaging_load::millis(&sorted, 1.0),
        )
    }
}

/// Resident memory of a process, KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc status")
}

async fn open(address: SocketAddr, token: &str, appointment: &str) -> Result<Socket> {
    let mut request =
        format!("ws://{address}/api/v1/visits/{appointment}/signal").into_client_request()?;
    request
        .headers_mut()
        .insert(AUTHORIZATION, format!("Bearer {token}").parse()?);
    let (socket, _) = tokio::time::timeout(
        Duration::from_secs(FRAME_WAIT_SECS),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .context("the handshake timed out")??;
    Ok(socket)
}

/// The next JSON frame of `kind`, skipping others.
async fn frame_of(socket: &mut Socket, kind: &str) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(FRAME_WAIT_SECS);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, socket.next())
            .await
            .with_context(|| format!("no `{kind}` frame in time"))?;
        match frame {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(text.as_str())?;
                if value["type"] == kind {
                    return Ok(value);
                }
                if value["type"] == "error" {
                    bail!("the server refused a frame: {value}");
                }
            }
            Some(Ok(Message::Close(close))) => bail!("the socket closed: {close:?}"),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
            None => bail!("the socket ended"),
        }
    }
}

/// Enters one visit as people do and returns its two sockets.
async fn enter(
    address: SocketAddr,
    clinician: &str,
    patient: &str,
    appointment: &str,
) -> Result<Visit> {
    let mut host = open(address, clinician, appointment).await?;
    let welcome = frame_of(&mut host, "welcome").await?;
    let clinician_member = welcome["you"].as_u64().context("a welcome without `you`")?;
    let mut guest = open(address, patient, appointment).await?;
    let welcome = frame_of(&mut guest, "welcome").await?;
    let member = welcome["you"].as_u64().context("a welcome without `you`")?;
    // The lobby names the patient once they wait.
    loop {
        let lobby = frame_of(&mut host, "lobby").await?;
        if lobby["waiting"]
            .as_array()
            .is_some_and(|w| w.iter().any(|m| m["id"] == member))
        {
            break;
        }
    }
    host.send(Message::Text(
        json!({ "type": "admit", "member": member })
            .to_string()
            .into(),
    ))
    .await?;
    frame_of(&mut guest, "admitted").await?;
    frame_of(&mut host, "joined").await?;
    Ok(Visit {
        clinician: host,
        patient: guest,
        clinician_member,
    })
}

/// Patients, clinicians and appointments: (clinician token, patient token, appointment).
async fn set_up(
    address: SocketAddr,
    admin_token: &str,
    visits: usize,
) -> Result<Vec<(String, String, String)>> {
    let patients_count = visits.div_ceil(VISITS_PER_PATIENT);
    let mut admin = Client::connect(address).await?;
    let mut patients = Vec::with_capacity(patients_count);
    for index in 0..patients_count {
        let (status, created) = admin
            .call(
                Method::POST,
                "/api/v1/patients",
                Some(admin_token),
                Some(json!({
                    "name": { "family": "Visitor", "given": [format!("Bench{index}")] },
                    "birth_date": "1979-09-09",
                })),
            )
            .await?;
        if status != StatusCode::CREATED {
            bail!("creating a patient answered {status}: {created}");
        }
        patients.push(text(&created, "id")?.to_owned());
    }
    let next = Arc::new(AtomicU64::new(0));
    let patients = Arc::new(patients);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let next = Arc::clone(&next);
        let patients = Arc::clone(&patients);
        let admin_token = admin_token.to_owned();
        tasks.spawn(async move {
            let mut done = Vec::new();
            loop {
                let index = usize::try_from(next.fetch_add(1, Ordering::Relaxed))?;
                let Some(patient) = patients.get(index) else {
                    return Ok::<_, anyhow::Error>(done);
                };
                let clinician =
                    crate::clinician::enrol(address, &admin_token, std::slice::from_ref(patient))
                        .await?;
                let person =
                    crate::messaging_load::enrol_patient(address, &admin_token, patient, index)
                        .await?;
                done.push((index, clinician.token, person.token));
            }
        });
    }
    let mut people = Vec::with_capacity(patients_count);
    while let Some(joined) = tasks.join_next().await {
        people.extend(joined??);
    }
    people.sort_by_key(|(index, ..)| *index);

    // Visits start in ten minutes, for twenty: open from now on.
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let start_ms = now_ms + 10 * 60 * 1000;
    let start = haven_fhir::Instant::from_unix_ms(start_ms)
        .as_str()
        .to_owned();
    let end = haven_fhir::Instant::from_unix_ms(start_ms + 20 * 60 * 1000)
        .as_str()
        .to_owned();
    let mut client = Client::connect(address).await?;
    let mut booked = Vec::with_capacity(visits);
    'booking: for (index, clinician, patient_token) in &people {
        for _ in 0..VISITS_PER_PATIENT {
            if booked.len() == visits {
                break 'booking;
            }
            let (status, created) = client
                .call(
                    Method::POST,
                    "/fhir/Appointment",
                    Some(clinician),
                    Some(json!({
                        "resourceType": "Appointment",
                        "status": "booked",
                        "start": start,
                        "end": end,
                        "participant": [{
                            "actor": { "reference": format!("Patient/{}", patients[*index]) },
                            "status": "accepted",
                        }],
                    })),
                )
                .await?;
            if status != StatusCode::CREATED {
                bail!("booking a visit answered {status}: {created}");
            }
            booked.push((
                clinician.clone(),
                patient_token.clone(),
                text(&created, "id")?.to_owned(),
            ));
        }
    }
    Ok(booked)
}

/// Runs the phase against a server already running at `address` (pid `pid`).
pub async fn run(
    address: SocketAddr,
    admin_token: &str,
    engine: &str,
    sessions: usize,
    duration: Duration,
    pid: u32,
) -> Result<VisitsReport> {
    let visits_count = sessions.div_ceil(2);
    println!("  setting up {visits_count} visits …");
    let booked = set_up(address, admin_token, visits_count)
        .await
        .context("setting up the visits")?;
    // Idle for a moment, so set-up's buffers are what they will stay.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before_kib = rss_kib(pid)?;

    println!("  entering {visits_count} visits …");
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let booked = Arc::new(booked);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SETUP_CONNECTIONS {
        let next = Arc::clone(&next);
        let booked = Arc::clone(&booked);
        tasks.spawn(async move {
            let mut entered = Vec::new();
            loop {
                let index = usize::try_from(next.fetch_add(1, Ordering::Relaxed))?;
                let Some((clinician, patient, appointment)) = booked.get(index) else {
                    return Ok::<_, anyhow::Error>(entered);
                };
                entered.push(
                    enter(address, clinician, patient, appointment)
                        .await
                        .with_context(|| format!("entering visit {index}"))?,
                );
            }
        });
    }
    let mut visits = Vec::with_capacity(visits_count);
    while let Some(joined) = tasks.join_next().await {
        visits.extend(joined??);
    }
    let establish_secs = started.elapsed().as_secs_f64();
    let sessions = visits.len() * 2;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle_kib = rss_kib(pid)?;

    println!("  relaying for {} s …", duration.as_secs());
    let epoch = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
    let delivered = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    #[allow(clippy::cast_precision_loss, reason = "a few thousand visits")]
    let interval = Duration::from_secs_f64(visits.len() as f64 / RELAY_SIGNALS_PER_SEC as f64);
    let deadline = epoch + duration;
    let mut relays = tokio::task::JoinSet::new();
    for (index, visit) in visits.into_iter().enumerate() {
        let Visit {
            clinician,
            patient,
            clinician_member,
        } = visit;
        let (mut patient_tx, mut patient_rx) = patient.split();
        let (clinician_tx, mut clinician_rx) = clinician.split();
        let latencies = Arc::clone(&latencies);
        let delivered = Arc::clone(&delivered);
        let refused = Arc::clone(&refused);
        let sent = Arc::clone(&sent);
        relays.spawn(async move {
            // Receiving: the clinician reads signals and times them.
            let receive = async {
                loop {
                    let frame = tokio::time::timeout(
                        deadline.saturating_duration_since(Instant::now())
                            + Duration::from_secs(DRAIN_WAIT_SECS),
                        clinician_rx.next(),
                    )
                    .await;
                    let Ok(Some(Ok(Message::Text(text)))) = frame else {
                        match frame {
                            Ok(Some(Ok(_))) => continue,
                            _ => return,
                        }
                    };
                    let at = epoch.elapsed();
                    let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    if value["type"] != "signal" {
                        continue;
                    }
                    let sent_at = value["payload"]
                        .as_str()
                        .and_then(|p| p.split(':').next())
                        .and_then(|micros| micros.parse::<u64>().ok());
                    if let Some(sent_at) = sent_at {
                        let latency = u64::try_from(at.as_micros())
                            .unwrap_or(u64::MAX)
                            .saturating_sub(sent_at);
                        latencies
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(u32::try_from(latency).unwrap_or(u32::MAX));
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            };
            // Refusals come back to the patient's socket.
            let refusals = async {
                while let Some(Ok(frame)) = patient_rx.next().await {
                    if let Message::Text(text) = frame
                        && text.as_str().contains("\"error\"")
                    {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            };
            // Sending: paced, each visit offset so the whole is smooth.
            let send = async {
                #[allow(clippy::cast_possible_truncation, reason = "below the interval")]
                let offset = interval.mul_f64((index % 97) as f64 / 97.0);
                let mut ticker = tokio::time::interval_at(
                    tokio::time::Instant::from_std(epoch + offset),
                    interval,
                );
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let filler = "a".repeat(SIGNAL_PAYLOAD_BYTES);
                loop {
                    ticker.tick().await;
                    if Instant::now() >= deadline {
                        break;
                    }
                    let micros = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
                    let frame = json!({
                        "type": "signal",
                        "to": clinician_member,
                        "kind": "candidate",
                        "payload": format!("{micros}:{filler}"),
                    });
                    if patient_tx
                        .send(Message::Text(frame.to_string().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            };
            tokio::select! {
                () = async { tokio::join!(send, receive); } => {}
                () = refusals => {}
            }
            drop(clinician_tx);
        });
    }
    while relays.join_next().await.is_some() {}
    let seconds = duration.as_secs_f64();
    let latencies_micros =
        std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(VisitsReport {
        engine: engine.to_owned(),
        sessions,
        establish_secs,
        rss_before_kib,
        rss_idle_kib,
        sent: sent.load(Ordering::Relaxed),
        delivered: delivered.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        latencies_micros,
        seconds,
    })
}
