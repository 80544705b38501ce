//! A video visit's room: who is in it, who waits to be admitted, and what each member may
//! send to whom. The rules of the waiting room live here, as one pure state machine that
//! the application drives and the tests exercise without sockets or clocks.
//!
//! - The visit's clinicians (hosts) are in at once; the patient and guests wait in the lobby
//!   until a host admits them. Nobody receives anything from the call (peers, descriptions,
//!   keys, chat) before being admitted: a waiting member hears only the lobby's own notices.
//! - A member is a person (a user, or a guest holding an invitation), not a connection. When
//!   the same person connects again (a dropped network, a reloaded page), the new connection
//!   takes over the member, admitted state included; the old connection is told it was
//!   replaced. A member whose connection dropped keeps their place for
//!   [`RECONNECT_GRACE_MS`], then leaves.
//! - The room holds at most [`PARTICIPANTS_MAX`] admitted members (peer-to-peer media is a
//!   full mesh, so every member sends to every other) and [`WAITING_MAX`] waiting ones.
//! - Once a host ends the visit, the room refuses everyone for good.
//!
//! - Recording needs everyone's consent: a host asks, every admitted member answers, and
//!   only when all have agreed may a host start; anyone declining ends the ask. Someone
//!   admitted while a recording runs has not agreed to it, so the recording stops.
//!
//! What members relay to each other (session descriptions, ICE candidates, sealed media keys,
//! sealed chat) is opaque text here: the room decides who may send to whom, not what.

use crate::ids::{GuestId, UserId};

/// Admitted members at most: with peer-to-peer media every member sends to every other, so
/// the uplink grows with each one.
pub const PARTICIPANTS_MAX: usize = 4;
/// Members waiting in the lobby at most.
pub const WAITING_MAX: usize = 8;
/// How long a member whose connection dropped keeps their place (and their admission).
pub const RECONNECT_GRACE_MS: i64 = 30_000;

/// Who a member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Person {
    User(UserId),
    /// Someone without an account, invited for this one visit (an interpreter, a relative).
    Guest(GuestId),
}

/// What a member is to the visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitRole {
    /// A clinician of the visit: admits, declines and ends.
    Host,
    /// The patient the visit is for.
    Patient,
    /// An invited guest.
    Guest,
}

impl VisitRole {
    pub fn as_str(self) -> &'static str {
        match self {
            VisitRole::Host => "host",
            VisitRole::Patient => "patient",
            VisitRole::Guest => "guest",
        }
    }
}

/// A member's number within one room: small, never reused in that room, so a relayed
/// message (or a media key id) can name its sender unambiguously.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Waiting,
    Admitted,
}

impl Admission {
    pub fn as_str(self) -> &'static str {
        match self {
            Admission::Waiting => "waiting",
            Admission::Admitted => "admitted",
        }
    }
}

/// What members relay to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    /// A WebRTC session description (offer or answer).
    Description,
    /// An ICE candidate.
    Candidate,
    /// A media key sealed to the recipient's device.
    Key,
    /// A chat message sealed to the recipient's device.
    Chat,
    /// Media state: muted, camera off, sharing the screen.
    Media,
}

impl SignalKind {
    pub const ALL: [SignalKind; 5] = [
        SignalKind::Description,
        SignalKind::Candidate,
        SignalKind::Key,
        SignalKind::Chat,
        SignalKind::Media,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Description => "description",
            SignalKind::Candidate => "candidate",
            SignalKind::Key => "key",
            SignalKind::Chat => "chat",
            SignalKind::Media => "media",
        }
    }

    pub fn parse(name: &str) -> Option<SignalKind> {
        SignalKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// A member as others see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub id: MemberId,
    pub person: Person,
    pub role: VisitRole,
    pub admission: Admission,
    pub connected: bool,
    /// The fingerprint of the device the member takes part from, to which media keys are
    /// sealed (checked by the application against the person's published devices).
    pub device: Option<String>,
}

/// Where the visit's recording stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingPhase {
    Off,
    /// A host asked; members are answering.
    Asking,
    /// Everyone agreed and a host is recording.
    On,
}

impl RecordingPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingPhase::Off => "off",
            RecordingPhase::Asking => "asking",
            RecordingPhase::On => "on",
        }
    }
}

/// Why a recording (or the ask for one) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingEnd {
    /// This member did not agree.
    Declined(MemberId),
    /// Someone who has not agreed joined the call.
    Joined,
    /// A host stopped it.
    Stopped,
    /// The host who asked or records left.
    RecorderLeft,
}

impl RecordingEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingEnd::Declined(_) => "declined",
            RecordingEnd::Joined => "joined",
            RecordingEnd::Stopped => "stopped",
            RecordingEnd::RecorderLeft => "recorder_left",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Recording {
    #[default]
    Off,
    Asking {
        by: MemberId,
        consents: Vec<MemberId>,
    },
    On {
        by: MemberId,
    },
}

