//! SIEM export: every audit entry, in log order, to an organisation's security information
//! and event management system, as RFC 5424 syslog messages over TLS (RFC 5425), the way
//! IHE ATNA's Record Audit Event transaction sends them.
//!
//! Why a second copy: the tamper-evident log proves after the fact that nothing was
//! changed, but someone has to read it while it matters. A SIEM correlates Haven's entries
//! with the rest of the organisation's (directory, firewalls, other clinical systems) and
//! raises alerts; and a copy held by another system, run by other administrators, outlives
//! a compromise of Haven's own database.
//!
//! - [`syslog_message`] turns one stored entry into one RFC 5424 message, and [`frame`]
//!   puts the RFC 5425 octet count in front of it. Entries hold ids and fixed codes, never
//!   health data, and the message carries nothing else: no name, no record content.
//! - [`SiemFollower`] follows the log after a durable cursor (`Store::siem_cursor`) and
//!   writes it to the collector page by page. The cursor moves only after a page has been
//!   written and flushed *and* counts as delivered: syslog over TLS has no acknowledgement,
//!   so a page counts once its connection is seen still open [`SIEM_DELIVERY_GRACE_MS`]
//!   after the flush, or once the collector closes in answer to Haven's TLS close at
//!   shutdown. A connection lost before that (a collector restart; a collector refusing
//!   the client certificate, which TLS 1.3 reveals only after the first page has gone
//!   out) makes the follower resend from the cursor. Delivery is therefore at least once,
//!   in `seq` order, never skipping: a restart or reconnect resends at most the pages not
//!   yet counted as delivered.
//! - The follower reads the store like any reader and never touches the append path, so a
//!   slow or absent collector cannot delay an audit append or a request: entries simply
//!   wait in the log until the collector is back.
//! - The transport is a [`CollectorConnector`]. The `server` crate supplies the TLS one
//!   (it reads the certificate files), so this crate knows neither TLS nor files.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use haven_audit::{Outcome, StoredAuditEvent};
use haven_store::{Store, limits};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use crate::Clock;

/// The syslog facility of every message: 10, security/authorization, which syslog daemons
/// know as `authpriv` and by convention write only where privileged users can read it.
pub const SYSLOG_FACILITY: u8 = 10;
/// Severity of an allowed access: notice, a normal but significant condition.
pub const SYSLOG_SEVERITY_ALLOWED: u8 = 5;
/// Severity of a denied access: warning, worth a look.
pub const SYSLOG_SEVERITY_DENIED: u8 = 4;
/// The APP-NAME field.
pub const SYSLOG_APP_NAME: &str = "haven";
/// The private enterprise number in the SD-ID. 32473 is the number RFC 5612 reserves for
/// documentation; a deployment registered with IANA would put its own here.
pub const SYSLOG_ENTERPRISE_NUMBER: u32 = 32473;
/// The name part of the SD-ID (`haven@32473`).
pub const SYSLOG_SD_NAME: &str = "haven";
/// The largest message Haven sends, frame excluded. RFC 5425 §4.3.1 says receivers
/// should accept 8192 bytes; anything longer is shortened (see [`syslog_message`]).
pub const SYSLOG_MESSAGE_BYTES_MAX: usize = 8192;
/// RFC 5424 §6.2.4: HOSTNAME is at most 255 printable US-ASCII characters.
pub const SYSLOG_HOSTNAME_BYTES_MAX: usize = 255;
/// RFC 5425 §4.1: the collector's port when none is configured.
pub const SYSLOG_TLS_PORT_DEFAULT: u16 = 6514;

/// How often a follower that has caught up looks for new entries.
pub const SIEM_POLL_INTERVAL_MS: u64 = 500;
/// The first wait after the collector could not be reached; doubled after each failure…
pub const SIEM_RECONNECT_BACKOFF_MIN_MS: u64 = 500;
/// …up to this, so a collector that comes back is found within half a minute.
pub const SIEM_RECONNECT_BACKOFF_MAX_MS: u64 = 30_000;
/// The longest a connection attempt (TCP and the TLS handshake) may take.
pub const SIEM_CONNECT_TIMEOUT_SECS: u64 = 10;
/// The longest writing and flushing one page may take before the connection is given up
/// (a collector that stops reading would otherwise hold the follower for ever).
pub const SIEM_WRITE_TIMEOUT_SECS: u64 = 30;
/// How long a connection must stay open after a page was flushed before the page counts
/// as delivered and the stored cursor moves past it (see `Delivery`).
pub const SIEM_DELIVERY_GRACE_MS: u64 = 1000;
/// The stored cursor is written at most this often (and always at shutdown): under steady
/// traffic every loop delivers something, and a database write per page would compete
/// with audit appends for the writer. A crash then resends at most this much more.
pub const SIEM_CURSOR_WRITE_INTERVAL_MS: u64 = 1000;
/// At shutdown, how long the follower may keep sending what is left before it stops.
pub const SIEM_DRAIN_TIMEOUT_SECS: u64 = 5;
/// Framed messages gathered before one write: few large TLS records instead of one per
/// message, with memory bounded however large a page is.
pub const SIEM_WRITE_CHUNK_BYTES_MAX: usize = 64 * 1024;
/// Entries per page, each page being one write-and-flush step. A page shorter than this
/// means the follower has caught up, and it waits [`SIEM_POLL_INTERVAL_MS`] before
/// reading again rather than chasing each new entry.
pub const SIEM_PAGE_ROWS_MAX: u32 = limits::AUDIT_PAGE_ROWS_MAX;

/// RFC 5424's NILVALUE: a header field with no value.
const NILVALUE: &str = "-";

