public import ArbiterCore
public import Foundation
import GRDB

/// One operator action as the participant's audit trail holds it (`participant_operator_audit`).
///
/// The trail is written before the action runs (forced), and its result after, so that a crash in
/// between leaves a row whose result is `nil`: the action may or may not have happened, and the
/// transaction's own row says which. Retention never deletes audit rows.
public struct OperatorAction: Hashable, Sendable {
    /// Position in the trail, from 1.
    public var id: Int64
    /// When the action was asked for.
    public var at: Date
    /// Who asked: the operator token's name.
    public var actor: String
    /// What was asked (`decide-committed`, `decide-aborted`).
    public var action: String
    /// The transaction it was about.
    public var txid: String
    /// Why, in the operator's words.
    public var reason: String
    /// What came of it (`done`, or why it was refused); `nil` when the action never reported back
    /// (a crash while it ran).
    public var result: String?

    /// Makes a value from its members.
    public init(id: Int64, at: Date, actor: String, action: String, txid: String, reason: String, result: String?) {
        self.id = id
        self.at = at
        self.actor = actor
        self.action = action
        self.txid = txid
        self.reason = reason
        self.result = result
    }
}

/// An operators' audit table (`participant_operator_audit`, `coordinator_operator_audit`: the same
/// columns), written and read through its database's writer.
struct OperatorAuditTable: Sendable {
    let name: String
    let writer: StoreWriter

    func begin(actor: String, action: String, txid: TxID, reason: String) async throws(StorageError) -> Int64 {
        precondition(!actor.isEmpty && !reason.isEmpty, "an audit row names who acted and why")
        let at = Stored.milliseconds(Date())
        let sql = "INSERT INTO \(name) (at_ms, actor, action, txid, reason) VALUES (?, ?, ?, ?, ?)"
        do {
            return try await writer.write(.forced) { db in
                try db.execute(sql: sql, arguments: [at, actor, action, txid.rawValue, reason])
                return db.lastInsertedRowID
            }
        } catch {
            throw StorageError.wrapping(error, doing: "recording an operator action in", path: writer.path)
        }
    }

    func finish(_ id: Int64, result: String) async throws(StorageError) {
        let sql = "UPDATE \(name) SET result = ? WHERE id = ?"
        do {
            try await writer.write(.forced) { db in try db.execute(sql: sql, arguments: [result, id]) }
        } catch {
            throw StorageError.wrapping(error, doing: "recording an operator action's result in", path: writer.path)
        }
    }

    func list(limit: Int, before: Int64?) async throws(StorageError) -> [OperatorAction] {
        let sql = "SELECT id, at_ms, actor, action, txid, reason, result FROM \(name) WHERE id < ? ORDER BY id DESC LIMIT ?"
        do {
            return try await writer.read { db in
                try Row.fetchAll(db, sql: sql, arguments: [before ?? Int64.max, limit]).map { row in
                    OperatorAction(
                        id: row[0], at: Stored.date(row[1] as Int64), actor: row[2], action: row[3], txid: row[4],
                        reason: row[5], result: row[6])
                }
            }
        } catch {
            throw StorageError.wrapping(error, doing: "reading the audit trail of", path: writer.path)
        }
    }
}

extension ParticipantStore {
    private var audit: OperatorAuditTable { OperatorAuditTable(name: "participant_operator_audit", writer: writer) }

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
