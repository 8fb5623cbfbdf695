-- Arbiter coordinator decision log — schema version 1.
--
-- Applied once to a new database by the migration "arbiter.coordinator.v1". This file is frozen
-- once released: a change to the format goes in a new file (coordinator.v2.sql) applied by a new
-- migration that also sets arbiter_schema_version to 2, so an existing log is upgraded in place
-- and never erased. A decision log is forever.
--
-- The log is kept as state, not as an append-only list: each record (begun, decided, acknowledged,
-- ended) is applied as an UPSERT to its transaction's row, so a record still applies when an
-- earlier lazily written record was lost in a crash. Times are Unix milliseconds (UTC).

CREATE TABLE IF NOT EXISTS arbiter_schema_version (
    component TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL
) STRICT;

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
    CHECK (state IN ('active', 'committing', 'aborting', 'committed', 'aborted')),
    CHECK (outcome IN ('committed', 'aborted')),
    CHECK (
        (state = 'active' AND outcome IS NULL AND ended_at_ms IS NULL)
        OR (state = 'committing' AND outcome = 'committed' AND ended_at_ms IS NULL)
        OR (state = 'aborting' AND outcome = 'aborted' AND ended_at_ms IS NULL)
        OR (state = 'committed' AND outcome = 'committed' AND ended_at_ms IS NOT NULL)
        OR (state = 'aborted' AND (outcome IS NULL OR outcome = 'aborted') AND ended_at_ms IS NOT NULL)
    )
) STRICT;

-- Recovery reads the open transactions (active, committing, aborting) through this partial index
-- (named in its query), in log order, so restart time does not grow with the number of ended
-- transactions. Only open rows are in it, so it stays small.
CREATE INDEX coordinator_transaction_open ON coordinator_transaction (seq)
    WHERE state IN ('active', 'committing', 'aborting');

-- Operators list transactions by state, a page at a time in log order.
CREATE INDEX coordinator_transaction_by_state ON coordinator_transaction (state, seq);

-- Stability of decisions: once recorded, an outcome never changes.
CREATE TRIGGER coordinator_decision_is_final
BEFORE UPDATE OF outcome ON coordinator_transaction
WHEN OLD.outcome IS NOT NULL AND NEW.outcome IS NOT OLD.outcome
BEGIN
    SELECT RAISE(ABORT, 'arbiter: the transaction''s decision is already recorded and is final');
END;

CREATE TABLE coordinator_acknowledgement (
    -- Log position: the order in which acknowledgements were recorded.
    seq INTEGER PRIMARY KEY,
    txid TEXT NOT NULL,
    participant TEXT NOT NULL,
    acknowledged_at_ms INTEGER NOT NULL,
    UNIQUE (txid, participant)
) STRICT;

INSERT INTO arbiter_schema_version (component, version) VALUES ('coordinator', 1);
