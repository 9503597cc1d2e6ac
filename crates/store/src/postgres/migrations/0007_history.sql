-- History (issue 12). Each write records who made it (the key's prefix and
-- its user) and how the secret's previous versions are to be kept: the
-- trigger below moves the version an update replaces into secret_versions
-- in the same statement, so no write path (the batched update included)
-- can forget it.
ALTER TABLE secrets ADD COLUMN actor_key TEXT;
ALTER TABLE secrets ADD COLUMN actor_user TEXT;
-- Previous versions to keep after the last write (the server's setting
-- when it wrote), and whether that write destroyed the earlier ones.
ALTER TABLE secrets ADD COLUMN keep_versions BIGINT NOT NULL DEFAULT 10;
ALTER TABLE secrets ADD COLUMN destroy_previous BOOLEAN NOT NULL DEFAULT FALSE;
-- A secret's previous versions. A destroyed version keeps its metadata;
-- its key id and ciphertext are NULL.
CREATE TABLE secret_versions (
    secret_id    TEXT NOT NULL,
    version      BIGINT NOT NULL,
    org_id       TEXT NOT NULL,
    team_id      TEXT NOT NULL,
    version_id   TEXT,
    written_at   BIGINT NOT NULL,
    actor_key    TEXT,
    actor_user   TEXT,
    destroyed_at BIGINT,
    kek_id       TEXT,
    ciphertext   BYTEA,
    PRIMARY KEY (secret_id, version)
);
CREATE INDEX secret_versions_team ON secret_versions (team_id);
CREATE FUNCTION tessera_keep_previous() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.destroy_previous THEN
        UPDATE secret_versions SET destroyed_at = NEW.updated_at, kek_id = NULL, ciphertext = NULL
        WHERE secret_id = NEW.id AND ciphertext IS NOT NULL;
    END IF;
    IF NEW.keep_versions > 0 THEN
        INSERT INTO secret_versions (secret_id, version, org_id, team_id, version_id, written_at,
                                     actor_key, actor_user, destroyed_at, kek_id, ciphertext)
        VALUES (OLD.id, OLD.version, OLD.org_id, OLD.team_id, OLD.version_id, OLD.updated_at,
                OLD.actor_key, OLD.actor_user,
                CASE WHEN NEW.destroy_previous THEN NEW.updated_at END,
                CASE WHEN NEW.destroy_previous THEN NULL ELSE OLD.kek_id END,
                CASE WHEN NEW.destroy_previous THEN NULL ELSE OLD.ciphertext END);
    END IF;
    DELETE FROM secret_versions WHERE secret_id = NEW.id AND version < NEW.version - NEW.keep_versions;
    RETURN NULL;
END
$$;
CREATE TRIGGER secrets_keep_previous AFTER UPDATE OF ciphertext ON secrets
    FOR EACH ROW EXECUTE FUNCTION tessera_keep_previous();
-- Deleted secrets, kept for the retention window (then purged with their
-- versions). Their names are free: a new secret of the same name is a new
-- secret, with a new id.
CREATE TABLE deleted_secrets (
    id              TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL,
    team_id         TEXT NOT NULL,
    name            TEXT NOT NULL,
    canonical_name  TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    version         BIGINT NOT NULL,
    version_id      TEXT,
    actor_key       TEXT,
    actor_user      TEXT,
    deleted_at      BIGINT NOT NULL,
    deleted_by      TEXT,
    kek_id          TEXT NOT NULL,
    ciphertext      BYTEA NOT NULL
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
    last_seen_at BIGINT NOT NULL,
    PRIMARY KEY (key_prefix, instance)
);
CREATE INDEX consumers_team ON consumers (team_id);
CREATE TABLE consumer_versions (
    secret_id    TEXT NOT NULL,
    key_prefix   TEXT NOT NULL,
    instance     TEXT NOT NULL,
    version      BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (secret_id, key_prefix, instance)
);
CREATE INDEX consumer_versions_consumer ON consumer_versions (key_prefix, instance);
