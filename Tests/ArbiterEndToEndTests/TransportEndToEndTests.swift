import ArbiterClient
import ArbiterCore
import ArbiterHTTP
import ArbiterTesting
import BankCluster
import BankExample
import Foundation
import Synchronization
import Testing

/// The transport of the real processes: https with mutual TLS end to end, and a flood of idle and
/// half-sent connections under a low open-files limit.
@Suite("End to end: TLS and connection limits of real processes", .serialized)
struct TransportEndToEndTests {
    @Test("a transfer commits over https with mutual TLS; a client without a certificate is refused and writes nothing",
          .enabled(if: TestCertificates.isOpenSSLAvailable, "needs the openssl command"))
    func mutualTLS() async throws {
        let root = try TemporaryDirectory(prefix: "arbiter-e2e-tls")
        let tls = try BankCluster.TLS(directory: root.path + "/tls")
        let cluster = try BankCluster(options: .init(nodeCount: 2, root: root.path + "/cluster", launcher: .builtProducts(), tls: tls))
        do {
            try await cluster.start()
            #expect(cluster.coordinatorURL.hasPrefix("https://"))
            try await cluster.openAccount("alice", balance: 1_000, at: 0)
            try await cluster.openAccount("bob", balance: 1_000, at: 1)

            // Coordinator → banks (prepare and commit, batched on HTTP1Connections) and client →
            // coordinator, all over TLS with client certificates.
            let result = try await cluster.client().submit(branches: [
                cluster.branch(.debit, "alice", 100, at: 0), cluster.branch(.credit, "bob", 100, at: 1),
            ], wait: .completion)
            #expect(result.outcome == .committed)

            // The CA but no client certificate: the coordinator's handshake refuses it.
            let anonymous = try ClientTLS(caFile: tls.certificates.caCertificate)
            let http = HTTPClientSettings().makeClient(tls: anonymous)
            let refusedID = ArbiterClient.makeTransactionID()
            let client = ArbiterClient(coordinator: cluster.coordinatorURL, secret: cluster.clientToken, httpClient: http, retry: .none)
            await #expect(throws: ArbiterClientError.self) {
                _ = try await client.submit(branches: [
                    cluster.branch(.debit, "alice", 1, at: 0), cluster.branch(.credit, "bob", 1, at: 1),
                ], id: refusedID)
            }
            // Nor can it talk to a bank directly.
            let direct = HTTP1Connections(tls: anonymous)
            await #expect(throws: WireCallError.self) {
                _ = try await direct.execute(method: .GET, url: cluster.url(.node(0)) + "/accounts", headers: [], body: nil,
                                             timeout: .seconds(5), responseSizeMax: 1 << 20)
            }
            direct.shutdown()
            try await http.shutdown()

