-- Workload delivery. A team's revision moves with every secret write in the
-- same transaction; long-polling workloads compare it with what they hold.
ALTER TABLE teams ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
-- WORKSPACE_READ_SECRETS keys narrowed to some secrets: a JSON array of
-- canonical names; NULL means the whole team.
ALTER TABLE api_keys ADD COLUMN secret_names TEXT;
-- Keys other than the master key, stored wrapped by it (the fingerprint
-- key). Re-wrapped, never regenerated, when the master key rotates.
CREATE TABLE wrapped_keys (
    purpose     TEXT PRIMARY KEY,
    kek_id      TEXT NOT NULL,
    wrapped     BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);
