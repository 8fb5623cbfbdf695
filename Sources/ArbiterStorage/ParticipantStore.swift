public import ArbiterCore
public import Foundation
public import GRDB
import GRDBSQLite

/// The answer to ``ParticipantStore/lock(_:for:in:)``.
public enum LockResult: Hashable, Sendable {
    /// The key was free; the transaction now holds it.
    case acquired
    /// The transaction already held the key (a repeated prepare).
    case alreadyHeld
    /// Another transaction holds the key: the prepare should vote no at once (no waiting, hence no
    /// distributed deadlock).
    case conflict(holder: TxID)
}

/// A key lock as stored.
public struct HeldLock: Hashable, Sendable {
    /// The resource's key.
    public let key: String
    /// The transaction holding it.
    public let txid: TxID
    /// When it was taken (the participant's wall clock).
    public let acquiredAt: Date
}

/// Where a transaction stands at a participant.
public enum ParticipantTransactionState: String, Hashable, Sendable, CaseIterable {
    /// Staged, locked, voted yes: in doubt until the coordinator's decision arrives.
    case prepared
    /// Applied.
    case committed
    /// Discarded, or a tombstone left by an abort that overtook its prepare.
    case aborted
}

/// What a participant's store holds about one transaction.
public struct ParticipantTransaction: Hashable, Sendable {
    /// The transaction.
    public let txid: TxID
    /// Where it stands here.
    public let state: ParticipantTransactionState
    /// Where to send in-doubt inquiries; nil when no `prepared` record was written.
    public let coordinator: CoordinatorID?
    /// What was staged; nil when no `prepared` record was written.
    public let payload: Payload?
    /// Whether an operator decided it alone.
    public let isHeuristic: Bool
    /// When `prepared` was recorded (the participant's wall clock).
    public let preparedAt: Date?
    /// When it was committed or aborted.
    public let endedAt: Date?

    /// Makes a value from its members (for stores other than SQLite's: a participant on PostgreSQL).
    public init(txid: TxID, state: ParticipantTransactionState, coordinator: CoordinatorID?, payload: Payload?,
                isHeuristic: Bool, preparedAt: Date?, endedAt: Date?) {
        self.txid = txid
        self.state = state
        self.coordinator = coordinator
        self.payload = payload
        self.isHeuristic = isHeuristic
        self.preparedAt = preparedAt
        self.endedAt = endedAt
    }

    /// An abort recorded without a prepare: it exists so that a late prepare votes no.
    public var isTombstone: Bool { state == .aborted && coordinator == nil }

    /// The protocol records this row stands for, in the order they apply: `prepared` (when one was
    /// written), then `committed` or `aborted` (when it ended).
    public var records: [ParticipantRecord] {
        var records: [ParticipantRecord] = []
        if let coordinator {
            records.append(.prepared(txid, coordinator: coordinator, payload: payload ?? Payload([])))
        }
        switch state {
        case .prepared: break
        case .committed: records.append(.committed(txid, heuristic: isHeuristic))
        case .aborted: records.append(.aborted(txid, heuristic: isHeuristic))
        }
        return records
    }
}

/// A participant's protocol state and key locks, kept in the participant service's own SQLite
/// database (see `schemas/participant.sql`) beside its resource's tables.
///
/// The participant library runs a resource's work and the protocol record that covers it in ONE
/// write, so that they commit together:
///
/// ```swift
/// try await store.write(.forced) { db in
///     guard case .acquired = try store.lock("account:alice", for: txid, in: db) else { ... }
///     try stageDebit(db)                                   // the resource's own SQL
///     try store.apply(.prepared(txid, coordinator: c, payload: p), in: db)
/// }
/// ```
///
/// The functions taking a `Database` are for use inside such a write; the `async` ones read on
/// their own.
public final class ParticipantStore: Sendable {
    /// The longest lock key accepted, in UTF-8 bytes.
    public static let lockKeyLengthMax = 1024
    /// The largest page ``endedTransactions(before:limit:)`` returns.
    public static let endedLimitMax = 10_000

