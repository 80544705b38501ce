-- Sealed keys ordered by message, then device: a message's keys are written together at the
-- end of the table instead of one at each recipient device's place in it. Keyed by device
-- first, storing a message touched a page per recipient, all over the table; those pages,
-- written to the WAL at every commit, were most of what limited messages a second on the
-- embedded engine (profiled). A device reads its key of a message by (message, device),
-- which this key serves as well; it also serves the cascade from a deleted message, so the
-- separate index by message goes.
CREATE TABLE message_keys_new (
    message_seq INTEGER NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    device_id   BLOB NOT NULL,
    enc         BLOB NOT NULL,
    sealed_key  BLOB NOT NULL,
    PRIMARY KEY (message_seq, device_id)
) STRICT, WITHOUT ROWID;
INSERT INTO message_keys_new (message_seq, device_id, enc, sealed_key)
    SELECT message_seq, device_id, enc, sealed_key FROM message_keys;
DROP TABLE message_keys;
ALTER TABLE message_keys_new RENAME TO message_keys;
