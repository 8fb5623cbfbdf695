import ArbiterHTTP
import ArbiterTesting
import Foundation
import Hummingbird
import Logging
import NIOCore

/// The skeleton of a `wait: decision` transfer: its processes, hops and forced writes with none of
/// the protocol's work.
///
/// Three processes of this executable stand in for the coordinator and the two nodes, and this
/// process for the client: the client POSTs to the coordinator; the coordinator POSTs to both
/// nodes at once; each node writes 4 KiB and `fdatasync`s (the floor's write) and answers; the
/// coordinator then does the same write and answers the client. Hummingbird servers, kept-alive
/// `HTTP1Connections`, bodies of a transfer's sizes, handlers on the event loops: the stack of the
/// real services.
///
/// The floor adds the two round trips and two fsyncs of a transfer as if each ran alone. The
/// skeleton measures them as a transfer meets them: the second node's prepare leaves after the
/// first's, the two nodes' fsyncs share the disk, each hop wakes a process on a machine whose
/// cores are shared by four. What a transfer takes beyond the skeleton is the protocol's own work
/// (JSON, the state machines, SQLite's statements and pages, locks).
enum Skeleton {
    enum Role: String {
        case coordinator
        case node
    }

    /// Bodies the sizes of a transfer's (bytes on the wire, JSON-shaped).
    static let submitBody = body(size: 470)
    static let prepareBody = body(size: 430)
    static let voteBody = body(size: 280)
    static let answerBody = body(size: 190)

    private static func body(size: Int) -> [UInt8] {
        let head = #"{"txid":"c-0123456789abcdef0123456789abcdef","pad":""#
        return Array((head + String(repeating: "x", count: max(0, size - head.count - 2)) + #""}"#).utf8)
    }

    /// The line a server prints once it listens; the port is its one capture group.
    static let listeningPattern = #"skeleton \w+ listening on http://127\.0\.0\.1:(\d+)"#

    // MARK: - Servers

    /// Runs a skeleton server until killed: `coordinator` fans out to `nodes`; both kinds force a
    /// 4 KiB write to a file in `directory` before answering.
    static func serve(role: Role, directory: String, nodes: [String]) async throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let file = try ForcedFile(path: directory + "/skeleton-\(role.rawValue).bin")
        let connections = HTTP1Connections()
        defer { connections.shutdown() }
        let router = Router()
        let headers = FloorMeasurement.requestHeaders
        switch role {
        case .node:
            router.post("/prepare") { request, _ -> Response in
                _ = try await request.body.collect(upTo: 1 << 16)
                try file.force()
                return Response(status: .ok, headers: [.contentType: "application/json"],
                                body: .init(byteBuffer: ByteBuffer(bytes: voteBody)))
            }
        case .coordinator:
            router.post("/submit") { request, _ -> Response in
                _ = try await request.body.collect(upTo: 1 << 16)
                @Sendable func prepare(_ node: String) async throws {
                    let reply = try await connections.execute(
                        method: .POST, url: node + "/prepare", headers: headers, body: prepareBody,
                        timeout: .seconds(10), responseSizeMax: 1 << 16)
                    guard reply.status == 200 else { throw BenchError("a skeleton node answered \(reply.status)") }
                }
                // The first node's request from this task, the other's from a child task.
                async let second: Void = prepare(nodes[1])
                try await prepare(nodes[0])
                try await second
                try file.force()
                return Response(status: .ok, headers: [.contentType: "application/json"],
                                body: .init(byteBuffer: ByteBuffer(bytes: answerBody)))
            }
        }
        var logger = Logger(label: "bank-bench.skeleton")
        logger.logLevel = .critical
        let app = Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "skeleton"),
            onServerRunning: { channel in
                // Through stderr, unbuffered: the parent waits for this line.
                FileHandle.standardError.write(Data("skeleton \(role.rawValue) listening on http://127.0.0.1:\(channel.localAddress?.port ?? 0)\n".utf8))
            },
            logger: logger)
        try await app.run()
    }

    // MARK: - Measurement

    /// Starts the three servers (this executable with `--skeleton-role`), runs `warmupCount` then
    /// `count` transfers one after another from this process, stops the servers by their pids, and
    /// returns the measured latencies.
    static func measure(directory: String, count: Int, warmupCount: Int = 300) async throws -> LatencySummary {
        precondition(count > 0)
        let executable = Bundle.main.executablePath ?? CommandLine.arguments[0]
        let serversDirectory = directory + "/skeleton"
        var servers: [ManagedProcess] = []
        defer {
            for server in servers { server.kill() }
            try? FileManager.default.removeItem(atPath: serversDirectory)
        }
        func start(_ role: Role, _ name: String, nodes: [String] = []) async throws -> String {
            let server = try ManagedProcess(name: "skeleton \(name)", executable: executable, arguments: [
                "--skeleton-role", role.rawValue, "--data-directory", serversDirectory + "/" + name,
            ] + (nodes.isEmpty ? [] : ["--skeleton-nodes", nodes.joined(separator: ",")]))
            servers.append(server)
            return "http://127.0.0.1:" + (try await server.waitFor(listeningPattern, timeout: .seconds(30)))
        }
        let nodes = [try await start(.node, "node-a"), try await start(.node, "node-b")]
        let coordinator = try await start(.coordinator, "coordinator", nodes: nodes)

        let connections = HTTP1Connections()
        defer { connections.shutdown() }
        let headers = FloorMeasurement.requestHeaders
        let clock = ContinuousClock()
        var samples = LatencySamples()
        for index in 0..<(warmupCount + count) {
            let start = clock.now
            let reply = try await connections.execute(
                method: .POST, url: coordinator + "/submit", headers: headers, body: submitBody,
                timeout: .seconds(10), responseSizeMax: 1 << 16)
            guard reply.status == 200 else { throw BenchError("the skeleton coordinator answered \(reply.status)") }
            if index >= warmupCount { samples.record(clock.now - start) }
        }
        return LatencySummary(samples)
    }
}
