import GRDB
import GRDBSQLite
import Synchronization

/// A statement that runs several times for every transaction, run through ``HotStatements``; its
/// raw value is its slot in a connection's table of prepared statements.
enum HotSQL: Int, CaseIterable, Sendable {
    case savepoint, releaseSavepoint, rollbackToSavepoint
    case participantPrepared, participantEnded, participantUnlock, participantLock, participantLockHolder
    case participantTransaction, participantPreparedPayload
    case coordinatorBegun, coordinatorDecided, coordinatorEnded

    var sql: String {
        switch self {
        case .savepoint: "SAVEPOINT arbiter"
        case .releaseSavepoint: "RELEASE SAVEPOINT arbiter"
        case .rollbackToSavepoint: "ROLLBACK TO SAVEPOINT arbiter"
        case .participantPrepared: ParticipantStore.RecordSQL.prepared
        case .participantEnded: ParticipantStore.RecordSQL.ended
        case .participantUnlock: ParticipantStore.RecordSQL.unlock
        case .participantLock: ParticipantStore.RecordSQL.lock
        case .participantLockHolder: "SELECT txid FROM participant_lock WHERE key = ?"
        case .participantTransaction: "\(ParticipantStore.transactionSelect) WHERE txid = ?"
        case .participantPreparedPayload: "SELECT payload FROM participant_transaction WHERE txid = ? AND state = 'prepared'"
        case .coordinatorBegun: DecisionLog.RecordSQL.begun
        case .coordinatorDecided: DecisionLog.RecordSQL.decided
        case .coordinatorEnded: DecisionLog.RecordSQL.ended
        }
    }
}

/// Runs the statements executed for every transaction — a participant's protocol rows and the
/// savepoints around each op, the coordinator's `begun`, `decided` and `ended` records — through
/// SQLite's C API, each prepared once per connection.
///
/// Why: GRDB does work around every statement it runs — finding it in its cache by its SQL text,
/// checking the calling queue, building and validating an arguments array, telling its
/// transaction observers before and after, building a row to decode. A participant runs about ten
/// such statements per branch, and under load GRDB's own work around them cost a participant more
/// than a fair share of what SQLite itself did for them.
///
/// Only for statements that neither begin nor end a transaction, run inside the writer's batches:
/// GRDB does not see them, so they must not change what it tracks (savepoints are fine: GRDB keeps
/// its savepoint stack only for its transaction observers, and the writer has none). Errors are
/// reported as GRDB's `DatabaseError`, so that callers classify them as before.
///
/// On a connection that ``keep(on:)`` named (the writer's, by ``GroupCommitWriter``) the statements
/// stay prepared until ``finalize(on:)``, which ``GroupCommitWriter/close()`` calls before closing
/// the connection (SQLite does not close a connection with statements left). While
/// they are prepared SQLite cannot free the connection, so its address is never reused by another
/// one: the table's keys stay unambiguous. On any other connection (a reader of the pool, a
/// migration's queue) a statement is prepared and finalized on each run.
enum HotStatements {
    private struct Connection: Hashable, @unchecked Sendable {
        let pointer: OpaquePointer
    }

    private struct Statement: @unchecked Sendable {
        let pointer: OpaquePointer
    }

    private static let table = Mutex<[Connection: [Statement?]]>([:])

    /// Runs `sql` on `db`: `bind` binds its parameters, then the statement steps once and `read`
    /// reads the row it produced, if any. Returns nil when it produced none.
    static func run<T>(
        _ sql: HotSQL, in db: Database,
        bind: (Bindings) -> Int32,
        read: (Columns) throws -> T
    ) throws -> T? {
        guard let connection = db.sqliteConnection else {
            throw DatabaseError(resultCode: .SQLITE_MISUSE, message: "the database connection is closed")
        }
        let kept = try prepared(sql, on: connection)
        let isKept = kept != nil
        let statement = try kept ?? prepare(sql, on: connection)
        defer {
            if isKept {
                sqlite3_reset(statement)
                sqlite3_clear_bindings(statement)
            } else {
                sqlite3_finalize(statement)
            }
        }
        return try step(statement, bind: bind, read: read) { _ in
            DatabaseError(resultCode: ResultCode(rawValue: sqlite3_extended_errcode(connection)),
                message: String(cString: sqlite3_errmsg(connection)), sql: sql.sql)
        }
    }

    /// Binds `statement`'s parameters, steps it once and reads the row it produced, if any; returns
    /// nil when it produced none, and throws `failure` of SQLite's result code when a bind or the
    /// step failed. The caller resets the statement. Shared with ``PointReader``.
    static func step<T, Failure: Error>(
        _ statement: OpaquePointer,
        bind: (Bindings) -> Int32,
        read: (Columns) throws(Failure) -> T,
        failure: (Int32) -> Failure
    ) throws(Failure) -> T? {
        var code = bind(Bindings(statement: statement))
        if code == SQLITE_OK { code = sqlite3_step(statement) }
        switch code {
        case SQLITE_ROW:
            return try read(Columns(statement: statement))
        case SQLITE_DONE:
            return nil
        default:
            throw failure(code)
        }
    }

