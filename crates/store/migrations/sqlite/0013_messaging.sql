-- End-to-end messaging: device keys, conversations, sealed messages and their keys.
--
-- Nothing here is readable by Haven: a message body and an attachment are ciphertext sealed
-- on the sender's device under a random content key, and the content key is stored only
-- sealed (HPKE) to each recipient device. What the server keeps is what it needs to relay:
-- who takes part, which device sent what to whom, and when.

-- A person's devices. The public keys are published: adding or removing one is also an
-- entry in the audit log, whose inclusion proof lets correspondents check the key.
CREATE TABLE devices (
    id                 BLOB PRIMARY KEY,
    user_id            BLOB NOT NULL REFERENCES users (id),
    label              TEXT NOT NULL,
    hpke_public_key    BLOB NOT NULL,
    signing_public_key BLOB NOT NULL,
    self_signature     BLOB NOT NULL,
    fingerprint        TEXT NOT NULL UNIQUE,
    added_at_ms        INTEGER NOT NULL,
    removed_at_ms      INTEGER
) STRICT;
CREATE INDEX devices_by_user ON devices (user_id, added_at_ms);

-- A conversation: about one patient (the patient and their care team), or within an
-- organisation's clinical staff (patient_id NULL).
CREATE TABLE threads (
    id                 BLOB PRIMARY KEY,
    organisation_id    BLOB NOT NULL REFERENCES organisations (id),
    patient_id         BLOB REFERENCES patients (id),
    created_by         BLOB NOT NULL,
    created_at_ms      INTEGER NOT NULL,
    last_message_seq   INTEGER NOT NULL DEFAULT 0,
    last_message_at_ms INTEGER
) STRICT;

-- Who takes part. A participant removed stays listed (with when) so the thread's history
-- says who could read what; only current participants' devices receive new messages.
CREATE TABLE thread_participants (
    thread_id     BLOB NOT NULL REFERENCES threads (id),
    user_id       BLOB NOT NULL REFERENCES users (id),
    added_by      TEXT NOT NULL,
    added_at_ms   INTEGER NOT NULL,
    removed_at_ms INTEGER,
    -- Read receipts: the newest message this person has read.
    read_seq      INTEGER NOT NULL DEFAULT 0,
    read_at_ms    INTEGER,
    PRIMARY KEY (thread_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX thread_participants_by_user ON thread_participants (user_id, thread_id);

-- Messages: `seq` orders them (and is the cursor clients sync from); `id` is chosen by the
-- sending device, because it is bound into the ciphertext and the sealed keys.
CREATE TABLE messages (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             BLOB NOT NULL UNIQUE,
    thread_id      BLOB NOT NULL REFERENCES threads (id),
    sender_user    BLOB NOT NULL,
    sender_device  BLOB NOT NULL,
    sent_at_ms     INTEGER NOT NULL,
    ciphertext     BLOB NOT NULL,
    signature      BLOB NOT NULL
) STRICT;
CREATE INDEX messages_by_thread ON messages (thread_id, seq);
CREATE INDEX messages_by_time ON messages (sent_at_ms);

-- The content key of each message, sealed to each recipient device.
CREATE TABLE message_keys (
    device_id   BLOB NOT NULL,
    message_seq INTEGER NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    enc         BLOB NOT NULL,
    sealed_key  BLOB NOT NULL,
    PRIMARY KEY (device_id, message_seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX message_keys_by_message ON message_keys (message_seq);

-- Sealed files sent in a conversation; their chunks live in the blob store, like the
-- chart's attachments, and the file key travels inside a sealed message.
CREATE TABLE message_attachments (
    id            BLOB PRIMARY KEY,
    thread_id     BLOB NOT NULL REFERENCES threads (id),
    uploaded_by   BLOB NOT NULL,
    size_bytes    INTEGER NOT NULL,
    chunks        INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX message_attachments_by_time ON message_attachments (created_at_ms);
