public import ArbiterCore
import ArbiterHTTP
public import ArbiterRuntime
public import ArbiterStorage
import Foundation
import Logging
import Synchronization
public import Tracing

/// The coordinator's ``CoordinatorLoop`` run for real: on a thread of its own (``LoopThread``),
/// over its SQLite decision log (or, in a cluster, the shared PostgreSQL store) and the HTTP
/// transport to participants, with the monotonic clock.
///
/// Everything that arrives — clients' submits and inquiries from the HTTP handlers, participants'
/// replies from the transport, operators' levers — is posted to the loop and answered by it; the
/// handlers only wait. The loop's round writes the log once (forced when any record must be), then
/// sends one batch per participant, then answers; a failed write is retried with backoff and
/// answers nothing meanwhile (`GET /readyz` says so).
public final class CoordinatorEngine: Sendable {
    public typealias SubmitResult = CoordinatorLoop.SubmitResult
    public typealias Wait = CoordinatorLoop.Wait
    public typealias RetryResult = CoordinatorLoop.RetryResult

    /// This coordinator's own SQLite log: its decisions when it runs alone, and the operators'
    /// audit trail either way.
    public let log: DecisionLog
    /// What operators and clients read of the transactions: `log`, or a cluster's shared store.
    public let views: any DecisionViews
    let links: ParticipantLinks
    let metrics: CoordinatorMetrics
    /// Finished transactions per second, for the dashboard.
    let activity = ActivityRing()
    let traces: TraceTable
    private let thread: LoopThread<CoordinatorLoop.Input>
    private let core: Core
    private let logger: Logger

    /// What only the loop's thread touches.
    private final class Core: @unchecked Sendable {
        var loop: CoordinatorLoop!
        /// Kept here: the loop holds its observer weakly.
        var observer: CoordinatorObserver?
    }

    init(machine: CoordinatorMachine, log: DecisionLog, shared: (store: any SharedDecisionStore, views: any DecisionViews, duties: ClusterDuties)? = nil,
         links: ParticipantLinks, metrics: CoordinatorMetrics, traces: TraceTable, logger: Logger,
         fencedOut: @escaping @Sendable () -> Void = {}) {
        self.log = log
        self.views = shared?.views ?? log
        self.links = links
        self.metrics = metrics
        self.traces = traces
        self.logger = logger
        self.thread = LoopThread(name: "arbiter-loop")
        self.core = Core()
        let observer = CoordinatorObserver(metrics: metrics, activity: activity, traces: traces, logger: logger, fencedOut: fencedOut)
        core.loop = CoordinatorLoop(machine: machine, store: shared.map { Failpoints.isEnabled ? FailpointSharedStore($0.store) : $0.store } ?? SQLiteDecisionStore(log: log), transport: links,
                                    observer: observer, duties: shared?.duties)
        core.observer = observer
        links.deliver = { [thread] input in thread.post(input) }
    }

    // MARK: - Running

