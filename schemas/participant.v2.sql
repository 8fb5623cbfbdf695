-- Arbiter participant protocol state — schema version 2 (applied after version 1).
--
-- Applied once by the migration "arbiter.participant.v2": to a new database right after
-- participant.sql (before the resource's migrations, as version 1), to an existing version-1
-- database in place when a newer participant library first opens it. Frozen once released, like
-- participant.sql.
--
-- Why: SQLite evaluates `x IN (a, b, c)` over three or more constants by building a temporary
-- B-tree of the constants, every time a statement runs. Version 1's CHECK (state IN ('prepared',
-- 'committed', 'aborted')) made every prepared, committed and aborted record build one: about a
-- quarter of the CPU time of those writes. The same CHECK is now written as comparisons.
--
-- SQLite cannot change a CHECK in place, so the table is rebuilt: copied into a new table with the
-- new definition, the old one dropped, the new one renamed, its indexes and trigger made again.
-- The copy keeps every row and its seq. It is one pass over the retained rows, in the migration's
-- transaction: all of it or none. participant_lock is not touched.

CREATE TABLE participant_transaction_v2 (
    -- Log position: the order in which transactions were first recorded here.
    seq INTEGER PRIMARY KEY,
    txid TEXT NOT NULL UNIQUE,
    -- prepared: staged, locked, voted yes, in doubt until told. committed / aborted: final; an
    -- aborted row with no coordinator is a tombstone that makes a late prepare vote no.
    state TEXT NOT NULL,
    -- Set by the prepared record (where to inquire, and what was staged); NULL otherwise.
    coordinator TEXT,
    payload BLOB,
    -- 1 when an operator decided this transaction alone (a heuristic decision).
    heuristic INTEGER NOT NULL DEFAULT 0,
    prepared_at_ms INTEGER,
    ended_at_ms INTEGER,
    -- No IN list of three or more values: see above.
    CHECK (state = 'prepared' OR state = 'committed' OR state = 'aborted'),
    CHECK (heuristic IN (0, 1)),
    CHECK ((coordinator IS NULL) = (prepared_at_ms IS NULL)),
    CHECK ((state = 'prepared') = (ended_at_ms IS NULL))
) STRICT;

INSERT INTO participant_transaction_v2
    (seq, txid, state, coordinator, payload, heuristic, prepared_at_ms, ended_at_ms)
SELECT seq, txid, state, coordinator, payload, heuristic, prepared_at_ms, ended_at_ms
FROM participant_transaction ORDER BY seq;

-- Drops its indexes and its trigger with it.
DROP TABLE participant_transaction;

ALTER TABLE participant_transaction_v2 RENAME TO participant_transaction;

-- The in-doubt list (state = 'prepared') seeks this index.
CREATE INDEX participant_transaction_by_state ON participant_transaction (state, seq);

-- Retention: ended rows older than a cutoff.
CREATE INDEX participant_transaction_by_end ON participant_transaction (ended_at_ms)
    WHERE ended_at_ms IS NOT NULL;

-- A committed or aborted transaction never changes state again: no commit after abort, no abort
-- after commit, no prepare over a tombstone.
CREATE TRIGGER participant_end_is_final
BEFORE UPDATE OF state ON participant_transaction
WHEN OLD.state <> 'prepared' AND NEW.state <> OLD.state
BEGIN
    SELECT RAISE(ABORT, 'arbiter: the transaction already ended here and cannot change state');
END;

UPDATE arbiter_schema_version SET version = 2 WHERE component = 'participant';
