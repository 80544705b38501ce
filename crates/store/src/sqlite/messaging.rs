//! End-to-end messaging on the embedded engine: writes as jobs for the group-commit writer
//! ([`MessagingOp`]), reads inline. A message and its sealed keys are one write: the
//! writer applies it in its own savepoint and rolls it back whole if one of its devices is
//! not a current participant's.

use haven_domain::{OrganisationId, PatientId, UserId};
use rusqlite::{OptionalExtension, Row, params, params_from_iter};
use sqlx::{Row as _, SqliteConnection};
use uuid::Uuid;

use super::readers::{Readers, uuid_from};
use super::{WriteOutcome, unexpected};
use crate::messaging::{
    MessageKey, MessagesDeleted, NewMessage, Participant, StoredDevice, StoredMessage,
    StoredMessageAttachment, StoredThread, ThreadSummary,
};
use crate::{StoreError, StoreResult, limits};

/// A write of this module, applied by the writer in its own savepoint.
#[derive(Debug)]
pub(super) enum MessagingOp {
    InsertDevice(StoredDevice),
    RemoveDevice {
        user: UserId,
        device: Uuid,
        now_ms: i64,
    },
    InsertThread(StoredThread, Vec<Participant>),
    AddParticipant(Participant),
    RemoveParticipant {
        thread: Uuid,
        user: UserId,
        now_ms: i64,
    },
    InsertMessage(NewMessage),
    MarkRead {
        thread: Uuid,
        user: UserId,
        seq: i64,
        now_ms: i64,
    },
    InsertAttachment(StoredMessageAttachment),
    DeleteBefore {
        organisation: OrganisationId,
        before_ms: i64,
        limit: u32,
    },
}

impl MessagingOp {
    /// Whether this write deletes what must then leave the WAL too (retention).
    pub(super) fn purges(&self) -> bool {
        matches!(self, MessagingOp::DeleteBefore { .. })
    }
}

