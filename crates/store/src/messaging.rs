//! Rows of end-to-end messaging: devices, conversations (threads), their participants,
//! sealed messages with one sealed content key per recipient device, and sealed
//! attachments.
//!
//! The store cannot read any of it: bodies and files are ciphertext made on devices, and a
//! content key is kept only sealed to each recipient device. When a message is stored, the
//! engine checks in the same transaction that every device it is sealed to belongs to a
//! current participant, so a participant removed a moment earlier is never sent another key.

use haven_domain::{OrganisationId, PatientId, UserId};
use uuid::Uuid;

use crate::{StoreError, StoreResult, limits};

/// One device of a person: the public half of its keys, as it registered them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDevice {
    pub id: Uuid,
    pub user: UserId,
    /// What the person called it ("Work laptop"); not health data.
    pub label: String,
    pub hpke_public_key: Vec<u8>,
    pub signing_public_key: Vec<u8>,
    pub self_signature: Vec<u8>,
    /// SHA-256 of the device's identity, lowercase hex: what the audit log records.
    pub fingerprint: String,
    pub added_at_ms: i64,
    pub removed_at_ms: Option<i64>,
}

/// A conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredThread {
    pub id: Uuid,
    pub organisation: OrganisationId,
    /// The patient it is about; `None` for a conversation within the clinical staff.
    pub patient: Option<PatientId>,
    pub created_by: UserId,
    pub created_at_ms: i64,
    /// The `seq` of its newest message, 0 when it has none.
    pub last_message_seq: i64,
    pub last_message_at_ms: Option<i64>,
}

/// One person's place in a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub thread: Uuid,
    pub user: UserId,
    /// The actor id of whoever added them.
    pub added_by: String,
    pub added_at_ms: i64,
    pub removed_at_ms: Option<i64>,
    /// The newest message they have read (read receipts), 0 for none.
    pub read_seq: i64,
    pub read_at_ms: Option<i64>,
}

/// A conversation as a message to it is checked, read at one moment: the thread, everyone
/// who takes or took part, and the active devices of those who take part now (the
/// recipients a new message must be sealed to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationDevices {
    pub thread: StoredThread,
    pub participants: Vec<Participant>,
    pub devices: Vec<StoredDevice>,
}

/// A conversation in someone's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSummary {
    pub thread: StoredThread,
    /// Messages from others newer than the last one this person read.
    pub unread: u64,
}

/// The content key of a message, sealed to one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageKey {
    pub device: Uuid,
    pub enc: Vec<u8>,
    pub sealed_key: Vec<u8>,
}

/// A message to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Chosen by the sending device: it is bound into the ciphertext and the sealed keys.
    pub id: Uuid,
    pub thread: Uuid,
    pub sender_user: UserId,
    pub sender_device: Uuid,
    pub sent_at_ms: i64,
    pub ciphertext: Vec<u8>,
    pub signature: Vec<u8>,
    pub keys: Vec<MessageKey>,
}

impl NewMessage {
    pub(crate) fn check(&self) -> StoreResult<()> {
        if self.keys.len() > limits::MESSAGE_KEYS_MAX {
            return Err(StoreError::LimitExceeded {
                what: "sealed keys of one message",
                max: limits::MESSAGE_KEYS_MAX,
            });
        }
        Ok(())
    }
}

/// A stored message as one device sees it: with the content key sealed to that device, if
/// it was a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Position in the whole store: orders a thread's messages and is the sync cursor.
    pub seq: i64,
    pub id: Uuid,
    pub thread: Uuid,
    pub sender_user: UserId,
    pub sender_device: Uuid,
    pub sent_at_ms: i64,
    pub ciphertext: Vec<u8>,
    pub signature: Vec<u8>,
    pub key: Option<MessageKey>,
}

/// What became of a message sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    Sent {
        seq: i64,
    },
    /// This device is not (or no longer) a device of a current participant: nothing was
    /// stored.
    NotARecipient(Uuid),
    /// A message with this id exists already: nothing was stored.
    DuplicateId,
}

/// A sealed file sent in a conversation, once all its chunks are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessageAttachment {
    pub id: Uuid,
    pub thread: Uuid,
    pub uploaded_by: UserId,
    pub size_bytes: u64,
    pub chunks: u32,
    pub created_at_ms: i64,
}

/// What a retention sweep removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessagesDeleted {
    pub messages: u64,
    /// Attachments whose rows were removed; their chunks are the blob store's to delete.
    pub attachments: Vec<Uuid>,
}
