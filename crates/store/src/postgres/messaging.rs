//! End-to-end messaging on PostgreSQL. A message and its sealed keys are one statement,
//! stored only if every key is for a device of a participant current in its snapshot (a
//! removal committed while the message is being stored is seen by the next message), and
//! which holds its conversation's row so that one conversation's seqs commit in order. Bounded
//! inserts (devices per person, participants per conversation) take an advisory lock on
//! their owner first, so two instances cannot both pass the count.

use haven_domain::{OrganisationId, PatientId, UserId};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::messaging::{
    ConversationDevices, MessageKey, MessagesDeleted, NewMessage, Participant, SendOutcome,
    StoredDevice, StoredMessage, StoredMessageAttachment, StoredThread, ThreadSummary,
};
use crate::{StoreError, StoreResult, limits};

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// Orders writers that count before they insert (`space` keeps the lock ids of different
/// kinds of owner apart).
async fn lock(
    transaction: &mut Transaction<'_, Postgres>,
    owner: Uuid,
    space: i64,
) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, $2))")
        .bind(owner)
        .bind(space)
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

pub(super) async fn insert_device(pool: &PgPool, device: StoredDevice) -> StoreResult<bool> {
    let mut transaction = pool.begin().await?;
    lock(&mut transaction, device.user.as_uuid(), 21).await?;
    let result = sqlx::query(
        "INSERT INTO devices (id, user_id, label, hpke_public_key, signing_public_key,
             self_signature, fingerprint, added_at_ms)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8
         WHERE (SELECT count(*) FROM devices WHERE user_id = $2 AND removed_at_ms IS NULL) < $9",
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
    .execute(&mut *transaction)
    .await;
    let inserted = match result {
        Ok(result) => result.rows_affected() > 0,
        Err(error) if is_unique_violation(&error) => return Err(StoreError::AlreadyExists),
        Err(error) => return Err(error.into()),
    };
    transaction.commit().await?;
    Ok(inserted)
}

