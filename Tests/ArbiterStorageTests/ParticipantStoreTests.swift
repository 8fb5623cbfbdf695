import ArbiterCore
import ArbiterStorage
import Foundation
import GRDB
import Testing

private let coordinator = CoordinatorID("http://coordinator:8080")
private let payload = Payload(#"{"op": "debit", "account": "alice", "amount": 100}"#)

/// A resource's own schema, as a bank participant would register it.
private func bankMigrations(_ migrator: inout DatabaseMigrator) {
    migrator.registerMigration("bank.v1") { db in
        // Runs after Arbiter's: the protocol table must already exist.
        guard try db.tableExists("participant_transaction") else {
            throw DatabaseError(message: "bank.v1 ran before Arbiter's migrations")
        }
        try db.execute(sql: """
            CREATE TABLE account (id TEXT PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0));
            CREATE TABLE migration_run (name TEXT NOT NULL);
            INSERT INTO migration_run (name) VALUES ('bank.v1');
            """)
    }
}

private func openStore(_ directory: String, clock: TestClock = TestClock()) throws -> ParticipantStore {
    try ParticipantStore(path: "\(directory)/participant.sqlite", options: testOptions(), migrations: bankMigrations, now: clock.now)
}

@Suite("ParticipantStore")
struct ParticipantStoreTests {
    @Test("every record kind survives close and reopen; recover returns the transactions in doubt, the rest is read by id")
    func roundTrip() async throws {
        try await withTemporaryDirectory { directory in
            let (t1, t2, t3, t4, t5) = (tx("t1"), tx("t2"), tx("t3"), tx("t4"), tx("t5"))
            let binary = Payload([0x00, 0xFF, 0x10])
            let store = try openStore(directory)
            try await store.write(.forced) { db in try store.apply(.prepared(t1, coordinator: coordinator, payload: payload), in: db) }
            try await store.write(.forced) { db in try store.apply(.prepared(t2, coordinator: coordinator, payload: binary), in: db) }
            try await store.write(.lazy) { db in try store.apply(.aborted(t3, heuristic: false), in: db) }  // a tombstone
            try await store.write(.forced) { db in try store.apply(.committed(t2, heuristic: false), in: db) }
            try await store.write(.forced) { db in try store.apply(.prepared(t4, coordinator: coordinator, payload: payload), in: db) }
            try await store.write(.forced) { db in try store.apply(.aborted(t4, heuristic: true), in: db) }  // an operator's
            try await store.write(.forced) { db in try store.apply(.committed(t5, heuristic: false), in: db) }  // one phase
            try await store.close()

            let reopened = try openStore(directory)
            #expect(try await reopened.recover() == [.prepared(t1, coordinator: coordinator, payload: payload)])
            #expect(try await reopened.records(of: [t1, t2, t3, t4, t5, tx("unknown")]) == [
                t1: [.prepared(t1, coordinator: coordinator, payload: payload)],
                t2: [.prepared(t2, coordinator: coordinator, payload: binary), .committed(t2, heuristic: false)],
                t3: [.aborted(t3, heuristic: false)],
                t4: [.prepared(t4, coordinator: coordinator, payload: payload), .aborted(t4, heuristic: true)],
                t5: [.committed(t5, heuristic: false)],
            ])
            #expect(try await reopened.prepared().map(\.txid) == [t1])
            // What a commit applies: the staged payload, only while the transaction is prepared.
            let payloads = try await reopened.writer.read { db in
                try [t1, t2, t3, t4, t5, tx("unknown")].map { txid throws(StorageError) in try reopened.preparedPayload(of: txid, in: db) }
            }
            #expect(payloads == [payload, nil, nil, nil, nil, nil])
            #expect(try await reopened.transaction(t3)?.isTombstone == true)
            #expect(try await reopened.transaction(t4)?.isHeuristic == true)
            #expect(try await reopened.transaction(tx("unknown")) == nil)
            try await reopened.close()
        }
    }

    @Test("an ended transaction never changes state: a tombstone makes a late prepare fail")
    func endedIsFinal() async throws {
        try await withTemporaryDirectory { directory in
            let store = try openStore(directory)
            let late = tx("t-late")
            try await store.write(.lazy) { db in try store.apply(.aborted(late, heuristic: false), in: db) }
            let error = await #expect(throws: StorageError.self) {
                try await store.write(.forced) { db in try store.apply(.prepared(late, coordinator: coordinator, payload: payload), in: db) }
            }
            #expect(error?.code == .conflict)
            #expect(try await store.transaction(late)?.isTombstone == true)

            let committed = tx("t-committed")
            try await store.write(.forced) { db in
                try store.apply(.prepared(committed, coordinator: coordinator, payload: payload), in: db)
                try store.apply(.committed(committed, heuristic: false), in: db)
                try store.apply(.committed(committed, heuristic: false), in: db)  // a repeat is harmless
            }
            await #expect(throws: StorageError.self) {
                try await store.write(.lazy) { db in try store.apply(.aborted(committed, heuristic: false), in: db) }
            }
            #expect(try await store.transaction(committed)?.state == .committed)
            try await store.close()
        }
    }

    @Test("locks conflict without waiting, are released by commit and abort, and survive a reopen")
    func locks() async throws {
        try await withTemporaryDirectory { directory in
            let (t1, t2, t3) = (tx("t1"), tx("t2"), tx("t3"))
            let store = try openStore(directory)
            let first = try await store.write(.forced) { db in
                let results = [try store.lock("account:alice", for: t1, in: db), try store.lock("account:bob", for: t1, in: db)]
                try store.apply(.prepared(t1, coordinator: coordinator, payload: payload), in: db)
                return results
            }
            #expect(first == [.acquired, .acquired])
            #expect(try await store.write(.lazy) { db in try store.lock("account:alice", for: t1, in: db) } == .alreadyHeld)
            #expect(try await store.write(.lazy) { db in try store.lock("account:alice", for: t2, in: db) } == .conflict(holder: t1))
            #expect(try await store.locks(of: t1) == ["account:alice", "account:bob"])

            try await store.write(.forced) { db in try store.apply(.committed(t1, heuristic: false), in: db) }
            #expect(try await store.locks(of: t1).isEmpty)
            #expect(try await store.write(.lazy) { db in try store.lock("account:alice", for: t2, in: db) } == .acquired)
            try await store.write(.lazy) { db in try store.apply(.aborted(t2, heuristic: false), in: db) }
            #expect(try await store.allLocks().isEmpty)

            try await store.write(.forced) { db in
                _ = try store.lock("account:carol", for: t3, in: db)
                try store.apply(.prepared(t3, coordinator: coordinator, payload: payload), in: db)
            }
            try await store.close()
            let reopened = try openStore(directory)
            #expect(try await reopened.allLocks().map { "\($0.txid):\($0.key)" } == ["t3:account:carol"])
            #expect(try await reopened.write(.lazy) { db in try reopened.lock("account:carol", for: t1, in: db) } == .conflict(holder: t3))

            let error = await #expect(throws: StorageError.self) {
                try await reopened.write(.lazy) { db in try reopened.lock("", for: t1, in: db) }
            }
            #expect(error?.code == .invalidArgument)
            try await reopened.close()
        }
    }

    @Test("the census counts each state and the locks; without the ended ones it counts only those in doubt, also when there are none")
    func census() async throws {
        try await withTemporaryDirectory { directory in
            let store = try openStore(directory)
            func census(countingEnded: Bool) async throws -> [Int] {
                let census = try await store.census(countingEnded: countingEnded)
                return [census.prepared, census.committed, census.aborted, census.locks]
            }
            #expect(try await census(countingEnded: true) == [0, 0, 0, 0])
            #expect(try await census(countingEnded: false) == [0, 0, 0, 0])

            let (t1, t2, t3) = (tx("t1"), tx("t2"), tx("t3"))
            try await store.write(.forced) { db in
                _ = try store.lock("account:alice", for: t1, in: db)
                try store.apply(.prepared(t1, coordinator: coordinator, payload: payload), in: db)
                try store.apply(.committed(t1, heuristic: false), in: db)
                try store.apply(.aborted(t2, heuristic: false), in: db)
            }
            // Nothing in doubt, some ended: the query without the ended ones still finds no row to count.
            #expect(try await census(countingEnded: true) == [0, 1, 1, 0])
            #expect(try await census(countingEnded: false) == [0, 0, 0, 0])

            try await store.write(.forced) { db in
                _ = try store.lock("account:bob", for: t3, in: db)
                try store.apply(.prepared(t3, coordinator: coordinator, payload: payload), in: db)
            }
            #expect(try await census(countingEnded: true) == [1, 1, 1, 1])
            #expect(try await census(countingEnded: false) == [1, 0, 0, 1])
            try await store.close()
        }
    }

    @Test("the resource's work and the protocol record commit together or not at all")
    func resourceWorkIsAtomicWithTheRecord() async throws {
        try await withTemporaryDirectory { directory in
            struct Refused: Error {}
            let store = try openStore(directory)
            try await store.write(.forced) { db in try db.execute(sql: "INSERT INTO account VALUES ('alice', 500)") }
            let t = tx("t-atomic")
            await #expect(throws: Refused.self) {
                try await store.write(.forced) { db in
                    _ = try store.lock("account:alice", for: t, in: db)
                    try db.execute(sql: "UPDATE account SET balance = balance - 100 WHERE id = 'alice'")
                    try store.apply(.prepared(t, coordinator: coordinator, payload: payload), in: db)
                    throw Refused()
                }
            }
            #expect(try await store.transaction(t) == nil)
            #expect(try await store.allLocks().isEmpty)
            #expect(try await store.writer.read { db in try Int.fetchOne(db, sql: "SELECT balance FROM account") } == 500)
            try await store.close()
        }
    }

    @Test("retention lists ended transactions older than a cutoff; forget deletes them but never a prepared one")
    func retentionAndForget() async throws {
        try await withTemporaryDirectory { directory in
            let clock = TestClock()
            let store = try openStore(directory, clock: clock)
            let (old, recent, inDoubt) = (tx("t-old"), tx("t-recent"), tx("t-in-doubt"))
            try await store.write(.forced) { db in
                try store.apply(.prepared(old, coordinator: coordinator, payload: payload), in: db)
                try store.apply(.committed(old, heuristic: false), in: db)
                try store.apply(.prepared(inDoubt, coordinator: coordinator, payload: payload), in: db)
            }
            clock.advance(by: 3600)
            try await store.write(.lazy) { db in try store.apply(.aborted(recent, heuristic: false), in: db) }

            let cutoff = Date(timeIntervalSince1970: 1_700_000_000 + 1800)
            #expect(try await store.endedTransactions(before: cutoff) == [old])
            #expect(try await store.endedTransactions(before: cutoff.addingTimeInterval(3600)) == [old, recent])

            let error = await #expect(throws: StorageError.self) { try await store.forget([old, inDoubt]) }
            #expect(error?.code == .conflict)
            #expect(try await store.transaction(old) != nil)  // nothing was forgotten

            #expect(try await store.forget([old, recent]) == 2)
            #expect(try await store.forget(old) == false)
            #expect(try await store.recover() == [.prepared(inDoubt, coordinator: coordinator, payload: payload)])
            try await store.close()
        }
    }

    @Test("forgetEnded deletes the transactions ended longer ago than the retention, a page at a time, never one in doubt")
    func forgetEnded() async throws {
        try await withTemporaryDirectory { directory in
            let clock = TestClock()
            let store = try openStore(directory, clock: clock)
            let inDoubt = tx("t-in-doubt")
            try await store.write(.forced) { db in
                try store.apply(.prepared(inDoubt, coordinator: coordinator, payload: payload), in: db)
                for index in 0..<5 {
                    let txid = tx("t-old-\(index)")
                    try store.apply(.prepared(txid, coordinator: coordinator, payload: payload), in: db)
                    try store.apply(index.isMultiple(of: 2) ? .committed(txid, heuristic: false) : .aborted(txid, heuristic: false), in: db)
                }
            }
            clock.advance(by: 3000)
            try await store.write(.forced) { db in try store.apply(.aborted(tx("t-recent"), heuristic: false), in: db) }
            clock.advance(by: 1000)

            // An hour's retention: the five that ended 4000 s ago go, two pages of at most three.
            #expect(try await store.forgetEnded(olderThan: .seconds(3600), limit: 3) == 3)
            #expect(try await store.forgetEnded(olderThan: .seconds(3600), limit: 3) == 2)
            #expect(try await store.forgetEnded(olderThan: .seconds(3600), limit: 3) == 0)
            #expect(try await store.records(of: (0..<5).map { tx("t-old-\($0)") }).isEmpty)
            #expect(try await store.transaction(tx("t-recent")) != nil)
            #expect(try await store.transaction(inDoubt)?.state == .prepared)
            // Past the recent one's retention too; the one in doubt stays whatever its age.
            #expect(try await store.forgetEnded(olderThan: .seconds(500)) == 1)
            #expect(try await store.forgetEnded(olderThan: .zero) == 0)
            #expect(try await store.recover() == [.prepared(inDoubt, coordinator: coordinator, payload: payload)])

            let error = await #expect(throws: StorageError.self) { try await store.forgetEnded(olderThan: .zero, limit: 0) }
            #expect(error?.code == .invalidArgument)
            try await store.close()
        }
    }

    @Test("the resource's migrations run after Arbiter's, once")
    func resourceMigrations() async throws {
        try await withTemporaryDirectory { directory in
            try await openStore(directory).close()
            let store = try openStore(directory)
            let (migrations, runs) = try await store.writer.read { db in
                (try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY rowid"),
                 try Int.fetchOne(db, sql: "SELECT count(*) FROM migration_run"))
            }
            #expect(migrations == ["arbiter.participant.v1", "arbiter.participant.v2", "arbiter.participant.v3", "bank.v1"])
            #expect(runs == 1)
            #expect(try await store.schemaVersion() == 3)
            try await store.close()
        }
    }
}
