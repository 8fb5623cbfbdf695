import ArbiterClient
import ArbiterCore
import ArbiterHTTP
import ArbiterTesting
import BankCluster
import BankExample
import Foundation
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
            let client = ArbiterClient(coordinator: cluster.coordinatorURL, secret: cluster.secret, httpClient: http, retry: .none)
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

    /// Connections opened per process: several times the cap the open-files limit allows.
    static let floodCount = 1_500
    static let openFilesLimit = 256

    @Test("under `prlimit --nofile=256`, a coordinator and two banks survive 1,500 idle and half-sent connections each, close them after the timeouts, and a transfer still commits",
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

            // Open the flood: on each process, alternately a silent connection and one that sent
            // half a request head. Over the cap they are closed as soon as they are accepted.
            var flood: [BankCluster.Member: [RawConnection]] = [:]
            var refusedAtOnce: [BankCluster.Member: Int] = [:]
            let opening = ContinuousClock.now
            for member in cluster.members {
                let port = Int(cluster.url(member).split(separator: ":").last!)!
                var connections: [RawConnection] = []
                for index in 0..<Self.floodCount {
                    guard let connection = try? RawConnection(port: port) else { continue }
                    if index % 2 == 1 { connection.send("POST /v1/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le") }
                    connections.append(connection)
                }
                flood[member] = connections
            }
            let opened = ContinuousClock.now - opening
            for member in cluster.members {
                refusedAtOnce[member] = flood[member]!.filter { $0.waitUntilClosed(milliseconds: 0) }.count
            }
            var descriptors: [BankCluster.Member: Int] = [:]
            for member in cluster.members {
                let process = try #require(cluster.process(member))
                #expect(process.isRunning, "\(member) survives the flood")
                // For the record: the count cannot exceed the limit; what matters is that the
                // process keeps running and serving.
                descriptors[member] = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(process.pid)/fd").count) ?? -1
            }

            // A transfer commits while the flood is held open (its requests may be refused until
            // the timeouts free room; the client retries with the same id).
            let transferring = ContinuousClock.now
            var committed = false
            var attempts = 0
            while !committed && ContinuousClock.now - transferring < .seconds(30) {
                attempts += 1
                let result = try? await cluster.client(retry: RetryPolicy(attemptCountMax: 3)).submit(branches: [
                    cluster.branch(.debit, "alice", 1, at: 0), cluster.branch(.credit, "bob", 1, at: 1),
                ])
                committed = result?.outcome == .committed
            }
            let transferTook = ContinuousClock.now - transferring
            #expect(committed, "a transfer commits during the flood")

            // Every connection of the flood is closed by the servers after the timeouts.
            try await eventually("every flood connection is closed", timeout: .seconds(15), poll: .milliseconds(100)) {
                flood.values.allSatisfy { $0.allSatisfy { $0.isClosedByPeer } }
            }
            let allClosedAfter = ContinuousClock.now - opening
            for member in cluster.members {
                #expect(cluster.isRunning(member), "\(member) is still running after the flood")
            }
            print("""
                connection flood: \(Self.floodCount) connections to each process under prlimit \(limit) (opened in \(opened)); \
                closed at once over the cap: \(cluster.members.map { "\($0) \(refusedAtOnce[$0]!)" }.joined(separator: ", ")); \
                open descriptors during the flood: \(cluster.members.map { "\($0) \(descriptors[$0]!)" }.joined(separator: ", ")); \
                a transfer committed after \(transferTook) (\(attempts) attempt(s)); every flood connection closed \(allClosedAfter) after the flood began
                """)
            flood.removeAll()
            let after = try await cluster.client().submit(branches: [
                cluster.branch(.debit, "alice", 1, at: 0), cluster.branch(.credit, "bob", 1, at: 1),
            ])
            #expect(after.outcome == .committed)
        } catch {
            root.keep()
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
    }
}
