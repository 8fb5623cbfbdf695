import Foundation
import GRDB

/// Arbiter's migrations: each schema version of a component is one GRDB migration that runs one
/// file of `schemas/` (embedded in ``Schemas``).
///
/// To change a format, never edit a released file or migration (databases that already ran it
/// would never see the edit). Instead add a file holding the change and the `UPDATE
/// arbiter_schema_version` to the new version (as `schemas/coordinator.v2.sql` does), add it to
/// `schemas/embed-in-swift.sh` and run it, and register the migration after the last one below.
/// GRDB then applies it once to every existing database, and all of them in order to a new one.
/// Nothing here ever sets `eraseDatabaseOnSchemaChange`: a decision log is forever.
enum Migrations {
    /// The coordinator's decision log.
    static var coordinator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("arbiter.coordinator.v1") { db in
            try db.execute(sql: Schemas.coordinator)
        }
        // Drops the (state, seq) index, a third of the pages of each forced commit.
        migrator.registerMigration("arbiter.coordinator.v2") { db in
            try db.execute(sql: Schemas.coordinator_v2)
        }
        // Removes the CHECKs and the index predicate over IN lists, for which SQLite built a
        // temporary B-tree in every write of a transaction row.
        migrator.registerMigration("arbiter.coordinator.v3") { db in
            try redefine(table: "coordinator_transaction", as: Schemas.coordinator_v3_table, in: db)
            try db.execute(sql: Schemas.coordinator_v3)
        }
        // The operators' audit trail, which retention never deletes.
        migrator.registerMigration("arbiter.coordinator.v4") { db in
            try db.execute(sql: Schemas.coordinator_v4)
        }
        return migrator
    }

    /// The participant's protocol tables, followed by the resource's own migrations.
    ///
    /// Arbiter's migrations are registered first so that a resource's migration may refer to them.
    /// Resource identifiers must not start with `arbiter.`.
    static func participant(then resourceMigrations: (inout DatabaseMigrator) -> Void) -> DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("arbiter.participant.v1") { db in
            try db.execute(sql: Schemas.participant)
        }
        // Writes the CHECK over an IN list as comparisons (as coordinator v3).
        migrator.registerMigration("arbiter.participant.v2") { db in
            try redefine(table: "participant_transaction", as: Schemas.participant_v2_table, in: db)
            try db.execute(sql: Schemas.participant_v2)
        }
        // The operators' audit trail, which retention never deletes.
        migrator.registerMigration("arbiter.participant.v3") { db in
            try db.execute(sql: Schemas.participant_v3)
        }
        resourceMigrations(&migrator)
        return migrator
    }

    /// Replaces the definition of `table` in `sqlite_schema` with `definition` (a `CREATE TABLE`
    /// of the same name and columns), without touching a stored row.
    ///
    /// This is SQLite's documented procedure for schema changes that do not change how rows are
    /// stored, such as removing a CHECK (https://www.sqlite.org/lang_altertable.html, "Making Other
    /// Kinds Of Table Schema Changes"): inside the migration's transaction, edit the definition
    /// with `writable_schema` on, then increment `schema_version` so that every connection reads
    /// the schema again. Unlike copying the table into a new one, it costs the same on a log of a
    /// billion rows as on an empty one. Use it only for changes every existing row already
    /// satisfies (a CHECK removed, or rewritten to allow exactly the same rows); every new database
    /// runs it too, so the tests exercise it on each database they open.
    static func redefine(table: String, as definition: String, in db: Database) throws {
        let definition = definition.trimmingCharacters(in: .whitespacesAndNewlines)
        guard definition.hasPrefix("CREATE TABLE \(table) (") else {
            throw DatabaseError(message: "the new definition of \(table) does not create \(table)")
        }
        let version = try Int.fetchOne(db, sql: "PRAGMA schema_version") ?? 0
        try db.execute(sql: "PRAGMA writable_schema = ON")
        defer { try? db.execute(sql: "PRAGMA writable_schema = OFF") }
        try db.execute(sql: "UPDATE sqlite_schema SET sql = ? WHERE type = 'table' AND name = ?", arguments: [definition, table])
        guard db.changesCount == 1 else {
            throw DatabaseError(message: "\(table) is not in this database's schema")
        }
        try db.execute(sql: "PRAGMA schema_version = \(version + 1)")
    }

    /// The schema version of `component` ("coordinator" or "participant") recorded in the database.
    static func schemaVersion(of component: String, in db: Database) throws -> Int? {
        try Int.fetchOne(db, sql: "SELECT version FROM arbiter_schema_version WHERE component = ?", arguments: [component])
    }
}
