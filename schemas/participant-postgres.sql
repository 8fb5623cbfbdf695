-- A participant's protocol state on PostgreSQL, version 1 (ArbiterParticipantPostgres), in the
-- database that holds the service's own tables. A transaction in doubt is a prepared transaction
-- of PostgreSQL (`PREPARE TRANSACTION '<prefix>:<txid>'`, listed in pg_prepared_xacts); these
-- tables hold what PostgreSQL does not: where its inquiries go, what it staged, and how the
-- transactions that ended here ended.

-- One row per transaction this participant has a record of:
--   'prepared'  written (lazily) just before the stage begins, with the coordinator and the payload;
--               the transaction is in doubt while PostgreSQL holds its prepared transaction, and
--               was never prepared (or was rolled back) when it does not;
--   'committed' the marker: the prepared transaction itself updates its row to 'committed', so the
--               row says 'committed' exactly when COMMIT PREPARED has run;
--   'aborted'   written after ROLLBACK PREPARED, after a `no` vote, or as a tombstone (an abort
--               that overtook its prepare: no coordinator).
CREATE TABLE arbiter_participant_transaction (
    txid TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state = 'prepared' OR state = 'committed' OR state = 'aborted'),
    coordinator TEXT,
    payload BYTEA,
    heuristic BOOLEAN NOT NULL DEFAULT false,
    prepared_at TIMESTAMPTZ,
    ended_at TIMESTAMPTZ
);

-- The transactions in doubt, oldest first (recovery, operators, the in-doubt age).
CREATE INDEX arbiter_participant_transaction_prepared ON arbiter_participant_transaction (prepared_at) WHERE state = 'prepared';

-- The ended transactions, by age, for the retention sweep.
CREATE INDEX arbiter_participant_transaction_ended ON arbiter_participant_transaction (ended_at) WHERE state <> 'prepared';

-- Operators' heuristic decisions: forced before the decision is applied, never deleted.
CREATE TABLE arbiter_participant_operator_action (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    txid TEXT NOT NULL,
    reason TEXT NOT NULL,
    result TEXT
);

-- The resource's own migrations that have run, by name.
CREATE TABLE arbiter_participant_migration (
    name TEXT PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The node this database belongs to, by the prefix of its prepared transactions' names: recovery
-- takes the prepared transactions with that prefix as the node's, so a node started with another
-- prefix (or a second node on the same database) is refused instead of losing them.
CREATE TABLE arbiter_participant_node (
    one_row BOOLEAN PRIMARY KEY DEFAULT true CHECK (one_row),
    gid_prefix TEXT NOT NULL
);
