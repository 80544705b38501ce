//! The audit trail's vocabulary: what an entry records and the [`AuditSink`] it goes to.
//!
//! Every access to health data and every security-relevant action becomes an [`AuditEvent`]
//! appended through the sink *before* the access happens (the access gate in `app` enforces
//! this, and refuses access when the append fails). Entries hold ids, roles, actions and
//! fixed reason codes, never health data: the audit log itself must be safe to export.
//!
//! Today the sink is an append-only table in the same database (triggers reject UPDATE and
//! DELETE). The tamper-evident Merkle log with signed checkpoints replaces it behind the same
//! trait; which database holds the log is not this crate's concern.

#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod merkle;

use std::fmt;
use std::str::FromStr;

use haven_domain::PatientId;

/// What was done. The stable names are what reports and exports show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    Read,
    Search,
    Create,
    Update,
    Delete,
    Export,
    Login,
    Logout,
    FailedLogin,
    PrivilegeChange,
    KeyRotation,
    CryptoShred,
    ConfigurationChange,
    AuditQuery,
    Print,
    MfaChange,
    ConsentChange,
    BreakGlass,
    /// A device's end-to-end keys published for its owner (key transparency).
    DeviceAdd,
    /// A device's keys withdrawn.
    DeviceRemove,
    /// Someone entered a video visit (its call, or its waiting room).
    VisitJoin,
    /// A clinician let someone waiting into a visit's call.
    VisitAdmit,
    /// A clinician turned someone waiting away.
    VisitDecline,
    /// Someone left a visit (hung up, or their connection did not come back).
    VisitLeave,
    /// A clinician ended a visit for everyone.
    VisitEnd,
    /// Someone in a visit agreed to its recording (asking is agreeing).
    RecordingConsent,
    /// Someone in a visit refused its recording.
    RecordingRefusal,
    /// A clinician started recording a visit, everyone having agreed.
    RecordingStart,
    /// The recording stopped.
    RecordingStop,
    /// A clinician invited a guest (an interpreter, a relative) to a visit.
    VisitInvite,
}

impl AuditAction {
    pub const ALL: [AuditAction; 30] = [
        AuditAction::Read,
        AuditAction::Search,
        AuditAction::Create,
        AuditAction::Update,
        AuditAction::Delete,
        AuditAction::Export,
        AuditAction::Login,
        AuditAction::Logout,
        AuditAction::FailedLogin,
        AuditAction::PrivilegeChange,
        AuditAction::KeyRotation,
        AuditAction::CryptoShred,
        AuditAction::ConfigurationChange,
        AuditAction::AuditQuery,
        AuditAction::Print,
        AuditAction::MfaChange,
        AuditAction::ConsentChange,
        AuditAction::BreakGlass,
        AuditAction::DeviceAdd,
        AuditAction::DeviceRemove,
        AuditAction::VisitJoin,
        AuditAction::VisitAdmit,
        AuditAction::VisitDecline,
        AuditAction::VisitLeave,
        AuditAction::VisitEnd,
        AuditAction::RecordingConsent,
        AuditAction::RecordingRefusal,
        AuditAction::RecordingStart,
        AuditAction::RecordingStop,
        AuditAction::VisitInvite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Read => "read",
            AuditAction::Search => "search",
            AuditAction::Create => "create",
            AuditAction::Update => "update",
            AuditAction::Delete => "delete",
            AuditAction::Export => "export",
            AuditAction::Login => "login",
            AuditAction::Logout => "logout",
            AuditAction::FailedLogin => "failed_login",
            AuditAction::PrivilegeChange => "privilege_change",
            AuditAction::KeyRotation => "key_rotation",
            AuditAction::CryptoShred => "crypto_shred",
            AuditAction::ConfigurationChange => "configuration_change",
            AuditAction::AuditQuery => "audit_query",
            AuditAction::Print => "print",
            AuditAction::MfaChange => "mfa_change",
            AuditAction::ConsentChange => "consent_change",
            AuditAction::BreakGlass => "break_glass",
            AuditAction::DeviceAdd => "device_add",
            AuditAction::DeviceRemove => "device_remove",
            AuditAction::VisitJoin => "visit_join",
            AuditAction::VisitAdmit => "visit_admit",
            AuditAction::VisitDecline => "visit_decline",
            AuditAction::VisitLeave => "visit_leave",
            AuditAction::VisitEnd => "visit_end",
            AuditAction::RecordingConsent => "recording_consent",
            AuditAction::RecordingRefusal => "recording_refusal",
            AuditAction::RecordingStart => "recording_start",
            AuditAction::RecordingStop => "recording_stop",
            AuditAction::VisitInvite => "visit_invite",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuditAction {
    type Err = UnknownCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownCode(s.to_owned()))
    }
}