    /// Runs `sql` on `db` for its effect, binding its parameters with `bind`.
    static func execute(_ sql: HotSQL, in db: Database, bind: (Bindings) -> Int32 = { _ in SQLITE_OK }) throws {
        _ = try run(sql, in: db, bind: bind) { _ in () }
    }

    /// How many statements `db`'s connection keeps prepared; nil when it keeps none (for tests).
    static func keptCount(on db: Database) -> Int? {
        guard let connection = db.sqliteConnection else { return nil }
        return table.withLock { $0[Connection(pointer: connection)]?.count { $0 != nil } }
    }

    /// Finalizes the statements prepared on `db`'s connection.
    static func finalize(on db: Database) {
        guard let connection = db.sqliteConnection else { return }
        let statements = table.withLock { $0.removeValue(forKey: Connection(pointer: connection)) } ?? []
        for statement in statements { if let statement { sqlite3_finalize(statement.pointer) } }
    }

    /// Keeps the statements run on `db`'s connection prepared until ``finalize(on:)``. Without it,
    /// each run prepares and finalizes its statement.
    static func keep(on db: Database) {
        guard let connection = db.sqliteConnection else { return }
        table.withLock { table in
            if table[Connection(pointer: connection)] == nil {
                table[Connection(pointer: connection)] = Array(repeating: nil, count: HotSQL.allCases.count)
            }
        }
    }

    /// The kept statement for `sql` on `connection`, prepared now if it is the first run; nil when
    /// the connection keeps none.
    private static func prepared(_ sql: HotSQL, on connection: OpaquePointer) throws -> OpaquePointer? {
        let key = Connection(pointer: connection)
        let kept = table.withLock { table -> Statement?? in table[key].map { $0[sql.rawValue] } }
        guard let kept else { return nil }
        if let kept { return kept.pointer }
        let statement = try prepare(sql, on: connection, flags: UInt32(SQLITE_PREPARE_PERSISTENT))
        table.withLock { table in table[key]?[sql.rawValue] = Statement(pointer: statement) }
        return statement
    }

    private static func prepare(_ sql: HotSQL, on connection: OpaquePointer, flags: UInt32 = 0) throws -> OpaquePointer {
        var statement: OpaquePointer?
        let code = sqlite3_prepare_v3(connection, sql.sql, -1, flags, &statement, nil)
        guard code == SQLITE_OK, let statement else {
            throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(connection)), sql: sql.sql)
        }
        return statement
    }

    /// Binds a statement's parameters (numbered from 1); each returns SQLite's result code.
    struct Bindings {
        let statement: OpaquePointer

        /// Binds a copy of `value`'s UTF-8 bytes.
        func text(_ index: Int32, _ value: String) -> Int32 {
            var value = value
            return value.withUTF8 { bytes in
                bytes.withMemoryRebound(to: CChar.self) { chars in
                    // An empty text, not NULL, for an empty string.
                    guard let start = chars.baseAddress else { return sqlite3_bind_text(statement, index, "", 0, hotTransient) }
                    return sqlite3_bind_text(statement, index, start, Int32(chars.count), hotTransient)
                }
            }
        }

        /// The first of the result codes of binding several parameters that is not `SQLITE_OK`.
        static func first(_ codes: Int32...) -> Int32 {
            codes.first { $0 != SQLITE_OK } ?? SQLITE_OK
        }

        func int(_ index: Int32, _ value: Int64) -> Int32 {
            sqlite3_bind_int64(statement, index, value)
        }

        /// Binds a copy of `bytes`.
        func blob(_ index: Int32, _ bytes: [UInt8]) -> Int32 {
            bytes.withUnsafeBytes { buffer in
                // A zero-length blob, not NULL, for an empty payload.
                buffer.baseAddress.map { sqlite3_bind_blob(statement, index, $0, Int32(buffer.count), hotTransient) }
                    ?? sqlite3_bind_zeroblob(statement, index, 0)
            }
        }
    }

    /// The current row's columns (numbered from 0). Valid only inside the `read` closure.
    struct Columns {
        let statement: OpaquePointer

        func isNull(_ column: Int32) -> Bool {
            sqlite3_column_type(statement, column) == SQLITE_NULL
        }

        func text(_ column: Int32) -> String? {
            guard let bytes = sqlite3_column_text(statement, column) else { return nil }
            let count = Int(sqlite3_column_bytes(statement, column))
            return String(decoding: UnsafeBufferPointer(start: bytes, count: count), as: UTF8.self)
        }

        func blob(_ column: Int32) -> [UInt8]? {
            if isNull(column) { return nil }
            let count = Int(sqlite3_column_bytes(statement, column))
            guard count > 0, let bytes = sqlite3_column_blob(statement, column) else { return [] }
            return Array(UnsafeRawBufferPointer(start: bytes, count: count))
        }

        func int(_ column: Int32) -> Int64? {
            isNull(column) ? nil : sqlite3_column_int64(statement, column)
        }
    }
}

/// SQLite's `SQLITE_TRANSIENT`: it copies the bound bytes before the bind returns.
private let hotTransient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
