//! Video visits: who may enter a visit's call, the waiting room, and the relay between its
//! members' browsers.
//!
//! A visit is a FHIR `Appointment` held as a call. Entering it ([`App::enter_visit`]) reads
//! the appointment through the access gate (so the patient and the care team can, and
//! nobody else), checks that it is neither cancelled nor over and that its time has come
//! (from [`VISIT_OPENS_BEFORE_MS`] before its start), and records `visit_join`. The
//! patient then waits until a clinician of the visit — a member of the patient's care
//! team, whom the policy makes its host — admits them. Nobody enters by holding a link:
//! the identity is the signed-in session, decided by the policy person by person.
//!
//! The room (`haven_domain::visit::Room`) lives in memory on this instance, with one bounded
//! queue of notices per connection ([`SIGNAL_QUEUE_NOTICES_MAX`]): a connection that does
//! not keep up is dropped, and its browser reconnects and takes its place back. Admitting,
//! declining, ending and leaving are audited before they take effect; what members relay to
//! each other (session descriptions, candidates, sealed media keys and chat) is opaque to
//! Haven and not recorded. That a visit ended is stored, so it stays ended across restarts.
//! Several instances would need the rooms' notices fanned out between them (NATS); this
//! module is the seam.
//!
//! Media never passes through Haven: browsers connect peer to peer, through coturn when
//! they must, with credentials that expire ([`App::ice_servers`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use haven_audit::AuditAction;
pub use haven_crypto::turn::TurnCredential;
use haven_crypto::turn::turn_credential;
use haven_domain::visit::{
    Delivery, MemberId, MemberView, Notice, Person, Room, RoomError, SignalKind, VisitRole,
};
use haven_domain::{Action, GuestId, OrganisationId, PatientId, Role};
use haven_fhir::resources::AnyResource;
use haven_store::visits::VisitEnding;
use tokio::sync::mpsc;

use crate::identity::invalid;
use crate::{App, AppError, AppResult, RequestContext, Secret};

/// A visit's call opens this long before the appointment's start.
pub const VISIT_OPENS_BEFORE_MS: i64 = 30 * 60 * 1000;
/// And stays open this long after its booked end (visits run late).
pub const VISIT_CLOSES_AFTER_MS: i64 = 2 * 60 * 60 * 1000;
/// The length assumed for an appointment booked without an end.
pub const VISIT_LENGTH_DEFAULT_MS: i64 = 60 * 60 * 1000;
/// Notices waiting for one connection at most; a connection this far behind is dropped.
pub const SIGNAL_QUEUE_NOTICES_MAX: usize = 256;
/// Rooms open on one instance at most.
pub const ROOMS_MAX: usize = 10_000;
/// The largest payload a member relays: a session description with every codec and
/// candidate fits well within it.
pub const SIGNAL_PAYLOAD_BYTES_MAX: usize = 32 * 1024;
/// How long a TURN credential handed to a browser lasts: long enough for a long visit's
/// reconnects, short enough to be worthless soon after.
pub const TURN_CREDENTIAL_SECS: i64 = 4 * 60 * 60;

/// Where browsers find a relay for their media, when the deployment has one: coturn with
/// `use-auth-secret`, whose secret Haven shares.
#[derive(Clone)]
pub struct TurnSettings {
    /// `turn:` / `turns:` / `stun:` URLs given to browsers as they are.
    pub urls: Vec<String>,
    pub secret: Secret<String>,
}

impl std::fmt::Debug for TurnSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnSettings")
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}

/// What a browser needs to reach its peers: the relay's URLs and a credential for them.
#[derive(Debug, Clone)]
pub struct IceServers {
    pub urls: Vec<String>,
    pub credential: Option<TurnCredential>,
}

/// Someone allowed into a visit (into its waiting room, or straight into its call), as
/// [`App::enter_visit`] established.
#[derive(Debug, Clone)]
pub struct VisitPass {
    /// The appointment's logical id: the visit's name.
    pub appointment: String,
    pub patient: PatientId,
    pub organisation: Option<OrganisationId>,
    pub person: Person,
    pub role: VisitRole,
    /// The fingerprint of the device they take part from (media keys are sealed to it).
    pub device: Option<String>,
    /// A guest's device keys, made for this visit (others seal to them).
    guest_device: Option<GuestDevice>,
    /// Who they are, for the audit entries of what they do in the visit.
    holder: Holder,
}

/// A guest's device: public keys made in their browser for one visit and published nowhere,
/// so the others can only check its self-signature and compare its safety number aloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDevice {
    pub hpke_public_key: [u8; 32],
    pub signing_public_key: [u8; 32],
    pub self_signature: Vec<u8>,
    pub fingerprint: String,
}

impl GuestDevice {
    /// Checks the keys' self-signature and computes their fingerprint.
    pub fn new(
        hpke_public_key: [u8; 32],
        signing_public_key: [u8; 32],
        self_signature: Vec<u8>,
    ) -> AppResult<Self> {
        let keys = haven_crypto::e2e::DevicePublicKeys {
            hpke: hpke_public_key,
            signing: signing_public_key,
        };
        keys.verify_self_signature(&self_signature)
            .map_err(|_| invalid("self_signature", "the device's keys are not signed by it"))?;
        Ok(Self {
            hpke_public_key,
            signing_public_key,
            self_signature,
            fingerprint: keys.fingerprint(),
        })
    }
}

