@testable import ArbiterClient
import ArbiterCore
@testable import ArbiterHTTP
import AsyncHTTPClient
import Foundation
import Testing

/// A real coordinator over HTTP on loopback, against scripted participants.
@Suite("Coordinator over HTTP")
struct CoordinatorHTTPTests {
    @Test func commitsWhenEveryoneVotesYes() async throws {
        let directory = try TemporaryDirectory()
        let (p0, p1) = (FakeParticipant(), FakeParticipant())
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: directory.path) { _, client, _ in
                let result = try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("c-1"), wait: .completion)
                #expect(result.outcome == .committed)
                #expect(p0.state.committed == [txid("c-1")] && p1.state.committed == [txid("c-1")])
                let view = try await client.transaction(txid("c-1"))
                #expect(view.state == .committed)
                #expect(view.branches.allSatisfy { $0.acknowledgement == .committed })
                #expect(view.decidedAt != nil && view.endedAt != nil)
            }
        }
    }

    @Test func abortsOnANoVoteAndTellsTheOthers() async throws {
        let directory = try TemporaryDirectory()
        let (p0, p1) = (FakeParticipant(), FakeParticipant { _ in .no("insufficient funds") })
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: directory.path) { _, client, _ in
                let result = try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("a-1"), wait: .completion)
                #expect(result.outcome == .aborted)
                #expect(result.reason?.contains("insufficient funds") == true)
                #expect(p0.state.aborted == [txid("a-1")])
                #expect(p0.state.committed.isEmpty && p1.state.committed.isEmpty)
            }
        }
    }

    @Test func abortsWhenThePrepareDeadlinePasses() async throws {
        let directory = try TemporaryDirectory()
        let (p0, p1) = (FakeParticipant(), FakeParticipant { _ in .hang })
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: directory.path) { _, client, _ in
                let result = try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("d-1"), timeout: .milliseconds(300))
                #expect(result.outcome == .aborted)
                #expect(result.reason?.contains("deadline") == true)
                try await eventually("P0 is told to abort") { p0.state.aborted == [txid("d-1")] }
            }
        }
    }

    @Test func readOnlyParticipantsLeavePhaseTwo() async throws {
        let directory = try TemporaryDirectory()
        let (p0, p1) = (FakeParticipant { _ in .readOnly }, FakeParticipant())
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: directory.path) { _, client, _ in
                let result = try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("r-1"), wait: .completion)
                #expect(result.outcome == .committed)
                #expect(p1.state.committed == [txid("r-1")])
                #expect(p0.state.committed.isEmpty && p0.state.messages == 1, "a read-only voter hears nothing after its vote")
            }
        }
    }

    @Test func aSingleParticipantCommitsInOnePhase() async throws {
        let directory = try TemporaryDirectory()
        let p0 = FakeParticipant()
        try await withParticipants([p0]) { ids in
            try await withCoordinator(data: directory.path) { _, client, _ in
                let result = try await client.submit(branches: [branch(ids[0])], id: txid("o-1"))
                #expect(result.outcome == .committed)
                #expect(p0.state.onePhase == [txid("o-1")])
                #expect(p0.state.messages == 1, "one message: no separate commit")
            }
        }
    }

    @Test func resubmittingTheSameIDIsIdempotentAndOtherBranchesConflict() async throws {
        let directory = try TemporaryDirectory()
        let (p0, p1) = (FakeParticipant(), FakeParticipant())
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: directory.path) { url, client, http async throws in
                let branches = [branch(ids[0]), branch(ids[1])]
                let first = try await client.submit(branches: branches, id: txid("i-1"), wait: .completion)
                let again = try await client.submit(branches: branches, id: txid("i-1"), wait: .completion)
                #expect(first.outcome == .committed && again.outcome == .committed)
                #expect(p0.state.prepared.count == 1, "the resubmission ran nothing again")
                let conflict = try await rawRequest(http, .POST, url + "/v1/transactions", body: """
                    {"id": "i-1", "branches": [{"participant": "\(ids[0])", "payload": {"other": true}}, {"participant": "\(ids[1])", "payload": 1}]}
                    """)
                #expect(conflict.status == 409)
                #expect(conflict.body.contains("id_in_use"))
            }
        }
    }

    @Test func theInquiryEndpointPresumesAbort() async throws {
        let directory = try TemporaryDirectory()
        let (p0, p1) = (FakeParticipant(), FakeParticipant())
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: directory.path) { _, client, _ in
                _ = try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("q-1"), wait: .completion)
                #expect(try await client.outcome(txid("q-1")) == .committed)
                #expect(try await client.outcome(txid("never-seen")) == .aborted)
            }
        }
    }

    /// A participant may hold prepared a transaction whose lazy `begun` record the coordinator
    /// lost in a crash; told "aborted", it may not have applied that yet when the client submits
    /// the same id again. The coordinator records the abort it presumed, so the resubmission is
    /// answered "aborted" and nothing is prepared again (found by the end-to-end suite).
    @Test func anAbortPresumedForAnInquiryIsRecordedAndAnswersAResubmission() async throws {
        let directory = try TemporaryDirectory()
        let (p0, p1) = (FakeParticipant(), FakeParticipant())
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: directory.path) { _, client, _ in
                #expect(try await client.outcome(txid("lost-1")) == .aborted)
                let view = try await client.transaction(txid("lost-1"))
                #expect(view.state == .aborted)
                #expect(view.reason?.contains("presumed abort") == true)
                let result = try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("lost-1"))
                #expect(result.outcome == .aborted)
                #expect(p0.state.prepared.isEmpty && p1.state.prepared.isEmpty, "nothing is prepared again")
                #expect(try await client.outcome(txid("lost-1")) == .aborted)
            }
        }
    }

    @Test func groupCommitSharesFsyncsAcrossConcurrentDecisions() async throws {
        let directory = try TemporaryDirectory()
        let (p0, p1) = (FakeParticipant(), FakeParticipant())
        let count = 64
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: directory.path) { url, client, http async throws in
                let before = try await fsyncs(http, url)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for number in 0..<count {
                        group.addTask {
                            let result = try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("g-\(number)"))
                            #expect(result.outcome == .committed)
                        }
                    }
                    try await group.waitForAll()
                }
                let used = try await fsyncs(http, url) - before
                #expect(used >= 1)
                #expect(used < count / 2, "\(count) concurrent commit decisions took \(used) fsyncs")
            }
        }
    }

    @Test("a participant stalled on one prepare does not hold up the other transactions sent to it")
    func aStalledRequestDoesNotBlockTheLink() async throws {
        let directory = try TemporaryDirectory()
        // The stalled prepare answers only once released, after the others are done, however
        // slow the machine; its request may stay open for a minute.
        let p0 = FakeParticipant { $0.rawValue == "s-slow" ? .held : .yes }
        let p1 = FakeParticipant()
        let patient = CoordinatorConfig(prepareTimeout: .seconds(60), phaseTwoRetry: Backoff(initial: .milliseconds(20), max: .milliseconds(200)))
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: directory.path, config: patient) { _, client, _ in
                async let slow = client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("s-slow"), timeout: .seconds(60))
                try await eventually("the stalled prepare is out") { p1.state.prepared.contains(txid("s-slow")) }
                // Sent while the stalled request is open: they go in a second request and commit
                // while the stalled transaction is still undecided.
                for number in 0..<3 {
                    let result = try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("s-\(number)"))
                    #expect(result.outcome == .committed)
                }
                #expect(try await client.transaction(txid("s-slow")).state == .preparing, "the others waited for the stalled request")
                p0.release()
                #expect(try await slow.outcome == .committed)
            }
        }
    }

    @Test("a committed transaction costs the log one fsync; its lazy records commit without one")
    func aCommitIsOneFsync() async throws {
        let directory = try TemporaryDirectory()
        let (p0, p1) = (FakeParticipant(), FakeParticipant())
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: directory.path) { url, client, http in
                let result = try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("l-1"), wait: .completion)
                #expect(result.outcome == .committed)
                try await eventually("l-1 is recorded as ended") { (try? await client.transaction(txid("l-1")))?.state == .committed }
                #expect(try await metric("arbiter_log_fsyncs", http, url) == 1)
                #expect(try await metric("arbiter_log_lazy_commits", http, url) >= 1)
            }
        }
    }

    @Test("an abort forces nothing")
    func anAbortForcesNothing() async throws {
        let directory = try TemporaryDirectory()
        let (p0, p1) = (FakeParticipant(), FakeParticipant { _ in .no("refused") })
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: directory.path) { url, client, http in
                // An abort is lazy from start to end (presumed abort).
                let result = try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("l-3"))
                #expect(result.outcome == .aborted)
                try await eventually("the abort is recorded") { (try? await client.transaction(txid("l-3")))?.state == .aborted }
                #expect(try await metric("arbiter_log_fsyncs", http, url) == 0)
                #expect(try await metric("arbiter_log_lazy_commits", http, url) >= 1)
            }
        }
    }

    @Test("a transaction batch answers each transaction on its own line, as if submitted alone")
    func aTransactionBatchAnswersEachTransaction() async throws {
        let directory = try TemporaryDirectory()
        let p0 = FakeParticipant()
        let p1 = FakeParticipant { $0.rawValue == "b-no" ? .no("insufficient funds") : .yes }
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: directory.path) { url, client, http in
                _ = try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("b-0"))
                let request = SubmitBatchRequest(transactions: [
                    try SubmitRequest(id: txid("b-yes"), branches: [branch(ids[0]), branch(ids[1])], timeout: nil, wait: .completion),
                    try SubmitRequest(id: txid("b-no"), branches: [branch(ids[0]), branch(ids[1])], timeout: nil, wait: nil),
                    // b-0 again with other branches: the id is in use.
                    try SubmitRequest(id: txid("b-0"), branches: [branch(ids[0])], timeout: nil, wait: nil),
                    // No id: the coordinator makes one.
                    try SubmitRequest(id: nil, branches: [branch(ids[0]), branch(ids[1])], timeout: nil, wait: nil),
                ])
                let lines = try await batchLines(http, url, request)
                #expect(lines.map(\.index).sorted() == [0, 1, 2, 3], "one line per transaction")
                let byIndex = Dictionary(uniqueKeysWithValues: lines.map { ($0.index, $0) })
                #expect(byIndex[0]?.id == "b-yes" && byIndex[0]?.outcome == .committed)
                #expect(byIndex[1]?.id == "b-no" && byIndex[1]?.outcome == .aborted)
                #expect(byIndex[1]?.reason?.contains("insufficient funds") == true)
                #expect(byIndex[2]?.error?.code == "id_in_use" && byIndex[2]?.status == 409 && byIndex[2]?.outcome == nil)
                let made = try #require(byIndex[3])
                #expect(made.outcome == .committed && made.id.hasPrefix("test-"))
                // Each ran as its own transaction.
                #expect(try await client.transaction(txid("b-yes")).state == .committed)
                #expect(try await client.transaction(txid(made.id)).outcome == .committed)
                #expect(p1.state.committed.contains(txid("b-yes")) && !p1.state.committed.contains(txid("b-no")))
            }
        }
    }

    @Test("a malformed transaction batch is refused whole, naming the field, and runs nothing")
    func aMalformedBatchRunsNothing() async throws {
        let directory = try TemporaryDirectory()
        let p0 = FakeParticipant()
        try await withParticipants([p0]) { ids in
            try await withCoordinator(data: directory.path) { url, client, http in
                let good = #"{"id":"m-0","branches":[{"participant":"\#(ids[0].rawValue)","payload":{"op":"credit"}}]}"#
                let cases: [(body: String, code: String, field: String?)] = [
                    (#"{"transactions":[\#(good),{"id":"m-1","branches":[]}]}"#, "invalid_value", "transactions[1].branches"),
                    (#"{"transactions":[\#(good),{"id":"m 2","branches":[]}]}"#, "invalid_value", "transactions[1].id"),
                    (#"{"transactions":[]}"#, "invalid_value", "transactions"),
                    (#"{"transactions":[\#(good)],"#, "invalid_json", nil),
                ]
                for (body, code, field) in cases {
                    let response = try await rawRequest(http, .POST, url + "/v1/transaction-batch", body: body)
                    #expect(response.status == 400, "\(body)")
                    let error = try WireJSON.decode(ErrorResponse.self, from: Array(response.body.utf8)).error
                    #expect(error.code == code, "\(body): \(error)")
                    if let field { #expect(error.field == field, "\(body): \(error)") }
                }
                let unauthorized = try await rawRequest(http, .POST, url + "/v1/transaction-batch", body: #"{"transactions":[\#(good)]}"#, token: nil)
                #expect(unauthorized.status == 401)
                let tooMany = "{\"transactions\":[" + Array(repeating: good, count: 1025).joined(separator: ",") + "]}"
                let limit = try await rawRequest(http, .POST, url + "/v1/transaction-batch", body: tooMany)
                #expect(limit.status == 400 && limit.body.contains("limit_exceeded"))
                // Nothing of any of them ran.
                await #expect(throws: ArbiterClientError.self) { _ = try await client.transaction(txid("m-0")) }
                #expect(p0.state.prepared.isEmpty)
            }
        }
    }

    @Test("a stalled transaction does not delay the answers of the others in its batch")
    func aStalledTransactionDoesNotDelayItsBatch() async throws {
        let directory = try TemporaryDirectory()
        let p0 = FakeParticipant { $0.rawValue == "q-slow" ? .hang : .yes }
        let p1 = FakeParticipant()
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: directory.path) { url, _, http in
                let request = SubmitBatchRequest(transactions: [
                    // A deadline far beyond what the fast one needs even on a loaded machine.
                    try SubmitRequest(id: txid("q-slow"), branches: [branch(ids[0]), branch(ids[1])], timeout: .seconds(10), wait: nil),
                    try SubmitRequest(id: txid("q-fast"), branches: [branch(ids[1])], timeout: nil, wait: nil),
                ])
                let lines = try await batchLines(http, url, request)
                // The fast one's line came first, while the slow one waited for its deadline.
                #expect(lines.map(\.id) == ["q-fast", "q-slow"])
                #expect(lines.map(\.outcome) == [.committed, .aborted])
            }
        }
    }

    @Test("a batching client carries concurrent submits in fewer requests, each answered on its own")
    func aBatchingClientSharesRequests() async throws {
        let directory = try TemporaryDirectory()
        let p0 = FakeParticipant()
        let p1 = FakeParticipant { $0.rawValue.hasSuffix("7") ? .no("refused") : .yes }
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: directory.path) { url, _, http in
                let client = ArbiterClient(coordinator: url, secret: TestSecrets.protocolSecret, httpClient: http,
                                           retry: RetryPolicy(attemptCountMax: 1), batching: SubmitBatching())
                let count = 40
                let outcomes = try await withThrowingTaskGroup(of: (Int, Outcome).self) { group in
                    for number in 0..<count {
                        group.addTask {
                            let result = try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("k-\(number)"))
                            #expect(result.id == txid("k-\(number)"))
                            return (number, result.outcome)
                        }
                    }
                    return try await group.reduce(into: [Int: Outcome]()) { $0[$1.0] = $1.1 }
                }
                #expect(outcomes.count == count)
                #expect(outcomes.allSatisfy { $0.value == ($0.key % 10 == 7 ? .aborted : .committed) })
                let requests = client.submitRequestCounts
                #expect(requests.batches >= 1 && requests.alone + requests.batches < count, "\(count) submits took \(requests)")
                try await eventually("phase 2 reaches P1") { p1.state.committed.count == count - 4 }
                // A refused transaction in a batch is the client's error, as when submitted alone.
                _ = try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("k-0"))
                await #expect(throws: ArbiterClientError.self) {
                    _ = try await client.submit(branches: [branch(ids[0])], id: txid("k-0"))
                }
            }
        }
    }

    @Test("a batching client keeps each request within its byte budget")
    func aBatchingClientKeepsToItsByteBudget() async throws {
        let directory = try TemporaryDirectory()
        let (p0, p1) = (FakeParticipant(), FakeParticipant())
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: directory.path) { url, _, http in
                // A budget smaller than two transactions: each goes alone, however many wait.
                let client = ArbiterClient(coordinator: url, secret: TestSecrets.protocolSecret, httpClient: http,
                                           retry: RetryPolicy(attemptCountMax: 1), batching: SubmitBatching(batchBytesMax: 100))
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for number in 0..<10 {
                        group.addTask {
                            let result = try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("z-\(number)"))
                            #expect(result.outcome == .committed)
                        }
                    }
                    try await group.waitForAll()
                }
                #expect(client.submitRequestCounts == (alone: 10, batches: 0))
            }
        }
    }

    @Test("a batching client sends a lone submit as a plain one, on its kept-alive connections when given", arguments: [false, true])
    func aBatchingClientSendsALoneSubmitPlainly(onConnections: Bool) async throws {
        let directory = try TemporaryDirectory()
        let p0 = FakeParticipant()
        let p1 = FakeParticipant { $0.rawValue.hasSuffix("3") ? .no("refused") : .yes }
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: directory.path) { url, _, http in
                let connections = HTTP1Connections()
                defer { connections.shutdown() }
                let client = ArbiterClient(coordinator: url, secret: TestSecrets.protocolSecret, httpClient: http,
                                           connections: onConnections ? connections : nil,
                                           retry: RetryPolicy(attemptCountMax: 1), batching: SubmitBatching())
                for number in 0..<5 {
                    let result = try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("lone-\(number)"))
                    #expect(result.id == txid("lone-\(number)") && result.outcome == (number == 3 ? .aborted : .committed))
                    #expect((result.reason?.contains("refused") ?? false) == (number == 3), "\(result)")
                }
                #expect(client.submitRequestCounts == (alone: 5, batches: 0))
                #expect(connections.openedCount == (onConnections ? 1 : 0))
                // A refusal comes back as the same typed error as from an unbatched client.
                let error = await #expect(throws: ArbiterClientError.self) {
                    _ = try await client.submit(branches: [branch(ids[0])], id: txid("lone-0"))
                }
                #expect(error?.code == ArbiterClientError.Code(.idInUse), "\(String(describing: error))")
            }
        }
    }

    private func batchLines(_ http: HTTPClient, _ url: String, _ request: SubmitBatchRequest) async throws -> [SubmitBatchResult] {
        var lines: [SubmitBatchResult] = []
        try await WireCall.streamLines(
            http, url: url + "/v1/transaction-batch", body: request, secret: TestSecrets.protocolSecret,
            timeout: .seconds(30), lineSizeMax: 1 << 20, as: SubmitBatchResult.self
        ) { lines.append($0) }
        return lines
    }

    private func fsyncs(_ http: HTTPClient, _ url: String) async throws -> Int {
        try await metric("arbiter_log_fsyncs", http, url)
    }

    private func metric(_ name: String, _ http: HTTPClient, _ url: String) async throws -> Int {
        let metrics = try await rawRequest(http, .GET, url + "/metrics", token: nil)
        let line = metrics.body.split(separator: "\n").first { $0.hasPrefix(name + " ") }
        return Int(Double(line?.split(separator: " ").last ?? "") ?? -1)
    }
}
