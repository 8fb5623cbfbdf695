import ArbiterCore
import Foundation
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

/// Conversions between the values of ArbiterCore and what the tables store, shared by the
/// coordinator's and the participant's stores. Decoding never trusts the file: a malformed value
/// is reported as ``StorageError/Code/corrupt``, never a crash.
enum Stored {
    /// Unix milliseconds, the unit of every `*_at_ms` column.
    static func milliseconds(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
    }

    static func date(_ milliseconds: Int64) -> Date {
        Date(timeIntervalSince1970: TimeInterval(milliseconds) / 1000)
    }

    static func date(_ milliseconds: Int64?) -> Date? {
        milliseconds.map(date)
    }

    static func txid(_ text: String) throws(StorageError) -> TxID {
        do {
            return try TxID(text)
        } catch {
            throw StorageError(.corrupt, "the stored transaction id \(text.debugDescription) is invalid (\(error)); the database was modified outside Arbiter", cause: error)
        }
    }

    static func value<T: RawRepresentable<String>>(_ type: T.Type, _ text: String, column: String) throws(StorageError) -> T {
        guard let value = T(rawValue: text) else {
            throw StorageError(.corrupt, "the stored \(column) \(text.debugDescription) is not one Arbiter writes; the database was modified outside Arbiter")
        }
        return value
    }

    static func decodeJSON<T: Decodable>(_ type: T.Type, _ text: String, column: String) throws(StorageError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(text.utf8))
        } catch {
            throw StorageError(.corrupt, "the stored \(column) is not the JSON Arbiter writes (\(error)); the database was modified outside Arbiter", cause: error)
        }
    }

    /// `strings` as a JSON array of strings.
    ///
    /// Written by hand, like ``jsonObject(_:)``: JSONEncoder cost more than the rest of a commit
    /// decision's write (a perf profile of the forced-decision benchmark), and these columns only
    /// ever hold strings. They are read back with JSONDecoder.
    static func jsonArray(_ strings: some Sequence<String>) -> String {
        var json = "["
        for (index, string) in strings.enumerated() {
            if index > 0 { json += "," }
            appendJSONString(string, to: &json)
        }
        return json + "]"
    }

    /// `members` as a JSON object whose values are strings, in the order given.
    static func jsonObject(_ members: KeyValuePairs<String, String>) -> String {
        var json = "{"
        for (index, (key, value)) in members.enumerated() {
            if index > 0 { json += "," }
            appendJSONString(key, to: &json)
            json += ":"
            appendJSONString(value, to: &json)
        }
        return json + "}"
    }

    /// Appends `string` as a JSON string literal (RFC 8259 §7: escape the quote, the backslash and
    /// the control characters; everything else stays as it is, in UTF-8).
    static func appendJSONString(_ string: String, to json: inout String) {
        json += "\""
        defer { json += "\"" }
        // Ids and payloads rarely need escaping: copy them whole.
        if !string.utf8.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) {
            json += string
            return
        }
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": json += "\\\""
            case "\\": json += "\\\\"
            case "\n": json += "\\n"
            case "\r": json += "\\r"
            case "\t": json += "\\t"
            case "\u{00}"..."\u{1F}":
                let hex = String(scalar.value, radix: 16)
                json += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: json.unicodeScalars.append(scalar)
            }
        }
    }
}
