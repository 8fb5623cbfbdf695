public import ArbiterCore
public import ArbiterHTTP
import ArbiterStorage
import Foundation
public import Hummingbird
public import Logging
public import ServiceLifecycle

/// What the embedding service gets to add its own routes to a ``ParticipantNode``.
public struct ParticipantRoutes {
    /// A router group behind the protocol secret (`Authorization: Bearer <secret>`), under `/`.
    /// Errors thrown by handlers (`APIError` in particular) become JSON error responses.
    public let router: RouterGroup<BasicRequestContext>
    /// The participant's database, for the routes' reads and local writes.
    public let database: ParticipantDatabase
    /// The node's limits (``WireLimits/bodySizeMax`` is a sensible body limit for routes too).
    public let limits: WireLimits
    /// The node's logger.
    public let logger: Logger
}

/// A participant service: the participant half of the wire protocol (`schemas/openapi.yaml`) over
/// HTTP, driving a ``Resource`` with durable, crash-safe protocol state in the resource's own
/// SQLite database.
///
/// It serves, on ``ParticipantOptions/host``:``ParticipantOptions/port``:
/// - `POST /v1/prepare`, `/v1/commit`, `/v1/abort`, `/v1/batch` (protocol secret);
/// - `GET /healthz` and `GET /metrics` (Prometheus text: fsyncs and rounds, transactions by state,
///   locks, queues) (open);
/// - with an operator secret, `GET /v1/operator/in-doubt`, `GET /v1/operator/transactions/{txid}`,
///   `POST /v1/operator/transactions/{txid}/decide` (see ``HeuristicDecisionRequest``) and
///   `GET /v1/operator/audit` (operator secret, or a dashboard session), and the dashboard at
///   `GET /dashboard` (a login form for the operator secret, then a page listing the transactions
///   in doubt, with a guarded heuristic decision);
/// - the routes the service adds (protocol secret).
///
/// It is a swift-service-lifecycle `Service`: run it in a `ServiceGroup`, which stops it gracefully
/// on SIGTERM (the server stops accepting, answers the requests in flight, writes what is queued,
/// then closes the database). ``run()`` first reads the protocol records back and resumes every
/// transaction where it stood (prepared ones ask their coordinator at once), then serves.
///
/// ```swift
/// let node = try ParticipantNode(resource: BankResource(), options: options) { routes in
///     BankRoutes.add(to: routes)
/// }
/// try await ServiceGroup(services: [node], gracefulShutdownSignals: [.sigterm], logger: logger).run()
/// ```
///
/// A node runs once; make a new one (on the same data directory) to restart.
public final class ParticipantNode<R: Resource>: Service, Sendable {
    /// The resource this node drives.
    public let resource: R
    /// The options it was made with.
    public var options: ParticipantOptions { server.options }
    /// The participant's database, shared with the embedding service.
    public let database: ParticipantDatabase

    private let server: ParticipantServer

    /// Opens (or creates) the database in ``ParticipantOptions/dataDirectory`` and runs Arbiter's
    /// migrations, then the resource's. Nothing is served until ``run()``.
    ///
    /// - Parameter routes: Adds the service's own routes; called once by ``run()``.
    /// - Throws: ``ParticipantNodeError`` saying what to fix (options out of range, a directory that
    ///   cannot be created, a database that cannot be opened or migrated).
    public init(
        resource: R,
        options: ParticipantOptions,
        routes: @escaping @Sendable (_ routes: ParticipantRoutes) -> Void = { _ in }
    ) throws(ParticipantNodeError) {
        try ParticipantServer.validated(options)
        if let problem = options.databaseProblem() {
            throw ParticipantNodeError(.invalidOptions, problem)
        }
        do {
            try FileManager.default.createDirectory(atPath: options.dataDirectory, withIntermediateDirectories: true)
        } catch {
            throw ParticipantNodeError(.cannotOpenStorage,
                "cannot create the data directory \(options.dataDirectory) (\(error.localizedDescription)); create it or choose another",
                cause: error)
        }
        let path = (options.dataDirectory as NSString).appendingPathComponent(options.databaseFileName)
        let store: ParticipantStore
        do {
            store = try ParticipantStore(path: path, options: options.storage, migrations: { resource.migrate(&$0) })
        } catch {
            throw ParticipantNodeError(.cannotOpenStorage, error.message, cause: error)
        }
        let database = ParticipantDatabase(store: store)
        self.resource = resource
        self.database = database
        self.server = try ParticipantServer(backend: SQLiteParticipantBackend(resource: resource, store: store), options: options) { router in
            routes(ParticipantRoutes(router: router, database: database, limits: options.limits, logger: options.logger))
        }
    }

    /// Takes new client and operator tokens, for rotation without a restart (bank-node does on
    /// SIGHUP). The operator endpoints are served or not as decided at start: with no operator
    /// token at start they stay off.
    public func reloadCredentials(clientTokens: [NamedToken]?, operatorTokens: [NamedToken]) {
        server.reloadCredentials(clientTokens: clientTokens, operatorTokens: operatorTokens)
    }

    /// Waits until the node accepts connections and returns its port (the one the operating system
    /// chose when ``ParticipantOptions/port`` is 0).
    ///
    /// - Throws: ``ParticipantNodeError`` `notListening` when ``run()`` ended before it listened
    ///   (the error it ended with is the cause).
    public func waitUntilListening() async throws -> Int {
        try await server.waitUntilListening()
    }

    /// Where `txid` stands in the node's memory (`nil` when unknown), for tests and diagnostics.
    /// The database is the truth after a restart; this is the state machine's view.
    public func state(of txid: TxID) async -> ParticipantState? {
        await server.state(of: txid)
    }

    /// Whether ``run()`` was called (a node runs once).
    public var hasRun: Bool { server.hasRun }

    /// Recovers the protocol state, then serves until graceful shutdown or cancellation; closes
    /// the database before returning.
    ///
    /// - Throws: ``ParticipantNodeError`` `alreadyRun` on a second call, `cannotOpenStorage` when
    ///   the records cannot be read back; the HTTP server's error when it cannot listen (port in
    ///   use). A write that fails does not stop the node: the loop holds the round and retries it
    ///   with backoff, refusing prepares meanwhile (503 `storage_unavailable`, `GET /readyz` 503).
    public func run() async throws {
        try await server.run()
    }
}
