import ArbiterStorage
import ArbiterTesting
import Foundation
import GRDB
import Testing

/// A schema for exercising the writer alone.
private var itemMigrator: DatabaseMigrator {
    var migrator = DatabaseMigrator()
    migrator.registerMigration("test.items") { db in
        try db.execute(sql: "CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
    }
    return migrator
}

private func openWriter(_ directory: String) throws -> StoreWriter {
    try StoreWriter(path: "\(directory)/items.sqlite", migrator: itemMigrator, options: testOptions())
}

private func insert(_ name: String) -> @Sendable (Database) throws -> Void {
    { db in try db.execute(sql: "INSERT INTO item (name) VALUES (?)", arguments: [name]) }
}

private func names(_ writer: StoreWriter) async throws -> [String] {
    try await writer.read { db in try String.fetchAll(db, sql: "SELECT name FROM item ORDER BY id") }
}

private struct RefusedByTest: Error, Equatable {}

/// The writer of one database: a loop's round as one transaction on its own thread, other writes
/// one transaction each on the writer's queue. (How rounds batch is the loops' business, tested
/// round by round in `CoordinatorLoopTests` and `ParticipantLoopTests`.)
@Suite("StoreWriter")
struct StoreWriterTests {
    @Test("the database is in WAL mode; forced writes run with synchronous FULL, lazy ones with NORMAL")
    func synchronousLevels() async throws {
        try await withTemporaryDirectory { directory in
            let writer = try openWriter(directory)
            let journalMode = try await writer.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
            #expect(journalMode == "wal")

            // 2 = FULL, 1 = NORMAL (https://www.sqlite.org/pragma.html#pragma_synchronous).
            let sync: @Sendable (Database) throws -> Int? = { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") }
            #expect(try await writer.write(.forced, sync) == 2)
            #expect(try await writer.write(.lazy, sync) == 1)
            #expect(try writer.writeNow(.lazy, pieces: 3, sync) == 1)
            #expect(try writer.writeNow(.forced, pieces: 5, sync) == 2)

            let statistics = writer.statistics
            #expect(statistics.forcedTransactionCount == 2)
            #expect(statistics.lazyTransactionCount == 2)
            #expect(statistics.pieceCount == 10)
            #expect(statistics.transactionSizeLargest == 5)
            #expect(statistics.transactionSizeHistogram[0] == 2 && statistics.transactionSizeHistogram[1] == 1
                && statistics.transactionSizeHistogram[2] == 1)
            try await writer.close()
        }
    }

    @Test("a round is one transaction: a piece that throws rolls the whole round back, and its error reaches the caller")
    func aRoundIsAllOrNothing() async throws {
        try await withTemporaryDirectory { directory in
            let writer = try openWriter(directory)
            try writer.writeNow(.forced) { db in try insert("taken")(db) }
            #expect(throws: RefusedByTest.self) {
                try writer.writeNow(.forced, pieces: 2) { db in
                    try insert("a")(db)
                    throw RefusedByTest()
                }
            }
            let duplicate = #expect(throws: StorageError.self) {
                try writer.writeNow(.forced, pieces: 2) { db in
                    try insert("b")(db)
                    try insert("taken")(db)  // UNIQUE violation: a database error
                }
            }
            #expect(duplicate?.code == .conflict)
            #expect(try await names(writer) == ["taken"], "nothing of a failed round applied")
            #expect(writer.statistics.failedTransactionCount == 2)
            // The connection is usable again at once.
            try writer.writeNow(.lazy) { db in try insert("c")(db) }
            #expect(try await names(writer) == ["taken", "c"])
            try await writer.close()
        }
    }

    @Test("writes of their own and a loop's rounds take turns on the one connection; each returns once committed")
    func writesAndRoundsTakeTurns() async throws {
        try await withTemporaryDirectory { directory in
            let writer = try openWriter(directory)
            // A loop on a thread of its own writes rounds while tasks write on the writer's queue.
            let loop = Thread {
                for round in 0..<50 { try? writer.writeNow(.forced, pieces: 2) { db in try insert("round-\(round)")(db) } }
            }
            loop.start()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<50 {
                    group.addTask { try await writer.write(.lazy, insert("own-\(index)")) }
                }
                try await group.waitForAll()
            }
            try await eventually("the loop's rounds are written") { writer.statistics.forcedTransactionCount == 50 }
            let written = try await names(writer)
            #expect(written.count == 100)
            #expect(written.filter { $0.hasPrefix("round-") } == (0..<50).map { "round-\($0)" }, "rounds in order")
            #expect(writer.statistics.transactionCount == 100)
            try await writer.close()
        }
    }

    @Test("a forced write that changes nothing still makes the lazy writes before it durable")
    func anEmptyForcedWriteSyncs() async throws {
        try await withTemporaryDirectory { directory in
            let writer = try openWriter(directory)
            try writer.writeNow(.lazy) { db in try insert("lazy")(db) }
            try writer.writeNow(.forced) { _ in }
            #expect(writer.statistics.forcedTransactionCount == 1)
            try await writer.close()
            let reopened = try openWriter(directory)
            #expect(try await names(reopened) == ["lazy"])
            try await reopened.close()
        }
    }

    @Test("close lets queued writes commit, then refuses new ones")
    func closeDrainsThenRefuses() async throws {
        try await withTemporaryDirectory { directory in
            let writer = try openWriter(directory)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<50 {
                    group.addTask { try await writer.write(.lazy, insert("item-\(index)")) }
                }
                try await group.waitForAll()
            }
            try await writer.close()
            let error = await #expect(throws: StorageError.self) { try await writer.write(.forced, insert("late")) }
            #expect(error?.code == .closed)
            let now = #expect(throws: StorageError.self) { try writer.writeNow(.forced) { db in try insert("late")(db) } }
            #expect(now?.code == .closed)
            try await writer.close()  // twice is harmless

            let reopened = try openWriter(directory)
            #expect(try await names(reopened).count == 50)
            try await reopened.close()
        }
    }

    @Test("reads on the writer's connection see every write that returned; reads on a reader see a snapshot while a round is open")
    func reads() async throws {
        try await withTemporaryDirectory { directory in
            let writer = try openWriter(directory)
            try await writer.write(.lazy, insert("visible"))
            #expect(try writer.readOnWriter { db in try String.fetchAll(db, sql: "SELECT name FROM item") } == ["visible"])
            // A round held open on a thread of its own: a reader still completes, seeing the
            // committed state.
            let inside = Flag()
            let release = Flag()
            let failure = FailureNote()
            let loop = Thread {
                do {
                    try writer.writeNow(.lazy) { db in
                        try insert("after")(db)
                        inside.set()
                        while !release.isSet { usleep(100) }
                    }
                } catch {
                    failure.set("\(error)")
                }
            }
            loop.start()
            try await eventually("the round is open", timeout: .seconds(120)) { inside.isSet || failure.text != nil }
            try #require(failure.text == nil, "the round failed: \(failure.text ?? "")")
            #expect(try await names(writer) == ["visible"])
            release.set()
            try await eventually("the round committed") { try await names(writer) == ["visible", "after"] }
            try await writer.close()
        }
    }
}
