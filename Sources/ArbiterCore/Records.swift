/// A record in the coordinator's decision log.
///
/// Presumed abort decides which of these must be forced: only a commit decision. Everything else is
/// written lazily, because losing it in a crash can only turn an undecided transaction into an
/// aborted one, which is what presumed abort answers for a transaction it does not know.
public enum CoordinatorRecord: Hashable, Sendable {
    /// The transaction and its branches (lazy).
    case begun(TxID, branches: [Branch])
    /// The decision and the participants that must hear it in phase 2 (forced when `committed`).
    case decided(TxID, Outcome, notify: [ParticipantID], reason: String?)
    /// A participant acknowledged the decision (lazy).
    case acknowledged(TxID, ParticipantID)
    /// Every participant acknowledged; nothing more is owed to anyone (lazy).
    case ended(TxID)

    public var txid: TxID {
        switch self {
        case .begun(let txid, _), .decided(let txid, _, _, _), .acknowledged(let txid, _), .ended(let txid):
            return txid
        }
    }
}

/// A record in a participant's local protocol state.
///
/// The participant library writes each record in the same local transaction as the resource work it
/// stands for, which is what makes a branch's business change and its protocol state one fact:
/// - writing ``prepared(_:coordinator:payload:)`` follows the resource's stage;
/// - writing ``committed(_:heuristic:)`` runs the resource's apply;
/// - writing ``aborted(_:heuristic:)`` runs the resource's discard when something was staged, and
///   otherwise leaves a tombstone so a late `prepare` votes no.
public enum ParticipantRecord: Hashable, Sendable {
    /// Staged, locked and voted yes: forced before the vote is sent.
    case prepared(TxID, coordinator: CoordinatorID, payload: Payload)
    /// Applied: forced before the commit is acknowledged. `heuristic` marks an operator's decision.
    case committed(TxID, heuristic: Bool)
    /// Discarded, or a tombstone. Lazy unless `heuristic`.
    case aborted(TxID, heuristic: Bool)

    public var txid: TxID {
        switch self {
        case .prepared(let txid, _, _), .committed(let txid, _), .aborted(let txid, _): return txid
        }
    }
}
