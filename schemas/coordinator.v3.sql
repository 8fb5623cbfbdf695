-- Arbiter coordinator decision log — schema version 3 (applied after version 2).
--
-- Applied once by the migration "arbiter.coordinator.v3": to a new database right after
-- coordinator.v2.sql, to an existing version-2 log in place when a newer coordinator first opens
-- it. Frozen once released, like the files before it.
--
-- Why: SQLite evaluates `x IN (a, b, c)` over three or more constants by building a temporary
-- B-tree of the constants, every time a statement runs. Version 1's CHECK on the state (five
-- values) and the predicate of the partial index coordinator_transaction_open (three values) made
-- every insert and upsert of a transaction row build two: about a third of the CPU time of the
-- coordinator's group commits. Both go:
-- - CHECK (state IN (...)) and CHECK (outcome IN (...)) are removed. The remaining CHECK already
--   allows exactly those states and outcomes, each with its ended_at_ms.
-- - The open index is made again on ended_at_ms IS NULL, which that CHECK makes the same rows as
--   state IN ('active', 'committing', 'aborting').
--
-- How: before this file runs, the migration replaces the table's definition in sqlite_schema with
-- coordinator.v3.table.sql, by SQLite's documented procedure for removing CHECK constraints
-- (https://www.sqlite.org/lang_altertable.html, "Making Other Kinds Of Table Schema Changes"):
-- no row is rewritten, so the upgrade does not grow with the log. Rebuilding the table instead
-- took 17 s and twice the table's size in WAL and free pages per million transactions.

DROP INDEX coordinator_transaction_open;

-- Recovery reads the open transactions (active, committing, aborting) in log order, and never
-- the ended ones. One pass over the log to build; it holds only the open rows.
CREATE INDEX coordinator_transaction_open ON coordinator_transaction (seq)
    WHERE ended_at_ms IS NULL;

UPDATE arbiter_schema_version SET version = 3 WHERE component = 'coordinator';
