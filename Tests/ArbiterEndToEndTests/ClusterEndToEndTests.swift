import ArbiterCore
import ArbiterTesting
import BankCluster
import Foundation
import Synchronization
import Testing

extension EndToEnd {
    /// A coordinator cluster as real processes: three `arbiter coordinator --store postgres://…`
    /// sharing a throwaway PostgreSQL (lease 1 s), three banks that know all three, and clients
    /// that fail over between them with the same ids. A coordinator crashes before or after its
    /// decision, stops past its lease and resumes, PostgreSQL itself restarts, or coordinators are
    /// killed at random; the bank's invariants must hold over every transaction issued, and the
    /// shared store must hold no open transaction once everything has settled.
    ///
    /// "Takeover" below is the time from a coordinator's loss until every transaction it had open
    /// in the store has ended, finished by the others (or by itself, restarted).
    @Suite("Coordinator cluster on PostgreSQL", .serialized,
           .enabled(if: PostgresServer.isAvailable, "needs PostgreSQL (Debian: postgresql)"))
    struct CoordinatorCluster {
        enum Crash: String, CaseIterable, CustomTestStringConvertible {
            case beforeDecision = "coordinator.before-decision-force"
            case afterDecision = "coordinator.after-decision-force"
            var testDescription: String { rawValue }
        }

        @Test("the coordinator the clients use crashes at a decision under load; the others finish its transactions",
              arguments: Crash.allCases)
        func crashAtDecision(_ crash: Crash) async throws {
            let database = try await PostgresServer()
            try await Scenario.run(
                "cluster: crash at \(crash.rawValue)", nodeCount: 3, accountsPerNode: 32, failpoints: [.coordinator: "\(crash.rawValue)=crash@20"],
                database: database
            ) { scenario in
                let load = scenario.workload(workers: 6)
                try await scenario.underLoad(load) {
                    try await scenario.waitForFailpoint(crash.rawValue, at: .coordinator)
                    let lost = ContinuousClock.now
                    // Open when the crash was seen, whoever owns them by the time the query runs:
                    // on a loaded machine a survivor may have claimed them already (lease 1 s).
                    let orphans = try await scenario.openTransactions(at: Date())
                    if crash == .afterDecision {
                        // The round it crashed in had forced decisions nobody has acknowledged yet.
                        #expect(!orphans.isEmpty, "the crashed coordinator left decided transactions open")
                    }
                    try await scenario.waitUntilEnded(orphans)
                    scenario.note("takeover of \(orphans.count) open transaction(s): \(ContinuousClock.now - lost)")
                    let answered = load.counts.answered
                    try await eventually("20 more transfers are answered without the crashed coordinator", timeout: .seconds(120), poll: .milliseconds(20)) {
                        load.counts.answered >= answered + 20
                    }
                }
                if crash == .afterDecision {
                    #expect(try scenario.peerLogs().contains("took over transactions"), "a survivor took the crashed coordinator's work over")
                }
            }
        }

        @Test("the coordinator the clients use stops past its lease (SIGSTOP) and resumes: it is fenced, nothing is decided twice")
        func pausedPastLease() async throws {
            let database = try await PostgresServer()
            try await Scenario.run("cluster: coordinator paused past its lease", nodeCount: 3, accountsPerNode: 32, database: database) { scenario in
                let load = scenario.workload(workers: 6)
                try await scenario.underLoad(load) {
                    try await eventually("30 transfers are answered", timeout: .seconds(120), poll: .milliseconds(5)) {
                        load.counts.answered >= 30
                    }
                    let pid = scenario.cluster.process(.coordinator)!.pid
                    kill(pid, SIGSTOP)
                    let lost = ContinuousClock.now
                    let orphans = try await scenario.openTransactions(at: Date())
                    do {
                        try await scenario.waitUntilEnded(orphans)
                    } catch {
                        kill(pid, SIGCONT)
                        throw error
                    }
                    scenario.note("takeover of \(orphans.count) open transaction(s) while it was stopped: \(ContinuousClock.now - lost)")
                    // It resumes believing it owns them: its writes for them must be refused.
                    try await Task.sleep(for: .milliseconds(ClusterTimeouts.leaseMs))
                    kill(pid, SIGCONT)
                    let answered = load.counts.answered
                    try await eventually("20 more transfers are answered after it resumed", timeout: .seconds(120), poll: .milliseconds(20)) {
                        load.counts.answered >= answered + 20
                    }
                }
                #expect(try scenario.peerLogs().contains("took over transactions"), "a survivor took the paused coordinator's work over")
            }
        }

        @Test("PostgreSQL itself restarts under load: the coordinators reconnect and nothing decided is lost")
        func databaseRestarts() async throws {
            let database = try await PostgresServer()
            try await Scenario.run("cluster: PostgreSQL restarted", nodeCount: 3, accountsPerNode: 32, database: database) { scenario in
                let load = scenario.workload(workers: 6)
                try await scenario.underLoad(load) {
                    try await eventually("30 transfers are answered", timeout: .seconds(120), poll: .milliseconds(5)) {
                        load.counts.answered >= 30
                    }
                    try await database.stop()
                    scenario.note("PostgreSQL stopped after \(load.counts.answered) answers")
                    try await Task.sleep(for: .seconds(2))  // The outage (a fault schedule, not a synchronisation).
                    try await database.start()
                    let answered = load.counts.answered
                    scenario.note("PostgreSQL started again; \(answered) answers so far")
                    try await eventually("30 more transfers are answered after PostgreSQL is back", timeout: .seconds(120), poll: .milliseconds(20)) {
                        load.counts.answered >= answered + 30
                    }
                }
                for coordinator in scenario.cluster.coordinators {
                    #expect(scenario.cluster.isRunning(coordinator), "\(coordinator) rode out the outage")
                }
            }
        }