/// Whether the access was allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
        }
    }
}

impl FromStr for Outcome {
    type Err = UnknownCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allowed" => Ok(Outcome::Allowed),
            "denied" => Ok(Outcome::Denied),
            other => Err(UnknownCode(other.to_owned())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit code `{0}`")]
pub struct UnknownCode(pub String);

/// Where a request came from, as far as the server can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestOrigin {
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Milliseconds since the Unix epoch, UTC.
    pub at_ms: i64,
    /// The acting credential (API token id or, later, user id); `None` for the system itself.
    pub actor: Option<String>,
    pub role: Option<String>,
    /// The actor's organisation, when known.
    pub organisation: Option<String>,
    /// The sign-in session the request belongs to, when there is one.
    pub session: Option<String>,
    /// The third-party app acting for the user (its client id), when there is one.
    pub client_app: Option<String>,
    pub action: AuditAction,
    pub patient: Option<PatientId>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub outcome: Outcome,
    /// The policy rule that allowed, or the reason code that denied. Never free text from a
    /// request, so no health data can slip in.
    pub reason: String,
    /// Why the data was accessed, as an HL7 v3 PurposeOfUse code (`TREAT`, `ETREAT`,
    /// `PATRQT`, `PATADMIN`, `HCOMPL`, `HSYSADMIN`); `None` when nothing was accessed.
    pub purpose_of_use: Option<String>,
    pub origin: RequestOrigin,
}

/// The version tag in front of every canonical entry encoding. Version 1 (eleven fields,
/// without organisation, session, client app and purpose of use) was never released.
const ENTRY_FORMAT_V2: &[u8] = b"haven.audit.entry.v2\n";

/// The names of an entry's text fields in canonical order, as every wire format of Haven
/// (reports, exports, access logs) spells them: a client recomputing a leaf takes the
/// fields of an entry in this order.
pub const ENTRY_FIELD_NAMES: [&str; 15] = [
    "actor",
    "role",
    "organisation",
    "session",
    "client_app",
    "action",
    "patient",
    "resource_type",
    "resource_id",
    "outcome",
    "reason",
    "purpose_of_use",
    "request_id",
    "source_ip",
    "user_agent",
];

impl AuditEvent {
    /// The canonical bytes of this entry at position `seq`, hashed as a Merkle leaf.
    ///
    /// Fields in a fixed order, each as a 4-byte big-endian length and its UTF-8 bytes
    /// (`0xFFFF_FFFF` for an absent field), integers as 8 big-endian bytes. The position is
    /// part of the entry, so moving an entry changes its hash as well as its place.
    pub fn canonical_bytes(&self, seq: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let patient = self.patient.map(|p| p.to_string());
        write_canonical(
            seq,
            self.at_ms,
            &self.fields(patient.as_deref()),
            &mut |bytes| out.extend_from_slice(bytes),
        );
        out
    }

    /// The entry as stored: its canonical bytes without the format tag and the position
    /// (which the store assigns as it appends). [`leaf_hash_of_entry`] hashes them with
    /// the position; [`AuditEvent::from_entry`] reads them back.
    pub fn entry_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let patient = self.patient.map(|p| p.to_string());
        write_entry(
            self.at_ms,
            &self
                .fields(patient.as_deref())
                .map(|f| f.map(str::as_bytes)),
            &mut |bytes| out.extend_from_slice(bytes),
        );
        out
    }

