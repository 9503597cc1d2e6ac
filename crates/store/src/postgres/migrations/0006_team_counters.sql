-- A team's revision and secret count move with every write to its secrets.
-- Kept on the teams row, they made that row the one every write updated
-- while every new secret also locked it (FOR KEY SHARE, for its foreign
-- key): PostgreSQL then records the lockers and the updater together as a
-- multixact, and each read of the row had to look their members up, in a
-- small shared cache that thrashed (seen as LWLock:MultiXactMember* waits,
-- and upserts 3-4x slower in some runs than in others). In a table of their
-- own, which no foreign key references, updates stay plain.
CREATE TABLE team_counters (
    team_id      TEXT PRIMARY KEY REFERENCES teams(id) ON DELETE CASCADE,
    revision     BIGINT NOT NULL,
    secret_count BIGINT NOT NULL
);
INSERT INTO team_counters (team_id, revision, secret_count)
    SELECT id, revision, secret_count FROM teams;
ALTER TABLE teams DROP COLUMN revision;
ALTER TABLE teams DROP COLUMN secret_count;
