public import ArbiterCore
import ArbiterHTTP
import ArbiterRuntime
public import ArbiterStorage
import Foundation
import Logging
import Synchronization
public import Tracing

/// Drives the ``CoordinatorMachine`` with real storage, transport and timers.
///
/// The machine lives under one lock. Every event is handled under it, and the effects it returns
/// are *dispatched under the same lock* as non-blocking enqueues — records to the storage outbox,
/// messages to the participant links, timers to the timer service, outcomes to waiting clients —
/// so they take effect in exactly the machine's order. The slow work happens outside the lock:
///
/// - The **storage loop** commits everything in the outbox in one transaction (one fsync when any
///   of it must be forced — group commit), then feeds ``CoordinatorEvent/forced(_:)`` back. Lazy
///   records alone wait up to ``lazyLinger`` for a forced write to share its transaction.
/// - The **participant links** batch the messages for each participant into one request.
/// - The **timer loop** fires the protocol timers.
public final class CoordinatorEngine: Sendable {
    /// What a client is told about its transaction.
    public enum SubmitResult: Hashable, Sendable {
        case outcome(TxID, Outcome, reason: String?)
        case rejected(TxID, SubmitRejection)
        /// No outcome within the client's wait; the transaction goes on.
        case pending(TxID)
    }

    /// When a submit returns.
    public enum Wait: Hashable, Sendable {
        /// Once the decision is durable (the default).
        case decision
        /// Once phase 2 has finished: every participant acknowledged.
        case completion
    }

    private struct Waiter {
        var id: UInt64
        var wait: Wait
        var slot: OutcomeSlot
    }

    /// A waiting client, whose deadline shares the timer loop with the machine's timers.
    struct WaiterKey: Hashable, Sendable {
        var txid: TxID
        var id: UInt64
    }

    /// What the engine's one timer heap holds: the machine's protocol timers and clients' deadlines.
    enum EngineTimer: Hashable, Sendable {
        case machine(TimerID)
        /// The client's wait runs out: it is answered `pending`.
        case clientDeadline(WaiterKey)
    }

    private struct PendingWrite {
        var records: [CoordinatorRecord]
        /// Set when the write is forced: the transaction whose `forced` event follows.
        var forced: TxID?
    }

    private struct State: ~Copyable {
        var machine: CoordinatorMachine
        var outbox: [PendingWrite] = []
        var waiters: [TxID: [Waiter]] = [:]
        var nextWaiterID: UInt64 = 0
        /// When each active transaction was submitted, for the phase latency metrics.
        var started: [TxID: ContinuousClock.Instant] = [:]
        /// The reason given with a reported abort, kept for clients that wait for completion.
        var reasons: [TxID: String] = [:]
        /// The storage loop, while it lets lazy records linger: resumed by the next forced write,
        /// or by the timer of the linger numbered `lingerCount`.
        var linger: CheckedContinuation<Void, Never>?
        var lingerCount: UInt64 = 0
    }

    public let log: DecisionLog
    let links: ParticipantLinks
    /// The machine's timers and each waiting client's deadline: one queue on the timer loop instead
    /// of a sleeping task per request.
    let timers: TimerService<EngineTimer>
    let metrics: CoordinatorMetrics
    /// Finished transactions per second, for the dashboard.
    let activity = ActivityRing()
    private let logger: Logger
    private let state: Mutex<State>
    private let storageWake: AsyncStream<Void>.Continuation
    private let storageSignals: AsyncStream<Void>
    private let clock = ContinuousClock()
    /// Why the decision log cannot be written, and since when; `nil` while writes succeed.
    private let writeFailure = Mutex<StorageFault?>(nil)
    /// Each traced transaction's context (its `submit` span's), kept from the submit until phase 2
    /// completes: the parent of the spans and the `traceparent` of the requests it causes. Empty
    /// when nothing is traced. Bounded: a full map is cleared (those transactions lose their trace,
    /// never their outcome).
    private let traces = Mutex<[TxID: ServiceContext]>([:])
    private static var traceCountMax: Int { 65_536 }
    /// Serialises, per transaction id, a submit's "is it new?" and an inquiry's "is it unknown?".
    private let admissions = KeyedSerializer<TxID>()
    /// How long lazy records (`begun`, acknowledgements, `ended`, abort decisions) wait for a forced
    /// write to commit with, before they commit alone.
    ///
    /// Committing them at once costs a SQLite transaction of their own and, at low load, puts that
    /// transaction in front of the commit decision that arrives a round trip later: the decision
    /// then waits for it. Lazy records may be lost in a crash anyway (presumed abort needs none of
    /// them), so holding them a little longer changes no outcome; it only delays their visibility in
    /// the log (the operator's view) by at most this long.
    let lazyLinger: Duration

