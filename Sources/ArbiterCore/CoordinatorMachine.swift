/// The coordinator's half of two-phase commit with presumed abort, as a pure state machine.
///
/// The machine owns no I/O, clock or randomness: its driver feeds it ``CoordinatorEvent``s and
/// carries out the ``CoordinatorEffect``s each call returns, in order. The same state and the same
/// events give the same effects, which is what lets the simulator replay a failing run from its seed.
///
/// The rules it keeps:
/// - A commit is sent or reported only after ``CoordinatorEvent/forced(_:)`` says the commit
///   decision is durable. Nothing else is forced but a presumed abort (below).
/// - A request about an id the machine is not driving waits for a lookup of the log
///   (``CoordinatorEffect/lookup(_:)``); requests about the same id are served in arrival order.
///   A resubmission of a transaction that ended is answered from its record, not run again.
/// - An inquiry about an id the log does not know either is answered `aborted` — after an abort
///   record for the id is forced, so that a later submit of the same id is answered `aborted`
///   instead of running (a participant may still hold the id prepared from before a crash).
/// - In a cluster the store fences: a record of a transaction another coordinator owns now is
///   refused (``CoordinatorEvent/fenced(_:)``), and the machine stops driving it at once. A
///   request about a transaction another coordinator drives and has not decided is answered
///   "pending"; one it decided is answered from the store.
/// - Every handler tolerates duplicates, reordering and late messages; a decision never changes.
/// - Nothing is iterated in hash order: transactions live in a dictionary only for lookup.
public struct CoordinatorMachine: Sendable {
    public let config: CoordinatorConfig
    /// Where participants send their inquiries; travels in every `prepare`. A service that lets
    /// the system choose its port sets it once the port is known, before it serves.
    public var identity: CoordinatorID
    private var random: SplitMix64
    private var transactions: [TxID: Transaction] = [:]
    /// Requests about ids the machine does not drive, waiting for a lookup or a presumed abort.
    private var parked: [TxID: Parked] = [:]

    /// - Parameter seed: seeds the jitter of phase-2 retries (the simulator passes its run's seed;
    ///   services pass a random one).
    public init(identity: CoordinatorID, config: CoordinatorConfig = .init(), seed: UInt64) {
        self.identity = identity
        self.config = config
        self.random = SplitMix64(seed: seed)
    }

    /// The transactions the machine is driving (not yet ended).
    public var activeCount: Int { transactions.count }

    /// Where `txid` stands, or `nil` when the machine does not know it (never seen, or ended).
    public func phase(of txid: TxID) -> CoordinatorPhase? {
        transactions[txid].map { CoordinatorPhase($0.phase) }
    }

    /// Ids whose requests wait for a lookup or a presumed abort's record.
    public var parkedCount: Int { parked.count }

    /// Feeds one event and returns what the driver must do, in order.
    public mutating func handle(_ event: CoordinatorEvent) -> [CoordinatorEffect] {
        var effects: [CoordinatorEffect] = []
        switch event {
        case .submit(let txid, let branches, let timeout, let call):
            request(.submit(branches, timeout: timeout, call: call), about: txid, into: &effects)
        case .inquiry(let txid, let call):
            request(.ask(.call(call)), about: txid, into: &effects)
        case .lookedUp(let txid, let logged):
            lookedUp(txid, logged, into: &effects)
        case .received(let participant, let message):
            receive(message, from: participant, into: &effects)
        case .unreachable(let participant, let txid, let reason):
            unreachable(participant, txid, reason: reason, into: &effects)
        case .forced(let txid):
            forced(txid, into: &effects)
        case .timerFired(let timer):
            timerFired(timer, into: &effects)
        case .recovered(let records):
            recover(records, into: &effects)
        case .adopted(let records):
            adopt(records, into: &effects)
        case .retryPhaseTwoNow(let txid):
            retryPhaseTwoNow(txid, into: &effects)
        case .fenced(let txid):
            fenced(txid, into: &effects)
        }
        return effects
    }

