import ArbiterClient
import ArbiterCoordinator
import ArbiterCore
import ArbiterHTTP
import ArbiterPostgres
@_exported import ArbiterTesting
import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOHTTP1
import ServiceLifecycle

func quietLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = ProcessInfo.processInfo.environment["ARBITER_TEST_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .critical
    return logger
}

/// Runs `body` with fake participants served on loopback (ports chosen by the system).
func withParticipants<T: Sendable>(
    _ participants: [FakeParticipant], _ body: @Sendable ([ParticipantID]) async throws -> T
) async throws -> T {
    // Stopped by graceful shutdown, never by cancelling their tasks: a server task cancelled while
    // a connection is being accepted drops that connection unserved, and NIO traps on it in debug
    // builds ("Deinited NIOAsyncWriter without calling finish()", apple/swift-nio#2637).
    var apps: [Application<RouterResponder<BasicRequestContext>>] = []
    var ports: [AsyncStream<Int>] = []
    for participant in participants {
        let (stream, continuation) = AsyncStream<Int>.makeStream()
        apps.append(Application(
            router: participant.router(),
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? 0); continuation.finish() },
            logger: quietLogger("fake-participant")))
        ports.append(stream)
    }
    let group = ServiceGroup(services: apps, gracefulShutdownSignals: [], logger: quietLogger("fake-participants"))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        let result: Result<T, any Error>
        do {
            var ids: [ParticipantID] = []
            for stream in ports {
                var iterator = stream.makeAsyncIterator()
                guard let port = await iterator.next(), port > 0 else { throw TestFailure("a fake participant did not start") }
                ids.append(ParticipantID("http://127.0.0.1:\(port)"))
            }
            result = .success(try await body(ids))
        } catch {
            result = .failure(error)
        }
        await group.triggerGracefulShutdown()
        await stopWithin(.seconds(3), &tasks)
        return try result.get()
    }
}

/// Runs an in-process coordinator on loopback, with a client, and shuts it down gracefully after.
func withCoordinator<T: Sendable>(
    data: String,
    config: CoordinatorConfig = CoordinatorConfig(prepareTimeout: .seconds(5), phaseTwoRetry: Backoff(initial: .milliseconds(20), max: .milliseconds(200))),
    limits: WireLimits = .default,
    operatorSecret: BearerSecret? = TestSecrets.operatorSecret,
    participants: ParticipantRegistry = .open(),
    clientTokens: [NamedToken]? = nil,
    requestsInFlightMax: Int = 4,
    name: String = "test",
    cluster: ClusterStoreOptions? = nil,
    _ body: @Sendable (_ url: String, _ client: ArbiterClient, _ http: HTTPClient) async throws -> T
) async throws -> T {
    let service = CoordinatorService(options: CoordinatorOptions(
        dataDirectory: data, port: 0, name: name, secret: TestSecrets.protocolSecret, participants: participants,
        clientTokens: clientTokens, operatorTokens: operatorSecret.map { [NamedToken(name: "test-operator", secret: $0)] } ?? [], protocolConfig: config, limits: limits,
        requestsInFlightMax: requestsInFlightMax, logger: quietLogger("coordinator"), cluster: cluster))
    let group = ServiceGroup(services: [service], gracefulShutdownSignals: [], logger: quietLogger("group"))
    let http = HTTPClientSettings().makeClient()
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        let port = await service.boundPort()
        let url = "http://127.0.0.1:\(port)"
        let client = ArbiterClient(coordinator: url, secret: clientTokens?.first?.secret ?? TestSecrets.protocolSecret,
                                   operatorSecret: TestSecrets.operatorSecret,
                                   httpClient: http, retry: RetryPolicy(attemptCountMax: 1))
        let result: Result<T, any Error>
        do { result = .success(try await body(url, client, http)) } catch { result = .failure(error) }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
        try await http.shutdown()
        return try result.get()
    }
}

func branch(_ participant: ParticipantID, _ json: String = #"{"op":"credit","amount":1}"#) -> Branch {
    Branch(participant: participant, payload: Payload(json))
}

func txid(_ text: String) -> TxID { try! TxID(text) }

/// A raw HTTP call for the bad-input and auth tests.
func rawRequest(
    _ http: HTTPClient, _ method: HTTPMethod, _ url: String, body: String? = nil, token: BearerSecret? = TestSecrets.protocolSecret
) async throws -> (status: Int, body: String) {
    var request = HTTPClientRequest(url: url)
    request.method = method
    if let token { request.headers.add(name: "Authorization", value: token.authorizationHeaderValue) }
    if let body {
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(Array(body.utf8))
    }
    let response = try await http.execute(request, timeout: .seconds(30))
    let bytes = try await response.body.collect(upTo: 1 << 20)
    return (Int(response.status.code), String(buffer: bytes))
}
