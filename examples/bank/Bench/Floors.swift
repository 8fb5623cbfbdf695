import ArbiterHTTP
import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1

/// The physical floors a transfer's latency is read against, measured in the same run.
struct Floors: Codable, Sendable {
    /// One 4 KiB `pwrite` plus `fdatasync` on a file in the benchmark's data directory.
    var fsync: LatencySummary
    /// One HTTP/1.1 POST with a small JSON body and answer, over a kept-alive loopback connection
    /// to a Hummingbird server: of the two clients the services use, the one with the lower median
    /// (the floor is a lower bound). Runs before 2026-11-24 06:30 UTC measured AsyncHTTPClient only.
    var roundTrip: LatencySummary
    /// The round trip with an ``HTTP1Connections`` client (a transfer's hops: the coordinator's
    /// batches to the nodes, the load generator's lone submits). Absent
    /// from results written before it existed.
    var roundTripConnections: LatencySummary?
    /// The round trip with an AsyncHTTPClient client, which carries every other call (and
    /// the batched submits' streamed answers). Absent from results written before it existed.
    var roundTripAsyncHTTPClient: LatencySummary?
    /// A fixed piece of single-threaded work (``FloorMeasurement/cpuProbe(count:)``): not a floor,
    /// but a gauge of how fast the machine's cores ran at the time, for comparing runs on a machine
    /// whose speed drifts. Absent from results written before it existed.
    var cpuProbe: LatencySummary?
    /// A `wait: decision` transfer's skeleton (``Skeleton``): its processes, hops and forced writes
    /// without the protocol's work, one transfer after another. Not a floor of the hardware but of
    /// the transfer's shape on this stack. Absent from results written before it existed, and with
    /// `--skeleton-samples 0`.
    var skeleton: LatencySummary?

    /// The floor of a 2-participant transfer: `fsyncs` forced writes and `roundTrips` round trips
    /// in sequence, at their medians.
    func floorNanoseconds(fsyncs: Int, roundTrips: Int) -> Double {
        Double(fsyncs) * fsync.p50Nanoseconds + Double(roundTrips) * roundTrip.p50Nanoseconds
    }
}

/// Percentiles of a latency distribution, in nanoseconds.
struct LatencySummary: Codable, Sendable {
    var count: UInt64
    var p50Nanoseconds: Double
    var p99Nanoseconds: Double
    var p999Nanoseconds: Double
    var maxNanoseconds: Double
    var meanNanoseconds: Double
}

extension Duration {
    /// The duration in whole nanoseconds.
    var nanosecondsCount: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

enum FloorMeasurement {
    /// `count` writes of 4 KiB at offset 0, each followed by `fdatasync` (``ForcedFile/force()``),
    /// in a fresh file in `directory` (the file is removed afterwards).
    static func fsync(directory: String, count: Int) throws -> LatencySummary {
        precondition(count > 0)
        let path = directory + "/fsync-floor.bin"
        let file = try ForcedFile(path: path)
        defer { unlink(path) }
        var samples = LatencySamples()
        let clock = ContinuousClock()
        for _ in 0..<count {
            let start = clock.now
            try file.force()
            samples.record(clock.now - start)
        }
        return LatencySummary(samples)
    }

    /// The headers of the floor's and the skeleton's requests: a transfer's content type and a
    /// bearer token of a secret's length (their servers check neither).
    static let requestHeaders = [("Content-Type", "application/json"), ("Authorization", "Bearer 0123456789abcdef")]

    /// `count` runs of the same fixed, single-threaded integer work (about a millisecond on the
    /// project's machine): a gauge of the cores' speed at the time. On a virtual machine it moves
    /// with what the neighbours do, even when no steal is reported, and every other figure of the
    /// run moves with it.
    static func cpuProbe(count: Int) -> LatencySummary {
        precondition(count > 0)
        var samples = LatencySamples()
        let clock = ContinuousClock()
        var sink: UInt64 = 0
        for round in 0..<count {
            let start = clock.now
            // SplitMix64 steps: a dependent chain of multiplies and shifts the optimiser cannot
            // shorten, and no memory traffic.
            var state = UInt64(round)
            for _ in 0..<800_000 {
                state &+= 0x9E37_79B9_7F4A_7C15
                var z = state
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                sink ^= z ^ (z >> 31)
            }
            samples.record(clock.now - start)
        }
        // Keeps the work observable.
        if sink == 0x0123_4567_89AB_CDEF { print("") }
        return LatencySummary(samples)
    }

