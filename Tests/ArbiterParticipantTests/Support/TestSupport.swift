import ArbiterCore
import ArbiterHTTP
import ArbiterParticipant
import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import Testing

// Shared helpers: temporary directories, an HTTP client, a participant node running on a loopback
// port the system chose, and a tiny fake coordinator answering in-doubt inquiries.

enum TestSecrets {
    static let protocolText = "test-protocol-secret"
    static let operatorText = "test-operator-secret"
    static let protocolSecret = try! BearerSecret(protocolText)
    static let operatorSecret = try! BearerSecret(operatorText)
}

/// A logger that stays quiet unless `ARBITER_TEST_LOG` names a level.
func testLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = ProcessInfo.processInfo.environment["ARBITER_TEST_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .critical
    return logger
}

/// Runs `body` with a new empty directory, removed afterwards.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("arbiter-participant-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

/// Waits until `condition` holds, checking every 20 ms, for at most `timeout`.
func eventually(
    _ what: String, timeout: Duration = .seconds(20), _ condition: () async throws -> Bool,
    sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("timed out waiting until \(what)", sourceLocation: sourceLocation)
    throw TimedOut(what: what)
}

struct TimedOut: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting until \(what)" }
}

// MARK: - HTTP

/// An HTTP answer: status and body.
struct Reply: CustomStringConvertible {
    var status: Int
    var body: [UInt8]

    var text: String { String(decoding: body, as: UTF8.self) }
    var description: String { "HTTP \(status) \(text)" }

    /// The body as a JSON object.
    func json() throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
            throw JSONShapeError(text: text)
        }
        return object
    }

    /// `error.code` of a JSON error body.
    func errorCode() throws -> String? {
        (try json()["error"] as? [String: Any])?["code"] as? String
    }
}

struct JSONShapeError: Error {
    var text: String
}

/// A small HTTP client for tests.
struct TestHTTP: Sendable {
    let client: HTTPClient

    static func with<T>(_ body: (TestHTTP) async throws -> T) async throws -> T {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(2), read: .seconds(30))
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        do {
            let result = try await body(TestHTTP(client: client))
            try await client.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    /// Sends a request; `token` nil sends no `Authorization` header.
    func send(
        _ method: HTTPMethod, _ url: String, body: String? = nil, token: String? = TestSecrets.protocolText,
        timeout: Duration = .seconds(30)
    ) async throws -> Reply {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body))
        }
        let seconds = Int64(timeout.components.seconds)
        let response = try await client.execute(request, timeout: .seconds(seconds))
        let buffer = try await response.body.collect(upTo: 16 << 20)
        return Reply(status: Int(response.status.code), body: Array(buffer.readableBytesView))
    }

    func post(_ url: String, _ body: String, token: String? = TestSecrets.protocolText) async throws -> Reply {
        try await send(.POST, url, body: body, token: token)
    }

    func get(_ url: String, token: String? = TestSecrets.protocolText) async throws -> Reply {
        try await send(.GET, url, token: token)
    }
}

// MARK: - Protocol message bodies

enum Wire {
    static func prepare(_ txid: String, coordinator: String, payload: String, onePhase: Bool = false) -> String {
        #"{"txid":"\#(txid)","coordinator":"\#(coordinator)","payload":\#(payload)\#(onePhase ? #","onePhase":true"# : "")}"#
    }

    static func decision(_ txid: String) -> String {
        #"{"txid":"\#(txid)"}"#
    }
}

// MARK: - A running participant node

/// A node serving on loopback, with a test HTTP client.
struct RunningNode<R: Resource>: Sendable {
    let node: ParticipantNode<R>
    let url: String
    let http: TestHTTP

    var database: ParticipantDatabase { node.database }

    func prepare(_ txid: String, payload: String, coordinator: String = "http://127.0.0.1:1", onePhase: Bool = false) async throws -> Reply {
        try await http.post(url + "/v1/prepare", Wire.prepare(txid, coordinator: coordinator, payload: payload, onePhase: onePhase))
    }

    func commit(_ txid: String) async throws -> Reply {
        try await http.post(url + "/v1/commit", Wire.decision(txid))
    }

    func abort(_ txid: String) async throws -> Reply {
        try await http.post(url + "/v1/abort", Wire.decision(txid))
    }