    init(
        machine: CoordinatorMachine, log: DecisionLog, links: ParticipantLinks, metrics: CoordinatorMetrics, logger: Logger,
        lazyLinger: Duration
    ) {
        self.lazyLinger = lazyLinger
        self.state = Mutex(State(machine: machine))
        self.log = log
        self.links = links
        self.metrics = metrics
        self.logger = logger
        self.timers = TimerService()
        (storageSignals, storageWake) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
        links.engine = self
    }

    // MARK: - Events

    /// Feeds `event` to the machine and dispatches its effects in order; returns how many
    /// messages it sent.
    @discardableResult
    func handle(_ event: CoordinatorEvent) -> Int {
        state.withLock { state in
            let effects = state.machine.handle(event)
            dispatch(effects, &state)
            return effects.count(where: { if case .send = $0 { true } else { false } })
        }
    }

    /// What came of an operator's ``retryPhaseTwoNow(_:)``.
    public enum RetryResult: Hashable, Sendable {
        /// The decision went out again, now, to these participants.
        case resent([ParticipantID])
        /// The machine is not in phase 2 of the transaction: undecided (`phase` set), or not
        /// driven any more (`phase` nil: ended, or never seen).
        case notOwed(CoordinatorPhase?)
    }

    /// Resends the decision of `txid` now to every participant that has not acknowledged it,
    /// without waiting for the retry timer (an operator's lever).
    public func retryPhaseTwoNow(_ txid: TxID) -> RetryResult {
        let result = state.withLock { state -> RetryResult in
            guard let owing = state.machine.owingAcknowledgement(txid) else {
                return .notOwed(state.machine.phase(of: txid))
            }
            let effects = state.machine.handle(.retryPhaseTwoNow(txid))
            dispatch(effects, &state)
            return .resent(owing)
        }
        if case .resent(let participants) = result {
            metrics.phaseTwoRetries.increment(by: Int64(participants.count))
            links.poke()
        }
        return result
    }

    /// For each participant, how many acknowledgements of decisions the machine still waits for.
    public func owedAcknowledgements() -> [ParticipantID: Int] {
        state.withLock { $0.machine.owedAcknowledgementCounts() }
    }

    private func dispatch(_ effects: [CoordinatorEffect], _ state: inout State) {
        var wroteRecords = false
        for effect in effects {
            switch effect {
            case .send(let participant, let message):
                links.enqueue(message, to: participant, urgent: isUrgent(message, state), trace: traceContext(of: message.txid))
            case .write(let records):
                state.outbox.append(PendingWrite(records: records, forced: nil))
                wroteRecords = true
            case .force(let records):
                state.outbox.append(PendingWrite(records: records, forced: records.first?.txid))
                wroteRecords = true
                if let linger = state.linger {
                    state.linger = nil
                    linger.resume()
                }
            case .setTimer(let timer, let delay):
                timers.set(.machine(timer), after: delay)
            case .cancelTimer(let timer):
                timers.cancel(.machine(timer))
            case .report(let txid, let outcome, let reason):
                if let started = state.started[txid] { metrics.decisionLatency.recordNanoseconds((clock.now - started).nanoseconds) }
                if let reason, state.waiters[txid] != nil { state.reasons[txid] = reason }
                resume(txid, .outcome(txid, outcome, reason: reason), waiting: .decision, &state)
            case .complete(let txid, let outcome):
                forgetTrace(txid)
                let started = state.started.removeValue(forKey: txid)
                if let started { metrics.completionLatency.recordNanoseconds((clock.now - started).nanoseconds) }
                activity.record(outcome, latency: started.map { clock.now - $0 })
                metrics.transactions(outcome).increment()
                let reason = state.reasons.removeValue(forKey: txid)
                resume(txid, .outcome(txid, outcome, reason: reason), waiting: nil, &state)
            case .reject(let txid, let rejection):
                forgetTrace(txid)
                resume(txid, .rejected(txid, rejection), waiting: nil, &state)
            case .anomaly(let txid, let text):
                metrics.anomalies.increment()
                logger.error("protocol anomaly", metadata: ["txid": "\(txid)", "anomaly": "\(text)"])
            }
        }
        metrics.active.set(Int64(state.machine.activeCount))
        if wroteRecords { storageWake.yield() }
    }