    /// Rebuilds the machine from the log, then starts the loop's thread. Call once, before serving.
    func start() async throws {
        let loop = core.loop!
        let now = thread.now
        // Off the caller's thread: a cluster's store waits for PostgreSQL, which must not happen
        // on an event loop (the handlers' executor) nor on Swift's cooperative pool.
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            DispatchQueue.global().async { [core] in continuation.resume(with: Result { try core.loop.recover(now: now) }) }
        }
        logger.info("recovered", metadata: ["unfinished": "\(loop.activeCount)"])
        activeTransactions.store(loop.activeCount, ordering: .relaxed)
        thread.start(running: loop, writeFailed: { [self] error, delay in
            // The log is the one thing that must not be skipped: retry, loudly, with backoff;
            // nothing of the round is sent or answered meanwhile.
            logger.error("decision log write failed; retrying", metadata: ["error": "\(error)", "retryIn": "\(delay)"])
            writeFailure.withLock { fault in
                if fault == nil { fault = StorageFault(since: Date(), message: "\(error)") }
            }
        }, afterRound: { [self] in
            if let ended = writeFailure.withLock({ fault -> StorageFault? in defer { fault = nil }; return fault }) {
                logger.notice("the decision log can be written again", metadata: ["failingSince": "\(ended.since)"])
            }
            activeTransactions.store(core.loop.activeCount, ordering: .relaxed)
        }, finish: { [core] inputs in
            // Shutdown: what arrived last is stepped and written; clients still waiting hear
            // `pending` (recovery at the next start finishes their transactions).
            let loop = core.loop!
            loop.step(inputs, now: .zero)
            if (try? loop.write()) != nil { loop.advance() }
            loop.answerWaitingClients()
        }, late: { [core] input in
            // After shutdown: nothing runs any more; nobody is left waiting.
            switch input {
            case .submit(let txid, _, _, _, _, let reply): reply(.pending(txid))
            case .inquiry(_, let reply): reply(.pending)
            case .retryPhaseTwoNow(_, let reply): reply(.notOwed(nil))
            case .inspect(let read): read(core.loop.machine)
            case .received, .unreachable, .advertise: break
            }
        })
    }

    /// Stops the loop after its round, writing what it holds.
    func stop() async {
        await thread.stop()
    }

    // MARK: - Requests

    /// Runs (or rejoins) a transaction and waits, at most `waitMax`, for its outcome.
    ///
    /// A transaction that ended is answered from the log: the same id with the same branches gets
    /// the recorded outcome; other branches are rejected. So is an id that an inquiry found
    /// unknown and that was then recorded as aborted.
    ///
    /// - Parameter trace: The submit's trace context; the transaction's messages carry it.
    public func submit(
        _ txid: TxID, branches: [Branch], timeout: Duration?, wait: Wait, waitMax: Duration, trace: ServiceContext? = nil
    ) async -> SubmitResult {
        if let trace { traces.remember(txid, trace) }
        return await withCheckedContinuation { continuation in
            thread.post(.submit(txid, branches: branches, timeout: timeout, wait: wait, waitMax: waitMax,
                                reply: { continuation.resume(returning: $0) }))
        }
    }

    /// What a participant asking about `txid` is told (`GET /v1/transactions/{id}/outcome`).
    ///
    /// An id neither the machine nor the log knows is answered `aborted` (presumed abort), after
    /// the loop has forced an abort record for it: see ``CoordinatorMachine``.
    public func inquiryAnswer(for txid: TxID) async -> InquiryAnswer {
        await withCheckedContinuation { continuation in
            thread.post(.inquiry(txid, reply: { continuation.resume(returning: $0) }))
        }
    }

    /// Resends the decision of `txid` now to every participant that has not acknowledged it,
    /// without waiting for the retry timer (an operator's lever).
    public func retryPhaseTwoNow(_ txid: TxID) async -> RetryResult {
        let result = await withCheckedContinuation { continuation in
            thread.post(.retryPhaseTwoNow(txid, reply: { continuation.resume(returning: $0) }))
        }
        if case .resent(let participants) = result {
            metrics.phaseTwoRetries.increment(by: Int64(participants.count))
        }
        return result
    }

    /// Reads the machine on the loop's thread.
    private func inspect<T: Sendable>(_ read: @escaping @Sendable (any CoordinatorLogic) -> T) async -> T {
        await withCheckedContinuation { continuation in
            thread.post(.inspect { machine in continuation.resume(returning: read(machine)) })
        }
    }

    /// For each participant, how many acknowledgements of decisions the machine still waits for.
    public func owedAcknowledgements() async -> [ParticipantID: Int] {
        await inspect { $0.owedAcknowledgementCounts() }
    }

    /// Where the machine has `txid`, if it is still driving it.
    public func phase(of txid: TxID) async -> CoordinatorPhase? {
        await inspect { $0.phase(of: txid) }
    }

    /// Transactions the machine is driving, as of the last round.
    public var activeCount: Int { activeTransactions.load(ordering: .relaxed) }
    private let activeTransactions = Atomic<Int>(0)

    /// Sets the URL that travels in every `prepare` as where to send inquiries.
    func advertise(_ identity: CoordinatorID) {
        thread.post(.advertise(identity))
    }

    /// Why the decision log cannot be written, and since when; `nil` while it can. New submits are
    /// refused while it is set, and `GET /readyz` answers 503.
    public var storageFault: StorageFault? { writeFailure.withLock { $0 } }
    private let writeFailure = Mutex<StorageFault?>(nil)
}

