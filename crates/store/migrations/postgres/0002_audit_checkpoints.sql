-- Signed checkpoints of the audit log's Merkle tree: each commits to the first `size`
-- entries (in `seq` order) with the tree's root hash, signed as a C2SP note.
CREATE TABLE audit_checkpoints (
    size          BIGINT PRIMARY KEY,
    root          BYTEA NOT NULL,
    note          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TRIGGER audit_checkpoints_no_change BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