/// What a guest may be to a visit: a word from a fixed list, so no name is kept.
pub const GUEST_KINDS: [&str; 4] = ["interpreter", "family", "caregiver", "other"];
/// Invitations one visit may have.
pub const VISIT_GUESTS_MAX: usize = 8;
/// Guest devices one room remembers.
const GUEST_DEVICES_PER_ROOM_MAX: usize = 32;
/// The prefixes of a guest's invitation and of their session, so a leaked one is recognised.
const GUEST_INVITATION_PREFIX: &str = "hvgi_";
const GUEST_SESSION_PREFIX: &str = "hvgs_";

/// An invitation just made: its secret is shown once, to be sent to the guest as a link.
#[derive(Debug)]
pub struct GuestInvitation {
    pub guest: GuestId,
    pub kind: String,
    pub secret: Secret<String>,
    pub expires_at_ms: i64,
}

/// A guest's session for one visit, just opened from their invitation.
#[derive(Debug)]
pub struct GuestSession {
    pub guest: GuestId,
    pub appointment: String,
    pub kind: String,
    pub secret: Secret<String>,
    pub expires_at_ms: i64,
}

/// The devices of a call: members' published devices with proofs, and guests' devices.
#[derive(Debug)]
pub struct CallDevices {
    pub published: crate::messaging::DeviceList,
    pub guests: Vec<(GuestId, GuestDevice)>,
}

/// Who holds a visit pass: a signed-in person, or a guest with their visit's session.
#[derive(Debug, Clone)]
enum Holder {
    Person(RequestContext),
    Guest {
        guest: GuestId,
        organisation: OrganisationId,
        origin: haven_audit::RequestOrigin,
    },
}

/// Whether a visit's call can be entered now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitState {
    Open,
    /// Earlier than [`VISIT_OPENS_BEFORE_MS`] before its start.
    NotOpenYet,
    /// Later than [`VISIT_CLOSES_AFTER_MS`] after its end.
    Over,
    /// A host ended it.
    Ended,
    /// The appointment is cancelled, a no-show, fulfilled or otherwise not held as a call.
    NotHeld,
}

impl VisitState {
    pub fn as_str(self) -> &'static str {
        match self {
            VisitState::Open => "open",
            VisitState::NotOpenYet => "not_open_yet",
            VisitState::Over => "over",
            VisitState::Ended => "ended",
            VisitState::NotHeld => "not_held",
        }
    }
}

/// Where a visit stands for one person.
#[derive(Debug, Clone)]
pub struct VisitStatus {
    pub patient: PatientId,
    /// The caller's role in it.
    pub role: VisitRole,
    pub state: VisitState,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub opens_at_ms: i64,
    /// The appointment's FHIR status.
    pub status: String,
}

/// What a member asks of the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VisitCommand {
    Admit(MemberId),
    Decline(MemberId),
    Relay {
        to: MemberId,
        kind: SignalKind,
        payload: String,
    },
    Leave,
    End,
    /// A host asks everyone to agree to a recording (and agrees).
    AskToRecord,
    /// A member answers the ask.
    ConsentToRecord(bool),
    StartRecording,
    StopRecording,
}

/// One connection to a room: the member it speaks for and the notices for it. The queue
/// ends when the member is replaced by a newer connection, declined, the visit ends, or the
/// connection fell too far behind.
#[derive(Debug)]
pub struct VisitConnection {
    pub member: MemberId,
    pub notices: mpsc::Receiver<Notice>,
    id: u64,
}

struct Slot {
    room: Room,
    patient: PatientId,
    /// The open connection of each member.
    connections: HashMap<MemberId, (u64, mpsc::Sender<Notice>)>,
    /// The keys of guests' devices (made for this visit, published nowhere), by fingerprint.
    guest_devices: HashMap<String, GuestDevice>,
}

/// The rooms of this instance.
#[derive(Default)]
pub struct Rooms {
    slots: Mutex<HashMap<String, Slot>>,
    next_connection: AtomicU64,
}

impl std::fmt::Debug for Rooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rooms").finish_non_exhaustive()
    }
}

/// Hands each notice to its member's connection. A connection whose queue is full is
/// dropped (its browser reconnects); one that is gone is forgotten.
fn deliver(slot: &mut Slot, deliveries: Vec<Delivery>) {
    for delivery in deliveries {
        let closes = matches!(
            delivery.notice,
            Notice::Declined | Notice::Ended | Notice::Replaced
        );
        let Some((_, sender)) = slot.connections.get(&delivery.to) else {
            continue;
        };
        let failed = sender.try_send(delivery.notice).is_err();
        if failed || closes {
            slot.connections.remove(&delivery.to);
        }
    }
}

impl Rooms {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many rooms are open (for the bench and the operator).
    pub fn open_rooms(&self) -> usize {
        self.lock().len()
    }

