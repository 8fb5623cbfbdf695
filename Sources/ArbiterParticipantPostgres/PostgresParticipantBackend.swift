import ArbiterCore
import ArbiterParticipant
import ArbiterPostgres
import ArbiterRuntime
import ArbiterStorage
import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization
import Tracing

/// A participant node's state on PostgreSQL: the loop's storage on worker connections
/// (``PostgresParticipantStorage``), the operators' reads and the start-up checks on a
/// `PostgresClient` (async, never blocking a thread).
final class PostgresParticipantBackend<R: PostgresResource>: ParticipantBackend {
    let resource: R
    let settings: PostgresParticipantSettings
    let client: PostgresClient
    let logger: Logger
    private let counters = SharedStatistics()
    /// The loop's workers, once the node has started.
    private let workers = Mutex<Workers?>(nil)

    static var component: String { "participant-postgres" }
    /// The schema versions this build knows, in order.
    static var migrations: [(version: Int, sql: String)] {
        [(1, ParticipantPostgresSchemas.participantPostgres), (2, ParticipantPostgresSchemas.participantPostgresV2)]
    }
    /// `pg_advisory_xact_lock`'s key while migrating ("ArbiterP").
    static var migrationLock: Int64 { 0x4172_6269_7465_7250 }

    init(resource: R, settings: PostgresParticipantSettings, client: PostgresClient, logger: Logger) {
        self.resource = resource
        self.settings = settings
        self.client = client
        self.logger = logger
    }

    var location: String { settings.database.description }
    private var head: String { settings.gidPrefix + ":" }

    // MARK: - Start-up

