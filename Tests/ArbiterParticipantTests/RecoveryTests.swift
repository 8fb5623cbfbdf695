import ArbiterCore
import ArbiterParticipant
import Foundation
import Testing

/// Restarts, in-doubt inquiries and retention, with an in-test fake coordinator.
@Suite("Participant recovery and retention")
struct RecoveryTests {
    /// Inquiries start late in the first run (so that the test decides when), and retry quickly in
    /// the second.
    static func quietFirstRun(_ options: inout ParticipantOptions) {
        options.protocolConfig.inquiryTimeout = .seconds(3600)
    }

    static func quickInquiries(_ options: inout ParticipantOptions) {
        options.protocolConfig.inquiryRetry = Backoff(initial: .milliseconds(50), max: .milliseconds(200))
    }

    @Test("a prepared transaction survives a restart with its lock, asks the coordinator, and commits", arguments: [true, false])
    func restartThenInquiry(commits: Bool) async throws {
        try await FakeCoordinator.with { coordinator, coordinatorURL in
            try await withTemporaryDirectory { directory in
                try await withNode(ScriptedResource(), directory: directory, configure: Self.quietFirstRun) { node in
                    let vote = try await node.prepare("t-doubt", payload: Scripts.vote("yes", locks: ["k"]), coordinator: coordinatorURL)
                    #expect(try vote.json()["vote"] as? String == "yes")
                }
                #expect(coordinator.inquiries(about: "t-doubt") == 0)

                try await withNode(ScriptedResource(), directory: directory, configure: Self.quickInquiries) { node in
                    // Recovered: in doubt, still locked, still staged, and asking.
                    let state = await node.node.state(of: try TxID("t-doubt"))
                    #expect(state == .prepared)
                    #expect(try await node.lockKeys() == ["k"])
                    #expect(try await node.rows("t-doubt") == ScriptRows(staged: true))
                    let conflict = try await node.prepare("t-other", payload: Scripts.vote("yes", locks: ["k"]))
                    #expect(try conflict.json()["vote"] as? String == "no")
                    try await eventually("the participant asks the coordinator") { coordinator.inquiries(about: "t-doubt") >= 1 }
                    // "pending" keeps it in doubt; the participant asks again.
                    try await eventually("the participant asks again") { coordinator.inquiries(about: "t-doubt") >= 2 }
                    let stillState = await node.node.state(of: try TxID("t-doubt"))
                    #expect(stillState == .prepared)

                    coordinator.answer("t-doubt", commits ? .committed : .aborted)
                    try await eventually("the answer is applied") {
                        try await node.stored("t-doubt")?.state == (commits ? "committed" : "aborted")
                    }
                    #expect(try await node.rows("t-doubt") == (commits ? ScriptRows(applied: true) : ScriptRows(discarded: true)))
                    #expect(try await node.lockKeys() == [])
                    // The coordinator's own message afterwards gets the same outcome.
                    let reply = commits ? try await node.commit("t-doubt") : try await node.abort("t-doubt")
                    #expect(try reply.json()["state"] as? String == (commits ? "committed" : "aborted"))
                }
            }
        }
    }

    @Test("a restart keeps outcomes and tombstones: duplicates get the same answers")
    func restartKeepsOutcomes() async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory) { node in
                _ = try await node.prepare("t-c", payload: Scripts.vote("yes"))
                _ = try await node.commit("t-c")
                _ = try await node.prepare("t-1p", payload: Scripts.vote("yes"), onePhase: true)
                _ = try await node.abort("t-tomb")
            }
            try await withNode(ScriptedResource(), directory: directory) { node async throws in
                #expect(try await node.commit("t-c").json()["state"] as? String == "committed")
                #expect(try await node.prepare("t-1p", payload: Scripts.vote("yes"), onePhase: true).json()["outcome"] as? String == "committed")
                #expect(try await node.prepare("t-tomb", payload: Scripts.vote("yes")).json()["vote"] as? String == "no")
                #expect(try await node.rows("t-c") == ScriptRows(applied: true))
                #expect(try await node.rows("t-1p") == ScriptRows(applied: true))
            }
        }
    }

    @Test("memory forgets ended transactions after its retention; the store answers their late duplicates, before and after a restart")
    func memoryRetention() async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory, configure: shortMemoryRetention) { node in
                _ = try await node.prepare("t-c", payload: Scripts.vote("yes"))
                #expect(try await node.commit("t-c").json()["state"] as? String == "committed")
                _ = try await node.prepare("t-1p", payload: Scripts.vote("yes"), onePhase: true)
                _ = try await node.abort("t-tomb")
                try await node.waitUntilForgotten("t-c", "t-1p", "t-tomb")
                try await Self.expectLateDuplicatesAnsweredFromTheStore(node)
            }
            // A restart reads back only the transactions in doubt; the store still answers.
            try await withNode(ScriptedResource(), directory: directory, configure: shortMemoryRetention) { node in
                let state = await node.node.state(of: try TxID("t-c"))
                #expect(state == nil)
                try await Self.expectLateDuplicatesAnsweredFromTheStore(node)
            }
        }
    }

    static func expectLateDuplicatesAnsweredFromTheStore(_ node: RunningNode<ScriptedResource>) async throws {
        // A commit is acknowledged as committed, not as unknown.
        #expect(try await node.commit("t-c").json()["state"] as? String == "committed")
        // A prepare gets its first answer and is not staged again.
        #expect(try await node.prepare("t-c", payload: Scripts.vote("yes")).json()["vote"] as? String == "yes")
        #expect(try await node.rows("t-c") == ScriptRows(applied: true))
        #expect(try await node.prepare("t-1p", payload: Scripts.vote("yes"), onePhase: true).json()["outcome"] as? String == "committed")
        #expect(try await node.rows("t-1p") == ScriptRows(applied: true))
        // An abort of a committed transaction (a one-phase coordinator asking) gets the commit:
        // no tombstone is written over it.
        #expect(try await node.abort("t-1p").json()["state"] as? String == "committed")
        #expect(try await node.stored("t-1p")?.state == "committed")
        // The tombstone still refuses its late prepare.
        #expect(try await node.prepare("t-tomb", payload: Scripts.vote("yes")).json()["vote"] as? String == "no")
        #expect(try await node.rows("t-tomb") == ScriptRows())
    }

    @Test("ended transactions are forgotten after their retention; a late commit then answers unknown")
    func retention() async throws {
        try await withTemporaryDirectory { directory in
            try await withNode(ScriptedResource(), directory: directory, configure: { $0.protocolConfig.retention = .milliseconds(200) }) { node in
                _ = try await node.prepare("t-old", payload: Scripts.vote("yes"))
                #expect(try await node.commit("t-old").json()["state"] as? String == "committed")
                _ = try await node.abort("t-tomb")
                _ = try await node.prepare("t-doubt", payload: Scripts.vote("yes"))

                try await eventually("the ended transactions are forgotten") {
                    let old = try await node.stored("t-old")
                    let tombstone = try await node.stored("t-tomb")
                    return old == nil && tombstone == nil
                }
                let state = await node.node.state(of: try TxID("t-old"))
                #expect(state == nil)
                #expect(try await node.commit("t-old").json()["state"] as? String == "unknown")
                // The business change stays; only the protocol's records go.
                #expect(try await node.rows("t-old") == ScriptRows(applied: true))
                // A transaction in doubt is never forgotten.
                #expect(try await node.stored("t-doubt")?.state == "prepared")
            }
        }
    }
}
