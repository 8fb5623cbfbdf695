import ArbiterClient
import ArbiterCore
import ArbiterHTTP
import ArbiterTesting
import BankCluster
import Foundation
import Synchronization
import Testing

/// Short timeouts, so that every deadline, inquiry and resend in the suite takes a second or two
/// rather than the production defaults' tens of seconds. Generous still: the machine is shared.
enum ClusterTimeouts {
    /// The coordinator's prepare deadline.
    static let prepareMs = 2_000
    static let coordinator = [
        "--prepare-timeout-ms", String(prepareMs), "--retry-initial-ms", "50", "--retry-max-ms", "500",
    ]
    static let node = [
        "--inquiry-timeout-ms", "500", "--inquiry-retry-initial-ms", "200", "--inquiry-retry-max-ms", "1000",
        "--inquiry-request-timeout-ms", "2000", "--reply-timeout-ms", "5000",
    ]
    /// How long the cluster may take to settle once faults stop.
    static let settle: Duration = .seconds(120)
    /// How long a failpoint may take to fire under load.
    static let failpointFires: Duration = .seconds(120)
    /// A cluster's coordinator lease, and how often the coordinators look for orphans.
    static let leaseMs = 1_000
    static let cluster = ["--lease-ms", String(leaseMs), "--sweep-ms", "200"]
}

/// The cluster, workload and counters of one scenario.
final class Scenario: Sendable {
    let name: String
    let cluster: BankCluster
    let directory: TemporaryDirectory
    let seed: UInt64
    let accountsPerNode: Int
    let balance: Int
    /// The decision store of a coordinator cluster (``BankCluster/coordinators``); `nil`: one
    /// coordinator with its SQLite log.
    let database: PostgresServer?
    private let crashes = Atomic<Int>(0)
    private let workloads = Mutex<[Workload]>([])
    private let notes = Mutex<[String]>([])

    var crashCount: Int { crashes.load(ordering: .relaxed) }
    /// The sum of all balances once everything has ended: what was opened, plus what committed
    /// single-branch deposits and withdrawals moved.
    var expectedTotal: Int {
        cluster.options.nodeCount * accountsPerNode * balance + workloads.withLock { $0.reduce(0) { $0 + $1.netDeposits } }
    }

    private init(name: String, cluster: BankCluster, directory: TemporaryDirectory, seed: UInt64, accountsPerNode: Int, balance: Int,
                 database: PostgresServer?) {
        self.database = database
        self.name = name
        self.cluster = cluster
        self.directory = directory
        self.seed = seed
        self.accountsPerNode = accountsPerNode
        self.balance = balance
    }

    /// The seed of a scenario: `ARBITER_E2E_SEED` when set (to replay a run), else random.
    static func seed() -> UInt64 {
        if let text = ProcessInfo.processInfo.environment["ARBITER_E2E_SEED"], let seed = UInt64(text) { return seed }
        return UInt64.random(in: 1...UInt64(UInt32.max))
    }

