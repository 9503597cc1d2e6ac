-- The audit log (see src/audit/ and docs/security.md). Each process (and on
-- PostgreSQL each of its chain slots) appends to chains of its own, so
-- nodes never serialize their writes through one row; `seq` counts from 1
-- in each chain and `mac` links each event to the one before it. Events are
-- only ever appended here, in the transaction of the change they record.
CREATE TABLE audit_events (
    chain       TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    time        BIGINT NOT NULL,
    actor_key   TEXT,
    actor_type  TEXT,
    actor_user  TEXT,
    org_id      TEXT,
    team_id     TEXT,
    action      TEXT NOT NULL,
    target_id   TEXT,
    target_name TEXT,
    result      TEXT NOT NULL,
    request_id  TEXT,
    client      TEXT,
    detail      TEXT,
    mac         BYTEA NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX audit_events_org_time ON audit_events (org_id, time);
