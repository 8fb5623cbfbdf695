import ArbiterCore
import ArbiterTesting
import BankCluster
import Foundation
import Testing

extension EndToEnd {
    @Suite("Chaos: random SIGKILLs under load", .serialized)
    struct Chaos {
        /// How long the faults last: `ARBITER_CHAOS_SECONDS` (default 30).
        static var duration: Int {
            ProcessInfo.processInfo.environment["ARBITER_CHAOS_SECONDS"].flatMap(Int.init).map { max(1, $0) } ?? 30
        }

        /// A coordinator and three banks under eight concurrent clients. Every one to four seconds
        /// a random process (now and then two at once) is killed with SIGKILL and, after up to a
        /// second down, restarted. When the time is up the faults stop, the clients' last
        /// transfers are answered, the cluster settles and the invariants are checked over every
        /// transaction issued.
        @Test("random SIGKILLs of the coordinator and the banks under load: invariants hold over every transaction")
        func chaos() async throws {
            let seconds = Self.duration
            try await Scenario.run("chaos \(seconds) s (3 banks, 8 clients)", nodeCount: 3, accountsPerNode: 64) { scenario in
                let cluster = scenario.cluster
                let load = scenario.workload(workers: 8)
                let started = ContinuousClock.now
                try await scenario.chaos(for: seconds, under: load, seed: 0xC4A0_5C4A_05C4_A05C, pause: 1_000...4_000) { random in
                    var victims = [cluster.members[Int.random(in: 0..<cluster.members.count, using: &random)]]
                    if Int.random(in: 0..<5, using: &random) == 0 {
                        let other = cluster.members[Int.random(in: 0..<cluster.members.count, using: &random)]
                        if other != victims[0] { victims.append(other) }
                    }
                    for victim in victims { scenario.kill(victim) }
                    let elapsed = (ContinuousClock.now - started).components.seconds
                    scenario.note("t+\(elapsed)s: killed \(victims.map(\.description).joined(separator: " and ")) (answers so far: \(load.counts.answered))")
                    try await Task.sleep(for: .milliseconds(Int.random(in: 0...1_000, using: &random)))
                    for victim in victims { try await scenario.restart(victim) }
                }
            }
        }
    }
}
