-- Arbiter participant protocol state — schema version 3 (applied after version 2).
--
-- Applied once by the migration "arbiter.participant.v3". Frozen once released, like the files
-- before it.
--
-- Why: an operator's heuristic decision must leave a durable trace of who decided what, when and
-- why. The `heuristic` flag on participant_transaction is not enough: retention deletes ended
-- rows. Audit rows are never deleted by Arbiter; an operator who must prune them does so by hand.

CREATE TABLE participant_operator_audit (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    -- The operator token's name (from the token file's `name:token` line).
    actor TEXT NOT NULL,
    -- What was asked: `decide-committed` or `decide-aborted`.
    action TEXT NOT NULL,
    txid TEXT NOT NULL,
    reason TEXT NOT NULL,
    -- What came of it: NULL while the action runs (a crash may leave it so), then `done` or why
    -- it was refused.
    result TEXT,
    CHECK (length(actor) > 0 AND length(reason) > 0)
) STRICT;

UPDATE arbiter_schema_version SET version = 3 WHERE component = 'participant';
