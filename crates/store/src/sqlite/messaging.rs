//! End-to-end messaging on the embedded engine: writes as jobs for the group-commit writer
//! ([`MessagingOp`]), reads inline. A message and its sealed keys are one write, stored
//! only if every device it is sealed to is a current participant's; the writer stores the
//! messages of a group commit together ([`insert_messages`]).

use std::collections::{BTreeSet, HashMap, HashSet};

use haven_domain::{OrganisationId, PatientId, UserId};
use rusqlite::{OptionalExtension, Row, params, params_from_iter};
use sqlx::{QueryBuilder, Row as _, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::readers::{Readers, uuid_from};
use super::{WriteOutcome, unexpected};
use crate::messaging::{
    ConversationDevices, MessageKey, MessagesDeleted, NewMessage, Participant, StoredDevice,
    StoredMessage, StoredMessageAttachment, StoredThread, ThreadSummary,
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
    /// The message this write stores, if it stores one: the writer stores a batch's
    /// messages together ([`insert_messages`]).
    pub(super) fn new_message(&self) -> Option<&NewMessage> {
        match self {
            MessagingOp::InsertMessage(message) => Some(message),
            _ => None,
        }
    }

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
        MessagingOp::InsertMessage(message) => {
            match insert_messages(connection, &[message], Framing::Savepoint).await? {
                StoredTogether::Answered(mut outcomes) => {
                    outcomes.pop().unwrap_or(Err(StoreError::Closed))?
                }
                StoredTogether::RolledBack(error) => return Err(error),
            }
        }
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

/// Bound parameters of one command of [`insert_messages`]: below SQLite's 32,766.
const COMMAND_PARAMETERS_MAX: usize = 30_000;
/// The savepoint around the writes of [`insert_messages`], and how they are undone.
const SAVEPOINT: &str = "haven_messages";
const ROLLBACK_SAVEPOINT: &str = "ROLLBACK TO haven_messages; RELEASE haven_messages";

fn corrupt_seq(pair: &str) -> StoreError {
    StoreError::Corrupt {
        table: "messages",
        detail: format!("a stored message's id and seq read back as {pair:?}"),
    }
}

/// How [`insert_messages`] frames what it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// Inside the caller's transaction, in a savepoint of its own.
    Savepoint,
    /// As a transaction of its own, for a group commit made only of messages: `BEGIN`
    /// rides on the first read and `COMMIT` on the last write, so the whole commit is two
    /// round trips to sqlx's worker thread.
    Transaction,
}

/// What storing a group of messages came to.
#[derive(Debug)]
pub(super) enum StoredTogether {
    /// One outcome per message, in order, as storing each alone would give.
    Answered(Vec<StoreResult<WriteOutcome>>),
    /// A statement failed; everything the call wrote was rolled back (store them one by one).
    /// With [`Framing::Transaction`], nothing was committed.
    RolledBack(StoreError),
}

/// Stores messages together: usually two commands to sqlx's worker thread for the whole
/// group (a read, then every write as one multi-statement command, inside its own
/// savepoint), where storing them one by one took eight statements each. Every command is
/// a round trip between the writer task and that thread, and those hand-offs, not SQLite,
/// limited how many messages a second the writer took (profiled).
///
/// Each message gets: `Count(seq)` when stored; `AlreadyExists` for an id taken before or by
/// a message stored earlier in the group; `NotARecipient` when one of its keys is sealed to
/// a device that is not an active device of a current participant. The recipients are read
/// here, in the writer's transaction, so no removal can slip between the check and the
/// insert. A message refused leaves nothing. An `Err` means what was written could not be
/// rolled back either, and the caller's transaction must not be committed.
pub(super) async fn insert_messages(
    connection: &mut SqliteConnection,
    messages: &[&NewMessage],
    framing: Framing,
) -> StoreResult<StoredTogether> {
    // Every read before any write: what the database holds is what it held before the call.
    let mut refused: HashMap<usize, (usize, Uuid)> = HashMap::new();
    let mut taken: HashSet<Uuid> = HashSet::new();
    let mut rest = messages;
    while !rest.is_empty() {
        let mut parameters = 0;
        let count = rest
            .iter()
            .take_while(|message| {
                parameters += 1 + 4 * message.keys.len();
                parameters <= COMMAND_PARAMETERS_MAX
            })
            .count()
            .max(1);
        let (group, later) = rest.split_at(count);
        let first_index = messages.len() - rest.len();
        let begin = framing == Framing::Transaction && first_index == 0;
        rest = later;
        let read = refused_keys_and_taken_ids(
            connection,
            group,
            begin,
            first_index,
            &mut refused,
            &mut taken,
        )
        .await;
        if let Err(error) = read {
            if framing == Framing::Transaction {
                roll_back(connection, framing).await?;
            }
            return Ok(StoredTogether::RolledBack(error));
        }
    }

    let mut outcomes: Vec<StoreResult<WriteOutcome>> = Vec::with_capacity(messages.len());
    let mut accepted: Vec<&NewMessage> = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        if !taken.insert(message.id) {
            outcomes.push(Err(StoreError::AlreadyExists));
        } else if let Some((_, stranger)) = refused.get(&index) {
            // Refused: its id stays free, as if it had never been sent.
            taken.remove(&message.id);
            outcomes.push(Err(StoreError::NotARecipient(*stranger)));
        } else {
            // A placeholder until the insert says its seq.
            outcomes.push(Ok(WriteOutcome::Done));
            accepted.push(message);
        }
    }
    if accepted.is_empty() {
        if framing == Framing::Transaction {
            // Nothing was written: this only ends the transaction.
            if let Err(error) = sqlx::query("COMMIT").execute(&mut *connection).await {
                roll_back(connection, framing).await?;
                return Ok(StoredTogether::RolledBack(error.into()));
            }
        }
        return Ok(StoredTogether::Answered(outcomes));
    }

    // The writes: as few commands as the parameter limit allows (one, usually), the first
    // opening the savepoint and the last releasing it, or the last committing.
    let mut commands = Vec::new();
    let mut rest = accepted.as_slice();
    while !rest.is_empty() {
        let mut parameters = 0;
        let count = rest
            .iter()
            .take_while(|message| {
                // A message, its keys, its conversation and its sender's read position.
                parameters += 7 + 4 * message.keys.len() + 1 + 2;
                parameters <= COMMAND_PARAMETERS_MAX
            })
            .count()
            .max(1);
        let (command, later) = rest.split_at(count);
        commands.push(command);
        rest = later;
    }
    let last = commands.len() - 1;
    let mut seqs: HashMap<Uuid, i64> = HashMap::with_capacity(accepted.len());
    for (index, command) in commands.into_iter().enumerate() {
        let rows = write_messages(command, framing, index == 0, index == last)
            .build()
            .persistent(false)
            .fetch_all(&mut *connection)
            .await;
        match rows {
            Ok(rows) => {
                for row in rows {
                    let listed: Option<String> = row.try_get(0)?;
                    for pair in listed.unwrap_or_default().split(',') {
                        let Some((id, seq)) = pair.split_once(':') else {
                            continue;
                        };
                        seqs.insert(
                            Uuid::try_parse(id).map_err(|_| corrupt_seq(pair))?,
                            seq.parse().map_err(|_| corrupt_seq(pair))?,
                        );
                    }
                }
            }
            Err(error) => {
                roll_back(connection, framing).await?;
                return Ok(StoredTogether::RolledBack(error.into()));
            }
        }
    }

    for (message, outcome) in messages.iter().zip(outcomes.iter_mut()) {
        if outcome.is_ok() {
            let seq = seqs.get(&message.id).copied().ok_or_else(|| {
                StoreError::Database(sqlx::Error::Protocol(
                    "a message inserted without a seq".into(),
                ))
            })?;
            *outcome = Ok(WriteOutcome::Count(u64::try_from(seq).unwrap_or(0)));
        }
    }
    Ok(StoredTogether::Answered(outcomes))
}

