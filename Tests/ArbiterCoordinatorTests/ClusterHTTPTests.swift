@testable import ArbiterClient
import ArbiterCoordinator
import ArbiterCore
import ArbiterPostgres
import ArbiterTesting
import Foundation
import Testing

/// Two coordinators over HTTP sharing one PostgreSQL store (`--store`), against scripted
/// participants: what one decided the other reads, and a presumed abort recorded at one is what
/// the other answers.
@Suite("Coordinator cluster over HTTP", .serialized, .enabled(if: PostgresServer.isAvailable, "needs PostgreSQL (Debian: postgresql)"))
struct ClusterHTTPTests {
    @Test("a transaction committed at one coordinator is read at the other; an id one of them presumed aborted is answered aborted by both, and never prepared")
    func twoCoordinatorsShareOneStore() async throws {
        let server = try await PostgresServer()
        let cluster = ClusterStoreOptions(location: try PostgresLocation(url: server.url), lease: .seconds(30), sweepInterval: .milliseconds(200))
        let (dataA, dataB) = (try TemporaryDirectory(), try TemporaryDirectory())
        let (p0, p1) = (FakeParticipant(), FakeParticipant())
        try await withParticipants([p0, p1]) { ids in
            try await withCoordinator(data: dataA.path, name: "A", cluster: cluster) { _, a, _ in
                try await withCoordinator(data: dataB.path, name: "B", cluster: cluster) { _, b, _ in
                    let committed = try await a.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("shared-1"), wait: .completion)
                    #expect(committed.outcome == .committed)
                    let seenAtB = try await b.transaction(txid("shared-1"))
                    #expect(seenAtB.state == .committed && seenAtB.branches.allSatisfy { $0.acknowledgement == .committed })
                    // A resubmission at the other coordinator is answered from the store, not run again.
                    let replayed = try await b.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("shared-1"))
                    #expect(replayed.outcome == .committed)
                    #expect(p0.state.prepared.filter { $0 == txid("shared-1") }.count == 1)

                    // A participant asks B about an id nobody has recorded: B records the abort first.
                    #expect(try await b.outcome(txid("ghost")) == .aborted)
                    let atA = try await a.submit(branches: [branch(ids[0]), branch(ids[1])], id: txid("ghost"))
                    #expect(atA.outcome == .aborted, "A finds B's presumed abort in the shared store")
                    #expect(!p0.state.prepared.contains(txid("ghost")) && !p1.state.prepared.contains(txid("ghost")))
                    let listed = try await a.transaction(txid("ghost"))
                    #expect(listed.state == .aborted)
                }
            }
        }
        withExtendedLifetime(server) {}  // The database outlives both coordinators.
    }
}
