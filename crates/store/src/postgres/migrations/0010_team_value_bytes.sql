-- The bytes of each team's current values, for the quota on them (see
-- docs/compatibility.md): the plaintext lengths of every live secret's
-- current version. A stored value is its plaintext plus 106 bytes of
-- envelope (format byte, algorithm, master key id, wrapped data key, nonce,
-- tag: the same in envelope formats 1 and 2), so the plaintext length is
-- known here without opening anything. Triggers keep the total exact on
-- every path that changes current values (create, update, delete,
-- undelete, the deletion of a team's secrets); a write whose value has the
-- length of the one it replaces leaves it alone. Beside the revision in
-- team_counters (see 0006), which every such write updates anyway.
ALTER TABLE team_counters ADD COLUMN value_bytes BIGINT NOT NULL DEFAULT 0;
UPDATE team_counters c SET value_bytes = COALESCE(
    (SELECT SUM(octet_length(s.ciphertext) - 106) FROM secrets s WHERE s.team_id = c.team_id), 0);
CREATE FUNCTION tessera_value_bytes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE team_counters SET value_bytes = value_bytes + octet_length(NEW.ciphertext) - 106
        WHERE team_id = NEW.team_id;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE team_counters SET value_bytes = value_bytes - (octet_length(OLD.ciphertext) - 106)
        WHERE team_id = OLD.team_id;
    ELSE
        UPDATE team_counters
        SET value_bytes = value_bytes + octet_length(NEW.ciphertext) - octet_length(OLD.ciphertext)
        WHERE team_id = NEW.team_id;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER secrets_value_bytes_insert AFTER INSERT ON secrets
    FOR EACH ROW EXECUTE FUNCTION tessera_value_bytes();
CREATE TRIGGER secrets_value_bytes_delete AFTER DELETE ON secrets
    FOR EACH ROW EXECUTE FUNCTION tessera_value_bytes();
CREATE TRIGGER secrets_value_bytes_update AFTER UPDATE OF ciphertext ON secrets
    FOR EACH ROW WHEN (octet_length(NEW.ciphertext) <> octet_length(OLD.ciphertext))
    EXECUTE FUNCTION tessera_value_bytes();