/// The decision log as the loop's ``DecisionStore``, with the failpoints the crash tests use.
final class SQLiteDecisionStore: DecisionStore {
    let log: DecisionLog

    init(log: DecisionLog) { self.log = log }

    /// One coordinator owns this log: nothing is refused for ownership.
    func commit(_ records: [CoordinatorRecord], forced: Bool) throws -> [TxID] {
        try Self.failpoints(around: records, forced: forced) {
            let durability: Durability = forced ? .forced : .lazy
            do {
                try log.commitNow(records, durability: durability)
            } catch let error as StorageError where error.code == .conflict {
                try commitOneByOne(records, durability)
            }
            return []
        }
    }

    /// The crash tests' failpoints around a round's write, whatever the store.
    static func failpoints(around records: [CoordinatorRecord], forced: Bool, _ write: () throws -> [TxID]) throws -> [TxID] {
        if forced { try Failpoints.hitSync("coordinator.before-decision-force") }
        if records.contains(where: { if case .ended = $0 { true } else { false } }) {
            try Failpoints.hitSync("coordinator.before-end-record")
        }
        let refused = try write()
        if forced { try? Failpoints.hitSync("coordinator.after-decision-force") }
        return refused
    }

    /// A record contradicts the log (a different decision for a decided transaction, which only a
    /// bug can cause): it is refused alone, loudly, and the others are committed one by one.
    private func commitOneByOne(_ records: [CoordinatorRecord], _ durability: Durability) throws {
        for record in records {
            do {
                try log.commitNow([record], durability: durability)
            } catch {
                guard error.code == .conflict else { throw error }
                Logger(label: "arbiter.coordinator").error("decision log refused a record", metadata: ["record": "\(record)", "error": "\(error)"])
            }
        }
    }

    func lookup(_ txids: [TxID]) throws -> [LoggedTransaction?] {
        try log.recordedDecisions(of: txids).map { recorded in
            recorded.map { LoggedTransaction(branches: $0.branches, outcome: $0.outcome, reason: $0.reason, ended: $0.state.isEnded) }
        }
    }

    func recover() throws -> [CoordinatorRecord] { try log.recoverNow() }
}

/// A cluster's shared store with the same failpoints as ``SQLiteDecisionStore``.
final class FailpointSharedStore: SharedDecisionStore {
    let store: any SharedDecisionStore

    init(_ store: any SharedDecisionStore) { self.store = store }

    func commit(_ records: [CoordinatorRecord], forced: Bool) throws -> [TxID] {
        try SQLiteDecisionStore.failpoints(around: records, forced: forced) { try store.commit(records, forced: forced) }
    }

    func lookup(_ txids: [TxID]) throws -> [LoggedTransaction?] { try store.lookup(txids) }
    func recover() throws -> [CoordinatorRecord] { try store.recover() }
    func renewLease() throws -> Bool { try store.renewLease() }
    func claimOrphans(limit: Int) throws -> [CoordinatorRecord] { try store.claimOrphans(limit: limit) }
}

/// Metrics, the dashboard's activity, traces and logs, as the loop reports them.
final class CoordinatorObserver: CoordinatorLoopObserver, @unchecked Sendable {
    let metrics: CoordinatorMetrics
    let activity: ActivityRing
    let traces: TraceTable
    let logger: Logger
    /// One `decision.force` span per traced transaction the round's write makes durable.
    private var spans: [any Span] = []