    /// The writer that owns the database, shared with the resource's own writes.
    public let writer: StoreWriter
    private let now: @Sendable () -> Date

    /// Opens (or creates) the participant database at `path`, applies Arbiter's migrations, then the
    /// resource's.
    ///
    /// - Parameters:
    ///   - migrations: registers the resource's own migrations (identifiers must not start with
    ///     `arbiter.`); they run after Arbiter's, in registration order, each once.
    ///   - now: the wall clock for the records' times (tests pass a fixed one).
    /// - Throws: ``StorageError`` saying what to fix.
    public init(
        path: String,
        options: StoreWriter.Options = StoreWriter.Options(),
        migrations: (inout DatabaseMigrator) -> Void = { _ in },
        now: @escaping @Sendable () -> Date = { Date() }
    ) throws(StorageError) {
        writer = try StoreWriter(path: path, migrator: Migrations.participant(then: migrations), options: options)
        self.now = now
    }

    /// Runs `work` in a transaction of its own on the writer. See ``StoreWriter/write(_:_:)``.
    public func write<T: Sendable>(
        _ durability: Durability,
        _ work: @escaping @Sendable (Database) throws -> T
    ) async throws -> T {
        try await writer.write(durability, work)
    }

    // MARK: Inside a write

    /// Writes `record` in the caller's write. `committed` and `aborted` also release every lock
    /// the transaction holds.
    ///
    /// Applying a record again is harmless. A `prepared` for a transaction that ended here, or a
    /// `committed` after `aborted` (or the reverse), throws ``StorageError/Code/conflict``: an
    /// ended transaction never changes state, which is what keeps an abort's tombstone effective.
    public func apply(_ record: ParticipantRecord, in db: Database) throws(StorageError) {
        let now = Stored.milliseconds(self.now())
        try catching("recording \(record.txid) in") {
            switch record {
            case .prepared(let txid, let coordinator, let payload):
                try HotStatements.execute(.participantPrepared, in: db) { bind in
                    HotStatements.Bindings.first(bind.text(1, txid.rawValue), bind.text(2, coordinator.rawValue), bind.blob(3, payload.bytes), bind.int(4, now))
                }

            case .committed(let txid, let heuristic), .aborted(let txid, let heuristic):
                let state: ParticipantTransactionState = if case .committed = record { .committed } else { .aborted }
                try HotStatements.execute(.participantEnded, in: db) { bind in
                    HotStatements.Bindings.first(bind.text(1, txid.rawValue), bind.text(2, state.rawValue), bind.int(3, heuristic ? 1 : 0), bind.int(4, now))
                }
                try HotStatements.execute(.participantUnlock, in: db) { bind in bind.text(1, txid.rawValue) }
            }
        }
    }

    /// The statements that write the protocol's rows, run for every branch, so each must stay
    /// cheap: the schema avoids what would make SQLite do more than touch the row and its indexes
    /// (see `schemas/participant.v2.sql`), and a test checks their plans.
    enum RecordSQL {
        /// On an existing row only `state` is set, so that the trigger participant_end_is_final
        /// refuses a prepare over a tombstone, and a repeated prepare keeps the first payload.
        static let prepared = """
            INSERT INTO participant_transaction (txid, state, coordinator, payload, prepared_at_ms)
            VALUES (?, 'prepared', ?, ?, ?)
            ON CONFLICT (txid) DO UPDATE SET state = 'prepared'
            """

        /// Committed or aborted; the trigger refuses the other end over an ended row.
        static let ended = """
            INSERT INTO participant_transaction (txid, state, heuristic, ended_at_ms) VALUES (?1, ?2, ?3, ?4)
            ON CONFLICT (txid) DO UPDATE SET
                state = excluded.state,
                heuristic = CASE WHEN state = 'prepared' THEN excluded.heuristic ELSE heuristic END,
                ended_at_ms = coalesce(ended_at_ms, excluded.ended_at_ms)
            """

        static let unlock = "DELETE FROM participant_lock WHERE txid = ?"