    /// `count` sequential POSTs (after `warmupCount` unmeasured ones) to a Hummingbird server in
    /// this process, over one kept-alive connection of ``HTTP1Connections`` and then, the same way,
    /// of an AsyncHTTPClient made with the services' ``HTTPClientSettings``.
    static func roundTrips(count: Int, warmupCount: Int = 200) async throws -> (connections: LatencySummary, asyncHTTPClient: LatencySummary) {
        precondition(count > 0)
        let router = Router()
        // The shape of a protocol exchange: a small JSON body in, a small JSON body out.
        let answer = ByteBuffer(string: #"{"txid":"c-0123456789abcdef0123456789abcdef","vote":"yes"}"#)
        router.post("/echo") { request, _ -> Response in
            _ = try await request.body.collect(upTo: 1 << 16)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: answer))
        }
        var logger = Logger(label: "bank-bench.floor")
        logger.logLevel = .critical  // Cancelling the server at the end logs an error otherwise.
        let (portStream, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let app = Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "floor"),
            onServerRunning: { channel in
                portContinuation.yield(channel.localAddress?.port ?? 0)
                portContinuation.finish()
            },
            logger: logger)

        let client = HTTPClientSettings().makeClient()
        let connections = HTTP1Connections()
        defer { connections.shutdown() }
        do {
            let summaries = try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await app.run() }
                var port = 0
                for await bound in portStream { port = bound }
                guard port > 0 else { throw BenchError("the floor's HTTP server did not start") }
                let url = "http://127.0.0.1:\(port)/echo"
                let body = #"{"txid":"c-0123456789abcdef0123456789abcdef","payload":{"op":"debit","account":"a1234","amount":42}}"#
                // `count` round trips after `warmupCount` unmeasured ones.
                func measure(_ roundTrip: () async throws -> Void) async throws -> LatencySummary {
                    let clock = ContinuousClock()
                    var samples = LatencySamples()
                    for index in 0..<(warmupCount + count) {
                        let start = clock.now
                        try await roundTrip()
                        if index >= warmupCount { samples.record(clock.now - start) }
                    }
                    return LatencySummary(samples)
                }
                let headers = requestHeaders
                let lean = try await measure {
                    let reply = try await connections.execute(
                        method: .POST, url: url, headers: headers, body: Array(body.utf8), timeout: .seconds(10), responseSizeMax: 1 << 16)
                    guard reply.status == 200 else { throw BenchError("the floor's HTTP server answered \(reply.status)") }
                }
                var request = HTTPClientRequest(url: url)
                request.method = .POST
                for (name, value) in headers { request.headers.add(name: name, value: value) }
                request.body = .bytes(ByteBuffer(string: body))
                let viaClient = try await measure {
                    let response = try await client.execute(request, timeout: .seconds(10))
                    _ = try await response.body.collect(upTo: 1 << 16)
                }
                group.cancelAll()
                return (lean, viaClient)
            }
            try await client.shutdown()
            return summaries
        } catch {
            try? await client.shutdown()
            throw error
        }
    }
}

/// A 4 KiB block at offset 0 of a file, rewritten and `fdatasync`ed on each ``force()``: the fsync
/// floor's write, and the skeleton's forced write.
final class ForcedFile: Sendable {
    private let path: String
    private let descriptor: Int32
    private static let block = [UInt8](repeating: 0xA5, count: 4096)

    /// Creates (or truncates) the file at `path` and forces the block once, so that it is allocated
    /// as in a WAL that has grown and later writes overwrite it.
    init(path: String) throws {
        self.path = path
        descriptor = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
        guard descriptor >= 0 else { throw BenchError("cannot create \(path): errno \(errno)") }
        do {
            try force()
        } catch {
            close(descriptor)
            throw error
        }
    }

    deinit { close(descriptor) }

    func force() throws {
        let written = Self.block.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, 4096, 0) }
        guard written == 4096, fdatasync(descriptor) == 0 else { throw BenchError("pwrite/fdatasync failed on \(path): errno \(errno)") }
    }
}
