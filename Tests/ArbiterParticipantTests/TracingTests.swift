import ArbiterCore
import ArbiterHTTP
import ArbiterParticipant
import ArbiterTesting
import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

/// The participant's spans: `stage` and `apply` as children of the span that sent the message,
/// for single messages (the header) and batches (each message's member).
@Suite("Participant tracing", .serialized)
struct ParticipantTracingTests {
    /// Sends with a client whose own tracing is off (see HTTPClientSettings), so that the request
    /// carries exactly the `traceparent` given.
    static func post(_ node: RunningNode<ScriptedResource>, _ path: String, _ body: String, traceparent: String?) async throws -> Int {
        let client = HTTPClientSettings().makeClient()
        var request = HTTPClientRequest(url: node.url + path)
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(TestSecrets.protocolText)")
        request.headers.add(name: "Content-Type", value: "application/json")
        if let traceparent { request.headers.add(name: "traceparent", value: traceparent) }
        request.body = .bytes(ByteBuffer(string: body))
        do {
            let response = try await client.execute(request, timeout: .seconds(30))
            _ = try await response.body.collect(upTo: 1 << 20)
            try await client.shutdown()
            return Int(response.status.code)
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    static func parent(_ traceID: String) -> TraceParent {
        TraceParent(traceID: traceID, parentID: TraceParent.randomID(hexDigits: 16))!
    }

    @Test("stage and apply are children of the prepare's and the commit's sender")
    func stageAndApply() async throws {
        let tracer = W3CRecordingTracer.shared
        let single = TraceParent.randomID(hexDigits: 32)
        let batched = TraceParent.randomID(hexDigits: 32)
        let (prepare, commit) = (Self.parent(single), Self.parent(single))
        let (batchPrepare, batchCommit) = (Self.parent(batched), Self.parent(batched))
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory) { node in
                let coordinator = "http://127.0.0.1:1"
                var statuses: [Int] = []
                statuses.append(try await Self.post(node, "/v1/prepare", Wire.prepare("tr-1", coordinator: coordinator, payload: Scripts.vote("yes")),
                                                    traceparent: prepare.description))
                statuses.append(try await Self.post(node, "/v1/commit", Wire.decision("tr-1"), traceparent: commit.description))
                let batch = #"{"messages":[{"type":"prepare","txid":"tr-2","coordinator":"\#(coordinator)","payload":\#(Scripts.vote("yes")),"traceparent":"\#(batchPrepare)"}]}"#
                statuses.append(try await Self.post(node, "/v1/batch", batch, traceparent: nil))
                let batchCommitBody = #"{"messages":[{"type":"commit","txid":"tr-2","traceparent":"\#(batchCommit)"},{"type":"commit","txid":"tr-none"}]}"#
                statuses.append(try await Self.post(node, "/v1/batch", batchCommitBody, traceparent: nil))
                #expect(statuses == [200, 200, 200, 200])
            }
        }
        for (traceID, prepare, commit) in [(single, prepare, commit), (batched, batchPrepare, batchCommit)] {
            let spans = tracer.spans(ofTrace: traceID)
            let stage = try #require(spans.first { $0.operationName == "stage" }, "spans: \(tracer.recorder.finishedSpans.suffix(8).map { "\($0.operationName) \($0.spanContext)" }) \(WireTracing.isTracing)")
            let apply = try #require(spans.first { $0.operationName == "apply" }, "spans: \(spans.map(\.operationName))")
            #expect(stage.spanContext.parentSpanID == prepare.parentID)
            #expect(apply.spanContext.parentSpanID == commit.parentID)
        }
    }
}
