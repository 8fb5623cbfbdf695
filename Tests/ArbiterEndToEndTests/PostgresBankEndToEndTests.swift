import ArbiterCore
import ArbiterTesting
import BankCluster
import Foundation
import Testing

/// Banks that keep their accounts in PostgreSQL (`bank-node --postgres`): each branch is plain SQL in
/// a transaction the node prepares (`PREPARE TRANSACTION`) and commits (`COMMIT PREPARED`). The same
/// scenarios as the SQLite banks' — a crash at every participant failpoint, random SIGKILLs — plus
/// PostgreSQL itself crashing while transactions are prepared; besides the bank's invariants, no
/// prepared transaction may be left in PostgreSQL once the cluster has settled.
@Suite("End to end: banks on PostgreSQL", .serialized,
       .enabled(if: PostgresServer.isAvailable, "needs PostgreSQL (Debian: postgresql)"))
struct PostgresBankEndToEndTests {
    /// A throwaway PostgreSQL cluster whose `max_prepared_transactions` covers a bank's default.
    static func database(maxPrepared: Int = 200) async throws -> PostgresServer {
        try await PostgresServer(database: "bank", settings: ["max_prepared_transactions": "\(maxPrepared)"])
    }

    /// A new database `name` in `server` for one bank (each bank has its own), and its URL.
    static func bankDatabase(_ server: PostgresServer, _ name: String) async throws -> String {
        try await server.psql("CREATE DATABASE \(name)")
        return "postgres://postgres@127.0.0.1:\(server.port)/\(name)"
    }

