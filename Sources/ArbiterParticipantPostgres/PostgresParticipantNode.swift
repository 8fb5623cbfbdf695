public import ArbiterCore
public import ArbiterHTTP
public import ArbiterParticipant
public import ArbiterPostgres
import ArbiterStorage
import Foundation
public import Hummingbird
public import Logging
public import PostgresNIO
public import ServiceLifecycle

/// Where a PostgreSQL participant keeps its data and how it uses the database.
public struct PostgresParticipantSettings: Sendable {
    /// The database: the resource's tables and Arbiter's protocol tables.
    public var database: PostgresLocation
    /// The start of this node's prepared transactions' names (`PREPARE TRANSACTION
    /// '<prefix>:<txid>'`): 1–64 characters from `[A-Za-z0-9._-]`. Recovery takes the prepared
    /// transactions of `pg_prepared_xacts` with this prefix as this node's, so give every node that
    /// shares a PostgreSQL cluster its own. Default `arbiter`.
    public var gidPrefix: String
    /// Connections that stage, prepare and commit: how many pieces of a round run at once.
    /// Default 16.
    public var connectionCount: Int
    /// The most transactions prepared here at once; beyond, a prepare votes no. The node refuses
    /// to start when PostgreSQL's `max_prepared_transactions` is below it. Default 200: with clients that
    /// wait for the decision only, a participant holds up to about twice their concurrency prepared at
    /// once (the ones preparing, and the ones whose commit is on its way).
    public var preparedCountMax: Int
    /// How long a stage's statement waits for a row lock another transaction holds before it
    /// fails (SQLSTATE `55P03`) and the vote is `no`. Default 1 ms: a stage that waits holds up the
    /// rest of its round (the loop waits for every piece), and the commits in it keep their locks meanwhile.
    public var lockTimeout: Duration
    /// Connections of the operator routes and the service's own routes (a `PostgresClient`).
    /// Default 8.
    public var clientConnectionCountMax: Int

    /// Makes settings; every argument but `database` has the documented default.
    public init(database: PostgresLocation, gidPrefix: String = "arbiter", connectionCount: Int = 16, preparedCountMax: Int = 200,
                lockTimeout: Duration = .milliseconds(1), clientConnectionCountMax: Int = 8) {
        self.database = database
        self.gidPrefix = gidPrefix
        self.connectionCount = connectionCount
        self.preparedCountMax = preparedCountMax
        self.lockTimeout = lockTimeout
        self.clientConnectionCountMax = clientConnectionCountMax
    }

    /// The problem with these settings, if there is one.
    func problem() -> String? {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        if gidPrefix.isEmpty || gidPrefix.count > 64 || !gidPrefix.allSatisfy(allowed.contains) {
            return "gidPrefix \(gidPrefix.debugDescription) must be 1 to 64 characters from [A-Za-z0-9._-]"
        }
        if !(1...256).contains(connectionCount) { return "connectionCount is \(connectionCount); give 1 to 256" }
        if !(1...1_000_000).contains(preparedCountMax) { return "preparedCountMax is \(preparedCountMax); give 1 to 1000000" }
        if lockTimeout < .milliseconds(1) || lockTimeout > .seconds(60) { return "lockTimeout is \(lockTimeout); give 1 ms to 60 s" }
        if !(1...256).contains(clientConnectionCountMax) { return "clientConnectionCountMax is \(clientConnectionCountMax); give 1 to 256" }
        return nil
    }
}

/// What the embedding service gets to add its own routes to a ``PostgresParticipantNode``.
public struct PostgresParticipantRoutes {
    /// A router group behind the client tokens (the protocol secret without them), under `/`.
    public let router: RouterGroup<BasicRequestContext>
    /// A pool of connections to the participant's database, for the routes' reads and local
    /// writes (each outside any distributed transaction).
    public let client: PostgresClient
    /// The node's limits.
    public let limits: WireLimits
    /// The node's logger.
    public let logger: Logger
}

