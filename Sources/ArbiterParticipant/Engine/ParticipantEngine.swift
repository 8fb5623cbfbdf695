import ArbiterCore
import ArbiterHTTP
import ArbiterRuntime
import ArbiterStorage
import GRDB
import Logging
import Foundation
import Synchronization
import Tracing

/// The timers of one engine, all run by one ``TimerService`` on one task.
enum EngineTimer: Hashable, Sendable {
    /// A timer the state machine set.
    case machine(TimerID)
    /// A waiting request's answer is due (the slot's id).
    case replyDeadline(UInt64)
    /// Storage work that failed is due to run again.
    case storageRetry
    /// The ended transactions past their retention are due to be deleted.
    case sweep
}

/// One piece of storage work, queued in the machine's order.
enum StorageOp: Sendable {
    /// Run the resource's stage, deliver `staged`, and write the records it returns, in one local
    /// transaction.
    case stage(TxID, payload: ArbiterCore.Payload, onePhase: Bool)
    /// Write records (with the resource work each stands for); `forced` when the machine waits for
    /// `forced`.
    case records([ParticipantRecord], forced: Bool)

    var txid: TxID {
        switch self {
        case .stage(let txid, _, _): return txid
        case .records(let records, _): return records[0].txid
        }
    }

    /// Whether the batch holding this op must be forced. A stage almost always ends in a forced
    /// record (a yes vote, a one-phase outcome), so it counts as forced.
    var needsForce: Bool {
        switch self {
        case .stage: return true
        case .records(_, let forced): return forced
        }
    }
}

/// An in-doubt inquiry to send.
struct Inquiry: Sendable {
    var txid: TxID
    var coordinator: CoordinatorID
}

/// The effects of `staged` (or `alreadyRecorded`), split: records to write in the staging
/// transaction, replies to send once it has committed.
struct StagedEffects: Sendable {
    var txid: TxID
    /// The resource's vote; nil when nothing was staged because the store already held the
    /// transaction's records.
    var vote: Vote?
    var records: [ParticipantRecord] = []
    var forced = false
    var sends: [ParticipantMessage] = []

    /// Whether the staged work stays: only a yes that the machine turned into `prepared` (or, in one
    /// phase, `committed`). An abort that arrived while staging rolls the work back instead of
    /// calling the resource's discard.
    var keepsStagedWork: Bool {
        guard case .yes? = vote else { return false }
        return records.contains { record in
            switch record {
            case .prepared, .committed: return true
            case .aborted: return false
            }
        }
    }

    var writesPrepared: Bool { records.contains { if case .prepared = $0 { true } else { false } } }
    var writesCommitted: Bool { records.contains { if case .committed = $0 { true } else { false } } }
}

/// A request's answer: a slot to wait on, or a result known at once.
enum Waiting: Sendable {
    case slot(ReplySlot)
    case done(SlotResult)
}

/// An operator's decision: refused at once, or waiting for durability.
enum HeuristicAttempt: Sendable {
    case refused(HeuristicResult)
    case waiting(ReplySlot)
}

/// How one op of a batch ended.
enum OpOutcome: Sendable {
    case staged(StagedEffects)
    case recorded
    /// Rolled back; `machineFed` tells whether the machine had already been told (memory and disk
    /// now disagree).
    case failed(String, machineFed: Bool)
}

/// A snapshot of an engine's queues, for metrics.
struct EngineLoad: Sendable {
    /// Requests waiting for their answer (a durable vote or acknowledgement).
    var waitingRequests: Int
    /// Storage operations queued for the next group commits (retries included).
    var queuedStorageOps: Int
    /// Transactions the state machine remembers (in progress, or ended within memory retention).
    var knownTransactions: Int
}

/// What became of an operator's heuristic decision.
enum HeuristicResult: Sendable {
    case decided
    case notFound
    case notInDoubt(ParticipantState)
    case failed(APIError)
}

/// The driver of one ``ParticipantMachine``: it feeds events in and carries effects out.
///
/// Every event is handled under one lock, and its effects are dispatched inside that same lock as
/// non-blocking enqueues, so that they happen in the machine's order: timers go to the
/// ``TimerService``, storage work to the ordered outbox, replies to the waiting requests' slots,
/// inquiries to the inquiry queue. Three loops, run by ``ParticipantNode/run()``'s task group, do
/// the slow parts: the storage loop (group commit), the timer loop and the inquiry loop.
final class ParticipantEngine<R: Resource>: Sendable {
    /// Bounds and timeouts of the engine.
    struct Settings: Sendable {
        var replyTimeout: Duration
        var pendingReplyCountMax: Int
        var outboxLengthMax: Int
        var batchOpCountMax: Int
        var inquiryTimeout: Duration
        var inquiryConcurrencyMax: Int
        var inquiryQueueLengthMax: Int
        var storageRetry: Backoff
    }