fn changed(result: sqlx::sqlite::SqliteQueryResult) -> WriteOutcome {
    WriteOutcome::Changed(result.rows_affected() > 0)
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

pub(super) async fn apply_messaging(
    connection: &mut SqliteConnection,
    op: &MessagingOp,
) -> StoreResult<WriteOutcome> {
    Ok(match op {
        MessagingOp::InsertDevice(device) => changed(
            sqlx::query(
                "INSERT INTO devices (id, user_id, label, hpke_public_key, signing_public_key,
                     self_signature, fingerprint, added_at_ms)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8
                 WHERE (SELECT count(*) FROM devices
                        WHERE user_id = ?2 AND removed_at_ms IS NULL) < ?9",
            )
            .bind(device.id)
            .bind(device.user.as_uuid())
            .bind(&device.label)
            .bind(&device.hpke_public_key)
            .bind(&device.signing_public_key)
            .bind(&device.self_signature)
            .bind(&device.fingerprint)
            .bind(device.added_at_ms)
            .bind(i64::from(limits::DEVICES_PER_USER_MAX))
            .execute(&mut *connection)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists
                } else {
                    e.into()
                }
            })?,
        ),
        MessagingOp::RemoveDevice {
            user,
            device,
            now_ms,
        } => changed(
            sqlx::query(
                "UPDATE devices SET removed_at_ms = ?
                 WHERE id = ? AND user_id = ? AND removed_at_ms IS NULL",
            )
            .bind(now_ms)
            .bind(device)
            .bind(user.as_uuid())
            .execute(&mut *connection)
            .await?,
        ),
        MessagingOp::InsertThread(thread, participants) => {
            sqlx::query(
                "INSERT INTO threads (id, organisation_id, patient_id, created_by, created_at_ms)
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(thread.id)
            .bind(thread.organisation.as_uuid())
            .bind(thread.patient.map(|p| p.as_uuid()))
            .bind(thread.created_by.as_uuid())
            .bind(thread.created_at_ms)
            .execute(&mut *connection)
            .await?;
            for participant in participants {
                insert_participant(connection, participant).await?;
            }
            WriteOutcome::Done
        }
        MessagingOp::AddParticipant(participant) => {
            WriteOutcome::Changed(insert_participant(connection, participant).await?)
        }
        MessagingOp::RemoveParticipant {
            thread,
            user,
            now_ms,
        } => changed(
            sqlx::query(
                "UPDATE thread_participants SET removed_at_ms = ?
                 WHERE thread_id = ? AND user_id = ? AND removed_at_ms IS NULL",
            )
            .bind(now_ms)
            .bind(thread)
            .bind(user.as_uuid())
            .execute(&mut *connection)
            .await?,
        ),
        MessagingOp::InsertMessage(message) => insert_message(connection, message).await?,
        MessagingOp::MarkRead {
            thread,
            user,
            seq,
            now_ms,
        } => changed(
            sqlx::query(
                "UPDATE thread_participants SET read_seq = ?1, read_at_ms = ?2
                 WHERE thread_id = ?3 AND user_id = ?4 AND removed_at_ms IS NULL
                   AND read_seq < ?1
                   AND ?1 <= (SELECT last_message_seq FROM threads WHERE id = ?3)",
            )
            .bind(seq)
            .bind(now_ms)
            .bind(thread)
            .bind(user.as_uuid())
            .execute(&mut *connection)
            .await?,
        ),
        MessagingOp::InsertAttachment(attachment) => {
            sqlx::query(
                "INSERT INTO message_attachments (id, thread_id, uploaded_by, size_bytes, chunks,
                     created_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(attachment.id)
            .bind(attachment.thread)
            .bind(attachment.uploaded_by.as_uuid())
            .bind(i64::try_from(attachment.size_bytes).unwrap_or(i64::MAX))
            .bind(i64::from(attachment.chunks))
            .bind(attachment.created_at_ms)
            .execute(&mut *connection)
            .await?;
            WriteOutcome::Done
        }
        MessagingOp::DeleteBefore {
            organisation,
            before_ms,
            limit,
        } => {
            // Keys go with their message (ON DELETE CASCADE); `secure_delete` overwrites
            // the freed pages, so a deleted ciphertext is gone from the file, not only
            // unlinked.
            let messages = sqlx::query(
                "DELETE FROM messages WHERE seq IN (
                     SELECT m.seq FROM messages m JOIN threads t ON t.id = m.thread_id
                     WHERE t.organisation_id = ? AND m.sent_at_ms < ? LIMIT ?)",
            )
            .bind(organisation.as_uuid())
            .bind(before_ms)
            .bind(i64::from(*limit))
            .execute(&mut *connection)
            .await?
            .rows_affected();
            let rows = sqlx::query(
                "DELETE FROM message_attachments WHERE id IN (
                     SELECT a.id FROM message_attachments a JOIN threads t ON t.id = a.thread_id
                     WHERE t.organisation_id = ? AND a.created_at_ms < ? LIMIT ?)
                 RETURNING id",
            )
            .bind(organisation.as_uuid())
            .bind(before_ms)
            .bind(i64::from(*limit))
            .fetch_all(&mut *connection)
            .await?;
            let attachments = rows
                .iter()
                .map(|row| row.try_get::<Uuid, _>(0))
                .collect::<Result<Vec<_>, _>>()?;
            WriteOutcome::MessagesDeleted(MessagesDeleted {
                messages,
                attachments,
            })
        }
    })
}

async fn insert_participant(
    connection: &mut SqliteConnection,
    participant: &Participant,
) -> StoreResult<bool> {
    let result = sqlx::query(
        "INSERT INTO thread_participants (thread_id, user_id, added_by, added_at_ms)
         SELECT ?1, ?2, ?3, ?4
         WHERE (SELECT count(*) FROM thread_participants WHERE thread_id = ?1) < ?5
         ON CONFLICT (thread_id, user_id) DO UPDATE SET
             removed_at_ms = NULL, added_by = excluded.added_by, added_at_ms = excluded.added_at_ms
         WHERE removed_at_ms IS NOT NULL",
    )
    .bind(participant.thread)
    .bind(participant.user.as_uuid())
    .bind(&participant.added_by)
    .bind(participant.added_at_ms)
    .bind(i64::from(limits::THREAD_PARTICIPANTS_MAX))
    .execute(&mut *connection)
    .await?;
    Ok(result.rows_affected() > 0)
}