    fn join(&self, pass: &VisitPass) -> Result<VisitConnection, RoomError> {
        let mut slots = self.lock();
        if !slots.contains_key(&pass.appointment) && slots.len() >= ROOMS_MAX {
            return Err(RoomError::RoomFull);
        }
        let slot = slots
            .entry(pass.appointment.clone())
            .or_insert_with(|| Slot {
                room: Room::new(),
                patient: pass.patient,
                connections: HashMap::new(),
                guest_devices: HashMap::new(),
            });
        let joined = match slot.room.join(pass.person, pass.role, pass.device.clone()) {
            Ok(joined) => joined,
            Err(error) => {
                if slot.room.is_empty() {
                    slots.remove(&pass.appointment);
                }
                return Err(error);
            }
        };
        if let Some(device) = &pass.guest_device
            && slot.guest_devices.len() < GUEST_DEVICES_PER_ROOM_MAX
        {
            slot.guest_devices
                .insert(device.fingerprint.clone(), device.clone());
        }
        let (sender, notices) = mpsc::channel(SIGNAL_QUEUE_NOTICES_MAX);
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        if let Some((_, previous)) = slot.connections.insert(joined.member, (id, sender)) {
            // The earlier connection of the same person ends; the new one carries on.
            let _ = previous.try_send(Notice::Replaced);
        }
        deliver(slot, joined.deliveries);
        Ok(VisitConnection {
            member: joined.member,
            notices,
            id,
        })
    }

    /// Runs `change` on the room of `appointment` and delivers what it says.
    fn change(
        &self,
        appointment: &str,
        change: impl FnOnce(&mut Room) -> Result<Vec<Delivery>, RoomError>,
    ) -> Result<(), RoomError> {
        let mut slots = self.lock();
        let slot = slots.get_mut(appointment).ok_or(RoomError::UnknownMember)?;
        let deliveries = change(&mut slot.room)?;
        deliver(slot, deliveries);
        if slot.room.is_empty() {
            slots.remove(appointment);
        }
        Ok(())
    }

    fn read<T>(
        &self,
        appointment: &str,
        read: impl FnOnce(&Room) -> Result<T, RoomError>,
    ) -> Result<T, RoomError> {
        let slots = self.lock();
        let slot = slots.get(appointment).ok_or(RoomError::UnknownMember)?;
        read(&slot.room)
    }

    /// The connection `connection` of `member` closed. Unless a newer connection took the
    /// member over, they are marked away and keep their place for the grace period.
    fn disconnected(&self, appointment: &str, member: MemberId, connection: u64, now_ms: i64) {
        let mut slots = self.lock();
        let Some(slot) = slots.get_mut(appointment) else {
            return;
        };
        let current = slot
            .connections
            .get(&member)
            .is_some_and(|(id, _)| *id == connection);
        let taken_over = slot.connections.contains_key(&member) && !current;
        if taken_over {
            return;
        }
        slot.connections.remove(&member);
        let deliveries = slot.room.disconnect(member, now_ms);
        deliver(slot, deliveries);
    }

    fn guest_devices(&self, appointment: &str) -> HashMap<String, GuestDevice> {
        self.lock()
            .get(appointment)
            .map(|slot| slot.guest_devices.clone())
            .unwrap_or_default()
    }

    /// Removes members whose grace ran out, in every room; returns who left where.
    fn expire(&self, now_ms: i64) -> Vec<(String, PatientId, MemberView)> {
        let mut slots = self.lock();
        let mut gone = Vec::new();
        slots.retain(|appointment, slot| {
            let views: HashMap<MemberId, MemberView> = slot
                .room
                .members()
                .into_iter()
                .map(|view| (view.id, view))
                .collect();
            let (expired, deliveries) = slot.room.expire(now_ms);
            deliver(slot, deliveries);
            for member in expired {
                if let Some(view) = views.get(&member) {
                    gone.push((appointment.clone(), slot.patient, view.clone()));
                }
            }
            !slot.room.is_empty()
        });
        gone
    }

    /// The visit ended (by a host here, or found ended in the store): everyone is told.
    fn close(&self, appointment: &str) {
        let mut slots = self.lock();
        if let Some(mut slot) = slots.remove(appointment) {
            let deliveries = slot.room.close();
            deliver(&mut slot, deliveries);
        }
    }
}

/// A refusal of the room, as the application answers it.
pub fn room_refusal(error: RoomError) -> AppError {
    AppError::Conflict {
        code: error.as_str(),
        message: error.message().to_owned(),
    }
}

/// Whether an appointment in this state can be held as a call.
fn holds_a_call(status: &str) -> bool {
    matches!(status, "booked" | "arrived" | "checked-in" | "pending")
}

impl App {
    /// The rooms of this instance.
    pub fn rooms(&self) -> &Rooms {
        &self.rooms
    }

    /// Whom a visit's socket would be for: a person; an API token is refused (and the
    /// refusal recorded) before anything else is looked at.
    pub async fn visit_caller(&self, context: &RequestContext) -> AppResult<haven_domain::UserId> {
        self.person(context, Action::Create, "Visit").await
    }

