/// Something that happened to a participant, fed to ``ParticipantMachine/handle(_:)``.
public enum ParticipantEvent: Hashable, Sendable {
    /// A coordinator's message arrived. `from` is where replies for unknown transactions go.
    case received(from: CoordinatorID, CoordinatorMessage)
    /// The resource staged a `prepare` and voted, and the local transaction that holds the staged
    /// change and the records of the vote (``PrepareRequest/records(for:)``) has returned — durable when
    /// those records must be forced. See ``ParticipantEffect/stage(_:)``.
    case staged(TxID, Vote)
    /// The records of an earlier ``ParticipantEffect/force(_:)`` for this transaction are durable.
    case forced(TxID)
    case timerFired(TimerID)
    /// Records read back from the store at restart, in log order: those of the transactions in
    /// doubt. Records of a transaction the machine knows are ignored.
    case recovered([ParticipantRecord])
    /// The answer to ``ParticipantEffect/lookup(_:)``: what the store holds of the transaction
    /// (empty: nothing). The messages about it that waited are handled now, in arrival order.
    case lookedUp(TxID, [ParticipantRecord])
    /// The driver did not stage a `prepare` because the store already holds these records of its
    /// transaction: it ended here, and memory has since forgotten it. Delivered in place of
    /// ``staged(_:_:)``; the prepare is answered as a repeat of the first one, from the records.
    case alreadyRecorded(TxID, [ParticipantRecord])
    /// An operator decides an in-doubt transaction alone. Ignored unless the transaction is
    /// prepared here. The decision is recorded as heuristic.
    case decideHeuristically(TxID, Outcome)
}

/// Something the participant's driver must do, returned by ``ParticipantMachine/handle(_:)``.
public enum ParticipantEffect: Hashable, Sendable {
    /// In the round's local transaction: if the store holds records of the transaction (it ended
    /// here and memory forgot it), stage nothing and, after the write, deliver
    /// ``ParticipantEvent/alreadyRecorded(_:_:)`` with them; otherwise run the resource's stage,
    /// write the records ``PrepareRequest/records(for:)`` names for its vote with the staged change (kept
    /// or rolled back as it says), and once the write has returned — durable if it says forced —
    /// deliver ``ParticipantEvent/staged(_:_:)`` with the vote.
    case stage(PrepareRequest)
    /// Write these records (and the resource work each stands for) without waiting for the disk.
    case write([ParticipantRecord])
    /// Write these records durably, then deliver ``ParticipantEvent/forced(_:)``.
    case force([ParticipantRecord])
    case send(CoordinatorID, ParticipantMessage)
    case setTimer(TimerID, after: Duration)
    case cancelTimer(TimerID)
    /// Read what the store holds of the transaction (after the round's write) and deliver it as
    /// ``ParticipantEvent/lookedUp(_:_:)``.
    case lookup(TxID)
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
    /// How long an ended transaction's records are kept in the store to answer duplicates; the
    /// driver deletes them after that (the machine itself keeps nothing this long). Default 1 hour.
    /// Keep it longer than the longest coordinator outage you expect.
    public var retention: Duration
    /// How long the machine keeps an ended transaction in memory, to answer the duplicates that
    /// follow soon after without reading the store. After it, and up to ``retention``, the store
    /// answers (``ParticipantEffect/lookup(_:)``, ``ParticipantEvent/alreadyRecorded(_:_:)``). It bounds the machine's memory: about this
    /// long's worth of transactions. Default 30 s; the shorter of it and ``retention`` applies.
    public var memoryRetention: Duration

    public init(
        inquiryTimeout: Duration = .seconds(10),
        inquiryRetry: Backoff = Backoff(initial: .seconds(1), max: .seconds(30)),
        retention: Duration = .seconds(3600),
        memoryRetention: Duration = .seconds(30)
    ) {
        self.inquiryTimeout = inquiryTimeout
        self.inquiryRetry = inquiryRetry
        self.retention = retention
        self.memoryRetention = memoryRetention
    }
}
