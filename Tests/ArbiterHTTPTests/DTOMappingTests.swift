import ArbiterCore
@testable import ArbiterHTTP
import Testing

@Suite("Wire DTOs and their core mappings")
struct DTOMappingTests {
    static let payload = Payload(#"{"op":"debit","account":"alice","amount":100}"#)

    @Test("every coordinator message batches and comes back the same")
    func coordinatorMessagesRoundTrip() throws {
        let messages: [CoordinatorMessage] = [
            .prepare(PrepareRequest(txid: txid("t1"), coordinator: CoordinatorID("http://c:8080"), payload: Self.payload, onePhase: false)),
            .prepare(PrepareRequest(txid: txid("t2"), coordinator: CoordinatorID("https://c"), payload: Payload("[1,2]"), onePhase: true)),
            .commit(txid("t3")),
            .abort(txid("t4")),
        ]
        let request = try BatchRequest(messages)
        let bytes = try WireJSON.encode(request)
        let decoded = try WireJSON.decode(BatchRequest.self, from: bytes)
        #expect(decoded == request)
        #expect(try decoded.validated(limits: .default) == messages)
        let text = String(decoding: bytes, as: UTF8.self)
        #expect(text.hasPrefix(#"{"messages":[{"type":"prepare","txid":"t1","coordinator":"http://c:8080","payload":{"op":"debit""#))
        #expect(text.contains(#"{"type":"commit","txid":"t3"}"#))
        #expect(!text.contains(#""onePhase":false"#), "onePhase is sent only when true")
    }

    @Test("an outcome message is not batched")
    func outcomeNotBatched() {
        #expect(throws: APIError.self) { try BatchRequest([.outcome(txid("t"), .committed)]) }
    }

    @Test("every participant answer maps to a reply and back")
    func participantMessagesRoundTrip() throws {
        let answers: [(CoordinatorMessage, ParticipantMessage)] = [
            (.prepare(PrepareRequest(txid: txid("a"), coordinator: CoordinatorID("http://c"), payload: Payload("1"), onePhase: false)), .vote(txid("a"), .yes)),
            (.prepare(PrepareRequest(txid: txid("b"), coordinator: CoordinatorID("http://c"), payload: Payload("1"), onePhase: false)), .vote(txid("b"), .no(reason: "insufficient funds"))),
            (.prepare(PrepareRequest(txid: txid("c"), coordinator: CoordinatorID("http://c"), payload: Payload("1"), onePhase: false)), .vote(txid("c"), .readOnly)),
            (.prepare(PrepareRequest(txid: txid("d"), coordinator: CoordinatorID("http://c"), payload: Payload("1"), onePhase: true)), .onePhaseOutcome(txid("d"), .aborted)),
            (.commit(txid("e")), .acknowledge(txid("e"), .committed)),
            (.abort(txid("f")), .acknowledge(txid("f"), .aborted)),
            (.commit(txid("g")), .acknowledge(txid("g"), .unknown)),
        ]
        let response = BatchResponse(replies: answers.map { BatchReply(answering: $0.0, with: $0.1) })
        let decoded = try WireJSON.decode(BatchResponse.self, from: WireJSON.encode(response))
        #expect(decoded == response)
        for (index, reply) in decoded.replies.enumerated() {
            #expect(try reply.result() == .success(answers[index].1))
        }
    }

    @Test("an answer that does not fit its message becomes an error reply, not a crash")
    func misfitAnswer() throws {
        let reply = BatchReply(answering: .commit(txid("t")), with: .vote(txid("t"), .yes))
        guard case .error(let id, let detail) = reply else {
            Issue.record("expected an error reply, got \(reply)")
            return
        }
        #expect(id == "t")
        #expect(detail.code == "internal")
    }

    @Test("single-endpoint replies have the documented shapes")
    func replyShapes() throws {
        func json(_ value: some Encodable) throws -> String { String(decoding: try WireJSON.encode(value), as: UTF8.self) }
        #expect(try json(PrepareReply(.vote(txid("t"), .yes))!) == #"{"txid":"t","vote":"yes"}"#)
        #expect(try json(PrepareReply(.vote(txid("t"), .no(reason: "locked")))!) == #"{"txid":"t","vote":"no","reason":"locked"}"#)
        #expect(try json(PrepareReply(.vote(txid("t"), .readOnly))!) == #"{"txid":"t","vote":"read-only"}"#)
        #expect(try json(PrepareReply(.onePhaseOutcome(txid("t"), .committed))!) == #"{"txid":"t","outcome":"committed"}"#)
        #expect(try json(AcknowledgeReply(.acknowledge(txid("t"), .unknown))!) == #"{"txid":"t","state":"unknown"}"#)
        #expect(PrepareReply(.acknowledge(txid("t"), .committed)) == nil)
        #expect(AcknowledgeReply(.vote(txid("t"), .yes)) == nil)
    }

    @Test("a prepare reply needs exactly one of vote and outcome")
    func prepareReplyExclusive() throws {
        #expect(throws: APIError.self) { try WireJSON.decode(PrepareReply.self, from: #"{"txid":"t"}"#.bytes) }
        #expect(throws: APIError.self) { try WireJSON.decode(PrepareReply.self, from: #"{"txid":"t","vote":"yes","outcome":"committed"}"#.bytes) }
        #expect(throws: APIError.self) { try WireJSON.decode(PrepareReply.self, from: #"{"txid":"t","vote":"maybe"}"#.bytes) }
        // A `no` without a reason still maps to a core vote.
        #expect(try WireJSON.decode(PrepareReply.self, from: #"{"txid":"t","vote":"no"}"#.bytes).message() == .vote(txid("t"), .no(reason: "no reason given")))
    }

    @Test("a submission validates into core branches, normalizing participant URLs")
    func submissionValidates() throws {
        let request = SubmitRequest(
            id: "transfer-42",
            branches: [
                BranchBody(participant: "http://bank-a:9001/", payload: try RawJSON(Self.payload)),
                BranchBody(participant: "HTTPS://bank-b/base", payload: try RawJSON(validating: "{}")),
            ],
            timeoutMs: 1500,
            wait: .completion
        )
        let submission = try request.validated(limits: .default)
        #expect(submission.id == txid("transfer-42"))
        #expect(submission.branches.map(\.participant) == [ParticipantID("http://bank-a:9001"), ParticipantID("HTTPS://bank-b/base")])
        #expect(submission.branches[0].payload == Self.payload)
        #expect(submission.timeout == .milliseconds(1500))
        #expect(submission.wait == .completion)

        let defaults = try SubmitRequest(branches: [BranchBody(participant: "http://p", payload: try RawJSON(validating: "1"))]).validated(limits: .default)
        #expect(defaults.id == nil && defaults.timeout == nil && defaults.wait == .decision)
    }

    @Test("a submission built from core values round-trips")
    func submissionFromCore() throws {
        let branches = [Branch(participant: ParticipantID("http://a"), payload: Self.payload)]
        let request = try SubmitRequest(id: txid("x"), branches: branches, timeout: .milliseconds(10) + .nanoseconds(1), wait: nil)
        #expect(request.timeoutMs == 11, "a fractional millisecond rounds up")
        let back = try WireJSON.decode(SubmitRequest.self, from: WireJSON.encode(request)).validated(limits: .default)
        #expect(back.branches == branches)
        #expect(throws: APIError.self) {
            try SubmitRequest(id: nil, branches: [Branch(participant: ParticipantID("http://a"), payload: Payload("{oops"))], timeout: nil, wait: nil)
        }
    }

