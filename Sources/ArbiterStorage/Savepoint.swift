public import GRDB

extension Database {
    /// Runs `body` in a savepoint: GRDB's `inSavepoint`, with its statements run through SQLite's C
    /// API on the connection's cached statements (``HotStatements``), which counts on a path that
    /// runs for every transaction (a participant stages each prepare in nested savepoints inside its
    /// round's transaction).
    ///
    /// Call it inside a transaction. If `body` returns `.rollback` its changes are undone and the
    /// savepoint released; if it throws they are undone and the error rethrown. Savepoints nest.
    public func inPreparedSavepoint(_ body: () throws -> TransactionCompletion) throws {
        try HotStatements.execute(.savepoint, in: self)
        let completion: TransactionCompletion
        do {
            completion = try body()
        } catch {
            // These fail, harmlessly, when SQLite has already rolled back the whole transaction;
            // callers that care check `isInsideTransaction`.
            try? HotStatements.execute(.rollbackToSavepoint, in: self)
            try? HotStatements.execute(.releaseSavepoint, in: self)
            throw error
        }
        if completion == .rollback {
            try HotStatements.execute(.rollbackToSavepoint, in: self)
        }
        try HotStatements.execute(.releaseSavepoint, in: self)
    }
}
