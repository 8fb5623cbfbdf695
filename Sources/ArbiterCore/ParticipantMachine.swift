/// A participant's half of two-phase commit, as a pure state machine.
///
/// The rules it keeps:
/// - It votes yes only after the `prepared` record (and the staged work written with it) is durable,
///   and acknowledges a commit only after the `committed` record is durable.
/// - It never decides a prepared transaction alone: without a decision it asks the coordinator,
///   with backoff, until it learns the outcome. Only ``ParticipantEvent/decideHeuristically(_:_:)``,
///   an operator's command, decides alone, and the records say so.
/// - An abort for a transaction it does not know leaves a tombstone, forced before it is
///   acknowledged, so that a `prepare` overtaken by its abort votes no instead of holding locks
///   until an inquiry — and, in one-phase commit, can never commit after the abort was reported.
/// - A repeated message gets the same answer; a decision never changes.
///
/// Memory holds the transactions in progress, and ended ones for
/// ``ParticipantConfig/memoryRetention`` only. A message about an ended transaction memory has
/// forgotten is answered from the store: a `commit` or `abort` asks for the transaction's records
/// (``ParticipantEffect/lookup(_:)``) and waits, with every later message about it, for the answer
/// (``ParticipantEvent/lookedUp(_:_:)``); a `prepare`'s stage looks first and reports what it found
/// (``ParticipantEvent/alreadyRecorded(_:_:)``) instead of staging.
///
/// A stage and the records of its vote are one local transaction: the machine says in the
/// ``PrepareRequest`` it hands out which records each vote writes
/// (``PrepareRequest/records(for:)``), and hears
/// ``ParticipantEvent/staged(_:_:)`` once they are durable. It never learns anything from inside a
/// write.
public struct ParticipantMachine: Sendable {
    public let config: ParticipantConfig
    private var random: SplitMix64
    private var transactions: [TxID: Transaction] = [:]
    /// Messages about transactions whose records are being looked up, in arrival order.
    private var parked: [TxID: [(from: CoordinatorID, message: CoordinatorMessage)]] = [:]

    /// - Parameter seed: seeds the jitter of inquiry retries.
    public init(config: ParticipantConfig = .init(), seed: UInt64) {
        self.config = config
        self.random = SplitMix64(seed: seed)
    }

    /// Where `txid` stands here, or `nil` when nothing is known of it.
    public func state(of txid: TxID) -> ParticipantState? {
        transactions[txid].map { ParticipantState($0.state) }
    }

    /// The transactions this participant remembers (in progress, or ended within memory retention).
    public var knownCount: Int { transactions.count }

    /// Feeds one event and returns what the driver must do, in order.
    public mutating func handle(_ event: ParticipantEvent) -> [ParticipantEffect] {
        var effects: [ParticipantEffect] = []
        switch event {
        case .received(let coordinator, let message):
            receive(message, from: coordinator, into: &effects)
        case .staged(let txid, let vote):
            staged(txid, vote, into: &effects)
        case .alreadyRecorded(let txid, let records):
            alreadyRecorded(txid, records, into: &effects)
        case .forced(let txid):
            forced(txid, into: &effects)
        case .timerFired(let timer):
            timerFired(timer, into: &effects)
        case .recovered(let records):
            recover(records, into: &effects)
        case .lookedUp(let txid, let records):
            lookedUp(txid, records, into: &effects)
        case .decideHeuristically(let txid, let outcome):
            decideHeuristically(txid, outcome, into: &effects)
        }
        return effects
    }

    // MARK: - Messages from the coordinator

    private mutating func receive(
        _ message: CoordinatorMessage, from coordinator: CoordinatorID, into effects: inout [ParticipantEffect]
    ) {
        let txid = message.txid
        if parked[txid] != nil {
            // Its records are being looked up: everything about it waits, in order.
            parked[txid]!.append((coordinator, message))
            return
        }
        if transactions[txid] == nil {
            switch message {
            case .commit, .abort:
                // Memory may have forgotten it (ended longer ago than the memory retention): the
                // store answers. An abort must not leave a tombstone over a commit, nor a commit be
                // acknowledged as unknown, because memory forgot.
                parked[txid] = [(coordinator, message)]
                effects.append(.lookup(txid))
                return
            case .prepare, .outcome:
                break  // A prepare's stage looks for records itself; a stale answer is ignored.
            }
        }
        handleKnown(message, from: coordinator, into: &effects)
    }

