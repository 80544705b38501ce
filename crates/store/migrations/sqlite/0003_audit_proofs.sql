-- The audit log's Merkle tree, stored so that inclusion and consistency proofs are answered
-- from O(log² n) stored hashes instead of re-reading the log. The checkpointer writes these
-- as the tree grows, before it signs a checkpoint over them.
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

-- A patient-role token stands for one patient: the record whose access log it may read.
ALTER TABLE api_tokens ADD COLUMN patient_id BLOB;

-- Who and why, beyond actor and role: the actor's organisation, the sign-in session, the
-- third-party app acting for the user, and the purpose of use (HL7 v3 PurposeOfUse code).
-- Part of each entry's canonical encoding (haven.audit.entry.v2).
ALTER TABLE audit_events ADD COLUMN organisation TEXT;
ALTER TABLE audit_events ADD COLUMN session_id TEXT;
ALTER TABLE audit_events ADD COLUMN client_app TEXT;
ALTER TABLE audit_events ADD COLUMN purpose_of_use TEXT;