async fn insert_message(
    connection: &mut SqliteConnection,
    message: &NewMessage,
) -> StoreResult<WriteOutcome> {
    let inserted = sqlx::query(
        "INSERT INTO messages (id, thread_id, sender_user, sender_device, sent_at_ms,
             ciphertext, signature) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(message.id)
    .bind(message.thread)
    .bind(message.sender_user.as_uuid())
    .bind(message.sender_device)
    .bind(message.sent_at_ms)
    .bind(&message.ciphertext)
    .bind(&message.signature)
    .execute(&mut *connection)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::AlreadyExists
        } else {
            e.into()
        }
    })?;
    let seq = inserted.last_insert_rowid();
    for key in &message.keys {
        // Only a current participant's active device receives a key: checked here, in the
        // writer, so no removal can slip between the application's check and this insert.
        let stored = sqlx::query(
            "INSERT INTO message_keys (device_id, message_seq, enc, sealed_key)
             SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (
                 SELECT 1 FROM devices d JOIN thread_participants p ON p.user_id = d.user_id
                 WHERE d.id = ?1 AND d.removed_at_ms IS NULL
                   AND p.thread_id = ?5 AND p.removed_at_ms IS NULL)",
        )
        .bind(key.device)
        .bind(seq)
        .bind(&key.enc)
        .bind(&key.sealed_key)
        .bind(message.thread)
        .execute(&mut *connection)
        .await?;
        if stored.rows_affected() == 0 {
            return Err(StoreError::NotARecipient(key.device));
        }
    }
    sqlx::query("UPDATE threads SET last_message_seq = ?, last_message_at_ms = ? WHERE id = ?")
        .bind(seq)
        .bind(message.sent_at_ms)
        .bind(message.thread)
        .execute(&mut *connection)
        .await?;
    // What one writes, one has read.
    sqlx::query(
        "UPDATE thread_participants SET read_seq = ?, read_at_ms = ?
         WHERE thread_id = ? AND user_id = ?",
    )
    .bind(seq)
    .bind(message.sent_at_ms)
    .bind(message.thread)
    .bind(message.sender_user.as_uuid())
    .execute(&mut *connection)
    .await?;
    Ok(WriteOutcome::Count(u64::try_from(seq).unwrap_or(0)))
}

fn bytes(uuid: Uuid) -> Vec<u8> {
    uuid.as_bytes().to_vec()
}

const DEVICE_COLUMNS: &str = "SELECT id, user_id, label, hpke_public_key, signing_public_key,
        self_signature, fingerprint, added_at_ms, removed_at_ms FROM devices";

fn device(row: &Row<'_>) -> rusqlite::Result<StoredDevice> {
    Ok(StoredDevice {
        id: uuid_from(row.get(0)?)?,
        user: UserId::from_uuid(uuid_from(row.get(1)?)?),
        label: row.get(2)?,
        hpke_public_key: row.get(3)?,
        signing_public_key: row.get(4)?,
        self_signature: row.get(5)?,
        fingerprint: row.get(6)?,
        added_at_ms: row.get(7)?,
        removed_at_ms: row.get(8)?,
    })
}

const THREAD_COLUMNS: &str = "t.id, t.organisation_id, t.patient_id, t.created_by,
        t.created_at_ms, t.last_message_seq, t.last_message_at_ms";

fn thread(row: &Row<'_>) -> rusqlite::Result<StoredThread> {
    let patient: Option<Vec<u8>> = row.get(2)?;
    Ok(StoredThread {
        id: uuid_from(row.get(0)?)?,
        organisation: OrganisationId::from_uuid(uuid_from(row.get(1)?)?),
        patient: patient
            .map(uuid_from)
            .transpose()?
            .map(PatientId::from_uuid),
        created_by: UserId::from_uuid(uuid_from(row.get(3)?)?),
        created_at_ms: row.get(4)?,
        last_message_seq: row.get(5)?,
        last_message_at_ms: row.get(6)?,
    })
}

