package import ArbiterCore
package import ArbiterHTTP
import ArbiterRuntime
import ArbiterStorage
import AsyncHTTPClient
import Foundation
package import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Tracing
import Synchronization

/// What a participant node serves, whatever keeps its state: the participant half of the wire
/// protocol, the operator routes and dashboard, `/metrics`, and the service's own routes, over a
/// ``ParticipantBackend`` (SQLite for ``ParticipantNode``, PostgreSQL for the nodes of
/// `ArbiterParticipantPostgres`). The public nodes wrap it.
package final class ParticipantServer: Sendable {
    /// The options it was made with.
    package let options: ParticipantOptions
    /// Where the protocol state is kept.
    package let backend: any ParticipantBackend

    let engine: ParticipantEngine
    private let routes: @Sendable (RouterGroup<BasicRequestContext>) -> Void
    private let coordinators: Set<String>?
    /// The credentials accepted, by role; replaced by ``reloadCredentials(clientTokens:operatorTokens:)``.
    private let keyring: Keyring
    /// The dashboard's browser sessions (in memory: a restart logs everyone out).
    private let sessions = DashboardSessions()
    private let listening = ListeningPort()
    private let runs = Mutex(false)
    private let metrics = ParticipantMetrics()
    /// The last count of ended transactions for `/metrics`, and when it was taken.
    private let endedCount = Mutex<(at: ContinuousClock.Instant, committed: Int, aborted: Int)?>(nil)

    /// Checks the options and makes the engine; nothing is served until ``run()``.
    ///
    /// - Parameter routes: Adds the service's own routes (behind the client tokens); called once by
    ///   ``run()``.
    package init(
        backend: any ParticipantBackend,
        options: ParticipantOptions,
        routes: @escaping @Sendable (RouterGroup<BasicRequestContext>) -> Void
    ) throws(ParticipantNodeError) {
        self.coordinators = try Self.validated(options)
        self.backend = backend
        self.options = options
        self.keyring = Keyring(Self.roles(secret: options.secret, clientTokens: options.clientTokens, operatorTokens: options.operatorTokens))
        self.routes = routes
        self.engine = ParticipantEngine(
            backend: backend,
            config: options.protocolConfig,
            seed: options.seed ?? UInt64.random(in: .min ... .max),
            settings: .init(
                replyTimeout: options.replyTimeout,
                pendingReplyCountMax: options.pendingReplyCountMax,
                inquiryTimeout: options.inquiryTimeout,
                inquiryConcurrencyMax: options.inquiryConcurrencyMax,
                storageRetry: options.storageRetry,
                coordinators: (options.coordinators ?? []).map(CoordinatorID.init)
            ),
            logger: options.logger
        )
    }

    /// Takes new client and operator tokens, for rotation without a restart (bank-node does on
    /// SIGHUP). The operator endpoints are served or not as decided at start: with no operator
    /// token at start they stay off.
    package func reloadCredentials(clientTokens: [NamedToken]?, operatorTokens: [NamedToken]) {
        keyring.replace(Self.roles(secret: options.secret, clientTokens: clientTokens, operatorTokens: operatorTokens))
    }

    /// Who may do what: the coordinator speaks the protocol with the protocol secret; the
    /// service's clients use their tokens (the protocol secret in the single-secret mode);
    /// operators theirs.
    private static func roles(secret: BearerSecret, clientTokens: [NamedToken]?, operatorTokens: [NamedToken]) -> [CredentialRole: [NamedToken]] {
        let shared = NamedToken(name: "protocol", secret: secret)
        return [.participant: [shared], .client: clientTokens ?? [shared], .operator: operatorTokens]
    }

    /// Waits until the node accepts connections and returns its port (the one the operating system
    /// chose when ``ParticipantOptions/port`` is 0).
    ///
    /// - Throws: ``ParticipantNodeError`` `notListening` when ``run()`` ended before it listened
    ///   (the error it ended with is the cause).
    package func waitUntilListening() async throws -> Int {
        try await listening.wait()
    }

    /// Where `txid` stands in the node's memory (`nil` when unknown), for tests and diagnostics.
    /// The database is the truth after a restart; this is the state machine's view.
    package func state(of txid: TxID) async -> ParticipantState? {
        await engine.machineState(of: txid)
    }

    /// Whether ``run()`` was called (a node runs once).
    package var hasRun: Bool { runs.withLock { $0 } }

    /// Recovers the protocol state, then serves until graceful shutdown or cancellation; closes
    /// the database before returning.
    ///
    /// - Throws: ``ParticipantNodeError`` `alreadyRun` on a second call, `cannotOpenStorage` when
    ///   the records cannot be read back; the HTTP server's error when it cannot listen (port in
    ///   use). A write that fails does not stop the node: the loop holds the round and retries it
    ///   with backoff, refusing prepares meanwhile (503 `storage_unavailable`, `GET /readyz` 503).
    ///
    /// - Parameter prepare: Runs first (a backend's checks and migrations); a throw ends the run
    ///   before anything is served, and ``waitUntilListening()`` throws it as the cause.
    package func run(after prepare: @Sendable () async throws -> Void = {}) async throws {
        let first = runs.withLock { hasRun -> Bool in
            defer { hasRun = true }
            return !hasRun
        }
        guard first else {
            throw ParticipantNodeError(.alreadyRun, "this node has run already; make a new ParticipantNode on the same data directory to restart")
        }
        var failure: (any Error)?
        do {
            try await prepare()
            try await serve()
        } catch {
            failure = error
        }
        listening.fail(ParticipantNodeError(.notListening, "the participant stopped before it was listening", cause: failure))
        do {
            try await backend.close()
        } catch {
            options.logger.error("closing the database failed", metadata: ["error": "\(error)"])
            failure = failure ?? error
        }
        if let failure, !(failure is CancellationError) {
            throw failure
        }
    }

    private func serve() async throws {
        let logger = options.logger
        // Read before anything that needs shutting down is made: a bad file fails the start.
        let server = try ServerTransport.builder(tls: options.tls, limits: options.connectionLimits, logger: logger)
        let httpClient = options.httpClient.makeClient(tls: try options.tls?.clientTLS())
        let protocolClient = ProtocolClient(httpClient: httpClient, secret: options.secret, limits: options.limits)
        let inDoubt: Int
        do {
            // On a thread of its own: reading the records back blocks on the database, which
            // must not happen on Swift's cooperative pool.
            let engine = self.engine
            inDoubt = try await Self.onThreadOfItsOwn { try engine.start(client: protocolClient) }
        } catch {
            try? await httpClient.shutdown()
            throw ParticipantNodeError(.cannotOpenStorage, "reading the protocol records back failed: \(error)", cause: error)
        }
        // A node started on a full disk serves, refusing protocol writes, instead of failing its
        // first one (and stopping again).
        await engine.probeStorage(always: true)
        logger.info("recovered protocol state", metadata: [
            "inDoubt": "\(inDoubt)",
            "database": "\(backend.location)",
        ])

        let listening = self.listening
        let app = Application(
            router: makeRouter(),
            server: server,
            configuration: ApplicationConfiguration(address: .hostname(options.host, port: options.port), serverName: nil,
                                                    availableConnectionsDelegate: options.connectionLimits.acceptCeiling(logger: logger)),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.info("participant listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
                listening.succeed(port)
            },
            logger: logger
        )

        // The server runs until graceful shutdown, cancellation, or a failure to listen; then the
        // loop writes what it holds and answers the requests still waiting with 503.
        var failure: (any Error)?
        do {
            try await app.run()
        } catch {
            failure = error
        }
        await engine.stop()
        do {
            try await httpClient.shutdown()
        } catch {
            logger.debug("shutting down the inquiry HTTP client failed", metadata: ["error": "\(error)"])
        }
        logger.info("participant stopped")
        if let failure { throw failure }
    }

    /// Runs `work` on a new thread and waits for it without blocking the caller's.
    private static func onThreadOfItsOwn<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
        }
    }

    // MARK: - Routes

    private func makeRouter() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: APIErrorMiddleware())
        router.add(middleware: MethodNotAllowedMiddleware(endpoints: WireEndpoint.participantEndpoints.filter {
            $0.access != .operatorToken || !options.operatorTokens.isEmpty
        }))
        router.get(RouterPath(WireEndpoint.participantHealth.path)) { _, _ in HealthResponse() }
        router.get(RouterPath(WireEndpoint.participantReady.path)) { _, _ -> ReadyResponse in
            try await self.checkStorage()
            return ReadyResponse()
        }
        router.get(RouterPath(WireEndpoint.participantMetrics.path)) { _, _ in try await self.metricsText() }

        // The protocol: the coordinator's credential only, never a client's.
        let protocolRoutes = router.group().add(middleware: RoleMiddleware<BasicRequestContext>(keyring, allowing: [.participant]))
        protocolRoutes.post(RouterPath(WireEndpoint.prepare.path)) { request, _ in try await self.prepare(request) }
        protocolRoutes.post(RouterPath(WireEndpoint.commit.path)) { request, _ in try await self.decision(request, commit: true) }
        protocolRoutes.post(RouterPath(WireEndpoint.abort.path)) { request, _ in try await self.decision(request, commit: false) }
        protocolRoutes.post(RouterPath(WireEndpoint.batch.path)) { request, _ in try await self.batch(request) }

        if !options.operatorTokens.isEmpty {
            // An operator token, or the session of a browser that logged in at /dashboard.
            let operatorRoutes = router.group("/v1/operator")
                .add(middleware: OperatorMiddleware(keyring: keyring, sessions: sessions))
            operatorRoutes.get("/in-doubt") { _, _ in try await self.inDoubt() }
            operatorRoutes.get("/audit") { request, _ in try await self.auditTrail(request) }
            operatorRoutes.get("/transactions/:txid") { request, context in
                try await self.status(try request.txid(pathParameter: "txid", context: context))
            }
            operatorRoutes.post("/transactions/:txid/decide") { request, context in
                try await self.decide(try request.txid(pathParameter: "txid", context: context), request)
            }
            ParticipantDashboard(engine: engine, store: backend, keyring: keyring, sessions: sessions).add(to: router)
        }

        // The service's own API: its clients (the protocol secret in the single-secret mode).
        let serviceRoutes = router.group().add(middleware: RoleMiddleware<BasicRequestContext>(keyring, allowing: [.client]))
        routes(serviceRoutes)
        return router
    }

    /// Refuses at once, with 503 `storage_unavailable`, while the database cannot be written (after
    /// a probe write, at most once a second, finds that it still cannot): no protocol record could
    /// be written, so the coordinator is better told now than after the reply timeout — it aborts
    /// what was preparing and resends decisions with its backoff.
    private func checkStorage() async throws(APIError) {
        await engine.probeStorage()
        if let fault = engine.storageFault {
            throw APIError.storageUnavailable(
                "this participant's database cannot be written \(fault); nothing was done. Free space or fix the disk; the participant resumes by itself (watch GET /readyz)")
        }
    }

    private func prepare(_ request: Request) async throws -> PrepareReply {
        let body = try await request.decodeWire(PrepareBody.self, bodySizeMax: options.limits.bodySizeMax)
        let prepare = try body.validated(limits: options.limits)
        try checkCoordinator(prepare.coordinator, field: "coordinator")
        try await checkStorage()
        remember(request.headers[TraceParent.header] ?? body.traceparent, for: prepare.txid)
        let answer = try await engine.deliver([.prepare(prepare)])[0].message()
        guard let reply = PrepareReply(answer) else { throw APIError.internal() }
        try await failpoint("participant.before-vote")
        return reply
    }

    private func decision(_ request: Request, commit: Bool) async throws -> AcknowledgeReply {
        let body = try await request.decodeWire(DecisionBody.self, bodySizeMax: options.limits.bodySizeMax)
        let txid = try body.validated()
        try await checkStorage()
        remember(request.headers[TraceParent.header] ?? body.traceparent, for: txid)
        let answer = try await engine.deliver([commit ? .commit(txid) : .abort(txid)])[0].message()
        guard let reply = AcknowledgeReply(answer) else { throw APIError.internal() }
        try await failpoint("participant.before-ack")
        return reply
    }

    /// Keeps the trace context a message arrived with, for its stage/apply spans and inquiries.
    private func remember(_ traceparent: String?, for txid: TxID) {
        if let context = WireTracing.context(traceparent: traceparent) { engine.remember(context, for: txid) }
    }

    private func batch(_ request: Request) async throws -> BatchResponse {
        let body = try await request.decodeWire(BatchRequest.self, bodySizeMax: options.limits.batchBodySizeMax)
        let messages = try body.validated(limits: options.limits)
        for (index, message) in messages.enumerated() {
            if case .prepare(let prepare) = message {
                try checkCoordinator(prepare.coordinator, field: "messages[\(index)].coordinator")
            }
        }
        try await checkStorage()
        for (message, wire) in zip(messages, body.messages) {
            remember(wire.traceparent, for: message.txid)
        }
        let results = await engine.deliver(messages)
        var replies: [BatchReply] = []
        replies.reserveCapacity(messages.count)
        var votes = false
        var acknowledgements = false
        for (message, result) in zip(messages, results) {
            switch result {
            case .answer(let answer):
                replies.append(BatchReply(answering: message, with: answer))
                if case .acknowledge = answer { acknowledgements = true } else { votes = true }
            case .unavailable(let reason):
                replies.append(BatchReply(answering: message, failure: .unavailable(reason)))
            }
        }
        if votes { try await failpoint("participant.before-vote") }
        if acknowledgements { try await failpoint("participant.before-ack") }
        return BatchResponse(replies: replies)
    }

    private func metricsText() async throws -> Response {
        let census = try await census()
        return WireResponse.prometheus(metrics.exposition(
            storage: backend.statistics, census: census, load: engine.load()))
    }

    /// The store's census, with the ended transactions recounted at most every
    /// `endedCountInterval` (see ``ParticipantOptions/endedCountInterval``).
    private func census() async throws -> ParticipantCensus {
        let now = ContinuousClock.now
        if let last = endedCount.withLock({ $0 }), now - last.at < options.endedCountInterval {
            var census = try await backend.census(countingEnded: false)
            census.committed = last.committed
            census.aborted = last.aborted
            return census
        }
        let census = try await backend.census(countingEnded: true)
        endedCount.withLock { $0 = (now, census.committed, census.aborted) }
        return census
    }

    private func inDoubt() async throws -> InDoubtList {
        let store = backend
        let transactions = try await store.prepared()
        var list: [TransactionStatus] = []
        list.reserveCapacity(transactions.count)
        for transaction in transactions {
            list.append(TransactionStatus(transaction, locks: try await store.locks(of: transaction.txid)))
        }
        return InDoubtList(transactions: list)
    }

    private func status(_ txid: TxID) async throws -> TransactionStatus {
        let store = backend
        guard let transaction = try await store.transaction(txid) else {
            throw APIError.notFound("no record of transaction \(txid) here (never seen, or forgotten after its retention)", field: "txid")
        }
        return TransactionStatus(transaction, locks: try await store.locks(of: txid))
    }

    private func auditTrail(_ request: Request) async throws -> OperatorAuditTrail {
        let limit = try request.uri.queryParameters.get("limit").map { text throws(APIError) in
            guard let limit = Int(text), (1...1000).contains(limit) else {
                throw APIError.invalidValue("limit", "`limit`: give a number in 1...1000")
            }
            return limit
        } ?? 100
        let before = try request.uri.queryParameters.get("before").map { text throws(APIError) in
            guard let before = Int64(text), before > 0 else {
                throw APIError.invalidValue("before", "`before`: give the id of an audit entry from a previous page")
            }
            return before
        }
        return OperatorAuditTrail(entries: try await backend.operatorActions(limit: limit, before: before).map(OperatorAuditEntry.init))
    }

    private func decide(_ txid: TxID, _ request: Request) async throws -> TransactionStatus {
        let body = try await request.decodeWire(HeuristicDecisionRequest.self, bodySizeMax: options.limits.bodySizeMax)
        guard body.iUnderstandThisMayBreakAtomicity == true else {
            throw APIError.invalidValue("iUnderstandThisMayBreakAtomicity",
                "deciding alone may leave this participant with another outcome than the coordinator's; ask the coordinator first, and to proceed anyway send `\"iUnderstandThisMayBreakAtomicity\": true`")
        }
        let reason = try WireValidation.operatorReason(body.reason, doing: "decide alone")
        // The route admits operators only: the token's name, or the name the session was opened with.
        let actor = sessions.actor(of: request, keyring: keyring)
        // Durable before it acts: the audit row is forced before the decision is applied.
        let audit = try await backend.beginOperatorAction(
            actor: actor, action: "decide-\(body.outcome.rawValue)", txid: txid, reason: reason)
        do {
            let status = try await decideHeuristically(txid, body.outcome)
            try await backend.finishOperatorAction(audit, result: "done")
            options.logger.warning("operator decided a transaction heuristically",
                metadata: ["txid": "\(txid)", "outcome": "\(body.outcome.rawValue)", "actor": "\(actor)", "reason": "\(reason)"])
            return status
        } catch let error as APIError {
            try await backend.finishOperatorAction(audit, result: "refused: \(error.message)")
            throw error
        }
    }

    private func decideHeuristically(_ txid: TxID, _ outcome: WireOutcome) async throws(APIError) -> TransactionStatus {
        do {
            switch await engine.decideHeuristically(txid, outcome.outcome) {
            case .decided:
                return try await status(txid)
            case .unavailable(let reason):
                throw APIError.unavailable(reason)
            case .notFound:
                // Memory forgets ended transactions; the store may still hold one.
                if let stored = try await backend.transaction(txid) {
                    throw APIError(status: .conflict, code: .invalidValue,
                        message: "transaction \(txid) is \(stored.state.rawValue) here, not prepared; only a transaction in doubt can be decided", field: "txid")
                }
                throw APIError.notFound("transaction \(txid) is not known here", field: "txid")
            case .notInDoubt(let state):
                throw APIError(status: .conflict, code: .invalidValue,
                    message: "transaction \(txid) is \(state.rawValue) here, not prepared; only a transaction in doubt can be decided", field: "txid")
            }
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError.unavailable("the participant's database is unavailable (\(error)); retry")
        }
    }

    private func checkCoordinator(_ coordinator: CoordinatorID, field: String) throws(APIError) {
        guard let coordinators, !coordinators.contains(coordinator.rawValue) else { return }
        throw APIError.invalidValue(field,
            "`\(field)`: \(coordinator.rawValue) is not a coordinator this participant works for (\(coordinators.sorted().joined(separator: ", ")))")
    }

    private func failpoint(_ name: String) async throws {
        do {
            try await Failpoints.hit(name)
        } catch {
            throw APIError.unavailable("\(error); retry")
        }
    }

    /// Checks `options` (their database's aside) and returns the accepted coordinators' URLs,
    /// normalized; a node calls it before it opens anything.
    @discardableResult
    package static func validated(_ options: ParticipantOptions) throws(ParticipantNodeError) -> Set<String>? {
        if let problem = options.problem() {
            throw ParticipantNodeError(.invalidOptions, problem)
        }
        return try normalized(options.coordinators, limits: options.limits)
    }

    private static func normalized(_ coordinators: [String]?, limits: WireLimits) throws(ParticipantNodeError) -> Set<String>? {
        guard let coordinators else { return nil }
        var result: Set<String> = []
        for (index, text) in coordinators.enumerated() {
            do {
                result.insert(try WireValidation.serviceURL(text, field: "coordinators[\(index)]", limits: limits))
            } catch {
                throw ParticipantNodeError(.invalidOptions, "coordinator \(text.debugDescription) is not usable: \(error.message)")
            }
        }
        return result
    }
}

extension ParticipantLoop.Reply {
    /// The answer, or the error to answer with.
    fileprivate func message() throws(APIError) -> ParticipantMessage {
        switch self {
        case .answer(let message): return message
        case .unavailable(let reason): throw APIError.unavailable(reason)
        }
    }
}

/// The port the server listens on, once it does: a one-shot promise.
final class ListeningPort: Sendable {
    private let state = Mutex<State>(State())

    private struct State {
        var result: Result<Int, ParticipantNodeError>?
        var waiters: [CheckedContinuation<Int, any Error>] = []
    }

    func succeed(_ port: Int) { settle(.success(port)) }
    func fail(_ error: ParticipantNodeError) { settle(.failure(error)) }

    private func settle(_ result: Result<Int, ParticipantNodeError>) {
        let waiters = state.withLock { state -> [CheckedContinuation<Int, any Error>] in
            guard state.result == nil else { return [] }
            state.result = result
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(with: result.mapError { $0 as any Error }) }
    }

    func wait() async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLock { state -> Result<Int, ParticipantNodeError>? in
                if let result = state.result { return result }
                state.waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(with: ready.mapError { $0 as any Error }) }
        }
    }
}
