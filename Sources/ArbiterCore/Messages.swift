/// A participant's answer to `prepare`.
public enum Vote: Hashable, Sendable {
    /// Prepared: the participant's changes are staged and durable, its locks held; it will commit or
    /// abort as told, and will not decide alone.
    case yes
    /// Refused; the participant has already aborted its branch. `reason` is for people.
    case no(reason: String)
    /// Nothing to commit: the participant holds nothing and drops out of phase 2.
    case readOnly
}

/// The final result of a transaction.
public enum Outcome: String, Hashable, Sendable, CaseIterable {
    case committed
    case aborted
}

/// What the coordinator tells a participant that asks about an in-doubt transaction.
public enum InquiryAnswer: String, Hashable, Sendable {
    case committed
    case aborted
    /// Not decided yet: ask again later.
    case pending
}

/// What a participant holds for a transaction when it acknowledges a decision.
public enum LocalOutcome: String, Hashable, Sendable {
    case committed
    case aborted
    /// Nothing is known here: the records were never written or have been cleaned up after their
    /// retention. The coordinator treats this as acknowledged; the participant's service logs it.
    case unknown
}

/// `prepare`'s arguments.
public struct PrepareRequest: Hashable, Sendable {
    public var txid: TxID
    /// Where the participant sends its in-doubt inquiries for this transaction.
    public var coordinator: CoordinatorID
    public var payload: Payload
    /// Sent when the transaction has a single participant: prepare and commit in one local
    /// transaction and answer with the outcome instead of a vote.
    public var onePhase: Bool

    public init(txid: TxID, coordinator: CoordinatorID, payload: Payload, onePhase: Bool) {
        self.txid = txid
        self.coordinator = coordinator
        self.payload = payload
        self.onePhase = onePhase
    }
}

/// A message from the coordinator to a participant.
public enum CoordinatorMessage: Hashable, Sendable {
    case prepare(PrepareRequest)
    case commit(TxID)
    case abort(TxID)
    /// The answer to a participant's ``ParticipantMessage/inquire(_:)``.
    case outcome(TxID, InquiryAnswer)

    public var txid: TxID {
        switch self {
        case .prepare(let request): return request.txid
        case .commit(let txid), .abort(let txid), .outcome(let txid, _): return txid
        }
    }
}

/// A message from a participant to the coordinator.
public enum ParticipantMessage: Hashable, Sendable {
    case vote(TxID, Vote)
    /// The answer to a one-phase `prepare`: the participant decided, and its record is durable.
    case onePhaseOutcome(TxID, Outcome)
    /// The answer to `commit` or `abort`, giving what the participant durably holds.
    case acknowledge(TxID, LocalOutcome)
    /// "Has this in-doubt transaction been decided?"
    case inquire(TxID)

    public var txid: TxID {
        switch self {
        case .vote(let txid, _), .onePhaseOutcome(let txid, _), .acknowledge(let txid, _), .inquire(let txid):
            return txid
        }
    }
}
