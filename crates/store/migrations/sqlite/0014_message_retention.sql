-- How long an organisation keeps secure messages (their ciphertext and sealed keys) and
-- message attachments; 0 keeps them until the organisation sets a period. What a clinician
-- filed to the chart is part of the record and follows the record's own retention.
ALTER TABLE organisations ADD COLUMN message_retention_days INTEGER NOT NULL DEFAULT 0;