/// What the room tells a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The first notice on a connection: who you are, whether you wait, and (once admitted)
    /// who else is in the call.
    Welcome {
        you: MemberId,
        role: VisitRole,
        admission: Admission,
        members: Vec<MemberView>,
    },
    /// A host let you in: here is who is in the call.
    Admitted { members: Vec<MemberView> },
    /// A host turned you away; the connection ends.
    Declined,
    /// For hosts: who waits in the lobby now.
    Lobby { waiting: Vec<MemberView> },
    /// Someone was admitted to the call (or came back into it).
    Joined(MemberView),
    /// Someone left the call.
    Left(MemberId),
    /// Someone's connection dropped or came back.
    Presence { member: MemberId, connected: bool },
    /// What another member sent you.
    Relay {
        from: MemberId,
        kind: SignalKind,
        payload: String,
    },
    /// The visit is over; the connection ends.
    Ended,
    /// You connected again elsewhere; this connection ends.
    Replaced,
    /// The recording's state changed (asked, answered, started, stopped).
    Recording {
        phase: RecordingPhase,
        /// The host who asked, or records.
        by: Option<MemberId>,
        /// Who has agreed so far.
        consented: Vec<MemberId>,
        /// Why it ended, when it just did.
        ended: Option<RecordingEnd>,
    },
}

/// One notice for one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub to: MemberId,
    pub notice: Notice,
}

/// Why the room refused something. Each is a member's mistake or the room's limit, answered
/// to that member; none changes the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomError {
    /// The visit was ended.
    Ended,
    /// The call already holds [`PARTICIPANTS_MAX`] members.
    RoomFull,
    /// The lobby already holds [`WAITING_MAX`] members.
    LobbyFull,
    /// Only a host may do this.
    NotHost,
    /// Only an admitted member may do this (a waiting one can only wait or leave).
    NotAdmitted,
    /// No such member in this room (or not one you can address).
    UnknownMember,
    /// The member is not waiting (already admitted, or gone).
    NotWaiting,
    /// A recording is already asked for or running.
    RecordingBusy,
    /// Nobody asked to record.
    NotAsking,
    /// Not every member of the call has agreed to be recorded.
    ConsentMissing,
    /// No recording is running.
    NotRecording,
}

impl RoomError {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomError::Ended => "visit_ended",
            RoomError::RoomFull => "visit_full",
            RoomError::LobbyFull => "lobby_full",
            RoomError::NotHost => "not_host",
            RoomError::NotAdmitted => "not_admitted",
            RoomError::UnknownMember => "unknown_member",
            RoomError::NotWaiting => "not_waiting",
            RoomError::RecordingBusy => "recording_busy",
            RoomError::NotAsking => "recording_not_asked",
            RoomError::ConsentMissing => "recording_consent_missing",
            RoomError::NotRecording => "not_recording",
        }
    }

    /// What the member is told.
    pub fn message(self) -> &'static str {
        match self {
            RoomError::Ended => "this visit has ended",
            RoomError::RoomFull => "this visit already has as many participants as it can hold",
            RoomError::LobbyFull => "too many people are waiting for this visit; try again soon",
            RoomError::NotHost => "only a clinician of this visit can do that",
            RoomError::NotAdmitted => "wait until a clinician admits you",
            RoomError::UnknownMember => "that participant is not in this visit",
            RoomError::NotWaiting => "that participant is not waiting to be admitted",
            RoomError::RecordingBusy => "a recording is already asked for or running",
            RoomError::NotAsking => "nobody asked to record this visit",
            RoomError::ConsentMissing => "not everyone in the visit has agreed to be recorded",
            RoomError::NotRecording => "this visit is not being recorded",
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    id: MemberId,
    person: Person,
    role: VisitRole,
    admission: Admission,
    connected: bool,
    disconnected_at_ms: i64,
    device: Option<String>,
}

impl Member {
    fn view(&self) -> MemberView {
        MemberView {
            id: self.id,
            person: self.person,
            role: self.role,
            admission: self.admission,
            connected: self.connected,
            device: self.device.clone(),
        }
    }
}

/// The result of a join: the member's id, whether an earlier connection of theirs must be
/// closed, and the notices to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub member: MemberId,
    /// The person was already a member: their earlier connection (if still open) ends.
    pub replaced: bool,
    pub deliveries: Vec<Delivery>,
}

/// One visit's room.
#[derive(Debug, Clone, Default)]
pub struct Room {
    members: Vec<Member>,
    next_member: u32,
    ended: bool,
    recording: Recording,
}