/// The SD-PARAMs that may be shortened when a message would exceed
/// [`SYSLOG_MESSAGE_BYTES_MAX`], in the order they are shortened: the client-supplied user
/// agent first, the reason code next. The sequence number, action, outcome and patient id
/// are never shortened; they are short and fixed in form.
const SHORTENED_FIRST: [&str; 12] = [
    "user_agent",
    "reason",
    "resource_id",
    "resource_type",
    "client_app",
    "session",
    "organisation",
    "actor",
    "request_id",
    "role",
    "purpose_of_use",
    "source_ip",
];

/// A syslog HOSTNAME: 1 to 255 printable US-ASCII characters, or NILVALUE when unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogHostname(String);

impl SyslogHostname {
    /// Accepts what RFC 5424 allows in the HOSTNAME field.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if text.len() > SYSLOG_HOSTNAME_BYTES_MAX {
            return Err(format!(
                "is {} bytes long; syslog allows at most {SYSLOG_HOSTNAME_BYTES_MAX}",
                text.len()
            ));
        }
        if let Some(bad) = text.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(format!(
                "contains {bad:?}; a syslog hostname is printable US-ASCII without spaces"
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// NILVALUE: the host's name is not known.
    pub fn unknown() -> Self {
        Self(NILVALUE.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// RFC 3339 in UTC with milliseconds, as RFC 5424 §6.2.3 restricts it (upper-case `T` and
/// `Z`, four-digit year).
const TIMESTAMP_FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

/// The entry's time, or `None` if it has no four-digit-year RFC 3339 form.
fn timestamp(at_ms: i64) -> Option<String> {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000).ok()?;
    if !(0..=9999).contains(&at.year()) {
        return None;
    }
    at.format(TIMESTAMP_FORMAT).ok()
}

/// A PARAM-VALUE needs `"`, `\` and `]` escaped with a backslash (RFC 5424 §6.3.3).
fn needs_escape(c: char) -> bool {
    matches!(c, '"' | '\\' | ']')
}

fn escaped_len(value: &str) -> usize {
    value.len() + value.chars().filter(|&c| needs_escape(c)).count()
}

fn push_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        if needs_escape(c) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The longest prefix of `value`, ending on a character boundary, whose escaped form takes
/// at most `escaped_bytes_max` bytes. Cutting between a backslash and what it escapes, or
/// inside a UTF-8 sequence, would corrupt the message; cutting whole characters cannot.
fn prefix_within(value: &str, escaped_bytes_max: usize) -> &str {
    let mut used = 0;
    for (index, c) in value.char_indices() {
        let cost = c.len_utf8() + usize::from(needs_escape(c));
        if used + cost > escaped_bytes_max {
            return &value[..index];
        }
        used += cost;
    }
    value
}

/// One audit entry as an RFC 5424 message (without the RFC 5425 frame):
///
/// ```text
/// <85>1 2025-06-15T14:13:20.042Z clinic-01 haven - read [haven@32473 seq="7" actor="…"
/// role="nurse" action="read" patient="…" … outcome="allowed" reason="…"] audit read allowed
/// ```
///
/// PRI is facility 10 (`authpriv`) with severity notice for an allowed access and warning
/// for a denied one; MSGID is the action code; the structured data carries every field the
/// entry has (absent ones are left out) and MSG a short summary. A message that would
/// exceed [`SYSLOG_MESSAGE_BYTES_MAX`] has free-form values shortened, the user agent
/// first, just enough to fit, and names them in a `truncated` parameter.
pub fn syslog_message(entry: &StoredAuditEvent, hostname: &SyslogHostname) -> String {
    let event = &entry.event;
    let severity = match event.outcome {
        Outcome::Allowed => SYSLOG_SEVERITY_ALLOWED,
        Outcome::Denied => SYSLOG_SEVERITY_DENIED,
    };
    let prival = u16::from(SYSLOG_FACILITY) * 8 + u16::from(severity);
    let timestamp = timestamp(event.at_ms);
    let header = format!(
        "<{prival}>1 {} {} {SYSLOG_APP_NAME} {NILVALUE} {}",
        timestamp.as_deref().unwrap_or(NILVALUE),
        hostname.as_str(),
        event.action.as_str(),
    );
    let summary = format!("audit {} {}", event.action.as_str(), event.outcome.as_str());

    let patient = event.patient.map(|p| p.to_string());
    let fields: [(&'static str, Option<&str>); 15] = [
        ("actor", event.actor.as_deref()),
        ("role", event.role.as_deref()),
        ("organisation", event.organisation.as_deref()),
        ("session", event.session.as_deref()),
        ("client_app", event.client_app.as_deref()),
        ("action", Some(event.action.as_str())),
        ("patient", patient.as_deref()),
        ("resource_type", event.resource_type.as_deref()),
        ("resource_id", event.resource_id.as_deref()),
        ("outcome", Some(event.outcome.as_str())),
        ("reason", Some(event.reason.as_str())),
        ("purpose_of_use", event.purpose_of_use.as_deref()),
        ("request_id", event.origin.request_id.as_deref()),
        ("source_ip", event.origin.source_ip.as_deref()),
        ("user_agent", event.origin.user_agent.as_deref()),
    ];
    let mut params: Vec<(&'static str, Cow<'_, str>)> =
        vec![("seq", Cow::Owned(entry.seq.to_string()))];
    params.extend(
        fields
            .into_iter()
            .filter_map(|(name, value)| value.map(|value| (name, Cow::Borrowed(value)))),
    );

    let mut shortened: Vec<&'static str> = Vec::new();
    let mut message = render(&header, &params, &shortened, &summary);
    let mut candidates = SHORTENED_FIRST.iter();
    let mut current = candidates.next();
    while message.len() > SYSLOG_MESSAGE_BYTES_MAX {
        let Some(&name) = current else {
            // Unreachable with a valid hostname: the fields that are never shortened are
            // short and bounded. Better an over-long message than a lost entry.
            break;
        };
        let Some(value) = params
            .iter_mut()
            .find(|(param, _)| *param == name)
            .map(|(_, value)| value)
            .filter(|value| !value.is_empty())
        else {
            current = candidates.next();
            continue;
        };
        let excess = message.len() - SYSLOG_MESSAGE_BYTES_MAX;
        let keep = escaped_len(value).saturating_sub(excess);
        *value = Cow::Owned(prefix_within(value, keep).to_owned());
        if !shortened.contains(&name) {
            shortened.push(name);
        }
        message = render(&header, &params, &shortened, &summary);
    }
    message
}

fn render(
    header: &str,
    params: &[(&'static str, Cow<'_, str>)],
    shortened: &[&'static str],
    summary: &str,
) -> String {
    let mut out = String::with_capacity(512);
    out.push_str(header);
    let _ = write!(out, " [{SYSLOG_SD_NAME}@{SYSLOG_ENTERPRISE_NUMBER}");
    for (name, value) in params {
        let _ = write!(out, " {name}=\"");
        push_escaped(&mut out, value);
        out.push('"');
    }
    if !shortened.is_empty() {
        let _ = write!(out, " truncated=\"{}\"", shortened.join(","));
    }
    out.push(']');
    // MSG is plain US-ASCII (fixed codes only), so RFC 5424 wants no byte-order mark.
    out.push(' ');
    out.push_str(summary);
    out
}

/// Appends `message` in RFC 5425 octet-counting framing: `MSG-LEN SP SYSLOG-MSG`, where
/// MSG-LEN is the message's length in bytes.
pub fn frame(message: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message.as_bytes());
}

/// A connection to a collector: a byte stream both ways (syslog only writes; reading
/// tells when the collector has closed it).
pub trait CollectorStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> CollectorStream for T {}

/// Opens connections to one collector.
#[async_trait::async_trait]
pub trait CollectorConnector: Send + Sync + fmt::Debug {
    /// The collector as configured (`host:port`): names its cursor, so each collector has
    /// its own, and appears in logs.
    fn name(&self) -> &str;

    /// A fresh connection, ready to write (for TLS: handshake done, collector verified).
    async fn connect(&self) -> std::io::Result<Box<dyn CollectorStream>>;
}

/// Follows the audit log and sends every entry to one collector, at least once, in order.
#[derive(Debug)]
pub struct SiemFollower {
    store: Arc<dyn Store>,
    connector: Arc<dyn CollectorConnector>,
    clock: Arc<dyn Clock>,
    hostname: SyslogHostname,
    /// [`SIEM_DELIVERY_GRACE_MS`]; tests make it long so that nothing counts as delivered
    /// by the clock alone.
    delivery_grace: Duration,
}

/// Why a wait ended.
enum Wake {
    Elapsed,
    Stop,
    PeerClosed,
}

/// Logs a failing dependency once when it starts failing and once when it recovers, not at
/// every retry.
#[derive(Debug, Default)]
struct Outage {
    failing: bool,
}

impl Outage {
    fn failed(&mut self, collector: &str, what: &str, error: &dyn fmt::Display) {
        if self.failing {
            tracing::debug!(collector, %error, "SIEM export still failing: {what}");
        } else {
            tracing::warn!(
                collector,
                %error,
                "SIEM export paused: {what}; retrying with backoff, entries wait in the audit log"
            );
            self.failing = true;
        }
    }

    fn recovered(&mut self, collector: &str, after_seq: i64) {
        if self.failing {
            tracing::info!(collector, after_seq, "SIEM export resumed");
            self.failing = false;
        }
    }
}

/// Capped exponential backoff.
#[derive(Debug)]
struct Backoff {
    next_ms: u64,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next_ms: SIEM_RECONNECT_BACKOFF_MIN_MS,
        }
    }

    fn next(&mut self) -> Duration {
        let wait = self.next_ms;
        self.next_ms = (self.next_ms * 2).min(SIEM_RECONNECT_BACKOFF_MAX_MS);
        Duration::from_millis(wait)
    }

    fn reset(&mut self) {
        self.next_ms = SIEM_RECONNECT_BACKOFF_MIN_MS;
    }
}

/// What the collector has been sent, and what of that counts as delivered.
///
/// Syslog over TLS has no acknowledgement, and a flushed page is only in the kernel's
/// hands. Two things make it unsafe to count it delivered at once: a collector that closes
/// (a restart) before reading it, and, with TLS 1.3, a collector that refuses Haven's
/// client certificate, which it can only say after Haven's side of the handshake has
/// completed and the first page has gone out. Both show up as the connection closing soon
/// after. So a page counts as delivered once its connection is seen still open
/// [`SIEM_DELIVERY_GRACE_MS`] after the flush, or when the collector closes in answer to
/// Haven's own TLS close at shutdown (it has then read everything before it). Only
/// delivered pages move the stored cursor; when a connection is lost, sending resumes
/// after the last delivered page, resending the rest.
#[derive(Debug)]
struct Delivery {
    /// The last seq counted as delivered (and recorded as the cursor).
    delivered: i64,
    /// The last seq written and flushed on the current connection.
    sent: i64,
    grace: Duration,
    /// Pages flushed but not yet counted as delivered: their last seq and when.
    pending: VecDeque<(i64, Instant)>,
}

impl Delivery {
    fn starting_after(seq: i64, grace: Duration) -> Self {
        Self {
            delivered: seq,
            sent: seq,
            grace,
            pending: VecDeque::new(),
        }
    }

    fn flushed(&mut self, last_seq: i64, at: Instant) {
        self.sent = last_seq;
        self.pending.push_back((last_seq, at));
    }

    /// The connection is still open at `now`: pages flushed long enough ago are
    /// delivered.
    fn still_connected(&mut self, now: Instant) {
        while let Some(&(seq, at)) = self.pending.front() {
            if now.saturating_duration_since(at) < self.grace {
                break;
            }
            self.pending.pop_front();
            self.delivered = seq;
        }
    }

    /// The collector read everything sent (it answered Haven's close).
    fn all_read(&mut self) {
        self.pending.clear();
        self.delivered = self.sent;
    }

    /// The connection is gone: whatever was not delivered is sent again.
    fn connection_lost(&mut self) {
        self.sent = self.delivered;
        self.pending.clear();
    }
}

/// Whether the collector has closed the connection (or it broke), found without waiting:
/// the read is polled once. A collector never sends application data under RFC 5425, so
/// anything read is discarded.
async fn peer_has_closed(stream: &mut Box<dyn CollectorStream>) -> bool {
    let mut scratch = [0u8; 256];
    std::future::poll_fn(|cx| {
        let mut buffer = ReadBuf::new(&mut scratch);
        Poll::Ready(match Pin::new(&mut **stream).poll_read(cx, &mut buffer) {
            Poll::Ready(Ok(())) => buffer.filled().is_empty(),
            Poll::Ready(Err(_)) => true,
            Poll::Pending => false,
        })
    })
    .await
}

/// Completes when the collector closes the connection: `true` if it closed in order
/// (TLS close, or TCP FIN without one), `false` if the connection broke (a reset means
/// the collector dropped data it had not read).
async fn closed(stream: &mut Box<dyn CollectorStream>) -> bool {
    let mut scratch = [0u8; 256];
    loop {
        match stream.read(&mut scratch).await {
            Ok(0) => return true,
            Err(error) => return error.kind() == std::io::ErrorKind::UnexpectedEof,
            Ok(_) => {}
        }
    }
}

/// Waits `duration`, or until `stop` completes (unless it already has), or until the
/// collector closes `connection`.
async fn wait<S: Future<Output = ()>>(
    duration: Duration,
    stop: Pin<&mut S>,
    stopped: bool,
    connection: Option<&mut Box<dyn CollectorStream>>,
) -> Wake {
    let peer_closed = async {
        match connection {
            Some(stream) => closed(stream).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = tokio::time::sleep(duration) => Wake::Elapsed,
        () = stop, if !stopped => Wake::Stop,
        _ = peer_closed => Wake::PeerClosed,
    }
}

/// Writes one page, framed, then flushes.
async fn send_page(
    stream: &mut Box<dyn CollectorStream>,
    page: &[StoredAuditEvent],
    hostname: &SyslogHostname,
) -> std::io::Result<()> {
    let mut buffer = Vec::with_capacity(SIEM_WRITE_CHUNK_BYTES_MAX + SYSLOG_MESSAGE_BYTES_MAX);
    for entry in page {
        frame(&syslog_message(entry, hostname), &mut buffer);
        if buffer.len() >= SIEM_WRITE_CHUNK_BYTES_MAX {
            stream.write_all(&buffer).await?;
            buffer.clear();
        }
    }
    stream.write_all(&buffer).await?;
    stream.flush().await
}

/// The follower's state between steps.
struct Run<'a> {
    follower: &'a SiemFollower,
    collector: String,
    collector_outage: Outage,
    store_outage: Outage,
    backoff: Backoff,
    connection: Option<Box<dyn CollectorStream>>,
    /// After a failure, no new connection before this.
    reconnect_at: Instant,
    delivery: Delivery,
    /// The cursor as last written to the store, and when it was written (or tried).
    recorded: i64,
    recorded_at: Instant,
}

impl Run<'_> {
    /// Writes the delivered position as the stored cursor if it moved, at most every
    /// [`SIEM_CURSOR_WRITE_INTERVAL_MS`] unless `now_or_never`. If the write fails the export
    /// goes on from memory; a restart would resend from the older stored cursor, which
    /// duplicates, never skips.
    async fn record(&mut self, now_or_never: bool) {
        let delivered = self.delivery.delivered;
        let interval = Duration::from_millis(SIEM_CURSOR_WRITE_INTERVAL_MS);
        if delivered <= self.recorded || !(now_or_never || self.recorded_at.elapsed() >= interval) {
            return;
        }
        self.recorded_at = Instant::now();
        let follower = self.follower;
        match follower
            .store
            .set_siem_cursor(&self.collector, delivered, follower.clock.now_ms())
            .await
        {
            Ok(()) => {
                self.recorded = delivered;
                self.store_outage.recovered(&self.collector, delivered);
            }
            Err(error) => {
                self.store_outage.failed(
                    &self.collector,
                    "cannot record the export cursor",
                    &error,
                );
            }
        }
    }

    /// Waits one poll interval on the open connection. Returns whether `stop` completed.
    async fn idle<S: Future<Output = ()>>(&mut self, stop: Pin<&mut S>) -> bool {
        let pause = Duration::from_millis(SIEM_POLL_INTERVAL_MS);
        match wait(pause, stop, false, self.connection.as_mut()).await {
            Wake::Elapsed => {
                // A connection that stayed up through a whole interval is healthy.
                self.backoff.reset();
                self.collector_outage
                    .recovered(&self.collector, self.delivery.delivered);
                false
            }
            Wake::Stop => true,
            Wake::PeerClosed => {
                tracing::debug!(
                    collector = self.collector,
                    "the SIEM collector closed the connection"
                );
                self.lose_connection();
                false
            }
        }
    }

    /// The connection is unusable; resend what was not delivered on the next one.
    fn lose_connection(&mut self) {
        self.connection = None;
        self.delivery.connection_lost();
        self.reconnect_at = Instant::now() + self.backoff.next();
    }

    fn collector_failed(&mut self, what: &str, error: &dyn fmt::Display) {
        self.collector_outage.failed(&self.collector, what, error);
        self.lose_connection();
    }
}

impl SiemFollower {
    pub fn new(
        store: Arc<dyn Store>,
        connector: Arc<dyn CollectorConnector>,
        clock: Arc<dyn Clock>,
        hostname: SyslogHostname,
    ) -> Self {
        Self {
            store,
            connector,
            clock,
            hostname,
            delivery_grace: Duration::from_millis(SIEM_DELIVERY_GRACE_MS),
        }
    }

    #[cfg(test)]
    fn with_delivery_grace(mut self, grace: Duration) -> Self {
        self.delivery_grace = grace;
        self
    }

    pub fn collector(&self) -> &str {
        self.connector.name()
    }

    /// Sends entries until `stop` completes, then for at most [`SIEM_DRAIN_TIMEOUT_SECS`]
    /// more to send what is left (if the collector is reachable), then closes the
    /// connection cleanly. Never returns early on errors: a missing collector or database
    /// is waited out with backoff.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let collector = self.connector.name().to_owned();
        let mut store_outage = Outage::default();
        let mut backoff = Backoff::new();

        // Where the collector's copy ends, as recorded after the last delivered page.
        let cursor = loop {
            match self.store.siem_cursor(&collector).await {
                Ok(cursor) => break cursor.unwrap_or(0),
                Err(error) => {
                    store_outage.failed(&collector, "cannot read the export cursor", &error);
                    if let Wake::Stop = wait(backoff.next(), stop.as_mut(), false, None).await {
                        return;
                    }
                }
            }
        };
        store_outage.recovered(&collector, cursor);
        backoff.reset();
        tracing::info!(collector, after_seq = cursor, "SIEM export started");

        let mut run = Run {
            follower: &self,
            collector,
            collector_outage: Outage::default(),
            store_outage,
            backoff,
            connection: None,
            reconnect_at: Instant::now(),
            delivery: Delivery::starting_after(cursor, self.delivery_grace),
            recorded: cursor,
            recorded_at: Instant::now(),
        };
        let mut drain_deadline: Option<Instant> = None;
        loop {
            let draining = drain_deadline.is_some();
            if drain_deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                break;
            }

            if run.connection.is_none() {
                if draining {
                    // Unreachable at shutdown: the cursor keeps the place for next time.
                    break;
                }
                let now = Instant::now();
                if now < run.reconnect_at {
                    let pause = run.reconnect_at - now;
                    if let Wake::Stop = wait(pause, stop.as_mut(), false, None).await {
                        drain_deadline = Some(drain_deadline_from_now());
                    }
                    continue;
                }
                match tokio::time::timeout(
                    Duration::from_secs(SIEM_CONNECT_TIMEOUT_SECS),
                    self.connector.connect(),
                )
                .await
                {
                    Ok(Ok(stream)) => run.connection = Some(stream),
                    Ok(Err(error)) => {
                        run.collector_failed("cannot connect to the collector", &error);
                        continue;
                    }
                    Err(_) => {
                        run.collector_failed(
                            "cannot connect to the collector",
                            &format_args!("no connection within {SIEM_CONNECT_TIMEOUT_SECS}s"),
                        );
                        continue;
                    }
                }
            }

            let page = match self
                .store
                .audit_events(run.delivery.sent, SIEM_PAGE_ROWS_MAX)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    run.store_outage
                        .failed(&run.collector, "cannot read the audit log", &error);
                    if draining {
                        break;
                    }
                    let pause = Duration::from_millis(SIEM_POLL_INTERVAL_MS);
                    if let Wake::Stop = wait(pause, stop.as_mut(), false, None).await {
                        drain_deadline = Some(drain_deadline_from_now());
                    }
                    continue;
                }
            };

            let Some(stream) = run.connection.as_mut() else {
                continue;
            };
            // Writing into a connection the collector has already closed would "succeed"
            // (the kernel takes the bytes), so look first; and an open connection
            // confirms what was sent on it a while ago.
            if peer_has_closed(stream).await {
                tracing::debug!(
                    collector = run.collector,
                    "the SIEM collector closed the connection"
                );
                run.lose_connection();
                continue;
            }
            run.delivery.still_connected(Instant::now());
            run.record(false).await;

            if page.is_empty() {
                if draining {
                    break;
                }
                if run.idle(stop.as_mut()).await {
                    drain_deadline = Some(drain_deadline_from_now());
                }
                continue;
            }

            let Some(stream) = run.connection.as_mut() else {
                continue;
            };
            let time_allowed = match drain_deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(SIEM_WRITE_TIMEOUT_SECS),
            };
            match tokio::time::timeout(time_allowed, send_page(stream, &page, &self.hostname)).await
            {
                Ok(Ok(())) => {
                    if let Some(last) = page.last() {
                        run.delivery.flushed(last.seq, Instant::now());
                    }
                    let caught_up = page.len() < SIEM_PAGE_ROWS_MAX as usize;
                    if caught_up && !draining && run.idle(stop.as_mut()).await {
                        drain_deadline = Some(drain_deadline_from_now());
                    }
                }
                // A page may have been cut mid-message: this connection is done for.
                Ok(Err(error)) => run.collector_failed("cannot write to the collector", &error),
                Err(_) => run.collector_failed(
                    "cannot write to the collector",
                    &format_args!("a page was not written within {}s", time_allowed.as_secs()),
                ),
            }
        }

        if let Some(mut stream) = run.connection.take() {
            // TLS close_notify, then wait for the collector to close in turn: it has then
            // read everything sent, so the last pages count as delivered. Bounded: a
            // collector that no longer answers must not hold up shutdown.
            let deadline = drain_deadline.unwrap_or_else(drain_deadline_from_now);
            let answered = tokio::time::timeout_at(deadline, async {
                stream.shutdown().await.is_ok() && closed(&mut stream).await
            })
            .await;
            if answered == Ok(true) {
                run.delivery.all_read();
            }
        }
        run.record(true).await;
        tracing::info!(
            collector = run.collector,
            after_seq = run.delivery.delivered,
            "SIEM export stopped"
        );
    }
}

