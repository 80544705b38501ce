-- Sealed keys ordered by message, then device: a message's keys go to the right-hand edge of
-- the key's index together instead of one at each recipient device's place in it (a page
-- per recipient, all over the index, dirtied by every message). A device reads its key of a
-- message by (message, device), which this key serves as well; it also serves the cascade
-- from a deleted message, so the separate index by message goes.
ALTER TABLE message_keys DROP CONSTRAINT message_keys_pkey;
ALTER TABLE message_keys ADD PRIMARY KEY (message_seq, device_id);
DROP INDEX message_keys_by_message;
