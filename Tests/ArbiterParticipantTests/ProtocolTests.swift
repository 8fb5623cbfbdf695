import ArbiterCore
import ArbiterHTTP
import BankExample
import ArbiterParticipant
import ArbiterTesting
import Foundation
import Testing

/// The participant half of the protocol over real HTTP on loopback, against a ``ScriptedResource``.
@Suite("Participant protocol over HTTP")
struct ProtocolTests {
    @Test("yes, no, read-only and throwing stages; an undecodable payload votes no")
    func votes() async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory) { node in
                let yes = try await node.prepare("t-yes", payload: Scripts.vote("yes", locks: ["k1"]))
                #expect(yes.status == 200)
                #expect(try yes.json()["vote"] as? String == "yes")
                #expect(try await node.stored("t-yes")?.state == "prepared")
                #expect(try await node.rows("t-yes") == ScriptRows(staged: true))
                #expect(try await node.lockKeys() == ["k1"])

                // A no rolls back what the stage wrote, its locks included.
                let no = try await node.prepare("t-no", payload: Scripts.vote("no", locks: ["k2"]))
                #expect(no.status == 200)
                #expect(try no.json()["vote"] as? String == "no")
                #expect(try no.json()["reason"] as? String == "scripted refusal")
                #expect(try await node.rows("t-no") == ScriptRows())
                #expect(try await node.stored("t-no")?.state == "aborted")

                let readOnly = try await node.prepare("t-ro", payload: Scripts.vote("readOnly", locks: ["k3"]))
                #expect(try readOnly.json()["vote"] as? String == "read-only")
                #expect(try await node.rows("t-ro") == ScriptRows())
                #expect(try await node.stored("t-ro") == nil)

                let thrown = try await node.prepare("t-throw", payload: Scripts.vote("throw", locks: ["k4"]))
                #expect(try thrown.json()["vote"] as? String == "no")
                #expect((try thrown.json()["reason"] as? String)?.contains("scripted failure in stage") == true)
                #expect(try await node.rows("t-throw") == ScriptRows())

                let undecodable = try await node.prepare("t-bad", payload: #"{"votes":"yes"}"#)
                #expect(try undecodable.json()["vote"] as? String == "no")
                #expect((try undecodable.json()["reason"] as? String)?.contains("vote") == true)

                #expect(try await node.lockKeys() == ["k1"])
            }
        }
    }

    @Test("a repeated prepare, commit or abort gets the same answer")
    func duplicates() async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory) { node in
                for _ in 0..<2 {
                    #expect(try await node.prepare("t-c", payload: Scripts.vote("yes")).json()["vote"] as? String == "yes")
                    #expect(try await node.prepare("t-a", payload: Scripts.vote("yes")).json()["vote"] as? String == "yes")
                    #expect(try await node.prepare("t-n", payload: Scripts.vote("no")).json()["vote"] as? String == "no")
                }
                // The same id with another payload is refused, and the first prepare stands.
                let other = try await node.prepare("t-c", payload: Scripts.vote("yes", value: "other"))
                #expect(try other.json()["vote"] as? String == "no")
                #expect(try await node.stored("t-c")?.state == "prepared")

                for _ in 0..<2 {
                    let commit = try await node.commit("t-c")
                    #expect(commit.status == 200)
                    #expect(try commit.json()["state"] as? String == "committed")
                    let abort = try await node.abort("t-a")
                    #expect(try abort.json()["state"] as? String == "aborted")
                }
                #expect(try await node.rows("t-c") == ScriptRows(applied: true))
                #expect(try await node.rows("t-a") == ScriptRows(discarded: true))
                // After the decision, a prepare again answers what was decided.
                #expect(try await node.prepare("t-c", payload: Scripts.vote("yes")).json()["vote"] as? String == "yes")
                #expect(try await node.prepare("t-a", payload: Scripts.vote("yes")).json()["vote"] as? String == "no")
                // And the other decision is not taken: the outcome is final.
                #expect(try await node.abort("t-c").json()["state"] as? String == "committed")
                #expect(try await node.commit("t-a").json()["state"] as? String == "aborted")
                #expect(try await node.lockKeys() == [])
            }
        }
    }

    @Test("a commit or abort uses the payload decoded at the stage; after a restart, the stored one")
    func stagedPayloadIsDecodedOnce() async throws {
        let tag = "decoded-once-\(UUID().uuidString)"
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory) { (node: RunningNode<ScriptedResource>) async throws in
                #expect(try await node.prepare("d-c", payload: Scripts.vote("yes", value: tag + "c")).json()["vote"] as? String == "yes")
                #expect(try await node.prepare("d-a", payload: Scripts.vote("yes", value: tag + "a")).json()["vote"] as? String == "yes")
                #expect(try await node.prepare("d-r", payload: Scripts.vote("yes", value: tag + "r")).json()["vote"] as? String == "yes")
                #expect(try await node.commit("d-c").json()["state"] as? String == "committed")
                #expect(try await node.abort("d-a").json()["state"] as? String == "aborted")
                #expect(try await node.rows("d-c") == ScriptRows(applied: true))
                #expect(try await node.rows("d-a") == ScriptRows(discarded: true))
                #expect(Self.decodes(tag + "c") == 1 && Self.decodes(tag + "a") == 1 && Self.decodes(tag + "r") == 1)
            }
            // A new process has nothing decoded: the commit decodes what the store kept.
            try await withNode(ScriptedResource(), directory: directory) { (node: RunningNode<ScriptedResource>) async throws in
                #expect(try await node.commit("d-r").json()["state"] as? String == "committed")
                #expect(try await node.rows("d-r") == ScriptRows(applied: true))
                #expect(Self.decodes(tag + "r") == 2)
            }
        }
    }

    private static func decodes(_ value: String) -> Int { scriptDecodeCounts.withLock { $0[value] ?? 0 } }

    @Test("an abort before its prepare leaves a tombstone: the late prepare votes no and stages nothing")
    func abortBeforePrepare() async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory) { node in
                let abort = try await node.abort("t-early")
                #expect(try abort.json()["state"] as? String == "aborted")
                #expect(try await node.stored("t-early") == ParticipantTransactionStateView(state: "aborted", heuristic: false, tombstone: true))

                let late = try await node.prepare("t-early", payload: Scripts.vote("yes", locks: ["k"]))
                #expect(try late.json()["vote"] as? String == "no")
                #expect(try await node.rows("t-early") == ScriptRows())
                #expect(try await node.lockKeys() == [])
                // A one-phase prepare overtaken by its abort answers the abort.
                let onePhase = try await node.prepare("t-early", payload: Scripts.vote("yes"), onePhase: true)
                #expect(try onePhase.json()["outcome"] as? String == "aborted")
                // A commit for a transaction unknown here is acknowledged as unknown.
                #expect(try await node.commit("t-never").json()["state"] as? String == "unknown")
            }
        }
    }

    @Test("a lock held by another transaction votes no at once, and frees when that one ends")
    func lockConflict() async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory) { node in
                #expect(try await node.prepare("t-1", payload: Scripts.vote("yes", locks: ["account:alice"])).json()["vote"] as? String == "yes")
                let conflict = try await node.prepare("t-2", payload: Scripts.vote("yes", locks: ["account:bob", "account:alice"]))
                #expect(try conflict.json()["vote"] as? String == "no")
                #expect((try conflict.json()["reason"] as? String)?.contains("account:alice is locked by transaction t-1") == true)
                // Nothing of t-2 stays, not even the lock it took before meeting the conflict.
                #expect(try await node.lockKeys() == ["account:alice"])
                #expect(try await node.rows("t-2") == ScriptRows())

                #expect(try await node.commit("t-1").json()["state"] as? String == "committed")
                #expect(try await node.lockKeys() == [])
                #expect(try await node.prepare("t-3", payload: Scripts.vote("yes", locks: ["account:alice"])).json()["vote"] as? String == "yes")
            }
        }
    }

    @Test("one-phase prepare stages and applies in one local transaction; a resend gets the recorded outcome")
    func onePhase() async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory) { node in
                let first = try await node.prepare("t-1p", payload: Scripts.vote("yes", locks: ["k"]), onePhase: true)
                #expect(first.status == 200)
                #expect(try first.json()["outcome"] as? String == "committed")
                #expect(try await node.rows("t-1p") == ScriptRows(applied: true))
                #expect(try await node.stored("t-1p")?.state == "committed")
                #expect(try await node.lockKeys() == [])

                let resend = try await node.prepare("t-1p", payload: Scripts.vote("yes", locks: ["k"]), onePhase: true)
                #expect(try resend.json()["outcome"] as? String == "committed")
                #expect(try await node.rows("t-1p") == ScriptRows(applied: true))
                // A coordinator that lost the answer asks with abort: the answer is the outcome.
                #expect(try await node.abort("t-1p").json()["state"] as? String == "committed")

                let refused = try await node.prepare("t-1p-no", payload: Scripts.vote("no"), onePhase: true)
                #expect(try refused.json()["outcome"] as? String == "aborted")
                #expect(try await node.stored("t-1p-no")?.state == "aborted")
                #expect(try await node.prepare("t-1p-no", payload: Scripts.vote("no"), onePhase: true).json()["outcome"] as? String == "aborted")

                let readOnly = try await node.prepare("t-1p-ro", payload: Scripts.vote("readOnly"), onePhase: true)
                #expect(try readOnly.json()["outcome"] as? String == "committed")
                #expect(try await node.rows("t-1p-ro") == ScriptRows())
            }
        }
    }

    @Test("a batch keeps its order and answers each message, errors included")
    func batch() async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory) { node in
                let messages = [
                    #"{"type":"prepare","txid":"b-1","coordinator":"http://127.0.0.1:1","payload":\#(Scripts.vote("yes", locks: ["x"]))}"#,
                    #"{"type":"prepare","txid":"b-2","coordinator":"http://127.0.0.1:1","payload":\#(Scripts.vote("yes", locks: ["x"]))}"#,
                    #"{"type":"abort","txid":"b-3"}"#,
                ]
                let prepared = try await node.http.post(node.url + "/v1/batch", #"{"messages":[\#(messages.joined(separator: ","))]}"#)
                #expect(prepared.status == 200)
                let replies = try #require(try prepared.json()["replies"] as? [[String: Any]])
                #expect(replies.count == 3)
                #expect(replies[0]["vote"] as? String == "yes")
                #expect(replies[1]["vote"] as? String == "no")
                #expect(replies[2]["state"] as? String == "aborted")

                let decided = try await node.http.post(node.url + "/v1/batch",
                    #"{"messages":[{"type":"commit","txid":"b-1"},{"type":"commit","txid":"b-1"}]}"#)
                let decisions = try #require(try decided.json()["replies"] as? [[String: Any]])
                #expect(decisions.map { $0["state"] as? String } == ["committed", "committed"])
                #expect(try await node.rows("b-1") == ScriptRows(applied: true))
            }
        }
    }

    @Test("requests without the secret get 401, with another role's token 403, and change nothing")
    func authentication() async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory) { node in
                let body = Wire.prepare("t-auth", coordinator: "http://127.0.0.1:1", payload: Scripts.vote("yes", locks: ["k"]))
                for (token, status, code) in [(nil, 401, "unauthorized"), ("wrong", 401, "unauthorized"), (TestSecrets.operatorText, 403, "forbidden")] as [(String?, Int, String)] {
                    let reply = try await node.http.post(node.url + "/v1/prepare", body, token: token)
                    #expect(reply.status == status)
                    #expect(try reply.errorCode() == code)
                    #expect(try await node.http.post(node.url + "/v1/abort", Wire.decision("t-auth"), token: token).status == status)
                }
                let state = await node.node.state(of: try TxID("t-auth"))
                #expect(state == nil)
                #expect(try await node.stored("t-auth") == nil)
                #expect(try await node.lockKeys() == [])
                // Health needs no secret.
                #expect(try await node.http.get(node.url + "/healthz", token: nil).status == 200)
                // With the secret, the same prepare is a fresh one.
                #expect(try await node.http.post(node.url + "/v1/prepare", body).json()["vote"] as? String == "yes")
            }
        }
    }

    @Test("with client tokens, a client token opens the service's routes and no protocol endpoint; the protocol secret no service route")
    func clientTokensKeepToTheirRole() async throws {
        let client = "a-client-token"
        try await withTemporaryDirectory { directory in
            try await withNode(BankResource(), directory: directory, configure: { options in
                options.clientTokens = [NamedToken(name: "shop", secret: try! BearerSecret(client))]
            }, routes: BankRoutes.add(to:)) { node in
                let http = node.http
                #expect(try await http.post(node.url + "/accounts", #"{"id":"alice","balance":1000}"#, token: client).status == 201)
                #expect(try await http.post(node.url + "/accounts", #"{"id":"mallory","balance":0}"#, token: client).status == 201)
                // The client plays coordinator: a one-phase credit, a prepare then commit, a batch,
                // an abort tombstone for someone else's id. Every one is refused and changes nothing.
                let credit = #"{"op":"credit","account":"mallory","amount":1000000}"#
                let attempts: [(String, String)] = [
                    ("/v1/prepare", Wire.prepare("steal-1", coordinator: "http://127.0.0.1:1", payload: credit, onePhase: true)),
                    ("/v1/prepare", Wire.prepare("steal-2", coordinator: "http://127.0.0.1:1", payload: credit)),
                    ("/v1/commit", Wire.decision("steal-2")),
                    ("/v1/abort", Wire.decision("someone-elses")),
                    ("/v1/batch", #"{"messages":[{"type":"commit","txid":"steal-2"}]}"#),
                ]
                for (path, body) in attempts {
                    let reply = try await http.post(node.url + path, body, token: client)
                    #expect(reply.status == 403, "\(path): \(reply)")
                    #expect(try reply.errorCode() == "forbidden")
                }
                for txid in ["steal-1", "steal-2", "someone-elses"] {
                    #expect(try await node.stored(txid) == nil, "\(txid) left a record")
                }
                let mallory = try await http.get(node.url + "/accounts/mallory", token: client).json()
                #expect(mallory["balance"] as? Int == 0 && mallory["reserved"] as? Int == 0)
                // The protocol secret is the coordinator's: it no longer opens the bank's API.
                #expect(try await http.get(node.url + "/accounts/alice").status == 403)
                // And it still speaks the protocol.
                #expect(try await node.prepare("real", payload: #"{"op":"debit","account":"alice","amount":5}"#).json()["vote"] as? String == "yes")
            }
        }
    }

    @Test("bad input gets a 4xx JSON error naming the problem, writes nothing, and the node keeps serving")
    func badInput() async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory, configure: { $0.limits.bodySizeMax = 4096 }) { node in
                let cases: [(body: String, status: Int, code: String, field: String?)] = [
                    ("not json", 400, "invalid_json", nil),
                    ("", 400, "invalid_json", nil),
                    (#"{"coordinator":"http://127.0.0.1:1","payload":{}}"#, 400, "missing_field", "txid"),
                    (#"{"txid":"bad id!","coordinator":"http://127.0.0.1:1","payload":{}}"#, 400, "invalid_value", "txid"),
                    (#"{"txid":7,"coordinator":"http://127.0.0.1:1","payload":{}}"#, 400, "wrong_type", "txid"),
                    (#"{"txid":"t","coordinator":"ftp://x","payload":{}}"#, 400, "invalid_value", "coordinator"),
                    (#"{"txid":"t","txid":"u","coordinator":"http://127.0.0.1:1","payload":{}}"#, 400, "invalid_json", nil),
                    (#"{"txid":"t","coordinator":"http://127.0.0.1:1","payload":"\#(String(repeating: "x", count: 5000))"}"#, 413, "body_too_large", nil),
                ]
                for item in cases {
                    let reply = try await node.http.post(node.url + "/v1/prepare", item.body)
                    #expect(reply.status == item.status, "\(item.body.prefix(60)) → \(reply)")
                    #expect(try reply.errorCode() == item.code, "\(item.body.prefix(60)) → \(reply)")
                    let field = (try reply.json()["error"] as? [String: Any])?["field"] as? String
                    #expect(field == item.field, "\(item.body.prefix(60)) → \(reply)")
                }
                let commit = try await node.http.post(node.url + "/v1/commit", #"{"id":"t"}"#)
                #expect(commit.status == 400)
                let unknownRoute = try await node.http.post(node.url + "/v1/nothing", "{}")
                #expect(unknownRoute.status == 404)
                #expect(try unknownRoute.errorCode() == "not_found")
                let emptyBatch = try await node.http.post(node.url + "/v1/batch", #"{"messages":[]}"#)
                #expect(emptyBatch.status == 400)

                #expect(try await node.stored("t") == nil)
                #expect(try await node.node.database.store.recover().isEmpty)
                #expect(try await node.http.get(node.url + "/healthz").status == 200)
                #expect(try await node.prepare("t", payload: Scripts.vote("yes")).json()["vote"] as? String == "yes")
            }
        }
    }
}

@Suite("Participant storage: group commit and retries")
struct StorageBehaviourTests {
    @Test("a batch of prepares is staged and forced in one local transaction (one fsync)")
    func groupCommit() async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory) { node in
                let count = 50
                let messages = (0..<count).map { index in
                    let payload = Scripts.vote("yes", locks: ["k\(index)"])
                    return #"{"type":"prepare","txid":"g-\#(index)","coordinator":"http://127.0.0.1:1","payload":\#(payload)}"#
                }
                let before = node.database.store.writer.statistics
                let reply = try await node.http.post(node.url + "/v1/batch", #"{"messages":[\#(messages.joined(separator: ","))]}"#)
                let replies = try #require(try reply.json()["replies"] as? [[String: Any]])
                #expect(replies.count == count)
                #expect(replies.allSatisfy { $0["vote"] as? String == "yes" })
                let after = node.database.store.writer.statistics
                // Fed to the machine under one lock, the 50 stages leave the outbox together.
                #expect(after.forcedTransactionCount - before.forcedTransactionCount == 1)
                #expect(try await node.lockKeys().count == count)
            }
        }
    }

    @Test("an apply that throws is retried until it works; the commit is acknowledged only then")
    func applyRetried() async throws {
        try await withTemporaryDirectory { directory in
            let resource = ScriptedResource()
            try await withNode(resource, directory: directory, configure: {
                $0.storageRetry = Backoff(initial: .milliseconds(20), max: .milliseconds(50))
            }) { node in
                #expect(try await node.prepare("t-r", payload: Scripts.vote("yes", locks: ["k"])).json()["vote"] as? String == "yes")
                resource.applyFailures.set(3)
                let commit = try await node.commit("t-r")
                #expect(try commit.json()["state"] as? String == "committed")
                #expect(resource.applyFailures.left == 0)
                #expect(try await node.rows("t-r") == ScriptRows(applied: true))
                #expect(try await node.lockKeys() == [])
            }
        }
    }

    @Test("GET /metrics needs no token and reports fsyncs, writes, batch sizes, transactions by state and locks")
    func metrics() async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory, configure: { $0.endedCountInterval = .zero }) { node in
                let empty = try await node.http.get(node.url + "/metrics", token: nil)
                #expect(empty.status == 200)
                #expect(value(empty.text, "arbiter_participant_transactions{state=\"prepared\"}") == 0)
                #expect(value(empty.text, "arbiter_participant_in_doubt") == 0)
                #expect(value(empty.text, "arbiter_participant_oldest_in_doubt_seconds") == 0)

                #expect(try await node.prepare("m-1", payload: Scripts.vote("yes", locks: ["k1"])).json()["vote"] as? String == "yes")
                #expect(try await node.prepare("m-2", payload: Scripts.vote("yes", locks: ["k2"])).json()["vote"] as? String == "yes")
                #expect(try await node.commit("m-1").json()["state"] as? String == "committed")
                #expect(try await node.prepare("m-3", payload: Scripts.vote("no")).json()["vote"] as? String == "no")

                let reply = try await node.http.get(node.url + "/metrics", token: nil)
                #expect(reply.status == 200)
                let text = reply.text
                let statistics = node.database.store.writer.statistics
                // Three forced commits at least: two prepares and a commit (a no vote's abort is lazy).
                #expect((value(text, "arbiter_participant_fsyncs") ?? 0) >= 3)
                #expect(value(text, "arbiter_participant_fsyncs") == Double(statistics.forcedTransactionCount))
                #expect((value(text, "arbiter_participant_write_requests") ?? 0) >= 4)
                #expect((value(text, "arbiter_participant_batch_size_max") ?? 0) >= 1)
                #expect((value(text, "arbiter_participant_batch_size_mean") ?? 0) >= 1)
                #expect(value(text, "arbiter_participant_lazy_commits") != nil)
                #expect(value(text, "arbiter_participant_transactions{state=\"prepared\"}") == 1)
                #expect(value(text, "arbiter_participant_transactions{state=\"committed\"}") == 1)
                #expect(value(text, "arbiter_participant_transactions{state=\"aborted\"}") == 1)
                #expect(value(text, "arbiter_participant_locks") == 1)
                #expect(value(text, "arbiter_participant_waiting_requests") == 0)
                #expect(value(text, "arbiter_participant_known_transactions") == 3)
                #expect(value(text, "arbiter_participant_in_doubt") == 1)
                #expect((value(text, "arbiter_participant_oldest_in_doubt_seconds") ?? -1) >= 0)
                // Every participant metric the Grafana dashboard names is in this exposition.
                for name in try grafanaMetricNames(repositoryRoot: repositoryRoot()) where name.hasPrefix("arbiter_participant_") {
                    #expect(text.contains("\n\(name)"), "docs/grafana/arbiter.json names \(name), which a participant does not expose")
                }
            }
        }
    }

    @Test("/metrics recounts the ended transactions at most every endedCountInterval; those in doubt and the locks at every scrape")
    func endedCountsAreReused() async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory, configure: { $0.endedCountInterval = .seconds(3600) }) { node in
                _ = try await node.prepare("m-1", payload: Scripts.vote("yes", locks: ["k1"]))
                _ = try await node.commit("m-1")
                let first = try await node.http.get(node.url + "/metrics", token: nil).text
                #expect(value(first, "arbiter_participant_transactions{state=\"committed\"}") == 1)
                #expect(value(first, "arbiter_participant_transactions{state=\"prepared\"}") == 0)

                _ = try await node.prepare("m-2", payload: Scripts.vote("yes", locks: ["k2"]))
                _ = try await node.commit("m-2")
                _ = try await node.prepare("m-3", payload: Scripts.vote("yes", locks: ["k3"]))
                let second = try await node.http.get(node.url + "/metrics", token: nil).text
                // The ended count is the first scrape's; the transaction in doubt and its lock are new.
                #expect(value(second, "arbiter_participant_transactions{state=\"committed\"}") == 1)
                #expect(value(second, "arbiter_participant_transactions{state=\"prepared\"}") == 1)
                #expect(value(second, "arbiter_participant_locks") == 1)
                #expect(try await node.database.store.census().committed == 2)
            }
        }
    }
}

/// The value of the Prometheus sample `name` in an exposition `text`, if it is there.
private func value(_ text: String, _ name: String) -> Double? {
    text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last!) }
}

/// The repository's root, three folders up from this file.
private func repositoryRoot(filePath: String = #filePath) -> URL {
    URL(fileURLWithPath: filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}
