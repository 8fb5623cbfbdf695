public import ArbiterCore
public import Foundation
import GRDB

extension DecisionLog {
    /// Records, forced, that `actor` asks for `action` on `txid` because of `reason`; returns the
    /// row's id for ``finishOperatorAction(_:result:)``. The trail (`coordinator_operator_audit`)
    /// is never touched by retention.
    ///
    /// - Precondition: `actor` and `reason` are not empty.
    public func beginOperatorAction(actor: String, action: String, txid: TxID, reason: String) async throws(StorageError) -> Int64 {
        precondition(!actor.isEmpty && !reason.isEmpty, "an audit row names who acted and why")
        let at = Stored.milliseconds(Date())
        do {
            return try await writer.write(.forced) { db in
                try db.execute(
                    sql: "INSERT INTO coordinator_operator_audit (at_ms, actor, action, txid, reason) VALUES (?, ?, ?, ?, ?)",
                    arguments: [at, actor, action, txid.rawValue, reason])
                return db.lastInsertedRowID
            }
        } catch {
            throw StorageError.wrapping(error, doing: "recording an operator action in", path: writer.path)
        }
    }

    /// Records, forced, what came of the action `id`.
    public func finishOperatorAction(_ id: Int64, result: String) async throws(StorageError) {
        do {
            try await writer.write(.forced) { db in
                try db.execute(sql: "UPDATE coordinator_operator_audit SET result = ? WHERE id = ?", arguments: [result, id])
            }
        } catch {
            throw StorageError.wrapping(error, doing: "recording an operator action's result in", path: writer.path)
        }
    }

    /// The audit trail, newest first: at most `limit` rows, older than `before` (an id) when given.
    public func operatorActions(limit: Int = 100, before: Int64? = nil) async throws(StorageError) -> [OperatorAction] {
        do {
            return try await writer.read { db in
                let rows = try Row.fetchAll(db, sql: """
                    SELECT id, at_ms, actor, action, txid, reason, result FROM coordinator_operator_audit
                    WHERE id < ? ORDER BY id DESC LIMIT ?
                    """, arguments: [before ?? Int64.max, limit])
                return rows.map { row in
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
