-- Laboratory results released to the patient by organisation policy: at once, or only
-- after a clinician has reviewed them. A result written under "after review" is held
-- (`fhir_current.held`) until a clinician releases it; patients and their proxies do not
-- see a held result.
ALTER TABLE organisations ADD COLUMN result_release TEXT NOT NULL DEFAULT 'immediate';
ALTER TABLE fhir_current ADD COLUMN held BIGINT NOT NULL DEFAULT 0;
