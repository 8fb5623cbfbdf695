import ArbiterCore
@testable import ArbiterStorage
import Foundation
import GRDB
import GRDBSQLite
import Testing

/// The repository's `schemas/` directory, found from this file's path.
private let schemasDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("schemas")

@Suite("Schemas and migrations")
struct SchemaTests {
    @Test("the SQL embedded in the module is byte for byte the files in schemas/", arguments: [
        ("coordinator.sql", Schemas.coordinator),
        ("coordinator.v2.sql", Schemas.coordinator_v2),
        ("coordinator.v3.table.sql", Schemas.coordinator_v3_table),
        ("coordinator.v3.sql", Schemas.coordinator_v3),
        ("coordinator.v4.sql", Schemas.coordinator_v4),
        ("participant.sql", Schemas.participant),
        ("participant.v2.table.sql", Schemas.participant_v2_table),
        ("participant.v2.sql", Schemas.participant_v2),
        ("participant.v3.sql", Schemas.participant_v3),
    ])
    func embeddedCopiesMatchTheFiles(file: String, embedded: String) throws {
        let onDisk = try String(contentsOf: schemasDirectory.appendingPathComponent(file), encoding: .utf8)
        #expect(onDisk == embedded, "schemas/\(file) changed: run schemas/embed-in-swift.sh")
    }

    @Test("opening creates the tables and records schema version 4; reopening keeps data and runs nothing again")
    func coordinatorMigrations() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/coordinator.sqlite"
            let log = try DecisionLog(path: path, options: testOptions())
            #expect(try await log.schemaVersion() == 4)
            #expect(try await coordinatorIndexes(log) == ["coordinator_transaction_aborted", "coordinator_transaction_open"])
            let tables = try await log.writer.read { db in
                try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            }
            #expect(tables == ["arbiter_schema_version", "coordinator_acknowledgement", "coordinator_operator_audit", "coordinator_transaction", "grdb_migrations"])
            try await log.append([.decided(tx("kept"), .committed, notify: [], reason: nil)], durability: .forced)
            try await log.close()

