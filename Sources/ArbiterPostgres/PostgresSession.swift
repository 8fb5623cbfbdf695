public import Foundation
public import Logging
import NIOCore
import NIOPosix
import PostgresNIO

/// Where a PostgreSQL database is: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (or
/// `postgresql://`). The password may instead come from a file or from `PGPASSWORD`; it never
/// appears in ``description`` nor in a log line.
public struct PostgresLocation: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String

    /// Parses `url`; `password` (from a file or the environment) is used when the URL has none.
    public init(url: String, password: String? = nil) throws(PostgresStoreError) {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
              scheme == "postgres" || scheme == "postgresql"
        else { throw .badLocation("\(Self.redacted(url)) is not a postgres://USER@HOST:PORT/DATABASE URL") }
        guard let host = components.host, !host.isEmpty else { throw .badLocation("\(Self.redacted(url)) names no host") }
        guard let user = components.user, !user.isEmpty else { throw .badLocation("\(Self.redacted(url)) names no user (postgres://USER@HOST/DATABASE)") }
        let database = String(components.path.drop { $0 == "/" })
        guard !database.isEmpty, !database.contains("/") else { throw .badLocation("\(Self.redacted(url)) names no database (…/DATABASE)") }
        self.host = host
        self.port = components.port ?? 5432
        self.user = user.removingPercentEncoding ?? user
        self.password = components.password.map { $0.removingPercentEncoding ?? $0 } ?? password
        self.database = database
    }

    /// The URL without its password.
    public var description: String { "postgres://\(user)@\(host):\(port)/\(database)" }

    static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "***"
        return components.string ?? "(a URL with a password)"
    }
}

/// What went wrong with the PostgreSQL store, and what to do about it.
public enum PostgresStoreError: Error, CustomStringConvertible, Sendable {
    /// The `--store` URL cannot be used.
    case badLocation(String)
    /// The database cannot be reached or refused the login; the operation may be retried.
    case unavailable(String)
    /// A statement failed.
    case failed(String)
    /// The database holds a schema this version does not know (written by a newer Arbiter).
    case schema(String)

    public var description: String {
        switch self {
        case .badLocation(let text): return "bad PostgreSQL location: \(text)"
        case .unavailable(let text): return "PostgreSQL unavailable: \(text) (retried; check that the database is up and reachable)"
        case .failed(let text): return "PostgreSQL statement failed: \(text)"
        case .schema(let text): return "PostgreSQL schema: \(text)"
        }
    }
}

/// One connection to PostgreSQL used from one thread at a time, blocking: the coordinator's loop
/// runs its rounds on a thread of its own, so each call waits for its answer. A broken
/// connection (the server restarted, the network cut) is dropped and the next call opens a new
/// one; the call that found it broken throws ``PostgresStoreError/unavailable(_:)``.
final class PostgresSession: @unchecked Sendable {
    let location: PostgresLocation
    private let logger: Logger
    private let eventLoop: any EventLoop
    private var connection: PostgresConnection?
    private var nextID = 0

    init(location: PostgresLocation, logger: Logger) {
        self.location = location
        self.logger = logger
        eventLoop = MultiThreadedEventLoopGroup.singleton.next()
    }

    deinit {
        // Never waits here: the last reference may go on an event loop. The close runs on the
        // connection's own loop, which keeps it alive until it is closed (PostgresNIO requires a
        // connection be closed before it goes).
        if let connection, !connection.isClosed {
            connection.close().whenComplete { _ in withExtendedLifetime(connection) {} }
        }
    }

    /// Closes the connection and waits for it (call from the thread that uses the session).
    func close() {
        if let connection { drop(connection) }
    }

    /// Runs `query` and returns its rows.
    @discardableResult
    func query(_ query: PostgresQuery) throws(PostgresStoreError) -> [PostgresRow] {
        let connection = try connected()
        do {
            return Array(try connection.query(query, logger: logger).wait().rows)
        } catch {
            throw failure(error, connection)
        }
    }

    /// Runs `sql`, which may hold several statements, one after the other (no binds).
    func script(_ sql: String) throws(PostgresStoreError) {
        for statement in Self.statements(sql) {
            try query(PostgresQuery(unsafeSQL: statement))
        }
    }

    /// The statements of a script: split after each `;` that ends a line outside a `$$` body;
    /// comment lines are dropped.
    static func statements(_ sql: String) -> [String] {
        var statements: [String] = []
        var current: [Substring] = []
        var inBody = false
        for line in sql.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if !inBody, trimmed.hasPrefix("--") || trimmed.isEmpty { continue }
            current.append(line)
            if line.components(separatedBy: "$$").count % 2 == 0 { inBody.toggle() }
            if !inBody, trimmed.hasSuffix(";") {
                statements.append(current.joined(separator: "\n"))
                current.removeAll()
            }
        }
        let rest = current.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
        if !rest.isEmpty { statements.append(rest) }
        return statements
    }

    private func connected() throws(PostgresStoreError) -> PostgresConnection {
        if let connection, !connection.isClosed { return connection }
        if let connection { drop(connection) }
        nextID += 1
        var configuration = PostgresConnection.Configuration(
            host: location.host, port: location.port, username: location.user, password: location.password,
            database: location.database, tls: .disable)
        configuration.options.connectTimeout = .seconds(5)
        do {
            let opened = try PostgresConnection.connect(on: eventLoop, configuration: configuration, id: nextID, logger: logger).wait()
            connection = opened
            return opened
        } catch {
            throw .unavailable("cannot connect to \(location): \(Self.describe(error))")
        }
    }

    /// A statement's error: the server's message when it sent one (the connection stays), else
    /// the connection is dropped and the store counts as unavailable.
    private func failure(_ error: any Error, _ connection: PostgresConnection) -> PostgresStoreError {
        if let error = error as? PSQLError, let message = error.serverInfo?[.message] {
            let code = error.serverInfo?[.sqlState] ?? ""
            // 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now, 08*: connection.
            if code.hasPrefix("08") || code.hasPrefix("57P") {
                drop(connection)
                return .unavailable("\(message) (\(code))")
            }
            return .failed("\(message) (\(code))")
        }
        drop(connection)
        return .unavailable(Self.describe(error))
    }

    /// Forgets a broken connection (closed first: PostgresNIO requires it).
    private func drop(_ broken: PostgresConnection) {
        if !broken.isClosed { try? broken.close().wait() }
        if connection === broken { connection = nil }
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            return error.serverInfo?[.message] ?? "\(error.code)"
        }
        return "\(error)"
    }
}
