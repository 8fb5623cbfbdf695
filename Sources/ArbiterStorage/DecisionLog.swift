public import ArbiterCore
public import Foundation
import GRDB
import GRDBSQLite

/// Where a transaction stands in the coordinator's decision log.
///
/// The states follow the records applied: `begun` makes a transaction ``active``; `decided` makes it
/// ``committing`` or ``aborting`` (phase 2 is owed to the participants); `ended` makes it
/// ``committed`` or ``aborted`` (nothing more is owed). A transaction ended without a recorded
/// decision is ``aborted``, which is what presumed abort answers for it.
public enum TransactionState: String, Hashable, Sendable, CaseIterable {
    /// Recorded, not decided: the prepare phase is running (a restart aborts it).
    case active
    /// Decided commit; not every participant has acknowledged yet.
    case committing
    /// Decided abort; not every participant has acknowledged yet.
    case aborting
    /// Decided commit, and every participant acknowledged.
    case committed
    /// Aborted, and every participant acknowledged (or there was nobody to tell).
    case aborted

    /// Whether the transaction has ended: nothing is owed to anyone, and recovery skips it.
    public var isEnded: Bool { self == .committed || self == .aborted }
}

/// A position in the decision log, for paging through ``DecisionLog/list(state:limit:after:)``.
///
/// Its text form (a decimal number) can travel in a URL and come back unchanged.
public struct TransactionCursor: Hashable, Sendable, LosslessStringConvertible {
    /// The log position of the transaction the cursor points at.
    public let position: Int64

    /// Makes a cursor at `position`.
    public init(position: Int64) { self.position = position }

    /// Parses a cursor's text form; nil when `description` is not one.
    public init?(_ description: String) {
        guard let position = Int64(description) else { return nil }
        self.position = position
    }

    /// The cursor's text form, a decimal number, which ``init(_:)`` parses back.
    public var description: String { String(position) }
}

/// A participant's acknowledgement of the decision, as recorded.
public struct Acknowledgement: Hashable, Sendable {
    /// Who acknowledged.
    public let participant: ParticipantID
    /// When the coordinator recorded it (its wall clock).
    public let acknowledgedAt: Date

    public init(participant: ParticipantID, acknowledgedAt: Date) {
        self.participant = participant
        self.acknowledgedAt = acknowledgedAt
    }
}

/// The part of a transaction's row that answers a client's repeated submit
/// (``DecisionLog/recordedDecision(of:)``).
public struct RecordedDecision: Hashable, Sendable {
    /// Where it stands.
    public let state: TransactionState
    /// Its branches, once its `begun` record is written.
    public let branches: [Branch]?
    /// The decision, once recorded.
    public let outcome: Outcome?
    /// Why it aborted, when a reason was recorded.
    public let reason: String?
}

/// What the decision log holds about one transaction, for operators.
public struct TransactionSummary: Hashable, Sendable {
    /// The transaction.
    public let txid: TxID
    /// Where it stands.
    public let state: TransactionState
    /// Its branches; nil when the `begun` record was never written (it is lazy, and may be lost).
    public let branches: [Branch]?
    /// The decision; nil while undecided (and for a transaction ended undecided: presumed abort).
    public let outcome: Outcome?
    /// Why it was decided so, for people.
    public let reason: String?
    /// The participants that must hear the decision; nil while undecided.
    public let notify: [ParticipantID]?
    /// The acknowledgements received, in the order recorded. Once the transaction has ended, every
    /// participant of `notify` has acknowledged: those whose acknowledgement was not written on its
    /// own (see ``DecisionLog/append(_:durability:)``) are listed last, at the time it ended.
    public let acknowledgements: [Acknowledgement]
    /// When its first record was written (the coordinator's wall clock, like the other times).
    public let createdAt: Date
    /// When the decision was recorded.
    public let decidedAt: Date?
    /// When the transaction ended.
    public let endedAt: Date?
    /// Its position in the log; pass it as `after` to list the transactions that follow.
    public let cursor: TransactionCursor

