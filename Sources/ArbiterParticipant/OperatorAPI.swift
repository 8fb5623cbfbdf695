public import ArbiterHTTP
import ArbiterStorage
import Foundation
import Hummingbird

// The operator endpoints of a participant (not part of the protocol's contract; they need the
// operator secret):
//
//   GET  /v1/operator/in-doubt                        → InDoubtList
//   GET  /v1/operator/transactions/{txid}             → TransactionStatus
//   POST /v1/operator/transactions/{txid}/decide      HeuristicDecisionRequest → TransactionStatus
//   GET  /v1/operator/audit?limit=N&before=ID         → OperatorAuditTrail (newest first)

/// A transaction as this participant's database holds it, for operators.
public struct TransactionStatus: Codable, Hashable, Sendable {
    /// The transaction id.
    public var txid: String
    /// `prepared` (in doubt), `committed` or `aborted`.
    public var state: String
    /// Whether an operator decided it alone (a heuristic decision).
    public var heuristic: Bool
    /// Where in-doubt inquiries go; absent when no `prepared` record was written (a `no` vote, a
    /// tombstone, a one-phase transaction).
    public var coordinator: String?
    /// When it was prepared here (RFC 3339, UTC).
    public var preparedAt: String?
    /// When it committed or aborted here (RFC 3339, UTC).
    public var endedAt: String?
    /// The branch's payload as recorded at prepare.
    public var payload: RawJSON?
    /// The lock keys it holds (only while prepared).
    public var locks: [String]

    /// Makes a value from its members, as they travel on the wire.
    public init(
        txid: String, state: String, heuristic: Bool, coordinator: String? = nil, preparedAt: String? = nil,
        endedAt: String? = nil, payload: RawJSON? = nil, locks: [String] = []
    ) {
        self.txid = txid
        self.state = state
        self.heuristic = heuristic
        self.coordinator = coordinator
        self.preparedAt = preparedAt
        self.endedAt = endedAt
        self.payload = payload
        self.locks = locks
    }

    init(_ transaction: ParticipantTransaction, locks: [String]) {
        self.init(
            txid: transaction.txid.rawValue,
            state: transaction.state.rawValue,
            heuristic: transaction.isHeuristic,
            coordinator: transaction.coordinator?.rawValue,
            preparedAt: transaction.preparedAt.map(Self.timestamp),
            endedAt: transaction.endedAt.map(Self.timestamp),
            payload: transaction.payload.flatMap { try? RawJSON($0) },
            locks: locks
        )
    }

    private static func timestamp(_ date: Date) -> String {
        WireTimestamp.string(millisecondsSinceEpoch: Int64((date.timeIntervalSince1970 * 1000).rounded(.down)))
    }
}

/// `GET /v1/operator/in-doubt`: the prepared transactions waiting for their decision, oldest
/// first.
public struct InDoubtList: Codable, Hashable, Sendable {
    /// The transactions in doubt.
    public var transactions: [TransactionStatus]

    /// Makes a value from its members, as they travel on the wire.
    public init(transactions: [TransactionStatus]) { self.transactions = transactions }
}

/// `POST /v1/operator/transactions/{txid}/decide`: an operator decides an in-doubt transaction
/// without its coordinator.
///
/// This can break atomicity: if the coordinator decided the other way, this participant now
/// disagrees with the others for good. Do it only when the coordinator is lost for longer than the
/// locks can be held, and reconcile by hand afterwards. The request is refused unless
/// ``iUnderstandThisMayBreakAtomicity`` is `true`; the decision is recorded as heuristic, shown
/// as such, and a later contradicting message from the coordinator is logged as an anomaly.
public struct HeuristicDecisionRequest: Codable, Hashable, Sendable {
    /// The outcome to apply: `committed` or `aborted`.
    public var outcome: WireOutcome
    /// Must be `true`.
    public var iUnderstandThisMayBreakAtomicity: Bool?
    /// Why the operator decides alone (1...1000 characters), kept in the audit trail. Required.
    public var reason: String?

    /// Makes a value from its members, as they travel on the wire.
    public init(outcome: WireOutcome, iUnderstandThisMayBreakAtomicity: Bool?, reason: String? = nil) {
        self.outcome = outcome
        self.iUnderstandThisMayBreakAtomicity = iUnderstandThisMayBreakAtomicity
        self.reason = reason
    }
}

extension OperatorAuditEntry {
    /// The wire form of a row of the participant's audit trail.
    init(_ action: OperatorAction) {
        self.init(
            id: action.id,
            at: WireTimestamp.string(millisecondsSinceEpoch: Int64((action.at.timeIntervalSince1970 * 1000).rounded(.down))),
            actor: action.actor, action: action.action, txid: action.txid, reason: action.reason, result: action.result)
    }
}

extension TransactionStatus: WireResponseBody {}
extension InDoubtList: WireResponseBody {}