    /// Runs `body` against a fresh cluster (coordinator and `nodeCount` bank nodes, accounts
    /// opened), then lets it settle, checks the bank's invariants over every transaction issued,
    /// records a row of the results table and expects no violation. Processes get `failpoints` at
    /// their first start. With `database`, three coordinators share it as their decision store (a
    /// coordinator cluster) and the clients fail over between them.
    @discardableResult
    static func run(
        _ name: String,
        nodeCount: Int = 2,
        accountsPerNode: Int = 8,
        balance: Int = 100_000,
        logLevel: String = "warning",
        failpoints: [BankCluster.Member: String] = [:],
        settles: Bool = true,
        seed: UInt64? = nil,
        database: PostgresServer? = nil,
        postgres: [Int: String] = [:],
        _ body: (Scenario) async throws -> Void
    ) async throws -> ResultsTable.Row {
        let seed = seed ?? Self.seed()
        let directory = try TemporaryDirectory(prefix: "arbiter-e2e")
        let cluster = try BankCluster(options: .init(
            nodeCount: nodeCount, root: directory.path, launcher: try .builtProducts(),
            coordinatorArguments: ClusterTimeouts.coordinator + (database == nil ? [] : ClusterTimeouts.cluster),
            logLevel: logLevel, nodeArguments: ClusterTimeouts.node,
            store: database?.url, peerCount: database == nil ? 0 : 2, postgres: postgres))
        let scenario = Scenario(name: name, cluster: cluster, directory: directory, seed: seed,
                                accountsPerNode: accountsPerNode, balance: balance, database: database)
        print("▶ \(name) (seed \(seed), data in \(directory.path))")
        let clock = ContinuousClock()
        let started = clock.now
        var report: InvariantReport?
        var failure: (any Error)?
        do {
            for coordinator in cluster.coordinators { try await cluster.start(coordinator, failpoints: failpoints[coordinator]) }
            for node in cluster.nodes { try await cluster.start(node, failpoints: failpoints[node]) }
            for node in 0..<nodeCount {
                for index in 0..<accountsPerNode {
                    try await cluster.openAccount(Workload.accountID(node, index), balance: balance, at: node)
                }
            }
            try await body(scenario)
            if settles {
                try await scenario.ensureRunning()
                try await cluster.waitUntilSettled(timeout: ClusterTimeouts.settle)
            }
            report = try await cluster.checkInvariants(expectedTotal: scenario.expectedTotal, transactions: scenario.transactions)
            if settles, let database {
                // Nothing is left open in the shared store. (No decision was ever changed: the
                // store's trigger refuses that, which would have failed a coordinator's round.)
                let open = try await database.psql("SELECT count(*) FROM arbiter_transaction WHERE NOT ended")
                report?.record("the shared store holds no open transaction", open == "0\n" ? [] : ["\(open.trimmingCharacters(in: .whitespacesAndNewlines)) still open"])
            }
        } catch {
            failure = error
        }
        let row = scenario.row(report: report, failure: failure, elapsed: clock.now - started)
        ResultsTable.shared.add(row)
        print(scenario.summary(row: row, report: report, failure: failure))
        let failed = failure != nil || row.violations > 0
        if failed {
            print(scenario.logs())
            print("  data and every process's whole output (logs/) kept in \(directory.path); replay with ARBITER_E2E_SEED=\(seed)")
        }
        await cluster.shutdown()
        if failed { directory.keep() } else { directory.remove() }
        if let failure { throw failure }
        #expect(row.violations == 0, "\(name): \(row.violations) violation(s); see the report above")
        return row
    }

    // MARK: - Load

    /// A workload over this scenario's cluster; its transactions are checked at the end.
    func workload(nodes: [Int]? = nil, workers: Int = 8, transactionTimeout: Duration? = nil) -> Workload {
        var settings = Workload.Settings(nodes: nodes ?? Array(0..<cluster.options.nodeCount), accountsPerNode: accountsPerNode)
        settings.workers = workers
        settings.transactionTimeout = transactionTimeout
        let index = workloads.withLock { $0.count }
        let workload = Workload(cluster: cluster, client: { [cluster, clustered = database != nil] in Self.submitter(cluster, clustered: clustered) }, settings: settings, prefix: "\(Self.idSafe(name))-\(seed)-\(index)", seed: seed &+ UInt64(index))
        workloads.withLock { $0.append(workload) }
        return workload
    }