        static let lock = "INSERT INTO participant_lock (key, txid, acquired_at_ms) VALUES (?, ?, ?) ON CONFLICT (key) DO NOTHING"

        static let all = [prepared, ended, unlock, lock]
    }

    /// What is recorded about `txid`, read in the caller's write (to answer a repeated message, or
    /// to find a tombstone before staging anything).
    public func transaction(_ txid: TxID, in db: Database) throws(StorageError) -> ParticipantTransaction? {
        try catching("reading \(txid) from") {
            // Read for every stage.
            try HotStatements.run(.participantTransaction, in: db, bind: { $0.text(1, txid.rawValue) }, read: { try Self.transaction($0) })
        }
    }

    /// The payload staged for `txid` if it is prepared here (in doubt, not yet ended), read in the
    /// caller's write; nil otherwise. What a commit or an abort applies or discards: one column
    /// of one row, without building the whole ``ParticipantTransaction``.
    public func preparedPayload(of txid: TxID, in db: Database) throws(StorageError) -> Payload? {
        try catching("reading the payload of \(txid) from") {
            try HotStatements.run(.participantPreparedPayload, in: db, bind: { $0.text(1, txid.rawValue) }) { columns in
                Payload(columns.blob(0) ?? [])
            }
        }
    }

    /// Takes the lock on `key` for `txid`, in the caller's write, without waiting.
    ///
    /// The lock is held until ``apply(_:in:)`` records the transaction committed or aborted, across
    /// restarts. Take locks only for a transaction that has not ended here (check
    /// ``transaction(_:in:)`` first): nothing would release them.
    ///
    /// - Throws: ``StorageError/Code/invalidArgument`` for an empty key or one longer than
    ///   ``lockKeyLengthMax`` bytes.
    public func lock(_ key: String, for txid: TxID, in db: Database) throws(StorageError) -> LockResult {
        guard (1...Self.lockKeyLengthMax).contains(key.utf8.count) else {
            throw StorageError(.invalidArgument, "a lock key must have 1 to \(Self.lockKeyLengthMax) UTF-8 bytes; this one has \(key.utf8.count)")
        }
        let now = Stored.milliseconds(self.now())
        let holder = try catching("locking \(key.debugDescription) in") { () -> String? in
            try HotStatements.execute(.participantLock, in: db) { bind in
                HotStatements.Bindings.first(bind.text(1, key), bind.text(2, txid.rawValue), bind.int(3, now))
            }
            if db.changesCount == 1 { return nil }
            return try HotStatements.run(.participantLockHolder, in: db, bind: { $0.text(1, key) }) { $0.text(0) } ?? nil
        }
        guard let holder else { return .acquired }
        return holder == txid.rawValue ? .alreadyHeld : .conflict(holder: try Stored.txid(holder))
    }

    /// The keys `txid` holds, read in the caller's write.
    public func locks(of txid: TxID, in db: Database) throws(StorageError) -> [String] {
        try catching("reading the locks of \(txid) from") {
            try String.fetchAll(db.cachedStatement(sql: "SELECT key FROM participant_lock WHERE txid = ? ORDER BY key"), arguments: [txid.rawValue])
        }
    }

    // MARK: Reads

    /// What is recorded about `txid`, or nil when nothing is (never seen, or forgotten).
    public func transaction(_ txid: TxID) async throws(StorageError) -> ParticipantTransaction? {
        try await reading { db in try self.transaction(txid, in: db) }
    }

    /// The keys `txid` holds.
    public func locks(of txid: TxID) async throws(StorageError) -> [String] {
        try await reading { db in try self.locks(of: txid, in: db) }
    }

    /// Every lock held, by transaction then key.
    public func allLocks() async throws(StorageError) -> [HeldLock] {
        try await reading { db in
            try Row.fetchAll(db, sql: "SELECT key, txid, acquired_at_ms FROM participant_lock ORDER BY txid, key").map { row in
                HeldLock(
                    key: try row.decode(String.self, atIndex: 0),
                    txid: try Stored.txid(row.decode(String.self, atIndex: 1)),
                    acquiredAt: Stored.date(try row.decode(Int64.self, atIndex: 2)))
            }
        }
    }

