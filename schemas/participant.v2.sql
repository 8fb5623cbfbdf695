-- Arbiter participant protocol state — schema version 2 (applied after version 1).
--
-- Applied once by the migration "arbiter.participant.v2": to a new database right after
-- participant.sql (before the resource's migrations, as version 1), to an existing version-1
-- database in place when a newer participant library first opens it. Frozen once released, like
-- participant.sql.
--
-- Why: SQLite evaluates `x IN (a, b, c)` over three or more constants by building a temporary
-- B-tree of the constants, every time a statement runs. Version 1's CHECK (state IN ('prepared',
-- 'committed', 'aborted')) made every prepared, committed and aborted record build one. The same
-- CHECK is now written as three comparisons, which allow exactly the same rows.
--
-- How: before this file runs, the migration replaces the table's definition in sqlite_schema with
-- participant.v2.table.sql, by SQLite's documented procedure for changes that do not touch the
-- stored rows (https://www.sqlite.org/lang_altertable.html, "Making Other Kinds Of Table Schema
-- Changes"): no row is rewritten, so the upgrade does not grow with the retained transactions.

UPDATE arbiter_schema_version SET version = 2 WHERE component = 'participant';