    public init(
        txid: TxID, state: TransactionState, branches: [Branch]?, outcome: Outcome?, reason: String?, notify: [ParticipantID]?,
        acknowledgements: [Acknowledgement], createdAt: Date, decidedAt: Date?, endedAt: Date?, cursor: TransactionCursor
    ) {
        self.txid = txid
        self.state = state
        self.branches = branches
        self.outcome = outcome
        self.reason = reason
        self.notify = notify
        self.acknowledgements = acknowledgements
        self.createdAt = createdAt
        self.decidedAt = decidedAt
        self.endedAt = endedAt
        self.cursor = cursor
    }
}

/// What operators and clients read of a coordinator's transactions: its own SQLite
/// ``DecisionLog``, or the store a coordinator cluster shares. The service reads through this;
/// the loop writes through its `DecisionStore`.
public protocol DecisionViews: Sendable {
    /// One transaction as recorded; `nil` when the store does not know it.
    func transaction(_ txid: TxID) async throws -> TransactionSummary?
    /// Up to `limit` (1…``DecisionLog/listLimitMax``) transactions in log order after `cursor`,
    /// optionally only those in `state`.
    func list(state: TransactionState?, limit: Int, after cursor: TransactionCursor?) async throws -> [TransactionSummary]
    /// The open transactions first recorded at or before `createdBefore`, oldest first.
    func open(createdBefore: Date, limit: Int) async throws -> [TransactionSummary]
    /// How many open transactions are in each open state (`active`, `committing`, `aborting`).
    func openCounts() async throws -> [String: Int]
    /// When the oldest undecided transaction was first recorded, and when the oldest decided one
    /// whose phase 2 is still owed was decided.
    func oldestOpen() async throws -> (undecidedSince: Date?, unacknowledgedSince: Date?)
}

extension DecisionLog: DecisionViews {}

/// The coordinator's decision log: the records of ``CoordinatorRecord`` applied to SQLite tables
/// (see `schemas/coordinator.sql`) through a ``StoreWriter``.
///
/// Each record is an UPSERT on its transaction's row, so records apply in any combination, even when
/// an earlier lazy one was lost in a crash (a `decided` without its `begun`). Times are taken from the
/// wall clock here, at the edge; the protocol core never sees them.
public final class DecisionLog: Sendable {
    /// The largest page ``list(state:limit:after:)`` returns.
    public static let listLimitMax = 1000

    /// The writer that owns the database; its ``StoreWriter/statistics`` feed the metrics.
    public let writer: StoreWriter
    private let now: @Sendable () -> Date

    /// Opens (or creates) the decision log at `path` and brings its tables to the current schema.
    ///
    /// - Parameters:
    ///   - now: the wall clock for the records' times (tests pass a fixed one).
    /// - Throws: ``StorageError`` saying what to fix.
    public init(
        path: String,
        options: StoreWriter.Options = StoreWriter.Options(),
        now: @escaping @Sendable () -> Date = { Date() }
    ) throws(StorageError) {
        writer = try StoreWriter(path: path, migrator: Migrations.coordinator, options: options)
        self.now = now
    }

    /// Applies `records` in order, in one write of the given durability, and returns when that write
    /// has committed (durable for ``Durability/forced``).
    ///
    /// Presumed abort forces only a commit decision; every other record may be lazy.
    ///
    /// An acknowledgement matters only until its transaction's `ended` record: recovery reads the
    /// acknowledgements of open transactions only, and an ended transaction's `notify` participants
    /// have all acknowledged. So an acknowledgement whose `ended` is in the same `records` — one
    /// SQLite transaction, all or nothing — is not written (two statements and an index entry each;
    /// usually both acknowledgements of a transfer arrive in the write that ends it).
    ///
    /// - Throws: ``StorageError``; ``StorageError/Code/conflict`` when a record contradicts the log
    ///   (a different decision for a decided transaction). Then none of `records` was applied.
    public func append(_ records: [CoordinatorRecord], durability: Durability) async throws(StorageError) {
        guard !records.isEmpty else { return }
        do {
            try await writer.write(durability, applying(records))
        } catch {
            throw StorageError.wrapping(error, doing: "appending to", path: writer.path)
        }
    }

