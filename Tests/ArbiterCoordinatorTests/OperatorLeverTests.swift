@testable import ArbiterClient
import ArbiterCore
@testable import ArbiterHTTP
import AsyncHTTPClient
import ArbiterTesting
import Foundation
import Testing

/// The operator's levers at the coordinator — forced phase-2 retry, the stuck listing, the audit
/// trail — and the metrics an operator watches, against a real coordinator over HTTP.
@Suite("Operator levers")
struct OperatorLeverTests {
    /// A backoff so long that no timed resend happens during a test: only the lever resends.
    static let slowRetry = CoordinatorConfig(prepareTimeout: .seconds(5), phaseTwoRetry: Backoff(initial: .seconds(120), max: .seconds(120)))

    @Test("a decided transaction owed an acknowledgement is listed as stuck, and a retry resends at once, audited")
    func retryResendsNowAndIsAudited() async throws {
        let directory = try TemporaryDirectory()
        let (a, b) = (FakeParticipant(), FakeParticipant())
        b.setAcceptsDecisions(false)
        try await withParticipants([a, b]) { ids in
            try await withCoordinator(data: directory.path, config: Self.slowRetry) { url, client, http async throws in
                let id = txid("stuck-1")
                #expect(try await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: id).outcome == .committed)
                try await eventually("b refused the first commit and a acknowledged") {
                    b.state.requests.contains { $0.contains("commit stuck-1") } && a.state.committed == [id]
                }
                // Stuck: b owes its acknowledgement.
                try await eventually("the log shows a's acknowledgement") {
                    let list = try await client.stuck()
                    return list.transactions.first?.owing == [ids[1].rawValue]
                }
                let stuck = try await client.stuck()
                #expect(stuck.transactions.map(\.id) == ["stuck-1"])
                #expect(stuck.transactions[0].state == .committing && stuck.transactions[0].awaiting == "acknowledgement")
                #expect(try await client.stuck(olderThanMs: 3_600_000).transactions.isEmpty)

                // Metrics while it is stuck.
                let metrics = try await rawRequest(http, .GET, url + "/metrics", token: nil).body
                #expect(metrics.contains("arbiter_owed_acknowledgements{participant=\"\(ids[1].rawValue)\"} 1"))
                #expect(metrics.contains("arbiter_unreachable_seconds{participant=\"\(ids[1].rawValue)\"}"))
                #expect(metrics.contains("arbiter_oldest_unacknowledged_seconds"))
                #expect(metrics.contains("arbiter_oldest_undecided_seconds 0"))
                #expect(metrics.contains("arbiter_outstanding_messages{participant=\"\(ids[0].rawValue)\"} 0"))
                // Every coordinator metric the Grafana dashboard names is in this exposition (the
                // participant's own are checked by the participant's metrics test).
                let names = try grafanaMetricNames(repositoryRoot: repositoryRoot())
                #expect(names.contains("arbiter_oldest_unacknowledged_seconds") && names.contains("arbiter_phase_two_retries_total"))
                for name in names where !name.hasPrefix("arbiter_participant_") {
                    #expect(metrics.contains("\n\(name)"), "docs/grafana/arbiter.json names \(name), which the coordinator does not expose")
                }

                // Without a reason: refused, nothing recorded.
                let noReason = try await rawRequest(http, .POST, url + "/v1/operator/transactions/stuck-1/retry", body: "{}", token: TestSecrets.operatorSecret)
                #expect(noReason.status == 400 && noReason.body.contains("reason"))
                // Not an operator: refused.
                let notOperator = try await rawRequest(http, .POST, url + "/v1/operator/transactions/stuck-1/retry", body: #"{"reason":"x"}"#)
                #expect(notOperator.status == 403)

                b.setAcceptsDecisions(true)
                let commitsBefore = b.state.requests.count
                let retried = try await client.retryPhaseTwo(id, reason: "b is back")
                #expect(retried.resentTo == [ids[1].rawValue])
                // The backoff is two minutes: only the lever can have sent this commit.
                try await eventually("b got the commit again", timeout: .seconds(20)) { b.state.committed == [id] }
                #expect(b.state.requests.count > commitsBefore)
                try await eventually("the transaction ended", timeout: .seconds(20)) {
                    try await client.transaction(id).state == .committed
                }
                let metricsAfter = try await rawRequest(http, .GET, url + "/metrics", token: nil).body
                #expect(metricsAfter.contains("arbiter_phase_two_retries_total 1"))

                // Ended: 409; unknown: 404. Both audited as refused.
                let again = try await rawRequest(http, .POST, url + "/v1/operator/transactions/stuck-1/retry", body: #"{"reason":"again"}"#, token: TestSecrets.operatorSecret)
                #expect(again.status == 409 && again.body.contains("not_in_phase_two"))
                let unknown = try await rawRequest(http, .POST, url + "/v1/operator/transactions/nope/retry", body: #"{"reason":"typo"}"#, token: TestSecrets.operatorSecret)
                #expect(unknown.status == 404)

                let trail = try await client.operatorAudit()
                #expect(trail.entries.map(\.reason) == ["typo", "again", "b is back"])
                #expect(trail.entries.allSatisfy { $0.actor == "test-operator" && $0.action == "retry" })
                #expect(trail.entries[2].result == "done: resent to \(ids[1].rawValue)")
                #expect(trail.entries[1].result?.hasPrefix("refused") == true)
                #expect(trail.entries[0].txid == "nope")
                #expect(try await client.stuck().transactions.isEmpty)
            }
        }
    }

    @Test("an undecided transaction is listed with every branch owing a vote, and a retry of it is refused with 409")
    func undecidedIsStuckAndNotRetryable() async throws {
        let directory = try TemporaryDirectory()
        // B holds its vote until the checks are done, under a deadline no loaded machine reaches.
        let (a, b) = (FakeParticipant(), FakeParticipant { _ in .held })
        let patient = CoordinatorConfig(prepareTimeout: .seconds(300), phaseTwoRetry: Self.slowRetry.phaseTwoRetry)
        try await withParticipants([a, b]) { ids in
            try await withCoordinator(data: directory.path, config: patient) { url, client, http async throws in
                let id = txid("hanging-1")
                let submit = Task { try? await client.submit(branches: [branch(ids[0]), branch(ids[1])], id: id) }
                try await eventually("the transaction is listed as undecided") {
                    try await client.stuck().transactions.first?.awaiting == "vote"
                }
                let entry = try #require(try await client.stuck().transactions.first)
                #expect(entry.id == "hanging-1" && entry.state == .preparing && entry.owing == ids.map(\.rawValue))
                let retry = try await rawRequest(http, .POST, url + "/v1/operator/transactions/hanging-1/retry", body: #"{"reason":"impatient"}"#, token: TestSecrets.operatorSecret)
                #expect(retry.status == 409)
                let metrics = try await rawRequest(http, .GET, url + "/metrics", token: nil).body
                #expect(!metrics.contains("arbiter_oldest_undecided_seconds 0\n"))
                b.release()
                #expect(await submit.value?.outcome == .committed)
            }
        }
    }

    @Test("the operator routes refuse a request without a credential")
    func operatorRoutesNeedAToken() async throws {
        let directory = try TemporaryDirectory()
        try await withCoordinator(data: directory.path) { url, _, http async throws in
            for path in ["/v1/operator/stuck", "/v1/operator/audit", "/dashboard/api/summary"] {
                #expect(try await rawRequest(http, .GET, url + path, token: nil).status == 401, "\(path)")
            }
            #expect(try await rawRequest(http, .GET, url + "/v1/operator/stuck?olderThanMs=-1", token: TestSecrets.operatorSecret).status == 400)
            #expect(try await rawRequest(http, .GET, url + "/v1/operator/audit", token: TestSecrets.operatorSecret).body == #"{"entries":[]}"#)
        }
    }
}

/// The repository's root, three folders up from this file.
private func repositoryRoot(filePath: String = #filePath) -> URL {
    URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}
