// The coordinator's operator levers (schemas/openapi.yaml, tag `operator`):
//   POST /v1/operator/transactions/{id}/retry   RetryRequest → RetryResponse
//   GET  /v1/operator/stuck?olderThanMs=N&limit=N → StuckList (oldest first)
//   GET  /v1/operator/audit?limit=N&before=ID    → OperatorAuditTrail (newest first)

/// `POST /v1/operator/transactions/{id}/retry` request: why the operator forces phase 2 now.
public struct RetryRequest: Codable, Hashable, Sendable {
    /// Why (1...1000 characters), kept in the audit trail. Required.
    public var reason: String?

    /// Makes a value from its members, as they travel on the wire.
    public init(reason: String?) { self.reason = reason }
}

/// `POST /v1/operator/transactions/{id}/retry` response.
public struct RetryResponse: Codable, Hashable, Sendable {
    /// The transaction.
    public var id: String
    /// The participants the decision was sent to again, now.
    public var resentTo: [String]
    /// The audit trail's row for this action.
    public var auditId: Int64

    /// Makes a value from its members, as they travel on the wire.
    public init(id: String, resentTo: [String], auditId: Int64) {
        self.id = id
        self.resentTo = resentTo
        self.auditId = auditId
    }
}

/// One transaction that has not ended past the operator's threshold.
public struct StuckTransaction: Codable, Hashable, Sendable {
    /// The transaction id.
    public var id: String
    /// `preparing` (undecided), `committing` or `aborting` (phase 2 owed).
    public var state: TransactionState
    /// When it was first recorded (RFC 3339, UTC).
    public var createdAt: String
    /// When it was decided, if it was.
    public var decidedAt: String?
    /// Milliseconds since it was first recorded.
    public var ageMs: Int64
    /// What is awaited: `vote` (undecided) or `acknowledgement` (phase 2).
    public var awaiting: String
    /// The participants that still owe it: every branch's while undecided, those that have not
    /// acknowledged the decision in phase 2.
    public var owing: [String]

    /// Makes a value from its members, as they travel on the wire.
    public init(id: String, state: TransactionState, createdAt: String, decidedAt: String?, ageMs: Int64, awaiting: String, owing: [String]) {
        self.id = id
        self.state = state
        self.createdAt = createdAt
        self.decidedAt = decidedAt
        self.ageMs = ageMs
        self.awaiting = awaiting
        self.owing = owing
    }
}

/// `GET /v1/operator/stuck` response: oldest first.
public struct StuckList: Codable, Hashable, Sendable {
    /// The transactions, oldest first.
    public var transactions: [StuckTransaction]

    /// Makes a value from its members, as they travel on the wire.
    public init(transactions: [StuckTransaction]) { self.transactions = transactions }
}

/// One row of the coordinator's operator audit trail: who asked for what, when, why, and what
/// came of it.
public struct OperatorAuditEntry: Codable, Hashable, Sendable {
    /// The row's position in the trail (ascending); pass the last one as `before` for older rows.
    public var id: Int64
    /// When the action was asked for (RFC 3339, UTC).
    public var at: String
    /// The operator token's name.
    public var actor: String
    /// What was asked, e.g. `retry`.
    public var action: String
    /// The transaction.
    public var txid: String
    /// The operator's reason.
    public var reason: String
    /// What came of it; absent when the coordinator stopped while the action ran.
    public var result: String?

    /// Makes a value from its members, as they travel on the wire.
    public init(id: Int64, at: String, actor: String, action: String, txid: String, reason: String, result: String?) {
        self.id = id
        self.at = at
        self.actor = actor
        self.action = action
        self.txid = txid
        self.reason = reason
        self.result = result
    }
}

/// `GET /v1/operator/audit` response: newest first. Audit rows are never removed by retention.
public struct OperatorAuditTrail: Codable, Hashable, Sendable {
    /// The rows, newest first.
    public var entries: [OperatorAuditEntry]

    /// Makes a value from its members, as they travel on the wire.
    public init(entries: [OperatorAuditEntry]) { self.entries = entries }
}