    /// For each participant, how many decided transactions still wait for its acknowledgement.
    public func owedAcknowledgementCounts() -> [ParticipantID: Int] {
        var counts: [ParticipantID: Int] = [:]
        for txid in transactions.keys {
            for participant in owingAcknowledgement(txid) ?? [] { counts[participant, default: 0] += 1 }
        }
        return counts
    }

    /// The participants that still owe `txid` an acknowledgement of its decision, or `nil` when
    /// the machine is not in phase 2 of it (undecided, deciding, or not driven any more).
    public func owingAcknowledgement(_ txid: TxID) -> [ParticipantID]? {
        guard let transaction = transactions[txid] else { return nil }
        switch transaction.phase {
        case .committing(let pending, _), .aborting(let pending, _, _): return pending
        case .onePhaseAborting: return transaction.participants
        case .preparing, .onePhase, .deciding: return nil
        }
    }

    // MARK: - Submit and prepare

    /// A submit or an inquiry: served at once when the machine drives the id, otherwise parked
    /// behind a lookup (or behind the presumed abort of the id, when one is being recorded).
    private mutating func request(_ request: Request, about txid: TxID, into effects: inout [CoordinatorEffect]) {
        if case .submit(let branches, _, let call) = request, let rejection = Self.validate(branches) {
            effects.append(.reject(call, txid, rejection))  // Refused before anything is looked up.
            return
        }
        if parked[txid] != nil {
            parked[txid]!.requests.append(request)
            return
        }
        if transactions[txid] != nil {
            serve(request, txid, logged: nil, into: &effects)
            return
        }
        parked[txid] = Parked(requests: [request], presuming: false)
        effects.append(.lookup(txid))
    }

    /// The log's answer for a parked id: serves its requests in order.
    private mutating func lookedUp(_ txid: TxID, _ logged: LoggedTransaction?, into effects: inout [CoordinatorEffect]) {
        guard let waiting = parked[txid], !waiting.presuming else {
            preconditionFailure("a lookup of \(txid) answered that the machine did not ask for")
        }
        parked[txid] = nil
        // Undecided in the log and not driven here: another coordinator drives it (it will
        // decide), or the log outlived the machine's memory of an attempt of this one that never
        // decided (recovery aborts those), which is as good as unknown.
        let decided = logged?.outcome == nil ? nil : logged
        let elsewhere = logged?.outcome == nil && logged?.drivenElsewhere == true
        for (position, request) in waiting.requests.enumerated() {
            if parked[txid] != nil {
                // A presumed abort is being recorded: the rest wait for it.
                parked[txid]!.requests.append(contentsOf: waiting.requests[position...])
                return
            }
            serve(request, txid, logged: decided, elsewhere: elsewhere, into: &effects)
        }
    }

    private mutating func serve(
        _ request: Request, _ txid: TxID, logged: LoggedTransaction?, elsewhere: Bool = false, into effects: inout [CoordinatorEffect]
    ) {
        switch request {
        case .submit(let branches, let timeout, let call):
            if let existing = transactions[txid] {
                resubmit(txid, existing, branches, call: call, into: &effects)
            } else if elsewhere {
                effects.append(.underwayElsewhere(call, txid))
            } else if let logged, let outcome = logged.outcome {
                if let recorded = logged.branches, recorded != branches {
                    effects.append(.reject(call, txid, .idInUse))
                } else {
                    effects.append(.replay(txid, outcome, reason: logged.reason))
                }
            } else {
                start(txid, branches, timeout: timeout, into: &effects)
            }
        case .ask(let asker):
            if transactions[txid] != nil {
                reply(asker, txid, answer(for: txid), into: &effects)
            } else if elsewhere {
                reply(asker, txid, .pending, into: &effects)  // Its owner decides; ask again.
            } else if let outcome = logged?.outcome {
                reply(asker, txid, outcome == .committed ? .committed : .aborted, into: &effects)
            } else {
                // Neither memory nor log knows the id: record the presumed abort, forced, before
                // anyone hears it.
                parked[txid] = Parked(requests: [request], presuming: true)
                effects.append(.force([
                    .decided(txid, .aborted, notify: [], reason: Self.presumedAbortReason),
                    .ended(txid),
                ]))
            }
        }
    }

