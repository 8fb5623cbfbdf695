import ArbiterClient
import ArbiterCore
import ArbiterTesting
import ArgumentParser
import BankCluster
import Foundation
import Synchronization

/// `bank-demo`: money moves between banks that are separate processes, a bank and then the
/// coordinator are killed mid-run, and every cent is still there at the end.
@main
struct BankDemo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bank-demo",
        abstract: "Transfer money across bank processes through an Arbiter coordinator, crash things, check every cent.",
        discussion: """
            Starts a coordinator and --nodes bank nodes as separate processes on free loopback ports \
            (data in a temporary directory), opens accounts, and runs --transfers random transfers \
            from --concurrency clients: most between two banks (a two-phase transaction), some \
            inside one bank (a one-branch transaction, committed in one phase). Unless --no-crashes, \
            it kills one bank with SIGKILL a third of the way in and restarts it, then does the same \
            to the coordinator. Then it waits until every transaction has ended and checks: the sum \
            of all balances is unchanged, no balance is negative, no prepared record or lock remains, \
            and every outcome a client was told is what the banks hold. Exits non-zero if a check \
            fails, and stops every process it started.

            With --coordinators 3 it runs a coordinator cluster instead: three coordinators share a \
            PostgreSQL decision store (--store, or a throwaway PostgreSQL started from the one \
            installed on this machine), the banks and clients know all three, and the coordinator \
            the clients use is killed two thirds of the way in and left down: the others take its \
            transactions over, and the demo shows how long that took.
            """
    )

    @Option(help: "How many bank nodes.")
    var nodes: Int = 3

    @Option(help: "Accounts per bank.")
    var accounts: Int = 25

    @Option(help: "Opening balance of each account, in cents.")
    var balance: Int = 100_000

    @Option(help: "How many transfers.")
    var transfers: Int = 2000

    @Option(help: "Concurrent clients.")
    var concurrency: Int = 8

    @Flag(inversion: .prefixedNo, help: "Kill a bank and then the coordinator mid-run (SIGKILL) and restart them.")
    var crashes = true

    @Option(help: "How many coordinators. More than one runs a cluster on a shared PostgreSQL store.")
    var coordinators: Int = 1

    @Option(help: ArgumentHelp(
        "The cluster's PostgreSQL store, postgres://USER@HOST:PORT/DB (a password in PGPASSWORD). Default: a throwaway PostgreSQL.",
        valueName: "url"))
    var store: String?

    @Flag(help: "All clients share one ArbiterClient that batches their concurrent submits (POST /v1/transaction-batch).")
    var clientBatching = false

    @Option(help: "Seed of the random transfers (default: random).")
    var seed: UInt64?

    @Flag(help: "Keep the data directory instead of removing it.")
    var keep = false

    func validate() throws {
        guard nodes >= 2 else { throw ValidationError("--nodes must be at least 2, to transfer between banks") }
        guard accounts >= 2 else { throw ValidationError("--accounts must be at least 2, to transfer within a bank") }
        guard balance > 0, transfers > 0, concurrency > 0 else { throw ValidationError("--balance, --transfers and --concurrency must be positive") }
        guard (1...9).contains(coordinators) else { throw ValidationError("--coordinators must be between 1 and 9") }
        guard store == nil || coordinators > 1 else { throw ValidationError("--store is for a cluster: give --coordinators 2 or more") }
        if coordinators > 1, store == nil, !PostgresServer.isAvailable {
            throw ValidationError("--coordinators \(coordinators) needs PostgreSQL: install it (Debian: apt-get install postgresql) or name one with --store")
        }
    }

    func run() async throws {
        let directory = try TemporaryDirectory(prefix: "arbiter-demo")
        defer { if !keep { directory.remove() } }
        let seed = self.seed ?? UInt64.random(in: 1...UInt64(UInt32.max))
        // A cluster's store: the one named, or a throwaway PostgreSQL that lives as long as the demo.
        let database: PostgresServer? = coordinators > 1 && store == nil ? try await PostgresServer(database: "arbiter_demo") : nil
        let storeURL = store ?? database?.url
        var coordinatorArguments = ["--prepare-timeout-ms", "2000", "--retry-initial-ms", "50", "--retry-max-ms", "1000"]
        if storeURL != nil { coordinatorArguments += ["--lease-ms", "2000", "--sweep-ms", "250"] }
        let cluster = try BankCluster(options: .init(
            nodeCount: nodes, root: directory.path, launcher: try .builtProducts(),
            coordinatorArguments: coordinatorArguments, store: storeURL, peerCount: coordinators - 1))
        if coordinators > 1 {
            print("Arbiter bank demo — \(coordinators) coordinators sharing the PostgreSQL store \(database == nil ? "given" : "at \(storeURL!) (throwaway)") and \(nodes) banks, each its own process; data in \(directory.path)\(keep ? "" : " (removed at the end)")")
        } else {
            print("Arbiter bank demo — a coordinator and \(nodes) banks, each its own process; data in \(directory.path)\(keep ? "" : " (removed at the end)")")
        }
        defer { withExtendedLifetime(database) {} }
        let passed: Bool
        do {
            passed = try await demo(cluster, seed: seed)
        } catch {
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
        if !passed { throw ExitCode.failure }
    }

    private func demo(_ cluster: BankCluster, seed: UInt64) async throws -> Bool {
        try await cluster.start()
        print("\(coordinators > 1 ? "coordinators \(cluster.coordinators.map(cluster.url).joined(separator: ", "))" : "coordinator \(cluster.coordinatorURL)"); banks \((0..<nodes).map { cluster.url(.node($0)) }.joined(separator: ", "))")
        for node in 0..<nodes {
            for account in 0..<accounts { try await cluster.openAccount(accountID(node, account), balance: balance, at: node) }
        }
        let total = nodes * accounts * balance
        print("opened \(nodes * accounts) accounts of \(cents(balance)): \(cents(total)) in all")
        let crashPlan = coordinators > 1 ? ", with a bank killed mid-run, then the coordinator the clients use (left down)" : ", with a bank and then the coordinator killed mid-run"
        print("running \(transfers) transfers from \(concurrency) clients (seed \(seed))\(clientBatching ? " sharing batched requests" : "")\(crashes ? crashPlan : "")")

        let progress = Progress(total: transfers)
        let clock = ContinuousClock()
        let started = clock.now
        // One client per worker, or one batching client they all share.
        // Each client knows every coordinator and moves to the next when one does not answer.
        let retry = RetryPolicy(attemptCountMax: max(3, coordinators + 1))
        let requestTimeout: Duration = .seconds(10)
        let shared = clientBatching ? cluster.failoverClient(retry: retry, requestTimeout: requestTimeout, batching: SubmitBatching()) : nil
        let results = try await withThrowingTaskGroup(of: [TransferResult].self) { group in
            for worker in 0..<concurrency {
                let client = shared ?? cluster.failoverClient(retry: retry, requestTimeout: requestTimeout)
                group.addTask { try await self.client(worker, client, cluster, seed: seed, progress: progress) }
            }
            if crashes {
                group.addTask { try await self.chaos(cluster, progress: progress); return [] }
            }
            var all: [TransferResult] = []
            for try await batch in group { all += batch }
            return all
        }
        let elapsed = clock.now - started
        progress.finish()

        print("waiting for every transaction to end everywhere…")
        for member in cluster.coordinators where !cluster.isRunning(member) {
            try await cluster.start(member)
            print("restarted \(member)")
        }
        try await cluster.waitUntilSettled()
        let outcomes = results.map { ($0.txid, $0.outcome, $0.nodes) }
        let report = try await cluster.checkInvariants(expectedTotal: total, outcomes: outcomes)
        summarize(results, elapsed: elapsed, report: report)
        return report.passed
    }

    // MARK: - Clients

    struct TransferResult: Sendable {
        var txid: TxID
        var outcome: Outcome
        var reason: String?
        var nodes: [Int]
        var latency: Duration
    }

    /// One client: takes transfers from the shared counter until none is left.
    private func client(
        _ worker: Int, _ client: ArbiterClient, _ cluster: BankCluster, seed: UInt64, progress: Progress
    ) async throws -> [TransferResult] {
        let mixed: UInt64 = UInt64(worker) &* 0x9E37_79B9
        var random = SplitMix64(seed: seed &+ mixed)
        var results: [TransferResult] = []
        while let number = progress.take() {
            let (branches, nodes) = randomTransfer(cluster, &random)
            let txid = try TxID("demo-\(seed)-\(number)")
            let started = ContinuousClock.now
            let answer = try await Self.submitUntilAnswered(client, branches, txid)
            results.append(TransferResult(txid: txid, outcome: answer.outcome, reason: answer.reason, nodes: nodes,
                                          latency: ContinuousClock.now - started))
            progress.done(answer.outcome)
        }
        return results
    }

    /// Submits until the coordinator answers, for at most two minutes. Every attempt reuses the
    /// transaction id, so a transfer whose answer was lost in a crash is never run twice.
    static func submitUntilAnswered(_ client: ArbiterClient, _ branches: [Branch], _ txid: TxID) async throws -> SubmitResult {
        var lastError: (any Error)?
        for _ in 0..<1200 {
            do {
                return try await client.submit(branches: branches, id: txid)
            } catch {
                lastError = error  // The coordinator may be restarting: ask again shortly.
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw lastError ?? HarnessError("\(txid) got no answer")
    }

    /// Mostly transfers between two banks (debit here, credit there); one in five stays inside one
    /// bank and is a single branch.
    private func randomTransfer(_ cluster: BankCluster, _ random: inout SplitMix64) -> ([Branch], [Int]) {
        let from = Int.random(in: 0..<nodes, using: &random)
        let amount = Int.random(in: 1...(balance / 10), using: &random)
        let source = accountID(from, Int.random(in: 0..<accounts, using: &random))
        if Int.random(in: 0..<5, using: &random) == 0 {
            var destination = accountID(from, Int.random(in: 0..<accounts, using: &random))
            while destination == source { destination = accountID(from, Int.random(in: 0..<accounts, using: &random)) }
            let payload = Payload(#"{"op":"transfer","account":"\#(source)","to":"\#(destination)","amount":\#(amount)}"#)
            return ([Branch(participant: cluster.participant(from), payload: payload)], [from])
        }
        var to = Int.random(in: 0..<nodes, using: &random)
        while to == from { to = Int.random(in: 0..<nodes, using: &random) }
        let destination = accountID(to, Int.random(in: 0..<accounts, using: &random))
        return ([cluster.branch(.debit, source, amount, at: from), cluster.branch(.credit, destination, amount, at: to)], [from, to])
    }

    private func accountID(_ node: Int, _ account: Int) -> String { "bank\(node)-acct\(account)" }

    // MARK: - Crashes

    /// Kills a bank a third of the way in and the coordinator two thirds in, restarting each after a
    /// moment, while the clients keep going.
    /// In a cluster, the coordinator is not restarted: the others take its transactions over.
    private func chaos(_ cluster: BankCluster, progress: Progress) async throws {
        let victim = Int.random(in: 0..<nodes)
        let plan: [(share: Int, member: BankCluster.Member)] = [(transfers / 3, .node(victim)), (2 * transfers / 3, .coordinator)]
        for (share, member) in plan {
            try await eventually("\(share) transfers are done", timeout: .seconds(600), poll: .milliseconds(20)) {
                progress.completed >= share || progress.remaining == 0
            }
            guard progress.remaining > 0 || progress.completed < transfers else { return }
            if member == .coordinator, coordinators > 1 {
                try await takeover(cluster, progress: progress)
                continue
            }
            progress.note("killing \(member) with SIGKILL")
            cluster.kill(member)
            try await Task.sleep(for: .milliseconds(500))  // Let the clients notice it is gone.
            try await cluster.start(member)
            progress.note("restarted \(member)")
        }
    }

    /// Kills the clients' first coordinator and shows how long the others took to end every
    /// transaction that was open in the shared store when it died.
    private func takeover(_ cluster: BankCluster, progress: Progress) async throws {
        let survivor = cluster.client(retry: RetryPolicy(attemptCountMax: 3), of: .peer(0))
        progress.note("killing \(BankCluster.Member.coordinator) with SIGKILL; it stays down")
        cluster.kill(.coordinator)
        let killed = ContinuousClock.now
        let open = Set(try await survivor.stuck(limit: 1000).transactions.map(\.id))
        try await eventually("the transactions open at the kill end", timeout: .seconds(120), poll: .milliseconds(20)) {
            let stillOpen = Set(try await survivor.stuck(limit: 1000).transactions.map(\.id))
            return stillOpen.isDisjoint(with: open)
        }
        progress.note("takeover: the \(open.count) transactions open in the store when it died ended \(Self.milliseconds(ContinuousClock.now - killed)) later (lease 2000 ms)")
    }

    // MARK: - Summary

    private func summarize(_ results: [TransferResult], elapsed: Duration, report: InvariantReport) {
        let committed = results.filter { $0.outcome == .committed }.count
        let aborted = results.count - committed
        let onePhase = results.filter { $0.nodes.count == 1 }.count
        let latencies: [Duration] = results.map(\.latency).sorted()
        let seconds: Double = Self.seconds(elapsed)
        var reasons: [String: Int] = [:]
        for result in results where result.outcome == .aborted { reasons[Self.reasonKind(result.reason), default: 0] += 1 }
        let reasonList: [String] = reasons.sorted { $0.value > $1.value }.map { "\($0.value) \($0.key)" }
        let why: String = reasonList.isEmpty ? "" : " (" + reasonList.joined(separator: ", ") + ")"
        let rate: String = String(format: "%.0f", Double(results.count) / seconds)
        let p50: String = Self.milliseconds(Self.percentile(latencies, 0.5))
        let p99: String = Self.milliseconds(Self.percentile(latencies, 0.99))
        let max: String = Self.milliseconds(latencies.last ?? .zero)
        var balances: [String] = []
        for (node, total) in report.totals.enumerated() { balances.append("bank\(node) \(cents(total))") }

        print("")
        print("Summary")
        print("  transfers    \(results.count): \(committed) committed, \(aborted) aborted\(why)")
        print("  one-phase    \(onePhase) of them within one bank")
        print("  throughput   \(rate) transfers/s over \(String(format: "%.1f", seconds)) s (a debug build; release is several times faster)")
        print("  latency      p50 \(p50), p99 \(p99), max \(max)")
        print("  balances     \(balances.joined(separator: ", "))")
        print("")
        print("Checks")
        print(report)
        print("")
        print(report.passed ? "All checks passed." : "SOME CHECKS FAILED.")
    }

    static func percentile(_ sorted: [Duration], _ fraction: Double) -> Duration {
        guard !sorted.isEmpty else { return .zero }
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * fraction))]
    }

    static func seconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    static func reasonKind(_ reason: String?) -> String {
        guard let reason else { return "unknown" }
        if reason.contains("insufficient funds") { return "insufficient funds" }
        if reason.contains("lock") { return "lock conflicts" }
        if reason.contains("deadline") { return "prepare deadlines" }
        if reason.contains("unreachable") || reason.contains("refused") { return "participant unreachable" }
        if reason.contains("restarted") { return "coordinator restarts" }
        if reason.contains("aborted here") || reason.contains("participant aborted") { return "aborted by a participant" }
        return "other"
    }

    static func milliseconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        return String(format: "%.1f ms", Double(seconds) * 1000 + Double(attoseconds) / 1e15)
    }
}