    @Test("outcome responses map to inquiry answers")
    func outcomes() throws {
        for answer in [InquiryAnswer.committed, .aborted, .pending] {
            let response = OutcomeResponse(id: txid("t"), answer: answer)
            let decoded = try WireJSON.decode(OutcomeResponse.self, from: WireJSON.encode(response))
            #expect(try decoded.message() == .outcome(txid("t"), answer))
        }
        for outcome in Outcome.allCases {
            #expect(WireOutcome(outcome).outcome == outcome)
        }
        for local in [LocalOutcome.committed, .aborted, .unknown] {
            #expect(WireLocalOutcome(local).localOutcome == local)
        }
    }

    @Test("the listing query parses, refuses bad parameters and prints back")
    func listQuery() throws {
        let query = try ListQuery(parameters: [(name: "state", value: "committing"), (name: "limit", value: "10"), (name: "after", value: "9")], limits: .default)
        #expect(query == ListQuery(state: .committing, limit: 10, after: "9"))
        #expect(query.queryString == "state=committing&limit=10&after=9")
        #expect(try ListQuery(parameters: [], limits: .default).limit == 100)

        let cases: [([(name: String, value: String)], String)] = [
            ([(name: "state", value: "done")], "state"),
            ([(name: "limit", value: "0")], "limit"),
            ([(name: "limit", value: "1001")], "limit"),
            ([(name: "limit", value: "ten")], "limit"),
            ([(name: "after", value: "bad id")], "after"),
            ([(name: "after", value: "t-9")], "after"),
            ([(name: "after", value: "-1")], "after"),
            ([(name: "after", value: "9223372036854775808")], "after"),
            ([(name: "status", value: "committed")], "status"),
            ([(name: "limit", value: "1"), (name: "limit", value: "2")], "limit"),
        ]
        for (parameters, field) in cases {
            do {
                _ = try ListQuery(parameters: parameters, limits: .default)
                Issue.record("accepted \(parameters)")
            } catch {
                #expect(error.field == field)
                #expect(error.status == .badRequest)
            }
        }
    }