    /// The reason recorded with an abort presumed for an id nobody had heard of.
    public static let presumedAbortReason = "presumed abort: a participant asked about a transaction this coordinator has no record of"

    private func reply(_ asker: Asker, _ txid: TxID, _ answer: InquiryAnswer, into effects: inout [CoordinatorEffect]) {
        switch asker {
        case .participant(let participant): effects.append(.send(participant, .outcome(txid, answer)))
        case .call(let call): effects.append(.answer(call, txid, answer))
        }
    }

    /// The presumed abort of `txid` is durable: everyone parked behind it hears "aborted".
    private mutating func presumedAbortForced(_ txid: TxID, into effects: inout [CoordinatorEffect]) {
        let waiting = parked.removeValue(forKey: txid)!
        let logged = LoggedTransaction(branches: nil, outcome: .aborted, reason: Self.presumedAbortReason, ended: true)
        for request in waiting.requests {
            serve(request, txid, logged: logged, into: &effects)
        }
    }

    private mutating func start(
        _ txid: TxID, _ branches: [Branch], timeout: Duration?, into effects: inout [CoordinatorEffect]
    ) {
        let onePhase = branches.count == 1
        let participants = branches.map(\.participant)
        transactions[txid] = Transaction(
            branches: branches,
            participants: participants,
            phase: onePhase ? .onePhase : .preparing(votes: Array(repeating: nil, count: branches.count))
        )
        effects.append(.write([.begun(txid, branches: branches)]))
        for branch in branches {
            let request = PrepareRequest(txid: txid, coordinator: identity, payload: branch.payload, onePhase: onePhase)
            effects.append(.send(branch.participant, .prepare(request)))
        }
        effects.append(.setTimer(TimerID(.prepareDeadline, txid), after: timeout ?? config.prepareTimeout))
    }

    private static func validate(_ branches: [Branch]) -> SubmitRejection? {
        if branches.isEmpty { return .noBranches }
        var seen: Set<ParticipantID> = []
        for branch in branches where !seen.insert(branch.participant).inserted {
            return .duplicateParticipant(branch.participant)
        }
        return nil
    }

    /// A submit for an id the machine is driving: the same transaction again (a client retry) gets
    /// the outcome when there is one; another transaction under the same id is refused.
    private func resubmit(
        _ txid: TxID, _ existing: Transaction, _ branches: [Branch], call: CallID, into effects: inout [CoordinatorEffect]
    ) {
        // Branches are unknown when the lazy `begun` record was lost in a crash; the id alone must
        // then serve as the idempotency key.
        if let known = existing.branches, known != branches {
            effects.append(.reject(call, txid, .idInUse))
            return
        }
        switch existing.phase {
        case .committing:
            effects.append(.report(txid, .committed, reason: nil))
        case .aborting(_, _, let reason):
            effects.append(.report(txid, .aborted, reason: reason))
        case .preparing, .onePhase, .onePhaseAborting, .deciding:
            break  // The report follows when the outcome is known.
        }
    }

    // MARK: - Messages from participants

    private mutating func receive(
        _ message: ParticipantMessage, from participant: ParticipantID, into effects: inout [CoordinatorEffect]
    ) {
        switch message {
        case .vote(let txid, let vote):
            received(vote, from: participant, txid, into: &effects)
        case .onePhaseOutcome(let txid, let outcome):
            learnedOnePhase(txid, outcome, into: &effects)
        case .acknowledge(let txid, let local):
            acknowledged(txid, by: participant, holding: local, into: &effects)
        case .inquire(let txid):
            request(.ask(.participant(participant)), about: txid, into: &effects)
        }
    }

