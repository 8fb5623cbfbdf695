-- What a PostgreSQL participant asks of its database per branch, as the bank's prepare and commit
-- send it (docs/benchmark.md, "Against Bitronix on the same clusters"): the in-doubt row, then in
-- one pipelined write BEGIN, the server-checked UPDATE, the marker and PREPARE TRANSACTION; then
-- COMMIT PREPARED and the row's ended_at. For one client (the gid is fixed), in a database with
-- pgbench's tables and schemas/participant-postgres.sql and .v2.sql applied:
--   pgbench -i -s 1 DB
--   PGOPTIONS="-c synchronous_commit=off" pgbench -n -M extended -c 1 -T 8 -f examples/bank/Bench/pgbench-arbiter-branch.sql DB
-- Compare with the statements of pgbench-xa-floor.sql sent the same way (pipelined, the gid fixed).
\set id random(1, 100000)
\set t random(1, 1000000000)
\startpipeline
INSERT INTO arbiter_participant_transaction AS t (txid, state, coordinator, payload, prepared_at) VALUES ('x' || :t, 'prepared', 'http://127.0.0.1:1', '\x7b7d', now()) ON CONFLICT (txid) DO UPDATE SET coordinator = EXCLUDED.coordinator, payload = EXCLUDED.payload, prepared_at = EXCLUDED.prepared_at WHERE t.state = 'prepared';
BEGIN;
WITH changed AS (UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :id RETURNING 1) SELECT arbiter_expect_changed(count(*), 1) FROM changed;
WITH changed AS (UPDATE arbiter_participant_transaction SET state = 'committed', ended_at = now() WHERE txid = 'x' || :t AND state = 'prepared' RETURNING 1) SELECT arbiter_expect_changed(count(*), 1) FROM changed;
PREPARE TRANSACTION 'arbiter-branch';
\endpipeline
COMMIT PREPARED 'arbiter-branch';
UPDATE arbiter_participant_transaction SET ended_at = now() WHERE txid = 'x' || :t;