    /// Applies `records` like ``append(_:durability:)``, in one transaction on the calling thread
    /// (see ``StoreWriter/writeNow(_:pieces:_:)``: a loop's thread, never an event loop).
    public func commitNow(_ records: [CoordinatorRecord], durability: Durability) throws(StorageError) {
        guard !records.isEmpty else { return }
        do {
            try writer.writeNow(durability, pieces: records.count, applying(records))
        } catch {
            throw StorageError.wrapping(error, doing: "appending to", path: writer.path)
        }
    }

    /// The work that applies `records` in one write (see ``append(_:durability:)``).
    private func applying(_ records: [CoordinatorRecord]) -> @Sendable (Database) throws -> Void {
        let now = self.now
        let ending = Self.ended(in: records)
        return { db in
            let atMilliseconds = Stored.milliseconds(now())
            for record in records {
                if case .acknowledged(let txid, _) = record, ending.contains(txid) { continue }
                try Self.apply(record, atMilliseconds: atMilliseconds, in: db)
            }
        }
    }

    /// ``recover()`` on the calling thread.
    public func recoverNow() throws(StorageError) -> [CoordinatorRecord] {
        do {
            return try writer.readOnWriter { db in try Self.openRecords(db) }
        } catch {
            throw StorageError.wrapping(error, doing: "reading", path: writer.path)
        }
    }

    /// The records of every transaction that has not ended, in log order: transactions in the order
    /// they were first recorded, and each one's records in the order they apply (`begun`, `decided`,
    /// then its acknowledgements in the order received).
    ///
    /// This is all the coordinator needs at restart. It reads only open transactions, through an
    /// index, so its cost does not grow with the number of ended ones.
    public func recover() async throws(StorageError) -> [CoordinatorRecord] {
        try await reading { db in try Self.openRecords(db) }
    }

    private static func openRecords(_ db: Database) throws -> [CoordinatorRecord] {
        var acknowledgements: [String: [ParticipantID]] = [:]
        let acknowledgementRows = try Row.fetchCursor(db, sql: Self.openAcknowledgementsSQL)
        while let row = try acknowledgementRows.next() {
            acknowledgements[try row.decode(String.self, atIndex: 0), default: []]
                .append(ParticipantID(try row.decode(String.self, atIndex: 1)))
        }

        var records: [CoordinatorRecord] = []
        let rows = try Row.fetchCursor(db, sql: Self.openTransactionsSQL)
        while let row = try rows.next() {
            let text = try row.decode(String.self, atIndex: 0)
            let txid = try Stored.txid(text)
            if let branches = try row.decode(String?.self, atIndex: 1) {
                records.append(.begun(txid, branches: try Self.decodeBranches(branches)))
            }
            if let outcome = try row.decode(String?.self, atIndex: 2) {
                records.append(.decided(
                    txid,
                    try Stored.value(Outcome.self, outcome, column: "outcome"),
                    notify: try Self.decodeParticipants(row.decode(String?.self, atIndex: 4)) ?? [],
                    reason: try row.decode(String?.self, atIndex: 3)))
            }
            for participant in acknowledgements[text] ?? [] {
                records.append(.acknowledged(txid, participant))
            }
        }
        return records
    }

    /// What the log holds about `txid`, or nil when it holds nothing (presumed abort: never heard
    /// of, or its records were lost before any was durable).
    public func transaction(_ txid: TxID) async throws(StorageError) -> TransactionSummary? {
        try await reading { db in try Self.summary(of: txid, in: db) }
    }

    /// What a coordinator needs to answer a submit of an id its machine no longer drives: the
    /// recorded branches, outcome, reason and state of `txid`, or nil when the log holds nothing.
    ///
    /// One primary-key lookup, on the calling thread, through the writer's connection (see
    /// ``recordedDecisions(of:)``).
    public func recordedDecision(of txid: TxID) throws(StorageError) -> RecordedDecision? {
        try recordedDecisions(of: [txid])[0]
    }

