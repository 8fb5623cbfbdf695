import ArbiterClient
import ArbiterCore
import ArbiterHTTP
import ArbiterTesting
import BankCluster
import Foundation
import Testing

extension EndToEnd {
    /// What happens when a process is away at each phase, or a participant stops answering.
    @Suite("Timeouts: a process away at each phase, a stalled network", .serialized)
    struct Timeouts {
        /// Node 1 prepares (durably) and holds its vote back; it is killed before it votes. The
        /// coordinator aborts, and node 0 releases its lock and reservation while node 1 is still
        /// down. A second transfer, sent while node 1 is down, aborts at once. Node 1 comes back
        /// with the first transaction prepared and learns the abort.
        @Test("a participant down during prepare: abort, and the others release their locks")
        func participantDownDuringPrepare() async throws {
            try await Scenario.run("participant down during prepare",
                                   failpoints: [.node(1): "participant.before-vote=delay(60000)"]) { scenario in
                let cluster = scenario.cluster
                // A long deadline: node 1 must be seen holding t1 prepared before the coordinator
                // gives up on it; the kill below makes it abort anyway.
                async let first = scenario.transfer("t1", from: (0, 0), to: (1, 0), amount: 100, timeout: .seconds(30))
                let t1 = try TxID("\(Scenario.idSafe(scenario.name))-\(scenario.seed)-t1")
                try await eventually("node 1 holds t1 prepared (its vote held back)") {
                    try await cluster.inDoubt(at: 1).contains { $0.txid == t1.rawValue }
                }
                scenario.kill(.node(1))
                scenario.note("node 1 killed with t1 prepared and its vote not sent")
                #expect(try await first?.outcome == .aborted)
                try await expectReleased(cluster, node: 0)
                #expect(try await cluster.status(of: t1, at: 0)?.state == "aborted")

                // Down before the prepare is sent: refused connection, abort at once.
                let second = try await scenario.transfer("t2", from: (0, 1), to: (1, 1), amount: 100)
                #expect(second?.outcome == .aborted)
                try await expectReleased(cluster, node: 0)
                #expect(!cluster.isRunning(.node(1)))

                try await scenario.restart(.node(1))
                try await eventually("node 1, back, learns that t1 aborted") {
                    try await cluster.status(of: t1, at: 1)?.state == "aborted"
                }
                try await expectReleased(cluster, node: 1)
            }
        }

        /// The coordinator crashes with both participants prepared (before, then after, its
        /// decision is durable). The participants stay prepared and locked, asking it in vain;
        /// when it returns, they learn its decision: abort when it had not decided (presumed
        /// abort), commit when it had.
        @Test("the coordinator down after the participants prepared: they stay in doubt, then resolve",
              arguments: [("coordinator.before-decision-force", Outcome.aborted), ("coordinator.after-decision-force", .committed)])
        func coordinatorDownAfterPrepare(_ failpoint: String, _ outcome: Outcome) async throws {
            try await Scenario.run("coordinator down after prepare (\(failpoint))", logLevel: "notice",
                                   failpoints: [.coordinator: "\(failpoint)=crash"]) { scenario in
                let cluster = scenario.cluster
                // A long deadline: on a loaded machine the prepares must not time out first.
                async let answer = scenario.transfer("t1", from: (0, 0), to: (1, 0), amount: 100, timeout: .seconds(30))
                let t1 = "\(Scenario.idSafe(scenario.name))-\(scenario.seed)-t1"
                try await scenario.waitForFailpoint(failpoint, at: .coordinator)
                for node in 0..<2 {
                    let inDoubt = try await cluster.inDoubt(at: node)
                    #expect(inDoubt.map(\.txid) == [t1], "node \(node) holds t1 in doubt")
                    #expect(inDoubt.first?.locks.isEmpty == false, "node \(node) holds t1's lock")
                }
                // Each node asks the coordinator (down) more than once, and still holds t1 prepared.
                try await eventually("each node asked the absent coordinator twice") {
                    (0..<2).allSatisfy { node in
                        (cluster.process(.node(node))?.log ?? "").components(separatedBy: "in-doubt inquiry failed").count > 2
                    }
                }
                for node in 0..<2 {
                    #expect(try await cluster.inDoubt(at: node).map(\.txid) == [t1], "node \(node) still in doubt")
                    let reserved = try await cluster.accounts(at: node).reduce(0) { $0 + $1.reserved }
                    #expect(reserved == (node == 0 ? 100 : 0), "node \(node): the debit stays reserved while in doubt")
                }
                try await scenario.restart(.coordinator)
                #expect(try await answer?.outcome == outcome)
                for node in 0..<2 {
                    try await eventually("node \(node) learns that t1 \(outcome)") {
                        try await cluster.status(of: TxID(t1), at: node)?.state == outcome.rawValue
                    }
                    try await expectReleased(cluster, node: node)
                }
            }
        }

