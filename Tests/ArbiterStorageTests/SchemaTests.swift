import ArbiterCore
@testable import ArbiterStorage
import Foundation
import GRDB
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
        ("participant.sql", Schemas.participant),
    ])
    func embeddedCopiesMatchTheFiles(file: String, embedded: String) throws {
        let onDisk = try String(contentsOf: schemasDirectory.appendingPathComponent(file), encoding: .utf8)
        #expect(onDisk == embedded, "schemas/\(file) changed: run schemas/embed-in-swift.sh")
    }

    @Test("opening creates the tables and records schema version 2; reopening keeps data and runs nothing again")
    func coordinatorMigrations() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/coordinator.sqlite"
            let log = try DecisionLog(path: path, options: testOptions())
            #expect(try await log.schemaVersion() == 2)
            #expect(try await coordinatorIndexes(log) == ["coordinator_transaction_aborted", "coordinator_transaction_open"])
            let tables = try await log.writer.read { db in
                try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            }
            #expect(tables == ["arbiter_schema_version", "coordinator_acknowledgement", "coordinator_transaction", "grdb_migrations"])
            try await log.append([.decided(tx("kept"), .committed, notify: [], reason: nil)], durability: .forced)
            try await log.close()

            let reopened = try DecisionLog(path: path, options: testOptions())
            let (migrations, versions) = try await reopened.writer.read { db in
                (try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations"),
                 try Row.fetchAll(db, sql: "SELECT component, version FROM arbiter_schema_version").map { "\($0[0] as String)=\($0[1] as Int)" })
            }
            #expect(migrations == ["arbiter.coordinator.v1", "arbiter.coordinator.v2"])
            #expect(versions == ["coordinator=2"])  // a second run of v1 would have inserted again, or failed
            #expect(try await reopened.transaction(tx("kept"))?.state == .committing)
            try await reopened.close()
        }
    }

    @Test("a version-1 log is upgraded in place to version 2: every record kept, listings and recovery as before")
    func coordinatorUpgradeFromVersion1() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/coordinator.sqlite"
            let bank = ParticipantID("http://bank:8081")
            let branches = [Branch(participant: bank, payload: Payload(#"{"amount": 5}"#))]
            // A log as a version-1 coordinator left it: one transaction in each state.
            var version1 = DatabaseMigrator()
            version1.registerMigration("arbiter.coordinator.v1") { db in try db.execute(sql: Schemas.coordinator) }
            let queue = try DatabaseQueue(path: path)
            try version1.migrate(queue)
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
            #expect(try await queue.read { db in try Migrations.schemaVersion(of: "coordinator", in: db) } == 1)
            try queue.close()

            let log = try DecisionLog(path: path, options: testOptions())
            #expect(try await log.schemaVersion() == 2)
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
            #expect(migrations == ["arbiter.coordinator.v1", "arbiter.coordinator.v2", "arbiter.coordinator.v99"])
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
                try DecisionLog(path: "\(directory)/log.sqlite", options: testOptions(batchSizeMax: 0))
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
