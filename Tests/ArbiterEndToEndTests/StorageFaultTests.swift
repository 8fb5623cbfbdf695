import ArbiterClient
import ArbiterCore
import ArbiterHTTP
import ArbiterTesting
import AsyncHTTPClient
import BankCluster
import Foundation
import NIOCore
import NIOHTTP1
import Testing

/// Whether this process may mount a tmpfs (root, with the capability): the full-disk scenario needs
/// a small file system of its own to fill.
private let canMountTmpfs: Bool = {
    guard geteuid() == 0, let directory = try? TemporaryDirectory(prefix: "arbiter-mount-probe") else { return false }
    defer { directory.remove() }
    guard Tmpfs.mount(at: directory.path, megabytes: 1) else { return false }
    Tmpfs.unmount(directory.path)
    return true
}()

/// A small tmpfs mounted over a directory, and a file that fills it.
enum Tmpfs {
    @discardableResult
    static func mount(at path: String, megabytes: Int) -> Bool {
        run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", path])
    }

    static func unmount(_ path: String) {
        if !run("/bin/umount", [path]) { run("/bin/umount", ["-l", path]) }
    }

    /// Writes `path` until the file system is full.
    static func fill(_ path: String) {
        guard let handle = FileHandle(forWritingAtPath: path) ?? {
            FileManager.default.createFile(atPath: path, contents: nil)
            return FileHandle(forWritingAtPath: path)
        }() else { return }
        defer { try? handle.close() }
        let chunk = Data(count: 64 << 10)
        for _ in 0..<100_000 {  // Bounded: 6 GiB, far more than the tmpfs holds.
            do { try handle.write(contentsOf: chunk) } catch { break }
        }
        let small = Data(count: 512)
        for _ in 0..<1_000 {
            do { try handle.write(contentsOf: small) } catch { break }
        }
    }

    @discardableResult
    private static func run(_ executable: String, _ arguments: [String]) -> Bool {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }
}

extension EndToEnd {
    /// A full disk under the coordinator, then under a bank: readiness says so, new work is refused
    /// at once with 503 `storage_unavailable` (no hanging submits), no process dies, and both
    /// resume by themselves when space returns; the bank's invariants hold.
    @Suite("Storage faults", .serialized)
    struct StorageFaults {
        /// The status of `GET URL/readyz`, or 0 when nothing answers (a participant between two
        /// nodes after a storage failure).
        func readiness(_ http: HTTPClient, _ base: String) async -> Int {
            (try? await rawRequest(http, .GET, base + "/readyz", token: nil).status) ?? 0
        }

