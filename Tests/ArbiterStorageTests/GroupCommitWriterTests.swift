import ArbiterStorage
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

private func openWriter(_ directory: String, options: GroupCommitWriter.Options = testOptions()) throws -> GroupCommitWriter {
    try GroupCommitWriter(path: "\(directory)/items.sqlite", migrator: itemMigrator, options: options)
}

private func insert(_ name: String) -> @Sendable (Database) throws -> Void {
    { db in try db.execute(sql: "INSERT INTO item (name) VALUES (?)", arguments: [name]) }
}

private func names(_ writer: GroupCommitWriter) async throws -> [String] {
    try await writer.read { db in try String.fetchAll(db, sql: "SELECT name FROM item ORDER BY id") }
}

private struct RefusedByTest: Error, Equatable {}

/// For tests that hold the writer inside a batch (``holdingWriter(_:untilQueued:_:)``): every batch
/// on the writer's queue, so that the hold blocks that queue and not a thread of Swift's pool.
private let holdable = testOptions(commitsOnCallerWhenIdle: false)

@Suite("GroupCommitWriter")
struct GroupCommitWriterTests {
    @Test("the database is in WAL mode; forced batches run with synchronous FULL, lazy ones with NORMAL")
    func synchronousLevels() async throws {
        try await withTemporaryDirectory { directory in
            let writer = try openWriter(directory)
            let journalMode = try await writer.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
            #expect(journalMode == "wal")

            // 2 = FULL, 1 = NORMAL (https://www.sqlite.org/pragma.html#pragma_synchronous).
            let sync: @Sendable (Database) throws -> Int? = { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") }
            #expect(try await writer.write(.forced, sync) == 2)
            #expect(try await writer.write(.lazy, sync) == 1)
            #expect(try await writer.write(.lazy, sync) == 1)
            #expect(try await writer.write(.forced, sync) == 2)

            let statistics = writer.statistics
            #expect(statistics.forcedBatchCount == 2)
            #expect(statistics.lazyBatchCount == 2)
            #expect(statistics.requestCount == 4)
            try await writer.close()
        }
    }

    @Test("a batch holding one forced write among lazy ones commits with synchronous FULL")
    func mixedBatchIsForced() async throws {
        try await withTemporaryDirectory { directory in
            let writer = try openWriter(directory, options: holdable)
            let levels = try await holdingWriter(writer, untilQueued: 3) {
                try await withThrowingTaskGroup(of: Int?.self) { group in
                    for durability in [Durability.lazy, .forced, .lazy] {
                        group.addTask {
                            try await writer.write(durability) { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") }
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            #expect(levels == [2, 2, 2])
            #expect(writer.statistics.forcedBatchCount == 1)
            try await writer.close()
        }
    }

    @Test("writes queued while the writer is busy are committed in one batch: one fsync for 200 forced writes")
    func groupCommitDeterministic() async throws {
        try await withTemporaryDirectory { directory in
            let writer = try openWriter(directory, options: holdable)
            let count = 200
            try await holdingWriter(writer, untilQueued: count) {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<count {
                        group.addTask { try await writer.write(.forced, insert("item-\(index)")) }
                    }
                    try await group.waitForAll()
                }
            }
            let statistics = writer.statistics
            #expect(statistics.forcedBatchCount == 1)
            #expect(statistics.lazyBatchCount == 1)  // the write that held the writer
            #expect(statistics.batchSizeLargest == count)
            #expect(statistics.requestCount == count + 1)
            #expect(try await names(writer).count == count)
            try await writer.close()
        }
    }

    @Test("200 concurrent forced writers share far fewer than 200 fsyncs")
    func groupCommitUnderConcurrency() async throws {
        try await withTemporaryDirectory { directory in
            // Batches on the writer's queue only: a write that commits on its caller's thread blocks
            // that thread for its batch, so on a pool of two threads the 200 tasks reach the writer
            // a few at a time and how many share a batch depends on the scheduler.
            let writer = try openWriter(directory, options: holdable)
            let writerCount = 200
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<writerCount {
                    group.addTask { try await writer.write(.forced, insert("item-\(index)")) }
                }
                try await group.waitForAll()
            }
            let statistics = writer.statistics
            #expect(statistics.requestCount == writerCount)
            #expect(statistics.forcedBatchCount < writerCount / 2, "\(statistics)")
            #expect(statistics.batchSizeMean > 2, "\(statistics)")
            #expect(statistics.batchSizeHistogram.reduce(0, +) == statistics.batchCount)
            #expect(try await names(writer).count == writerCount)
            try await writer.close()
        }
    }

    @Test("a failing write in a batch is rolled back alone; its caller gets its own error")
    func failureIsIsolated() async throws {
        try await withTemporaryDirectory { directory in
            let writer = try openWriter(directory, options: holdable)
            try await writer.write(.forced, insert("taken"))
            let results = try await holdingWriter(writer, untilQueued: 4) {
                try await withThrowingTaskGroup(of: (String, (any Error)?).self) { group in
                    let works: [(String, @Sendable (Database) throws -> Void)] = [
                        ("a", insert("a")),
                        ("thrower", { db in
                            try insert("written-then-refused")(db)
                            throw RefusedByTest()
                        }),
                        ("duplicate", insert("taken")),  // UNIQUE violation: a database error
                        ("b", insert("b")),
                    ]
                    for (label, work) in works {
                        group.addTask {
                            do {
                                try await writer.write(.forced, work)
                                return (label, nil)
                            } catch {
                                return (label, error)
                            }
                        }
                    }
                    return try await group.reduce(into: [String: (any Error)?]()) { $0[$1.0] = $1.1 }
                }
            }
            #expect(results["a"]! == nil)
            #expect(results["b"]! == nil)
            #expect(results["thrower"]! is RefusedByTest)
            let duplicate = try #require(results["duplicate"]! as? StorageError)
            #expect(duplicate.code == .conflict)
            #expect(try await names(writer).sorted() == ["a", "b", "taken"])

            let statistics = writer.statistics
            #expect(statistics.forcedBatchCount == 2)  // "taken", then the batch of four
            #expect(statistics.failedRequestCount == 2)
            try await writer.close()
        }
    }

    @Test("batches never exceed batchSizeMax")
    func batchSizeIsBounded() async throws {
        try await withTemporaryDirectory { directory in
            let writer = try openWriter(directory, options: testOptions(batchSizeMax: 10, commitsOnCallerWhenIdle: false))
            try await holdingWriter(writer, untilQueued: 25) {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<25 {
                        group.addTask { try await writer.write(.lazy, insert("item-\(index)")) }
                    }
                    try await group.waitForAll()
                }
            }
            let statistics = writer.statistics
            #expect(statistics.batchSizeLargest == 10)
            #expect(statistics.batchCount == 1 + 3)  // the holder, then 10 + 10 + 5
            try await writer.close()
        }
    }

    @Test("a long queue drains in full batches, none lost or repeated")
    func longQueue() async throws {
        try await withTemporaryDirectory { directory in
            let writer = try openWriter(directory, options: testOptions(batchSizeMax: 4096, commitsOnCallerWhenIdle: false))
            let count = 10_000
            try await holdingWriter(writer, untilQueued: count) {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<count {
                        group.addTask { try await writer.write(.lazy, insert("item-\(index)")) }
                    }
                    try await group.waitForAll()
                }
            }
            let statistics = writer.statistics
            #expect(statistics.batchCount == 1 + 3)  // the holder, then 4096 + 4096 + 1808
            #expect(statistics.batchSizeLargest == 4096)
            #expect(statistics.queuedRequestCount == 0)
            #expect(Set(try await names(writer)) == Set((0..<count).map { "item-\($0)" }))
            try await writer.close()
        }
    }

    @Test("a write beyond queueLengthMax fails at once with overloaded")
    func queueIsBounded() async throws {
        try await withTemporaryDirectory { directory in
            let writer = try openWriter(directory, options: testOptions(queueLengthMax: 3, commitsOnCallerWhenIdle: false))
            let (entered, release) = (Flag(), Flag())
            async let hold: Void = writer.write(.lazy) { _ in
                entered.set()
                let deadline = ContinuousClock.now + .seconds(30)
                while !release.isSet && ContinuousClock.now < deadline { usleep(100) }
            }
            while !entered.isSet { try await Task.sleep(for: .milliseconds(1)) }

            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<3 {
                    group.addTask { try await writer.write(.lazy, insert("item-\(index)")) }
                }
                while writer.statistics.queuedRequestCount < 3 {
                    try await Task.sleep(for: .milliseconds(1))
                }
                // The queue is full while the writer is held: one more is refused at once.
                let error = await #expect(throws: StorageError.self) { try await writer.write(.lazy, insert("one-too-many")) }
                #expect(error?.code == .overloaded)
                release.set()
                try await group.waitForAll()
            }
            try await hold
            #expect(try await names(writer).sorted() == ["item-0", "item-1", "item-2"])
            try await writer.close()
        }
    }

    @Test("a write that finds the writer idle commits on its caller's thread; writes queued meanwhile commit on the writer's queue")
    func idleWriterCommitsOnTheCaller() async throws {
        try await withTemporaryDirectory { directory in
            let writer = try openWriter(directory)
            let entered = Flag()
            // The first write finds the writer idle: its batch runs here, on this task's thread, and
            // stays open until a second write has queued behind it.
            async let first: pthread_t = writer.write(.forced) { db in
                entered.set()
                try insert("first")(db)
                let deadline = ContinuousClock.now + .seconds(30)
                while writer.statistics.queuedRequestCount < 1 && ContinuousClock.now < deadline { usleep(100) }
                return pthread_self()
            }
            while !entered.isSet { try await Task.sleep(for: .milliseconds(1)) }
            let secondThread = try await writer.write(.forced) { db in
                try insert("second")(db)
                return pthread_self()
            }
            let firstThread = try await first
            #expect(pthread_equal(firstThread, secondThread) == 0, "the queued write ran on the writer's queue")
            let statistics = writer.statistics
            #expect(statistics.forcedBatchCount == 2)
            #expect(statistics.callerBatchCount == 1)
            #expect(try await names(writer) == ["first", "second"])

            // Idle again: the next lone write commits on its caller too.
            try await writer.write(.lazy, insert("third"))
            #expect(writer.statistics.callerBatchCount == 2)
            try await writer.close()
        }
    }

    @Test("with commitsOnCallerWhenIdle off, every batch commits on the writer's queue")
    func callerCommitsCanBeTurnedOff() async throws {
        try await withTemporaryDirectory { directory in
            let writer = try openWriter(directory, options: holdable)
            try await writer.write(.forced, insert("a"))
            try await writer.write(.lazy, insert("b"))
            #expect(writer.statistics.batchCount == 2)
            #expect(writer.statistics.callerBatchCount == 0)
            try await writer.close()
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
            try await writer.close()  // twice is harmless

            let reopened = try openWriter(directory)
            #expect(try await names(reopened).count == 50)
            try await reopened.close()
        }
    }

    @Test("reads see every write that has returned, and run while a batch is held open")
    func readsDoNotWaitForBatches() async throws {
        try await withTemporaryDirectory { directory in
            let writer = try openWriter(directory, options: holdable)
            try await writer.write(.lazy, insert("visible"))
            let seen = try await holdingWriter(writer, untilQueued: 1) {
                // The writer is inside a batch; a read still completes, seeing the committed state.
                let seen = try await names(writer)
                try await writer.write(.lazy, insert("after"))
                return seen
            }
            #expect(seen == ["visible"])
            #expect(try await names(writer) == ["visible", "after"])
            try await writer.close()
        }
    }
}
