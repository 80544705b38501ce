//! End-to-end encrypted messaging: devices, conversations, and messages the server relays
//! but cannot read.
//!
//! - **Devices.** A person registers each browser or app instance with its public keys
//!   (HPKE and Ed25519) and a self-signature proving it holds them. Registering and
//!   removing a device are entries of the audit log (`device_add` / `device_remove`, the
//!   fingerprint as resource id), checkpointed at once, and the device list of a
//!   conversation comes with each device's entry and inclusion proof. A device that is in
//!   the database but not in the log (inserted behind Haven's back) has no proof, and
//!   clients refuse to write to it.
//! - **Conversations.** About one patient (the patient and their care team) or within the
//!   clinical staff. Who may take part is the policy engine's decision, person by person:
//!   the creator's act is audited, and each participant must be someone the policy lets read
//!   and write that conversation.
//! - **Messages.** The sender's device seals the body once and the content key to every
//!   device of every current participant; a device it distrusts (no proof) it names as
//!   withheld. Haven refuses a message whose recipients do not match the conversation's
//!   current devices (`recipients_changed`, with the devices to use), so a stale client
//!   learns of a new device instead of silently leaving it out, and the store refuses a key
//!   for any device that is not a current participant's, so a removed participant receives
//!   nothing more. Sending and reading are audited like any other access.
//! - **Attachments** are sealed files streamed into the blob store in chunks; their keys
//!   travel inside the sealed message that mentions them.
//!
//! After each change the [`Relay`](crate::relay::Relay) nudges the connected clients
//! concerned; events carry ids and positions, never content.

use std::collections::{BTreeSet, HashSet};

use haven_audit::AuditAction;
use haven_crypto::e2e::{DevicePublicKeys, KEY_BYTES, SEALED_KEY_BYTES, SIGNATURE_BYTES};
use haven_domain::{Action, Actor, PatientId, Principal, Resource, Role, SessionId, UserId};
use haven_store::messaging::{NewMessage, SendOutcome};
use haven_store::{AuditQuery, AuditSortField, limits};
use uuid::Uuid;

pub use haven_crypto::e2e::safety_number;
pub use haven_store::messaging::{
    MessageKey, Participant, StoredDevice, StoredMessage, StoredMessageAttachment, StoredThread,
    ThreadSummary,
};

use crate::gate::AuditedResource;
use crate::identity::invalid;
use crate::notifications::{KIND_NEW_MESSAGE, notify};
use crate::relay::Event;
use crate::transparency::{ProvenEntries, ProvenEntry, prove_entries};
use crate::{App, AppError, AppResult, RequestContext};

/// People named when a conversation starts, the caller aside.
pub const PARTICIPANTS_LISTED_MAX: usize = limits::THREAD_PARTICIPANTS_MAX as usize - 1;
/// The longest device label, in characters.
pub const DEVICE_LABEL_CHARS_MAX: usize = 64;
/// The largest sealed message body: 256 KiB of plaintext (files go as attachments), its
/// nonce and its tag; in base64 with every recipient's key it stays under the 1 MiB body
/// limit.
pub const MESSAGE_CIPHERTEXT_BYTES_MAX: usize = 256 * 1024 + 12 + 16;
/// The largest sealed attachment.
pub const ATTACHMENT_BYTES_MAX: u64 = 25 * 1024 * 1024;
/// Chunks an attachment is stored in.
pub const ATTACHMENT_CHUNK_BYTES: usize = 256 * 1024;
/// The shortest and longest message retention an organisation may set, in days (0, the
/// default, keeps messages until a period is set).
pub const MESSAGE_RETENTION_DAYS_RANGE: (i64, i64) = (30, 36_500);
/// How often the retention sweep runs.
pub const RETENTION_SWEEP_INTERVAL_SECS: u64 = 60 * 60;
/// Messages (and attachments) deleted per store call, so one sweep never holds the writer
/// for long.
const RETENTION_BATCH_ROWS: u32 = 1000;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// Device-registration entries looked at per person when proving their devices.
const DEVICE_ENTRIES_SCANNED_MAX: u32 = 200;

/// A device with the audit entry that published it and its inclusion proof (`None` when
/// the log has no such entry: a device nobody registered through Haven).
#[derive(Debug, Clone)]
pub struct ProvenDevice {
    pub device: StoredDevice,
    pub entry: Option<ProvenEntry>,
}