    /// Where the visit booked as `appointment` stands for the caller: whether they may take
    /// part (decided by the policy, and recorded), in which role, and whether its call is
    /// open. Reading the appointment is itself authorized and audited, so someone who may
    /// not read it never learns whether it exists.
    pub async fn visit_status(
        &self,
        context: &RequestContext,
        appointment: &str,
    ) -> AppResult<VisitStatus> {
        let checked = self.check_visit(context, appointment).await?;
        self.gate
            .authorize_resource(
                context,
                Action::Read,
                crate::gate::AuditedResource {
                    resource: haven_domain::Resource::Visit(checked.patient),
                    patient: None,
                    resource_type: "Visit",
                    resource_id: Some(appointment.to_owned()),
                },
                false,
            )
            .await?;
        Ok(checked)
    }

    /// The appointment, read through the gate, held against the time and the record of
    /// endings; no entry of its own beyond the appointment's read.
    async fn check_visit(
        &self,
        context: &RequestContext,
        appointment: &str,
    ) -> AppResult<VisitStatus> {
        let view = self.fhir_read(context, "Appointment", appointment).await?;
        let Some(AnyResource::Appointment(booked)) = view.resource else {
            return Err(AppError::NotFound);
        };
        let patient = booked
            .patient()
            .and_then(|reference| reference.target())
            .and_then(|(_, id)| id.parse::<PatientId>().ok())
            .ok_or_else(|| AppError::Conflict {
                code: "visit_without_patient",
                message: "this appointment names no patient, so it cannot be held as a visit"
                    .to_owned(),
            })?;
        let role = match context.actor.role {
            Role::Patient => VisitRole::Patient,
            Role::Clinician | Role::Nurse => VisitRole::Host,
            // Anyone else may have read the appointment (the front desk books it) but has
            // no place in its call: the policy refuses, and the refusal is recorded.
            _ => {
                self.gate
                    .authorize_visit(
                        context,
                        AuditAction::VisitJoin,
                        patient,
                        appointment.to_owned(),
                    )
                    .await?;
                return Err(AppError::Unexpected(
                    "the policy let a role without a place in visits join one".into(),
                ));
            }
        };
        let span = booked.span().ok_or_else(|| AppError::Conflict {
            code: "visit_without_time",
            message: "this appointment has no start time, so its visit cannot be joined".to_owned(),
        })?;
        let starts_at_ms = span.start_ms;
        let ends_at_ms = if booked.end.is_some() {
            span.end_ms
        } else {
            starts_at_ms + VISIT_LENGTH_DEFAULT_MS
        };
        let opens_at_ms = starts_at_ms - VISIT_OPENS_BEFORE_MS;
        let closes_at_ms = ends_at_ms + VISIT_CLOSES_AFTER_MS;
        let now_ms = self.clock.now_ms();
        let state = if self.store.visit_ending(appointment).await?.is_some() {
            VisitState::Ended
        } else if !holds_a_call(booked.status.as_str()) {
            VisitState::NotHeld
        } else if now_ms < opens_at_ms {
            VisitState::NotOpenYet
        } else if now_ms > closes_at_ms {
            VisitState::Over
        } else {
            VisitState::Open
        };
        Ok(VisitStatus {
            patient,
            role,
            state,
            starts_at_ms,
            ends_at_ms,
            opens_at_ms,
            status: booked.status.as_str().to_owned(),
        })
    }

    /// Lets the caller into the visit booked as `appointment`: its host straight into the
    /// call, its patient into the waiting room. `device` names one of the caller's
    /// registered devices, to which the others seal their media keys.
    pub async fn enter_visit(
        &self,
        context: &RequestContext,
        appointment: &str,
        device: Option<uuid::Uuid>,
    ) -> AppResult<VisitPass> {
        let user = self.person(context, Action::Create, "Visit").await?;
        let checked = self.check_visit(context, appointment).await?;
        match checked.state {
            VisitState::Open => {}
            VisitState::Ended => return Err(room_refusal(RoomError::Ended)),
            VisitState::NotHeld => {
                return Err(AppError::Conflict {
                    code: "visit_not_held",
                    message: format!(
                        "this appointment is {}, so its visit cannot be joined",
                        checked.status
                    ),
                });
            }
            VisitState::NotOpenYet => {
                return Err(AppError::Conflict {
                    code: "visit_not_open_yet",
                    message: format!(
                        "this visit opens {} minutes before it starts",
                        VISIT_OPENS_BEFORE_MS / 60_000
                    ),
                });
            }
            VisitState::Over => {
                return Err(AppError::Conflict {
                    code: "visit_over",
                    message: "this visit's time is over".to_owned(),
                });
            }
        }
        let device = match device {
            None => None,
            Some(id) => {
                let stored = self.store.device(id).await?;
                match stored {
                    Some(stored) if stored.user == user && stored.removed_at_ms.is_none() => {
                        Some(stored.fingerprint)
                    }
                    _ => return Err(invalid("device", "one of your current devices")),
                }
            }
        };
        self.gate
            .authorize_visit(
                context,
                AuditAction::VisitJoin,
                checked.patient,
                appointment.to_owned(),
            )
            .await?;
        Ok(VisitPass {
            appointment: appointment.to_owned(),
            patient: checked.patient,
            organisation: context.actor.organisation,
            person: Person::User(user),
            role: checked.role,
            device,
            guest_device: None,
            holder: Holder::Person(context.clone()),
        })
    }

