public import ArbiterCore

/// One piece of a participant round's local transaction, in the machine's order.
public enum ParticipantWork: Hashable, Sendable {
    /// Stage a `prepare` and write the records of its vote (see ``ArbiterCore/PrepareRequest``).
    case stage(PrepareRequest)
    /// Write these records with the resource work each stands for: `committed` applies what was
    /// staged, `aborted` discards it (or is a tombstone when nothing was); `forced`: the machine
    /// waits for them to be durable.
    case records([ParticipantRecord], forced: Bool)
}

extension ParticipantWork {
    /// The transaction this piece must make durable before the machine hears of it: a stage's
    /// (its vote's records are forced, or it found records already there), or a forced write's.
    var durableTxID: TxID? {
        switch self {
        case .stage(let request): request.txid
        case .records(let records, forced: true): records[0].txid
        case .records: nil
        }
    }
}

/// How one piece of work of a round ended.
public enum ParticipantWorkResult: Hashable, Sendable {
    /// The resource staged and voted; the records ``ArbiterCore/PrepareRequest/records(for:)`` names
    /// for the vote are written.
    case staged(Vote)
    /// The store already held these records of the transaction: nothing was staged.
    case alreadyRecorded([ParticipantRecord])
    case written
    /// Rolled back alone (the rest of the round stands); the loop runs it again in a later round.
    case failed(String)
}

/// The participant's store as its loop sees it: SQLite with the resource's own tables in
/// production, a simulated disk with crash semantics in the simulator.
///
/// Called from the loop's thread only, one call at a time.
public protocol ParticipantStorage: AnyObject {
    /// Runs `work` in order in ONE local transaction (each piece in a savepoint of its own), durable
    /// on return when `forced`. Throws when nothing of it was applied; the loop retries the round.
    func commit(_ work: [ParticipantWork], forced: Bool) throws -> [ParticipantWorkResult]
    /// What the store holds of each of `txids`, in order (empty: nothing).
    func lookup(_ txids: [TxID]) throws -> [[ParticipantRecord]]
    /// The records of the transactions in doubt, in the order they were recorded.
    func recover() throws -> [ParticipantRecord]
    /// Deletes a page of the transactions that ended longer ago than the retention; returns
    /// whether more are due.
    func forgetEnded() throws -> Bool
}

/// The participant's way to its coordinators, for what it asks on its own: in-doubt inquiries.
/// (Votes and acknowledgements answer the coordinator's requests; the loop hands them back.)
public protocol ParticipantTransport: AnyObject {
    /// Asks `coordinator` for the outcome of each of `txids` and returns at once; answers come back
    /// to the loop as ``ParticipantLoop/Input/learned(_:_:from:)``. An inquiry that fails is
    /// dropped: the machine asks again after its backoff.
    func inquire(_ txids: [TxID], of coordinator: CoordinatorID)
}

/// What a service watches of its participant loop (metrics, logs, the simulator's trace). Called
/// on the loop's thread.
public protocol ParticipantLoopObserver: AnyObject {
    func anomaly(_ txid: TxID, _ text: String)
    /// The round's write is about to make these transactions' records durable (their forced
    /// records and their stages).
    func forcing(_ txids: [TxID])
    /// The round's write returned (or failed with `error`: the whole round is held and retried).
    func wrote(pieces: Int, forced: Bool, error: (any Error)?)
    /// A piece of the round failed alone; it runs again in a later round.
    func failed(_ work: ParticipantWork, _ message: String)
    /// A round ended: requests waiting for answers, pieces of work waiting for a retry, and the
    /// transactions the machine remembers.
    func roundEnded(waiting: Int, retrying: Int, known: Int)
    /// A protocol timer fired.
    func fired(_ timer: TimerID)
    /// The retention sweep failed (it is tried again at its next interval).
    func sweepFailed(_ error: any Error)
}

