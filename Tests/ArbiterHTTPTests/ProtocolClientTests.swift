import ArbiterTesting
import ArbiterCore
@testable import ArbiterHTTP
import AsyncHTTPClient
import Hummingbird
import Testing

/// A tiny participant: votes yes unless the payload is `"no"`, acknowledges with what it was told,
/// and fails messages whose txid starts with `fail`.
func makeParticipantStub(received: Recorder<CoordinatorMessage>) -> Router<BasicRequestContext> {
    let limits = WireLimits.default
    @Sendable func answer(_ message: CoordinatorMessage) throws(APIError) -> ParticipantMessage {
        received.append(message)
        if message.txid.rawValue.hasPrefix("fail") { throw APIError.unavailable("the store is busy") }
        switch message {
        case .prepare(let request):
            if request.onePhase { return .onePhaseOutcome(request.txid, .committed) }
            return request.payload == Payload("\"no\"") ? .vote(request.txid, .no(reason: "told to")) : .vote(request.txid, .yes)
        case .commit(let txid): return .acknowledge(txid, .committed)
        case .abort(let txid): return .acknowledge(txid, .aborted)
        case .outcome: throw APIError.invalidValue(nil, "not a participant message")
        }
    }
    let router = Router()
    router.add(middleware: APIErrorMiddleware())
    router.get("/healthz") { _, _ in HealthResponse() }
    let v1 = router.group("/v1").add(middleware: BearerTokenMiddleware(secret: TestSecrets.protocolSecret))
    v1.post("/prepare") { request, _ in
        let prepare = try await request.decodeWire(PrepareBody.self, bodySizeMax: limits.bodySizeMax).validated(limits: limits)
        return PrepareReply(try answer(.prepare(prepare)))!
    }
    v1.post("/commit") { request, _ in
        let txid = try await request.decodeWire(DecisionBody.self, bodySizeMax: limits.bodySizeMax).validated()
        return AcknowledgeReply(try answer(.commit(txid)))!
    }
    v1.post("/abort") { request, _ in
        let txid = try await request.decodeWire(DecisionBody.self, bodySizeMax: limits.bodySizeMax).validated()
        return AcknowledgeReply(try answer(.abort(txid)))!
    }
    v1.post("/batch") { request, _ in
        let messages = try await request.decodeWire(BatchRequest.self, bodySizeMax: limits.batchBodySizeMax).validated(limits: limits)
        return BatchResponse(replies: messages.map { message in
            do throws(APIError) {
                return BatchReply(answering: message, with: try answer(message))
            } catch {
                return BatchReply(answering: message, failure: error)
            }
        })
    }
    // The coordinator's inquiry endpoint, on the same server for the test's convenience.
    v1.get("/transactions/:id/outcome") { request, context in
        OutcomeResponse(id: try request.txid(context: context), answer: .committed)
    }
    return router
}

