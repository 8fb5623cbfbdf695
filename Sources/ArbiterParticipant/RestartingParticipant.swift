public import ArbiterCore
public import Logging
public import ServiceLifecycle
import Synchronization

/// Runs a ``ParticipantNode`` and, when it stops because its database could not be written
/// (``ParticipantNodeError/Code/storageFailed``: a full disk, an I/O error), makes a new one after a
/// backoff, on the same data directory and port, until the disk takes writes again.
///
/// A node that cannot write its protocol records stops rather than go on with a memory that
/// disagrees with its database; the new node rebuilds its state from what is durable, exactly as a
/// process restart would, without a supervisor outside the process. While the disk stays full the
/// new node refuses prepares at once (503 `storage_unavailable`) and its `GET /readyz` says why.
/// Any other error, and a graceful shutdown, end ``run()`` as with a plain node.
///
/// ```swift
/// let participant = RestartingParticipant(logger: logger) { port in
///     var options = options
///     if let port { options.port = port }   // the port the first node bound
///     return try ParticipantNode(resource: BankResource(), options: options, routes: BankRoutes.add(to:))
/// }
/// try await ServiceGroup(services: [participant], gracefulShutdownSignals: [.sigterm], logger: logger).run()
/// ```
public final class RestartingParticipant<R: Resource>: Service, Sendable {
    private let make: @Sendable (_ port: Int?) throws -> ParticipantNode<R>
    private let restartDelay: Backoff
    private let logger: Logger
    private let listening = ListeningPort()
    private let restartCounter = Atomic<Int>(0)

    /// - Parameters:
    ///   - restartDelay: How long to wait before each new node (default 1 s doubling to 30 s).
    ///   - make: Makes a node; `port` is `nil` the first time and then the port the first node
    ///     listened on, so that a restart keeps the address peers know.
    public init(
        restartDelay: Backoff = Backoff(initial: .seconds(1), max: .seconds(30)),
        logger: Logger,
        make: @escaping @Sendable (_ port: Int?) throws -> ParticipantNode<R>
    ) {
        self.make = make
        self.restartDelay = restartDelay
        self.logger = logger
    }

    /// How many times a node was made anew after a storage failure.
    public var restartCount: Int { restartCounter.load(ordering: .relaxed) }

    /// Waits until the first node accepts connections and returns its port.
    public func waitUntilListening() async throws -> Int {
        try await listening.wait()
    }

    public func run() async throws {
        var port: Int?
        var attempt = 0
        var random = SystemRandomNumberGenerator()
        while true {
            let failure: ParticipantNodeError
            do {
                let node = try make(port)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await node.run() }
                    let bound = try await node.waitUntilListening()
                    listening.succeed(bound)
                    if port == nil { port = bound }
                    attempt = 0
                    try await group.waitForAll()
                }
                return
            } catch let error as ParticipantNodeError where error.code == .storageFailed || error.code == .cannotOpenStorage {
                failure = error
            } catch {
                listening.fail(ParticipantNodeError(.notListening, "the participant stopped before it was listening", cause: error))
                throw error
            }
            let delay = restartDelay.delay(attempt: attempt, random: &random)
            attempt += 1
            restartCounter.add(1, ordering: .relaxed)
            logger.error("the participant stopped on a storage failure; starting a new one from its database", metadata: [
                "error": "\(failure)", "restartIn": "\(delay)", "restarts": "\(restartCount)",
            ])
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: delay) }
            } catch {
                return  // Shut down while waiting.
            }
            if Task.isCancelled || Task.isShuttingDownGracefully { return }
        }
    }
}
