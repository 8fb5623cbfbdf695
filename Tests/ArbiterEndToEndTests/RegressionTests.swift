import ArbiterClient
import ArbiterCore
import ArbiterHTTP
import ArbiterTesting
import BankCluster
import Testing

extension EndToEnd {
    /// Bugs this suite found, each replayed deterministically.
    @Suite("Regressions", .serialized)
    struct Regressions {
        /// The coordinator sends `prepare` before its lazy `begun` record reaches the log, so a crash
        /// can leave a participant prepared for a transaction the restarted coordinator has never
        /// heard of. The participant asks, and is told "aborted" (presumed abort). Its client, which
        /// got no answer because of the crash, submits the same id again. The coordinator used to run
        /// it afresh: if the participant, still prepared, voted yes to the new prepare before it
        /// applied the "aborted" answer, the transaction committed at the other participant and
        /// aborted at this one. The coordinator must remember an abort it presumed.
        ///
        /// Deterministic: the test plays the lost `begun` by sending the prepare itself; failpoints
        /// make node 0 apply the inquiry's answer two seconds late (after its new yes vote) and the
        /// coordinator send its commit eight seconds after the decision (after node 0 aborted).
        @Test("an id presumed aborted in answer to an inquiry stays aborted when its client submits it again")
        func presumedAbortIsRemembered() async throws {
            try await Scenario.run("presumed abort, then the same id submitted again", logLevel: "debug", failpoints: [
                .node(0): "participant.before-inquiry-answer=delay(2000)",
                .coordinator: "coordinator.after-decision-force=delay(8000)",
            ]) { scenario in
                let cluster = scenario.cluster
                let txid = try TxID("\(Scenario.idSafe(scenario.name))-\(scenario.seed)-t1")
                let debit = cluster.branch(.debit, Workload.accountID(0, 0), 100, at: 0)
                let credit = cluster.branch(.credit, Workload.accountID(1, 0), 100, at: 1)

                // What the coordinator sent before it crashed and lost its lazy record of the transaction.
                let participants = ProtocolClient(httpClient: cluster.httpClient, credentials: cluster.protocolCredentials)
                let prepare = PrepareRequest(txid: txid, coordinator: CoordinatorID(cluster.coordinatorURL), payload: debit.payload, onePhase: false)
                let vote = try await participants.send(.prepare(prepare), to: debit.participant, timeout: .seconds(30))
                #expect(vote == .vote(txid, .yes))

                // Node 0, in doubt, asks; the coordinator has no record and answers "aborted". The
                // answer takes two seconds to be applied at node 0 (the failpoint).
                try await eventually("node 0 is told that \(txid) aborted") {
                    let log = cluster.process(.node(0))?.log ?? ""
                    return log.split(separator: "\n").contains { $0.contains("inquiry answered") && $0.contains(txid.rawValue) && $0.contains("aborted") }
                }
                // Meanwhile the client submits the transaction again, with the same id.
                let answer = try await scenario.submit(txid, [debit, credit], nodes: [0, 1])
                #expect(answer?.outcome == .aborted, "the coordinator presumed \(txid) aborted; it must not run it again")
                scenario.note("the resubmission was told \(answer.map { "\($0.outcome)" } ?? "nothing"): \(answer?.reason ?? "")")
            }
        }
    }
}