    /// The devices of the call's members (published ones with their proofs, and guests'),
    /// for a member of the call. Someone waiting, or not in the room, is told nothing.
    pub async fn visit_devices(
        &self,
        context: &RequestContext,
        appointment: &str,
    ) -> AppResult<CallDevices> {
        let user = self.person(context, Action::Read, "Device").await?;
        self.call_devices(appointment, Person::User(user), Some(context))
            .await
    }

    /// As [`App::visit_devices`], for a guest holding their visit's session.
    pub async fn guest_visit_devices(
        &self,
        session: &str,
        appointment: &str,
    ) -> AppResult<CallDevices> {
        let guest = self.guest_session(session, appointment).await?;
        self.call_devices(appointment, Person::Guest(guest.id), None)
            .await
    }

    async fn call_devices(
        &self,
        appointment: &str,
        asking: Person,
        context: Option<&RequestContext>,
    ) -> AppResult<CallDevices> {
        let (members, guest_devices) = self
            .rooms
            .read(appointment, |room| Ok(room.members()))
            .map(|members| {
                let devices = self.rooms.guest_devices(appointment);
                (members, devices)
            })
            .unwrap_or_default();
        let admitted =
            |view: &MemberView| view.admission == haven_domain::visit::Admission::Admitted;
        if !members.iter().any(|m| admitted(m) && m.person == asking) {
            return Err(AppError::NotFound);
        }
        if let Some(context) = context {
            self.gate
                .authorize_unaudited_read(context, haven_domain::Resource::DeviceKeys)
                .await?;
        }
        let users: Vec<haven_domain::UserId> = members
            .iter()
            .filter(|m| admitted(m))
            .filter_map(|m| match m.person {
                Person::User(user) => Some(user),
                Person::Guest(_) => None,
            })
            .collect();
        let fingerprints: Vec<&str> = members
            .iter()
            .filter(|m| admitted(m))
            .filter_map(|m| m.device.as_deref())
            .collect();
        let devices = self
            .store
            .devices_of(&users)
            .await?
            .into_iter()
            .filter(|d| fingerprints.contains(&d.fingerprint.as_str()))
            .collect();
        let guests = members
            .iter()
            .filter(|m| admitted(m))
            .filter_map(|m| match (m.person, m.device.as_ref()) {
                (Person::Guest(guest), Some(fingerprint)) => guest_devices
                    .get(fingerprint)
                    .map(|device| (guest, device.clone())),
                _ => None,
            })
            .collect();
        Ok(CallDevices {
            published: self.prove_devices(devices).await?,
            guests,
        })
    }

    /// A clinician of the visit invites a guest (`kind` from [`GUEST_KINDS`]). The secret is
    /// returned once; the invitation is redeemed once and lasts until the visit closes.
    pub async fn invite_guest(
        &self,
        context: &RequestContext,
        appointment: &str,
        kind: &str,
    ) -> AppResult<GuestInvitation> {
        self.person(context, Action::Update, "Visit").await?;
        let kind = GUEST_KINDS
            .iter()
            .find(|k| **k == kind)
            .ok_or_else(|| invalid("kind", format!("one of {}", GUEST_KINDS.join(", "))))?;
        let checked = self.check_visit(context, appointment).await?;
        if !matches!(checked.state, VisitState::Open | VisitState::NotOpenYet) {
            return Err(AppError::Conflict {
                code: "visit_not_open",
                message: "guests can be invited only to a visit still to come or under way"
                    .to_owned(),
            });
        }
        let guest = GuestId::generate();
        self.gate
            .authorize_visit(
                context,
                AuditAction::VisitInvite,
                checked.patient,
                format!("{appointment}/guest:{guest}"),
            )
            .await?;
        if checked.role != VisitRole::Host {
            return Err(AppError::Forbidden {
                reason: haven_domain::DenyReason::RoleNotPermitted.as_str(),
            });
        }
        if self.store.visit_guests(appointment).await?.len() >= VISIT_GUESTS_MAX {
            return Err(AppError::Conflict {
                code: "too_many_guests",
                message: format!("a visit may have at most {VISIT_GUESTS_MAX} guest invitations"),
            });
        }
        let Some(organisation) = context.actor.organisation else {
            return Err(AppError::Unexpected(
                "a host without an organisation".into(),
            ));
        };
        let secret = crate::identity::random_token(GUEST_INVITATION_PREFIX);
        let expires_at_ms = checked.ends_at_ms + VISIT_CLOSES_AFTER_MS;
        self.store
            .insert_visit_guest(haven_store::visits::StoredGuest {
                id: guest,
                appointment: appointment.to_owned(),
                organisation,
                patient: checked.patient,
                kind: (*kind).to_owned(),
                invitation_hash: crate::identity::secret_hash(&secret),
                session_hash: None,
                invited_by: context.actor.principal.actor_id(),
                created_at_ms: self.clock.now_ms(),
                expires_at_ms,
                redeemed_at_ms: None,
            })
            .await?;
        Ok(GuestInvitation {
            guest,
            kind: (*kind).to_owned(),
            secret: Secret::new(secret),
            expires_at_ms,
        })
    }

