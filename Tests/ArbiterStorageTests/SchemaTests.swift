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
        ("participant.sql", Schemas.participant),
    ])
    func embeddedCopiesMatchTheFiles(file: String, embedded: String) throws {
        let onDisk = try String(contentsOf: schemasDirectory.appendingPathComponent(file), encoding: .utf8)
        #expect(onDisk == embedded, "schemas/\(file) changed: run schemas/embed-in-swift.sh")
    }

    @Test("opening creates the tables and records schema version 1; reopening keeps data and runs nothing again")
    func coordinatorMigrations() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/coordinator.sqlite"
            let log = try DecisionLog(path: path, options: testOptions())
            #expect(try await log.schemaVersion() == 1)
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
            #expect(migrations == ["arbiter.coordinator.v1"])
            #expect(versions == ["coordinator=1"])  // a second run would have inserted again, or failed
            #expect(try await reopened.transaction(tx("kept"))?.state == .committing)
            try await reopened.close()
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
            #expect(migrations == ["arbiter.coordinator.v1", "arbiter.coordinator.v99"])
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