impl Room {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// No one is in the room: the application may drop it.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn members(&self) -> Vec<MemberView> {
        self.members.iter().map(Member::view).collect()
    }

    pub fn member(&self, id: MemberId) -> Option<MemberView> {
        self.find(id).map(Member::view)
    }

    fn find(&self, id: MemberId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    fn admitted(&self) -> impl Iterator<Item = &Member> {
        self.members
            .iter()
            .filter(|m| m.admission == Admission::Admitted)
    }

    fn admitted_views(&self) -> Vec<MemberView> {
        self.admitted().map(Member::view).collect()
    }

    fn waiting_views(&self) -> Vec<MemberView> {
        self.members
            .iter()
            .filter(|m| m.admission == Admission::Waiting)
            .map(Member::view)
            .collect()
    }

    /// The lobby as it is now, for every admitted host.
    fn lobby_for_hosts(&self, deliveries: &mut Vec<Delivery>) {
        let waiting = self.waiting_views();
        for host in self.admitted().filter(|m| m.role == VisitRole::Host) {
            deliveries.push(Delivery {
                to: host.id,
                notice: Notice::Lobby {
                    waiting: waiting.clone(),
                },
            });
        }
    }

    /// Tells every admitted member but `except`.
    fn tell_admitted(&self, except: MemberId, notice: Notice, deliveries: &mut Vec<Delivery>) {
        for member in self.admitted().filter(|m| m.id != except) {
            deliveries.push(Delivery {
                to: member.id,
                notice: notice.clone(),
            });
        }
    }

    /// A person connects. Hosts are admitted at once; patients and guests wait. A person who
    /// is already a member takes their place back, as they left it.
    pub fn join(
        &mut self,
        person: Person,
        role: VisitRole,
        device: Option<String>,
    ) -> Result<Joined, RoomError> {
        if self.ended {
            return Err(RoomError::Ended);
        }
        let mut deliveries = Vec::new();
        if let Some(index) = self.members.iter().position(|m| m.person == person) {
            let member = &mut self.members[index];
            let was_connected = member.connected;
            member.connected = true;
            member.device = device;
            let view = member.view();
            let id = member.id;
            deliveries.push(self.welcome(id));
            if view.admission == Admission::Admitted {
                // The others drop their peer connection to the old one and start afresh.
                self.tell_admitted(id, Notice::Joined(view), &mut deliveries);
                self.recording_after_arrival(id, &mut deliveries);
            } else {
                self.lobby_for_hosts(&mut deliveries);
            }
            return Ok(Joined {
                member: id,
                replaced: was_connected,
                deliveries,
            });
        }
        let admission = if role == VisitRole::Host {
            if self.admitted().count() >= PARTICIPANTS_MAX {
                return Err(RoomError::RoomFull);
            }
            Admission::Admitted
        } else {
            let waiting = self
                .members
                .iter()
                .filter(|m| m.admission == Admission::Waiting)
                .count();
            if waiting >= WAITING_MAX {
                return Err(RoomError::LobbyFull);
            }
            Admission::Waiting
        };
        self.next_member += 1;
        let id = MemberId(self.next_member);
        let member = Member {
            id,
            person,
            role,
            admission,
            connected: true,
            disconnected_at_ms: 0,
            device,
        };
        let view = member.view();
        self.members.push(member);
        deliveries.push(self.welcome(id));
        match admission {
            Admission::Admitted => {
                self.tell_admitted(id, Notice::Joined(view), &mut deliveries);
                // A host arriving sees who already waits.
                deliveries.push(Delivery {
                    to: id,
                    notice: Notice::Lobby {
                        waiting: self.waiting_views(),
                    },
                });
                self.recording_after_arrival(id, &mut deliveries);
            }
            Admission::Waiting => self.lobby_for_hosts(&mut deliveries),
        }
        Ok(Joined {
            member: id,
            replaced: false,
            deliveries,
        })
    }

    fn welcome(&self, id: MemberId) -> Delivery {
        let (role, admission) = self
            .find(id)
            .map(|m| (m.role, m.admission))
            .unwrap_or((VisitRole::Guest, Admission::Waiting));
        // A waiting member learns nothing of who is in the call.
        let members = match admission {
            Admission::Admitted => self.admitted_views(),
            Admission::Waiting => Vec::new(),
        };
        Delivery {
            to: id,
            notice: Notice::Welcome {
                you: id,
                role,
                admission,
                members,
            },
        }
    }

    fn host(&self, by: MemberId) -> Result<&Member, RoomError> {
        let member = self.find(by).ok_or(RoomError::UnknownMember)?;
        if member.admission != Admission::Admitted {
            return Err(RoomError::NotAdmitted);
        }
        if member.role != VisitRole::Host {
            return Err(RoomError::NotHost);
        }
        Ok(member)
    }

    /// Checks that `by` may admit or decline `member` now, without changing anything: the
    /// application records the decision before it takes effect.
    pub fn check_admission(&self, by: MemberId, member: MemberId) -> Result<Person, RoomError> {
        if self.ended {
            return Err(RoomError::Ended);
        }
        self.host(by)?;
        let waiting = self.find(member).ok_or(RoomError::UnknownMember)?;
        if waiting.admission != Admission::Waiting {
            return Err(RoomError::NotWaiting);
        }
        Ok(waiting.person)
    }

    /// A host lets a waiting member into the call.
    pub fn admit(&mut self, by: MemberId, member: MemberId) -> Result<Vec<Delivery>, RoomError> {
        self.check_admission(by, member)?;
        if self.admitted().count() >= PARTICIPANTS_MAX {
            return Err(RoomError::RoomFull);
        }
        let mut deliveries = Vec::new();
        let Some(admitted) = self.members.iter_mut().find(|m| m.id == member) else {
            return Err(RoomError::UnknownMember);
        };
        admitted.admission = Admission::Admitted;
        let view = admitted.view();
        deliveries.push(Delivery {
            to: member,
            notice: Notice::Admitted {
                members: self.admitted_views(),
            },
        });
        self.tell_admitted(member, Notice::Joined(view), &mut deliveries);
        self.lobby_for_hosts(&mut deliveries);
        self.recording_after_arrival(member, &mut deliveries);
        Ok(deliveries)
    }

    /// A host turns a waiting member away.
    pub fn decline(&mut self, by: MemberId, member: MemberId) -> Result<Vec<Delivery>, RoomError> {
        self.check_admission(by, member)?;
        self.members.retain(|m| m.id != member);
        let mut deliveries = vec![Delivery {
            to: member,
            notice: Notice::Declined,
        }];
        self.lobby_for_hosts(&mut deliveries);
        Ok(deliveries)
    }

    /// An admitted member sends something to another admitted member.
    pub fn relay(
        &self,
        from: MemberId,
        to: MemberId,
        kind: SignalKind,
        payload: String,
    ) -> Result<Delivery, RoomError> {
        if self.ended {
            return Err(RoomError::Ended);
        }
        let sender = self.find(from).ok_or(RoomError::UnknownMember)?;
        if sender.admission != Admission::Admitted {
            return Err(RoomError::NotAdmitted);
        }
        // A waiting member is not addressable: that would tell the sender they are there
        // before a host admitted them, and hand them the call's keys.
        let recipient = self
            .find(to)
            .filter(|m| m.admission == Admission::Admitted && m.id != from)
            .ok_or(RoomError::UnknownMember)?;
        Ok(Delivery {
            to: recipient.id,
            notice: Notice::Relay {
                from,
                kind,
                payload,
            },
        })
    }

    /// A member leaves for good (hung up, or declined to wait any longer).
    pub fn leave(&mut self, member: MemberId) -> Vec<Delivery> {
        let Some(index) = self.members.iter().position(|m| m.id == member) else {
            return Vec::new();
        };
        let gone = self.members.remove(index);
        let mut deliveries = Vec::new();
        match gone.admission {
            Admission::Admitted => {
                self.tell_admitted(member, Notice::Left(member), &mut deliveries);
                // The last host gone: the lobby has nobody to admit it, but it may wait for
                // one to come back.
                self.recording_after_departure(member, &mut deliveries);
            }
            Admission::Waiting => self.lobby_for_hosts(&mut deliveries),
        }
        deliveries
    }

    /// A member's connection dropped; they keep their place for [`RECONNECT_GRACE_MS`].
    pub fn disconnect(&mut self, member: MemberId, now_ms: i64) -> Vec<Delivery> {
        let Some(found) = self.members.iter_mut().find(|m| m.id == member) else {
            return Vec::new();
        };
        if !found.connected {
            return Vec::new();
        }
        found.connected = false;
        found.disconnected_at_ms = now_ms;
        let admission = found.admission;
        let mut deliveries = Vec::new();
        match admission {
            Admission::Admitted => self.tell_admitted(
                member,
                Notice::Presence {
                    member,
                    connected: false,
                },
                &mut deliveries,
            ),
            Admission::Waiting => self.lobby_for_hosts(&mut deliveries),
        }
        deliveries
    }

    /// Removes the members whose grace ran out; returns who left and what to tell the rest.
    pub fn expire(&mut self, now_ms: i64) -> (Vec<MemberId>, Vec<Delivery>) {
        let expired: Vec<MemberId> = self
            .members
            .iter()
            .filter(|m| !m.connected && now_ms - m.disconnected_at_ms >= RECONNECT_GRACE_MS)
            .map(|m| m.id)
            .collect();
        let mut deliveries = Vec::new();
        for member in &expired {
            deliveries.extend(self.leave(*member));
        }
        (expired, deliveries)
    }

    /// The recording's state, as told to members.
    fn recording_notice(&self, ended: Option<RecordingEnd>) -> Notice {
        let (phase, by, consented) = match &self.recording {
            Recording::Off => (RecordingPhase::Off, None, Vec::new()),
            Recording::Asking { by, consents } => {
                (RecordingPhase::Asking, Some(*by), consents.clone())
            }
            Recording::On { by } => (
                RecordingPhase::On,
                Some(*by),
                self.admitted().map(|m| m.id).collect(),
            ),
        };
        Notice::Recording {
            phase,
            by,
            consented,
            ended,
        }
    }

    /// Tells every admitted member where the recording stands.
    fn tell_recording(&self, ended: Option<RecordingEnd>, deliveries: &mut Vec<Delivery>) {
        let notice = self.recording_notice(ended);
        for member in self.admitted() {
            deliveries.push(Delivery {
                to: member.id,
                notice: notice.clone(),
            });
        }
    }

    /// Someone is (again) in the call: they have not agreed to a recording that runs, and
    /// must hear of an ask that is open.
    fn recording_after_arrival(&mut self, member: MemberId, deliveries: &mut Vec<Delivery>) {
        match self.recording {
            Recording::Off => {}
            Recording::Asking { by, .. } if by == member => {
                // The asker's connection came back: the ask stays, and they see it.
                self.tell_recording(None, deliveries);
            }
            Recording::Asking { .. } => self.tell_recording(None, deliveries),
            Recording::On { by } => {
                let end = if by == member {
                    RecordingEnd::RecorderLeft
                } else {
                    RecordingEnd::Joined
                };
                self.recording = Recording::Off;
                self.tell_recording(Some(end), deliveries);
            }
        }
    }

    /// Someone left the call: their answer goes with them; the asker or recorder leaving
    /// ends it.
    fn recording_after_departure(&mut self, member: MemberId, deliveries: &mut Vec<Delivery>) {
        match &mut self.recording {
            Recording::Off => {}
            Recording::Asking { by, .. } | Recording::On { by } if *by == member => {
                self.recording = Recording::Off;
                self.tell_recording(Some(RecordingEnd::RecorderLeft), deliveries);
            }
            Recording::Asking { consents, .. } => {
                consents.retain(|m| *m != member);
                self.tell_recording(None, deliveries);
            }
            Recording::On { .. } => {}
        }
    }

    /// Checks that `by` may ask to record now: a host, with nothing asked or running.
    pub fn check_ask_to_record(&self, by: MemberId) -> Result<(), RoomError> {
        if self.ended {
            return Err(RoomError::Ended);
        }
        self.host(by)?;
        if self.recording != Recording::Off {
            return Err(RoomError::RecordingBusy);
        }
        Ok(())
    }

    /// A host asks everyone in the call to agree to be recorded; asking is agreeing.
    pub fn ask_to_record(&mut self, by: MemberId) -> Result<Vec<Delivery>, RoomError> {
        self.check_ask_to_record(by)?;
        self.recording = Recording::Asking {
            by,
            consents: vec![by],
        };
        let mut deliveries = Vec::new();
        self.tell_recording(None, &mut deliveries);
        Ok(deliveries)
    }

    /// Checks that `member` may answer the ask now, without changing anything.
    pub fn check_consent(&self, member: MemberId) -> Result<Person, RoomError> {
        if self.ended {
            return Err(RoomError::Ended);
        }
        let found = self.find(member).ok_or(RoomError::UnknownMember)?;
        if found.admission != Admission::Admitted {
            return Err(RoomError::NotAdmitted);
        }
        match self.recording {
            Recording::Asking { .. } => Ok(found.person),
            _ => Err(RoomError::NotAsking),
        }
    }

    /// A member answers the ask. A refusal ends it for everyone.
    pub fn consent_to_record(
        &mut self,
        member: MemberId,
        granted: bool,
    ) -> Result<Vec<Delivery>, RoomError> {
        self.check_consent(member)?;
        let mut deliveries = Vec::new();
        if !granted {
            self.recording = Recording::Off;
            self.tell_recording(Some(RecordingEnd::Declined(member)), &mut deliveries);
            return Ok(deliveries);
        }
        if let Recording::Asking { consents, .. } = &mut self.recording
            && !consents.contains(&member)
        {
            consents.push(member);
        }
        self.tell_recording(None, &mut deliveries);
        Ok(deliveries)
    }

    /// Checks that `by` may start recording now: a host, and everyone in the call agreed.
    pub fn check_start_recording(&self, by: MemberId) -> Result<(), RoomError> {
        if self.ended {
            return Err(RoomError::Ended);
        }
        self.host(by)?;
        let Recording::Asking { consents, .. } = &self.recording else {
            return Err(match self.recording {
                Recording::On { .. } => RoomError::RecordingBusy,
                _ => RoomError::NotAsking,
            });
        };
        if self.admitted().all(|m| consents.contains(&m.id)) {
            Ok(())
        } else {
            Err(RoomError::ConsentMissing)
        }
    }

    pub fn start_recording(&mut self, by: MemberId) -> Result<Vec<Delivery>, RoomError> {
        self.check_start_recording(by)?;
        self.recording = Recording::On { by };
        let mut deliveries = Vec::new();
        self.tell_recording(None, &mut deliveries);
        Ok(deliveries)
    }

    /// Checks that `by` may stop the recording (or withdraw the ask): a host.
    pub fn check_stop_recording(&self, by: MemberId) -> Result<(), RoomError> {
        if self.ended {
            return Err(RoomError::Ended);
        }
        self.host(by)?;
        if self.recording == Recording::Off {
            return Err(RoomError::NotRecording);
        }
        Ok(())
    }

    pub fn stop_recording(&mut self, by: MemberId) -> Result<Vec<Delivery>, RoomError> {
        self.check_stop_recording(by)?;
        self.recording = Recording::Off;
        let mut deliveries = Vec::new();
        self.tell_recording(Some(RecordingEnd::Stopped), &mut deliveries);
        Ok(deliveries)
    }

    /// Whether a recording runs now.
    pub fn is_recording(&self) -> bool {
        matches!(self.recording, Recording::On { .. })
    }

    /// Checks that `by` may end the visit, without changing anything.
    pub fn check_end(&self, by: MemberId) -> Result<(), RoomError> {
        if self.ended {
            return Err(RoomError::Ended);
        }
        self.host(by).map(|_| ())
    }

    /// A host ends the visit for everyone; the room refuses all from now on.
    pub fn end(&mut self, by: MemberId) -> Result<Vec<Delivery>, RoomError> {
        self.check_end(by)?;
        Ok(self.close())
    }

    /// The visit ended elsewhere (another instance, an API call): everyone is told.
    pub fn close(&mut self) -> Vec<Delivery> {
        self.ended = true;
        self.recording = Recording::Off;
        let deliveries = self
            .members
            .iter()
            .map(|m| Delivery {
                to: m.id,
                notice: Notice::Ended,
            })
            .collect();
        self.members.clear();
        deliveries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> Person {
        Person::User(UserId::generate())
    }

    fn notices_for(deliveries: &[Delivery], member: MemberId) -> Vec<&Notice> {
        deliveries
            .iter()
            .filter(|d| d.to == member)
            .map(|d| &d.notice)
            .collect()
    }

    /// A room with a host in the call and a patient waiting.
    fn host_and_waiting_patient() -> (Room, MemberId, MemberId) {
        let mut room = Room::new();
        let host = room.join(user(), VisitRole::Host, None).unwrap().member;
        let patient = room
            .join(user(), VisitRole::Patient, Some("fp".into()))
            .unwrap()
            .member;
        (room, host, patient)
    }

    #[test]
    fn a_patient_waits_and_learns_nothing_of_the_call_until_admitted() {
        let mut room = Room::new();
        let host = room.join(user(), VisitRole::Host, None).unwrap().member;
        let joined = room.join(user(), VisitRole::Patient, None).unwrap();
        let patient = joined.member;
        assert_eq!(
            notices_for(&joined.deliveries, patient),
            vec![&Notice::Welcome {
                you: patient,
                role: VisitRole::Patient,
                admission: Admission::Waiting,
                members: vec![],
            }]
        );
        // The host sees them in the lobby, and nobody else hears of them.
        let lobby = notices_for(&joined.deliveries, host);
        assert!(matches!(lobby[..], [Notice::Lobby { waiting }] if waiting[0].id == patient));
        // Nothing reaches a waiting member, and a waiting member sends nothing.
        assert_eq!(
            room.relay(host, patient, SignalKind::Key, "k".into()),
            Err(RoomError::UnknownMember)
        );
        assert_eq!(
            room.relay(patient, host, SignalKind::Description, "offer".into()),
            Err(RoomError::NotAdmitted)
        );
    }

    #[test]
    fn a_host_admits_and_the_call_learns_of_it() {
        let (mut room, host, patient) = host_and_waiting_patient();
        let deliveries = room.admit(host, patient).unwrap();
        let to_patient = notices_for(&deliveries, patient);
        assert!(matches!(to_patient[..], [Notice::Admitted { members }] if members.len() == 2));
        let to_host = notices_for(&deliveries, host);
        assert!(
            to_host
                .iter()
                .any(|n| matches!(n, Notice::Joined(v) if v.id == patient))
        );
        assert!(
            to_host
                .iter()
                .any(|n| matches!(n, Notice::Lobby { waiting } if waiting.is_empty()))
        );
        let relayed = room
            .relay(patient, host, SignalKind::Description, "offer".into())
            .unwrap();
        assert_eq!(relayed.to, host);
        // Admitting twice is a mistake that changes nothing.
        assert_eq!(room.admit(host, patient), Err(RoomError::NotWaiting));
    }

    #[test]
    fn only_an_admitted_host_admits_declines_or_ends() {
        let (mut room, host, patient) = host_and_waiting_patient();
        let guest = room
            .join(Person::Guest(GuestId::generate()), VisitRole::Guest, None)
            .unwrap()
            .member;
        assert_eq!(room.admit(patient, guest), Err(RoomError::NotAdmitted));
        assert_eq!(room.end(patient), Err(RoomError::NotAdmitted));
        room.admit(host, patient).unwrap();
        assert_eq!(room.admit(patient, guest), Err(RoomError::NotHost));
        assert_eq!(room.decline(patient, guest), Err(RoomError::NotHost));
        assert_eq!(room.end(patient), Err(RoomError::NotHost));
        assert_eq!(
            room.admit(host, MemberId(99)),
            Err(RoomError::UnknownMember)
        );
        let declined = room.decline(host, guest).unwrap();
        assert_eq!(notices_for(&declined, guest), vec![&Notice::Declined]);
        assert!(room.member(guest).is_none());
    }

    #[test]
    fn the_call_and_the_lobby_hold_a_bounded_number() {
        let mut room = Room::new();
        let host = room.join(user(), VisitRole::Host, None).unwrap().member;
        let mut waiting = Vec::new();
        for _ in 0..WAITING_MAX {
            waiting.push(room.join(user(), VisitRole::Guest, None).unwrap().member);
        }
        assert_eq!(
            room.join(user(), VisitRole::Guest, None).unwrap_err(),
            RoomError::LobbyFull
        );
        for member in &waiting[..PARTICIPANTS_MAX - 1] {
            room.admit(host, *member).unwrap();
        }
        assert_eq!(
            room.admit(host, waiting[PARTICIPANTS_MAX - 1]),
            Err(RoomError::RoomFull)
        );
        assert_eq!(
            room.join(user(), VisitRole::Host, None).unwrap_err(),
            RoomError::RoomFull
        );
        // Still waiting, not lost.
        assert_eq!(
            room.member(waiting[PARTICIPANTS_MAX - 1])
                .unwrap()
                .admission,
            Admission::Waiting
        );
    }

    #[test]
    fn a_dropped_member_comes_back_admitted_within_the_grace() {
        let mut room = Room::new();
        let host_person = user();
        let host = room
            .join(host_person, VisitRole::Host, None)
            .unwrap()
            .member;
        let patient_person = user();
        let patient = room
            .join(patient_person, VisitRole::Patient, None)
            .unwrap()
            .member;
        room.admit(host, patient).unwrap();

        let dropped = room.disconnect(patient, 1_000);
        assert_eq!(
            notices_for(&dropped, host),
            vec![&Notice::Presence {
                member: patient,
                connected: false
            }]
        );
        let (expired, _) = room.expire(1_000 + RECONNECT_GRACE_MS - 1);
        assert!(expired.is_empty());

        let back = room
            .join(
                patient_person,
                VisitRole::Patient,
                Some("new-device".into()),
            )
            .unwrap();
        assert_eq!(back.member, patient);
        assert!(!back.replaced, "the old connection was already gone");
        assert!(matches!(
            notices_for(&back.deliveries, patient)[..],
            [Notice::Welcome { admission: Admission::Admitted, members, .. }] if members.len() == 2
        ));
        // The host renegotiates with the returning member.
        assert!(matches!(
            notices_for(&back.deliveries, host)[..],
            [Notice::Joined(view)] if view.id == patient && view.device.as_deref() == Some("new-device")
        ));

        // A second connection of a connected person replaces the first.
        let again = room.join(patient_person, VisitRole::Patient, None).unwrap();
        assert!(again.replaced);
        assert_eq!(room.members().len(), 2);
    }

    #[test]
    fn a_member_who_stays_away_past_the_grace_leaves() {
        let (mut room, host, patient) = host_and_waiting_patient();
        room.admit(host, patient).unwrap();
        room.disconnect(patient, 0);
        // Disconnecting twice does not restart the grace.
        assert!(room.disconnect(patient, 10_000).is_empty());
        let (expired, deliveries) = room.expire(RECONNECT_GRACE_MS);
        assert_eq!(expired, vec![patient]);
        assert_eq!(notices_for(&deliveries, host), vec![&Notice::Left(patient)]);
        assert!(room.member(patient).is_none());
        // Coming back later means waiting again.
        let back = room.join(user(), VisitRole::Patient, None).unwrap();
        assert_ne!(back.member, patient, "member numbers are never reused");
        assert_eq!(
            room.member(back.member).unwrap().admission,
            Admission::Waiting
        );
    }

    #[test]
    fn an_ended_visit_refuses_everyone_for_good() {
        let (mut room, host, patient) = host_and_waiting_patient();
        room.admit(host, patient).unwrap();
        let deliveries = room.end(host).unwrap();
        assert_eq!(notices_for(&deliveries, patient), vec![&Notice::Ended]);
        assert_eq!(notices_for(&deliveries, host), vec![&Notice::Ended]);
        assert!(room.is_ended() && room.is_empty());
        assert_eq!(
            room.join(user(), VisitRole::Host, None).unwrap_err(),
            RoomError::Ended
        );
        assert_eq!(
            room.relay(host, patient, SignalKind::Chat, "x".into()),
            Err(RoomError::Ended)
        );
        assert_eq!(room.end(host), Err(RoomError::Ended));
    }

    #[test]
    fn nobody_relays_to_themselves_or_to_a_stranger() {
        let (mut room, host, patient) = host_and_waiting_patient();
        room.admit(host, patient).unwrap();
        assert_eq!(
            room.relay(host, host, SignalKind::Candidate, "c".into()),
            Err(RoomError::UnknownMember)
        );
        assert_eq!(
            room.relay(host, MemberId(42), SignalKind::Candidate, "c".into()),
            Err(RoomError::UnknownMember)
        );
        assert_eq!(
            room.relay(MemberId(42), host, SignalKind::Candidate, "c".into()),
            Err(RoomError::UnknownMember)
        );
    }

    #[test]
    fn leaving_tells_the_call_or_the_lobby() {
        let (mut room, host, patient) = host_and_waiting_patient();
        let left = room.leave(patient);
        assert!(matches!(
            notices_for(&left, host)[..],
            [Notice::Lobby { waiting }] if waiting.is_empty()
        ));
        assert!(
            room.leave(patient).is_empty(),
            "leaving twice changes nothing"
        );
        let left = room.leave(host);
        assert!(left.is_empty());
        assert!(room.is_empty());
    }

    /// A call of a host and an admitted patient.
    fn call() -> (Room, MemberId, MemberId) {
        let (mut room, host, patient) = host_and_waiting_patient();
        room.admit(host, patient).unwrap();
        (room, host, patient)
    }

    fn recording_of(deliveries: &[Delivery], member: MemberId) -> Option<&Notice> {
        notices_for(deliveries, member)
            .into_iter()
            .rev()
            .find(|n| matches!(n, Notice::Recording { .. }))
    }

    #[test]
    fn recording_starts_only_once_everyone_agreed() {
        let (mut room, host, patient) = call();
        assert_eq!(room.ask_to_record(patient), Err(RoomError::NotHost));
        assert_eq!(room.start_recording(host), Err(RoomError::NotAsking));
        let asked = room.ask_to_record(host).unwrap();
        assert!(matches!(
            recording_of(&asked, patient),
            Some(Notice::Recording { phase: RecordingPhase::Asking, by: Some(by), consented, .. })
                if *by == host && consented == &vec![host]
        ));
        assert_eq!(room.ask_to_record(host), Err(RoomError::RecordingBusy));
        // The patient has not answered: no recording.
        assert_eq!(room.start_recording(host), Err(RoomError::ConsentMissing));
        room.consent_to_record(patient, true).unwrap();
        let started = room.start_recording(host).unwrap();
        assert!(matches!(
            recording_of(&started, patient),
            Some(Notice::Recording {
                phase: RecordingPhase::On,
                ..
            })
        ));
        assert!(room.is_recording());
        assert_eq!(
            room.consent_to_record(patient, true),
            Err(RoomError::NotAsking)
        );
        let stopped = room.stop_recording(host).unwrap();
        assert!(matches!(
            recording_of(&stopped, patient),
            Some(Notice::Recording {
                phase: RecordingPhase::Off,
                ended: Some(RecordingEnd::Stopped),
                ..
            })
        ));
        assert_eq!(room.stop_recording(host), Err(RoomError::NotRecording));
    }

    #[test]
    fn one_refusal_ends_the_ask_for_everyone() {
        let (mut room, host, patient) = call();
        room.ask_to_record(host).unwrap();
        let declined = room.consent_to_record(patient, false).unwrap();
        assert!(matches!(
            recording_of(&declined, host),
            Some(Notice::Recording { phase: RecordingPhase::Off, ended: Some(RecordingEnd::Declined(who)), .. })
                if *who == patient
        ));
        assert_eq!(room.start_recording(host), Err(RoomError::NotAsking));
    }

    #[test]
    fn someone_new_in_the_call_stops_a_recording_they_did_not_agree_to() {
        let (mut room, host, patient) = call();
        room.ask_to_record(host).unwrap();
        room.consent_to_record(patient, true).unwrap();
        room.start_recording(host).unwrap();
        let guest = room
            .join(Person::Guest(GuestId::generate()), VisitRole::Guest, None)
            .unwrap()
            .member;
        assert!(room.is_recording(), "waiting is not being in the call");
        let admitted = room.admit(host, guest).unwrap();
        assert!(!room.is_recording());
        assert!(matches!(
            recording_of(&admitted, patient),
            Some(Notice::Recording {
                ended: Some(RecordingEnd::Joined),
                ..
            })
        ));
        // A new ask needs the newcomer's answer too.
        room.ask_to_record(host).unwrap();
        room.consent_to_record(patient, true).unwrap();
        assert_eq!(room.start_recording(host), Err(RoomError::ConsentMissing));
        // A waiting member cannot answer.
        let waiting = room.join(user(), VisitRole::Guest, None).unwrap().member;
        assert_eq!(
            room.consent_to_record(waiting, true),
            Err(RoomError::NotAdmitted)
        );
    }

    #[test]
    fn the_recorder_leaving_ends_the_recording() {
        let (mut room, host, patient) = call();
        room.ask_to_record(host).unwrap();
        room.consent_to_record(patient, true).unwrap();
        room.start_recording(host).unwrap();
        let left = room.leave(host);
        assert!(matches!(
            recording_of(&left, patient),
            Some(Notice::Recording {
                ended: Some(RecordingEnd::RecorderLeft),
                ..
            })
        ));
        assert!(!room.is_recording());
    }

    #[test]
    fn signal_kinds_have_one_spelling() {
        for kind in SignalKind::ALL {
            assert_eq!(SignalKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(SignalKind::parse("offer"), None);
    }
}
