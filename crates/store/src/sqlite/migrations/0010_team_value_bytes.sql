-- The bytes of each team's current values, for the quota on them (see
-- docs/compatibility.md): the plaintext lengths of every live secret's
-- current version. A stored value is its plaintext plus 106 bytes of
-- envelope (format byte, algorithm, master key id, wrapped data key, nonce,
-- tag: the same in envelope formats 1 and 2), so the plaintext length is
-- known here without opening anything. Triggers keep the total exact on
-- every path that changes current values (create, update, delete,
-- undelete, the deletion of a team's secrets); a write whose value has the
-- length of the one it replaces leaves it alone.
ALTER TABLE teams ADD COLUMN value_bytes INTEGER NOT NULL DEFAULT 0;
UPDATE teams SET value_bytes = COALESCE(
    (SELECT SUM(length(ciphertext) - 106) FROM secrets WHERE secrets.team_id = teams.id), 0);
CREATE TRIGGER secrets_value_bytes_insert AFTER INSERT ON secrets
BEGIN
    UPDATE teams SET value_bytes = value_bytes + length(NEW.ciphertext) - 106
    WHERE id = NEW.team_id;
END;
CREATE TRIGGER secrets_value_bytes_delete AFTER DELETE ON secrets
BEGIN
    UPDATE teams SET value_bytes = value_bytes - (length(OLD.ciphertext) - 106)
    WHERE id = OLD.team_id;
END;
CREATE TRIGGER secrets_value_bytes_update AFTER UPDATE OF ciphertext ON secrets
WHEN length(NEW.ciphertext) <> length(OLD.ciphertext)
BEGIN
    UPDATE teams SET value_bytes = value_bytes + length(NEW.ciphertext) - length(OLD.ciphertext)
    WHERE id = NEW.team_id;
END;