    private mutating func received(
        _ vote: Vote, from participant: ParticipantID, _ txid: TxID, into effects: inout [CoordinatorEffect]
    ) {
        guard var transaction = transactions[txid] else { return }  // Late vote: already ended.
        switch transaction.phase {
        case .preparing(var votes):
            guard let index = transaction.participants.firstIndex(of: participant), votes[index] == nil else {
                return  // Not a branch of this transaction, or a duplicate vote.
            }
            votes[index] = vote
            transaction.phase = .preparing(votes: votes)
            transactions[txid] = transaction
            if case .no(let reason) = vote {
                abort(txid, reason: "\(participant) voted no: \(reason)", into: &effects)
            } else if votes.allSatisfy({ $0 != nil }) {
                decideCommit(txid, votes: votes, into: &effects)
            }
        case .onePhase, .onePhaseAborting:
            // A participant that answers a one-phase prepare with a vote did not commit alone.
            switch vote {
            case .yes: decideCommit(txid, votes: [vote], into: &effects)
            case .readOnly: learnedOnePhase(txid, .committed, into: &effects)
            case .no: learnedOnePhase(txid, .aborted, into: &effects)
            }
        case .deciding, .committing, .aborting:
            return  // Decided already; a late or duplicate vote changes nothing.
        }
    }

    /// Every vote is in and none is `no`: force the commit decision, or finish at once when every
    /// participant is read-only (nothing to log, nobody to tell).
    private mutating func decideCommit(_ txid: TxID, votes: [Vote?], into effects: inout [CoordinatorEffect]) {
        guard var transaction = transactions[txid] else { return }
        let notify = zip(transaction.participants, votes).compactMap { $0.1 == .yes ? $0.0 : nil }
        effects.append(.cancelTimer(TimerID(.prepareDeadline, txid)))
        if notify.isEmpty {
            effects.append(.write([.decided(txid, .committed, notify: [], reason: nil), .ended(txid)]))
            finish(txid, .committed, reason: nil, into: &effects)
            return
        }
        transaction.phase = .deciding(notify: notify)
        transactions[txid] = transaction
        effects.append(.force([.decided(txid, .committed, notify: notify, reason: nil)]))
    }

    /// Decide abort (not forced: presumed abort answers the same for a lost abort decision) and tell
    /// every participant that may have prepared.
    private mutating func abort(_ txid: TxID, reason: String, into effects: inout [CoordinatorEffect]) {
        guard var transaction = transactions[txid], case .preparing(let votes) = transaction.phase else { return }
        // A participant that voted no or read-only holds nothing; any other may have prepared.
        let notify = zip(transaction.participants, votes).compactMap { participant, vote -> ParticipantID? in
            switch vote {
            case .yes, nil: return participant
            case .no, .readOnly: return nil
            }
        }
        effects.append(.cancelTimer(TimerID(.prepareDeadline, txid)))
        effects.append(.write([.decided(txid, .aborted, notify: notify, reason: reason)]))
        effects.append(.report(txid, .aborted, reason: reason))
        if notify.isEmpty {
            effects.append(.write([.ended(txid)]))
            transactions[txid] = nil
            effects.append(.complete(txid, .aborted))
            return
        }
        transaction.phase = .aborting(pending: notify, attempt: 0, reason: reason)
        transactions[txid] = transaction
        startPhaseTwo(txid, .aborted, to: notify, into: &effects)
    }

