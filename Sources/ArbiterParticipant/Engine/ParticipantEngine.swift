import ArbiterCore
import ArbiterHTTP
import ArbiterRuntime
import ArbiterStorage
import Foundation
import Logging
import Synchronization
import Tracing

/// A snapshot of an engine's load, for metrics.
struct EngineLoad: Sendable {
    /// Messages waiting for their answer (a durable vote or acknowledgement).
    var waitingRequests = 0
    /// Pieces of storage work that failed alone and wait for a retry.
    var queuedStorageOps = 0
    /// Transactions the state machine remembers (in progress, or ended within memory retention).
    var knownTransactions = 0
}

/// The participant's ``ParticipantLoop`` run for real: on a thread of its own (``LoopThread``),
/// over the participant's database (the storage its ``ParticipantBackend`` makes: SQLite, or
/// PostgreSQL) and inquiries over HTTP (``InquiryLinks``), with the monotonic clock.
///
/// The HTTP handlers post the coordinator's requests and operators' decisions to the loop and wait;
/// the loop's round stages and writes once (forced when anything must be durable), then answers.
/// A failed write is retried with backoff and answers nothing meanwhile (`GET /readyz` says so).
final class ParticipantEngine: Sendable {
    /// Bounds and timeouts of the engine.
    struct Settings: Sendable {
        var replyTimeout: Duration
        var pendingReplyCountMax: Int
        var inquiryTimeout: Duration
        var inquiryConcurrencyMax: Int
        var storageRetry: Backoff
        /// The coordinators this participant works for: an inquiry the coordinator named in the
        /// prepare does not answer is asked of the next one (a cluster's coordinators share a store).
        var coordinators: [CoordinatorID] = []
    }

    let backend: any ParticipantBackend
    let settings: Settings
    let logger: Logger
    private let thread = LoopThread<ParticipantLoop.Input>(name: "arbiter-loop")
    private let core: Core
    private static var traceCountMax: Int { 65_536 }
    /// What the loop's observer reports: the storage fault and the load.
    private let shared = Shared()
    /// What the last inquiry about each transaction in doubt brought, for operators.
    private let inquiries = InquiryRecords()
    /// When ``probeStorage(always:)`` last wrote, to try at most once a second.
    private let lastProbe = Mutex<ContinuousClock.Instant?>(nil)

    /// Written by the loop's observer, read by the HTTP handlers.
    private final class Shared: Sendable {
        /// Why the database cannot be written, and since when; `nil` while writes succeed.
        let writeFailure = Mutex<StorageFault?>(nil)
        let load = Mutex(EngineLoad())
        /// The trace context each transaction's latest message arrived with (see ``WireTracing``):
        /// the parent of its stage and apply spans and the context its inquiries carry. Empty unless
        /// requests carry a `traceparent` or a tracer is bootstrapped; bounded.
        let traces = Mutex<[TxID: ServiceContext]>([:])

        func traceContext(of txid: TxID) -> ServiceContext? {
            traces.withLock { $0.isEmpty ? nil : $0[txid] }
        }
    }

    /// What only the loop's thread touches.
    private final class Core: @unchecked Sendable {
        var loop: ParticipantLoop!
        var observer: Observer?
        let config: ParticipantConfig
        let seed: UInt64
        init(config: ParticipantConfig, seed: UInt64) {
            self.config = config
            self.seed = seed
        }
    }

    init(backend: any ParticipantBackend, config: ParticipantConfig, seed: UInt64, settings: Settings, logger: Logger) {
        self.backend = backend
        self.settings = settings
        self.logger = logger
        self.core = Core(config: config, seed: seed)
    }

    // MARK: - Start and stop

    /// Reads the transactions in doubt back, rebuilds the machine from them, and starts the loop.
    /// Call once, before serving.
    ///
    /// - Returns: how many transactions were in doubt.
    func start(client: ProtocolClient) throws -> Int {
        let observer = Observer(logger: logger, shared: shared)
        let storage = try backend.makeStorage(retention: core.config.retention,
                                              traceContext: { [shared] txid in shared.traceContext(of: txid) })
        let links = InquiryLinks(client: client, records: inquiries, timeout: settings.inquiryTimeout, concurrencyMax: settings.inquiryConcurrencyMax,
                                 coordinators: settings.coordinators, logger: logger, traceparent: { [shared] txid in
                                     WireTracing.traceparent(for: shared.traceContext(of: txid))
                                 }, post: { [thread] input in thread.post(input) })
        let retention = core.config.retention
        let loop = ParticipantLoop(
            machine: ParticipantMachine(config: core.config, seed: core.seed), storage: storage, transport: links,
            settings: .init(replyTimeout: settings.replyTimeout, waitingMax: settings.pendingReplyCountMax,
                            sweepInterval: min(max(retention / 4, .milliseconds(10)), .seconds(60)), retry: settings.storageRetry),
            seed: core.seed ^ 0x9E37_79B9_7F4A_7C15, observer: observer)
        core.loop = loop
        core.observer = observer
        try loop.recover(now: thread.now)
        let inDoubt = loop.machine.knownCount
        thread.start(running: loop, writeFailed: { [logger] error, delay in
            // Nothing of the round was applied: it stays whole and is tried again; nothing of it
            // is answered meanwhile (the observer records the storage fault).
            logger.error("the round's write failed; retrying", metadata: ["error": "\(error)", "retryIn": "\(delay)"])
        }, finish: { [core] inputs in
            // Shutdown: what arrived last is stepped and written; requests still waiting hear
            // `unavailable` (the coordinator asks again; recovery at the next start resumes).
            let loop = core.loop!
            loop.step(inputs, now: .zero)
            if (try? loop.write()) != nil { loop.advance() }
            loop.answerWaiting("the participant is stopping; retry when it is back")
        }, late: { input in
            switch input {
            case .request(let messages, let reply):
                reply(messages.map { _ in .unavailable("the participant is stopping; retry when it is back") })
            case .decide(_, _, let reply):
                reply(.unavailable("the participant is stopping; retry when it is back"))
            case .inspect, .learned:
                break
            }
        })
        return inDoubt
    }

