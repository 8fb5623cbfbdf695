public import ArbiterCore
public import ArbiterRuntime
import ArbiterStorage
import Foundation
public import Logging
import PostgresNIO

/// The decision store a coordinator cluster shares, on PostgreSQL (`schemas/coordinator-postgres.sql`).
///
/// Opening it migrates the schema (once, under an advisory lock) and takes this coordinator's
/// lease with a new epoch, which fences any older incarnation of the name. A round's records go in
/// one statement (`arbiter_write`, which applies the fencing rules inside the database) and one
/// commit, with `synchronous_commit` off when nothing in the round must be forced. Leases are on
/// the database's clock (`now()`). Used from the coordinator's loop thread only.
public final class PostgresDecisionStore: SharedDecisionStore, @unchecked Sendable {
    /// This coordinator's name in the cluster (its `--name`).
    public let name: String
    /// The epoch of the lease this process took.
    public private(set) var epoch: Int64 = 0
    /// How long a lease lasts after each renewal.
    public let lease: Duration
    private let session: PostgresSession

    /// Connects, migrates and takes `name`'s lease. Throws when the database cannot be reached
    /// (the caller retries or gives up) or holds a schema this version does not know.
    public init(location: PostgresLocation, name: String, lease: Duration, logger: Logger) throws(PostgresStoreError) {
        self.name = name
        self.lease = lease
        session = PostgresSession(location: location, logger: logger)
        try migrate()
        let rows = try session.query("""
            INSERT INTO arbiter_coordinator_lease (name, epoch, expires_at)
            VALUES (\(name), 1, now() + \(Self.milliseconds(lease)) * interval '1 millisecond')
            ON CONFLICT (name) DO UPDATE SET epoch = arbiter_coordinator_lease.epoch + 1, expires_at = EXCLUDED.expires_at
            RETURNING epoch
            """)
        epoch = try Self.decode(rows.first, as: Int64.self)
    }

    public func close() { session.close() }

    /// The schema versions this build knows, in order.
    static let migrations: [(version: Int, sql: String)] = [(1, PostgresSchemas.coordinatorPostgres)]
    static let component = "coordinator-postgres"

