-- The least an XA transaction manager asks of one participant's PostgreSQL per transfer: one
-- branch, begun, changed, prepared and committed (docs/benchmark.md, "Against Bitronix on the same
-- clusters"). Run in pgbench's simple mode, which puts the client's number into the gid:
--   pgbench -i -s 1 DB
--   pgbench -n -M simple -f examples/bank/Bench/pgbench-xa-floor.sql -T 10 -c 32 -j 1 DB
\set id random(1, 100000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = :id;
PREPARE TRANSACTION 'floor:client_id';
COMMIT PREPARED 'floor:client_id';