    /// Runs `workload` while `driver` runs; when the driver returns, stops the workload and waits
    /// for its transfers in flight to be answered. If the driver throws, the workload is cancelled.
    func underLoad(_ workload: Workload, _ driver: () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await workload.run() }
            do {
                try await driver()
            } catch {
                workload.stop()
                group.cancelAll()
                throw error
            }
            workload.stop()
            // Every process must be up for the last transfers to be answered.
            try await ensureRunning()
            try await group.waitForAll()
        }
    }

    /// Chaos under `workload`: for `seconds`, a random pause in `pause` (ms), then `fault` (which
    /// kills and restarts what it picks, with `random`), again and again (at most one round per
    /// second). When the time is up the faults stop, and the cluster must make progress: 20 more
    /// transfers are answered. Then the workload stops as in ``underLoad(_:_:)``.
    func chaos(
        for seconds: Int, under workload: Workload, seed: UInt64, pause: ClosedRange<Int>,
        _ fault: (inout SplitMix64) async throws -> Void
    ) async throws {
        var random = SplitMix64(seed: self.seed ^ seed)
        let clock = ContinuousClock()
        let end = clock.now + .seconds(seconds)
        try await underLoad(workload) {
            var round = 0
            while clock.now < end && round < seconds + 1 {
                round += 1
                // The fault schedule (not a synchronisation): a random pause, then a fault.
                try await Task.sleep(for: .milliseconds(Int.random(in: pause, using: &random)))
                guard clock.now < end else { break }
                try await fault(&random)
            }
            // Faults have stopped: the cluster must make progress again.
            let answered = workload.counts.answered
            try await eventually("20 more transfers are answered after the last restart", timeout: .seconds(120), poll: .milliseconds(20)) {
                workload.counts.answered >= answered + 20
            }
        }
        note("load stopped: \(workload.counts)")
    }

    /// Transactions issued by every workload, and the single transactions the scenario ran itself.
    var transactions: [IssuedTransaction] {
        workloads.withLock { $0.flatMap(\.transactions) } + singles.withLock { $0 }
    }

    private let singles = Mutex<[IssuedTransaction]>([])

    /// Submits one transfer (debit `from`, credit `to`) until the coordinator answers, and records
    /// it for the final checks. The answer is `nil` when none came within `answerTimeout`.
    @discardableResult
    func transfer(
        _ id: String, from: (node: Int, account: Int), to: (node: Int, account: Int), amount: Int,
        timeout: Duration? = nil, answerTimeout: Duration = .seconds(120)
    ) async throws -> SubmitResult? {
        let txid = try TxID("\(Self.idSafe(name))-\(seed)-\(id)")
        let branches = [
            cluster.branch(.debit, Workload.accountID(from.node, from.account), amount, at: from.node),
            cluster.branch(.credit, Workload.accountID(to.node, to.account), amount, at: to.node),
        ]
        return try await submit(txid, branches, nodes: [from.node, to.node], timeout: timeout, answerTimeout: answerTimeout)
    }

    /// Submits `branches` as `txid` until answered, recording it with `nodes` for the final checks
    /// (pass only the bank nodes: other participants are not checked).
    func submit(_ txid: TxID, _ branches: [Branch], nodes: [Int], timeout: Duration? = nil,
                answerTimeout: Duration = .seconds(120)) async throws -> SubmitResult? {
        singles.withLock { $0.append(IssuedTransaction(txid: txid, nodes: nodes, told: nil)) }
        let client = submitter()
        let clock = ContinuousClock()
        let deadline = clock.now + answerTimeout
        var answer: SubmitResult?
        while answer == nil && clock.now < deadline {
            do {
                answer = try await client.submit(branches: branches, id: txid, timeout: timeout)
            } catch {
                let retryable = error.isOutcomeUncertain || error.code == .invalidResponse
                guard retryable else { throw error }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        singles.withLock { singles in
            if let index = singles.firstIndex(where: { $0.txid == txid }) { singles[index].told = answer?.outcome }
        }
        return answer
    }

    /// A client for the scenario's transfers: it tries each call once, or, in a coordinator
    /// cluster, once at each coordinator (the callers retry with the same id).
    func submitter() -> ArbiterClient { Self.submitter(cluster, clustered: database != nil) }

    private static func submitter(_ cluster: BankCluster, clustered: Bool) -> ArbiterClient {
        guard clustered else { return cluster.client(retry: .none) }
        return cluster.failoverClient(retry: RetryPolicy(attemptCountMax: cluster.coordinators.count), requestTimeout: .seconds(10))
    }

    // MARK: - Faults

    /// Counts a crash the scenario caused (a failpoint that fired, a SIGKILL).
    func countCrash() { crashes.add(1, ordering: .relaxed) }

    /// Waits until `member` exits by itself at failpoint `name` (its log says so), and counts it.
    func waitForFailpoint(_ name: String, at member: BankCluster.Member) async throws {
        try await eventually("\(member) crashes at failpoint \(name)", timeout: ClusterTimeouts.failpointFires, poll: .milliseconds(20)) {
            !self.cluster.isRunning(member)
        }
        // The process's last output may still be in the pipe when it has exited: give the reader a
        // moment (bounded) to take it.
        let line = "failpoint \(name): crashing"
        do {
            try await eventually("\(member)'s output says it crashed at \(name)", timeout: .seconds(10), poll: .milliseconds(20)) {
                self.cluster.process(member)?.log.contains(line) == true
            }
        } catch {
            let log = cluster.process(member)?.log ?? ""
            throw HarnessError("\(member) exited, but not at failpoint \(name):\n\(log.suffix(3000))")
        }
        countCrash()
    }

    /// SIGKILL `member` and count the crash.
    func kill(_ member: BankCluster.Member) {
        cluster.kill(member)
        countCrash()
    }

    /// Starts `member` again (without failpoints), retrying when its port is briefly unavailable.
    func restart(_ member: BankCluster.Member, failpoints: String? = nil) async throws {
        var attempt = 0
        while true {
            do {
                try await cluster.restart(member, failpoints: failpoints)
                return
            } catch {
                // Rare: between the kill and the restart, the system may hand the port to an
                // outgoing connection. Try again a few times.
                attempt += 1
                guard attempt < 10 else { throw error }
                note("restarting \(member) failed (attempt \(attempt)): \(String("\(error)".prefix(300)))")
                try await Task.sleep(for: .milliseconds(200 * attempt))
            }
        }
    }

    /// Restarts every process that is not running.
    func ensureRunning() async throws {
        for member in cluster.members where !cluster.isRunning(member) {
            try await restart(member)
        }
    }

    // MARK: - Reporting

    func note(_ text: String) {
        notes.withLock { $0.append(text) }
        print("  · \(text)")
    }

    fileprivate func row(report: InvariantReport?, failure: (any Error)?, elapsed: Duration) -> ResultsTable.Row {
        let counts = workloads.withLock { $0.map(\.counts) }
        let singles = singles.withLock { $0 }
        let rejected = counts.reduce(0) { $0 + $1.rejected }
        return ResultsTable.Row(
            scenario: name,
            transactions: counts.reduce(0) { $0 + $1.issued } + singles.count,
            committed: counts.reduce(0) { $0 + $1.committed } + singles.filter { $0.told == .committed }.count,
            aborted: counts.reduce(0) { $0 + $1.aborted } + singles.filter { $0.told == .aborted }.count,
            crashes: crashCount,
            violations: (report?.violationCount ?? 0) + rejected,
            failed: failure != nil,
            seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    fileprivate func summary(row: ResultsTable.Row, report: InvariantReport?, failure: (any Error)?) -> String {
        var lines = ["◀ \(name): \(row.transactions) transactions (\(row.committed) committed, \(row.aborted) aborted), \(row.crashes) crashes, \(row.violations) violations"]
        var reasons: [String: Int] = [:]
        for workload in workloads.withLock({ $0 }) {
            for (kind, count) in workload.abortReasons { reasons[kind, default: 0] += count }
            for rejection in workload.rejections.prefix(5) { lines.append("  ✘ rejected: \(rejection)") }
        }
        if !reasons.isEmpty {
            lines.append("  aborts: " + reasons.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        if let report { lines.append(report.description) }
        if let failure { lines.append("  ✘ the scenario failed: \(failure)") }
        return lines.joined(separator: "\n")
    }

    fileprivate func logs() -> String {
        cluster.members.map { member in
            "--- \(member) (last lines) ---\n" + String((cluster.process(member)?.log ?? "(never started)").suffix(3000))
        }.joined(separator: "\n")
    }

    static func idSafe(_ text: String) -> String {
        String(text.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") ? $0 : "-" }.prefix(60))
    }
}