    private mutating func learnedOnePhase(_ txid: TxID, _ outcome: Outcome, into effects: inout [CoordinatorEffect]) {
        guard let transaction = transactions[txid] else { return }
        switch transaction.phase {
        case .onePhase, .onePhaseAborting:
            // The participant's own record is the durable decision; ours is only for operators.
            effects.append(.cancelTimer(TimerID(.prepareDeadline, txid)))
            effects.append(.cancelTimer(TimerID(.phaseTwoRetry, txid)))
            effects.append(.write([.decided(txid, outcome, notify: [], reason: nil), .ended(txid)]))
            finish(txid, outcome, reason: outcome == .aborted ? "the participant aborted" : nil, into: &effects)
        case .preparing, .deciding, .committing, .aborting:
            return
        }
    }

    private mutating func acknowledged(
        _ txid: TxID, by participant: ParticipantID, holding local: LocalOutcome, into effects: inout [CoordinatorEffect]
    ) {
        guard var transaction = transactions[txid] else { return }
        switch transaction.phase {
        case .committing(var pending, let attempt):
            guard let index = pending.firstIndex(of: participant) else { return }
            if local == .aborted {
                effects.append(.anomaly(txid, "\(participant) acknowledged commit but holds abort (heuristic decision?)"))
            }
            pending.remove(at: index)
            transaction.phase = .committing(pending: pending, attempt: attempt)
        case .aborting(var pending, let attempt, let reason):
            guard let index = pending.firstIndex(of: participant) else { return }
            if local == .committed {
                effects.append(.anomaly(txid, "\(participant) acknowledged abort but holds commit (heuristic decision?)"))
            }
            pending.remove(at: index)
            transaction.phase = .aborting(pending: pending, attempt: attempt, reason: reason)
        case .onePhaseAborting:
            // We asked a one-phase participant to abort so as to learn what it holds.
            switch local {
            case .committed: learnedOnePhase(txid, .committed, into: &effects)
            case .aborted: learnedOnePhase(txid, .aborted, into: &effects)
            case .unknown:
                effects.append(.anomaly(txid, "\(participant) no longer knows this one-phase transaction; reporting it aborted"))
                learnedOnePhase(txid, .aborted, into: &effects)
            }
            return
        case .preparing, .onePhase, .deciding:
            return
        }
        transactions[txid] = transaction
        effects.append(.write([.acknowledged(txid, participant)]))
        if transaction.phase.pending?.isEmpty == true, let outcome = transaction.phase.outcome {
            effects.append(.cancelTimer(TimerID(.phaseTwoRetry, txid)))
            effects.append(.write([.ended(txid)]))
            transactions[txid] = nil
            effects.append(.complete(txid, outcome))
        }
    }

    /// Presumed abort: a transaction this coordinator does not know was never committed.
    private func answer(for txid: TxID) -> InquiryAnswer {
        guard let transaction = transactions[txid] else { return .aborted }
        switch transaction.phase {
        case .committing: return .committed
        case .aborting: return .aborted
        // `deciding`: the commit decision is not durable yet, so it must not be revealed.
        case .preparing, .onePhase, .onePhaseAborting, .deciding: return .pending
        }
    }

    // MARK: - Fencing

    /// The store refused this machine's records of `txid`: another coordinator owns it now.
    private mutating func fenced(_ txid: TxID, into effects: inout [CoordinatorEffect]) {
        if parked[txid]?.presuming == true {
            // The presumed abort lost to a record another coordinator wrote first: what the
            // store holds now answers the requests parked behind it.
            parked[txid]!.presuming = false
            effects.append(.lookup(txid))
            return
        }
        guard transactions.removeValue(forKey: txid) != nil else { return }  // Not driven any more.
        effects.append(.cancelTimer(TimerID(.prepareDeadline, txid)))
        effects.append(.cancelTimer(TimerID(.phaseTwoRetry, txid)))
        effects.append(.disowned(txid))
    }

    // MARK: - Transport failures, durability, timers

