import ArbiterClient
import ArbiterCore
import ArbiterHTTP
import AsyncHTTPClient
import Foundation
import NIOCore
import InMemoryTracing
import Testing
import Tracing

@Suite("Tracing across the wire", .serialized)
struct TracingTests {
    static func freshTraceParent() -> String {
        "00-\(TraceParent.randomID(hexDigits: 32))-\(TraceParent.randomID(hexDigits: 16))-01"
    }

    /// Submits over raw HTTP with a `traceparent` header.
    static func submit(
        _ http: HTTPClient, _ url: String, id: String, participants: [ParticipantID], traceparent: String
    ) async throws -> Int {
        var request = HTTPClientRequest(url: url + "/v1/transactions")
        request.method = .POST
        request.headers.add(name: "Authorization", value: TestSecrets.protocolSecret.authorizationHeaderValue)
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "traceparent", value: traceparent)
        let branches = participants.map { #"{"participant": "\#($0)", "payload": {"op": "credit", "amount": 1}}"# }
        request.body = .bytes(Array(#"{"id": "\#(id)", "wait": "completion", "branches": [\#(branches.joined(separator: ","))]}"#.utf8))
        let response = try await http.execute(request, timeout: .seconds(30))
        let body = String(buffer: try await response.body.collect(upTo: 1 << 20))
        guard body.contains(#""outcome":"committed""#) else { throw TestFailure("\(id) did not commit: \(body)") }
        return Int(response.status.code)
    }

    /// The trace ids `txid`'s messages arrived with (header for a single message, the member in a
    /// batch), by message: a commit resent by the retry timer appears more than once.
    static func traceIDs(_ participant: FakeParticipant, _ txid: String) -> [String: Set<String?>] {
        var result: [String: Set<String?>] = [:]
        for traced in participant.state.traced where traced.message.hasSuffix(" \(txid)") {
            let value = traced.single ? (traced.header ?? traced.member) : traced.member
            result[traced.message, default: []].insert(value.flatMap { TraceParent($0)?.traceID })
        }
        return result
    }

    @Test("a submit's traceparent reaches every participant's prepare and commit (single messages)")
    func singleMessages() async throws {
        _ = W3CRecordingTracer.shared
        let directory = try TemporaryDirectory()
        let (p0, p1) = (FakeParticipant(), FakeParticipant())
        let sent = Self.freshTraceParent()
        let traceID = try #require(TraceParent(sent)).traceID
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: directory.path) { url, _, http in
                let status = try await Self.submit(http, url, id: "traced-1", participants: ids, traceparent: sent)
                #expect(status == 200)
            }
        }
        for participant in [p0, p1] {
            let seen = Self.traceIDs(participant, "traced-1")
            #expect(seen == ["prepare traced-1": [traceID], "commit traced-1": [traceID]], "\(participant.state.requests) \(participant.state.traced)")
            // One transaction's messages, alone or batched together (the link batches what queues
            // while a request is out, which a loaded machine makes likely): the header carries the
            // context, and it names a span of the coordinator, not the client's.
            for traced in participant.state.traced {
                #expect(traced.header != nil && traced.header != sent, "\(traced)")
            }
        }
        let spans = W3CRecordingTracer.shared.spans(ofTrace: traceID)
        let names = spans.map(\.operationName)
        #expect(names.filter { $0 == "submit" }.count == 1)
        #expect(names.filter { $0 == "prepare" }.count == 2)
        #expect(names.filter { $0 == "phase2" }.count >= 2, "a commit resent by the retry timer has a span of its own")
        #expect(names.filter { $0 == "decision.force" }.count == 1)
        let submit = try #require(spans.first { $0.operationName == "submit" })
        #expect(submit.spanContext.parentSpanID == TraceParent(sent)?.parentID, "the submit span is the client's span's child")
        for span in spans where span.operationName == "prepare" || span.operationName == "decision.force" {
            #expect(span.spanContext.parentSpanID == submit.spanContext.spanID)
        }
    }

    @Test("in a batch each message carries its own transaction's traceparent")
    func batchedMessages() async throws {
        _ = W3CRecordingTracer.shared
        let directory = try TemporaryDirectory()
        // The first transaction's prepare holds the link's one open request (a cap of one), so
        // the others queue behind it and go together in one /v1/batch.
        let participant = FakeParticipant { $0.rawValue == "batch-0" ? .slow(.milliseconds(500)) : .yes }
        let other = FakeParticipant()
        let traceparents = (0..<4).map { _ in Self.freshTraceParent() }
        try await withParticipants([participant, other]) { ids in
            try await withCoordinator(data: directory.path, requestsInFlightMax: 1) { url, _, http in
                try await withThrowingTaskGroup(of: Int.self) { group in
                    group.addTask { try await Self.submit(http, url, id: "batch-0", participants: ids, traceparent: traceparents[0]) }
                    try await Task.sleep(for: .milliseconds(100))
                    for index in 1..<4 {
                        group.addTask {
                            try await Self.submit(http, url, id: "batch-\(index)", participants: ids, traceparent: traceparents[index])
                        }
                    }
                    for try await status in group { #expect(status == 200) }
                }
            }
        }
        for (index, traceparent) in traceparents.enumerated() {
            let traceID = try #require(TraceParent(traceparent)).traceID
            for fake in [participant, other] {
                let seen = Self.traceIDs(fake, "batch-\(index)")
                #expect(seen == ["prepare batch-\(index)": [traceID], "commit batch-\(index)": [traceID]], "\(fake.state.requests) \(fake.state.traced)")
            }
        }
        // A request with messages of several transactions has no header of its own.
        let batched = participant.state.traced.filter { !$0.single }
        for traced in batched {
            #expect(traced.member != nil)
        }
        let requests = participant.state.requests
        if requests.contains(where: { Set($0.map { $0.split(separator: " ").last! }).count > 1 }) {
            #expect(batched.contains { $0.header == nil }, "a multi-transaction batch carries no header")
        }
        #expect(requests.contains { $0.count > 1 }, "some messages were batched: \(requests)")
    }

    @Test("ArbiterClient sends the traceparent of the caller's span")
    func clientInjects() async throws {
        let tracer = W3CRecordingTracer.shared
        let directory = try TemporaryDirectory()
        let fake = FakeParticipant()
        try await withParticipants([fake]) { ids in
            try await withCoordinator(data: directory.path) { _, client, _ in
                let span = tracer.startSpan("caller", context: ServiceContext.topLevel)
                try await ServiceContext.$current.withValue(span.context) {
                    _ = try await client.submit(branches: [branch(ids[0])], id: txid("client-1"))
                }
                span.end()
                let traceID = span.spanContext.traceID
                #expect(Self.traceIDs(fake, "client-1") == ["prepare client-1": [traceID]])
                let submit = try #require(tracer.spans(ofTrace: traceID).first { $0.operationName == "submit" })
                #expect(submit.spanContext.parentSpanID == span.spanContext.spanID)
            }
        }
    }

    @Test("ProtocolClient: one transaction's batch has the header; a mixed batch only members")
    func batchHeaderRule() async throws {
        let fake = FakeParticipant()
        let (a, b) = (Self.freshTraceParent(), Self.freshTraceParent())
        try await withParticipants([fake]) { ids in
            let http = HTTPClientSettings().makeClient()
            let client = ProtocolClient(httpClient: http, secret: TestSecrets.protocolSecret)
            let prepare = { (id: String) in
                CoordinatorMessage.prepare(PrepareRequest(txid: txid(id), coordinator: CoordinatorID("http://127.0.0.1:1"), payload: Payload("1"), onePhase: false))
            }
            _ = try await client.sendBatch([prepare("h-1"), .commit(txid("h-1"))], to: ids[0], timeout: .seconds(10), traceparents: [a, a])
            _ = try await client.sendBatch([prepare("h-2"), prepare("h-3")], to: ids[0], timeout: .seconds(10), traceparents: [a, b])
            try await http.shutdown()
        }
        let traced = fake.state.traced
        #expect(traced.filter { $0.message.hasSuffix("h-1") }.allSatisfy { $0.header == a && $0.member == a })
        #expect(traced.first { $0.message == "prepare h-2" } == .init(message: "prepare h-2", header: nil, member: a, single: false))
        #expect(traced.first { $0.message == "prepare h-3" } == .init(message: "prepare h-3", header: nil, member: b, single: false))
    }
}