    @Test("service URLs: http(s) only, with a host, no credentials, query or fragment")
    func serviceURLs() throws {
        let good = ["http://a", "https://a:443", "http://127.0.0.1:9001/", "http://[::1]:8080/base/", "HTTP://Host"]
        for url in good {
            _ = try WireValidation.serviceURL(url, field: "f", limits: .default)
        }
        #expect(try WireValidation.serviceURL("http://a:1//", field: "f", limits: .default) == "http://a:1")
        let bad = [
            "ftp://a", "a:1", "http://", "http:///x", "http://u:p@a", "http://a?x=1", "http://a#f", "http://a b",
            "http://a:0", "http://a:70000", "http://a:x", "http://[::1", "https://é.com", "",
            "http://" + String(repeating: "a", count: 2100),
        ]
        for url in bad {
            #expect(throws: APIError.self, "\(url)") { try WireValidation.serviceURL(url, field: "f", limits: .default) }
        }
        // Each rule's own message, for the first rule a URL breaks.
        let reasons: [(url: String, message: String)] = [
            ("ftp://a", "is not an http:// or https:// URL"), ("htt://a", "is not an http:// or https:// URL"),
            ("http://a b", "whitespace, a control character or a non-ASCII character"),
            ("http://a\u{7F}", "whitespace, a control character or a non-ASCII character"),
            ("https://é.com?x", "whitespace, a control character or a non-ASCII character"),
            ("http://a/p?x", "must not have a query or fragment"), ("http://a#", "must not have a query or fragment"),
            ("http://u@a/", "must not contain credentials"), ("http://[::1/x", "unterminated IPv6 address"),
            ("http://a:", "port must be a number in 1...65535"), ("http://[::1]x", "port must be a number in 1...65535"),
            ("http://a:65536", "port must be a number in 1...65535"),
            ("http://a:+80", "port must be a number in 1...65535"), ("http://a:0080000", "port must be a number in 1...65535"),
            ("http://a:" + String(repeating: "9", count: 40), "port must be a number in 1...65535"), ("http://:80", "has no host"),
            ("http://", "has no host"), ("http://" + String(repeating: "a", count: 2100), "the limit is"),
        ]
        for (url, message) in reasons {
            do {
                _ = try WireValidation.serviceURL(url, field: "f", limits: .default)
                Issue.record("\(url) was accepted")
            } catch {
                #expect(error.message.contains(message) && error.message.hasPrefix("`f`: "), "\(url): \(error.message)")
            }
        }
        // Valid URLs come back as given, without their trailing slashes (the scheme's case kept).
        let normalised: [(url: String, expected: String)] = [
            ("HTTPS://Host:8443/base//", "HTTPS://Host:8443/base"), ("http://[::1]", "http://[::1]"),
            ("http://[::1]:1/", "http://[::1]:1"), ("http://a:080", "http://a:080"), ("hTtP://a/b/c", "hTtP://a/b/c"),
        ]
        for (url, expected) in normalised {
            #expect(try WireValidation.serviceURL(url, field: "f", limits: .default) == expected)
        }
    }
}