            let reopened = try DecisionLog(path: path, options: testOptions())
            let (migrations, versions) = try await reopened.writer.read { db in
                (try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations"),
                 try Row.fetchAll(db, sql: "SELECT component, version FROM arbiter_schema_version").map { "\($0[0] as String)=\($0[1] as Int)" })
            }
            #expect(migrations == ["arbiter.coordinator.v1", "arbiter.coordinator.v2", "arbiter.coordinator.v3", "arbiter.coordinator.v4"])
            #expect(versions == ["coordinator=4"])  // a second run of v1 would have inserted again, or failed
            #expect(try await reopened.transaction(tx("kept"))?.state == .committing)
            try await reopened.close()
        }
    }

    @Test("a version-1 or version-2 log is upgraded in place to version 4: every record kept, listings and recovery as before",
          arguments: [1, 2])
    func coordinatorUpgrade(from version: Int) async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/coordinator.sqlite"
            let bank = ParticipantID("http://bank:8081")
            let branches = [Branch(participant: bank, payload: Payload(#"{"amount": 5}"#))]
            // A log as an older coordinator left it: one transaction in each state.
            var older = DatabaseMigrator()
            older.registerMigration("arbiter.coordinator.v1") { db in try db.execute(sql: Schemas.coordinator) }
            if version >= 2 {
                older.registerMigration("arbiter.coordinator.v2") { db in try db.execute(sql: Schemas.coordinator_v2) }
            }
            let queue = try DatabaseQueue(path: path)
            try older.migrate(queue)
            try await queue.write { db in
                let records: [CoordinatorRecord] = [
                    .begun(tx("active"), branches: branches),
                    .begun(tx("committing"), branches: branches),
                    .decided(tx("committing"), .committed, notify: [bank], reason: nil),
                    .decided(tx("aborting"), .aborted, notify: [bank], reason: "no"),
                    .decided(tx("committed"), .committed, notify: [bank], reason: nil),
                    .acknowledged(tx("committed"), bank),
                    .ended(tx("committed")),
                    .ended(tx("aborted")),
                ]
                for record in records { try DecisionLog.apply(record, atMilliseconds: 1_000, in: db) }
            }
            #expect(try await queue.read { db in try Migrations.schemaVersion(of: "coordinator", in: db) } == version)
            let rowsBefore = try await queue.read { db in try rows(of: "coordinator_transaction", in: db) }
            try queue.close()

            let log = try DecisionLog(path: path, options: testOptions())
            #expect(try await log.schemaVersion() == 4)
            // The table holds the same rows, seq included, and the database is sound.
            #expect(try await log.writer.read { db in try rows(of: "coordinator_transaction", in: db) } == rowsBefore)
            #expect(try await log.writer.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") } == ["ok"])
            #expect(try await coordinatorIndexes(log) == ["coordinator_transaction_aborted", "coordinator_transaction_open"])
            for state in TransactionState.allCases {
                #expect(try await log.list(state: state).map(\.txid.rawValue) == [state.rawValue], "\(state)")
            }
            #expect(try await log.transaction(tx("committed"))?.acknowledgements.map(\.participant) == [bank])
            #expect(try await log.recover() == [
                .begun(tx("active"), branches: branches),
                .begun(tx("committing"), branches: branches),
                .decided(tx("committing"), .committed, notify: [bank], reason: nil),
                .decided(tx("aborting"), .aborted, notify: [bank], reason: "no"),
            ])
            // The upgraded log goes on: the aborted index takes transactions that abort from now on.
            try await log.append([.ended(tx("aborting"))], durability: .forced)
            #expect(try await log.list(state: .aborted).map(\.txid.rawValue) == ["aborting", "aborted"])
            try await log.close()
        }
    }

    @Test("a version-1 participant database is upgraded in place to the current version: rows, locks and the resource's tables kept")
    func participantUpgradeFromVersion1() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/participant.sqlite"
            let coordinator = CoordinatorID("http://coordinator:8080")
            let payload = Payload(#"{"amount": 5}"#)
            // A database as a version-1 participant left it, with a resource's table beside.
            var older = DatabaseMigrator()
            older.registerMigration("arbiter.participant.v1") { db in try db.execute(sql: Schemas.participant) }
            older.registerMigration("resource.v1") { db in try db.execute(sql: "CREATE TABLE resource_row (id TEXT PRIMARY KEY) STRICT") }
            let queue = try DatabaseQueue(path: path)
            try older.migrate(queue)
            try await queue.write { db in
                try db.execute(sql: """
                    INSERT INTO participant_transaction (txid, state, coordinator, payload, prepared_at_ms) VALUES ('in-doubt', 'prepared', ?, ?, 1);
                    INSERT INTO participant_transaction (txid, state, heuristic, ended_at_ms) VALUES ('tombstone', 'aborted', 0, 2);
                    INSERT INTO participant_transaction (txid, state, coordinator, payload, prepared_at_ms, ended_at_ms) VALUES ('done', 'committed', ?, ?, 1, 3);
                    INSERT INTO participant_lock (key, txid, acquired_at_ms) VALUES ('account:alice', 'in-doubt', 1);
                    INSERT INTO resource_row (id) VALUES ('kept');
                    """, arguments: [coordinator.rawValue, Data(payload.bytes), coordinator.rawValue, Data(payload.bytes)])
            }
            let rowsBefore = try await queue.read { db in try rows(of: "participant_transaction", in: db) }
            try queue.close()

            let store = try ParticipantStore(path: path, options: testOptions()) { migrator in
                migrator.registerMigration("resource.v1") { _ in Issue.record("a resource's migration ran twice") }
            }
            #expect(try await store.writer.read { db in try Migrations.schemaVersion(of: "participant", in: db) } == 3)
            #expect(try await store.writer.read { db in try rows(of: "participant_transaction", in: db) } == rowsBefore)
            #expect(try await store.writer.read { db in try String.fetchAll(db, sql: "PRAGMA integrity_check") } == ["ok"])
            #expect(try await store.writer.read { db in try String.fetchAll(db, sql: "SELECT id FROM resource_row") } == ["kept"])
            #expect(try await store.recover() == [.prepared(tx("in-doubt"), coordinator: coordinator, payload: payload)])
            #expect(try await store.locks(of: tx("in-doubt")) == ["account:alice"])
            // The trigger came back with the table: an ended transaction still never changes state.
            let error = await #expect(throws: StorageError.self) {
                try await store.write(.forced) { db in try store.apply(.prepared(tx("tombstone"), coordinator: coordinator, payload: payload), in: db) }
            }
            #expect(error?.code == .conflict)
            try await store.write(.forced) { db in try store.apply(.committed(tx("in-doubt"), heuristic: false), in: db) }
            #expect(try await store.locks(of: tx("in-doubt")).isEmpty)
            try await store.close()
        }
    }

    @Test("the redefined tables still refuse states, outcomes and ends outside the protocol")
    func checksStillHold() async throws {
        try await withTemporaryDirectory { directory in
            let log = try DecisionLog(path: "\(directory)/coordinator.sqlite", options: testOptions())
            let refusedByLog = [
                "INSERT INTO coordinator_transaction (txid, state, created_at_ms) VALUES ('t', 'pending', 1)",
                "INSERT INTO coordinator_transaction (txid, state, created_at_ms) VALUES ('t', 'committed', 1)",
                "INSERT INTO coordinator_transaction (txid, state, outcome, created_at_ms) VALUES ('t', 'committing', 'maybe', 1)",
                "INSERT INTO coordinator_transaction (txid, state, outcome, created_at_ms, ended_at_ms) VALUES ('t', 'aborted', 'committed', 1, 2)",
            ]
            for sql in refusedByLog {
                await #expect(throws: (any Error).self, "\(sql)") { try await log.writer.write(.lazy) { db in try db.execute(sql: sql) } }
            }
            try await log.writer.write(.lazy) { db in
                try db.execute(sql: "INSERT INTO coordinator_transaction (txid, state, outcome, created_at_ms, ended_at_ms) VALUES ('t', 'aborted', NULL, 1, 2)")
            }
            try await log.close()

            let store = try ParticipantStore(path: "\(directory)/participant.sqlite", options: testOptions())
            let refusedByStore = [
                "INSERT INTO participant_transaction (txid, state, ended_at_ms) VALUES ('t', 'forgotten', 1)",
                "INSERT INTO participant_transaction (txid, state) VALUES ('t', 'committed')",
                "INSERT INTO participant_transaction (txid, state, heuristic, ended_at_ms) VALUES ('t', 'aborted', 2, 1)",
            ]
            for sql in refusedByStore {
                await #expect(throws: (any Error).self, "\(sql)") { try await store.writer.write(.lazy) { db in try db.execute(sql: sql) } }
            }
            try await store.close()
        }
    }

    /// SQLite evaluates `x IN (a, b, c)` over three or more constants, in a CHECK or an index's
    /// WHERE, by building a temporary B-tree (`OpenEphemeral`) every time a statement runs: it was
    /// half of the coordinator's write time. The plans of the per-transaction writes must not.
    @Test("no per-transaction write builds a temporary table")
    func recordWritesBuildNoTemporaryTable() async throws {
        try await withTemporaryDirectory { directory in
            let log = try DecisionLog(path: "\(directory)/coordinator.sqlite", options: testOptions())
            let logPlans = try await log.writer.write(.lazy) { db in try DecisionLog.RecordSQL.all.map { try opcodes($0, in: db) } }
            let store = try ParticipantStore(path: "\(directory)/participant.sqlite", options: testOptions())
            let storePlans = try await store.writer.write(.lazy) { db in try ParticipantStore.RecordSQL.all.map { try opcodes($0, in: db) } }
            for (sql, plan) in zip(DecisionLog.RecordSQL.all + ParticipantStore.RecordSQL.all, logPlans + storePlans) {
                #expect(plan.contains("Insert") || plan.contains("IdxInsert") || plan.contains("Delete"), "\(sql)")
                #expect(!plan.contains("OpenEphemeral"), "\(sql)")
            }
            try await log.close()
            try await store.close()
        }
    }

    @Test("a database migrated by a newer version is refused, and left untouched")
    func newerSchemaIsRefused() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/coordinator.sqlite"
            let log = try DecisionLog(path: path, options: testOptions())
            try await log.writer.write(.forced) { db in
                try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('arbiter.coordinator.v99')")
            }
            try await log.close()
            let error = #expect(throws: StorageError.self) { try DecisionLog(path: path, options: testOptions()) }
            #expect(error?.code == .schemaTooNew)
            #expect(error?.message.contains("arbiter.coordinator.v99") == true)

            let migrations = try await DatabaseQueue(path: path).read { db in try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY identifier") }
            #expect(migrations == ["arbiter.coordinator.v1", "arbiter.coordinator.v2", "arbiter.coordinator.v3", "arbiter.coordinator.v4", "arbiter.coordinator.v99"])
        }
    }
}

