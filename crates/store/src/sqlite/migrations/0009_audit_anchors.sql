-- Where each pruned audit chain now starts: the signed checkpoint of the
-- last event pruned from it (see src/service/audit_log.rs). Verification
-- starts from it, so the rest of the chain still verifies after the prefix
-- is gone; deleting or editing it breaks verification.
CREATE TABLE audit_anchors (
    chain      TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL,
    checkpoint TEXT NOT NULL
) WITHOUT ROWID;
