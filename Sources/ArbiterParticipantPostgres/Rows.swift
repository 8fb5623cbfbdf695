import ArbiterCore
import ArbiterStorage
import Foundation
import NIOCore
import PostgresNIO
import Synchronization

/// What recovery found: the transactions in doubt, in the order they were prepared, and what it
/// could not resolve.
struct Recovered: Sendable {
    var transactions: [ParticipantTransaction]
    /// Rows left `prepared` by a stage that never reached `PREPARE TRANSACTION` (or whose rollback
    /// was not yet recorded), now recorded `aborted`.
    var orphanCount: Int
    /// Prepared transactions with this node's prefix and no row: left alone, logged.
    var unknownGIDs: [String]
}

/// The statements on the protocol's rows (`schemas/participant-postgres.sql`), on a blocking
/// connection.
enum Rows {
    /// What is recorded of each of `txids` that has a row.
    static func transactions(_ txids: [TxID], on connection: BlockingConnection) throws(PostgresParticipantError) -> [TxID: ParticipantTransaction] {
        let rows = try connection.run("""
            SELECT txid, state, coordinator, payload, heuristic, prepared_at, ended_at
            FROM arbiter_participant_transaction WHERE txid = ANY(\(txids.map(\.rawValue)))
            """).rows
        var found: [TxID: ParticipantTransaction] = [:]
        for row in rows {
            let transaction = try decode(row)
            found[transaction.txid] = transaction
        }
        return found
    }

    /// Whether PostgreSQL holds the prepared transaction `gid` in this database.
    static func isPrepared(gid: String, on connection: BlockingConnection) throws(PostgresParticipantError) -> Bool {
        !(try connection.run("SELECT 1 FROM pg_prepared_xacts WHERE gid = \(gid) AND database = current_database()").rows.isEmpty)
    }

    /// Records `txid` ended (`committed` or `aborted`) unless it ended already: a tombstone when
    /// there is no row, the end of a row still `prepared`. Lazy unless the connection's
    /// transaction says otherwise.
    static func end(_ txid: TxID, _ state: ParticipantTransactionState, heuristic: Bool, on connection: BlockingConnection) throws(PostgresParticipantError) {
        try connection.run(endQuery(txid, state, heuristic: heuristic))
    }

    /// The statement of ``end(_:_:heuristic:on:)``.
    static func endQuery(_ txid: TxID, _ state: ParticipantTransactionState, heuristic: Bool) -> PostgresStatement {
        """
        INSERT INTO arbiter_participant_transaction AS t (txid, state, heuristic, ended_at)
        VALUES (\(txid.rawValue), \(state.rawValue), \(heuristic), now())
        ON CONFLICT (txid) DO UPDATE SET state = EXCLUDED.state, heuristic = EXCLUDED.heuristic, ended_at = EXCLUDED.ended_at
        WHERE t.state = 'prepared' OR (t.state = EXCLUDED.state AND EXCLUDED.heuristic)
        """
    }

    /// ``end(_:_:heuristic:on:)`` in a transaction of its own, flushed to disk before it returns
    /// (its statements in one exchange).
    static func endForced(_ txid: TxID, _ state: ParticipantTransactionState, heuristic: Bool, on connection: BlockingConnection) throws(PostgresParticipantError) {
        try commitForced([endQuery(txid, state, heuristic: heuristic)], on: connection, begin: true)
    }

    /// Runs `statements` and commits them with `synchronous_commit` on (the WAL flushed before it
    /// returns), in one exchange; with `begin`, in a transaction of its own, else in the one the
    /// connection is in. On a failure the transaction is rolled back and the failure thrown.
    static func commitForced(_ statements: [PostgresStatement], on connection: BlockingConnection, begin: Bool) throws(PostgresParticipantError) {
        do throws(PostgresParticipantError) {
            let results = try connection.runPipelined((begin ? ["BEGIN"] : []) + ["SET LOCAL synchronous_commit = on"] + statements + ["COMMIT"])
            // COMMIT of a failed transaction answers ROLLBACK (the error came first, and is thrown).
            guard results.last?.command == "COMMIT" else {
                throw PostgresParticipantError(.statementFailed, "COMMIT answered \(results.last?.command ?? "nothing")")
            }
        } catch {
            connection.rollbackQuietly()
            throw error
        }
    }

