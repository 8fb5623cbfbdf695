import ArbiterCore
import ArbiterParticipant
import GRDB
import Synchronization

/// A payload that tells ``ScriptedResource`` how to vote: `{"vote": "yes"|"no"|"readOnly"|"throw",
/// "locks": ["k"], "value": "v"}`.
struct Script: Decodable, Sendable {
    var vote: String
    var locks: [String]?
    var value: String?

    private enum CodingKeys: String, CodingKey { case vote, locks, value }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        vote = try container.decode(String.self, forKey: .vote)
        locks = try container.decodeIfPresent([String].self, forKey: .locks)
        value = try container.decodeIfPresent(String.self, forKey: .value)
        if let value { scriptDecodeCounts.withLock { $0[value, default: 0] += 1 } }
    }
}

/// How many times a script with each `value` was decoded, across every test (give a test's
/// scripts values of their own).
let scriptDecodeCounts = Mutex<[String: Int]>([:])

/// A resource whose votes the payload scripts. It writes a `staged` row at stage (before voting, so
/// that a `no`, a read-only vote or a throw must roll it back), moves it to `applied` at commit and
/// to `discarded` at abort.
struct ScriptedResource: Resource {
    struct Boom: Error, CustomStringConvertible {
        var description: String { "scripted failure in stage" }
    }

    /// How many more times `apply` throws before it works (a resource bug, or a transient error).
    let applyFailures = FailureBudget()

    func migrate(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("script.v1") { db in
            try db.execute(sql: """
                CREATE TABLE staged (txid TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                CREATE TABLE applied (txid TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL, heuristic INTEGER NOT NULL);
                CREATE TABLE discarded (txid TEXT PRIMARY KEY NOT NULL, heuristic INTEGER NOT NULL);
                """)
        }
    }

    func stage(_ script: Script, in context: StageContext) throws -> Vote {
        for key in script.locks ?? [] { try context.lock(key) }
        try context.db.execute(sql: "INSERT INTO staged (txid, value) VALUES (?, ?)",
            arguments: [context.txid.rawValue, script.value ?? ""])
        switch script.vote {
        case "yes": return .yes
        case "no": return .no(reason: "scripted refusal")
        case "readOnly": return .readOnly
        default: throw Boom()
        }
    }

    func apply(_ script: Script, in context: OutcomeContext) throws {
        try applyFailures.spend()
        try context.db.execute(sql: "DELETE FROM staged WHERE txid = ?", arguments: [context.txid.rawValue])
        try context.db.execute(sql: "INSERT INTO applied (txid, value, heuristic) VALUES (?, ?, ?)",
            arguments: [context.txid.rawValue, script.value ?? "", context.isHeuristic])
    }

    func discard(_ script: Script, in context: OutcomeContext) throws {
        try context.db.execute(sql: "DELETE FROM staged WHERE txid = ?", arguments: [context.txid.rawValue])
        try context.db.execute(sql: "INSERT INTO discarded (txid, heuristic) VALUES (?, ?)",
            arguments: [context.txid.rawValue, context.isHeuristic])
    }
}

/// A number of failures to inject, shared by copies of the resource.
final class FailureBudget: Sendable {
    struct Injected: Error {}
    private let remaining = Mutex(0)
    func set(_ count: Int) { remaining.withLock { $0 = count } }
    var left: Int { remaining.withLock { $0 } }
    func spend() throws {
        let fail = remaining.withLock { remaining -> Bool in
            guard remaining > 0 else { return false }
            remaining -= 1
            return true
        }
        if fail { throw Injected() }
    }
}

/// What the scripted tables hold for one transaction.
struct ScriptRows: Equatable, Sendable {
    var staged = false
    var applied = false
    var discarded = false
}

extension RunningNode where R == ScriptedResource {
    func rows(_ txid: String) async throws -> ScriptRows {
        try await database.read { db in
            ScriptRows(
                staged: try Bool.fetchOne(db, sql: "SELECT count(*) > 0 FROM staged WHERE txid = ?", arguments: [txid]) ?? false,
                applied: try Bool.fetchOne(db, sql: "SELECT count(*) > 0 FROM applied WHERE txid = ?", arguments: [txid]) ?? false,
                discarded: try Bool.fetchOne(db, sql: "SELECT count(*) > 0 FROM discarded WHERE txid = ?", arguments: [txid]) ?? false
            )
        }
    }
}

/// Payload texts.
enum Scripts {
    static func vote(_ vote: String, locks: [String] = [], value: String = "v") -> String {
        let lockList = locks.map { "\"\($0)\"" }.joined(separator: ",")
        return #"{"vote":"\#(vote)","locks":[\#(lockList)],"value":"\#(value)"}"#
    }
}
