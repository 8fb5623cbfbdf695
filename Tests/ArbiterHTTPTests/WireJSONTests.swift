import ArbiterCore
@testable import ArbiterHTTP
import Foundation
import Testing

@Suite("Wire JSON codec")
struct WireJSONTests {
    @Test("payload bytes survive decode and encode exactly, whitespace and key order included")
    func payloadBytesRoundTrip() throws {
        let payload = #"{ "op" : "debit",  "account":"alice", "amount": 100, "note": "caf\u00e9 \"x\" é", "big": 123456789012345678901234567890, "f": 1.50e+2, "z": [ ] }"#
        let body = #"{"branches": [ {"participant": "http://a:1", "payload": "# + payload + #" } ]}"#
        let request = try WireJSON.decode(SubmitRequest.self, from: body.bytes)
        #expect(request.branches[0].payload.bytes == payload.bytes)

        let submission = try request.validated(limits: .default)
        #expect(submission.branches[0].payload == Payload(payload))

        // Coordinator → participant: the same bytes inside a prepare.
        let prepare = try PrepareBody(PrepareRequest(txid: txid("t1"), coordinator: CoordinatorID("http://c:1"), payload: submission.branches[0].payload, onePhase: false))
        let encoded = try WireJSON.encode(prepare)
        let text = String(decoding: encoded, as: UTF8.self)
        #expect(text.contains(payload))
        let received = try WireJSON.decode(PrepareBody.self, from: encoded).validated(limits: .default)
        #expect(received.payload.bytes == payload.bytes)
    }