/// A participant service whose data lives in PostgreSQL: the same wire protocol, operator routes,
/// dashboard and metrics as ``ArbiterParticipant/ParticipantNode``, driving a
/// ``PostgresResource`` whose stage is ordinary SQL in a PostgreSQL transaction that the node
/// prepares (`PREPARE TRANSACTION`) and later commits (`COMMIT PREPARED`) or rolls back
/// (`ROLLBACK PREPARED`).
///
/// ``run()`` checks `max_prepared_transactions`, migrates Arbiter's tables and the resource's,
/// reads the transactions in doubt back from `pg_prepared_xacts` (they ask their coordinator at
/// once), then serves. The options' `dataDirectory`, `databaseFileName` and `storage` are
/// SQLite's and unused here.
///
/// ```swift
/// let settings = PostgresParticipantSettings(database: try PostgresLocation(url: "postgres://bank@127.0.0.1:5432/bank"))
/// let node = try PostgresParticipantNode(resource: PostgresBankResource(), options: options, postgres: settings) { routes in
///     PostgresBankRoutes.add(to: routes)
/// }
/// try await ServiceGroup(services: [node], gracefulShutdownSignals: [.sigterm], logger: logger).run()
/// ```
///
/// A node runs once; make a new one on the same database to restart.
public final class PostgresParticipantNode<R: PostgresResource>: Service, Sendable {
    /// The resource this node drives.
    public let resource: R
    /// The database settings it was made with.
    public let settings: PostgresParticipantSettings
    /// The options it was made with.
    public var options: ParticipantOptions { server.options }
    /// The node's pool of connections for reads and the service's own writes (running while the
    /// node runs).
    public let client: PostgresClient

    private let backend: PostgresParticipantBackend<R>
    private let server: ParticipantServer

    /// Checks the options; connects to nothing until ``run()``.
    ///
    /// - Throws: ``ArbiterParticipant/ParticipantNodeError`` `invalidOptions` saying what to fix.
    public init(
        resource: R,
        options: ParticipantOptions,
        postgres settings: PostgresParticipantSettings,
        routes: @escaping @Sendable (_ routes: PostgresParticipantRoutes) -> Void = { _ in }
    ) throws(ParticipantNodeError) {
        if let problem = settings.problem() { throw ParticipantNodeError(.invalidOptions, problem) }
        var configuration = PostgresClient.Configuration(
            host: settings.database.host, port: settings.database.port, username: settings.database.user,
            password: settings.database.password, database: settings.database.database, tls: .disable)
        configuration.options.maximumConnections = settings.clientConnectionCountMax
        configuration.options.connectTimeout = .seconds(5)
        let client = PostgresClient(configuration: configuration, backgroundLogger: options.logger)
        let backend = PostgresParticipantBackend(resource: resource, settings: settings, client: client, logger: options.logger)
        self.resource = resource
        self.settings = settings
        self.client = client
        self.backend = backend
        self.server = try ParticipantServer(backend: backend, options: options) { router in
            routes(PostgresParticipantRoutes(router: router, client: client, limits: options.limits, logger: options.logger))
        }
    }

    /// Takes new client and operator tokens, for rotation without a restart.
    public func reloadCredentials(clientTokens: [NamedToken]?, operatorTokens: [NamedToken]) {
        server.reloadCredentials(clientTokens: clientTokens, operatorTokens: operatorTokens)
    }

    /// Waits until the node accepts connections and returns its port.
    ///
    /// - Throws: ``ArbiterParticipant/ParticipantNodeError`` `notListening` when ``run()`` ended
    ///   before it listened (a database that cannot be reached or is misconfigured: the cause says).
    public func waitUntilListening() async throws -> Int {
        try await server.waitUntilListening()
    }

    /// Where `txid` stands in the node's memory (`nil` when unknown).
    public func state(of txid: TxID) async -> ParticipantState? {
        await server.state(of: txid)
    }

    /// Whether ``run()`` was called (a node runs once).
    public var hasRun: Bool { server.hasRun }

    /// Checks the database, migrates, recovers, then serves until graceful shutdown or
    /// cancellation.
    ///
    /// - Throws: ``ArbiterParticipant/ParticipantNodeError`` `cannotOpenStorage` when the database
    ///   cannot be reached, has `max_prepared_transactions` below ``PostgresParticipantSettings/preparedCountMax``,
    ///   or cannot be migrated (the message says what to do); the HTTP server's error when it cannot
    ///   listen.
    public func run() async throws {
        // The client runs once too: a second run is refused before it is started again.
        guard !server.hasRun else {
            throw ParticipantNodeError(.alreadyRun, "this node has run already; make a new PostgresParticipantNode on the same database to restart")
        }
        let client = self.client
        let backend = self.backend
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            do {
                try await server.run(after: {
                    do {
                        try await backend.prepareDatabase()
                    } catch {
                        throw ParticipantNodeError(.cannotOpenStorage, "\(error)")
                    }
                })
            } catch {
                group.cancelAll()
                throw error
            }
            group.cancelAll()
        }
    }
}
