-- How far each SIEM export has got: the `seq` of the last audit entry written and flushed
-- to that collector. The follower resumes after it, so a restart resends at most the last
-- unconfirmed batch and never skips an entry. One row per collector (`name`), so pointing
-- Haven at a new collector sends it the whole log. Only ever moved forward.
CREATE TABLE siem_cursors (
    name          TEXT PRIMARY KEY,
    after_seq     INTEGER NOT NULL CHECK (after_seq >= 0),
    updated_at_ms INTEGER NOT NULL
) STRICT;