    /// The trace context of `txid`, when its submit carried one.
    func traceContext(of txid: TxID) -> ServiceContext? {
        traces.withLock { $0.isEmpty ? nil : $0[txid] }
    }

    private func forgetTrace(_ txid: TxID) {
        traces.withLock { traces in
            if !traces.isEmpty { traces[txid] = nil }
        }
    }

    /// Whether `message` must go at once: a prepare, or a phase-2 message of a transaction a client
    /// waits to see completed. Other phase-2 messages may linger for a request to share (see
    /// ``ParticipantLinks``).
    private func isUrgent(_ message: CoordinatorMessage, _ state: borrowing State) -> Bool {
        switch message {
        case .commit(let txid), .abort(let txid):
            return state.waiters[txid]?.contains { $0.wait == .completion } ?? false
        default:
            return true
        }
    }

    /// Resumes the waiters of `txid` that wait for `wait` (all of them when `nil`).
    private func resume(_ txid: TxID, _ result: SubmitResult, waiting wait: Wait?, _ state: inout State) {
        guard var waiters = state.waiters[txid] else { return }
        waiters.removeAll { waiter in
            // A decision answers `decision` waiters; a completion, rejection answers everyone.
            guard wait == nil || waiter.wait == wait else { return false }
            waiter.slot.fulfil(result)
            timers.cancel(.clientDeadline(WaiterKey(txid: txid, id: waiter.id)))
            return true
        }
        state.waiters[txid] = waiters.isEmpty ? nil : waiters
    }

    // MARK: - Clients

    /// Runs (or rejoins) a transaction and waits, at most `waitMax`, for its outcome.
    ///
    /// A transaction the machine no longer drives is answered from the log: the same id with the
    /// same branches gets the recorded outcome; other branches are rejected. So is an id that an
    /// inquiry found unknown and that was then recorded as aborted (see ``inquiryAnswer(for:)``).
    ///
    /// - Parameter trace: The submit's trace context; the transaction's messages carry it.
    public func submit(
        _ txid: TxID, branches: [Branch], timeout: Duration?, wait: Wait, waitMax: Duration, trace: ServiceContext? = nil
    ) async throws(StorageError) -> SubmitResult {
        // Deciding whether the id is new and starting it is one step with respect to inquiries
        // about the same id: see inquiryAnswer(for:).
        await admissions.acquire(txid)
        let admitted: Admission
        do {
            admitted = try admit(txid, branches: branches, timeout: timeout, wait: wait, waitMax: waitMax, trace: trace)
        } catch {
            admissions.release(txid)
            throw error
        }
        admissions.release(txid)
        switch admitted {
        case .answered(let result):
            return result
        case .waiting(let slot):
            return await slot.value()
        }
    }

    private enum Admission {
        case answered(SubmitResult)
        case waiting(OutcomeSlot)
    }