    /// Reads an entry back from its stored bytes ([`AuditEvent::entry_bytes`]).
    pub fn from_entry(entry: &[u8]) -> Result<Self, MalformedEntry> {
        let view = EntryView::parse(entry)?;
        let text = |index: usize| -> Result<Option<String>, MalformedEntry> {
            view.fields[index]
                .map(|bytes| {
                    std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| {
                        MalformedEntry(format!("{} is not UTF-8", ENTRY_FIELD_NAMES[index]))
                    })
                })
                .transpose()
        };
        let required = |index: usize| -> Result<String, MalformedEntry> {
            text(index)?
                .ok_or_else(|| MalformedEntry(format!("{} is missing", ENTRY_FIELD_NAMES[index])))
        };
        let code = |error: UnknownCode| MalformedEntry(error.to_string());
        Ok(AuditEvent {
            at_ms: view.at_ms,
            actor: text(0)?,
            role: text(1)?,
            organisation: text(2)?,
            session: text(3)?,
            client_app: text(4)?,
            action: required(5)?.parse().map_err(code)?,
            patient: text(6)?
                .map(|patient| {
                    patient
                        .parse()
                        .map_err(|_| MalformedEntry("patient is not a patient id".into()))
                })
                .transpose()?,
            resource_type: text(7)?,
            resource_id: text(8)?,
            outcome: required(9)?.parse().map_err(code)?,
            reason: required(10)?,
            purpose_of_use: text(11)?,
            origin: RequestOrigin {
                request_id: text(12)?,
                source_ip: text(13)?,
                user_agent: text(14)?,
            },
        })
    }

    /// The Merkle leaf hash of this entry at position `seq`.
    pub fn leaf_hash(&self, seq: u64) -> merkle::Hash {
        let patient = self.patient.map(|p| p.to_string());
        leaf_hash_of_fields(seq, self.at_ms, &self.fields(patient.as_deref()))
    }

    fn fields<'a>(&'a self, patient: Option<&'a str>) -> EntryFields<'a> {
        [
            self.actor.as_deref(),
            self.role.as_deref(),
            self.organisation.as_deref(),
            self.session.as_deref(),
            self.client_app.as_deref(),
            Some(self.action.as_str()),
            patient,
            self.resource_type.as_deref(),
            self.resource_id.as_deref(),
            Some(self.outcome.as_str()),
            Some(self.reason.as_str()),
            self.purpose_of_use.as_deref(),
            self.origin.request_id.as_deref(),
            self.origin.source_ip.as_deref(),
            self.origin.user_agent.as_deref(),
        ]
    }
}

/// An entry's text fields in canonical order ([`ENTRY_FIELD_NAMES`]); the patient is a
/// hyphenated UUID.
pub type EntryFields<'a> = [Option<&'a str>; 15];

/// An entry's text fields as raw UTF-8 bytes, in canonical order: what a verifier reading
/// rows can hash without checking each field's encoding first.
pub type EntryFieldBytes<'a> = [Option<&'a [u8]>; 15];

fn write_canonical(seq: u64, at_ms: i64, fields: &EntryFields<'_>, out: &mut dyn FnMut(&[u8])) {
    write_canonical_bytes(seq, at_ms, &fields.map(|f| f.map(str::as_bytes)), out);
}

fn write_canonical_bytes(
    seq: u64,
    at_ms: i64,
    fields: &EntryFieldBytes<'_>,
    out: &mut dyn FnMut(&[u8]),
) {
    out(ENTRY_FORMAT_V2);
    out(&seq.to_be_bytes());
    write_entry(at_ms, fields, out);
}

/// The stored part of the canonical encoding: everything after the tag and the position.
fn write_entry(at_ms: i64, fields: &EntryFieldBytes<'_>, out: &mut dyn FnMut(&[u8])) {
    out(&at_ms.to_be_bytes());
    for field in fields {
        match field {
            Some(value) => {
                let length = u32::try_from(value.len()).unwrap_or(u32::MAX - 1);
                out(&length.to_be_bytes());
                out(&value[..length as usize]);
            }
            None => out(&u32::MAX.to_be_bytes()),
        }
    }
}