    /// The store answered a lookup: its records (if any) come back into memory, then the messages
    /// that waited are handled in order.
    private mutating func lookedUp(_ txid: TxID, _ records: [ParticipantRecord], into effects: inout [ParticipantEffect]) {
        guard let waiting = parked.removeValue(forKey: txid) else {
            preconditionFailure("a lookup answer for \(txid), which nothing asked for")
        }
        if transactions[txid] == nil {
            recover(records.filter { $0.txid == txid }, into: &effects)
        }
        for (coordinator, message) in waiting {
            handleKnown(message, from: coordinator, into: &effects)
        }
    }

    private mutating func handleKnown(
        _ message: CoordinatorMessage, from coordinator: CoordinatorID, into effects: inout [ParticipantEffect]
    ) {
        switch message {
        case .prepare(let request):
            prepare(request, into: &effects)
        case .commit(let txid):
            commit(txid, from: coordinator, into: &effects)
        case .abort(let txid):
            abort(txid, from: coordinator, into: &effects)
        case .outcome(let txid, let answer):
            learned(answer, for: txid, from: coordinator, into: &effects)
        }
    }

    private mutating func prepare(_ request: PrepareRequest, into effects: inout [ParticipantEffect]) {
        let txid = request.txid
        let coordinator = request.coordinator
        guard let transaction = transactions[txid] else {
            transactions[txid] = Transaction(coordinator: coordinator, state: .staging(
                payload: request.payload, onePhase: request.onePhase, abortRequested: false))
            effects.append(.stage(request))
            return
        }
        answerRepeated(request, transaction, into: &effects)
    }

    /// A repeated prepare gets the answer the first one got (or will get).
    private mutating func answerRepeated(
        _ request: PrepareRequest, _ transaction: Transaction, into effects: inout [ParticipantEffect]
    ) {
        let txid = request.txid
        let coordinator = request.coordinator
        let reply: ParticipantMessage?
        switch transaction.state {
        case .aborting(let heuristic, let replies):
            // An abort overtook this prepare and its aborted record is being forced. Every request
            // gets an answer (a request left waiting holds the coordinator's whole batch until a
            // deadline): a no vote needs nothing durable, as for any refusal, so it goes now; a
            // one-phase outcome waits for the record.
            if request.onePhase {
                transactions[txid]?.state = .aborting(heuristic: heuristic, replies: replies + [.onePhaseOutcome(txid, .aborted)])
                reply = nil
            } else {
                reply = .vote(txid, .no(reason: "transaction already aborted here"))
            }
        case .staging, .committing:
            reply = nil  // The answer follows when the work in flight is durable.
        case .prepared(let payload, _):
            reply = payload == request.payload
                ? .vote(txid, .yes)
                : .vote(txid, .no(reason: "already prepared with a different payload under this transaction id"))
        case .committed:
            reply = request.onePhase ? .onePhaseOutcome(txid, .committed) : .vote(txid, .yes)
        case .aborted:
            reply = request.onePhase
                ? .onePhaseOutcome(txid, .aborted)
                : .vote(txid, .no(reason: "transaction already aborted here"))
        case .readOnly:
            reply = request.onePhase ? .onePhaseOutcome(txid, .committed) : .vote(txid, .readOnly)
        }
        if let reply { effects.append(.send(coordinator, reply)) }
    }

    private mutating func commit(_ txid: TxID, from coordinator: CoordinatorID, into effects: inout [ParticipantEffect]) {
        guard var transaction = transactions[txid] else {
            // Either the records were cleaned up after retention (a late duplicate) or they were
            // never written, which only a broken deployment causes. There is nothing to apply.
            effects.append(.anomaly(txid, "commit for a transaction unknown here; acknowledging as unknown"))
            effects.append(.send(coordinator, .acknowledge(txid, .unknown)))
            return
        }
        switch transaction.state {
        case .prepared:
            transaction.state = .committing(onePhase: false, heuristic: false, replies: [])
            transactions[txid] = transaction
            effects.append(.cancelTimer(TimerID(.inquiry, txid)))
            effects.append(.force([.committed(txid, heuristic: false)]))
        case .committed:
            effects.append(.send(coordinator, .acknowledge(txid, .committed)))
        case .aborted(let heuristic):
            // The coordinator judges a mismatch (it knows why it asks); only an operator's decision
            // is worth a loud line here.
            if heuristic { effects.append(.anomaly(txid, "commit for a transaction an operator aborted heuristically")) }
            effects.append(.send(coordinator, .acknowledge(txid, .aborted)))
        case .readOnly:
            effects.append(.send(coordinator, .acknowledge(txid, .unknown)))
        case .staging, .committing, .aborting:
            return  // Nothing durable to acknowledge yet; the coordinator resends.
        }
    }

