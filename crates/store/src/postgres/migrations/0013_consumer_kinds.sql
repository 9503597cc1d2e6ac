-- What kind of consumer each one said it is (X-Tessera-Consumer-Kind):
-- 'agent', 'supervisor' (run --watch), 'one-shot' (a plain run, which execs
-- and never reports again) or 'unspecified' (a client that did not say, and
-- every consumer recorded before this step). One-shot consumers never block
-- a destroy and leave the consumers view unless seen again.
ALTER TABLE consumers ADD COLUMN kind TEXT NOT NULL DEFAULT 'unspecified';