fn drain_deadline_from_now() -> Instant {
    Instant::now() + Duration::from_secs(SIEM_DRAIN_TIMEOUT_SECS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use haven_audit::{AuditAction, AuditEvent, RequestOrigin};

    use super::*;

    /// 2025-06-15T14:13:20.042Z
    const AT_MS: i64 = 1_749_996_800_042;

    fn entry() -> StoredAuditEvent {
        StoredAuditEvent {
            seq: 7,
            event: AuditEvent {
                at_ms: AT_MS,
                actor: Some("0190f3a2-0000-7000-8000-000000000001".into()),
                role: Some("nurse".into()),
                organisation: None,
                session: None,
                client_app: None,
                action: AuditAction::Read,
                patient: Some("0190f3a2-7c1e-7b3a-9d1e-2f4a5b6c7d8e".parse().unwrap()),
                resource_type: Some("Patient".into()),
                resource_id: Some("0190f3a2-7c1e-7b3a-9d1e-2f4a5b6c7d8e".into()),
                outcome: Outcome::Allowed,
                reason: "care_team".into(),
                purpose_of_use: Some("TREAT".into()),
                origin: RequestOrigin {
                    request_id: Some("req-1".into()),
                    source_ip: Some("203.0.113.7".into()),
                    user_agent: Some("curl/8.5.0".into()),
                },
            },
        }
    }

    fn host() -> SyslogHostname {
        SyslogHostname::parse("clinic-01.example.org").unwrap()
    }

    #[test]
    fn an_allowed_read_has_the_exact_expected_form() {
        assert_eq!(
            syslog_message(&entry(), &host()),
            "<85>1 2025-06-15T14:13:20.042Z clinic-01.example.org haven - read \
             [haven@32473 seq=\"7\" actor=\"0190f3a2-0000-7000-8000-000000000001\" \
             role=\"nurse\" action=\"read\" patient=\"0190f3a2-7c1e-7b3a-9d1e-2f4a5b6c7d8e\" \
             resource_type=\"Patient\" resource_id=\"0190f3a2-7c1e-7b3a-9d1e-2f4a5b6c7d8e\" \
             outcome=\"allowed\" reason=\"care_team\" \
             purpose_of_use=\"TREAT\" request_id=\"req-1\" source_ip=\"203.0.113.7\" user_agent=\"curl/8.5.0\"] \
             audit read allowed"
        );
    }

    #[test]
    fn a_denied_system_entry_is_a_warning_and_leaves_absent_fields_out() {
        let entry = StoredAuditEvent {
            seq: 12,
            event: AuditEvent {
                at_ms: 0,
                actor: None,
                role: None,
                organisation: None,
                session: None,
                client_app: None,
                action: AuditAction::FailedLogin,
                patient: None,
                resource_type: None,
                resource_id: None,
                outcome: Outcome::Denied,
                reason: "unknown_token".into(),
                purpose_of_use: None,
                origin: RequestOrigin::default(),
            },
        };
        assert_eq!(
            syslog_message(&entry, &SyslogHostname::unknown()),
            "<84>1 1970-01-01T00:00:00.000Z - haven - failed_login \
             [haven@32473 seq=\"12\" action=\"failed_login\" outcome=\"denied\" \
             reason=\"unknown_token\"] audit failed_login denied"
        );
    }

    #[test]
    fn a_time_without_a_four_digit_year_is_nilvalue() {
        let mut entry = entry();
        entry.event.at_ms = -62_198_755_200_000; // 1 January of the year -1
        let message = syslog_message(&entry, &host());
        assert!(
            message.starts_with("<85>1 - clinic-01.example.org "),
            "{message}"
        );
        entry.event.at_ms = i64::MAX;
        let message = syslog_message(&entry, &host());
        assert!(
            message.starts_with("<85>1 - clinic-01.example.org "),
            "{message}"
        );
    }

    #[test]
    fn every_action_code_is_a_valid_msgid() {
        // MSGID: 1 to 32 printable US-ASCII characters.
        for action in AuditAction::ALL {
            let code = action.as_str();
            assert!(
                (1..=32).contains(&code.len()) && code.chars().all(|c| c.is_ascii_graphic()),
                "{code}"
            );
        }
    }

    #[test]
    fn quotes_backslashes_and_brackets_are_escaped_in_values() {
        let mut entry = entry();
        entry.event.origin.user_agent = Some(r#"evil" ua=\"x\"] [inject@1 a="b"#.into());
        let message = syslog_message(&entry, &host());
        assert!(
            message.contains(r#" user_agent="evil\" ua=\\\"x\\\"\] [inject@1 a=\"b"]"#),
            "{message}"
        );
        // One SD-ELEMENT: the injected bracket did not open another.
        assert_eq!(message.matches("[haven@").count(), 1);
        assert!(!message.contains(" [inject@1 a=\"b\"]"));
    }

    #[test]
    fn over_long_values_are_shortened_at_a_character_boundary_and_marked() {
        let mut entry = entry();
        // Multi-byte characters and escapes right where the cut falls.
        entry.event.origin.user_agent = Some("é\"".repeat(4000));
        entry.event.reason = "r".repeat(100);
        let message = syslog_message(&entry, &host());
        // Full up to the last whole character (or escape pair) that fits.
        assert!(message.len() <= SYSLOG_MESSAGE_BYTES_MAX);
        assert!(
            message.len() > SYSLOG_MESSAGE_BYTES_MAX - 4,
            "{}",
            message.len()
        );
        assert!(message.contains(" truncated=\"user_agent\"]"), "{message}");
        // The reason, second in line, was not needed to make room.
        assert!(message.contains(&format!(" reason=\"{}\"", "r".repeat(100))));
        // The cut user agent is whole pairs of `é` and an escaped quote, or ends after `é`.
        let start = message.find(" user_agent=\"").unwrap() + " user_agent=\"".len();
        let end = message.find("\" truncated=").unwrap();
        let kept = &message[start..end];
        assert!(kept.starts_with("é\\\"é\\\""), "{kept}");
        assert!(kept.ends_with("é") || kept.ends_with("é\\\""), "{kept}");
    }

    #[test]
    fn several_values_are_shortened_when_one_is_not_enough() {
        let mut entry = entry();
        entry.event.origin.user_agent = Some("u".repeat(4000));
        entry.event.reason = "r".repeat(4000);
        entry.event.resource_id = Some("i".repeat(4000));
        entry.event.actor = Some("a".repeat(4000));
        let long_host = SyslogHostname::parse(&"h".repeat(SYSLOG_HOSTNAME_BYTES_MAX)).unwrap();
        let message = syslog_message(&entry, &long_host);
        assert!(message.len() <= SYSLOG_MESSAGE_BYTES_MAX);
        assert!(
            message.contains(" truncated=\"user_agent,reason,resource_id\"]"),
            "{message}"
        );
        assert!(message.contains(" user_agent=\"\""));
        assert!(message.contains(" reason=\"\""));
        // Never shortened: position, action, outcome, patient; and the actor was not
        // needed.
        assert!(message.contains(" seq=\"7\" "));
        assert!(message.contains(&format!(" actor=\"{}\"", "a".repeat(4000))));
        assert!(message.contains(" resource_id=\"iii"));
        assert!(message.contains(" patient=\"0190f3a2-7c1e-7b3a-9d1e-2f4a5b6c7d8e\""));
        assert!(message.ends_with("] audit read allowed"));
    }

    #[test]
    fn a_message_that_fits_is_not_touched() {
        let mut entry = entry();
        // Exactly at the limit: compute the room left, fill it.
        let base = syslog_message(&entry, &host()).len();
        let room = SYSLOG_MESSAGE_BYTES_MAX - base;
        entry.event.origin.user_agent = Some(format!("curl/8.5.0{}", "x".repeat(room)));
        let message = syslog_message(&entry, &host());
        assert_eq!(message.len(), SYSLOG_MESSAGE_BYTES_MAX);
        assert!(!message.contains("truncated="));
    }

    #[test]
    fn framing_counts_octets_not_characters() {
        let mut out = Vec::new();
        frame("<85>1 - - haven - read [haven@32473 a=\"é\"] x", &mut out);
        frame("second", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "45 <85>1 - - haven - read [haven@32473 a=\"é\"] x6 second"
        );
    }

    #[test]
    fn hostnames_are_printable_ascii_without_spaces() {
        assert!(SyslogHostname::parse("clinic-01").is_ok());
        assert!(SyslogHostname::parse("").is_err());
        assert!(SyslogHostname::parse("two words").is_err());
        assert!(SyslogHostname::parse("klinik-zürich").is_err());
        assert!(SyslogHostname::parse(&"h".repeat(256)).is_err());
        assert_eq!(SyslogHostname::unknown().as_str(), "-");
    }

    /// A connector handing out one end of an in-memory pipe per connection; the test gets
    /// the other end.
    #[derive(Debug)]
    struct PipeConnector {
        ends: tokio::sync::mpsc::UnboundedSender<tokio::io::DuplexStream>,
    }

    #[async_trait::async_trait]
    impl CollectorConnector for PipeConnector {
        fn name(&self) -> &str {
            "pipe:6514"
        }

        async fn connect(&self) -> std::io::Result<Box<dyn CollectorStream>> {
            let (ours, theirs) = tokio::io::duplex(1 << 20);
            self.ends
                .send(theirs)
                .map_err(|_| std::io::Error::other("the test is gone"))?;
            Ok(Box::new(ours))
        }
    }

    /// A connection whose every write fails, as a broken one does.
    #[derive(Debug)]
    struct FailingWrites;

    impl AsyncRead for FailingWrites {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for FailingWrites {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
        }

        fn poll_flush(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
        }

        fn poll_shutdown(
            self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Debug, Default)]
    struct FailingConnector {
        attempts: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl CollectorConnector for FailingConnector {
        fn name(&self) -> &str {
            "broken:6514"
        }

        async fn connect(&self) -> std::io::Result<Box<dyn CollectorStream>> {
            self.attempts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Box::new(FailingWrites))
        }
    }

    async fn store_with_entries(dir: &std::path::Path, count: i64) -> Arc<dyn Store> {
        let store: Arc<dyn Store> = Arc::new(
            haven_store::SqliteStore::open(&dir.join("haven.db"))
                .await
                .unwrap(),
        );
        let events = (0..count)
            .map(|n| {
                let mut event = entry().event;
                event.at_ms = AT_MS + n;
                event
            })
            .collect();
        store.append_audit(events).await.unwrap();
        store
    }

    /// Reads octet-counted frames until `count` have arrived.
    async fn read_frames(stream: &mut tokio::io::DuplexStream, count: usize) -> Vec<String> {
        let mut frames = Vec::new();
        while frames.len() < count {
            let mut length = Vec::new();
            loop {
                let byte = stream.read_u8().await.unwrap();
                if byte == b' ' {
                    break;
                }
                length.push(byte);
            }
            let length: usize = String::from_utf8(length).unwrap().parse().unwrap();
            let mut message = vec![0; length];
            stream.read_exact(&mut message).await.unwrap();
            frames.push(String::from_utf8(message).unwrap());
        }
        frames
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_follower_sends_every_entry_in_order_and_records_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_entries(dir.path(), 3).await;
        let (ends, mut collector) = tokio::sync::mpsc::unbounded_channel();
        let follower = SiemFollower::new(
            store.clone(),
            Arc::new(PipeConnector { ends }),
            Arc::new(crate::SystemClock),
            host(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(follower.run(async {
            let _ = stopped.await;
        }));

        let mut connection = collector.recv().await.unwrap();
        let frames = read_frames(&mut connection, 3).await;
        let seqs: Vec<&str> = frames
            .iter()
            .map(|frame| {
                frame
                    .split(" seq=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(seqs, ["1", "2", "3"]);
        assert!(frames[0].starts_with("<85>1 2025-06-15T14:13:20.042Z clinic-01.example.org"));
        assert!(frames[2].starts_with("<85>1 2025-06-15T14:13:20.044Z clinic-01.example.org"));

        // A later entry follows on the same connection.
        append_entries(&store, 1).await;
        let frames = read_frames(&mut connection, 1).await;
        assert!(frames[0].contains(" seq=\"4\" "), "{}", frames[0]);

        // The collector reads to the end and then closes, as a collector does when Haven
        // closes: that answer is what lets the last pages count as delivered.
        let reader = tokio::spawn(async move {
            let mut rest = Vec::new();
            connection.read_to_end(&mut rest).await.unwrap();
            rest
        });
        let _ = stop.send(());
        task.await.unwrap();
        assert!(
            reader.await.unwrap().is_empty(),
            "nothing after the last frame"
        );
        assert_eq!(store.siem_cursor("pipe:6514").await.unwrap(), Some(4));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_sent_on_a_connection_the_collector_drops_are_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_entries(dir.path(), 2).await;
        let (ends, mut collector) = tokio::sync::mpsc::unbounded_channel();
        let follower = SiemFollower::new(
            store.clone(),
            Arc::new(PipeConnector { ends }),
            Arc::new(crate::SystemClock),
            host(),
        )
        // However slow this machine, the dropped pages cannot count as delivered by time.
        .with_delivery_grace(Duration::from_secs(3600));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(follower.run(async {
            let _ = stopped.await;
        }));

        // The collector takes both entries, then goes away without a word, as one that
        // refuses the client certificate after a TLS 1.3 handshake or crashes does.
        let mut first = collector.recv().await.unwrap();
        assert_eq!(read_frames(&mut first, 2).await.len(), 2);
        drop(first);
        let mut second = collector.recv().await.unwrap();
        let again = read_frames(&mut second, 2).await;
        assert!(again[0].contains(" seq=\"1\" "), "{}", again[0]);
        assert!(again[1].contains(" seq=\"2\" "), "{}", again[1]);

        let reader = tokio::spawn(async move {
            let mut rest = Vec::new();
            second.read_to_end(&mut rest).await.unwrap();
        });
        let _ = stop.send(());
        task.await.unwrap();
        reader.await.unwrap();
        assert_eq!(store.siem_cursor("pipe:6514").await.unwrap(), Some(2));
    }

    async fn append_entries(store: &Arc<dyn Store>, count: i64) {
        let events = (0..count).map(|_| entry().event).collect();
        store.append_audit(events).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_page_that_cannot_be_written_leaves_the_cursor_where_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_entries(dir.path(), 3).await;
        store
            .set_siem_cursor("broken:6514", 1, AT_MS)
            .await
            .unwrap();
        let connector = Arc::new(FailingConnector::default());
        let follower = SiemFollower::new(
            store.clone(),
            connector.clone(),
            Arc::new(crate::SystemClock),
            host(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(follower.run(async {
            let _ = stopped.await;
        }));
        // Each failed write drops the connection and tries again after a backoff.
        let deadline = Instant::now() + Duration::from_secs(60);
        while connector.attempts.load(std::sync::atomic::Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "the follower stopped retrying");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = stop.send(());
        task.await.unwrap();
        assert_eq!(store.siem_cursor("broken:6514").await.unwrap(), Some(1));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::new();
        let waits: Vec<u64> = (0..8).map(|_| backoff.next().as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
        backoff.reset();
        assert_eq!(backoff.next(), Duration::from_millis(500));
    }
}
