-- Quotas. Each team counts its secrets, moved in the same transaction as the
-- insert or delete, so the quota check is one conditional update.
ALTER TABLE teams ADD COLUMN secret_count INTEGER NOT NULL DEFAULT 0;
UPDATE teams SET secret_count = (SELECT COUNT(*) FROM secrets WHERE secrets.team_id = teams.id);
-- In a WITHOUT ROWID table an index ends with the primary key, so this one
-- is (org_id, team_id, canonical_name): an organization's listing is one
-- range scan, page after page.
CREATE INDEX secrets_org ON secrets (org_id);