            // Nothing was written: the coordinator does not know the id, and the balances are the transfer's.
            await #expect(throws: ArbiterClientError.self) { _ = try await cluster.client(retry: .none).transaction(refusedID) }
            try await cluster.waitUntilSettled(timeout: .seconds(30))
            #expect(try await cluster.accounts(at: 0).first { $0.id == "alice" }?.balance == 900)
            #expect(try await cluster.accounts(at: 1).first { $0.id == "bob" }?.balance == 1_100)
        } catch {
            root.keep()
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
    }

    /// Connections opened per process at most: several times the cap the open-files limit allows.
    static let floodCount = 2_000
    static let openFilesLimit = 256
    /// How long the flood is kept up.
    static let floodDuration: Duration = .seconds(5)

    @Test("under `prlimit --nofile=256`, a coordinator and two banks survive thousands of idle and half-sent connections, transfers commit meanwhile, and the servers close them after the timeouts",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/prlimit"), "needs prlimit"))
    func connectionFlood() async throws {
        let root = try TemporaryDirectory(prefix: "arbiter-e2e-flood")
        let limit = "--nofile=\(Self.openFilesLimit):\(Self.openFilesLimit)"
        let built = try BankCluster.Launcher.builtProducts()
        let launcher = BankCluster.Launcher(
            coordinator: ("/usr/bin/prlimit", [limit, built.coordinator.executable] + built.coordinator.arguments),
            node: ("/usr/bin/prlimit", [limit, built.node.executable] + built.node.arguments))
        let timeouts = ["--idle-timeout-ms", "1000", "--request-read-timeout-ms", "1000"]
        let cluster = try BankCluster(options: .init(
            nodeCount: 2, root: root.path, launcher: launcher, coordinatorArguments: timeouts, nodeArguments: timeouts))
        do {
            try await cluster.start()
            try await cluster.openAccount("alice", balance: 1_000_000, at: 0)
            try await cluster.openAccount("bob", balance: 1_000_000, at: 1)
            let transfer: @Sendable () async -> Outcome? = {
                try? await cluster.client(retry: .none).submit(branches: [
                    cluster.branch(.debit, "alice", 1, at: 0), cluster.branch(.credit, "bob", 1, at: 1),
                ]).outcome
            }
            #expect(await transfer() == .committed)

            // Transfers one after the other for the whole flood: their connections (client →
            // coordinator → banks) are open and busy before it starts, so they are never idle.
            let floodEnded = Flag()
            let transfers = Task {
                var outcomes: [Outcome?] = []
                while !floodEnded.isSet { outcomes.append(await transfer()) }
                return outcomes
            }
            // The flood: on each process, alternately a silent connection and one that sent half
            // a request head, opened as fast as they go on a thread of their own, and held.
            let floods = cluster.members.map { member in
                Flood(port: Int(cluster.url(member).split(separator: ":").last!)!, countMax: Self.floodCount, duration: Self.floodDuration)
            }
            var descriptorsMax: [BankCluster.Member: Int] = [:]
            while floods.contains(where: { !$0.isDone }) {
                for member in cluster.members {
                    let pid = cluster.process(member)!.pid
                    let count = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
                    descriptorsMax[member] = max(descriptorsMax[member] ?? 0, count)
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            floodEnded.set()
            let outcomes = await transfers.value
            let floodCommits = outcomes.filter { $0 == .committed }.count
            for member in cluster.members {
                #expect(cluster.isRunning(member), "\(member) survives the flood")
            }
            #expect(floodCommits > 0, "transfers commit while the flood is held open")

            // Every connection of the flood is closed by the servers once the timeouts pass.
            let waiting = ContinuousClock.now
            try await eventually("every flood connection is closed", timeout: .seconds(60), poll: .milliseconds(100)) {
                floods.allSatisfy { $0.openCount() == 0 }
            }
            let closedWithin = ContinuousClock.now - waiting
            for member in cluster.members {
                #expect(cluster.isRunning(member), "\(member) is still running after the flood")
            }
            // A client retries what fails for want of a connection (one the bank closed while it sat
            // idle in the coordinator's pool can fail its first request): one must commit soon.
            try await eventually("a transfer commits after the flood", timeout: .seconds(30), poll: .milliseconds(100)) {
                await transfer() == .committed
            }
            let refusals = cluster.members.map { member in
                // The servers log the count of refusals at powers of two: the last is a lower bound.
                let log = (try? String(contentsOfFile: cluster.logFile(member), encoding: .utf8)) ?? ""
                let counts = log.split(separator: "\n").filter { $0.contains("refused connections over the cap") }.compactMap { line in
                    line.range(of: "refused=").flatMap { Int(line[$0.upperBound...].prefix { $0.isNumber }) }
                }
                return "\(member) ≥\(counts.max() ?? 0)"
            }
            print("""
                connection flood under prlimit \(limit), 1 s idle and request-read timeouts, \(Self.floodDuration): \
                opened \(zip(cluster.members, floods).map { "\($0) \($1.openedCount)" }.joined(separator: ", ")); \
                refused at the cap (server log) \(refusals.joined(separator: ", ")); \
                most open descriptors \(cluster.members.map { "\($0) \(descriptorsMax[$0] ?? 0)" }.joined(separator: ", ")); \
                transfers during the flood \(floodCommits) committed, \(outcomes.filter { $0 == .aborted }.count) aborted, \
                \(outcomes.filter { $0 == nil }.count) failed; every flood connection closed within \(closedWithin) after the flood
                """)
        } catch {
            root.keep()
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
    }
}

/// A flag set once, read from any thread.
private final class Flag: Sendable {
    private let value = Mutex(false)
    var isSet: Bool { value.withLock { $0 } }
    func set() { value.withLock { $0 = true } }
}

/// Opens connections to a port on a thread of its own (connect blocks), alternately silent and
/// with half a request head sent, for at most `duration` or `countMax` connections, and holds them.
private final class Flood: @unchecked Sendable {
    private let lock = NSLock()
    private var connections: [RawConnection] = []
    private var done = false

    init(port: Int, countMax: Int, duration: Duration) {
        Thread.detachNewThread { [self] in
            let deadline = ContinuousClock.now + duration
            var index = 0
            while index < countMax && ContinuousClock.now < deadline {
                if let connection = try? RawConnection(port: port) {
                    if index % 2 == 1 { connection.send("POST /v1/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le") }
                    lock.withLock { connections.append(connection) }
                }
                index += 1
            }
            lock.withLock { done = true }
        }
    }

    var isDone: Bool { lock.withLock { done } }
    var openedCount: Int { lock.withLock { connections.count } }

    /// How many of the connections the server has not closed yet.
    func openCount() -> Int {
        lock.withLock { connections.filter { !$0.isClosedByPeer }.count }
    }
}
