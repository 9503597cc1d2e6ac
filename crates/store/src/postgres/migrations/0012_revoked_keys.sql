-- Keys the server recognises after they are gone: a revoked key is refused
-- as revoked, never counted against its client address's budget of failed
-- authentications (a workload whose key was revoked must hear 401, and wipe
-- its files, even while another client on its address sends bad keys).
-- Every path that removes a key row (revocation, a user's or team's
-- deletion, an authority change) goes through the trigger, so none can
-- skip it. Only the hash of the secret part is kept, as for live keys.
CREATE TABLE revoked_api_keys (
    prefix      TEXT PRIMARY KEY,
    secret_hash BYTEA NOT NULL,
    revoked_at  BIGINT NOT NULL
);
CREATE FUNCTION tessera_remember_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO revoked_api_keys (prefix, secret_hash, revoked_at)
    VALUES (OLD.prefix, OLD.secret_hash,
            (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
    ON CONFLICT (prefix) DO UPDATE SET secret_hash = EXCLUDED.secret_hash,
                                       revoked_at = EXCLUDED.revoked_at;
    RETURN OLD;
END;
$$;
CREATE TRIGGER api_keys_remember_revoked AFTER DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION tessera_remember_revoked();
-- The keys a user answers for are looked up on every change of that
-- user's authority.
CREATE INDEX api_keys_created_by ON api_keys (created_by);