        /// Node 1 crashes as it is about to write the commit; the client was told "committed" (the
        /// decision was durable), node 0 commits, the coordinator keeps resending to node 1, and
        /// node 1 commits when it returns.
        @Test("a participant down during phase 2: committed when it returns")
        func participantDownInPhaseTwo() async throws {
            try await Scenario.run("participant down during phase 2",
                                   failpoints: [.node(1): "participant.before-commit-force=crash"]) { scenario in
                let cluster = scenario.cluster
                let answer = try await scenario.transfer("t1", from: (0, 0), to: (1, 0), amount: 100, timeout: .seconds(30))
                #expect(answer?.outcome == .committed)
                let t1 = try TxID("\(Scenario.idSafe(scenario.name))-\(scenario.seed)-t1")
                try await scenario.waitForFailpoint("participant.before-commit-force", at: .node(1))
                try await eventually("node 0 commits t1") { try await cluster.status(of: t1, at: 0)?.state == "committed" }
                #expect(try await cluster.coordinatorUnfinished() == 1, "the coordinator still owes node 1 its commit")
                try await scenario.restart(.node(1))
                try await eventually("node 1, back, commits t1") { try await cluster.status(of: t1, at: 1)?.state == "committed" }
                try await expectReleased(cluster, node: 1)
                let accounts = try await cluster.accounts(at: 1)
                #expect(accounts.first { $0.id == Workload.accountID(1, 0) }?.balance == scenario.balance + 100)
            }
        }

        /// A participant that accepts the connection and never answers: the coordinator's prepare
        /// deadline passes, the transaction aborts, the two banks release their locks, and the
        /// coordinator goes on serving. (It keeps resending abort to the silent participant, which
        /// may have prepared, so this scenario does not wait for the coordinator to settle.)
        @Test("a stalled network (a silent participant): deadline, abort, nothing hangs")
        func silentParticipant() async throws {
            let silent = try await SilentListener.start()
            do {
                try await Scenario.run("stalled network: silent participant", settles: false) { scenario in
                    let cluster = scenario.cluster
                    let txid = try TxID("\(Scenario.idSafe(scenario.name))-\(scenario.seed)-t1")
                    try await cluster.register(name: "silent", url: silent.url)
                    let branches = [
                        cluster.branch(.debit, Workload.accountID(0, 0), 100, at: 0),
                        cluster.branch(.credit, Workload.accountID(1, 0), 100, at: 1),
                        Branch(participant: ParticipantID(silent.url), payload: Payload(#"{"op":"credit","account":"x","amount":1}"#)),
                    ]
                    let answer = try await scenario.submit(txid, branches, nodes: [0, 1])
                    #expect(answer?.outcome == .aborted)
                    #expect(silent.acceptedCount >= 1, "the coordinator connected to the silent participant")
                    scenario.note("aborted: \(answer?.reason ?? "no reason")")
                    for node in 0..<2 { try await expectReleased(cluster, node: node) }
                    // The coordinator still serves: a transfer between the banks commits.
                    let next = try await scenario.transfer("t2", from: (0, 0), to: (1, 0), amount: 100, timeout: .seconds(30))
                    #expect(next?.outcome == .committed)
                    for node in 0..<2 {
                        try await eventually("node \(node) has ended t2") { try await cluster.inDoubt(at: node).isEmpty }
                    }
                }
            } catch {
                await silent.close()
                throw error
            }
            await silent.close()
        }

        /// Node 1 holds every vote back for longer than the prepare deadline: each transfer aborts
        /// at the deadline, node 1 gets the abort (its vote, when it comes, is too late) and
        /// releases, and everything settles.
        @Test("a stalled vote (participant.before-vote delayed past the deadline): deadline, abort, nothing hangs")
        func stalledVote() async throws {
            try await Scenario.run("stalled network: vote delayed past the deadline",
                                   failpoints: [.node(1): "participant.before-vote=delay(\(3 * ClusterTimeouts.prepareMs))"]) { scenario in
                try await withThrowingTaskGroup(of: SubmitResult?.self) { group in
                    for index in 0..<4 {
                        group.addTask {
                            try await scenario.transfer("t\(index)", from: (0, index), to: (1, index), amount: 100)
                        }
                    }
                    for try await answer in group { #expect(answer?.outcome == .aborted) }
                }
                for node in 0..<2 { try await expectReleased(scenario.cluster, node: node) }
            }
        }
    }
}

/// Waits until `node` holds nothing in doubt and nothing reserved.
func expectReleased(_ cluster: BankCluster, node: Int, timeout: Duration = .seconds(60)) async throws {
    try await eventually("node \(node) holds no lock, prepared record or reservation", timeout: timeout, poll: .milliseconds(20)) {
        guard try await cluster.inDoubt(at: node).isEmpty else { return false }
        return try await cluster.accounts(at: node).allSatisfy { $0.reserved == 0 }
    }
}