@Suite("Opening errors")
struct OpeningErrorTests {
    @Test("a file that is not SQLite gives notADatabase, and is not overwritten")
    func notADatabase() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/coordinator.sqlite"
            let text = String(repeating: "this is a text file, not a database\n", count: 200)
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let error = #expect(throws: StorageError.self) { try DecisionLog(path: path, options: testOptions()) }
            #expect(error?.code == .notADatabase)
            #expect(try String(contentsOfFile: path, encoding: .utf8) == text)
        }
    }

    @Test("a missing directory, or a directory given as the file, gives cannotOpen")
    func cannotOpen() async throws {
        try await withTemporaryDirectory { directory in
            let missing = #expect(throws: StorageError.self) {
                try ParticipantStore(path: "\(directory)/no/such/dir/participant.sqlite", options: testOptions())
            }
            #expect(missing?.code == .cannotOpen)
            #expect(missing?.message.contains("does not exist") == true)

            let isDirectory = #expect(throws: StorageError.self) { try DecisionLog(path: directory, options: testOptions()) }
            #expect(isDirectory?.code == .cannotOpen)

            try "x".write(toFile: "\(directory)/file", atomically: true, encoding: .utf8)
            let underFile = #expect(throws: StorageError.self) { try DecisionLog(path: "\(directory)/file/log.sqlite", options: testOptions()) }
            #expect(underFile?.code == .cannotOpen)
        }
    }

    @Test("a directory this process cannot write into gives notWritable")
    func notWritable() async throws {
        // /proc refuses new files even to root, for whom permission bits do not apply.
        let proc = #expect(throws: StorageError.self) { try DecisionLog(path: "/proc/arbiter-test.sqlite", options: testOptions()) }
        #expect(proc?.code == .notWritable)

        guard geteuid() != 0 else { return }
        try await withTemporaryDirectory { directory in
            let locked = "\(directory)/locked"
            try FileManager.default.createDirectory(atPath: locked, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o500])
            defer { try? FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: locked) }
            let error = #expect(throws: StorageError.self) { try DecisionLog(path: "\(locked)/coordinator.sqlite", options: testOptions()) }
            #expect(error?.code == .notWritable)
        }
    }

    @Test("options out of range are refused")
    func invalidOptions() async throws {
        try await withTemporaryDirectory { directory in
            let error = #expect(throws: StorageError.self) {
                var options = testOptions()
                options.readerCountMax = 0
                return try DecisionLog(path: "\(directory)/log.sqlite", options: options)
            }
            #expect(error?.code == .invalidArgument)
        }
    }
}

/// The names of the coordinator's own indexes (not SQLite's automatic ones for UNIQUE).
private func coordinatorIndexes(_ log: DecisionLog) async throws -> [String] {
    try await log.writer.read { db in
        try String.fetchAll(db, sql: """
            SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%' ORDER BY name
            """)
    }
}

/// Every row of `table` in seq order, each as text (GRDB's rows are not Sendable).
private func rows(of table: String, in db: Database) throws -> [String] {
    try Row.fetchAll(db, sql: "SELECT * FROM \(table) ORDER BY seq").map(\.description)
}

/// The opcodes of the program SQLite compiles `sql` to (its parameters bound to NULL).
private func opcodes(_ sql: String, in db: Database) throws -> [String] {
    let statement = try db.makeStatement(sql: "EXPLAIN \(sql)")
    let parameterCount = Int(sqlite3_bind_parameter_count(statement.sqliteStatement))
    statement.setUncheckedArguments(StatementArguments(Array(repeating: DatabaseValue.null, count: parameterCount)))
    return try Row.fetchAll(statement).map { $0["opcode"] as String }
}
