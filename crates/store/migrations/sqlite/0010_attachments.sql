-- Attachments (FHIR Binary): files of a patient's chart (imaging, PDFs, recordings), sealed
-- in chunks under the patient's key. An attachment's row is written only once all its
-- chunks are durable, so a visible attachment is always whole. The chunks live here by
-- default; a deployment may keep them in a blob store instead.

CREATE TABLE attachments (
    id            BLOB PRIMARY KEY,
    patient_id    BLOB NOT NULL REFERENCES patients (id),
    content_type  TEXT NOT NULL,
    size_bytes    INTEGER NOT NULL,
    chunks        INTEGER NOT NULL,
    created_by    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX attachments_by_patient ON attachments (patient_id, created_at_ms);

CREATE TABLE attachment_chunks (
    attachment_id BLOB NOT NULL,
    idx           INTEGER NOT NULL,
    sealed        BLOB NOT NULL,
    PRIMARY KEY (attachment_id, idx)
) STRICT, WITHOUT ROWID;