    /// The records the participant replays at restart: the `prepared` records of the transactions
    /// in doubt, in the order they were first recorded here. Their locks (see ``allLocks()``) are
    /// still held.
    ///
    /// Ended transactions are not read back: the participant answers their late duplicates from
    /// the store (``records(of:)``, ``transaction(_:in:)``), so a restart's cost and memory do not
    /// grow with the retention.
    public func recover() async throws(StorageError) -> [ParticipantRecord] {
        try await reading { db in try Self.inDoubtRecords(db) }
    }

    /// ``recover()`` on the calling thread (a service loop's; see ``StoreWriter/readOnWriter(_:)``).
    public func recoverNow() throws(StorageError) -> [ParticipantRecord] {
        do {
            return try writer.readOnWriter { db in try Self.inDoubtRecords(db) }
        } catch {
            throw StorageError.wrapping(error, doing: "reading", path: writer.path)
        }
    }

    private static func inDoubtRecords(_ db: Database) throws -> [ParticipantRecord] {
        var records: [ParticipantRecord] = []
        let rows = try Row.fetchCursor(db, sql: "\(Self.transactionSelect) WHERE state = 'prepared' ORDER BY seq")
        while let row = try rows.next() {
            records.append(contentsOf: try Self.transaction(row).records)
        }
        return records
    }

    /// The records of each of `txids` that the store holds (see
    /// ``ParticipantTransaction/records``), read in one snapshot; ids it holds nothing of are
    /// left out.
    public func records(of txids: [TxID]) async throws(StorageError) -> [TxID: [ParticipantRecord]] {
        try await reading { db in
            var found: [TxID: [ParticipantRecord]] = [:]
            for txid in txids {
                found[txid] = try self.transaction(txid, in: db)?.records
            }
            return found
        }
    }

    /// The in-doubt transactions (prepared, not yet told the outcome), oldest first, for operators.
    public func prepared() async throws(StorageError) -> [ParticipantTransaction] {
        try await reading { db in
            try Row.fetchAll(db, sql: "\(Self.transactionSelect) WHERE state = 'prepared' ORDER BY seq").map { try Self.transaction($0) }
        }
    }

    /// How many transactions are recorded in each state, and how many locks are held: one
    /// consistent snapshot, for metrics. It counts over the `(state, seq)` index, so its cost grows
    /// with the records retained (about 0.05 s per million ended transactions); it runs on a
    /// reader, concurrently with the writer.
    ///
    /// - Parameter countingEnded: false counts only the transactions in doubt (a few index entries)
    ///   and the locks, and leaves ``ParticipantCensus/committed`` and ``ParticipantCensus/aborted``
    ///   at zero.
    public func census(countingEnded: Bool = true) async throws(StorageError) -> ParticipantCensus {
        try await reading { db in
            var census = ParticipantCensus()
            // GROUP BY in both: without it, an aggregate over no rows is one row with a NULL state.
            let rows = try Row.fetchAll(db, sql: countingEnded
                ? "SELECT state, COUNT(*) FROM participant_transaction GROUP BY state"
                : "SELECT state, COUNT(*) FROM participant_transaction WHERE state = 'prepared' GROUP BY state")
            for row in rows {
                let state = try row.decode(String.self, atIndex: 0)
                let count = try row.decode(Int.self, atIndex: 1)
                switch ParticipantTransactionState(rawValue: state) {
                case .prepared: census.prepared = count
                case .committed: census.committed = count
                case .aborted: census.aborted = count
                case nil: break
                }
            }
            census.locks = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM participant_lock") ?? 0
            census.oldestPreparedAt = try Int64.fetchOne(
                db, sql: "SELECT min(prepared_at_ms) FROM participant_transaction WHERE state = 'prepared'").map(Stored.date)
            return census
        }
    }

