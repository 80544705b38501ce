-- End-to-end messaging: device keys, conversations, sealed messages and their keys.
--
-- Nothing here is readable by Haven: a message body and an attachment are ciphertext sealed
-- on the sender's device under a random content key, and the content key is stored only
-- sealed (HPKE) to each recipient device. What the server keeps is what it needs to relay:
-- who takes part, which device sent what to whom, and when.

-- A person's devices. The public keys are published: adding or removing one is also an
-- entry in the audit log, whose inclusion proof lets correspondents check the key.
CREATE TABLE devices (
    id                 UUID PRIMARY KEY,
    user_id            UUID NOT NULL REFERENCES users (id),
    label              TEXT NOT NULL,
    hpke_public_key    BYTEA NOT NULL,
    signing_public_key BYTEA NOT NULL,
    self_signature     BYTEA NOT NULL,
    fingerprint        TEXT NOT NULL UNIQUE,
    added_at_ms        BIGINT NOT NULL,
    removed_at_ms      BIGINT
);
CREATE INDEX devices_by_user ON devices (user_id, added_at_ms);

-- A conversation: about one patient (the patient and their care team), or within an
-- organisation's clinical staff (patient_id NULL).
CREATE TABLE threads (
    id                 UUID PRIMARY KEY,
    organisation_id    UUID NOT NULL REFERENCES organisations (id),
    patient_id         UUID REFERENCES patients (id),
    created_by         UUID NOT NULL,
    created_at_ms      BIGINT NOT NULL,
    last_message_seq   BIGINT NOT NULL DEFAULT 0,
    last_message_at_ms BIGINT
);

-- Who takes part. A participant removed stays listed (with when) so the thread's history
-- says who could read what; only current participants' devices receive new messages.
CREATE TABLE thread_participants (
    thread_id     UUID NOT NULL REFERENCES threads (id),
    user_id       UUID NOT NULL REFERENCES users (id),
    added_by      TEXT NOT NULL,
    added_at_ms   BIGINT NOT NULL,
    removed_at_ms BIGINT,
    -- Read receipts: the newest message this person has read.
    read_seq      BIGINT NOT NULL DEFAULT 0,
    read_at_ms    BIGINT,
    PRIMARY KEY (thread_id, user_id)
);
CREATE INDEX thread_participants_by_user ON thread_participants (user_id, thread_id);

-- Messages: `seq` orders them (and is the cursor clients sync from); `id` is chosen by the
-- sending device, because it is bound into the ciphertext and the sealed keys.
CREATE TABLE messages (
    seq            BIGSERIAL PRIMARY KEY,
    id             UUID NOT NULL UNIQUE,
    thread_id      UUID NOT NULL REFERENCES threads (id),
    sender_user    UUID NOT NULL,
    sender_device  UUID NOT NULL,
    sent_at_ms     BIGINT NOT NULL,
    ciphertext     BYTEA NOT NULL,
    signature      BYTEA NOT NULL
);
CREATE INDEX messages_by_thread ON messages (thread_id, seq);
CREATE INDEX messages_by_time ON messages (sent_at_ms);

-- The content key of each message, sealed to each recipient device.
CREATE TABLE message_keys (
    device_id   UUID NOT NULL,
    message_seq BIGINT NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    enc         BYTEA NOT NULL,
    sealed_key  BYTEA NOT NULL,
    PRIMARY KEY (device_id, message_seq)
);
CREATE INDEX message_keys_by_message ON message_keys (message_seq);

-- Sealed files sent in a conversation; their chunks live in the blob store, like the
-- chart's attachments, and the file key travels inside a sealed message.
CREATE TABLE message_attachments (
    id            UUID PRIMARY KEY,
    thread_id     UUID NOT NULL REFERENCES threads (id),
    uploaded_by   UUID NOT NULL,
    size_bytes    BIGINT NOT NULL,
    chunks        BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX message_attachments_by_time ON message_attachments (created_at_ms);