    /// Answers from the log a transaction the machine no longer drives, or hands the submit to the
    /// machine and registers a waiter (under one lock, so no outcome can slip between them) whose
    /// deadline, `waitMax` from now, answers it `pending`.
    ///
    /// The log is read on the calling thread: one primary-key lookup per new id, cheaper than the
    /// two thread hand-offs of an asynchronous read.
    private func admit(
        _ txid: TxID, branches: [Branch], timeout: Duration?, wait: Wait, waitMax: Duration, trace: ServiceContext?
    ) throws(StorageError) -> Admission {
        let known = state.withLock { $0.machine.phase(of: txid) != nil }
        if !known, let recorded = try log.recordedDecision(of: txid) {
            if let recordedBranches = recorded.branches, recordedBranches != branches {
                return .answered(.rejected(txid, .idInUse))
            }
            if let outcome = recorded.outcome, !(wait == .completion && !recorded.state.isEnded && isActive(txid)) {
                return .answered(.outcome(txid, outcome, reason: recorded.reason))
            }
        }
        let slot = OutcomeSlot()
        if let trace, !known {
            traces.withLock { traces in
                if traces.count >= Self.traceCountMax { traces.removeAll() }
                if traces[txid] == nil { traces[txid] = trace }
            }
        }
        state.withLock { state in
            state.nextWaiterID += 1
            let id = state.nextWaiterID
            state.waiters[txid, default: []].append(Waiter(id: id, wait: wait, slot: slot))
            timers.set(.clientDeadline(WaiterKey(txid: txid, id: id)), after: waitMax)
            if state.started[txid] == nil { state.started[txid] = clock.now }
            let effects = state.machine.handle(.submit(txid, branches: branches, timeout: timeout))
            dispatch(effects, &state)
        }
        return .waiting(slot)
    }

    private func isActive(_ txid: TxID) -> Bool { state.withLock { $0.machine.phase(of: txid) != nil } }

    /// A client's wait ran out: it is answered `pending`; the transaction goes on.
    private func expire(_ key: WaiterKey) {
        state.withLock { state in
            guard var waiters = state.waiters[key.txid],
                  let index = waiters.firstIndex(where: { $0.id == key.id }) else { return }
            waiters.remove(at: index).slot.fulfil(.pending(key.txid))
            state.waiters[key.txid] = waiters.isEmpty ? nil : waiters
        }
    }

    /// What a participant asking about `txid` is told (`GET /v1/transactions/{id}/outcome`).
    ///
    /// An id neither the machine nor the log knows is answered `aborted` (presumed abort) — and
    /// first recorded as aborted, forced. The coordinator sends `prepare` before its lazy `begun`
    /// record is written, so after a crash a participant can hold prepared a transaction the log
    /// never saw; its client, unanswered, submits the id again. Without the record that resubmission
    /// would run afresh, and a participant still prepared (the "aborted" answer not yet applied
    /// there) would vote yes again: the others could commit what this one then aborts. Recorded,
    /// the id is answered `aborted` from the log, like any transaction that ended.
    public func inquiryAnswer(for txid: TxID) async throws(StorageError) -> InquiryAnswer {
        if let answer = state.withLock({ $0.machine.inquiryAnswer(for: txid) }) { return answer }
        // Serialised with submits of the same id, so that none starts it between the checks
        // below and the record.
        await admissions.acquire(txid)
        do {
            let answer = try await presumedAnswer(for: txid)
            admissions.release(txid)
            return answer
        } catch {
            admissions.release(txid)
            throw error
        }
    }

    private func presumedAnswer(for txid: TxID) async throws(StorageError) -> InquiryAnswer {
        if let answer = state.withLock({ $0.machine.inquiryAnswer(for: txid) }) { return answer }
        // Not driven any more (or never seen): the log has the last word; presumed abort otherwise.
        if let recorded = try await log.transaction(txid) {
            return recorded.outcome == .committed ? .committed : .aborted
        }
        try await log.append([
            .decided(txid, .aborted, notify: [], reason: "presumed abort: a participant asked about a transaction this coordinator has no record of"),
            .ended(txid),
        ], durability: .forced)
        logger.notice("recorded a presumed abort for an unknown transaction a participant asked about", metadata: ["txid": "\(txid)"])
        return .aborted
    }

    /// Sets the URL that travels in every `prepare` as where to send inquiries.
    func advertise(_ identity: CoordinatorID) {
        state.withLock { $0.machine.identity = identity }
    }

