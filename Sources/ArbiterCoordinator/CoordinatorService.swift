import ArbiterCore
public import ArbiterHTTP
import ArbiterPostgres
import ArbiterRuntime
import ArbiterStorage
import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
public import ServiceLifecycle
import Synchronization

/// The coordinator as a service: opens the decision log, recovers every unfinished transaction,
/// serves the HTTP API, and drives the protocol until shut down.
///
/// Run it under a `ServiceGroup`; on graceful shutdown (SIGTERM) it stops accepting requests,
/// lets the ones in flight finish, flushes what is left to write or send (bounded), and closes the
/// log. A kill at any instant loses nothing that was reported: recovery at the next start finishes
/// every transaction.
public final class CoordinatorService: Service, Sendable {
    public let options: CoordinatorOptions
    private let bound = Mutex<Int?>(nil)
    private let boundWaiters = Mutex<[CheckedContinuation<Int, Never>]>([])
    /// Waiters of ``listeningPort()``, and whether ``run()`` has ended (they then get `nil`).
    private let listening = Mutex<(waiters: [CheckedContinuation<Int?, Never>], ended: Bool)>(([], false))

    /// The credentials accepted, by role; replaced by ``reloadCredentials(clientTokens:operatorTokens:)``.
    private let keyring: Keyring

    public init(options: CoordinatorOptions) {
        self.options = options
        self.keyring = Keyring(Self.roles(options, clientTokens: options.clientTokens, operatorTokens: options.operatorTokens))
    }

    /// Takes new client and operator tokens and the registry's current participant credentials
    /// (call ``ParticipantRegistry/reload()`` first), for rotation without a restart. Requests
    /// already admitted are not affected.
    public func reloadCredentials(clientTokens: [NamedToken]?, operatorTokens: [NamedToken]) {
        keyring.replace(Self.roles(options, clientTokens: clientTokens, operatorTokens: operatorTokens))
    }

    /// Who may do what: clients submit and read (the protocol secret stands in for them in the
    /// single-secret mode), participants inquire with the protocol secret or their own, operators
    /// list.
    private static func roles(
        _ options: CoordinatorOptions, clientTokens: [NamedToken]?, operatorTokens: [NamedToken]
    ) -> [CredentialRole: [NamedToken]] {
        let shared = NamedToken(name: "protocol", secret: options.secret)
        return [
            .client: clientTokens ?? [shared],
            .participant: [shared] + options.participants.participantTokens,
            .operator: operatorTokens,
        ]
    }

    /// The port the server listens on, once it does (useful with port 0).
    public func boundPort() async -> Int {
        await withCheckedContinuation { continuation in
            let port = bound.withLock { $0 }
            if let port { continuation.resume(returning: port); return }
            boundWaiters.withLock { $0.append(continuation) }
            if let port = bound.withLock({ $0 }) { resumeWaiters(port) }
        }
    }