extension ParticipantLoopObserver {
    public func anomaly(_ txid: TxID, _ text: String) {}
    public func forcing(_ txids: [TxID]) {}
    public func wrote(pieces: Int, forced: Bool, error: (any Error)?) {}
    public func failed(_ work: ParticipantWork, _ message: String) {}
    public func roundEnded(waiting: Int, retrying: Int, known: Int) {}
    public func fired(_ timer: TimerID) {}
    public func sweepFailed(_ error: any Error) {}
}

/// The participant's one loop: it owns the ``ArbiterCore/ParticipantLogic`` machine and turns
/// what arrives into rounds, as ``CoordinatorLoop`` does for the coordinator:
///
/// 1. ``step(_:now:)`` takes everything that arrived (the coordinator's requests, inquiry answers,
///    operators' decisions) and the due timers, and steps the machine with each;
/// 2. ``write()`` runs the round's work — stages, with the records of their votes, and the
///    records the machine asked for, with the resource's apply or discard — in ONE local
///    transaction, forced when any record must be or anything was staged;
/// 3. ``advance()`` tells the machine what the write did (`staged`, `alreadyRecorded`, `forced`),
///    answers its lookups, sends its inquiries, one batch per coordinator, and last answers the
///    requests.
///
/// The machine never hears from inside the write: an abort that arrives while a stage runs is
/// stepped in the next round, after the stage's records are durable. Nothing is answered before
/// the round's write returns. The loop has no thread or clock of its own: the service runs it
/// with ``LoopThread``, the simulator over a simulated disk, network and clock.
public final class ParticipantLoop {
    /// One message's answer.
    public enum Reply: Hashable, Sendable {
        case answer(ParticipantMessage)
        /// No answer: the participant is stopping, is over its limit of waiting requests, or the
        /// answer did not come within the reply deadline. The work goes on; a retry gets it.
        case unavailable(String)
    }

    /// What came of an operator's decision.
    public enum DecisionResult: Hashable, Sendable {
        /// The heuristic record is durable.
        case decided
        /// Memory does not hold the transaction (the store may: it ended long ago).
        case notFound
        /// Only a prepared transaction can be decided.
        case notInDoubt(ParticipantState)
        case unavailable(String)
    }

    /// Something that arrived for the loop.
    public enum Input: Sendable {
        /// The coordinator's request: its messages, answered together once each has its answer
        /// (or the reply deadline passed); `reply` is called once, on the loop's thread.
        case request([CoordinatorMessage], reply: @Sendable ([Reply]) -> Void)
        /// A coordinator answered an inquiry.
        case learned(TxID, InquiryAnswer, from: CoordinatorID)
        /// An operator decides a transaction in doubt alone; answered once the record is durable.
        case decide(TxID, Outcome, reply: @Sendable (DecisionResult) -> Void)
        /// Reads the machine on the loop's thread.
        case inspect(@Sendable (any ParticipantLogic) -> Void)
    }

    /// Bounds and intervals.
    public struct Settings: Sendable {
        /// How long a request waits for its answers before it is answered `unavailable` for the
        /// rest.
        public var replyTimeout: Duration
        /// Messages that may wait for answers at once; beyond it new ones are refused.
        public var waitingMax: Int
        /// How often the ended transactions past their retention are deleted.
        public var sweepInterval: Duration
        /// Backoff of pieces of work that failed alone.
        public var retry: Backoff

        public init(replyTimeout: Duration = .seconds(10), waitingMax: Int = 65_536, sweepInterval: Duration = .seconds(60),
                    retry: Backoff = Backoff(initial: .milliseconds(10), max: .seconds(2))) {
            self.replyTimeout = replyTimeout
            self.waitingMax = waitingMax
            self.sweepInterval = sweepInterval
            self.retry = retry
        }
    }

    /// Where a message's answer goes: its request and its place in it.
    private struct Waiter {
        enum Kind { case vote, acknowledgement }
        var kind: Kind
        var request: UInt64
        var index: Int

        func accepts(_ message: ParticipantMessage) -> Bool {
            switch (kind, message) {
            case (.vote, .vote), (.vote, .onePhaseOutcome), (.acknowledgement, .acknowledge): true
            default: false
            }
        }
    }