    /// Where the machine has `txid`, if it is still driving it.
    public func phase(of txid: TxID) -> CoordinatorPhase? { state.withLock { $0.machine.phase(of: txid) } }

    /// Transactions the machine is driving.
    public var activeCount: Int { state.withLock { $0.machine.activeCount } }

    // MARK: - Loops

    /// Rebuilds the machine's state from the log. Call once, before serving.
    func recover() async throws(StorageError) {
        let records = try await log.recover()
        handle(.recovered(records))
        logger.info("recovered", metadata: ["unfinished": "\(activeCount)"])
    }

    /// Commits the outbox, one transaction per round, until cancelled.
    func runStorageLoop() async {
        for await _ in storageSignals {
            await lingerUnlessForced()
            await flushOutbox()
        }
    }

    /// Returns once the outbox holds a forced write, after ``lazyLinger``, or when cancelled.
    private func lingerUnlessForced() async {
        guard lazyLinger > .zero else { return }
        await withTaskCancellationHandler {
            await linger()
        } onCancel: {
            endLinger(nil)
        }
    }

    /// Ends the linger numbered `number` (any linger when `nil`), if it still runs.
    private func endLinger(_ number: UInt64?) {
        let lingering = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard number == nil || state.lingerCount == number else { return nil }
            defer { state.linger = nil }
            return state.linger
        }
        lingering?.resume()
    }

    private func linger() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let number = state.withLock { state -> UInt64? in
                guard !Task.isCancelled, !state.outbox.isEmpty, !state.outbox.contains(where: { $0.forced != nil }) else {
                    return nil
                }
                state.linger = continuation
                state.lingerCount += 1
                return state.lingerCount
            }
            guard let number else { return continuation.resume() }
            // Only this linger: a forced write may have ended it and a later one begun.
            EventLoopExecutor.run(after: lazyLinger) { [self] in endLinger(number) }
        }
    }

    /// Commits everything in the outbox now (one transaction; forced if any write must be).
    func flushOutbox() async {
        while true {
            let batch = state.withLock { state -> [PendingWrite] in
                defer { state.outbox.removeAll(keepingCapacity: true) }
                return state.outbox
            }
            guard !batch.isEmpty else { return }
            await commit(batch)
        }
    }

    private func commit(_ batch: [PendingWrite]) async {
        let forced = batch.contains { $0.forced != nil }
        let records = batch.flatMap(\.records)
        // One `decision.force` span per traced transaction whose decision this write makes durable.
        let spans = batch.compactMap { write -> (any Span)? in
            guard let txid = write.forced, let span = WireTracing.startSpan("decision.force", context: traceContext(of: txid)) else { return nil }
            span.attributes["arbiter.txid"] = txid.rawValue
            span.attributes["arbiter.batch.writes"] = batch.count
            return span
        }
        defer { for span in spans { span.end() } }
        var delay = Duration.milliseconds(10)
        while true {
            do {
                if forced { try await Failpoints.hit("coordinator.before-decision-force") }
                if records.contains(where: { if case .ended = $0 { true } else { false } }) {
                    try await Failpoints.hit("coordinator.before-end-record")
                }
                try await log.append(records, durability: forced ? .forced : .lazy)
                recordWriteSucceeded()
                break
            } catch let error as StorageError where error.code == .conflict {
                // One record contradicts the log; isolate it so the rest still commit.
                await commitOneByOne(batch)
                break
            } catch {
                // The decision log is the one thing that must not be skipped: retry, loudly, with
                // backoff. The machine waits for `forced`; nothing is reported meanwhile.
                logger.error("decision log write failed; retrying", metadata: ["error": "\(error)", "retryIn": "\(delay)"])
                recordWriteFailed(error)
                try? await Task.sleep(for: delay)
                if Task.isCancelled { return }
                delay = min(delay * 2, .seconds(2))
            }
        }
        if forced { try? await Failpoints.hit("coordinator.after-decision-force") }
        for write in batch {
            if let txid = write.forced { handle(.forced(txid)) }
        }
    }

    /// Why the decision log cannot be written, and since when; `nil` while it can. New submits are
    /// refused while it is set, and `GET /readyz` answers 503.
    public var storageFault: StorageFault? { writeFailure.withLock { $0 } }

    private func recordWriteFailed(_ error: any Error) {
        writeFailure.withLock { fault in
            if fault == nil { fault = StorageFault(since: Date(), message: "\(error)") }
        }
    }

    private func recordWriteSucceeded() {
        let ended = writeFailure.withLock { fault -> StorageFault? in
            defer { fault = nil }
            return fault
        }
        if let ended {
            logger.notice("the decision log can be written again", metadata: ["failingSince": "\(ended.since)"])
        }
    }

    private func commitOneByOne(_ batch: [PendingWrite]) async {
        for write in batch {
            do {
                try await log.append(write.records, durability: write.forced == nil ? .lazy : .forced)
            } catch {
                metrics.anomalies.increment()
                logger.error("decision log refused a record", metadata: ["records": "\(write.records)", "error": "\(error)"])
            }
        }
    }

    /// Fires protocol timers and clients' deadlines until cancelled.
    func runTimerLoop() async {
        while !Task.isCancelled {
            for timer in timers.takeDue() {
                switch timer {
                case .machine(let id):
                    let sent = handle(.timerFired(id))
                    if id.kind == .phaseTwoRetry, sent > 0 { metrics.phaseTwoRetries.increment(by: Int64(sent)) }
                case .clientDeadline(let key): expire(key)
                }
            }
            links.poke()
            try? await Task.sleep(for: timers.pollInterval)
        }
    }

    /// Waits, at most `timeout`, until nothing is left to write or send: a graceful shutdown
    /// finishes the steps in flight instead of cutting them off.
    func drain(timeout: Duration) async {
        let deadline = clock.now + timeout
        while clock.now < deadline {
            await flushOutbox()
            let idle = state.withLock { $0.outbox.isEmpty } && links.isIdle
            if idle { return }
            try? await Task.sleep(for: .milliseconds(5))
        }
        logger.warning("shutdown: steps still in flight after \(timeout); recovery will finish them")
    }
}