/// Undoes what [`insert_messages`] wrote. A transaction SQLite already ended (a failed
/// `COMMIT` may do that) is fine; any other failure is returned.
async fn roll_back(connection: &mut SqliteConnection, framing: Framing) -> StoreResult<()> {
    match framing {
        Framing::Savepoint => {
            sqlx::query(ROLLBACK_SAVEPOINT)
                .persistent(false)
                .execute(&mut *connection)
                .await?;
        }
        Framing::Transaction => {
            if let Err(error) = sqlx::query("ROLLBACK").execute(&mut *connection).await {
                let ended = matches!(&error, sqlx::Error::Database(e)
                    if e.message().contains("no transaction is active"));
                if !ended {
                    return Err(error.into());
                }
            }
        }
    }
    Ok(())
}

/// For each message, the first of its keys sealed to a device that is not an active device
/// of a current participant of its conversation (by message index), and which of their ids
/// are taken: one statement, which answers nothing when all is well (every row is a hand-off
/// from sqlx's worker thread).
async fn refused_keys_and_taken_ids(
    connection: &mut SqliteConnection,
    messages: &[&NewMessage],
    begin: bool,
    first_index: usize,
    refused: &mut HashMap<usize, (usize, Uuid)>,
    taken: &mut HashSet<Uuid>,
) -> StoreResult<()> {
    let keys: Vec<(i64, i64, Uuid, Uuid)> = messages
        .iter()
        .enumerate()
        .flat_map(|(index, message)| {
            message
                .keys
                .iter()
                .enumerate()
                .map(move |(key_index, key)| {
                    (
                        i64::try_from(first_index + index).unwrap_or(i64::MAX),
                        i64::try_from(key_index).unwrap_or(i64::MAX),
                        key.device,
                        message.thread,
                    )
                })
        })
        .collect();
    // The writer is the file's only writer: IMMEDIATE only makes that explicit.
    let mut sql = QueryBuilder::<Sqlite>::new(if begin { "BEGIN IMMEDIATE; " } else { "" });
    if !keys.is_empty() {
        sql.push("SELECT 0, k.column1, k.column2, k.column3 FROM (");
        sql.push_values(&keys, |mut row, (index, key_index, device, thread)| {
            row.push_bind(*index)
                .push_bind(*key_index)
                .push_bind(*device)
                .push_bind(*thread);
        });
        sql.push(
            ") AS k WHERE NOT EXISTS (
                 SELECT 1 FROM devices d JOIN thread_participants p ON p.user_id = d.user_id
                 WHERE d.id = k.column3 AND d.removed_at_ms IS NULL
                   AND p.thread_id = k.column4 AND p.removed_at_ms IS NULL)
             UNION ALL ",
        );
    }
    sql.push("SELECT 1, 0, 0, id FROM messages WHERE id IN (");
    let mut list = sql.separated(", ");
    for message in messages {
        list.push_bind(message.id);
    }
    sql.push(")");
    for row in sql
        .build()
        .persistent(false)
        .fetch_all(&mut *connection)
        .await?
    {
        if row.try_get::<i64, _>(0)? == 0 {
            let index = usize::try_from(row.try_get::<i64, _>(1)?).unwrap_or(usize::MAX);
            let key_index = usize::try_from(row.try_get::<i64, _>(2)?).unwrap_or(usize::MAX);
            let device: Uuid = row.try_get(3)?;
            let first = refused.entry(index).or_insert((key_index, device));
            if key_index < first.0 {
                *first = (key_index, device);
            }
        } else {
            taken.insert(row.try_get(3)?);
        }
    }
    Ok(())
}