    private mutating func unreachable(
        _ participant: ParticipantID, _ txid: TxID, reason: String, into effects: inout [CoordinatorEffect]
    ) {
        guard let transaction = transactions[txid] else { return }
        switch transaction.phase {
        case .preparing:
            abort(txid, reason: "\(participant) unreachable during prepare: \(reason)", into: &effects)
        case .onePhase:
            // The prepare may or may not have arrived: ask the participant what it holds.
            startOnePhaseAbort(txid, into: &effects)
        case .onePhaseAborting, .deciding, .committing, .aborting:
            return  // The retry timer resends.
        }
    }

    private mutating func forced(_ txid: TxID, into effects: inout [CoordinatorEffect]) {
        if parked[txid]?.presuming == true {
            presumedAbortForced(txid, into: &effects)
            return
        }
        // The driver delivers `forced` once per `force`, and only a commit decision or a presumed
        // abort is forced; a deciding transaction waits for it and nothing else moves it on.
        guard var transaction = transactions[txid], case .deciding(let notify) = transaction.phase else {
            preconditionFailure("forced(\(txid)) without a forced write the machine waits for")
        }
        transaction.phase = .committing(pending: notify, attempt: 0)
        transactions[txid] = transaction
        effects.append(.report(txid, .committed, reason: nil))
        startPhaseTwo(txid, .committed, to: notify, into: &effects)
    }

    private mutating func timerFired(_ timer: TimerID, into effects: inout [CoordinatorEffect]) {
        let txid = timer.txid
        guard var transaction = transactions[txid] else { return }
        switch (timer.kind, transaction.phase) {
        case (.prepareDeadline, .preparing(let votes)):
            let silent = zip(transaction.participants, votes).compactMap { $0.1 == nil ? $0.0.rawValue : nil }
            abort(txid, reason: "prepare deadline passed with no vote from \(silent.joined(separator: ", "))", into: &effects)
        case (.prepareDeadline, .onePhase):
            startOnePhaseAbort(txid, into: &effects)
        case (.phaseTwoRetry, .committing(let pending, let attempt)):
            transaction.phase = .committing(pending: pending, attempt: attempt + 1)
            transactions[txid] = transaction
            resend(txid, .commit(txid), to: pending, attempt: attempt + 1, into: &effects)
        case (.phaseTwoRetry, .aborting(let pending, let attempt, let reason)):
            transaction.phase = .aborting(pending: pending, attempt: attempt + 1, reason: reason)
            transactions[txid] = transaction
            resend(txid, .abort(txid), to: pending, attempt: attempt + 1, into: &effects)
        case (.phaseTwoRetry, .onePhaseAborting(let attempt)):
            transaction.phase = .onePhaseAborting(attempt: attempt + 1)
            transactions[txid] = transaction
            resend(txid, .abort(txid), to: transaction.participants, attempt: attempt + 1, into: &effects)
        default:
            return  // A timer that no longer fits the state.
        }
    }

    /// Resends the decision now to those that owe an acknowledgement, keeping the attempt count:
    /// the next timed resend comes after the current attempt's delay, counted from now.
    private mutating func retryPhaseTwoNow(_ txid: TxID, into effects: inout [CoordinatorEffect]) {
        guard let transaction = transactions[txid] else { return }
        switch transaction.phase {
        case .committing(let pending, let attempt):
            resend(txid, .commit(txid), to: pending, attempt: attempt, into: &effects)
        case .aborting(let pending, let attempt, _):
            resend(txid, .abort(txid), to: pending, attempt: attempt, into: &effects)
        case .onePhaseAborting(let attempt):
            resend(txid, .abort(txid), to: transaction.participants, attempt: attempt, into: &effects)
        case .preparing, .onePhase, .deciding:
            return  // Nothing decided to resend.
        }
    }

    private mutating func startOnePhaseAbort(_ txid: TxID, into effects: inout [CoordinatorEffect]) {
        guard var transaction = transactions[txid] else { return }
        transaction.phase = .onePhaseAborting(attempt: 0)
        transactions[txid] = transaction
        effects.append(.cancelTimer(TimerID(.prepareDeadline, txid)))
        resend(txid, .abort(txid), to: transaction.participants, attempt: 0, into: &effects)
    }