@Suite("ProtocolClient against a test participant on 127.0.0.1")
struct ProtocolClientTests {
    static let payload = Payload(#"{"op":"credit","account":"bob","amount":5}"#)

    func prepare(_ id: String, payload: Payload = payload, onePhase: Bool = false) -> CoordinatorMessage {
        .prepare(PrepareRequest(txid: txid(id), coordinator: CoordinatorID("http://127.0.0.1:1"), payload: payload, onePhase: onePhase))
    }

    @Test("single messages, a batch and an inquiry carry the protocol end to end")
    func endToEnd() async throws {
        let received = Recorder<CoordinatorMessage>()
        try await withLiveServer(makeParticipantStub(received: received)) { port in
            let http = HTTPClientSettings().makeClient()
            let client = ProtocolClient(httpClient: http, secret: TestSecrets.protocolSecret)
            let participant = ParticipantID("http://127.0.0.1:\(port)")
            do {
                #expect(try await client.send(prepare("t1"), to: participant, timeout: .seconds(5)) == .vote(txid("t1"), .yes))
                #expect(try await client.send(prepare("t2", payload: Payload("\"no\"")), to: participant, timeout: .seconds(5)) == .vote(txid("t2"), .no(reason: "told to")))
                #expect(try await client.send(prepare("t3", onePhase: true), to: participant, timeout: .seconds(5)) == .onePhaseOutcome(txid("t3"), .committed))
                #expect(try await client.send(.commit(txid("t1")), to: participant, timeout: .seconds(5)) == .acknowledge(txid("t1"), .committed))
                #expect(try await client.send(.abort(txid("t2")), to: participant, timeout: .seconds(5)) == .acknowledge(txid("t2"), .aborted))

                let batch: [CoordinatorMessage] = [prepare("b1"), .commit(txid("b2")), .abort(txid("fail-3")), prepare("b4", onePhase: true)]
                let results = try await client.sendBatch(batch, to: participant, timeout: .seconds(5))
                #expect(results.count == 4)
                #expect(results[0] == .success(.vote(txid("b1"), .yes)))
                #expect(results[1] == .success(.acknowledge(txid("b2"), .committed)))
                guard case .failure(let detail) = results[2] else {
                    Issue.record("expected the third message to fail, got \(results[2])")
                    throw TestFailure("batch")
                }
                #expect(detail.code == "unavailable")
                #expect(results[3] == .success(.onePhaseOutcome(txid("b4"), .committed)))

                let answer = try await client.inquire(txid("t1"), coordinator: CoordinatorID("http://127.0.0.1:\(port)"), timeout: .seconds(5))
                #expect(answer == .committed)
            } catch {
                try await http.shutdown()
                throw error
            }
            try await http.shutdown()
        }
        // Payload bytes arrived exactly as sent.
        let first = received.all.first
        guard case .prepare(let request) = first else {
            Issue.record("the participant did not receive the prepare first")
            return
        }
        #expect(request.payload == Self.payload)
        #expect(received.all.count == 9)
    }

    @Test("batches go over the kept-alive connections when the client has them, and answer the same")
    func batchOverConnections() async throws {
        let received = Recorder<CoordinatorMessage>()
        try await withLiveServer(makeParticipantStub(received: received)) { port in
            let http = HTTPClientSettings().makeClient()
            let connections = HTTP1Connections()
            defer { connections.shutdown() }
            let client = ProtocolClient(httpClient: http, connections: connections, secret: TestSecrets.protocolSecret)
            let participant = ParticipantID("http://127.0.0.1:\(port)")
            do {
                for round in 0..<3 {
                    let results = try await client.sendBatch(
                        [prepare("r\(round)"), .commit(txid("c\(round)")), .abort(txid("fail-\(round)"))], to: participant, timeout: .seconds(5))
                    #expect(results.count == 3)
                    #expect(results[0] == .success(.vote(txid("r\(round)"), .yes)))
                    #expect(results[1] == .success(.acknowledge(txid("c\(round)"), .committed)))
                    guard case .failure(let detail) = results[2] else {
                        Issue.record("expected the third message to fail, got \(results[2])")
                        continue
                    }
                    #expect(detail.code == "unavailable")
                }
                #expect(connections.openedCount == 1, "three batches, one kept-alive connection")
                let wrongSecret = ProtocolClient(httpClient: http, connections: connections, secret: try BearerSecret("wrong"))
                await #expect {
                    try await wrongSecret.sendBatch([.commit(txid("t"))], to: participant, timeout: .seconds(5))
                } throws: { error in
                    let error = error as? WireCallError
                    return error?.kind == .rejected && error?.status == 401 && error?.detail?.code == "unauthorized"
                }
            } catch {
                try await http.shutdown()
                throw error
            }
            try await http.shutdown()
        }
        #expect(received.all.count == 9)
    }

    @Test("a participant's error status and an unreachable participant are told apart")
    func failures() async throws {
        let received = Recorder<CoordinatorMessage>()
        try await withLiveServer(makeParticipantStub(received: received)) { port in
            let http = HTTPClientSettings().makeClient()
            let participant = ParticipantID("http://127.0.0.1:\(port)")
            let wrongSecret = ProtocolClient(httpClient: http, secret: try BearerSecret("wrong"))
            await #expect {
                try await wrongSecret.send(.commit(txid("t")), to: participant, timeout: .seconds(5))
            } throws: { error in
                let error = error as? WireCallError
                return error?.kind == .rejected && error?.status == 401 && error?.detail?.code == "unauthorized" && error?.isRetryable == false
            }
            let client = ProtocolClient(httpClient: http, secret: TestSecrets.protocolSecret)
            await #expect {
                try await client.send(.commit(txid("fail-1")), to: participant, timeout: .seconds(5))
            } throws: { error in
                let error = error as? WireCallError
                return error?.kind == .rejected && error?.status == 503 && error?.isRetryable == true
            }
            try await http.shutdown()
        }
        #expect(received.all.count == 1, "the unauthorized request reached no handler")

        let refusing = try RefusingPort()
        defer { withExtendedLifetime(refusing) {} }
        let closedPort = refusing.port
        let http = HTTPClientSettings().makeClient()
        let client = ProtocolClient(httpClient: http, secret: TestSecrets.protocolSecret)
        await #expect {
            try await client.send(.abort(txid("t")), to: ParticipantID("http://127.0.0.1:\(closedPort)"), timeout: .seconds(5))
        } throws: { error in
            (error as? WireCallError)?.kind == .unreachable
        }
        try await http.shutdown()
    }
}

@Suite("Shared HTTP client settings")
struct HTTPClientSettingsTests {
    @Test("the pool's per-host limit is raised, redirects refused, connect failures reported at once")
    func configuration() {
        let configuration = HTTPClientSettings().configuration()
        #expect(configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit == 256)
        #expect(configuration.connectionPool.retryConnectionEstablishment == false)
        #expect(configuration.timeout.connect == .seconds(1))
        #expect(configuration.connectionPool.idleTimeout == .seconds(60))
        let custom = HTTPClientSettings(connectionsPerHostMax: 32, connectTimeout: .milliseconds(250)).configuration()
        #expect(custom.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit == 32)
        #expect(custom.timeout.connect == .milliseconds(250))
    }
}
