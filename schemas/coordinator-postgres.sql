-- Arbiter coordinator cluster on PostgreSQL — schema version 1.
--
-- Applied once to a new database by the migration "arbiter.coordinator-postgres.v1", in one
-- transaction, under an advisory lock so that coordinators starting together apply it once. This
-- file is frozen once released: a change goes in a new file applied by a new migration that also
-- sets arbiter_schema_version, so an existing store is upgraded in place and never erased.
--
-- Several coordinators share these tables. Each holds a lease (arbiter_coordinator_lease) renewed
-- on this database's clock, never on its own. Every transaction row carries its owner and the
-- owner's epoch, and every write of a coordinator's records goes through arbiter_write, which
-- writes a record only if the writer owns the row (name and epoch) and a decision only if the row
-- holds none or the same one (fencing). The records of a transaction the writer does not own are
-- skipped and its id returned; the writer stops driving it.

CREATE TABLE IF NOT EXISTS arbiter_schema_version (
    component TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);

CREATE TABLE arbiter_coordinator_lease (
    -- The coordinator's --name, unique in the cluster.
    name TEXT PRIMARY KEY,
    -- Raised each time a process takes the name's lease: fences every older incarnation.
    epoch BIGINT NOT NULL,
    -- On this database's clock. Others may take the name's unfinished transactions over after it.
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE arbiter_transaction (
    txid TEXT PRIMARY KEY,
    -- Log order: the order in which transactions were first recorded. Recovery and takeover
    -- resume them in this order.
    seq BIGSERIAL NOT NULL UNIQUE,
    -- The coordinator that drives the transaction, and the epoch of its lease when it took it.
    owner TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    -- JSON array of {"participant": id, "payload": text} (or "payloadBase64"), as in the SQLite
    -- log; NULL when no `begun` record was written (a presumed abort).
    branches TEXT,
    outcome TEXT CHECK (outcome IN ('committed', 'aborted')),
    reason TEXT,
    -- The participants that must hear the decision, those that acknowledged it, and when (in the
    -- same order).
    notify TEXT[] NOT NULL DEFAULT '{}',
    acknowledged TEXT[] NOT NULL DEFAULT '{}',
    acknowledged_at TIMESTAMPTZ[] NOT NULL DEFAULT '{}',
    ended BOOLEAN NOT NULL DEFAULT false,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    decided_at TIMESTAMPTZ,
    ended_at TIMESTAMPTZ,
    CHECK (NOT ended OR ended_at IS NOT NULL),
    CHECK ((outcome IS NULL) = (decided_at IS NULL))
);

-- Recovery (a name's unfinished transactions) and takeover (any owner's) read only open rows.
CREATE INDEX arbiter_transaction_open ON arbiter_transaction (owner, seq) WHERE NOT ended;

-- Stability of decisions: once recorded, an outcome never changes, whoever writes.
CREATE FUNCTION arbiter_decision_is_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.outcome IS NOT NULL AND NEW.outcome IS DISTINCT FROM OLD.outcome THEN
        RAISE EXCEPTION 'arbiter: the decision of % is already recorded and is final', OLD.txid;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER arbiter_decision_is_final BEFORE UPDATE OF outcome ON arbiter_transaction
    FOR EACH ROW EXECUTE FUNCTION arbiter_decision_is_final();

-- One coordinator's round of records, in one statement: a JSON array of
--   {"k": "begun", "t": txid, "b": branches}
--   {"k": "decided", "t": txid, "o": "committed" | "aborted", "n": [participant, ...], "r": reason}
--   {"k": "acknowledged", "t": txid, "p": participant}
--   {"k": "ended", "t": txid}
-- applied in order. Returns the transactions whose records were skipped because `writer` (at
-- `writer_epoch`) does not own them or they hold another decision. `lazy`: this commit need not
-- wait for the disk (synchronous_commit off for this transaction only; PostgreSQL keeps commit
-- order, so a lazy record never outlives a forced one written after it).
CREATE FUNCTION arbiter_write(writer TEXT, writer_epoch BIGINT, records JSONB, lazy BOOLEAN)
RETURNS TEXT[] LANGUAGE plpgsql AS $$
DECLARE
    record JSONB;
    id TEXT;
    current arbiter_transaction%ROWTYPE;
    refused TEXT[] := '{}';
BEGIN
    IF lazy THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    FOR record IN SELECT value FROM jsonb_array_elements(records) LOOP
        id := record->>'t';
        CONTINUE WHEN id = ANY (refused);
        SELECT * INTO current FROM arbiter_transaction WHERE txid = id FOR UPDATE;
        IF FOUND THEN
            IF current.owner <> writer OR current.epoch <> writer_epoch
               OR (record->>'k' = 'decided' AND current.outcome IS DISTINCT FROM NULL
                   AND current.outcome <> record->>'o') THEN
                refused := refused || id;
                CONTINUE;
            END IF;
        ELSE
            INSERT INTO arbiter_transaction (txid, owner, epoch) VALUES (id, writer, writer_epoch)
                ON CONFLICT (txid) DO NOTHING;
            IF NOT FOUND THEN
                -- Another coordinator's row got there first (a presumed abort, a takeover).
                refused := refused || id;
                CONTINUE;
            END IF;
        END IF;
        CASE record->>'k'
            WHEN 'begun' THEN
                UPDATE arbiter_transaction SET branches = record->>'b' WHERE txid = id;
            WHEN 'decided' THEN
                UPDATE arbiter_transaction
                    SET outcome = record->>'o', reason = record->>'r',
                        notify = ARRAY(SELECT jsonb_array_elements_text(record->'n')),
                        decided_at = coalesce(decided_at, now())
                    WHERE txid = id;
            WHEN 'acknowledged' THEN
                UPDATE arbiter_transaction
                    SET acknowledged = acknowledged || (record->>'p'), acknowledged_at = acknowledged_at || now()
                    WHERE txid = id AND NOT (record->>'p' = ANY (acknowledged));
            WHEN 'ended' THEN
                UPDATE arbiter_transaction SET ended = true, ended_at = coalesce(ended_at, now())
                    WHERE txid = id;
            ELSE
                RAISE EXCEPTION 'arbiter: unknown record kind %', record->>'k';
        END CASE;
    END LOOP;
    RETURN refused;
END;
$$;

INSERT INTO arbiter_schema_version (component, version) VALUES ('coordinator-postgres', 1);
