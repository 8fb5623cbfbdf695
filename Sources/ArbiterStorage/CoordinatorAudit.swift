public import ArbiterCore

extension DecisionLog {
    /// The coordinator's audit trail (`coordinator_operator_audit`), which nothing in Arbiter deletes.
    private var audit: OperatorAuditTable { OperatorAuditTable(name: "coordinator_operator_audit", writer: writer) }

    /// Records, forced, that `actor` asks for `action` on `txid` because of `reason`; returns the
    /// row's id for ``finishOperatorAction(_:result:)``.
    ///
    /// - Precondition: `actor` and `reason` are not empty.
    public func beginOperatorAction(actor: String, action: String, txid: TxID, reason: String) async throws(StorageError) -> Int64 {
        try await audit.begin(actor: actor, action: action, txid: txid, reason: reason)
    }

    /// Records, forced, what came of the action `id`.
    public func finishOperatorAction(_ id: Int64, result: String) async throws(StorageError) {
        try await audit.finish(id, result: result)
    }

    /// The audit trail, newest first: at most `limit` rows, older than `before` (an id) when given.
    public func operatorActions(limit: Int = 100, before: Int64? = nil) async throws(StorageError) -> [OperatorAction] {
        try await audit.list(limit: limit, before: before)
    }
}
