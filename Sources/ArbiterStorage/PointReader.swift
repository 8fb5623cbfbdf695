import GRDB
import GRDBSQLite
import Synchronization

/// One read-only SQLite connection holding one prepared statement, for a point query that runs on
/// a hot path: the coordinator's idempotency lookup of every new transaction id.
///
/// It runs on the calling thread, through SQLite's C API. GRDB's reader pool costs more than the
/// query here: checking a connection out and back, a dispatch `sync` and generic metadata cost
/// more than SQLite's own work for it. Each step runs outside any transaction, so it sees every write committed before it.
/// Callers share the connection under a lock; the query takes a few microseconds.
final class PointReader: Sendable {
    let path: String
    private let handle: Mutex<Handle?>

    private struct Handle {
        var db: OpaquePointer
        var statement: OpaquePointer
    }

    /// Opens `path` read-only and prepares `sql`, which takes one text parameter.
    init(path: String, sql: String) throws(StorageError) {
        self.path = path
        var db: OpaquePointer?
        var code = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nil)
        guard code == SQLITE_OK, let db else {
            let error = Self.error(code, db, doing: "opening", path: path)
            sqlite3_close_v2(db)
            throw error
        }
        // A reader waits only while another connection recovers the WAL; wait as the writer does.
        sqlite3_busy_timeout(db, 5_000)
        var statement: OpaquePointer?
        code = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard code == SQLITE_OK, let statement else {
            let error = Self.error(code, db, doing: "preparing a lookup in", path: path)
            sqlite3_close_v2(db)
            throw error
        }
        handle = Mutex(Handle(db: db, statement: statement))
    }

    deinit {
        close()
    }

    /// Runs the statement with `parameter` bound and returns `read` of its first row, or nil when
    /// it has none.
    func first<T: Sendable>(
        binding parameter: String, _ read: (HotStatements.Columns) throws(StorageError) -> T
    ) throws(StorageError) -> T? {
        try handle.withLock { (handle: inout Handle?) throws(StorageError) -> T? in
            guard let handle else { throw StorageError(.closed, "\(path) is closed; open it again") }
            let statement = handle.statement
            defer {
                sqlite3_reset(statement)
                sqlite3_clear_bindings(statement)
            }
            return try HotStatements.step(statement, bind: { $0.text(1, parameter) }, read: read) { code in
                Self.error(code, handle.db, doing: "reading", path: path)
            }
        }
    }

    /// Closes the connection; later lookups throw ``StorageError/Code/closed``. Closing twice is
    /// harmless.
    func close() {
        handle.withLock { handle in
            guard let open = handle else { return }
            sqlite3_finalize(open.statement)
            sqlite3_close_v2(open.db)
            handle = nil
        }
    }

    /// The error SQLite reported, classified as every other storage error is.
    private static func error(_ code: Int32, _ db: OpaquePointer?, doing: String, path: String) -> StorageError {
        let message = db.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(code))
        return StorageError.wrapping(DatabaseError(resultCode: ResultCode(rawValue: code), message: message), doing: doing, path: path)
    }
}
