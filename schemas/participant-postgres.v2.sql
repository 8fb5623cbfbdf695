-- A participant's protocol state on PostgreSQL, version 2: a row-count assertion a statement can
-- run in the server, so that a stage's check fails the transaction before PREPARE TRANSACTION
-- instead of after the answer has come back (then the whole prepare goes to the server in one
-- write). ArbiterParticipantPostgres wraps a queued statement as
--   WITH changed AS (<statement> RETURNING 1) SELECT arbiter_expect_changed(count(*), <n>) FROM changed
-- and its own marker the same way. SQLSTATE ZA001 says the count was not the one expected.
CREATE FUNCTION arbiter_expect_changed(changed BIGINT, expected BIGINT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
BEGIN
    IF changed <> expected THEN
        RAISE EXCEPTION 'the statement changed % rows, not %', changed, expected USING ERRCODE = 'ZA001';
    END IF;
    RETURN changed;
END
$$;