    private func migrate() throws(PostgresStoreError) {
        try session.script("CREATE TABLE IF NOT EXISTS arbiter_schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        try session.script("BEGIN")
        do throws(PostgresStoreError) {
            try session.query("SELECT pg_advisory_xact_lock(\(Int64(0x4172_6269_7465_7200)))")  // "Arbiter"
            let rows = try session.query("SELECT version FROM arbiter_schema_version WHERE component = \(Self.component)")
            var current = 0
            if let row = rows.first { current = try Self.decode(row, as: Int.self) }
            guard current <= Self.migrations.last!.version else {
                throw PostgresStoreError.schema("the database holds version \(current) of the coordinator schema; this Arbiter knows up to \(Self.migrations.last!.version): upgrade Arbiter")
            }
            for migration in Self.migrations where migration.version > current {
                try session.script(migration.sql)
            }
            try session.script("COMMIT")
        } catch {
            try? session.script("ROLLBACK")
            throw error
        }
    }

    // MARK: - DecisionStore

    public func commit(_ records: [CoordinatorRecord], forced: Bool) throws -> [TxID] {
        let rows = try session.query(
            "SELECT arbiter_write(\(name), \(epoch), \(Self.json(records))::jsonb, \(!forced))")
        let refused = try Self.decode(rows.first, as: [String].self)
        return refused.compactMap { try? TxID($0) }
    }

    public func lookup(_ txids: [TxID]) throws -> [LoggedTransaction?] {
        guard !txids.isEmpty else { return [] }
        let rows = try session.query("""
            SELECT txid, owner, epoch, branches, outcome, reason, ended FROM arbiter_transaction
            WHERE txid = ANY(\(txids.map(\.rawValue)))
            """)
        var found: [String: LoggedTransaction] = [:]
        for row in rows {
            let (txid, owner, epoch, branches, outcome, reason, ended) = try Self.decode(
                row, as: (String, String, Int64, String?, String?, String?, Bool).self)
            found[txid] = LoggedTransaction(
                branches: try branches.map { try DecisionLog.decodeBranches($0) },
                outcome: outcome.flatMap(Outcome.init(rawValue:)), reason: reason, ended: ended,
                drivenElsewhere: !ended && !(owner == name && epoch == self.epoch))
        }
        return txids.map { found[$0.rawValue] }
    }

    /// This name's unfinished transactions, adopted under the new epoch.
    public func recover() throws -> [CoordinatorRecord] {
        try records(of: session.query("""
            UPDATE arbiter_transaction SET epoch = \(epoch) WHERE owner = \(name) AND NOT ended
            RETURNING seq, txid, branches, outcome, reason, notify, acknowledged, ended
            """))
    }

    // MARK: - SharedDecisionStore

    public func renewLease() throws -> Bool {
        let rows = try session.query("""
            UPDATE arbiter_coordinator_lease SET expires_at = now() + \(Self.milliseconds(lease)) * interval '1 millisecond'
            WHERE name = \(name) AND epoch = \(epoch) RETURNING epoch
            """)
        return !rows.isEmpty
    }

    public func claimOrphans(limit: Int) throws -> [CoordinatorRecord] {
        try records(of: session.query("""
            UPDATE arbiter_transaction t SET owner = \(name), epoch = \(epoch)
            FROM (SELECT x.txid FROM arbiter_transaction x
                  LEFT JOIN arbiter_coordinator_lease l ON l.name = x.owner
                  WHERE NOT x.ended AND x.owner <> \(name) AND (l.expires_at IS NULL OR l.expires_at < now())
                  ORDER BY x.seq LIMIT \(limit) FOR UPDATE OF x SKIP LOCKED) orphan
            WHERE t.txid = orphan.txid
            RETURNING t.seq, t.txid, t.branches, t.outcome, t.reason, t.notify, t.acknowledged, t.ended
            """))
    }

    // MARK: - Encoding

    /// Rows of (seq, txid, branches, outcome, reason, notify, acknowledged, ended) as records, in
    /// log order.
    private func records(of rows: [PostgresRow]) throws -> [CoordinatorRecord] {
        var ordered: [(Int64, [CoordinatorRecord])] = []
        for row in rows {
            let (seq, id, branches, outcome, reason, notify, acknowledged, ended) = try Self.decode(
                row, as: (Int64, String, String?, String?, String?, [String], [String], Bool).self)
            let txid = try TxID(id)
            var records: [CoordinatorRecord] = []
            if let branches { records.append(.begun(txid, branches: try DecisionLog.decodeBranches(branches))) }
            if let outcome = outcome.flatMap(Outcome.init(rawValue:)) {
                records.append(.decided(txid, outcome, notify: notify.map(ParticipantID.init), reason: reason))
            }
            for participant in acknowledged { records.append(.acknowledged(txid, ParticipantID(participant))) }
            if ended { records.append(.ended(txid)) }
            ordered.append((seq, records))
        }
        return ordered.sorted { $0.0 < $1.0 }.flatMap(\.1)
    }

    /// A round's records as `arbiter_write` reads them.
    static func json(_ records: [CoordinatorRecord]) -> String {
        let objects: [[String: Any]] = records.map { record in
            switch record {
            case .begun(let txid, let branches):
                return ["k": "begun", "t": txid.rawValue, "b": DecisionLog.encodeBranches(branches)]
            case .decided(let txid, let outcome, let notify, let reason):
                var object: [String: Any] = ["k": "decided", "t": txid.rawValue, "o": outcome.rawValue, "n": notify.map(\.rawValue)]
                if let reason { object["r"] = reason }
                return object
            case .acknowledged(let txid, let participant):
                return ["k": "acknowledged", "t": txid.rawValue, "p": participant.rawValue]
            case .ended(let txid):
                return ["k": "ended", "t": txid.rawValue]
            }
        }
        let data = try! JSONSerialization.data(withJSONObject: objects)  // Strings and arrays of them only.
        return String(decoding: data, as: UTF8.self)
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
    }

    static func decode<T: PostgresDecodable>(_ row: PostgresRow?, as type: T.Type) throws(PostgresStoreError) -> T {
        guard let row else { throw .failed("no row where one was expected") }
        do {
            return try row.decode(T.self)
        } catch {
            throw .failed("cannot read a row: \(error)")
        }
    }

    static func decode<each T: PostgresDecodable>(_ row: PostgresRow, as type: (repeat each T).Type) throws(PostgresStoreError) -> (repeat each T) {
        do {
            return try row.decode((repeat each T).self)
        } catch {
            throw .failed("cannot read a row: \(error)")
        }
    }
}
