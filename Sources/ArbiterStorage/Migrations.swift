import GRDB

/// Arbiter's migrations: each schema version of a component is one GRDB migration that runs one
/// file of `schemas/` (embedded in ``Schemas``).
///
/// To change a format, never edit a released file or migration (databases that already ran it
/// would never see the edit). Instead add `schemas/coordinator.v2.sql` holding the change and
/// `UPDATE arbiter_schema_version SET version = 2 WHERE component = 'coordinator';`, run
/// `schemas/embed-in-swift.sh`, and register `"arbiter.coordinator.v2"` after v1 below. GRDB then
/// applies v2 once to every existing database and v1 + v2 to a new one. Nothing here ever sets
/// `eraseDatabaseOnSchemaChange`: a decision log is forever.
enum Migrations {
    /// The coordinator's decision log.
    static var coordinator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("arbiter.coordinator.v1") { db in
            try db.execute(sql: Schemas.coordinator)
        }
        // Next: migrator.registerMigration("arbiter.coordinator.v2") { db in try db.execute(sql: Schemas.coordinator_v2) }
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
        // Next: migrator.registerMigration("arbiter.participant.v2") { db in try db.execute(sql: Schemas.participant_v2) }
        resourceMigrations(&migrator)
        return migrator
    }

    /// The schema version of `component` ("coordinator" or "participant") recorded in the database.
    static func schemaVersion(of component: String, in db: Database) throws -> Int? {
        try Int.fetchOne(db, sql: "SELECT version FROM arbiter_schema_version WHERE component = ?", arguments: [component])
    }
}