    private mutating func startPhaseTwo(
        _ txid: TxID, _ outcome: Outcome, to participants: [ParticipantID], into effects: inout [CoordinatorEffect]
    ) {
        let message: CoordinatorMessage = outcome == .committed ? .commit(txid) : .abort(txid)
        resend(txid, message, to: participants, attempt: 0, into: &effects)
    }

    private mutating func resend(
        _ txid: TxID, _ message: CoordinatorMessage, to participants: [ParticipantID], attempt: Int,
        into effects: inout [CoordinatorEffect]
    ) {
        for participant in participants {
            effects.append(.send(participant, message))
        }
        let delay = config.phaseTwoRetry.delay(attempt: attempt, random: &random)
        effects.append(.setTimer(TimerID(.phaseTwoRetry, txid), after: delay))
    }

    private mutating func finish(_ txid: TxID, _ outcome: Outcome, reason: String?, into effects: inout [CoordinatorEffect]) {
        transactions[txid] = nil
        effects.append(.report(txid, outcome, reason: reason))
        effects.append(.complete(txid, outcome))
    }

    // MARK: - Recovery

    /// Rebuilds the unfinished transactions from the log: a commit decision is resent, an abort
    /// decision is resent, and a transaction that was never decided is aborted (a one-phase one is
    /// asked instead, because its participant may have committed it alone). Transactions the
    /// machine already drives are left as they are.
    private mutating func recover(_ records: [CoordinatorRecord], into effects: inout [CoordinatorEffect]) {
        var order: [TxID] = []
        var folded: [TxID: RecoveredTransaction] = [:]
        for record in records {
            let txid = record.txid
            if folded[txid] == nil {
                order.append(txid)
                folded[txid] = RecoveredTransaction()
            }
            folded[txid]!.apply(record)
        }
        for txid in order where transactions[txid] == nil {
            let recovered = folded[txid]!
            if recovered.ended { continue }
            if let (outcome, notify, reason) = recovered.decision {
                resume(txid, outcome, pending: notify.filter { !recovered.acknowledged.contains($0) },
                       branches: recovered.branches, reason: reason, into: &effects)
            } else if let branches = recovered.branches {
                resumeUndecided(txid, branches, into: &effects)
            }
        }
    }

    /// Transactions taken over from another coordinator: the store's records replace what memory
    /// holds of them, then they are resumed as at recovery.
    private mutating func adopt(_ records: [CoordinatorRecord], into effects: inout [CoordinatorEffect]) {
        var seen: Set<TxID> = []
        for record in records where seen.insert(record.txid).inserted && transactions.removeValue(forKey: record.txid) != nil {
            effects.append(.cancelTimer(TimerID(.prepareDeadline, record.txid)))
            effects.append(.cancelTimer(TimerID(.phaseTwoRetry, record.txid)))
        }
        recover(records, into: &effects)
    }

    private mutating func resume(
        _ txid: TxID, _ outcome: Outcome, pending: [ParticipantID], branches: [Branch]?, reason: String?,
        into effects: inout [CoordinatorEffect]
    ) {
        if pending.isEmpty {
            effects.append(.write([.ended(txid)]))
            return
        }
        transactions[txid] = Transaction(
            branches: branches,
            participants: branches?.map(\.participant) ?? pending,
            phase: outcome == .committed
                ? .committing(pending: pending, attempt: 0)
                : .aborting(pending: pending, attempt: 0, reason: reason)
        )
        startPhaseTwo(txid, outcome, to: pending, into: &effects)
    }

