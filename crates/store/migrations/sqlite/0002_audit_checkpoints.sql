-- Signed checkpoints of the audit log's Merkle tree: each commits to the first `size`
-- entries (in `seq` order) with the tree's root hash, signed as a C2SP note.
CREATE TABLE audit_checkpoints (
    size          INTEGER PRIMARY KEY,
    root          BLOB NOT NULL,
    note          TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;