    private struct Request {
        var replies: [Reply?]
        var remaining: Int
        var reply: @Sendable ([Reply]) -> Void
    }

    /// The loop's own timers, beside the machine's.
    private enum Timer {
        case deadline(UInt64)
        case retry
        case sweep
    }

    public private(set) var machine: any ParticipantLogic
    private let storage: any ParticipantStorage
    private let transport: any ParticipantTransport
    private weak var observer: (any ParticipantLoopObserver)?
    public let settings: Settings

    private var random: SplitMix64
    private var timers = LoopTimers<Timer>()
    private var now: Duration { timers.now }
    private var nextRequest: UInt64 = 0
    private var requests: [UInt64: Request] = [:]
    private var waiters: [TxID: [Waiter]] = [:]
    private var waitingCount = 0
    private var decisions: [TxID: [@Sendable (DecisionResult) -> Void]] = [:]

    // The round in progress.
    private var work: [ParticipantWork] = []
    /// The round being written: its work, and what the write did (set by ``write()``).
    private var writing: [ParticipantWork] = []
    private var results: [ParticipantWorkResult] = []
    private var written = false
    private var lookups: [TxID] = []
    private var inquiries: [CoordinatorID: [TxID]] = [:]
    private var inquired: [CoordinatorID] = []
    private var replies: [() -> Void] = []
    /// Pieces that failed alone, for a later round.
    private var retrying: [ParticipantWork] = []
    private var retryAttempt = 0
    private var sweepDue = false

    public init(machine: any ParticipantLogic, storage: any ParticipantStorage, transport: any ParticipantTransport,
                settings: Settings = Settings(), seed: UInt64, observer: (any ParticipantLoopObserver)? = nil) {
        self.machine = machine
        self.storage = storage
        self.transport = transport
        self.settings = settings
        self.random = SplitMix64(seed: seed)
        self.observer = observer
    }

    /// Rebuilds the machine's state from the store (the transactions in doubt ask their
    /// coordinators at once). Call once, before the first ``step(_:now:)``.
    public func recover(now: Duration) throws {
        timers.advance(to: now)
        let records = try storage.recover()
        apply(machine.handle(.recovered(records)))
        timers.schedule(.sweep, after: settings.sweepInterval)
    }

    /// Whether a round has work even if nothing arrives.
    public var hasWork: Bool {
        !work.isEmpty || !lookups.isEmpty || !inquired.isEmpty || !replies.isEmpty || sweepDue
    }

    /// When the earliest timer is due (`nil` when none is set).
    public var nextDeadline: Duration? { timers.nextDeadline }

    /// Whether the round's write must reach the disk before ``advance()``.
    public var roundIsForced: Bool { work.contains { $0.durableTxID != nil } }

    /// Messages waiting for their answers.
    public var waiting: Int { waitingCount }

    // MARK: - The round

    /// Steps the machine with `inputs`, then with every timer due at `now`.
    public func step(_ inputs: [Input], now: Duration) {
        timers.advance(to: now)
        for input in inputs { take(input) }
        while let due = timers.popDue() { fire(due) }
    }

    /// The round's write: all its work in one local transaction. On a throw nothing was applied,
    /// the round stays whole, and the next call retries it.
    public func write() throws {
        let forced = roundIsForced
        if !work.isEmpty {
            if forced, let observer { observer.forcing(work.compactMap(\.durableTxID)) }
            do {
                results = try storage.commit(work, forced: forced)
            } catch {
                observer?.wrote(pieces: work.count, forced: forced, error: error)
                throw error
            }
            precondition(results.count == work.count, "the store answered \(results.count) of \(work.count) pieces")
            observer?.wrote(pieces: work.count, forced: forced, error: nil)
        } else {
            results = []
        }
        writing = work
        work.removeAll(keepingCapacity: true)
        written = true
    }

