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
    -- Comparisons, not an IN list (schema version 2: see participant.v2.sql).
    CHECK (state = 'prepared' OR state = 'committed' OR state = 'aborted'),
    CHECK (heuristic IN (0, 1)),
    CHECK ((coordinator IS NULL) = (prepared_at_ms IS NULL)),
    CHECK ((state = 'prepared') = (ended_at_ms IS NULL))
) STRICT
