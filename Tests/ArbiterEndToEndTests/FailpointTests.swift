import ArbiterTesting
import BankCluster
import Testing

/// A failpoint that crashes one process.
struct FailpointCase: Sendable, CustomTestStringConvertible {
    var name: String
    var member: BankCluster.Member

    var testDescription: String { "\(name) (\(member))" }
}

extension EndToEnd {
    /// Every failpoint of the protocol, with `crash`, under concurrent transfers.
    @Suite("A crash at every protocol step", .serialized)
    struct Failpoints {
        static let cases: [FailpointCase] = [
            FailpointCase(name: "coordinator.before-decision-force", member: .coordinator),
            FailpointCase(name: "coordinator.after-decision-force", member: .coordinator),
            // A commit delivered to one participant: the other one of that transaction may not
            // have got its own yet.
            FailpointCase(name: "coordinator.after-commit-sent", member: .coordinator),
            FailpointCase(name: "coordinator.before-end-record", member: .coordinator),
            FailpointCase(name: "participant.before-prepare-force", member: .node(0)),
            FailpointCase(name: "participant.after-prepare-force", member: .node(0)),
            FailpointCase(name: "participant.before-vote", member: .node(0)),
            FailpointCase(name: "participant.before-commit-force", member: .node(0)),
            FailpointCase(name: "participant.after-commit-force", member: .node(0)),
            FailpointCase(name: "participant.before-ack", member: .node(0)),
        ]

        /// Transfers between two nodes run until the failpoint kills its process; the process is
        /// restarted without it; clients retry with the same ids until answered; after some more
        /// transfers the load stops, the cluster settles, and the invariants must hold.
        @Test("crash, restart, settle: every transaction all-or-nothing, money conserved, nothing left locked",
              arguments: cases)
        func crash(_ point: FailpointCase) async throws {
            // Not the first hit: the crash comes under load, with other transactions in flight.
            let seed = Scenario.seed()
            let hit = 5 + Int(seed % 36)
            try await Scenario.run("crash at \(point.name)", accountsPerNode: 64,
                                   failpoints: [point.member: "\(point.name)=crash@\(hit)"], seed: seed) { scenario in
                let load = scenario.workload()
                try await scenario.underLoad(load) {
                    try await scenario.waitForFailpoint(point.name, at: point.member)
                    scenario.note("\(point.member) crashed at hit \(hit) of \(point.name) after \(load.counts.answered) answers; restarting it without the failpoint")
                    try await scenario.restart(point.member)
                    let answered = load.counts.answered
                    try await eventually("50 more transfers are answered after the restart", timeout: .seconds(120), poll: .milliseconds(20)) {
                        load.counts.answered >= answered + 50
                    }
                }
                scenario.note("load stopped: \(load.counts)")
            }
        }
    }
}
