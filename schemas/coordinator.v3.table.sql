CREATE TABLE coordinator_transaction (
    -- Log position: the order in which transactions were first recorded. Recovery returns them in
    -- this order; operators page through them with it.
    seq INTEGER PRIMARY KEY,
    txid TEXT NOT NULL UNIQUE,
    -- active: recorded, undecided. committing / aborting: decided, phase 2 still owed.
    -- committed / aborted: ended, nothing more owed (aborted with no outcome: ended undecided,
    -- which presumed abort reads as aborted).
    state TEXT NOT NULL,
    -- JSON array of {"participant": id, "payload": text} (or "payloadBase64" when the payload is
    -- not UTF-8); NULL when no `begun` record was written.
    branches TEXT,
    outcome TEXT,
    reason TEXT,
    -- JSON array of the participant ids that must hear the decision; NULL before the decision.
    notify TEXT,
    created_at_ms INTEGER NOT NULL,
    decided_at_ms INTEGER,
    ended_at_ms INTEGER,
    -- The only states, each with the outcome and end it allows. No IN list (schema version 3:
    -- see coordinator.v3.sql).
    CHECK (
        (state = 'active' AND outcome IS NULL AND ended_at_ms IS NULL)
        OR (state = 'committing' AND outcome = 'committed' AND ended_at_ms IS NULL)
        OR (state = 'aborting' AND outcome = 'aborted' AND ended_at_ms IS NULL)
        OR (state = 'committed' AND outcome = 'committed' AND ended_at_ms IS NOT NULL)
        OR (state = 'aborted' AND (outcome IS NULL OR outcome = 'aborted') AND ended_at_ms IS NOT NULL)
    )
) STRICT
