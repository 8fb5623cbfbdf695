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
        // Rebuilds the transaction table without CHECKs and index predicates over IN lists, which
        // made SQLite build a temporary B-tree in every write of a transaction row.
        migrator.registerMigration("arbiter.coordinator.v3") { db in
            try db.execute(sql: Schemas.coordinator_v3)
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
        // Rebuilds the transaction table without the CHECK over an IN list (as coordinator v3).
        migrator.registerMigration("arbiter.participant.v2") { db in
            try db.execute(sql: Schemas.participant_v2)
        }
        resourceMigrations(&migrator)
        return migrator
    }

    /// The schema version of `component` ("coordinator" or "participant") recorded in the database.
    static func schemaVersion(of component: String, in db: Database) throws -> Int? {
        try Int.fetchOne(db, sql: "SELECT version FROM arbiter_schema_version WHERE component = ?", arguments: [component])
    }
}