    /// Told once a newer incarnation of this coordinator's name took its lease.
    let onFencedOut: @Sendable () -> Void

    init(metrics: CoordinatorMetrics, activity: ActivityRing, traces: TraceTable, logger: Logger, fencedOut: @escaping @Sendable () -> Void) {
        self.onFencedOut = fencedOut
        self.metrics = metrics
        self.activity = activity
        self.traces = traces
        self.logger = logger
    }

    func decided(_ txid: TxID, _ outcome: Outcome, latency: Duration?) {
        if let latency { metrics.decisionLatency.recordNanoseconds(latency.nanoseconds) }
    }

    func completed(_ txid: TxID, _ outcome: Outcome, latency: Duration?) {
        traces.forget(txid)
        if let latency { metrics.completionLatency.recordNanoseconds(latency.nanoseconds) }
        activity.record(outcome, latency: latency)
        metrics.transactions(outcome).increment()
    }

    func rejected(_ txid: TxID, _ rejection: SubmitRejection) { traces.forget(txid) }

    func anomaly(_ txid: TxID, _ text: String) {
        metrics.anomalies.increment()
        logger.error("protocol anomaly", metadata: ["txid": "\(txid)", "anomaly": "\(text)"])
    }

    func resent(_ count: Int) { metrics.phaseTwoRetries.increment(by: Int64(count)) }

    func claimed(_ txids: [TxID]) {
        logger.notice("took over transactions of a coordinator whose lease expired", metadata: ["count": "\(txids.count)", "first": "\(txids[0])"])
    }

    func fencedOut() {
        logger.critical("another process took this coordinator's name (a newer lease epoch in the shared store); stopping: give each coordinator its own --name")
        onFencedOut()
    }

    func disowned(_ txid: TxID) {
        logger.warning("stopped driving a transaction: the store refused its records, another coordinator owns it now",
                       metadata: ["txid": "\(txid)"])
    }

    func forcing(_ txids: [TxID], writes: Int) {
        guard traces.isTracing else { return }
        for txid in txids {
            guard let span = WireTracing.startSpan("decision.force", context: traces.context(of: txid)) else { continue }
            span.attributes["arbiter.txid"] = txid.rawValue
            span.attributes["arbiter.batch.writes"] = writes
            spans.append(span)
        }
    }

    func wrote(_ txids: [TxID], error: (any Error)?) {
        for span in spans {
            if let error { span.setStatus(SpanStatus(code: .error, message: "\(error)")) }
            span.end()
        }
        spans.removeAll()
    }

    func roundEnded(active: Int) { metrics.active.set(Int64(active)) }
}

/// Each traced transaction's context (its `submit` span's), kept from the submit until phase 2
/// completes: the parent of the spans and the `traceparent` of the requests it causes. Empty when
/// nothing is traced. Bounded: a full table is cleared (those transactions lose their trace, never
/// their outcome).
final class TraceTable: Sendable {
    private let contexts = Mutex<[TxID: ServiceContext]>([:])
    private let tracing = Atomic<Bool>(false)
    private static var countMax: Int { 65_536 }

    var isTracing: Bool { tracing.load(ordering: .relaxed) }

    func remember(_ txid: TxID, _ context: ServiceContext) {
        tracing.store(true, ordering: .relaxed)
        contexts.withLock { contexts in
            if contexts.count >= Self.countMax { contexts.removeAll() }
            if contexts[txid] == nil { contexts[txid] = context }
        }
    }

    func context(of txid: TxID) -> ServiceContext? {
        guard isTracing else { return nil }
        return contexts.withLock { $0[txid] }
    }

    func forget(_ txid: TxID) {
        guard isTracing else { return }
        contexts.withLock { _ = $0.removeValue(forKey: txid) }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
