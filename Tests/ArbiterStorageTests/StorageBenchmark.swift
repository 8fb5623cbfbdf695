import ArbiterCore
import ArbiterStorage
import Foundation
import GRDB
import Testing

/// Throughput measurements, not tests: they assert nothing about speed and run only when asked.
///
///     ARBITER_STORAGE_BENCH=1 swift test -c release --scratch-path .build-storage-rel \
///         --filter StorageBenchmark
///
/// Each measurement prints one line. The fsync floor is measured in the same run, so that the
/// other figures can be read as multiples of the physical limit.
@Suite("StorageBenchmark", .serialized, .enabled(if: ProcessInfo.processInfo.environment["ARBITER_STORAGE_BENCH"] == "1"))
struct StorageBenchmark {
    private static let participants = [ParticipantID("http://bank-a:8081"), ParticipantID("http://bank-b:8082")]

    @Test("fsync floor: write 4 KiB and fdatasync, one after another")
    func fsyncFloor() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/floor"
            let descriptor = open(path, O_CREAT | O_WRONLY, 0o600)
            defer { close(descriptor) }
            let page = [UInt8](repeating: 0xA5, count: 4096)
            let count = 2000
            let started = ContinuousClock.now
            for index in 0..<count {
                _ = page.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, 4096, off_t(index % 256) * 4096) }
                _ = fdatasync(descriptor)
            }
            let elapsed = ContinuousClock.now - started
            print(String(format: "bench fsync-floor: %.1f µs per 4 KiB write + fdatasync (%d rounds)",
                         elapsed.microseconds / Double(count), count))
        }
    }

    /// A service's loop writes a round as one transaction (``DecisionLog/commitNow(_:durability:)``),
    /// so the batching is how many records a round holds: 1 at one client, dozens under load.
    @Test("forced decisions per second, by decisions per round", arguments: [1, 64])
    func forcedDecisions(perRound: Int) async throws {
        try await withTemporaryDirectory { directory in
            let log = try DecisionLog(path: "\(directory)/coordinator.sqlite", options: testOptions())
            let total = perRound == 1 ? 5000 : 64_000
            var latencies: [Duration] = []
            let started = ContinuousClock.now
            for round in 0..<(total / perRound) {
                let records = try (0..<perRound).map { index in
                    CoordinatorRecord.decided(try TxID("bench-\(round)-\(index)"), .committed, notify: Self.participants, reason: nil)
                }
                let begun = ContinuousClock.now
                try log.commitNow(records, durability: .forced)
                latencies.append(ContinuousClock.now - begun)
            }
            let elapsed = ContinuousClock.now - started
            report("forced-decisions per-round=\(perRound) (latency: one round)", count: total, elapsed: elapsed, latencies: latencies,
                   statistics: log.writer.statistics)
            try await log.close()
        }
    }

    @Test("raw forced inserts through StoreWriter alone, 64 per round (the writer's own overhead)")
    func rawForcedInserts() async throws {
        try await withTemporaryDirectory { directory in
            var migrator = DatabaseMigrator()
            migrator.registerMigration("t") { db in try db.execute(sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)") }
            let writer = try StoreWriter(path: "\(directory)/raw.sqlite", migrator: migrator, options: testOptions())
            let total = 64_000
            var latencies: [Duration] = []
            let started = ContinuousClock.now
            for _ in 0..<(total / 64) {
                let begun = ContinuousClock.now
                try writer.writeNow(.forced, pieces: 64) { db in
                    for _ in 0..<64 { try db.cachedStatement(sql: "INSERT INTO t (v) VALUES ('x')").execute() }
                }
                latencies.append(ContinuousClock.now - begun)
            }
            report("raw-forced-inserts per-round=64 (latency: one round)", count: total, elapsed: ContinuousClock.now - started,
                   latencies: latencies, statistics: writer.statistics)
            try await writer.close()
        }
    }

    @Test("whole coordinator transactions per second (begun, decided, 2 acks, ended), 64 per round")
    func coordinatorTransactions() async throws {
        try await withTemporaryDirectory { directory in
            let log = try DecisionLog(path: "\(directory)/coordinator.sqlite", options: testOptions())
            let perRound = 64
            let rounds = 300
            let branches = Self.participants.map { Branch(participant: $0, payload: Payload(#"{"op":"debit","account":"alice","amount":100}"#)) }
            var latencies: [Duration] = []
            let started = ContinuousClock.now
            for round in 0..<rounds {
                let txids = try (0..<perRound).map { try TxID("bench-\(round)-\($0)") }
                let begun = ContinuousClock.now
                try log.commitNow(txids.map { .begun($0, branches: branches) }, durability: .lazy)
                try log.commitNow(txids.map { .decided($0, .committed, notify: Self.participants, reason: nil) }, durability: .forced)
                latencies.append(ContinuousClock.now - begun)
                try log.commitNow(txids.flatMap { [.acknowledged($0, Self.participants[0]), .acknowledged($0, Self.participants[1]), .ended($0)] },
                                  durability: .lazy)
            }
            let elapsed = ContinuousClock.now - started
            report("coordinator-transactions per-round=\(perRound) (latency: the begun and decided rounds)", count: perRound * rounds,
                   elapsed: elapsed, latencies: latencies, statistics: log.writer.statistics)
            try await log.close()
        }
    }

    @Test("recover() with a million ended transactions and 100 open ones")
    func recoveryWithAMillionEnded() async throws {
        try await withTemporaryDirectory { directory in
            let path = "\(directory)/coordinator.sqlite"
            let log = try DecisionLog(path: path, options: testOptions())
            let endedCount = 1_000_000
            let filled = ContinuousClock.now
            // Bulk load straight into the tables (the records' own path would take minutes).
            for chunk in stride(from: 0, to: endedCount, by: 100_000) {
                try await log.writer.write(.lazy) { db in
                    let transaction = try db.makeStatement(sql: """
                        INSERT INTO coordinator_transaction (txid, state, branches, outcome, notify, created_at_ms, decided_at_ms, ended_at_ms)
                        VALUES (?, 'committed', '[]', 'committed', '["http://bank-a:8081","http://bank-b:8082"]', 0, 0, 0)
                        """)
                    let acknowledgement = try db.makeStatement(sql: """
                        INSERT INTO coordinator_acknowledgement (txid, participant, acknowledged_at_ms) VALUES (?, ?, 0)
                        """)
                    for index in chunk..<(chunk + 100_000) {
                        let txid = "ended-\(index)"
                        try transaction.execute(arguments: [txid])
                        try acknowledgement.execute(arguments: [txid, "http://bank-a:8081"])
                        try acknowledgement.execute(arguments: [txid, "http://bank-b:8082"])
                    }
                }
            }
            for index in 0..<100 {
                let txid = try TxID("open-\(index)")
                try await log.append([
                    .begun(txid, branches: []), .decided(txid, .committed, notify: Self.participants, reason: nil),
                    .acknowledged(txid, Self.participants[0]),
                ], durability: .lazy)
            }
            let fillElapsed = ContinuousClock.now - filled
            try await log.close()

            let opened = ContinuousClock.now
            let reopened = try DecisionLog(path: path, options: testOptions())
            let openElapsed = ContinuousClock.now - opened
            let started = ContinuousClock.now
            let records = try await reopened.recover()
            let elapsed = ContinuousClock.now - started
            let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            print(String(format: "bench recovery: %d records of 100 open transactions among %d ended in %.2f ms (open %.1f ms; database %d MiB, filled in %.1f s)",
                         records.count, endedCount, elapsed.milliseconds, openElapsed.milliseconds, size >> 20, fillElapsed.milliseconds / 1000))
            try await reopened.close()
        }
    }

    private func report(_ name: String, count: Int, elapsed: Duration, latencies: [Duration], statistics: StoreWriterStatistics) {
        let sorted = latencies.sorted()
        func percentile(_ p: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))].microseconds }
        print("bench \(name): " + String(format: "%.0f/s (%d in %.2f s); latency p50 %.0f µs, p99 %.0f µs, max %.0f µs; fsyncs %d, lazy transactions %d, pieces per transaction %.1f, largest %d; writer busy %.0f%%, mean transaction %.0f µs",
                     Double(count) / (elapsed.milliseconds / 1000), count, elapsed.milliseconds / 1000,
                     percentile(0.5), percentile(0.99), sorted.last?.microseconds ?? 0,
                     statistics.forcedTransactionCount, statistics.lazyTransactionCount, statistics.transactionSizeMean, statistics.transactionSizeLargest,
                     100 * statistics.transactionDurationTotal.microseconds / elapsed.microseconds,
                     statistics.transactionDurationTotal.microseconds / Double(max(1, statistics.transactionCount))))
    }
}

extension Duration {
    fileprivate var microseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1e6 + Double(attoseconds) / 1e12
    }

    fileprivate var milliseconds: Double { microseconds / 1000 }
}