/// One command storing `messages` (at least one): the messages (answering with one row
/// listing each id with its seq), their keys, each conversation's newest message and each sender's read position
/// (what one writes, one has read), both taken from the stored messages by seq; opening
/// and releasing the savepoint as asked.
fn write_messages<'a>(
    messages: &[&'a NewMessage],
    framing: Framing,
    first: bool,
    last: bool,
) -> QueryBuilder<'a, Sqlite> {
    let mut sql = QueryBuilder::<Sqlite>::new(if first && framing == Framing::Savepoint {
        format!("SAVEPOINT {SAVEPOINT}; ")
    } else {
        String::new()
    });
    sql.push(
        "INSERT INTO messages (id, thread_id, sender_user, sender_device, sent_at_ms,
             ciphertext, signature) ",
    );
    sql.push_values(messages, |mut row, message| {
        row.push_bind(message.id)
            .push_bind(message.thread)
            .push_bind(message.sender_user.as_uuid())
            .push_bind(message.sender_device)
            .push_bind(message.sent_at_ms)
            .push_bind(message.ciphertext.as_slice())
            .push_bind(message.signature.as_slice());
    });
    sql.push(";");
    let keys: Vec<(Uuid, &MessageKey)> = messages
        .iter()
        .flat_map(|message| message.keys.iter().map(|key| (message.id, key)))
        .collect();
    if !keys.is_empty() {
        sql.push(
            " INSERT INTO message_keys (device_id, message_seq, enc, sealed_key)
             SELECT k.column1, m.seq, k.column3, k.column4 FROM (",
        );
        sql.push_values(&keys, |mut row, (message, key)| {
            row.push_bind(key.device)
                .push_bind(*message)
                .push_bind(key.enc.as_slice())
                .push_bind(key.sealed_key.as_slice());
        });
        sql.push(") AS k JOIN messages m ON m.id = k.column2;");
    }
    let threads: BTreeSet<Uuid> = messages.iter().map(|m| m.thread).collect();
    sql.push(
        " UPDATE threads SET (last_message_seq, last_message_at_ms) = (
             SELECT m.seq, m.sent_at_ms FROM messages m WHERE m.thread_id = threads.id
             ORDER BY m.seq DESC LIMIT 1)
         WHERE id IN (",
    );
    let mut list = sql.separated(", ");
    for thread in &threads {
        list.push_bind(*thread);
    }
    sql.push(");");
    let senders: BTreeSet<(Uuid, Uuid)> = messages
        .iter()
        .map(|m| (m.thread, m.sender_user.as_uuid()))
        .collect();
    sql.push(
        " UPDATE thread_participants SET (read_seq, read_at_ms) = (
             SELECT m.seq, m.sent_at_ms FROM messages m
             WHERE m.thread_id = thread_participants.thread_id
               AND m.sender_user = thread_participants.user_id
             ORDER BY m.seq DESC LIMIT 1)
         WHERE (thread_id, user_id) IN (",
    );
    sql.push_values(&senders, |mut row, (thread, user)| {
        row.push_bind(*thread).push_bind(*user);
    });
    sql.push(")");
    // Each message's seq, in one row rather than one row per message.
    sql.push("; SELECT group_concat(hex(id) || ':' || seq) FROM messages WHERE id IN (");
    let mut list = sql.separated(", ");
    for message in messages {
        list.push_bind(message.id);
    }
    sql.push(")");
    if last {
        sql.push(match framing {
            Framing::Savepoint => format!("; RELEASE {SAVEPOINT}"),
            Framing::Transaction => "; COMMIT".to_owned(),
        });
    }
    sql
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

const PARTICIPANTS_OF_THREAD: &str =
    "SELECT thread_id, user_id, added_by, added_at_ms, removed_at_ms, read_seq, read_at_ms
     FROM thread_participants WHERE thread_id = ?1 ORDER BY added_at_ms, user_id";

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
            c.prepare_cached(PARTICIPANTS_OF_THREAD)?
                .query_map(params![bytes(id)], participant)?
                .collect()
        })
    }

    pub(super) fn conversation_devices(
        &self,
        id: Uuid,
    ) -> StoreResult<Option<ConversationDevices>> {
        self.with(|c| {
            // One read transaction: the participants and devices of the same moment.
            let snapshot = c.unchecked_transaction()?;
            let sql = format!("SELECT {THREAD_COLUMNS} FROM threads t WHERE t.id = ?1");
            let Some(thread) = snapshot
                .prepare_cached(&sql)?
                .query_row(params![bytes(id)], thread)
                .optional()?
            else {
                return Ok(None);
            };
            let participants = snapshot
                .prepare_cached(PARTICIPANTS_OF_THREAD)?
                .query_map(params![bytes(id)], participant)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let devices = snapshot
                .prepare_cached(
                    "SELECT d.id, d.user_id, d.label, d.hpke_public_key, d.signing_public_key,
                         d.self_signature, d.fingerprint, d.added_at_ms, d.removed_at_ms
                     FROM thread_participants p JOIN devices d ON d.user_id = p.user_id
                     WHERE p.thread_id = ?1 AND p.removed_at_ms IS NULL
                       AND d.removed_at_ms IS NULL
                     ORDER BY d.user_id, d.added_at_ms, d.id",
                )?
                .query_map(params![bytes(id)], device)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(ConversationDevices {
                thread,
                participants,
                devices,
            }))
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
