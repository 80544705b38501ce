//! The messaging phases of `cargo xtask bench`: end-to-end sealed messages relayed between
//! patients and their clinicians, timed from the moment a sender's `POST` leaves to the
//! moment each recipient device's event stream (`GET /api/v1/events`, a WebSocket) says
//! the message is there.
//!
//! Set-up, through the public API only: one conversation per sender, each about one
//! patient, between the patient (enrolled from an invitation, with a phone and a laptop)
//! and a clinician on their care team (enrolled with TOTP, one desktop shared by
//! [`PATIENTS_PER_CLINICIAN`] conversations). Devices register their real keys (the server
//! publishes each in the audit log); every device holds its own WebSocket with its owner's
//! session. So every message has two recipient devices besides the one that sent it: the
//! patient's phone writes to their laptop and the clinician's desktop, the clinician's
//! desktop to the patient's phone and laptop. Like every client, the sender seals the
//! content key to its own device too (three sealed keys a message).
//!
//! Every message is a real one: 1 KiB of plaintext sealed on the sender's device
//! (`haven_crypto::e2e::seal_message`, with its own id, HPKE for each device, an Ed25519
//! signature), made before the timed phases start so that the bench's sealing does not
//! compete with the server for the machine's cores: the relay is what is measured. After
//! the load, the newest message of each conversation is fetched and opened by the
//! patient's laptop, as a check that what was relayed is what was sealed.
//!
//! Two phases share the set-up and the open sockets: `messaging` with one closed-loop
//! sender per conversation (the throughput), then `messaging at a steady rate`, the same
//! conversations paced to [`STEADY_MESSAGES_PER_SEC`] in all (the latency a person sees on
//! a server that is not saturated). Each reports messages acknowledged (`201`) per second,
//! the `POST` latency, the delivery latency to every recipient device (p50, p95, p99, max)
//! and deliveries that never came.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt;
use haven_crypto::e2e::{DeviceKeys, DevicePublicKeys, MessageRef, SealedKey, seal_message};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

use crate::clinician::{Client, text};
use crate::load::{body_excerpt, connect, exchange};

/// Conversations (patients) each clinician takes part in.
pub const PATIENTS_PER_CLINICIAN: usize = 8;
/// The plaintext of every message, sealed: a 1 KiB JSON body as the web app writes it.
const PLAINTEXT_BYTES: usize = 1024;
/// Messages a second, over all conversations, in the steady-rate phase.
pub const STEADY_MESSAGES_PER_SEC: u64 = 1_000;
/// The most messages a second the sealed pool is made for in the closed-loop phase; a
/// sender whose share runs out stops early, and the report says so.
const POOL_MESSAGES_PER_SEC_MAX: u64 = 8_000;
/// How long after the last acknowledgement the bench waits for events still on their way.
const DRAIN_WAIT_SECS_MAX: u64 = 5;
const REQUEST_TIMEOUT_SECS: u64 = 10;
/// Concurrent requests while setting up (enrolment hashes passwords: keep it modest).
const SETUP_CONNECTIONS: usize = 8;
const PASSWORD: &str = "steady amber compass at noon";

/// One device as its client holds it.
#[derive(Debug)]
struct Device {
    id: String,
    keys: DeviceKeys,
}

/// A signed-in person.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    pub(crate) token: String,
    user: String,
}

/// Who sends a message in a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// From the patient's phone: to their laptop and the clinician's desktop.
    Patient,
    /// From the clinician's desktop: to the patient's phone and laptop.
    Clinician,
}

/// A conversation ready to carry messages.
#[derive(Debug)]
struct Conversation {
    thread: Uuid,
    patient: Person,
    clinician: Person,
    phone: Device,
    laptop: Device,
    /// The clinician's desktop, an index into the clinicians' devices.
    desk: usize,
    /// Sockets (indexes into the listeners) of the phone, the laptop and the desktop.
    sockets: [usize; 3],
}

impl Conversation {
    /// The sockets that must see a message from `side`: every device but the sender's.
    fn recipients(&self, side: Side) -> [usize; 2] {
        let [phone, laptop, desk] = self.sockets;
        match side {
            Side::Patient => [laptop, desk],
            Side::Clinician => [phone, laptop],
        }
    }
}

/// A message sealed in advance: its request body, ready to send.
#[derive(Debug)]
struct Prepared {
    side: Side,
    body: Bytes,
}

/// An event a socket received.
#[derive(Debug, Clone, Copy)]
struct Receipt {
    socket: u32,
    seq: i64,
    at: Instant,
}