    /// Checks the server's settings, then migrates Arbiter's tables and the resource's, once,
    /// under an advisory lock. On a connection of its own, on a thread of its own (it blocks), so
    /// that a database that cannot be reached fails the start at once instead of being waited for.
    func prepareDatabase() async throws {
        let location = settings.database
        let preparedCountMax = settings.preparedCountMax
        let migrations = resource.migrations
        let prefix = settings.gidPrefix
        let logger = self.logger
        let result: Result<Void, PostgresParticipantError> = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                let connection = BlockingConnection(location: location, lockTimeout: .seconds(60), logger: logger)
                defer { connection.close() }
                continuation.resume(returning: Result { () throws(PostgresParticipantError) in
                    try Self.check(connection, preparedCountMax: preparedCountMax)
                    try Self.migrate(connection, resourceMigrations: migrations, prefix: prefix)
                })
            }
        }
        try result.get()
    }

    private static func check(_ connection: BlockingConnection, preparedCountMax: Int) throws(PostgresParticipantError) {
        let location = connection.location
        let limit = try decoding(connection.run("SHOW max_prepared_transactions").rows.first, as: String.self).flatMap { Int($0) } ?? 0
        guard limit > 0 else {
            throw PostgresParticipantError(.misconfigured, """
                \(location) has max_prepared_transactions = 0, so it cannot prepare transactions (PREPARE TRANSACTION). \
                Set max_prepared_transactions to at least \(preparedCountMax) (the participant's preparedCountMax) in \
                postgresql.conf and restart PostgreSQL
                """)
        }
        guard limit >= preparedCountMax else {
            throw PostgresParticipantError(.misconfigured, """
                \(location) has max_prepared_transactions = \(limit), below the participant's preparedCountMax \
                (\(preparedCountMax)). Raise max_prepared_transactions in postgresql.conf (and restart PostgreSQL), \
                or lower preparedCountMax (bank-node: --postgres-prepared-max)
                """)
        }
    }

    private static func migrate(_ connection: BlockingConnection, resourceMigrations: [PostgresMigration], prefix: String) throws(PostgresParticipantError) {
        let location = connection.location
        try connection.run("CREATE TABLE IF NOT EXISTS arbiter_schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        try connection.run("BEGIN")
        do throws(PostgresParticipantError) {
            try connection.run("SELECT pg_advisory_xact_lock(\(migrationLock))")
            let current = try decoding(connection.run(
                "SELECT version FROM arbiter_schema_version WHERE component = \(component)").rows.first, as: Int.self) ?? 0
            let known = migrations.last!.version
            guard current <= known else {
                throw PostgresParticipantError(.schema, """
                    \(location) holds version \(current) of the participant's schema; this Arbiter knows up to \(known): upgrade Arbiter
                    """)
            }
            for migration in migrations where migration.version > current {
                try connection.script(migration.sql)
                try connection.run("""
                    INSERT INTO arbiter_schema_version (component, version) VALUES (\(component), \(migration.version))
                    ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version
                    """)
            }
            try connection.run("INSERT INTO arbiter_participant_node (gid_prefix) VALUES (\(prefix)) ON CONFLICT DO NOTHING")
            let owner = try decoding(connection.run("SELECT gid_prefix FROM arbiter_participant_node").rows.first, as: String.self)
            guard owner == prefix else {
                throw PostgresParticipantError(.invalidOptions, """
                    \(location) belongs to the participant whose prepared transactions are named \(owner ?? "?"):…, not \(prefix):…; \
                    start it with that prefix (bank-node: --postgres-gid-prefix), or give this node a database of its own
                    """)
            }
            var applied: Set<String> = []
            for row in try connection.run("SELECT name FROM arbiter_participant_migration").rows {
                if let name = try decoding(row, as: String.self) { applied.insert(name) }
            }
            for migration in resourceMigrations where !applied.contains(migration.name) {
                guard !migration.name.hasPrefix("arbiter.") else {
                    throw PostgresParticipantError(.schema, "the resource's migration \(migration.name) starts with `arbiter.`, which is Arbiter's; rename it")
                }
                do {
                    try connection.script(migration.sql)
                } catch {
                    throw PostgresParticipantError(.schema, "the resource's migration \(migration.name) failed: \(error.message)", sqlState: error.sqlState)
                }
                try connection.run("INSERT INTO arbiter_participant_migration (name) VALUES (\(migration.name))")
            }
            try connection.run("COMMIT")
        } catch {
            connection.rollbackQuietly()
            throw error
        }
    }

    /// The first column of `row`, when there is a row.
    private static func decoding<T: PostgresDecodable>(_ row: PostgresStageRow?, as type: T.Type) throws(PostgresParticipantError) -> T? {
        guard let row else { return nil }
        do {
            return try row.decode(T.self, column: 0)
        } catch {
            throw PostgresParticipantError(.schema, "an answer of \(T.self) did not decode: \(error.message)")
        }
    }

    // MARK: - ParticipantBackend

    func makeStorage(retention: Duration, traceContext: @escaping @Sendable (TxID) -> ServiceContext?) throws -> any ParticipantStorage {
        let location = settings.database
        let lockTimeout = settings.lockTimeout
        let logger = self.logger
        let pool = Workers(count: settings.connectionCount, name: "arbiter-pg") {
            BlockingConnection(location: location, lockTimeout: lockTimeout, logger: logger)
        }
        workers.withLock { $0 = pool }
        return PostgresParticipantStorage(resource: resource, workers: pool, prefix: settings.gidPrefix,
                                          preparedCountMax: settings.preparedCountMax, retention: retention,
                                          statistics: counters, logger: logger)
    }

    /// Bounded by a few seconds: the client's pool waits for a connection as long as the database
    /// is away, and a probe must answer (it decides whether a prepare is refused at once).
    func probe() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await self.rows("UPDATE arbiter_schema_version SET version = version WHERE component = \(Self.component)")
            }
            group.addTask {
                try await Task.sleep(for: .seconds(3))
                throw PostgresParticipantError(.unavailable, "\(self.location) did not answer within 3 s")
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    func prepared() async throws -> [ParticipantTransaction] {
        try await rows("""
            SELECT t.txid, t.state, t.coordinator, t.payload, t.heuristic, t.prepared_at, t.ended_at
            FROM arbiter_participant_transaction t JOIN pg_prepared_xacts p ON p.gid = \(head) || t.txid AND p.database = current_database()
            WHERE t.state = 'prepared' ORDER BY t.prepared_at, t.txid
            """).map { row throws(PostgresParticipantError) in try Rows.decode(PostgresStageRow(row)) }
    }

    func transaction(_ txid: TxID) async throws -> ParticipantTransaction? {
        try await rows("""
            SELECT txid, state, coordinator, payload, heuristic, prepared_at, ended_at FROM arbiter_participant_transaction WHERE txid = \(txid.rawValue)
            """).first.map { row throws(PostgresParticipantError) in try Rows.decode(PostgresStageRow(row)) }
    }

    /// The tables whose rows the prepared transaction holds, as `table (mode)`: PostgreSQL lists a
    /// prepared transaction's table locks, not its row locks (those live in the rows), so this says
    /// where its locked rows are. Arbiter's own table is left out.
    func locks(of txid: TxID) async throws -> [String] {
        try await rows("""
            SELECT DISTINCT c.relname || ' (' || l.mode || ')'
            FROM pg_prepared_xacts p
            JOIN pg_locks own ON own.locktype = 'transactionid' AND own.transactionid = p.transaction AND own.pid IS NULL
            JOIN pg_locks l ON l.virtualtransaction = own.virtualtransaction AND l.pid IS NULL AND l.locktype = 'relation'
            JOIN pg_class c ON c.oid = l.relation AND c.relkind = 'r' AND c.relname <> 'arbiter_participant_transaction'
            WHERE p.gid = \(head + txid.rawValue) AND p.database = current_database()
            ORDER BY 1
            """).map { row in try row.decode(String.self) }
    }

    func census(countingEnded: Bool) async throws -> ParticipantCensus {
        var census = ParticipantCensus()
        // The table locks of this node's prepared transactions (see `locks(of:)`).
        for row in try await rows("""
            SELECT count(*) FROM pg_prepared_xacts p
            JOIN pg_locks own ON own.locktype = 'transactionid' AND own.transactionid = p.transaction AND own.pid IS NULL
            JOIN pg_locks l ON l.virtualtransaction = own.virtualtransaction AND l.pid IS NULL AND l.locktype = 'relation'
            JOIN pg_class c ON c.oid = l.relation AND c.relkind = 'r' AND c.relname <> 'arbiter_participant_transaction'
            WHERE starts_with(p.gid, \(head)) AND p.database = current_database()
            """) {
            census.locks = try row.decode(Int.self)
        }
        for row in try await rows("""
            SELECT count(*), min(t.prepared_at)
            FROM arbiter_participant_transaction t JOIN pg_prepared_xacts p ON p.gid = \(head) || t.txid AND p.database = current_database()
            WHERE t.state = 'prepared'
            """) {
            let (count, oldest) = try row.decode((Int, Date?).self)
            census.prepared = count
            census.oldestPreparedAt = oldest
        }
        if countingEnded {
            for row in try await rows("""
                SELECT count(*) FILTER (WHERE state = 'committed'), count(*) FILTER (WHERE state = 'aborted') FROM arbiter_participant_transaction
                """) {
                (census.committed, census.aborted) = try row.decode((Int, Int).self)
            }
        }
        return census
    }

    func beginOperatorAction(actor: String, action: String, txid: TxID, reason: String) async throws -> Int64 {
        // The client's connections commit with synchronous_commit on: the row is durable on return.
        for row in try await rows("""
            INSERT INTO arbiter_participant_operator_action (actor, action, txid, reason)
            VALUES (\(actor), \(action), \(txid.rawValue), \(reason)) RETURNING id
            """) {
            return try row.decode(Int64.self)
        }
        throw PostgresParticipantError(.statementFailed, "recording the operator's action returned no id")
    }

    func finishOperatorAction(_ id: Int64, result: String) async throws {
        try await rows("UPDATE arbiter_participant_operator_action SET result = \(result) WHERE id = \(id)")
    }

    func operatorActions(limit: Int, before: Int64?) async throws -> [OperatorAction] {
        try await rows("""
            SELECT id, at, actor, action, txid, reason, result FROM arbiter_participant_operator_action
            WHERE id < \(before ?? Int64.max) ORDER BY id DESC LIMIT \(limit)
            """).map { row in
            let (id, at, actor, action, txid, reason, result) = try row.decode((Int64, Date, String, String, String, String, String?).self)
            return OperatorAction(id: id, at: at, actor: actor, action: action, txid: txid, reason: reason, result: result)
        }
    }

    var statistics: StoreWriterStatistics { counters.snapshot }

    func close() async throws {
        guard let pool = workers.withLock({ $0 }) else { return }
        // Stopping waits for the workers' threads: not on Swift's cooperative pool.
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                pool.stop()
                continuation.resume()
            }
        }
    }

    /// Runs `query` on the client and collects its rows.
    @discardableResult
    private func rows(_ query: PostgresQuery) async throws -> [PostgresRow] {
        var collected: [PostgresRow] = []
        for try await row in try await client.query(query, logger: logger) { collected.append(row) }
        return collected
    }
}