/// One client's answer, filled once: by the engine, or by the client's own deadline.
final class OutcomeSlot: Sendable {
    private struct State {
        var result: CoordinatorEngine.SubmitResult?
        var continuation: CheckedContinuation<CoordinatorEngine.SubmitResult, Never>?
    }

    private let state = Mutex(State())

    /// Sets the result unless one is set already, and wakes the waiting client.
    func fulfil(_ result: CoordinatorEngine.SubmitResult) {
        let continuation = state.withLock { state -> CheckedContinuation<CoordinatorEngine.SubmitResult, Never>? in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume(returning: result)
    }

    func value() async -> CoordinatorEngine.SubmitResult {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> CoordinatorEngine.SubmitResult? in
                if let result = state.result { return result }
                state.continuation = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

/// Serialises async work per key: ``acquire(_:)`` waits until no other holder has the key. The
/// work done while holding it must be bounded (here: a log read and at most one forced write).
final class KeyedSerializer<Key: Hashable & Sendable>: Sendable {
    /// A key is held while it has an entry; the entry lists who waits for it, in order.
    private let held = Mutex<[Key: [CheckedContinuation<Void, Never>]]>([:])

    func acquire(_ key: Key) async {
        // The usual case, a key nobody holds, takes no continuation.
        let free = held.withLock { held -> Bool in
            guard held[key] == nil else { return false }
            held[key] = []
            return true
        }
        if free { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let acquired = held.withLock { held -> Bool in
                guard held[key] != nil else {
                    held[key] = []
                    return true
                }
                held[key]!.append(continuation)
                return false
            }
            if acquired { continuation.resume() }
        }
    }

    /// Releases `key`, handing it to the next waiter if there is one.
    func release(_ key: Key) {
        let next = held.withLock { held -> CheckedContinuation<Void, Never>? in
            guard var waiters = held[key] else { preconditionFailure("releasing a key that is not held") }
            guard !waiters.isEmpty else {
                held[key] = nil
                return nil
            }
            let next = waiters.removeFirst()
            held[key] = waiters
            return next
        }
        next?.resume()
    }
}

