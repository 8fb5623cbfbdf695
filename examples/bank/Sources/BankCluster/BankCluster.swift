public import ArbiterClient
public import ArbiterCore
public import ArbiterHTTP
public import ArbiterParticipant
public import ArbiterTesting
public import AsyncHTTPClient
public import BankExample
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// A coordinator and bank nodes running as separate processes on loopback, with the operations
/// that the demo, the end-to-end tests and the benchmark need: start, kill (SIGKILL), restart on
/// the same port, open accounts, transfer, and check the bank's invariants.
public final class BankCluster: Sendable {
    /// One process of the cluster.
    public enum Member: Hashable, Sendable, CustomStringConvertible {
        case coordinator
        case node(Int)

        public var description: String {
            switch self {
            case .coordinator: "coordinator"
            case .node(let index): "node \(index)"
            }
        }
    }

    /// How to start each kind of process: an executable and the arguments before the options.
    public struct Launcher: Sendable {
        public var coordinator: (executable: String, arguments: [String])
        public var node: (executable: String, arguments: [String])

        public init(coordinator: (executable: String, arguments: [String]), node: (executable: String, arguments: [String])) {
            self.coordinator = coordinator
            self.node = node
        }

        /// `arbiter coordinator` and `bank-node`, built by this package.
        public static func builtProducts() throws -> Launcher {
            Launcher(coordinator: (try builtProduct("arbiter"), ["coordinator"]), node: (try builtProduct("bank-node"), []))
        }
    }

    public struct Options: Sendable {
        public var nodeCount: Int
        /// Where data and secrets live (each process in its own subdirectory).
        public var root: String
        public var launcher: Launcher
        /// Extra options for the coordinator (e.g. `--prepare-timeout-ms 500`).
        public var coordinatorArguments: [String]
        public var logLevel: String

        public init(nodeCount: Int = 2, root: String, launcher: Launcher, coordinatorArguments: [String] = [], logLevel: String = "warning") {
            self.nodeCount = nodeCount
            self.root = root
            self.launcher = launcher
            self.coordinatorArguments = coordinatorArguments
            self.logLevel = logLevel
        }
    }

    private struct State {
        var processes: [Member: ManagedProcess] = [:]
        var ports: [Member: Int] = [:]
    }

    public let options: Options
    public let httpClient: HTTPClient
    public let secret: BearerSecret
    public let operatorSecret: BearerSecret
    private let state = Mutex(State())

    public init(options: Options) throws {
        self.options = options
        let secret = "cluster-\(UUID().uuidString)"
        let operatorSecret = "operator-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: options.root, withIntermediateDirectories: true)
        try secret.write(toFile: options.root + "/secret", atomically: true, encoding: .utf8)
        try operatorSecret.write(toFile: options.root + "/operator-secret", atomically: true, encoding: .utf8)
        self.secret = try BearerSecret(secret)
        self.operatorSecret = try BearerSecret(operatorSecret)
        httpClient = HTTPClientSettings().makeClient()
    }

    public var nodes: [Member] { (0..<options.nodeCount).map { .node($0) } }
    public var members: [Member] { [.coordinator] + nodes }

    public func url(_ member: Member) -> String { "http://127.0.0.1:\(state.withLock { $0.ports[member] ?? 0 })" }
    public var coordinatorURL: String { url(.coordinator) }
    public func participant(_ node: Int) -> ParticipantID { ParticipantID(url(.node(node))) }
    public func process(_ member: Member) -> ManagedProcess? { state.withLock { $0.processes[member] } }
    public func isRunning(_ member: Member) -> Bool { process(member)?.isRunning == true }

    /// A client of the coordinator (retries reuse the transaction id).
    public func client(retry: RetryPolicy = RetryPolicy()) -> ArbiterClient {
        ArbiterClient(coordinator: coordinatorURL, secret: secret, operatorSecret: operatorSecret, httpClient: httpClient, retry: retry)
    }

    // MARK: - Processes

    /// Starts the coordinator, then every node.
    public func start() async throws {
        try await start(.coordinator)
        for node in nodes { try await start(node) }
    }

