//! Haven's domain model: the vocabulary every other crate speaks.
//!
//! This crate knows typed ids, roles, the patient record with its validation rules, and the
//! one policy decision function. It deliberately knows nothing of SQL, HTTP, JSON or async:
//! domain types are not `Serialize`, so the wire format lives at the edge (`api`) and can
//! change without touching the rules here.

#![forbid(unsafe_code)]

pub mod ids;
pub mod patient;
pub mod policy;
pub mod role;
pub mod visit;

pub use ids::{
    BreakGlassId, DelegationId, GuestId, InvitationId, NotificationId, OrganisationId, PatientId,
    SessionId, TokenId, UserId,
};
pub use patient::{
    ContactKind, ContactPoint, HumanName, Identifier, PatientRecord, ValidationError,
};
pub use policy::{
    Action, Actor, ChartPart, Context, Decision, DenyReason, Mask, Obligations, Principal,
    ProxyScopes, PurposeOfUse, Resource, decide,
};
pub use role::Role;
