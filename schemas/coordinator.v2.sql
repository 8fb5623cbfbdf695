-- Arbiter coordinator decision log — schema version 2 (applied after version 1).
--
-- Applied once by the migration "arbiter.coordinator.v2": to a new database right after
-- coordinator.sql, to an existing version-1 log in place when a newer coordinator first opens it.
-- Frozen once released, like coordinator.sql.
--
-- Why: every forced commit writes each page it dirties to the WAL and syncs them. The index
-- coordinator_transaction_by_state (state, seq) moved every transaction's entry at each record
-- (active, then committing, then committed), in three places of the index, and served only the
-- operators' listing by state. Without it a forced commit writes about a third fewer pages. The
-- listing now finds open transactions through coordinator_transaction_open, aborted ones through
-- the partial index below (aborts are few, and an operator looks for them), and committed ones by
-- walking the log in order (most transactions commit, so a page of them is found quickly).

DROP INDEX coordinator_transaction_by_state;

-- Operators list aborted transactions, a page at a time in log order. Only aborted rows are in
-- it, so a commit that ends a committed transaction never touches it.
CREATE INDEX coordinator_transaction_aborted ON coordinator_transaction (seq)
    WHERE state = 'aborted';

UPDATE arbiter_schema_version SET version = 2 WHERE component = 'coordinator';
