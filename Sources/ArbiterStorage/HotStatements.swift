import GRDB
import GRDBSQLite

/// A statement that runs several times for every transaction, run through ``HotStatements``.
enum HotSQL: Int, CaseIterable, Sendable {
    case savepoint, releaseSavepoint, rollbackToSavepoint
    case participantPrepared, participantEnded, participantUnlock, participantLock, participantLockHolder
    case participantTransaction, participantPreparedPayload
    case coordinatorBegun, coordinatorDecided, coordinatorEnded, coordinatorLookup

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
        case .coordinatorLookup: "SELECT state, branches, outcome, reason FROM coordinator_transaction WHERE txid = ?"
        }
    }
}

/// Runs the statements executed for every transaction — a participant's protocol rows and the
/// savepoints around each piece of work, the coordinator's `begun`, `decided` and `ended` records —
/// through SQLite's C API, on the statement that the connection's own GRDB statement cache holds.
///
/// Why: GRDB does work around every statement it runs — checking the calling queue, building and
/// validating an arguments array, telling its transaction observers before and after, building a
/// row to decode. A participant runs about ten such statements per branch, and under load GRDB's
/// own work around them cost a participant more than a fair share of what SQLite itself did for
/// them. What is left of GRDB here is its cache: the connection owns its prepared statements
/// (`Database.cachedStatement(sql:)`), so there is no table of statements beside it, and closing
/// the connection finalizes them.
///
/// Only for statements that neither begin nor end a transaction: GRDB does not see them run, so
/// they must not change what it tracks (savepoints are fine: GRDB keeps its savepoint stack only
/// for its transaction observers, and the stores have none). Errors are reported as GRDB's
/// `DatabaseError`, so that callers classify them as before.
enum HotStatements {
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
        let statement = try db.cachedStatement(sql: sql.sql).sqliteStatement
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        return try step(statement, bind: bind, read: read) { _ in
            DatabaseError(resultCode: ResultCode(rawValue: sqlite3_extended_errcode(connection)),
                message: String(cString: sqlite3_errmsg(connection)), sql: sql.sql)
        }
    }

    /// Binds `statement`'s parameters, steps it once and reads the row it produced, if any; returns
    /// nil when it produced none, and throws `failure` of SQLite's result code when a bind or the
    /// step failed. The caller resets the statement.
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
