import ArbiterCore
@testable import ArbiterStorage
import Foundation
import GRDB
import Testing

private let coordinator = CoordinatorID("http://coordinator:8080")

@Suite("Hot statements")
struct HotStatementsTests {
    @Test("the stores' statements run on the connection's own statement cache; the store reads back what it wrote, an empty blob included, and closes")
    func keptOnTheWriterUntilClose() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/participant.sqlite"
            let store = try ParticipantStore(path: path, options: testOptions())
            let (empty, full) = (tx("t-empty"), tx("t-full"))
            try await store.write(.forced) { db in
                try db.inPreparedSavepoint {
                    try store.apply(.prepared(empty, coordinator: coordinator, payload: Payload([])), in: db)
                    try store.apply(.prepared(full, coordinator: coordinator, payload: Payload([0x00, 0xFF, 0x7B])), in: db)
                    #expect(try store.lock("account/alice", for: full, in: db) == .acquired)
                    #expect(try store.lock("account/alice", for: full, in: db) == .alreadyHeld)
                    #expect(try store.lock("account/alice", for: empty, in: db) == .conflict(holder: full))
                    return .commit
                }
            }

            let read = try await store.write(.lazy) { db in
                (try store.transaction(empty, in: db), try store.preparedPayload(of: full, in: db), try store.transaction(tx("unknown"), in: db))
            }
            #expect(read.0?.payload == Payload([]), "a zero-length payload is empty, not NULL")
            #expect(read.0?.coordinator == coordinator)
            #expect(read.0?.state == .prepared)
            #expect(read.1 == Payload([0x00, 0xFF, 0x7B]))
            #expect(read.2 == nil)
            // A reader's connection has a cache of its own.
            #expect(try await store.writer.read { db in try store.transaction(full, in: db)?.state } == .prepared)

            // A refusal keeps its class: an ended transaction never changes state.
            try await store.write(.forced) { db in try store.apply(.committed(full, heuristic: false), in: db) }
            let error = await #expect(throws: StorageError.self) {
                try await store.write(.forced) { db in try store.apply(.aborted(full, heuristic: false), in: db) }
            }
            #expect(error?.code == .conflict)

            // Close finalizes the cached statements (SQLite would refuse to close the connection
            // otherwise), and the reopened store finds every row.
            try await store.close()
            let reopened = try ParticipantStore(path: path, options: testOptions())
            #expect(try await reopened.prepared().map(\.txid) == [empty])
            #expect(try await reopened.transaction(full)?.state == .committed)
            try await reopened.close()
        }
    }

    @Test("on a connection the writer does not own, the statements run on that connection's cache, and it closes")
    func notKeptElsewhere() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/participant.sqlite"
            try await ParticipantStore(path: path, options: testOptions()).close()
            let queue = try DatabaseQueue(path: path)
            let txid = tx("t-foreign")
            let store = try ParticipantStore(path: "\(directory)/other.sqlite", options: testOptions())
            try await queue.write { db in
                try store.apply(.prepared(txid, coordinator: coordinator, payload: Payload([1])), in: db)
            }
            #expect(try await queue.read { db in try String.fetchOne(db, sql: "SELECT state FROM participant_transaction") } == "prepared")
            try queue.close()
            try await store.close()
        }
    }
}
