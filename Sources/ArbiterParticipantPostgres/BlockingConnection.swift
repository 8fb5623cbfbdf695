import ArbiterPostgres
import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Synchronization

/// One connection to the participant's database, used from one thread at a time, blocking: the
/// participant's loop and its workers run on threads of their own (never on an event loop or
/// Swift's cooperative pool), so each call waits for its answer. A broken connection is dropped
/// and the next call opens a new one; the call that found it broken throws `unavailable`.
///
/// Every connection it opens runs with `synchronous_commit = off` and the participant's
/// `lock_timeout`: only `PREPARE TRANSACTION`, `COMMIT PREPARED` and `ROLLBACK PREPARED` (which
/// PostgreSQL always flushes) and the transactions that set `synchronous_commit` back on locally
/// wait for the WAL to reach the disk. A lazy commit becomes durable with the next flush, since
/// the WAL is one ordered file.
final class BlockingConnection {
    let location: PostgresLocation
    private let lockTimeout: Duration
    private let logger: Logger
    private let eventLoop: any EventLoop
    private var connection: PostgresConnection?
    private static let ids = IDSource()

    init(location: PostgresLocation, lockTimeout: Duration, logger: Logger) {
        self.location = location
        self.lockTimeout = lockTimeout
        self.logger = logger
        eventLoop = MultiThreadedEventLoopGroup.singleton.next()
    }

    deinit {
        // Never waits here; PostgresNIO requires a connection be closed before it goes.
        if let connection, !connection.isClosed {
            connection.close().whenComplete { _ in withExtendedLifetime(connection) {} }
        }
    }

    /// Closes the connection and waits for it.
    func close() {
        if let connection { drop(connection) }
    }

    /// Runs `query`; returns its rows and, for an INSERT, UPDATE or DELETE, the rows it changed.
    @discardableResult
    func run(_ query: PostgresQuery) throws(PostgresParticipantError) -> (rows: [PostgresRow], count: Int) {
        let connection = try connected()
        do {
            let result = try connection.query(query, logger: logger).wait()
            return (result.rows, result.metadata.rows ?? result.rows.count)
        } catch {
            throw failure(error, connection)
        }
    }

    /// Queues `queries` on the connection at once, then waits for all of them: one wake-up of this
    /// thread instead of one per statement. (postgres-nio still sends each query only once the
    /// previous one has answered, so each costs a round trip to the server.) Returns each one's rows, changed-row count and command tag; throws the first
    /// failure (a statement after a failed one in the same transaction fails too, or, for
    /// `PREPARE TRANSACTION` in a failed transaction, rolls it back: callers check the tag).
    func runPipelined(_ queries: [PostgresQuery]) throws(PostgresParticipantError) -> [(rows: [PostgresRow], count: Int, command: String)] {
        let connection = try connected()
        let futures = queries.map { connection.query($0, logger: logger) }
        var results: [(rows: [PostgresRow], count: Int, command: String)] = []
        var firstError: (any Error)?
        for future in futures {
            do {
                let result = try future.wait()
                results.append((result.rows, result.metadata.rows ?? result.rows.count, result.metadata.command))
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        if let firstError { throw failure(firstError, connection) }
        return results
    }

    /// Runs `sql` (no binds), which may hold several statements separated by `;` at line ends.
    func script(_ sql: String) throws(PostgresParticipantError) {
        for statement in Self.statements(sql) {
            try run(PostgresQuery(unsafeSQL: statement))
        }
    }

    /// Rolls back whatever transaction the connection is in, ignoring errors (a broken connection
    /// has lost its transaction anyway).
    func rollbackQuietly() {
        guard let connection, !connection.isClosed else { return }
        _ = try? run("ROLLBACK")
    }

    /// The statements of a script: split after each `;` that ends a line outside a `$$` body;
    /// comment lines are dropped.
    static func statements(_ sql: String) -> [String] {
        var statements: [String] = []
        var current: [Substring] = []
        var inBody = false
        for line in sql.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if !inBody, trimmed.hasPrefix("--") || trimmed.isEmpty { continue }
            current.append(line)
            if line.split(separator: "$$", omittingEmptySubsequences: false).count % 2 == 0 { inBody.toggle() }
            if !inBody, trimmed.hasSuffix(";") {
                statements.append(current.joined(separator: "\n"))
                current.removeAll()
            }
        }
        let rest = current.joined(separator: "\n")
        if rest.contains(where: { !$0.isWhitespace }) { statements.append(rest) }
        return statements
    }

    private func connected() throws(PostgresParticipantError) -> PostgresConnection {
        if let connection, !connection.isClosed { return connection }
        if let connection { drop(connection) }
        var configuration = PostgresConnection.Configuration(
            host: location.host, port: location.port, username: location.user, password: location.password,
            database: location.database, tls: .disable)
        configuration.options.connectTimeout = .seconds(5)
        let opened: PostgresConnection
        do {
            opened = try PostgresConnection.connect(on: eventLoop, configuration: configuration, id: Self.ids.next(), logger: logger).wait()
        } catch {
            throw PostgresParticipantError(.unavailable, "cannot connect to \(location) (\(Self.describe(error))); check that it is up and reachable")
        }
        connection = opened
        do {
            let timeout = max(1, Int(lockTimeout.components.seconds * 1000 + lockTimeout.components.attoseconds / 1_000_000_000_000_000))
            _ = try opened.query("SET synchronous_commit = off", logger: logger).wait()
            _ = try opened.query(PostgresQuery(unsafeSQL: "SET lock_timeout = \(timeout)"), logger: logger).wait()
        } catch {
            throw failure(error, opened)
        }
        return opened
    }

    /// A statement's error: the server's message when it sent one (the connection stays), else
    /// the connection is dropped and the database counts as unavailable.
    private func failure(_ error: any Error, _ connection: PostgresConnection) -> PostgresParticipantError {
        if let error = error as? PSQLError, let message = error.serverInfo?[.message] {
            let code = error.serverInfo?[.sqlState] ?? ""
            // 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now, 08*: connection.
            if code.hasPrefix("08") || code.hasPrefix("57P") {
                drop(connection)
                return PostgresParticipantError(.unavailable, "\(message) (SQLSTATE \(code))", sqlState: code)
            }
            return PostgresParticipantError(.statementFailed, message, sqlState: code)
        }
        drop(connection)
        return PostgresParticipantError(.unavailable, Self.describe(error))
    }

    /// Forgets a broken connection (closed first: PostgresNIO requires it).
    private func drop(_ broken: PostgresConnection) {
        if !broken.isClosed { try? broken.close().wait() }
        if connection === broken { connection = nil }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] { return message }
            return error.underlying.map { "\(error.code): \($0)" } ?? "\(error.code)"
        }
        return "\(error)"
    }
}

/// Connection ids for PostgresNIO's logs.
private final class IDSource: Sendable {
    private let counter = Mutex(0)
    func next() -> Int { counter.withLock { $0 += 1; return $0 } }
}