    /// What the store holds about `txid`.
    func stored(_ txid: String) async throws -> ParticipantTransactionStateView? {
        guard let transaction = try await node.database.store.transaction(try TxID(txid)) else { return nil }
        return ParticipantTransactionStateView(state: transaction.state.rawValue, heuristic: transaction.isHeuristic, tombstone: transaction.isTombstone)
    }

    /// The lock keys held, by anyone.
    func lockKeys() async throws -> [String] {
        try await node.database.store.allLocks().map(\.key)
    }
}

struct ParticipantTransactionStateView: Equatable {
    var state: String
    var heuristic: Bool
    var tombstone: Bool
}

/// Runs a node over `directory` in a service group, hands it to `body`, then stops it gracefully.
func withNode<R: Resource, T>(
    _ resource: R,
    directory: String,
    configure: (inout ParticipantOptions) -> Void = { _ in },
    routes: @escaping @Sendable (ParticipantRoutes) -> Void = { _ in },
    _ body: (RunningNode<R>) async throws -> T
) async throws -> T {
    var options = ParticipantOptions(
        port: 0,
        dataDirectory: directory,
        secret: TestSecrets.protocolSecret,
        operatorTokens: [NamedToken(name: "test-operator", secret: TestSecrets.operatorSecret)],
        seed: 42,
        logger: testLogger("participant")
    )
    configure(&options)
    let node = try ParticipantNode(resource: resource, options: options, routes: routes)
    let group = ServiceGroup(services: [node], logger: testLogger("service-group"))
    return try await TestHTTP.with { http in
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                let port = try await node.waitUntilListening()
                let result = try await body(RunningNode(node: node, url: "http://127.0.0.1:\(port)", http: http))
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                return result
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
        }
    }
}

// MARK: - A fake coordinator

/// Answers `GET /v1/transactions/{id}/outcome` from a table the test fills (`pending` by default)
/// and counts the inquiries.
final class FakeCoordinator: Sendable {
    private let answers = Mutex<[String: WireInquiryAnswer]>([:])
    private let asked = Mutex<[String: Int]>([:])

    func answer(_ txid: String, _ answer: WireInquiryAnswer) {
        answers.withLock { $0[txid] = answer }
    }

    func inquiries(about txid: String) -> Int {
        asked.withLock { $0[txid] ?? 0 }
    }

    fileprivate func outcome(_ txid: String) -> OutcomeResponse {
        asked.withLock { $0[txid, default: 0] += 1 }
        return OutcomeResponse(id: txid, outcome: answers.withLock { $0[txid] } ?? .pending)
    }

    /// Serves on a loopback port the system chooses; `body` gets the coordinator's base URL.
    static func with<T>(_ body: (FakeCoordinator, String) async throws -> T) async throws -> T {
        let coordinator = FakeCoordinator()
        let router = Router()
        router.add(middleware: APIErrorMiddleware())
        router.group().add(middleware: BearerTokenMiddleware<BasicRequestContext>(secret: TestSecrets.protocolSecret))
            .get("/v1/transactions/:id/outcome") { _, context in
                coordinator.outcome(context.parameters.get("id") ?? "")
            }
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let app = Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in portContinuation.yield(channel.localAddress?.port ?? 0) },
            logger: testLogger("fake-coordinator")
        )
        let group = ServiceGroup(services: [app], logger: testLogger("fake-coordinator-group"))
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                var iterator = ports.makeAsyncIterator()
                guard let port = await iterator.next() else { throw TimedOut(what: "the fake coordinator listens") }
                let result = try await body(coordinator, "http://127.0.0.1:\(port)")
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                return result
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
        }
    }
}

/// Node options with a 20 ms memory retention, so that a test sees ended transactions leave the
/// machine's memory (and be answered from the store) at once.
let shortMemoryRetention: @Sendable (inout ParticipantOptions) -> Void = { $0.protocolConfig.memoryRetention = .milliseconds(20) }

extension RunningNode {
    /// Waits until the machine's memory holds none of `txids` (see ``shortMemoryRetention``).
    func waitUntilForgotten(_ txids: String...) async throws {
        try await eventually("memory forgets \(txids.joined(separator: ", "))") {
            for txid in txids where await node.state(of: try TxID(txid)) != nil { return false }
            return true
        }
    }
}