fn participant(row: &Row<'_>) -> rusqlite::Result<Participant> {
    Ok(Participant {
        thread: uuid_from(row.get(0)?)?,
        user: UserId::from_uuid(uuid_from(row.get(1)?)?),
        added_by: row.get(2)?,
        added_at_ms: row.get(3)?,
        removed_at_ms: row.get(4)?,
        read_seq: row.get(5)?,
        read_at_ms: row.get(6)?,
    })
}

fn attachment(row: &Row<'_>) -> rusqlite::Result<StoredMessageAttachment> {
    let size: i64 = row.get(3)?;
    let chunks: i64 = row.get(4)?;
    Ok(StoredMessageAttachment {
        id: uuid_from(row.get(0)?)?,
        thread: uuid_from(row.get(1)?)?,
        uploaded_by: UserId::from_uuid(uuid_from(row.get(2)?)?),
        size_bytes: u64::try_from(size).unwrap_or(0),
        chunks: u32::try_from(chunks).unwrap_or(0),
        created_at_ms: row.get(5)?,
    })
}

impl Readers {
    pub(super) fn devices_of(&self, users: &[UserId]) -> StoreResult<Vec<StoredDevice>> {
        if users.len() > limits::DEVICE_OWNERS_LOOKUP_MAX {
            return Err(StoreError::LimitExceeded {
                what: "device owners looked up at once",
                max: limits::DEVICE_OWNERS_LOOKUP_MAX,
            });
        }
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; users.len()].join(", ");
        let sql = format!(
            "{DEVICE_COLUMNS} WHERE user_id IN ({marks}) AND removed_at_ms IS NULL
             ORDER BY user_id, added_at_ms, id"
        );
        self.with(|c| {
            c.prepare_cached(&sql)?
                .query_map(
                    params_from_iter(users.iter().map(|u| bytes(u.as_uuid()))),
                    device,
                )?
                .collect()
        })
    }

    pub(super) fn device(&self, id: Uuid) -> StoreResult<Option<StoredDevice>> {
        let sql = format!("{DEVICE_COLUMNS} WHERE id = ?1");
        self.with(|c| {
            c.prepare_cached(&sql)?
                .query_row(params![bytes(id)], device)
                .optional()
        })
    }

    pub(super) fn thread(&self, id: Uuid) -> StoreResult<Option<StoredThread>> {
        let sql = format!("SELECT {THREAD_COLUMNS} FROM threads t WHERE t.id = ?1");
        self.with(|c| {
            c.prepare_cached(&sql)?
                .query_row(params![bytes(id)], thread)
                .optional()
        })
    }

    pub(super) fn thread_participants(&self, id: Uuid) -> StoreResult<Vec<Participant>> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT thread_id, user_id, added_by, added_at_ms, removed_at_ms, read_seq,
                     read_at_ms
                 FROM thread_participants WHERE thread_id = ?1 ORDER BY added_at_ms, user_id",
            )?
            .query_map(params![bytes(id)], participant)?
            .collect()
        })
    }

    pub(super) fn user_threads(&self, user: UserId) -> StoreResult<Vec<ThreadSummary>> {
        let sql = format!(
            "SELECT {THREAD_COLUMNS},
                 (SELECT count(*) FROM messages m
                  WHERE m.thread_id = t.id AND m.seq > p.read_seq AND m.sender_user != p.user_id)
             FROM thread_participants p JOIN threads t ON t.id = p.thread_id
             WHERE p.user_id = ?1 AND p.removed_at_ms IS NULL
             ORDER BY coalesce(t.last_message_at_ms, t.created_at_ms) DESC, t.id
             LIMIT ?2"
        );
        self.with(|c| {
            c.prepare_cached(&sql)?
                .query_map(
                    params![bytes(user.as_uuid()), i64::from(limits::THREADS_LISTED_MAX)],
                    |row| {
                        let unread: i64 = row.get(7)?;
                        Ok(ThreadSummary {
                            thread: thread(row)?,
                            unread: u64::try_from(unread).unwrap_or(0),
                        })
                    },
                )?
                .collect()
        })
    }

    pub(super) fn thread_messages(
        &self,
        thread: Uuid,
        device: Uuid,
        after_seq: i64,
        limit: u32,
    ) -> StoreResult<Vec<StoredMessage>> {
        let limit = limit.min(limits::MESSAGES_PAGE_MAX);
        self.with(|c| {
            c.prepare_cached(
                "SELECT m.seq, m.id, m.thread_id, m.sender_user, m.sender_device, m.sent_at_ms,
                     m.ciphertext, m.signature, k.enc, k.sealed_key
                 FROM messages m
                 LEFT JOIN message_keys k ON k.message_seq = m.seq AND k.device_id = ?2
                 WHERE m.thread_id = ?1 AND m.seq > ?3
                 ORDER BY m.seq LIMIT ?4",
            )?
            .query_map(
                params![bytes(thread), bytes(device), after_seq, i64::from(limit)],
                |row| {
                    let enc: Option<Vec<u8>> = row.get(8)?;
                    let sealed_key: Option<Vec<u8>> = row.get(9)?;
                    Ok(StoredMessage {
                        seq: row.get(0)?,
                        id: uuid_from(row.get(1)?)?,
                        thread: uuid_from(row.get(2)?)?,
                        sender_user: UserId::from_uuid(uuid_from(row.get(3)?)?),
                        sender_device: uuid_from(row.get(4)?)?,
                        sent_at_ms: row.get(5)?,
                        ciphertext: row.get(6)?,
                        signature: row.get(7)?,
                        key: enc.zip(sealed_key).map(|(enc, sealed_key)| MessageKey {
                            device,
                            enc,
                            sealed_key,
                        }),
                    })
                },
            )?
            .collect()
        })
    }

    pub(super) fn message_attachment(
        &self,
        id: Uuid,
    ) -> StoreResult<Option<StoredMessageAttachment>> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT id, thread_id, uploaded_by, size_bytes, chunks, created_at_ms
                 FROM message_attachments WHERE id = ?1",
            )?
            .query_row(params![bytes(id)], attachment)
            .optional()
        })
    }
}