    /// Up to `limit` transactions that ended (committed or aborted) before `cutoff`, oldest end
    /// first: the candidates for ``forget(_:)`` under a retention policy.
    ///
    /// Keep tombstones at least as long as a delayed `prepare` could still arrive.
    public func endedTransactions(before cutoff: Date, limit: Int = 1000) async throws(StorageError) -> [TxID] {
        guard (1...Self.endedLimitMax).contains(limit) else {
            throw StorageError(.invalidArgument, "limit is \(limit); ask for 1 to \(Self.endedLimitMax) transactions at a time")
        }
        return try await reading { db in
            try String.fetchAll(db, sql: """
                SELECT txid FROM participant_transaction
                WHERE ended_at_ms IS NOT NULL AND ended_at_ms < ?
                ORDER BY ended_at_ms LIMIT ?
                """, arguments: [Stored.milliseconds(cutoff), limit]).map { text throws(StorageError) in try Stored.txid(text) }
        }
    }

    // MARK: Housekeeping

    /// Deletes what is recorded about `txids` (a lazy write); returns how many transactions were
    /// deleted.
    ///
    /// - Throws: ``StorageError/Code/conflict``, deleting nothing, when one of them is prepared: an
    ///   in-doubt transaction must wait for its decision.
    @discardableResult
    public func forget(_ txids: [TxID]) async throws(StorageError) -> Int {
        guard !txids.isEmpty else { return 0 }
        do {
            return try await writer.write(.lazy) { db in
                var deleted = 0
                for txid in txids {
                    let state = try String.fetchOne(db.cachedStatement(sql: "SELECT state FROM participant_transaction WHERE txid = ?"),
                        arguments: [txid.rawValue])
                    if state == ParticipantTransactionState.prepared.rawValue {
                        throw StorageError(.conflict, "\(txid) is prepared (in doubt) and cannot be forgotten until its decision is recorded; nothing was forgotten")
                    }
                    try db.cachedStatement(sql: "DELETE FROM participant_transaction WHERE txid = ?").execute(arguments: [txid.rawValue])
                    deleted += db.changesCount
                    try db.cachedStatement(sql: "DELETE FROM participant_lock WHERE txid = ?").execute(arguments: [txid.rawValue])
                }
                return deleted
            }
        } catch {
            throw StorageError.wrapping(error, doing: "forgetting transactions in", path: writer.path)
        }
    }

    /// Deletes up to `limit` of the transactions that ended longer ago than `retention` (by the
    /// store's clock), oldest end first, in one lazy write; returns how many it deleted. Ask again
    /// while it returns `limit`. A transaction in doubt has not ended, so it is never deleted.
    ///
    /// - Throws: ``StorageError/Code/invalidArgument`` when `limit` is not in
    ///   1...``endedLimitMax``.
    @discardableResult
    public func forgetEnded(olderThan retention: Duration, limit: Int = 1000) async throws(StorageError) -> Int {
        let statement = try forgetEndedStatement(olderThan: retention, limit: limit)
        do {
            return try await writer.write(.lazy) { db in try statement(db) }
        } catch {
            throw StorageError.wrapping(error, doing: "forgetting ended transactions in", path: writer.path)
        }
    }

    /// ``forgetEnded(olderThan:limit:)`` on the calling thread, in a lazy transaction of its own
    /// (a service loop's; see ``StoreWriter/writeNow(_:_:)``).
    @discardableResult
    public func forgetEndedNow(olderThan retention: Duration, limit: Int = 1000) throws(StorageError) -> Int {
        let statement = try forgetEndedStatement(olderThan: retention, limit: limit)
        do {
            return try writer.writeNow(.lazy) { db in try statement(db) }
        } catch {
            throw StorageError.wrapping(error, doing: "forgetting ended transactions in", path: writer.path)
        }
    }