/// A message the server acknowledged.
#[derive(Debug, Clone, Copy)]
struct Acknowledged {
    conversation: u32,
    side: Side,
    seq: i64,
    sent_at: Instant,
}

/// What one sender did.
#[derive(Debug, Default)]
struct SenderTally {
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    acknowledged: Vec<Acknowledged>,
    /// `POST` to `201`, microseconds.
    latencies_micros: Vec<u32>,
    ran_out: bool,
}

/// How a phase paces its senders.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// Each sender sends its next message as soon as the last was acknowledged.
    ClosedLoop,
    /// All senders together send this many messages a second.
    Steady(u64),
}

/// What one messaging phase did, as the bench prints it.
#[derive(Debug)]
pub struct MessagingReport {
    engine: &'static str,
    pace: Pace,
    senders: usize,
    elapsed: Duration,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    acknowledged: u64,
    post_micros: Vec<u32>,
    delivery_micros: Vec<u32>,
    deliveries_missing: u64,
    senders_out_of_messages: usize,
    server_cpu_secs: Option<f64>,
    /// CPU time of this bench process (the senders and the sockets' readers).
    bench_cpu_secs: Option<f64>,
    /// The share of all the machine's CPU time that was busy (PostgreSQL included).
    machine_busy: Option<f64>,
}

impl MessagingReport {
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged
    }
}

/// The sockets and what they have received, shared with their reading tasks.
#[derive(Debug, Default)]
struct Listeners {
    /// At most three a message of the sealed pool, which bounds it.
    receipts: Mutex<Vec<Receipt>>,
    /// `message` events received, echoes to the sender's own device included.
    events: AtomicU64,
    /// The first socket the server closed (a slow consumer is dropped), with its reason.
    closed: Mutex<Option<String>>,
}