impl super::SqliteStore {
    async fn messaging(&self, op: MessagingOp) -> StoreResult<WriteOutcome> {
        self.write(super::WriteOp::Messaging(Box::new(op))).await
    }

    pub(super) async fn messaging_changed(&self, op: MessagingOp) -> StoreResult<bool> {
        match self.messaging(op).await? {
            WriteOutcome::Changed(changed) => Ok(changed),
            other => Err(unexpected(other)),
        }
    }

    pub(super) async fn messaging_done(&self, op: MessagingOp) -> StoreResult<()> {
        match self.messaging(op).await? {
            WriteOutcome::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub(super) async fn send_message(
        &self,
        message: NewMessage,
    ) -> StoreResult<crate::messaging::SendOutcome> {
        message.check()?;
        send_outcome(self.messaging(MessagingOp::InsertMessage(message)).await)
    }

    pub(super) async fn delete_messages(
        &self,
        organisation: OrganisationId,
        before_ms: i64,
        limit: u32,
    ) -> StoreResult<MessagesDeleted> {
        match self
            .messaging(MessagingOp::DeleteBefore {
                organisation,
                before_ms,
                limit,
            })
            .await?
        {
            WriteOutcome::MessagesDeleted(deleted) => Ok(deleted),
            other => Err(unexpected(other)),
        }
    }
}

/// The outcome the writer reports for [`MessagingOp::InsertMessage`], as the store's answer.
pub(super) fn send_outcome(
    result: StoreResult<WriteOutcome>,
) -> StoreResult<crate::messaging::SendOutcome> {
    use crate::messaging::SendOutcome;
    match result {
        Ok(WriteOutcome::Count(seq)) => Ok(SendOutcome::Sent {
            seq: i64::try_from(seq).unwrap_or(i64::MAX),
        }),
        Ok(other) => Err(unexpected(other)),
        Err(StoreError::NotARecipient(device)) => Ok(SendOutcome::NotARecipient(device)),
        Err(StoreError::AlreadyExists) => Ok(SendOutcome::DuplicateId),
        Err(error) => Err(error),
    }
}