/// The Merkle leaf hash of an entry given as borrowed fields, so a verifier reading
/// millions of rows need not build an [`AuditEvent`] for each. Equal to
/// [`AuditEvent::leaf_hash`] for the same entry.
pub fn leaf_hash_of_fields(seq: u64, at_ms: i64, fields: &EntryFields<'_>) -> merkle::Hash {
    leaf_hash_of_field_bytes(seq, at_ms, &fields.map(|f| f.map(str::as_bytes)))
}

/// [`leaf_hash_of_fields`] over raw field bytes (stored text is UTF-8 by construction).
pub fn leaf_hash_of_field_bytes(
    seq: u64,
    at_ms: i64,
    fields: &EntryFieldBytes<'_>,
) -> merkle::Hash {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update([0x00]);
    write_canonical_bytes(seq, at_ms, fields, &mut |bytes| hasher.update(bytes));
    hasher.finalize().into()
}

/// The Merkle leaf hash of the entry stored as `entry` ([`AuditEvent::entry_bytes`]) at
/// position `seq`: the same hash as [`AuditEvent::leaf_hash`], taken over the stored bytes
/// as they are. Verifying a long log reads one value per entry and hashes it.
pub fn leaf_hash_of_entry(seq: u64, entry: &[u8]) -> merkle::Hash {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update([0x00]);
    hasher.update(ENTRY_FORMAT_V2);
    hasher.update(seq.to_be_bytes());
    hasher.update(entry);
    hasher.finalize().into()
}

/// Stored entry bytes that do not decode: an entry that Haven did not write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a malformed audit entry: {0}")]
pub struct MalformedEntry(pub String);

/// A stored entry's time and fields, borrowed from its bytes without copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryView<'a> {
    pub at_ms: i64,
    /// In canonical order ([`ENTRY_FIELD_NAMES`]).
    pub fields: EntryFieldBytes<'a>,
}

impl<'a> EntryView<'a> {
    /// Splits stored entry bytes into fields; they must hold exactly one entry.
    pub fn parse(entry: &'a [u8]) -> Result<Self, MalformedEntry> {
        let short = || MalformedEntry("the entry ends early".into());
        let (at_ms, mut rest) = entry.split_first_chunk::<8>().ok_or_else(short)?;
        let mut fields: EntryFieldBytes<'a> = [None; 15];
        for field in &mut fields {
            let (length, after) = rest.split_first_chunk::<4>().ok_or_else(short)?;
            let length = u32::from_be_bytes(*length);
            if length == u32::MAX {
                rest = after;
                continue;
            }
            let (value, after) = after.split_at_checked(length as usize).ok_or_else(short)?;
            *field = Some(value);
            rest = after;
        }
        if !rest.is_empty() {
            return Err(MalformedEntry(format!(
                "{} bytes after the last field",
                rest.len()
            )));
        }
        Ok(Self {
            at_ms: i64::from_be_bytes(*at_ms),
            fields,
        })
    }
}

/// An entry as stored, with its position in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuditEvent {
    /// Strictly increasing position in the log, starting at 1.
    pub seq: i64,
    pub event: AuditEvent,
}

#[derive(Debug, thiserror::Error)]
#[error("the audit log could not record the entry: {0}")]
pub struct AuditError(pub String);