    /// ``recordedDecision(of:)`` of each of `txids`, in order, in one visit to the writer's
    /// connection on the calling thread (``StoreWriter/readOnWriter(_:)``): the coordinator's
    /// loop asks this after each round's write for the new ids of the round (idempotency), so the
    /// log has one way in.
    public func recordedDecisions(of txids: [TxID]) throws(StorageError) -> [RecordedDecision?] {
        do {
            return try writer.readOnWriter { db in
                try txids.map { txid in
                    try HotStatements.run(.coordinatorLookup, in: db, bind: { $0.text(1, txid.rawValue) }) { row in
                        RecordedDecision(
                            state: try Stored.value(TransactionState.self, row.text(0) ?? "", column: "state"),
                            branches: try row.text(1).map(Self.decodeBranches),
                            outcome: try row.text(2).map { text in try Stored.value(Outcome.self, text, column: "outcome") },
                            reason: row.text(3))
                    }
                }
            }
        } catch {
            throw StorageError.wrapping(error, doing: "reading", path: writer.path)
        }
    }

    private static func summary(of txid: TxID, in db: Database) throws -> TransactionSummary? {
        try Row.fetchOne(db.cachedStatement(sql: "\(summarySelect) FROM coordinator_transaction WHERE txid = ?"), arguments: [txid.rawValue])
            .map { try summary($0, in: db) }
    }

    /// Up to `limit` transactions in log order, starting after `cursor`, optionally only those in
    /// `state`. Page by passing the last summary's ``TransactionSummary/cursor`` as `after`.
    ///
    /// - Throws: ``StorageError/Code/invalidArgument`` when `limit` is not in 1...``listLimitMax``.
    public func list(
        state: TransactionState? = nil,
        limit: Int = 100,
        after cursor: TransactionCursor? = nil
    ) async throws(StorageError) -> [TransactionSummary] {
        guard (1...Self.listLimitMax).contains(limit) else {
            throw StorageError(.invalidArgument, "limit is \(limit); ask for 1 to \(Self.listLimitMax) transactions per page and page with `after`")
        }
        return try await reading { db in
            let sql = "\(Self.summarySelect) \(Self.listFilter(state)) ORDER BY seq LIMIT ?"
            return try Row.fetchAll(db, sql: sql, arguments: [cursor?.position ?? Int64.min, limit])
                .map { try Self.summary($0, in: db) }
        }
    }

    /// The open transactions — undecided, or decided with phase 2 still owed — first recorded at
    /// or before `createdBefore`, oldest first, at most `limit` of them: what an operator looks at
    /// when something is stuck. Found through the partial index of open transactions, so the
    /// ended rows that make up most of a log are never read.
    ///
    /// - Throws: ``StorageError/Code/invalidArgument`` when `limit` is not in 1...``listLimitMax``.
    public func open(createdBefore: Date, limit: Int = 100) async throws(StorageError) -> [TransactionSummary] {
        guard (1...Self.listLimitMax).contains(limit) else {
            throw StorageError(.invalidArgument, "limit is \(limit); ask for 1 to \(Self.listLimitMax) transactions")
        }
        let cutoff = Stored.milliseconds(createdBefore)
        return try await reading { db in
            let sql = """
                \(Self.summarySelect)
                FROM coordinator_transaction INDEXED BY coordinator_transaction_open
                WHERE ended_at_ms IS NULL AND created_at_ms <= ?
                ORDER BY seq LIMIT ?
                """
            return try Row.fetchAll(db, sql: sql, arguments: [cutoff, limit]).map { try Self.summary($0, in: db) }
        }
    }