    /// A guest opens their invitation, once: it becomes a session for this visit only. An
    /// invitation used before, expired or unknown is refused alike, and the attempt is
    /// recorded.
    pub async fn redeem_guest_invitation(
        &self,
        invitation: &str,
        origin: &haven_audit::RequestOrigin,
    ) -> AppResult<GuestSession> {
        let refused = || AppError::Unauthenticated {
            reason: "guest_invitation_invalid",
        };
        let now_ms = self.clock.now_ms();
        let redeemed = if invitation.starts_with(GUEST_INVITATION_PREFIX) && invitation.len() <= 128
        {
            let session = crate::identity::random_token(GUEST_SESSION_PREFIX);
            self.store
                .redeem_visit_guest(
                    &crate::identity::secret_hash(invitation),
                    &crate::identity::secret_hash(&session),
                    now_ms,
                )
                .await?
                .map(|guest| (guest, session))
        } else {
            None
        };
        let Some((guest, session)) = redeemed else {
            self.gate
                .record_system(haven_audit::AuditEvent {
                    at_ms: now_ms,
                    actor: None,
                    role: Some("guest".to_owned()),
                    organisation: None,
                    session: None,
                    client_app: None,
                    action: AuditAction::FailedLogin,
                    patient: None,
                    resource_type: Some("Visit".to_owned()),
                    resource_id: None,
                    outcome: haven_audit::Outcome::Denied,
                    reason: "guest_invitation_invalid".to_owned(),
                    purpose_of_use: None,
                    origin: origin.clone(),
                })
                .await?;
            return Err(refused());
        };
        self.gate
            .record_guest_visit(crate::gate::GuestStep {
                guest: guest.id,
                organisation: guest.organisation,
                origin: origin.clone(),
                action: AuditAction::Login,
                patient: guest.patient,
                resource_id: guest.appointment.clone(),
                allowed: true,
            })
            .await?;
        Ok(GuestSession {
            guest: guest.id,
            appointment: guest.appointment,
            kind: guest.kind,
            secret: Secret::new(session),
            expires_at_ms: guest.expires_at_ms,
        })
    }

    /// The guest whose session this is, for this visit, while it lasts.
    async fn guest_session(
        &self,
        session: &str,
        appointment: &str,
    ) -> AppResult<haven_store::visits::StoredGuest> {
        let refused = AppError::Unauthenticated {
            reason: "guest_session_invalid",
        };
        if !session.starts_with(GUEST_SESSION_PREFIX) || session.len() > 128 {
            return Err(refused);
        }
        let guest = self
            .store
            .visit_guest_by_session(&crate::identity::secret_hash(session))
            .await?
            .ok_or(refused)?;
        if guest.expires_at_ms <= self.clock.now_ms() {
            return Err(AppError::Unauthenticated {
                reason: "guest_session_expired",
            });
        }
        if guest.appointment != appointment {
            return Err(AppError::NotFound);
        }
        Ok(guest)
    }

    /// Whether a guest's session still holds (for an open socket): unexpired, and the visit
    /// not ended.
    pub async fn guest_session_is_live(&self, session: &str, appointment: &str) -> bool {
        self.guest_session(session, appointment).await.is_ok()
            && matches!(self.store.visit_ending(appointment).await, Ok(None))
    }

    /// Lets a guest with their visit's session into its waiting room, with the device keys
    /// their browser made for it.
    pub async fn enter_visit_as_guest(
        &self,
        session: &str,
        appointment: &str,
        device: Option<GuestDevice>,
        origin: &haven_audit::RequestOrigin,
    ) -> AppResult<VisitPass> {
        let guest = self.guest_session(session, appointment).await?;
        if self.store.visit_ending(appointment).await?.is_some() {
            return Err(room_refusal(RoomError::Ended));
        }
        self.gate
            .record_guest_visit(crate::gate::GuestStep {
                guest: guest.id,
                organisation: guest.organisation,
                origin: origin.clone(),
                action: AuditAction::VisitJoin,
                patient: guest.patient,
                resource_id: appointment.to_owned(),
                allowed: true,
            })
            .await?;
        Ok(VisitPass {
            appointment: appointment.to_owned(),
            patient: guest.patient,
            organisation: Some(guest.organisation),
            person: Person::Guest(guest.id),
            role: VisitRole::Guest,
            device: device.as_ref().map(|d| d.fingerprint.clone()),
            guest_device: device,
            holder: Holder::Guest {
                guest: guest.id,
                organisation: guest.organisation,
                origin: origin.clone(),
            },
        })
    }