    /// Prepared transactions PostgreSQL still holds (in every database).
    static func preparedCount(_ database: PostgresServer) async throws -> Int {
        Int(try await database.psql("SELECT count(*) FROM pg_prepared_xacts").trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    /// The names of the prepared transactions PostgreSQL holds (in every database).
    static func preparedGIDs(_ database: PostgresServer) async throws -> [String] {
        try await database.psql("SELECT gid FROM pg_prepared_xacts").split(separator: "\n").map(String.init)
    }

    static let participantFailpoints = [
        "participant.before-prepare-force", "participant.after-prepare-force", "participant.before-vote",
        "participant.before-commit-force", "participant.after-commit-force", "participant.before-ack",
    ]

    @Test("transfers between a PostgreSQL bank and a SQLite bank: all-or-nothing, money conserved, nothing left prepared")
    func mixedBanks() async throws {
        let database = try await Self.database()
        try await Scenario.run("postgres and sqlite banks", accountsPerNode: 16, postgres: [0: database.url]) { scenario in
            let load = scenario.workload()
            try await scenario.underLoad(load) {
                try await eventually("100 transfers are answered", timeout: .seconds(120), poll: .milliseconds(20)) {
                    load.counts.answered >= 100
                }
            }
            scenario.note("load stopped: \(load.counts)")
            #expect(load.counts.committed > 0, "some transfers commit")
        }
        #expect(try await Self.preparedCount(database) == 0, "no prepared transaction is left in PostgreSQL")
        try await database.stop()
    }

    @Test("a crash at a participant failpoint of a PostgreSQL bank, restart, settle: invariants hold, nothing left prepared",
          arguments: participantFailpoints)
    func crash(_ failpoint: String) async throws {
        let database = try await Self.database()
        let seed = Scenario.seed()
        let hit = 5 + Int(seed % 36)
        try await Scenario.run("postgres bank crash at \(failpoint)", accountsPerNode: 64,
                               failpoints: [.node(0): "\(failpoint)=crash@\(hit)"], seed: seed,
                               postgres: [0: try await Self.bankDatabase(database, "bank0"), 1: try await Self.bankDatabase(database, "bank1")]) { scenario in
            let load = scenario.workload()
            try await scenario.underLoad(load) {
                try await scenario.waitForFailpoint(failpoint, at: .node(0))
                scenario.note("node 0 crashed at hit \(hit) of \(failpoint) after \(load.counts.answered) answers; restarting it without the failpoint")
                try await scenario.restart(.node(0))
                let answered = load.counts.answered
                try await eventually("50 more transfers are answered after the restart", timeout: .seconds(120), poll: .milliseconds(20)) {
                    load.counts.answered >= answered + 50
                }
            }
            scenario.note("load stopped: \(load.counts)")
        }
        #expect(try await Self.preparedCount(database) == 0, "no prepared transaction is left in PostgreSQL")
        try await database.stop()
    }

    /// The coordinator is killed under load, so that the banks hold transactions prepared and in
    /// doubt; then PostgreSQL crashes (immediate shutdown) and comes back, the banks reconnect, the
    /// coordinator restarts, and every transaction in doubt is resolved by inquiry.
    @Test("PostgreSQL crashes and restarts while transactions are prepared: they survive and are resolved")
    func postgresRestartedWhilePrepared() async throws {
        let database = try await Self.database()
        try await Scenario.run("postgres restarted while prepared", accountsPerNode: 16,
                               postgres: [0: try await Self.bankDatabase(database, "bank0"), 1: try await Self.bankDatabase(database, "bank1")]) { scenario in
            let load = scenario.workload()
            try await scenario.underLoad(load) {
                try await eventually("30 transfers are answered", timeout: .seconds(120), poll: .milliseconds(20)) {
                    load.counts.answered >= 30
                }
                // Without the coordinator, what the banks prepared stays prepared.
                var prepared = 0
                for _ in 0..<20 where prepared == 0 {
                    scenario.kill(.coordinator)
                    prepared = try await Self.preparedCount(database)
                    if prepared == 0 {
                        try await scenario.restart(.coordinator)
                        try await Task.sleep(for: .milliseconds(300))
                    }
                }
                scenario.note("coordinator killed with \(prepared) transaction(s) prepared in PostgreSQL")
                #expect(prepared > 0, "the kill caught transactions prepared")
                // Nothing decides them without the coordinator (an abort it sent before dying may
                // still arrive): at least one prepared before the crash must be there after it.
                let before = Set(try await Self.preparedGIDs(database))
                try await database.crash()
                try await database.start()
                let after = Set(try await Self.preparedGIDs(database))
                scenario.note("PostgreSQL crashed and restarted: \(before.count) prepared before, \(after.count) after, \(before.intersection(after).count) of them the same")
                #expect(!before.intersection(after).isEmpty, "PostgreSQL kept the prepared transactions across its crash")
                try await scenario.restart(.coordinator)
                let answered = load.counts.answered
                try await eventually("30 more transfers are answered after the restarts", timeout: .seconds(120), poll: .milliseconds(20)) {
                    load.counts.answered >= answered + 30
                }
            }
            scenario.note("load stopped: \(load.counts)")
        }
        #expect(try await Self.preparedCount(database) == 0, "no prepared transaction is left in PostgreSQL")
        try await database.stop()
    }

    /// Three banks, two on PostgreSQL and one on SQLite, under eight clients; a random process is
    /// killed every one to four seconds (`ARBITER_CHAOS_SECONDS`, default 20 here).
    @Test("random SIGKILLs with PostgreSQL and SQLite banks under load: invariants hold, nothing left prepared")
    func mixedChaos() async throws {
        let seconds = ProcessInfo.processInfo.environment["ARBITER_CHAOS_SECONDS"].flatMap(Int.init).map { max(1, $0) } ?? 20
        let database = try await Self.database()
        try await Scenario.run("chaos \(seconds) s (2 postgres banks, 1 sqlite bank)", nodeCount: 3, accountsPerNode: 64,
                               postgres: [0: try await Self.bankDatabase(database, "bank0"), 2: try await Self.bankDatabase(database, "bank2")]) { scenario in
            let cluster = scenario.cluster
            let load = scenario.workload(workers: 8)
            try await scenario.chaos(for: seconds, under: load, seed: 0x5051_4C43_4841_4F53, pause: 1_000...4_000) { random in
                let victim = cluster.members[Int.random(in: 0..<cluster.members.count, using: &random)]
                scenario.kill(victim)
                scenario.note("killed \(victim) (answers so far: \(load.counts.answered))")
                try await Task.sleep(for: .milliseconds(Int.random(in: 0...1_000, using: &random)))
                try await scenario.restart(victim)
            }
        }
        #expect(try await Self.preparedCount(database) == 0, "no prepared transaction is left in PostgreSQL")
        try await database.stop()
    }

    @Test("a bank refuses to start when PostgreSQL's max_prepared_transactions is 0, and says what to set")
    func refusesWithoutPreparedTransactions() async throws {
        let database = try await Self.database(maxPrepared: 0)
        let root = try TemporaryDirectory(prefix: "arbiter-e2e-pg-refuse")
        try "secret-\(UUID().uuidString)\n".write(toFile: root.path + "/secret", atomically: true, encoding: .utf8)
        let node = try ManagedProcess(name: "bank-node", executable: try builtProduct("bank-node"), arguments: [
            "--postgres", database.url, "--port", "0", "--coordinator", "http://127.0.0.1:1", "--secret-file", root.path + "/secret",
        ])
        try await node.waitForExit(timeout: .seconds(60))
        #expect(node.exitStatus != 0)
        #expect(node.log.contains("max_prepared_transactions = 0"), "the error names the setting: \(node.log.suffix(2000))")
        try await database.stop()
    }
}
