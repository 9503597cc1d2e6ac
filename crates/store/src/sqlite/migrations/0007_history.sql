-- History (issue 12). Each write records who made it (the key's prefix and
-- its user) and how the secret's previous versions are to be kept: the
-- trigger below moves the version an update replaces into secret_versions
-- in the same statement, so no write path can forget it.
ALTER TABLE secrets ADD COLUMN actor_key TEXT;
ALTER TABLE secrets ADD COLUMN actor_user TEXT;
-- Previous versions to keep after the last write (the server's setting
-- when it wrote), and whether that write destroyed the earlier ones.
ALTER TABLE secrets ADD COLUMN keep_versions INTEGER NOT NULL DEFAULT 10;
ALTER TABLE secrets ADD COLUMN destroy_previous INTEGER NOT NULL DEFAULT 0;
-- A secret's previous versions. A destroyed version keeps its metadata;
-- its key id and ciphertext are NULL. Rows are appended in the order they
-- are written (a rowid table), found through the index by team, name, id
-- and version. Measured with upsert-64 (10,000 secrets, 10 versions each):
-- clustered by secret id, each update dirtied a page of its own for its
-- row, and commits wrote about ten times the pages; clustered by team and
-- name, still each secret's page of versions; appended, a batch's new rows
-- share a few pages and only the small index entries scatter.
CREATE TABLE secret_versions (
    team_id        TEXT NOT NULL,
    canonical_name TEXT NOT NULL,
    secret_id      TEXT NOT NULL,
    version        INTEGER NOT NULL,
    org_id         TEXT NOT NULL,
    version_id     TEXT,
    written_at     INTEGER NOT NULL,
    actor_key      TEXT,
    actor_user     TEXT,
    destroyed_at   INTEGER,
    kek_id         TEXT,
    ciphertext     BLOB
);
CREATE UNIQUE INDEX secret_versions_key
    ON secret_versions (team_id, canonical_name, secret_id, version);
CREATE TRIGGER secrets_keep_previous AFTER UPDATE OF ciphertext ON secrets
BEGIN
    INSERT INTO secret_versions (team_id, canonical_name, secret_id, version, org_id, version_id,
                                 written_at, actor_key, actor_user, destroyed_at, kek_id, ciphertext)
    SELECT OLD.team_id, OLD.canonical_name, OLD.id, OLD.version, OLD.org_id, OLD.version_id,
           OLD.updated_at, OLD.actor_key, OLD.actor_user,
           CASE WHEN NEW.destroy_previous THEN NEW.updated_at END,
           CASE WHEN NEW.destroy_previous THEN NULL ELSE OLD.kek_id END,
           CASE WHEN NEW.destroy_previous THEN NULL ELSE OLD.ciphertext END
    WHERE NEW.keep_versions > 0;
    DELETE FROM secret_versions
    WHERE team_id = NEW.team_id AND canonical_name = NEW.canonical_name AND secret_id = NEW.id
      AND version < NEW.version - NEW.keep_versions;
END;
CREATE TRIGGER secrets_destroy_previous AFTER UPDATE OF ciphertext ON secrets
WHEN NEW.destroy_previous
BEGIN
    UPDATE secret_versions SET destroyed_at = NEW.updated_at, kek_id = NULL, ciphertext = NULL
    WHERE team_id = NEW.team_id AND canonical_name = NEW.canonical_name AND secret_id = NEW.id
      AND ciphertext IS NOT NULL;
END;
-- Deleted secrets, kept for the retention window (then purged with their
-- versions). Their names are free: a new secret of the same name is a new
-- secret, with a new id.
CREATE TABLE deleted_secrets (
    id              TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL,
    team_id         TEXT NOT NULL,
    name            TEXT NOT NULL,
    canonical_name  TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    version_id      TEXT,
    actor_key       TEXT,
    actor_user      TEXT,
    deleted_at      INTEGER NOT NULL,
    deleted_by      TEXT,
    kek_id          TEXT NOT NULL,
    ciphertext      BLOB NOT NULL
);
CREATE INDEX deleted_secrets_team ON deleted_secrets (team_id, canonical_name);
CREATE INDEX deleted_secrets_age ON deleted_secrets (deleted_at);
-- A team keeps at most as many deleted secrets as its secrets quota; a
-- deletion beyond that purges the team's oldest (found through this index).
CREATE INDEX deleted_secrets_team_age ON deleted_secrets (team_id, deleted_at);
-- Who holds what: each workload key (and agent instance) that received a
-- team's values, when it was last seen, and the version of each secret it
-- last received. Written in batches, about once a second.
CREATE TABLE consumers (
    key_prefix   TEXT NOT NULL,
    instance     TEXT NOT NULL,
    team_id      TEXT NOT NULL,
    client       TEXT,
    last_seen_at INTEGER NOT NULL,
    PRIMARY KEY (key_prefix, instance)
) WITHOUT ROWID;
CREATE INDEX consumers_team ON consumers (team_id);
CREATE TABLE consumer_versions (
    secret_id    TEXT NOT NULL,
    key_prefix   TEXT NOT NULL,
    instance     TEXT NOT NULL,
    version      INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (secret_id, key_prefix, instance)
) WITHOUT ROWID;
CREATE INDEX consumer_versions_consumer ON consumer_versions (key_prefix, instance);