    private mutating func abort(_ txid: TxID, from coordinator: CoordinatorID, into effects: inout [ParticipantEffect]) {
        guard var transaction = transactions[txid] else {
            // The abort overtook its prepare (or the prepare never came): leave a tombstone. It is
            // forced before the acknowledgement because for a one-phase transaction this answer
            // *is* the outcome the client is told; a lost tombstone would let the late prepare
            // commit.
            transactions[txid] = Transaction(coordinator: coordinator, state: .aborting(
                heuristic: false, replies: [.acknowledge(txid, .aborted)]))
            effects.append(.force([.aborted(txid, heuristic: false)]))
            return
        }
        switch transaction.state {
        case .staging(let payload, let onePhase, _):
            // The stage and its records are being written; abort when they are durable.
            transaction.state = .staging(payload: payload, onePhase: onePhase, abortRequested: true)
            transactions[txid] = transaction
        case .prepared:
            discard(txid, into: &effects)
            effects.append(.send(transaction.coordinator, .acknowledge(txid, .aborted)))
        case .aborting(let heuristic, let replies):
            // The aborted record is being forced: acknowledge once it is durable.
            let acknowledgement = ParticipantMessage.acknowledge(txid, .aborted)
            if !replies.contains(acknowledgement) {
                transactions[txid]?.state = .aborting(heuristic: heuristic, replies: replies + [acknowledgement])
            }
        case .committing(let onePhase, let heuristic, let replies):
            // The committed record is being forced. A one-phase coordinator asks this way what was
            // decided (its prepare went unanswered); answer once the record is durable, as a
            // resend would be answered, instead of leaving its request waiting for a deadline.
            if heuristic { effects.append(.anomaly(txid, "abort for a transaction an operator is committing heuristically")) }
            let acknowledgement = ParticipantMessage.acknowledge(txid, .committed)
            if !replies.contains(acknowledgement) {
                transactions[txid]?.state = .committing(onePhase: onePhase, heuristic: heuristic, replies: replies + [acknowledgement])
            }
        case .committed(let heuristic):
            // A coordinator asks a one-phase participant this way what it decided; a mismatch in
            // two-phase commit is the coordinator's to judge.
            if heuristic { effects.append(.anomaly(txid, "abort for a transaction an operator committed heuristically")) }
            effects.append(.send(coordinator, .acknowledge(txid, .committed)))
        case .aborted:
            effects.append(.send(coordinator, .acknowledge(txid, .aborted)))
        case .readOnly:
            effects.append(.send(coordinator, .acknowledge(txid, .aborted)))
        }
    }

    /// The coordinator answered an inquiry.
    private mutating func learned(
        _ answer: InquiryAnswer, for txid: TxID, from coordinator: CoordinatorID, into effects: inout [ParticipantEffect]
    ) {
        // Only a prepared transaction is in doubt; a stale answer for any other is ignored.
        guard let transaction = transactions[txid], case .prepared = transaction.state else { return }
        switch answer {
        case .committed: commit(txid, from: coordinator, into: &effects)
        case .aborted: abort(txid, from: coordinator, into: &effects)
        case .pending: return  // The inquiry timer is still set.
        }
    }

    // MARK: - Local work

