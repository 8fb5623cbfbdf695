-- Arbiter coordinator decision log — schema version 3 (applied after version 2).
--
-- Applied once by the migration "arbiter.coordinator.v3": to a new database right after
-- coordinator.v2.sql, to an existing version-2 log in place when a newer coordinator first opens
-- it. Frozen once released, like the files before it.
--
-- Why: SQLite evaluates `x IN (a, b, c)` over three or more constants by building a temporary
-- B-tree of the constants, every time a statement runs. Version 1's CHECK on the state (five
-- values) and the predicate of the partial index coordinator_transaction_open (three values) made
-- every insert and upsert of a transaction row build two: about half of the CPU time of the
-- coordinator's writes. Both are rewritten without IN:
-- - CHECK (state IN (...)) and CHECK (outcome IN (...)) go: the remaining CHECK already allows
--   exactly those states and outcomes, each with its ended_at_ms.
-- - The open index is on ended_at_ms IS NULL, which that CHECK makes the same rows as
--   state IN ('active', 'committing', 'aborting').
--
-- SQLite cannot drop a CHECK in place, so the table is rebuilt: copied into a new table with the
-- new definition, the old one dropped, the new one renamed, its indexes and trigger made again.
-- The copy keeps every row and its seq. It is one pass over the log, in the migration's
-- transaction: all of it or none.

CREATE TABLE coordinator_transaction_v3 (
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
    -- The only states, each with the outcome and end it allows. No IN lists: see above.
    CHECK (
        (state = 'active' AND outcome IS NULL AND ended_at_ms IS NULL)
        OR (state = 'committing' AND outcome = 'committed' AND ended_at_ms IS NULL)
        OR (state = 'aborting' AND outcome = 'aborted' AND ended_at_ms IS NULL)
        OR (state = 'committed' AND outcome = 'committed' AND ended_at_ms IS NOT NULL)
        OR (state = 'aborted' AND (outcome IS NULL OR outcome = 'aborted') AND ended_at_ms IS NOT NULL)
    )
) STRICT;

INSERT INTO coordinator_transaction_v3
    (seq, txid, state, branches, outcome, reason, notify, created_at_ms, decided_at_ms, ended_at_ms)
SELECT seq, txid, state, branches, outcome, reason, notify, created_at_ms, decided_at_ms, ended_at_ms
FROM coordinator_transaction ORDER BY seq;

-- Drops its indexes and its trigger with it.
DROP TABLE coordinator_transaction;

ALTER TABLE coordinator_transaction_v3 RENAME TO coordinator_transaction;

-- Recovery reads the open transactions (active, committing, aborting) in log order, and never
-- the ended ones.
CREATE INDEX coordinator_transaction_open ON coordinator_transaction (seq)
    WHERE ended_at_ms IS NULL;

-- Operators list aborted transactions, a page at a time in log order (as in version 2).
CREATE INDEX coordinator_transaction_aborted ON coordinator_transaction (seq)
    WHERE state = 'aborted';

-- Stability of decisions: once recorded, an outcome never changes (as in version 1).
CREATE TRIGGER coordinator_decision_is_final
BEFORE UPDATE OF outcome ON coordinator_transaction
WHEN OLD.outcome IS NOT NULL AND NEW.outcome IS NOT OLD.outcome
BEGIN
    SELECT RAISE(ABORT, 'arbiter: the transaction''s decision is already recorded and is final');
END;

UPDATE arbiter_schema_version SET version = 3 WHERE component = 'coordinator';
