/// Something that happened to the coordinator, fed to ``CoordinatorMachine/handle(_:)``.
public enum CoordinatorEvent: Hashable, Sendable {
    /// A client asks to run a transaction. `timeout` bounds the prepare phase (the configured
    /// ``CoordinatorConfig/prepareTimeout`` when `nil`); `call` names the request, which a
    /// ``CoordinatorEffect/reject(_:_:_:)`` answers alone.
    ///
    /// An id the machine is not driving is first looked up in the log
    /// (``CoordinatorEffect/lookup(_:)``): a transaction that ended there is answered from its
    /// record, not run again.
    case submit(TxID, branches: [Branch], timeout: Duration?, call: CallID = CallID(0))
    /// A participant asks, by request, how `txid` ended (`GET /v1/transactions/{id}/outcome`);
    /// answered with ``CoordinatorEffect/answer(_:_:_:)``. The same question in a message
    /// (``ParticipantMessage/inquire(_:)``) is answered with a message.
    case inquiry(TxID, call: CallID)
    /// What the log holds of `txid`, asked for by ``CoordinatorEffect/lookup(_:)``: `nil` when
    /// it holds nothing. The driver reads it after the round's write, so it includes every record
    /// the machine emitted before asking.
    case lookedUp(TxID, LoggedTransaction?)
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
    /// A coordinator of a cluster took these transactions over from one whose lease expired; these
    /// are their records as the shared store holds them, in log order. What the store holds
    /// replaces whatever the machine remembers of them (it may have driven one before it lost it
    /// while paused): each is resumed as at recovery. Deliver it between rounds, before anything
    /// else is stepped in the round.
    case adopted([CoordinatorRecord])
    /// The store refused the records of `txid` that the machine emitted for the last write:
    /// another coordinator owns the transaction now (it took it over from this one, or recorded
    /// its presumed abort first). The driver delivers it after the write and before any
    /// ``forced(_:)``, and never delivers ``forced(_:)`` for a refused record. The machine stops
    /// driving the transaction (``CoordinatorEffect/disowned(_:)``) or, for a presumed abort that
    /// was refused, looks the id up again.
    case fenced(TxID)
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
    /// The submit `call` was refused and nothing was recorded.
    case reject(CallID, TxID, SubmitRejection)
    /// Read what the log holds of `txid` and deliver it as ``CoordinatorEvent/lookedUp(_:_:)``
    /// (after the round's write). Until then the machine holds every request about the id, so
    /// requests about one id are served in arrival order.
    case lookup(TxID)
    /// The answer to an ``CoordinatorEvent/inquiry(_:call:)``.
    case answer(CallID, TxID, InquiryAnswer)
    /// A resubmission of a transaction that ended before: its outcome, from the log, answers every
    /// client waiting on the id, whether it waits for the decision or for completion.
    case replay(TxID, Outcome, reason: String?)
    /// The machine no longer drives `txid`: the store refused its records because another
    /// coordinator owns the transaction now (``CoordinatorEvent/fenced(_:)``). Nothing more is
    /// sent for it from here; clients waiting on it hear that it is still pending (the owner
    /// finishes it, and a resubmission is answered from the store). Log it.
    case disowned(TxID)
    /// A submit `call` names a transaction that another coordinator drives and has not decided:
    /// answer it "pending" (the client asks again later and is answered from the store).
    case underwayElsewhere(CallID, TxID)
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

/// Names one request to the coordinator (a submit, an inquiry) so that its answer goes back to it.
/// The driver chooses the numbers; the machine only echoes them.
public struct CallID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(_ rawValue: UInt64) { self.rawValue = rawValue }
    public var description: String { "call#\(rawValue)" }
}

/// What the decision log holds of one transaction, as a lookup reads it.
public struct LoggedTransaction: Hashable, Sendable {
    /// `nil` when the lazy `begun` record was lost (or the transaction was presumed aborted).
    public var branches: [Branch]?
    /// `nil` while undecided.
    public var outcome: Outcome?
    public var reason: String?
    /// Whether phase 2 finished (or was never needed).
    public var ended: Bool
    /// Whether another coordinator of a cluster owns the transaction and has not ended it (it
    /// drives it, or will once it takes it over from a coordinator that died). Always `false` in
    /// a log of one coordinator.
    public var drivenElsewhere: Bool

    public init(branches: [Branch]?, outcome: Outcome?, reason: String?, ended: Bool, drivenElsewhere: Bool = false) {
        self.branches = branches
        self.outcome = outcome
        self.reason = reason
        self.ended = ended
        self.drivenElsewhere = drivenElsewhere
    }

    /// Folds records into what a lookup would read (the simulator's and tests' logs).
    public init?(folding records: some Sequence<CoordinatorRecord>) {
        var found = false
        branches = nil
        outcome = nil
        reason = nil
        ended = false
        drivenElsewhere = false
        for record in records {
            found = true
            switch record {
            case .begun(_, let recorded): branches = recorded
            case .decided(_, let decided, _, let why):
                outcome = decided
                reason = why
            case .acknowledged: break
            case .ended: ended = true
            }
        }
        if !found { return nil }
    }
}
