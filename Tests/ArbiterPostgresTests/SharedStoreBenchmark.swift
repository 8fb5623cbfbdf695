import ArbiterCore
import ArbiterPostgres
import ArbiterRuntime
import ArbiterStorage
import ArbiterTesting
import Foundation
import Testing

/// Throughput of a coordinator's rounds on the cluster's PostgreSQL store next to the SQLite log,
/// in one run on one machine: measurements, not tests; they assert nothing about speed and run
/// only when asked.
///
///     ARBITER_STORE_BENCH=1 swift test --filter SharedStoreBenchmark
///
/// A round as the loop writes it under load: `perRound` transactions' `begun` and commit
/// decisions, forced; then their acknowledgements and `ended`, lazy.
@Suite("SharedStoreBenchmark", .serialized,
       .enabled(if: ProcessInfo.processInfo.environment["ARBITER_STORE_BENCH"] == "1" && PostgresServer.isAvailable))
struct SharedStoreBenchmark {
    static let participants = [ParticipantID("http://bank-a:8081"), ParticipantID("http://bank-b:8082")]
    static let branches = participants.map { Branch(participant: $0, payload: Payload(#"{"op":"debit","account":"a","amount":1}"#)) }

    static func round(_ round: Int, _ perRound: Int) -> (forced: [CoordinatorRecord], lazy: [CoordinatorRecord]) {
        var forced: [CoordinatorRecord] = []
        var lazy: [CoordinatorRecord] = []
        for index in 0..<perRound {
            let txid = try! TxID("bench-\(round)-\(index)")
            forced += [.begun(txid, branches: branches), .decided(txid, .committed, notify: participants, reason: nil)]
            lazy += participants.map { .acknowledged(txid, $0) } + [.ended(txid)]
        }
        return (forced, lazy)
    }

    func measure(_ name: String, perRound: Int, rounds: Int, _ commit: ([CoordinatorRecord], Bool) throws -> Void) rethrows {
        var forcedTime = Duration.zero
        var lazyTime = Duration.zero
        for index in 0..<rounds {
            let (forced, lazy) = Self.round(index, perRound)
            let begun = ContinuousClock.now
            try commit(forced, true)
            let middle = ContinuousClock.now
            try commit(lazy, false)
            forcedTime += middle - begun
            lazyTime += ContinuousClock.now - middle
        }
        let transactions = Double(perRound * rounds)
        print(String(format: "bench %@ per-round=%d: forced round %.2f ms, lazy round %.2f ms, %.0f transactions/s",
                     name, perRound, forcedTime.milliseconds / Double(rounds), lazyTime.milliseconds / Double(rounds),
                     transactions / (forcedTime + lazyTime).seconds))
    }

    @Test("a coordinator's rounds: PostgreSQL store and SQLite log", arguments: [1, 64])
    func rounds(perRound: Int) async throws {
        let rounds = perRound == 1 ? 1000 : 100
        let server = try await PostgresServer()
        let store = try PostgresDecisionStore(location: PostgresLocation(url: server.url), name: "bench", lease: .seconds(30),
                                              logger: SharedDecisionStoreTests.logger)
        try measure("postgres", perRound: perRound, rounds: rounds) { records, forced in
            let refused = try store.commit(records, forced: forced)
            precondition(refused.isEmpty, "the only coordinator was refused its records")
        }
        store.close()
        let directory = try TemporaryDirectory(prefix: "arbiter-bench")
        let log = try DecisionLog(path: directory.path + "/coordinator.sqlite")
        try measure("sqlite", perRound: perRound, rounds: rounds) { records, forced in
            try log.commitNow(records, durability: forced ? .forced : .lazy)
        }
        try await log.close()
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    var milliseconds: Double { seconds * 1000 }
}
