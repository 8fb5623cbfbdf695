-- Arbiter coordinator decision log — schema version 4 (applied after version 3).
--
-- Applied once by the migration "arbiter.coordinator.v4". Frozen once released, like the files
-- before it.
--
-- Why: an operator's override at the coordinator (a phase-2 retry forced now) must leave a
-- durable trace of who asked for what, when and why, as the participant's audit trail does
-- (participant.v3.sql). Audit rows are never deleted by Arbiter; an operator who must prune them
-- does so by hand.

CREATE TABLE coordinator_operator_audit (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    -- The operator token's name (from the token file's `name:token` line).
    actor TEXT NOT NULL,
    -- What was asked, e.g. `retry`.
    action TEXT NOT NULL,
    txid TEXT NOT NULL,
    reason TEXT NOT NULL,
    -- What came of it: NULL while the action runs (a crash may leave it so), then `done …` or why
    -- it was refused.
    result TEXT,
    CHECK (length(actor) > 0 AND length(reason) > 0)
) STRICT;

UPDATE arbiter_schema_version SET version = 4 WHERE component = 'coordinator';