    /// The round's advance: the machine learns what the write did and what the store holds, the
    /// inquiries go out, one batch per coordinator, and the requests are answered. Work this
    /// produces waits for the next round's write.
    public func advance() {
        precondition(written, "advance() before the round's write")
        written = false
        var anyFailed = false
        for (index, piece) in writing.enumerated() {
            switch (piece, results[index]) {
            case (.stage(let staging), .staged(let vote)):
                apply(machine.handle(.staged(staging.txid, vote)))
            case (.stage(let staging), .alreadyRecorded(let records)):
                apply(machine.handle(.alreadyRecorded(staging.txid, records)))
            case (.records(let records, forced: true), .written):
                becameDurable(records[0].txid)
            case (.records, .written):
                break
            case (_, .failed(let message)):
                anyFailed = true
                observer?.failed(piece, message)
                retrying.append(piece)
            default:
                preconditionFailure("the store answered \(results[index]) to \(piece)")
            }
        }
        writing.removeAll(keepingCapacity: true)
        results.removeAll(keepingCapacity: true)
        if anyFailed {
            let delay = settings.retry.delay(attempt: retryAttempt, random: &random)
            retryAttempt += 1
            timers.schedule(.retry, after: delay)
        } else if retrying.isEmpty {
            retryAttempt = 0
        }
        // One read for the round's lookups; if it fails, they are asked again after the next write.
        if !lookups.isEmpty {
            let asked = lookups
            if let found = try? storage.lookup(asked) {
                lookups.removeAll(keepingCapacity: true)
                for (txid, records) in zip(asked, found) { apply(machine.handle(.lookedUp(txid, records))) }
            }
        }
        for coordinator in inquired {
            if let txids = inquiries.removeValue(forKey: coordinator), !txids.isEmpty {
                transport.inquire(txids, of: coordinator)
            }
        }
        inquired.removeAll(keepingCapacity: true)
        let answers = replies
        replies.removeAll(keepingCapacity: true)
        for reply in answers { reply() }
        if sweepDue {
            do {
                sweepDue = try storage.forgetEnded()
            } catch {
                sweepDue = false
                observer?.sweepFailed(error)
            }
        }
        observer?.roundEnded(waiting: waitingCount, retrying: retrying.count, known: machine.knownCount)
    }

    /// Answers every waiting request and decision `unavailable` (a shutdown).
    public func answerWaiting(_ reason: String) {
        for (_, request) in requests {
            request.reply(request.replies.map { $0 ?? .unavailable(reason) })
        }
        requests.removeAll()
        waiters.removeAll()
        waitingCount = 0
        for (_, list) in decisions {
            for reply in list { reply(.unavailable(reason)) }
        }
        decisions.removeAll()
    }

    private func becameDurable(_ txid: TxID) {
        apply(machine.handle(.forced(txid)))
        if let list = decisions.removeValue(forKey: txid) {
            for reply in list { replies.append { reply(.decided) } }
        }
    }

    // MARK: - Inputs

    private func take(_ input: Input) {
        switch input {
        case .request(let messages, let reply):
            take(messages, reply: reply)
        case .learned(let txid, let answer, let coordinator):
            apply(machine.handle(.received(from: coordinator, .outcome(txid, answer))))
        case .decide(let txid, let outcome, let reply):
            guard let state = machine.state(of: txid) else {
                replies.append { reply(.notFound) }
                return
            }
            guard state == .prepared else {
                replies.append { reply(.notInDoubt(state)) }
                return
            }
            decisions[txid, default: []].append(reply)
            apply(machine.handle(.decideHeuristically(txid, outcome)))
        case .inspect(let read):
            read(machine)
        }
    }