        @Test("a full disk: readiness fails, work is refused fast, nothing dies, and service resumes when space returns",
              .enabled(if: canMountTmpfs, "needs root to mount a small tmpfs"))
        func fullDisk() async throws {
            let directory = try TemporaryDirectory(prefix: "arbiter-full-disk")
            let mounts = [directory.path + "/coordinator", directory.path + "/node-0"]
            for mount in mounts {
                try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
                #expect(Tmpfs.mount(at: mount, megabytes: 24))
            }
            let cluster = try BankCluster(options: .init(
                nodeCount: 2, root: directory.path, launcher: try .builtProducts(),
                coordinatorArguments: ClusterTimeouts.coordinator, logLevel: "info", nodeArguments: ClusterTimeouts.node))
            var issued: [IssuedTransaction] = []
            var failure: (any Error)?
            do {
                try await cluster.start()
                try await cluster.openAccount("payer", balance: 1_000_000, at: 0)
                try await cluster.openAccount("payee", balance: 0, at: 1)
                let http = cluster.httpClient
                var counter = 0
                /// Submits a transfer of 1 (a new one, or again the one with id `again`); returns the reply.
                func transfer(again: String? = nil) async throws -> RawReply {
                    let txid = again ?? { counter += 1; return "full-\(counter)" }()
                    let body = #"{"id":"\#(txid)","timeoutMs":2000,"branches":[{"participant":"bank-0","payload":{"op":"debit","account":"payer","amount":1}},{"participant":"bank-1","payload":{"op":"credit","account":"payee","amount":1}}]}"#
                    let reply = try await rawRequest(http, .POST, cluster.coordinatorURL + "/v1/transactions", body, token: cluster.clientToken)
                    if reply.status != 503 || !reply.body.contains("storage_unavailable") {
                        // Refused with storage_unavailable: nothing was done. Anything else may have run.
                        let told: Outcome? = reply.body.contains(#""outcome":"committed""#) ? .committed
                            : reply.body.contains(#""outcome":"aborted""#) ? .aborted : nil
                        issued.removeAll { $0.txid.rawValue == txid }
                        issued.append(IssuedTransaction(txid: try TxID(txid), nodes: [0, 1], told: told))
                    }
                    return reply
                }
                #expect(try await transfer().status == 200)
                for member in [BankCluster.Member.coordinator, .node(0)] {
                    #expect(try await rawRequest(http, .GET, cluster.url(member) + "/readyz", token: nil).status == 200)
                }

                // 1. The coordinator's disk fills. Transfers go on until the log cannot grow; from
                //    then on a submit is refused at once and readiness fails, while health answers.
                Tmpfs.fill(mounts[0] + "/filler")
                var refused: RawReply?
                let clock = ContinuousClock()
                let deadline = clock.now + .seconds(120)
                while refused == nil, clock.now < deadline {
                    let reply = try await transfer()
                    if reply.status == 503, reply.body.contains("storage_unavailable") { refused = reply }
                }
                #expect(refused != nil, "the coordinator never refused a submit on a full disk")
                let started = clock.now
                let fast = try await transfer()
                // At once: a submit that waited for the disk would take its whole deadline or hang;
                // the bound leaves room for a loaded machine's HTTP round trip.
                #expect(fast.status == 503 && clock.now - started < .seconds(10), "refused at once: \(fast.body)")
                #expect(try await rawRequest(http, .GET, cluster.coordinatorURL + "/readyz", token: nil).status == 503)
                #expect(try await rawRequest(http, .GET, cluster.coordinatorURL + "/healthz", token: nil).status == 200)
                #expect(cluster.isRunning(.coordinator))

                // Space returns: the coordinator resumes by itself.
                try FileManager.default.removeItem(atPath: mounts[0] + "/filler")
                try await eventually("the coordinator is ready again", timeout: .seconds(60)) {
                    await readiness(http, cluster.coordinatorURL) == 200
                }
                try await eventually("a transfer commits again", timeout: .seconds(60)) {
                    try await transfer().body.contains(#""outcome":"committed""#)
                }

                // 2. A bank's disk fills. The bank stays up, says so on /readyz, and refuses protocol
                //    writes at once: transfers through it abort instead of hanging.
                Tmpfs.fill(mounts[1] + "/filler")
                try await eventually("bank 0 notices its full disk", timeout: .seconds(120)) {
                    _ = try await transfer()
                    return await readiness(http, cluster.url(.node(0))) == 503
                }
                let aborted = try await transfer()
                #expect(aborted.body.contains(#""outcome":"aborted""#), "\(aborted.body)")
                #expect(cluster.isRunning(.node(0)), "the bank process is still running")

                try FileManager.default.removeItem(atPath: mounts[1] + "/filler")
                try await eventually("bank 0 is ready again", timeout: .seconds(60)) {
                    await readiness(http, cluster.url(.node(0))) == 200
                }
                try await eventually("transfers commit again", timeout: .seconds(60)) {
                    try await transfer().body.contains(#""outcome":"committed""#)
                }

                // A client that got no answer (its transfer was deciding when the disk filled)
                // submits the same id again and learns the outcome.
                for unanswered in issued where unanswered.told == nil {
                    let reply = try await transfer(again: unanswered.txid.rawValue)
                    #expect(reply.status == 200, "\(unanswered.txid): \(reply.body)")
                }
                try await cluster.waitUntilSettled(timeout: ClusterTimeouts.settle)
                let report = try await cluster.checkInvariants(expectedTotal: 1_000_000, transactions: issued)
                print("▶ full disk: \(issued.count) transactions issued\n\(report)")
                #expect(report.passed, "\(report)")
            } catch {
                failure = error
            }
            if failure != nil {
                for member in cluster.members { print("--- \(member)\n\(cluster.process(member)?.log.suffix(3000) ?? "")") }
            }
            await cluster.shutdown()
            for mount in mounts { Tmpfs.unmount(mount) }
            directory.remove()
            if let failure { throw failure }
        }
    }
}