/// Devices and the checkpoint their proofs lead to.
#[derive(Debug, Clone)]
pub struct DeviceList {
    pub checkpoint: Option<haven_store::StoredCheckpoint>,
    pub devices: Vec<ProvenDevice>,
}

/// A conversation with who takes part.
#[derive(Debug, Clone)]
pub struct ThreadView {
    pub thread: StoredThread,
    pub participants: Vec<Participant>,
}

/// A message as a device sends it.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub id: Uuid,
    pub sender_device: Uuid,
    pub ciphertext: Vec<u8>,
    pub signature: Vec<u8>,
    pub keys: Vec<MessageKey>,
    /// Current devices the sender deliberately did not seal to (their proofs failed).
    pub withheld: Vec<Uuid>,
}

/// A device as it registers.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub label: String,
    pub hpke_public_key: Vec<u8>,
    pub signing_public_key: Vec<u8>,
    pub self_signature: Vec<u8>,
}

fn key32(field: &str, bytes: &[u8]) -> AppResult<[u8; KEY_BYTES]> {
    bytes
        .try_into()
        .map_err(|_| invalid(field, format!("{KEY_BYTES} bytes")))
}

fn conversation(thread: &StoredThread) -> Resource {
    match thread.patient {
        Some(patient) => Resource::Conversation(patient),
        None => Resource::TeamConversation,
    }
}

impl App {
    /// The person calling; an API token is refused (and the refusal recorded): keys and
    /// conversations belong to people.
    pub(crate) async fn person(
        &self,
        context: &RequestContext,
        action: Action,
        resource_type: &'static str,
    ) -> AppResult<UserId> {
        match context.actor.principal {
            Principal::User { user, .. } => Ok(user),
            Principal::ApiToken(_) => Err(self
                .gate
                .refuse_token(context, action, resource_type)
                .await?),
        }
    }

    /// Whom the event stream of this caller is for; an API token has none.
    pub async fn event_stream_user(&self, context: &RequestContext) -> AppResult<UserId> {
        self.person(context, Action::Read, "EventStream").await
    }

