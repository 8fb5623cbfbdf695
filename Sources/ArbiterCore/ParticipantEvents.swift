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
    /// Records read back from the store, in log order, of transactions the machine does not know.
    /// Delivered first at restart (the records of the transactions in doubt), and later before a
    /// `commit` or `abort` for a transaction the machine has forgotten (see
    /// ``ParticipantConfig/memoryRetention``): the store then answers what memory no longer can.
    /// Records of a transaction the machine knows are ignored.
    case recovered([ParticipantRecord])
    /// The driver did not stage a `prepare` because the store already holds these records of its
    /// transaction: it ended here, and memory has since forgotten it. Delivered in place of
    /// ``staged(_:_:)``, in the same local transaction; the prepare is answered as a repeat of the
    /// first one, from the records.
    case alreadyRecorded(TxID, [ParticipantRecord])
    /// An operator decides an in-doubt transaction alone. Ignored unless the transaction is
    /// prepared here. The decision is recorded as heuristic.
    case decideHeuristically(TxID, Outcome)
}

/// Something the participant's driver must do, returned by ``ParticipantMachine/handle(_:)``.
public enum ParticipantEffect: Hashable, Sendable {
    /// Open a local transaction. If the store holds records of the transaction (it ended here and
    /// memory forgot it), deliver ``ParticipantEvent/alreadyRecorded(_:_:)`` with them and stage
    /// nothing; otherwise run the resource's stage for `payload` and deliver
    /// ``ParticipantEvent/staged(_:_:)`` with its vote. Either way, in that same transaction, write
    /// the records of the effects that come back, then commit (forced when they say so).
    case stage(TxID, payload: Payload, onePhase: Bool)
    /// Write these records (and the resource work each stands for) without waiting for the disk.
    case write([ParticipantRecord])
    /// Write these records durably, then deliver ``ParticipantEvent/forced(_:)``.
    case force([ParticipantRecord])
    case send(CoordinatorID, ParticipantMessage)
    case setTimer(TimerID, after: Duration)
    case cancelTimer(TimerID)
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
    /// follow soon after without reading the store. After it, and up to ``retention``, the driver
    /// answers from the store (``ParticipantEvent/recovered(_:)``,
    /// ``ParticipantEvent/alreadyRecorded(_:_:)``). It bounds the machine's memory: about this
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