    /// A visit's guests as its hosts see them (what they are, whether they came).
    pub async fn visit_guests(
        &self,
        context: &RequestContext,
        appointment: &str,
    ) -> AppResult<Vec<haven_store::visits::StoredGuest>> {
        self.person(context, Action::Read, "Visit").await?;
        let checked = self.visit_status(context, appointment).await?;
        if checked.role != VisitRole::Host {
            return Err(AppError::Forbidden {
                reason: haven_domain::DenyReason::RoleNotPermitted.as_str(),
            });
        }
        Ok(self.store.visit_guests(appointment).await?)
    }

    /// Connects an entered person to the visit's room.
    pub fn connect_visit(&self, pass: &VisitPass) -> AppResult<VisitConnection> {
        self.rooms.join(pass).map_err(room_refusal)
    }

    /// Carries out what a member asked. Admitting, declining and ending are decided by the
    /// policy and recorded before they take effect; a refusal of the room changes nothing.
    pub async fn visit_command(
        &self,
        pass: &VisitPass,
        member: MemberId,
        command: VisitCommand,
    ) -> AppResult<()> {
        let rooms = &self.rooms;
        let appointment = pass.appointment.as_str();
        match command {
            VisitCommand::Relay { to, kind, payload } => {
                if payload.len() > SIGNAL_PAYLOAD_BYTES_MAX {
                    return Err(AppError::TooLarge {
                        limit_bytes: SIGNAL_PAYLOAD_BYTES_MAX as u64,
                    });
                }
                rooms
                    .change(appointment, |room| {
                        room.relay(member, to, kind, payload).map(|d| vec![d])
                    })
                    .map_err(room_refusal)
            }
            VisitCommand::Admit(waiting) | VisitCommand::Decline(waiting) => {
                let admit = matches!(command, VisitCommand::Admit(_));
                let person = rooms
                    .read(appointment, |room| room.check_admission(member, waiting))
                    .map_err(room_refusal)?;
                let action = if admit {
                    AuditAction::VisitAdmit
                } else {
                    AuditAction::VisitDecline
                };
                self.audit_step(pass, action, format!("{appointment}/{}", person_id(person)))
                    .await?;
                rooms
                    .change(appointment, |room| {
                        if admit {
                            room.admit(member, waiting)
                        } else {
                            room.decline(member, waiting)
                        }
                    })
                    .map_err(room_refusal)
            }
            VisitCommand::Leave => {
                self.audit_step(pass, AuditAction::VisitLeave, appointment.to_owned())
                    .await?;
                rooms
                    .change(appointment, |room| Ok(room.leave(member)))
                    .map_err(room_refusal)
            }
            VisitCommand::End => {
                rooms
                    .read(appointment, |room| room.check_end(member))
                    .map_err(room_refusal)?;
                let Holder::Person(context) = &pass.holder else {
                    return Err(room_refusal(RoomError::NotHost));
                };
                self.end_visit(context, appointment, pass.patient).await
            }
            VisitCommand::AskToRecord => {
                rooms
                    .read(appointment, |room| room.check_ask_to_record(member))
                    .map_err(room_refusal)?;
                // Asking is agreeing: the host's consent is recorded as theirs.
                self.record_visit_step(pass, AuditAction::RecordingConsent, pass.person)
                    .await?;
                rooms
                    .change(appointment, |room| room.ask_to_record(member))
                    .map_err(room_refusal)
            }
            VisitCommand::ConsentToRecord(granted) => {
                let person = rooms
                    .read(appointment, |room| room.check_consent(member))
                    .map_err(room_refusal)?;
                let action = if granted {
                    AuditAction::RecordingConsent
                } else {
                    AuditAction::RecordingRefusal
                };
                self.record_visit_step(pass, action, person).await?;
                rooms
                    .change(appointment, |room| room.consent_to_record(member, granted))
                    .map_err(room_refusal)
            }
            VisitCommand::StartRecording => {
                rooms
                    .read(appointment, |room| room.check_start_recording(member))
                    .map_err(room_refusal)?;
                self.record_visit_step(pass, AuditAction::RecordingStart, pass.person)
                    .await?;
                rooms
                    .change(appointment, |room| room.start_recording(member))
                    .map_err(room_refusal)
            }
            VisitCommand::StopRecording => {
                rooms
                    .read(appointment, |room| room.check_stop_recording(member))
                    .map_err(room_refusal)?;
                self.record_visit_step(pass, AuditAction::RecordingStop, pass.person)
                    .await?;
                rooms
                    .change(appointment, |room| room.stop_recording(member))
                    .map_err(room_refusal)
            }
        }
    }

    /// Records one step of `pass`'s holder in the visit, naming the person it concerns.
    async fn record_visit_step(
        &self,
        pass: &VisitPass,
        action: AuditAction,
        person: Person,
    ) -> AppResult<()> {
        self.audit_step(
            pass,
            action,
            format!("{}/{}", pass.appointment, person_id(person)),
        )
        .await
    }