    /// Recovery at start: rows `prepared` without a prepared transaction are recorded aborted (their
    /// stage never reached `PREPARE TRANSACTION`, or they were rolled back and the record was lost),
    /// then the transactions in doubt are read back, oldest first.
    static func recover(prefix: String, on connection: BlockingConnection) throws(PostgresParticipantError) -> Recovered {
        let head = prefix + ":"
        let orphans = try connection.run("""
            UPDATE arbiter_participant_transaction t SET state = 'aborted', ended_at = now()
            WHERE t.state = 'prepared' AND NOT EXISTS (
                SELECT 1 FROM pg_prepared_xacts p WHERE p.gid = \(head) || t.txid AND p.database = current_database())
            """).count
        let rows = try connection.run("""
            SELECT t.txid, t.state, t.coordinator, t.payload, t.heuristic, t.prepared_at, t.ended_at
            FROM arbiter_participant_transaction t JOIN pg_prepared_xacts p ON p.gid = \(head) || t.txid AND p.database = current_database()
            WHERE t.state = 'prepared' ORDER BY t.prepared_at, t.txid
            """).rows
        var transactions: [ParticipantTransaction] = []
        for row in rows { transactions.append(try decode(row)) }
        let unknown = try connection.run("""
            SELECT p.gid FROM pg_prepared_xacts p
            WHERE p.database = current_database() AND starts_with(p.gid, \(head)) AND NOT EXISTS (
                SELECT 1 FROM arbiter_participant_transaction t WHERE \(head) || t.txid = p.gid AND t.state = 'prepared')
            """).rows
        var gids: [String] = []
        for row in unknown {
            gids.append(try row.decode(String.self, column: 0))
        }
        return Recovered(transactions: transactions, orphanCount: orphans, unknownGIDs: gids)
    }

    /// A row of `txid, state, coordinator, payload, heuristic, prepared_at, ended_at`.
    static func decode(_ row: PostgresStageRow) throws(PostgresParticipantError) -> ParticipantTransaction {
        do throws(PostgresParticipantError) {
            let txid = try row.decode(String.self, column: 0)
            let state = try row.decode(String.self, column: 1)
            guard let parsedState = ParticipantTransactionState(rawValue: state) else {
                throw PostgresParticipantError(.schema, "transaction \(txid) has state \(state.debugDescription), not prepared, committed or aborted")
            }
            let id: TxID
            do {
                id = try TxID(txid)
            } catch {
                throw PostgresParticipantError(.schema, "transaction id \(txid.debugDescription) is not valid: \(error)")
            }
            return ParticipantTransaction(
                txid: id, state: parsedState, coordinator: try row.decode(String?.self, column: 2).map(CoordinatorID.init),
                payload: try row.decode(ByteBuffer?.self, column: 3).map { Payload(Array($0.readableBytesView)) },
                isHeuristic: try row.decode(Bool.self, column: 4),
                preparedAt: try row.decode(Date?.self, column: 5), endedAt: try row.decode(Date?.self, column: 6))
        } catch where error.code == .schema {
            throw error
        } catch {
            throw PostgresParticipantError(.schema, "a row of arbiter_participant_transaction does not decode: \(error.message)")
        }
    }
}

/// The storage's counters for `/metrics`, written by the loop's thread and read by scrapes.
final class SharedStatistics: Sendable {
    private let value = Mutex(StoreWriterStatistics())

    var snapshot: StoreWriterStatistics { value.withLock { $0 } }

    /// A round: its pieces, the WAL flushes they waited for (prepares, commits, forced records),
    /// the commits that did not wait, whether it failed whole, and how long it took.
    func record(pieces: Int, flushes: Int, lazy: Int, failed: Bool, duration: Duration) {
        value.withLock { statistics in
            statistics.pieceCount += pieces
            statistics.forcedTransactionCount += flushes
            statistics.lazyTransactionCount += lazy
            if failed { statistics.failedTransactionCount += 1 }
            statistics.transactionSizeLargest = max(statistics.transactionSizeLargest, pieces)
            let bucket = min(StoreWriterStatistics.histogramBucketCount - 1, max(0, Int.bitWidth - pieces.leadingZeroBitCount - 1))
            statistics.transactionSizeHistogram[bucket] += 1
            statistics.transactionDurationTotal += duration
        }
    }
}