pub(super) async fn remove_device(
    pool: &PgPool,
    user: UserId,
    device: Uuid,
    now_ms: i64,
) -> StoreResult<bool> {
    Ok(sqlx::query(
        "UPDATE devices SET removed_at_ms = $1
         WHERE id = $2 AND user_id = $3 AND removed_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(device)
    .bind(user.as_uuid())
    .execute(pool)
    .await?
    .rows_affected()
        > 0)
}

const DEVICE_COLUMNS: &str = "SELECT id, user_id, label, hpke_public_key, signing_public_key,
        self_signature, fingerprint, added_at_ms, removed_at_ms FROM devices";

fn device(row: &PgRow) -> StoreResult<StoredDevice> {
    Ok(StoredDevice {
        id: row.try_get("id")?,
        user: UserId::from_uuid(row.try_get("user_id")?),
        label: row.try_get("label")?,
        hpke_public_key: row.try_get("hpke_public_key")?,
        signing_public_key: row.try_get("signing_public_key")?,
        self_signature: row.try_get("self_signature")?,
        fingerprint: row.try_get("fingerprint")?,
        added_at_ms: row.try_get("added_at_ms")?,
        removed_at_ms: row.try_get("removed_at_ms")?,
    })
}

pub(super) async fn devices_of(pool: &PgPool, users: &[UserId]) -> StoreResult<Vec<StoredDevice>> {
    if users.len() > limits::DEVICE_OWNERS_LOOKUP_MAX {
        return Err(StoreError::LimitExceeded {
            what: "device owners looked up at once",
            max: limits::DEVICE_OWNERS_LOOKUP_MAX,
        });
    }
    let ids: Vec<Uuid> = users.iter().map(|u| u.as_uuid()).collect();
    let rows = sqlx::query(&format!(
        "{DEVICE_COLUMNS} WHERE user_id = ANY($1) AND removed_at_ms IS NULL
         ORDER BY user_id, added_at_ms, id"
    ))
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    rows.iter().map(device).collect()
}

pub(super) async fn device_by_id(pool: &PgPool, id: Uuid) -> StoreResult<Option<StoredDevice>> {
    sqlx::query(&format!("{DEVICE_COLUMNS} WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(device)
        .transpose()
}

async fn insert_participant(
    transaction: &mut Transaction<'_, Postgres>,
    participant: &Participant,
) -> StoreResult<bool> {
    Ok(sqlx::query(
        "INSERT INTO thread_participants (thread_id, user_id, added_by, added_at_ms)
         SELECT $1, $2, $3, $4
         WHERE (SELECT count(*) FROM thread_participants WHERE thread_id = $1) < $5
         ON CONFLICT (thread_id, user_id) DO UPDATE SET
             removed_at_ms = NULL, added_by = excluded.added_by, added_at_ms = excluded.added_at_ms
         WHERE thread_participants.removed_at_ms IS NOT NULL",
    )
    .bind(participant.thread)
    .bind(participant.user.as_uuid())
    .bind(&participant.added_by)
    .bind(participant.added_at_ms)
    .bind(i64::from(limits::THREAD_PARTICIPANTS_MAX))
    .execute(&mut **transaction)
    .await?
    .rows_affected()
        > 0)
}

pub(super) async fn insert_thread(
    pool: &PgPool,
    thread: StoredThread,
    participants: Vec<Participant>,
) -> StoreResult<()> {
    if participants.len() > limits::THREAD_PARTICIPANTS_MAX as usize {
        return Err(StoreError::LimitExceeded {
            what: "participants of a conversation",
            max: limits::THREAD_PARTICIPANTS_MAX as usize,
        });
    }
    let mut transaction = pool.begin().await?;
    sqlx::query(
        "INSERT INTO threads (id, organisation_id, patient_id, created_by, created_at_ms)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(thread.id)
    .bind(thread.organisation.as_uuid())
    .bind(thread.patient.map(|p| p.as_uuid()))
    .bind(thread.created_by.as_uuid())
    .bind(thread.created_at_ms)
    .execute(&mut *transaction)
    .await?;
    for participant in &participants {
        insert_participant(&mut transaction, participant).await?;
    }
    transaction.commit().await?;
    Ok(())
}

const THREAD_COLUMNS: &str = "t.id, t.organisation_id, t.patient_id, t.created_by,
        t.created_at_ms, t.last_message_seq, t.last_message_at_ms";

fn thread(row: &PgRow) -> StoreResult<StoredThread> {
    let patient: Option<Uuid> = row.try_get("patient_id")?;
    Ok(StoredThread {
        id: row.try_get("id")?,
        organisation: OrganisationId::from_uuid(row.try_get("organisation_id")?),
        patient: patient.map(PatientId::from_uuid),
        created_by: UserId::from_uuid(row.try_get("created_by")?),
        created_at_ms: row.try_get("created_at_ms")?,
        last_message_seq: row.try_get("last_message_seq")?,
        last_message_at_ms: row.try_get("last_message_at_ms")?,
    })
}

pub(super) async fn thread_by_id(pool: &PgPool, id: Uuid) -> StoreResult<Option<StoredThread>> {
    sqlx::query(&format!(
        "SELECT {THREAD_COLUMNS} FROM threads t WHERE t.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .as_ref()
    .map(thread)
    .transpose()
}

fn participant(row: &PgRow) -> StoreResult<Participant> {
    Ok(Participant {
        thread: row.try_get("thread_id")?,
        user: UserId::from_uuid(row.try_get("user_id")?),
        added_by: row.try_get("added_by")?,
        added_at_ms: row.try_get("added_at_ms")?,
        removed_at_ms: row.try_get("removed_at_ms")?,
        read_seq: row.try_get("read_seq")?,
        read_at_ms: row.try_get("read_at_ms")?,
    })
}

pub(super) async fn thread_participants(pool: &PgPool, id: Uuid) -> StoreResult<Vec<Participant>> {
    let rows = sqlx::query(
        "SELECT thread_id, user_id, added_by, added_at_ms, removed_at_ms, read_seq, read_at_ms
         FROM thread_participants WHERE thread_id = $1 ORDER BY added_at_ms, user_id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(participant).collect()
}

/// The conversation, its participants and its current participants' active devices in one
/// statement (one snapshot, one round trip): a row per participant and device.
pub(super) async fn conversation_devices(
    pool: &PgPool,
    id: Uuid,
) -> StoreResult<Option<ConversationDevices>> {
    let rows = sqlx::query(&format!(
        "SELECT {THREAD_COLUMNS},
             p.user_id AS participant, p.added_by, p.added_at_ms AS participant_added_at_ms,
             p.removed_at_ms AS participant_removed_at_ms, p.read_seq, p.read_at_ms,
             d.id AS device, d.label, d.hpke_public_key, d.signing_public_key,
             d.self_signature, d.fingerprint, d.added_at_ms AS device_added_at_ms
         FROM threads t
         LEFT JOIN thread_participants p ON p.thread_id = t.id
         LEFT JOIN devices d ON d.user_id = p.user_id
             AND p.removed_at_ms IS NULL AND d.removed_at_ms IS NULL
         WHERE t.id = $1
         ORDER BY p.added_at_ms, p.user_id, d.added_at_ms, d.id"
    ))
    .bind(id)
    .fetch_all(pool)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let thread = thread(first)?;
    let mut participants: Vec<Participant> = Vec::new();
    let mut devices = Vec::new();
    for row in &rows {
        let Some(user) = row.try_get::<Option<Uuid>, _>("participant")? else {
            continue;
        };
        let user = UserId::from_uuid(user);
        if participants.last().is_none_or(|last| last.user != user) {
            participants.push(Participant {
                thread: id,
                user,
                added_by: row.try_get("added_by")?,
                added_at_ms: row.try_get("participant_added_at_ms")?,
                removed_at_ms: row.try_get("participant_removed_at_ms")?,
                read_seq: row.try_get("read_seq")?,
                read_at_ms: row.try_get("read_at_ms")?,
            });
        }
        if let Some(device) = row.try_get::<Option<Uuid>, _>("device")? {
            devices.push(StoredDevice {
                id: device,
                user,
                label: row.try_get("label")?,
                hpke_public_key: row.try_get("hpke_public_key")?,
                signing_public_key: row.try_get("signing_public_key")?,
                self_signature: row.try_get("self_signature")?,
                fingerprint: row.try_get("fingerprint")?,
                added_at_ms: row.try_get("device_added_at_ms")?,
                removed_at_ms: None,
            });
        }
    }
    // Listed like `devices_of`: by owner, then as added.
    devices.sort_by(|a, b| {
        (a.user.as_uuid(), a.added_at_ms, a.id).cmp(&(b.user.as_uuid(), b.added_at_ms, b.id))
    });
    Ok(Some(ConversationDevices {
        thread,
        participants,
        devices,
    }))
}

pub(super) async fn add_participant(pool: &PgPool, participant: Participant) -> StoreResult<bool> {
    let mut transaction = pool.begin().await?;
    lock(&mut transaction, participant.thread, 22).await?;
    let added = insert_participant(&mut transaction, &participant).await?;
    transaction.commit().await?;
    Ok(added)
}

pub(super) async fn remove_participant(
    pool: &PgPool,
    thread: Uuid,
    user: UserId,
    now_ms: i64,
) -> StoreResult<bool> {
    Ok(sqlx::query(
        "UPDATE thread_participants SET removed_at_ms = $1
         WHERE thread_id = $2 AND user_id = $3 AND removed_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(thread)
    .bind(user.as_uuid())
    .execute(pool)
    .await?
    .rows_affected()
        > 0)
}

pub(super) async fn user_threads(pool: &PgPool, user: UserId) -> StoreResult<Vec<ThreadSummary>> {
    let rows = sqlx::query(&format!(
        "SELECT {THREAD_COLUMNS},
             (SELECT count(*) FROM messages m
              WHERE m.thread_id = t.id AND m.seq > p.read_seq AND m.sender_user <> p.user_id)
                 AS unread
         FROM thread_participants p JOIN threads t ON t.id = p.thread_id
         WHERE p.user_id = $1 AND p.removed_at_ms IS NULL
         ORDER BY coalesce(t.last_message_at_ms, t.created_at_ms) DESC, t.id
         LIMIT $2"
    ))
    .bind(user.as_uuid())
    .bind(i64::from(limits::THREADS_LISTED_MAX))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let unread: i64 = row.try_get("unread")?;
            Ok(ThreadSummary {
                thread: thread(row)?,
                unread: u64::try_from(unread).unwrap_or(0),
            })
        })
        .collect()
}

pub(super) async fn insert_message(pool: &PgPool, message: NewMessage) -> StoreResult<SendOutcome> {
    message.check()?;
    let devices: Vec<Uuid> = message.keys.iter().map(|k| k.device).collect();
    let encs: Vec<&[u8]> = message.keys.iter().map(|k| k.enc.as_slice()).collect();
    let sealed: Vec<&[u8]> = message
        .keys
        .iter()
        .map(|k| k.sealed_key.as_slice())
        .collect();
    // One statement, so one round trip and one transaction (where BEGIN, a lock, the writes
    // and COMMIT took four):
    // - `locked`: one conversation's messages are stored one at a time, so their seqs commit
    //   in order: a device syncs from the last seq it read, and a smaller seq committed after
    //   a larger one was read would never reach it (nor could `last_message_seq` and the
    //   sender's read position go back). The message's row is made from the locked row, so
    //   its seq is taken only once the lock is held. NO KEY UPDATE, which the update takes
    //   anyway, still lets rows that refer to the conversation be inserted meanwhile.
    // - `refused`: the first key sealed to a device that is not an active device of a
    //   current participant; with one, nothing is written.
    // - then the message (nothing for an id taken), its keys, the conversation's last
    //   message and the sender's read position (what one writes, one has read).
    let row = sqlx::query(
        "WITH locked AS (
             SELECT id FROM threads WHERE id = $2 FOR NO KEY UPDATE),
         refused AS (
             SELECT k.device_id FROM unnest($8::uuid[]) WITH ORDINALITY AS k (device_id, position)
             WHERE NOT EXISTS (
                 SELECT 1 FROM devices d JOIN thread_participants p ON p.user_id = d.user_id
                 WHERE d.id = k.device_id AND d.removed_at_ms IS NULL
                   AND p.thread_id = $2 AND p.removed_at_ms IS NULL)
             ORDER BY k.position LIMIT 1),
         message AS (
             INSERT INTO messages (id, thread_id, sender_user, sender_device, sent_at_ms,
                 ciphertext, signature)
             SELECT $1, locked.id, $3, $4, $5, $6, $7 FROM locked
             WHERE NOT EXISTS (SELECT 1 FROM refused)
             ON CONFLICT (id) DO NOTHING
             RETURNING seq),
         keys AS (
             INSERT INTO message_keys (device_id, message_seq, enc, sealed_key)
             SELECT k.device_id, message.seq, k.enc, k.sealed_key
             FROM message,
                  unnest($8::uuid[], $9::bytea[], $10::bytea[]) AS k (device_id, enc, sealed_key)),
         thread AS (
             UPDATE threads SET last_message_seq = message.seq, last_message_at_ms = $5
             FROM message WHERE threads.id = $2),
         own_read AS (
             UPDATE thread_participants SET read_seq = message.seq, read_at_ms = $5
             FROM message WHERE thread_id = $2 AND user_id = $3)
         SELECT (SELECT seq FROM message) AS seq,
             EXISTS (SELECT 1 FROM messages WHERE id = $1) AS taken,
             (SELECT device_id FROM refused) AS refused,
             EXISTS (SELECT 1 FROM locked) AS conversation",
    )
    .bind(message.id)
    .bind(message.thread)
    .bind(message.sender_user.as_uuid())
    .bind(message.sender_device)
    .bind(message.sent_at_ms)
    .bind(&message.ciphertext)
    .bind(&message.signature)
    .bind(&devices)
    .bind(&encs)
    .bind(&sealed)
    .fetch_one(pool)
    .await?;
    if let Some(seq) = row.try_get::<Option<i64>, _>("seq")? {
        return Ok(SendOutcome::Sent { seq });
    }
    if row.try_get::<bool, _>("taken")? {
        return Ok(SendOutcome::DuplicateId);
    }
    if let Some(refused) = row.try_get::<Option<Uuid>, _>("refused")? {
        return Ok(SendOutcome::NotARecipient(refused));
    }
    if row.try_get::<bool, _>("conversation")? {
        // Nothing refused, nothing stored: the id was taken by a send this statement's
        // snapshot did not see yet (`ON CONFLICT` waited for it).
        return Ok(SendOutcome::DuplicateId);
    }
    Err(StoreError::Invalid(
        "a message to a conversation that does not exist",
    ))
}

pub(super) async fn thread_messages(
    pool: &PgPool,
    thread: Uuid,
    device: Uuid,
    after_seq: i64,
    limit: u32,
) -> StoreResult<Vec<StoredMessage>> {
    let limit = limit.min(limits::MESSAGES_PAGE_MAX);
    let rows = sqlx::query(
        "SELECT m.seq, m.id, m.thread_id, m.sender_user, m.sender_device, m.sent_at_ms,
             m.ciphertext, m.signature, k.enc, k.sealed_key
         FROM messages m
         LEFT JOIN message_keys k ON k.message_seq = m.seq AND k.device_id = $2
         WHERE m.thread_id = $1 AND m.seq > $3
         ORDER BY m.seq LIMIT $4",
    )
    .bind(thread)
    .bind(device)
    .bind(after_seq)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let enc: Option<Vec<u8>> = row.try_get("enc")?;
            let sealed_key: Option<Vec<u8>> = row.try_get("sealed_key")?;
            Ok(StoredMessage {
                seq: row.try_get("seq")?,
                id: row.try_get("id")?,
                thread: row.try_get("thread_id")?,
                sender_user: UserId::from_uuid(row.try_get("sender_user")?),
                sender_device: row.try_get("sender_device")?,
                sent_at_ms: row.try_get("sent_at_ms")?,
                ciphertext: row.try_get("ciphertext")?,
                signature: row.try_get("signature")?,
                key: enc.zip(sealed_key).map(|(enc, sealed_key)| MessageKey {
                    device,
                    enc,
                    sealed_key,
                }),
            })
        })
        .collect()
}

pub(super) async fn mark_read(
    pool: &PgPool,
    thread: Uuid,
    user: UserId,
    seq: i64,
    now_ms: i64,
) -> StoreResult<bool> {
    Ok(sqlx::query(
        "UPDATE thread_participants SET read_seq = $1, read_at_ms = $2
         WHERE thread_id = $3 AND user_id = $4 AND removed_at_ms IS NULL AND read_seq < $1
           AND $1 <= (SELECT last_message_seq FROM threads WHERE id = $3)",
    )
    .bind(seq)
    .bind(now_ms)
    .bind(thread)
    .bind(user.as_uuid())
    .execute(pool)
    .await?
    .rows_affected()
        > 0)
}

pub(super) async fn insert_message_attachment(
    pool: &PgPool,
    attachment: StoredMessageAttachment,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO message_attachments (id, thread_id, uploaded_by, size_bytes, chunks,
             created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(attachment.id)
    .bind(attachment.thread)
    .bind(attachment.uploaded_by.as_uuid())
    .bind(i64::try_from(attachment.size_bytes).unwrap_or(i64::MAX))
    .bind(i64::from(attachment.chunks))
    .bind(attachment.created_at_ms)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn message_attachment(
    pool: &PgPool,
    id: Uuid,
) -> StoreResult<Option<StoredMessageAttachment>> {
    let Some(row) = sqlx::query(
        "SELECT id, thread_id, uploaded_by, size_bytes, chunks, created_at_ms
         FROM message_attachments WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let size: i64 = row.try_get("size_bytes")?;
    let chunks: i64 = row.try_get("chunks")?;
    Ok(Some(StoredMessageAttachment {
        id: row.try_get("id")?,
        thread: row.try_get("thread_id")?,
        uploaded_by: UserId::from_uuid(row.try_get("uploaded_by")?),
        size_bytes: u64::try_from(size).unwrap_or(0),
        chunks: u32::try_from(chunks).unwrap_or(0),
        created_at_ms: row.try_get("created_at_ms")?,
    }))
}

pub(super) async fn delete_messages_before(
    pool: &PgPool,
    organisation: OrganisationId,
    before_ms: i64,
    limit: u32,
) -> StoreResult<MessagesDeleted> {
    let mut transaction = pool.begin().await?;
    let messages = sqlx::query(
        "DELETE FROM messages WHERE seq IN (
             SELECT m.seq FROM messages m JOIN threads t ON t.id = m.thread_id
             WHERE t.organisation_id = $1 AND m.sent_at_ms < $2 LIMIT $3)",
    )
    .bind(organisation.as_uuid())
    .bind(before_ms)
    .bind(i64::from(limit))
    .execute(&mut *transaction)
    .await?
    .rows_affected();
    let attachments = sqlx::query(
        "DELETE FROM message_attachments WHERE id IN (
             SELECT a.id FROM message_attachments a JOIN threads t ON t.id = a.thread_id
             WHERE t.organisation_id = $1 AND a.created_at_ms < $2 LIMIT $3)
         RETURNING id",
    )
    .bind(organisation.as_uuid())
    .bind(before_ms)
    .bind(i64::from(limit))
    .fetch_all(&mut *transaction)
    .await?
    .iter()
    .map(|row| row.try_get("id"))
    .collect::<Result<Vec<Uuid>, _>>()?;
    transaction.commit().await?;
    Ok(MessagesDeleted {
        messages,
        attachments,
    })
}
