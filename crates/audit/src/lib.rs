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
}

impl AuditAction {
    pub const ALL: [AuditAction; 14] = [
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
    pub action: AuditAction,
    pub patient: Option<PatientId>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub outcome: Outcome,
    /// The policy rule that allowed, or the reason code that denied. Never free text from a
    /// request, so no health data can slip in.
    pub reason: String,
    pub origin: RequestOrigin,
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
