public import ArbiterCore
public import ArbiterStorage
import Dispatch
public import Foundation
public import Logging
import PostgresNIO

/// What operators and clients read of a coordinator cluster's transactions, from the shared
/// PostgreSQL store: every coordinator sees every transaction, whoever owns it. A connection of
/// its own, used on a serial queue (never on Swift's cooperative pool, since each call waits for
/// the database).
public final class PostgresDecisionViews: DecisionViews, @unchecked Sendable {
    private let session: PostgresSession
    private let queue = DispatchQueue(label: "arbiter.postgres-views")

    public init(location: PostgresLocation, logger: Logger) {
        session = PostgresSession(location: location, logger: logger)
    }

    public func close() { queue.sync { session.close() } }

    private func run<T: Sendable>(_ body: @escaping @Sendable (PostgresSession) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { [session] in continuation.resume(with: Result { try body(session) }) }
        }
    }

    static let columns = """
        seq, txid, branches, outcome, reason, notify, acknowledged, acknowledged_at, ended, created_at, decided_at, ended_at
        """

    public func transaction(_ txid: TxID) async throws -> TransactionSummary? {
        try await run { session in
            try session.query("SELECT \(unescaped: Self.columns) FROM arbiter_transaction WHERE txid = \(txid.rawValue)")
                .first.map(Self.summary)
        }
    }

    public func list(state: TransactionState?, limit: Int, after cursor: TransactionCursor?) async throws -> [TransactionSummary] {
        guard (1...DecisionLog.listLimitMax).contains(limit) else {
            throw StorageError(.invalidArgument, "limit is \(limit); ask for 1 to \(DecisionLog.listLimitMax) transactions per page and page with `after`")
        }
        let filter = state.map(Self.filter) ?? "true"
        let after = cursor?.position ?? Int64.min
        return try await run { session in
            try session.query("""
                SELECT \(unescaped: Self.columns) FROM arbiter_transaction
                WHERE seq > \(after) AND \(unescaped: filter) ORDER BY seq LIMIT \(limit)
                """).map(Self.summary)
        }
    }

    public func open(createdBefore: Date, limit: Int) async throws -> [TransactionSummary] {
        guard (1...DecisionLog.listLimitMax).contains(limit) else {
            throw StorageError(.invalidArgument, "limit is \(limit); ask for 1 to \(DecisionLog.listLimitMax) transactions")
        }
        return try await run { session in
            try session.query("""
                SELECT \(unescaped: Self.columns) FROM arbiter_transaction
                WHERE NOT ended AND created_at <= \(createdBefore) ORDER BY seq LIMIT \(limit)
                """).map(Self.summary)
        }
    }

    public func openCounts() async throws -> [String: Int] {
        try await run { session in
            var counts: [String: Int] = [:]
            for row in try session.query("""
                SELECT CASE WHEN outcome IS NULL THEN 'active' WHEN outcome = 'committed' THEN 'committing' ELSE 'aborting' END,
                       count(*)
                FROM arbiter_transaction WHERE NOT ended GROUP BY 1
                """) {
                let (state, count) = try PostgresDecisionStore.decode(row, as: (String, Int64).self)
                counts[state] = Int(count)
            }
            return counts
        }
    }

    public func oldestOpen() async throws -> (undecidedSince: Date?, unacknowledgedSince: Date?) {
        let (undecided, unacknowledged) = try await run { session in
            let row = try session.query("""
                SELECT min(created_at) FILTER (WHERE outcome IS NULL), min(decided_at) FILTER (WHERE outcome IS NOT NULL)
                FROM arbiter_transaction WHERE NOT ended
                """).first
            return try PostgresDecisionStore.decode(row!, as: (Date?, Date?).self)
        }
        return (undecided, unacknowledged)
    }

    /// The rows in `state`, as the SQLite log's states read the same facts.
    static func filter(_ state: TransactionState) -> String {
        switch state {
        case .active: "outcome IS NULL AND NOT ended"
        case .committing: "outcome = 'committed' AND NOT ended"
        case .aborting: "outcome = 'aborted' AND NOT ended"
        case .committed: "outcome = 'committed' AND ended"
        case .aborted: "(outcome = 'aborted' OR outcome IS NULL) AND ended"
        }
    }

    static func summary(_ row: PostgresRow) throws -> TransactionSummary {
        let (seq, id, branches, outcome, reason, notify, acknowledged, acknowledgedAt, ended, createdAt, decidedAt, endedAt) =
            try PostgresDecisionStore.decode(
                row, as: (Int64, String, String?, String?, String?, [String], [String], [Date], Bool, Date, Date?, Date?).self)
        let decided = outcome.flatMap(Outcome.init(rawValue:))
        let state: TransactionState = switch (decided, ended) {
        case (nil, false): .active
        case (.committed?, false): .committing
        case (.aborted?, false): .aborting
        case (.committed?, true): .committed
        case (.aborted?, true), (nil, true): .aborted
        }
        return TransactionSummary(
            txid: try TxID(id), state: state, branches: try branches.map { try DecisionLog.decodeBranches($0) },
            outcome: decided, reason: reason, notify: decided == nil ? nil : notify.map(ParticipantID.init),
            acknowledgements: zip(acknowledged, acknowledgedAt).map { Acknowledgement(participant: ParticipantID($0), acknowledgedAt: $1) },
            createdAt: createdAt, decidedAt: decidedAt, endedAt: endedAt, cursor: TransactionCursor(position: seq))
    }
}
