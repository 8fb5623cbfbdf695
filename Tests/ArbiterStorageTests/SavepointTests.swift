import ArbiterStorage
import GRDB
import Testing

@Suite("Prepared savepoints")
struct SavepointTests {
    private struct Refused: Error {}

    private func rows(_ db: Database) throws -> [Int] {
        try Int.fetchAll(db, sql: "SELECT v FROM t ORDER BY v")
    }

    @Test("commit keeps, rollback and a throw undo only their own savepoint's changes, nested too")
    func nestedSavepoints() throws {
        let queue = try DatabaseQueue()
        try queue.write { db in
            try db.execute(sql: "CREATE TABLE t (v INTEGER)")
            try db.inPreparedSavepoint {
                try db.execute(sql: "INSERT INTO t VALUES (1)")
                try db.inPreparedSavepoint {
                    try db.execute(sql: "INSERT INTO t VALUES (2)")
                    return .rollback
                }
                #expect(throws: Refused.self) {
                    try db.inPreparedSavepoint {
                        try db.execute(sql: "INSERT INTO t VALUES (3)")
                        throw Refused()
                    }
                }
                try db.inPreparedSavepoint {
                    try db.execute(sql: "INSERT INTO t VALUES (4)")
                    return .commit
                }
                return .commit
            }
            #expect(try rows(db) == [1, 4])
            try db.inPreparedSavepoint {
                try db.execute(sql: "INSERT INTO t VALUES (5)")
                return .rollback
            }
            #expect(db.isInsideTransaction)
        }
        #expect(try queue.read { try rows($0) } == [1, 4])
    }
}
