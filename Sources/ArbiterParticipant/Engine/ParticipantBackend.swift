package import ArbiterCore
package import ArbiterRuntime
package import ArbiterStorage
import Foundation
import GRDB
package import Tracing

/// Where a participant node keeps its protocol state and its resource's data: the service's SQLite
/// database (``SQLiteParticipantBackend``) or a PostgreSQL database (`ArbiterParticipantPostgres`).
///
/// The node's loop reaches it through the ``ArbiterRuntime/ParticipantStorage`` it makes; the
/// operator routes, the dashboard and `/metrics` through the reads below, which run concurrently
/// with the loop's rounds.
package protocol ParticipantBackend: Sendable {
    /// Where the state is kept, for logs (a file path, or a database URL without its password).
    var location: String { get }

    /// Makes the loop's storage. Called once, when the node starts; the storage is then used from
    /// the loop's thread only.
    func makeStorage(retention: Duration, traceContext: @escaping @Sendable (TxID) -> ServiceContext?) throws -> any ParticipantStorage

    /// A small forced write: succeeds when protocol state can be written.
    func probe() async throws

    /// The transactions in doubt, oldest first.
    func prepared() async throws -> [ParticipantTransaction]
    /// What is recorded of `txid`, or `nil`.
    func transaction(_ txid: TxID) async throws -> ParticipantTransaction?
    /// The lock keys `txid` holds, for operators.
    func locks(of txid: TxID) async throws -> [String]
    /// Transactions by state, locks, and the oldest in doubt.
    func census(countingEnded: Bool) async throws -> ParticipantCensus

    /// Forces an audit row before an operator's action; returns its id.
    func beginOperatorAction(actor: String, action: String, txid: TxID, reason: String) async throws -> Int64
    /// Records what came of the action.
    func finishOperatorAction(_ id: Int64, result: String) async throws
    /// The audit trail, newest first.
    func operatorActions(limit: Int, before: Int64?) async throws -> [OperatorAction]

    /// Writes and commits so far, for `/metrics`.
    var statistics: StoreWriterStatistics { get }

    /// Closes the database (after the loop has stopped).
    func close() async throws
}

/// The SQLite backend: the resource's tables and Arbiter's protocol tables in one database file.
struct SQLiteParticipantBackend<R: Resource>: ParticipantBackend {
    let resource: R
    let store: ParticipantStore

    var location: String { store.writer.path }

    func makeStorage(retention: Duration, traceContext: @escaping @Sendable (TxID) -> ServiceContext?) -> any ParticipantStorage {
        SQLiteParticipantStorage(resource: resource, store: store, retention: retention, traceContext: traceContext)
    }

    func probe() async throws {
        try await store.write(.forced) { db in
            // A row of about 1 MiB added and removed in one forced transaction: no change, but
            // as many new pages in the WAL as a large round writes. A one-page write is not
            // enough: on a full disk it fits in the space a failed larger write left in the WAL,
            // and the node would call itself ready while its rounds still fail.
            try db.execute(sql: """
                INSERT INTO arbiter_schema_version (component, version) VALUES ('arbiter.probe.' || hex(zeroblob(262144)), 0)
                """)
            try db.execute(sql: "DELETE FROM arbiter_schema_version WHERE component LIKE 'arbiter.probe.%'")
        }
    }

    func prepared() async throws -> [ParticipantTransaction] { try await store.prepared() }
    func transaction(_ txid: TxID) async throws -> ParticipantTransaction? { try await store.transaction(txid) }
    func locks(of txid: TxID) async throws -> [String] { try await store.locks(of: txid) }
    func census(countingEnded: Bool) async throws -> ParticipantCensus { try await store.census(countingEnded: countingEnded) }

    func beginOperatorAction(actor: String, action: String, txid: TxID, reason: String) async throws -> Int64 {
        try await store.beginOperatorAction(actor: actor, action: action, txid: txid, reason: reason)
    }
    func finishOperatorAction(_ id: Int64, result: String) async throws { try await store.finishOperatorAction(id, result: result) }
    func operatorActions(limit: Int, before: Int64?) async throws -> [OperatorAction] {
        try await store.operatorActions(limit: limit, before: before)
    }

    var statistics: StoreWriterStatistics { store.writer.statistics }

    func close() async throws { try await store.close() }
}