    /// The port the server listens on, once it does; `nil` when ``run()`` ended without listening
    /// (the port was in use, the log could not be opened). Unlike ``boundPort()``, it never waits
    /// for a service that has stopped.
    public func listeningPort() async -> Int? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Int?, Never>) in
            let ready = listening.withLock { listening -> Int?? in
                if let port = bound.withLock({ $0 }) { return .some(port) }
                if listening.ended { return .some(nil) }
                listening.waiters.append(continuation)
                return .none
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    private func resumeWaiters(_ port: Int) {
        let waiters = boundWaiters.withLock { waiters in
            defer { waiters.removeAll() }
            return waiters
        }
        for waiter in waiters { waiter.resume(returning: port) }
        resumeListeningWaiters(port)
    }

    private func resumeListeningWaiters(_ port: Int?) {
        let waiters = listening.withLock { listening in
            defer { listening.waiters.removeAll() }
            if port == nil { listening.ended = true }
            return listening.waiters
        }
        for waiter in waiters { waiter.resume(returning: port) }
    }

    public func run() async throws {
        // Whatever way run() ends, nobody waits for a port any more.
        defer { resumeListeningWaiters(nil) }
        let logger = options.logger
        let clientTLS = try options.tls?.clientTLS()
        let server = try ServerTransport.builder(tls: options.tls, limits: options.connectionLimits, logger: logger)
        let scheme = options.tls?.scheme ?? "http"
        try FileManager.default.createDirectory(atPath: options.dataDirectory, withIntermediateDirectories: true)
        let log = try DecisionLog(path: options.dataDirectory + "/coordinator.sqlite")
        let httpClient = HTTPClientSettings().makeClient(tls: clientTLS)
        let connections = HTTP1Connections(tls: clientTLS)
        let (jobs, jobQueue) = AsyncStream.makeStream(of: (@Sendable () async -> Void).self)
        let metrics = CoordinatorMetrics()
        let advertised = options.advertisedURL ?? "\(scheme)://\(options.host):\(options.port)"
        let traces = TraceTable()
        let links = ParticipantLinks(
            client: ProtocolClient(
                httpClient: httpClient, connections: connections,
                credentials: { [participants = options.participants, secret = options.secret] url in participants.secret(for: url, fallback: secret) },
                limits: options.limits, logger: logger),
            options: .init(inFlightMax: options.requestsInFlightMax, batchSizeMax: min(options.batchSizeMax, options.limits.batchMessageCountMax),
                           prepareRequestTimeout: options.protocolConfig.prepareTimeout),
            traces: traces,
            logger: logger,
            spawn: { jobQueue.yield($0) })
        var random = SystemRandomNumberGenerator()
        let opened: (store: PostgresDecisionStore, views: PostgresDecisionViews)? = if let cluster = options.cluster {
            try await Self.openShared(cluster, name: options.name, logger: logger)
        } else {
            nil
        }
        var shared: (store: any SharedDecisionStore, views: any DecisionViews, duties: ClusterDuties)?
        if let opened, let cluster = options.cluster {
            shared = (opened.store, opened.views, ClusterDuties(leaseRenewal: cluster.lease / 3, sweepInterval: cluster.sweepInterval))
        }
        /// The shared store's connections, closed once the loop has stopped, off the event loops.
        @Sendable func closeShared() async {
            guard let opened else { return }
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                DispatchQueue.global().async {
                    opened.store.close()
                    opened.views.close()
                    done.resume()
                }
            }
        }
        let (fencing, fenced) = AsyncStream.makeStream(of: Void.self)
        let engine = CoordinatorEngine(
            machine: CoordinatorMachine(identity: CoordinatorID(advertised), config: options.protocolConfig, seed: random.next()),
            log: log, shared: shared, links: links, metrics: metrics, traces: traces, logger: logger,
            fencedOut: { fenced.yield() })

        do {
            try await engine.start()
            let routes = CoordinatorRoutes(
                engine: engine, ids: TransactionIDs(name: options.name), options: options, metrics: metrics, keyring: keyring,
                sessions: DashboardSessions())
            let app = Application(
                router: routes.router(),
                server: server,
                configuration: .init(address: .hostname(options.host, port: options.port), serverName: "arbiter",
                                     availableConnectionsDelegate: options.connectionLimits.acceptCeiling(logger: logger)),
                onServerRunning: { [self] channel in
                    let port = channel.localAddress?.port ?? options.port
                    if options.advertisedURL == nil { engine.advertise(CoordinatorID("\(scheme)://\(options.host):\(port)")) }
                    bound.withLock { $0 = port }
                    resumeWaiters(port)
                    logger.info("coordinator listening", metadata: ["address": "\(options.host):\(port)", "name": "\(options.name)"])
                },
                logger: logger)
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask {
                    await withDiscardingTaskGroup { workers in
                        for await job in jobs { workers.addTask { await job() } }
                    }
                }
                group.addTask {
                    // A newer incarnation of this name holds the lease: this process must not
                    // serve on (its writes are refused anyway).
                    for await _ in fencing { throw CoordinatorServiceError.fencedOut(name: self.options.name) }
                }
                // Returns on graceful shutdown, once in-flight requests are answered.
                try await app.run()
                fenced.finish()
                await engine.stop()
                await links.drain(timeout: .seconds(5), logger: logger)
                jobQueue.finish()
                group.cancelAll()
            }
        } catch {
            await engine.stop()
            await closeShared()
            logger.error("coordinator stopped", metadata: ["error": "\(error)"])
            connections.shutdown()
            try? await httpClient.shutdown()
            try? await log.close()
            throw error
        }
        await closeShared()
        connections.shutdown()
        try await httpClient.shutdown()
        try await log.close()
    }

    /// Connects to a cluster's store, migrates it and takes this coordinator's lease, off Swift's
    /// cooperative pool (each step waits for the database).
    static func openShared(_ cluster: ClusterStoreOptions, name: String, logger: Logger) async throws
        -> (store: PostgresDecisionStore, views: PostgresDecisionViews) {
        let store = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<PostgresDecisionStore, any Error>) in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try PostgresDecisionStore(location: cluster.location, name: name, lease: cluster.lease, logger: logger) })
            }
        }
        logger.notice("joined the coordinator cluster", metadata: ["store": "\(cluster.location)", "name": "\(name)", "epoch": "\(store.epoch)"])
        return (store, PostgresDecisionViews(location: cluster.location, logger: logger))
    }
}

/// Why a coordinator stopped on its own.
public enum CoordinatorServiceError: Error, CustomStringConvertible {
    /// Another process took this coordinator's name in the cluster's store.
    case fencedOut(name: String)

    public var description: String {
        switch self {
        case .fencedOut(let name):
            return "another coordinator process took the name \(name) in the shared store; this one stopped. Give each coordinator its own --name."
        }
    }
}