/// Where audit entries go. `append` returns only once the entries are durable: a caller
/// that has been answered `Ok` may rely on them surviving a crash.
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync + fmt::Debug {
    async fn append(&self, events: Vec<AuditEvent>) -> Result<(), AuditError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> AuditEvent {
        AuditEvent {
            at_ms: 1_795_000_000_000,
            actor: Some("token-1".into()),
            role: Some("nurse".into()),
            organisation: None,
            session: None,
            client_app: None,
            action: AuditAction::Read,
            patient: Some("0190f3a2-7c1e-7b3a-9d1e-2f4a5b6c7d8e".parse().unwrap()),
            resource_type: Some("Patient".into()),
            resource_id: None,
            outcome: Outcome::Allowed,
            reason: "clinical_staff_demographics_read".into(),
            purpose_of_use: Some("TREAT".into()),
            origin: RequestOrigin::default(),
        }
    }

    #[test]
    fn the_canonical_encoding_is_stable() {
        // A known answer: changing the encoding breaks every stored log, so it must be a
        // deliberate, versioned change.
        let hash: String = event()
            .leaf_hash(1)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hash, KNOWN_LEAF_HASH);
    }

    const KNOWN_LEAF_HASH: &str =
        "af5e26c8b05b5c13079b6be951c67de1bf82ca59340e3ace6fc7a02e532bcca6";

    #[test]
    fn the_leaf_hash_is_the_hash_of_the_canonical_bytes() {
        let event = event();
        assert_eq!(
            event.leaf_hash(7),
            merkle::leaf_hash(&event.canonical_bytes(7))
        );
    }

    #[test]
    fn the_stored_entry_hashes_and_reads_back_as_the_entry() {
        let mut sparse = event();
        sparse.actor = None;
        sparse.patient = None;
        sparse.resource_id = Some(String::new());
        sparse.origin.user_agent = Some("agent/1 (ünïcode)".into());
        for event in [event(), sparse] {
            let entry = event.entry_bytes();
            assert_eq!(leaf_hash_of_entry(9, &entry), event.leaf_hash(9));
            assert_eq!(AuditEvent::from_entry(&entry), Ok(event.clone()));
            let view = EntryView::parse(&entry).unwrap();
            assert_eq!(view.at_ms, event.at_ms);
            assert_eq!(view.fields[0], event.actor.as_deref().map(str::as_bytes));
        }
    }

    #[test]
    fn stored_entry_bytes_that_haven_did_not_write_are_refused() {
        let entry = event().entry_bytes();
        assert!(AuditEvent::from_entry(&entry[..entry.len() - 1]).is_err());
        assert!(AuditEvent::from_entry(&[entry.as_slice(), b"x"].concat()).is_err());
        assert!(AuditEvent::from_entry(&entry[..7]).is_err());
        assert!(AuditEvent::from_entry(b"").is_err());
        let mut unknown_action = event();
        unknown_action.reason = "read".into();
        let swapped = unknown_action.entry_bytes();
        // "read" where the action's code sits, and the action's code where "read" was:
        // the same bytes in a different field order are not an entry of Haven.
        let mut fields = EntryView::parse(&swapped).unwrap().fields;
        fields.swap(5, 9);
        let mut bytes = Vec::new();
        write_entry(1, &fields, &mut |b| bytes.extend_from_slice(b));
        assert!(AuditEvent::from_entry(&bytes).is_err());
    }

    #[test]
    fn every_field_and_the_position_change_the_leaf() {
        let base = event();
        let original = base.leaf_hash(1);
        assert_ne!(base.leaf_hash(2), original);
        let mut changed = Vec::new();
        let mut e = base.clone();
        e.at_ms += 1;
        changed.push(e);
        let mut e = base.clone();
        e.actor = None;
        changed.push(e);
        let mut e = base.clone();
        e.action = AuditAction::Update;
        changed.push(e);
        let mut e = base.clone();
        e.outcome = Outcome::Denied;
        changed.push(e);
        let mut e = base.clone();
        e.resource_id = Some(String::new());
        changed.push(e);
        let mut e = base.clone();
        e.origin.source_ip = Some("127.0.0.1".into());
        changed.push(e);
        for set in [
            |e: &mut AuditEvent| e.organisation = Some("clinic".into()),
            |e: &mut AuditEvent| e.session = Some("session".into()),
            |e: &mut AuditEvent| e.client_app = Some("app".into()),
            |e: &mut AuditEvent| e.purpose_of_use = Some("ETREAT".into()),
        ] {
            let mut e = base.clone();
            set(&mut e);
            changed.push(e);
        }
        // Shifting text between adjacent fields must not collide.
        let mut a = base.clone();
        a.actor = Some("ab".into());
        a.role = Some("c".into());
        let mut b = base.clone();
        b.actor = Some("a".into());
        b.role = Some("bc".into());
        assert_ne!(a.leaf_hash(1), b.leaf_hash(1));
        for e in changed {
            assert_ne!(e.leaf_hash(1), original, "{e:?}");
        }
    }
}