    /// Starts `member` (on a system-chosen port the first time, the same port after), with
    /// optional failpoints (`ARBITER_FAILPOINTS`).
    public func start(_ member: Member, failpoints: String? = nil) async throws {
        let port = state.withLock { $0.ports[member] ?? 0 }
        let directory = options.root + "/" + member.description.replacingOccurrences(of: " ", with: "-")
        let environment = failpoints.map { ["ARBITER_FAILPOINTS": $0] } ?? [:]
        let process: ManagedProcess
        let pattern: String
        switch member {
        case .coordinator:
            let (executable, prefix) = options.launcher.coordinator
            process = try ManagedProcess(name: "coordinator", executable: executable, arguments: prefix + [
                "--data", directory, "--port", String(port),
                "--secret-file", options.root + "/secret", "--operator-secret-file", options.root + "/operator-secret",
                "--log-level", options.logLevel,
            ] + options.coordinatorArguments, environment: environment)
            pattern = #"arbiter coordinator listening on http://127\.0\.0\.1:(\d+)"#
        case .node(let index):
            let (executable, prefix) = options.launcher.node
            process = try ManagedProcess(name: "node \(index)", executable: executable, arguments: prefix + [
                "--data", directory, "--port", String(port), "--coordinator", coordinatorURL,
                "--secret-file", options.root + "/secret", "--operator-secret-file", options.root + "/operator-secret",
                "--log-level", options.logLevel,
            ], environment: environment)
            pattern = #"bank-node listening on http://127\.0\.0\.1:(\d+)"#
        }
        state.withLock { $0.processes[member] = process }
        let bound = try await process.waitFor(pattern)
        state.withLock { $0.ports[member] = Int(bound)! }
    }

    /// SIGKILL: the process dies at once, with no flush and no cleanup.
    public func kill(_ member: Member) { process(member)?.kill() }

    /// Kills `member` if it is running, then starts it again on the same port.
    public func restart(_ member: Member, failpoints: String? = nil) async throws {
        kill(member)
        try await start(member, failpoints: failpoints)
    }

    /// Stops every process gracefully (SIGTERM), then the HTTP client.
    public func shutdown() async {
        for member in members.reversed() { await process(member)?.terminate() }
        try? await httpClient.shutdown()
    }

    // MARK: - Bank