    /// Where replies to messages that came over HTTP "go": nowhere, since they travel back in the
    /// HTTP response. The machine keeps it for transactions it first hears of from `commit` or
    /// `abort`, which never send anything but replies.
    static var replyAddress: CoordinatorID { CoordinatorID("") }

    let resource: R
    let store: ParticipantStore
    let settings: Settings
    let logger: Logger
    let timers = TimerService<EngineTimer>()
    /// The payloads decoded at the stage of transactions that voted yes, with the bytes they were
    /// decoded from, so that the commit (or abort) that follows does not decode them again. Used
    /// only when the bytes the store holds are the same; an entry goes at the transaction's end.
    /// The trace context each transaction's latest message arrived with (see ``WireTracing``):
    /// the parent of its stage and apply spans and the context its inquiries carry. Empty unless
    /// requests carry a `traceparent` or a tracer is bootstrapped; bounded like the payload cache.
    private let traces = Mutex<[TxID: ServiceContext]>([:])
    private static var traceCountMax: Int { 65_536 }
    private let decodedPayloads = Mutex<[TxID: (bytes: [UInt8], payload: R.Payload)]>([:])
    /// A bound on ``decodedPayloads``, should ends go missing (the cache is emptied past it).
    private static var decodedPayloadCountMax: Int { 100_000 }
    /// How long the store keeps ended transactions (``ParticipantConfig/retention``).
    let retention: Duration
    /// How often the ended transactions past ``retention`` are deleted: a quarter of it, between
    /// 10 ms and a minute.
    let sweepInterval: Duration
    private let state: Mutex<State>
    /// Why the database cannot be written, and since when; `nil` while writes succeed.
    private let writeFailure = Mutex<StorageFault?>(nil)
    /// When ``probeStorage()`` last wrote, to try at most once a second.
    private let lastProbe = Mutex<ContinuousClock.Instant?>(nil)