private func cents(_ amount: Int) -> String { String(format: "%d.%02d", amount / 100, amount % 100) }

/// The shared work counter and the progress bar.
final class Progress: Sendable {
    private struct State {
        var next = 0
        var completed = 0
        var committed = 0
        var aborted = 0
        var lastDrawn = ContinuousClock.now
    }

    let total: Int
    private let state = Mutex(State())
    private let started = ContinuousClock.now
    private let interactive = isatty(STDOUT_FILENO) != 0

    init(total: Int) { self.total = total }

    /// The next transfer's number, or `nil` when all have been handed out.
    func take() -> Int? {
        state.withLock { state in
            guard state.next < total else { return nil }
            defer { state.next += 1 }
            return state.next
        }
    }

    var completed: Int { state.withLock { $0.completed } }
    var remaining: Int { state.withLock { total - $0.next } }

    func done(_ outcome: Outcome) {
        let line = state.withLock { state -> String? in
            state.completed += 1
            if outcome == .committed { state.committed += 1 } else { state.aborted += 1 }
            let now = ContinuousClock.now
            let interval: Duration = interactive ? Duration.milliseconds(100) : Duration.seconds(2)
            let due: Bool = now - state.lastDrawn > interval
            guard due || state.completed == total else { return nil }
            state.lastDrawn = now
            return bar(state)
        }
        if let line { draw(line) }
    }

    func note(_ text: String) {
        let line = state.withLock { bar($0) }
        if interactive { print("\r\u{1B}[K", terminator: "") }
        print("  ⚡ \(text)")
        draw(line)
    }

    func finish() {
        draw(state.withLock { bar($0) })
        print("")
    }

    private func bar(_ state: State) -> String {
        let width = 30
        let filled: Int = total == 0 ? width : state.completed * width / total
        let seconds: Double = BankDemo.seconds(ContinuousClock.now - started) + 0.001
        let rate = Int(Double(state.completed) / seconds)
        let gauge: String = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        return "[\(gauge)] \(state.completed)/\(total)  committed \(state.committed)  aborted \(state.aborted)  \(rate)/s"
    }

    private func draw(_ line: String) {
        if interactive {
            print("\r\u{1B}[K" + line, terminator: "")
            FileHandle.standardOutput.synchronizeFile()
        } else {
            print(line)
        }
    }
}
