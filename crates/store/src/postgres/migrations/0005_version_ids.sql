-- Envelope format 2 binds each version's ciphertext to a random version id
-- chosen by the service before it writes (see crypto/envelope.rs). Rows
-- sealed by format 1 keep NULL here and open by their version number.
ALTER TABLE secrets ADD COLUMN version_id TEXT;