    /// Why the database cannot be written, and since when; `nil` while it can. Prepares are
    /// refused while it is set, and `GET /readyz` answers 503.
    var storageFault: StorageFault? { writeFailure.withLock { $0 } }

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
            try await store.write(.forced) { db in
                // Rewrites one row with its own value: a real write (SQLite writes the page), no change.
                try db.execute(sql: "UPDATE arbiter_schema_version SET version = version WHERE component = 'participant'")
            }
            let ended = writeFailure.withLock { fault -> StorageFault? in
                defer { fault = nil }
                return fault
            }
            if let ended { logger.notice("the database can be written again", metadata: ["failingSince": "\(ended.since)"]) }
        } catch {
            writeFailure.withLock { fault in
                if fault == nil { fault = StorageFault(since: Date(), message: "\(error)") }
            }
            logger.debug("storage probe failed; refusing protocol writes", metadata: ["error": "\(error)"])
        }
    }
    private let doorbell = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    private let inquiries: (stream: AsyncStream<Inquiry>, continuation: AsyncStream<Inquiry>.Continuation)
    private let inquiriesInFlight = Mutex<Set<TxID>>([])

    enum Phase: Sendable {
        case starting, running, stopped
    }

    struct State {
        var machine: ParticipantMachine
        var random: SplitMix64
        var phase = Phase.starting
        var outbox: [StorageOp] = []
        var retryOps: [StorageOp] = []
        var retryAttempt = 0
        var slotsByTxID: [TxID: [ReplySlot]] = [:]
        var slotsByID: [UInt64: ReplySlot] = [:]
        var nextSlotID: UInt64 = 0
        var sweepDue = false
    }

    init(resource: R, store: ParticipantStore, config: ParticipantConfig, seed: UInt64, settings: Settings, logger: Logger) {
        self.resource = resource
        self.store = store
        self.settings = settings
        self.logger = logger
        self.retention = config.retention
        self.sweepInterval = min(max(config.retention / 4, .milliseconds(10)), .seconds(60))
        self.state = Mutex(State(machine: ParticipantMachine(config: config, seed: seed), random: SplitMix64(seed: seed ^ 0x9E37_79B9_7F4A_7C15)))
        self.inquiries = AsyncStream.makeStream(of: Inquiry.self, bufferingPolicy: .bufferingOldest(settings.inquiryQueueLengthMax))
    }

    // MARK: - Start and stop

    /// Feeds the records read back at start-up, then accepts messages. Call once, before serving.
    func recover(_ records: [ParticipantRecord]) {
        state.withLock { state in
            precondition(state.phase == .starting, "recover is delivered once, first")
            dispatch(state.machine.handle(.recovered(records)), into: &state)
            state.phase = .running
        }
        timers.set(.sweep, after: sweepInterval)
    }

    /// Refuses new messages, answers every waiting request `unavailable`, and ends the loops: the
    /// storage loop after writing what is queued, the inquiry loop at once.
    func stop() {
        let waiting = state.withLock { state -> [ReplySlot] in
            state.phase = .stopped
            defer {
                state.slotsByID = [:]
                state.slotsByTxID = [:]
            }
            return Array(state.slotsByID.values)
        }
        for slot in waiting {
            slot.resolve(.failed(.unavailable("the participant is stopping; retry when it is back")))
        }
        doorbell.continuation.finish()
        inquiries.continuation.finish()
    }

    // MARK: - Messages

    /// Feeds `messages` in order (in one lock, so a batch keeps its order and shares a group commit)
    /// and waits for each one's answer.
    ///
    /// A `commit` or `abort` for a transaction the machine has forgotten (it ended longer ago than
    /// the memory retention) is answered from the store: its records are read first and fed as
    /// `recovered` right before the message. Otherwise an abort would leave a tombstone over a
    /// committed transaction, and a commit would be acknowledged as unknown.
    func deliver(_ messages: [CoordinatorMessage]) async -> [SlotResult] {
        var stored: [TxID: [ParticipantRecord]] = [:]
        let forgotten = state.withLock { state in
            messages.compactMap { message -> TxID? in
                switch message {
                case .commit(let txid), .abort(let txid): state.machine.state(of: txid) == nil ? txid : nil
                case .prepare, .outcome: nil
                }
            }
        }
        if !forgotten.isEmpty {
            do {
                stored = try await store.records(of: forgotten)
            } catch {
                logger.error("reading the records of forgotten transactions failed", metadata: ["error": "\(error)"])
                return messages.map { _ in .failed(.unavailable("reading this participant's records failed; retry the request")) }
            }
        }
        let waiting = state.withLock { state -> [Waiting] in
            messages.map { message -> Waiting in
                if let refusal = refusal(for: message, state: state) { return .done(.failed(refusal)) }
                let from: CoordinatorID
                let kind: ReplySlot.Kind
                switch message {
                case .prepare(let request):
                    from = request.coordinator
                    kind = .vote
                case .commit, .abort:
                    from = Self.replyAddress
                    kind = .acknowledgement
                case .outcome:
                    preconditionFailure("an inquiry's answer is not delivered as a request")
                }
                let slot = register(message.txid, kind, into: &state)
                if let records = stored.removeValue(forKey: message.txid), state.machine.state(of: message.txid) == nil {
                    dispatch(state.machine.handle(.recovered(records)), into: &state)
                }
                dispatch(state.machine.handle(.received(from: from, message)), into: &state)
                return .slot(slot)
            }
        }
        var results: [SlotResult] = []
        results.reserveCapacity(waiting.count)
        for item in waiting {
            switch item {
            case .slot(let slot): results.append(await slot.wait())
            case .done(let result): results.append(result)
            }
        }
        return results
    }

    /// Remembers the trace context `txid`'s message arrived in, for the work and requests it causes.
    func remember(_ context: ServiceContext, for txid: TxID) {
        traces.withLock { traces in
            if traces.count >= Self.traceCountMax { traces.removeAll() }
            traces[txid] = context
        }
    }

    /// The trace context of `txid`, if its messages carried one.
    func traceContext(of txid: TxID) -> ServiceContext? {
        traces.withLock { $0.isEmpty ? nil : $0[txid] }
    }

    /// Runs `work` in a span named `name` when `txid` has a trace context and a tracer records.
    private func traced<T>(_ name: String, _ txid: TxID, _ work: () throws -> T) rethrows -> T {
        guard let span = WireTracing.startSpan(name, context: traceContext(of: txid)) else { return try work() }
        span.attributes["arbiter.txid"] = txid.rawValue
        defer { span.end() }
        do {
            return try work()
        } catch {
            span.recordError(error)
            throw error
        }
    }

    /// Feeds one message and waits for its answer.
    func deliver(_ message: CoordinatorMessage) async -> SlotResult {
        await deliver([message])[0]
    }

    /// Why `message` is refused before the machine sees it, if it is.
    private func refusal(for message: CoordinatorMessage, state: State) -> APIError? {
        switch state.phase {
        case .starting:
            return .unavailable("the participant is starting (recovering its records); retry shortly")
        case .stopped:
            return .unavailable("the participant is stopping; retry when it is back")
        case .running:
            break
        }
        if state.slotsByID.count >= settings.pendingReplyCountMax {
            return .unavailable("\(settings.pendingReplyCountMax) requests are already waiting for answers; retry later")
        }
        if case .prepare = message, state.outbox.count + state.retryOps.count >= settings.outboxLengthMax {
            return .unavailable("\(settings.outboxLengthMax) storage operations are queued; the disk is behind, retry later")
        }
        return nil
    }

    /// An operator's decision: commit or abort a transaction in doubt without the coordinator.
    /// Answers when the heuristic record is durable.
    func decideHeuristically(_ txid: TxID, _ outcome: Outcome) async -> HeuristicResult {
        let attempt = state.withLock { state -> HeuristicAttempt in
            guard state.phase == .running else {
                return .refused(.failed(.unavailable("the participant is starting or stopping; retry shortly")))
            }
            guard let current = state.machine.state(of: txid) else { return .refused(.notFound) }
            // Memory forgets ended transactions, never one in doubt.
            guard current == .prepared else { return .refused(.notInDoubt(current)) }
            let slot = register(txid, .durable, into: &state)
            dispatch(state.machine.handle(.decideHeuristically(txid, outcome)), into: &state)
            return .waiting(slot)
        }
        switch attempt {
        case .refused(let result):
            return result
        case .waiting(let slot):
            switch await slot.wait() {
            case .durable, .answer: return .decided
            case .failed(let error): return .failed(error)
            }
        }
    }

    /// Where `txid` stands in memory, or `nil` when nothing is known of it.
    func machineState(of txid: TxID) -> ParticipantState? {
        state.withLock { $0.machine.state(of: txid) }
    }

    /// How loaded the engine is now, for metrics.
    func load() -> EngineLoad {
        state.withLock { state in
            EngineLoad(waitingRequests: state.slotsByID.count, queuedStorageOps: state.outbox.count + state.retryOps.count,
                       knownTransactions: state.machine.knownCount)
        }
    }

    /// The coordinator answered an inquiry.
    private func learned(_ answer: InquiryAnswer, for txid: TxID, from coordinator: CoordinatorID) {
        state.withLock { state in
            guard state.phase == .running else { return }
            dispatch(state.machine.handle(.received(from: coordinator, .outcome(txid, answer))), into: &state)
        }
    }

    // MARK: - Dispatch (always under the lock)

    private func register(_ txid: TxID, _ kind: ReplySlot.Kind, into state: inout State) -> ReplySlot {
        let slot = ReplySlot(id: state.nextSlotID, txid: txid, kind: kind)
        state.nextSlotID += 1
        state.slotsByID[slot.id] = slot
        state.slotsByTxID[txid, default: []].append(slot)
        timers.set(.replyDeadline(slot.id), after: settings.replyTimeout)
        return slot
    }

    /// Carries out effects in order, as non-blocking enqueues.
    private func dispatch(_ effects: [ParticipantEffect], into state: inout State) {
        var queued = false
        for effect in effects {
            switch effect {
            case .stage(let txid, let payload, let onePhase):
                state.outbox.append(.stage(txid, payload: payload, onePhase: onePhase))
                queued = true
            case .write(let records):
                guard !records.isEmpty else { continue }
                state.outbox.append(.records(records, forced: false))
                queued = true
            case .force(let records):
                guard !records.isEmpty else { continue }
                state.outbox.append(.records(records, forced: true))
                queued = true
            case .send(let coordinator, .inquire(let txid)):
                if case .dropped = inquiries.continuation.yield(Inquiry(txid: txid, coordinator: coordinator)) {
                    logger.warning("inquiry queue full; the inquiry is asked again after its backoff",
                        metadata: ["txid": "\(txid)"])
                }
            case .send(_, let message):
                resolve(message, in: &state)
            case .setTimer(let timer, let delay):
                timers.set(.machine(timer), after: delay)
            case .cancelTimer(let timer):
                timers.cancel(.machine(timer))
            case .anomaly(let txid, let text):
                logger.error("protocol anomaly: \(text)", metadata: ["txid": "\(txid)"])
            }
        }
        if queued { doorbell.continuation.yield() }
    }

    /// Answers every request on the message's transaction that waits for this kind of message. A
    /// message nobody waits for is dropped: the coordinator resends.
    private func resolve(_ message: ParticipantMessage, in state: inout State) {
        let txid = message.txid
        guard let waiting = state.slotsByTxID[txid] else { return }
        var remaining: [ReplySlot] = []
        for slot in waiting {
            if slot.accepts(message) {
                finish(slot, .answer(message), in: &state)
            } else {
                remaining.append(slot)
            }
        }
        state.slotsByTxID[txid] = remaining.isEmpty ? nil : remaining
    }

    private func finish(_ slot: ReplySlot, _ result: SlotResult, in state: inout State) {
        state.slotsByID[slot.id] = nil
        timers.cancel(.replyDeadline(slot.id))
        slot.resolve(result)
    }

    /// Feeds `forced` and answers the operators waiting for the durability of `txid`.
    private func forced(_ txid: TxID, in state: inout State) {
        dispatch(state.machine.handle(.forced(txid)), into: &state)
        guard let waiting = state.slotsByTxID[txid] else { return }
        var remaining: [ReplySlot] = []
        for slot in waiting {
            if case .durable = slot.kind {
                finish(slot, .durable, in: &state)
            } else {
                remaining.append(slot)
            }
        }
        state.slotsByTxID[txid] = remaining.isEmpty ? nil : remaining
    }

    // MARK: - Timer loop

    /// Fires due timers until the engine stops or the task is cancelled.
    func runTimers() async {
        while state.withLock({ $0.phase != .stopped }) {
            for timer in timers.takeDue() { fire(timer) }
            do {
                try await Task.sleep(for: timers.pollInterval)
            } catch {
                return
            }
        }
    }

    private func fire(_ timer: EngineTimer) {
        switch timer {
        case .machine(let id):
            state.withLock { state in
                guard state.phase == .running else { return }
                dispatch(state.machine.handle(.timerFired(id)), into: &state)
            }
        case .replyDeadline(let id):
            let slot = state.withLock { state -> ReplySlot? in
                guard let slot = state.slotsByID.removeValue(forKey: id) else { return nil }
                state.slotsByTxID[slot.txid]?.removeAll { $0 === slot }
                if state.slotsByTxID[slot.txid]?.isEmpty == true { state.slotsByTxID[slot.txid] = nil }
                return slot
            }
            slot?.resolve(.failed(.unavailable(
                "no answer for \(slot?.txid.rawValue ?? "") within \(settings.replyTimeout); the work goes on, retry the request to get its answer")))
        case .storageRetry:
            state.withLock { state in
                guard !state.retryOps.isEmpty else { return }
                state.outbox.append(contentsOf: state.retryOps)
                state.retryOps = []
                doorbell.continuation.yield()
            }
        case .sweep:
            state.withLock { state in
                guard state.phase == .running else { return }
                state.sweepDue = true
                doorbell.continuation.yield()
            }
            timers.set(.sweep, after: sweepInterval)
        }
    }

    // MARK: - Inquiry loop

    /// Sends the machine's inquiries to the coordinators, at most `inquiryConcurrencyMax` at once and
    /// one per transaction; feeds each answer back. A failed inquiry is dropped: the machine's timer
    /// asks again.
    func runInquiries(client: ProtocolClient) async {
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            for await inquiry in inquiries.stream {
                guard inquiriesInFlight.withLock({ $0.insert(inquiry.txid).inserted }) else { continue }
                if running >= settings.inquiryConcurrencyMax {
                    await group.next()
                    running -= 1
                }
                running += 1
                group.addTask {
                    defer { _ = self.inquiriesInFlight.withLock { $0.remove(inquiry.txid) } }
                    do {
                        let answer = try await client.inquire(
                            inquiry.txid, coordinator: inquiry.coordinator, timeout: self.settings.inquiryTimeout,
                            traceparent: WireTracing.traceparent(for: self.traceContext(of: inquiry.txid)))
                        self.logger.debug("inquiry answered", metadata: ["txid": "\(inquiry.txid)", "answer": "\(answer)"])
                        // Between the coordinator's answer and its effect here: a crash loses the
                        // answer (the next inquiry asks again); a delay is a slow network.
                        try? await Failpoints.hit("participant.before-inquiry-answer")
                        self.learned(answer, for: inquiry.txid, from: inquiry.coordinator)
                    } catch {
                        self.logger.notice("in-doubt inquiry failed; asking again after the backoff",
                            metadata: ["txid": "\(inquiry.txid)", "coordinator": "\(inquiry.coordinator)", "error": "\(error)"])
                    }
                }
            }
            group.cancelAll()
        }
    }

    // MARK: - Storage loop

    /// Writes the outbox in group commits until the engine stops, then writes what is left.
    ///
    /// - Throws: ``ParticipantNodeError`` `storageFailed` when a write failed after the machine had
    ///   moved on; the node must stop and recover from what is durable.
    func runStorage() async throws {
        for await _ in doorbell.stream {
            try await drainOutbox(roundsMax: .max)
            await sweepIfDue()
        }
        // Stopped (not cancelled): write what the last answered requests left behind, a bounded
        // number of rounds, since each round's `forced` may queue more.
        if !Task.isCancelled {
            try await drainOutbox(roundsMax: 8)
        }
    }

    private func drainOutbox(roundsMax: Int) async throws {
        var rounds = 0
        while rounds < roundsMax {
            let ops = state.withLock { state -> [StorageOp] in
                let count = min(state.outbox.count, settings.batchOpCountMax)
                defer { state.outbox.removeFirst(count) }
                return Array(state.outbox.prefix(count))
            }
            guard !ops.isEmpty else { return }
            try await commit(ops)
            rounds += 1
        }
    }

    /// Runs `ops` in ONE local transaction (each op in its own savepoint), forced when any op needs
    /// it; then delivers what their durability allows.
    private func commit(_ ops: [StorageOp]) async throws {
        let durability: Durability = ops.contains(where: \.needsForce) ? .forced : .lazy
        let ledger = BatchLedger()
        do {
            let outcomes = try await store.write(durability) { db in
                ops.enumerated().map { index, op in self.perform(op, index: index, ledger: ledger, in: db) }
            }
            let ended = writeFailure.withLock { fault -> StorageFault? in
                defer { fault = nil }
                return fault
            }
            if let ended { logger.notice("the database can be written again", metadata: ["failingSince": "\(ended.since)"]) }
            try await complete(ops, outcomes)
        } catch let error as ParticipantNodeError {
            throw error
        } catch {
            writeFailure.withLock { fault in
                if fault == nil { fault = StorageFault(since: Date(), message: "\(error)") }
            }
            try batchFailed(ops, ledger: ledger, error)
        }
    }

    // MARK: - Retention sweep

    /// Deletes the records of transactions that ended longer ago than the retention, a page at a
    /// time, on the storage loop (each page a lazy write of its own, so the protocol's group
    /// commits go on between pages). Memory forgot them long before (see
    /// ``ParticipantConfig/memoryRetention``); after this, a late duplicate finds nothing. A failure
    /// is logged, and the next sweep tries again.
    private func sweepIfDue() async {
        let due = state.withLock { state in
            defer { state.sweepDue = false }
            return state.sweepDue && state.phase == .running
        }
        guard due else { return }
        // A page of 1,000 rows holds the writer for a few milliseconds, not a group commit's worth.
        let page = 1000
        do {
            let deleted = try await store.forgetEnded(olderThan: retention, limit: page)
            if deleted == page {
                // More are due: the next round of the loop writes the outbox first, then goes on.
                state.withLock { $0.sweepDue = true }
                doorbell.continuation.yield()
            }
        } catch {
            logger.warning("deleting ended transactions past their retention failed; the next sweep tries again",
                metadata: ["error": "\(error)"])
        }
    }

    /// The whole batch's transaction failed. Ops the machine had not been told about are retried;
    /// if it had been told (a stage's vote), memory and disk disagree and the node must stop.
    private func batchFailed(_ ops: [StorageOp], ledger: BatchLedger, _ error: any Error) throws {
        let fed = ledger.fedIndices
        if !fed.isEmpty {
            let txids = fed.sorted().map { ops[$0].txid.rawValue }.joined(separator: ", ")
            logger.critical("a group commit failed after the machine recorded its votes; stopping", metadata: ["error": "\(error)", "txids": "\(txids)"])
            throw ParticipantNodeError(.storageFailed,
                "writing the votes of \(txids) failed; the participant stops so that a restart rebuilds its state from the database. Check the disk, then restart",
                cause: error)
        }
        logger.error("a group commit failed; retrying its writes after a backoff", metadata: ["error": "\(error)", "count": "\(ops.count)"])
        state.withLock { state in
            for op in ops { scheduleRetry(op, in: &state) }
        }
    }

    private func scheduleRetry(_ op: StorageOp, in state: inout State) {
        state.retryOps.append(op)
        let delay = settings.storageRetry.delay(attempt: state.retryAttempt, random: &state.random)
        state.retryAttempt += 1
        timers.set(.storageRetry, after: delay)
    }

    /// After the batch is durable: fire the after-force failpoints, deliver the deferred replies and
    /// `forced` events, and schedule failed ops again.
    private func complete(_ ops: [StorageOp], _ outcomes: [OpOutcome]) async throws {
        for (op, outcome) in zip(ops, outcomes) {
            switch outcome {
            case .staged(let staged) where staged.forced:
                if staged.writesPrepared { try? await Failpoints.hit("participant.after-prepare-force") }
                if staged.writesCommitted { try? await Failpoints.hit("participant.after-commit-force") }
            case .recorded:
                if case .records(let records, true) = op, records.contains(where: { if case .committed = $0 { true } else { false } }) {
                    try? await Failpoints.hit("participant.after-commit-force")
                }
            default:
                break
            }
        }
        var fatal: [String] = []
        state.withLock { state in
            var anyFailed = false
            for (op, outcome) in zip(ops, outcomes) {
                switch outcome {
                case .staged(let staged):
                    for message in staged.sends { resolve(message, in: &state) }
                    if staged.forced { forced(staged.txid, in: &state) }
                case .recorded:
                    if case .records(_, true) = op { forced(op.txid, in: &state) }
                case .failed(let message, let machineFed):
                    anyFailed = true
                    if machineFed {
                        fatal.append("\(op.txid): \(message)")
                    } else {
                        logger.error("storage work failed; retrying after a backoff (the transaction stays as it is meanwhile)",
                            metadata: ["txid": "\(op.txid)", "error": "\(message)"])
                        scheduleRetry(op, in: &state)
                    }
                }
            }
            if !anyFailed { state.retryAttempt = 0 }
        }
        if !fatal.isEmpty {
            logger.critical("recording a vote failed after the machine took it; stopping", metadata: ["failures": "\(fatal)"])
            throw ParticipantNodeError(.storageFailed,
                "recording \(fatal.joined(separator: "; ")) failed; the participant stops so that a restart rebuilds its state from the database")
        }
    }

    // MARK: - Work inside the local transaction (on the writer's queue)

    private func perform(_ op: StorageOp, index: Int, ledger: BatchLedger, in db: Database) -> OpOutcome {
        switch op {
        case .stage(let txid, let payload, let onePhase):
            return performStage(txid, payload: payload, onePhase: onePhase, index: index, ledger: ledger, in: db)
        case .records(let records, _):
            do {
                try db.inPreparedSavepoint {
                    for record in records { try write(record, in: db) }
                    return .commit
                }
                return .recorded
            } catch {
                return .failed("\(error)", machineFed: false)
            }
        }
    }

    /// Stages in a savepoint, delivers `staged` while still inside it (so that an abort that came
    /// meanwhile rolls the staged work back), then writes the records the machine returned, all in
    /// the caller's transaction: the staged change and its protocol record are one fact.
    ///
    /// First it looks the transaction up (one primary-key read, in this same transaction): if it
    /// ended here and memory forgot it, nothing is staged, and the machine answers the prepare
    /// from its records (`alreadyRecorded`).
    private func performStage(
        _ txid: TxID, payload: ArbiterCore.Payload, onePhase: Bool, index: Int, ledger: BatchLedger, in db: Database
    ) -> OpOutcome {
        var fed: StagedEffects?
        do {
            try db.inPreparedSavepoint {
                try db.inPreparedSavepoint {
                    let effects: StagedEffects
                    if let recorded = try store.transaction(txid, in: db) {
                        effects = feed(.alreadyRecorded(txid, recorded.records), txid: txid, vote: nil)
                    } else {
                        let vote = stageVote(txid, payload: payload, onePhase: onePhase, in: db)
                        effects = feed(.staged(txid, vote), txid: txid, vote: vote)
                    }
                    ledger.markFed(index)
                    fed = effects
                    return effects.keepsStagedWork ? .commit : .rollback
                }
                guard let fed else { return .rollback }
                if fed.writesPrepared { try Failpoints.hitSync("participant.before-prepare-force") }
                if fed.writesCommitted { try Failpoints.hitSync("participant.before-commit-force") }
                for record in fed.records { try store.apply(record, in: db) }
                return .commit
            }
        } catch {
            return .failed("\(error)", machineFed: fed != nil)
        }
        guard let fed else { return .failed("staging produced no vote", machineFed: false) }
        return .staged(fed)
    }

    /// Decodes the payload and runs the resource's stage (and, in one phase, its apply); every
    /// refusal or error becomes a `no` vote with a reason.
    private func stageVote(_ txid: TxID, payload: ArbiterCore.Payload, onePhase: Bool, in db: Database) -> Vote {
        let decoded: R.Payload
        do {
            decoded = try WireJSON.decode(R.Payload.self, from: payload.bytes)
        } catch {
            return .no(reason: Self.reason("the payload does not fit this participant: \(error.message)"))
        }
        do {
            let vote = try traced("stage", txid) { try resource.stage(decoded, in: StageContext(txid: txid, db: db, store: store)) }
            if onePhase, case .yes = vote {
                try traced("apply", txid) { try resource.apply(decoded, in: OutcomeContext(txid: txid, db: db, isHeuristic: false)) }
            } else if case .yes = vote {
                decodedPayloads.withLock { cache in
                    if cache.count >= Self.decodedPayloadCountMax { cache.removeAll() }
                    cache[txid] = (payload.bytes, decoded)
                }
            }
            if case .no(let reason) = vote {
                return .no(reason: Self.reason(reason.isEmpty ? "refused by the resource" : reason))
            }
            return vote
        } catch let conflict as LockConflict {
            return .no(reason: Self.reason(conflict.description))
        } catch {
            return .no(reason: Self.reason("staging failed: \(error)"))
        }
    }

    /// A reason short enough for a reply and a log line.
    private static func reason(_ text: String) -> String {
        let limit = 1000
        guard text.utf8.count > limit else { return text }
        return String(decoding: text.utf8.prefix(limit), as: UTF8.self) + "…"
    }

    /// Delivers `staged` (or `alreadyRecorded`) and splits its effects: records are for the
    /// caller's transaction, replies wait for its commit, the rest is dispatched now.
    private func feed(_ event: ParticipantEvent, txid: TxID, vote: Vote?) -> StagedEffects {
        state.withLock { state in
            var staged = StagedEffects(txid: txid, vote: vote)
            var rest: [ParticipantEffect] = []
            for effect in state.machine.handle(event) {
                switch effect {
                case .write(let records):
                    staged.records += records
                case .force(let records):
                    staged.records += records
                    staged.forced = true
                case .send(_, let message) where !message.isInquiry:
                    staged.sends.append(message)
                default:
                    rest.append(effect)
                }
            }
            dispatch(rest, into: &state)
            return staged
        }
    }

    /// Writes one record with the resource work it stands for: `committed` applies what was staged,
    /// `aborted` discards it (or is a tombstone when nothing was).
    private func write(_ record: ParticipantRecord, in db: Database) throws {
        switch record {
        case .prepared:
            // Only a stage writes a prepared record, together with its staged work.
            assertionFailure("a prepared record outside a stage")
            try store.apply(record, in: db)
        case .committed(let txid, let heuristic):
            try Failpoints.hitSync("participant.before-commit-force")
            if let payload = try stagedPayload(of: txid, in: db) {
                try traced("apply", txid) { try resource.apply(payload, in: OutcomeContext(txid: txid, db: db, isHeuristic: heuristic)) }
            }
            try store.apply(record, in: db)
        case .aborted(let txid, let heuristic):
            if let payload = try stagedPayload(of: txid, in: db) {
                try traced("discard", txid) { try resource.discard(payload, in: OutcomeContext(txid: txid, db: db, isHeuristic: heuristic)) }
            }
            try store.apply(record, in: db)
        }
    }

    /// The decoded payload of `txid` when it is prepared here (staged and not yet ended): the one
    /// decoded at its stage when the store holds the same bytes, else decoded from the store.
    private func stagedPayload(of txid: TxID, in db: Database) throws -> R.Payload? {
        let cached = decodedPayloads.withLock { $0.removeValue(forKey: txid) }
        guard let payload = try store.preparedPayload(of: txid, in: db) else { return nil }
        if let cached, cached.bytes == payload.bytes { return cached.payload }
        do {
            return try WireJSON.decode(R.Payload.self, from: payload.bytes)
        } catch {
            throw StagedPayloadError(txid: txid, detail: error.description)
        }
    }
}

/// The payload recorded at prepare no longer decodes (the resource's payload type changed in a way
/// that breaks transactions in doubt).
struct StagedPayloadError: Error, CustomStringConvertible {
    var txid: TxID
    var detail: String
    var description: String {
        "the payload recorded when \(txid) was prepared no longer decodes (\(detail)); restore a build whose Payload decodes it"
    }
}

/// Which ops of a batch delivered `staged` to the machine, written from the writer's queue.
final class BatchLedger: Sendable {
    private let fed = Mutex<Set<Int>>([])
    func markFed(_ index: Int) { _ = fed.withLock { $0.insert(index) } }
    var fedIndices: Set<Int> { fed.withLock { $0 } }
}

extension ParticipantMessage {
    var isInquiry: Bool {
        if case .inquire = self { return true }
        return false
    }
}
