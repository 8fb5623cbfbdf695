import ArbiterClient
import ArbiterCore
import ArbiterHTTP
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
        let p0 = FakeParticipant { $0.rawValue == "s-slow" ? .hang : .yes }
        let p1 = FakeParticipant()
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: directory.path) { _, client, _ in
                async let slow = client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("s-slow"), timeout: .seconds(20))
                try await eventually("the stalled prepare is out") { p1.state.prepared.contains(txid("s-slow")) }
                // Sent while the stalled request is open (until its 5 s request timeout): they go in
                // a second request and commit while the stalled transaction is still undecided.
                for number in 0..<3 {
                    let result = try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("s-\(number)"))
                    #expect(result.outcome == .committed)
                }
                #expect(try await client.transaction(txid("s-slow")).state == .preparing, "the others waited for the stalled request")
                #expect(try await slow.outcome == .aborted)
            }
        }
    }

    @Test("lazy records wait for the next forced write and commit in its transaction")
    func lazyRecordsRideWithTheDecision() async throws {
        let directory = try TemporaryDirectory()
        let (p0, p1) = (FakeParticipant(), FakeParticipant())
        try await withParticipants([p0, p1]) { ids in
            // A linger longer than the test: nothing lazy commits alone while it runs.
            try await withCoordinator(data: directory.path, lazyRecordLinger: .seconds(60)) { url, client, http in
                let result = try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("l-1"))
                #expect(result.outcome == .committed)
                // The lazy `begun` record went into the decision's transaction: one commit, forced.
                #expect(try await metric("arbiter_log_fsyncs", http, url) == 1)
                #expect(try await metric("arbiter_log_lazy_commits", http, url) == 0)
                // The acknowledgements and `ended` wait for the next decision and commit with it.
                try await eventually("phase 2 ends") { p0.state.committed.count == 1 && p1.state.committed.count == 1 }
                _ = try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("l-2"))
                #expect(try await metric("arbiter_log_fsyncs", http, url) == 2)
                #expect(try await metric("arbiter_log_lazy_commits", http, url) == 0)
                try await eventually("l-1 is recorded as ended") { (try? await client.transaction(txid("l-1")))?.state == .committed }
            }
        }
    }

    @Test("lazy records alone commit once the linger has passed")
    func lazyRecordsCommitAloneAfterTheLinger() async throws {
        let directory = try TemporaryDirectory()
        let (p0, p1) = (FakeParticipant(), FakeParticipant { _ in .no("refused") })
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: directory.path, lazyRecordLinger: .milliseconds(50)) { url, client, http in
                // An abort is lazy from start to end: no forced write ever comes to take it along.
                let result = try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("l-3"))
                #expect(result.outcome == .aborted)
                try await eventually("the abort is recorded") { (try? await client.transaction(txid("l-3")))?.state == .aborted }
                #expect(try await metric("arbiter_log_fsyncs", http, url) == 0)
                #expect(try await metric("arbiter_log_lazy_commits", http, url) >= 1)
            }
        }
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
