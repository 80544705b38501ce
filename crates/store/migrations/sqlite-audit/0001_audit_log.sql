-- The audit log's own database file (`<name>-audit.db` beside the main one). Every access
-- appends here, so keeping it apart means those commits never touch the main file: readers
-- of records keep their page cache across them, and the two files have their own writers.
-- These are the tables the main file held up to its migration 0012, with the columns of
-- `audit_events` in the order of the canonical entry encoding (haven.audit.entry.v2).

CREATE TABLE audit_events (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms          INTEGER NOT NULL,
    actor          TEXT,
    role           TEXT,
    organisation   TEXT,
    session_id     TEXT,
    client_app     TEXT,
    action         TEXT NOT NULL,
    patient_id     BLOB,
    resource_type  TEXT,
    resource_id    TEXT,
    outcome        TEXT NOT NULL,
    reason         TEXT NOT NULL,
    purpose_of_use TEXT,
    request_id     TEXT,
    source_ip      TEXT,
    user_agent     TEXT
) STRICT;
CREATE INDEX audit_events_by_patient ON audit_events (patient_id, seq);

-- The audit trail is append-only: the database itself refuses to change or remove entries.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

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

-- The Merkle tree, stored so that inclusion and consistency proofs are answered from
-- O(log² n) stored hashes instead of re-reading the log. The checkpointer writes these as
-- the tree grows, before it signs a checkpoint over them.
--
-- Leaves: the position of each entry in the tree (from 0), its `seq` and its leaf hash as
-- computed when it was sealed into the tree. `haven audit verify` compares them with the
-- entries to name the single entry that changed.
CREATE TABLE audit_tree_leaves (
    idx  INTEGER PRIMARY KEY,
    seq  INTEGER NOT NULL UNIQUE,
    hash BLOB NOT NULL
) STRICT;

-- Perfect subtrees above the leaves: the 2^level leaves from position idx << level.
CREATE TABLE audit_tree_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER audit_tree_leaves_no_update BEFORE UPDATE ON audit_tree_leaves
BEGIN
    SELECT RAISE(ABORT, 'audit_tree_leaves is append-only');
END;
CREATE TRIGGER audit_tree_leaves_no_delete BEFORE DELETE ON audit_tree_leaves
BEGIN
    SELECT RAISE(ABORT, 'audit_tree_leaves is append-only');
END;
CREATE TRIGGER audit_tree_nodes_no_update BEFORE UPDATE ON audit_tree_nodes
BEGIN
    SELECT RAISE(ABORT, 'audit_tree_nodes is append-only');
END;
CREATE TRIGGER audit_tree_nodes_no_delete BEFORE DELETE ON audit_tree_nodes
BEGIN
    SELECT RAISE(ABORT, 'audit_tree_nodes is append-only');
END;

-- How far each SIEM export has got: the `seq` of the last audit entry written and flushed
-- to that collector. The follower resumes after it, so a restart resends at most the last
-- unconfirmed batch and never skips an entry. One row per collector (`name`), so pointing
-- Haven at a new collector sends it the whole log. Only ever moved forward.
CREATE TABLE siem_cursors (
    name          TEXT PRIMARY KEY,
    after_seq     INTEGER NOT NULL CHECK (after_seq >= 0),
    updated_at_ms INTEGER NOT NULL
) STRICT;