    /// The stage's local transaction, with the records its vote writes (``PrepareRequest/records(for:)``),
    /// is durable.
    private mutating func staged(_ txid: TxID, _ vote: Vote, into effects: inout [ParticipantEffect]) {
        guard var transaction = transactions[txid],
              case .staging(let payload, let onePhase, let abortRequested) = transaction.state
        else {
            preconditionFailure("staged \(txid), which is not staging here")
        }
        let coordinator = transaction.coordinator
        switch (vote, onePhase) {
        case (.yes, true), (.readOnly, true):
            // The committed record is durable: a one-phase read-only branch commits nothing, but
            // the client is told "committed", and a coordinator that lost its own lazy record asks
            // this participant what the outcome was.
            transaction.state = .committed(heuristic: false)
            transactions[txid] = transaction
            effects.append(.send(coordinator, .onePhaseOutcome(txid, .committed)))
            if abortRequested { effects.append(.send(coordinator, .acknowledge(txid, .committed))) }
            effects.append(.setTimer(TimerID(.retention, txid), after: memoryRetention))
        case (.yes, false):
            transaction.state = .prepared(payload: payload, inquiries: 0)
            transactions[txid] = transaction
            if abortRequested {
                // The abort came while the prepared record was written: the prepare never gets its
                // yes. It is answered with a no (a refusal needs nothing durable) and the staged
                // work is discarded, as for any abort of a prepared transaction.
                discard(txid, into: &effects)
                effects.append(.send(coordinator, .vote(txid, .no(reason: "aborted here before the vote"))))
                effects.append(.send(coordinator, .acknowledge(txid, .aborted)))
                return
            }
            effects.append(.send(coordinator, .vote(txid, .yes)))
            effects.append(.setTimer(TimerID(.inquiry, txid), after: config.inquiryTimeout))
        case (.no, true):
            // The participant decided the one-phase transaction: its abort record is durable.
            transaction.state = .aborted(heuristic: false)
            transactions[txid] = transaction
            effects.append(.send(coordinator, .onePhaseOutcome(txid, .aborted)))
            if abortRequested { effects.append(.send(coordinator, .acknowledge(txid, .aborted))) }
            effects.append(.setTimer(TimerID(.retention, txid), after: memoryRetention))
        case (.no, false):
            transaction.state = .aborted(heuristic: false)
            transactions[txid] = transaction
            effects.append(.send(coordinator, .vote(txid, vote)))
            if abortRequested { effects.append(.send(coordinator, .acknowledge(txid, .aborted))) }
            effects.append(.setTimer(TimerID(.retention, txid), after: memoryRetention))
        case (.readOnly, false):
            transaction.state = .readOnly
            transactions[txid] = transaction
            effects.append(.send(coordinator, .vote(txid, .readOnly)))
            if abortRequested { effects.append(.send(coordinator, .acknowledge(txid, .aborted))) }
            effects.append(.setTimer(TimerID(.retention, txid), after: memoryRetention))
        }
    }

    private mutating func forced(_ txid: TxID, into effects: inout [ParticipantEffect]) {
        guard var transaction = transactions[txid] else { return }
        switch transaction.state {
        case .committing(let onePhase, let heuristic, let replies):
            transaction.state = .committed(heuristic: heuristic)
            transactions[txid] = transaction
            var sent: [ParticipantMessage] = []
            if !heuristic {
                sent.append(onePhase ? .onePhaseOutcome(txid, .committed) : .acknowledge(txid, .committed))
            }
            for reply in replies where !sent.contains(reply) { sent.append(reply) }
            for reply in sent { effects.append(.send(transaction.coordinator, reply)) }
            effects.append(.setTimer(TimerID(.retention, txid), after: memoryRetention))
        case .aborting(let heuristic, let replies):
            transaction.state = .aborted(heuristic: heuristic)
            transactions[txid] = transaction
            for reply in replies { effects.append(.send(transaction.coordinator, reply)) }
            effects.append(.setTimer(TimerID(.retention, txid), after: memoryRetention))
        case .staging, .prepared, .committed, .aborted, .readOnly:
            preconditionFailure("forced \(txid), which has no forced write pending here")
        }
    }

    private mutating func timerFired(_ timer: TimerID, into effects: inout [ParticipantEffect]) {
        let txid = timer.txid
        guard var transaction = transactions[txid] else { return }
        switch (timer.kind, transaction.state) {
        case (.inquiry, .prepared(let payload, let inquiries)):
            transaction.state = .prepared(payload: payload, inquiries: inquiries + 1)
            transactions[txid] = transaction
            effects.append(.send(transaction.coordinator, .inquire(txid)))
            let delay = config.inquiryRetry.delay(attempt: inquiries, random: &random)
            effects.append(.setTimer(TimerID(.inquiry, txid), after: delay))
        case (.retention, .committed), (.retention, .aborted), (.retention, .readOnly):
            // Memory forgets; the records stay in the store, which answers from now on.
            transactions[txid] = nil
        default:
            return
        }
    }