    private func take(_ messages: [CoordinatorMessage], reply: @escaping @Sendable ([Reply]) -> Void) {
        guard waitingCount + messages.count <= settings.waitingMax else {
            let refusal = Reply.unavailable("\(waitingCount) messages are already waiting for their answers; retry later")
            replies.append { reply(messages.map { _ in refusal }) }
            return
        }
        nextRequest += 1
        let id = nextRequest
        requests[id] = Request(replies: Array(repeating: nil, count: messages.count), remaining: messages.count, reply: reply)
        timers.schedule(.deadline(id), after: settings.replyTimeout)
        for (index, message) in messages.enumerated() {
            let from: CoordinatorID
            let kind: Waiter.Kind
            switch message {
            case .prepare(let request):
                from = request.coordinator
                kind = .vote
            case .commit, .abort:
                from = Self.replyAddress
                kind = .acknowledgement
            case .outcome:
                preconditionFailure("an inquiry's answer arrives as `learned`, not in a request")
            }
            waiters[message.txid, default: []].append(Waiter(kind: kind, request: id, index: index))
            waitingCount += 1
            apply(machine.handle(.received(from: from, message)))
        }
    }

    /// Where the machine sends the answers to commits and aborts: nowhere in particular, since
    /// every answer goes back in the response to its request. The machine keeps it for
    /// transactions it first hears of from a commit or an abort, which never ask anything.
    public static var replyAddress: CoordinatorID { CoordinatorID("") }

    private func fire(_ due: LoopTimers<Timer>.Due) {
        switch due {
        case .machine(let id):
            observer?.fired(id)
            apply(machine.handle(.timerFired(id)))
        case .own(.deadline(let id)):
            guard var request = requests.removeValue(forKey: id) else { return }
            let reason = "no answer within \(settings.replyTimeout); the work goes on, retry the request to get its answer"
            for index in request.replies.indices where request.replies[index] == nil {
                request.replies[index] = .unavailable(reason)
            }
            // Its waiters find no request and are dropped as they come.
            for (txid, list) in waiters {
                let kept = list.filter { $0.request != id }
                if kept.count != list.count {
                    waitingCount -= list.count - kept.count
                    waiters[txid] = kept.isEmpty ? nil : kept
                }
            }
            let replies = request.replies.map { $0! }
            let reply = request.reply
            reply(replies)  // At once, like the coordinator's `pending`: it reveals nothing.
        case .own(.retry):
            work.append(contentsOf: retrying)
            retrying.removeAll()
        case .own(.sweep):
            sweepDue = true
            timers.schedule(.sweep, after: settings.sweepInterval)
        }
    }

    // MARK: - Effects

    private func apply(_ effects: [ParticipantEffect]) {
        for effect in effects {
            switch effect {
            case .stage(let request):
                work.append(.stage(request))
            case .write(let records):
                guard !records.isEmpty else { continue }
                work.append(.records(records, forced: false))
            case .force(let records):
                precondition(!records.isEmpty, "an empty forced write")
                work.append(.records(records, forced: true))
            case .send(let coordinator, .inquire(let txid)):
                if inquiries[coordinator] == nil {
                    inquiries[coordinator] = []
                    inquired.append(coordinator)
                }
                inquiries[coordinator]!.append(txid)
            case .send(_, let message):
                answer(message)
            case .setTimer(let id, let delay):
                timers.set(id, after: delay)
            case .cancelTimer(let id):
                timers.cancel(id)
            case .lookup(let txid):
                lookups.append(txid)
            case .anomaly(let txid, let text):
                observer?.anomaly(txid, text)
            }
        }
    }

    /// Gives `message` to every message waiting for its kind of answer on its transaction. One
    /// nobody waits for is dropped: the coordinator asks again.
    private func answer(_ message: ParticipantMessage) {
        let txid = message.txid
        guard let list = waiters[txid] else { return }
        var kept: [Waiter] = []
        for waiter in list {
            guard waiter.accepts(message), var request = requests[waiter.request] else {
                kept.append(waiter)
                continue
            }
            waitingCount -= 1
            request.replies[waiter.index] = .answer(message)
            request.remaining -= 1
            if request.remaining == 0 {
                requests[waiter.request] = nil
                let reply = request.reply
                let answers = request.replies.map { $0! }
                replies.append { reply(answers) }
            } else {
                requests[waiter.request] = request
            }
        }
        waiters[txid] = kept.isEmpty ? nil : kept
    }
}