    /// How many open transactions the log holds in each open state (`active`, `committing`,
    /// `aborting`), through the partial index of open transactions.
    public func openCounts() async throws(StorageError) -> [String: Int] {
        try await reading { db in
            var counts: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: """
                SELECT state, count(*) FROM coordinator_transaction INDEXED BY coordinator_transaction_open
                WHERE ended_at_ms IS NULL GROUP BY state
                """) {
                counts[row[0]] = row[1]
            }
            return counts
        }
    }

    /// When the oldest undecided transaction was first recorded, and when the oldest decided one
    /// whose phase 2 is still owed was decided: `nil` when there is none. Two reads of the
    /// partial index of open transactions (the `/metrics` ages).
    public func oldestOpen() async throws(StorageError) -> (undecidedSince: Date?, unacknowledgedSince: Date?) {
        try await reading { db in
            let undecided = try Int64.fetchOne(db, sql: """
                SELECT min(created_at_ms) FROM coordinator_transaction INDEXED BY coordinator_transaction_open
                WHERE ended_at_ms IS NULL AND state = 'active'
                """)
            let unacknowledged = try Int64.fetchOne(db, sql: """
                SELECT min(decided_at_ms) FROM coordinator_transaction INDEXED BY coordinator_transaction_open
                WHERE ended_at_ms IS NULL AND state <> 'active'
                """)
            return (undecided.map(Stored.date), unacknowledged.map(Stored.date))
        }
    }

    /// The `FROM … WHERE` part of a listing of `state` after a log position (its one argument),
    /// read in log order.
    ///
    /// Since schema version 2 there is no index on the state of every row (it cost pages in every forced
    /// commit), so each state is found its own way: open ones through the partial index of open
    /// transactions, aborted ones through the partial index of aborted ones (both named, so a
    /// schema change that made either unusable fails loudly; a partial index is used only when
    /// the query repeats its WHERE clause), committed ones, and all transactions, by walking the
    /// log from the cursor. Committed transactions are most of a log, so that walk finds a page
    /// of them quickly; it reads every row after the cursor when few have committed.
    static func listFilter(_ state: TransactionState?) -> String {
        guard let state else { return "FROM coordinator_transaction WHERE seq > ?" }
        return switch state {
        case .active, .committing, .aborting:
            """
            FROM coordinator_transaction INDEXED BY coordinator_transaction_open
            WHERE ended_at_ms IS NULL AND state = '\(state.rawValue)' AND seq > ?
            """
        case .aborted:
            """
            FROM coordinator_transaction INDEXED BY coordinator_transaction_aborted
            WHERE state = 'aborted' AND seq > ?
            """
        case .committed:
            "FROM coordinator_transaction WHERE state = 'committed' AND seq > ?"
        }
    }

    /// The schema version of the coordinator's tables in this database.
    public func schemaVersion() async throws(StorageError) -> Int {
        try await reading { db in try Migrations.schemaVersion(of: "coordinator", in: db) ?? 0 }
    }

    /// Waits for queued writes, then closes the database. See ``StoreWriter/close()``.
    public func close() async throws(StorageError) {
        try await writer.close()
    }

    // MARK: Applying records

    /// The transactions that `records` end.
    static func ended(in records: [CoordinatorRecord]) -> Set<TxID> {
        var ended: Set<TxID> = []
        for record in records {
            if case .ended(let txid) = record { ended.insert(txid) }
        }
        return ended
    }

    /// Applies one record as an UPSERT on its transaction's row (see `schemas/coordinator.sql`).
    static func apply(_ record: CoordinatorRecord, atMilliseconds now: Int64, in db: Database) throws {
        // Through SQLite's C API (see HotStatements): these run for every transaction.
        switch record {
        case .begun(let txid, let branches):
            let branches = encodeBranches(branches)
            try HotStatements.execute(.coordinatorBegun, in: db) { bind in
                HotStatements.Bindings.first(bind.text(1, txid.rawValue), bind.text(2, branches), bind.int(3, now))
            }

        case .decided(let txid, let outcome, let notify, let reason):
            let state: TransactionState = outcome == .committed ? .committing : .aborting
            let notify = Stored.jsonArray(notify.lazy.map(\.rawValue))
            try HotStatements.execute(.coordinatorDecided, in: db) { bind in
                HotStatements.Bindings.first(
                    bind.text(1, txid.rawValue), bind.text(2, state.rawValue), bind.text(3, outcome.rawValue),
                    reason.map { bind.text(4, $0) } ?? SQLITE_OK, bind.text(5, notify), bind.int(6, now))
            }

        case .acknowledged(let txid, let participant):
            try db.cachedStatement(sql: RecordSQL.acknowledgedTransaction).execute(arguments: [txid.rawValue, now])
            try db.cachedStatement(sql: RecordSQL.acknowledged).execute(arguments: [txid.rawValue, participant.rawValue, now])

        case .ended(let txid):
            try HotStatements.execute(.coordinatorEnded, in: db) { bind in
                HotStatements.Bindings.first(bind.text(1, txid.rawValue), bind.int(2, now))
            }
        }
    }

    /// The statements that apply the records, one UPSERT per record on the transaction's row (two
    /// for an acknowledgement). They run for every transaction, so each must stay cheap: the schema
    /// avoids what would make SQLite do more than touch the row and its indexes (see
    /// `schemas/coordinator.v3.sql`), and a test checks their plans.
    enum RecordSQL {
        /// A repeated or late `begun` fills in the branches only; it never moves the state back.
        static let begun = """
            INSERT INTO coordinator_transaction (txid, state, branches, created_at_ms)
            VALUES (?, 'active', ?, ?)
            ON CONFLICT (txid) DO UPDATE SET branches = coalesce(branches, excluded.branches)
            """

        /// The trigger coordinator_decision_is_final refuses a different outcome; a repeat of the
        /// same decision keeps what was first recorded.
        static let decided = """
            INSERT INTO coordinator_transaction (txid, state, outcome, reason, notify, created_at_ms, decided_at_ms)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
            ON CONFLICT (txid) DO UPDATE SET
                outcome = excluded.outcome,
                reason = CASE WHEN outcome IS NULL THEN excluded.reason ELSE reason END,
                notify = CASE WHEN outcome IS NULL THEN excluded.notify ELSE notify END,
                decided_at_ms = coalesce(decided_at_ms, excluded.decided_at_ms),
                state = CASE WHEN ended_at_ms IS NULL THEN excluded.state ELSE state END
            """

        /// An acknowledgement's transaction row, when no earlier record made it.
        static let acknowledgedTransaction = """
            INSERT INTO coordinator_transaction (txid, state, created_at_ms) VALUES (?, 'active', ?)
            ON CONFLICT (txid) DO NOTHING
            """

        static let acknowledged = """
            INSERT INTO coordinator_acknowledgement (txid, participant, acknowledged_at_ms) VALUES (?, ?, ?)
            ON CONFLICT (txid, participant) DO NOTHING
            """

        /// Ended without a recorded decision reads as aborted (presumed abort).
        static let ended = """
            INSERT INTO coordinator_transaction (txid, state, created_at_ms, ended_at_ms)
            VALUES (?1, 'aborted', ?2, ?2)
            ON CONFLICT (txid) DO UPDATE SET
                state = CASE outcome WHEN 'committed' THEN 'committed' ELSE 'aborted' END,
                ended_at_ms = coalesce(ended_at_ms, excluded.ended_at_ms)
            """

        static let all = [begun, decided, acknowledgedTransaction, acknowledged, ended]
    }

    // MARK: Reading rows

    /// The open transactions, through the partial index coordinator_transaction_open, in log order:
    /// recovery never reads ended rows. INDEXED BY pins the plan (SQLite's own choice varies with
    /// ANALYZE statistics) and fails loudly if a schema change ever makes the index unusable; the
    /// WHERE clause must stay the index's for SQLite to accept it.
    static let openTransactionsSQL = """
        SELECT txid, branches, outcome, reason, notify
        FROM coordinator_transaction INDEXED BY coordinator_transaction_open
        WHERE ended_at_ms IS NULL
        ORDER BY seq
        """

    /// The acknowledgements of the open transactions, found from those through the unique index
    /// on (txid, participant). CROSS JOIN makes SQLite loop over the open transactions first, never
    /// over every acknowledgement ever recorded.
    static let openAcknowledgementsSQL = """
        SELECT a.txid, a.participant
        FROM coordinator_transaction t INDEXED BY coordinator_transaction_open
        CROSS JOIN coordinator_acknowledgement a ON a.txid = t.txid
        WHERE t.ended_at_ms IS NULL
        ORDER BY a.seq
        """

    private static let summarySelect = """
        SELECT seq, txid, state, branches, outcome, reason, notify, created_at_ms, decided_at_ms, ended_at_ms
        """

    private static func summary(_ row: Row, in db: Database) throws -> TransactionSummary {
        let txid = try row.decode(String.self, atIndex: 1)
        var acknowledgements = try Row.fetchAll(
            db.cachedStatement(sql: """
                SELECT participant, acknowledged_at_ms FROM coordinator_acknowledgement WHERE txid = ? ORDER BY seq
                """),
            arguments: [txid]
        ).map { row in
            Acknowledgement(
                participant: ParticipantID(try row.decode(String.self, atIndex: 0)),
                acknowledgedAt: Stored.date(try row.decode(Int64.self, atIndex: 1)))
        }
        let notify = try decodeParticipants(row.decode(String?.self, atIndex: 6))
        let endedAt = Stored.date(try row.decode(Int64?.self, atIndex: 9))
        if let endedAt, let notify {
            // Ended: every participant to notify acknowledged, some in the write that ended it.
            let recorded = Set(acknowledgements.map(\.participant))
            for participant in notify where !recorded.contains(participant) {
                acknowledgements.append(Acknowledgement(participant: participant, acknowledgedAt: endedAt))
            }
        }
        return TransactionSummary(
            txid: try Stored.txid(txid),
            state: try Stored.value(TransactionState.self, row.decode(String.self, atIndex: 2), column: "state"),
            branches: try row.decode(String?.self, atIndex: 3).map(decodeBranches),
            outcome: try row.decode(String?.self, atIndex: 4).map { text throws(StorageError) in
                try Stored.value(Outcome.self, text, column: "outcome")
            },
            reason: try row.decode(String?.self, atIndex: 5),
            notify: notify,
            acknowledgements: acknowledgements,
            createdAt: Stored.date(try row.decode(Int64.self, atIndex: 7)),
            decidedAt: Stored.date(try row.decode(Int64?.self, atIndex: 8)),
            endedAt: endedAt,
            cursor: TransactionCursor(position: try row.decode(Int64.self, atIndex: 0)))
    }

    /// Runs a read and reports any failure as ``StorageError``.
    private func reading<T: Sendable>(_ work: @escaping @Sendable (Database) throws -> T) async throws(StorageError) -> T {
        do {
            return try await writer.read(work)
        } catch {
            throw StorageError.wrapping(error, doing: "reading", path: writer.path)
        }
    }

    // MARK: JSON columns

    /// A branch as stored in the `branches` JSON: the payload as text when it is UTF-8 (the usual
    /// JSON payload stays readable to an operator's `sqlite3`), as base64 otherwise.
    private struct StoredBranch: Decodable {
        var participant: String
        var payload: String?
        var payloadBase64: String?
    }

    public static func encodeBranches(_ branches: [Branch]) -> String {
        "[" + branches.map { branch in
            if let text = String(validating: branch.payload.bytes, as: UTF8.self) {
                return Stored.jsonObject(["participant": branch.participant.rawValue, "payload": text])
            }
            let encoded = Data(branch.payload.bytes).base64EncodedString()
            return Stored.jsonObject(["participant": branch.participant.rawValue, "payloadBase64": encoded])
        }.joined(separator: ",") + "]"
    }

    public static func decodeBranches(_ text: String) throws(StorageError) -> [Branch] {
        try Stored.decodeJSON([StoredBranch].self, text, column: "branches").map { stored throws(StorageError) in
            let bytes: [UInt8]
            if let payload = stored.payload {
                bytes = Array(payload.utf8)
            } else if let encoded = stored.payloadBase64, let data = Data(base64Encoded: encoded) {
                bytes = Array(data)
            } else {
                throw StorageError(.corrupt, "a stored branch of \(stored.participant) has no readable payload; the database was modified outside Arbiter")
            }
            return Branch(participant: ParticipantID(stored.participant), payload: Payload(bytes))
        }
    }

    static func decodeParticipants(_ text: String?) throws(StorageError) -> [ParticipantID]? {
        guard let text else { return nil }
        return try Stored.decodeJSON([String].self, text, column: "notify").map(ParticipantID.init)
    }
}