    private mutating func decideHeuristically(_ txid: TxID, _ outcome: Outcome, into effects: inout [ParticipantEffect]) {
        guard var transaction = transactions[txid], case .prepared = transaction.state else { return }
        effects.append(.cancelTimer(TimerID(.inquiry, txid)))
        switch outcome {
        case .committed:
            transaction.state = .committing(onePhase: false, heuristic: true, replies: [])
            transactions[txid] = transaction
            effects.append(.force([.committed(txid, heuristic: true)]))
        case .aborted:
            transaction.state = .aborting(heuristic: true, replies: [])
            transactions[txid] = transaction
            effects.append(.force([.aborted(txid, heuristic: true)]))
        }
    }

    /// Abort a staged transaction: not forced, because a lost abort record leaves the transaction
    /// prepared, and its inquiry learns the abort again.
    private mutating func discard(_ txid: TxID, into effects: inout [ParticipantEffect]) {
        transactions[txid]?.state = .aborted(heuristic: false)
        effects.append(.cancelTimer(TimerID(.inquiry, txid)))
        effects.append(.write([.aborted(txid, heuristic: false)]))
        effects.append(.setTimer(TimerID(.retention, txid), after: memoryRetention))
    }

    /// The store already held records of a transaction whose prepare came in: it ended here and
    /// memory forgot it. Nothing was staged. Its state comes back from the records, and the
    /// prepare is answered as a repeat; an abort that came while the store was read follows.
    private mutating func alreadyRecorded(
        _ txid: TxID, _ records: [ParticipantRecord], into effects: inout [ParticipantEffect]
    ) {
        guard let transaction = transactions[txid],
              case .staging(let payload, let onePhase, let abortRequested) = transaction.state
        else {
            preconditionFailure("a stage of \(txid) found records, but it is not staging here")
        }
        precondition(records.contains(where: { $0.txid == txid }), "a stage of \(txid) found records, but none of \(txid)")
        let coordinator = transaction.coordinator
        transactions[txid] = nil
        recover(records.filter { $0.txid == txid }, into: &effects)
        guard var known = transactions[txid] else { return }
        // The records may not name the coordinator (a tombstone); this prepare's does.
        known.coordinator = coordinator
        transactions[txid] = known
        answerRepeated(PrepareRequest(txid: txid, coordinator: coordinator, payload: payload, onePhase: onePhase),
                       known, into: &effects)
        if abortRequested { abort(txid, from: coordinator, into: &effects) }
    }

    // MARK: - Recovery

    /// Rebuilds state from the records of transactions memory does not hold: a prepared one asks
    /// the coordinator at once; an ended one is kept to answer duplicates for the memory retention.
    private mutating func recover(_ records: [ParticipantRecord], into effects: inout [ParticipantEffect]) {
        var order: [TxID] = []
        var folded: [TxID: Transaction] = [:]
        for record in records {
            let txid = record.txid
            if folded[txid] == nil { order.append(txid) }
            switch record {
            case .prepared(_, let coordinator, let payload):
                // A decision read earlier in the log wins over a prepared record.
                if folded[txid] == nil {
                    folded[txid] = Transaction(coordinator: coordinator, state: .prepared(payload: payload, inquiries: 0))
                }
            case .committed(_, let heuristic):
                folded[txid] = Transaction(coordinator: folded[txid]?.coordinator ?? CoordinatorID(""), state: .committed(heuristic: heuristic))
            case .aborted(_, let heuristic):
                // A commit is never undone by an abort record (records may come back out of order).
                if case .committed = folded[txid]?.state { continue }
                folded[txid] = Transaction(coordinator: folded[txid]?.coordinator ?? CoordinatorID(""), state: .aborted(heuristic: heuristic))
            }
        }
        for txid in order where transactions[txid] == nil {
            let transaction = folded[txid]!
            transactions[txid] = transaction
            switch transaction.state {
            case .prepared:
                effects.append(.setTimer(TimerID(.inquiry, txid), after: .zero))
            default:
                effects.append(.setTimer(TimerID(.retention, txid), after: memoryRetention))
            }
        }
    }

    /// How long an ended transaction stays in memory.
    private var memoryRetention: Duration { min(config.memoryRetention, config.retention) }
}

/// Where a transaction stands at a participant, for drivers, operators and tests.
public enum ParticipantState: String, Hashable, Sendable {
    /// The resource is staging the branch, and its records are being written.
    case staging
    /// Prepared and durable: in doubt until the decision arrives.
    case prepared
    /// The committed record is being forced.
    case committing
    /// An aborted record is being forced (a tombstone, a one-phase refusal, an operator's abort).
    case aborting
    case committed
    case aborted
    /// Voted read-only; holds nothing.
    case readOnly