    private mutating func resumeUndecided(_ txid: TxID, _ branches: [Branch], into effects: inout [CoordinatorEffect]) {
        let participants = branches.map(\.participant)
        if participants.count == 1 {
            transactions[txid] = Transaction(branches: branches, participants: participants, phase: .onePhase)
            startOnePhaseAbort(txid, into: &effects)
            return
        }
        let reason = "the coordinator restarted before deciding"
        effects.append(.write([.decided(txid, .aborted, notify: participants, reason: reason)]))
        resume(txid, .aborted, pending: participants, branches: branches, reason: reason, into: &effects)
    }
}

/// Where a transaction stands at the coordinator, for drivers, operators and tests.
public enum CoordinatorPhase: String, Hashable, Sendable {
    /// Waiting for votes.
    case preparing
    /// Waiting for a one-phase participant's outcome.
    case onePhase
    /// The commit decision is being forced.
    case deciding
    /// Phase 2 of a commit: resending until every participant acknowledges.
    case committing
    /// Phase 2 of an abort.
    case aborting

    init(_ phase: CoordinatorMachine.Phase) {
        switch phase {
        case .preparing: self = .preparing
        case .onePhase, .onePhaseAborting: self = .onePhase
        case .deciding: self = .deciding
        case .committing: self = .committing
        case .aborting: self = .aborting
        }
    }
}

extension CoordinatorMachine {
    /// Who asked how a transaction ended.
    enum Asker: Hashable, Sendable {
        case participant(ParticipantID)
        case call(CallID)
    }

    enum Request: Hashable, Sendable {
        case submit([Branch], timeout: Duration?, call: CallID)
        case ask(Asker)
    }

    /// The requests about one id the machine does not drive, in arrival order.
    struct Parked: Sendable {
        var requests: [Request]
        /// Whether the id's presumed abort is being forced (else: its lookup is out).
        var presuming: Bool
    }

    struct Transaction: Sendable {
        /// `nil` when the `begun` record was lost before a restart.
        var branches: [Branch]?
        var participants: [ParticipantID]
        var phase: Phase
    }

    enum Phase: Sendable {
        /// One slot per participant, in branch order.
        case preparing(votes: [Vote?])
        case onePhase
        /// Asking a one-phase participant to abort, to learn whether it committed.
        case onePhaseAborting(attempt: Int)
        case deciding(notify: [ParticipantID])
        case committing(pending: [ParticipantID], attempt: Int)
        case aborting(pending: [ParticipantID], attempt: Int, reason: String?)

        var pending: [ParticipantID]? {
            switch self {
            case .committing(let pending, _), .aborting(let pending, _, _): return pending
            default: return nil
            }
        }

        var outcome: Outcome? {
            switch self {
            case .committing: return .committed
            case .aborting: return .aborted
            default: return nil
            }
        }
    }

    /// One transaction's records folded together at recovery.
    struct RecoveredTransaction {
        var branches: [Branch]?
        var decision: (Outcome, [ParticipantID], String?)?
        var acknowledged: Set<ParticipantID> = []
        var ended = false

        mutating func apply(_ record: CoordinatorRecord) {
            switch record {
            case .begun(_, let branches): self.branches = branches
            case .decided(_, let outcome, let notify, let reason): decision = (outcome, notify, reason)
            case .acknowledged(_, let participant): acknowledged.insert(participant)
            case .ended: ended = true
            }
        }
    }
}

/// A coordinator machine as its loop drives it: ``CoordinatorMachine``, or in the simulator a
/// deliberately broken variant that wraps it (to prove that the checks can fail).
public protocol CoordinatorLogic: Sendable {
    mutating func handle(_ event: CoordinatorEvent) -> [CoordinatorEffect]
    func phase(of txid: TxID) -> CoordinatorPhase?
    var activeCount: Int { get }
    var identity: CoordinatorID { get set }
    func owingAcknowledgement(_ txid: TxID) -> [ParticipantID]?
    func owedAcknowledgementCounts() -> [ParticipantID: Int]
}

extension CoordinatorMachine: CoordinatorLogic {}
