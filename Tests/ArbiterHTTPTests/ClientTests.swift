@testable import ArbiterClient
import ArbiterTesting
import ArbiterCore
@testable import ArbiterHTTP
import AsyncHTTPClient
import HTTPTypes
import Hummingbird
import Testing

/// A tiny coordinator for client tests: `submit` answers from `decide`, which may throw an
/// `APIError` to answer an error.
func makeCoordinatorStub(
    seenIDs: Recorder<String>,
    decide: @escaping @Sendable (Submission, Int) throws -> SubmitResponse
) -> Router<BasicRequestContext> {
    let router = Router()
    router.add(middleware: APIErrorMiddleware())
    let attempts = Counter()
    router.group("/v1/transactions").add(middleware: BearerTokenMiddleware(secret: TestSecrets.operatorSecret)).get { request, _ in
        let query = try request.listQuery(limits: .default)
        return TransactionPage(
            transactions: [TransactionView(id: "t-1", state: query.state ?? .committed, branches: [], createdAt: WireTimestamp.string(millisecondsSinceEpoch: 0))],
            next: query.limit == 1 ? "41" : nil
        )
    }
    let protected = router.group("/v1").add(middleware: BearerTokenMiddleware(accepting: [TestSecrets.protocolSecret, TestSecrets.operatorSecret]))
    protected.post("/transactions") { request, _ in
        let submission = try await request.decodeWire(SubmitRequest.self, bodySizeMax: WireLimits.default.bodySizeMax).validated(limits: .default)
        seenIDs.append(submission.id?.rawValue ?? "<none>")
        attempts.increment()
        return try decide(submission, attempts.count)
    }
    protected.get("/transactions/:id") { request, context in
        let id = try request.txid(context: context)
        guard id.rawValue == "known" else { throw APIError.notFound("no transaction \(id)", field: "id") }
        return TransactionView(
            id: id.rawValue,
            state: .committing,
            outcome: .committed,
            branches: [BranchView(participant: "http://p", payload: try RawJSON(validating: #"{"a": 1}"#), vote: .yes)],
            createdAt: WireTimestamp.string(millisecondsSinceEpoch: 1000),
            decidedAt: WireTimestamp.string(millisecondsSinceEpoch: 2000)
        )
    }
    protected.get("/transactions/:id/outcome") { request, context in
        let id = try request.txid(context: context)
        return OutcomeResponse(id: id, answer: id.rawValue == "decided" ? .committed : .pending)
    }
    return router
}

let bankBranches = [
    Branch(participant: ParticipantID("http://bank-a:9001"), payload: Payload(#"{"op":"debit","account":"alice","amount":100}"#)),
    Branch(participant: ParticipantID("http://bank-b:9001"), payload: Payload(#"{"op":"credit","account":"bob","amount":100}"#)),
]

let fastRetry = RetryPolicy(attemptCountMax: 3, backoff: Backoff(initial: .milliseconds(1), max: .milliseconds(5)))

/// Runs `body` with a client of the server on `port`; with `connections`, its submits go over
/// ``HTTP1Connections`` instead of AsyncHTTPClient.
func withClient<T: Sendable>(
    port: Int, retry: RetryPolicy = fastRetry, connections: Bool = false, _ body: (ArbiterClient) async throws -> T
) async throws -> T {
    let http = HTTPClientSettings().makeClient()
    let lean = connections ? HTTP1Connections() : nil
    defer { lean?.shutdown() }
    let client = ArbiterClient(
        coordinator: "http://127.0.0.1:\(port)/",
        secret: TestSecrets.protocolSecret,
        operatorSecret: TestSecrets.operatorSecret,
        httpClient: http,
        connections: lean,
        retry: retry,
        requestTimeout: .seconds(10)
    )
    do {
        let result = try await body(client)
        if let lean { #expect(lean.openedCount >= 1, "the submits went over the kept-alive connections") }
        try await http.shutdown()
        return result
    } catch {
        try await http.shutdown()
        throw error
    }
}

@Suite("ArbiterClient against a test coordinator on 127.0.0.1")
struct ClientTests {
    @Test("submit returns the outcome under a client-made id", arguments: [false, true])
    func submitReturnsOutcome(overConnections: Bool) async throws {
        let seen = Recorder<String>()
        let router = makeCoordinatorStub(seenIDs: seen) { submission, _ in
            #expect(submission.branches == bankBranches)
            #expect(submission.wait == .completion)
            #expect(submission.timeout == .milliseconds(2500))
            return SubmitResponse(id: submission.id!, outcome: .committed, reason: nil)
        }
        let result = try await withLiveServer(router) { port in
            try await withClient(port: port, connections: overConnections) { client in
                try await client.submit(branches: bankBranches, timeout: .milliseconds(2500), wait: .completion)
            }
        }
        #expect(result.outcome == .committed)
        #expect(result.id.rawValue.hasPrefix("c-"))
        #expect(seen.all == [result.id.rawValue])
    }

    @Test("made transaction ids are unique, valid, and sort by the time they were made")
    func madeIDsSortByTime() throws {
        let earlier = ArbiterClient.makeTransactionID(millisecondsSinceEpoch: 1_795_000_000_000)
        let later = ArbiterClient.makeTransactionID(millisecondsSinceEpoch: 1_795_000_000_001)
        #expect(earlier.rawValue.count == 34 && earlier.rawValue.hasPrefix("c-"))
        #expect(earlier.rawValue.dropFirst(2).allSatisfy { $0.isHexDigit && !$0.isUppercase })
        #expect(earlier.rawValue.dropFirst(2).prefix(12) == "01a1ee565e00")
        #expect(earlier.rawValue < later.rawValue)
        let sameMillisecond = (0..<1000).map { _ in ArbiterClient.makeTransactionID(millisecondsSinceEpoch: 1_795_000_000_000) }
        #expect(Set(sameMillisecond).count == 1000)
        let now = ArbiterClient.makeTransactionID()
        #expect(now.rawValue > later.rawValue)
    }

    @Test("a retry after a 503 reuses the transaction id", arguments: [false, true])
    func retryReusesID(overConnections: Bool) async throws {
        let seen = Recorder<String>()
        let router = makeCoordinatorStub(seenIDs: seen) { submission, attempt in
            if attempt == 1 { throw APIError.unavailable("starting up") }
            return SubmitResponse(id: submission.id!, outcome: .aborted, reason: "bank-a voted no")
        }
        let result = try await withLiveServer(router) { port in
            try await withClient(port: port, connections: overConnections) { client in
                try await client.submit(branches: bankBranches)
            }
        }
        #expect(result.outcome == .aborted)
        #expect(result.reason == "bank-a voted no")
        #expect(seen.all.count == 2)
        #expect(Set(seen.all) == [result.id.rawValue], "both attempts carry the same id")
    }

    @Test("a caller's id is sent as it is, and a 504 is retried with it", arguments: [false, true])
    func callerIDAndOutcomeUnknown(overConnections: Bool) async throws {
        let seen = Recorder<String>()
        let router = makeCoordinatorStub(seenIDs: seen) { submission, attempt in
            if attempt < 3 { throw APIError.outcomeUnknown(submission.id!.rawValue) }
            return SubmitResponse(id: submission.id!, outcome: .committed, reason: nil)
        }
        let result = try await withLiveServer(router) { port in
            try await withClient(port: port, connections: overConnections) { client in
                try await client.submit(branches: bankBranches, id: txid("transfer-42"))
            }
        }
        #expect(result == SubmitResult(id: txid("transfer-42"), outcome: .committed))
        #expect(seen.all == ["transfer-42", "transfer-42", "transfer-42"])
    }

    @Test("the server's JSON error maps to the typed error, without retrying a 4xx", arguments: [false, true])
    func errorBodyMaps(overConnections: Bool) async throws {
        let seen = Recorder<String>()
        let router = makeCoordinatorStub(seenIDs: seen) { submission, _ in
            throw APIError.idInUse(submission.id!.rawValue)
        }
        let error = try await withLiveServer(router) { port in
            try await withClient(port: port, connections: overConnections) { client in
                await #expect(throws: ArbiterClientError.self) {
                    try await client.submit(branches: bankBranches, id: txid("taken"))
                }
            }
        }
        let typed = try #require(error)
        #expect(typed.code == ArbiterClientError.Code(.idInUse))
        #expect(typed.status == 409)
        #expect(typed.field == "id")
        #expect(typed.message.contains("already in use"))
        #expect(typed.attemptCount == 1)
        #expect(!typed.isOutcomeUncertain)
        #expect(seen.all == ["taken"])
    }

    @Test("validation errors name the field")
    func validationError() async throws {
        let router = makeCoordinatorStub(seenIDs: Recorder()) { submission, _ in
            SubmitResponse(id: submission.id!, outcome: .committed, reason: nil)
        }
        let error = try await withLiveServer(router) { port in
            try await withClient(port: port) { client in
                await #expect(throws: ArbiterClientError.self) {
                    try await client.submit(branches: [Branch(participant: ParticipantID("ftp://bank"), payload: Payload("1"))])
                }
            }
        }
        #expect(error?.code == ArbiterClientError.Code(.invalidValue))
        #expect(error?.field == "branches[0].participant")
        #expect(error?.status == 400)
    }

    @Test("a payload that is not JSON is refused before anything is sent")
    func invalidPayload() async throws {
        let seen = Recorder<String>()
        let router = makeCoordinatorStub(seenIDs: seen) { submission, _ in
            SubmitResponse(id: submission.id!, outcome: .committed, reason: nil)
        }
        let error = try await withLiveServer(router) { port in
            try await withClient(port: port) { client in
                await #expect(throws: ArbiterClientError.self) {
                    try await client.submit(branches: [Branch(participant: ParticipantID("http://p"), payload: Payload("{not json"))])
                }
            }
        }
        #expect(error?.code == .invalidRequest)
        #expect(seen.all.isEmpty)
    }

    @Test("reads: transaction, outcome and the operator listing")
    func reads() async throws {
        let router = makeCoordinatorStub(seenIDs: Recorder()) { submission, _ in
            SubmitResponse(id: submission.id!, outcome: .committed, reason: nil)
        }
        try await withLiveServer(router) { port in
            try await withClient(port: port) { client in
                let view = try await client.transaction(txid("known"))
                #expect(view.state == .committing)
                #expect(view.branches.first?.payload.bytes == #"{"a": 1}"#.bytes)
                #expect(WireTimestamp.milliseconds(from: view.decidedAt ?? "") == 2000)

                await #expect {
                    try await client.transaction(txid("unknown"))
                } throws: { error in
                    (error as? ArbiterClientError)?.code == ArbiterClientError.Code(.notFound)
                }

                #expect(try await client.outcome(txid("decided")) == .committed)
                #expect(try await client.outcome(txid("other")) == .pending)

                let page = try await client.list(state: .aborting, limit: 1, after: "40")
                #expect(page.transactions.map(\.state) == [.aborting])
                #expect(page.next == "41")
            }
        }
    }

    @Test("the listing without the operator secret is refused")
    func listNeedsOperator() async throws {
        let router = makeCoordinatorStub(seenIDs: Recorder()) { submission, _ in
            SubmitResponse(id: submission.id!, outcome: .committed, reason: nil)
        }
        try await withLiveServer(router) { port in
            let http = HTTPClientSettings().makeClient()
            let client = ArbiterClient(coordinator: "http://127.0.0.1:\(port)", secret: TestSecrets.protocolSecret, httpClient: http, retry: .none)
            await #expect {
                try await client.list()
            } throws: { error in
                let error = error as? ArbiterClientError
                return error?.code == ArbiterClientError.Code(.unauthorized) && error?.status == 401
            }
            try await http.shutdown()
        }
    }

    @Test("an unreachable coordinator is retried, then reported as unreachable")
    func unreachable() async throws {
        // A port that refuses connections for the whole test.
        let refusing = try RefusingPort()
        defer { withExtendedLifetime(refusing) {} }
        let port = refusing.port
        let error = try await withClient(port: port) { client in
            await #expect(throws: ArbiterClientError.self) {
                try await client.submit(branches: bankBranches)
            }
        }
        #expect(error?.code == .unreachable)
        #expect(error?.attemptCount == fastRetry.attemptCountMax)
        #expect(error?.isOutcomeUncertain == true)
        #expect(error?.cause != nil)
    }

    @Test("with several coordinators, a call that gets no answer moves to the next one, and later calls stay there; a 4xx does not move")
    func failsOverBetweenCoordinators() async throws {
        let (seenAtA, seenAtB) = (Recorder<String>(), Recorder<String>())
        // A cannot take submits (503); B answers; the first URL refuses connections.
        let a = makeCoordinatorStub(seenIDs: seenAtA) { _, _ in throw APIError.unavailable("the decision store is unreachable") }
        let refusing = try RefusingPort()
        try await withLiveServer(a) { portA in
            let b = makeCoordinatorStub(seenIDs: seenAtB) { submission, _ in
                if submission.id?.rawValue == "taken" { throw APIError.idInUse("taken") }
                return SubmitResponse(id: submission.id!, outcome: .committed, reason: nil)
            }
            try await withLiveServer(b) { portB in
                let http = HTTPClientSettings().makeClient()
                let client = ArbiterClient(
                    coordinators: ["http://127.0.0.1:\(refusing.port)", "http://127.0.0.1:\(portA)/", "http://127.0.0.1:\(portB)"],
                    secret: TestSecrets.protocolSecret, httpClient: http, retry: fastRetry, requestTimeout: .seconds(10))
                do {
                    let first = try await client.submit(branches: bankBranches, id: txid("moved-1"))
                    #expect(first.outcome == .committed)
                    #expect(seenAtA.all == ["moved-1"] && seenAtB.all == ["moved-1"], "the same id at A, then at B")

                    // Later calls, from copies of the client too, start at B.
                    let copy = client
                    #expect(try await copy.submit(branches: bankBranches, id: txid("moved-2")).outcome == .committed)
                    #expect(seenAtA.all == ["moved-1"] && seenAtB.all == ["moved-1", "moved-2"])

                    // An answer, even a refusal, is not a reason to ask another coordinator.
                    await #expect(throws: ArbiterClientError.self) {
                        try await client.submit(branches: bankBranches, id: txid("taken"))
                    }
                    #expect(seenAtA.all == ["moved-1"] && seenAtB.all.filter { $0 == "taken" }.count == 1)
                } catch {
                    try await http.shutdown()
                    throw error
                }
                try await http.shutdown()
            }
        }
    }

}