        /// How long coordinators are killed for: `ARBITER_CLUSTER_CHAOS_SECONDS` (default 20).
        static var chaosSeconds: Int {
            ProcessInfo.processInfo.environment["ARBITER_CLUSTER_CHAOS_SECONDS"].flatMap(Int.init).map { max(1, $0) } ?? 20
        }

        /// Every one to three seconds a random coordinator is killed (SIGKILL); it stays down one
        /// to three leases, so the others take its transactions over, then it restarts under the
        /// same name. Prints each takeover's time and their median and maximum.
        @Test("coordinators killed at random under load: every takeover completes and the invariants hold")
        func chaos() async throws {
            let seconds = Self.chaosSeconds
            let database = try await PostgresServer()
            let takeovers = Mutex<[Duration]>([])
            try await Scenario.run("cluster chaos \(seconds) s (3 coordinators, 3 banks)", nodeCount: 3, accountsPerNode: 32,
                                   database: database) { scenario in
                let cluster = scenario.cluster
                let load = scenario.workload(workers: 8)
                try await scenario.chaos(for: seconds, under: load, seed: 0x5EED_C1A5_7E25, pause: 1_000...3_000) { random in
                    let victim = cluster.coordinators[Int.random(in: 0..<cluster.coordinators.count, using: &random)]
                    scenario.kill(victim)
                    let clock = ContinuousClock()
                    let lost = clock.now
                    let orphans = try await scenario.openTransactions(of: victim)
                    // The takeover is timed while the victim stays down; if it outlasts the
                    // down time, the restarted victim finishes the rest itself.
                    async let ended: Duration = {
                        try await scenario.waitUntilEnded(orphans)
                        return clock.now - lost
                    }()
                    try await Task.sleep(for: .milliseconds(ClusterTimeouts.leaseMs * Int.random(in: 1...3, using: &random)))
                    try await scenario.restart(victim)
                    let took = try await ended
                    if !orphans.isEmpty { takeovers.withLock { $0.append(took) } }
                    scenario.note("killed \(victim) with \(orphans.count) open\(orphans.isEmpty ? "" : "; all ended \(took) later") (answers so far: \(load.counts.answered))")
                }
                let times = takeovers.withLock { $0 }.sorted()
                if let longest = times.last {
                    let ms = { (duration: Duration) in
                        String(format: "%.0f ms", Double(duration.components.seconds) * 1e3 + Double(duration.components.attoseconds) / 1e15)
                    }
                    scenario.note("takeovers (kill to the last of its open transactions ended): \(times.count) kills with open transactions, "
                                  + "p50 \(ms(times[times.count / 2])), max \(ms(longest)) (lease \(ClusterTimeouts.leaseMs) ms, sweep every 200 ms)")
                }
            }
        }
    }
}

extension Scenario {
    /// The transactions `coordinator` holds open in the shared store: to be taken over.
    func openTransactions(of coordinator: BankCluster.Member) async throws -> [String] {
        let name = coordinator.description.replacingOccurrences(of: " ", with: "-")
        return try await txids(where: "NOT ended AND owner = '\(name)'")
    }

    /// The transactions open in the shared store at `moment` (begun before it, not ended by then),
    /// whoever owns them now: in a scenario whose clients use one coordinator, that one's.
    func openTransactions(at moment: Date) async throws -> [String] {
        let time = "to_timestamp(\(String(format: "%.6f", moment.timeIntervalSince1970)))"
        return try await txids(where: "created_at <= \(time) AND (NOT ended OR ended_at > \(time))")
    }

    /// The ids of the shared store's transactions that `condition` (SQL) selects.
    private func txids(where condition: String) async throws -> [String] {
        guard let database else { return [] }
        let rows = try await database.psql("SELECT txid FROM arbiter_transaction WHERE \(condition)")
        return rows.split(separator: "\n").map(String.init).filter { !$0.isEmpty }
    }

    /// Waits until every transaction of `txids` has ended in the shared store.
    func waitUntilEnded(_ txids: [String]) async throws {
        guard let database, !txids.isEmpty else { return }
        let list = txids.map { "'\($0)'" }.joined(separator: ",")
        try await eventually("\(txids.count) orphaned transaction(s) end", timeout: .seconds(120), poll: .milliseconds(20)) {
            try await database.psql("SELECT count(*) FROM arbiter_transaction WHERE NOT ended AND txid IN (\(list))") == "0\n"
        }
    }

    /// What the coordinators other than the first wrote to their logs.
    func peerLogs() throws -> String {
        try cluster.peers.map { try String(contentsOfFile: cluster.logFile($0), encoding: .utf8) }.joined(separator: "\n")
    }
}