    private func forgetEndedStatement(olderThan retention: Duration, limit: Int) throws(StorageError) -> @Sendable (Database) throws -> Int {
        guard (1...Self.endedLimitMax).contains(limit) else {
            throw StorageError(.invalidArgument, "limit is \(limit); ask for 1 to \(Self.endedLimitMax) transactions at a time")
        }
        let cutoff = Stored.milliseconds(now().addingTimeInterval(-(retention / .seconds(1))))
        return { db in
            // Ended transactions hold no locks (their end released them), so only their rows go.
            try db.cachedStatement(sql: """
                DELETE FROM participant_transaction WHERE txid IN (
                    SELECT txid FROM participant_transaction INDEXED BY participant_transaction_by_end
                    WHERE ended_at_ms IS NOT NULL AND ended_at_ms < ?
                    ORDER BY ended_at_ms LIMIT ?)
                """).execute(arguments: [cutoff, limit])
            return db.changesCount
        }
    }

    /// Deletes what is recorded about `txid`. See the form that takes an array.
    @discardableResult
    public func forget(_ txid: TxID) async throws(StorageError) -> Bool {
        try await forget([txid]) == 1
    }

    /// The schema version of the participant's tables in this database.
    public func schemaVersion() async throws(StorageError) -> Int {
        try await reading { db in try Migrations.schemaVersion(of: "participant", in: db) ?? 0 }
    }

    /// Waits for queued writes, then closes the database. See ``StoreWriter/close()``.
    public func close() async throws(StorageError) {
        try await writer.close()
    }

    // MARK: Rows

    static let transactionSelect = """
        SELECT txid, state, coordinator, payload, heuristic, prepared_at_ms, ended_at_ms FROM participant_transaction
        """

    /// The transaction in a row of ``transactionSelect``'s columns: a GRDB `Row` where the store
    /// lists, ``HotStatements/Columns`` where it looks one up for every stage.
    private static func transaction(_ row: some ColumnReading) throws -> ParticipantTransaction {
        ParticipantTransaction(
            txid: try Stored.txid(row.text(0) ?? ""),
            state: try Stored.value(ParticipantTransactionState.self, row.text(1) ?? "", column: "state"),
            coordinator: try row.text(2).map(CoordinatorID.init),
            payload: try row.blob(3).map(Payload.init),
            isHeuristic: try row.int(4) == 1,
            preparedAt: Stored.date(try row.int(5)),
            endedAt: Stored.date(try row.int(6)))
    }

    private func catching<T>(_ doing: String, _ body: () throws -> T) throws(StorageError) -> T {
        do {
            return try body()
        } catch {
            throw StorageError.wrapping(error, doing: doing, path: writer.path)
        }
    }

    private func reading<T: Sendable>(_ work: @escaping @Sendable (Database) throws -> T) async throws(StorageError) -> T {
        do {
            return try await writer.read(work)
        } catch {
            throw StorageError.wrapping(error, doing: "reading", path: writer.path)
        }
    }
}

/// How many transactions a participant has recorded in each state, and how many locks it holds.
/// Ended transactions count until retention forgets them.
public struct ParticipantCensus: Hashable, Sendable {
    /// In doubt: prepared, waiting for the decision.
    public var prepared = 0
    /// Committed (within retention).
    public var committed = 0
    /// Aborted, tombstones included (within retention).
    public var aborted = 0
    /// Key locks held (by prepared transactions).
    public var locks = 0
    /// When the oldest in-doubt transaction was prepared; `nil` when none is in doubt.
    public var oldestPreparedAt: Date?

    /// Makes an empty census.
    public init() {}
}

/// A row's columns by index, from either reader the store uses.
private protocol ColumnReading {
    func text(_ column: Int32) throws -> String?
    func blob(_ column: Int32) throws -> [UInt8]?
    func int(_ column: Int32) throws -> Int64?
}

extension HotStatements.Columns: ColumnReading {}

extension Row: ColumnReading {
    fileprivate func text(_ column: Int32) throws -> String? { try decode(String?.self, atIndex: Int(column)) }
    fileprivate func blob(_ column: Int32) throws -> [UInt8]? { try decode(Data?.self, atIndex: Int(column)).map(Array.init) }
    fileprivate func int(_ column: Int32) throws -> Int64? { try decode(Int64?.self, atIndex: Int(column)) }
}
