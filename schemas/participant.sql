-- Arbiter participant protocol state — schema version 1.
--
-- Lives in the participant service's own SQLite database, beside its resource's tables, so that a
-- branch's business change and the protocol record that covers it commit in one local transaction.
-- Applied once by the migration "arbiter.participant.v1", before any migration the resource
-- registers. This file is frozen once released: a change goes in a new file (participant.v2.sql)
-- applied by a new migration that also sets arbiter_schema_version to 2; a database is never
-- erased. Times are Unix milliseconds (UTC).

CREATE TABLE IF NOT EXISTS arbiter_schema_version (
    component TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL
) STRICT;

CREATE TABLE participant_transaction (
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
    CHECK (state IN ('prepared', 'committed', 'aborted')),
    CHECK (heuristic IN (0, 1)),
    CHECK ((coordinator IS NULL) = (prepared_at_ms IS NULL)),
    CHECK ((state = 'prepared') = (ended_at_ms IS NULL))
) STRICT;

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

-- Key locks, held from prepare until commit or abort. They live in SQLite so that they survive a
-- restart together with the prepared transaction that holds them.
CREATE TABLE participant_lock (
    key TEXT PRIMARY KEY NOT NULL,
    txid TEXT NOT NULL,
    acquired_at_ms INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX participant_lock_by_txid ON participant_lock (txid);

INSERT INTO arbiter_schema_version (component, version) VALUES ('participant', 1);