    /// A branch of a transfer: `op` on `account` at `node`.
    public func branch(_ op: BankOperation.Kind, _ account: String, _ amount: Int, at node: Int) -> Branch {
        Branch(participant: participant(node), payload: Payload(#"{"op":"\#(op.rawValue)","account":"\#(account)","amount":\#(amount)}"#))
    }

    public func openAccount(_ id: String, balance: Int, at node: Int) async throws {
        let body = try WireJSON.encode(OpenAccountRequest(id: id, balance: balance))
        let (status, text) = try await call(.POST, url(.node(node)) + "/accounts", body: body, token: secret)
        guard (200..<300).contains(status) else { throw HarnessError("opening account \(id) on node \(node): \(status) \(text)") }
    }

    public func accounts(at node: Int) async throws -> [Account] {
        try await get(AccountList.self, url(.node(node)) + "/accounts", token: secret).accounts
    }

    /// The transactions a node holds prepared (in doubt), with their locks.
    public func inDoubt(at node: Int) async throws -> [TransactionStatus] {
        try await get(InDoubtList.self, url(.node(node)) + "/v1/operator/in-doubt", token: operatorSecret).transactions
    }

    /// What a node holds for `txid` (`nil`: nothing — it never saw it, voted read-only, or forgot it).
    public func status(of txid: TxID, at node: Int) async throws -> TransactionStatus? {
        let (status, text) = try await call(.GET, url(.node(node)) + "/v1/operator/transactions/\(txid.rawValue)", token: operatorSecret)
        if status == 404 { return nil }
        guard status == 200 else { throw HarnessError("GET transaction \(txid) on node \(node): \(status) \(text)") }
        return try WireJSON.decode(TransactionStatus.self, from: Array(text.utf8))
    }

    /// How many transactions the coordinator has not ended.
    public func coordinatorUnfinished() async throws -> Int {
        let client = client(retry: RetryPolicy(attemptCountMax: 1))
        var count = 0
        for state in [ArbiterHTTP.TransactionState.preparing, .committing, .aborting] {
            count += try await client.list(state: state, limit: 1000).transactions.count
        }
        return count
    }

    /// Waits until the coordinator has ended every transaction and no node holds one in doubt.
    public func waitUntilSettled(timeout: Duration = .seconds(120)) async throws {
        try await eventually("every transaction has ended everywhere", timeout: timeout, poll: .milliseconds(100)) {
            guard try await coordinatorUnfinished() == 0 else { return false }
            for node in 0..<options.nodeCount where try await !inDoubt(at: node).isEmpty { return false }
            return true
        }
    }

    // MARK: - Invariants

    /// Checks the bank's invariants: the sum of all balances is `expectedTotal`, no balance is
    /// negative and nothing is reserved, no node holds a transaction in doubt or a lock, and every
    /// outcome a client was told is what the nodes of its branches hold.
    public func checkInvariants(expectedTotal: Int, outcomes: [(txid: TxID, outcome: Outcome, nodes: [Int])]) async throws -> InvariantReport {
        var report = InvariantReport()
        var total = 0
        var negative: [String] = []
        var reserved: [String] = []
        var totals: [Int] = []
        for node in 0..<options.nodeCount {
            let accounts = try await accounts(at: node)
            let sum = accounts.reduce(0) { $0 + $1.balance }
            totals.append(sum)
            total += sum
            negative += accounts.filter { $0.balance < 0 }.map { "\($0.id)@node\(node)=\($0.balance)" }
            reserved += accounts.filter { $0.reserved != 0 }.map { "\($0.id)@node\(node) reserves \($0.reserved)" }
        }
        report.totals = totals
        report.record("the sum of all balances is unchanged", total == expectedTotal, "expected \(expectedTotal), found \(total)")
        report.record("no balance is negative", negative.isEmpty, negative.prefix(5).joined(separator: ", "))
        report.record("no money is left reserved", reserved.isEmpty, reserved.prefix(5).joined(separator: ", "))
        var doubtful: [String] = []
        for node in 0..<options.nodeCount {
            for status in try await inDoubt(at: node) { doubtful.append("\(status.txid)@node\(node) locks \(status.locks)") }
        }
        report.record("no prepared record or lock remains", doubtful.isEmpty, doubtful.prefix(5).joined(separator: ", "))
        var mismatches: [String] = []
        for (txid, outcome, nodes) in outcomes {
            for node in nodes {
                guard let status = try await status(of: txid, at: node) else {
                    mismatches.append("\(txid): node \(node) holds nothing, client was told \(outcome)")
                    continue
                }
                if status.state != outcome.rawValue { mismatches.append("\(txid): node \(node) holds \(status.state), client was told \(outcome)") }
            }
        }
        report.record("every client-reported outcome matches what the nodes hold (\(outcomes.count) transactions)",
                      mismatches.isEmpty, mismatches.prefix(5).joined(separator: "; "))
        return report
    }

    // MARK: - HTTP

    private func call(_ method: HTTPMethod, _ url: String, body: [UInt8]? = nil, token: BearerSecret) async throws -> (Int, String) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Authorization", value: token.authorizationHeaderValue)
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(body)
        }
        let response = try await httpClient.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 64 << 20)
        return (Int(response.status.code), String(buffer: bytes))
    }

    private func get<T: Decodable>(_ type: T.Type, _ url: String, token: BearerSecret) async throws -> T {
        let (status, text) = try await call(.GET, url, token: token)
        guard status == 200 else { throw HarnessError("GET \(url): \(status) \(text)") }
        return try WireJSON.decode(type, from: Array(text.utf8))
    }
}

/// The result of ``BankCluster/checkInvariants(expectedTotal:outcomes:)``.
public struct InvariantReport: Sendable, CustomStringConvertible {
    public struct Check: Sendable {
        public var name: String
        public var passed: Bool
        public var detail: String
    }

    public var checks: [Check] = []
    /// The sum of balances per node.
    public var totals: [Int] = []
    public var passed: Bool { checks.allSatisfy(\.passed) }

    mutating func record(_ name: String, _ passed: Bool, _ detail: String) {
        checks.append(Check(name: name, passed: passed, detail: passed ? "" : detail))
    }

    public var description: String {
        checks.map { check in "  \(check.passed ? "✔" : "✘") \(check.name)\(check.passed ? "" : ": \(check.detail)")" }
            .joined(separator: "\n")
    }
}
