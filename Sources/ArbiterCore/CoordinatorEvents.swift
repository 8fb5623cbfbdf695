/// Something that happened to the coordinator, fed to ``CoordinatorMachine/handle(_:)``.
public enum CoordinatorEvent: Hashable, Sendable {
    /// A client asks to run a transaction. `timeout` bounds the prepare phase (the configured
    /// ``CoordinatorConfig/prepareTimeout`` when `nil`).
    case submit(TxID, branches: [Branch], timeout: Duration?)
    /// A participant's message arrived.
    case received(from: ParticipantID, ParticipantMessage)
    /// A message to a participant could not be delivered (connection refused, reset, timed out).
    case unreachable(ParticipantID, TxID, reason: String)
    /// The records of an earlier ``CoordinatorEffect/force(_:)`` for this transaction are durable.
    case forced(TxID)
    case timerFired(TimerID)
    /// The coordinator restarted; these are the records read back from its log, in log order,
    /// for every transaction that had not ended. Deliver it once, first.
    case recovered([CoordinatorRecord])
    /// An operator asks for phase 2 of this transaction now: the decision is resent at once to
    /// every participant that has not acknowledged it, instead of when the retry timer fires. The
    /// backoff is not advanced. Ignored unless the transaction is decided and unacknowledged.
    case retryPhaseTwoNow(TxID)
}

/// Something the coordinator's driver must do, returned by ``CoordinatorMachine/handle(_:)``.
///
/// Carry the effects out in order. A ``force(_:)`` completes asynchronously (group commit); the
/// machine emits nothing that depends on it until it gets ``CoordinatorEvent/forced(_:)``.
public enum CoordinatorEffect: Hashable, Sendable {
    case send(ParticipantID, CoordinatorMessage)
    /// Write these records without waiting for them to reach the disk.
    case write([CoordinatorRecord])
    /// Write these records and make them durable, then deliver ``CoordinatorEvent/forced(_:)``.
    case force([CoordinatorRecord])
    case setTimer(TimerID, after: Duration)
    case cancelTimer(TimerID)
    /// The outcome is final and durable where it must be: a client waiting for the decision may be
    /// answered. Emitted again for a duplicate submit of a decided transaction.
    case report(TxID, Outcome, reason: String?)
    /// Phase 2 finished: every participant that needed the decision has acknowledged it, and the
    /// machine has forgotten the transaction. A client waiting for completion may be answered.
    case complete(TxID, Outcome)
    /// The submit was refused and nothing was recorded.
    case reject(TxID, SubmitRejection)
    /// Something that should not happen in a correct deployment (a participant acknowledged a
    /// decision with the other outcome, which only an operator's heuristic decision can cause).
    /// Log it loudly; the protocol carries on.
    case anomaly(TxID, String)
}

/// Why a submit was refused.
public enum SubmitRejection: Hashable, Sendable, CustomStringConvertible {
    /// The id is in use by a transaction with other branches.
    case idInUse
    case noBranches
    case duplicateParticipant(ParticipantID)

    public var description: String {
        switch self {
        case .idInUse:
            return "the transaction id is already in use with different branches; choose another id"
        case .noBranches:
            return "a transaction needs at least one branch"
        case .duplicateParticipant(let participant):
            return "participant \(participant) appears in more than one branch; merge its work into one branch"
        }
    }
}

/// The coordinator's timeouts. Defaults are in the type so that one place documents them.
public struct CoordinatorConfig: Hashable, Sendable {
    /// How long the coordinator waits for every vote before it aborts. Default 5 s.
    public var prepareTimeout: Duration
    /// How phase 2 resends a decision to participants that have not acknowledged it.
    /// Default 100 ms doubling to 10 s, 20 % jitter.
    public var phaseTwoRetry: Backoff

    public init(
        prepareTimeout: Duration = .seconds(5),
        phaseTwoRetry: Backoff = Backoff(initial: .milliseconds(100), max: .seconds(10))
    ) {
        self.prepareTimeout = prepareTimeout
        self.phaseTwoRetry = phaseTwoRetry
    }
}
