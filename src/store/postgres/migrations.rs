//! PostgreSQL schema, embedded in the binary. Append only: never edit a
//! shipped step. Portable on purpose: no extensions, no advisory locks, only
//! types and statements CockroachDB and YugabyteDB also accept.

pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);
CREATE TABLE teams (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    name        TEXT NOT NULL,
    is_default  BOOLEAN NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (org_id, name)
);
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    email       TEXT,
    name        TEXT,
    role        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_org_email ON users (org_id, email);
CREATE TABLE team_members (
    team_id     TEXT NOT NULL REFERENCES teams(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    role        TEXT NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id);
CREATE TABLE api_keys (
    prefix       TEXT PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES organizations(id),
    key_type     TEXT NOT NULL,
    name         TEXT,
    secret_hash  BYTEA NOT NULL,
    user_id      TEXT REFERENCES users(id),
    team_id      TEXT REFERENCES teams(id),
    model_ids    TEXT,
    created_by   TEXT,
    -- Key names are unique among live keys of one scope (user:<id>,
    -- team:<id> or org:<id>); NULL names never collide.
    name_scope   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX api_keys_org ON api_keys (org_id);
CREATE UNIQUE INDEX api_keys_scope_name ON api_keys (name_scope, name);
CREATE TABLE secrets (
    id              TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL REFERENCES organizations(id),
    team_id         TEXT NOT NULL REFERENCES teams(id),
    canonical_name  TEXT NOT NULL,
    name            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    version         BIGINT NOT NULL,
    -- The current version's value, sealed (see crypto/envelope.rs). Only the
    -- current version is kept: rotating a leaked credential removes the old
    -- ciphertext. One row per secret also keeps a write to one page.
    kek_id          TEXT NOT NULL,
    ciphertext      BYTEA NOT NULL,
    UNIQUE (team_id, canonical_name)
);
CREATE TABLE keks (
    kek_id       TEXT PRIMARY KEY,
    check_value  BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    -- 1 for the key a new store is first sealed under. Unique, so nodes that
    -- start together on an empty database cannot each record a different key.
    primary_slot BIGINT UNIQUE
);
"#,
    ),
    (
        2,
        r#"
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
"#,
    ),
    (
        3,
        r#"
-- Quotas. Each team counts its secrets, moved in the same transaction as the
-- insert or delete, so the quota check is one conditional update.
ALTER TABLE teams ADD COLUMN secret_count BIGINT NOT NULL DEFAULT 0;
UPDATE teams SET secret_count = (SELECT COUNT(*) FROM secrets WHERE secrets.team_id = teams.id);
-- An organization's listing is one range scan, page after page.
CREATE INDEX secrets_org ON secrets (org_id, team_id, canonical_name);
"#,
    ),
    (
        4,
        r#"
-- Emails are compared case-insensitively: a user's identity is its email key
-- (NFC, lowercase; computed by Tessera, see domain/names.rs), unique per
-- organization. `email` keeps the spelling given, for display. Existing rows
-- get lower(email); should two of them differ only in case, the later one's
-- key is suffixed with its id so this step cannot fail (both stay, no new
-- duplicate can be made).
ALTER TABLE users ADD COLUMN email_key TEXT;
UPDATE users AS u SET email_key = lower(u.email) || CASE WHEN EXISTS (
    SELECT 1 FROM users u2
    WHERE u2.org_id = u.org_id AND lower(u2.email) = lower(u.email) AND u2.id < u.id
) THEN '#' || u.id ELSE '' END
WHERE u.email IS NOT NULL;
DROP INDEX users_org_email;
CREATE UNIQUE INDEX users_org_email_key ON users (org_id, email_key);
"#,
    ),
];
