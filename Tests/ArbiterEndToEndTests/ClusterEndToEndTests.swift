import ArbiterClient
import ArbiterCore
import ArbiterHTTP
import ArbiterTesting
import BankCluster
import Foundation
import Synchronization
import Testing

enum CoordinatorLoss: String, CaseIterable, CustomTestStringConvertible {
    /// SIGKILL: the process is gone.
    case killed
    /// SIGSTOP for three leases, then SIGCONT: it resumes believing it owns its transactions.
    case paused

    var testDescription: String { rawValue }
}

/// A coordinator cluster as real processes: three `arbiter coordinator --store postgres://…` on a
/// throwaway PostgreSQL and two banks that know all three. Under load, the coordinator the clients
/// use dies (SIGKILL) or stops past its lease (SIGSTOP, then SIGCONT); the others take its
/// transactions over, the clients resubmit to another coordinator with the same ids, and the bank's
/// invariants must hold once everything has settled.
@Suite("End to end: a coordinator cluster on PostgreSQL", .serialized,
       .enabled(if: PostgresServer.isAvailable, "needs PostgreSQL (Debian: postgresql)"))
struct ClusterEndToEndTests {
    static let lease: Duration = .milliseconds(1000)

    @Test("under load, the coordinator clients use is lost; the others finish its transactions and the bank's invariants hold",
          arguments: CoordinatorLoss.allCases)
    func coordinatorLost(_ loss: CoordinatorLoss) async throws {
        let root = try TemporaryDirectory(prefix: "arbiter-e2e-cluster")
        let database = try await PostgresServer()
        let cluster = try BankCluster(options: .init(
            nodeCount: 2, root: root.path + "/cluster", launcher: .builtProducts(),
            coordinatorArguments: ["--lease-ms", "\(Self.lease.components.seconds * 1000)", "--sweep-ms", "200", "--prepare-timeout-ms", "2000"],
            store: database.url, peerCount: 2))
        do {
            try await cluster.start()
            let total = 20_000
            try await cluster.openAccount("alice", balance: total / 2, at: 0)
            try await cluster.openAccount("bob", balance: total / 2, at: 1)

            // Four clients move money both ways; each asks the first coordinator, and when it does
            // not answer, the next one with the same id.
            let tally = Tally()
            let order = [BankCluster.Member.coordinator, .peer(0), .peer(1)]
            let clients = order.map { cluster.client(retry: RetryPolicy(attemptCountMax: 1), of: $0) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<4 {
                    group.addTask {
                        for number in 0..<15 {
                            let txid = try TxID("w\(worker)-\(number)")
                            let (from, to) = number % 2 == 0 ? ("alice", "bob") : ("bob", "alice")
                            let branches = [cluster.branch(.debit, from, 7, at: from == "alice" ? 0 : 1),
                                            cluster.branch(.credit, to, 7, at: to == "alice" ? 0 : 1)]
                            var told: Outcome?
                            attempts: for attempt in 0..<12 {
                                for client in clients {
                                    if let result = try? await client.submit(branches: branches, id: txid, timeout: .seconds(2)) {
                                        told = result.outcome
                                        break attempts
                                    }
                                }
                                try await Task.sleep(for: .milliseconds(100 * (attempt + 1)))
                            }
                            tally.add(IssuedTransaction(txid: txid, nodes: [0, 1], told: told))
                        }
                    }
                }
                group.addTask {
                    try await eventually("a third of the transfers were answered", timeout: .seconds(120), poll: .milliseconds(5)) {
                        tally.answered >= 20
                    }
                    let pid = cluster.process(.coordinator)!.pid
                    let lostAt = ContinuousClock.now
                    let cutoff = try await database.psql("SELECT now()").trimmingCharacters(in: .whitespacesAndNewlines)
                    switch loss {
                    case .killed: cluster.kill(.coordinator)
                    case .paused: kill(pid, SIGSTOP)
                    }
                    // Takeover: until every transaction the store held open when the coordinator
                    // was lost has ended (the survivors claimed and finished it).
                    try await eventually("the lost coordinator's open transactions ended", timeout: .seconds(120), poll: .milliseconds(20)) {
                        try await database.psql("SELECT count(*) FROM arbiter_transaction WHERE NOT ended AND created_at <= '\(cutoff)'") == "0\n"
                    }
                    tally.takeover = ContinuousClock.now - lostAt
                    if loss == .paused {
                        try await Task.sleep(for: Self.lease)
                        kill(pid, SIGCONT)
                    }
                }
                try await group.waitForAll()
            }

            let lost = ContinuousClock.now
            try await cluster.waitUntilSettled(timeout: .seconds(120))
            let transactions = tally.issued
            let report = try await cluster.checkInvariants(expectedTotal: total, transactions: transactions)
            print("cluster, coordinator \(loss): \(transactions.count) transfers, \(transactions.filter { $0.told != nil }.count) answered; its open transactions ended \(tally.takeover.map { "\($0)" } ?? "?") after it was lost (lease \(Self.lease)); settled \(ContinuousClock.now - lost) after the load ended\n\(report)")
            #expect(report.passed, "\(report)")
            #expect(transactions.allSatisfy { $0.told != nil }, "every client got an answer from some coordinator")
            // Nothing is left open in the shared store, and no decision was ever changed (the
            // store's trigger would have refused it, failing a round).
            #expect(try await database.psql("SELECT count(*) FROM arbiter_transaction WHERE NOT ended") == "0\n")
            if loss == .paused, cluster.isRunning(.coordinator) {
                // It resumed after the others had taken its open transactions over.
                let peers = try String(contentsOfFile: cluster.logFile(.peer(0)), encoding: .utf8)
                    + String(contentsOfFile: cluster.logFile(.peer(1)), encoding: .utf8)
                #expect(peers.contains("took over transactions"), "a survivor took the paused coordinator's work over")
            }
        } catch {
            root.keep()
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
    }
}

/// What the clients of a test issued, shared by their tasks.
final class Tally: Sendable {
    private let state = Mutex<[IssuedTransaction]>([])
    private let measured = Mutex<Duration?>(nil)
    /// From the loss of a coordinator until every transaction open then had ended.
    var takeover: Duration? {
        get { measured.withLock { $0 } }
        set { measured.withLock { $0 = newValue } }
    }
    func add(_ transaction: IssuedTransaction) { state.withLock { $0.append(transaction) } }
    var issued: [IssuedTransaction] { state.withLock { $0 } }
    var answered: Int { state.withLock { $0.count { $0.told != nil } } }
}
