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
        /// Another coordinator of a cluster (``Options/peerCount``), sharing the store.
        case peer(Int)
        case node(Int)

        public var description: String {
            switch self {
            case .coordinator: "coordinator"
            case .peer(let index): "peer \(index)"
            case .node(let index): "node \(index)"
            }
        }

        /// Whether it runs `arbiter coordinator`.
        public var isCoordinator: Bool {
            switch self {
            case .coordinator, .peer: true
            case .node: false
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
        /// Extra options for every bank node (e.g. `--inquiry-timeout-ms 500`).
        public var nodeArguments: [String]
        /// When set, every process serves https and the cluster's clients use TLS.
        public var tls: TLS?
        /// Environment variables every process gets besides the harness's own.
        public var environment: [String: String]
        /// A cluster: the PostgreSQL store its coordinators share (`--store`); `nil`: one
        /// coordinator with its SQLite log.
        public var store: String?
        /// Coordinators besides the first, in a cluster (each with its own `--name`).
        public var peerCount: Int
        /// The nodes that keep their accounts in PostgreSQL, by index: the database's URL
        /// (`bank-node --postgres`). The others use SQLite in their directory.
        public var postgres: [Int: String]

        public init(
            nodeCount: Int = 2, root: String, launcher: Launcher, coordinatorArguments: [String] = [], logLevel: String = "warning",
            nodeArguments: [String] = [], tls: TLS? = nil, environment: [String: String] = [:],
            store: String? = nil, peerCount: Int = 0, postgres: [Int: String] = [:]
        ) {
            precondition(peerCount == 0 || store != nil, "a cluster's coordinators need a store to share")
            self.nodeCount = nodeCount
            self.root = root
            self.launcher = launcher
            self.coordinatorArguments = coordinatorArguments
            self.logLevel = logLevel
            self.nodeArguments = nodeArguments
            self.tls = tls
            self.environment = environment
            self.store = store
            self.peerCount = peerCount
            self.postgres = postgres
        }
    }

    private struct State {
        var processes: [Member: ManagedProcess] = [:]
        var ports: [Member: Int] = [:]
        /// Participants registered besides the nodes (``register(name:url:)``), as registry lines.
        var extraParticipants: [String] = []
    }

    public let options: Options
    public let httpClient: HTTPClient
    /// The clients' token: submits at the coordinator, the bank's own API at the nodes.
    public let clientToken: BearerSecret
    /// The operators' token, at the coordinator and the nodes.
    public let operatorSecret: BearerSecret
    /// Each node's protocol secret: the coordinator presents node i's to node i only (the
    /// registry says which), and node i presents it on its inquiries.
    private let nodeSecrets: [BearerSecret]
    /// The TLS of the cluster's clients when ``Options/tls`` is set.
    public let clientTLS: ClientTLS?
    private let state = Mutex(State())

    /// Writes every credential under `root`: a secret per node (`node-N.secret`), the
    /// coordinator's own protocol secret (`secret`), the client and operator token files
    /// (`client-tokens`, `operator-tokens`, as `name:token` lines), and an empty participant
    /// registry (`participants`) that ``start(_:failpoints:)`` fills as the nodes bind their ports.
    public init(options: Options) throws {
        self.options = options
        try FileManager.default.createDirectory(atPath: options.root, withIntermediateDirectories: true)
        func write(_ text: String, _ name: String) throws {
            try text.write(toFile: options.root + "/" + name, atomically: true, encoding: .utf8)
        }
        let client = "client-\(UUID().uuidString)"
        let operatorToken = "operator-\(UUID().uuidString)"
        try write("coordinator-\(UUID().uuidString)\n", "secret")
        try write("demo:\(client)\n", "client-tokens")
        try write("ops:\(operatorToken)\n", "operator-tokens")
        try write("# NAME URL SECRET_FILE, one line per bank node\n", "participants")
        var nodeSecrets: [BearerSecret] = []
        for node in 0..<options.nodeCount {
            let secret = "node-\(node)-\(UUID().uuidString)"
            try write(secret + "\n", "node-\(node).secret")
            nodeSecrets.append(try BearerSecret(secret))
        }
        self.clientToken = try BearerSecret(client)
        self.operatorSecret = try BearerSecret(operatorToken)
        self.nodeSecrets = nodeSecrets
        clientTLS = try options.tls?.clientTLS()
        httpClient = HTTPClientSettings().makeClient(tls: clientTLS)
    }

    /// The credential the coordinator presents at the node whose base URL is `url`, as its
    /// registry gives it: for a test that plays the coordinator.
    public var protocolCredentials: @Sendable (_ url: String) -> BearerSecret? {
        { [self] url in nodes.indices.first { self.url(.node($0)) == url }.map { nodeSecrets[$0] } }
    }

    public var nodes: [Member] { (0..<options.nodeCount).map { .node($0) } }
    public var peers: [Member] { (0..<options.peerCount).map { .peer($0) } }
    /// Every coordinator: the first, then the peers.
    public var coordinators: [Member] { [.coordinator] + peers }
    public var members: [Member] { coordinators + nodes }

    public func url(_ member: Member) -> String { "\(options.tls == nil ? "http" : "https")://127.0.0.1:\(state.withLock { $0.ports[member] ?? 0 })" }
    public var coordinatorURL: String { url(.coordinator) }
    public func participant(_ node: Int) -> ParticipantID { ParticipantID(url(.node(node))) }
    public func process(_ member: Member) -> ManagedProcess? { state.withLock { $0.processes[member] } }
    public func isRunning(_ member: Member) -> Bool { process(member)?.isRunning == true }

    /// A client of the coordinator (retries reuse the transaction id); with `batching`, its
    /// concurrent submits share requests.
    public func client(retry: RetryPolicy = RetryPolicy(), batching: SubmitBatching? = nil, of coordinator: Member = .coordinator) -> ArbiterClient {
        ArbiterClient(coordinator: url(coordinator), secret: clientToken, operatorSecret: operatorSecret, httpClient: httpClient,
                      retry: retry, batching: batching)
    }

    /// A client of every coordinator, the first one first: it fails over to the next when one
    /// does not answer. The same as ``client(retry:batching:of:)`` for a single coordinator.
    public func failoverClient(
        retry: RetryPolicy = RetryPolicy(), requestTimeout: Duration = .seconds(30), batching: SubmitBatching? = nil
    ) -> ArbiterClient {
        ArbiterClient(coordinators: coordinators.map(url), secret: clientToken, operatorSecret: operatorSecret,
                      httpClient: httpClient, retry: retry, requestTimeout: requestTimeout, batching: batching)
    }

    // MARK: - Processes

    /// Starts the coordinator, then every node.
    public func start() async throws {
        for coordinator in coordinators { try await start(coordinator) }
        for node in nodes { try await start(node) }
    }

    /// Starts `member` (on a system-chosen port the first time, the same port after), with
    /// optional failpoints (`ARBITER_FAILPOINTS`).
    public func start(_ member: Member, failpoints: String? = nil) async throws {
        let port = state.withLock { $0.ports[member] ?? 0 }
        let directory = options.root + "/" + member.description.replacingOccurrences(of: " ", with: "-")
        var environment = options.environment
        if let failpoints { environment["ARBITER_FAILPOINTS"] = failpoints }
        let logFile = try startLog(member, failpoints: failpoints)
        let process: ManagedProcess
        let pattern: String
        switch member {
        case .coordinator, .peer:
            let (executable, prefix) = options.launcher.coordinator
            let cluster = options.store.map { ["--store", $0, "--name", member.description.replacingOccurrences(of: " ", with: "-")] } ?? []
            process = try ManagedProcess(name: member.description, executable: executable, arguments: prefix + cluster + [
                "--data", directory, "--port", String(port),
                "--secret-file", options.root + "/secret", "--client-secret-file", options.root + "/client-tokens",
                "--operator-secret-file", options.root + "/operator-tokens", "--participants", options.root + "/participants",
                "--log-level", Self.coordinatorLogLevel(options.logLevel),
            ] + options.coordinatorArguments + (options.tls?.arguments ?? []), environment: environment, logFile: logFile)
            pattern = #"arbiter coordinator listening on https?://127\.0\.0\.1:(\d+)"#
        case .node(let index):
            let (executable, prefix) = options.launcher.node
            // A PostgreSQL node names its prepared transactions after itself: the nodes may share a cluster.
            let store = options.postgres[index].map { ["--postgres", $0, "--postgres-gid-prefix", "node-\(index)"] } ?? ["--data", directory]
            process = try ManagedProcess(name: "node \(index)", executable: executable, arguments: prefix + store + [
                "--port", String(port), "--coordinator", coordinators.map(url).joined(separator: ","),
                "--secret-file", options.root + "/node-\(index).secret", "--client-secret-file", options.root + "/client-tokens",
                "--operator-secret-file", options.root + "/operator-tokens",
                "--log-level", options.logLevel,
            ] + options.nodeArguments + (options.tls?.arguments ?? []), environment: environment, logFile: logFile)
            pattern = #"bank-node listening on https?://127\.0\.0\.1:(\d+)"#
        }
        state.withLock { $0.processes[member] = process }
        let bound = try await process.waitFor(pattern)
        state.withLock { $0.ports[member] = Int(bound)! }
        if case .node = member, port == 0 { try await register() }
    }

    /// Registers a participant that is not one of the nodes (a test's stand-in), under `name`,
    /// with the coordinator's own protocol secret; the coordinator re-reads its registry.
    public func register(name: String, url: String) async throws {
        state.withLock { $0.extraParticipants.append("\(name) \(url)") }
        try await register()
    }

    /// Writes every node that has a port into the coordinator's participant registry, and when
    /// the coordinator runs, has it re-read the registry (SIGHUP) and waits until it has.
    private func register() async throws {
        let registered = nodes.compactMap { member -> String? in
            guard case .node(let index) = member, state.withLock({ $0.ports[member] }) != nil else { return nil }
            return "bank-\(index) \(url(member)) node-\(index).secret"
        } + state.withLock { $0.extraParticipants }
        let text = (["# NAME URL SECRET_FILE, one line per bank node"] + registered).joined(separator: "\n") + "\n"
        try text.write(toFile: options.root + "/participants", atomically: true, encoding: .utf8)
        for member in coordinators {
            guard let coordinator = process(member), coordinator.isRunning else { continue }
            Foundation.kill(coordinator.pid, SIGHUP)
            _ = try await coordinator.waitFor("arbiter coordinator reloaded: (\(registered.count)) participants", timeout: .seconds(30))
        }
    }

    /// Where every run of `member` writes its output, one after the other: `ROOT/logs/MEMBER.log`.
    public func logFile(_ member: Member) -> String {
        options.root + "/logs/" + member.description.replacingOccurrences(of: " ", with: "-") + ".log"
    }

    /// Appends a line that says a run of `member` starts, and returns the log file.
    private func startLog(_ member: Member, failpoints: String?) throws -> String {
        let path = logFile(member)
        try FileManager.default.createDirectory(atPath: options.root + "/logs", withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("=== \(member) starts at \(Date())\(failpoints.map { " with ARBITER_FAILPOINTS=\($0)" } ?? "") ===\n".utf8))
        return path
    }

    /// The coordinator logs at `info` at least: its info and notice lines are few (start-up,
    /// recovery, presumed aborts) and worth having in a post-mortem. (Its port is announced on
    /// standard output whatever the level.)
    static func coordinatorLogLevel(_ level: String) -> String {
        ["trace", "debug", "info"].contains(level) ? level : "info"
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
        let (status, text) = try await call(.POST, url(.node(node)) + "/accounts", body: body, token: clientToken)
        guard (200..<300).contains(status) else { throw HarnessError("opening account \(id) on node \(node): \(status) \(text)") }
    }

    public func accounts(at node: Int) async throws -> [Account] {
        try await get(AccountList.self, url(.node(node)) + "/accounts", token: clientToken).accounts
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

    /// The Prometheus metrics of `member` (`GET /metrics`), by series: `arbiter_participant_fsyncs`,
    /// `arbiter_participant_transactions{state="prepared"}`… (a series with labels is keyed as the
    /// exposition writes it).
    public func metrics(of member: Member) async throws -> [String: Double] {
        var request = HTTPClientRequest(url: url(member) + "/metrics")
        request.method = .GET
        let response = try await httpClient.execute(request, timeout: .seconds(30))
        let text = String(buffer: try await response.body.collect(upTo: 16 << 20))
        guard response.status == .ok else { throw HarnessError("GET /metrics on \(member): \(response.status.code) \(text)") }
        var series: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            series[String(line[..<space])] = value
        }
        return series
    }

    /// The coordinator the harness reads through: the first that runs (in a cluster every
    /// coordinator reads the shared store).
    private var reader: Member { coordinators.first(where: isRunning) ?? .coordinator }

    /// How many transactions the coordinator has not ended (in a cluster: the shared store, as
    /// the first running coordinator reads it).
    public func coordinatorUnfinished() async throws -> Int {
        let client = client(retry: RetryPolicy(attemptCountMax: 1), of: reader)
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
        try await checkInvariants(expectedTotal: expectedTotal,
                                  transactions: outcomes.map { IssuedTransaction(txid: $0.txid, nodes: $0.nodes, told: $0.outcome) })
    }

    /// Checks the bank's invariants over every transaction clients issued, answered or not. Call it
    /// once the cluster has settled (``waitUntilSettled(timeout:)``):
    ///
    /// - the sum of all balances is `expectedTotal`; no balance is negative; nothing is reserved;
    /// - no node holds a transaction in doubt or a lock;
    /// - every transaction is all-or-nothing: either every node of its branches holds it committed,
    ///   or none does (each holds it aborted, or nothing: presumed abort);
    /// - every outcome a client was told is what the nodes hold (committed: all committed; aborted:
    ///   none committed) and what the coordinator recorded (a single-branch transaction, run in one
    ///   phase, may have no record there: the participant's record is its decision);
    /// - every client got an answer (once faults stop, every transaction ends).
    ///
    /// Each check counts its violations (``InvariantReport/violationCount``); the first few are named.
    ///
    /// - Parameter concurrency: How many status requests run at once.
    public func checkInvariants(expectedTotal: Int, transactions: [IssuedTransaction], concurrency: Int = 16) async throws -> InvariantReport {
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
        report.record("the sum of all balances is unchanged", total == expectedTotal ? [] : ["expected \(expectedTotal), found \(total)"])
        report.record("no balance is negative", negative)
        report.record("no money is left reserved", reserved)
        var doubtful: [String] = []
        for node in 0..<options.nodeCount {
            for status in try await inDoubt(at: node) { doubtful.append("\(status.txid)@node\(node) locks \(status.locks)") }
        }
        for node in 0..<options.nodeCount {
            // Locks are listed with their prepared transactions above; the census also counts any
            // lock that outlived its transaction.
            let locks = try await metrics(of: .node(node))["arbiter_participant_locks"] ?? 0
            if locks != 0 { doubtful.append("node \(node) holds \(Int(locks)) lock(s)") }
        }
        report.record("no prepared record or lock remains", doubtful)

        let held = try await heldStates(of: transactions, concurrency: concurrency)
        var split: [String] = []
        var mismatches: [String] = []
        var unanswered: [String] = []
        for (transaction, states) in zip(transactions, held) {
            let committed = states.filter { $0 == "committed" }.count
            if committed > 0 && committed < states.count {
                let held = zip(transaction.nodes, states).map { "node \($0) \($1 ?? "nothing")" }.joined(separator: ", ")
                split.append("\(transaction.txid): \(held)")
            }
            guard let told = transaction.told else {
                unanswered.append("\(transaction.txid)")
                continue
            }
            for (node, state) in zip(transaction.nodes, states) {
                let agrees = told == .committed ? state == "committed" : state != "committed"
                if !agrees { mismatches.append("\(transaction.txid): node \(node) holds \(state ?? "nothing"), client was told \(told)") }
            }
        }
        report.record("every transaction is all-or-nothing across its nodes (\(transactions.count) transactions)", split)
        report.record("every client-reported outcome matches what the nodes hold (\(transactions.count - unanswered.count) transactions)",
                      mismatches)
        let told = transactions.filter { $0.told != nil }
        let recorded = try await coordinatorOutcomes(of: told.map(\.txid), concurrency: concurrency)
        var disagreements: [String] = []
        for (transaction, outcome) in zip(told, recorded) {
            // Unknown to the coordinator is an abort (presumed abort): the begun record is lazy.
            // Except in one phase: there the participant's record is the decision and the
            // coordinator's records are all lazy, so a crash can leave it with no record of a
            // commit it reported (GET /v1/transactions/{id} then answers 404).
            if outcome == nil && transaction.nodes.count == 1 { continue }
            let agrees = transaction.told == .committed ? outcome == .committed : outcome != .committed
            if !agrees { disagreements.append("\(transaction.txid): the coordinator holds \(outcome.map { "\($0)" } ?? "nothing"), client was told \(transaction.told!)") }
        }
        report.record("every client-reported outcome is the coordinator's", disagreements)
        report.record("every client got an answer", unanswered)
        return report
    }

    /// What each node of each transaction holds for it (`nil`: nothing).
    private func heldStates(of transactions: [IssuedTransaction], concurrency: Int) async throws -> [[String?]] {
        let queries = transactions.enumerated().flatMap { index, transaction in transaction.nodes.map { (index, $0, transaction.txid) } }
        var results = transactions.map { [String?](repeating: nil, count: $0.nodes.count) }
        var positions = transactions.map { _ in 0 }
        let answers = try await boundedMap(queries, concurrency: concurrency) { query in try await self.status(of: query.2, at: query.1)?.state }
        for (query, answer) in zip(queries, answers) {
            results[query.0][positions[query.0]] = answer
            positions[query.0] += 1
        }
        return results
    }

    /// The outcome the coordinator recorded for each transaction (`nil`: undecided or unknown).
    private func coordinatorOutcomes(of txids: [TxID], concurrency: Int) async throws -> [Outcome?] {
        let client = client(retry: RetryPolicy(attemptCountMax: 3), of: reader)
        return try await boundedMap(txids, concurrency: concurrency) { txid -> Outcome? in
            do {
                return try await client.transaction(txid).outcome?.outcome
            } catch let error as ArbiterClientError where error.status == 404 {
                return nil
            }
        }
    }

    /// `transform` applied to every element, at most `concurrency` at a time, in order.
    private func boundedMap<T: Sendable, U: Sendable>(
        _ items: [T], concurrency: Int, _ transform: @escaping @Sendable (T) async throws -> U
    ) async throws -> [U] {
        var results = [U?](repeating: nil, count: items.count)
        try await withThrowingTaskGroup(of: (Int, U).self) { group in
            var next = 0
            while next < items.count && next < max(1, concurrency) {
                let (index, item) = (next, items[next])
                group.addTask { (index, try await transform(item)) }
                next += 1
            }
            while let (index, result) = try await group.next() {
                results[index] = result
                if next < items.count {
                    let (index, item) = (next, items[next])
                    group.addTask { (index, try await transform(item)) }
                    next += 1
                }
            }
        }
        return results.map { $0! }
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

/// A transaction a client issued: its id, the nodes of its branches, and the outcome the client
/// was finally told (`nil` when it never got an answer).
public struct IssuedTransaction: Hashable, Sendable {
    public var txid: TxID
    public var nodes: [Int]
    public var told: Outcome?

    public init(txid: TxID, nodes: [Int], told: Outcome?) {
        self.txid = txid
        self.nodes = nodes
        self.told = told
    }
}

/// The result of ``BankCluster/checkInvariants(expectedTotal:transactions:concurrency:)``.
public struct InvariantReport: Sendable, CustomStringConvertible {
    public struct Check: Sendable {
        public var name: String
        public var passed: Bool
        /// The first few violations, for people.
        public var detail: String
        /// How many violations there were (0 when it passed).
        public var violationCount: Int = 0
    }

    public var checks: [Check] = []
    /// The sum of balances per node.
    public var totals: [Int] = []
    public var passed: Bool { checks.allSatisfy(\.passed) }
    /// The violations of every check.
    public var violationCount: Int { checks.reduce(0) { $0 + $1.violationCount } }

    public init() {}

    mutating func record(_ name: String, _ passed: Bool, _ detail: String) {
        checks.append(Check(name: name, passed: passed, detail: passed ? "" : detail, violationCount: passed ? 0 : 1))
    }

    /// Records a check whose `violations` are listed (it passes when there are none).
    public mutating func record(_ name: String, _ violations: [String]) {
        checks.append(Check(name: name, passed: violations.isEmpty, detail: violations.prefix(5).joined(separator: "; "),
                            violationCount: violations.count))
    }

    public var description: String {
        checks.map { check in
            "  \(check.passed ? "✔" : "✘") \(check.name)\(check.passed ? "" : " — \(check.violationCount) violation(s): \(check.detail)")"
        }.joined(separator: "\n")
    }
}