    /// Stops the loop after its round, writing what it holds.
    func stop() async {
        await thread.stop()
    }

    // MARK: - Requests

    /// Hands `messages` (one request) to the loop and waits for each one's answer.
    func deliver(_ messages: [CoordinatorMessage]) async -> [ParticipantLoop.Reply] {
        inquiries.forgetDecided(messages)
        return await withCheckedContinuation { continuation in
            thread.post(.request(messages, reply: { continuation.resume(returning: $0) }))
        }
    }

    /// An operator's decision: commit or abort a transaction in doubt without the coordinator.
    /// Answers when the heuristic record is durable.
    func decideHeuristically(_ txid: TxID, _ outcome: Outcome) async -> ParticipantLoop.DecisionResult {
        let result = await withCheckedContinuation { continuation in
            thread.post(.decide(txid, outcome, reply: { continuation.resume(returning: $0) }))
        }
        if case .decided = result { inquiries.forget(txid) }
        return result
    }

    /// What the last inquiry about `txid` brought, while it is in doubt; `nil` when no inquiry about
    /// it has ended since the node started (or the coordinator's decision is known).
    func lastInquiry(of txid: TxID) -> InquiryRecord? { inquiries.last(txid) }

    /// Where `txid` stands in memory, or `nil` when nothing is known of it.
    func machineState(of txid: TxID) async -> ParticipantState? {
        await withCheckedContinuation { continuation in
            thread.post(.inspect { machine in continuation.resume(returning: machine.state(of: txid)) })
        }
    }

    /// How loaded the engine was at the end of its last round, for metrics.
    func load() -> EngineLoad { shared.load.withLock { $0 } }

    /// Remembers the trace context `txid`'s message arrived in, for the work and requests it causes.
    func remember(_ context: ServiceContext, for txid: TxID) {
        shared.traces.withLock { traces in
            if traces.count >= Self.traceCountMax { traces.removeAll() }
            traces[txid] = context
        }
    }

    // MARK: - Storage faults

    /// Why the database cannot be written, and since when; `nil` while it can. Prepares are
    /// refused while it is set, and `GET /readyz` answers 503.
    var storageFault: StorageFault? { shared.writeFailure.withLock { $0 } }

    /// While the database cannot be written, tries a small forced write (at most once a second)
    /// and clears the fault when it succeeds: refused prepares write nothing, so without a probe a
    /// node whose disk got space back would never notice.
    ///
    /// - Parameter always: Probe even without a known fault (at start, so that a node restarted on
    ///   a full disk refuses work at once instead of failing its first write).
    func probeStorage(always: Bool = false) async {
        guard always || storageFault != nil else { return }
        let now = ContinuousClock.now
        let due = lastProbe.withLock { last -> Bool in
            guard last.map({ now - $0 >= .seconds(1) }) ?? true else { return false }
            last = now
            return true
        }
        guard due else { return }
        do {
            try await backend.probe()
            let ended = shared.writeFailure.withLock { fault -> StorageFault? in
                defer { fault = nil }
                return fault
            }
            if let ended { logger.notice("the database can be written again", metadata: ["failingSince": "\(ended.since)"]) }
        } catch {
            shared.writeFailure.withLock { fault in
                if fault == nil { fault = StorageFault(since: Date(), message: "\(error)") }
            }
            logger.debug("storage probe failed; refusing protocol writes", metadata: ["error": "\(error)"])
        }
    }

    /// What the engine hears from its loop: write failures (the storage fault), anomalies, load.
    private final class Observer: ParticipantLoopObserver, @unchecked Sendable {
        let logger: Logger
        let shared: Shared

        init(logger: Logger, shared: Shared) {
            self.logger = logger
            self.shared = shared
        }

        func anomaly(_ txid: TxID, _ text: String) {
            logger.error("protocol anomaly: \(text)", metadata: ["txid": "\(txid)"])
        }

        func wrote(pieces: Int, forced: Bool, error: (any Error)?) {
            if let error {
                shared.writeFailure.withLock { fault in
                    if fault == nil { fault = StorageFault(since: Date(), message: "\(error)") }
                }
                return
            }
            let ended = shared.writeFailure.withLock { fault -> StorageFault? in
                defer { fault = nil }
                return fault
            }
            if let ended { logger.notice("the database can be written again", metadata: ["failingSince": "\(ended.since)"]) }
        }

        func failed(_ work: ParticipantWork, _ message: String) {
            let txid: String
            switch work {
            case .stage(let staging): txid = staging.txid.rawValue
            case .records(let records, _): txid = records.first?.txid.rawValue ?? ""
            }
            logger.error("storage work failed; retrying after a backoff (the transaction stays as it is meanwhile)",
                metadata: ["txid": "\(txid)", "error": "\(message)"])
        }

        func roundEnded(waiting: Int, retrying: Int, known: Int) {
            shared.load.withLock { $0 = EngineLoad(waitingRequests: waiting, queuedStorageOps: retrying, knownTransactions: known) }
        }

        func sweepFailed(_ error: any Error) {
            logger.warning("deleting ended transactions past their retention failed; the next sweep tries again",
                metadata: ["error": "\(error)"])
        }
    }
}