    /// Registers one of the caller's devices and publishes it in the audit log.
    pub async fn register_device(
        &self,
        context: &RequestContext,
        device: NewDevice,
    ) -> AppResult<ProvenDevice> {
        let user = self.person(context, Action::Create, "Device").await?;
        let label = device.label.trim().to_owned();
        if label.is_empty()
            || label.chars().count() > DEVICE_LABEL_CHARS_MAX
            || label.chars().any(char::is_control)
        {
            return Err(invalid(
                "label",
                format!("1 to {DEVICE_LABEL_CHARS_MAX} printable characters"),
            ));
        }
        let keys = DevicePublicKeys {
            hpke: key32("hpke_public_key", &device.hpke_public_key)?,
            signing: key32("signing_public_key", &device.signing_public_key)?,
        };
        keys.verify_self_signature(&device.self_signature)
            .map_err(|_| {
                invalid(
                    "self_signature",
                    "not the device's signature over its own keys",
                )
            })?;
        let fingerprint = keys.fingerprint();
        if let Some(existing) = self
            .store
            .devices_of(&[user])
            .await?
            .into_iter()
            .find(|d| d.fingerprint == fingerprint)
        {
            return Err(AppError::Conflict {
                code: "device_exists",
                message: format!("this device is registered already ({})", existing.id),
            });
        }
        // Published before it is stored: a device that is in the table is in the log, unless
        // someone wrote the table behind Haven's back, which is what clients detect.
        self.gate
            .authorize_key_publication(context, AuditAction::DeviceAdd, &fingerprint)
            .await?;
        let stored = StoredDevice {
            id: Uuid::now_v7(),
            user,
            label,
            hpke_public_key: keys.hpke.to_vec(),
            signing_public_key: keys.signing.to_vec(),
            self_signature: device.self_signature,
            fingerprint,
            added_at_ms: self.clock.now_ms(),
            removed_at_ms: None,
        };
        match self.store.insert_device(stored.clone()).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(AppError::Conflict {
                    code: "too_many_devices",
                    message: format!(
                        "at most {} devices; remove one first",
                        limits::DEVICES_PER_USER_MAX
                    ),
                });
            }
            Err(haven_store::StoreError::AlreadyExists) => {
                return Err(AppError::Conflict {
                    code: "device_exists",
                    message: "this device's keys are registered already".into(),
                });
            }
            Err(error) => return Err(error.into()),
        }
        // Checkpoint now, so the device's proof is there for its correspondents at once.
        self.checkpoint_now().await?;
        self.publish_device_change(user).await?;
        let mut list = self.prove_devices(vec![stored]).await?;
        list.devices
            .pop()
            .ok_or_else(|| AppError::Unexpected("a registered device vanished".into()))
    }

    /// Removes one of the caller's devices: it receives nothing from now on.
    pub async fn remove_device(&self, context: &RequestContext, device: Uuid) -> AppResult<()> {
        let user = self.person(context, Action::Delete, "Device").await?;
        let Some(stored) = self
            .store
            .device(device)
            .await?
            .filter(|d| d.user == user && d.removed_at_ms.is_none())
        else {
            return Err(AppError::NotFound);
        };
        self.gate
            .authorize_key_publication(context, AuditAction::DeviceRemove, &stored.fingerprint)
            .await?;
        if !self
            .store
            .remove_device(user, device, self.clock.now_ms())
            .await?
        {
            return Err(AppError::NotFound);
        }
        self.checkpoint_now().await?;
        self.publish_device_change(user).await
    }

    /// The caller's own devices, with their proofs.
    pub async fn my_devices(&self, context: &RequestContext) -> AppResult<DeviceList> {
        let user = self.person(context, Action::Read, "Device").await?;
        self.gate
            .authorize_unaudited_read(context, Resource::DeviceKeys)
            .await?;
        let devices = self.store.devices_of(&[user]).await?;
        self.prove_devices(devices).await
    }

    /// The devices of everyone taking part in a conversation: the recipients of its next
    /// message. Only a current participant may ask.
    pub async fn thread_devices(
        &self,
        context: &RequestContext,
        thread: Uuid,
    ) -> AppResult<DeviceList> {
        let (_, participants) = self.participation(context, thread).await?;
        self.gate
            .authorize_unaudited_read(context, Resource::DeviceKeys)
            .await?;
        let devices = self.store.devices_of(&current(&participants)).await?;
        self.prove_devices(devices).await
    }

    /// Each device with the newest `device_add` entry of its owner naming its fingerprint,
    /// proven against the latest checkpoint.
    pub(crate) async fn prove_devices(&self, devices: Vec<StoredDevice>) -> AppResult<DeviceList> {
        let checkpoint = self.store.latest_checkpoint().await?;
        let owners: BTreeSet<UserId> = devices.iter().map(|d| d.user).collect();
        let mut entries = Vec::new();
        for owner in owners {
            let published = self
                .store
                .query_audit(&AuditQuery {
                    actor: Some(owner.to_string()),
                    action: Some(AuditAction::DeviceAdd),
                    outcome: Some(haven_audit::Outcome::Allowed),
                    sort: AuditSortField::Seq,
                    descending: true,
                    limit: DEVICE_ENTRIES_SCANNED_MAX,
                    ..AuditQuery::default()
                })
                .await?;
            entries.extend(published.into_iter().filter(|entry| {
                devices.iter().any(|d| {
                    d.user == owner
                        && entry.event.resource_id.as_deref() == Some(d.fingerprint.as_str())
                })
            }));
        }
        let ProvenEntries {
            checkpoint,
            entries: proven,
        } = prove_entries(&*self.store, entries, checkpoint).await?;
        let devices = devices
            .into_iter()
            .map(|device| {
                let entry = proven
                    .iter()
                    .filter(|p| {
                        p.entry.event.actor.as_deref() == Some(device.user.to_string().as_str())
                            && p.entry.event.resource_id.as_deref()
                                == Some(device.fingerprint.as_str())
                    })
                    .max_by_key(|p| p.entry.seq)
                    .cloned();
                ProvenDevice { device, entry }
            })
            .collect();
        Ok(DeviceList {
            checkpoint,
            devices,
        })
    }

    async fn publish_device_change(&self, user: UserId) -> AppResult<()> {
        // Everyone who shares a conversation with this person re-checks their devices.
        let mut correspondents: HashSet<UserId> = HashSet::from([user]);
        for summary in self.store.user_threads(user).await? {
            for participant in self.store.thread_participants(summary.thread.id).await? {
                if participant.removed_at_ms.is_none() {
                    correspondents.insert(participant.user);
                }
            }
        }
        let users: Vec<UserId> = correspondents.into_iter().collect();
        self.relay.publish(&users, &Event::Devices { user });
        Ok(())
    }

    /// Starts a conversation about `patient` (or within the staff, for `None`) between the
    /// caller and `others`.
    pub async fn start_thread(
        &self,
        context: &RequestContext,
        patient: Option<PatientId>,
        others: Vec<UserId>,
    ) -> AppResult<ThreadView> {
        let user = self
            .person(context, Action::Create, "MessageThread")
            .await?;
        let organisation = context.actor.organisation.ok_or(AppError::Forbidden {
            reason: "role_not_permitted",
        })?;
        let mut people: Vec<UserId> = others.into_iter().filter(|o| *o != user).collect();
        people.sort_unstable();
        people.dedup();
        if people.is_empty() {
            return Err(invalid("participants", "at least one other person"));
        }
        if people.len() + 1 > limits::THREAD_PARTICIPANTS_MAX as usize {
            return Err(invalid(
                "participants",
                format!("at most {}", limits::THREAD_PARTICIPANTS_MAX - 1),
            ));
        }
        let resource = match patient {
            Some(patient) => Resource::Conversation(patient),
            None => Resource::TeamConversation,
        };
        let id = Uuid::now_v7();
        self.gate
            .authorize_resource(
                context,
                Action::Create,
                AuditedResource {
                    resource,
                    patient,
                    resource_type: "MessageThread",
                    resource_id: Some(id.to_string()),
                },
                true,
            )
            .await?;
        for person in &people {
            self.check_may_take_part(organisation, *person, &resource)
                .await?;
        }
        let now_ms = self.clock.now_ms();
        let thread = StoredThread {
            id,
            organisation,
            patient,
            created_by: user,
            created_at_ms: now_ms,
            last_message_seq: 0,
            last_message_at_ms: None,
        };
        let participants: Vec<Participant> = std::iter::once(user)
            .chain(people)
            .map(|person| Participant {
                thread: id,
                user: person,
                added_by: user.to_string(),
                added_at_ms: now_ms,
                removed_at_ms: None,
                read_seq: 0,
                read_at_ms: None,
            })
            .collect();
        self.store
            .insert_thread(thread.clone(), participants.clone())
            .await?;
        let users: Vec<UserId> = participants.iter().map(|p| p.user).collect();
        self.relay
            .publish(&users, &Event::Participants { thread: id });
        Ok(ThreadView {
            thread,
            participants,
        })
    }

    /// Whether `person` may take part in a conversation about `resource`: an active member
    /// of the same organisation whom the policy lets read and write it.
    async fn check_may_take_part(
        &self,
        organisation: haven_domain::OrganisationId,
        person: UserId,
        resource: &Resource,
    ) -> AppResult<()> {
        let refused = || {
            invalid(
                "participants",
                format!("{person} cannot take part in this conversation"),
            )
        };
        let Some(stored) = self.store.user(person).await? else {
            return Err(refused());
        };
        if stored.organisation != organisation || stored.disabled_at_ms.is_some() {
            return Err(refused());
        }
        let role: Role = stored.role.parse().map_err(|_| refused())?;
        let actor = Actor {
            // A decision about a person, not about one of their sessions.
            principal: Principal::User {
                user: person,
                session: SessionId::from_uuid(Uuid::nil()),
            },
            role,
            organisation: Some(stored.organisation),
            patient: stored.patient,
        };
        for action in [Action::Read, Action::Create] {
            if !self
                .gate
                .decide_for(&actor, action, resource)
                .await?
                .is_allowed()
            {
                return Err(refused());
            }
        }
        Ok(())
    }

    /// The conversation and its participants, if the caller takes part in it now. Anyone
    /// else is told it does not exist.
    async fn participation(
        &self,
        context: &RequestContext,
        thread: Uuid,
    ) -> AppResult<(StoredThread, Vec<Participant>)> {
        let user = self.person(context, Action::Read, "MessageThread").await?;
        let Some(stored) = self.store.thread(thread).await? else {
            return Err(AppError::NotFound);
        };
        let participants = self.store.thread_participants(thread).await?;
        if !participants
            .iter()
            .any(|p| p.user == user && p.removed_at_ms.is_none())
        {
            return Err(AppError::NotFound);
        }
        Ok((stored, participants))
    }

    /// Audits the caller's read or write of a conversation they take part in; the policy
    /// decides again (a care relationship may have ended since they joined).
    async fn authorize_conversation(
        &self,
        context: &RequestContext,
        action: Action,
        thread: &StoredThread,
        resource_type: &'static str,
        resource_id: String,
    ) -> AppResult<()> {
        self.gate
            .authorize_resource(
                context,
                action,
                AuditedResource {
                    resource: conversation(thread),
                    patient: thread.patient,
                    resource_type,
                    resource_id: Some(resource_id),
                },
                false,
            )
            .await?;
        Ok(())
    }

    /// The caller's inbox: their conversations with unread counts.
    pub async fn threads(&self, context: &RequestContext) -> AppResult<Vec<ThreadSummary>> {
        let user = self.person(context, Action::Read, "MessageThread").await?;
        Ok(self.store.user_threads(user).await?)
    }

    pub async fn thread(&self, context: &RequestContext, thread: Uuid) -> AppResult<ThreadView> {
        let (stored, participants) = self.participation(context, thread).await?;
        Ok(ThreadView {
            thread: stored,
            participants,
        })
    }

    /// Adds someone to a conversation the caller takes part in: the policy leaves this to
    /// clinical staff (a patient's conversation is with the team the clinic gave them).
    pub async fn add_participant(
        &self,
        context: &RequestContext,
        thread: Uuid,
        person: UserId,
    ) -> AppResult<ThreadView> {
        let (stored, _) = self.participation(context, thread).await?;
        self.authorize_conversation(
            context,
            Action::Update,
            &stored,
            "MessageThread",
            stored.id.to_string(),
        )
        .await?;
        self.check_may_take_part(stored.organisation, person, &conversation(&stored))
            .await?;
        let added = self
            .store
            .add_participant(Participant {
                thread,
                user: person,
                added_by: context.actor.principal.actor_id(),
                added_at_ms: self.clock.now_ms(),
                removed_at_ms: None,
                read_seq: 0,
                read_at_ms: None,
            })
            .await?;
        if !added {
            return Err(AppError::Conflict {
                code: "already_participant",
                message: "already takes part, or the conversation is full".into(),
            });
        }
        self.after_participants_changed(thread).await
    }

    /// Removes someone from a conversation: anyone may leave; whether the caller may remove
    /// someone else is the policy's decision. Their devices receive nothing from then on.
    pub async fn remove_participant(
        &self,
        context: &RequestContext,
        thread: Uuid,
        person: UserId,
    ) -> AppResult<ThreadView> {
        let user = self
            .person(context, Action::Update, "MessageThread")
            .await?;
        let (stored, participants) = self.participation(context, thread).await?;
        // Leaving is one's own act in the conversation; removing someone else changes who
        // takes part, which is the care team's to decide.
        let action = if person == user {
            Action::Create
        } else {
            Action::Update
        };
        self.authorize_conversation(
            context,
            action,
            &stored,
            "MessageThread",
            stored.id.to_string(),
        )
        .await?;
        if !self
            .store
            .remove_participant(thread, person, self.clock.now_ms())
            .await?
        {
            return Err(AppError::NotFound);
        }
        // The person removed learns it too (their client stops showing the conversation).
        self.relay
            .publish(&current(&participants), &Event::Participants { thread });
        let participants = self.store.thread_participants(thread).await?;
        Ok(ThreadView {
            thread: stored,
            participants,
        })
    }

    async fn after_participants_changed(&self, thread: Uuid) -> AppResult<ThreadView> {
        let Some(stored) = self.store.thread(thread).await? else {
            return Err(AppError::NotFound);
        };
        let participants = self.store.thread_participants(thread).await?;
        self.relay
            .publish(&current(&participants), &Event::Participants { thread });
        Ok(ThreadView {
            thread: stored,
            participants,
        })
    }

    /// Stores and relays a message sealed on the caller's device.
    pub async fn send_message(
        &self,
        context: &RequestContext,
        thread: Uuid,
        message: OutgoingMessage,
    ) -> AppResult<i64> {
        let user = self.person(context, Action::Create, "Message").await?;
        if message.ciphertext.len() > MESSAGE_CIPHERTEXT_BYTES_MAX {
            return Err(AppError::TooLarge {
                limit_bytes: MESSAGE_CIPHERTEXT_BYTES_MAX as u64,
            });
        }
        if message.ciphertext.len() < 12 + 16 {
            return Err(invalid("ciphertext", "shorter than a nonce and a tag"));
        }
        if message.signature.len() != SIGNATURE_BYTES {
            return Err(invalid("signature", format!("{SIGNATURE_BYTES} bytes")));
        }
        if message.keys.is_empty() || message.keys.len() > limits::MESSAGE_KEYS_MAX {
            return Err(invalid(
                "keys",
                format!("1 to {} sealed keys", limits::MESSAGE_KEYS_MAX),
            ));
        }
        for key in &message.keys {
            if key.enc.len() != KEY_BYTES || key.sealed_key.len() != SEALED_KEY_BYTES {
                return Err(invalid(
                    "keys",
                    format!("enc of {KEY_BYTES} bytes and sealed_key of {SEALED_KEY_BYTES}"),
                ));
            }
        }
        // The conversation, who takes part and their devices in one read: sending is the
        // hot path. The store checks the recipients again as it stores the message.
        let Some(conversation) = self.store.conversation_devices(thread).await?.filter(|c| {
            c.participants
                .iter()
                .any(|p| p.user == user && p.removed_at_ms.is_none())
        }) else {
            return Err(AppError::NotFound);
        };
        // The caller takes part, so all their active devices are among the conversation's.
        if !conversation
            .devices
            .iter()
            .any(|d| d.id == message.sender_device && d.user == user)
        {
            return Err(invalid("sender_device", "not one of your active devices"));
        }
        self.authorize_conversation(
            context,
            Action::Create,
            &conversation.thread,
            "Message",
            message.id.to_string(),
        )
        .await?;
        let recipients = current(&conversation.participants);
        let devices: BTreeSet<Uuid> = conversation.devices.iter().map(|d| d.id).collect();
        let covered: BTreeSet<Uuid> = message
            .keys
            .iter()
            .map(|k| k.device)
            .chain(message.withheld.iter().copied())
            .collect();
        if covered != devices || message.keys.len() + message.withheld.len() != devices.len() {
            return Err(AppError::Conflict {
                code: "recipients_changed",
                message: "the conversation's devices changed: fetch them and seal again".into(),
            });
        }
        let outcome = self
            .store
            .insert_message(NewMessage {
                id: message.id,
                thread,
                sender_user: user,
                sender_device: message.sender_device,
                sent_at_ms: self.clock.now_ms(),
                ciphertext: message.ciphertext,
                signature: message.signature,
                keys: message.keys,
            })
            .await?;
        match outcome {
            SendOutcome::Sent { seq } => {
                self.relay
                    .publish(&recipients, &Event::Message { thread, seq });
                self.notify_offline(user, &recipients, thread).await?;
                Ok(seq)
            }
            SendOutcome::NotARecipient(_) => Err(AppError::Conflict {
                code: "recipients_changed",
                message: "the conversation's devices changed: fetch them and seal again".into(),
            }),
            SendOutcome::DuplicateId => Err(AppError::Conflict {
                code: "duplicate_message",
                message: "a message with this id exists".into(),
            }),
        }
    }

    /// Leaves "You have a new secure message" for the recipients who are not connected, once
    /// per conversation until they read it. The notice names the conversation, nothing of
    /// the message, so any delivery channel may carry it.
    async fn notify_offline(
        &self,
        sender: UserId,
        recipients: &[UserId],
        thread: Uuid,
    ) -> AppResult<()> {
        let mut offline = Vec::new();
        for user in recipients {
            if *user == sender || self.relay.is_connected(*user) {
                continue;
            }
            let waiting = self.store.notifications(*user).await?.into_iter().any(|n| {
                n.kind == KIND_NEW_MESSAGE && n.subject == Some(thread) && n.read_at_ms.is_none()
            });
            if !waiting {
                offline.push(*user);
            }
        }
        notify(
            &*self.store,
            &offline,
            KIND_NEW_MESSAGE,
            Some(thread),
            self.clock.now_ms(),
        )
        .await
    }

    /// A page of a conversation's messages for one of the caller's devices, after `after`.
    pub async fn messages(
        &self,
        context: &RequestContext,
        thread: Uuid,
        device: Uuid,
        after: i64,
        limit: u32,
    ) -> AppResult<Vec<StoredMessage>> {
        let user = self.person(context, Action::Read, "MessageThread").await?;
        if limit == 0 || limit > limits::MESSAGES_PAGE_MAX {
            return Err(invalid(
                "limit",
                format!("between 1 and {}", limits::MESSAGES_PAGE_MAX),
            ));
        }
        if after < 0 {
            return Err(invalid("after", "a message's seq, 0 or more"));
        }
        let (stored, _) = self.participation(context, thread).await?;
        if !self
            .store
            .device(device)
            .await?
            .is_some_and(|d| d.user == user && d.removed_at_ms.is_none())
        {
            return Err(invalid("device", "not one of your active devices"));
        }
        self.authorize_conversation(
            context,
            Action::Read,
            &stored,
            "MessageThread",
            stored.id.to_string(),
        )
        .await?;
        Ok(self
            .store
            .thread_messages(thread, device, after, limit)
            .await?)
    }

    /// Marks a conversation read up to `seq` and tells the others (a read receipt).
    pub async fn mark_read(
        &self,
        context: &RequestContext,
        thread: Uuid,
        seq: i64,
    ) -> AppResult<()> {
        let user = self
            .person(context, Action::Update, "MessageThread")
            .await?;
        let (stored, participants) = self.participation(context, thread).await?;
        if seq < 1 || seq > stored.last_message_seq {
            return Err(invalid("seq", "a message of this conversation"));
        }
        let now_ms = self.clock.now_ms();
        if self.store.mark_read(thread, user, seq, now_ms).await? {
            self.relay
                .publish(&current(&participants), &Event::Read { thread, user, seq });
        }
        // Read up to the newest message: the conversation's notice is dealt with.
        if seq == stored.last_message_seq {
            for notice in self.store.notifications(user).await? {
                if notice.kind == KIND_NEW_MESSAGE
                    && notice.subject == Some(thread)
                    && notice.read_at_ms.is_none()
                {
                    self.store
                        .mark_notification_read(user, notice.id, now_ms)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Starts storing a sealed attachment for a conversation the caller takes part in.
    pub async fn begin_message_attachment(
        &self,
        context: &RequestContext,
        thread: Uuid,
        id: Uuid,
        declared_bytes: Option<u64>,
    ) -> AppResult<MessageAttachmentWriter> {
        let user = self
            .person(context, Action::Create, "MessageAttachment")
            .await?;
        if declared_bytes.is_some_and(|n| n > ATTACHMENT_BYTES_MAX) {
            return Err(AppError::TooLarge {
                limit_bytes: ATTACHMENT_BYTES_MAX,
            });
        }
        let (stored, _) = self.participation(context, thread).await?;
        if self.store.message_attachment(id).await?.is_some() {
            return Err(AppError::Conflict {
                code: "duplicate_attachment",
                message: "an attachment with this id exists".into(),
            });
        }
        self.authorize_conversation(
            context,
            Action::Create,
            &stored,
            "MessageAttachment",
            id.to_string(),
        )
        .await?;
        Ok(MessageAttachmentWriter {
            app: self.clone(),
            id,
            thread,
            user,
            buffer: Vec::with_capacity(ATTACHMENT_CHUNK_BYTES),
            chunks: 0,
            size: 0,
        })
    }

    /// Opens a sealed attachment of a conversation the caller takes part in.
    pub async fn read_message_attachment(
        &self,
        context: &RequestContext,
        thread: Uuid,
        id: Uuid,
    ) -> AppResult<MessageAttachmentReader> {
        let (stored, _) = self.participation(context, thread).await?;
        let Some(attachment) = self
            .store
            .message_attachment(id)
            .await?
            .filter(|a| a.thread == thread)
        else {
            return Err(AppError::NotFound);
        };
        self.authorize_conversation(
            context,
            Action::Read,
            &stored,
            "MessageAttachment",
            id.to_string(),
        )
        .await?;
        Ok(MessageAttachmentReader {
            app: self.clone(),
            attachment,
            next: 0,
        })
    }
}

/// What one retention sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionSwept {
    pub messages: u64,
    pub attachments: u64,
}

impl App {
    /// Deletes, for every organisation that set a retention period, the messages and
    /// message attachments older than it: rows, sealed keys and stored chunks. The deletion
    /// is real: SQLite overwrites the freed pages (`secure_delete`) and checkpoints its WAL
    /// after such a batch; PostgreSQL leaves dead tuples until (auto)vacuum reclaims them.
    /// Recorded in the audit log when anything was deleted.
    pub async fn sweep_message_retention(&self) -> AppResult<RetentionSwept> {
        let mut swept = RetentionSwept::default();
        let now_ms = self.clock.now_ms();
        for organisation in self.store.organisations().await? {
            if organisation.message_retention_days <= 0 {
                continue;
            }
            let before = swept;
            let before_ms = now_ms - organisation.message_retention_days * DAY_MS;
            loop {
                let deleted = self
                    .store
                    .delete_messages_before(organisation.id, before_ms, RETENTION_BATCH_ROWS)
                    .await?;
                for attachment in &deleted.attachments {
                    self.blobs.delete(*attachment).await?;
                }
                swept.messages += deleted.messages;
                swept.attachments += deleted.attachments.len() as u64;
                if deleted.messages < u64::from(RETENTION_BATCH_ROWS)
                    && deleted.attachments.len() < RETENTION_BATCH_ROWS as usize
                {
                    break;
                }
            }
            if swept != before {
                let mut event = crate::keys::system_event(
                    now_ms,
                    AuditAction::Delete,
                    None,
                    "message_retention",
                );
                event.actor = Some("system:retention".to_owned());
                event.organisation = Some(organisation.id.to_string());
                event.resource_type = Some("Message".to_owned());
                self.gate.record_system(event).await?;
            }
        }
        Ok(swept)
    }

    /// Sweeps every [`RETENTION_SWEEP_INTERVAL_SECS`] until `stop` completes.
    pub async fn run_retention_sweeper(&self, stop: impl std::future::Future<Output = ()>) {
        let period = std::time::Duration::from_secs(RETENTION_SWEEP_INTERVAL_SECS);
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    match self.sweep_message_retention().await {
                        Ok(swept) if swept.messages + swept.attachments > 0 => tracing::info!(
                            messages = swept.messages,
                            attachments = swept.attachments,
                            "message retention sweep"
                        ),
                        Ok(_) => {}
                        Err(error) => tracing::error!(%error, "message retention sweep failed"),
                    }
                }
                () = &mut stop => break,
            }
        }
    }
}

