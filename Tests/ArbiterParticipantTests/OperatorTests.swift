import ArbiterCore
import ArbiterHTTP
import ArbiterParticipant
import AsyncHTTPClient
import Foundation
import NIOCore
import Testing

/// The operator endpoints: in-doubt list, status, and heuristic decisions.
@Suite("Participant operator endpoints")
struct OperatorTests {
    static func decide(_ outcome: String, flag: Bool?, reason: String? = "coordinator lost (test)") -> String {
        var members = [#""outcome":"\#(outcome)""#]
        if let flag { members.append(#""iUnderstandThisMayBreakAtomicity":\#(flag)"#) }
        if let reason { members.append(#""reason":"\#(reason)""#) }
        return "{" + members.joined(separator: ",") + "}"
    }

    @Test("a heuristic decision needs the operator secret and the explicit flag, and is recorded as heuristic", arguments: ["committed", "aborted"])
    func heuristicDecision(outcome: String) async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory, configure: { $0.protocolConfig.inquiryTimeout = .seconds(3600) }) { node in
                let operatorToken = TestSecrets.operatorText
                _ = try await node.prepare("t-h", payload: Scripts.vote("yes", locks: ["k"]))

                let list = try await node.http.get(node.url + "/v1/operator/in-doubt", token: operatorToken)
                #expect(list.status == 200)
                let transactions = try #require(try list.json()["transactions"] as? [[String: Any]])
                #expect(transactions.count == 1)
                #expect(transactions.first?["txid"] as? String == "t-h")
                #expect(transactions.first?["locks"] as? [String] == ["k"])
                #expect(transactions.first?["coordinator"] as? String == "http://127.0.0.1:1")
                #expect((transactions.first?["payload"] as? [String: Any])?["vote"] as? String == "yes")

                let path = node.url + "/v1/operator/transactions/t-h/decide"
                // The protocol secret is not the operator's: a known token of another role.
                #expect(try await node.http.post(path, Self.decide(outcome, flag: true)).status == 403)
                #expect(try await node.http.get(node.url + "/v1/operator/in-doubt").status == 403)
                #expect(try await node.http.get(node.url + "/v1/operator/in-doubt", token: "not-a-token").status == 401)
                // Without the flag, or with it false, nothing happens.
                for flag in [nil, false] as [Bool?] {
                    let refused = try await node.http.post(path, Self.decide(outcome, flag: flag), token: operatorToken)
                    #expect(refused.status == 400)
                    let error = try #require(try refused.json()["error"] as? [String: Any])
                    #expect(error["field"] as? String == "iUnderstandThisMayBreakAtomicity")
                }
                // Without a reason, or with an empty one, nothing happens either.
                for reason in [nil, "  "] as [String?] {
                    let refused = try await node.http.post(path, Self.decide(outcome, flag: true, reason: reason), token: operatorToken)
                    #expect(refused.status == 400)
                    #expect(try refused.json()["error"].flatMap { $0 as? [String: Any] }?["field"] as? String == "reason")
                }
                #expect(try await node.stored("t-h")?.state == "prepared")
                #expect(try await node.database.store.operatorActions().isEmpty, "a refused request leaves no audit row")

                let decided = try await node.http.post(path, Self.decide(outcome, flag: true), token: operatorToken)
                #expect(decided.status == 200, "\(decided)")
                #expect(try decided.json()["state"] as? String == outcome)
                #expect(try decided.json()["heuristic"] as? Bool == true)
                #expect(try await node.stored("t-h") == ParticipantTransactionStateView(state: outcome, heuristic: true, tombstone: false))
                #expect(try await node.rows("t-h") == (outcome == "committed" ? ScriptRows(applied: true) : ScriptRows(discarded: true)))
                #expect(try await node.lockKeys() == [])
                let heuristicFlag = try await node.database.read { db in
                    try Bool.fetchOne(db, sql: "SELECT heuristic FROM \(outcome == "committed" ? "applied" : "discarded") WHERE txid = 't-h'")
                }
                #expect(heuristicFlag == true)

                // Shown as heuristic afterwards, no longer in doubt.
                let status = try await node.http.get(node.url + "/v1/operator/transactions/t-h", token: operatorToken)
                #expect(try status.json()["heuristic"] as? Bool == true)
                #expect(try status.json()["state"] as? String == outcome)
                #expect((try await node.http.get(node.url + "/v1/operator/in-doubt", token: operatorToken).json()["transactions"] as? [Any])?.isEmpty == true)

                // Deciding again is refused: the transaction is no longer in doubt.
                let again = try await node.http.post(path, Self.decide(outcome, flag: true), token: operatorToken)
                #expect(again.status == 409)
                // The coordinator's later message is answered with what this participant holds.
                let contrary = outcome == "committed" ? try await node.abort("t-h") : try await node.commit("t-h")
                #expect(try contrary.json()["state"] as? String == outcome)

                let unknown = try await node.http.post(node.url + "/v1/operator/transactions/t-none/decide", Self.decide(outcome, flag: true), token: operatorToken)
                #expect(unknown.status == 404)
                #expect(try await node.http.get(node.url + "/v1/operator/transactions/t-none", token: operatorToken).status == 404)
            }
        }
    }

    @Test("a heuristic decision on an ended transaction that memory has forgotten is refused with its stored state, not as unknown")
    func heuristicDecisionOnAForgottenTransaction() async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory, configure: shortMemoryRetention) { node in
                _ = try await node.prepare("t-old", payload: Scripts.vote("yes"))
                #expect(try await node.commit("t-old").json()["state"] as? String == "committed")
                try await node.waitUntilForgotten("t-old")

                let path = node.url + "/v1/operator/transactions/t-old/decide"
                let refused = try await node.http.post(path, Self.decide("aborted", flag: true), token: TestSecrets.operatorText)
                #expect(refused.status == 409)
                let error = try #require(try refused.json()["error"] as? [String: Any])
                #expect((error["message"] as? String)?.contains("committed here") == true)
                #expect(try await node.stored("t-old")?.state == "committed")
            }
        }
    }

    @Test("every heuristic decision leaves an audit row with who, what, why and the result; retention never deletes it")
    func auditTrail() async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory, configure: { options in
                options.protocolConfig.inquiryTimeout = .seconds(3600)
                options.operatorTokens = [NamedToken(name: "alice", secret: TestSecrets.operatorSecret),
                                          NamedToken(name: "bob", secret: try! BearerSecret("bobs-operator-token"))]
            }) { node in
                _ = try await node.prepare("t-a", payload: Scripts.vote("yes"))
                let decide = node.url + "/v1/operator/transactions/t-a/decide"
                let decided = try await node.http.post(decide, Self.decide("aborted", flag: true, reason: "ticket 4711"), token: "bobs-operator-token")
                #expect(decided.status == 200, "\(decided)")
                // A second try is refused, and that is audited too.
                let again = try await node.http.post(decide, Self.decide("committed", flag: true, reason: "retry"), token: TestSecrets.operatorText)
                #expect(again.status == 409)

                let trail = try await node.http.get(node.url + "/v1/operator/audit", token: TestSecrets.operatorText)
                #expect(trail.status == 200)
                let entries = try #require(try trail.json()["entries"] as? [[String: Any]])
                #expect(entries.map { $0["actor"] as? String } == ["alice", "bob"], "newest first")
                #expect(entries.map { $0["action"] as? String } == ["decide-committed", "decide-aborted"])
                #expect(entries.map { $0["reason"] as? String } == ["retry", "ticket 4711"])
                #expect(entries.last?["result"] as? String == "done")
                #expect((entries.first?["result"] as? String)?.hasPrefix("refused") == true)
                #expect(entries.allSatisfy { $0["txid"] as? String == "t-a" && ($0["at"] as? String)?.hasSuffix("Z") == true })
                let older = try await node.http.get(node.url + "/v1/operator/audit?limit=1&before=2", token: TestSecrets.operatorText)
                #expect((try older.json()["entries"] as? [[String: Any]])?.map { $0["actor"] as? String } == ["bob"])
                #expect(try await node.http.get(node.url + "/v1/operator/audit?limit=0", token: TestSecrets.operatorText).status == 400)
                #expect(try await node.http.get(node.url + "/v1/operator/audit").status == 403, "the protocol secret reads no audit")

                // Retention's sweep forgets the ended transaction; the audit rows stay.
                #expect(try await node.database.store.forgetEnded(olderThan: .zero) == 1)
                #expect(try await node.stored("t-a") == nil)
                #expect(try await node.database.store.operatorActions().count == 2)
            }
        }
    }

    @Test("the dashboard serves the login form to anyone, its summary only to an operator, and opens a session only for an operator token")
    func dashboardNeedsAnOperator() async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory, configure: { $0.protocolConfig.inquiryTimeout = .seconds(3600) }) { node in
                _ = try await node.prepare("t-d", payload: Scripts.vote("yes", locks: ["k"]))
                let long = Scripts.vote("yes", value: String(repeating: "é", count: 300))
                _ = try await node.prepare("t-long", payload: long)
                let form = try await node.http.get(node.url + "/dashboard", token: nil)
                #expect(form.status == 200)
                #expect(form.text.contains("Arbiter participant") && form.text.contains("Operator token"))

                let summaryURL = node.url + "/dashboard/api/summary"
                #expect(try await node.http.get(summaryURL, token: nil).status == 401)
                #expect(try await node.http.get(summaryURL).status == 403, "the protocol secret is not an operator's")
                let summary = try await node.http.get(summaryURL, token: TestSecrets.operatorText)
                #expect(summary.status == 200)
                let inDoubt = try #require(try summary.json()["inDoubt"] as? [[String: Any]])
                #expect(inDoubt.map { $0["txid"] as? String } == ["t-d", "t-long"], "oldest first")
                #expect(inDoubt.first?["locks"] as? [String] == ["k"])
                #expect(inDoubt.first?["coordinator"] as? String == "http://127.0.0.1:1")
                #expect(inDoubt.first?["payload"] as? String == Scripts.vote("yes", locks: ["k"]))
                #expect(inDoubt.first?["lastInquiry"] == nil, "no inquiry has ended yet")
                #expect(inDoubt.last?["payload"] as? String == String(long.prefix(160)) + "…", "a long payload's start")
                #expect(try summary.json()["inDoubtCount"] as? Int == 2)
                #expect(try summary.json()["csrf"] == nil, "a bearer token has no session")

                for token in [TestSecrets.protocolText, "not-a-token"] {
                    var login = HTTPClientRequest(url: node.url + "/dashboard/login")
                    login.method = .POST
                    login.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
                    login.body = .bytes(ByteBuffer(string: "token=\(token)"))
                    let refused = try await node.http.client.execute(login, timeout: .seconds(30))
                    #expect(refused.status == .unauthorized)
                    #expect(refused.headers["Set-Cookie"].isEmpty)
                }
            }
        }
    }

    @Test("without an operator secret the operator endpoints and the dashboard are not served")
    func noOperatorSecret() async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory, configure: { $0.operatorTokens = [] }) { node in
                let reply = try await node.http.get(node.url + "/v1/operator/in-doubt", token: TestSecrets.operatorText)
                #expect(reply.status == 404 || reply.status == 401)
                #expect(try await node.http.get(node.url + "/dashboard", token: nil).status == 404)
                #expect(try await node.http.get(node.url + "/dashboard/api/summary", token: TestSecrets.operatorText).status == 404)
            }
        }
    }
}
