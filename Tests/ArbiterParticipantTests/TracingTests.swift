import ArbiterCore
import ArbiterHTTP
import ArbiterParticipant
import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

/// The participant's spans: `stage` and `apply` as children of the span that sent the message,
/// for single messages (the header) and batches (each message's member).
@Suite("Participant tracing", .serialized)
struct ParticipantTracingTests {
    static func post(_ node: RunningNode<ScriptedResource>, _ path: String, _ body: String, traceparent: String?) async throws -> Int {
        var request = HTTPClientRequest(url: node.url + path)
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(TestSecrets.protocolText)")
        request.headers.add(name: "Content-Type", value: "application/json")
        if let traceparent { request.headers.add(name: "traceparent", value: traceparent) }
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await node.http.client.execute(request, timeout: .seconds(30))
        _ = try await response.body.collect(upTo: 1 << 20)
        return Int(response.status.code)
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
                #expect(try await Self.post(node, "/v1/prepare", Wire.prepare("tr-1", coordinator: coordinator, payload: Scripts.vote("yes")),
                                            traceparent: prepare.description) == 200)
                #expect(try await Self.post(node, "/v1/commit", Wire.decision("tr-1"), traceparent: commit.description) == 200)
                let batch = #"{"messages":[{"type":"prepare","txid":"tr-2","coordinator":"\#(coordinator)","payload":\#(Scripts.vote("yes")),"traceparent":"\#(batchPrepare)"}]}"#
                #expect(try await Self.post(node, "/v1/batch", batch, traceparent: nil) == 200)
                let batchCommitBody = #"{"messages":[{"type":"commit","txid":"tr-2","traceparent":"\#(batchCommit)"},{"type":"commit","txid":"tr-none"}]}"#
                #expect(try await Self.post(node, "/v1/batch", batchCommitBody, traceparent: nil) == 200)
            }
        }
        for (traceID, prepare, commit) in [(single, prepare, commit), (batched, batchPrepare, batchCommit)] {
            let spans = tracer.spans(ofTrace: traceID)
            let stage = try #require(spans.first { $0.operationName == "stage" }, "spans: \(spans.map(\.operationName))")
            let apply = try #require(spans.first { $0.operationName == "apply" }, "spans: \(spans.map(\.operationName))")
            #expect(stage.spanContext.parentSpanID == prepare.parentID)
            #expect(apply.spanContext.parentSpanID == commit.parentID)
        }
    }
}