    init(_ state: ParticipantMachine.State) {
        switch state {
        case .staging: self = .staging
        case .prepared: self = .prepared
        case .committing: self = .committing
        case .aborting: self = .aborting
        case .committed: self = .committed
        case .aborted: self = .aborted
        case .readOnly: self = .readOnly
        }
    }
}

extension ParticipantMachine {
    struct Transaction: Sendable {
        var coordinator: CoordinatorID
        var state: State
    }

    enum State: Sendable {
        case staging(payload: Payload, onePhase: Bool, abortRequested: Bool)
        case prepared(payload: Payload, inquiries: Int)
        /// The committed record is being forced; `replies` are sent once it is durable, after the
        /// commit's own answer.
        case committing(onePhase: Bool, heuristic: Bool, replies: [ParticipantMessage])
        /// An aborted record is being forced; `replies` are sent once it is durable.
        case aborting(heuristic: Bool, replies: [ParticipantMessage])
        case committed(heuristic: Bool)
        case aborted(heuristic: Bool)
        case readOnly
    }
}

/// A participant machine as its service loop and the simulator drive it: the machine itself, or
/// (in the simulator) a deliberately broken wrapper of it.
public protocol ParticipantLogic: Sendable {
    mutating func handle(_ event: ParticipantEvent) -> [ParticipantEffect]
    func state(of txid: TxID) -> ParticipantState?
    var knownCount: Int { get }
}

extension ParticipantMachine: ParticipantLogic {}

/// What a stage writes with its vote, in the stage's own local transaction (see
/// ``PrepareRequest/records(for:)``).
public struct StagedRecords: Hashable, Sendable {
    /// Written in the stage's local transaction.
    public var records: [ParticipantRecord]
    /// The local transaction must be durable before the machine hears the vote.
    public var forced: Bool
    /// The staged change stays (a yes); otherwise the stage's changes are rolled back.
    public var keepsStagedWork: Bool
    /// The resource's apply runs too, in the same transaction (a one-phase yes).
    public var applies: Bool

    public init(records: [ParticipantRecord], forced: Bool, keepsStagedWork: Bool, applies: Bool) {
        self.records = records
        self.forced = forced
        self.keepsStagedWork = keepsStagedWork
        self.applies = applies
    }
}

/// A `prepare` to stage, as ``ParticipantEffect/stage(_:)`` hands it to the driver: the driver
/// runs the resource's stage in the round's local transaction and writes, in that same
/// transaction, the records ``records(for:)`` names for the vote — the staged change and its
/// protocol record are one fact. The machine hears the vote (``ParticipantEvent/staged(_:_:)``)
/// once the round's write has returned.
extension PrepareRequest {
    /// The records each vote writes:
    /// - two-phase yes: `prepared`, forced (the yes goes out only once it is durable);
    /// - one-phase yes or read-only: `committed`, forced (it is the outcome the client hears);
    /// - one-phase no: `aborted`, forced (the outcome, too: a lost record would let a duplicate
    ///   prepare commit);
    /// - two-phase no: `aborted`, lazy (the coordinator aborts on the vote whatever happens here,
    ///   and a participant that loses the record and prepares a duplicate learns the abort by
    ///   inquiry);
    /// - two-phase read-only: nothing.
    public func records(for vote: Vote) -> StagedRecords {
        switch (vote, onePhase) {
        case (.yes, false):
            StagedRecords(records: [.prepared(txid, coordinator: coordinator, payload: payload)], forced: true, keepsStagedWork: true, applies: false)
        case (.yes, true):
            StagedRecords(records: [.committed(txid, heuristic: false)], forced: true, keepsStagedWork: true, applies: true)
        case (.readOnly, true):
            StagedRecords(records: [.committed(txid, heuristic: false)], forced: true, keepsStagedWork: false, applies: false)
        case (.no, true):
            StagedRecords(records: [.aborted(txid, heuristic: false)], forced: true, keepsStagedWork: false, applies: false)
        case (.no, false):
            StagedRecords(records: [.aborted(txid, heuristic: false)], forced: false, keepsStagedWork: false, applies: false)
        case (.readOnly, false):
            StagedRecords(records: [], forced: false, keepsStagedWork: false, applies: false)
        }
    }
}
