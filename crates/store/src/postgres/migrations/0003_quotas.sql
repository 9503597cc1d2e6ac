-- Quotas. Each team counts its secrets, moved in the same transaction as the
-- insert or delete, so the quota check is one conditional update.
ALTER TABLE teams ADD COLUMN secret_count BIGINT NOT NULL DEFAULT 0;
UPDATE teams SET secret_count = (SELECT COUNT(*) FROM secrets WHERE secrets.team_id = teams.id);
-- An organization's listing is one range scan, page after page.
CREATE INDEX secrets_org ON secrets (org_id, team_id, canonical_name);
