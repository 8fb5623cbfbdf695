/// Something that happened to a participant, fed to ``ParticipantMachine/handle(_:)``.
public enum ParticipantEvent: Hashable, Sendable {
    /// A coordinator's message arrived. `from` is where replies for unknown transactions go.
    case received(from: CoordinatorID, CoordinatorMessage)
    /// The resource staged a `prepare` and voted. The driver delivers this *inside* the local
    /// transaction in which the resource staged, and writes the records of the effects it gets back
    /// in that same transaction (see ``ParticipantEffect/stage(_:payload:onePhase:)``).
    case staged(TxID, Vote)
    /// The records of an earlier ``ParticipantEffect/force(_:)`` for this transaction are durable.
    case forced(TxID)
    case timerFired(TimerID)
    /// The participant restarted; these are its records read back, in log order. Deliver it once,
    /// first.
    case recovered([ParticipantRecord])
    /// An operator decides an in-doubt transaction alone. Ignored unless the transaction is
    /// prepared here. The decision is recorded as heuristic.
    case decideHeuristically(TxID, Outcome)
}

/// Something the participant's driver must do, returned by ``ParticipantMachine/handle(_:)``.
public enum ParticipantEffect: Hashable, Sendable {
    /// Open a local transaction, run the resource's stage for `payload` in it, and deliver
    /// ``ParticipantEvent/staged(_:_:)`` with its vote in that same transaction; write there the
    /// records of the effects that come back, then commit (forced when they say so).
    case stage(TxID, payload: Payload, onePhase: Bool)
    /// Write these records (and the resource work each stands for) without waiting for the disk.
    case write([ParticipantRecord])
    /// Write these records durably, then deliver ``ParticipantEvent/forced(_:)``.
    case force([ParticipantRecord])
    case send(CoordinatorID, ParticipantMessage)
    case setTimer(TimerID, after: Duration)
    case cancelTimer(TimerID)
    /// The transaction's retention has passed: delete its records.
    case forget(TxID)
    /// Something that should not happen in a correct deployment (a commit for a transaction that is
    /// unknown here, or a decision that contradicts an operator's heuristic one). Log it loudly.
    case anomaly(TxID, String)
}

/// A participant's timeouts.
public struct ParticipantConfig: Hashable, Sendable {
    /// How long a prepared transaction waits for the decision before asking the coordinator.
    /// Default 10 s.
    public var inquiryTimeout: Duration
    /// How further inquiries back off. Default 1 s doubling to 30 s, 20 % jitter.
    public var inquiryRetry: Backoff
    /// How long an ended transaction's records are kept to answer duplicates. Default 1 hour.
    /// Keep it longer than the longest coordinator outage you expect.
    public var retention: Duration

    public init(
        inquiryTimeout: Duration = .seconds(10),
        inquiryRetry: Backoff = Backoff(initial: .seconds(1), max: .seconds(30)),
        retention: Duration = .seconds(3600)
    ) {
        self.inquiryTimeout = inquiryTimeout
        self.inquiryRetry = inquiryRetry
        self.retention = retention
    }
}