/// The people taking part now.
fn current(participants: &[Participant]) -> Vec<UserId> {
    participants
        .iter()
        .filter(|p| p.removed_at_ms.is_none())
        .map(|p| p.user)
        .collect()
}

/// A sealed attachment being stored, chunk by chunk; nothing is visible until
/// [`MessageAttachmentWriter::finish`].
#[derive(Debug)]
pub struct MessageAttachmentWriter {
    app: App,
    id: Uuid,
    thread: Uuid,
    user: UserId,
    buffer: Vec<u8>,
    chunks: u32,
    size: u64,
}

impl MessageAttachmentWriter {
    pub async fn write(&mut self, mut bytes: &[u8]) -> AppResult<()> {
        self.size += bytes.len() as u64;
        if self.size > ATTACHMENT_BYTES_MAX {
            return Err(AppError::TooLarge {
                limit_bytes: ATTACHMENT_BYTES_MAX,
            });
        }
        while !bytes.is_empty() {
            let room = ATTACHMENT_CHUNK_BYTES - self.buffer.len();
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.buffer.extend_from_slice(now);
            bytes = rest;
            if self.buffer.len() == ATTACHMENT_CHUNK_BYTES {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> AppResult<()> {
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(ATTACHMENT_CHUNK_BYTES));
        self.app
            .blobs
            .put_chunk(self.id, self.chunks, chunk)
            .await?;
        self.chunks += 1;
        Ok(())
    }

    pub async fn finish(mut self) -> AppResult<StoredMessageAttachment> {
        if self.size < 12 + 16 {
            return Err(invalid("attachment", "shorter than a nonce and a tag"));
        }
        if !self.buffer.is_empty() {
            self.flush().await?;
        }
        let attachment = StoredMessageAttachment {
            id: self.id,
            thread: self.thread,
            uploaded_by: self.user,
            size_bytes: self.size,
            chunks: self.chunks,
            created_at_ms: self.app.clock.now_ms(),
        };
        self.app
            .store
            .insert_message_attachment(attachment.clone())
            .await?;
        Ok(attachment)
    }
}

/// A stored sealed attachment, read chunk by chunk.
#[derive(Debug)]
pub struct MessageAttachmentReader {
    app: App,
    attachment: StoredMessageAttachment,
    next: u32,
}

impl MessageAttachmentReader {
    pub fn size_bytes(&self) -> u64 {
        self.attachment.size_bytes
    }

    pub async fn next_chunk(&mut self) -> AppResult<Option<Vec<u8>>> {
        if self.next >= self.attachment.chunks {
            return Ok(None);
        }
        let chunk = self
            .app
            .blobs
            .chunk(self.attachment.id, self.next)
            .await?
            .ok_or_else(|| {
                AppError::Unexpected("a chunk of a stored attachment is missing".into())
            })?;
        self.next += 1;
        Ok(Some(chunk))
    }
}
