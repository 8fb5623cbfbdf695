/// A timer that a state machine asks its driver to run.
///
/// Setting a timer whose id is already set replaces it. A driver may deliver a timer that was
/// cancelled or replaced a moment ago; the machines ignore a timer that no longer fits the state.
public struct TimerID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public enum Kind: Int, Hashable, Comparable, Sendable {
        /// Coordinator: the votes must be in by now.
        case prepareDeadline
        /// Coordinator: resend the decision to participants that have not acknowledged.
        case phaseTwoRetry
        /// Participant: ask the coordinator about an in-doubt transaction.
        case inquiry
        /// Participant: memory may forget the ended transaction (its records stay in the store).
        case retention

        public static func < (lhs: Kind, rhs: Kind) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    public var txid: TxID
    public var kind: Kind

    public init(_ kind: Kind, _ txid: TxID) {
        self.kind = kind
        self.txid = txid
    }

    public static func < (lhs: TimerID, rhs: TimerID) -> Bool {
        (lhs.txid, lhs.kind) < (rhs.txid, rhs.kind)
    }

    public var description: String { "\(kind)(\(txid))" }
}
