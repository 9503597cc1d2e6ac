CREATE TABLE organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);
CREATE TABLE teams (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    name        TEXT NOT NULL,
    is_default  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (org_id, name)
);
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    email       TEXT,
    name        TEXT,
    role        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
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
    secret_hash  BLOB NOT NULL,
    user_id      TEXT REFERENCES users(id),
    team_id      TEXT REFERENCES teams(id),
    model_ids    TEXT,
    created_by   TEXT,
    -- Key names are unique among live keys of one scope (user:<id>,
    -- team:<id> or org:<id>); NULL names never collide.
    name_scope   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);
CREATE INDEX api_keys_org ON api_keys (org_id);
CREATE UNIQUE INDEX api_keys_scope_name ON api_keys (name_scope, name);
CREATE TABLE secrets (
    -- Clustered by (team, canonical name): an upsert finds its row in one
    -- B-tree descent and a team's listing is one range scan in name order.
    team_id         TEXT NOT NULL REFERENCES teams(id),
    canonical_name  TEXT NOT NULL,
    id              TEXT NOT NULL UNIQUE,
    org_id          TEXT NOT NULL REFERENCES organizations(id),
    name            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    -- The current version's value, sealed (see crypto/envelope.rs). Only the
    -- current version is kept: rotating a leaked credential removes the old
    -- ciphertext. Last, so reading the other columns never touches it.
    kek_id          TEXT NOT NULL,
    ciphertext      BLOB NOT NULL,
    PRIMARY KEY (team_id, canonical_name)
) WITHOUT ROWID;
CREATE TABLE keks (
    kek_id       TEXT PRIMARY KEY,
    check_value  BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    -- 1 for the key a new store is first sealed under. Unique, so nodes that
    -- start together on an empty database cannot each record a different key.
    primary_slot INTEGER UNIQUE
);