    /// Decides and records a step of the pass's holder: a person through the policy, a
    /// guest by their invitation, which lets them take part (enter, answer, leave) and do
    /// nothing a host does.
    async fn audit_step(
        &self,
        pass: &VisitPass,
        action: AuditAction,
        resource_id: String,
    ) -> AppResult<()> {
        match &pass.holder {
            Holder::Person(context) => {
                self.gate
                    .authorize_visit(context, action, pass.patient, resource_id)
                    .await
            }
            Holder::Guest {
                guest,
                organisation,
                origin,
            } => {
                let taking_part = matches!(
                    action,
                    AuditAction::VisitJoin
                        | AuditAction::VisitLeave
                        | AuditAction::RecordingConsent
                        | AuditAction::RecordingRefusal
                );
                self.gate
                    .record_guest_visit(crate::gate::GuestStep {
                        guest: *guest,
                        organisation: *organisation,
                        origin: origin.clone(),
                        action,
                        patient: pass.patient,
                        resource_id,
                        allowed: taking_part,
                    })
                    .await?;
                if taking_part {
                    Ok(())
                } else {
                    Err(AppError::Forbidden {
                        reason: haven_domain::DenyReason::RoleNotPermitted.as_str(),
                    })
                }
            }
        }
    }

    /// Ends a visit for everyone, as one of its hosts: recorded, stored (so it stays ended
    /// after a restart), then everyone in the room is told.
    async fn end_visit(
        &self,
        context: &RequestContext,
        appointment: &str,
        patient: PatientId,
    ) -> AppResult<()> {
        self.gate
            .authorize_visit(
                context,
                AuditAction::VisitEnd,
                patient,
                appointment.to_owned(),
            )
            .await?;
        let Some(organisation) = context.actor.organisation else {
            return Err(AppError::Unexpected(
                "a host without an organisation".into(),
            ));
        };
        self.store
            .end_visit(VisitEnding {
                appointment: appointment.to_owned(),
                organisation,
                patient,
                ended_by: context.actor.principal.actor_id(),
                ended_at_ms: self.clock.now_ms(),
            })
            .await?;
        self.rooms.close(appointment);
        Ok(())
    }

    /// A connection of a member closed (the network dropped, the tab closed).
    pub fn visit_disconnected(&self, pass: &VisitPass, connection: &VisitConnection) {
        self.rooms.disconnected(
            &pass.appointment,
            connection.member,
            connection.id,
            self.clock.now_ms(),
        );
    }

    /// Lets members whose connection did not come back within the grace leave, recording
    /// each departure as theirs. Run every few seconds by [`App::run_visit_sweeper`].
    pub async fn sweep_visits(&self) -> AppResult<usize> {
        let gone = self.rooms.expire(self.clock.now_ms());
        let count = gone.len();
        for (appointment, patient, member) in gone {
            self.gate
                .record_system(haven_audit::AuditEvent {
                    at_ms: self.clock.now_ms(),
                    actor: Some(person_id(member.person)),
                    role: None,
                    organisation: None,
                    session: None,
                    client_app: None,
                    action: AuditAction::VisitLeave,
                    patient: Some(patient),
                    resource_type: Some("Visit".to_owned()),
                    resource_id: Some(appointment),
                    outcome: haven_audit::Outcome::Allowed,
                    reason: "connection_lost".to_owned(),
                    purpose_of_use: None,
                    origin: haven_audit::RequestOrigin::default(),
                })
                .await?;
        }
        Ok(count)
    }

    /// Sweeps the rooms every second until `stop` completes.
    pub async fn run_visit_sweeper(&self, stop: impl std::future::Future<Output = ()>) {
        let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    if let Err(error) = self.sweep_visits().await {
                        tracing::error!(%error, "visit sweep failed");
                    }
                }
                () = &mut stop => break,
            }
        }
    }

    /// The relay browsers use for a visit's media, with a credential of their own that
    /// expires after [`TURN_CREDENTIAL_SECS`]. Without a configured relay, none: browsers
    /// on one network still connect directly.
    pub fn ice_servers(&self, _entered: &VisitPass) -> IceServers {
        let Some(turn) = self.turn.as_ref() else {
            return IceServers {
                urls: Vec::new(),
                credential: None,
            };
        };
        // An opaque name: the relay learns nothing of who calls whom.
        let name = uuid::Uuid::new_v4().simple().to_string();
        let expires_at_secs = self.clock.now_ms() / 1000 + TURN_CREDENTIAL_SECS;
        IceServers {
            urls: turn.urls.clone(),
            credential: Some(turn_credential(
                turn.secret.expose_secret().as_bytes(),
                &name,
                expires_at_secs,
            )),
        }
    }

    /// Uses `turn` as the media relay.
    pub fn with_turn(mut self, turn: TurnSettings) -> Self {
        self.turn = Some(std::sync::Arc::new(turn));
        self
    }
}

/// How a person is named in the audit trail.
fn person_id(person: Person) -> String {
    match person {
        Person::User(user) => user.to_string(),
        Person::Guest(guest) => format!("guest:{guest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_booked_and_arrived_appointments_hold_a_call() {
        for status in ["booked", "arrived", "checked-in", "pending"] {
            assert!(holds_a_call(status), "{status}");
        }
        for status in [
            "proposed",
            "fulfilled",
            "cancelled",
            "noshow",
            "entered-in-error",
            "waitlist",
        ] {
            assert!(!holds_a_call(status), "{status}");
        }
    }
}