    @Test("the batch bodies written directly are byte for byte what the general encoder writes")
    func directWritingMatchesTheEncoder() throws {
        // Every kind of character a string may hold: quotes, backslashes, the escaped controls,
        // other controls, non-ASCII and astral text.
        let texts = ["t1", "", "with \"quotes\" and \\", "line\nfeed\r\ttab", "ctl \u{01}\u{1F}\u{7F}", "café ✓ 😀", "/slash"]
        let payloads = [#"{"op": "debit", "amount": 5}"#, "[ 1 , 2 ]", "null", #""text""#].map { try! RawJSON(validating: Array($0.utf8)) }
        var messages: [BatchMessage] = []
        for (index, text) in texts.enumerated() {
            let onePhase: [Bool?] = [nil, true, false]
            messages.append(.prepare(PrepareBody(txid: text, coordinator: "http://c:1/\(text)", payload: payloads[index % payloads.count], onePhase: onePhase[index % 3])))
            messages.append(.commit(DecisionBody(txid: text)))
            messages.append(.abort(DecisionBody(txid: text)))
        }
        for request in [BatchRequest(messages: messages), BatchRequest(messages: []), BatchRequest(messages: [messages[0]])] {
            let direct = try WireJSON.encode(request)
            #expect(direct == (try WireJSON.encodeThroughTree(request)))
            #expect(try WireJSON.decode(BatchRequest.self, from: direct) == request)
        }

        var replies: [BatchReply] = []
        for text in texts {
            replies.append(.prepare(.vote(txid: text, vote: .yes, reason: nil)))
            replies.append(.prepare(.vote(txid: text, vote: .no, reason: "reason: \(text)")))
            replies.append(.prepare(.vote(txid: text, vote: .readOnly, reason: nil)))
            replies.append(.prepare(.outcome(txid: text, outcome: .committed)))
            replies.append(.prepare(.outcome(txid: text, outcome: .aborted)))
            for state in WireLocalOutcome.allCases {
                replies.append(.commit(AcknowledgeReply(txid: text, state: state)))
                replies.append(.abort(AcknowledgeReply(txid: text, state: state)))
            }
        }
        let withError = replies + [.error(txid: "t-error", ErrorDetail(code: "internal", message: "failed \"here\"", field: "messages[3]"))]
        for response in [BatchResponse(replies: replies), BatchResponse(replies: []), BatchResponse(replies: withError)] {
            let direct = try WireJSON.encode(response)
            #expect(direct == (try WireJSON.encodeThroughTree(response)))
            #expect(try WireJSON.decode(BatchResponse.self, from: direct) == response)
        }
        // A response with an error reply is left to the general encoder, and the writer leaves
        // nothing behind when it declines.
        var out: [UInt8] = [0x20]
        #expect(!BatchResponse(replies: withError).writeJSON(to: &out))
        #expect(out == [0x20])
    }

    /// Decoding `bytes` directly either declines (nil) or gives what the general decoder gives; it
    /// never takes what the general decoder refuses.
    static func expectDirectReadingAgrees<T: Decodable & DirectJSONReadable & Equatable>(
        _ type: T.Type, _ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation
    ) {
        guard let direct = T.readJSON(bytes) else { return }
        let general = try? WireJSON.decodeThroughTree(T.self, from: bytes)
        #expect(general == direct, "\(String(decoding: bytes, as: UTF8.self))", sourceLocation: sourceLocation)
    }

    @Test("the batch bodies and submits read directly are what the general decoder reads, or left to it")
    func directReadingMatchesTheDecoder() throws {
        let payloads = [#"{"op":"debit","account":"a1","amount":5}"#, #"{ "note" : "caf\u00e9 \"x\" é", "n": [1, 2.5e3, -0, null, true, false, {}] }"#,
                        "[ 1 , 2 ]", "null", #""text""#, "12", "-0.5e-3", "{}", "[]"]
            .map { try! RawJSON(validating: Array($0.utf8)) }
        var messages: [BatchMessage] = []
        for (index, payload) in payloads.enumerated() {
            let onePhase: [Bool?] = [nil, true, false]
            messages.append(.prepare(PrepareBody(txid: "c-0123456789abcdef0123456789ab\(index)", coordinator: "http://127.0.0.1:8080", payload: payload, onePhase: onePhase[index % 3])))
            messages.append(.commit(DecisionBody(txid: "t\(index)")))
            messages.append(.abort(DecisionBody(txid: "t\(index)")))
        }
        let request = BatchRequest(messages: messages)
        let requestBytes = try WireJSON.encode(request)
        // The plain bodies the coordinator writes are read directly, to the same value.
        #expect(BatchRequest.readJSON(requestBytes) == request)
        #expect(BatchRequest.readJSON(try WireJSON.encode(BatchRequest(messages: []))) == BatchRequest(messages: []))

        let replies: [BatchReply] = [
            .prepare(.vote(txid: "t1", vote: .yes, reason: nil)),
            .prepare(.vote(txid: "t2", vote: .no, reason: "no account a1")),
            .prepare(.vote(txid: "t3", vote: .readOnly, reason: nil)),
            .prepare(.outcome(txid: "t4", outcome: .committed)),
            .prepare(.outcome(txid: "t5", outcome: .aborted)),
        ] + WireLocalOutcome.allCases.flatMap { state in
            [BatchReply.commit(AcknowledgeReply(txid: "t6", state: state)), .abort(AcknowledgeReply(txid: "t7", state: state))]
        }
        let response = BatchResponse(replies: replies)
        let responseBytes = try WireJSON.encode(response)
        #expect(BatchResponse.readJSON(responseBytes) == response)

        // Left to the general decoder: escapes, non-ASCII text, error replies, unknown, repeated
        // or misplaced members, and anything that is not JSON. Each still agrees where it reads.
        let declined: [(String, String)] = [
            (#"{"messages":[{"type":"commit","txid":"t\u0031"}]}"#, "an escape"),
            (#"{"messages":[{"type":"commit","txid":"t1","extra":1}]}"#, "an unknown member"),
            (#"{"messages":[{"type":"commit","txid":"t1","txid":"t2"}]}"#, "a repeated member"),
            (#"{"messages":[{"type":"commit","txid":"t1","payload":{}}]}"#, "a payload on a commit"),
            (#"{"messages":[{"type":"prepare","txid":"t1","coordinator":"http://c","payload":01}]}"#, "a bad payload"),
            (#"{"messages":[{"type":"prepare","txid":"t1","coordinator":"http://c","payload":{"a":1,"a":2}}]}"#, "a payload with a repeated key"),
            (#"{"messages":[{"type":"prepare","txid":"t1","coordinator":"http://c","payload":[1,]}]}"#, "a trailing comma"),
            (#"{"messages":[{"type":"prepare","txid":"t1","coordinator":"http://c","payload":{},"onePhase":null}]}"#, "a null flag"),
            (#"{"messages":[{"type":"refund","txid":"t1"}]}"#, "an unknown type"),
            (#"{"messages":[]} x"#, "text after the value"),
            (#"{"messages":[],"messages":[]}"#, "a repeated top-level member"),
            (#"{"replies":[{"type":"prepare","txid":"t1","vote":"no","reason":"café"}]}"#, "a non-ASCII reason"),
            (#"{"replies":[{"type":"error","txid":"t1","error":{"code":"internal","message":"m"}}]}"#, "an error reply"),
            (#"{"replies":[{"type":"prepare","txid":"t1","vote":"yes","outcome":"committed"}]}"#, "a vote and an outcome"),
            (#"{"replies":[{"type":"commit","txid":"t1"}]}"#, "an acknowledgement without its state"),
        ]
        for (text, why) in declined {
            if text.hasPrefix(#"{"messages""#) {
                #expect(BatchRequest.readJSON(Array(text.utf8)) == nil, "\(why)")
            } else {
                #expect(BatchResponse.readJSON(Array(text.utf8)) == nil, "\(why)")
            }
        }
        // Whitespace and member order are the decoder's business too, and read the same.
        let spaced = Array(#" { "messages" : [ { "txid" : "t1" , "type" : "commit" } , {"payload": [ 1 ] ,"coordinator":"http://c","txid":"t2","type":"prepare","onePhase":true} ] } "#.utf8)
        #expect(BatchRequest.readJSON(spaced) == (try WireJSON.decodeThroughTree(BatchRequest.self, from: spaced)))

        // Nesting at the parser's limit: the direct reader counts the containers around a payload.
        for levels in [JSONParser.depthMax - 4, JSONParser.depthMax - 3, JSONParser.depthMax - 2] {
            let payload = String(repeating: "[", count: levels) + String(repeating: "]", count: levels)
            let body = Array((#"{"messages":[{"type":"prepare","txid":"t1","coordinator":"http://c","payload":"# + payload + "}]}").utf8)
            Self.expectDirectReadingAgrees(BatchRequest.self, body)
            #expect((BatchRequest.readJSON(body) != nil) == ((try? WireJSON.decodeThroughTree(BatchRequest.self, from: body)) != nil))
        }

        // A client's submits, alone and batched.
        let submit = SubmitRequest(
            id: "c-0123456789abcdef0123456789abcdef",
            branches: [BranchBody(participant: "http://127.0.0.1:9001", payload: payloads[0]), BranchBody(participant: "http://127.0.0.1:9002", payload: payloads[1])],
            wait: .decision)
        let submitBytes = try WireJSON.encode(submit)
        #expect(SubmitRequest.readJSON(submitBytes) == submit)
        let bare = SubmitRequest(branches: [BranchBody(participant: "http://p", payload: payloads[2])])
        #expect(SubmitRequest.readJSON(try WireJSON.encode(bare)) == bare)
        let batch = SubmitBatchRequest(transactions: [submit, bare])
        let batchBytes = try WireJSON.encode(batch)
        #expect(SubmitBatchRequest.readJSON(batchBytes) == batch)
        for (text, why) in [
            (#"{"branches":[{"participant":"http://p","payload":1}],"timeoutMs":2500}"#, "a timeout (a number)"),
            (#"{"id":null,"branches":[{"participant":"http://p","payload":1}]}"#, "a null id"),
            (#"{"branches":[{"participant":"http://p","payload":1}],"wait":"later"}"#, "an unknown wait"),
            (#"{"branches":[{"participant":"http://p"}]}"#, "a branch without its payload"),
            (#"{"id":"x"}"#, "no branches"),
        ] {
            #expect(SubmitRequest.readJSON(Array(text.utf8)) == nil, "\(why)")
        }

        // Every prefix, and every byte replaced by each of a few others: never more accepting
        // than the general decoder, never a different value.
        let replacements = Array(#" "\{}[],:0a-"#.utf8) + [0x00, 0xC3]
        func fuzz<T: Decodable & DirectJSONReadable & Equatable>(_ type: T.Type, _ bytes: [UInt8]) {
            for end in 0..<bytes.count { Self.expectDirectReadingAgrees(T.self, Array(bytes[..<end])) }
            for position in bytes.indices {
                for replacement in replacements {
                    var mutated = bytes
                    mutated[position] = replacement
                    Self.expectDirectReadingAgrees(T.self, mutated)
                }
            }
        }
        fuzz(BatchRequest.self, requestBytes)
        fuzz(BatchResponse.self, responseBytes)
        fuzz(SubmitRequest.self, submitBytes)
        fuzz(SubmitBatchRequest.self, batchBytes)
    }

    @Test("scalar and array payloads keep their bytes", arguments: ["1", "-0.5e-3", "\"text\"", "null", "true", "[1, {\"a\": [ ]}]", "{}"])
    func scalarPayloads(payload: String) throws {
        let decoded = try WireJSON.decode(BranchBody.self, from: (#"{"participant":"http://p","payload":"# + payload + "}").bytes)
        #expect(decoded.payload.bytes == payload.bytes)
        let again = try WireJSON.decode(BranchBody.self, from: WireJSON.encode(decoded))
        #expect(again == decoded)
    }

    @Test("RawJSON validation trims surrounding whitespace and refuses non-JSON")
    func rawJSONValidation() throws {
        #expect(try RawJSON(validating: "  {\"a\":1}\n").bytes == "{\"a\":1}".bytes)
        #expect(throws: APIError.self) { try RawJSON(validating: "{a:1}") }
        #expect(throws: APIError.self) { try RawJSON(Payload("not json")) }
        #expect(throws: APIError.self) { try RawJSON(validating: "1 2") }
    }

    @Test(
        "the parser refuses what RFC 8259 refuses",
        arguments: [
            "", "   ", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{'a':1}", "{a:1}", "01", "1.", ".5", "-", "1e", "+1",
            "NaN", "Infinity", "tru", "nul", "\"unterminated", "\"bad \\x escape\"", "\"\\u12\"", "\"\\ud800\"",
            "\"tab\there\"", "{\"a\":1}{}", "[1] x", "/* c */ 1", "{\"a\":1,\"a\":2}",
        ]
    )
    func parserRefuses(text: String) {
        #expect(throws: JSONSyntaxError.self) { try JSONParser.parse(text.bytes) }
    }

    @Test("the parser accepts valid JSON", arguments: ["0", "-0", "1.25e-10", "\"\\ud83d\\ude00\"", "\"é\"", "[]", "{}", " [ null , true , false ] ", "{\"\":\"\"}"])
    func parserAccepts(text: String) throws {
        _ = try JSONParser.parse(text.bytes)
    }

    @Test("escapes decode to the right characters")
    func escapes() throws {
        let value = try WireJSON.decode(DecisionBody.self, from: #"{"txid":"a\u0062\/c\n\"\ud83d\ude00"}"#.bytes)
        #expect(value.txid == "ab/c\n\"😀")
        let encoded = String(decoding: try WireJSON.encode(value), as: UTF8.self)
        #expect(encoded == #"{"txid":"ab/c\n\"😀"}"#)
    }

    @Test("invalid UTF-8 in a string is refused")
    func invalidUTF8() {
        let bytes: [UInt8] = Array(#"{"txid":""#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8)
        #expect(throws: APIError.self) { try WireJSON.decode(DecisionBody.self, from: bytes) }
    }

    @Test("deep nesting is refused without exhausting the stack")
    func deepNesting() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONSyntaxError.self) { try JSONParser.parse(deep.bytes) }
        let within = String(repeating: "[", count: JSONParser.depthMax) + String(repeating: "]", count: JSONParser.depthMax)
        #expect(throws: Never.self) { try JSONParser.parse(within.bytes) }
    }

    @Test("integers must be written as integers and fit")
    func strictIntegers() throws {
        for text in ["1.0", "1e3", "\"5\"", "true", "99999999999999999999"] {
            let body = #"{"branches":[{"participant":"http://p","payload":1}],"timeoutMs":"# + text + "}"
            #expect(throws: APIError.self) { try WireJSON.decode(SubmitRequest.self, from: body.bytes) }
        }
        let ok = try WireJSON.decode(SubmitRequest.self, from: #"{"branches":[{"participant":"http://p","payload":1}],"timeoutMs":250}"#.bytes)
        #expect(ok.timeoutMs == 250)
    }

    @Test("unknown members are ignored and null optionals are absent")
    func tolerantReader() throws {
        let request = try WireJSON.decode(
            SubmitRequest.self,
            from: #"{"id":null,"future":{"x":1},"branches":[{"participant":"http://p","payload":1,"extra":true}]}"#.bytes
        )
        #expect(request.id == nil)
        #expect(request.branches.count == 1)
    }

    @Test("encoding is compact, in declared order, and omits nil optionals")
    func encodingShape() throws {
        let response = SubmitResponse(id: "t1", outcome: .committed)
        #expect(String(decoding: try WireJSON.encode(response), as: UTF8.self) == #"{"id":"t1","outcome":"committed"}"#)
        let error = ErrorResponse(APIError.missingField("branches"))
        #expect(
            String(decoding: try WireJSON.encode(error), as: UTF8.self)
                == #"{"error":{"code":"missing_field","message":"required field `branches` is missing","field":"branches"}}"#
        )
    }

    @Test("control characters are escaped on output")
    func controlCharacters() throws {
        let text = "a\u{01}b\u{1F}c\td"
        let encoded = try WireJSON.encode(HealthResponse(status: text))
        #expect(String(decoding: encoded, as: UTF8.self) == #"{"status":"a\u0001b\u001fc\td"}"#)
        #expect(try WireJSON.decode(HealthResponse.self, from: encoded).status == text)
    }

    @Test("Foundation's coders see the payload as the same JSON value")
    func foundationFallback() throws {
        let body = BranchBody(participant: "http://p", payload: try RawJSON(validating: #"{"b":[1,2.5,"x",null,true],"a":-3}"#))
        let data = try JSONEncoder().encode(body)
        let back = try WireJSON.decode(BranchBody.self, from: Array(data))
        let node = try JSONParser.parse(back.payload.bytes)
        guard case .object(let members) = node.kind else {
            Issue.record("payload is not an object")
            return
        }
        #expect(Set(members.map(\.key)) == ["a", "b"])
        let decoded = try JSONDecoder().decode(BranchBody.self, from: data)
        #expect(try JSONParser.parse(decoded.payload.bytes).range.count > 0)
    }

    @Test("timestamps format and parse as RFC 3339 UTC with milliseconds")
    func timestamps() {
        #expect(WireTimestamp.string(millisecondsSinceEpoch: 0) == "1970-01-01T00:00:00.000Z")
        #expect(WireTimestamp.string(millisecondsSinceEpoch: 1_735_787_045_678) == "2025-01-02T03:04:05.678Z")
        #expect(WireTimestamp.string(millisecondsSinceEpoch: 951_782_400_000) == "2000-02-29T00:00:00.000Z")
        #expect(WireTimestamp.string(millisecondsSinceEpoch: -1) == "1969-12-31T23:59:59.999Z")
        for ms: Int64 in [0, 1, 951_782_400_000, 1_735_787_045_678, 4_102_444_800_123, -86_400_001] {
            #expect(WireTimestamp.milliseconds(from: WireTimestamp.string(millisecondsSinceEpoch: ms)) == ms)
        }
        #expect(WireTimestamp.milliseconds(from: "2025-01-02T03:04:05Z") == 1_735_787_045_000)
        #expect(WireTimestamp.milliseconds(from: "2025-01-02T03:04:05.6Z") == 1_735_787_045_600)
        #expect(WireTimestamp.milliseconds(from: "2025-01-02 03:04:05Z") == nil)
        #expect(WireTimestamp.milliseconds(from: "2025-13-02T03:04:05Z") == nil)
    }

    @Test("mutated bodies never crash the decoder or the validation")
    func mutationsNeverCrash() {
        let seed = Array(#"{"id":"t-1","branches":[{"participant":"http://a:1","payload":{"op":"debit","n":[1,2.5e3,"\u00e9",null,true]}},{"participant":"https://b","payload":"x"}],"timeoutMs":100,"wait":"completion"}"#.utf8)
        let alphabet = Array(#"{}[]:,"\ -0123456789.eE+truefalsnl/\u"#.utf8) + [0x00, 0x1F, 0x7F, 0xC3, 0xFF]
        var random = SplitMix64(seed: 42)
        var decoded = 0
        for _ in 0..<3000 {
            var bytes = seed
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                let position = Int.random(in: 0..<bytes.count, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0: bytes[position] = alphabet.randomElement(using: &random)!
                case 1: bytes.remove(at: position)
                default: bytes.insert(alphabet.randomElement(using: &random)!, at: position)
                }
                if bytes.isEmpty { bytes = [0x7B] }
            }
            if let request = try? WireJSON.decode(SubmitRequest.self, from: bytes), (try? request.validated(limits: .default)) != nil {
                decoded += 1
            }
        }
        // Some mutations (inside strings, say) stay valid; the point is that none crashed.
        #expect(decoded < 3000)
    }
}
