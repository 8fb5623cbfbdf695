import ArbiterCore
@testable import ArbiterHTTP
import Testing

@Suite("W3C traceparent")
struct TraceParentTests {
    static let sample = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    @Test("a valid header parses and formats back to itself")
    func roundTrip() throws {
        let parent = try #require(TraceParent(Self.sample))
        #expect(parent.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(parent.parentID == "00f067aa0ba902b7")
        #expect(parent.flags == 1)
        #expect(parent.isSampled)
        #expect(parent.description == Self.sample)
        #expect(TraceParent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")?.isSampled == false)
    }

    @Test("malformed headers are refused", arguments: [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",             // no flags
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",          // uppercase
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",          // zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",          // zero parent id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",          // forbidden version
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",    // version 00 has 4 fields
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",          // not hex
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",          // separators
    ])
    func refused(_ header: String) {
        #expect(TraceParent(header) == nil)
    }

    @Test("a later version is read for its first four fields")
    func laterVersion() throws {
        let parent = try #require(TraceParent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-what-comes-next"))
        #expect(parent.flags == 3)
        #expect(parent.description == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")
    }

    @Test("a span's own id replaces the parent id, keeping the trace")
    func sentBy() throws {
        let parent = try #require(TraceParent(Self.sample))
        let id = TraceParent.randomID(hexDigits: 16)
        let child = try #require(parent.sent(by: id))
        #expect(child.traceID == parent.traceID && child.parentID == id)
        #expect(TraceParent.randomID(hexDigits: 32).count == 32)
    }

    @Test("without a tracer the incoming traceparent is passed on unchanged; nothing is made without one")
    func passThrough() {
        #expect(WireTracing.context(traceparent: nil) == nil || WireTracing.isTracing)
        let context = WireTracing.context(traceparent: Self.sample)
        #expect(context?.traceParent?.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        if !WireTracing.isTracing {
            #expect(WireTracing.traceparent(for: context) == Self.sample)
        }
    }

    @Test("a batch message's traceparent member is written and read both ways alike")
    func batchMember() throws {
        let body = BatchRequest(messages: [
            .prepare(PrepareBody(txid: "a", coordinator: "http://c", payload: try RawJSON(validating: "{}"), traceparent: Self.sample)),
            .commit(DecisionBody(txid: "b", traceparent: Self.sample)),
            .abort(DecisionBody(txid: "c")),
        ])
        let bytes = try WireJSON.encode(body)
        #expect(bytes == (try WireJSON.encodeThroughTree(body)))
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.contains(#""traceparent":"\#(Self.sample)""#))
        let decoded = try WireJSON.decode(BatchRequest.self, from: bytes)
        #expect(decoded == body)
        #expect(try WireJSON.decodeThroughTree(BatchRequest.self, from: bytes) == body)
        #expect(decoded.messages.map(\.traceparent) == [Self.sample, Self.sample, nil])
    }
}