/// Sets up the people, devices, conversations and sockets, seals the messages, and runs
/// the phases; `server_pid` lets each phase report the server's CPU time.
pub async fn run(
    address: SocketAddr,
    admin_token: &str,
    engine: &'static str,
    senders: usize,
    duration: Duration,
    server_pid: u32,
) -> Result<Vec<MessagingReport>> {
    let conversations_wanted = senders.max(1);
    let set_up = Instant::now();
    let mut setup = set_up_conversations(address, admin_token, conversations_wanted)
        .await
        .context("setting up the conversations")?;
    println!(
        "messaging ({engine}): {} conversations between {} patients (2 devices each) and {} clinicians (1 device each), set up in {:.1}s",
        setup.conversations.len(),
        setup.conversations.len(),
        setup.clinician_devices.len(),
        set_up.elapsed().as_secs_f64()
    );

    let listeners = Arc::new(Listeners::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let thread_index: Arc<HashMap<String, u32>> = Arc::new(
        setup
            .conversations
            .iter()
            .enumerate()
            .map(|(index, c)| (c.thread.to_string(), u32::try_from(index).unwrap_or(0)))
            .collect(),
    );
    let mut socket_tasks = tokio::task::JoinSet::new();
    for (index, token) in setup.socket_tokens.iter().enumerate() {
        let socket = open_event_stream(address, token)
            .await
            .with_context(|| format!("opening event stream {index}"))?;
        socket_tasks.spawn(listen(
            socket,
            u32::try_from(index)?,
            Arc::clone(&listeners),
            Arc::clone(&thread_index),
            stopped.clone(),
        ));
    }

    // Sealed before the clock starts: enough for the closed-loop phase at up to
    // POOL_MESSAGES_PER_SEC_MAX and the steady phase at its rate.
    let secs = duration.as_secs().max(1);
    let pool_messages = secs * (POOL_MESSAGES_PER_SEC_MAX + STEADY_MESSAGES_PER_SEC);
    let per_conversation =
        usize::try_from(pool_messages.div_ceil(setup.conversations.len() as u64))?;
    let sealing = Instant::now();
    let pools = seal_pools(&setup, per_conversation)?;
    println!(
        "sealed {} messages of {PLAINTEXT_BYTES} bytes (3 HPKE keys and a signature each) in {:.1}s, before the load",
        pools.iter().map(Vec::len).sum::<usize>(),
        sealing.elapsed().as_secs_f64()
    );
    let pools: Vec<Arc<Mutex<Vec<Prepared>>>> = pools
        .into_iter()
        .map(|mut pool| {
            // Reversed, so that `pop` takes them in the order they were sealed.
            pool.reverse();
            Arc::new(Mutex::new(pool))
        })
        .collect();

    let setup_shared = Arc::new(std::mem::take(&mut setup.conversations));
    let mut reports = Vec::new();
    for pace in [Pace::ClosedLoop, Pace::Steady(STEADY_MESSAGES_PER_SEC)] {
        let report = run_phase(
            address,
            engine,
            pace,
            duration,
            &setup_shared,
            &pools,
            &listeners,
            server_pid,
        )
        .await?;
        reports.push(report);
    }

    open_newest(address, &setup_shared)
        .await
        .context("opening the newest message of each conversation")?;
    let _ = stop.send(true);
    while socket_tasks.join_next().await.is_some() {}
    Ok(reports)
}

#[allow(clippy::too_many_arguments, reason = "one phase of one bench run")]
async fn run_phase(
    address: SocketAddr,
    engine: &'static str,
    pace: Pace,
    duration: Duration,
    conversations: &Arc<Vec<Conversation>>,
    pools: &[Arc<Mutex<Vec<Prepared>>>],
    listeners: &Arc<Listeners>,
    server_pid: u32,
) -> Result<MessagingReport> {
    let senders = conversations.len();
    let interval = match pace {
        Pace::ClosedLoop => None,
        Pace::Steady(rate) => Some(Duration::from_secs_f64(senders as f64 / rate as f64)),
    };
    let cpu_before = process_cpu_ticks(server_pid);
    let own_cpu_before = process_cpu_ticks(std::process::id());
    let machine_before = machine_cpu_ticks();
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (index, pool) in pools.iter().enumerate() {
        let conversations = Arc::clone(conversations);
        let pool = Arc::clone(pool);
        // Staggered, so paced senders do not all fire in the same instant.
        let first = interval.map(|every| started + every.mul_f64(index as f64 / senders as f64));
        tasks.spawn(async move {
            send_loop(
                address,
                &conversations,
                index,
                &pool,
                deadline,
                interval,
                first,
            )
            .await
        });
    }
    let mut tallies = Vec::with_capacity(senders);
    while let Some(joined) = tasks.join_next().await {
        tallies.push(joined.context("a sender task panicked")?);
    }
    let elapsed = started.elapsed();
    let cpu_after = process_cpu_ticks(server_pid);
    let own_cpu_after = process_cpu_ticks(std::process::id());
    let machine_after = machine_cpu_ticks();

    let acknowledged: Vec<Acknowledged> = tallies
        .iter()
        .flat_map(|t| t.acknowledged.iter().copied())
        .collect();
    // Every acknowledged message is announced to all three devices of its conversation.
    let expected = acknowledged.len() as u64 * 3;
    let drain_until = Instant::now() + Duration::from_secs(DRAIN_WAIT_SECS_MAX);
    while listeners.events.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let receipts = std::mem::take(&mut *lock(&listeners.receipts));
    listeners.events.store(0, Ordering::Relaxed);
    if let Some(reason) = lock(&listeners.closed).clone() {
        bail!("the server closed an event stream during the load: {reason}");
    }

    let by_seq: HashMap<i64, &Acknowledged> = acknowledged.iter().map(|a| (a.seq, a)).collect();
    let mut delivery_micros = Vec::with_capacity(acknowledged.len() * 2);
    for receipt in &receipts {
        let Some(sent) = by_seq.get(&receipt.seq) else {
            continue;
        };
        let conversation = &conversations[sent.conversation as usize];
        if conversation
            .recipients(sent.side)
            .contains(&(receipt.socket as usize))
        {
            let micros = receipt
                .at
                .saturating_duration_since(sent.sent_at)
                .as_micros();
            delivery_micros.push(u32::try_from(micros).unwrap_or(u32::MAX));
        }
    }
    delivery_micros.sort_unstable();
    let mut post_micros: Vec<u32> = tallies
        .iter()
        .flat_map(|t| t.latencies_micros.iter().copied())
        .collect();
    post_micros.sort_unstable();
    let first_error = tallies.iter().find_map(|t| t.first_error.clone());
    Ok(MessagingReport {
        engine,
        pace,
        senders,
        elapsed,
        requests: tallies.iter().map(|t| t.requests).sum(),
        errors: tallies.iter().map(|t| t.errors).sum(),
        first_error,
        acknowledged: acknowledged.len() as u64,
        deliveries_missing: (acknowledged.len() as u64 * 2)
            .saturating_sub(delivery_micros.len() as u64),
        post_micros,
        delivery_micros,
        senders_out_of_messages: tallies.iter().filter(|t| t.ran_out).count(),
        server_cpu_secs: cpu_before
            .zip(cpu_after)
            .map(|(before, after)| after.saturating_sub(before) as f64 / CLOCK_TICKS_PER_SEC),
        bench_cpu_secs: own_cpu_before
            .zip(own_cpu_after)
            .map(|(before, after)| after.saturating_sub(before) as f64 / CLOCK_TICKS_PER_SEC),
        machine_busy: machine_before.zip(machine_after).and_then(
            |((busy_before, all_before), (busy_after, all_after))| {
                let all = all_after.checked_sub(all_before)?;
                (all > 0).then(|| busy_after.saturating_sub(busy_before) as f64 / all as f64)
            },
        ),
    })
}

async fn send_loop(
    address: SocketAddr,
    conversations: &[Conversation],
    index: usize,
    pool: &Mutex<Vec<Prepared>>,
    deadline: Instant,
    interval: Option<Duration>,
    first: Option<Instant>,
) -> SenderTally {
    let mut tally = SenderTally::default();
    let conversation = &conversations[index];
    let host = address.to_string();
    let uri = format!("/api/v1/threads/{}/messages", conversation.thread);
    let patient_bearer = format!("Bearer {}", conversation.patient.token);
    let clinician_bearer = format!("Bearer {}", conversation.clinician.token);
    let mut pacer = interval.zip(first).map(|(every, first)| {
        let mut pacer = tokio::time::interval_at(first.into(), every);
        pacer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        pacer
    });
    let mut sender = None;
    let fail = |tally: &mut SenderTally, why: String| {
        tally.errors += 1;
        tally.first_error.get_or_insert(why);
    };
    loop {
        if let Some(pacer) = pacer.as_mut() {
            pacer.tick().await;
        }
        if Instant::now() >= deadline {
            break;
        }
        let Some(message) = lock(pool).pop() else {
            tally.ran_out = true;
            break;
        };
        let mut connection = match sender.take() {
            Some(open) => open,
            None => match connect(address).await {
                Ok(open) => open,
                Err(error) => {
                    fail(&mut tally, format!("connect: {error}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let bearer = match message.side {
            Side::Patient => &patient_bearer,
            Side::Clinician => &clinician_bearer,
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(&uri)
            .header(HOST, &host)
            .header(AUTHORIZATION, bearer)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(message.body));
        let Ok(request) = request else {
            fail(&mut tally, "building a request".to_owned());
            break;
        };
        tally.requests += 1;
        let sent_at = Instant::now();
        let answered = tokio::time::timeout(
            Duration::from_secs(REQUEST_TIMEOUT_SECS),
            exchange(&mut connection, request),
        )
        .await;
        let latency = sent_at.elapsed();
        let (status, body) = match answered {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                fail(&mut tally, error);
                continue;
            }
            Err(_) => {
                fail(
                    &mut tally,
                    format!("timed out after {REQUEST_TIMEOUT_SECS}s"),
                );
                continue;
            }
        };
        sender = Some(connection);
        if status != StatusCode::CREATED {
            fail(
                &mut tally,
                format!("status {status}: {}", body_excerpt(&body)),
            );
            continue;
        }
        let Some(seq) = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|answer| answer["seq"].as_i64())
        else {
            fail(
                &mut tally,
                format!("a 201 without a seq: {}", body_excerpt(&body)),
            );
            continue;
        };
        tally.acknowledged.push(Acknowledged {
            conversation: u32::try_from(index).unwrap_or(u32::MAX),
            side: message.side,
            seq,
            sent_at,
        });
        tally
            .latencies_micros
            .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
    }
    tally
}

type EventStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_event_stream(address: SocketAddr, token: &str) -> Result<EventStream> {
    let mut request = format!("ws://{address}/api/v1/events").into_client_request()?;
    request
        .headers_mut()
        .insert(AUTHORIZATION, format!("Bearer {token}").parse()?);
    let (socket, _) = tokio::time::timeout(
        Duration::from_secs(REQUEST_TIMEOUT_SECS),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .context("timed out")??;
    Ok(socket)
}

/// Records every `message` event one socket receives until `stop` turns true.
async fn listen(
    mut socket: EventStream,
    index: u32,
    listeners: Arc<Listeners>,
    threads: Arc<HashMap<String, u32>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            frame = socket.next() => {
                let at = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        let Ok(event) = serde_json::from_str::<Value>(text.as_str()) else {
                            continue;
                        };
                        if event["type"] != "message" {
                            continue;
                        }
                        let known = event["thread"].as_str().is_some_and(|t| threads.contains_key(t));
                        if let (true, Some(seq)) = (known, event["seq"].as_i64()) {
                            lock(&listeners.receipts).push(Receipt { socket: index, seq, at });
                            listeners.events.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                        lock(&listeners.closed).get_or_insert(format!("socket {index}: {reason}"));
                        return;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => {
                        lock(&listeners.closed).get_or_insert(format!("socket {index}: {error}"));
                        return;
                    }
                    None => {
                        lock(&listeners.closed).get_or_insert(format!("socket {index}: ended"));
                        return;
                    }
                }
            }
            _ = stop.changed() => return,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Everything the phases need, made through the API.
#[derive(Debug)]
struct Setup {
    conversations: Vec<Conversation>,
    clinician_devices: Vec<Device>,
    /// The bearer of each socket to open, in socket order.
    socket_tokens: Vec<String>,
}

async fn set_up_conversations(
    address: SocketAddr,
    admin_token: &str,
    count: usize,
) -> Result<Setup> {
    let mut admin = Client::connect(address).await?;
    let mut patients = Vec::with_capacity(count);
    for index in 0..count {
        let (status, created) = admin
            .call(
                Method::POST,
                "/api/v1/patients",
                Some(admin_token),
                Some(json!({
                    "name": { "family": "Messenger", "given": [format!("Bench{index}")] },
                    "birth_date": "1984-04-04",
                })),
            )
            .await?;
        if status != StatusCode::CREATED {
            bail!("creating a patient answered {status}: {created}");
        }
        patients.push(text(&created, "id")?.to_owned());
    }

    // Clinicians, each on the care team of their share of the patients.
    let mut clinicians = Vec::new();
    let mut clinician_devices = Vec::new();
    for team in patients.chunks(PATIENTS_PER_CLINICIAN) {
        let enrolled = crate::clinician::enrol(address, admin_token, team).await?;
        let person = whoami(address, &enrolled.token).await?;
        let device = register_device(address, &person.token, "Clinic desktop").await?;
        clinicians.push(person);
        clinician_devices.push(device);
    }

    // Patients enrol from invitations, a few at a time (each enrolment hashes a password).
    let next = Arc::new(AtomicU64::new(0));
    let patients = Arc::new(patients);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SETUP_CONNECTIONS {
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
                let person = enrol_patient(address, &admin_token, patient, index).await?;
                let phone = register_device(address, &person.token, "Phone").await?;
                let laptop = register_device(address, &person.token, "Laptop").await?;
                done.push((index, person, phone, laptop));
            }
        });
    }
    let mut enrolled = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        enrolled.extend(joined??);
    }
    enrolled.sort_by_key(|(index, ..)| *index);

    let mut conversations = Vec::with_capacity(count);
    let mut socket_tokens: Vec<String> = clinicians.iter().map(|c| c.token.clone()).collect();
    let mut client = Client::connect(address).await?;
    for (index, person, phone, laptop) in enrolled {
        let desk = index / PATIENTS_PER_CLINICIAN;
        let clinician = clinicians[desk].clone();
        let (status, started) = client
            .call(
                Method::POST,
                "/api/v1/threads",
                Some(&person.token),
                Some(json!({
                    "patient": patients[index],
                    "participants": [clinician.user],
                })),
            )
            .await?;
        if status != StatusCode::CREATED {
            bail!("starting a conversation answered {status}: {started}");
        }
        let thread: Uuid = text(&started, "id")?.parse()?;
        // The recipients as a client fetches them: exactly these three devices, each
        // published in the audit log with a proof.
        let (status, devices) = client
            .call(
                Method::GET,
                &format!("/api/v1/threads/{thread}/devices"),
                Some(&person.token),
                None,
            )
            .await?;
        if status != StatusCode::OK {
            bail!("listing a conversation's devices answered {status}: {devices}");
        }
        let listed: Vec<&Value> = devices["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        let mut ids: Vec<&str> = listed.iter().filter_map(|d| d["id"].as_str()).collect();
        ids.sort_unstable();
        let mut expected = vec![
            phone.id.as_str(),
            laptop.id.as_str(),
            clinician_devices[desk].id.as_str(),
        ];
        expected.sort_unstable();
        if ids != expected || listed.iter().any(|d| d["log_entry"]["proof"].is_null()) {
            bail!("a conversation's devices are not the three registered, each proven: {devices}");
        }
        let phone_socket = socket_tokens.len();
        socket_tokens.push(person.token.clone());
        socket_tokens.push(person.token.clone());
        conversations.push(Conversation {
            thread,
            patient: person,
            clinician,
            phone,
            laptop,
            desk,
            sockets: [phone_socket, phone_socket + 1, desk],
        });
    }
    Ok(Setup {
        conversations,
        clinician_devices,
        socket_tokens,
    })
}

async fn whoami(address: SocketAddr, token: &str) -> Result<Person> {
    let mut client = Client::connect(address).await?;
    let (status, me) = client
        .call(Method::GET, "/api/v1/me", Some(token), None)
        .await?;
    if status != StatusCode::OK {
        bail!("/api/v1/me answered {status}: {me}");
    }
    Ok(Person {
        token: token.to_owned(),
        user: text(&me, "actor")?.to_owned(),
    })
}

pub(crate) async fn enrol_patient(
    address: SocketAddr,
    admin_token: &str,
    patient: &str,
    index: usize,
) -> Result<Person> {
    let mut client = Client::connect(address).await?;
    let (status, invited) = client
        .call(
            Method::POST,
            "/api/v1/invitations",
            Some(admin_token),
            Some(json!({ "role": "patient", "patient": patient })),
        )
        .await?;
    if status != StatusCode::CREATED {
        bail!("inviting a patient answered {status}: {invited}");
    }
    let login = format!("patient-{index}-{}@haven.invalid", Uuid::new_v4().simple());
    let (status, enrolled) = client
        .call(
            Method::POST,
            "/api/v1/auth/enrol",
            None,
            Some(json!({
                "invitation": text(&invited, "invitation")?,
                "login": login,
                "password": PASSWORD,
                "transport": "bearer",
            })),
        )
        .await?;
    if status != StatusCode::CREATED || enrolled["state"] != "complete" {
        bail!("enrolling a patient answered {status}: {enrolled}");
    }
    whoami(address, text(&enrolled, "token")?).await
}

async fn register_device(address: SocketAddr, token: &str, label: &str) -> Result<Device> {
    let keys = DeviceKeys::generate();
    let public = keys.public();
    let mut client = Client::connect(address).await?;
    let (status, registered) = client
        .call(
            Method::POST,
            "/api/v1/devices",
            Some(token),
            Some(json!({
                "label": label,
                "hpke_public_key": STANDARD.encode(public.hpke),
                "signing_public_key": STANDARD.encode(public.signing),
                "self_signature": STANDARD.encode(keys.self_signature()),
            })),
        )
        .await?;
    if status != StatusCode::CREATED {
        bail!("registering a device answered {status}: {registered}");
    }
    Ok(Device {
        id: text(&registered, "id")?.to_owned(),
        keys,
    })
}

/// The 1 KiB plaintext of every message: the web app's body format, padded.
fn plaintext() -> Vec<u8> {
    let empty = json!({ "v": 1, "text": "", "attachments": [] }).to_string();
    let text = "All well after the new dose; see you Thursday. "
        .chars()
        .cycle()
        .take(PLAINTEXT_BYTES - empty.len())
        .collect::<String>();
    json!({ "v": 1, "text": text, "attachments": [] })
        .to_string()
        .into_bytes()
}

/// Seals `per_conversation` messages for each conversation, alternately from the patient's
/// phone and the clinician's desktop, on every core.
fn seal_pools(setup: &Setup, per_conversation: usize) -> Result<Vec<Vec<Prepared>>> {
    let plaintext = plaintext();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = setup.conversations.len().div_ceil(cores).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = setup
            .conversations
            .chunks(chunk)
            .map(|conversations| {
                let plaintext = &plaintext;
                scope.spawn(move || {
                    conversations
                        .iter()
                        .map(|c| {
                            (0..per_conversation)
                                .map(|n| seal_one(setup, c, n, plaintext))
                                .collect::<Result<Vec<_>>>()
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut pools = Vec::new();
        for worker in workers {
            let sealed = worker
                .join()
                .map_err(|_| anyhow::anyhow!("a sealing thread panicked"))??;
            pools.extend(sealed);
        }
        Ok(pools)
    })
}

fn seal_one(setup: &Setup, c: &Conversation, n: usize, plaintext: &[u8]) -> Result<Prepared> {
    let desk = &setup.clinician_devices[c.desk];
    let (side, sender) = if n.is_multiple_of(2) {
        (Side::Patient, &c.phone)
    } else {
        (Side::Clinician, desk)
    };
    let recipients: [(&Device, DevicePublicKeys); 3] = [
        (&c.phone, c.phone.keys.public()),
        (&c.laptop, c.laptop.keys.public()),
        (desk, desk.keys.public()),
    ];
    // Random, as the web app makes them (`crypto.randomUUID()`).
    let id = Uuid::new_v4();
    let public: Vec<DevicePublicKeys> = recipients.iter().map(|(_, p)| *p).collect();
    let sealed = seal_message(c.thread, id, plaintext, &public, &sender.keys)
        .map_err(|e| anyhow::anyhow!("sealing a message: {e}"))?;
    let keys: Vec<Value> = recipients
        .iter()
        .zip(&sealed.keys)
        .map(|((device, _), key)| {
            json!({
                "device": device.id,
                "enc": STANDARD.encode(key.enc),
                "sealed_key": STANDARD.encode(&key.sealed_key),
            })
        })
        .collect();
    let body = json!({
        "id": id.to_string(),
        "sender_device": sender.id,
        "ciphertext": STANDARD.encode(&sealed.ciphertext),
        "signature": STANDARD.encode(sealed.signature),
        "keys": keys,
    });
    Ok(Prepared {
        side,
        body: Bytes::from(body.to_string()),
    })
}

/// Fetches the newest message of each conversation as the patient's laptop and opens it,
/// checking the sender's signature: what was relayed is what was sealed.
async fn open_newest(address: SocketAddr, conversations: &[Conversation]) -> Result<()> {
    let mut client = Client::connect(address).await?;
    let mut opened = 0;
    for conversation in conversations {
        let (status, thread) = client
            .call(
                Method::GET,
                &format!("/api/v1/threads/{}", conversation.thread),
                Some(&conversation.patient.token),
                None,
            )
            .await?;
        let newest = thread["last_message_seq"].as_i64().unwrap_or(0);
        if status != StatusCode::OK || newest == 0 {
            continue;
        }
        let (status, page) = client
            .call(
                Method::GET,
                &format!(
                    "/api/v1/threads/{}/messages?device={}&after={}&limit=1",
                    conversation.thread,
                    conversation.laptop.id,
                    newest - 1
                ),
                Some(&conversation.patient.token),
                None,
            )
            .await?;
        let message = &page["items"][0];
        if status != StatusCode::OK || message.is_null() {
            bail!("reading the newest message answered {status}: {page}");
        }
        let decode = |field: &Value| -> Result<Vec<u8>> {
            Ok(STANDARD.decode(field.as_str().context("not a string")?)?)
        };
        let sender_keys = if message["sender"] == conversation.patient.user.as_str() {
            conversation.phone.keys.public()
        } else {
            // The clinician's desktop: the only other device in the conversation.
            let (status, devices) = client
                .call(
                    Method::GET,
                    &format!("/api/v1/threads/{}/devices", conversation.thread),
                    Some(&conversation.patient.token),
                    None,
                )
                .await?;
            if status != StatusCode::OK {
                bail!("listing devices answered {status}");
            }
            let desk = devices["devices"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|d| d["id"] == message["sender_device"])
                .context("the sender's device is not among the conversation's")?;
            let key = |field: &str| -> Result<[u8; 32]> {
                decode(&desk[field])?
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("a key that is not 32 bytes"))
            };
            DevicePublicKeys {
                hpke: key("hpke_public_key")?,
                signing: key("signing_public_key")?,
            }
        };
        let ciphertext = decode(&message["ciphertext"])?;
        let signature = decode(&message["signature"])?;
        let sealed = SealedKey {
            enc: decode(&message["key"]["enc"])?
                .try_into()
                .map_err(|_| anyhow::anyhow!("an enc that is not 32 bytes"))?,
            sealed_key: decode(&message["key"]["sealed_key"])?,
        };
        let plaintext = conversation
            .laptop
            .keys
            .open_message(
                &MessageRef {
                    thread_id: conversation.thread,
                    message_id: text(message, "id")?.parse()?,
                    ciphertext: &ciphertext,
                    signature: &signature,
                },
                &sealed,
                &sender_keys,
            )
            .map_err(|e| anyhow::anyhow!("the newest message does not open: {e}"))?;
        if plaintext.len() != PLAINTEXT_BYTES {
            bail!(
                "a message opened to {} bytes, not {PLAINTEXT_BYTES}",
                plaintext.len()
            );
        }
        opened += 1;
    }
    println!(
        "opened the newest message of {opened} conversations on the patient's laptop: signatures and seals check out"
    );
    Ok(())
}

/// Linux's USER_HZ, the unit of the CPU times in /proc/<pid>/stat (100 on every platform
/// Haven runs on).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// User plus system CPU time the process has used, in clock ticks.
fn process_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are the 12th and 13th after it.
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

/// Busy and total CPU time of the whole machine, in clock ticks, from /proc/stat.
fn machine_cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let all: u64 = ticks.iter().take(8).sum();
    // idle and iowait are the fourth and fifth.
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some((all - idle, all))
}

/// The nearest-rank percentile of sorted samples, in milliseconds.
pub(crate) fn millis(sorted: &[u32], fraction: f64) -> String {
    if sorted.is_empty() {
        return "-".to_owned();
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a rank between 1 and the sample count"
    )]
    let rank = (fraction * sorted.len() as f64).ceil().max(1.0) as usize;
    let micros = sorted[rank.min(sorted.len()) - 1];
    format!("{:.2}", f64::from(micros) / 1000.0)
}

impl fmt::Display for MessagingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        #[allow(clippy::cast_precision_loss, reason = "message counts far below 2^52")]
        let rate = if secs > 0.0 {
            self.acknowledged as f64 / secs
        } else {
            0.0
        };
        match self.pace {
            Pace::ClosedLoop => writeln!(
                f,
                "messaging ({}): {} conversations, one closed-loop sender each, for {secs:.1}s",
                self.engine, self.senders
            )?,
            Pace::Steady(target) => writeln!(
                f,
                "messaging at a steady rate ({}): {} conversations paced to {target} messages/s in all, for {secs:.1}s",
                self.engine, self.senders
            )?,
        }
        writeln!(
            f,
            "  messages    {} sent, {} acknowledged (201, durable), {} errors; {PLAINTEXT_BYTES}-byte plaintext, 3 sealed keys, 2 recipient devices each",
            self.requests, self.acknowledged, self.errors
        )?;
        if let Some(first_error) = &self.first_error {
            writeln!(f, "  first error {first_error}")?;
        }
        writeln!(f, "  throughput  {rate:.0} messages/s acknowledged")?;
        writeln!(
            f,
            "  POST ms     p50 {}  p95 {}  p99 {}  max {}  (sent to 201)",
            millis(&self.post_micros, 0.50),
            millis(&self.post_micros, 0.95),
            millis(&self.post_micros, 0.99),
            self.post_micros.last().map_or_else(
                || "-".to_owned(),
                |m| format!("{:.2}", f64::from(*m) / 1000.0)
            ),
        )?;
        writeln!(
            f,
            "  delivery ms p50 {}  p95 {}  p99 {}  max {}  ({} deliveries: POST sent to the event on each recipient device's socket; {} missing)",
            millis(&self.delivery_micros, 0.50),
            millis(&self.delivery_micros, 0.95),
            millis(&self.delivery_micros, 0.99),
            self.delivery_micros.last().map_or_else(
                || "-".to_owned(),
                |m| format!("{:.2}", f64::from(*m) / 1000.0)
            ),
            self.delivery_micros.len(),
            self.deliveries_missing,
        )?;
        let cores = |cpu: Option<f64>| {
            cpu.map_or_else(
                || "-".to_owned(),
                |cpu| format!("{:.2}", if secs > 0.0 { cpu / secs } else { 0.0 }),
            )
        };
        writeln!(
            f,
            "  CPU         haven {} cores, this bench {} cores, whole machine {} busy",
            cores(self.server_cpu_secs),
            cores(self.bench_cpu_secs),
            self.machine_busy
                .map_or_else(|| "-".to_owned(), |busy| format!("{:.0}%", busy * 100.0)),
        )?;
        if self.senders_out_of_messages > 0 {
            writeln!(
                f,
                "  ({} senders used up their sealed messages before the end)",
                self.senders_out_of_messages
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plaintext_is_one_kibibyte_of_json() {
        let body = plaintext();
        assert_eq!(body.len(), PLAINTEXT_BYTES);
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!(parsed["v"], 1);
    }

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        // Our own process has a stat line; whatever it reads is a number.
        assert!(process_cpu_ticks(std::process::id()).is_some());
    }

    #[test]
    fn percentiles_are_nearest_rank_in_milliseconds() {
        let samples: Vec<u32> = (1..=100).map(|n| n * 1000).collect();
        assert_eq!(millis(&samples, 0.99), "99.00");
        assert_eq!(millis(&[], 0.5), "-");
    }
}
